//! A snapshot directory: `state.bin`, `memory.bin` and the completion marker `complete`.
//!
//! Crash safety comes from ordering. [`SnapshotWriter::create`] first removes any old marker
//! (and syncs the directory), so from then on the directory does not look complete. Files are
//! written under `*.partial` names and fsynced; [`SnapshotWriter::finish`] renames them into
//! place, syncs the directory, and only then writes the marker (itself via a partial name and a
//! rename). A writer that dies at any point leaves no marker, and [`Snapshot::open`] refuses a
//! directory without one. The marker records `state.bin`'s checksum, so a `state.bin` from a
//! different snapshot dropped into the directory is refused too.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;
use serde::Serialize;

use crate::error::{io_err, Error, Result};
use crate::memory::{self, MemoryInfo, MemoryKind};
use crate::state::{State, StateWriter};

/// The state file's name in a snapshot directory.
pub const STATE_FILE: &str = "state.bin";
/// The memory image's name in a snapshot directory.
pub const MEMORY_FILE: &str = "memory.bin";
/// The completion marker's name: written last, and a snapshot without it is refused.
pub const COMPLETE_FILE: &str = "complete";
/// The section (reserved) in which the writer records the memory image's [`MemoryInfo`].
pub const MEMORY_SECTION: &str = "snapshot.memory";
const MEMORY_SECTION_VERSION: u32 = 1;

const MARKER_PREFIX: &str = "keel snapshot complete\nstate.bin crc32c ";

fn partial(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".partial");
    PathBuf::from(name)
}

/// Makes renames and creations in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir, "fsync directory"))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(io_err(path, "create"))?;
    file.write_all(bytes).map_err(io_err(path, "write"))?;
    file.sync_all().map_err(io_err(path, "fsync"))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(io_err(from, "rename"))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path, "remove")(e)),
        _ => Ok(()),
    }
}

/// Writes one snapshot directory. Dropping it without [`SnapshotWriter::finish`] removes what
/// it wrote so far and leaves the directory refused by [`Snapshot::open`].
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    state: StateWriter,
    memory: Option<MemoryInfo>,
    finished: bool,
}

impl SnapshotWriter {
    /// Starts a snapshot in `dir`, creating it if needed. A complete snapshot already there is
    /// invalidated at once (its marker removed) and replaced by `finish`.
    pub fn create(dir: &Path) -> Result<SnapshotWriter> {
        fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
        remove_if_present(&dir.join(COMPLETE_FILE))?;
        sync_dir(dir)?;
        Ok(SnapshotWriter {
            dir: dir.to_owned(),
            state: StateWriter::new(),
            memory: None,
            finished: false,
        })
    }

    /// The directory being written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The memory image written so far, as `finish` will record it.
    pub fn memory(&self) -> Option<&MemoryInfo> {
        self.memory.as_ref()
    }

    /// The state being collected, for `put`/`put_raw`.
    pub fn state(&mut self) -> &mut StateWriter {
        &mut self.state
    }

    /// Adds a section to `state.bin` (see [`StateWriter::put`]).
    pub fn put<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        version: u32,
        value: &T,
    ) -> Result<()> {
        self.state.put(name, version, value)
    }

    /// Writes all of guest RAM (see [`memory::write_memory`]).
    pub fn write_memory(&mut self, ram: &[u8], progress: impl FnMut(u64, u64)) -> Result<()> {
        let path = partial(&self.dir.join(MEMORY_FILE));
        self.memory = Some(memory::write_memory(&path, ram, progress)?);
        Ok(())
    }

    /// Writes only the pages dirtied since the previous snapshot (see
    /// [`memory::write_memory_diff`]); restore applies it over that snapshot's memory.
    pub fn write_memory_diff(
        &mut self,
        ram: &[u8],
        dirty_pages: impl IntoIterator<Item = u64>,
        progress: impl FnMut(u64, u64),
    ) -> Result<()> {
        let path = partial(&self.dir.join(MEMORY_FILE));
        self.memory = Some(memory::write_memory_diff(&path, ram, dirty_pages, progress)?);
        Ok(())
    }

    /// Writes `state.bin`, moves everything into place and marks the snapshot complete.
    /// Returns the directory.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some(info) = &self.memory {
            self.state.put(MEMORY_SECTION, MEMORY_SECTION_VERSION, info)?;
        }
        let bytes = self.state.encode();
        let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes"));
        let state = self.dir.join(STATE_FILE);
        write_synced(&partial(&state), &bytes)?;

        let memory = self.dir.join(MEMORY_FILE);
        if self.memory.is_some() {
            rename(&partial(&memory), &memory)?;
        } else {
            // A state-only snapshot must not pick up an older snapshot's memory.
            remove_if_present(&memory)?;
        }
        rename(&partial(&state), &state)?;
        // The renames must be on disk before the marker can be.
        sync_dir(&self.dir)?;

        let marker = self.dir.join(COMPLETE_FILE);
        write_synced(&partial(&marker), format!("{MARKER_PREFIX}{crc:08x}\n").as_bytes())?;
        rename(&partial(&marker), &marker)?;
        sync_dir(&self.dir)?;
        self.finished = true;
        Ok(self.dir.clone())
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: leftovers are harmless (never complete-looking), just untidy.
            for name in [STATE_FILE, MEMORY_FILE, COMPLETE_FILE] {
                let _ = fs::remove_file(partial(&self.dir.join(name)));
            }
        }
    }
}

/// A complete, verified snapshot directory.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    state: State,
    memory: Option<MemoryInfo>,
}

impl Snapshot {
    /// Opens `dir`: checks the marker, reads and verifies `state.bin`, and checks that
    /// `memory.bin` (if the snapshot has memory) is there at its full size. Memory is not read.
    pub fn open(dir: &Path) -> Result<Snapshot> {
        if !dir.is_dir() {
            return Err(Error::Missing { path: dir.to_owned(), what: "snapshot directory" });
        }
        let marker_path = dir.join(COMPLETE_FILE);
        let marker = match fs::read_to_string(&marker_path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Incomplete { dir: dir.to_owned() })
            }
            Err(e) => return Err(io_err(&marker_path, "read")(e)),
        };
        let state_path = dir.join(STATE_FILE);
        let state = State::read(&state_path)?;

        let marker_crc = marker
            .strip_prefix(MARKER_PREFIX)
            .and_then(|rest| u32::from_str_radix(rest.trim_end(), 16).ok());
        if marker_crc != Some(state.checksum()) {
            return Err(Error::Malformed {
                path: marker_path,
                detail: "the completion marker does not belong to this state.bin (files from \
                         different snapshots?); take the snapshot again"
                    .to_owned(),
            });
        }

        let memory = if state.contains(MEMORY_SECTION) {
            let (_, info): (u32, MemoryInfo) =
                state.get_supported(MEMORY_SECTION, 1, MEMORY_SECTION_VERSION)?;
            let path = dir.join(MEMORY_FILE);
            if info.page_size != memory::PAGE_SIZE || info.len % memory::PAGE_SIZE != 0 {
                return Err(Error::Malformed {
                    path: state_path,
                    detail: format!(
                        "memory of {:#x} bytes in {}-byte pages",
                        info.len, info.page_size
                    ),
                });
            }
            if let MemoryKind::Diff(pages) = &info.kind {
                pages.check(info.len / memory::PAGE_SIZE)?;
            }
            let actual = match fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::Missing { path, what: "memory image" })
                }
                Err(e) => return Err(io_err(&path, "stat")(e)),
            };
            if actual < info.len {
                return Err(Error::Truncated { path, expected: info.len, actual });
            }
            if actual > info.len {
                return Err(Error::MemorySize { path, expected: info.len, actual });
            }
            Some(info)
        } else {
            None
        };
        Ok(Snapshot { dir: dir.to_owned(), state, memory })
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The verified state sections.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The memory image's description; `None` for a state-only snapshot.
    pub fn memory(&self) -> Option<&MemoryInfo> {
        self.memory.as_ref()
    }

    /// The memory image's path.
    pub fn memory_path(&self) -> PathBuf {
        self.dir.join(MEMORY_FILE)
    }

    fn memory_of_kind(&self, wanted: &'static str) -> Result<&MemoryInfo> {
        let path = self.memory_path();
        let info = self.memory.as_ref().ok_or(Error::Missing {
            path: path.clone(),
            what: "memory image (this snapshot holds state only)",
        })?;
        if info.kind.name() != wanted {
            return Err(Error::MemoryKind { path, found: info.kind.name(), wanted });
        }
        Ok(info)
    }

    /// Maps a full snapshot's memory copy-on-write (see [`memory::map_memory_cow`]).
    pub fn map_memory(&self) -> Result<MmapMut> {
        let info = self.memory_of_kind("full")?;
        memory::map_memory_cow(&self.memory_path(), info.len)
    }

    /// Applies a diff snapshot's pages over `ram`, the previous snapshot's restored memory.
    pub fn apply_memory_diff(&self, ram: &mut [u8]) -> Result<()> {
        let info = self.memory_of_kind("diff")?;
        let MemoryKind::Diff(pages) = &info.kind else { unreachable!("checked above") };
        if ram.len() as u64 != info.len {
            return Err(Error::MemorySize {
                path: self.memory_path(),
                expected: ram.len() as u64,
                actual: info.len,
            });
        }
        memory::apply_memory_diff(&self.memory_path(), pages, ram)
    }
}
