//! `keel create`, `start`, `pause`, `resume`, `stop` and `rm`: changing a VM's state. Running
//! VMs are reached only through their API socket; signals are the last resort of `--force`.

use std::fs;
use std::io::{self, Read, Seek};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_machine::Firmware;
use keel_vmm::{ConfigError, VmFile};
use serde_json::json;
use thiserror::Error;

use super::client::ClientError;
use super::status::{api, probe, VmState};
use super::store::{is_vmm_for, write_atomic, Store, StoreError, VmDir};

/// How long a new VMM gets to open its API socket.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long a VMM gets to exit after it said it stopped.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
/// How long an ordinary API request may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// InstanceStart loads the kernel, initrd and disks before it answers.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of keel.log quoted when a VMM dies on the way up.
const LOG_TAIL_LINES: usize = 5;

#[derive(Debug, Error)]
pub enum ManageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("VM {name} is already {state} (`keel stop {name}` stops it)")]
    AlreadyRunning { name: String, state: VmState },
    #[error("VM {name} is not running (it is {state}; `keel start {name}` starts it)")]
    NotRunning { name: String, state: VmState },
    #[error(
        "VM {name} is {state}: stop it first (`keel stop {name}`) or use `keel rm --force {name}`"
    )]
    InUse { name: String, state: VmState },
    #[error("cannot {action} VM {name}: {source}")]
    Api { name: String, action: &'static str, source: ClientError },
    #[error("cannot stop VM {name}: {source} (`keel stop --force {name}` kills it)")]
    StopFailed { name: String, source: ClientError },
    #[error("VM {name} did not start: {why}; see {log}")]
    StartFailed { name: String, why: String, log: String },
    #[error("VM {name}'s process {pid} is still running {secs} s after it was stopped; `keel stop --force {name}` kills it")]
    StillRunning { name: String, pid: u32, secs: u64 },
    #[error("cannot {action} for VM {name}: {source}")]
    Io { name: String, action: &'static str, source: io::Error },
    #[error("{0}")]
    BadPath(String),
    #[error(
        "VM {name} was migrated to another host and runs there; starting it here too would \
         share its disks (`keel rm {name}` removes it here)"
    )]
    Migrated { name: String },
    #[error("{0}")]
    Migration(String),
}

/// `keel create NAME [VMFILE]`.
pub fn create(store: &Store, name: &str, vm_file: Option<&Path>) -> Result<(), ManageError> {
    super::store::validate_name(name)?;
    if store.vm(name).is_ok() {
        return Err(StoreError::Exists(name.to_string()).into());
    }
    let text = match vm_file {
        Some(path) => absolute_vm_file(path)?,
        None => "# The default VM: the default guest image, 1 vCPU, 256 MiB.\n".to_string(),
    };
    let vm = store.create(name)?;
    let written = write_atomic(&vm.vm_file(), text.as_bytes())
        .map_err(ManageError::from)
        .and_then(|()| VmFile::load(&vm.vm_file()).map(drop).map_err(ManageError::from));
    if let Err(e) = written {
        let _ = vm.remove();
        return Err(e);
    }
    Ok(())
}

/// The VM file at `path`, checked, with every relative path in it made absolute (relative to
/// the file's folder), so the copy in the VM directory means the same thing.
fn absolute_vm_file(path: &Path) -> Result<String, ManageError> {
    let path = std::path::absolute(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let loaded = VmFile::load(&path)?;
    let text = fs::read_to_string(&path)
        .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| ManageError::BadPath(format!("{}: {}", path.display(), e.message())))?;
    let utf8 = |p: &Path| {
        p.to_str().map(|s| toml::Value::String(s.to_string())).ok_or_else(|| {
            ManageError::BadPath(format!(
                "{}: the path {} is not UTF-8",
                path.display(),
                p.display()
            ))
        })
    };
    if let Some(k) = &loaded.kernel {
        table.insert("kernel".into(), utf8(k)?);
    }
    if let Some(i) = &loaded.initrd {
        table.insert("initrd".into(), utf8(i)?);
    }
    if let Firmware::Path(f) = loaded.firmware() {
        table.insert("firmware".into(), utf8(&f)?);
    }
    if let Some(toml::Value::Array(disks)) = table.get_mut("disk") {
        for (entry, disk) in disks.iter_mut().zip(&loaded.disk) {
            if let Some(t) = entry.as_table_mut() {
                t.insert("path".into(), utf8(&disk.path)?);
            }
        }
    }
    if let (Some(toml::Value::Table(t)), Some(v)) = (table.get_mut("vsock"), &loaded.vsock) {
        t.insert("uds".into(), utf8(&v.uds)?);
    }
    let body = toml::to_string(&table)
        .map_err(|e| ManageError::BadPath(format!("{}: {e}", path.display())))?;
    Ok(format!("# Copied by `keel create` from {}; paths made absolute.\n{body}", path.display()))
}

/// What a new VMM is asked to do first.
pub enum Launch<'a> {
    /// Boot the guest (`PUT /actions InstanceStart`).
    Boot,
    /// Go on from a snapshot (`PUT /snapshot/load`).
    Restore { snapshot: &'a Path, paused: bool },
}

/// `keel start NAME`: runs `keel vmm --dir DIR` in its own session, waits for its API socket,
/// and asks it to boot.
pub fn start(store: &Store, name: &str) -> Result<(), ManageError> {
    launch(store, name, Launch::Boot)
}

/// Starts the VM's VMM and sends it its first request (see [`Launch`]).
pub fn launch(store: &Store, name: &str, how: Launch<'_>) -> Result<(), ManageError> {
    let vm = store.vm(name)?;
    let status = probe(&vm);
    if status.state.is_live() {
        return Err(ManageError::AlreadyRunning { name: vm.name, state: status.state });
    }
    if status.state == VmState::Migrated {
        return Err(ManageError::Migrated { name: vm.name });
    }
    // A crashed VMM leaves its pid file and socket; a new one must not trip over them.
    vm.clear_stale()?;
    let config = VmFile::load(&vm.vm_file())?;
    // Fetch the default image here, where the user sees the progress, rather than inside
    // the VMM where it would only show in keel.log.
    if matches!(how, Launch::Boot) && config.kernel.is_none() && config.firmware() != Firmware::None
    {
        crate::image::default_image().map_err(|e| ManageError::StartFailed {
            name: vm.name.clone(),
            why: format!("{e:#}"),
            log: "`keel image pull`".into(),
        })?;
    }
    let Spawned { mut child, log_path, log_start } = spawn_vmm(&vm, &[], &[])?;
    let io = |action| {
        let name = vm.name.clone();
        move |source| ManageError::Io { name, action, source }
    };
    let failed = |why: String| ManageError::StartFailed {
        name: vm.name.clone(),
        why: match log_tail(&log_path, log_start) {
            Some(tail) => format!("{why}; its log ends: {tail}"),
            None => why,
        },
        log: log_path.display().to_string(),
    };
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(exit) = child.try_wait().map_err(io("wait for the VMM"))? {
            return Err(failed(format!("the VMM exited ({exit}) before it opened its API socket")));
        }
        if std::os::unix::net::UnixStream::connect(vm.api_socket()).is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = vm.clear_stale();
            return Err(failed(format!(
                "the VMM did not open its API socket within {} s",
                START_DEADLINE.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let client = api(&vm, BOOT_TIMEOUT);
    let (first, action) = match how {
        Launch::Boot => (client.put("/actions", &json!({"action_type": "InstanceStart"})), "start"),
        Launch::Restore { snapshot, paused } => {
            let body = json!({"snapshot_path": snapshot, "resume_vm": !paused});
            (client.put("/snapshot/load", &body), "restore")
        }
    };
    if let Err(source) = first {
        // A VMM whose start failed exits by itself; one that doesn't (it did not answer) is
        // taken down, so the VM is not left half started. It is our child: the kill cannot
        // hit another process.
        let deadline = Instant::now() + EXIT_DEADLINE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = vm.clear_stale();
        return Err(ManageError::Api { name: vm.name, action, source });
    }
    Ok(())
}

/// A VMM just spawned, and where its log stood before it.
pub struct Spawned {
    pub child: std::process::Child,
    pub log_path: std::path::PathBuf,
    pub log_start: u64,
}

/// Spawns `keel vmm --dir DIR EXTRA...` in a session of its own (so it outlives this
/// terminal), stdout and stderr appended to keel.log, with `env` added to its environment.
pub fn spawn_vmm(
    vm: &VmDir,
    extra: &[&std::ffi::OsStr],
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<Spawned, ManageError> {
    let io = |action| {
        let name = vm.name.clone();
        move |source| ManageError::Io { name, action, source }
    };
    let log_path = vm.keel_log();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io("open keel.log"))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().map_err(io("find the keel executable"))?;
    let mut command = Command::new(exe);
    command
        .arg("vmm")
        .arg("--dir")
        .arg(&vm.path)
        .args(extra)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("open keel.log"))?)
        .stderr(log);
    // SAFETY: the closure runs in the child between fork and exec and only calls setsid(2),
    // which is async-signal-safe and touches no memory shared with the parent. Its own
    // session keeps the VMM alive when this terminal goes away.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    let child = command.spawn().map_err(io("start the VMM"))?;
    Ok(Spawned { child, log_path, log_start })
}

/// `keel pause NAME` / `keel resume NAME`.
pub fn set_paused(store: &Store, name: &str, paused: bool) -> Result<(), ManageError> {
    let vm = store.vm(name)?;
    let state = probe(&vm).state;
    if !state.is_live() {
        return Err(ManageError::NotRunning { name: vm.name, state });
    }
    let (action, target) = if paused { ("pause", "Paused") } else { ("resume", "Resumed") };
    api(&vm, API_TIMEOUT)
        .patch("/vm", &json!({"state": target}))
        .map_err(|source| ManageError::Api { name: vm.name.clone(), action, source })?;
    Ok(())
}

/// `keel stop NAME`: asks the VMM to stop (the guest gets `timeout` to power off), then
/// waits for the process to end. `force` stops at once and kills a VMM that doesn't answer.
pub fn stop(store: &Store, name: &str, timeout: Duration, force: bool) -> Result<(), ManageError> {
    let vm = store.vm(name)?;
    let status = probe(&vm);
    let Some(pid) = status.pid.filter(|_| status.state.is_live()) else {
        return Err(ManageError::NotRunning { name: vm.name, state: status.state });
    };
    let timeout = if force { Duration::ZERO } else { timeout };
    stop_vmm(&vm, pid, timeout, force)
}

/// `keel rm NAME`.
pub fn remove(store: &Store, name: &str, force: bool) -> Result<(), ManageError> {
    let vm = store.vm(name)?;
    let status = probe(&vm);
    if status.state.is_live() {
        if !force {
            return Err(ManageError::InUse { name: vm.name, state: status.state });
        }
        if let Some(pid) = status.pid {
            stop_vmm(&vm, pid, Duration::ZERO, true)?;
        }
    }
    vm.remove()?;
    Ok(())
}

fn stop_vmm(vm: &VmDir, pid: u32, timeout: Duration, force: bool) -> Result<(), ManageError> {
    let body = json!({"action_type": "Stop", "timeout_ms": timeout.as_millis() as u64});
    // The answer comes when the VM has stopped, after up to `timeout` of guest shutdown.
    let answer = api(vm, timeout + API_TIMEOUT).put("/actions", &body);
    if let Err(source) = answer {
        // A VMM that exits right after stopping may cut its answer short: that is a stop.
        if !source.is_refusal() && wait_exit(pid, &vm.path, Duration::from_millis(500)) {
            return Ok(());
        }
        if !force {
            return Err(ManageError::StopFailed { name: vm.name.clone(), source });
        }
        return kill(vm, pid);
    }
    if !wait_exit(pid, &vm.path, EXIT_DEADLINE) {
        if force {
            return kill(vm, pid);
        }
        return Err(ManageError::StillRunning {
            name: vm.name.clone(),
            pid,
            secs: EXIT_DEADLINE.as_secs(),
        });
    }
    Ok(())
}

/// SIGKILL for a VMM that won't stop, after checking `pid` is still that VMM. Since it
/// cannot record its own end, keel does it.
fn kill(vm: &VmDir, pid: u32) -> Result<(), ManageError> {
    use nix::sys::signal::{kill, Signal};
    let io = |source| ManageError::Io { name: vm.name.clone(), action: "kill the VMM", source };
    if is_vmm_for(pid, &vm.path) {
        let target = nix::unistd::Pid::from_raw(pid as i32);
        match kill(target, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(io(e.into())),
        }
        if !wait_exit(pid, &vm.path, EXIT_DEADLINE) {
            return Err(ManageError::StillRunning {
                name: vm.name.clone(),
                pid,
                secs: EXIT_DEADLINE.as_secs(),
            });
        }
    }
    vm.mark_stopped()?;
    Ok(())
}

/// Waits until `pid` is no longer the VMM of `dir`; false if it still is at the deadline.
pub fn wait_exit(pid: u32, dir: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !is_vmm_for(pid, dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last lines the VMM wrote to its log since `from`, on one line.
pub fn log_tail(path: &Path, from: u64) -> Option<String> {
    let mut file = fs::File::open(path).ok()?;
    file.seek(io::SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    file.take(1 << 20).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join(" / ");
    (!tail.is_empty()).then_some(tail)
}
