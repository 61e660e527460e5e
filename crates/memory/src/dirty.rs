//! Dirty-page tracking: which RAM pages were written since the last look (live migration,
//! diff snapshots).
//!
//! # Design
//!
//! Two records of writes, merged when a round is taken:
//!
//! * **The page flags** ([`FLAG_CLEAN`]). Starting tracking, and taking a round, sets
//!   `FLAG_CLEAN` on every page. The CPU's store fast path already sends a store to the slow
//!   path when its page's flags byte is nonzero, so the first store to a clean page in a round
//!   goes there, and the slow path (`note_hart_write`, also used by AMOs, SC and page-table
//!   A/D updates) clears the bit after writing: a clear bit *is* the dirty mark. Later stores
//!   to the page find the byte zero again and stay on the fast path. Every other RAM write
//!   made through `GuestRam` (`store`, `write_slice`, `discard`, `note_write`) clears it the
//!   same way. Taking a round turns each page's dirty mark into the next round's clean mark
//!   with one `fetch_or` per dirty page, so harvesting and re-arming are the same atomic step:
//!   no clear can fall between the two.
//! * **vm-memory's dirty bitmap**, which marks writes devices make through
//!   [`GuestRam::memory`] (virtio-queue's ring updates, `Bytes` writes): vm-memory writes the
//!   data first and then sets the bit with a SeqCst `fetch_or`; a round takes the bitmap
//!   with SeqCst `fetch_and(0)` on the same words.
//!
//! # Why no write is lost
//!
//! What must hold: a write is reported by the first take whose harvest runs after the write
//! marked its page, and that take sees the written data (so a copy made after it returns
//! is current), or by a later one. A page written again after it was harvested is dirty in the
//! next round. The cases:
//!
//! * **Writes that mark with an RMW after writing** (vm-memory, and a `note_*` that finds
//!   `FLAG_CLEAN` set). If the mark comes before the harvest's RMW on the same atomic in its
//!   modification order, the harvest reads it, is ordered after it (both SeqCst RMWs) and
//!   so sees the data; the page is reported. If it comes after, the page is dirty in the
//!   next round, which reports it the same way.
//! * **A `note_write` that finds the page's flags zero** (already dirty in this round), so
//!   clears nothing: its SeqCst fence sits between the data and that load, and the taker's
//!   SeqCst fence (in `sync`) between its harvest RMW and the copy. Either the load sees
//!   the harvest's `FLAG_CLEAN` (and clears it: dirty next round), or the taker sees the data.
//! * **The CPU's fast path** reads the flags byte (Relaxed) and, seeing zero, stores without
//!   marking anything. A take can re-arm the page between that load and the store, and the
//!   hart's thread can be descheduled right there, so the store may land long after the
//!   harvest reported the page (the page was dirty, which is why the byte was zero) and
//!   after its copy was made. So each take, after harvesting, waits until every hart has
//!   passed a point between two instructions ([`RamWriter::quiescent`], called between
//!   blocks) or is outside guest code ([`RamWriter::leave`]): a store whose flag check came
//!   before the hart's quiescent point has then landed, and is visible to the taker, before
//!   the take returns; a check after that point (ordered after the re-arm by the round
//!   counter the point reads with acquire) sees `FLAG_CLEAN` and takes the slow path. The
//!   same wait covers a hart's slow path, which also reads the flags with a plain load. A
//!   hart that starts running guest code publishes that with a SeqCst fence
//!   ([`RamWriter::enter`]), paired with one in the taker, so the taker either waits for it
//!   or it sees every flag the take set.
//!   [`GuestRam::start_dirty_tracking`] waits the same way, so a store in flight when
//!   tracking starts lands before it returns.
//!
//! A page may be reported in two rounds for one write; none is left out. The waiting is
//! cheap for harts (an acquire load every few thousand instructions; nothing on the store
//! fast path), and it is why harts register as [`RamWriter`]s.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::{GuestRam, FLAG_CLEAN, PAGE_SIZE};

/// A slot's value while its writer runs no guest code.
const IDLE: u64 = 0;

/// The state of dirty-page tracking for one `GuestRam`.
pub(crate) struct DirtyLog {
    tracking: AtomicBool,
    /// Serialises starting, taking and stopping (only a taker sets `FLAG_CLEAN`).
    lock: Mutex<()>,
    writers: Arc<Writers>,
}

/// The threads that store to RAM through the page flags' fast path (harts).
struct Writers {
    /// Incremented by every take; starts at 1 so no round equals `IDLE`.
    round: AtomicU64,
    /// Per writer: `IDLE`, or the last round it saw at a quiescent point.
    slots: Mutex<Vec<Arc<AtomicU64>>>,
}

impl DirtyLog {
    pub(crate) fn new() -> DirtyLog {
        DirtyLog {
            tracking: AtomicBool::new(false),
            lock: Mutex::new(()),
            writers: Arc::new(Writers { round: AtomicU64::new(1), slots: Mutex::new(Vec::new()) }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every registered writer has passed a quiescent point after this call
    /// began, or runs no guest code: every fast-path store that checked the flags before
    /// then has landed and is visible to this thread.
    fn sync(&self) {
        // Pairs with the fence in `RamWriter::enter`: either we see the writer busy, or it
        // sees every flag we set before this point.
        fence(Ordering::SeqCst);
        let target = self.writers.round.fetch_add(1, Ordering::SeqCst) + 1;
        let slots = self.writers.slots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for slot in slots {
            let mut spins = 0u32;
            loop {
                let seen = slot.load(Ordering::Acquire);
                if seen == IDLE || seen >= target {
                    break;
                }
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else if spins < 128 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
    }
}

/// A thread that writes guest RAM on a fast path that skips marking pages whose flags byte
/// is zero (a hart). Between [`RamWriter::enter`] and [`RamWriter::leave`] it must call
/// [`RamWriter::quiescent`] regularly, between two stores (a hart does so between blocks):
/// [`GuestRam::take_dirty_pages`] and [`GuestRam::start_dirty_tracking`] wait for that.
/// Made by [`GuestRam::register_writer`].
pub struct RamWriter {
    slot: Arc<AtomicU64>,
    writers: Arc<Writers>,
}

impl RamWriter {
    /// The thread is about to run guest code (and may store to RAM).
    pub fn enter(&self) {
        let round = self.writers.round.load(Ordering::Acquire);
        self.slot.store(round, Ordering::Relaxed);
        // Pairs with the fence in `DirtyLog::sync`: either the taker sees this slot busy and
        // waits for us, or our flag loads from here on see what it set before its fence.
        fence(Ordering::SeqCst);
    }

    /// [`RamWriter::enter`] now and [`RamWriter::leave`] when the guard is dropped (also
    /// when unwinding from a panic).
    pub fn running(&self) -> Running {
        self.enter();
        Running(self.slot.clone())
    }

    /// A point between two stores: every store before it has landed. Cheap (one load
    /// unless a take is waiting).
    #[inline]
    pub fn quiescent(&self) {
        let round = self.writers.round.load(Ordering::Acquire);
        let seen = self.slot.load(Ordering::Relaxed);
        if seen != round && seen != IDLE {
            // Release: our stores before this are visible to the taker that reads it.
            self.slot.store(round, Ordering::Release);
        }
    }

    /// The thread runs no guest code until the next [`RamWriter::enter`] (it returns to its
    /// caller, sleeps, or waits on a device).
    #[inline]
    pub fn leave(&self) {
        self.slot.store(IDLE, Ordering::Release);
    }
}

/// Made by [`RamWriter::running`]: leaves when dropped.
pub struct Running(Arc<AtomicU64>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(IDLE, Ordering::Release);
    }
}

impl Drop for RamWriter {
    fn drop(&mut self) {
        self.leave();
        let mut slots = self.writers.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|s| !Arc::ptr_eq(s, &self.slot));
    }
}

impl std::fmt::Debug for RamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RamWriter").field("slot", &self.slot.load(Ordering::Relaxed)).finish()
    }
}

impl GuestRam {
    /// Registers a thread that stores to RAM on the page flags' fast path (a hart); see
    /// [`RamWriter`]. It starts out running no guest code.
    pub fn register_writer(&self) -> RamWriter {
        let writers = self.dirty.writers.clone();
        let slot = Arc::new(AtomicU64::new(IDLE));
        writers.slots.lock().unwrap_or_else(|e| e.into_inner()).push(slot.clone());
        RamWriter { slot, writers }
    }

    /// Starts dirty-page tracking: from when this returns, every write to RAM, by a hart or a
    /// device, marks its page until [`GuestRam::take_dirty_pages`] reports it. Already
    /// tracking, it starts a fresh round (what was written so far is forgotten). Waits for
    /// every busy [`RamWriter`] to pass a quiescent point.
    pub fn start_dirty_tracking(&self) {
        let _serial = self.dirty.lock();
        // Device writes from before now don't count (an RMW, so a device write that marked
        // before it is visible to us: see the module docs).
        self.region.bitmap().get_and_reset();
        for flags in self.code.flags.iter() {
            flags.fetch_or(FLAG_CLEAN, Ordering::SeqCst);
        }
        self.dirty.tracking.store(true, Ordering::SeqCst);
        self.dirty.sync();
    }

    /// Stops dirty-page tracking; stores stay on the CPU's fast path again.
    pub fn stop_dirty_tracking(&self) {
        let _serial = self.dirty.lock();
        self.dirty.tracking.store(false, Ordering::SeqCst);
        for flags in self.code.flags.iter() {
            if flags.load(Ordering::Relaxed) & FLAG_CLEAN != 0 {
                flags.fetch_and(!FLAG_CLEAN, Ordering::SeqCst);
            }
        }
    }

    pub fn is_dirty_tracking(&self) -> bool {
        self.dirty.tracking.load(Ordering::SeqCst)
    }

    /// The pages written since tracking started or since the last call, and the start of the
    /// next round, in one step: a write that races with this call is reported now or by the
    /// next call (possibly both), never by neither. When this returns, every write it reports
    /// has landed and is visible to the calling thread. Empty when not tracking. Waits for
    /// every busy [`RamWriter`] to pass a quiescent point: do not call it from a thread whose
    /// own `RamWriter` is busy, nor while holding something a running hart may wait for
    /// outside a device access (harts are not busy during those).
    pub fn take_dirty_pages(&self) -> DirtyPages {
        let _serial = self.dirty.lock();
        let pages = self.code.flags.len() as u64;
        let mut dirty = DirtyPages::new(self.base, pages);
        if !self.is_dirty_tracking() {
            return dirty;
        }
        for (i, flags) in self.code.flags.iter().enumerate() {
            // A clean page stays armed; a dirty one is reported and re-armed by one RMW. A
            // mark made after the load is left for the next round.
            if flags.load(Ordering::Relaxed) & FLAG_CLEAN == 0
                && flags.fetch_or(FLAG_CLEAN, Ordering::SeqCst) & FLAG_CLEAN == 0
            {
                dirty.words[i / 64] |= 1 << (i % 64);
            }
        }
        for (word, device) in dirty.words.iter_mut().zip(self.region.bitmap().get_and_reset()) {
            *word |= device;
        }
        self.dirty.sync();
        dirty
    }
}

/// A set of RAM pages, by page number (0 is the page at RAM's base): what
/// [`GuestRam::take_dirty_pages`] returns. Iterating yields the page numbers in increasing
/// order; [`DirtyPages::addresses`] yields their guest-physical addresses.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct DirtyPages {
    base: u64,
    pages: u64,
    words: Vec<u64>,
}

impl DirtyPages {
    /// An empty set for RAM of `pages` pages at guest-physical `base`.
    pub fn new(base: u64, pages: u64) -> DirtyPages {
        DirtyPages { base, pages, words: vec![0; pages.div_ceil(64) as usize] }
    }

    /// Guest-physical address of page 0.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// How many pages RAM has (the largest page number plus one).
    pub fn ram_pages(&self) -> u64 {
        self.pages
    }

    /// How many pages are in the set.
    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Adds page number `page` (ignored beyond the end of RAM).
    pub fn insert(&mut self, page: u64) {
        if page < self.pages {
            self.words[(page / 64) as usize] |= 1 << (page % 64);
        }
    }

    /// True when page number `page` is in the set.
    pub fn contains(&self, page: u64) -> bool {
        page < self.pages && self.words[(page / 64) as usize] & (1 << (page % 64)) != 0
    }

    /// True when the page holding guest-physical `addr` is in the set.
    pub fn contains_addr(&self, addr: u64) -> bool {
        addr >= self.base && self.contains((addr - self.base) / PAGE_SIZE)
    }

    /// Adds every page of `other` (the same RAM).
    pub fn union_with(&mut self, other: &DirtyPages) {
        debug_assert_eq!((self.base, self.pages), (other.base, other.pages), "different RAM");
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// The page numbers, in increasing order.
    pub fn iter(&self) -> DirtyPagesIter<'_> {
        DirtyPagesIter { words: &self.words, index: 0, word: self.words.first().copied() }
    }

    /// The guest-physical addresses of the pages, in increasing order.
    pub fn addresses(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|p| self.base + p * PAGE_SIZE)
    }

    /// Runs of consecutive pages as `(first page number, page count)`, in increasing order.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut pages = self.iter().peekable();
        std::iter::from_fn(move || {
            let first = pages.next()?;
            let mut count = 1;
            while pages.next_if_eq(&(first + count)).is_some() {
                count += 1;
            }
            Some((first, count))
        })
    }
}

impl std::fmt::Debug for DirtyPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.runs().map(|(p, n)| p..p + n)).finish()
    }
}

/// The page numbers of a [`DirtyPages`], in increasing order.
pub struct DirtyPagesIter<'a> {
    words: &'a [u64],
    index: usize,
    /// What is left of `words[index]`.
    word: Option<u64>,
}

impl Iterator for DirtyPagesIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        loop {
            let word = self.word.as_mut()?;
            if *word != 0 {
                let bit = word.trailing_zeros() as u64;
                *word &= *word - 1;
                return Some(self.index as u64 * 64 + bit);
            }
            self.index += 1;
            self.word = self.words.get(self.index).copied();
        }
    }
}

impl<'a> IntoIterator for &'a DirtyPages {
    type Item = u64;
    type IntoIter = DirtyPagesIter<'a>;

    fn into_iter(self) -> DirtyPagesIter<'a> {
        self.iter()
    }
}

impl IntoIterator for DirtyPages {
    type Item = u64;
    type IntoIter = std::vec::IntoIter<u64>;

    fn into_iter(self) -> std::vec::IntoIter<u64> {
        self.iter().collect::<Vec<_>>().into_iter()
    }
}
