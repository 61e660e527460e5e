//! The PLIC (platform-level interrupt controller), as specified by the RISC-V PLIC
//! specification v1.0.0 and laid out as on QEMU `virt` (`riscv,plic0` / `sifive,plic-1.0.0`):
//!
//! | offset | registers (PLIC spec §3 "Memory Map") |
//! |---|---|
//! | `0x00_0000 + 4*irq` | priority of source `irq` (1..=95), 3 bits |
//! | `0x00_1000` | pending bits, 32 sources per word |
//! | `0x00_2000 + 0x80*c` | enable bits of context c |
//! | `0x20_0000 + 0x1000*c` | priority threshold of context c |
//! | `0x20_0004 + 0x1000*c` | claim / complete of context c |
//!
//! Context `2h` is hart h's M-mode (drives MEIP), context `2h + 1` its S-mode (SEIP), as on
//! QEMU `virt`; the machine passes one [`IrqLine`] per context in that order.
//!
//! Gateways (PLIC spec §5 "Interrupt Gateways"): a source's request reaches the core (sets its
//! pending bit) only when no earlier request of it is in progress, i.e. claimed and not yet
//! completed. A level source is pending while its wire is asserted and no claim is in
//! progress; after completion it pends again if still asserted. When a level wire drops
//! before the claim we withdraw the request (as QEMU does) rather than keep it as the spec
//! permits: the device no longer needs service, so this only spares the guest a spurious
//! claim. Edge sources ([`Plic::raise_edge`]) pend on each edge; edges that arrive while a
//! claim is in progress are remembered (coalesced into one) and pend at completion.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::{halves, lock, DeviceError, IrqLine, MmioDevice, StateError};

/// Size of the PLIC's MMIO window on QEMU `virt`.
pub const PLIC_SIZE: u64 = 0x60_0000;
/// Interrupt sources 1..=NUM_SOURCES exist (`riscv,ndev`); source 0 means "none".
pub const NUM_SOURCES: u32 = 95;
/// Priorities are 3 bits wide (QEMU `virt` has 7 levels); 0 means "never interrupt".
pub const MAX_PRIORITY: u32 = 7;
/// Contexts that fit in [`PLIC_SIZE`].
pub const MAX_CONTEXTS: usize = ((PLIC_SIZE - CONTEXT_BASE) / CONTEXT_STRIDE) as usize;

const PENDING_BASE: u64 = 0x1000;
const ENABLE_BASE: u64 = 0x2000;
const ENABLE_STRIDE: u64 = 0x80;
const CONTEXT_BASE: u64 = 0x20_0000;
const CONTEXT_STRIDE: u64 = 0x1000;
/// 32-bit words of bits covering sources 0..=95.
const WORDS: usize = (NUM_SOURCES as usize + 1).div_ceil(32);

type Bits = [u32; WORDS];

fn bit(bits: &Bits, irq: u32) -> bool {
    bits[(irq / 32) as usize] & (1 << (irq % 32)) != 0
}

fn set_bit(bits: &mut Bits, irq: u32, on: bool) {
    let (w, m) = ((irq / 32) as usize, 1u32 << (irq % 32));
    if on {
        bits[w] |= m;
    } else {
        bits[w] &= !m;
    }
}

/// Mask of the bits of word `w` that name real sources (1..=95).
fn valid_mask(w: usize) -> u32 {
    let mut m = u32::MAX;
    if w == 0 {
        m &= !1; // source 0 does not exist (PLIC spec §4)
    }
    // Bits of this word below the first invalid id (96).
    let valid = (NUM_SOURCES as usize + 1).saturating_sub(w * 32).min(32);
    if valid < 32 {
        m &= (1u32 << valid) - 1;
    }
    m
}

#[derive(Default, Clone, Copy)]
struct Context {
    enable: Bits,
    threshold: u32,
}

struct State {
    priority: [u32; NUM_SOURCES as usize + 1],
    pending: Bits,
    /// Claimed and not yet completed: the gateway holds further requests.
    in_progress: Bits,
    /// The level of each source's wire.
    level: Bits,
    /// An edge arrived while the source was in progress.
    edge_held: Bits,
    contexts: Vec<Context>,
}

impl State {
    /// The source context `c` would get from a claim now: highest priority above the
    /// threshold, lowest id on ties (PLIC spec §8 "Interrupt Claim Process"), or 0.
    fn best(&self, c: usize) -> u32 {
        let ctx = &self.contexts[c];
        let mut best = (0u32, 0u32); // (irq, priority)
        for w in 0..WORDS {
            let mut cand = self.pending[w] & ctx.enable[w];
            while cand != 0 {
                let irq = w as u32 * 32 + cand.trailing_zeros();
                cand &= cand - 1;
                let p = self.priority[irq as usize];
                if p > ctx.threshold && p > best.1 {
                    best = (irq, p);
                }
            }
        }
        best.0
    }

    fn claim(&mut self, c: usize) -> u32 {
        let irq = self.best(c);
        if irq != 0 {
            set_bit(&mut self.pending, irq, false);
            set_bit(&mut self.in_progress, irq, true);
        }
        irq
    }

    fn complete(&mut self, c: usize, irq: u32) {
        // "If the completion ID does not match an interrupt source that is currently enabled
        // for the target, the completion is silently ignored." (PLIC spec §9)
        if irq == 0 || irq > NUM_SOURCES || !bit(&self.contexts[c].enable, irq) {
            return;
        }
        if bit(&self.in_progress, irq) {
            set_bit(&mut self.in_progress, irq, false);
            if bit(&self.level, irq) || bit(&self.edge_held, irq) {
                set_bit(&mut self.edge_held, irq, false);
                set_bit(&mut self.pending, irq, true);
            }
        }
    }
}

/// The PLIC's state. Bit sets are 32-bit words as the guest sees them (bit `irq % 32` of word
/// `irq / 32`); `priority` is indexed by source, so its entry 0 (no source) is always 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlicState {
    pub priority: Vec<u32>,
    pub pending: Vec<u32>,
    /// Claimed and not yet completed (the gateway holds further requests). The PLIC keeps
    /// this per source, not per context: any context may complete a claim.
    pub in_progress: Vec<u32>,
    /// The level of each source's wire as its device last drove it.
    pub level: Vec<u32>,
    /// An edge that arrived while its source was in progress, to pend at completion.
    pub edge_held: Vec<u32>,
    pub contexts: Vec<PlicContextState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlicContextState {
    pub enable: Vec<u32>,
    pub threshold: u32,
}

/// The PLIC. Build it with one line per context, then hand devices their [`Plic::source`].
pub struct Plic {
    state: Mutex<State>,
    lines: Vec<Arc<dyn IrqLine>>,
}

impl Plic {
    /// A PLIC whose context `c` drives `lines[c]` (QEMU `virt` order: hart h's M-mode
    /// external interrupt at `2h`, its S-mode one at `2h + 1`). All registers reset to 0.
    pub fn new(lines: Vec<Arc<dyn IrqLine>>) -> Result<Self, DeviceError> {
        if lines.is_empty() || lines.len() > MAX_CONTEXTS {
            return Err(DeviceError::ContextCount { count: lines.len(), max: MAX_CONTEXTS });
        }
        let state = State {
            priority: [0; NUM_SOURCES as usize + 1],
            pending: Bits::default(),
            in_progress: Bits::default(),
            level: Bits::default(),
            edge_held: Bits::default(),
            contexts: vec![Context::default(); lines.len()],
        };
        let plic = Plic { state: Mutex::new(state), lines };
        plic.update(&lock(&plic.state));
        Ok(plic)
    }

    pub fn num_contexts(&self) -> usize {
        self.lines.len()
    }

    /// The wire of source `irq`, for the device behind it. A number outside 1..=95 gives a
    /// wire connected to nothing (it cannot fail at run time; the machine picks the numbers).
    pub fn source(self: &Arc<Self>, irq: u32) -> Arc<dyn IrqLine> {
        Arc::new(PlicSource { plic: Arc::clone(self), irq })
    }

    /// Drives source `irq`'s level-sensitive wire.
    pub fn set_level(&self, irq: u32, level: bool) {
        if irq == 0 || irq > NUM_SOURCES {
            return;
        }
        let mut s = lock(&self.state);
        set_bit(&mut s.level, irq, level);
        if !bit(&s.in_progress, irq) {
            set_bit(&mut s.pending, irq, level);
        }
        self.update(&s);
    }

    /// Signals one edge on source `irq` (for devices that only report events).
    pub fn raise_edge(&self, irq: u32) {
        if irq == 0 || irq > NUM_SOURCES {
            return;
        }
        let mut s = lock(&self.state);
        if bit(&s.in_progress, irq) {
            set_bit(&mut s.edge_held, irq, true);
        } else {
            set_bit(&mut s.pending, irq, true);
        }
        self.update(&s);
    }

    pub fn save_state(&self) -> PlicState {
        let s = lock(&self.state);
        PlicState {
            priority: s.priority.to_vec(),
            pending: s.pending.to_vec(),
            in_progress: s.in_progress.to_vec(),
            level: s.level.to_vec(),
            edge_held: s.edge_held.to_vec(),
            contexts: s
                .contexts
                .iter()
                .map(|c| PlicContextState { enable: c.enable.to_vec(), threshold: c.threshold })
                .collect(),
        }
    }

    /// Puts the registers back and drives every context's line (MEIP/SEIP) to match.
    pub fn restore_state(&self, state: &PlicState) -> Result<(), StateError> {
        let shape = |what, saved: usize, here: usize| {
            if saved == here {
                Ok(())
            } else {
                Err(StateError::Shape { device: "the PLIC", what, saved, here })
            }
        };
        let invalid = |what: String| StateError::Invalid { device: "the PLIC", what };
        shape("contexts", state.contexts.len(), self.lines.len())?;
        shape("priorities", state.priority.len(), NUM_SOURCES as usize + 1)?;
        let bits = |what: &'static str, v: &[u32]| -> Result<Bits, StateError> {
            shape(what, v.len(), WORDS)?;
            let mut out = Bits::default();
            for (w, (o, &b)) in out.iter_mut().zip(v).enumerate() {
                if b & !valid_mask(w) != 0 {
                    return Err(invalid(format!("{what} word {w} = {b:#x} names no source")));
                }
                *o = b;
            }
            Ok(out)
        };
        let mut priority = [0; NUM_SOURCES as usize + 1];
        for (irq, (p, &v)) in priority.iter_mut().zip(&state.priority).enumerate() {
            if v > MAX_PRIORITY || (irq == 0 && v != 0) {
                return Err(invalid(format!("priority of source {irq} = {v}")));
            }
            *p = v;
        }
        let mut contexts = Vec::with_capacity(state.contexts.len());
        for (i, c) in state.contexts.iter().enumerate() {
            if c.threshold > MAX_PRIORITY {
                return Err(invalid(format!("threshold of context {i} = {}", c.threshold)));
            }
            contexts
                .push(Context { enable: bits("enable words", &c.enable)?, threshold: c.threshold });
        }
        let new = State {
            priority,
            pending: bits("pending words", &state.pending)?,
            in_progress: bits("in-progress words", &state.in_progress)?,
            level: bits("level words", &state.level)?,
            edge_held: bits("edge words", &state.edge_held)?,
            contexts,
        };
        let mut s = lock(&self.state);
        *s = new;
        self.update(&s);
        Ok(())
    }

    /// Recomputes every context's output (PLIC spec §7: the target is notified when a pending,
    /// enabled source has priority above its threshold) and drives the lines. Called with the
    /// state locked so lines never see levels out of order.
    fn update(&self, s: &State) {
        for (c, line) in self.lines.iter().enumerate() {
            line.set_level(s.best(c) != 0);
        }
    }

    fn read32(&self, offset: u64) -> u32 {
        let mut s = lock(&self.state);
        match Reg::decode(offset, self.lines.len()) {
            Some(Reg::Priority(irq)) => s.priority[irq as usize],
            Some(Reg::Pending(w)) => s.pending[w],
            Some(Reg::Enable(c, w)) => s.contexts[c].enable[w],
            Some(Reg::Threshold(c)) => s.contexts[c].threshold,
            Some(Reg::Claim(c)) => {
                let irq = s.claim(c);
                self.update(&s);
                irq
            }
            None => 0,
        }
    }

    fn write32(&self, offset: u64, value: u32) {
        let mut s = lock(&self.state);
        match Reg::decode(offset, self.lines.len()) {
            // WARL fields: keep the implemented bits (PLIC spec §4, §6).
            Some(Reg::Priority(irq)) => s.priority[irq as usize] = value & MAX_PRIORITY,
            Some(Reg::Enable(c, w)) => s.contexts[c].enable[w] = value & valid_mask(w),
            Some(Reg::Threshold(c)) => s.contexts[c].threshold = value & MAX_PRIORITY,
            Some(Reg::Claim(c)) => s.complete(c, value),
            // Pending bits are read-only (PLIC spec §5).
            Some(Reg::Pending(_)) | None => return,
        }
        self.update(&s);
    }
}

#[derive(Clone, Copy)]
enum Reg {
    Priority(u32),
    Pending(usize),
    Enable(usize, usize),
    Threshold(usize),
    Claim(usize),
}

impl Reg {
    /// The register at a 4-byte-aligned `offset`, if it exists for `contexts` contexts.
    fn decode(offset: u64, contexts: usize) -> Option<Reg> {
        let n = contexts as u64;
        match offset {
            o if o < PENDING_BASE => {
                let irq = (o / 4) as u32;
                (1..=NUM_SOURCES).contains(&irq).then_some(Reg::Priority(irq))
            }
            o if o < ENABLE_BASE => {
                let w = ((o - PENDING_BASE) / 4) as usize;
                (w < WORDS).then_some(Reg::Pending(w))
            }
            o if o < ENABLE_BASE + ENABLE_STRIDE * n => {
                let rel = o - ENABLE_BASE;
                let (c, w) = ((rel / ENABLE_STRIDE) as usize, (rel % ENABLE_STRIDE / 4) as usize);
                (w < WORDS).then_some(Reg::Enable(c, w))
            }
            o if (CONTEXT_BASE..CONTEXT_BASE + CONTEXT_STRIDE * n).contains(&o) => {
                let rel = o - CONTEXT_BASE;
                let c = (rel / CONTEXT_STRIDE) as usize;
                match rel % CONTEXT_STRIDE {
                    0 => Some(Reg::Threshold(c)),
                    4 => Some(Reg::Claim(c)),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

impl MmioDevice for Plic {
    /// PLIC registers are 32 bits wide (PLIC spec §3); an aligned 64-bit access is two 32-bit
    /// ones, other sizes read 0 and write nothing.
    fn read(&self, offset: u64, size: u8) -> u64 {
        if size == 4 && offset % 4 == 0 {
            return u64::from(self.read32(offset));
        }
        halves(offset, size).map_or(0, |parts| {
            parts.iter().map(|&(o, shift)| u64::from(self.read32(o)) << shift).sum()
        })
    }

    fn write(&self, offset: u64, size: u8, value: u64) {
        if size == 4 && offset % 4 == 0 {
            return self.write32(offset, value as u32);
        }
        for (o, shift) in halves(offset, size).into_iter().flatten() {
            self.write32(o, (value >> shift) as u32);
        }
    }
}

/// One source's wire into the PLIC.
struct PlicSource {
    plic: Arc<Plic>,
    irq: u32,
}

impl IrqLine for PlicSource {
    fn set_level(&self, level: bool) {
        self.plic.set_level(self.irq, level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MockLine;

    const M0: usize = 0;
    const S0: usize = 1;

    fn setup(harts: usize) -> (Arc<Plic>, Vec<Arc<MockLine>>) {
        let lines: Vec<Arc<MockLine>> = (0..2 * harts).map(|_| Arc::default()).collect();
        let dyns = lines.iter().map(|l| l.clone() as Arc<dyn IrqLine>).collect();
        (Arc::new(Plic::new(dyns).unwrap()), lines)
    }

    fn prio(p: &Plic, irq: u32, v: u32) {
        p.write(4 * irq as u64, 4, v as u64);
    }
    fn enable(p: &Plic, c: usize, irq: u32) {
        let off = ENABLE_BASE + ENABLE_STRIDE * c as u64 + 4 * (irq / 32) as u64;
        let old = p.read(off, 4);
        p.write(off, 4, old | 1 << (irq % 32));
    }
    fn threshold(p: &Plic, c: usize, v: u32) {
        p.write(CONTEXT_BASE + CONTEXT_STRIDE * c as u64, 4, v as u64);
    }
    fn claim(p: &Plic, c: usize) -> u32 {
        p.read(CONTEXT_BASE + CONTEXT_STRIDE * c as u64 + 4, 4) as u32
    }
    fn complete(p: &Plic, c: usize, irq: u32) {
        p.write(CONTEXT_BASE + CONTEXT_STRIDE * c as u64 + 4, 4, irq as u64);
    }
    fn pending(p: &Plic, irq: u32) -> bool {
        p.read(PENDING_BASE + 4 * (irq / 32) as u64, 4) & (1 << (irq % 32)) != 0
    }

    #[test]
    fn claim_complete_with_level_source() {
        let (p, lines) = setup(1);
        let uart = p.source(10);
        prio(&p, 10, 1);
        enable(&p, S0, 10);
        assert!(!lines[S0].level());
        uart.set_level(true);
        assert!(pending(&p, 10));
        assert!(lines[S0].level());
        assert!(!lines[M0].level(), "not enabled for M-mode");
        assert_eq!(claim(&p, S0), 10);
        assert!(!pending(&p, 10));
        assert!(!lines[S0].level(), "claimed: line drops");
        // While in progress the gateway forwards nothing, and a second claim finds nothing.
        assert_eq!(claim(&p, S0), 0);
        // Still asserted at completion: it pends again.
        complete(&p, S0, 10);
        assert!(pending(&p, 10));
        assert!(lines[S0].level());
        assert_eq!(claim(&p, S0), 10);
        uart.set_level(false);
        complete(&p, S0, 10);
        assert!(!pending(&p, 10));
        assert!(!lines[S0].level());
    }

    #[test]
    fn level_drop_before_claim_withdraws_the_request() {
        let (p, lines) = setup(1);
        prio(&p, 3, 1);
        enable(&p, S0, 3);
        p.set_level(3, true);
        assert!(lines[S0].level());
        p.set_level(3, false);
        assert!(!pending(&p, 3));
        assert!(!lines[S0].level());
    }

    #[test]
    fn priority_order_and_lowest_id_on_ties() {
        let (p, _) = setup(1);
        for (irq, pr) in [(5, 2), (6, 7), (7, 7), (40, 3)] {
            prio(&p, irq, pr);
            enable(&p, S0, irq);
            p.set_level(irq, true);
        }
        assert_eq!(claim(&p, S0), 6);
        assert_eq!(claim(&p, S0), 7);
        assert_eq!(claim(&p, S0), 40);
        assert_eq!(claim(&p, S0), 5);
        assert_eq!(claim(&p, S0), 0);
    }

    #[test]
    fn threshold_and_zero_priority_mask() {
        let (p, lines) = setup(1);
        prio(&p, 1, 3);
        enable(&p, S0, 1);
        threshold(&p, S0, 3);
        p.set_level(1, true);
        assert!(!lines[S0].level(), "priority must exceed the threshold");
        assert_eq!(claim(&p, S0), 0);
        threshold(&p, S0, 2);
        assert!(lines[S0].level());
        prio(&p, 1, 0);
        assert!(!lines[S0].level(), "priority 0 never interrupts");
        assert!(pending(&p, 1));
    }

    #[test]
    fn edge_source_and_edges_during_claim() {
        let (p, lines) = setup(1);
        prio(&p, 2, 1);
        enable(&p, M0, 2);
        p.raise_edge(2);
        assert!(lines[M0].level());
        assert_eq!(claim(&p, M0), 2);
        assert!(!lines[M0].level());
        // Two edges while in progress coalesce into one request after completion.
        p.raise_edge(2);
        p.raise_edge(2);
        assert!(!pending(&p, 2));
        complete(&p, M0, 2);
        assert!(pending(&p, 2));
        assert_eq!(claim(&p, M0), 2);
        complete(&p, M0, 2);
        assert!(!pending(&p, 2));
        assert!(!lines[M0].level());
    }

    #[test]
    fn contexts_are_independent_per_hart_and_mode() {
        let (p, lines) = setup(2);
        prio(&p, 8, 1);
        enable(&p, 3, 8); // hart 1, S-mode
        p.set_level(8, true);
        assert!(lines[3].level());
        assert!(!lines[0].level() && !lines[1].level() && !lines[2].level());
        assert_eq!(claim(&p, 1), 0, "hart 0 S-mode has it disabled");
        assert_eq!(claim(&p, 3), 8);
    }

    #[test]
    fn complete_of_a_source_not_enabled_is_ignored() {
        let (p, _) = setup(1);
        prio(&p, 9, 1);
        enable(&p, S0, 9);
        p.set_level(9, true);
        assert_eq!(claim(&p, S0), 9);
        complete(&p, M0, 9); // not enabled for M-mode: ignored, still in progress
        assert!(!pending(&p, 9));
        complete(&p, S0, 9);
        assert!(pending(&p, 9));
    }

    #[test]
    fn register_masks_and_bounds() {
        let (p, _) = setup(1);
        prio(&p, 1, 0xff);
        assert_eq!(p.read(4, 4), 7);
        prio(&p, 0, 5); // source 0 does not exist
        assert_eq!(p.read(0, 4), 0);
        p.write(ENABLE_BASE, 4, 0xffff_ffff);
        assert_eq!(p.read(ENABLE_BASE, 4), 0xffff_fffe);
        p.write(ENABLE_BASE + 8, 4, 0xffff_ffff);
        assert_eq!(p.read(ENABLE_BASE + 8, 4), 0xffff_ffff); // sources 64..=95
        p.write(ENABLE_BASE + 12, 4, 0xffff_ffff);
        assert_eq!(p.read(ENABLE_BASE + 12, 4), 0);
        threshold(&p, 0, 9);
        assert_eq!(p.read(CONTEXT_BASE, 4), 1);
        // A context that does not exist, and out-of-range sources, do nothing.
        assert_eq!(p.read(CONTEXT_BASE + 2 * CONTEXT_STRIDE, 4), 0);
        p.set_level(96, true);
        p.raise_edge(0);
        assert_eq!(p.read(PENDING_BASE + 8, 4), 0);
        assert_eq!(p.read(4, 1), 0);
        assert!(Plic::new(vec![]).is_err());
        assert_eq!(MAX_CONTEXTS, 1024);
    }
}
