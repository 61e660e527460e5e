//! The one error type of this crate. Every variant that concerns a file names it, and the
//! messages say what to do, because they end up in front of a user as `keel: error: ...`.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong writing or reading a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call on `path` failed.
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        /// What was being done ("create", "write", "fsync", "rename", ...).
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// A file the snapshot needs is not there.
    #[error(
        "{path}: snapshot file missing ({what}); the snapshot was moved or damaged, take it again"
    )]
    Missing { path: PathBuf, what: &'static str },

    /// The directory has no completion marker: its writer was interrupted (or is still running).
    #[error(
        "{dir}: snapshot is incomplete (no completion marker); it was interrupted while being \
         written, take it again"
    )]
    Incomplete { dir: PathBuf },

    /// The file does not start with keel's snapshot magic.
    #[error("{path}: not a keel snapshot file (bad magic)")]
    BadMagic { path: PathBuf },

    /// The file is shorter than it says it is.
    #[error(
        "{path}: truncated: {actual} bytes where {expected} were expected; the snapshot was cut \
         short, take it again"
    )]
    Truncated { path: PathBuf, expected: u64, actual: u64 },

    /// The stored checksum does not match the contents.
    #[error(
        "{path}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x}); the \
         snapshot is corrupted, take it again"
    )]
    ChecksumMismatch { path: PathBuf, stored: u32, computed: u32 },

    /// The file was written by a newer keel in a format this one cannot read.
    #[error(
        "{path}: snapshot format version {version} is newer than this keel supports \
         (up to {supported}); restore it with a newer keel"
    )]
    NewerFormat { path: PathBuf, version: u32, supported: u32 },

    /// The format version is one this keel never wrote (0, or an old one it no longer reads).
    #[error("{path}: unsupported snapshot format version {version} (this keel reads {supported})")]
    UnsupportedFormat { path: PathBuf, version: u32, supported: u32 },

    /// The checksum matched but the contents do not parse: a bug in whoever wrote it.
    #[error("{path}: malformed snapshot: {detail}")]
    Malformed { path: PathBuf, detail: String },

    /// A section the restore needs is not in the file.
    #[error("{path}: snapshot has no section {section:?}; it was taken by a keel without it")]
    MissingSection { path: PathBuf, section: String },

    /// A section is in a version this keel does not understand.
    #[error(
        "{path}: section {section:?} is version {version}, this keel reads versions \
         {min}..={max}; restore it with the keel that took it (or a newer one)"
    )]
    UnknownSectionVersion { path: PathBuf, section: String, version: u32, min: u32, max: u32 },

    /// A section's payload does not decode as the type asked for.
    #[error("{path}: section {section:?} (version {version}) does not decode: {source}")]
    Decode {
        path: PathBuf,
        section: String,
        version: u32,
        #[source]
        source: postcard::Error,
    },

    /// A value could not be encoded into a section.
    #[error("section {section:?}: cannot encode: {source}")]
    Encode {
        section: String,
        #[source]
        source: postcard::Error,
    },

    /// `put` was called twice with the same name.
    #[error("section {section:?} written twice")]
    DuplicateSection { section: String },

    /// A section name that cannot be stored (empty, or longer than 65535 bytes).
    #[error("section name {section:?} is empty or too long")]
    BadSectionName { section: String },

    /// A dirty page number lies outside guest RAM.
    #[error("dirty page {page} is outside guest RAM ({pages} pages)")]
    PageOutOfRange { page: u64, pages: u64 },

    /// Guest RAM (or a memory length) that is not a whole number of pages.
    #[error("memory length {len:#x} is not a multiple of the {page_size}-byte page")]
    Unaligned { len: u64, page_size: u64 },

    /// The memory image is not the size the caller (or state.bin) says guest RAM is.
    #[error("{path}: memory image is {actual} bytes, guest RAM is {expected}")]
    MemorySize { path: PathBuf, expected: u64, actual: u64 },

    /// A full-memory operation on a diff snapshot, or the other way round.
    #[error("{path}: this is a {found} memory image, a {wanted} one is needed here")]
    MemoryKind { path: PathBuf, found: &'static str, wanted: &'static str },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an `io::Error` with the file and the operation, for `map_err`.
pub(crate) fn io_err(
    path: impl Into<PathBuf>,
    op: &'static str,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, op, source }
}
