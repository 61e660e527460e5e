//! Address translation (privileged spec §4.3-4.5: Sv39, Sv48, Sv57) and memory access for
//! loads, stores and instruction fetch.

use keel_memory::{load_host_unaligned, store_host_unaligned, Prim};

use crate::consts::{cause, status};
use crate::hart::Hart;
use crate::tlb::{
    index, Entry, FastEntry, INVALID, MODE_M, MODE_S_SUM, MODE_U, PAGE_TAG_MASK, PERM_R, PERM_W,
    PERM_X,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    Load,
    Store,
    Fetch,
}

impl Access {
    fn page_fault(self) -> u64 {
        match self {
            Access::Load => cause::LOAD_PAGE_FAULT,
            Access::Store => cause::STORE_PAGE_FAULT,
            Access::Fetch => cause::INSN_PAGE_FAULT,
        }
    }

    pub(crate) fn access_fault(self) -> u64 {
        match self {
            Access::Load => cause::LOAD_ACCESS,
            Access::Store => cause::STORE_ACCESS,
            Access::Fetch => cause::INSN_ACCESS,
        }
    }

    fn perm(self) -> u8 {
        match self {
            Access::Load => PERM_R,
            Access::Store => PERM_W,
            Access::Fetch => PERM_X,
        }
    }
}

// PTE bits (§4.3.1).
const PTE_V: u64 = 1 << 0;
const PTE_R: u64 = 1 << 1;
const PTE_W: u64 = 1 << 2;
const PTE_X: u64 = 1 << 3;
const PTE_U: u64 = 1 << 4;
const PTE_G: u64 = 1 << 5;
const PTE_A: u64 = 1 << 6;
const PTE_D: u64 = 1 << 7;
/// Bits 63:54: N (Svnapot), PBMT (Svpbmt) and reserved bits. keel implements none of those
/// extensions, so a PTE with any of them set is malformed and faults (§4.4.1).
const PTE_RESERVED: u64 = 0x3ff << 54;
const PPN_MASK: u64 = (1 << 44) - 1;

/// The load fast path: one tag compare covers the TLB hit, the permission, "this is plain
/// RAM" and "the access stays in its page" (the tag is compared with the page of the last
/// byte, while the entry is picked by the first). Misaligned accesses within a page take it
/// too, as they do on hardware that supports them. `None` means the slow path must decide.
#[inline(always)]
pub(crate) fn fast_load<T: Bits>(hart: &Hart, vaddr: u64) -> Option<T> {
    let e = &hart.tlb.fast[(hart.data_mode & 3) as usize][index(vaddr)];
    if e.read == last_byte_page::<T>(vaddr) {
        // SAFETY: a matching read tag is only installed (in `fill`) for a virtual page whose
        // physical page is inside guest RAM, with `addend` mapping it to the host mapping,
        // which lives as long as the hart holds `ram`. The compare proved that the access
        // ends in the page the entry maps, and the entry's page is the access's first page
        // (a neighbouring page has another index), so all of it lies in that page.
        Some(unsafe { load_host_unaligned::<T>((vaddr as usize).wrapping_add(e.addend)) })
    } else {
        None
    }
}

/// The page (as a fast-path tag) holding the last byte of a `T` at `vaddr`.
#[inline(always)]
pub(crate) fn last_byte_page<T: Bits>(vaddr: u64) -> u64 {
    vaddr.wrapping_add(T::SIZE as u64 - 1) & PAGE_TAG_MASK
}

/// The store fast path; false means the slow path must decide. See [`fast_load`].
#[inline(always)]
pub(crate) fn fast_store<T: Bits>(hart: &mut Hart, vaddr: u64, value: T) -> bool {
    let e = &hart.tlb.fast[(hart.data_mode & 3) as usize][index(vaddr)];
    if e.write != last_byte_page::<T>(vaddr) {
        return false;
    }
    let host = (vaddr as usize).wrapping_add(e.addend);
    // Pages some hart decoded code from take the slow path, which tells those harts; so do
    // pages dirty-page tracking has not seen written in this round yet, which it marks.
    let page = host.wrapping_sub(hart.ram_host) >> 12;
    if hart.page_flags[page].load(std::sync::atomic::Ordering::Relaxed) != 0 {
        return false;
    }
    // SAFETY: as in `fast_load`; write tags are additionally never installed for pages the
    // bus watches.
    unsafe { store_host_unaligned::<T>(host, value) };
    true
}

/// A load by any path; `None` means it raised an exception.
#[inline(always)]
pub(crate) fn load<T: Bits>(hart: &mut Hart, vaddr: u64) -> Option<T> {
    match fast_load::<T>(hart, vaddr) {
        Some(v) => Some(v),
        None => hart.load_slow::<T>(vaddr),
    }
}

/// A store by any path; false means it raised an exception.
#[inline(always)]
pub(crate) fn store<T: Bits>(hart: &mut Hart, vaddr: u64, value: T) -> bool {
    fast_store::<T>(hart, vaddr, value) || hart.store_slow::<T>(vaddr, value)
}

/// Widens a little-endian byte-sized value held in a u64 into `T` and back (for misaligned
/// accesses, which are split into bytes).
pub(crate) trait Bits: Prim {
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Self;
}
impl Bits for u8 {
    fn to_u64(self) -> u64 {
        self as u64
    }
    fn from_u64(v: u64) -> Self {
        v as u8
    }
}
impl Bits for u16 {
    fn to_u64(self) -> u64 {
        self as u64
    }
    fn from_u64(v: u64) -> Self {
        v as u16
    }
}
impl Bits for u32 {
    fn to_u64(self) -> u64 {
        self as u64
    }
    fn from_u64(v: u64) -> Self {
        v as u32
    }
}
impl Bits for u64 {
    fn to_u64(self) -> u64 {
        self
    }
    fn from_u64(v: u64) -> Self {
        v
    }
}

impl Hart {
    #[cold]
    #[inline(never)]
    pub(crate) fn load_slow<T: Bits>(&mut self, vaddr: u64) -> Option<T> {
        let size = T::SIZE as u64;
        if vaddr & (size - 1) != 0 {
            // keel performs misaligned accesses itself, byte by byte (§2.6 allows either).
            let mut value = 0u64;
            for i in 0..size {
                let b: u8 = self.load_slow(vaddr.wrapping_add(i))?;
                value |= (b as u64) << (8 * i);
            }
            return Some(T::from_u64(value));
        }
        let mode = self.data_mode as usize;
        let paddr = match self.translate(vaddr, Access::Load, mode) {
            Ok(p) => p,
            Err(c) => {
                self.raise(c, vaddr);
                return None;
            }
        };
        if let Some(v) = self.ram.load::<T>(paddr) {
            if !self.bus.is_watched_page(paddr >> 12) {
                return Some(v);
            }
        }
        self.stats.mmio_accesses += 1;
        // No RAM store of this hart is in flight during a device access, which may block:
        // dirty-page tracking need not wait for it meanwhile.
        self.ram_writer.leave();
        let value = self.bus.read(self.hartid as usize, paddr, size as u8);
        self.ram_writer.enter();
        match value {
            Some(v) => Some(T::from_u64(v)),
            None => {
                self.raise(cause::LOAD_ACCESS, vaddr);
                None
            }
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn store_slow<T: Bits>(&mut self, vaddr: u64, value: T) -> bool {
        let size = T::SIZE as u64;
        if vaddr & (size - 1) != 0 {
            // Check every byte's translation first so a fault leaves memory unchanged.
            for i in 0..size {
                let a = vaddr.wrapping_add(i);
                if let Err(c) = self.translate(a, Access::Store, self.data_mode as usize) {
                    return self.raise(c, a);
                }
            }
            let v = value.to_u64();
            for i in 0..size {
                if !self.store_slow::<u8>(vaddr.wrapping_add(i), (v >> (8 * i)) as u8) {
                    return false;
                }
            }
            return true;
        }
        let mode = self.data_mode as usize;
        let paddr = match self.translate(vaddr, Access::Store, mode) {
            Ok(p) => p,
            Err(c) => return self.raise(c, vaddr),
        };
        if self.ram.contains(paddr, size) && !self.bus.is_watched_page(paddr >> 12) {
            self.ram.store_unnoted::<T>(paddr, value);
            self.note_code_write(paddr, size);
            return true;
        }
        self.stats.mmio_accesses += 1;
        self.ram_writer.leave();
        let done = self.bus.write(self.hartid as usize, paddr, size as u8, value.to_u64());
        self.ram_writer.enter();
        if done {
            true
        } else {
            self.raise(cause::STORE_ACCESS, vaddr)
        }
    }

    /// RAM at `paddr` was just stored to (by the slow path, an AMO, an SC or a PTE update):
    /// harts that decoded code from the page drop it (this one at its next service check,
    /// which comes right after this block), and dirty-page tracking marks the page.
    #[inline]
    pub(crate) fn note_code_write(&mut self, paddr: u64, size: u64) {
        if self.ram.note_hart_write(paddr, size) {
            self.request_service();
        }
    }

    /// This hart decoded code from the RAM page `ppage`: stores to it must take the slow path.
    pub(crate) fn mark_code_page(&mut self, ppage: u64) {
        self.ram.mark_code(ppage, self.hartid);
    }

    /// Translates `vaddr` for `access` in TLB context `mode`, filling the TLB on a miss.
    /// Errors carry the exception cause.
    pub(crate) fn translate(
        &mut self,
        vaddr: u64,
        access: Access,
        mode: usize,
    ) -> Result<u64, u64> {
        if let Some(e) = self.tlb.lookup(mode, vaddr) {
            if e.perm & access.perm() != 0 {
                return Ok(e.ppage | (vaddr & 0xfff));
            }
        }
        let satp_mode = self.csr.satp >> 60;
        let (paddr, perm, span_mask, global) = if mode == MODE_M || satp_mode == 0 {
            // No translation: the address is physical (§4.1.11, bare mode). M-mode's entries
            // never depend on satp; S/U ones must go when paging comes on.
            (vaddr, PERM_R | PERM_W | PERM_X, PAGE_TAG_MASK, mode == MODE_M)
        } else {
            self.walk(vaddr, access, mode, satp_mode)?
        };
        self.fill(mode, vaddr, paddr, perm, span_mask, global);
        Ok(paddr)
    }

    /// Whether the cached translation of `vaddr` in TLB context `mode` is global (right
    /// after `translate` filled it).
    pub(crate) fn translation_is_global(&self, mode: usize, vaddr: u64) -> bool {
        self.tlb.lookup(mode, vaddr).is_some_and(|e| e.global)
    }

    fn fill(
        &mut self,
        mode: usize,
        vaddr: u64,
        paddr: u64,
        perm: u8,
        span_mask: u64,
        global: bool,
    ) {
        let vpage = vaddr & PAGE_TAG_MASK;
        let ppage = paddr & PAGE_TAG_MASK;
        let host =
            if self.bus.is_watched_page(ppage >> 12) { None } else { self.ram.host_address(ppage) };
        let mut fast = FastEntry { read: INVALID, write: INVALID, addend: 0 };
        if let Some(host) = host {
            fast.addend = host.wrapping_sub(vpage as usize);
            if perm & PERM_R != 0 {
                fast.read = vpage;
            }
            if perm & PERM_W != 0 {
                fast.write = vpage;
            }
        }
        self.tlb.insert(mode, Entry { vpage, ppage, perm, global, span_mask }, fast);
    }

    /// The page-table walk of §4.3.2, with hardware A/D updates.
    fn walk(
        &mut self,
        vaddr: u64,
        access: Access,
        mode: usize,
        satp_mode: u64,
    ) -> Result<(u64, u8, u64, bool), u64> {
        let levels: u32 = match satp_mode {
            8 => 3,
            9 => 4,
            _ => 5,
        };
        let va_bits = 12 + 9 * levels;
        // The unused upper bits must all equal the top used bit (§4.4.1).
        let shift = 64 - va_bits;
        if (((vaddr << shift) as i64) >> shift) as u64 != vaddr {
            return Err(access.page_fault());
        }
        let mxr = self.csr.mstatus & status::MXR != 0;
        self.stats.page_walks += 1;
        'walk: loop {
            let mut table = (self.csr.satp & PPN_MASK) << 12;
            let mut level = levels - 1;
            // G in a non-leaf PTE makes everything below it global (§4.3.1).
            let mut global = false;
            loop {
                let vpn = (vaddr >> (12 + 9 * level)) & 0x1ff;
                let pte_addr = table + vpn * 8;
                let pte = self.ram.load::<u64>(pte_addr).ok_or(access.access_fault())?;
                if pte & PTE_V == 0
                    || (pte & PTE_R == 0 && pte & PTE_W != 0)
                    || pte & PTE_RESERVED != 0
                {
                    return Err(access.page_fault());
                }
                global |= pte & PTE_G != 0;
                if pte & (PTE_R | PTE_X) == 0 {
                    if level == 0 {
                        return Err(access.page_fault());
                    }
                    table = ((pte >> 10) & PPN_MASK) << 12;
                    level -= 1;
                    continue;
                }
                // A leaf. Superpages must be aligned (§4.3.2 step 6).
                let span_bits = 12 + 9 * level;
                let ppn = (pte >> 10) & PPN_MASK;
                if level > 0 && ppn & ((1 << (9 * level)) - 1) != 0 {
                    return Err(access.page_fault());
                }
                let perm = leaf_permissions(pte, mode, mxr);
                if perm & access.perm() == 0 {
                    return Err(access.page_fault());
                }
                let need = PTE_A | if access == Access::Store { PTE_D } else { 0 };
                let mut pte = pte;
                if pte & need != need {
                    let Some(word) = self.ram.atomic_u64(pte_addr) else {
                        return Err(access.access_fault());
                    };
                    // The update must be atomic with the check (§4.3.2 step 7): if the PTE
                    // changed meanwhile, walk again.
                    let new = pte | need;
                    if word
                        .compare_exchange(
                            pte,
                            new,
                            std::sync::atomic::Ordering::SeqCst,
                            std::sync::atomic::Ordering::SeqCst,
                        )
                        .is_err()
                    {
                        continue 'walk;
                    }
                    // Hardware A/D updating (privileged spec §4.3.1, the Svadu scheme; §4.3.2
                    // step 7) is a store to the page-table page: dirty-page tracking must see
                    // it like any other store (and code decoded from that page must go).
                    self.note_code_write(pte_addr, 8);
                    pte = new;
                }
                // Writes may use the fast path only once D is set.
                let perm = if pte & PTE_D == 0 { perm & !PERM_W } else { perm };
                let span = 1u64 << span_bits;
                let paddr = ((ppn << 12) & !(span - 1)) | (vaddr & (span - 1));
                return Ok((paddr, perm, !(span - 1), global));
            }
        }
    }
}

/// What a leaf PTE allows in a TLB context (§4.3.1: the U bit, SUM, MXR).
fn leaf_permissions(pte: u64, mode: usize, mxr: bool) -> u8 {
    let user_page = pte & PTE_U != 0;
    let allowed = match mode {
        MODE_U => user_page,
        // S-mode may read and write user pages with SUM, but never execute them.
        MODE_S_SUM => true,
        _ => !user_page,
    };
    if !allowed {
        return 0;
    }
    let mut perm = 0;
    if pte & PTE_R != 0 || (mxr && pte & PTE_X != 0) {
        perm |= PERM_R;
    }
    if pte & PTE_W != 0 {
        perm |= PERM_W;
    }
    if pte & PTE_X != 0 && !(mode == MODE_S_SUM && user_page) {
        perm |= PERM_X;
    }
    perm
}
