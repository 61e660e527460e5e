//! The interpreter loop: find the block at pc, run its ops, and between blocks look after
//! interrupts, timers, code invalidation and requests from the VMM.

use std::time::Duration;

use crate::block::{BlockCache, Lookup};
use crate::consts::cause;
use crate::hart::{Hart, Stop, SLICE};
use crate::stats::SbiExtension;

/// Why [`Cpu::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `ecall` from S-mode while keel is the SBI implementation: `a7` holds the extension,
    /// `a6` the function and `a0..a5` the arguments; pc points at the `ecall`. The machine
    /// answers in `a0`/`a1` and calls [`Hart::finish_ecall`].
    Sbi,
    /// The VMM asked the hart to stop ([`crate::HartSignals::request_exit`]).
    Requested,
    /// A trap that must go to M-mode arrived while no M-mode firmware exists to take it.
    UndeliverableTrap { cause: u64, tval: u64, pc: u64 },
}

/// A hart and the decoded code it runs.
pub struct Cpu {
    hart: Hart,
    cache: BlockCache,
}

impl Cpu {
    pub fn new(hart: Hart) -> Cpu {
        Cpu { hart, cache: BlockCache::new() }
    }

    pub fn hart(&self) -> &Hart {
        &self.hart
    }

    pub fn hart_mut(&mut self) -> &mut Hart {
        &mut self.hart
    }

    /// Resets the hart (see [`Hart::reset`]) and forgets all decoded code.
    pub fn reset(&mut self, pc: u64, prv: crate::Privilege, sbi_mode: bool) {
        self.hart.reset(pc, prv, sbi_mode);
        self.cache.clear();
    }

    /// Forgets all decoded code (a restored snapshot may have replaced it).
    pub(crate) fn clear_code(&mut self) {
        self.cache.clear();
    }

    /// Runs until something needs the machine's attention. The hart's statistics are
    /// published (see [`crate::HartSignals::stats`]) whenever this returns.
    pub fn run(&mut self) -> Exit {
        // Guest code runs (and stores to RAM) only in here; outside, dirty-page tracking
        // need not wait for this hart. Left on every way out, unwinding included.
        let running = self.hart.ram_writer.running();
        let exit = self.run_until_exit();
        drop(running);
        self.hart.publish_stats();
        exit
    }

    fn run_until_exit(&mut self) -> Exit {
        // The block that just ran to its end, whose links may name the next one.
        let mut prev: Option<u32> = None;
        loop {
            if self.hart.budget <= 0 {
                // Service may drop blocks (a new cache generation): forget `prev`.
                prev = None;
                if let Some(exit) = self.service() {
                    return exit;
                }
            }
            let vpc = self.hart.pc;
            let tag = self.cache.tag(self.hart.fetch_mode());
            let found = match prev.and_then(|p| self.cache.follow(p, vpc, tag)) {
                Some(id) => Lookup::Cached(id),
                None => {
                    let generation = self.cache.generation();
                    let Some(found) = self.cache.lookup(&mut self.hart, vpc) else {
                        // Instruction fetch faulted; the exception is in `hart.stop`.
                        prev = None;
                        if let Some(exit) = self.finish_stop(vpc) {
                            return exit;
                        }
                        continue;
                    };
                    if let (Some(p), Lookup::Cached(id)) = (prev, &found) {
                        if self.cache.generation() == generation {
                            self.cache.link(p, vpc, tag, *id);
                        }
                    }
                    found
                }
            };
            let block = self.cache.get(&found);
            let hart = &mut self.hart;
            hart.block_vpc = vpc;
            let first = &block.ops[0];
            if (first.handler)(hart, first) {
                hart.instret += block.insns as u64;
                hart.budget -= block.insns as i64;
                prev = match found {
                    Lookup::Cached(id) => Some(id),
                    Lookup::Straddler => None,
                };
            } else {
                prev = None;
                let (pc_off, idx) = hart.stop_at;
                hart.instret += idx as u64;
                hart.budget -= idx as i64 + 1;
                if let Some(exit) = self.finish_stop(vpc.wrapping_add(pc_off as u64)) {
                    return exit;
                }
            }
        }
    }

    /// Acts on the reason the current instruction (at `pc`) stopped its block.
    fn finish_stop(&mut self, pc: u64) -> Option<Exit> {
        match std::mem::take(&mut self.hart.stop) {
            Stop::Trap { cause, tval } => {
                if !self.hart.enter_trap(cause, tval, pc) {
                    return Some(Exit::UndeliverableTrap { cause, tval, pc });
                }
                None
            }
            Stop::Sbi => {
                let hart = &mut self.hart;
                hart.pc = pc;
                hart.stats.sbi_calls += 1;
                hart.stats.sbi_by_extension[SbiExtension::from_eid(hart.x[17]) as usize] += 1;
                Some(Exit::Sbi)
            }
            Stop::Wfi => {
                self.hart.instret += 1;
                self.hart.stats.wfi += 1;
                self.wait_for_interrupt()
            }
            Stop::None => None,
        }
    }

    /// The work done between blocks every [`SLICE`] instructions, or sooner when an
    /// instruction asked for it by zeroing the budget.
    fn service(&mut self) -> Option<Exit> {
        let hart = &mut self.hart;
        hart.budget = SLICE;
        // Between two blocks: no store of this hart is in flight.
        hart.ram_writer.quiescent();
        hart.maybe_publish_stats();
        if hart.flush_jump_cache {
            hart.flush_jump_cache = false;
            hart.fenced_pages.clear();
            self.cache.flush_jump_cache();
        }
        for page in hart.fenced_pages.drain(..) {
            self.cache.fence_page(page);
        }
        self.answer_fences();
        let hart = &mut self.hart;
        if hart.signals.take_exit_request() {
            return Some(Exit::Requested);
        }
        hart.poll_inputs();
        if let Some(irq) = hart.pending_interrupt() {
            let pc = hart.pc;
            let cause = cause::INTERRUPT | irq;
            if !hart.enter_trap(cause, 0, pc) {
                return Some(Exit::UndeliverableTrap { cause, tval: 0, pc });
            }
        }
        None
    }

    /// WFI (privileged spec §3.3.3): sleep until an enabled interrupt is pending.
    fn wait_for_interrupt(&mut self) -> Option<Exit> {
        loop {
            if let Some(exit) = self.service() {
                return Some(exit);
            }
            if !self.hart.wfi_should_sleep() {
                return None;
            }
            let deadline = self.hart.next_timer_deadline();
            let now = self.hart.bus.time();
            let hz = self.hart.bus.timebase_hz().max(1);
            let ticks = deadline.saturating_sub(now);
            let nanos = (ticks as u128 * 1_000_000_000 / hz as u128).min(1_000_000_000) as u64;
            // Nothing changes while the hart sleeps: let readers see where it stands.
            self.hart.publish_stats();
            let t = std::time::Instant::now();
            self.hart.ram_writer.leave();
            self.hart.signals.sleep(Duration::from_nanos(nanos.max(1)));
            self.hart.ram_writer.enter();
            self.hart.stats.sleeps += 1;
            self.hart.stats.slept_ns += t.elapsed().as_nanos() as u64;
        }
    }
}

impl Cpu {
    /// Drops decoded code that other harts or devices overwrote, and answers remote fences
    /// (SBI RFENCE) by dropping every cached translation. Also called while the hart is
    /// stopped or waits for other harts' answers, so that fencing harts never wait on each
    /// other forever.
    pub fn answer_fences(&mut self) {
        let hart = &mut self.hart;
        // Read the fence first: overwritten code posted before it was asked is then dropped
        // before it is answered.
        let fence = hart.signals.fence_pending();
        for page in hart.signals.take_overwritten_code() {
            if self.cache.invalidate_page(page) {
                hart.stats.code_pages_invalidated += 1;
            }
        }
        if let Some(ticket) = fence {
            hart.tlb.flush_all();
            hart.fenced_pages.clear();
            hart.flush_jump_cache = false;
            self.cache.flush_jump_cache();
            hart.signals.answer_fence(ticket);
        }
    }
}

impl Hart {
    /// Completes an `ecall` the machine handled itself (an SBI call): the instruction retires
    /// and execution continues after it.
    pub fn finish_ecall(&mut self) {
        self.pc = self.pc.wrapping_add(4);
        self.instret += 1;
        self.budget = 0;
    }
}
