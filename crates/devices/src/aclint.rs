//! The CLINT (core-local interruptor), laid out as on QEMU `virt` and SiFive parts
//! (`riscv,clint0` / `sifive,clint0`), which the RISC-V ACLINT spec later split into its
//! MSWI (`msip`) and MTIMER (`mtimecmp`, `mtime`) devices at the same offsets:
//!
//! | offset | register | width |
//! |---|---|---|
//! | `0x0000 + 4h` | `msip` of hart h (bit 0 only; ACLINT §3.2) | 32 |
//! | `0x4000 + 8h` | `mtimecmp` of hart h (ACLINT §2.2) | 64 |
//! | `0xbff8` | `mtime` (ACLINT §2.1) | 64 |
//!
//! The 64-bit registers may be accessed whole or as 32-bit halves (RV32 software does the
//! latter; the privileged spec §3.2.1 shows the sequence). The CLINT itself keeps no
//! comparator: it pushes `msip` and `mtimecmp` to each hart's [`HartTimerInputs`], and the
//! hart raises MTIP when `mtime >= mtimecmp` using the shared [`Clock`].

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::{halves, lock, Clock, DeviceError, HartTimerInputs, MmioDevice, StateError};

/// Size of the CLINT's MMIO window.
pub const ACLINT_SIZE: u64 = 0x1_0000;
const MSIP_BASE: u64 = 0x0;
const MTIMECMP_BASE: u64 = 0x4000;
const MTIME: u64 = 0xbff8;
/// Harts the layout has room for: `mtimecmp` of hart 4095 would overlap `mtime`.
pub const MAX_HARTS: usize = ((MTIME - MTIMECMP_BASE) / 8) as usize;

/// Reset value of `mtimecmp`: all ones, so no timer interrupt until software programs one.
pub const MTIMECMP_RESET: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct HartRegs {
    msip: bool,
    mtimecmp: u64,
}

/// The CLINT's registers, hart by hart. `mtime` is not here: it is the [`Clock`]'s, saved
/// with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclintState {
    pub harts: Vec<AclintHartState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclintHartState {
    pub msip: bool,
    pub mtimecmp: u64,
}

/// Which register an offset names; `hi` selects the upper 32 bits of a 64-bit register.
#[derive(Clone, Copy)]
enum Reg {
    Msip(usize),
    Mtimecmp(usize, bool),
    Mtime(bool),
}

/// The CLINT of a machine with `harts.len()` harts.
pub struct Aclint {
    clock: Arc<Clock>,
    harts: Vec<Arc<dyn HartTimerInputs>>,
    regs: Mutex<Vec<HartRegs>>,
}

impl Aclint {
    /// A CLINT in its reset state; it pushes that state (msip clear, mtimecmp all ones) to
    /// every hart so both sides start in agreement.
    pub fn new(
        clock: Arc<Clock>,
        harts: Vec<Arc<dyn HartTimerInputs>>,
    ) -> Result<Self, DeviceError> {
        if harts.is_empty() || harts.len() > MAX_HARTS {
            return Err(DeviceError::HartCount {
                device: "the CLINT",
                count: harts.len(),
                max: MAX_HARTS,
            });
        }
        for h in &harts {
            h.set_msip(false);
            h.set_mtimecmp(MTIMECMP_RESET);
        }
        let regs = vec![HartRegs { msip: false, mtimecmp: MTIMECMP_RESET }; harts.len()];
        Ok(Aclint { clock, harts, regs: Mutex::new(regs) })
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    pub fn num_harts(&self) -> usize {
        self.harts.len()
    }

    /// Sets hart `hart`'s `msip` as a store to its register would (SBI IPI emulation uses
    /// this). Out-of-range harts are ignored.
    pub fn set_msip(&self, hart: usize, level: bool) {
        let mut regs = lock(&self.regs);
        if let Some(r) = regs.get_mut(hart) {
            r.msip = level;
            self.harts[hart].set_msip(level);
        }
    }

    pub fn msip(&self, hart: usize) -> Option<bool> {
        lock(&self.regs).get(hart).map(|r| r.msip)
    }

    /// Sets hart `hart`'s `mtimecmp` (SBI `set_timer` emulation uses this, so the register
    /// and the hart stay in agreement). Out-of-range harts are ignored.
    pub fn set_mtimecmp(&self, hart: usize, value: u64) {
        let mut regs = lock(&self.regs);
        if let Some(r) = regs.get_mut(hart) {
            r.mtimecmp = value;
            self.harts[hart].set_mtimecmp(value);
        }
    }

    pub fn mtimecmp(&self, hart: usize) -> Option<u64> {
        lock(&self.regs).get(hart).map(|r| r.mtimecmp)
    }

    pub fn save_state(&self) -> AclintState {
        let regs = lock(&self.regs);
        AclintState {
            harts: regs
                .iter()
                .map(|r| AclintHartState { msip: r.msip, mtimecmp: r.mtimecmp })
                .collect(),
        }
    }

    /// Puts the registers back and pushes them to the harts (MSIP, the MTIP comparator), as
    /// `new` does with the reset state.
    pub fn restore_state(&self, state: &AclintState) -> Result<(), StateError> {
        let mut regs = lock(&self.regs);
        if state.harts.len() != regs.len() {
            return Err(StateError::Shape {
                device: "the CLINT",
                what: "harts",
                saved: state.harts.len(),
                here: regs.len(),
            });
        }
        for ((r, s), hart) in regs.iter_mut().zip(&state.harts).zip(&self.harts) {
            *r = HartRegs { msip: s.msip, mtimecmp: s.mtimecmp };
            hart.set_msip(s.msip);
            hart.set_mtimecmp(s.mtimecmp);
        }
        Ok(())
    }

    fn decode(&self, offset: u64) -> Option<Reg> {
        let n = self.harts.len() as u64;
        match offset {
            MTIME => Some(Reg::Mtime(false)),
            o if o == MTIME + 4 => Some(Reg::Mtime(true)),
            o if o >= MTIMECMP_BASE && o < MTIMECMP_BASE + 8 * n => {
                let rel = o - MTIMECMP_BASE;
                Some(Reg::Mtimecmp((rel / 8) as usize, rel % 8 == 4))
            }
            o if o < MSIP_BASE + 4 * n => Some(Reg::Msip(((o - MSIP_BASE) / 4) as usize)),
            _ => None,
        }
    }

    /// A 32-bit read of an aligned register word.
    fn read32(&self, offset: u64) -> u32 {
        match self.decode(offset) {
            Some(Reg::Msip(h)) => u32::from(self.msip(h).unwrap_or(false)),
            Some(Reg::Mtimecmp(h, hi)) => half(self.mtimecmp(h).unwrap_or(0), hi),
            Some(Reg::Mtime(hi)) => half(self.clock.now(), hi),
            None => 0,
        }
    }

    fn write32(&self, offset: u64, value: u32) {
        match self.decode(offset) {
            // Only bit 0 is implemented; the others are hardwired to zero (ACLINT §3.2).
            Some(Reg::Msip(h)) => self.set_msip(h, value & 1 != 0),
            Some(Reg::Mtimecmp(h, hi)) => {
                // Read-modify-write under one lock so concurrent half-writes don't tear.
                let mut regs = lock(&self.regs);
                if let Some(r) = regs.get_mut(h) {
                    r.mtimecmp = with_half(r.mtimecmp, hi, value);
                    self.harts[h].set_mtimecmp(r.mtimecmp);
                }
            }
            Some(Reg::Mtime(hi)) => self.clock.set(with_half(self.clock.now(), hi, value)),
            None => {}
        }
    }
}

fn half(v: u64, hi: bool) -> u32 {
    if hi {
        (v >> 32) as u32
    } else {
        v as u32
    }
}

fn with_half(old: u64, hi: bool, value: u32) -> u64 {
    if hi {
        (old & 0xffff_ffff) | (u64::from(value) << 32)
    } else {
        (old & !0xffff_ffff) | u64::from(value)
    }
}

impl MmioDevice for Aclint {
    fn read(&self, offset: u64, size: u8) -> u64 {
        if size == 4 && offset % 4 == 0 {
            return u64::from(self.read32(offset));
        }
        // A whole 64-bit register is read in one go, so `mtime` cannot tear between halves.
        match (size, offset % 8 == 0, self.decode(offset)) {
            (8, true, Some(Reg::Mtime(false))) => self.clock.now(),
            (8, true, Some(Reg::Mtimecmp(h, false))) => self.mtimecmp(h).unwrap_or(0),
            _ => halves(offset, size).map_or(0, |parts| {
                parts.iter().map(|&(o, shift)| u64::from(self.read32(o)) << shift).sum()
            }),
        }
    }

    fn write(&self, offset: u64, size: u8, value: u64) {
        if size == 4 && offset % 4 == 0 {
            return self.write32(offset, value as u32);
        }
        match (size, offset % 8 == 0, self.decode(offset)) {
            (8, true, Some(Reg::Mtime(false))) => self.clock.set(value),
            (8, true, Some(Reg::Mtimecmp(h, false))) => self.set_mtimecmp(h, value),
            _ => {
                for (o, shift) in halves(offset, size).into_iter().flatten() {
                    self.write32(o, (value >> shift) as u32);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MockHart;
    use std::sync::atomic::Ordering::SeqCst;

    fn setup(n: usize) -> (Aclint, Vec<Arc<MockHart>>, Arc<Clock>) {
        let harts: Vec<Arc<MockHart>> = (0..n).map(|_| Arc::new(MockHart::default())).collect();
        let clock = Arc::new(Clock::new());
        let dyns = harts.iter().map(|h| h.clone() as Arc<dyn HartTimerInputs>).collect();
        (Aclint::new(clock.clone(), dyns).unwrap(), harts, clock)
    }

    #[test]
    fn reset_state_is_pushed_to_harts() {
        let (c, harts, _) = setup(2);
        for (i, h) in harts.iter().enumerate() {
            assert_eq!(h.mtimecmp.load(SeqCst), u64::MAX);
            assert!(!h.msip.load(SeqCst));
            assert_eq!(c.read(MTIMECMP_BASE + 8 * i as u64, 8), u64::MAX);
        }
    }

    #[test]
    fn msip_is_bit_zero_only_and_per_hart() {
        let (c, harts, _) = setup(3);
        c.write(4, 4, 0xffff_ffff);
        assert!(harts[1].msip.load(SeqCst));
        assert!(!harts[0].msip.load(SeqCst) && !harts[2].msip.load(SeqCst));
        assert_eq!(c.read(4, 4), 1);
        c.write(4, 4, 2);
        assert!(!harts[1].msip.load(SeqCst));
        assert_eq!(c.read(4, 4), 0);
        // Beyond the last hart: ignored, reads zero.
        c.write(12, 4, 1);
        assert_eq!(c.read(12, 4), 0);
    }

    #[test]
    fn mtimecmp_64bit_write_propagates() {
        let (c, harts, _) = setup(2);
        c.write(MTIMECMP_BASE + 8, 8, 0x1234_5678_9abc_def0);
        assert_eq!(harts[1].mtimecmp.load(SeqCst), 0x1234_5678_9abc_def0);
        assert_eq!(harts[0].mtimecmp.load(SeqCst), u64::MAX);
        assert_eq!(c.read(MTIMECMP_BASE + 8, 8), 0x1234_5678_9abc_def0);
        assert_eq!(c.mtimecmp(1), Some(0x1234_5678_9abc_def0));
    }

    #[test]
    fn mtimecmp_32bit_halves() {
        let (c, harts, _) = setup(1);
        // The RV32 sequence of privileged spec §3.2.1: low = -1, high = new, low = new.
        c.write(MTIMECMP_BASE, 4, 0xffff_ffff);
        c.write(MTIMECMP_BASE + 4, 4, 0x0000_0001);
        assert_eq!(harts[0].mtimecmp.load(SeqCst), 0x1_ffff_ffff);
        c.write(MTIMECMP_BASE, 4, 0x8000_0000);
        assert_eq!(harts[0].mtimecmp.load(SeqCst), 0x1_8000_0000);
        assert_eq!(c.read(MTIMECMP_BASE, 4), 0x8000_0000);
        assert_eq!(c.read(MTIMECMP_BASE + 4, 4), 1);
    }

    #[test]
    fn mtime_reads_the_clock_and_writes_adjust_it() {
        let (c, _, clock) = setup(1);
        clock.pause();
        clock.set(0x0000_0005_0000_0010);
        assert_eq!(c.read(MTIME, 8), 0x5_0000_0010);
        assert_eq!(c.read(MTIME, 4), 0x10);
        assert_eq!(c.read(MTIME + 4, 4), 5);
        c.write(MTIME + 4, 4, 7);
        assert_eq!(clock.now(), 0x7_0000_0010);
        c.write(MTIME, 4, 0x20);
        assert_eq!(clock.now(), 0x7_0000_0020);
        c.write(MTIME, 8, 99);
        assert_eq!(clock.now(), 99);
    }

    #[test]
    fn sbi_side_helpers_and_odd_accesses() {
        let (c, harts, _) = setup(2);
        c.set_mtimecmp(0, 500);
        assert_eq!(harts[0].mtimecmp.load(SeqCst), 500);
        assert_eq!(c.read(MTIMECMP_BASE, 8), 500);
        c.set_msip(1, true);
        assert_eq!(c.read(4, 4), 1);
        c.set_msip(9, true); // no such hart: ignored
        assert_eq!(c.msip(9), None);
        // Byte accesses and unaligned words are not registers.
        assert_eq!(c.read(0, 1), 0);
        c.write(MTIMECMP_BASE + 2, 4, 0);
        assert_eq!(c.read(MTIMECMP_BASE, 8), 500);
        assert_eq!(c.read(0x8000, 8), 0);
    }

    #[test]
    fn bad_hart_counts_are_errors() {
        let clock = Arc::new(Clock::new());
        assert!(Aclint::new(clock.clone(), vec![]).is_err());
        let many: Vec<Arc<dyn HartTimerInputs>> = (0..=MAX_HARTS)
            .map(|_| Arc::new(MockHart::default()) as Arc<dyn HartTimerInputs>)
            .collect();
        assert!(Aclint::new(clock, many).is_err());
    }
}
