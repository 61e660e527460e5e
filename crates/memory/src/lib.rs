//! Guest RAM for keel.
//!
//! One contiguous guest-physical RAM region, mapped through `vm-memory` in one of two ways:
//!
//! * [`GuestRam::new`]: an anonymous private mapping (`MAP_NORESERVE`: pages are only
//!   allocated when the guest touches them, so a VM can be given more memory than it uses);
//! * [`GuestRam::from_file`]: a private copy-on-write mapping of a file (a snapshot's memory
//!   image). Restoring copies nothing, pages are read from the file when first touched, and
//!   every VM mapping one file shares the pages it has not written through the page cache.
//!
//! The CPU reaches RAM through raw host addresses on its fast path; this crate is where that
//! pointer arithmetic is justified, so `unsafe` stays here and in the CPU's TLB fast path.
//!
//! Every RAM page has a flags byte ([`GuestRam::page_flags`]) that the CPU's store fast path
//! reads on every store; a nonzero byte sends the store to the slow path, which calls
//! [`GuestRam::note_hart_write`]. Two bits are used: [`FLAG_CODE`] (a hart holds decoded code
//! from the page, so it must drop it) and [`FLAG_CLEAN`] (dirty-page tracking is on and the
//! page was not written in the current round; see [`GuestRam::start_dirty_tracking`]).

mod dirty;
mod file;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use thiserror::Error;
use vm_memory::mmap::{MmapRegion, MmapRegionBuilder};
use vm_memory::{Bytes, GuestAddress, GuestRegionMmap};

pub use dirty::{DirtyPages, DirtyPagesIter, RamWriter, Running};
pub use vm_memory::bitmap::AtomicBitmap;

/// vm-memory's view of guest RAM (see [`GuestRam::memory`]). Its regions carry vm-memory's
/// dirty bitmap, which marks every write made through vm-memory's `Bytes` and volatile-slice
/// APIs (virtio-queue's used-ring updates among them), so dirty-page tracking sees device
/// writes without the devices doing anything.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<AtomicBitmap>;

/// Size of a guest page as the RISC-V MMU sees it (privileged spec §12.3, 4 KiB base pages).
pub const PAGE_SIZE: u64 = 4096;

/// Page flag: some hart holds decoded code from the page; stores must tell it.
pub const FLAG_CODE: u8 = 1 << 0;
/// Page flag: dirty-page tracking is on and the page was not written in the current round;
/// the first store to it must mark it dirty (by clearing this bit).
pub const FLAG_CLEAN: u8 = 1 << 1;

#[derive(Debug, Error)]
pub enum MemoryError {
    #[error("guest memory size must be at least one 4 KiB page and a whole number of pages (got {0} bytes)")]
    BadSize(u64),
    #[error(
        "guest memory of {size} bytes at {base:#x} does not fit in the physical address space"
    )]
    OutOfRange { base: u64, size: u64 },
    #[error("the host could not map {size} MiB of guest memory: {reason}")]
    Map { size: u64, reason: String },
    #[error("guest address range {addr:#x}+{len:#x} is outside guest RAM")]
    Outside { addr: u64, len: u64 },
    #[error("the memory file offset {0:#x} is not a multiple of the 4 KiB page size")]
    FileOffset(u64),
    #[error(
        "the memory file is too short: guest memory needs its bytes up to {need} \
         (offset + size), but it holds only {len} bytes"
    )]
    FileTooShort { need: u64, len: u64 },
    #[error("the memory file cannot be used: {0}")]
    File(String),
    #[error("cannot read {path}: {reason}")]
    Proc { path: &'static str, reason: String },
}

/// Told when RAM that harts decoded code from is overwritten, so they drop that code.
pub trait CodeObserver: Send + Sync {
    /// The page at `page_addr` changed; bit `h` of `harts` is set for each hart that had
    /// decoded code from it.
    fn code_overwritten(&self, page_addr: u64, harts: u64);
}

/// Per-page flags and which harts hold decoded code from each RAM page. Any store to a code
/// page, by a hart or by a device, must make those harts drop it: the CPU's store fast path
/// checks the page's flags, and device writes go through [`GuestRam::write_slice`] or
/// [`GuestRam::note_write`].
struct CodeMap {
    /// Per page: [`FLAG_CODE`] | [`FLAG_CLEAN`] (the byte the fast path reads).
    flags: Arc<[AtomicU8]>,
    /// Per page: bit h set while hart h holds code from it.
    harts: Box<[AtomicU64]>,
    observer: RwLock<Option<Arc<dyn CodeObserver>>>,
}

/// The guest's RAM.
pub struct GuestRam {
    mem: GuestMemoryMmap,
    /// The mapping `mem` is made of (for its dirty bitmap).
    region: Arc<MmapRegion<AtomicBitmap>>,
    base: u64,
    size: u64,
    host: usize,
    code: CodeMap,
    dirty: dirty::DirtyLog,
    /// Some of RAM still maps a file (false for anonymous RAM, and once a discard of all of
    /// RAM replaced the file mapping; see `file.rs`).
    file_backed: AtomicBool,
}

/// Primitive values the CPU moves between registers and RAM.
pub trait Prim: Copy + Default {
    const SIZE: usize;
}
impl Prim for u8 {
    const SIZE: usize = 1;
}
impl Prim for u16 {
    const SIZE: usize = 2;
}
impl Prim for u32 {
    const SIZE: usize = 4;
}
impl Prim for u64 {
    const SIZE: usize = 8;
}

/// Checks a RAM range; returns its size as a host length.
fn check_range(base: u64, size: u64) -> Result<usize, MemoryError> {
    if size == 0 || size % PAGE_SIZE != 0 {
        return Err(MemoryError::BadSize(size));
    }
    // RISC-V physical addresses are at most 56 bits wide (privileged spec §12.4, Sv39 PPN).
    let end = base.checked_add(size).ok_or(MemoryError::OutOfRange { base, size })?;
    if end > 1 << 56 || base % PAGE_SIZE != 0 {
        return Err(MemoryError::OutOfRange { base, size });
    }
    usize::try_from(size).map_err(|_| MemoryError::OutOfRange { base, size })
}

/// A mapping builder for `len` bytes of RAM with a dirty bitmap of one bit per guest page.
fn region_builder(len: usize) -> MmapRegionBuilder<AtomicBitmap> {
    const PAGE: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(PAGE_SIZE as usize) {
        Some(p) => p,
        None => unreachable!(),
    };
    MmapRegionBuilder::new_with_bitmap(len, AtomicBitmap::new(len, PAGE))
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
}

impl GuestRam {
    /// Maps `size` bytes of guest RAM at guest-physical `base`. Nothing is allocated yet.
    pub fn new(base: u64, size: u64) -> Result<Self, MemoryError> {
        let len = check_range(base, size)?;
        let region = region_builder(len)
            .with_mmap_flags(libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_PRIVATE)
            .build()
            .map_err(|e| MemoryError::Map { size: size >> 20, reason: e.to_string() })?;
        Self::from_region(base, size, region, false)
    }

    fn from_region(
        base: u64,
        size: u64,
        region: MmapRegion<AtomicBitmap>,
        file_backed: bool,
    ) -> Result<Self, MemoryError> {
        let region = Arc::new(region);
        let host = region.as_ptr() as usize;
        let guest = GuestRegionMmap::with_arc(region.clone(), GuestAddress(base))
            .ok_or(MemoryError::OutOfRange { base, size })?;
        let mem = GuestMemoryMmap::from_regions(vec![guest])
            .map_err(|e| MemoryError::Map { size: size >> 20, reason: e.to_string() })?;
        let pages = (size / PAGE_SIZE) as usize;
        let code = CodeMap {
            flags: (0..pages).map(|_| AtomicU8::new(0)).collect(),
            harts: (0..pages).map(|_| AtomicU64::new(0)).collect(),
            observer: RwLock::new(None),
        };
        Ok(GuestRam {
            mem,
            region,
            base,
            size,
            host,
            code,
            dirty: dirty::DirtyLog::new(),
            file_backed: AtomicBool::new(file_backed),
        })
    }

    /// The vm-memory view of RAM, for crates built on it (virtio-queue). Writes through it
    /// are seen by dirty-page tracking (vm-memory's bitmap marks them) but not by code
    /// invalidation: follow them with [`GuestRam::note_write`] for the written range, unless
    /// they only touch virtqueue rings (which never hold code). Writes through raw pointers
    /// taken from it (`as_ptr`, `get_host_address`) are seen by neither: note them too.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The host address of the first byte of RAM (page-aligned). It never changes.
    pub fn host_base(&self) -> usize {
        self.host
    }

    /// The per-page flags ([`FLAG_CODE`], [`FLAG_CLEAN`]), indexed by
    /// `(host address - host_base) >> 12`. A store that finds its page's byte zero may write
    /// RAM directly, provided the storing thread is a busy [`RamWriter`]; otherwise it must
    /// call [`GuestRam::note_hart_write`] after writing.
    pub fn page_flags(&self) -> Arc<[AtomicU8]> {
        self.code.flags.clone()
    }

    /// Sets who is told when code pages are overwritten, when a machine is built around this
    /// RAM. A machine rebuilt around the same RAM (a migration that failed after its
    /// hand-over) replaces its predecessor's observer; no hart of the old machine runs then,
    /// so what they had decoded is forgotten too.
    pub fn set_code_observer(&self, observer: Arc<dyn CodeObserver>) {
        let mut slot = self.code.observer.write().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            for (flags, harts) in self.code.flags.iter().zip(self.code.harts.iter()) {
                harts.store(0, Ordering::SeqCst);
                if flags.load(Ordering::Relaxed) & FLAG_CODE != 0 {
                    flags.fetch_and(!FLAG_CODE, Ordering::SeqCst);
                }
            }
        }
        *slot = Some(observer);
    }

    /// Hart `hart` (below 64) decoded code from the RAM page at `page_addr`.
    pub fn mark_code(&self, page_addr: u64, hart: u64) {
        if let Some(i) = self.page_index(page_addr) {
            self.code.harts[i].fetch_or(1 << (hart & 63), Ordering::SeqCst);
            self.code.flags[i].fetch_or(FLAG_CODE, Ordering::SeqCst);
            // The decoder reads the page after this; a store that checked the flag before
            // this fence may still slip through, which only a guest racing to modify code
            // another hart is fetching for the first time can observe.
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    /// RAM in `[addr, addr + len)` was just written (by a device, or any thread that is not
    /// a busy [`RamWriter`]): harts holding code from those pages are told to drop it, and
    /// dirty-page tracking marks the pages. Returns true when any page held code.
    pub fn note_write(&self, addr: u64, len: u64) -> bool {
        // Orders the write before the flag loads in `note_pages`, against the SeqCst
        // read-modify-writes with which `take_dirty_pages` starts a round: either this thread
        // sees the page's FLAG_CLEAN (and marks the page dirty in the new round), or the
        // taker sees the write (see `dirty.rs`).
        std::sync::atomic::fence(Ordering::SeqCst);
        self.note_pages(addr, len)
    }

    /// As [`GuestRam::note_write`], for a write by a thread that is a busy [`RamWriter`] (a
    /// hart's slow path, AMOs, page-table A/D updates), which `take_dirty_pages` waits for.
    #[inline]
    pub fn note_hart_write(&self, addr: u64, len: u64) -> bool {
        self.note_pages(addr, len)
    }

    fn note_pages(&self, addr: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let (Some(first), Some(last)) = (self.page_index(addr), self.page_index(addr + len - 1))
        else {
            return false;
        };
        let mut any = false;
        for i in first..=last {
            let seen = self.code.flags[i].load(Ordering::Relaxed);
            if seen == 0 {
                continue;
            }
            // Clearing FLAG_CLEAN is what marks the page dirty; it must come after the write.
            let old = self.code.flags[i].fetch_and(!(FLAG_CODE | FLAG_CLEAN), Ordering::SeqCst);
            if (old | seen) & FLAG_CODE == 0 {
                continue;
            }
            let harts = self.code.harts[i].swap(0, Ordering::SeqCst);
            if harts != 0 {
                any = true;
                let observer = self.code.observer.read().unwrap_or_else(|e| e.into_inner());
                if let Some(obs) = observer.as_ref() {
                    obs.code_overwritten(self.base + i as u64 * PAGE_SIZE, harts);
                }
            }
        }
        any
    }

    fn page_index(&self, addr: u64) -> Option<usize> {
        self.contains(addr, 1).then(|| ((addr - self.base) / PAGE_SIZE) as usize)
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn end(&self) -> u64 {
        self.base + self.size
    }

    /// True when `[addr, addr + len)` lies inside RAM.
    #[inline]
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.base && addr.wrapping_sub(self.base) < self.size && self.end() - addr >= len
    }

    /// The host address of guest-physical `addr`, for building the CPU's TLB. The caller must
    /// only dereference addresses inside RAM (see [`load_host`] / [`store_host`]).
    #[inline]
    pub fn host_address(&self, addr: u64) -> Option<usize> {
        self.contains(addr, 1).then(|| self.host + (addr - self.base) as usize)
    }

    /// Copies `data` into RAM at `addr` (kernel, initrd and device tree loading, device DMA).
    pub fn write_slice(&self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        if !self.contains(addr, data.len() as u64) {
            return Err(MemoryError::Outside { addr, len: data.len() as u64 });
        }
        self.mem
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| MemoryError::Outside { addr, len: data.len() as u64 })?;
        self.note_write(addr, data.len() as u64);
        Ok(())
    }

    /// Copies RAM at `addr` into `buf`.
    pub fn read_slice(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if !self.contains(addr, buf.len() as u64) {
            return Err(MemoryError::Outside { addr, len: buf.len() as u64 });
        }
        self.mem
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| MemoryError::Outside { addr, len: buf.len() as u64 })
    }

    /// All of RAM as bytes, for writing a snapshot of a stopped VM.
    ///
    /// # Safety
    /// Nothing may write or discard guest RAM while the returned borrow lives (no hart runs,
    /// no device touches guest memory): Rust requires the bytes behind a `&[u8]` not to change.
    pub unsafe fn frozen_bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `size` bytes at `host` (checked to fit a usize when it was
        // made) and lives as long as self; the caller promises that nothing writes it while
        // the slice lives.
        unsafe { std::slice::from_raw_parts(self.host as *const u8, self.size as usize) }
    }

    /// Reads a little-endian value at guest-physical `addr` (any alignment), or `None` outside RAM.
    #[inline]
    pub fn load<T: Prim>(&self, addr: u64) -> Option<T> {
        if !self.contains(addr, T::SIZE as u64) {
            return None;
        }
        // SAFETY: the range was checked to lie inside the mapping, which lives as long as self.
        Some(unsafe { load_host_unaligned::<T>(self.host + (addr - self.base) as usize) })
    }

    /// Writes a little-endian value at guest-physical `addr` (any alignment) and notes the
    /// write (see [`GuestRam::note_write`]); false outside RAM.
    #[inline]
    pub fn store<T: Prim>(&self, addr: u64, value: T) -> bool {
        if !self.store_unnoted(addr, value) {
            return false;
        }
        self.note_write(addr, T::SIZE as u64);
        true
    }

    /// Writes a value like [`GuestRam::store`] but leaves noting the write to the caller (the
    /// CPU's slow path, which calls [`GuestRam::note_hart_write`] itself).
    #[inline]
    pub fn store_unnoted<T: Prim>(&self, addr: u64, value: T) -> bool {
        if !self.contains(addr, T::SIZE as u64) {
            return false;
        }
        // SAFETY: the range was checked to lie inside the mapping, which lives as long as self.
        unsafe { store_host_unaligned::<T>(self.host + (addr - self.base) as usize, value) };
        true
    }

    /// The naturally aligned 32-bit word at `addr` as an atomic, for AMOs and LR/SC. A write
    /// through it must be followed by [`GuestRam::note_write`] or
    /// [`GuestRam::note_hart_write`].
    pub fn atomic_u32(&self, addr: u64) -> Option<&AtomicU32> {
        if addr % 4 != 0 || !self.contains(addr, 4) {
            return None;
        }
        // SAFETY: in bounds (checked), 4-aligned (host mapping is page aligned), and the mapping
        // outlives the returned reference, which borrows self. Guest memory is only ever
        // accessed by volatile or atomic operations, so no Rust reference aliases it mutably.
        Some(unsafe { AtomicU32::from_ptr((self.host + (addr - self.base) as usize) as *mut u32) })
    }

    /// The naturally aligned 64-bit word at `addr` as an atomic, for AMOs, LR/SC and PTE
    /// updates. Writes through it must be noted as for [`GuestRam::atomic_u32`].
    pub fn atomic_u64(&self, addr: u64) -> Option<&AtomicU64> {
        if addr % 8 != 0 || !self.contains(addr, 8) {
            return None;
        }
        // SAFETY: as in `atomic_u32`, with 8-byte alignment.
        Some(unsafe { AtomicU64::from_ptr((self.host + (addr - self.base) as usize) as *mut u64) })
    }

    /// Gives every page back to the host; RAM reads as zero afterwards (reboot, reset).
    pub fn discard_all(&self) {
        self.discard(self.base, self.size);
    }
}

/// Loads a naturally aligned value from a host address inside guest RAM.
///
/// # Safety
/// `host_addr` must lie inside a live [`GuestRam`] mapping with `T::SIZE` bytes in bounds, and
/// be aligned to `T::SIZE`.
#[inline(always)]
pub unsafe fn load_host<T: Prim>(host_addr: usize) -> T {
    // Volatile: other vCPU threads and devices write guest memory concurrently.
    std::ptr::read_volatile(host_addr as *const T)
}

/// Stores a naturally aligned value to a host address inside guest RAM.
///
/// # Safety
/// As for [`load_host`].
#[inline(always)]
pub unsafe fn store_host<T: Prim>(host_addr: usize, value: T) {
    std::ptr::write_volatile(host_addr as *mut T, value)
}

/// Loads a value of any alignment from a host address inside guest RAM.
///
/// # Safety
/// `host_addr .. host_addr + T::SIZE` must lie inside a live [`GuestRam`] mapping.
#[inline(always)]
pub unsafe fn load_host_unaligned<T: Prim>(host_addr: usize) -> T {
    if host_addr % T::SIZE == 0 {
        load_host(host_addr)
    } else {
        std::ptr::read_unaligned(host_addr as *const T)
    }
}

/// Stores a value of any alignment to a host address inside guest RAM.
///
/// # Safety
/// As for [`load_host_unaligned`].
#[inline(always)]
pub unsafe fn store_host_unaligned<T: Prim>(host_addr: usize, value: T) {
    if host_addr % T::SIZE == 0 {
        store_host(host_addr, value)
    } else {
        std::ptr::write_unaligned(host_addr as *mut T, value)
    }
}

#[cfg(test)]
mod dirty_tests;
#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod tests;
