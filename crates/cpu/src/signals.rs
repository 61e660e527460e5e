//! Inputs a hart receives from other threads: interrupt wires, the CLINT's `mtimecmp`, and
//! requests from the VMM. Devices write here from any thread; the hart polls at block
//! boundaries and sleeps here while it waits for an interrupt (WFI). The hart also publishes
//! its statistics here, for the VMM to read while it runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::consts::irq;
use crate::stats::{HartStats, PublishedStats};

#[derive(Default)]
pub struct HartSignals {
    /// `mip` bits driven by wires: MEIP/SEIP from the PLIC, MSIP from the CLINT.
    lines: AtomicU64,
    /// The CLINT's `mtimecmp` for this hart; MTIP is pending while `time >= mtimecmp`.
    mtimecmp: AtomicU64,
    /// The VMM wants `run` to return (pause, stop, power-off).
    exit_requested: AtomicBool,
    /// Something changed that the hart should look at soon.
    kicked: AtomicBool,
    /// An SBI IPI arrived: SSIP must be set (software clears it, so it is not a wire).
    ipi: AtomicBool,
    /// SBI remote fences asked of this hart, and answered by it: when `fences_done` reaches a
    /// ticket from [`HartSignals::post_fence`], the hart has dropped its cached translations
    /// and any overwritten code.
    fences_asked: AtomicU64,
    fences_done: AtomicU64,
    /// RAM pages this hart decoded code from that were overwritten since it last looked.
    overwritten_code: Mutex<Vec<u64>>,
    has_overwritten_code: AtomicBool,
    sleep_lock: Mutex<()>,
    wakeup: Condvar,
    /// What the hart did, as of its last publication.
    stats: PublishedStats,
}

impl HartSignals {
    pub fn new() -> Self {
        HartSignals { mtimecmp: AtomicU64::new(u64::MAX), ..Default::default() }
    }

    /// Drives one interrupt wire (`bit` is a `mip` mask such as [`irq::SEIP`]).
    pub fn set_line(&self, bit: u64, level: bool) {
        debug_assert!(bit & !(irq::MEIP | irq::SEIP | irq::MSIP) == 0);
        let old = if level {
            self.lines.fetch_or(bit, Ordering::SeqCst)
        } else {
            self.lines.fetch_and(!bit, Ordering::SeqCst)
        };
        if (old & bit != 0) != level {
            self.kick();
        }
    }

    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    pub fn set_mtimecmp(&self, value: u64) {
        self.mtimecmp.store(value, Ordering::SeqCst);
        self.kick();
    }

    pub fn mtimecmp(&self) -> u64 {
        self.mtimecmp.load(Ordering::Relaxed)
    }

    /// Makes a supervisor software interrupt pending on this hart (SBI IPI, from any thread).
    pub fn post_ipi(&self) {
        self.ipi.store(true, Ordering::SeqCst);
        self.kick();
    }

    /// An IPI arrived that the hart has not yet turned into SSIP.
    pub(crate) fn ipi_pending(&self) -> bool {
        self.ipi.load(Ordering::SeqCst)
    }

    pub(crate) fn take_ipi(&self) -> bool {
        self.ipi.load(Ordering::Relaxed) && self.ipi.swap(false, Ordering::SeqCst)
    }

    /// Asks this hart to drop its cached translations and overwritten code (SBI RFENCE).
    /// Returns a ticket for [`HartSignals::fence_done`].
    pub fn post_fence(&self) -> u64 {
        let ticket = self.fences_asked.fetch_add(1, Ordering::SeqCst) + 1;
        self.kick();
        ticket
    }

    /// True once the hart has answered the fence with this ticket.
    pub fn fence_done(&self, ticket: u64) -> bool {
        self.fences_done.load(Ordering::SeqCst) >= ticket
    }

    /// The newest fence asked of this hart, if it has not answered it yet.
    pub(crate) fn fence_pending(&self) -> Option<u64> {
        let asked = self.fences_asked.load(Ordering::SeqCst);
        (asked != self.fences_done.load(Ordering::Relaxed)).then_some(asked)
    }

    pub(crate) fn answer_fence(&self, ticket: u64) {
        self.fences_done.fetch_max(ticket, Ordering::SeqCst);
    }

    /// Code this hart decoded from the page at `page_addr` was overwritten (by any hart or a
    /// device): the hart drops it before it runs on.
    pub fn post_overwritten_code(&self, page_addr: u64) {
        self.overwritten_code.lock().unwrap_or_else(|e| e.into_inner()).push(page_addr);
        self.has_overwritten_code.store(true, Ordering::SeqCst);
        self.kick();
    }

    pub(crate) fn take_overwritten_code(&self) -> Vec<u64> {
        if !self.has_overwritten_code.swap(false, Ordering::SeqCst) {
            return Vec::new();
        }
        std::mem::take(&mut *self.overwritten_code.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Asks the hart to return from `run` at its next block boundary.
    pub fn request_exit(&self) {
        self.exit_requested.store(true, Ordering::SeqCst);
        self.kick();
    }

    /// Clears a pending exit request; true if there was one.
    pub fn take_exit_request(&self) -> bool {
        self.exit_requested.swap(false, Ordering::SeqCst)
    }

    pub fn exit_requested(&self) -> bool {
        self.exit_requested.load(Ordering::Relaxed)
    }

    /// The hart's statistics as it last published them: at most a few milliseconds old while
    /// it runs, and final once its `run` returned.
    pub fn stats(&self) -> HartStats {
        self.stats.load()
    }

    pub(crate) fn publish_stats(&self, stats: &HartStats) {
        self.stats.store(stats);
    }

    /// Wakes the hart if it sleeps in WFI, and makes it re-check its inputs.
    pub fn kick(&self) {
        let _guard = self.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.kicked.store(true, Ordering::SeqCst);
        self.wakeup.notify_all();
    }

    /// Sleeps until kicked or until `timeout` passes.
    pub fn sleep(&self, timeout: Duration) {
        let guard = self.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.kicked.swap(false, Ordering::SeqCst) {
            return;
        }
        let _ = self.wakeup.wait_timeout(guard, timeout);
        self.kicked.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn kick_wakes_a_sleeping_hart() {
        let s = Arc::new(HartSignals::new());
        let s2 = s.clone();
        let t = Instant::now();
        let sleeper = std::thread::spawn(move || s2.sleep(Duration::from_secs(30)));
        // The sleeper may not be waiting yet; a kick before the wait is remembered.
        s.set_line(irq::SEIP, true);
        sleeper.join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(s.lines(), irq::SEIP);
    }

    #[test]
    fn lines_set_and_clear_independently() {
        let s = HartSignals::new();
        s.set_line(irq::MEIP, true);
        s.set_line(irq::MSIP, true);
        s.set_line(irq::MEIP, false);
        assert_eq!(s.lines(), irq::MSIP);
    }
}
