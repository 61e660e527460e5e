//! Opening what an image needs (its backing chain), refusing to write images keel can only
//! read, and creating new images.

use std::path::{Path, PathBuf};

use super::header::{Header, NewImage, INCOMPAT_CORRUPT, INCOMPAT_DIRTY};
use crate::file::ImageFile;
use crate::{BlockError, DiskImage, ImageFormat};

/// Longest backing chain keel follows; more is most likely a loop.
const MAX_CHAIN: u32 = 16;
/// Cluster size of images keel creates, QEMU's default.
const CREATE_CLUSTER_BITS: u32 = 16;

/// Images keel can read but must not write.
pub(super) fn refuse_writing(path: &Path, h: &Header) -> Result<(), BlockError> {
    let ro = "open it read-only, or use it as the read-only backing file of an overlay";
    if h.incompatible_features & INCOMPAT_CORRUPT != 0 {
        return Err(BlockError::corrupt(
            path,
            "QEMU marked it corrupt (the qcow2 \"corrupt\" bit is set); keel opens it read-only only",
        ));
    }
    if h.incompatible_features & INCOMPAT_DIRTY != 0 {
        return Err(BlockError::unsupported(
            path,
            "lazy refcounts left inconsistent by an unclean shutdown (the \"dirty\" bit)",
            format!("repair it with `qemu-img check -r all {}`, or {ro}", path.display()),
        ));
    }
    if h.refcount_order != 4 {
        return Err(BlockError::unsupported(
            path,
            format!("{}-bit refcounts", 1u32 << h.refcount_order),
            format!("{ro}, or convert it with `qemu-img convert -O qcow2 -o refcount_bits=16`"),
        ));
    }
    if h.nb_snapshots != 0 {
        return Err(BlockError::unsupported(
            path,
            format!("internal snapshots ({}) for writing", h.nb_snapshots),
            format!("{ro}, or delete them (`qemu-img snapshot -l` / `-d`)"),
        ));
    }
    Ok(())
}

/// Where a backing file name points: relative names are relative to the overlay's directory,
/// as QEMU resolves them.
pub(crate) fn resolve_backing(overlay: &Path, name: &Path) -> PathBuf {
    if name.is_absolute() {
        name.to_path_buf()
    } else {
        overlay.parent().unwrap_or(Path::new("")).join(name)
    }
}

pub(super) fn open_backing(
    overlay: &Path,
    name: &Path,
    format: Option<&str>,
    depth: u32,
) -> Result<Box<dyn DiskImage>, BlockError> {
    let backing = resolve_backing(overlay, name);
    let wrap = |source| BlockError::Backing {
        path: overlay.into(),
        backing: backing.clone(),
        source: Box::new(source),
    };
    if depth + 1 >= MAX_CHAIN {
        return Err(wrap(BlockError::InvalidArgument {
            path: backing.clone(),
            what: format!("the backing chain is longer than {MAX_CHAIN} images (or loops)"),
        }));
    }
    let format = match format {
        None => None,
        Some("raw") => Some(ImageFormat::Raw),
        Some("qcow2") => Some(ImageFormat::Qcow2),
        Some(other) => {
            return Err(BlockError::unsupported(
                overlay,
                format!("a backing file in format {other:?}"),
                "convert the backing file to raw or qcow2 with qemu-img convert and rebase",
            ))
        }
    };
    // Backing files are never written: read-only, with a shared lock.
    crate::open_image(&backing, true, format, depth + 1).map_err(wrap)
}

/// Creates a new qcow2 (version 3) image of `size()` bytes; on failure the partial file is
/// removed. The file is created first, so an existing one is refused before anything else.
pub(crate) fn create(
    path: &Path,
    size: impl FnOnce() -> Result<u64, BlockError>,
    backing: Option<(&[u8], &str)>,
) -> Result<(), BlockError> {
    let file = ImageFile::create_new(path)?;
    let result = size().and_then(|size| {
        NewImage { cluster_bits: CREATE_CLUSTER_BITS, size, backing }.write(&file)
    });
    drop(file);
    if result.is_err() {
        let _ = std::fs::remove_file(path);
        return result;
    }
    // Best effort: make the new directory entry durable too.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}
