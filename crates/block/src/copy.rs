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
    let io = |path: &Path, op: &'static str| {
        let path = path.to_owned();
        move |source: io::Error| BlockError::Io { path, op, source }
    };
    let mut from = File::open(src).map_err(io(src, "open"))?;
    let total = from.metadata().map_err(io(src, "stat"))?.len();
    let mut tmp_name = dest.as_os_str().to_owned();
    tmp_name.push(".partial");
    let tmp = Path::new(&tmp_name);
    let mut to = File::create(tmp).map_err(io(tmp, "create"))?;
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    let copied = (|| -> Result<(), BlockError> {
        loop {
            let n = read_full(&mut from, &mut buf).map_err(io(src, "read"))?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().all(|&b| b == 0) {
                to.seek(SeekFrom::Current(n as i64)).map_err(io(tmp, "seek"))?;
            } else {
                to.write_all(&buf[..n]).map_err(io(tmp, "write"))?;
            }
            done += n as u64;
            progress(done, total);
        }
        to.set_len(done).map_err(io(tmp, "set the length of"))?;
        to.sync_all().map_err(io(tmp, "fsync"))?;
        std::fs::rename(tmp, dest).map_err(io(dest, "rename into place"))
    })();
    if copied.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    copied
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
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
    fn qcow2_images_are_told_from_raw_ones() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q.qcow2");
        crate::create_qcow2(&q, 1 << 20).unwrap();
        assert_eq!(detect_format(&q).unwrap(), ImageFormat::Qcow2);
    }
}
