//! The goldfish real-time clock (`google,goldfish-rtc`) at 0x10_1000, IRQ 11 on QEMU `virt`:
//! it gives the guest the wall-clock date. Registers (Android goldfish RTC, as read by Linux's
//! `drivers/rtc/rtc-goldfish.c`), all 32 bits:
//!
//! | offset | register |
//! |---|---|
//! | 0x00 | TIME_LOW: low half of ns since the Unix epoch; reading it latches TIME_HIGH |
//! | 0x04 | TIME_HIGH: the latched high half |
//! | 0x08 | ALARM_LOW: writing it arms the alarm at `ALARM_HIGH:value` |
//! | 0x0c | ALARM_HIGH |
//! | 0x10 | IRQ_ENABLED |
//! | 0x14 | CLEAR_ALARM (write) |
//! | 0x18 | ALARM_STATUS: 1 while an alarm is armed |
//! | 0x1c | CLEAR_INTERRUPT (write) |
//!
//! Writing TIME_HIGH then TIME_LOW sets the clock (kept as an offset from host time).
//!
//! Alarms are simple: an armed alarm is checked on every register access and on
//! [`Rtc::poll`] (which the machine may call from its event loop), and fires then, raising
//! the interrupt if enabled. An alarm set in the past fires at once (when Linux enables the
//! interrupt right after arming it); a future one fires at the next access or poll after its
//! time, not on its own.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{lock, IrqLine, MmioDevice};

/// Size of the device's MMIO window.
pub const RTC_SIZE: u64 = 0x1000;

const TIME_LOW: u64 = 0x00;
const TIME_HIGH: u64 = 0x04;
const ALARM_LOW: u64 = 0x08;
const ALARM_HIGH: u64 = 0x0c;
const IRQ_ENABLED: u64 = 0x10;
const CLEAR_ALARM: u64 = 0x14;
const ALARM_STATUS: u64 = 0x18;
const CLEAR_INTERRUPT: u64 = 0x1c;

#[derive(Default)]
struct State {
    /// Guest time minus host time, in ns (the guest may set the clock).
    offset: i128,
    time_high: u32,
    /// The high half written to TIME_HIGH, used by the next TIME_LOW write.
    set_high: u32,
    alarm: u64,
    alarm_armed: bool,
    irq_enabled: bool,
    irq_pending: bool,
}

/// The RTC's registers. The clock itself is saved as the guest's offset from the host's wall
/// clock, not as a date: a restored guest reads the current date (shifted as it had set it),
/// as a machine's battery-backed RTC keeps time while the machine is off. Guest *uptime*
/// is the [`crate::Clock`]'s business and does not jump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcState {
    /// Guest time minus host time, in ns.
    pub offset_ns: i128,
    /// TIME_HIGH as latched by the last TIME_LOW read.
    pub time_high: u32,
    /// The TIME_HIGH value written, for the next TIME_LOW write.
    pub set_high: u32,
    pub alarm: u64,
    pub alarm_armed: bool,
    pub irq_enabled: bool,
    pub irq_pending: bool,
}

/// A source of wall-clock time in ns since the Unix epoch (injectable for tests).
type WallClock = Box<dyn Fn() -> u64 + Send + Sync>;

/// The RTC.
pub struct Rtc {
    state: Mutex<State>,
    irq: Arc<dyn IrqLine>,
    wall: WallClock,
}

fn host_wall_ns() -> u64 {
    // A host clock set before 1970 reads as the epoch rather than failing.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Rtc {
    /// An RTC reading the host's wall clock, interrupting on `irq`.
    pub fn new(irq: Arc<dyn IrqLine>) -> Self {
        Self::with_wall_clock(irq, Box::new(host_wall_ns))
    }

    pub(crate) fn with_wall_clock(irq: Arc<dyn IrqLine>, wall: WallClock) -> Self {
        Rtc { state: Mutex::new(State::default()), irq, wall }
    }

    fn now(&self, s: &State) -> u64 {
        (i128::from((self.wall)()) + s.offset).clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Fires a due alarm and drives the interrupt line.
    fn check(&self, s: &mut State) {
        if s.alarm_armed && self.now(s) >= s.alarm {
            s.alarm_armed = false;
            s.irq_pending = true;
        }
        self.irq.set_level(s.irq_pending && s.irq_enabled);
    }

    pub fn save_state(&self) -> RtcState {
        let s = lock(&self.state);
        RtcState {
            offset_ns: s.offset,
            time_high: s.time_high,
            set_high: s.set_high,
            alarm: s.alarm,
            alarm_armed: s.alarm_armed,
            irq_enabled: s.irq_enabled,
            irq_pending: s.irq_pending,
        }
    }

    /// Puts the registers back and drives the interrupt line to match (an alarm that came due
    /// while the VM was saved fires now).
    pub fn restore_state(&self, state: &RtcState) {
        let mut s = lock(&self.state);
        *s = State {
            offset: state.offset_ns,
            time_high: state.time_high,
            set_high: state.set_high,
            alarm: state.alarm,
            alarm_armed: state.alarm_armed,
            irq_enabled: state.irq_enabled,
            irq_pending: state.irq_pending,
        };
        self.check(&mut s);
    }

    /// Fires the alarm if it is due (call periodically for timely alarms).
    pub fn poll(&self) {
        let mut s = lock(&self.state);
        self.check(&mut s);
    }
}

impl MmioDevice for Rtc {
    fn read(&self, offset: u64, size: u8) -> u64 {
        if size != 4 {
            return 0;
        }
        let mut s = lock(&self.state);
        let v = match offset {
            TIME_LOW => {
                let t = self.now(&s);
                s.time_high = (t >> 32) as u32;
                t as u32
            }
            TIME_HIGH => s.time_high,
            ALARM_LOW => s.alarm as u32,
            ALARM_HIGH => (s.alarm >> 32) as u32,
            IRQ_ENABLED => u32::from(s.irq_enabled),
            ALARM_STATUS => u32::from(s.alarm_armed),
            _ => 0,
        };
        self.check(&mut s);
        u64::from(v)
    }

    fn write(&self, offset: u64, size: u8, value: u64) {
        if size != 4 {
            return;
        }
        let v = value as u32;
        let mut s = lock(&self.state);
        match offset {
            TIME_HIGH => s.set_high = v,
            TIME_LOW => {
                let t = (u64::from(s.set_high) << 32) | u64::from(v);
                s.offset = i128::from(t) - i128::from((self.wall)());
            }
            ALARM_HIGH => s.alarm = (s.alarm & 0xffff_ffff) | (u64::from(v) << 32),
            ALARM_LOW => {
                s.alarm = (s.alarm & !0xffff_ffff) | u64::from(v);
                s.alarm_armed = true;
            }
            IRQ_ENABLED => s.irq_enabled = v & 1 != 0,
            CLEAR_ALARM => s.alarm_armed = false,
            CLEAR_INTERRUPT => s.irq_pending = false,
            _ => {}
        }
        self.check(&mut s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MockLine;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    fn fake(start: u64) -> (Rtc, Arc<MockLine>, Arc<AtomicU64>) {
        let t = Arc::new(AtomicU64::new(start));
        let line = Arc::new(MockLine::default());
        let tc = t.clone();
        let rtc = Rtc::with_wall_clock(line.clone(), Box::new(move || tc.load(SeqCst)));
        (rtc, line, t)
    }

    #[test]
    fn time_low_latches_time_high() {
        let (r, _, t) = fake(0x0000_0001_ffff_fff0);
        assert_eq!(r.read(TIME_LOW, 4), 0xffff_fff0);
        // Time crosses a 2^32 boundary between the two reads: the latch keeps them coherent.
        t.store(0x0000_0002_0000_0010, SeqCst);
        assert_eq!(r.read(TIME_HIGH, 4), 1);
        assert_eq!(r.read(TIME_LOW, 4), 0x10);
        assert_eq!(r.read(TIME_HIGH, 4), 2);
    }

    #[test]
    fn host_clock_gives_a_plausible_date() {
        let r = Rtc::new(Arc::new(MockLine::default()));
        let lo = r.read(TIME_LOW, 4);
        let hi = r.read(TIME_HIGH, 4);
        let secs = (hi << 32 | lo) / 1_000_000_000;
        assert!(secs > 1_700_000_000, "{secs} s since the epoch");
    }

    #[test]
    fn guest_can_set_the_time() {
        let (r, _, t) = fake(1_000);
        r.write(TIME_HIGH, 4, 5);
        r.write(TIME_LOW, 4, 100);
        t.store(1_500, SeqCst);
        assert_eq!(r.read(TIME_LOW, 4), 600);
        assert_eq!(r.read(TIME_HIGH, 4), 5);
    }

    #[test]
    fn alarm_fires_on_access_and_interrupt_clears() {
        let (r, line, t) = fake(1_000);
        r.write(ALARM_HIGH, 4, 0);
        r.write(ALARM_LOW, 4, 2_000);
        r.write(IRQ_ENABLED, 4, 1);
        assert_eq!(r.read(ALARM_STATUS, 4), 1);
        assert_eq!(r.read(ALARM_LOW, 4), 2_000);
        assert!(!line.level());
        t.store(2_000, SeqCst);
        r.poll();
        assert!(line.level());
        assert_eq!(r.read(ALARM_STATUS, 4), 0);
        r.write(CLEAR_INTERRUPT, 4, 1);
        assert!(!line.level());
        // An alarm in the past fires as soon as the interrupt is enabled; a cleared one never.
        r.write(IRQ_ENABLED, 4, 0);
        r.write(ALARM_LOW, 4, 10);
        assert!(!line.level());
        r.write(IRQ_ENABLED, 4, 1);
        assert!(line.level());
        r.write(CLEAR_INTERRUPT, 4, 1);
        r.write(ALARM_LOW, 4, 5_000);
        r.write(CLEAR_ALARM, 4, 1);
        t.store(9_000, SeqCst);
        r.poll();
        assert!(!line.level());
    }

    #[test]
    fn other_sizes_and_offsets() {
        let (r, _, _) = fake(7);
        assert_eq!(r.read(TIME_LOW, 8), 0);
        assert_eq!(r.read(0x20, 4), 0);
        r.write(0x20, 4, 1);
    }
}
