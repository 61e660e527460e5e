//! Save/restore of the legacy devices: each is driven into a state worth saving, saved through
//! JSON, restored into a freshly built device, and both must then behave the same.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::testutil::{MockHart, MockLine, MockPower};
use crate::*;

/// Through JSON, as a snapshot file carries it.
fn json<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(state: &T) -> T {
    let back: T = serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap();
    assert_eq!(&back, state);
    back
}

#[test]
fn clock_continues_from_the_saved_time() {
    let c = Clock::new();
    c.pause();
    c.set(123_456_789);
    let state = json(&c.save_state());
    assert_eq!(state.ticks, 123_456_789);
    let paused = Clock::new();
    paused.pause();
    paused.restore_state(&state);
    assert_eq!(paused.now(), 123_456_789, "a paused clock holds the restored time");
    let running = Clock::new();
    running.restore_state(&state);
    let t = running.now();
    assert!((123_456_789..123_456_789 + TIMEBASE_HZ).contains(&t), "{t}");
}

fn aclint(n: usize) -> (Aclint, Vec<Arc<MockHart>>) {
    let harts: Vec<Arc<MockHart>> = (0..n).map(|_| Arc::new(MockHart::default())).collect();
    let dyns = harts.iter().map(|h| h.clone() as Arc<dyn HartTimerInputs>).collect();
    (Aclint::new(Arc::new(Clock::new()), dyns).unwrap(), harts)
}

#[test]
fn aclint_round_trip_reaches_registers_and_harts() {
    let (a, _) = aclint(3);
    a.write(4, 4, 1); // msip of hart 1
    a.write(0x4000, 8, 0x1234_5678_9abc); // mtimecmp of hart 0
    a.write(0x4000 + 16 + 4, 4, 7); // high half of hart 2's mtimecmp
    let state = json(&a.save_state());
    let (b, harts) = aclint(3);
    b.restore_state(&state).unwrap();
    for off in [0, 4, 8, 0x4000, 0x4008, 0x4010] {
        assert_eq!(b.read(off, 8), a.read(off, 8), "offset {off:#x}");
    }
    assert!(harts[1].msip.load(SeqCst) && !harts[0].msip.load(SeqCst));
    assert_eq!(harts[0].mtimecmp.load(SeqCst), 0x1234_5678_9abc);
    assert_eq!(harts[2].mtimecmp.load(SeqCst), 0x7_ffff_ffff);
    assert_eq!(harts[1].mtimecmp.load(SeqCst), u64::MAX);

    let (c, _) = aclint(2);
    let err = c.restore_state(&state).unwrap_err();
    assert!(matches!(err, StateError::Shape { saved: 3, here: 2, .. }), "{err}");
}

fn plic(contexts: usize) -> (Arc<Plic>, Vec<Arc<MockLine>>) {
    let lines: Vec<Arc<MockLine>> = (0..contexts).map(|_| Arc::new(MockLine::default())).collect();
    let dyns = lines.iter().map(|l| l.clone() as Arc<dyn IrqLine>).collect();
    (Arc::new(Plic::new(dyns).unwrap()), lines)
}

const CLAIM: u64 = 0x20_0004;

/// Every register the guest can read, in order (claims excluded: they have side effects).
fn plic_regs(p: &Plic, contexts: u64) -> Vec<u64> {
    let mut offs: Vec<u64> = (0..96).map(|i| 4 * i).collect();
    offs.extend([0x1000, 0x1004, 0x1008]);
    for c in 0..contexts {
        offs.extend([0x2000 + 0x80 * c, 0x2004 + 0x80 * c, 0x2008 + 0x80 * c]);
        offs.push(0x20_0000 + 0x1000 * c);
    }
    offs.into_iter().map(|o| p.read(o, 4)).collect()
}

#[test]
fn plic_round_trip_keeps_claims_pending_and_held_edges() {
    let (p, lines) = plic(4);
    for (irq, prio) in [(1, 1), (10, 5), (33, 3), (64, 7), (95, 2)] {
        p.write(4 * irq, 4, prio);
    }
    // Context 1 (hart 0 S-mode) takes 10, 33 and 95; context 3 takes 64.
    p.write(0x2000 + 0x80, 4, 1 << 10);
    p.write(0x2004 + 0x80, 4, 1 << 1);
    p.write(0x2008 + 0x80, 4, 1 << 31);
    p.write(0x2008 + 0x180, 4, 1);
    p.write(0x20_1000, 4, 1);
    p.write(0x20_3000, 4, 6);
    p.set_level(10, true);
    assert_eq!(p.read(CLAIM + 0x1000, 4), 10); // 10 in progress, wire still high
    p.set_level(33, true); // pending
    p.raise_edge(64); // pending, above context 3's threshold
    p.raise_edge(95);
    assert_eq!(p.read(CLAIM + 0x1000, 4), 33);
    p.raise_edge(95); // 95 pending ... claimed below, then an edge held
    assert_eq!(p.read(CLAIM + 0x1000, 4), 95);
    p.raise_edge(95);
    let state = json(&p.save_state());

    let (q, qlines) = plic(4);
    q.restore_state(&state).unwrap();
    assert_eq!(plic_regs(&q, 4), plic_regs(&p, 4));
    let levels = |l: &[Arc<MockLine>]| l.iter().map(|l| l.level()).collect::<Vec<_>>();
    assert_eq!(levels(&qlines), levels(&lines));
    assert_eq!(levels(&qlines), [false, false, false, true]);
    // The same completions and claims give the same answers on both.
    for d in [&p, &q] {
        d.write(CLAIM + 0x1000, 4, 10); // wire still high: 10 pends again
        d.write(CLAIM + 0x1000, 4, 95); // the held edge pends
        d.write(CLAIM + 0x1000, 4, 33);
    }
    for _ in 0..4 {
        assert_eq!(q.read(CLAIM + 0x1000, 4), p.read(CLAIM + 0x1000, 4));
        assert_eq!(q.read(CLAIM + 0x3000, 4), p.read(CLAIM + 0x3000, 4));
    }
    assert_eq!(levels(&qlines), levels(&lines));

    let (r, _) = plic(2);
    assert!(matches!(r.restore_state(&state), Err(StateError::Shape { what: "contexts", .. })));
    let mut bad = state.clone();
    bad.priority[3] = 8;
    assert!(matches!(q.restore_state(&bad), Err(StateError::Invalid { .. })));
    let mut bad = state;
    bad.pending[0] |= 1; // source 0 does not exist
    assert!(matches!(q.restore_state(&bad), Err(StateError::Invalid { .. })));
}

/// A sink the test can look into.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn uart() -> (Uart, Arc<MockLine>, Sink) {
    let line = Arc::new(MockLine::default());
    let sink = Sink::default();
    (Uart::new(line.clone(), Box::new(sink.clone())), line, sink)
}

const RBR: u64 = 0;
const IER: u64 = 1;
const IIR: u64 = 2;
const LCR: u64 = 3;
const LSR: u64 = 5;
const SCR: u64 = 7;

fn uart_regs(u: &Uart) -> Vec<u64> {
    let mut v = vec![u.read(IER, 1), u.read(LCR, 1), u.read(4, 1), u.read(SCR, 1)];
    u.write(LCR, 1, 0x83);
    v.extend([u.read(0, 1), u.read(1, 1)]);
    u.write(LCR, 1, 0x03);
    v
}

#[test]
fn uart_round_trip_keeps_registers_fifo_and_interrupt() {
    let (u, line, _) = uart();
    u.write(LCR, 1, 0x80);
    u.write(0, 1, 0x0c); // divisor 12: 19200 baud
    u.write(1, 1, 0x00);
    u.write(LCR, 1, 0x1b);
    u.write(SCR, 1, 0x5a);
    u.write(4, 1, 0x0b); // MCR: DTR, RTS, OUT2
    u.write(IER, 1, 0x03); // RDI | THRI
    let input: Vec<u8> = (0..100).collect();
    u.push_input(&input); // 64 in the FIFO, 36 queued on the host side
    for &b in &input[..5] {
        assert_eq!(u.read(RBR, 1), b as u64);
    }
    assert!(line.level());
    let state = json(&u.save_state());
    assert_eq!(state.rx_fifo, input[5..69]);

    let (v, vline, vsink) = uart();
    v.restore_state(&state).unwrap();
    assert!(vline.level(), "receive interrupt driven at once");
    assert_eq!(uart_regs(&v), uart_regs(&u));
    assert_eq!(v.read(IIR, 1), u.read(IIR, 1));
    assert_eq!(v.read(LSR, 1), u.read(LSR, 1));
    // The FIFO comes back whole; the host-side queue (here bytes 69..100) is not saved.
    let mut got = vec![];
    while v.read(LSR, 1) & 1 != 0 {
        got.push(v.read(RBR, 1) as u8);
    }
    assert_eq!(got, input[5..69]);
    // THRE pends after reading RBR drained the FIFO (THRI enabled): same as the original
    // once it has drained both its FIFO and its host queue.
    while u.read(LSR, 1) & 1 != 0 {
        u.read(RBR, 1);
    }
    assert_eq!(v.read(IIR, 1), u.read(IIR, 1));
    assert_eq!(vline.level(), line.level());
    // Output goes to the restored device's own sink.
    v.write(RBR, 1, b'k' as u64);
    assert_eq!(*vsink.0.lock().unwrap(), b"k");

    let mut bad = state;
    bad.rx_fifo = vec![0; 65];
    assert!(matches!(v.restore_state(&bad), Err(StateError::Invalid { .. })));
}

#[test]
fn uart_round_trip_keeps_a_break_at_the_top_of_the_fifo() {
    let (u, _, _) = uart();
    u.write(IER, 1, 0x05); // RDI | RLSI
    u.send_break_then(b"o");
    let state = json(&u.save_state());
    assert!(state.break_char && state.break_status);
    let (v, vline, _) = uart();
    v.restore_state(&state).unwrap();
    assert!(vline.level());
    assert_eq!(v.read(IIR, 1), 0xc6, "receiver line status interrupt");
    assert_eq!(v.read(LSR, 1) & 0x11, 0x11, "BI and DR");
    assert_eq!(v.read(RBR, 1), 0);
    assert_eq!(v.read(RBR, 1), b'o' as u64);
}

fn rtc(start: u64) -> (Rtc, Arc<MockLine>, Arc<AtomicU64>) {
    let t = Arc::new(AtomicU64::new(start));
    let line = Arc::new(MockLine::default());
    let tc = t.clone();
    let r = Rtc::with_wall_clock(line.clone(), Box::new(move || tc.load(SeqCst)));
    (r, line, t)
}

#[test]
fn rtc_round_trip_keeps_offset_alarm_and_interrupt() {
    let (r, _, _) = rtc(1_000_000);
    r.write(0x04, 4, 3); // set the guest's date: 3 << 32 | 500
    r.write(0x00, 4, 500);
    r.write(0x0c, 4, 3);
    r.write(0x08, 4, 9_000); // alarm at 3 << 32 | 9_000
    r.write(0x10, 4, 1);
    let state = json(&r.save_state());
    assert!(state.alarm_armed && state.irq_enabled && !state.irq_pending);
    // Restored on a host whose wall clock reads the same: the same date and registers.
    let (s, line, t) = rtc(1_000_000);
    s.restore_state(&state);
    for off in [0x00, 0x04, 0x08, 0x0c, 0x10, 0x18] {
        assert_eq!(s.read(off, 4), r.read(off, 4), "offset {off:#x}");
    }
    assert!(!line.level());
    // The alarm fires when the guest's date reaches it.
    t.store(1_000_000 + 8_500, SeqCst);
    s.poll();
    assert!(line.level());
    assert_eq!(s.read(0x18, 4), 0);
    // A pending interrupt is restored as a raised line.
    let (p, pline, _) = rtc(0);
    p.restore_state(&s.save_state());
    assert!(pline.level());
}

#[test]
fn syscon_has_no_state_but_round_trips() {
    let s = Syscon::new(Arc::new(MockPower::default()));
    let state = json(&s.save_state());
    s.restore_state(&state);
    assert_eq!(serde_json::to_string(&state).unwrap(), "{}");
}
