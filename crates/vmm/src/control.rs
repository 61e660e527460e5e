//! Run-time control of a VM: start it, pause and resume it, ask the guest to power off, stop
//! it, reset it, set its balloon, and learn its state and how it ended.
//!
//! A [`VmController`] owns one VM for its whole life. [`VmController::start`] builds the
//! machine and runs it in the background: one thread per vCPU plus a supervisor thread that
//! turns the way each machine ends into the next step (a guest reboot or a host reset builds
//! the machine afresh; a power-off, an exit status, a crash or a kernel panic end the VM).
//! Every method takes `&self` and may be called from any thread (share the controller in an
//! `Arc`).
//!
//! # Pausing
//! [`VmController::pause`] asks every vCPU to return from [`keel_machine::Vcpu::run`] at its
//! next block boundary (a hart asleep in WFI or stopped through SBI HSM is woken to do so) and
//! waits until each vCPU thread is parked on a condition variable: no guest instruction runs
//! and no host CPU is used. Then it stops the guest clock ([`keel_devices::Clock::pause`]), so
//! `mtime`, `rdtime` and every timer deadline stand still: guest time does not advance while
//! paused and no timer fires. [`VmController::resume`] restarts the clock from the value it
//! had and lets the vCPUs go on exactly where they stopped. The device I/O thread keeps
//! running while paused: virtio requests already submitted complete (their interrupts wait
//! for the vCPUs), and host input to the console queues up (see [`crate::console`]).
//!
//! # Powering off
//! [`VmController::request_poweroff`] asks the guest, as a person at a serial console would:
//! with the magic SysRq keys s (sync), u (remount read-only) and o (power off), each sent as
//! a BREAK on the 16550 followed by the key (see [`crate::sysrq`]). The kernel powers off
//! through SBI SRST, which ends the VM with [`Outcome::PowerOff`].

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keel_devices::virtio::balloon::{self, BalloonError, BalloonStatus};
use keel_devices::virtio::mmio::MmioTransport;
use keel_devices::SaveError;
use keel_machine::{
    ConsoleSink, HartSignals, HartState, Machine, MachineConfig, MachineState, SoftVcpu, Vcpu,
};
use serde::Serialize;
use thiserror::Error;

use crate::console::Console;
use crate::runner::{Outcome, RunError};
use crate::{supervisor, sysrq};

mod handover;

pub use handover::Detached;
pub(crate) use handover::{after_run, release, AfterRun, Handover};

/// How a VM ended: an outcome, or why it could not go on.
pub type VmEnd = Result<Outcome, RunError>;

/// Where a VM is in its life.
#[derive(Debug, Clone, Serialize)]
pub enum VmState {
    /// Built but not started ([`VmController::start`]).
    NotStarted,
    /// Its vCPUs run (also while a guest reboot rebuilds the machine).
    Running,
    /// Frozen by [`VmController::pause`].
    Paused,
    /// It ended, and this is how.
    Stopped(VmEnd),
}

impl VmState {
    /// The state's name for reports: "Not started", "Running", "Paused" or "Stopped".
    pub fn name(&self) -> &'static str {
        match self {
            VmState::NotStarted => "Not started",
            VmState::Running => "Running",
            VmState::Paused => "Paused",
            VmState::Stopped(_) => "Stopped",
        }
    }

    /// The state in the words of an error message: "cannot pause: the VM is {phrase}".
    fn phrase(&self) -> &'static str {
        match self {
            VmState::NotStarted => "not started",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Stopped(_) => "stopped",
        }
    }
}

/// Why a control request was refused or failed.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The request does not fit the VM's state ("cannot pause: the VM is paused").
    #[error("cannot {action}: the VM is {state}")]
    WrongState { action: &'static str, state: &'static str },
    /// Building the machine or starting its threads failed.
    #[error(transparent)]
    Start(#[from] RunError),
    #[error("no balloon device")]
    NoBalloon,
    #[error("balloon: {0}")]
    Balloon(#[from] BalloonError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// A device's state could not be saved (a disk image that cannot be flushed).
    #[error("cannot save the VM: {0}")]
    Save(#[from] SaveError),
}

/// The machine that runs now, as the controller reaches it.
pub(crate) struct Current {
    pub machine: Arc<Machine>,
    /// Each vCPU's signals, to make its `run` return.
    pub harts: Vec<Arc<HartSignals>>,
}

/// The VM's state, shared by the controller, the supervisor and the vCPU threads.
pub(crate) struct Inner {
    pub state: VmState,
    /// `start` is building the first machine.
    pub starting: bool,
    pub started: Option<Instant>,
    pub ended: Option<Instant>,
    /// The running machine; none before the start, between machines and after the end.
    pub current: Option<Current>,
    /// vCPU threads should park (pause asked, or paused).
    pub pause_wanted: bool,
    /// The current machine's vCPU threads that have not ended, and those of them parked.
    pub alive: usize,
    pub parked: usize,
    /// The current machine's vCPU threads must end (its run is over).
    pub end_run: bool,
    /// The host ends the VM by force.
    pub force_stop: bool,
    /// The host asked for a reset: the next machine is built afresh whatever this one does.
    pub reset: bool,
    /// Machines started so far (a reset waits for the next one).
    pub boots: u64,
    /// The balloon target the host set last, kept for the machines after a reboot.
    pub balloon_mib: Option<u64>,
    /// A SysRq power-off sequence is being typed into this boot's console.
    pub poweroff_boot: Option<u64>,
    /// Parked vCPU threads put their hart's state into their slot while this is set.
    pub collecting: bool,
    pub hart_states: Vec<Option<HartState>>,
    /// A snapshot (or migration) is reading the paused machine: it must stay paused.
    pub frozen: bool,
    /// Where a live migration's hand-over of the machine stands (see `handover.rs`).
    pub handover: Handover,
}

pub(crate) struct Shared {
    pub config: MachineConfig,
    pub console: Console,
    inner: Mutex<Inner>,
    pub changed: Condvar,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn wait<'a>(&self, guard: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    fn wait_timeout<'a>(
        &self,
        guard: MutexGuard<'a, Inner>,
        timeout: Duration,
    ) -> MutexGuard<'a, Inner> {
        self.changed.wait_timeout(guard, timeout).unwrap_or_else(|e| e.into_inner()).0
    }

    /// Called by a vCPU thread before it runs guest code: parks while the VM is paused, and
    /// hands out its hart's state when a snapshot asks. False when the thread must end
    /// instead.
    pub fn hold_while_paused(&self, vcpu: &SoftVcpu) -> bool {
        let mut inner = self.lock();
        if inner.pause_wanted && !inner.end_run {
            inner.parked += 1;
            self.changed.notify_all();
            let id = vcpu.id() as usize;
            while inner.pause_wanted && !inner.end_run {
                if inner.collecting && inner.hart_states.get(id).is_some_and(|s| s.is_none()) {
                    inner.hart_states[id] = Some(vcpu.save_state());
                    self.changed.notify_all();
                }
                inner = self.wait(inner);
            }
            inner.parked -= 1;
        }
        !inner.end_run
    }

    /// Ends the VM by force: the current machine's vCPUs stop at once.
    fn kill(&self) -> Result<(), ControlError> {
        let mut inner = self.lock();
        match inner.state {
            VmState::NotStarted => return Err(wrong("stop", &inner.state)),
            VmState::Stopped(_) => return Ok(()),
            VmState::Running | VmState::Paused => {}
        }
        inner.force_stop = true;
        end_run(&mut inner);
        self.changed.notify_all();
        Ok(())
    }

    /// The supervisor is done: the VM ended this way.
    pub fn finish(&self, end: VmEnd) {
        let mut inner = self.lock();
        inner.state = VmState::Stopped(end);
        inner.ended = Some(Instant::now());
        inner.current = None;
        inner.pause_wanted = false;
        self.changed.notify_all();
        drop(inner);
        self.console.close_input();
    }
}

/// Ends the current machine's run: parked vCPU threads wake and end, running ones return at
/// their next block boundary.
fn end_run(inner: &mut Inner) {
    inner.end_run = true;
    if let Some(c) = &inner.current {
        c.harts.iter().for_each(|h| h.request_exit());
    }
}

fn wrong(action: &'static str, state: &VmState) -> ControlError {
    ControlError::WrongState { action, state: state.phrase() }
}

/// One VM, controlled at run time (see the module docs).
pub struct VmController {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl VmController {
    /// A VM made from `config` whose serial console is `console`. Nothing runs until
    /// [`VmController::start`].
    pub fn new(config: MachineConfig, console: Console) -> VmController {
        let inner = Inner {
            state: VmState::NotStarted,
            starting: false,
            started: None,
            ended: None,
            current: None,
            pause_wanted: false,
            alive: 0,
            parked: 0,
            end_run: false,
            force_stop: false,
            reset: false,
            boots: 0,
            balloon_mib: None,
            poweroff_boot: None,
            collecting: false,
            hart_states: Vec::new(),
            frozen: false,
            handover: Handover::None,
        };
        let shared =
            Arc::new(Shared { config, console, inner: Mutex::new(inner), changed: Condvar::new() });
        VmController { shared, supervisor: Mutex::new(None) }
    }

    /// The VM's console.
    pub fn console(&self) -> &Console {
        &self.shared.console
    }

    /// The configuration the VM's machines are built from.
    pub fn config(&self) -> &MachineConfig {
        &self.shared.config
    }

    /// Builds the machine and starts running it in the background. A machine that cannot be
    /// built (a missing kernel file, too much memory) is an error here, and the VM stays not
    /// started. Ctrl-A X on the console's forwarded input stops the VM by force from now on.
    pub fn start(&self) -> Result<(), ControlError> {
        self.start_with(false, Machine::build)
    }

    /// Starts the VM from a machine `restore` builds (from a snapshot, or a migration's
    /// state), instead of booting: the guest goes on where it was saved. With `paused` the VM
    /// starts paused (resume it to let the guest run); else it runs at once. A machine that
    /// cannot be restored is an error, and the VM stays not started.
    pub fn start_restored(
        &self,
        paused: bool,
        restore: impl FnOnce(&MachineConfig, ConsoleSink) -> Result<Machine, RunError>,
    ) -> Result<(), ControlError> {
        self.start_with(paused, |config, sink| restore(config, sink))
    }

    fn start_with<E: Into<RunError>>(
        &self,
        paused: bool,
        build: impl FnOnce(&MachineConfig, ConsoleSink) -> Result<Machine, E>,
    ) -> Result<(), ControlError> {
        {
            let mut inner = self.shared.lock();
            if inner.starting {
                return Err(ControlError::WrongState { action: "start", state: "starting" });
            }
            if !matches!(inner.state, VmState::NotStarted) {
                return Err(wrong("start", &inner.state));
            }
            inner.starting = true;
        }
        let built = build(&self.shared.config, self.shared.console.sink());
        let mut inner = self.shared.lock();
        inner.starting = false;
        let machine = built.map_err(Into::into)?;
        if paused {
            // The vCPU threads park before their first instruction; the clock stays stopped.
            inner.pause_wanted = true;
            machine.clock.pause();
        } else {
            // A restored machine comes with its clock stopped at the saved time.
            machine.clock.resume();
        }
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("keel-vm".into())
            .spawn(move || supervisor::supervise(shared, machine))
            .map_err(|e| RunError::Thread(Arc::new(e)))?;
        *lock(&self.supervisor) = Some(handle);
        inner.state = VmState::Running;
        inner.started = Some(Instant::now());
        // Return once the machine runs (or, paused, once its vCPUs are parked), so that it
        // can be reached at once.
        while (inner.boots == 0 || (paused && inner.parked < inner.alive))
            && !matches!(inner.state, VmState::Stopped(_))
        {
            inner = self.shared.wait(inner);
        }
        if paused && matches!(inner.state, VmState::Running) {
            inner.state = VmState::Paused;
        }
        drop(inner);
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        self.shared.console.on_quit(Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                let _ = shared.kill();
            }
        }));
        if self.shared.console.quit_requested() {
            let _ = self.shared.kill();
        }
        Ok(())
    }

    /// Where the VM is in its life.
    pub fn state(&self) -> VmState {
        self.shared.lock().state.clone()
    }

    /// Freezes the VM: returns once every vCPU thread is parked and the guest clock stands
    /// still (see the module docs). Only a running VM can be paused.
    pub fn pause(&self) -> Result<(), ControlError> {
        const ACTION: &str = "pause";
        let shared = &self.shared;
        let mut inner = shared.lock();
        if !matches!(inner.state, VmState::Running) {
            return Err(wrong(ACTION, &inner.state));
        }
        if inner.pause_wanted {
            return Err(ControlError::WrongState { action: ACTION, state: "being paused" });
        }
        inner.pause_wanted = true;
        if let Some(c) = &inner.current {
            c.harts.iter().for_each(|h| h.request_exit());
        }
        // Each vCPU parks within one block of guest code (or ends, if the guest powers off
        // meanwhile); a machine built meanwhile (reboot) starts with its vCPUs parked. A
        // reset or a stop meanwhile wins over the pause.
        let still_wanted =
            |i: &Inner| i.pause_wanted && !i.force_stop && matches!(i.state, VmState::Running);
        while still_wanted(&inner) && inner.parked < inner.alive {
            inner = shared.wait(inner);
        }
        if !still_wanted(&inner) {
            let state = match inner.state {
                VmState::Running if inner.force_stop => "stopping",
                VmState::Running => "being reset",
                ref other => other.phrase(),
            };
            return Err(ControlError::WrongState { action: ACTION, state });
        }
        if let Some(c) = &inner.current {
            c.machine.clock.pause();
        }
        inner.state = VmState::Paused;
        shared.changed.notify_all();
        Ok(())
    }

    /// Lets a paused VM go on where it stopped, guest time with it.
    pub fn resume(&self) -> Result<(), ControlError> {
        let mut inner = self.shared.lock();
        if !matches!(inner.state, VmState::Paused) {
            return Err(wrong("resume", &inner.state));
        }
        if inner.frozen {
            return Err(ControlError::WrongState {
                action: "resume",
                state: "being saved (a snapshot or migration reads it)",
            });
        }
        // The clock first: no vCPU may run on a stopped clock.
        if let Some(c) = &inner.current {
            c.machine.clock.resume();
        }
        inner.pause_wanted = false;
        inner.state = VmState::Running;
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Asks the guest to power off (SysRq s, u, o on its serial console; see [`crate::sysrq`])
    /// and returns at once; the keys are typed from a thread of their own over the next
    /// seconds. The VM ends with [`Outcome::PowerOff`] when the guest complies. Asking again
    /// while the keys are being typed does nothing more. Only a running VM can be asked.
    pub fn request_poweroff(&self) -> Result<(), ControlError> {
        const ACTION: &str = "ask the guest to power off";
        let mut inner = self.shared.lock();
        if !matches!(inner.state, VmState::Running) {
            return Err(wrong(ACTION, &inner.state));
        }
        let Some(current) = &inner.current else {
            return Err(ControlError::WrongState { action: ACTION, state: "rebooting" });
        };
        let boot = inner.boots;
        if inner.poweroff_boot == Some(boot) {
            return Ok(());
        }
        let uart = current.machine.uart.clone();
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("keel-sysrq".into())
            .spawn(move || {
                sysrq::power_off(&uart, &shared.console);
                let mut inner = shared.lock();
                if inner.poweroff_boot == Some(boot) {
                    inner.poweroff_boot = None;
                }
            })
            .map_err(ControlError::Thread)?;
        inner.poweroff_boot = Some(boot);
        Ok(())
    }

    /// Stops the VM: asks the guest to power off, waits up to `timeout` for it to do so, then
    /// stops it by force. Returns how the VM ended, once every vCPU thread has ended. A paused
    /// VM is resumed first so that the guest can power itself off.
    pub fn stop(&self, timeout: Duration) -> Result<VmEnd, ControlError> {
        match self.state() {
            VmState::NotStarted => return Err(wrong("stop", &VmState::NotStarted)),
            VmState::Stopped(end) => return Ok(end),
            VmState::Paused => {
                // Paused and resumed by someone else meanwhile is fine too.
                let _ = self.resume();
            }
            VmState::Running => {}
        }
        let deadline = Instant::now() + timeout;
        let mut asked = false;
        let mut inner = self.shared.lock();
        loop {
            if let VmState::Stopped(end) = &inner.state {
                return Ok(end.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // During a guest reboot there is no console to type into yet: ask the next
            // machine as soon as it runs.
            if !asked && inner.current.is_some() {
                drop(inner);
                asked = self.request_poweroff().is_ok();
                inner = self.shared.lock();
                continue;
            }
            inner = self.shared.wait_timeout(inner, left);
        }
        drop(inner);
        self.shared.kill()?;
        Ok(self.wait())
    }

    /// Ends the VM by force at once (the guest gets no say), without waiting: see
    /// [`VmController::wait`]. The VM ends with [`Outcome::Quit`].
    pub fn kill(&self) -> Result<(), ControlError> {
        self.shared.kill()
    }

    /// Hard reset: the machine is thrown away and built afresh, as a guest reboot does, and
    /// the guest boots again (a paused VM runs again). Returns once the new machine runs.
    /// The balloon target set through the controller carries over.
    pub fn reset(&self) -> Result<(), ControlError> {
        let shared = &self.shared;
        let mut inner = shared.lock();
        if !matches!(inner.state, VmState::Running | VmState::Paused) || inner.force_stop {
            return Err(wrong("reset", &inner.state));
        }
        inner.reset = true;
        inner.pause_wanted = false;
        inner.state = VmState::Running;
        let boots = inner.boots;
        end_run(&mut inner);
        shared.changed.notify_all();
        while inner.boots == boots && !matches!(inner.state, VmState::Stopped(_)) {
            inner = shared.wait(inner);
        }
        match &inner.state {
            VmState::Stopped(_) => Err(wrong("reset", &inner.state)),
            _ => Ok(()),
        }
    }

    /// Blocks until the VM has ended and says how (a VM not started yet is waited for too).
    pub fn wait(&self) -> VmEnd {
        let mut inner = self.shared.lock();
        loop {
            if let VmState::Stopped(end) = &inner.state {
                return end.clone();
            }
            inner = self.shared.wait(inner);
        }
    }

    /// As [`VmController::wait`], for at most `timeout`: `None` if the VM still runs then.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<VmEnd> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.lock();
        loop {
            if let VmState::Stopped(end) = &inner.state {
                return Some(end.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            inner = self.shared.wait_timeout(inner, left);
        }
    }

    /// Host time since the VM started (paused time and reboots included), up to its end;
    /// `None` before it started.
    pub fn uptime(&self) -> Option<Duration> {
        let inner = self.shared.lock();
        let started = inner.started?;
        Some(inner.ended.unwrap_or_else(Instant::now).saturating_duration_since(started))
    }

    /// When the VM started (for metrics), if it did.
    pub fn started_at(&self) -> Option<Instant> {
        self.shared.lock().started
    }

    /// The machine that runs now (for metrics, say); `None` before the start, between two
    /// machines of a reboot, and after the end. Holding it does not keep the VM running.
    pub fn machine(&self) -> Option<Arc<Machine>> {
        self.shared.lock().current.as_ref().map(|c| c.machine.clone())
    }

    /// Sets the balloon's target (MiB of guest memory the guest should give back) and tells
    /// the guest's driver. The target carries over guest reboots and resets.
    pub fn set_balloon_target(&self, mib: u64) -> Result<(), ControlError> {
        let machine = self.running_machine("set the balloon target")?;
        balloon::set_target(balloon_of(&machine)?, mib)?;
        self.shared.lock().balloon_mib = Some(mib);
        Ok(())
    }

    /// The balloon's target, what the guest's driver holds, and its latest statistics.
    pub fn balloon_status(&self) -> Result<BalloonStatus, ControlError> {
        let machine = self.running_machine("read the balloon")?;
        Ok(balloon::status(balloon_of(&machine)?)?)
    }

    /// Runs `save` on the paused VM's machine and state (every vCPU's registers, collected
    /// from the parked vCPU threads, and every device's), with the device I/O thread held,
    /// so that neither guest memory nor a device changes while `save` reads them. The VM
    /// cannot be resumed meanwhile. Only a paused VM can be saved.
    pub fn with_saved_state<R>(
        &self,
        save: impl FnOnce(&Machine, MachineState) -> R,
    ) -> Result<R, ControlError> {
        let (machine, states) = self.freeze("save the VM")?;
        let result = {
            let _held = machine.hold_devices();
            machine.save_state(states).map(|state| save(&machine, state))
        };
        self.shared.lock().frozen = false;
        self.shared.changed.notify_all();
        result.map_err(ControlError::Save)
    }

    /// Marks the paused VM frozen (it cannot be resumed until `frozen` is cleared again) and
    /// collects every vCPU's state from the parked vCPU threads.
    fn freeze(&self, action: &'static str) -> Result<(Arc<Machine>, Vec<HartState>), ControlError> {
        let shared = &self.shared;
        let mut inner = shared.lock();
        if !matches!(inner.state, VmState::Paused) {
            return Err(wrong(action, &inner.state));
        }
        if inner.frozen {
            return Err(ControlError::WrongState { action, state: "being saved already" });
        }
        let Some(current) = &inner.current else {
            return Err(ControlError::WrongState { action, state: "rebooting" });
        };
        let machine = current.machine.clone();
        let harts = current.harts.len();
        inner.frozen = true;
        inner.collecting = true;
        inner.hart_states = vec![None; harts];
        shared.changed.notify_all();
        let still_paused = |i: &Inner| matches!(i.state, VmState::Paused) && !i.end_run;
        while still_paused(&inner) && inner.hart_states.iter().any(Option::is_none) {
            inner = shared.wait(inner);
        }
        inner.collecting = false;
        let states: Option<Vec<HartState>> =
            std::mem::take(&mut inner.hart_states).into_iter().collect();
        let Some(states) = states.filter(|_| still_paused(&inner)) else {
            inner.frozen = false;
            let state = if inner.end_run { "stopping" } else { inner.state.phrase() };
            return Err(ControlError::WrongState { action, state });
        };
        Ok((machine, states))
    }

    /// The current machine of a running or paused VM.
    fn running_machine(&self, action: &'static str) -> Result<Arc<Machine>, ControlError> {
        let inner = self.shared.lock();
        match (&inner.state, &inner.current) {
            (VmState::Running | VmState::Paused, Some(c)) => Ok(c.machine.clone()),
            (VmState::Running | VmState::Paused, None) => {
                Err(ControlError::WrongState { action, state: "rebooting" })
            }
            (state, _) => Err(wrong(action, state)),
        }
    }
}

/// The machine's balloon device.
pub(crate) fn balloon_of(machine: &Machine) -> Result<&MmioTransport, ControlError> {
    machine
        .virtio
        .iter()
        .find(|t| balloon::status(t).is_ok())
        .map(|t| &**t)
        .ok_or(ControlError::NoBalloon)
}

impl Drop for VmController {
    /// A VM outlives no controller: it is stopped by force and its threads are joined.
    fn drop(&mut self) {
        let _ = self.shared.kill();
        if let Some(t) = lock(&self.supervisor).take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
