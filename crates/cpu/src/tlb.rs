//! The software TLB: one set of entries per translation context, each entry caching a 4 KiB
//! virtual page's translation, plus "fast tags" that let the load/store fast path reach host
//! memory with one compare (the layout QEMU's softmmu made popular).

/// Translation contexts. S-mode with SUM=1 gets its own set so toggling SUM (Linux does it
/// around every user copy) needs no flush.
pub(crate) const MODE_M: usize = 0;
pub(crate) const MODE_S: usize = 1;
pub(crate) const MODE_S_SUM: usize = 2;
pub(crate) const MODE_U: usize = 3;
pub(crate) const MODES: usize = 4;

pub(crate) const TLB_BITS: u32 = 8;
pub(crate) const TLB_SIZE: usize = 1 << TLB_BITS;

/// Tag value that never matches: fast-path keys are page addresses (low 12 bits zero).
pub(crate) const INVALID: u64 = u64::MAX;
/// Keeps the page number of an address in a fast-path key.
pub(crate) const PAGE_TAG_MASK: u64 = !0xfff;

pub(crate) const PERM_R: u8 = 1;
pub(crate) const PERM_W: u8 = 2;
pub(crate) const PERM_X: u8 = 4;

/// What the load/store fast path reads: tags are the virtual page address when the access
/// may go straight to RAM at `vaddr + addend`, and [`INVALID`] otherwise.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct FastEntry {
    pub read: u64,
    pub write: u64,
    pub addend: usize,
}

/// The full translation, used by the slow path (device pages, A/D updates, code pages).
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    pub vpage: u64,
    pub ppage: u64,
    pub perm: u8,
    /// A global mapping (G set in the PTE or one above it, privileged spec §4.3.1): the same
    /// in every address space, so it survives switching `satp` to another one.
    pub global: bool,
    /// Mask of the address bits shared by the whole (super)page the PTE mapped, so a
    /// per-address SFENCE.VMA finds every 4 KiB piece of a superpage.
    pub span_mask: u64,
}

const FAST_INVALID: FastEntry = FastEntry { read: INVALID, write: INVALID, addend: 0 };
const ENTRY_INVALID: Entry =
    Entry { vpage: INVALID, ppage: 0, perm: 0, global: false, span_mask: 0 };

pub(crate) struct Tlb {
    pub fast: [[FastEntry; TLB_SIZE]; MODES],
    pub entries: [[Entry; TLB_SIZE]; MODES],
    /// Per context: bit `region_bit(vaddr)` is set once an entry from a superpage in that
    /// 1 GiB region was inserted. Entries are 4 KiB pieces, so only these regions need a
    /// whole-context flush when one address is fenced.
    huge_regions: [u64; MODES],
    /// Per context: an entry came from a page larger than 1 GiB.
    giant: [bool; MODES],
}

#[inline(always)]
pub(crate) fn index(vaddr: u64) -> usize {
    (vaddr >> 12) as usize & (TLB_SIZE - 1)
}

/// A 1 GiB region's bit in `huge_regions`. The upper bits are folded in so that user space
/// (low addresses) and the kernel's 512 GiB-aligned linear map don't share bits.
fn region_bit(vaddr: u64) -> u64 {
    1 << (((vaddr >> 30) ^ (vaddr >> 40) ^ (vaddr >> 50)) & 63)
}

impl Tlb {
    pub fn new() -> Box<Tlb> {
        Box::new(Tlb {
            fast: [[FAST_INVALID; TLB_SIZE]; MODES],
            entries: [[ENTRY_INVALID; TLB_SIZE]; MODES],
            huge_regions: [0; MODES],
            giant: [false; MODES],
        })
    }

    pub fn flush_all(&mut self) {
        for mode in 0..MODES {
            self.flush_mode(mode);
        }
    }

    /// Drops every translation that depends on `satp` (all but M-mode's identity map).
    pub fn flush_translated(&mut self) {
        for mode in [MODE_S, MODE_S_SUM, MODE_U] {
            self.flush_mode(mode);
        }
    }

    /// Drops every translation that depends on `satp` but global ones (a switch to another
    /// address space, or SFENCE.VMA for one ASID).
    pub fn flush_non_global(&mut self) {
        for mode in [MODE_S, MODE_S_SUM, MODE_U] {
            for i in 0..TLB_SIZE {
                if !self.entries[mode][i].global {
                    self.entries[mode][i] = ENTRY_INVALID;
                    self.fast[mode][i] = FAST_INVALID;
                }
            }
        }
    }

    fn flush_mode(&mut self, mode: usize) {
        self.fast[mode] = [FAST_INVALID; TLB_SIZE];
        self.entries[mode] = [ENTRY_INVALID; TLB_SIZE];
        self.huge_regions[mode] = 0;
        self.giant[mode] = false;
    }

    /// SFENCE.VMA with an address: drop every cached translation of `vaddr`, in all translated
    /// contexts (privileged spec §4.2.1). A 4 KiB mapping can only sit in one slot; if a
    /// superpage may cover `vaddr`, the whole context goes. Returns true when any context was
    /// flushed whole (then other caches derived from translations must go too).
    pub fn flush_address(&mut self, vaddr: u64) -> bool {
        let mut whole = false;
        let region_bit = region_bit(vaddr);
        for mode in [MODE_S, MODE_S_SUM, MODE_U] {
            if self.giant[mode] || self.huge_regions[mode] & region_bit != 0 {
                self.flush_mode(mode);
                whole = true;
                continue;
            }
            let i = index(vaddr);
            if self.entries[mode][i].vpage == vaddr & PAGE_TAG_MASK {
                self.entries[mode][i] = ENTRY_INVALID;
                self.fast[mode][i] = FAST_INVALID;
            }
        }
        whole
    }

    pub fn lookup(&self, mode: usize, vaddr: u64) -> Option<&Entry> {
        let e = &self.entries[mode][index(vaddr)];
        (e.vpage == vaddr & PAGE_TAG_MASK).then_some(e)
    }

    pub fn insert(&mut self, mode: usize, entry: Entry, fast: FastEntry) {
        if entry.span_mask != PAGE_TAG_MASK {
            if entry.span_mask & (1 << 30) == 0 {
                self.giant[mode] = true;
            } else {
                self.huge_regions[mode] |= region_bit(entry.vpage);
            }
        }
        let i = index(entry.vpage);
        self.entries[mode][i] = entry;
        self.fast[mode][i] = fast;
    }
}
