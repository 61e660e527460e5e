//! The code cache: one memory file mapped twice, writable at one address and executable at
//! another, so no page is ever writable and executable at once and patching a jump needs no
//! `mprotect`. Blocks are bump-allocated; a full cache is emptied whole.

use std::io;

/// A memfd viewed read-write and read-execute.
pub(crate) struct CodeCache {
    /// The writable view.
    rw: *mut u8,
    /// The executable view: code runs (and addresses in code point) here.
    rx: *const u8,
    size: usize,
    used: usize,
}

// SAFETY: the raw pointers are mappings the cache owns, not shared data; the cache may move
// to another thread with its owner (a vCPU built on one thread runs on another).
unsafe impl Send for CodeCache {}
// SAFETY: through `&CodeCache` nothing is written or executed (only sizes are read); writing
// takes `&mut`.
unsafe impl Sync for CodeCache {}

impl CodeCache {
    pub fn new(size: usize) -> io::Result<CodeCache> {
        // SAFETY: a plain syscall with a valid NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"keel-jit".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is ours; the file is sized before it is mapped, and both mappings stay
        // alive until `drop`, which unmaps them. The fd can go once mapped.
        unsafe {
            let result = (|| {
                if libc::ftruncate(fd, size as libc::off_t) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let rw = libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                if rw == libc::MAP_FAILED {
                    return Err(io::Error::last_os_error());
                }
                let rx = libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                if rx == libc::MAP_FAILED {
                    let e = io::Error::last_os_error();
                    libc::munmap(rw, size);
                    return Err(e);
                }
                Ok(CodeCache { rw: rw as *mut u8, rx: rx as *const u8, size, used: 0 })
            })();
            libc::close(fd);
            result
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The executable address the next `push` will place code at.
    pub fn next_address(&self) -> usize {
        self.rx as usize + self.used
    }

    /// Copies `code` into the cache (16-byte aligned); returns its executable address, or
    /// `None` when it does not fit.
    pub fn push(&mut self, code: &[u8]) -> Option<usize> {
        let start = self.used;
        let end = start.checked_add(code.len())?;
        if end > self.size {
            return None;
        }
        // SAFETY: `start..end` lies inside the writable view (checked above), and no code
        // runs while the owning hart translates, so nothing executes these bytes meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.rw.add(start), code.len()) };
        self.used = (end + 15) & !15;
        Some(self.rx as usize + start)
    }

    /// Forgets everything placed after `mark` (a `used()` value) and gives its memory back.
    pub fn reset_to(&mut self, mark: usize) {
        let from = (mark + 4095) & !4095;
        if from < self.used {
            // SAFETY: the range is inside the writable view. MADV_REMOVE frees the memory
            // file's pages; both views then read zeroes there until written again.
            unsafe {
                libc::madvise(
                    self.rw.add(from) as *mut libc::c_void,
                    self.used.next_multiple_of(4096).min(self.size) - from,
                    libc::MADV_REMOVE,
                );
            }
        }
        self.used = mark;
    }

    /// Sets the 32-bit displacement at executable address `site` so the jump it belongs to
    /// (the displacement is its last 4 bytes) goes to `target`.
    pub fn patch_rel32(&mut self, site: usize, target: usize) {
        let offset = site - self.rx as usize;
        assert!(offset + 4 <= self.used, "patch site outside the code cache");
        let rel = target as i64 - (site as i64 + 4);
        let rel = i32::try_from(rel).expect("the code cache is smaller than 2 GiB");
        // SAFETY: the site is inside the used part of the writable view (checked above). x86
        // needs no instruction-cache maintenance; the owning hart is not running native code
        // while it patches.
        unsafe {
            std::ptr::write_unaligned(self.rw.add(offset) as *mut i32, rel);
        }
    }
}

impl Drop for CodeCache {
    fn drop(&mut self) {
        // SAFETY: both views were mapped with `size` in `new` and nothing uses them after the
        // `Jit` that owns the cache is dropped.
        unsafe {
            libc::munmap(self.rw as *mut libc::c_void, self.size);
            libc::munmap(self.rx as *mut libc::c_void, self.size);
        }
    }
}
