//! A machine's state as plain data, and a machine rebuilt from it: what a snapshot and a
//! live migration carry besides guest RAM.
//!
//! [`Machine::save_state`] reads every device while the VM is paused (the vCPUs' states come
//! from their threads, which own them); [`Machine::restore`] assembles a machine from the
//! same configuration around RAM the caller brings (mapped from a snapshot, or filled by a
//! migration) and puts the state back, so that the guest goes on from where it stopped
//! without a boot.

use std::sync::Arc;

use keel_cpu::HartState;
use keel_devices::{AclintState, ClockState, PlicState, RtcState, SysconState, UartState};
use keel_devices::{MmioState, SaveError};
use keel_memory::GuestRam;
use serde::{Deserialize, Serialize};

use crate::board::{Machine, MachineConfig, MachineError};
use crate::fdt;
use crate::hsm::HartHsmState;
use crate::sbi::ConsoleSink;

/// Everything about a paused machine except its RAM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    /// Guest RAM size in bytes, to check the RAM a restore brings.
    pub ram_size: u64,
    /// One per vCPU, in hart order.
    pub harts: Vec<HartState>,
    pub hsm: Vec<HartHsmState>,
    pub clock: ClockState,
    pub aclint: AclintState,
    pub plic: PlicState,
    pub uart: UartState,
    /// The guest agent's serial port.
    pub agent_uart: UartState,
    pub rtc: RtcState,
    pub syscon: SysconState,
    /// One per virtio slot, in slot order.
    pub virtio: Vec<MmioState>,
}

fn mismatch(part: &'static str, detail: impl ToString) -> MachineError {
    MachineError::State { part, detail: detail.to_string() }
}

impl Machine {
    /// The machine's state with `harts` (each vCPU's, in hart order, taken from the vCPU
    /// threads). Call it while the VM is paused and the device I/O thread is held
    /// ([`Machine::hold_devices`]), so that nothing changes underneath.
    /// Fails only if a disk image cannot be flushed (what the guest wrote must be in the
    /// image before the snapshot holds it).
    pub fn save_state(&self, harts: Vec<HartState>) -> Result<MachineState, SaveError> {
        let virtio = self.virtio.iter().map(|t| t.save_state()).collect::<Result<_, _>>()?;
        Ok(MachineState {
            ram_size: self.ram.size(),
            harts,
            hsm: self.sbi.hsm().save_state(),
            clock: self.clock.save_state(),
            aclint: self.aclint.save_state(),
            plic: self.plic.save_state(),
            uart: self.uart.save_state(),
            agent_uart: self.agent.save_state(),
            rtc: self.rtc.save_state(),
            syscon: self.syscon.save_state(),
            virtio,
        })
    }

    /// Stops the device I/O thread from handling events until the guard is dropped: no TAP
    /// packet, socket or timer changes guest memory or a device meanwhile.
    pub fn hold_devices(&self) -> keel_devices::event::EventLoopPause<'_> {
        self.events.pause()
    }

    /// A machine built from `cfg` around `ram` (the guest's memory as it was saved) and put
    /// back into `state`. Nothing is loaded from the kernel or initrd files: the guest goes
    /// on where it was. Its clock stands still until the VMM resumes it, as a paused VM's.
    pub fn restore(
        cfg: &MachineConfig,
        console: ConsoleSink,
        ram: Arc<GuestRam>,
        state: &MachineState,
    ) -> Result<Machine, MachineError> {
        if ram.size() != state.ram_size || ram.base() != fdt::RAM_BASE {
            return Err(mismatch(
                "memory",
                format!(
                    "the snapshot has {} MiB of guest memory, the VM file {} MiB",
                    state.ram_size >> 20,
                    ram.size() >> 20
                ),
            ));
        }
        if state.harts.len() != cfg.vcpus as usize {
            return Err(mismatch(
                "vcpus",
                format!("the snapshot has {} vCPUs, the VM file {}", state.harts.len(), cfg.vcpus),
            ));
        }
        if state.virtio.len() != cfg.virtio.len() {
            return Err(mismatch(
                "devices",
                format!(
                    "the snapshot has {} virtio devices, the VM file {}",
                    state.virtio.len(),
                    cfg.virtio.len()
                ),
            ));
        }
        let mut machine = Machine::assemble(cfg, console, ram)?;
        for (vcpu, hart) in machine.vcpus.iter_mut().zip(&state.harts) {
            vcpu.restore_state(hart).map_err(|e| mismatch("vcpu", e))?;
        }
        machine.sbi.hsm().restore_state(&state.hsm).map_err(|e| mismatch("SBI HSM", e))?;
        machine.clock.pause();
        machine.clock.restore_state(&state.clock);
        machine.aclint.restore_state(&state.aclint).map_err(|e| mismatch("CLINT", e))?;
        machine.plic.restore_state(&state.plic).map_err(|e| mismatch("PLIC", e))?;
        machine.uart.restore_state(&state.uart).map_err(|e| mismatch("UART", e))?;
        machine.agent.restore_state(&state.agent_uart).map_err(|e| mismatch("agent UART", e))?;
        machine.rtc.restore_state(&state.rtc);
        machine.syscon.restore_state(&state.syscon);
        for (i, (t, s)) in machine.virtio.iter().zip(&state.virtio).enumerate() {
            t.restore_state(s).map_err(|e| mismatch("virtio", format!("device {i}: {e}")))?;
        }
        Ok(machine)
    }
}
