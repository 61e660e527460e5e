//! Running a VM in the foreground: build the machine, run its vCPUs on their own threads,
//! and turn the way it ends into an outcome (power-off, exit status, reboot, crash).

use std::sync::mpsc;

use keel_machine::{GuestExit, Machine, MachineConfig, MachineError, Vcpu, VcpuExit};
use thiserror::Error;

use crate::console::Console;

/// How a VM run ended, when it ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest powered off.
    PowerOff,
    /// The guest asked to end with this status.
    Exit(u32),
    /// The user pressed Ctrl-A X.
    Quit,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error("the guest crashed: {0}")]
    Crashed(String),
    #[error("the guest kernel panicked: {0}")]
    KernelPanic(String),
    #[error("cannot start a vCPU thread: {0}")]
    Thread(std::io::Error),
}

/// Runs the VM until it ends. A guest reboot builds the machine afresh from `config`.
pub fn run(config: &MachineConfig, console: &Console) -> Result<Outcome, RunError> {
    loop {
        let mut machine = Machine::build(config, console.sink())?;
        let vcpus = machine.take_vcpus();
        let stoppers: Vec<_> = vcpus.iter().map(|v| v.stopper()).collect();
        console.attach(
            machine.uart.clone(),
            Box::new(move || stoppers.iter().for_each(|s| s.request_exit())),
        );
        let exit = run_vcpus(&machine, vcpus)?;
        console.detach();
        match exit {
            VcpuExit::Guest(GuestExit::PowerOff) => return Ok(Outcome::PowerOff),
            VcpuExit::Guest(GuestExit::Exit(code)) => return Ok(Outcome::Exit(code)),
            VcpuExit::Guest(GuestExit::Reset) => {
                // A kernel that panics with panic=-1 reboots at once: that is a death, not a
                // reboot the user asked for.
                if let Some(msg) = console.panic_message() {
                    return Err(RunError::KernelPanic(msg));
                }
            }
            VcpuExit::Crashed(reason) => return Err(RunError::Crashed(reason)),
            VcpuExit::Stopped if console.quit_requested() => return Ok(Outcome::Quit),
            VcpuExit::Stopped => {
                return Err(RunError::Crashed("a vCPU stopped for no reason".into()))
            }
        }
    }
}

/// Runs each vCPU on its own thread; the first to stop ends the run and stops the others.
fn run_vcpus<V: Vcpu + 'static>(machine: &Machine, vcpus: Vec<V>) -> Result<VcpuExit, RunError> {
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for mut vcpu in vcpus {
        let tx = tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("keel-vcpu{}", vcpu.id()))
            .spawn(move || {
                let start = std::time::Instant::now();
                let exit = vcpu.run();
                if std::env::var_os("KEEL_STATS").is_some() {
                    eprintln!(
                        "keel: vcpu{} ran {:.3} s, {} instructions retired, {:?}",
                        vcpu.id(),
                        start.elapsed().as_secs_f64(),
                        vcpu.instructions_retired(),
                        vcpu.stats()
                    );
                }
                let _ = tx.send(exit);
            })
            .map_err(RunError::Thread)?;
        threads.push(t);
    }
    drop(tx);
    let first = rx.recv().unwrap_or(VcpuExit::Crashed("every vCPU thread died".into()));
    machine.stop();
    for t in threads {
        if t.join().is_err() {
            return Err(RunError::Crashed("a vCPU thread panicked".into()));
        }
    }
    if std::env::var_os("KEEL_STATS").is_some() {
        for t in &machine.virtio {
            if let Ok(balloon) = keel_devices::virtio::balloon::status(t) {
                eprintln!("keel: balloon: {balloon}");
            }
        }
    }
    Ok(first)
}
