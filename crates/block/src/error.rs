//! Errors: every message names the image file and says what the user can do about it.

use std::io;
use std::path::PathBuf;

/// Why a disk image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A system call on the image file failed.
    #[error("disk image {path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// Another process holds a conflicting lock on the image.
    #[error(
        "disk image {path} is locked: another VM (or program, such as qemu-img or QEMU) is using \
         it. An image can be written by one VM at a time; stop the other user, or attach the image \
         read-only everywhere it is used (read-only attachments can share an image)"
    )]
    Locked { path: PathBuf },

    /// A write, discard or write-zeroes on an image opened read-only.
    #[error("disk image {path} was opened read-only; it cannot be modified (attach it writable)")]
    ReadOnly { path: PathBuf },

    /// An access beyond the end of the virtual disk.
    #[error(
        "disk image {path}: access of {len} bytes at offset {offset} is beyond the end of the \
         {size}-byte disk"
    )]
    OutOfRange { path: PathBuf, offset: u64, len: u64, size: u64 },

    /// The file is not a qcow2 image, or its header is malformed.
    #[error(
        "disk image {path} is not a valid qcow2 image: {reason}; if it is a raw disk image, open \
         it with format raw"
    )]
    InvalidHeader { path: PathBuf, reason: String },

    /// A qcow2 feature keel does not implement.
    #[error("disk image {path} uses {what}, which keel does not support; {hint}")]
    Unsupported { path: PathBuf, what: String, hint: String },

    /// The qcow2 metadata is inconsistent.
    #[error(
        "disk image {path} is corrupt: {what}; inspect it with `qemu-img check {path}` and repair \
         it with `qemu-img check -r all {path}` (keep a copy first)"
    )]
    Corrupt { path: PathBuf, what: String },

    /// The backing file of an overlay could not be opened.
    #[error("disk image {path}: cannot open its backing file {backing}: {source}")]
    Backing {
        path: PathBuf,
        backing: PathBuf,
        #[source]
        source: Box<BlockError>,
    },

    /// The caller asked for something that cannot be done (bad size, existing file...).
    #[error("disk image {path}: {what}")]
    InvalidArgument { path: PathBuf, what: String },
}

impl BlockError {
    pub(crate) fn io(path: &std::path::Path, op: &'static str, source: io::Error) -> Self {
        BlockError::Io { path: path.to_path_buf(), op, source }
    }

    pub(crate) fn corrupt(path: &std::path::Path, what: impl Into<String>) -> Self {
        BlockError::Corrupt { path: path.to_path_buf(), what: what.into() }
    }

    pub(crate) fn unsupported(
        path: &std::path::Path,
        what: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        BlockError::Unsupported { path: path.to_path_buf(), what: what.into(), hint: hint.into() }
    }

    pub(crate) fn invalid_header(path: &std::path::Path, reason: impl Into<String>) -> Self {
        BlockError::InvalidHeader { path: path.to_path_buf(), reason: reason.into() }
    }
}
