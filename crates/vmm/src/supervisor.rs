//! The VM's supervisor thread: runs one machine after another (a guest reboot or a host reset
//! builds the next one) on vCPU threads of their own, and turns the way the last one ends into
//! the VM's end. The vCPU threads park here while the VM is paused.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use keel_machine::{GuestExit, Machine, SoftVcpu, Vcpu, VcpuExit};

use crate::control::{after_run, balloon_of, release, AfterRun, Current, Handover, Shared, VmEnd};
use crate::runner::{Outcome, RunError};

/// Runs the VM from its first machine to its end, then records the end.
pub(crate) fn supervise(shared: Arc<Shared>, first: Machine) {
    let mut next = Some(first);
    let end: VmEnd = loop {
        let machine = match next.take() {
            Some(m) => m,
            None => match Machine::build(&shared.config, shared.console.sink()) {
                Ok(m) => m,
                Err(e) => break Err(e.into()),
            },
        };
        let exit = match run_machine(&shared, machine) {
            Ok(exit) => exit,
            Err(e) => break Err(e),
        };
        let mut inner = match after_run(&shared) {
            AfterRun::Usual(inner) => inner,
            // A migration took the machine: it goes on with a rebuilt one, or ends here.
            AfterRun::Run(machine) => {
                next = Some(machine);
                continue;
            }
            AfterRun::End(end) => break end,
        };
        let reset = std::mem::take(&mut inner.reset);
        match exit {
            // The host's reset wins over whatever the old machine was doing.
            _ if reset && !inner.force_stop => {}
            VcpuExit::Guest(GuestExit::PowerOff) => break Ok(Outcome::PowerOff),
            VcpuExit::Guest(GuestExit::Exit(code)) => break Ok(Outcome::Exit(code)),
            VcpuExit::Guest(GuestExit::Reset) => {
                // A kernel that panics with panic=-1 reboots at once: that is a death, not a
                // reboot the user asked for.
                if let Some(msg) = shared.console.panic_message() {
                    break Err(RunError::KernelPanic(msg));
                }
            }
            VcpuExit::Crashed(reason) => break Err(RunError::Crashed(reason)),
            VcpuExit::Stopped if inner.force_stop => break Ok(Outcome::Quit),
            VcpuExit::Stopped => {
                break Err(RunError::Crashed("a vCPU stopped for no reason".into()))
            }
        }
    };
    shared.finish(end);
}

/// Runs one machine on a thread per vCPU; the first vCPU to end ends the run and the others.
fn run_machine(shared: &Arc<Shared>, mut machine: Machine) -> Result<VcpuExit, RunError> {
    shared.console.clear_panic();
    let vcpus = machine.take_vcpus();
    let harts: Vec<_> = vcpus.iter().map(|v| v.stopper()).collect();
    let machine = Arc::new(machine);
    {
        let mut inner = shared.lock();
        if inner.force_stop {
            return Ok(VcpuExit::Stopped);
        }
        // A fresh machine is what a reset asked for, also one asked for while it was built.
        inner.reset = false;
        inner.end_run = false;
        inner.alive = 0;
        inner.parked = 0;
        inner.boots += 1;
        if inner.pause_wanted {
            // Paused during a reboot: this machine starts paused, its vCPUs parked.
            machine.clock.pause();
        }
        if let Some(mib) = inner.balloon_mib {
            if let Ok(t) = balloon_of(&machine) {
                let _ = keel_devices::virtio::balloon::set_target(t, mib);
            }
        }
        inner.current = Some(Current { machine: machine.clone(), harts: harts.clone() });
        shared.changed.notify_all();
    }
    shared.console.connect(machine.uart.clone());

    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    let mut spawn_error = None;
    for vcpu in vcpus {
        // Counted before it runs, so that a pause waits for it to park.
        shared.lock().alive += 1;
        let (tx, thread_shared) = (tx.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("keel-vcpu{}", vcpu.id()))
            .spawn(move || vcpu_thread(vcpu, &thread_shared, tx));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                shared.lock().alive -= 1;
                spawn_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let first = match spawn_error {
        Some(e) => Err(RunError::Thread(Arc::new(e))),
        None => Ok(rx.recv().unwrap_or(VcpuExit::Crashed("every vCPU thread died".into()))),
    };

    {
        let mut inner = shared.lock();
        inner.end_run = true;
        shared.changed.notify_all();
    }
    harts.iter().for_each(|h| h.request_exit());
    let mut panicked = false;
    for t in threads {
        panicked |= t.join().is_err();
    }
    shared.console.disconnect();
    let handing_over = {
        let mut inner = shared.lock();
        inner.current = None;
        shared.changed.notify_all();
        matches!(inner.handover, Handover::Detaching)
    };
    if handing_over && !panicked {
        // The receiver opens the disks next: this machine must let go of them first.
        release(machine);
        return first;
    }
    if std::env::var_os("KEEL_STATS").is_some() {
        if let Ok(t) = balloon_of(&machine) {
            if let Ok(balloon) = keel_devices::virtio::balloon::status(t) {
                eprintln!("keel: balloon: {balloon}");
            }
        }
    }
    if panicked {
        return Err(RunError::Crashed("a vCPU thread panicked".into()));
    }
    first
}

/// One vCPU's thread: runs guest code, parks while the VM is paused, and reports how the
/// vCPU ended (the guest's request, a crash, or the end of the run).
fn vcpu_thread(mut vcpu: SoftVcpu, shared: &Shared, tx: mpsc::Sender<VcpuExit>) {
    let mut report = Report { shared, tx, exit: None };
    let start = Instant::now();
    let exit = loop {
        if !shared.hold_while_paused(&vcpu) {
            break VcpuExit::Stopped;
        }
        match vcpu.run() {
            // The VMM asked: to pause, to end the run, or (paused and resumed before this
            // thread looked) nothing; `hold_while_paused` tells which.
            VcpuExit::Stopped => continue,
            exit => break exit,
        }
    };
    if std::env::var_os("KEEL_STATS").is_some() {
        eprintln!(
            "keel: vcpu{} ran {:.3} s, {} instructions retired, {:?}",
            vcpu.id(),
            start.elapsed().as_secs_f64(),
            vcpu.instructions_retired(),
            vcpu.stats()
        );
    }
    report.exit = Some(exit);
}

/// Reports a vCPU thread's end, also when it panics: the run must end and a pause must not
/// wait for a thread that is gone.
struct Report<'a> {
    shared: &'a Shared,
    tx: mpsc::Sender<VcpuExit>,
    exit: Option<VcpuExit>,
}

impl Drop for Report<'_> {
    fn drop(&mut self) {
        let exit =
            self.exit.take().unwrap_or_else(|| VcpuExit::Crashed("a vCPU thread panicked".into()));
        let _ = self.tx.send(exit);
        let mut inner = self.shared.lock();
        inner.alive -= 1;
        self.shared.changed.notify_all();
    }
}
