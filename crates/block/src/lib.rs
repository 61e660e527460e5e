//! Disk images for keel's virtio-blk device: raw files (or block devices) and qcow2 images
//! (versions 2 and 3, backing chains, zero and compressed clusters), behind one trait that
//! presents a flat array of bytes.
//!
//! Images are locked while open, with the same open-file-description byte locks QEMU uses, so
//! keel and QEMU/qemu-img refuse to write an image another of them is using.
//!
//! All methods block on file I/O (pread/pwrite/fdatasync) and take `&mut self`: a device that
//! serves several queues shares an image behind a `Mutex`, and runs requests off the vCPU
//! threads, since a flush (or a qcow2 allocation) can wait for the disk.
//!
//! Durability is that of a disk with a volatile write cache: a completed write is in the host's
//! page cache, and only [`DiskImage::flush`] makes it durable. For qcow2, copy-on-write updates
//! since the last flush can even be lost if keel itself dies (never the image's consistency),
//! so a virtio-blk device offers VIRTIO_BLK_F_FLUSH, or flushes after every write when the
//! guest did not accept that feature. Dropping an image flushes it and releases its lock.

mod copy;
mod error;
mod file;
mod lock;
mod qcow2;
mod raw;
mod sys;

use std::path::Path;

pub use copy::{copy_sparse, detect_format, write_sparse, DiskReader};
pub use error::BlockError;

/// The first four bytes of every qcow2 image.
pub(crate) const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// An open disk image, as the virtio-blk device sees it: a flat array of bytes.
///
/// Offsets and lengths need no alignment; whole, cluster-aligned requests are the fast path
/// for qcow2 (a partial write to an unallocated qcow2 cluster copies the rest of the cluster).
pub trait DiskImage: Send {
    /// Size of the virtual disk in bytes (for qcow2 the virtual size, not the file size).
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    /// Reads buf.len() bytes at `offset` (unallocated qcow2 clusters read from the backing
    /// file, or as zeroes).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Makes written data durable (fsync of the image file, after qcow2 metadata is written).
    fn flush(&mut self) -> Result<(), BlockError>;
    /// Discard (trim): the range reads as zeroes afterwards is NOT required; space may be freed
    /// (raw: fallocate PUNCH_HOLE|KEEP_SIZE; qcow2: deallocate whole clusters or make them zero
    /// clusters).
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError>;
    /// The range reads as zeroes afterwards (raw: fallocate ZERO_RANGE or write zeroes; qcow2:
    /// zero clusters (v3 "all zeroes" flag) where aligned, writes otherwise).
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BlockError>;
}

/// On-disk format of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    /// The name QEMU uses for the format (`-f`, backing format header extension).
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

/// How to open an image.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    pub read_only: bool,
    /// None = detect by the qcow2 magic "QFI\xfb" (anything else is raw). Give the format when
    /// it is known: a guest cannot then change how its disk is interpreted.
    pub format: Option<ImageFormat>,
}

/// Opens an image; writable opens lock it exclusively, read-only opens share the lock with
/// other readers. A qcow2 image's backing files are opened read-only.
pub fn open(path: &Path, opts: &OpenOptions) -> Result<Box<dyn DiskImage>, BlockError> {
    open_image(path, opts.read_only, opts.format, 0)
}

pub(crate) fn open_image(
    path: &Path,
    read_only: bool,
    format: Option<ImageFormat>,
    depth: u32,
) -> Result<Box<dyn DiskImage>, BlockError> {
    let file = file::ImageFile::open(path, read_only)?;
    let (format, probed) = match format {
        Some(f) => (f, false),
        None => {
            let mut magic = [0u8; 4];
            file.read_zero_fill(&mut magic, 0)?;
            (if magic == QCOW2_MAGIC { ImageFormat::Qcow2 } else { ImageFormat::Raw }, true)
        }
    };
    Ok(match format {
        ImageFormat::Raw => Box::new(raw::RawImage::from_file(file, read_only, probed)?),
        ImageFormat::Qcow2 => Box::new(qcow2::Qcow2Image::open(file, read_only, depth)?),
    })
}

/// Creates a qcow2 overlay whose backing file is `base` (path stored as given; relative backing
/// paths resolve against the overlay's directory, as QEMU does — so a relative `base` is taken
/// relative to the overlay's directory here too), virtual size = base's size (rounded up to a
/// multiple of 512 bytes). Refuses to replace an existing file.
pub fn create_qcow2_overlay(
    overlay: &Path,
    base: &Path,
    base_format: ImageFormat,
) -> Result<(), BlockError> {
    use std::os::unix::ffi::OsStrExt;
    let resolved = qcow2::resolve_backing(overlay, base);
    let size = || {
        let base =
            open_image(&resolved, true, Some(base_format), 0).map_err(|e| BlockError::Backing {
                path: overlay.into(),
                backing: resolved.clone(),
                source: Box::new(e),
            })?;
        Ok(base.size().next_multiple_of(512))
    };
    qcow2::create(overlay, size, Some((base.as_os_str().as_bytes(), base_format.name())))
}

/// Creates an empty qcow2 image of `size` bytes (cluster size 64 KiB). `size` must be a
/// multiple of 512. Refuses to replace an existing file.
pub fn create_qcow2(path: &Path, size: u64) -> Result<(), BlockError> {
    qcow2::create(path, || Ok(size), None)
}

/// Fails unless `len` bytes at `offset` lie within a disk of `size` bytes.
pub(crate) fn check_range(path: &Path, offset: u64, len: u64, size: u64) -> Result<(), BlockError> {
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(BlockError::OutOfRange { path: path.into(), offset, len, size });
    }
    Ok(())
}
