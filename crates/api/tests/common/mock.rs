//! A `VmApi` for testing the server: a small state machine (Not started → Running ⇄ Paused)
//! that stands in for the VMM, which is tested end to end elsewhere (crates/keel's tests boot
//! real guests). Shared by the tests and by `examples/mock_vmm.rs`.

#![allow(dead_code)]

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keel_api::{
    ApiError, BalloonConfig, BalloonStatistics, BalloonUpdate, ConsoleAttachment, InstanceInfo,
    MigrateParams, MigrationDone, Progress, SnapshotCreateParams, SnapshotCreated,
    SnapshotLoadParams, VmApi, VmState,
};
use serde_json::{json, Value};

const MEMORY_MIB: u64 = 256;

#[derive(Default)]
struct State {
    vm: Option<Run>,
    balloon: Option<BalloonConfig>,
    flushes: u32,
    resets: u32,
    snapshots: u32,
    last_stop_timeout: Option<Duration>,
}

struct Run {
    paused: bool,
    started: Instant,
}

/// Lets a test hold `stop` in flight: `stop` reports on `entered`, then waits on `release`.
pub struct StopGate {
    pub entered: Sender<()>,
    pub release: Receiver<()>,
}

pub struct MockVm {
    state: Mutex<State>,
    /// One sender per attached console client; guest "output" goes to all of them.
    consoles: Arc<Mutex<Vec<Sender<Vec<u8>>>>>,
    panic_on_metrics: AtomicBool,
    stop_gate: Mutex<Option<StopGate>>,
}

impl MockVm {
    /// A VM that has not been started, with a balloon device.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                balloon: Some(BalloonConfig {
                    amount_mib: 0,
                    deflate_on_oom: true,
                    stats_polling_interval_s: 1,
                }),
                ..State::default()
            }),
            consoles: Arc::default(),
            panic_on_metrics: AtomicBool::new(false),
            stop_gate: Mutex::new(None),
        }
    }

    /// A VM already running.
    pub fn running() -> Self {
        let vm = Self::new();
        vm.state().vm = Some(Run { paused: false, started: Instant::now() });
        vm
    }

    /// A VM file without a balloon device.
    pub fn without_balloon(self) -> Self {
        self.state().balloon = None;
        self
    }

    /// Makes `GET /metrics` panic inside the `VmApi` method.
    pub fn panic_on_metrics(&self, on: bool) {
        self.panic_on_metrics.store(on, Ordering::SeqCst);
    }

    pub fn gate_stop(&self, gate: StopGate) {
        *self.stop_gate.lock().unwrap() = Some(gate);
    }

    /// Sends `bytes` to every attached console client, as guest output would be.
    pub fn emit(&self, bytes: &[u8]) {
        broadcast(&self.consoles, bytes);
    }

    /// Drops every console sender, as a VMM whose guest has gone would.
    pub fn detach_all(&self) {
        self.consoles.lock().unwrap().clear();
    }

    pub fn attached_consoles(&self) -> usize {
        self.consoles.lock().unwrap().len()
    }

    pub fn flushes(&self) -> u32 {
        self.state().flushes
    }

    pub fn resets(&self) -> u32 {
        self.state().resets
    }

    pub fn last_stop_timeout(&self) -> Option<Duration> {
        self.state().last_stop_timeout
    }

    pub fn balloon_target(&self) -> Option<u32> {
        self.state().balloon.as_ref().map(|b| b.amount_mib)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn vm_state(state: &State) -> VmState {
        match &state.vm {
            None => VmState::NotStarted,
            Some(Run { paused: false, .. }) => VmState::Running,
            Some(Run { paused: true, .. }) => VmState::Paused,
        }
    }

    fn require_started<'a>(state: &'a mut State, what: &str) -> Result<&'a mut Run, ApiError> {
        state.vm.as_mut().ok_or_else(|| {
            ApiError::bad_request(format!(
                "cannot {what}: the VM is not started; send InstanceStart"
            ))
        })
    }

    fn balloon_of(state: &mut State) -> Result<&mut BalloonConfig, ApiError> {
        state.balloon.as_mut().ok_or_else(|| ApiError::bad_request("no balloon device"))
    }
}

/// Sends to every client and forgets the ones that have detached.
fn broadcast(consoles: &Mutex<Vec<Sender<Vec<u8>>>>, bytes: &[u8]) {
    consoles.lock().unwrap().retain(|tx| tx.send(bytes.to_vec()).is_ok());
}

/// The mock guest echoes keyboard input to every attached console, as a shell would.
struct Echo(Arc<Mutex<Vec<Sender<Vec<u8>>>>>);

impl Write for Echo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        broadcast(&self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl VmApi for MockVm {
    fn info(&self) -> Result<InstanceInfo, ApiError> {
        let state = self.state();
        Ok(InstanceInfo {
            id: "mock".into(),
            state: Self::vm_state(&state),
            vmm_version: "0.1.0".into(),
            app_name: "keel".into(),
            pid: std::process::id(),
            vcpus: 1,
            memory_mib: MEMORY_MIB,
            uptime_s: state.vm.as_ref().map(|r| r.started.elapsed().as_secs_f64()),
        })
    }

    fn instance_start(&self) -> Result<(), ApiError> {
        let mut state = self.state();
        if state.vm.is_some() {
            return Err(ApiError::bad_request("cannot start: the VM is already started"));
        }
        state.vm = Some(Run { paused: false, started: Instant::now() });
        Ok(())
    }

    fn send_ctrl_alt_del(&self) -> Result<(), ApiError> {
        let mut state = self.state();
        let run = Self::require_started(&mut state, "send Ctrl-Alt-Del")?;
        if run.paused {
            return Err(ApiError::bad_request("cannot send Ctrl-Alt-Del: the VM is paused"));
        }
        Ok(())
    }

    /// The mock "stops" by going back to Not started (the real VMM exits instead).
    fn stop(&self, timeout: Duration) -> Result<(), ApiError> {
        {
            let mut state = self.state();
            Self::require_started(&mut state, "stop")?;
            state.last_stop_timeout = Some(timeout);
        }
        if let Some(gate) = self.stop_gate.lock().unwrap().take() {
            let _ = gate.entered.send(());
            let _ = gate.release.recv();
        }
        self.state().vm = None;
        Ok(())
    }

    fn reset(&self) -> Result<(), ApiError> {
        let mut state = self.state();
        let run = Self::require_started(&mut state, "reset")?;
        *run = Run { paused: false, started: Instant::now() };
        state.resets += 1;
        Ok(())
    }

    fn flush_metrics(&self) -> Result<(), ApiError> {
        self.state().flushes += 1;
        Ok(())
    }

    fn pause(&self) -> Result<(), ApiError> {
        let mut state = self.state();
        match state.vm.as_mut() {
            Some(run) if !run.paused => {
                run.paused = true;
                Ok(())
            }
            _ => Err(ApiError::bad_request("cannot pause: the VM is not running")),
        }
    }

    fn resume(&self) -> Result<(), ApiError> {
        let mut state = self.state();
        match state.vm.as_mut() {
            Some(run) if run.paused => {
                run.paused = false;
                Ok(())
            }
            _ => Err(ApiError::bad_request("cannot resume: the VM is not paused")),
        }
    }

    fn vm_config(&self) -> Result<Value, ApiError> {
        let balloon = self.state().balloon.clone();
        Ok(json!({
            "vcpus": 1, "memory_mib": MEMORY_MIB, "kernel": "/vm/vmlinux",
            "initrd": "/vm/initrd.img", "cmdline": "console=ttyS0", "firmware": "sbi",
            "disks": [{"path": "/vm/disk.img", "read_only": false, "format": "raw"}],
            "nets": [], "vsock": null, "balloon": balloon, "rng": true,
            "accel": "jit", "jit": {"cache_mib": 32, "threshold": 32},
        }))
    }

    fn balloon(&self) -> Result<BalloonConfig, ApiError> {
        Ok(Self::balloon_of(&mut self.state())?.clone())
    }

    fn put_balloon(&self, config: BalloonConfig) -> Result<(), ApiError> {
        let mut state = self.state();
        let current = Self::balloon_of(&mut state)?;
        if config.deflate_on_oom != current.deflate_on_oom
            || config.stats_polling_interval_s != current.stats_polling_interval_s
        {
            return Err(ApiError::bad_request(
                "only amount_mib can change; deflate_on_oom and stats_polling_interval_s must \
                 equal the VM file's",
            ));
        }
        set_target(current, config.amount_mib)
    }

    fn patch_balloon(&self, update: BalloonUpdate) -> Result<(), ApiError> {
        set_target(Self::balloon_of(&mut self.state())?, update.amount_mib)
    }

    fn balloon_statistics(&self) -> Result<BalloonStatistics, ApiError> {
        let mut state = self.state();
        let target = u64::from(Self::balloon_of(&mut state)?.amount_mib);
        Self::require_started(&mut state, "read balloon statistics")?;
        Ok(BalloonStatistics {
            target_pages: target * 256,
            actual_pages: target * 256,
            target_mib: target,
            actual_mib: target,
            free_memory: Some(100 << 20),
            total_memory: Some(MEMORY_MIB << 20),
            ..BalloonStatistics::default()
        })
    }

    fn metrics(&self) -> Result<Value, ApiError> {
        assert!(!self.panic_on_metrics.load(Ordering::SeqCst), "mock metrics panic");
        Ok(json!({
            "vcpus": [{"id": 0, "instructions": 1000,
                       "exits": {"sbi": 1, "mmio": 2, "wfi": 3, "interrupts": 4, "exceptions": 5},
                       "interrupts_taken": 6}],
            "devices": {"vda": {"read_bytes": 512, "write_bytes": 0}},
            "memory": {"guest_bytes": MEMORY_MIB << 20, "rss_bytes": 1 << 20},
            "uptime_s": 1.5,
        }))
    }

    fn metrics_prometheus(&self) -> Result<String, ApiError> {
        Ok("keel_vcpu_instructions_total{vcpu=\"0\"} 1000\n\
            keel_memory_rss_bytes 1048576\n"
            .into())
    }

    fn attach_console(&self) -> Result<ConsoleAttachment, ApiError> {
        let (tx, rx) = mpsc::channel();
        self.consoles.lock().unwrap().push(tx);
        Ok(ConsoleAttachment { output: rx, input: Box::new(Echo(Arc::clone(&self.consoles))) })
    }

    /// The mock writes no files: it checks the state and reports a made-up snapshot.
    fn create_snapshot(&self, params: SnapshotCreateParams) -> Result<SnapshotCreated, ApiError> {
        let mut state = self.state();
        let run = Self::require_started(&mut state, "take a snapshot")?;
        if params.leave_paused {
            run.paused = true;
        }
        state.snapshots += 1;
        Ok(SnapshotCreated {
            snapshot_path: params.snapshot_path,
            snapshot_type: params.snapshot_type,
            memory_bytes: 4 << 20,
            pages: MEMORY_MIB * 256,
            paused_ms: 1,
        })
    }

    fn load_snapshot(&self, params: SnapshotLoadParams) -> Result<(), ApiError> {
        let mut state = self.state();
        if state.vm.is_some() {
            return Err(ApiError::bad_request("cannot load a snapshot: the VM is already started"));
        }
        state.vm = Some(Run { paused: !params.resume_vm, started: Instant::now() });
        Ok(())
    }

    fn migrate(&self, params: MigrateParams) -> Result<MigrationDone, ApiError> {
        let mut state = self.state();
        Self::require_started(&mut state, "migrate")?;
        if params.token.len() < 16 {
            return Err(ApiError::bad_request("migration token: the token is too short"));
        }
        if !params.destination.contains(':') {
            return Err(ApiError::bad_request("destination: give HOST:PORT"));
        }
        // The mock's "receiver" always takes the VM: it has moved away.
        state.vm = None;
        Ok(MigrationDone {
            destination: params.destination,
            rounds: 2,
            memory_bytes: 4 << 20,
            sent_bytes: 5 << 20,
            total_ms: 100,
            downtime_ms: 5,
            confirmed: true,
        })
    }

    fn progress(&self) -> Result<Progress, ApiError> {
        Ok(Progress::default())
    }
}

fn set_target(balloon: &mut BalloonConfig, amount_mib: u32) -> Result<(), ApiError> {
    if u64::from(amount_mib) > MEMORY_MIB {
        return Err(ApiError::bad_request(format!(
            "amount_mib {amount_mib} is more than the VM's {MEMORY_MIB} MiB"
        )));
    }
    balloon.amount_mib = amount_mib;
    Ok(())
}
