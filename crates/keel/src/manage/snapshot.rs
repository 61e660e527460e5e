//! `keel snapshot NAME DIR`, `keel restore DIR [NAME]` and `keel clone DIR NAME...`: freezing
//! a running VM to files and bringing it back, once or many times, as VMs of the store, all
//! through the VMMs' APIs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_devices::virtio::config::DiskFormat;
use keel_snapshot::Snapshot;
use keel_vmm::config::{format_mac, generated_mac};
use keel_vmm::VmFile;
use serde_json::json;

use super::commands::{launch, Launch, ManageError};
use super::progress::put_with_progress;
use super::status::probe;
use super::store::{validate_name, write_atomic, Store, StoreError, VmDir};

/// Writing a large guest's memory takes a while; the request waits for all of it.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

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
    let dir = absolute(dir)?;
    let body = json!({
        "snapshot_path": dir,
        "snapshot_type": if diff { "Diff" } else { "Full" },
        "leave_paused": leave_paused,
    });
    let line = |p: &serde_json::Value| {
        let (done, total) = (p["done_bytes"].as_u64()?, p["total_bytes"].as_u64()?);
        (total > 0).then(|| format!("snapshot: {} / {} MiB", done >> 20, total >> 20))
    };
    let answer = put_with_progress(&vm, SNAPSHOT_TIMEOUT, "/snapshot/create", &body, line);
    let report = answer.map_err(|source| ManageError::Api {
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

/// `keel restore DIR [NAME] [--paused] [--accel ENGINE]`: a new VM in the store, made from
/// the snapshot's VM file, that goes on from the snapshot as the same machine (same MACs,
/// same vsock CID), on the snapshot's engine or on `accel`.
pub fn restore(
    store: &Store,
    dir: &Path,
    name: Option<&str>,
    paused: bool,
    accel: Option<&str>,
) -> Result<(), ManageError> {
    check_accel(accel)?;
    let dir = absolute(dir)?;
    let name = match name {
        Some(n) => n.to_string(),
        None => default_name(&dir)?,
    };
    vm_from_snapshot(store, &dir, &name, &Identity::Same, accel)?;
    start_restored(store, &dir, &name, paused)?;
    let how = if paused { "paused" } else { "running" };
    println!("{name}: restored from {} ({how})", dir.display());
    Ok(())
}

/// `keel clone SNAPSHOT NAME... [--tap TEMPLATE] [--paused] [--accel ENGINE]`: many VMs
/// from one snapshot, each with its own disk overlays, MAC addresses, vsock CID and socket.
/// Their memory is the snapshot's, mapped copy-on-write: the clones share every page none of
/// them wrote. They run on the snapshot's engine, or on `accel`.
pub fn clone(
    store: &Store,
    dir: &Path,
    names: &[String],
    tap: Option<&str>,
    paused: bool,
    accel: Option<&str>,
) -> Result<(), ManageError> {
    check_accel(accel)?;
    let dir = absolute(dir)?;
    // Check every name before making any clone.
    for name in names {
        validate_name(name)?;
        if store.vm(name).is_ok() {
            return Err(StoreError::Exists(name.clone()).into());
        }
    }
    for (cid, (index, name)) in (next_free_cid(store)..).zip(names.iter().enumerate()) {
        let identity = Identity::Clone { index, tap, cid };
        let made = vm_from_snapshot(store, &dir, name, &identity, accel)?;
        start_restored(store, &dir, name, paused)?;
        println!("{name}: cloned from {}{made}", dir.display());
    }
    Ok(())
}

/// How a VM made from a snapshot relates to the one that was saved.
pub(super) enum Identity<'a> {
    /// The same machine (`keel restore`).
    Same,
    /// A new one: clone number `index`, its TAP devices named from `tap` (`{name}` and `{n}`
    /// replaced), its vsock CID `cid`.
    Clone { index: usize, tap: Option<&'a str>, cid: u64 },
}

/// Makes VM `name` from the snapshot in `dir` (see [`fill_from_snapshot`]); nothing is left
/// when that fails. Returns what a clone got, for the report.
fn vm_from_snapshot(
    store: &Store,
    dir: &Path,
    name: &str,
    identity: &Identity<'_>,
    accel: Option<&str>,
) -> Result<String, ManageError> {
    validate_name(name)?;
    if store.vm(name).is_ok() {
        return Err(StoreError::Exists(name.to_string()).into());
    }
    let vm_dir = store.create(name)?;
    let made = fill_from_snapshot(&vm_dir, dir, identity, None, accel);
    if made.is_err() {
        let _ = vm_dir.remove();
    }
    made
}

/// Writes the VM file of `vm_dir` from the snapshot in `dir`: the snapshot's, with a qcow2
/// overlay in the VM's directory over each disk the snapshot holds (the snapshot itself is
/// never written), for a clone new MACs, TAPs and vsock CID, with `boot` the kernel,
/// initrd and firmware that file names, and with `accel` that engine instead of the
/// snapshot's. Returns what a clone got, for the report.
pub(super) fn fill_from_snapshot(
    vm_dir: &VmDir,
    dir: &Path,
    identity: &Identity<'_>,
    boot: Option<&VmFile>,
    accel: Option<&str>,
) -> Result<String, ManageError> {
    let name = vm_dir.name.as_str();
    let bad = |e: &dyn std::fmt::Display| ManageError::BadPath(e.to_string());
    let snapshot = Snapshot::open(dir).map_err(|e| bad(&e))?;
    let text = keel_vmm::snapshot::vm_file_of(&snapshot).map_err(|e| bad(&e))?;
    let mut vm = VmFile::parse(&text, &snapshot.dir().join(keel_snapshot::STATE_FILE))?;
    if let Some(boot) = boot {
        vm.kernel.clone_from(&boot.kernel);
        vm.initrd.clone_from(&boot.initrd);
        vm.firmware.clone_from(&boot.firmware);
    }
    if let Some(accel) = accel {
        // The machine state in a snapshot is the same for either engine: translated code is
        // not part of it, a restored translator starts with an empty cache.
        vm.accel = Some(accel.to_string());
        if accel == "interp" {
            vm.jit = None;
        }
    }
    for (i, disk) in vm.disk.iter_mut().enumerate() {
        if disk.path.is_absolute() {
            continue;
        }
        let base = dir.join(&disk.path);
        let overlay = vm_dir.path.join(format!("disk{i}.qcow2"));
        let format = keel_block::detect_format(&base).map_err(|e| bad(&e))?;
        keel_block::create_qcow2_overlay(&overlay, &base, format).map_err(|e| bad(&e))?;
        disk.path = overlay;
        disk.format = Some(DiskFormat::Qcow2);
    }
    let mut report = String::new();
    if let Identity::Clone { index, tap, cid } = identity {
        for net in &mut vm.net {
            let Some(template) = tap else {
                return Err(ManageError::BadPath(format!(
                    "the snapshot's VM has a network interface on TAP {}: give each clone \
                     its own TAP device with --tap TEMPLATE (e.g. --tap kc{{n}}; {{n}} is \
                     the clone's number, {{name}} its name)",
                    net.tap
                )));
            };
            net.tap = template.replace("{name}", name).replace("{n}", &index.to_string());
            let mac = format_mac(&generated_mac(name, &net.tap));
            report.push_str(&format!(", {} with MAC {mac}", net.tap));
            net.mac = Some(mac);
        }
        if let Some(vsock) = &mut vm.vsock {
            vsock.cid = *cid;
            vsock.uds = vm_dir.path.join("vsock.sock");
            report.push_str(&format!(", vsock CID {cid} on {}", vsock.uds.display()));
        }
        vm.validate(&format!("the VM file of clone {name}"))?;
    }
    let origin = match identity {
        Identity::Same => format!("restored from {}", dir.display()),
        Identity::Clone { .. } => format!("cloned from {}", dir.display()),
    };
    let text = format!("# Made by keel: {origin}.\n{}", vm.to_toml());
    write_atomic(&vm_dir.vm_file(), text.as_bytes())?;
    VmFile::load(&vm_dir.vm_file())?;
    Ok(report)
}

/// Starts VM `name` from the snapshot; a VM that cannot start is removed again, so a failed
/// restore leaves nothing that looks made.
pub(super) fn start_restored(
    store: &Store,
    dir: &Path,
    name: &str,
    paused: bool,
) -> Result<(), ManageError> {
    if let Err(e) = launch(store, name, Launch::Restore { snapshot: dir, paused }) {
        if let Ok(vm) = store.vm(name) {
            let _ = vm.remove();
        }
        return Err(e);
    }
    Ok(())
}

/// A vsock CID no VM in the store uses (clones get their own; CIDs 0-2 are reserved).
fn next_free_cid(store: &Store) -> u64 {
    let used = store
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|vm| VmFile::load(&vm.vm_file()).ok()?.vsock.map(|v| v.cid));
    used.max().map_or(3, |c| c + 1).max(3)
}

/// Checks an engine given with `--accel` before anything is made.
fn check_accel(accel: Option<&str>) -> Result<(), ManageError> {
    if let Some(accel) = accel {
        let vm = VmFile { accel: Some(accel.to_string()), ..VmFile::default() };
        vm.validate("--accel")?;
    }
    Ok(())
}

fn absolute(dir: &Path) -> Result<PathBuf, ManageError> {
    std::path::absolute(dir).map_err(|e| ManageError::BadPath(format!("{}: {e}", dir.display())))
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
