//! The guest's time base: the `mtime` counter that `rdtime` reads and the CLINT exposes.
//!
//! The privileged spec (§3.2.1, "Machine Timer Registers") only asks for a counter running
//! at a constant frequency; the device tree's `/cpus/timebase-frequency` tells the guest
//! which. QEMU `virt` uses 10 MHz, and so do we, so guest-visible timings match it.
//!
//! Reads are lock-free because every guest `rdtime` lands here: guest time is the host's
//! monotonic clock since VM start plus an offset, or a frozen value while paused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock;

/// Ticks per second of the guest time base (`timebase-frequency`).
pub const TIMEBASE_HZ: u64 = 10_000_000;

const NANOS_PER_TICK: u64 = 1_000_000_000 / TIMEBASE_HZ;

/// Saved guest time: where `mtime` stood. A restored clock continues from it, so the guest
/// sees no time pass while it was saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClockState {
    pub ticks: u64,
}

/// The guest's 64-bit time counter. Share it with `Arc`.
#[derive(Debug)]
pub struct Clock {
    origin: Instant,
    /// Added (wrapping) to the host tick count: lets M-mode software write `mtime` and lets
    /// time resume where it stopped after a pause.
    offset: AtomicU64,
    paused: AtomicBool,
    /// The guest time at which the clock was paused.
    frozen: AtomicU64,
    /// Serialises writers (set/pause/resume) so they never interleave their two stores.
    writer: Mutex<()>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A running clock reading 0 now.
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
            offset: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            frozen: AtomicU64::new(0),
            writer: Mutex::new(()),
        }
    }

    fn host_ticks(&self) -> u64 {
        // u64 nanoseconds cover 584 years of uptime; truncation beyond that is harmless.
        (self.origin.elapsed().as_nanos() as u64) / NANOS_PER_TICK
    }

    /// Current guest time in ticks of [`TIMEBASE_HZ`].
    #[inline]
    pub fn now(&self) -> u64 {
        // Acquire pairs with the Release in `resume`: a reader that sees "running" also sees
        // the offset that resume computed.
        if self.paused.load(Ordering::Acquire) {
            self.frozen.load(Ordering::Acquire)
        } else {
            self.host_ticks().wrapping_add(self.offset.load(Ordering::Acquire))
        }
    }

    /// Sets guest time (an M-mode write to `mtime`, or a restored snapshot). Time keeps
    /// running from `ticks` unless the clock is paused.
    pub fn set(&self, ticks: u64) {
        let _w = lock(&self.writer);
        if self.paused.load(Ordering::Acquire) {
            self.frozen.store(ticks, Ordering::Release);
        } else {
            self.offset.store(ticks.wrapping_sub(self.host_ticks()), Ordering::Release);
        }
    }

    /// Stops guest time; [`Clock::now`] returns the same value until [`Clock::resume`].
    pub fn pause(&self) {
        let _w = lock(&self.writer);
        if !self.paused.load(Ordering::Acquire) {
            self.frozen.store(self.now(), Ordering::Release);
            self.paused.store(true, Ordering::Release);
        }
    }

    /// Lets guest time run again from the value it had when paused.
    pub fn resume(&self) {
        let _w = lock(&self.writer);
        if self.paused.load(Ordering::Acquire) {
            let frozen = self.frozen.load(Ordering::Acquire);
            self.offset.store(frozen.wrapping_sub(self.host_ticks()), Ordering::Release);
            self.paused.store(false, Ordering::Release);
        }
    }

    /// Guest time now (take it while the clock is paused, so it matches the harts' state).
    pub fn save_state(&self) -> ClockState {
        ClockState { ticks: self.now() }
    }

    /// Sets guest time to the saved ticks; it runs on from there, or stays there while the
    /// clock is paused (pausing is the VM's run state, not the clock's).
    pub fn restore_state(&self, state: &ClockState) {
        self.set(state.ticks);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Host duration of `ticks` guest ticks (for sleeping until a timer deadline).
    pub fn ticks_to_duration(ticks: u64) -> Duration {
        Duration::from_nanos(ticks.saturating_mul(NANOS_PER_TICK))
    }

    /// How long until guest time reaches `deadline`: zero if it already has, `None` while
    /// paused (the deadline will not come until resumed).
    pub fn duration_until(&self, deadline: u64) -> Option<Duration> {
        if self.is_paused() {
            return None;
        }
        Some(Self::ticks_to_duration(deadline.saturating_sub(self.now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::sleep;

    #[test]
    fn runs_at_the_timebase() {
        let c = Clock::new();
        let a = c.now();
        sleep(Duration::from_millis(20));
        let b = c.now();
        // 20 ms = 200_000 ticks; allow a slow CI machine plenty of slack above.
        assert!(b - a >= 200_000, "{a} -> {b}");
        assert!(b - a < 200_000 * 50, "{a} -> {b}");
    }

    #[test]
    fn set_moves_time_and_it_keeps_running() {
        let c = Clock::new();
        c.set(1_000_000_000);
        let a = c.now();
        assert!((1_000_000_000..1_000_000_000 + TIMEBASE_HZ).contains(&a));
        sleep(Duration::from_millis(2));
        assert!(c.now() > a);
        // Time may be set backwards too (M-mode's choice).
        c.set(5);
        assert!(c.now() < 1_000_000);
    }

    #[test]
    fn pause_freezes_and_resume_continues_from_there() {
        let c = Clock::new();
        c.set(42_000);
        c.pause();
        let frozen = c.now();
        sleep(Duration::from_millis(5));
        assert_eq!(c.now(), frozen);
        assert!(c.is_paused());
        assert_eq!(c.duration_until(frozen + 10), None);
        c.resume();
        let after = c.now();
        assert!(after >= frozen && after < frozen + TIMEBASE_HZ, "{frozen} -> {after}");
    }

    #[test]
    fn set_while_paused_sticks_after_resume() {
        let c = Clock::new();
        c.pause();
        c.set(7_777_777);
        assert_eq!(c.now(), 7_777_777);
        c.resume();
        let t = c.now();
        assert!((7_777_777..7_777_777 + TIMEBASE_HZ).contains(&t));
    }

    #[test]
    fn durations() {
        assert_eq!(Clock::ticks_to_duration(TIMEBASE_HZ), Duration::from_secs(1));
        let c = Clock::new();
        assert_eq!(c.duration_until(0), Some(Duration::ZERO));
        assert!(c.duration_until(u64::MAX).is_some());
    }
}
