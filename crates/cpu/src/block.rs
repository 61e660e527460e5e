//! Decoded blocks: straight-line runs of decoded instructions, cached by the physical address
//! of their first instruction, and found from a virtual pc through a small jump cache. Decoding
//! once and replaying is what makes the interpreter fast; this is also the structure a binary
//! translator would replace each block's ops with generated code in.

use rustc_hash::FxHashMap;

use crate::hart::Hart;
use crate::insn::decode;
use crate::interp::{int, lower, op::Op};
use crate::jit::Native;
use crate::mmu::Access;
use crate::tlb::PAGE_TAG_MASK;

/// Longest block, in instructions (blocks also end at page boundaries).
const MAX_BLOCK: usize = 64;
pub(crate) const JUMP_CACHE_SIZE: usize = 16384;
/// Past this many blocks the whole cache is dropped and rebuilt from what runs next.
const MAX_BLOCKS: usize = 1 << 18;

pub(crate) struct Block {
    pub ops: Box<[Op]>,
    /// Real instructions in the block (the trailing `continue_at` op is not one).
    pub insns: u32,
    /// Page offset of its first instruction.
    pub page_off: u16,
    /// Times it ran in the interpreter (it is translated once this reaches the threshold).
    pub runs: u32,
    /// Its translation, once it has one.
    pub native: Option<Native>,
    /// The last two blocks that ran right after this one. Following a link skips the jump
    /// cache; a link from an older cache generation or another fetch mode never matches.
    links: [Link; 2],
}

impl Block {
    fn new(ops: Box<[Op]>, insns: u32, page_off: u16) -> Block {
        Block { ops, insns, page_off, runs: 0, native: None, links: [Link::EMPTY; 2] }
    }
}

#[derive(Clone, Copy)]
struct Link {
    vpc: u64,
    /// Cache generation and fetch mode; a mismatch is a miss.
    tag: u32,
    block: u32,
}

impl Link {
    /// Never matches: instruction addresses are even.
    const EMPTY: Link = Link { vpc: 1, tag: 0, block: 0 };
}

/// A jump-cache slot: the block a virtual pc starts, valid while `tag` is current. Native
/// code probes these slots itself (`jit/emit/flow.rs`), hence the fixed layout.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct JumpEntry {
    pub vpc: u64,
    pub tag: u32,
    pub block: u32,
    /// The block's native code, or 0 while it has none.
    pub code: usize,
    _pad: usize,
}

impl JumpEntry {
    /// Never matches: instruction addresses are even.
    const EMPTY: JumpEntry = JumpEntry { vpc: 1, tag: 0, block: 0, code: 0, _pad: 0 };
}

pub(crate) struct BlockCache {
    blocks: Vec<Block>,
    by_ppc: FxHashMap<u64, u32>,
    /// Blocks by physical page, so a write to a page finds its blocks: (start address, id).
    by_page: FxHashMap<u64, Vec<(u64, u32)>>,
    free: Vec<u32>,
    jump: Box<[JumpEntry]>,
    /// Entries and links carry a generation in their tag: `generation` changes whenever
    /// any virtual-to-block mapping may have changed; entries reached through a global
    /// translation (the same in every address space) carry `global_generation` instead,
    /// which a switch of address space leaves alone. Both come from one counter, so their
    /// values never meet.
    generation: u32,
    global_generation: u32,
    /// Virtual pages that jump-cache entries of this generation start in, so that fencing a
    /// page nobody jumped into costs nothing.
    entered_pages: rustc_hash::FxHashSet<u64>,
    /// Holds an instruction that straddles two pages: it is decoded on every execution,
    /// since it depends on two translations.
    straddler: Block,
}

pub(crate) enum Lookup {
    Cached(u32),
    Straddler,
}

impl BlockCache {
    pub fn new() -> BlockCache {
        BlockCache {
            blocks: Vec::new(),
            by_ppc: FxHashMap::default(),
            by_page: FxHashMap::default(),
            free: Vec::new(),
            jump: vec![JumpEntry::EMPTY; JUMP_CACHE_SIZE].into_boxed_slice(),
            generation: 2,
            global_generation: 1,
            entered_pages: Default::default(),
            straddler: Block::new(Box::new([]), 0, 0),
        }
    }

    #[inline(always)]
    pub fn get(&self, lookup: &Lookup) -> &Block {
        match lookup {
            Lookup::Cached(id) => &self.blocks[*id as usize],
            Lookup::Straddler => &self.straddler,
        }
    }

    pub fn block_mut(&mut self, id: u32) -> &mut Block {
        &mut self.blocks[id as usize]
    }

    /// The jump cache's slots, for native code's probe.
    pub fn jump_slots(&self) -> usize {
        self.jump.as_ptr() as usize
    }

    /// Block `id` (which starts at `vpc`) now has native code at `entry`: the jump-cache slot
    /// that leads to it from `vpc` leads native code there too.
    pub fn note_native(&mut self, vpc: u64, fetch_mode: usize, id: u32, entry: usize) {
        let (tag, global_tag) = (self.tag(fetch_mode), self.global_tag(fetch_mode));
        let e = &mut self.jump[(vpc >> 1) as usize & (JUMP_CACHE_SIZE - 1)];
        if e.vpc == vpc && (e.tag == tag || e.tag == global_tag) && e.block == id {
            e.code = entry;
        }
    }

    /// The tag links, and jump-cache entries reached through non-global translations,
    /// carry in this generation for `fetch_mode`.
    #[inline(always)]
    pub fn tag(&self, fetch_mode: usize) -> u32 {
        (self.generation << 2) | fetch_mode as u32
    }

    /// The tag of jump-cache entries reached through global translations.
    #[inline(always)]
    pub fn global_tag(&self, fetch_mode: usize) -> u32 {
        (self.global_generation << 2) | fetch_mode as u32
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The block that block `from` remembers running next at `vpc`, if any.
    #[inline(always)]
    pub fn follow(&self, from: u32, vpc: u64, tag: u32) -> Option<u32> {
        let b = &self.blocks[from as usize];
        b.links.iter().find(|l| l.vpc == vpc && l.tag == tag).map(|l| l.block)
    }

    /// Remembers that block `to` (at `vpc`) ran right after block `from`.
    pub fn link(&mut self, from: u32, vpc: u64, tag: u32, to: u32) {
        let b = &mut self.blocks[from as usize];
        b.links[1] = b.links[0];
        b.links[0] = Link { vpc, tag, block: to };
    }

    /// Forgets every virtual-to-block mapping (translation changed).
    pub fn flush_jump_cache(&mut self) {
        self.global_generation = self.next_generation();
        self.flush_local_jump_cache();
    }

    /// Forgets the virtual-to-block mappings reached through non-global translations (the
    /// address space changed).
    pub fn flush_local_jump_cache(&mut self) {
        self.entered_pages.clear();
        self.generation = self.next_generation();
    }

    fn next_generation(&mut self) -> u32 {
        let next = self.generation.max(self.global_generation).wrapping_add(1) & 0x3fff_ffff;
        if next == 0 {
            // Wrapped: old tags could match again, so clear for real.
            self.jump.iter_mut().for_each(|e| e.vpc = 1);
            for b in &mut self.blocks {
                b.links = [Link::EMPTY; 2];
            }
            self.global_generation = 1;
            self.generation = 2;
            return 3;
        }
        next
    }

    /// Finds (or decodes) the block at virtual `vpc`. `None` means fetching faulted and the
    /// exception is recorded in the hart.
    #[inline(always)]
    pub fn lookup(&mut self, hart: &mut Hart, vpc: u64) -> Option<Lookup> {
        let mode = hart.fetch_mode();
        let slot = (vpc >> 1) as usize & (JUMP_CACHE_SIZE - 1);
        let e = self.jump[slot];
        if e.vpc == vpc && (e.tag == self.tag(mode) || e.tag == self.global_tag(mode)) {
            return Some(Lookup::Cached(e.block));
        }
        self.lookup_slow(hart, vpc, slot)
    }

    #[cold]
    #[inline(never)]
    fn lookup_slow(&mut self, hart: &mut Hart, vpc: u64, slot: usize) -> Option<Lookup> {
        hart.stats.block_lookups_missed += 1;
        let ppc = fetch_translate(hart, vpc)?;
        let mode = hart.fetch_mode();
        let tag = if hart.translation_is_global(mode, vpc) {
            self.global_tag(mode)
        } else {
            self.tag(mode)
        };
        let id = match self.by_ppc.get(&ppc) {
            Some(&id) => id,
            None => match self.decode_block(hart, vpc, ppc)? {
                Some(id) => id,
                None => return Some(Lookup::Straddler),
            },
        };
        let code = self.blocks[id as usize].native.as_ref().map_or(0, |n| n.entry);
        self.jump[slot] = JumpEntry { vpc, tag, block: id, code, _pad: 0 };
        self.entered_pages.insert(vpc & PAGE_TAG_MASK);
        Some(Lookup::Cached(id))
    }

    /// SFENCE.VMA of one 4 KiB page (not covered by a superpage): blocks entered through it
    /// may now translate differently.
    pub fn fence_page(&mut self, vpage: u64) {
        if self.entered_pages.contains(&vpage) {
            self.flush_jump_cache();
        }
    }

    /// Decodes the block starting at physical `ppc`. Returns `Ok(None)` when the first
    /// instruction straddles a page boundary (then `self.straddler` holds it).
    fn decode_block(&mut self, hart: &mut Hart, vpc: u64, ppc: u64) -> Option<Option<u32>> {
        if self.blocks.len() - self.free.len() >= MAX_BLOCKS {
            self.clear();
        }
        hart.stats.blocks_decoded += 1;
        let page = ppc & PAGE_TAG_MASK;
        let mut ops = Vec::with_capacity(16);
        let mut off = 0u64;
        let mut ended = false;
        loop {
            let paddr = ppc + off;
            let lo = hart.ram.load::<u16>(paddr)? as u32;
            let (raw, len) = if lo & 3 != 3 {
                (lo, 2)
            } else if paddr & 0xfff == 0xffe {
                // The upper half is on the next page.
                if ops.is_empty() {
                    return self.decode_straddler(hart, vpc, lo).map(|_| None);
                }
                break;
            } else {
                (lo | (hart.ram.load::<u16>(paddr + 2)? as u32) << 16, 4)
            };
            let insn = decode(raw, len);
            let mut op = lower(&insn);
            op.pc_off = off as u16;
            op.idx = ops.len() as u8;
            ops.push(op);
            off += len as u64;
            if insn.ends_block() {
                ended = true;
                break;
            }
            if ops.len() >= MAX_BLOCK || (ppc + off) & 0xfff == 0 {
                break;
            }
        }
        let insns = ops.len() as u32;
        if !ended {
            let mut cont = Op::new(int::continue_at);
            cont.imm = off as i64;
            cont.pc_off = off as u16;
            cont.idx = insns as u8;
            ops.push(cont);
        }
        hart.mark_code_page(page);
        let block = Block::new(ops.into_boxed_slice(), insns, (ppc & 0xfff) as u16);
        let id = match self.free.pop() {
            Some(id) => {
                self.blocks[id as usize] = block;
                id
            }
            None => {
                self.blocks.push(block);
                (self.blocks.len() - 1) as u32
            }
        };
        self.by_ppc.insert(ppc, id);
        self.by_page.entry(page).or_default().push((ppc, id));
        Some(Some(id))
    }

    fn decode_straddler(&mut self, hart: &mut Hart, vpc: u64, lo: u32) -> Option<()> {
        let next = vpc.wrapping_add(2);
        let p2 = fetch_translate(hart, next)?;
        let hi = hart.ram.load::<u16>(p2)? as u32;
        let insn = decode(lo | hi << 16, 4);
        let mut ops = vec![lower(&insn)];
        if !insn.ends_block() {
            let mut cont = Op::new(int::continue_at);
            cont.imm = 4;
            cont.pc_off = 4;
            cont.idx = 1;
            ops.push(cont);
        }
        self.straddler = Block::new(ops.into_boxed_slice(), 1, 0);
        Some(())
    }

    /// Drops the blocks decoded from physical page `page` (its memory was written).
    pub fn invalidate_page(&mut self, page: u64) -> bool {
        let Some(ids) = self.by_page.remove(&page) else {
            return false;
        };
        {
            for (ppc, id) in ids {
                self.blocks[id as usize] = Block::new(Box::new([]), 0, 0);
                self.free.push(id);
                self.by_ppc.remove(&ppc);
            }
            self.flush_jump_cache();
        }
        true
    }

    /// Drops every block.
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.by_ppc.clear();
        self.by_page.clear();
        self.free.clear();
        self.flush_jump_cache();
    }
}

/// Translates an instruction address; on failure records the fault in the hart. Instructions
/// can only be fetched from RAM (there is no ROM on this board).
fn fetch_translate(hart: &mut Hart, vpc: u64) -> Option<u64> {
    let mode = hart.fetch_mode();
    match hart.translate(vpc, Access::Fetch, mode) {
        Ok(p) if hart.ram.contains(p, 2) => Some(p),
        Ok(_) => {
            hart.raise(Access::Fetch.access_fault(), vpc);
            None
        }
        Err(c) => {
            hart.raise(c, vpc);
            None
        }
    }
}
