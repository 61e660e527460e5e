//! keel-machine: the board around the harts.
//!
//! * [`agent`]: the second UART, keel's channel to an agent in the guest.
//! * [`board`]: builds a [`Machine`] (RAM, devices, harts) and loads the boot image.
//! * [`fdt`]: builds the flattened device tree describing the QEMU `virt`-compatible board.
//! * [`loader`]: recognises a kernel (RISC-V Linux `Image`, or a RISC-V ELF executable) and
//!   decides where it, the initrd and the device tree go in guest RAM.
//! * [`bus`]: the physical address space beyond RAM, as the harts see it.
//! * [`sbi`]: keel's SBI implementation, so kernels boot without firmware.
//! * [`power`]: the guest's power-off / reboot / exit requests.
//! * [`vcpu`]: the vCPU interface the VMM drives, and the software vCPU behind it.
//! * [`metrics`]: what the vCPUs and devices did, read while the machine runs.
//! * [`snapshot`]: a paused machine's state as data, and a machine restored from it.

pub mod agent;
pub mod board;
pub mod bus;
pub mod fdt;
pub mod hsm;
pub mod loader;
pub mod metrics;
pub mod power;
pub mod sbi;
pub mod snapshot;
pub mod vcpu;

pub use board::{Firmware, Machine, MachineConfig, MachineError, VirtioConfig};
pub use keel_cpu::{
    Accel, HartSignals, HartState, HartStats, JitConfig, SbiExtension, DEFAULT_CACHE_MIB,
    MIN_CACHE_MIB,
};
pub use metrics::DeviceCounters;
pub use power::{GuestExit, PowerLatch};
pub use sbi::ConsoleSink;
pub use snapshot::MachineState;
pub use vcpu::{SoftVcpu, Vcpu, VcpuExit};
