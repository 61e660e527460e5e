//! `keel vmm --dir DIR`: the process that runs one managed VM (spawned by `keel start`).
//!
//! It owns the VM directory's run-time files: it writes `pid`, serves the REST API on
//! `api.sock` (keel-api), appends the guest console to `console.log`, and boots the guest on
//! `PUT /actions InstanceStart`. When the VM ends (power-off, Stop, a crash, or a migration
//! to another host) it writes `state` (`stopped`, `crashed` when the guest died, `migrated`),
//! removes `pid` and `api.sock`, and exits. Everything it writes stays inside DIR.
//!
//! With `--incoming HOST:PORT` (spawned by `keel receive`) it first waits for a live
//! migration (see `vmm/incoming.rs`) instead of a boot request.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_api::{
    ApiError, BalloonConfig, BalloonStatistics, BalloonUpdate, ConsoleAttachment, InstanceInfo,
    MigrateParams, MigrationDone, Progress, SnapshotCreateParams, SnapshotCreated,
    SnapshotLoadParams, SnapshotType, VmApi,
};
use keel_devices::virtio::balloon::stat;
use keel_machine::{Accel, Firmware, MachineConfig, VirtioConfig};
use keel_vmm::control::{ControlError, VmController, VmState};
use keel_vmm::migration::{self, send, MigrationError, Token};
use keel_vmm::snapshot::{SnapshotError, SnapshotKind, Snapshots};
use keel_vmm::{Console, Outcome, VmFile};

use crate::run::{machine_config, RunArgs};

mod incoming;

#[derive(clap::Args)]
pub struct VmmArgs {
    /// The VM's directory (holding vm.toml).
    #[arg(long)]
    pub dir: PathBuf,
    /// Receive the VM by live migration: listen on HOST:PORT for one sender (the token comes
    /// from $KEEL_MIGRATION_TOKEN), and write vm.toml from what it sends.
    #[arg(long, value_name = "HOST:PORT")]
    pub incoming: Option<String>,
    /// With --incoming: seconds to wait for the sender.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub incoming_timeout: u64,
}

/// What the main thread waits for besides the VM's end: a reason to quit before the VM ran
/// (a start that failed, a termination signal before any start).
#[derive(Default)]
struct Exit {
    give_up: Mutex<bool>,
    changed: Condvar,
}

impl Exit {
    fn give_up(&self) {
        *self.give_up.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }
}

/// The API's view of the VM: its name, its directory and its controller.
struct Vmm {
    name: String,
    dir: PathBuf,
    controller: Arc<VmController>,
    snapshots: Snapshots,
    /// The long operation under way (`GET /progress`).
    progress: Arc<Mutex<Progress>>,
    exit: Arc<Exit>,
    /// The VM is being received by migration: it must not be booted or restored.
    incoming: Arc<std::sync::atomic::AtomicBool>,
}

pub fn run(args: VmmArgs) -> Result<ExitCode> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot open the VM directory {}", args.dir.display()))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // One VMM per VM: a second `keel start` racing the first finds the lock taken before it
    // can touch the pid file or the socket.
    let _lock = lock_dir(&dir, &name)?;
    write_atomically(&dir.join("pid"), format!("{}\n", std::process::id()).as_bytes())?;
    let vm_path = dir.join("vm.toml");
    let mut pending = None;
    if let Some(listen) = &args.incoming {
        let timeout = Duration::from_secs(args.incoming_timeout);
        match incoming::accept(&dir, &name, listen, timeout) {
            Ok(p) => pending = Some(p),
            Err(e) => return Ok(incoming::give_up(&dir, &name, &e)),
        }
    }
    let config = match (machine_config(&RunArgs::for_vm_file(vm_path)), pending) {
        (Ok(config), p) => {
            pending = p;
            config
        }
        (Err(e), Some(p)) => {
            let e = p.refuse(&format!("the receiver cannot build this VM: {e:#}"));
            return Ok(incoming::give_up(&dir, &name, &e));
        }
        (Err(e), None) => return Err(e),
    };

    let console = Console::headless();
    console
        .open_log(&dir.join("console.log"))
        .with_context(|| format!("cannot open {}", dir.join("console.log").display()))?;
    let controller = Arc::new(VmController::new(config, console));
    let exit = Arc::new(Exit::default());
    let api = Arc::new(Vmm {
        name: name.clone(),
        dir: dir.clone(),
        controller: controller.clone(),
        snapshots: Snapshots::new(controller.clone()),
        progress: Arc::default(),
        exit: exit.clone(),
        incoming: Arc::new(pending.is_some().into()),
    });
    let server = keel_api::serve(&dir.join("api.sock"), api.clone())?;
    eprintln!("keel: VM {name}: API on {}", server.socket_path().display());
    stop_on_termination_signals(&controller, &exit, &name, &api.incoming, &dir)?;
    if let Some(pending) = pending {
        if let Err(e) = incoming::receive(&api, pending) {
            server.shutdown();
            return Ok(incoming::give_up(&dir, &name, &e));
        }
    }

    // Until the VM has run and ended, or a start failed (then nothing ran: the VM stays
    // "created" and `keel start` reports the error it got from the API).
    let end = loop {
        if let Some(end) = controller.wait_timeout(Duration::from_millis(200)) {
            break Some(end);
        }
        let failed = exit.give_up.lock().unwrap_or_else(|e| e.into_inner());
        if *failed {
            break None;
        }
        let _ = exit.changed.wait_timeout(failed, Duration::from_millis(200));
    };
    server.shutdown();
    controller.console().flush_output();
    let code = match &end {
        Some(Ok(Outcome::Migrated)) => {
            eprintln!("keel: VM {name} migrated away; it runs on the receiver now");
            write_atomically(&dir.join("state"), b"migrated\n")?;
            ExitCode::SUCCESS
        }
        Some(Ok(outcome)) => {
            eprintln!("keel: VM {name} stopped ({outcome:?})");
            write_atomically(&dir.join("state"), b"stopped\n")?;
            ExitCode::SUCCESS
        }
        Some(Err(e)) => {
            eprintln!("keel: VM {name}: the guest died: {e}");
            write_atomically(&dir.join("state"), b"crashed\n")?;
            ExitCode::FAILURE
        }
        None => ExitCode::FAILURE,
    };
    let _ = std::fs::remove_file(dir.join("pid"));
    Ok(code)
}

/// Takes the VM directory's lock (`DIR/lock`, an exclusive flock held for the process's
/// life), or fails if another VMM holds it.
fn lock_dir(dir: &Path, name: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!("VM {name} already has a VMM running (it holds {})", path.display())
    })
}

/// SIGTERM, SIGINT or SIGHUP (a `kill`, a service manager stopping keel) stop the VM the
/// way `keel stop` does: the guest is asked to power off, and stopped after 10 s.
/// A VMM still receiving its VM by migration has nothing running: it gives up at once.
fn stop_on_termination_signals(
    controller: &Arc<VmController>,
    exit: &Arc<Exit>,
    name: &str,
    incoming: &Arc<std::sync::atomic::AtomicBool>,
    dir: &Path,
) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;
    let (controller, exit) = (controller.clone(), exit.clone());
    let (incoming, dir) = (incoming.clone(), dir.to_owned());
    let name = name.to_string();
    std::thread::Builder::new()
        .name("keel-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                if incoming.load(std::sync::atomic::Ordering::SeqCst) {
                    let why = MigrationError::Refuse(format!("signal {signal}"));
                    let _ = incoming::give_up(&dir, &name, &why);
                    std::process::exit(1);
                }
                eprintln!("keel: VM {name}: signal {signal}: stopping the guest");
                if let Err(e) = controller.stop(Duration::from_secs(10)) {
                    // Not started yet: nothing runs that needs stopping.
                    eprintln!("keel: VM {name}: {e}");
                    exit.give_up();
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Writes `path` through a temporary file and a rename, so readers never see half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A controller error as an API answer: requests the state forbids are the client's
/// mistake (400); a machine that cannot be built is too (its VM file names something
/// unusable); the rest is keel's (500).
fn api_error(e: ControlError) -> ApiError {
    match &e {
        ControlError::WrongState { .. } | ControlError::NoBalloon | ControlError::Start(_) => {
            ApiError::bad_request(e.to_string())
        }
        _ => ApiError::internal(e.to_string()),
    }
}

impl Vmm {
    fn balloon_entry(&self) -> Result<&keel_devices::virtio::config::BalloonConfig, ApiError> {
        let balloon = self.controller.config().virtio.iter().find_map(|d| match d {
            VirtioConfig::Balloon(b) => Some(b),
            _ => None,
        });
        balloon.ok_or_else(|| {
            ApiError::bad_request(format!(
                "VM {} has no balloon device: add a [balloon] section to its VM file",
                self.name
            ))
        })
    }

    fn machine(&self) -> Result<Arc<keel_machine::Machine>, ApiError> {
        self.controller
            .machine()
            .ok_or_else(|| ApiError::bad_request("the VM is not running: start it first"))
    }

    fn metrics_now(&self) -> Result<keel_vmm::metrics::Metrics, ApiError> {
        let machine = self.machine()?;
        let started = self.controller.started_at().unwrap_or_else(Instant::now);
        Ok(keel_vmm::metrics::collect(&machine, started))
    }
}

impl VmApi for Vmm {
    fn info(&self) -> Result<InstanceInfo, ApiError> {
        let config = self.controller.config();
        let state = match self.controller.state() {
            VmState::NotStarted => keel_api::VmState::NotStarted,
            VmState::Paused => keel_api::VmState::Paused,
            // A VM that has ended is about to take its process with it.
            VmState::Running | VmState::Stopped(_) => keel_api::VmState::Running,
        };
        Ok(InstanceInfo {
            id: self.name.clone(),
            state,
            vmm_version: env!("CARGO_PKG_VERSION").to_string(),
            app_name: "keel".to_string(),
            pid: std::process::id(),
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            uptime_s: self.controller.uptime().map(|d| d.as_secs_f64()),
        })
    }

    fn instance_start(&self) -> Result<(), ApiError> {
        self.refuse_while_incoming("boot")?;
        let result = self.controller.start();
        if let Err(ControlError::Start(_)) = &result {
            self.exit.give_up();
        }
        result.map_err(api_error)
    }

    fn send_ctrl_alt_del(&self) -> Result<(), ApiError> {
        self.controller.request_poweroff().map_err(api_error)
    }

    fn stop(&self, timeout: Duration) -> Result<(), ApiError> {
        self.controller.stop(timeout).map(|_| ()).map_err(api_error)
    }

    fn reset(&self) -> Result<(), ApiError> {
        self.controller.reset().map_err(api_error)
    }

    fn flush_metrics(&self) -> Result<(), ApiError> {
        let metrics = self.metrics_now()?;
        let json =
            serde_json::to_vec_pretty(&metrics).map_err(|e| ApiError::internal(e.to_string()))?;
        write_atomically(&self.dir.join("metrics.json"), &json)
            .map_err(|e| ApiError::internal(format!("{e:#}")))
    }

    fn pause(&self) -> Result<(), ApiError> {
        self.controller.pause().map_err(api_error)
    }

    fn resume(&self) -> Result<(), ApiError> {
        self.controller.resume().map_err(api_error)
    }

    fn vm_config(&self) -> Result<serde_json::Value, ApiError> {
        Ok(config_json(self.controller.config()))
    }

    fn balloon(&self) -> Result<BalloonConfig, ApiError> {
        let entry = self.balloon_entry()?;
        let amount_mib = match self.controller.balloon_status() {
            Ok(status) => status.target_mib(),
            Err(_) => entry.target_mib,
        };
        Ok(BalloonConfig {
            amount_mib: amount_mib as u32,
            deflate_on_oom: false,
            stats_polling_interval_s: entry.stats_interval_s as u32,
        })
    }

    fn put_balloon(&self, config: BalloonConfig) -> Result<(), ApiError> {
        let entry = self.balloon_entry()?;
        if config.deflate_on_oom
            || u64::from(config.stats_polling_interval_s) != entry.stats_interval_s
        {
            return Err(ApiError::bad_request(format!(
                "only amount_mib can change while the VM runs: deflate_on_oom must be false \
                 and stats_polling_interval_s {} (the VM file's)",
                entry.stats_interval_s
            )));
        }
        self.patch_balloon(BalloonUpdate { amount_mib: config.amount_mib })
    }

    fn patch_balloon(&self, update: BalloonUpdate) -> Result<(), ApiError> {
        self.balloon_entry()?;
        let memory = self.controller.config().memory_mib;
        if u64::from(update.amount_mib) > memory {
            return Err(ApiError::bad_request(format!(
                "amount_mib {} is more than the VM's {memory} MiB of memory",
                update.amount_mib
            )));
        }
        self.controller.set_balloon_target(update.amount_mib.into()).map_err(api_error)
    }

    fn balloon_statistics(&self) -> Result<BalloonStatistics, ApiError> {
        self.balloon_entry()?;
        let status = self.controller.balloon_status().map_err(api_error)?;
        let get = |tag| status.stats.as_ref().and_then(|s| s.get(tag));
        Ok(BalloonStatistics {
            target_pages: status.target_pages.into(),
            actual_pages: status.actual_pages.into(),
            target_mib: status.target_mib(),
            actual_mib: status.actual_mib(),
            swap_in: get(stat::SWAP_IN),
            swap_out: get(stat::SWAP_OUT),
            major_faults: get(stat::MAJOR_FAULTS),
            minor_faults: get(stat::MINOR_FAULTS),
            free_memory: get(stat::FREE_MEMORY),
            total_memory: get(stat::TOTAL_MEMORY),
            available_memory: get(stat::AVAILABLE_MEMORY),
            disk_caches: get(stat::DISK_CACHES),
            hugetlb_allocations: get(stat::HUGETLB_ALLOCATIONS),
            hugetlb_failures: get(stat::HUGETLB_FAILURES),
        })
    }

    fn metrics(&self) -> Result<serde_json::Value, ApiError> {
        serde_json::to_value(self.metrics_now()?).map_err(|e| ApiError::internal(e.to_string()))
    }

    fn metrics_prometheus(&self) -> Result<String, ApiError> {
        Ok(keel_vmm::metrics::to_prometheus(&self.metrics_now()?))
    }

    fn attach_console(&self) -> Result<ConsoleAttachment, ApiError> {
        let (output, input) = self.controller.console().attach();
        Ok(ConsoleAttachment { output, input: Box::new(input) })
    }

    fn create_snapshot(&self, params: SnapshotCreateParams) -> Result<SnapshotCreated, ApiError> {
        let kind = match params.snapshot_type {
            SnapshotType::Full => SnapshotKind::Full,
            SnapshotType::Diff => SnapshotKind::Diff,
        };
        let dir = PathBuf::from(&params.snapshot_path);
        let _op = self.begin("snapshot")?;
        let started = Instant::now();
        let report = self
            .snapshots
            .create(&dir, kind, params.leave_paused, |done, total| self.report(done, total))
            .map_err(snapshot_error)?;
        eprintln!(
            "keel: VM {}: {kind:?} snapshot in {}: {} MiB of memory written in {:.2} s, guest paused {} ms",
            self.name,
            report.dir.display(),
            report.memory_bytes >> 20,
            started.elapsed().as_secs_f64(),
            report.paused.as_millis()
        );
        Ok(SnapshotCreated {
            snapshot_path: report.dir.display().to_string(),
            snapshot_type: params.snapshot_type,
            memory_bytes: report.memory_bytes,
            pages: report.pages,
            paused_ms: report.paused.as_millis() as u64,
        })
    }

    fn load_snapshot(&self, params: SnapshotLoadParams) -> Result<(), ApiError> {
        self.refuse_while_incoming("restore")?;
        let _op = self.begin("restore")?;
        let dir = PathBuf::from(&params.snapshot_path);
        let result = self.snapshots.load(&dir, !params.resume_vm, &self.name);
        if let Err(SnapshotError::Control(ControlError::Start(_))) = &result {
            // As a failed boot: nothing runs, the VMM goes away and the VM stays created.
            self.exit.give_up();
        }
        result.map_err(snapshot_error)?;
        eprintln!("keel: VM {}: restored from {}", self.name, dir.display());
        Ok(())
    }

    fn migrate(&self, params: MigrateParams) -> Result<MigrationDone, ApiError> {
        self.refuse_while_incoming("migrate")?;
        let token = Token::new(params.token.into_bytes())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let _op = self.begin("migration")?;
        let mut opts = send::Options::new(params.destination.clone(), token);
        opts.max_bandwidth = params.max_bandwidth_mib.map(|m| m.saturating_mul(1 << 20));
        let vm_file = VmFile::describing(self.controller.config()).to_toml();
        eprintln!("keel: VM {}: migrating to {}", self.name, params.destination);
        let result =
            send::migrate(&self.controller, vm_file, &opts, &mut |p| self.report_migration(p));
        // Dirty-page tracking served the migration: a diff snapshot has nothing to go over.
        self.snapshots.forget();
        match result {
            Ok(r) => {
                eprintln!(
                    "keel: VM {}: migrated to {} in {:.2} s: {} rounds, {} MiB of memory, \
                     downtime {} ms{}",
                    self.name,
                    params.destination,
                    r.total.as_secs_f64(),
                    r.rounds,
                    r.memory_bytes >> 20,
                    r.downtime.as_millis(),
                    if r.confirmed { "" } else { " (unconfirmed: the receiver holds the disks)" }
                );
                Ok(MigrationDone {
                    destination: params.destination,
                    rounds: r.rounds,
                    memory_bytes: r.memory_bytes,
                    sent_bytes: r.sent_bytes,
                    total_ms: r.total.as_millis() as u64,
                    downtime_ms: r.downtime.as_millis() as u64,
                    confirmed: r.confirmed,
                })
            }
            Err(e) => {
                let still = match self.controller.state() {
                    VmState::Running => "it runs here as before",
                    VmState::Paused => "it stays here, paused",
                    _ => "it has stopped",
                };
                let message = format!("migration to {} failed: {e}; {still}", params.destination);
                eprintln!("keel: VM {}: {message}", self.name);
                Err(match e {
                    MigrationError::Restore(_) => ApiError::internal(message),
                    _ => ApiError::bad_request(message),
                })
            }
        }
    }

    fn progress(&self) -> Result<Progress, ApiError> {
        Ok(self.progress.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Clears the progress when a long operation ends.
struct Operation<'a>(&'a Mutex<Progress>);

impl Drop for Operation<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Progress::default();
    }
}

impl Vmm {
    /// Starts a long operation; one at a time.
    fn begin(&self, operation: &str) -> Result<Operation<'_>, ApiError> {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = &progress.operation {
            return Err(ApiError::bad_request(format!(
                "cannot start a {operation}: a {other} is under way (GET /progress)"
            )));
        }
        *progress = Progress { operation: Some(operation.to_string()), ..Progress::default() };
        Ok(Operation(&self.progress))
    }

    /// A migration's progress, as `GET /progress` shows it.
    fn report_migration(&self, p: &migration::Progress) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.operation = Some("migration".into());
        progress.done_bytes = p.memory_bytes;
        progress.total_bytes = p.ram_bytes;
        progress.phase = Some(p.phase.to_string());
        progress.round = Some(p.round);
        progress.dirty_pages = Some(p.dirty_pages);
    }

    fn refuse_while_incoming(&self, action: &str) -> Result<(), ApiError> {
        if self.incoming.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError::bad_request(format!(
                "cannot {action}: VM {} is being received by a live migration",
                self.name
            )));
        }
        Ok(())
    }

    fn report(&self, done: u64, total: u64) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.done_bytes = done;
        progress.total_bytes = total;
    }
}

/// A snapshot error as an API answer: what the client asked for does not fit (the VM's
/// state, a bad or unwritable snapshot directory) is a 400, as is a snapshot that does not
/// match this VM; keel's own failures are 500s.
fn snapshot_error(e: SnapshotError) -> ApiError {
    match e {
        SnapshotError::Control(c) => api_error(c),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// `GET /vm/config`: the configuration the VM runs with (paths absolute, defaults filled).
fn config_json(config: &MachineConfig) -> serde_json::Value {
    let mut disks = vec![];
    let mut nets = vec![];
    let mut vsock = serde_json::Value::Null;
    let mut balloon = serde_json::Value::Null;
    let mut rng = false;
    for device in &config.virtio {
        match device {
            VirtioConfig::Block(b) => disks.push(serde_json::json!({
                "path": b.path,
                "read_only": b.read_only,
                "format": b.format.map(|f| format!("{f:?}").to_lowercase()),
            })),
            VirtioConfig::Net(n) => nets.push(serde_json::json!({
                "tap": n.tap,
                "mac": n.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
            })),
            VirtioConfig::Rng => rng = true,
            VirtioConfig::Vsock(v) => {
                vsock = serde_json::json!({"guest_cid": v.guest_cid, "uds_path": v.uds_path})
            }
            VirtioConfig::Balloon(b) => {
                balloon = serde_json::json!({
                    "amount_mib": b.target_mib,
                    "stats_polling_interval_s": b.stats_interval_s,
                    "free_page_reporting": b.free_page_reporting,
                })
            }
        }
    }
    let firmware = match &config.firmware {
        Firmware::Sbi => "sbi".to_string(),
        Firmware::None => "none".to_string(),
        Firmware::Path(p) => p.display().to_string(),
    };
    serde_json::json!({
        "vcpus": config.vcpus,
        "memory_mib": config.memory_mib,
        "kernel": config.kernel,
        "initrd": config.initrd,
        "cmdline": config.cmdline,
        "firmware": firmware,
        "disks": disks,
        "nets": nets,
        "vsock": vsock,
        "balloon": balloon,
        "rng": rng,
        "accel": accel_name(&config.accel),
        "jit": jit_json(&config.accel),
    })
}

/// The engine's name, as `accel` in a VM file.
pub(crate) fn accel_name(accel: &Accel) -> &'static str {
    match accel {
        Accel::Interp => "interp",
        Accel::Jit(_) => "jit",
    }
}

/// The translator's settings, as the `[jit]` table of a VM file (null for the interpreter).
pub(crate) fn jit_json(accel: &Accel) -> serde_json::Value {
    match accel {
        Accel::Interp => serde_json::Value::Null,
        Accel::Jit(jit) => serde_json::json!({
            "cache_mib": jit.cache_bytes >> 20,
            "threshold": jit.threshold,
        }),
    }
}
