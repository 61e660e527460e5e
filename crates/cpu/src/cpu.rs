//! The run loop: find the block at pc, run it (its native code if it has some, else its
//! interpreter ops, translating it once it is hot), and between blocks look after
//! interrupts, timers, code invalidation and requests from the VMM.

use std::time::Duration;

use crate::block::{BlockCache, Lookup};
use crate::consts::cause;
use crate::hart::{Hart, Stop, NATIVE_SLICE, SLICE};
use crate::jit::{Jit, JitConfig, JitError, JitExit, Untranslated};
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

/// How the run loop runs a block this time.
enum Engine {
    Native(usize),
    Interp,
    /// Translating it filled the code cache, which was emptied with every block.
    Flushed,
}

/// How a hart's guest code runs (QEMU calls the choice `accel`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accel {
    /// The decoded-block interpreter only: the reference, and the fallback.
    Interp,
    /// Blocks that run often are translated to host code (see [`JitConfig`]).
    Jit(JitConfig),
}

impl Default for Accel {
    fn default() -> Accel {
        Accel::Jit(JitConfig::default())
    }
}

/// A hart and the decoded (and translated) code it runs.
pub struct Cpu {
    hart: Hart,
    cache: BlockCache,
    jit: Option<Jit>,
    /// A same-page jump native code took that can be chained once its target, at `vpc`, is
    /// native: (the displacement's address, `vpc`, the cache generation it was seen in).
    pending_chain: Option<(usize, u64, u32)>,
    /// Blocks left to run before [`Cpu::step`] returns.
    steps: u64,
    /// Instructions between two service checks.
    slice: u64,
}

impl Cpu {
    /// A CPU that interprets (see [`Cpu::with_accel`]).
    pub fn new(hart: Hart) -> Cpu {
        Cpu {
            hart,
            cache: BlockCache::new(),
            jit: None,
            pending_chain: None,
            steps: u64::MAX,
            slice: SLICE,
        }
    }

    /// A CPU running its guest code with `accel`.
    pub fn with_accel(hart: Hart, accel: &Accel) -> Result<Cpu, JitError> {
        let mut cpu = Cpu::new(hart);
        if let Accel::Jit(config) = accel {
            cpu.jit = Some(Jit::new(config.clone())?);
            cpu.slice = NATIVE_SLICE;
        }
        Ok(cpu)
    }

    /// Sets the instructions between two service checks (where interrupts are taken), so
    /// that tests can run two engines in lockstep.
    #[doc(hidden)]
    pub fn set_time_slice(&mut self, instructions: u64) {
        self.slice = instructions.max(1);
    }

    /// The engine this CPU runs guest code with.
    pub fn accel(&self) -> Accel {
        match &self.jit {
            Some(jit) => Accel::Jit(jit.config().clone()),
            None => Accel::Interp,
        }
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
        self.clear_code();
    }

    /// Forgets all decoded and translated code (a restored snapshot may have replaced it).
    pub(crate) fn clear_code(&mut self) {
        self.cache.clear();
        if let Some(jit) = &mut self.jit {
            jit.flush(&mut self.hart);
        }
        self.pending_chain = None;
    }

    /// Runs until something needs the machine's attention. The hart's statistics are
    /// published (see [`crate::HartSignals::stats`]) whenever this returns.
    pub fn run(&mut self) -> Exit {
        self.steps = u64::MAX;
        loop {
            if let Some(exit) = self.run_steps() {
                return exit;
            }
        }
    }

    /// Runs one block (a native run of chained blocks counts as one), or takes one fetch
    /// fault; returns early if something needs the machine. For tests that compare engines.
    #[doc(hidden)]
    pub fn step(&mut self) -> Option<Exit> {
        self.steps = 1;
        self.run_steps()
    }

    fn run_steps(&mut self) -> Option<Exit> {
        // Guest code runs (and stores to RAM) only in here; outside, dirty-page tracking
        // need not wait for this hart. Left on every way out, unwinding included.
        let running = self.hart.ram_writer.running();
        let exit = self.run_until_exit();
        drop(running);
        self.hart.publish_stats();
        exit
    }

    fn run_until_exit(&mut self) -> Option<Exit> {
        // The block that just ran to its end in the interpreter, whose links may name the
        // next one.
        let mut prev: Option<u32> = None;
        while self.steps > 0 {
            self.steps -= 1;
            if self.hart.service_due() {
                // Service may drop blocks (a new cache generation): forget `prev`.
                prev = None;
                if let Some(exit) = self.service() {
                    return Some(exit);
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
                        self.pending_chain = None;
                        if let Some(exit) = self.finish_stop(vpc) {
                            return Some(exit);
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
            if let Lookup::Cached(id) = found {
                match self.native_entry(id, vpc) {
                    Engine::Native(entry) => {
                        prev = None;
                        if let Some(exit) = self.run_native(id, vpc, tag, entry) {
                            return Some(exit);
                        }
                        continue;
                    }
                    Engine::Interp => {}
                    Engine::Flushed => {
                        // The block is gone with the rest: look it up again.
                        prev = None;
                        self.steps += 1;
                        continue;
                    }
                }
            }
            self.pending_chain = None;
            let block = self.cache.get(&found);
            let hart = &mut self.hart;
            hart.block_vpc = vpc;
            let first = &block.ops[0];
            if (first.handler)(hart, first) {
                hart.instret += block.insns as u64;
                prev = match found {
                    Lookup::Cached(id) => Some(id),
                    Lookup::Straddler => None,
                };
            } else {
                prev = None;
                let (pc_off, idx) = hart.stop_at;
                if let Some(exit) = self.stopped(vpc.wrapping_add(pc_off as u64), idx) {
                    return Some(exit);
                }
            }
        }
        None
    }

    /// How block `id` runs this time: its native code, translated first if it has run
    /// often enough in the interpreter, or its ops.
    fn native_entry(&mut self, id: u32, vpc: u64) -> Engine {
        let Some(jit) = self.jit.as_mut() else { return Engine::Interp };
        let block = self.cache.block_mut(id);
        if let Some(native) = &block.native {
            return Engine::Native(native.entry);
        }
        if block.runs < jit.config().threshold {
            block.runs += 1;
            return Engine::Interp;
        }
        let ops = &block.ops[..block.insns as usize];
        debug_assert_eq!(vpc & 0xfff, block.page_off as u64);
        match jit.translate(&mut self.hart, ops, vpc) {
            Ok(native) => {
                let entry = native.entry;
                block.native = Some(native);
                self.cache.note_native(vpc, self.hart.fetch_mode(), id, entry);
                Engine::Native(entry)
            }
            Err(Untranslated::Failed) => {
                debug_assert!(false, "the translator failed on a block at {vpc:#x}");
                block.runs = 0;
                Engine::Interp
            }
            Err(Untranslated::CacheFull) => {
                // The code cache is full: start over, this block included.
                jit.flush(&mut self.hart);
                self.cache.clear();
                self.pending_chain = None;
                Engine::Flushed
            }
        }
    }

    /// Runs block `id`'s native code, entered at `vpc`, and acts on how it exits.
    fn run_native(&mut self, id: u32, vpc: u64, tag: u32, entry: usize) -> Option<Exit> {
        let jit = self.jit.as_mut().expect("only a JIT makes native blocks");
        if let Some((site, target, generation)) = self.pending_chain.take() {
            // The jump that exited last time can go straight here from now on: same page,
            // same translation (no generation change since), and this block is native.
            if target == vpc && generation == self.cache.generation() {
                jit.patch(&mut self.hart, site, entry);
            }
        }
        // A probe of the jump cache that led here must find the code too.
        let mode = self.hart.fetch_mode();
        self.cache.note_native(vpc, mode, id, entry);
        let hart = &mut self.hart;
        hart.block_vpc = vpc & !0xfff;
        hart.jit.jump = self.cache.jump_slots();
        hart.jit.tag = tag;
        hart.jit.global_tag = self.cache.global_tag(mode);
        match jit.run(hart, entry) {
            JitExit::Lookup => None,
            JitExit::Chain { site } => {
                self.pending_chain = Some((site, self.hart.pc, self.cache.generation()));
                None
            }
            JitExit::Stop { pc_off, idx } => {
                let pc = self.hart.block_vpc.wrapping_add(pc_off as u64);
                self.stopped(pc, idx)
            }
        }
    }

    /// The instruction at `pc`, at position `idx` of its block, did not complete.
    fn stopped(&mut self, pc: u64, idx: u8) -> Option<Exit> {
        self.pending_chain = None;
        let hart = &mut self.hart;
        hart.instret += idx as u64;
        // The stopped instruction counts against the slice, so that a loop of traps still
        // reaches the service check.
        hart.deadline = hart.deadline.wrapping_sub(1);
        self.finish_stop(pc)
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
            Stop::Retired => {
                self.hart.instret += 1;
                None
            }
            Stop::Wfi => {
                self.hart.instret += 1;
                self.hart.stats.wfi += 1;
                self.wait_for_interrupt()
            }
            Stop::None => None,
        }
    }

    /// The work done between blocks every [`SLICE`] instructions ([`NATIVE_SLICE`] with the
    /// translator), or sooner when an instruction asked for it (`Hart::request_service`).
    fn service(&mut self) -> Option<Exit> {
        let hart = &mut self.hart;
        hart.deadline = hart.instret.wrapping_add(self.slice);
        // Between two blocks: no store of this hart is in flight.
        hart.ram_writer.quiescent();
        hart.maybe_publish_stats();
        if hart.flush_jump_cache {
            hart.flush_jump_cache = false;
            hart.flush_local_jump_cache = false;
            hart.fenced_pages.clear();
            self.cache.flush_jump_cache();
        }
        if hart.flush_local_jump_cache {
            hart.flush_local_jump_cache = false;
            self.cache.flush_local_jump_cache();
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
            hart.flush_local_jump_cache = false;
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
        self.request_service();
    }
}
