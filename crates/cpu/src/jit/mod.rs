//! The binary translator: blocks that have run often enough become x86-64 code, which runs
//! from then on instead of the interpreter's ops.
//!
//! The interface to the rest of the CPU is small: [`Jit::translate`] turns a block's decoded
//! instructions into a [`Native`] body, [`Jit::run`] enters native code and returns why it
//! stopped ([`JitExit`]), and [`Jit::patch`] chains one native block's exit to another. The
//! run loop (`cpu.rs`) owns the policy: when to translate, when to chain, what to do on exit.
//!
//! What generated code relies on:
//! * `rbx` holds the `&mut Hart`, `r15` the hart's `instret` as of the running block's start;
//!   ten guest registers live in host registers (see [`regs`]), the others in `Hart::x`. The
//!   trampoline loads them on entry and stores them on exit; helpers that read the hart's
//!   registers get them spilled first.
//! * `Hart::block_vpc` holds the virtual page of the running block: native code is keyed by
//!   physical address and may run at several virtual addresses, so every pc it computes is
//!   that page plus a constant offset.
//! * The service deadline (`Hart::deadline`) is checked at every block entry, chained or not,
//!   so interrupts, exit requests and code invalidation wait at most one slice.
//! * Only the owning hart runs, patches or flushes its code cache.

mod code;
// dynasm's macro passes dynamic register numbers through `.into()`, even when they already
// have the type it wants.
#[allow(clippy::useless_conversion)]
mod emit;
mod helpers;
mod regs;
#[allow(clippy::useless_conversion)]
mod trampoline;

use std::time::Instant;

use thiserror::Error;

use crate::hart::Hart;
use crate::interp::op::Op;
use code::CodeCache;

/// How the translator works; [`JitConfig::default`] is what guests run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitConfig {
    /// Times a block runs in the interpreter before it is translated (0: on first sight).
    pub threshold: u32,
    /// Bytes of host code per vCPU; when full, all of it is dropped and translation starts
    /// over.
    pub cache_bytes: usize,
    /// Jump from block to block in native code (patched direct jumps within a page, the
    /// jump cache for the rest). Off, every block returns to the run loop: the differential
    /// tests compare state after every block that way.
    pub chain: bool,
    /// Every load and store takes the slow path (a test mode for the exception paths).
    pub force_slow_memory: bool,
    /// Translates `sub` as `add`, to show that the differential test catches a wrong
    /// translation. Never set outside that test.
    #[doc(hidden)]
    pub inject_fault: bool,
}

impl Default for JitConfig {
    fn default() -> JitConfig {
        JitConfig {
            threshold: DEFAULT_THRESHOLD,
            cache_bytes: DEFAULT_CACHE_MIB << 20,
            chain: true,
            force_slow_memory: false,
            inject_fault: false,
        }
    }
}

/// Runs before a block is worth translating (see the README for how it was chosen).
pub const DEFAULT_THRESHOLD: u32 = 32;
/// MiB of host code per vCPU.
pub const DEFAULT_CACHE_MIB: usize = 32;
/// The smallest cache that holds the largest possible block with room to spare.
pub const MIN_CACHE_MIB: usize = 1;

#[derive(Debug, Error)]
pub enum JitError {
    #[error("cannot set up the translator's code cache: {0}")]
    CodeCache(std::io::Error),
    #[error("jit_cache = {0} MiB: it must be at least {MIN_CACHE_MIB} MiB")]
    CacheTooSmall(usize),
}

/// What translated code keeps next to the hart: read by generated code at fixed offsets.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct JitCtx {
    /// The fast TLB entries of the current data mode (`&tlb.fast[data_mode][0]`).
    pub tlb: usize,
    /// The jump cache's entries (`block::JumpEntry`), for the inline probe.
    pub jump: usize,
    /// The jump-cache tags of this generation and fetch mode (`block::BlockCache::tag` and
    /// `global_tag`): an entry carrying either is current.
    pub tag: u32,
    pub global_tag: u32,
    /// On [`JitExit::Chain`]: where the jump to patch keeps its 32-bit displacement.
    pub patch: usize,
    /// `page_flags` as a raw pointer, and guest RAM's host base (see `mmu::fast_store`).
    pub page_flags: usize,
    pub ram_host: usize,
    /// Guest RAM's physical base: with `ram_host`, turns a host address into a physical one
    /// (LR/SC reservations hold physical addresses).
    pub ram_base: u64,
}

/// Why native code returned to the run loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JitExit {
    /// Go on at `hart.pc`: a jump the native code could not follow, a block that ended with
    /// an instruction the run loop must see, or the service deadline.
    Lookup,
    /// As `Lookup`, from a direct jump that can be chained: once the block at `hart.pc` is
    /// native, the displacement at `site` can be patched to jump there.
    Chain { site: usize },
    /// The instruction at page offset `pc_off` (position `idx` in its block) did not complete:
    /// the reason is in `hart.stop`, as the interpreter leaves it.
    Stop { pc_off: u16, idx: u8 },
}

// The exit code the trampoline returns: the kind in the low byte, and for stops the
// instruction's position and page offset above it.
const EXIT_LOOKUP: u32 = 0;
const EXIT_CHAIN: u32 = 1;
const EXIT_STOP: u32 = 2;

fn stop_code(pc_off: u16, idx: u8) -> u32 {
    EXIT_STOP | (idx as u32) << 8 | (pc_off as u32) << 16
}

impl JitExit {
    fn from_code(code: u32, hart: &Hart) -> JitExit {
        match code & 0xff {
            EXIT_LOOKUP => JitExit::Lookup,
            EXIT_CHAIN => JitExit::Chain { site: hart.jit.patch },
            _ => JitExit::Stop { pc_off: (code >> 16) as u16, idx: (code >> 8) as u8 },
        }
    }
}

/// A block's native body: where its code starts, and the interpreter ops its code calls for
/// instructions it does not translate inline.
pub(crate) struct Native {
    pub entry: usize,
    /// Pairs of ops: the instruction (with its page offset as `pc_off`), then an op that ends
    /// the run. The code holds pointers into this slice.
    _fallback: Box<[Op]>,
}

/// Why a block got no native code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Untranslated {
    /// The code cache is full: empty it and translate again.
    CacheFull,
    /// The emitter could not make code for it (a bug): the block stays interpreted.
    Failed,
}

/// One hart's translator and code cache.
pub(crate) struct Jit {
    config: JitConfig,
    code: CodeCache,
    /// The trampoline and thunks at the cache's start.
    shared: trampoline::Shared,
    /// Where the cache's blocks start (after the trampoline).
    blocks_start: usize,
    /// With `$KEEL_PERF_MAP` set: /tmp/perf-PID.map, which names each block's code for
    /// `perf report` (Linux perf's JIT map convention); each block's bytes also go to
    /// /tmp/keel-jit-PID/ADDRESS.bin, for a disassembler.
    perf_map: Option<std::io::BufWriter<std::fs::File>>,
}

impl Jit {
    pub fn new(config: JitConfig) -> Result<Jit, JitError> {
        if config.cache_bytes < MIN_CACHE_MIB << 20 {
            return Err(JitError::CacheTooSmall(config.cache_bytes >> 20));
        }
        let mut code = CodeCache::new(config.cache_bytes).map_err(JitError::CodeCache)?;
        let shared = trampoline::emit(&mut code);
        let blocks_start = code.used();
        let perf_map = std::env::var_os("KEEL_PERF_MAP").and_then(|_| {
            let path = format!("/tmp/perf-{}.map", std::process::id());
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path).ok()?;
            Some(std::io::BufWriter::new(file))
        });
        Ok(Jit { config, code, shared, blocks_start, perf_map })
    }

    pub fn config(&self) -> &JitConfig {
        &self.config
    }

    /// Translates the block whose ops are `ops` (its real instructions, without the
    /// interpreter's trailing `continue_at`), which starts at page offset `page_off`.
    pub fn translate(
        &mut self,
        hart: &mut Hart,
        ops: &[Op],
        vpc: u64,
    ) -> Result<Native, Untranslated> {
        let page_off = (vpc & 0xfff) as u16;
        let start = Instant::now();
        let base = self.code.next_address();
        let Some((bytes, fallback)) =
            emit::translate_block(&self.config, base, &self.shared, ops, page_off)
        else {
            return Err(Untranslated::Failed);
        };
        let entry = self.code.push(&bytes).ok_or(Untranslated::CacheFull)?;
        debug_assert_eq!(entry, base);
        if let Some(map) = &mut self.perf_map {
            use std::io::Write;
            let _ = writeln!(map, "{entry:x} {:x} keel-block-{vpc:x}", bytes.len());
            let _ = map.flush();
            let dir = format!("/tmp/keel-jit-{}", std::process::id());
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(format!("{dir}/{entry:x}.bin"), &bytes);
        }
        let stats = &mut hart.stats;
        stats.blocks_translated += 1;
        stats.translated_bytes += bytes.len() as u64;
        stats.translate_ns += start.elapsed().as_nanos() as u64;
        Ok(Native { entry, _fallback: fallback })
    }

    /// Drops every block's code (the cache is full, or the block cache was cleared).
    pub fn flush(&mut self, hart: &mut Hart) {
        self.code.reset_to(self.blocks_start);
        hart.stats.translation_flushes += 1;
    }

    /// Points the direct jump whose displacement sits at `site` at `target`.
    pub fn patch(&mut self, hart: &mut Hart, site: usize, target: usize) {
        self.code.patch_rel32(site, target);
        hart.stats.blocks_chained += 1;
    }

    /// Runs native code from `entry` until it exits. The caller has set `hart.block_vpc` to
    /// the virtual page the block runs in and `hart.jit` for this run.
    pub fn run(&self, hart: &mut Hart, entry: usize) -> JitExit {
        hart.stats.native_entries += 1;
        // SAFETY: `enter` is the trampoline emitted by `trampoline::emit` into this cache,
        // which never flushes it; `entry` is the start of a block translated into this cache
        // since its last flush (the caller only keeps `Native`s of the current epoch).
        // Generated code only touches the hart through `rbx` (the pointer passed here, valid
        // and exclusively borrowed for the call), guest RAM through TLB entries that map it,
        // and the helpers in `helpers.rs`.
        let code = unsafe { (self.shared.enter)(hart as *mut Hart, entry) };
        JitExit::from_code(code, hart)
    }
}

#[cfg(test)]
mod tests;
