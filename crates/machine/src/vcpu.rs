//! The vCPU interface the VMM drives, and keel's software implementation of it.
//!
//! This is the seam where a hardware-assisted backend plugs in later: a VMM thread calls
//! [`Vcpu::run`] and acts on the [`VcpuExit`]; everything CPU-specific (the interpreter, SBI
//! calls, traps) happens behind it.

use std::sync::Arc;

use keel_cpu::{consts::cause, Cpu, Exit, HartSignals, HartState, Privilege, StateError};

use crate::power::{GuestExit, PowerLatch};
use crate::sbi::{Sbi, SbiAction};

/// Why a vCPU stopped running guest code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuExit {
    /// The VMM asked it to stop (see [`Vcpu::stopper`]).
    Stopped,
    /// The guest asked the machine to power off, reboot, or exit with a status.
    Guest(GuestExit),
    /// The guest can't go on; the text says why, in one line.
    Crashed(String),
}

/// One virtual CPU.
pub trait Vcpu: Send {
    /// Runs guest code until the VMM must act. After [`VcpuExit::Stopped`] it may be called
    /// again: the guest goes on exactly where it was (this is how the VMM pauses a VM).
    fn run(&mut self) -> VcpuExit;
    /// Its hart id.
    fn id(&self) -> u64;
    /// Instructions retired so far.
    fn instructions_retired(&self) -> u64;
    /// What the vCPU has done so far (instructions, traps, sleeps).
    fn stats(&self) -> keel_cpu::HartStats;
    /// A handle that makes [`Vcpu::run`] return [`VcpuExit::Stopped`] from another thread.
    fn stopper(&self) -> Arc<HartSignals>;
}

/// A vCPU run by keel's interpreter.
///
/// [`Vcpu::run`] may return [`VcpuExit::Stopped`] at any point the VMM asks (to pause the VM,
/// say) and be called again to go on exactly where it stopped: the hart's state lives here,
/// and so does an SBI remote fence the hart was still waiting on.
pub struct SoftVcpu {
    cpu: Cpu,
    sbi: Arc<Sbi>,
    power: Arc<PowerLatch>,
    /// Remote fences (hart, ticket) the hart's last SBI call is waiting for: the call has
    /// returned to the guest's registers already, so the wait must finish before the guest
    /// runs on, also after a stop.
    awaited_fences: Vec<(usize, u64)>,
}

impl SoftVcpu {
    pub fn new(cpu: Cpu, sbi: Arc<Sbi>, power: Arc<PowerLatch>) -> SoftVcpu {
        SoftVcpu { cpu, sbi, power, awaited_fences: Vec::new() }
    }

    /// The CPU, to load a boot image into it.
    pub(crate) fn cpu_mut(&mut self) -> &mut Cpu {
        &mut self.cpu
    }

    /// The hart's architectural state, for a snapshot. Call it between two [`Vcpu::run`]s.
    /// Remote fences the hart still waits for are not part of it: a restored machine's harts
    /// start with empty TLBs, which is all a fence asks for.
    pub fn save_state(&self) -> HartState {
        self.cpu.save_state()
    }

    /// Puts back what [`SoftVcpu::save_state`] returned (on a freshly built machine).
    pub fn restore_state(&mut self, state: &HartState) -> Result<(), StateError> {
        self.awaited_fences.clear();
        self.cpu.restore_state(state)
    }

    fn index(&self) -> usize {
        self.cpu.hart().hartid() as usize
    }

    /// Why the VMM or the guest wants this vCPU to stop, if either does.
    fn exit_wanted(&self) -> Option<VcpuExit> {
        if let Some(exit) = self.power.pending() {
            return Some(VcpuExit::Guest(exit));
        }
        self.cpu.hart().signals().take_exit_request().then_some(VcpuExit::Stopped)
    }

    /// While the hart is stopped (SBI HSM), waits for another hart to start it. The hart
    /// keeps answering remote fences meanwhile, so their senders never wait for it.
    fn wait_until_started(&mut self) -> Result<(), VcpuExit> {
        let id = self.index();
        let signals = self.cpu.hart().signals().clone();
        loop {
            if let Some(exit) = self.exit_wanted() {
                return Err(exit);
            }
            self.cpu.answer_fences();
            if let Some((addr, opaque)) = self.sbi.hsm().take_start(id) {
                // SBI spec §9.1: S-mode at start_addr, MMU off, a0 = hart id, a1 = opaque.
                self.cpu.reset(addr, Privilege::Supervisor, true);
                let hart = self.cpu.hart_mut();
                hart.set_x(10, id as u64);
                hart.set_x(11, opaque);
                return Ok(());
            }
            signals.sleep(std::time::Duration::from_secs(1));
        }
    }

    /// Waits until every fence in `awaited_fences` is answered, answering fences sent to
    /// this hart meanwhile (two harts may be fencing each other). A stop leaves the rest for
    /// the next [`Vcpu::run`].
    fn await_fences(&mut self) -> Result<(), VcpuExit> {
        let harts = self.sbi.harts().to_vec();
        while !self.awaited_fences.iter().all(|&(h, t)| harts[h].fence_done(t)) {
            self.cpu.answer_fences();
            if let Some(exit) = self.exit_wanted() {
                return Err(exit);
            }
            std::thread::yield_now();
        }
        self.awaited_fences.clear();
        Ok(())
    }
}

impl Vcpu for SoftVcpu {
    fn run(&mut self) -> VcpuExit {
        loop {
            if !self.awaited_fences.is_empty() {
                if let Err(exit) = self.await_fences() {
                    return exit;
                }
            }
            if self.sbi.hsm().is_stopped(self.index()) {
                if let Err(exit) = self.wait_until_started() {
                    return exit;
                }
            }
            match self.cpu.run() {
                Exit::Sbi => match self.sbi.handle(self.cpu.hart_mut()) {
                    SbiAction::Continue => {}
                    SbiAction::StopHart => {}
                    SbiAction::AwaitFences(tickets) => {
                        self.awaited_fences = tickets;
                        if let Err(exit) = self.await_fences() {
                            return exit;
                        }
                    }
                },
                Exit::Requested => {
                    return match self.power.pending() {
                        Some(exit) => VcpuExit::Guest(exit),
                        None => VcpuExit::Stopped,
                    }
                }
                Exit::UndeliverableTrap { cause, tval, pc } => {
                    return VcpuExit::Crashed(format!(
                        "hart {}: {} at pc {pc:#x} (tval {tval:#x}) has no M-mode handler: keel is the firmware and cannot take it",
                        self.id(),
                        describe_cause(cause)
                    ))
                }
            }
        }
    }

    fn id(&self) -> u64 {
        self.cpu.hart().hartid()
    }

    fn instructions_retired(&self) -> u64 {
        self.cpu.hart().instret()
    }

    fn stats(&self) -> keel_cpu::HartStats {
        self.cpu.hart().stats()
    }

    fn stopper(&self) -> Arc<HartSignals> {
        self.cpu.hart().signals().clone()
    }
}

/// A trap cause in words (privileged spec §3.1.15, table 3.6).
pub fn describe_cause(c: u64) -> String {
    if c & cause::INTERRUPT != 0 {
        return format!("interrupt {}", c & !cause::INTERRUPT);
    }
    let name = match c {
        cause::INSN_MISALIGNED => "instruction address misaligned",
        cause::INSN_ACCESS => "instruction access fault",
        cause::ILLEGAL_INSN => "illegal instruction",
        cause::BREAKPOINT => "breakpoint",
        cause::LOAD_MISALIGNED => "load address misaligned",
        cause::LOAD_ACCESS => "load access fault",
        cause::STORE_MISALIGNED => "store address misaligned",
        cause::STORE_ACCESS => "store access fault",
        cause::ECALL_U => "environment call from U-mode",
        cause::ECALL_S => "environment call from S-mode",
        cause::ECALL_M => "environment call from M-mode",
        cause::INSN_PAGE_FAULT => "instruction page fault",
        cause::LOAD_PAGE_FAULT => "load page fault",
        cause::STORE_PAGE_FAULT => "store page fault",
        _ => "reserved exception",
    };
    format!("{name} (cause {c})")
}
