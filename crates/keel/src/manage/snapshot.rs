//! `keel snapshot NAME DIR` and `keel restore DIR [NAME]`: freezing a running VM to files and
//! bringing it back as a VM of the store, both through the VMM's API.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use keel_snapshot::Snapshot;
use serde_json::json;

use super::commands::{launch, Launch, ManageError};
use super::status::{api, probe};
use super::store::{validate_name, write_atomic, Store, StoreError};

/// Writing a large guest's memory takes a while; the request waits for all of it.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the progress line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// `keel snapshot NAME DIR [--diff] [--leave-paused]`.
pub fn snapshot(
    store: &Store,
    name: &str,
    dir: &Path,
    diff: bool,
    leave_paused: bool,
) -> Result<(), ManageError> {
    let vm = store.vm(name)?;
    let state = probe(&vm).state;
    if !state.is_live() {
        return Err(ManageError::NotRunning { name: vm.name, state });
    }
    let dir = std::path::absolute(dir)
        .map_err(|e| ManageError::BadPath(format!("{}: {e}", dir.display())))?;
    let body = json!({
        "snapshot_path": dir,
        "snapshot_type": if diff { "Diff" } else { "Full" },
        "leave_paused": leave_paused,
    });
    let done = AtomicBool::new(false);
    let answer = std::thread::scope(|scope| {
        scope.spawn(|| show_progress(&vm, &done, "snapshot"));
        let answer = api(&vm, SNAPSHOT_TIMEOUT).put("/snapshot/create", &body);
        done.store(true, Ordering::SeqCst);
        answer
    });
    let report = answer.and_then(|r| r.json()).map_err(|source| ManageError::Api {
        name: name.to_string(),
        action: "snapshot",
        source,
    })?;
    let mib = report["memory_bytes"].as_u64().unwrap_or(0) as f64 / f64::from(1 << 20);
    println!(
        "{} snapshot of {name} in {}: {mib:.1} MiB of memory, {} pages; the guest stood still {} ms",
        report["snapshot_type"].as_str().unwrap_or("?"),
        dir.display(),
        report["pages"],
        report["paused_ms"],
    );
    Ok(())
}

/// `keel restore DIR [NAME] [--paused]`: a new VM in the store, made from the snapshot's VM
/// file, that goes on from the snapshot.
pub fn restore(
    store: &Store,
    dir: &Path,
    name: Option<&str>,
    paused: bool,
) -> Result<(), ManageError> {
    let dir = std::path::absolute(dir)
        .map_err(|e| ManageError::BadPath(format!("{}: {e}", dir.display())))?;
    let snapshot = Snapshot::open(&dir).map_err(|e| ManageError::BadPath(e.to_string()))?;
    let vm_file = keel_vmm::snapshot::vm_file_of(&snapshot)
        .map_err(|e| ManageError::BadPath(e.to_string()))?;
    let name = match name {
        Some(n) => n.to_string(),
        None => default_name(&dir)?,
    };
    create_from_vm_file(store, &name, &vm_file, &format!("restored from {}", dir.display()))?;
    if let Err(e) = launch(store, &name, Launch::Restore { snapshot: &dir, paused }) {
        // A restore that failed leaves no VM behind that looks made.
        if let Ok(vm) = store.vm(&name) {
            let _ = vm.remove();
        }
        return Err(e);
    }
    println!(
        "{name}: restored from {} ({})",
        dir.display(),
        if paused { "paused" } else { "running" }
    );
    Ok(())
}

/// A new VM `name` whose VM file is `text` (a snapshot's, maybe edited for a clone).
pub fn create_from_vm_file(
    store: &Store,
    name: &str,
    text: &str,
    origin: &str,
) -> Result<(), ManageError> {
    validate_name(name)?;
    if store.vm(name).is_ok() {
        return Err(StoreError::Exists(name.to_string()).into());
    }
    let vm = store.create(name)?;
    let text = format!("# Made by keel: {origin}.\n{text}");
    let written = write_atomic(&vm.vm_file(), text.as_bytes())
        .map_err(ManageError::from)
        .and_then(|()| keel_vmm::VmFile::load(&vm.vm_file()).map(drop).map_err(ManageError::from));
    if let Err(e) = written {
        let _ = vm.remove();
        return Err(e);
    }
    Ok(())
}

/// The snapshot directory's name, when it is a valid VM name.
fn default_name(dir: &Path) -> Result<String, ManageError> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    validate_name(&name).map_err(|_| {
        ManageError::BadPath(format!(
            "{}: the directory's name is not a VM name; give one: keel restore {} NAME",
            dir.display(),
            dir.display()
        ))
    })?;
    Ok(name)
}

/// Prints how far the VMM's long operation has come until `done`: a line that updates in
/// place on a terminal, nothing otherwise (scripts get the summary line).
fn show_progress(vm: &super::store::VmDir, done: &AtomicBool, what: &str) {
    let mut stderr = std::io::stderr();
    if !stderr.is_terminal() {
        return;
    }
    let client = api(vm, Duration::from_secs(2));
    let mut shown = false;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(PROGRESS_EVERY);
        let Ok(p) = client.get_json("/progress") else { continue };
        let (Some(d), Some(t)) = (p["done_bytes"].as_u64(), p["total_bytes"].as_u64()) else {
            continue;
        };
        if t > 0 && !done.load(Ordering::SeqCst) {
            let _ = write!(stderr, "\r{what}: {} / {} MiB", d >> 20, t >> 20);
            shown = true;
        }
    }
    if shown {
        let _ = writeln!(stderr);
    }
}
