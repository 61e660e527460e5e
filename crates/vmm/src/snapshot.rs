//! Snapshots of a running VM: taking one (full or diff) into a directory, and starting a VM
//! from one.
//!
//! A snapshot directory (see keel-snapshot for the container) holds these sections:
//! - `vm`: the VM file that describes the machine exactly (absolute paths, MACs spelled out),
//!   so that `keel restore` can rebuild it and `keel clone` can edit it;
//! - `machine`: every vCPU's and device's state ([`MachineState`]);
//! - `parent`: for a diff snapshot, the snapshot directory its pages go over;
//! - the memory image's description, written by keel-snapshot.
//!
//! Dirty-page tracking starts with the first snapshot a VM takes or is restored from, so that
//! the next one can be a diff. Its cost is nil on the vCPUs' fast path (see keel-memory).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_machine::{agent, fdt, Machine, MachineState, VirtioConfig};
use keel_memory::GuestRam;
use keel_snapshot::{
    MemoryKind, Snapshot, SnapshotWriter, COMPLETE_FILE, MEMORY_FILE, PAGE_SIZE, STATE_FILE,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::VmFile;
use crate::control::{ControlError, VmController, VmState};
use crate::runner::RunError;

/// Section names and the versions this keel writes and reads.
const VM_SECTION: &str = "vm";
const VM_VERSION: u32 = 1;
const MACHINE_SECTION: &str = "machine";
/// 2: the guest agent's UART joined the machine.
const MACHINE_VERSION: u32 = 2;
const PARENT_SECTION: &str = "parent";
const PARENT_VERSION: u32 = 1;

/// How far a diff chain may go before it is refused (a loop of parents, or a runaway chain).
const MAX_CHAIN: usize = 64;

/// What a snapshot holds of guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    /// All of guest RAM.
    Full,
    /// Only the pages written since the VM's previous snapshot (taken or restored from).
    Diff,
}

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Format(#[from] keel_snapshot::Error),
    #[error("{0}")]
    Restore(#[from] RunError),
    #[error(
        "a diff snapshot holds the pages written since the previous snapshot, and this VM has \
         none: take a full snapshot first"
    )]
    NoParent,
    #[error("{dir}: {detail}")]
    Invalid { dir: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot copy the disk image {path} into the snapshot: {detail}")]
    Disk { path: PathBuf, detail: String },
}

/// What taking a snapshot did.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub dir: PathBuf,
    pub kind: SnapshotKind,
    /// Bytes of guest memory written (zero pages are holes and not counted).
    pub memory_bytes: u64,
    /// Pages the memory image covers (all of RAM, or the dirty ones).
    pub pages: u64,
    /// How long the guest stood still for it.
    pub paused: Duration,
}

/// A VM's snapshots: takes them, and remembers the latest, which a diff snapshot goes over.
pub struct Snapshots {
    controller: Arc<VmController>,
    latest: Mutex<Option<PathBuf>>,
}

impl Snapshots {
    pub fn new(controller: Arc<VmController>) -> Snapshots {
        Snapshots { controller, latest: Mutex::new(None) }
    }

    /// Takes a snapshot into `dir`: pauses a running VM, writes its state and memory, and
    /// resumes it unless `leave_paused`. A paused VM stays paused. `progress(done, total)`
    /// reports bytes of memory written.
    pub fn create(
        &self,
        dir: &Path,
        kind: SnapshotKind,
        leave_paused: bool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<SnapshotReport, SnapshotError> {
        let dir = std::path::absolute(dir)
            .map_err(|source| SnapshotError::Io { path: dir.to_owned(), source })?;
        let parent = match kind {
            SnapshotKind::Full => None,
            SnapshotKind::Diff => Some(self.latest().ok_or(SnapshotError::NoParent)?),
        };
        if parent.as_deref() == Some(dir.as_path()) {
            return Err(SnapshotError::Invalid {
                dir,
                detail: "a diff snapshot cannot replace the snapshot it goes over; give it a \
                         directory of its own"
                    .into(),
            });
        }
        check_target(&dir)?;
        let was_running = matches!(self.controller.state(), VmState::Running);
        let started = Instant::now();
        if was_running {
            self.controller.pause()?;
        }
        let mut vm_file = VmFile::describing(self.controller.config());
        // Writable disks are copied into the snapshot (their state must match its memory);
        // its VM file names the copies relative to the snapshot directory.
        let mut disks = Vec::new();
        for (i, disk) in vm_file.disk.iter_mut().enumerate().filter(|(_, d)| !d.read_only) {
            let copy = PathBuf::from(format!("disk{i}.img"));
            disks.push((disk.path.clone(), dir.join(&copy)));
            disk.path = copy;
        }
        let vm_file = vm_file.to_toml();
        let written = self.controller.with_saved_state(|machine, state| {
            let files =
                SnapshotFiles { vm_file: &vm_file, disks: &disks, parent: parent.as_deref() };
            write_snapshot(&dir, machine, &state, &files, &mut progress)
        });
        let paused = started.elapsed();
        if was_running && !leave_paused {
            self.controller.resume()?;
        }
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        // A failed snapshot consumed a round of dirty pages: the next diff would miss them,
        // so the next snapshot must be a full one.
        *latest = None;
        let (memory_bytes, pages) = written??;
        *latest = Some(dir.clone());
        Ok(SnapshotReport { dir, kind, memory_bytes, pages, paused })
    }

    /// Starts the (not yet started) VM from the snapshot in `dir` instead of booting it. The
    /// VM's own VM file must describe the same machine (vCPUs, memory, devices); its disks,
    /// MAC addresses and vsock CID may differ (a clone's do). With `paused` the VM waits for
    /// a resume, else the guest goes on at once.
    ///
    /// Once restored, the guest agent hears the VM's identity now: `name`, a fresh RNG seed
    /// and its MACs (see `keel_machine::agent`).
    pub fn load(&self, dir: &Path, paused: bool, name: &str) -> Result<(), SnapshotError> {
        let dir = std::path::absolute(dir)
            .map_err(|source| SnapshotError::Io { path: dir.to_owned(), source })?;
        let chain = open_chain(&dir)?;
        let top = chain.last().expect("a chain has at least one snapshot");
        let (_, state): (u32, MachineState) =
            top.state().get_supported(MACHINE_SECTION, MACHINE_VERSION, MACHINE_VERSION)?;
        self.controller.start_restored(paused, |config, console| {
            let ram = restore_memory(&chain, config.memory_mib << 20)?;
            ram.start_dirty_tracking();
            Ok(Machine::restore(config, console, ram, &state)?)
        })?;
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir);
        if let Some(machine) = self.controller.machine() {
            let macs: Vec<[u8; 6]> = (self.controller.config().virtio.iter())
                .filter_map(|d| match d {
                    VirtioConfig::Net(n) => Some(n.mac),
                    _ => None,
                })
                .collect();
            machine.agent.push_input(&agent::restored_message(name, &macs));
        }
        Ok(())
    }

    /// Forgets the latest snapshot: dirty-page tracking was used for something else (a
    /// migration), so the next snapshot must be a full one.
    pub fn forget(&self) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The snapshot a diff would go over.
    pub fn latest(&self) -> Option<PathBuf> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A snapshot may go into a new or empty directory, or replace a keel snapshot; anything else
/// in the directory means the path is wrong, and nothing there is touched.
fn check_target(dir: &Path) -> Result<(), SnapshotError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(SnapshotError::Io { path: dir.to_owned(), source }),
    };
    let ours = [STATE_FILE, MEMORY_FILE, COMPLETE_FILE];
    for entry in entries {
        let entry = entry.map_err(|source| SnapshotError::Io { path: dir.to_owned(), source })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let base = name.strip_suffix(".partial").unwrap_or(&name);
        let disk_copy = base
            .strip_prefix("disk")
            .and_then(|rest| rest.strip_suffix(".img"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !ours.contains(&base) && !disk_copy {
            return Err(SnapshotError::Invalid {
                dir: dir.to_owned(),
                detail: format!(
                    "the directory holds {name}, which is not part of a keel snapshot; give an \
                     empty or new directory, or an earlier snapshot's"
                ),
            });
        }
    }
    Ok(())
}

/// The VM file a snapshot carries.
pub fn vm_file_of(snapshot: &Snapshot) -> Result<String, SnapshotError> {
    Ok(snapshot.state().get_supported::<String>(VM_SECTION, 1, VM_VERSION)?.1)
}

/// What goes into a snapshot besides the machine's state and memory.
struct SnapshotFiles<'a> {
    vm_file: &'a str,
    /// Disk images to copy: (the VM's image, the copy in the snapshot).
    disks: &'a [(PathBuf, PathBuf)],
    /// The snapshot a diff goes over.
    parent: Option<&'a Path>,
}

/// Writes the snapshot; returns the bytes and pages of memory written. Runs with the VM
/// paused and its devices held (their images flushed by `save_state`).
fn write_snapshot(
    dir: &Path,
    machine: &Machine,
    state: &MachineState,
    files: &SnapshotFiles<'_>,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(u64, u64), SnapshotError> {
    let SnapshotFiles { vm_file, disks, parent } = *files;
    let ram = &machine.ram;
    // The pages written since the last snapshot, and a fresh round for the next one.
    let dirty = if ram.is_dirty_tracking() {
        Some(ram.take_dirty_pages())
    } else {
        ram.start_dirty_tracking();
        None
    };
    let mut writer = SnapshotWriter::create(dir)?;
    writer.put(VM_SECTION, VM_VERSION, vm_file)?;
    writer.put(MACHINE_SECTION, MACHINE_VERSION, state)?;
    // SAFETY (of the borrow `frozen_bytes` hands out): the VM is paused (no vCPU runs) and
    // its device I/O thread is held by `with_saved_state`, so nothing writes guest memory
    // while the writer reads it.
    let bytes = unsafe { ram.frozen_bytes() };
    match parent {
        None => writer.write_memory(bytes, &mut *progress)?,
        Some(parent) => {
            let parent = parent.to_string_lossy().into_owned();
            writer.put(PARENT_SECTION, PARENT_VERSION, &parent)?;
            let pages = dirty.ok_or(SnapshotError::NoParent)?;
            writer.write_memory_diff(bytes, pages, &mut *progress)?;
        }
    }
    for (image, copy) in disks {
        keel_block::copy_sparse(image, copy, |_, _| {})
            .map_err(|e| SnapshotError::Disk { path: image.clone(), detail: e.to_string() })?;
    }
    let info = writer.memory().expect("memory was written above");
    let pages = match &info.kind {
        MemoryKind::Full => info.len / PAGE_SIZE,
        MemoryKind::Diff(p) => p.len(),
    };
    let written = (info.stored, pages);
    writer.finish()?;
    Ok(written)
}

/// Opens `dir` and, for a diff snapshot, the snapshots under it down to a full one. Returns
/// them from the full one up.
fn open_chain(dir: &Path) -> Result<Vec<Snapshot>, SnapshotError> {
    let mut chain = Vec::new();
    let mut next = Some(dir.to_owned());
    while let Some(d) = next.take() {
        if chain.len() == MAX_CHAIN {
            return Err(SnapshotError::Invalid {
                dir: dir.to_owned(),
                detail: format!("more than {MAX_CHAIN} diff snapshots in a row (a loop?)"),
            });
        }
        let snapshot = Snapshot::open(&d)?;
        match snapshot.memory().map(|m| &m.kind) {
            Some(MemoryKind::Full) => {}
            Some(MemoryKind::Diff(_)) => {
                let (_, parent): (u32, String) =
                    snapshot.state().get_supported(PARENT_SECTION, 1, PARENT_VERSION)?;
                next = Some(PathBuf::from(parent));
            }
            None => {
                return Err(SnapshotError::Invalid {
                    dir: d,
                    detail: "the snapshot holds no memory image; it cannot start a VM".into(),
                })
            }
        }
        chain.push(snapshot);
    }
    chain.reverse();
    Ok(chain)
}

/// Guest RAM from a chain of snapshots: the full one mapped copy-on-write (nothing is read
/// until the guest touches it, and VMs restored from one snapshot share its pages), then each
/// diff's pages copied over it.
fn restore_memory(chain: &[Snapshot], size: u64) -> Result<Arc<GuestRam>, RunError> {
    let invalid = |s: &Snapshot, detail: String| {
        RunError::Snapshot(format!("{}: {detail}", s.dir().display()))
    };
    let base = &chain[0];
    let info = base.memory().expect("checked by open_chain");
    if info.len != size {
        return Err(invalid(
            base,
            format!(
                "the snapshot has {} MiB of guest memory, the VM file {} MiB",
                info.len >> 20,
                size >> 20
            ),
        ));
    }
    let path = base.memory_path();
    let file = File::open(&path).map_err(|e| invalid(base, format!("{}: {e}", path.display())))?;
    let ram = GuestRam::from_file(fdt::RAM_BASE, size, &file, 0)
        .map_err(|e| invalid(base, e.to_string()))?;
    let mut buf = Vec::new();
    for diff in &chain[1..] {
        let Some(MemoryKind::Diff(pages)) = diff.memory().map(|m| &m.kind) else {
            return Err(invalid(diff, "expected a diff snapshot".into()));
        };
        let path = diff.memory_path();
        let file =
            File::open(&path).map_err(|e| invalid(diff, format!("{}: {e}", path.display())))?;
        for run in pages.runs() {
            let (offset, len) = (run.first * PAGE_SIZE, run.count * PAGE_SIZE);
            buf.resize(len as usize, 0);
            file.read_exact_at(&mut buf, offset)
                .map_err(|e| invalid(diff, format!("{}: {e}", path.display())))?;
            ram.write_slice(fdt::RAM_BASE + offset, &buf)
                .map_err(|e| invalid(diff, e.to_string()))?;
        }
    }
    Ok(Arc::new(ram))
}
