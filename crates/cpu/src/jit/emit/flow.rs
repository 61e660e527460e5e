//! Jumps and branches, and how a block hands over to the next.
//!
//! A target on the block's own page is reached by a direct jump, first to a stub that asks
//! the run loop to chain it, then (once the run loop has patched it) straight to the target
//! block's code: blocks of one physical page are dropped together, so such a jump never
//! outlives its target. Any other target, and every indirect jump, goes through an inline
//! probe of the jump cache (virtual pc, generation and fetch mode), which keeps the
//! interpreter's rules for satp writes and fences unchanged.

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use super::layout::{BLOCK_VPC, JIT_GLOBAL_TAG, JIT_JUMP, JIT_TAG, PC};
use super::{Emitter, Stub};
use crate::block::{JumpEntry, JUMP_CACHE_SIZE};
use crate::insn::{Insn, Opcode};
use crate::jit::regs::{RAX, RCX, RDX};
use crate::jit::EXIT_LOOKUP;

const ENTRY_VPC: i32 = std::mem::offset_of!(JumpEntry, vpc) as i32;
const ENTRY_TAG: i32 = std::mem::offset_of!(JumpEntry, tag) as i32;
const ENTRY_CODE: i32 = std::mem::offset_of!(JumpEntry, code) as i32;
const _: () = assert!(std::mem::size_of::<JumpEntry>() == 32, "the probe scales by 32");

impl Emitter<'_> {
    /// JAL and JALR. The link is the running page plus a constant, like AUIPC.
    pub(super) fn jump(&mut self, insn: &Insn, page_off: u16) {
        let link = page_off as i32 + insn.len as i32;
        if insn.op == Opcode::Jal {
            self.link(insn.rd, link);
            self.count_block();
            self.goto_offset(page_off as i64 + insn.imm);
            return;
        }
        // The target first: rd may be rs1.
        let a = self.src(insn.rs1, RAX);
        self.mov(RAX, a);
        let imm = insn.imm as i32;
        dynasm!(self.a ; .arch x64 ; add rax, imm ; and rax, -2);
        self.link(insn.rd, link);
        self.count_block();
        self.goto_rax();
    }

    /// rd = the running page + `link` (leaves rax alone).
    fn link(&mut self, rd: u8, link: i32) {
        if rd == 0 {
            return;
        }
        let d = match self.dst(rd) {
            RAX => RCX,
            d => d,
        };
        dynasm!(self.a ; .arch x64 ; mov Rq(d), [rbx + BLOCK_VPC] ; add Rq(d), link);
        self.commit(rd, d);
    }

    pub(super) fn branch(&mut self, insn: &Insn, page_off: u16) {
        if insn.rs2 == 0 {
            let a = self.src(insn.rs1, RCX);
            dynasm!(self.a ; .arch x64 ; test Rq(a), Rq(a));
        } else {
            let b = self.src(insn.rs2, RDX);
            let a = self.src(insn.rs1, RCX);
            dynasm!(self.a ; .arch x64 ; cmp Rq(a), Rq(b));
        }
        self.count_block();
        let taken = self.a.new_dynamic_label();
        match insn.op {
            Opcode::Beq => dynasm!(self.a ; .arch x64 ; je =>taken),
            Opcode::Bne => dynasm!(self.a ; .arch x64 ; jne =>taken),
            Opcode::Blt => dynasm!(self.a ; .arch x64 ; jl =>taken),
            Opcode::Bge => dynasm!(self.a ; .arch x64 ; jge =>taken),
            Opcode::Bltu => dynasm!(self.a ; .arch x64 ; jb =>taken),
            Opcode::Bgeu => dynasm!(self.a ; .arch x64 ; jae =>taken),
            other => unreachable!("{other:?} is not a branch"),
        }
        self.goto_offset(page_off as i64 + insn.len as i64);
        dynasm!(self.a ; .arch x64 ; =>taken);
        self.goto_offset(page_off as i64 + insn.imm);
    }

    /// Goes on at the running page + `offset` (which may lie outside the page).
    pub(super) fn goto_offset(&mut self, offset: i64) {
        if !self.config.chain {
            self.set_pc(offset);
            self.exit_with(EXIT_LOOKUP);
        } else if (0..4096).contains(&offset) {
            let label = self.a.new_dynamic_label();
            dynasm!(self.a ; .arch x64 ; jmp =>label);
            // The jump's displacement is its last 4 bytes.
            let site = self.base + self.a.offset().0 - 4;
            self.stubs.push(Stub::Chain { label, target_off: offset as u16, site });
        } else {
            dynasm!(self.a ; .arch x64 ; mov rax, [rbx + BLOCK_VPC]);
            self.add_imm(RAX, offset);
            self.goto_rax();
        }
    }

    /// Goes on at the virtual address in rax: the jump-cache probe, or the run loop.
    fn goto_rax(&mut self) {
        dynasm!(self.a ; .arch x64 ; mov [rbx + PC], rax);
        if !self.config.chain {
            self.exit_with(EXIT_LOOKUP);
            return;
        }
        let index_mask = (JUMP_CACHE_SIZE - 1) as i32;
        dynasm!(self.a
            ; .arch x64
            // The slot `block::BlockCache::lookup` uses: (vpc >> 1) mod size.
            ; mov edx, eax
            ; shr edx, 1
            ; and edx, index_mask
            ; shl rdx, 5
            ; add rdx, [rbx + JIT_JUMP]
            ; cmp rax, [rdx + ENTRY_VPC]
            ; jne >miss
            ; mov ecx, [rdx + ENTRY_TAG]
            ; cmp ecx, [rbx + JIT_TAG]
            ; je >current
            ; cmp ecx, [rbx + JIT_GLOBAL_TAG]
            ; jne >miss
            ; current:
            ; mov rcx, [rdx + ENTRY_CODE]
            ; test rcx, rcx
            ; jz >miss
            ; and rax, -4096
            ; mov [rbx + BLOCK_VPC], rax
            ; jmp rcx
            ; miss:
        );
        self.exit_with(EXIT_LOOKUP);
    }
}
