//! Copying an image file as it is (its format untouched), leaving holes where the source has
//! them, and telling a file's format: what snapshots and `keel image rootfs` need.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::{BlockError, ImageFormat, QCOW2_MAGIC};

/// Bytes read per step; zero chunks are skipped (left as holes in the copy).
const CHUNK: usize = 1 << 20;

/// Copies the image file `src` to `dest`, byte for byte, skipping runs of zeroes (which stay
/// holes). It goes through `dest` + `.partial` and a rename, so an interrupted copy never
/// leaves a file that looks complete; `dest` is replaced if it exists. The copy is fsynced.
/// `progress(done, total)` reports bytes of `src` read.
pub fn copy_sparse(
    src: &Path,
    dest: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), BlockError> {
    let io = |op: &'static str| {
        let path = src.to_owned();
        move |source: io::Error| BlockError::Io { path, op, source }
    };
    let mut from = File::open(src).map_err(io("open"))?;
    let total = from.metadata().map_err(io("stat"))?.len();
    write_sparse_reporting(&mut from, dest, |done| progress(done, total)).map(drop)
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The format of the image file at `path`: qcow2 by its magic, raw otherwise.
pub fn detect_format(path: &Path) -> Result<ImageFormat, BlockError> {
    let mut file = File::open(path).map_err(|source| BlockError::Io {
        path: path.into(),
        op: "open",
        source,
    })?;
    let mut magic = [0u8; 4];
    let n = read_full(&mut file, &mut magic).map_err(|source| BlockError::Io {
        path: path.into(),
        op: "read",
        source,
    })?;
    Ok(if n == 4 && magic == QCOW2_MAGIC { ImageFormat::Qcow2 } else { ImageFormat::Raw })
}

/// The contents of a disk as the guest sees them (a qcow2 image's clusters and backing files
/// resolved), as a byte stream of [`DiskImage::size`] bytes: what an appliance archive holds,
/// so that it needs none of the files the image came from.
pub struct DiskReader {
    image: Box<dyn crate::DiskImage>,
    offset: u64,
}

impl DiskReader {
    /// Opens `path` read-only (its format detected).
    pub fn open(path: &Path) -> Result<DiskReader, BlockError> {
        let image = crate::open(path, &crate::OpenOptions { read_only: true, format: None })?;
        Ok(DiskReader { image, offset: 0 })
    }

    /// The disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.image.size()
    }
}

impl Read for DiskReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.image.size() - self.offset;
        let n = (buf.len() as u64).min(left).min(CHUNK as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.image.read_at(self.offset, &mut buf[..n]).map_err(io::Error::other)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Writes `reader`'s bytes to a new file `dest`, leaving runs of zeroes as holes, through a
/// `.partial` name and a rename (fsynced). Returns the bytes written.
pub fn write_sparse(reader: &mut dyn Read, dest: &Path) -> Result<u64, BlockError> {
    write_sparse_reporting(reader, dest, |_| {})
}

/// [`write_sparse`], calling `progress(bytes done)` after each chunk.
fn write_sparse_reporting(
    reader: &mut dyn Read,
    dest: &Path,
    mut progress: impl FnMut(u64),
) -> Result<u64, BlockError> {
    let io = |path: &Path, op: &'static str| {
        let path = path.to_owned();
        move |source: io::Error| BlockError::Io { path, op, source }
    };
    let mut tmp_name = dest.as_os_str().to_owned();
    tmp_name.push(".partial");
    let tmp = Path::new(&tmp_name);
    let mut to = File::create(tmp).map_err(io(tmp, "create"))?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    let written = (|| -> Result<(), BlockError> {
        loop {
            let n = read_full(reader, &mut buf).map_err(io(dest, "read the data for"))?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().all(|&b| b == 0) {
                to.seek(SeekFrom::Current(n as i64)).map_err(io(tmp, "seek"))?;
            } else {
                to.write_all(&buf[..n]).map_err(io(tmp, "write"))?;
            }
            done += n as u64;
            progress(done);
        }
        to.set_len(done).map_err(io(tmp, "set the length of"))?;
        to.sync_all().map_err(io(tmp, "fsync"))?;
        std::fs::rename(tmp, dest).map_err(io(dest, "rename into place"))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written.map(|()| done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_copy_has_the_same_bytes_and_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        let f = File::create(&src).unwrap();
        f.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"start", 0).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"end", (8 << 20) - 3).unwrap();
        let dest = dir.path().join("dest.img");
        let mut reports = 0;
        copy_sparse(&src, &dest, |_, total| {
            reports += 1;
            assert_eq!(total, 8 << 20);
        })
        .unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dest).unwrap());
        assert!(reports >= 8);
        let blocks = std::fs::metadata(&dest).unwrap().blocks() * 512;
        assert!(blocks <= 2 * CHUNK as u64, "holes stay holes: {blocks} bytes allocated");
        assert!(!dir.path().join("dest.img.partial").exists());
        assert_eq!(detect_format(&dest).unwrap(), ImageFormat::Raw);
    }

    #[test]
    fn a_missing_source_names_it_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest.img");
        let err = copy_sparse(&dir.path().join("nope.img"), &dest, |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("nope.img"), "{err}");
        assert!(!dest.exists());
    }

    #[test]
    fn a_disk_reads_as_the_guest_sees_it_and_lands_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        let f = File::create(&base).unwrap();
        f.set_len(4 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"base", 0).unwrap();
        let overlay = dir.path().join("top.qcow2");
        crate::create_qcow2_overlay(&overlay, &base, ImageFormat::Raw).unwrap();
        {
            let mut top = crate::open(&overlay, &crate::OpenOptions::default()).unwrap();
            top.write_at(1 << 20, b"top").unwrap();
            top.flush().unwrap();
        }
        let mut reader = DiskReader::open(&overlay).unwrap();
        assert_eq!(reader.size(), 4 << 20);
        let flat = dir.path().join("flat.img");
        assert_eq!(write_sparse(&mut reader, &flat).unwrap(), 4 << 20);
        let bytes = std::fs::read(&flat).unwrap();
        assert!(bytes.starts_with(b"base"));
        assert_eq!(&bytes[1 << 20..(1 << 20) + 3], b"top");
        assert_eq!(detect_format(&flat).unwrap(), ImageFormat::Raw);
        assert!(std::fs::metadata(&flat).unwrap().blocks() * 512 <= 2 * CHUNK as u64);
    }

    #[test]
    fn qcow2_images_are_told_from_raw_ones() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q.qcow2");
        crate::create_qcow2(&q, 1 << 20).unwrap();
        assert_eq!(detect_format(&q).unwrap(), ImageFormat::Qcow2);
    }
}
