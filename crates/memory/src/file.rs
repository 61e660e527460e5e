//! RAM mapped copy-on-write from a file, giving memory back, and measuring what RAM costs.
//!
//! [`GuestRam::from_file`] maps a file `MAP_PRIVATE`: a page is read from the file (through
//! the page cache, shared by every process mapping the file) when the guest first touches
//! it, and copied into a private anonymous page when the guest first writes it. The file is
//! never written.
//!
//! Giving pages back differs between the two kinds of RAM. On anonymous memory
//! `MADV_DONTNEED` drops the pages and they read as zero afterwards. On a private file
//! mapping it would drop the private copies and bring back the *file's* bytes, so there the
//! range is replaced instead by a fresh anonymous mapping at the same address (`MAP_FIXED`):
//! the host address of RAM never changes, which matters because the CPU caches it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use vm_memory::FileOffset;

use crate::{check_range, region_builder, GuestRam, MemoryError, PAGE_SIZE};

/// pagemap entry bits (Linux `Documentation/admin-guide/mm/pagemap.rst`).
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
/// The page is a file page or shared anonymous memory (not private to this process).
const PM_FILE_OR_SHARED: u64 = 1 << 61;
/// The page is mapped once (by this mapping only). Not set for the shared zero page, which
/// reads of untouched anonymous memory map (and which is not PM_FILE_OR_SHARED either).
const PM_MMAP_EXCLUSIVE: u64 = 1 << 56;

impl GuestRam {
    /// Maps the bytes `[offset, offset + size)` of `file` as `size` bytes of guest RAM at
    /// guest-physical `base`, copy-on-write (`MAP_PRIVATE`): nothing is copied now, pages are
    /// read from the file when the guest touches them, and guest writes never reach the
    /// file. Holes in a sparse file read as zero. The file only needs to be open for reading;
    /// it must not be truncated while the RAM lives (the host would kill keel with SIGBUS).
    pub fn from_file(base: u64, size: u64, file: &File, offset: u64) -> Result<Self, MemoryError> {
        let len = check_range(base, size)?;
        if offset % PAGE_SIZE != 0 {
            return Err(MemoryError::FileOffset(offset));
        }
        let need = offset.checked_add(size).ok_or(MemoryError::FileOffset(offset))?;
        let file_len = file.metadata().map_err(|e| MemoryError::File(e.to_string()))?.len();
        if file_len < need {
            return Err(MemoryError::FileTooShort { need, len: file_len });
        }
        let file = file.try_clone().map_err(|e| MemoryError::File(e.to_string()))?;
        let region = region_builder(len)
            .with_file_offset(FileOffset::new(file, offset))
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| MemoryError::Map { size: size >> 20, reason: e.to_string() })?;
        Self::from_region(base, size, region, true)
    }

    /// True while some of RAM still maps the file it was restored from.
    pub fn is_file_backed(&self) -> bool {
        self.file_backed.load(Ordering::Acquire)
    }

    /// Gives the pages of `[addr, addr + len)` back to the host; they read as zero afterwards.
    /// Does nothing unless the range is page aligned and inside RAM. Code decoded from the
    /// pages is dropped, and dirty-page tracking sees the pages as written.
    pub fn discard(&self, addr: u64, len: u64) {
        if len == 0 || !self.contains(addr, len) || addr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
            return;
        }
        let host = self.host + (addr - self.base) as usize;
        if self.is_file_backed() {
            self.replace_with_zero_pages(host, len as usize);
            if addr == self.base && len == self.size {
                self.file_backed.store(false, Ordering::Release);
            }
        } else {
            // SAFETY: the range is page aligned and inside our private anonymous mapping;
            // MADV_DONTNEED on such a mapping only replaces its pages with zero-fill-on-demand
            // ones.
            unsafe {
                libc::madvise(host as *mut libc::c_void, len as usize, libc::MADV_DONTNEED);
            }
        }
        // After the pages changed: dirty tracking must not see the range clean before that.
        self.note_write(addr, len);
    }

    /// Replaces `[host, host + len)` of the file mapping by zero-fill-on-demand anonymous pages.
    fn replace_with_zero_pages(&self, host: usize, len: usize) {
        // SAFETY: `[host, host + len)` is page aligned and lies inside the mapping this
        // GuestRam owns (vm-memory's MmapRegion, unmapped only when self is dropped). MAP_FIXED
        // replaces exactly those pages, in one step under the kernel's mmap lock, with private
        // anonymous pages of the same protection, so the range never stops being mapped: host
        // pointers into it (the CPU's TLB, vm-memory's region) stay valid and see zeroes.
        // Nothing else in the process lives in that range.
        let mapped = unsafe {
            libc::mmap(
                host as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED {
            return;
        }
        // The kernel refused, typically because each range replaced inside the file mapping
        // becomes a mapping of its own and the process reached `vm.max_map_count`. Linux
        // checks that limit, and splits the old mapping, before it unmaps anything, so the
        // file mapping should still be there; mincore (which fails on a hole) makes sure.
        // Then zero the pages in place: that gives no memory back, but the guest reads zero,
        // which is what it was promised.
        let mut residency = vec![0u8; len.div_ceil(PAGE_SIZE as usize)];
        // SAFETY: mincore only reports on the range, into a buffer of one byte per page.
        let still_mapped =
            unsafe { libc::mincore(host as *mut libc::c_void, len, residency.as_mut_ptr()) } == 0;
        assert!(still_mapped, "guest RAM at host {host:#x}+{len:#x} lost its mapping");
        // SAFETY: the range is inside our mapping, which is still there (checked just above);
        // guest memory is never referenced by Rust references, so overwriting it aliases nothing.
        unsafe { std::ptr::write_bytes(host as *mut u8, 0, len) };
    }

    /// Bytes of guest RAM that cost this VM host memory of its own.
    ///
    /// For anonymous RAM: the pages `mincore` reports resident (everything the guest touched
    /// and did not discard since). For file-backed RAM `mincore` would report the file's pages
    /// that sit in the page cache, which other VMs share and which may never have been touched
    /// by this one, so this is [`GuestRam::private_bytes`] instead (or the `mincore` count,
    /// an upper bound, when `/proc/self/pagemap` cannot be read).
    pub fn resident_bytes(&self) -> u64 {
        if self.is_file_backed() {
            if let Ok(bytes) = self.private_bytes() {
                return bytes;
            }
        }
        self.mincore_bytes()
    }

    fn mincore_bytes(&self) -> u64 {
        let pages = self.size.div_ceil(PAGE_SIZE);
        let mut vec = vec![0u8; pages as usize];
        // SAFETY: mincore reads the residency of our own mapping into a buffer of one byte per page.
        let rc = unsafe {
            libc::mincore(self.host as *mut libc::c_void, self.size as usize, vec.as_mut_ptr())
        };
        if rc != 0 {
            return 0;
        }
        vec.iter().filter(|b| **b & 1 != 0).count() as u64 * PAGE_SIZE
    }

    /// Bytes of RAM held in pages private to this process: anonymous pages the guest touched,
    /// and the copies made when it wrote pages of a file it was restored from (resident or
    /// swapped out). Pages still shared with the file's page cache, and never-written pages
    /// that read as zero, are not counted: this is what a VM cloned from a snapshot file costs
    /// on top of the file. Read from `/proc/self/pagemap`.
    pub fn private_bytes(&self) -> Result<u64, MemoryError> {
        const PATH: &str = "/proc/self/pagemap";
        let err = |e: std::io::Error| MemoryError::Proc { path: PATH, reason: e.to_string() };
        let pagemap = File::open(PATH).map_err(err)?;
        // SAFETY: sysconf only reads a system constant.
        let host_page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let host_page = usize::try_from(host_page).unwrap_or(PAGE_SIZE as usize).max(1);
        let first = self.host / host_page;
        let count = (self.size as usize).div_ceil(host_page);
        const CHUNK: usize = 1 << 15;
        let mut buf = vec![0u8; 8 * CHUNK.min(count)];
        let (mut done, mut private) = (0, 0u64);
        while done < count {
            let n = CHUNK.min(count - done);
            pagemap.read_exact_at(&mut buf[..8 * n], ((first + done) * 8) as u64).map_err(err)?;
            private += buf[..8 * n]
                .chunks_exact(8)
                .map(|e| u64::from_ne_bytes(e.try_into().expect("8 bytes")))
                .filter(|&e| e & PM_FILE_OR_SHARED == 0)
                .filter(|&e| {
                    e & PM_SWAPPED != 0
                        || e & (PM_PRESENT | PM_MMAP_EXCLUSIVE) == (PM_PRESENT | PM_MMAP_EXCLUSIVE)
                })
                .count() as u64;
            done += n;
        }
        Ok(private * host_page as u64)
    }
}
