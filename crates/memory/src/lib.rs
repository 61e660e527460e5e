//! Guest RAM for keel.
//!
//! One contiguous guest-physical RAM region backed by an anonymous private mapping from
//! `vm-memory` (`MAP_NORESERVE`: pages are only allocated when the guest touches them, so a VM
//! can be given more memory than it uses). The CPU reaches RAM through raw host addresses on
//! its fast path; this crate is where that pointer arithmetic is justified, so `unsafe` stays
//! here and in the CPU's TLB fast path.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use thiserror::Error;
pub use vm_memory::GuestMemoryMmap;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Size of a guest page as the RISC-V MMU sees it (privileged spec §12.3, 4 KiB base pages).
pub const PAGE_SIZE: u64 = 4096;

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
}

/// Told when RAM that harts decoded code from is overwritten, so they drop that code.
pub trait CodeObserver: Send + Sync {
    /// The page at `page_addr` changed; bit `h` of `harts` is set for each hart that had
    /// decoded code from it.
    fn code_overwritten(&self, page_addr: u64, harts: u64);
}

/// Which harts hold decoded code from each RAM page. Any store to such a page, by a hart or by
/// a device, must make those harts drop it: the CPU's store fast path checks the page's flag,
/// and device writes go through [`GuestRam::write_slice`] or [`GuestRam::note_write`].
struct CodeMap {
    /// Per page: nonzero while some hart holds code from it (the byte the fast path reads).
    flags: Arc<[AtomicU8]>,
    /// Per page: bit h set while hart h holds code from it.
    harts: Box<[AtomicU64]>,
    observer: OnceLock<Arc<dyn CodeObserver>>,
}

/// The guest's RAM.
pub struct GuestRam {
    mem: GuestMemoryMmap<()>,
    base: u64,
    size: u64,
    host: usize,
    code: CodeMap,
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

impl GuestRam {
    /// Maps `size` bytes of guest RAM at guest-physical `base`. Nothing is allocated yet.
    pub fn new(base: u64, size: u64) -> Result<Self, MemoryError> {
        if size == 0 || size % PAGE_SIZE != 0 {
            return Err(MemoryError::BadSize(size));
        }
        // RISC-V physical addresses are at most 56 bits wide (privileged spec §12.4, Sv39 PPN).
        let end = base.checked_add(size).ok_or(MemoryError::OutOfRange { base, size })?;
        if end > 1 << 56 || base % PAGE_SIZE != 0 {
            return Err(MemoryError::OutOfRange { base, size });
        }
        let len = usize::try_from(size).map_err(|_| MemoryError::OutOfRange { base, size })?;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(base), len)])
            .map_err(|e| MemoryError::Map { size: size >> 20, reason: e.to_string() })?;
        let host = mem
            .get_host_address(GuestAddress(base))
            .map_err(|e| MemoryError::Map { size: size >> 20, reason: e.to_string() })?
            as usize;
        let pages = (size / PAGE_SIZE) as usize;
        let code = CodeMap {
            flags: (0..pages).map(|_| AtomicU8::new(0)).collect(),
            harts: (0..pages).map(|_| AtomicU64::new(0)).collect(),
            observer: OnceLock::new(),
        };
        Ok(GuestRam { mem, base, size, host, code })
    }

    /// The vm-memory view of RAM, for crates built on it (virtio-queue). Writes through it must
    /// be followed by [`GuestRam::note_write`] for the written range, unless they only touch
    /// virtqueue rings (which never hold code).
    pub fn memory(&self) -> &GuestMemoryMmap<()> {
        &self.mem
    }

    /// The host address of the first byte of RAM (page-aligned).
    pub fn host_base(&self) -> usize {
        self.host
    }

    /// The per-page "holds decoded code" flags, indexed by `(host address - host_base) >> 12`.
    pub fn code_flags(&self) -> Arc<[AtomicU8]> {
        self.code.flags.clone()
    }

    /// Sets who is told when code pages are overwritten (once, when the machine is built).
    pub fn set_code_observer(&self, observer: Arc<dyn CodeObserver>) {
        let _ = self.code.observer.set(observer);
    }

    /// Hart `hart` (below 64) decoded code from the RAM page at `page_addr`.
    pub fn mark_code(&self, page_addr: u64, hart: u64) {
        if let Some(i) = self.page_index(page_addr) {
            self.code.harts[i].fetch_or(1 << (hart & 63), Ordering::SeqCst);
            self.code.flags[i].store(1, Ordering::SeqCst);
            // The decoder reads the page after this; a store that checked the flag before
            // this fence may still slip through, which only a guest racing to modify code
            // another hart is fetching for the first time can observe.
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    /// RAM in `[addr, addr + len)` was just written: harts holding code from those pages are
    /// told to drop it. Returns true when any page held code.
    pub fn note_write(&self, addr: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let (Some(first), Some(last)) = (self.page_index(addr), self.page_index(addr + len - 1))
        else {
            return false;
        };
        let mut any = false;
        for i in first..=last {
            if self.code.flags[i].load(Ordering::Relaxed) == 0 {
                continue;
            }
            self.code.flags[i].store(0, Ordering::SeqCst);
            let harts = self.code.harts[i].swap(0, Ordering::SeqCst);
            if harts != 0 {
                any = true;
                if let Some(obs) = self.code.observer.get() {
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

    /// Reads a little-endian value at guest-physical `addr` (any alignment), or `None` outside RAM.
    #[inline]
    pub fn load<T: Prim>(&self, addr: u64) -> Option<T> {
        if !self.contains(addr, T::SIZE as u64) {
            return None;
        }
        // SAFETY: the range was checked to lie inside the mapping, which lives as long as self.
        Some(unsafe { load_host_unaligned::<T>(self.host + (addr - self.base) as usize) })
    }

    /// Writes a little-endian value at guest-physical `addr` (any alignment); false outside RAM.
    #[inline]
    pub fn store<T: Prim>(&self, addr: u64, value: T) -> bool {
        if !self.contains(addr, T::SIZE as u64) {
            return false;
        }
        // SAFETY: the range was checked to lie inside the mapping, which lives as long as self.
        unsafe { store_host_unaligned::<T>(self.host + (addr - self.base) as usize, value) };
        true
    }

    /// The naturally aligned 32-bit word at `addr` as an atomic, for AMOs and LR/SC.
    pub fn atomic_u32(&self, addr: u64) -> Option<&AtomicU32> {
        if addr % 4 != 0 || !self.contains(addr, 4) {
            return None;
        }
        // SAFETY: in bounds (checked), 4-aligned (host mapping is page aligned), and the mapping
        // outlives the returned reference, which borrows self. Guest memory is only ever
        // accessed by volatile or atomic operations, so no Rust reference aliases it mutably.
        Some(unsafe { AtomicU32::from_ptr((self.host + (addr - self.base) as usize) as *mut u32) })
    }

    /// The naturally aligned 64-bit word at `addr` as an atomic, for AMOs, LR/SC and PTE updates.
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

    /// Gives the pages of `[addr, addr + len)` back to the host; they read as zero afterwards.
    pub fn discard(&self, addr: u64, len: u64) {
        if !self.contains(addr, len) || addr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
            return;
        }
        self.note_write(addr, len);
        // SAFETY: the range is page aligned and inside our private anonymous mapping;
        // MADV_DONTNEED on such a mapping only replaces its pages with zero-fill-on-demand ones.
        unsafe {
            libc::madvise(
                (self.host + (addr - self.base) as usize) as *mut libc::c_void,
                len as usize,
                libc::MADV_DONTNEED,
            );
        }
    }

    /// Number of bytes of guest RAM the host has actually allocated (resident).
    pub fn resident_bytes(&self) -> u64 {
        let region = self.size;
        let pages = region.div_ceil(PAGE_SIZE);
        let mut vec = vec![0u8; pages as usize];
        // SAFETY: mincore reads the residency of our own mapping into a buffer of one byte per page.
        let rc = unsafe {
            libc::mincore(self.host as *mut libc::c_void, region as usize, vec.as_mut_ptr())
        };
        if rc != 0 {
            return 0;
        }
        vec.iter().filter(|b| **b & 1 != 0).count() as u64 * PAGE_SIZE
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
mod tests {
    use super::*;

    const BASE: u64 = 0x8000_0000;

    #[test]
    fn loads_and_stores_round_trip_at_any_alignment() {
        let ram = GuestRam::new(BASE, 1 << 20).unwrap();
        assert!(ram.store::<u64>(BASE + 3, 0x1122_3344_5566_7788));
        assert_eq!(ram.load::<u64>(BASE + 3), Some(0x1122_3344_5566_7788));
        assert_eq!(ram.load::<u8>(BASE + 3), Some(0x88), "little endian");
        assert_eq!(ram.load::<u16>(BASE + 4), Some(0x6677));
    }

    #[test]
    fn accesses_outside_ram_are_refused() {
        let ram = GuestRam::new(BASE, 1 << 20).unwrap();
        assert_eq!(ram.load::<u32>(BASE - 4), None);
        assert_eq!(ram.load::<u64>(BASE + (1 << 20) - 4), None, "straddles the end");
        assert!(!ram.store::<u8>(BASE + (1 << 20), 1));
        assert!(ram.write_slice(BASE + (1 << 20) - 2, &[1, 2, 3]).is_err());
        assert!(ram.atomic_u64(BASE + 4).is_none(), "misaligned atomic");
    }

    #[test]
    fn bad_sizes_are_rejected_with_a_reason() {
        assert!(matches!(GuestRam::new(BASE, 0), Err(MemoryError::BadSize(0))));
        assert!(matches!(GuestRam::new(BASE, 100), Err(MemoryError::BadSize(100))));
        assert!(matches!(GuestRam::new(BASE, 1 << 60), Err(MemoryError::OutOfRange { .. })));
    }

    #[test]
    fn memory_is_allocated_lazily_and_discard_returns_it() {
        let ram = GuestRam::new(BASE, 64 << 20).unwrap();
        assert!(ram.resident_bytes() < (1 << 20), "untouched RAM must not be resident");
        for page in 0..256u64 {
            ram.store::<u8>(BASE + page * PAGE_SIZE, 1);
        }
        assert!(ram.resident_bytes() >= 256 * PAGE_SIZE);
        ram.discard_all();
        assert!(ram.resident_bytes() < 256 * PAGE_SIZE);
        assert_eq!(ram.load::<u8>(BASE), Some(0), "discarded pages read as zero");
    }

    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<(u64, u64)>>);
    impl CodeObserver for Seen {
        fn code_overwritten(&self, page_addr: u64, harts: u64) {
            self.0.lock().unwrap().push((page_addr, harts));
        }
    }

    #[test]
    fn writes_to_code_pages_tell_the_harts_that_decoded_them() {
        let ram = GuestRam::new(BASE, 1 << 20).unwrap();
        let seen = Arc::new(Seen::default());
        ram.set_code_observer(seen.clone());
        ram.mark_code(BASE + 0x3000, 0);
        ram.mark_code(BASE + 0x3000, 2);
        assert_eq!(ram.code_flags()[3].load(Ordering::SeqCst), 1);
        assert!(!ram.note_write(BASE + 0x1000, 0x2000), "pages 1 and 2 hold no code");
        ram.write_slice(BASE + 0x2ffe, &[1, 2, 3, 4]).unwrap();
        assert_eq!(*seen.0.lock().unwrap(), vec![(BASE + 0x3000, 0b101)]);
        assert_eq!(ram.code_flags()[3].load(Ordering::SeqCst), 0, "told once, then clean");
        assert!(!ram.note_write(BASE + 0x3000, 8));
    }

    #[test]
    fn atomics_see_plain_stores() {
        let ram = GuestRam::new(BASE, 1 << 16).unwrap();
        ram.store::<u64>(BASE + 8, 41);
        let a = ram.atomic_u64(BASE + 8).unwrap();
        a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(ram.load::<u64>(BASE + 8), Some(42));
    }
}
