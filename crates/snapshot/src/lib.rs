//! keel's snapshot container: the on-disk format of a frozen VM, independent of what the VM
//! puts in it.
//!
//! A snapshot is a directory:
//!
//! - `state.bin`: magic, format version, a header (creation time, keel version), then named,
//!   versioned sections of serde-encoded state (vCPUs, devices, the VM file...), and a CRC32C
//!   over all of it. See [`state`] for the byte layout.
//! - `memory.bin`: guest RAM, byte for byte, sparse (zero pages are holes), so a restore maps it
//!   copy-on-write instead of reading it. A diff snapshot's `memory.bin` has the same layout
//!   but holds only the dirtied pages; which ones is recorded in `state.bin`. See [`memory`].
//! - `complete`: written last; a directory without it is an interrupted snapshot.
//!
//! [`SnapshotWriter`] writes a directory safely, [`Snapshot`] opens and verifies one. The
//! memory functions can also be used on their own (live migration streams pages instead).

mod dir;
mod error;
pub mod memory;
pub mod state;

pub use dir::{Snapshot, SnapshotWriter, COMPLETE_FILE, MEMORY_FILE, MEMORY_SECTION, STATE_FILE};
pub use error::{Error, Result};
pub use memmap2::MmapMut;
pub use memory::{
    apply_memory_diff, map_memory_cow, write_memory, write_memory_diff, DirtyPages, MemoryInfo,
    MemoryKind, PageRun, PAGE_SIZE,
};
pub use state::{Header, State, StateWriter, FORMAT_VERSION};
