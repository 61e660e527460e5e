//! `keel export NAME FILE [--snapshot DIR]` and `keel import FILE NAME`: a VM as one file, a
//! virtual appliance that needs nothing from the host it was made on.
//!
//! The file is a gzip-compressed tar archive:
//!
//! ```text
//! keel-appliance        format=1, the VM's name, whether a snapshot is inside
//! vm.toml               the VM file, its paths relative to the archive
//! boot/vmlinux          the kernel, initrd and firmware the VM file names
//! boot/initrd.img
//! disks/disk<N>.img     each disk as the guest sees it, raw (qcow2 layers resolved)
//! snapshot/...          with --snapshot: a full snapshot (state, memory, its disks, raw)
//! ```
//!
//! Importing unpacks it into the new VM's directory (`vms/NAME/appliance/`). Without a
//! snapshot the VM is created, ready for `keel start`; with one it is restored from it at
//! once, so the appliance goes on where it was exported.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use keel_machine::Firmware;
use keel_snapshot::{MemoryKind, Snapshot, COMPLETE_FILE, MEMORY_FILE, STATE_FILE};
use keel_vmm::VmFile;

use super::commands::ManageError;
use super::snapshot::{fill_from_snapshot, start_restored, Identity};
use super::status::probe;
use super::store::{validate_name, write_atomic, Store, StoreError};

const MANIFEST: &str = "keel-appliance";
const FORMAT: u32 = 1;
/// Where an imported appliance's files live in its VM's directory.
const UNPACKED: &str = "appliance";

fn bad(what: impl std::fmt::Display) -> ManageError {
    ManageError::BadPath(what.to_string())
}

/// `keel export NAME FILE [--snapshot DIR]`.
pub fn export(
    store: &Store,
    name: &str,
    file: &Path,
    snapshot: Option<&Path>,
) -> Result<(), ManageError> {
    let vm = store.vm(name)?;
    let state = probe(&vm).state;
    if snapshot.is_none() && state.is_live() {
        return Err(bad(format!(
            "VM {name} is {state}: its disks are in use. Stop it first, or export a snapshot of \
             it: keel snapshot {name} DIR && keel export {name} {} --snapshot DIR",
            file.display()
        )));
    }
    let mut vm_file = VmFile::load(&vm.vm_file())?;
    if vm_file.kernel.is_none() && vm_file.firmware() != Firmware::None {
        let image = crate::image::default_image().map_err(|e| bad(format!("{e:#}")))?;
        vm_file.kernel = Some(image.kernel);
        vm_file.initrd = vm_file.initrd.or(Some(image.initrd));
    }
    // (path on this host, name in the archive)
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut disks: Vec<(PathBuf, String)> = Vec::new();
    for (slot, name) in
        [(&mut vm_file.kernel, "boot/vmlinux"), (&mut vm_file.initrd, "boot/initrd.img")]
    {
        if let Some(path) = slot.replace(PathBuf::from(name)) {
            files.push((path, name.to_string()));
        }
    }
    if let Firmware::Path(path) = vm_file.firmware() {
        files.push((path, "boot/firmware".into()));
        vm_file.firmware = Some("boot/firmware".into());
    }
    if snapshot.is_some() {
        // The snapshot's own VM file and disk copies describe the VM; its live disks are in
        // use and not what the snapshot's memory expects.
        vm_file.disk.clear();
    }
    for (i, disk) in vm_file.disk.iter_mut().enumerate() {
        let name = format!("disks/disk{i}.img");
        disks.push((std::mem::replace(&mut disk.path, PathBuf::from(&name)), name));
        disk.format = None;
    }
    if let Some(dir) = snapshot {
        let snap = Snapshot::open(dir).map_err(bad)?;
        if !matches!(snap.memory().map(|m| &m.kind), Some(MemoryKind::Full)) {
            return Err(bad(format!(
                "{}: only a full snapshot can go into an appliance (a diff needs the snapshots \
                 under it); take one with keel snapshot",
                dir.display()
            )));
        }
        for f in [STATE_FILE, MEMORY_FILE, COMPLETE_FILE] {
            files.push((dir.join(f), format!("snapshot/{f}")));
        }
        let text = keel_vmm::snapshot::vm_file_of(&snap).map_err(bad)?;
        let saved = VmFile::parse(&text, &dir.join(STATE_FILE))?;
        for disk in saved.disk.iter().filter(|d| d.path.is_relative()) {
            let name = format!("snapshot/{}", disk.path.display());
            disks.push((dir.join(&disk.path), name));
        }
    }
    let manifest = format!(
        "format={FORMAT}\nname={name}\nsnapshot={}\n",
        if snapshot.is_some() { "yes" } else { "no" }
    );
    let partial = partial_name(file);
    let written =
        write_archive(&partial, &manifest, &vm_file.to_toml(), &files, &disks).and_then(|()| {
            std::fs::rename(&partial, file).map_err(|e| bad(format!("{}: {e}", file.display())))
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    println!(
        "{name}: exported to {} ({:.1} MiB)",
        file.display(),
        size as f64 / f64::from(1 << 20)
    );
    Ok(())
}

fn partial_name(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn write_archive(
    path: &Path,
    manifest: &str,
    vm_toml: &str,
    files: &[(PathBuf, String)],
    disks: &[(PathBuf, String)],
) -> Result<(), ManageError> {
    let io = |what: &Path| {
        let what = what.to_owned();
        move |e: std::io::Error| bad(format!("{}: {e}", what.display()))
    };
    let out = File::create(path).map_err(io(path))?;
    let mut tar = tar::Builder::new(GzEncoder::new(out, flate2::Compression::fast()));
    let mut add = |name: &str, size: u64, data: &mut dyn Read| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, data)
    };
    add(MANIFEST, manifest.len() as u64, &mut manifest.as_bytes()).map_err(io(path))?;
    add("vm.toml", vm_toml.len() as u64, &mut vm_toml.as_bytes()).map_err(io(path))?;
    for (source, name) in files {
        let mut f = File::open(source).map_err(io(source))?;
        let size = f.metadata().map_err(io(source))?.len();
        eprintln!("keel: export: {name} ({} MiB)", size >> 20);
        add(name, size, &mut f).map_err(io(source))?;
    }
    for (source, name) in disks {
        let mut disk = keel_block::DiskReader::open(source).map_err(bad)?;
        eprintln!("keel: export: {name} ({} MiB disk)", disk.size() >> 20);
        add(name, disk.size(), &mut disk).map_err(io(source))?;
    }
    let gz = tar.into_inner().map_err(io(path))?;
    let out = gz.finish().map_err(io(path))?;
    out.sync_all().map_err(io(path))
}

/// `keel import FILE NAME`.
pub fn import(store: &Store, file: &Path, name: &str) -> Result<(), ManageError> {
    validate_name(name)?;
    if store.vm(name).is_ok() {
        return Err(StoreError::Exists(name.to_string()).into());
    }
    let vm_dir = store.create(name)?;
    let root = vm_dir.path.join(UNPACKED);
    let made = (|| -> Result<bool, ManageError> {
        let manifest = unpack(file, &root)?;
        let format = manifest.lines().find_map(|l| l.strip_prefix("format="));
        if format != Some(&FORMAT.to_string()) {
            return Err(bad(format!(
                "{}: appliance format {} is not one this keel reads (format {FORMAT})",
                file.display(),
                format.unwrap_or("(none)")
            )));
        }
        // VmFile::load makes the archive's relative paths absolute, under `root`.
        let vm = VmFile::load(&root.join("vm.toml"))?;
        let with_snapshot = manifest.lines().any(|l| l == "snapshot=yes");
        if with_snapshot {
            fill_from_snapshot(&vm_dir, &root.join("snapshot"), &Identity::Same, Some(&vm), None)?;
        } else {
            let text =
                format!("# Made by keel: imported from {}.\n{}", file.display(), vm.to_toml());
            write_atomic(&vm_dir.vm_file(), text.as_bytes())?;
        }
        Ok(with_snapshot)
    })();
    let with_snapshot = match made {
        Ok(s) => s,
        Err(e) => {
            let _ = vm_dir.remove();
            return Err(e);
        }
    };
    if with_snapshot {
        start_restored(store, &root.join("snapshot"), name, false)?;
        println!(
            "{name}: imported from {} and restored from its snapshot (running)",
            file.display()
        );
    } else {
        println!("{name}: imported from {}; `keel start {name}` boots it", file.display());
    }
    Ok(())
}

/// Unpacks the archive into `root`: only the names an appliance has, regular files, each
/// written sparse. Returns the manifest.
fn unpack(file: &Path, root: &Path) -> Result<String, ManageError> {
    let io = |what: &Path| {
        let what = what.to_owned();
        move |e: std::io::Error| bad(format!("{}: {e}", what.display()))
    };
    let f = File::open(file).map_err(io(file))?;
    let mut archive = tar::Archive::new(GzDecoder::new(f));
    let mut manifest = None;
    for entry in archive.entries().map_err(io(file))? {
        let mut entry = entry.map_err(io(file))?;
        let name = entry.path().map_err(io(file))?.into_owned();
        let allowed = name.components().all(|c| matches!(c, Component::Normal(_)))
            && (name == Path::new(MANIFEST)
                || name == Path::new("vm.toml")
                || ["boot", "disks", "snapshot"].iter().any(|d| name.starts_with(d)));
        if !allowed || !entry.header().entry_type().is_file() {
            return Err(bad(format!(
                "{}: {} does not belong in a keel appliance; the file is not one, or is damaged",
                file.display(),
                name.display()
            )));
        }
        if name == Path::new(MANIFEST) {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(io(file))?;
            manifest = Some(text);
            continue;
        }
        let dest = root.join(&name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        eprintln!("keel: import: {}", name.display());
        keel_block::write_sparse(&mut entry, &dest).map_err(bad)?;
    }
    let manifest = manifest
        .ok_or_else(|| bad(format!("{}: not a keel appliance (no {MANIFEST})", file.display())))?;
    std::fs::File::open(root).and_then(|d| d.sync_all()).map_err(io(root))?;
    Ok(manifest)
}
