//! keel-devices: the platform devices of keel's RISC-V board.
//!
//! The board mirrors QEMU's `virt` machine so that stock kernels find the devices they expect
//! at the addresses they expect. Each device is one file:
//!
//! | file | device | compatible |
//! |---|---|---|
//! | [`clock`] | the 10 MHz guest time base (`mtime`, `rdtime`) | — |
//! | [`aclint`] | CLINT: `msip`, `mtimecmp`, `mtime` | `riscv,clint0` |
//! | [`plic`] | platform-level interrupt controller | `riscv,plic0` |
//! | [`uart`] | 16550A serial port (via `vm-superio`) | `ns16550a` |
//! | [`syscon`] | SiFive test device: power-off / reset | `sifive,test0` |
//! | [`rtc`] | goldfish real-time clock | `google,goldfish-rtc` |
//!
//! Each of these devices, and each virtio device through its transport
//! ([`virtio::mmio::MmioTransport`], [`MmioState`]), has a `save_state` giving its
//! guest-visible state as plain serde data, and a `restore_state` that puts a device built for
//! the same machine back into it, for snapshots.
//!
//! The traits below are the seams between devices, the interrupt fabric and the harts. All
//! devices use interior mutability because several vCPU threads access them concurrently.
//!
//! Lock order (to stay deadlock-free): a device may call into the PLIC (through an
//! [`IrqLine`]) while holding its own lock, and the PLIC calls the harts' lines while holding
//! its lock; nothing calls back the other way.

pub mod aclint;
pub mod clock;
pub mod event;
pub mod plic;
pub mod rate_limiter;
pub mod rtc;
pub mod syscon;
pub mod uart;
pub mod virtio;

pub use aclint::{Aclint, AclintHartState, AclintState};
pub use clock::{Clock, ClockState, TIMEBASE_HZ};
pub use plic::{Plic, PlicContextState, PlicState};
pub use rtc::{Rtc, RtcState};
pub use syscon::{Syscon, SysconState};
pub use uart::{Uart, UartState};
pub use virtio::state::{DeviceState, MmioState, SaveError, VirtqueueState};

use thiserror::Error;

/// A device on the physical bus. `offset` is relative to the device's base; `size` is 1, 2, 4
/// or 8. Devices use interior mutability (a Mutex inside): several vCPU threads call them.
pub trait MmioDevice: Send + Sync {
    fn read(&self, offset: u64, size: u8) -> u64;
    fn write(&self, offset: u64, size: u8, value: u64);
}

/// One interrupt wire into an interrupt controller or a hart (level-sensitive).
pub trait IrqLine: Send + Sync {
    fn set_level(&self, level: bool);
}

/// The per-hart inputs the CLINT drives; the machine implements this on each hart's signal
/// block.
pub trait HartTimerInputs: Send + Sync {
    fn set_msip(&self, level: bool);
    fn set_mtimecmp(&self, value: u64);
}

/// Power requests from the guest (the machine turns them into VM exits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    PowerOff,
    Reset,
    /// The guest asked to exit with status `code`.
    Fail(u16),
}

/// Receives the guest's power requests.
pub trait PowerControl: Send + Sync {
    fn request(&self, req: PowerRequest);
}

/// Errors from building a device with an impossible configuration.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("{device} supports 1 to {max} harts, got {count}")]
    HartCount { device: &'static str, count: usize, max: usize },
    #[error("the PLIC supports 1 to {max} contexts, got {count}")]
    ContextCount { count: usize, max: usize },
    #[error("this device is not available yet: {0}")]
    Unsupported(String),
    /// A device's host side could not be set up; the message names the file, socket or
    /// interface and what to do.
    #[error("{0}")]
    Setup(String),
}

/// A saved device state that does not fit the device it is restored into (a snapshot of
/// another machine shape, or a corrupted one). The device is left as it was.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateError {
    #[error("{device} state has {saved} {what}, this device has {here}")]
    Shape { device: &'static str, what: &'static str, saved: usize, here: usize },
    #[error("{device} state is invalid: {what}")]
    Invalid { device: &'static str, what: String },
}

/// Splits a naturally aligned 8-byte access into its two 4-byte halves, or says it is
/// unsupported: the CLINT and PLIC registers are 32 bits wide (a 64-bit CLINT register is two
/// of them), and RV64 guests may use `ld`/`sd` on them.
pub(crate) fn halves(offset: u64, size: u8) -> Option<[(u64, u32); 2]> {
    (size == 8 && offset % 8 == 0).then_some([(offset, 0), (offset + 4, 32)])
}

/// Locks a device's state. A panic on another vCPU thread while it held the lock leaves the
/// registers as they were, which is still a valid device state, so poisoning is ignored.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod state_tests;

#[cfg(test)]
pub(crate) mod testutil {
    //! Test doubles of the CPU side (which does not exist yet).
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// An interrupt wire that remembers its level and how often it was driven high.
    #[derive(Default)]
    pub struct MockLine {
        level: AtomicBool,
        rises: AtomicUsize,
    }

    impl MockLine {
        pub fn level(&self) -> bool {
            self.level.load(Ordering::SeqCst)
        }
        pub fn rises(&self) -> usize {
            self.rises.load(Ordering::SeqCst)
        }
    }

    impl IrqLine for MockLine {
        fn set_level(&self, level: bool) {
            if level && !self.level.swap(true, Ordering::SeqCst) {
                self.rises.fetch_add(1, Ordering::SeqCst);
            }
            self.level.store(level, Ordering::SeqCst);
        }
    }

    #[derive(Default)]
    pub struct MockHart {
        pub msip: AtomicBool,
        pub mtimecmp: AtomicU64,
    }

    impl HartTimerInputs for MockHart {
        fn set_msip(&self, level: bool) {
            self.msip.store(level, Ordering::SeqCst);
        }
        fn set_mtimecmp(&self, value: u64) {
            self.mtimecmp.store(value, Ordering::SeqCst);
        }
    }

    #[derive(Default)]
    pub struct MockPower(pub Mutex<Vec<PowerRequest>>);

    impl PowerControl for MockPower {
        fn request(&self, req: PowerRequest) {
            self.0.lock().unwrap().push(req);
        }
    }
}
