//! Handing a VM's machine over to a live migration, and taking it back.
//!
//! A live migration's last step moves the guest to another VMM that opens the same disk
//! images (shared storage). keel-block holds an exclusive lock on each writable image, so the
//! source must let go of its disks before the receiver can open them, yet keep everything it
//! needs to go on if the receiver then fails. [`VmController::detach`] does that: it takes the
//! paused VM's state, ends its machine (vCPU threads end, devices close their files: disks
//! unlocked, TAP devices and sockets closed) but not the VM, and hands out the guest RAM and
//! the state. The VM stays paused and frozen until one of:
//!
//! - [`VmController::finish_migrated`]: the receiver runs the guest; the VM ends with
//!   [`Outcome::Migrated`];
//! - [`VmController::reattach`]: the migration failed; a machine rebuilt from the RAM and the
//!   state ([`Machine::restore`], which opens the disks again) takes over and the guest goes
//!   on where it stopped, nothing lost.

use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use keel_machine::{Machine, MachineState};
use keel_memory::GuestRam;

use super::{end_run, wrong, ControlError, Inner, Shared, VmController, VmEnd, VmState};
use crate::runner::Outcome;

/// How long the supervisor waits for brief users of the old machine (a metrics request) to
/// let go of it, so that its devices close their files before the receiver opens them.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Where a hand-over stands.
#[derive(Default)]
pub(crate) enum Handover {
    #[default]
    None,
    /// `detach` ended the machine's run; the supervisor drops the machine.
    Detaching,
    /// The machine is gone; the supervisor waits for what comes next.
    Detached,
    /// Run this machine (rebuilt from the detached RAM and state).
    Reattach(Box<Machine>),
    /// The guest runs elsewhere now: end the VM.
    Migrated,
}

/// What [`VmController::detach`] hands out: the guest's RAM (nothing writes it any more) and
/// the machine's state as it was paused.
pub struct Detached {
    pub ram: Arc<GuestRam>,
    pub state: MachineState,
}

/// What the supervisor does after a machine's run.
pub(crate) enum AfterRun<'a> {
    /// No hand-over: go on as usual.
    Usual(MutexGuard<'a, Inner>),
    /// Run this machine next.
    Run(Machine),
    /// The VM ends.
    End(VmEnd),
}

/// Called by the supervisor once a machine's run is over and the machine dropped: during a
/// hand-over, waits for the migration to say what comes next.
pub(crate) fn after_run(shared: &Shared) -> AfterRun<'_> {
    let mut inner = shared.lock();
    if !matches!(inner.handover, Handover::Detaching) {
        return AfterRun::Usual(inner);
    }
    inner.handover = Handover::Detached;
    shared.changed.notify_all();
    loop {
        match std::mem::take(&mut inner.handover) {
            Handover::Reattach(machine) => return AfterRun::Run(*machine),
            Handover::Migrated => return AfterRun::End(Ok(Outcome::Migrated)),
            other => inner.handover = other,
        }
        if inner.force_stop {
            inner.handover = Handover::None;
            return AfterRun::End(Ok(Outcome::Quit));
        }
        inner = shared.wait(inner);
    }
}

/// Waits (a little) until `machine` has no other owner, then drops it: its devices close
/// their files before the hand-over goes on.
pub(crate) fn release(machine: Arc<Machine>) {
    let deadline = Instant::now() + RELEASE_WAIT;
    while Arc::strong_count(&machine) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(machine);
}

impl VmController {
    /// Ends the paused VM's machine but not the VM, for a migration's hand-over (see the
    /// module docs): returns once the machine is gone, its disks unlocked. The VM stays
    /// paused and cannot be resumed until [`VmController::reattach`] or
    /// [`VmController::finish_migrated`].
    pub fn detach(&self) -> Result<Detached, ControlError> {
        const ACTION: &str = "hand the VM over";
        let (machine, states) = self.freeze(ACTION)?;
        let saved = {
            let _held = machine.hold_devices();
            machine.save_state(states)
        };
        let ram = machine.ram.clone();
        drop(machine);
        let shared = &self.shared;
        let mut inner = shared.lock();
        let state = match saved {
            Ok(state) => state,
            Err(e) => {
                inner.frozen = false;
                shared.changed.notify_all();
                return Err(ControlError::Save(e));
            }
        };
        inner.handover = Handover::Detaching;
        end_run(&mut inner);
        shared.changed.notify_all();
        while matches!(inner.handover, Handover::Detaching)
            && !matches!(inner.state, VmState::Stopped(_))
        {
            inner = shared.wait(inner);
        }
        if !matches!(inner.handover, Handover::Detached) {
            return Err(wrong(ACTION, &inner.state));
        }
        Ok(Detached { ram, state })
    }

    /// After [`VmController::detach`]: runs `machine` (rebuilt from the detached RAM and
    /// state) in place of the old one; the guest goes on where it stopped, running at once
    /// unless `paused`. Returns once the machine runs.
    pub fn reattach(&self, machine: Machine, paused: bool) -> Result<(), ControlError> {
        let shared = &self.shared;
        let mut inner = shared.lock();
        if !matches!(inner.handover, Handover::Detached) {
            return Err(ControlError::WrongState {
                action: "take the VM back",
                state: "not handed over",
            });
        }
        if !paused {
            // A restored machine's clock stands still until it is resumed.
            machine.clock.resume();
            inner.pause_wanted = false;
            inner.state = VmState::Running;
        }
        inner.frozen = false;
        let boots = inner.boots;
        inner.handover = Handover::Reattach(Box::new(machine));
        shared.changed.notify_all();
        while inner.boots == boots && !matches!(inner.state, VmState::Stopped(_)) {
            inner = shared.wait(inner);
        }
        match &inner.state {
            VmState::Stopped(_) => Err(wrong("take the VM back", &inner.state)),
            _ => Ok(()),
        }
    }

    /// After [`VmController::detach`]: the guest runs on another VMM now; the VM ends with
    /// [`Outcome::Migrated`]. Returns once it has ended.
    pub fn finish_migrated(&self) -> Result<(), ControlError> {
        {
            let mut inner = self.shared.lock();
            if !matches!(inner.handover, Handover::Detached) {
                return Err(ControlError::WrongState {
                    action: "end the migrated VM",
                    state: "not handed over",
                });
            }
            inner.handover = Handover::Migrated;
            self.shared.changed.notify_all();
        }
        self.wait().map(drop).map_err(ControlError::Start)
    }
}
