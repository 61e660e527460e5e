//! keel's software RISC-V CPU.
//!
//! One [`Cpu`] is one hart: RV64IMAFDC with Zicsr, Zifencei, Zicntr and Sstc, the M, S and U
//! privilege modes, traps with delegation, and Sv39/Sv48/Sv57 paging with a software TLB.
//! Execution decodes each straight-line block once and replays the decoded ops; loads and
//! stores hit host memory directly through the TLB's fast tags.
//!
//! The CPU knows nothing about devices: everything outside RAM is behind the [`Bus`] trait,
//! interrupt wires arrive through [`HartSignals`], and SBI calls come back to the caller as
//! [`Exit::Sbi`].

mod block;
mod bus;
mod compressed;
pub mod consts;
mod cpu;
mod csr;
mod hart;
mod insn;
mod interp;
mod jit;
mod mmu;
mod signals;
mod state;
mod stats;
mod tlb;

pub use bus::Bus;
pub use cpu::{Accel, Cpu, Exit};
pub use hart::{Hart, Privilege, SATP_SV39, SATP_SV48, SATP_SV57};
pub use insn::{decode, encodings, Insn, Opcode};
pub use jit::{JitConfig, JitError, DEFAULT_CACHE_MIB, DEFAULT_THRESHOLD, MIN_CACHE_MIB};
pub use signals::HartSignals;
pub use state::{CsrState, HartState, Reservation, StateError};
pub use stats::{HartStats, SbiExtension, SBI_EXTENSIONS};
