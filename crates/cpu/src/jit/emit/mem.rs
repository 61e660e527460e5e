//! Loads and stores: the software TLB's fast path inline, exactly as `mmu::fast_load` and
//! `mmu::fast_store` do it, and a call to the interpreter's slow path out of line.
//!
//! The fast path: index the current data mode's TLB with the address's page number, compare
//! the entry's tag with the page of the access's last byte (a hit proves translation,
//! permission, plain RAM and that the access stays within the page, misaligned or not), add
//! the entry's host addend. Stores also need their RAM page's flags byte to be zero (no hart
//! holds code from it and dirty tracking has seen it written), or they go slow, which tells
//! the harts and marks the page.

use dynasmrt::{dynasm, DynamicLabel, DynasmApi, DynasmLabelApi};

use super::layout::{JIT_PAGE_FLAGS, JIT_RAM_HOST, JIT_TLB};
use super::{Emitter, Stub};
use crate::insn::{Insn, Opcode};
use crate::jit::regs::{RAX, RCX, RDX};
use crate::tlb::{FastEntry, TLB_SIZE};

const TLB_READ: i32 = std::mem::offset_of!(FastEntry, read) as i32;
const TLB_WRITE: i32 = std::mem::offset_of!(FastEntry, write) as i32;
const TLB_ADDEND: i32 = std::mem::offset_of!(FastEntry, addend) as i32;
const _: () = assert!(std::mem::size_of::<FastEntry>() == 24, "the index is scaled by 3 * 8");

/// Bytes moved and whether the value is sign-extended.
fn access(op: Opcode) -> (u8, bool, bool) {
    use Opcode::*;
    // (size, signed, is a store)
    match op {
        Lb => (1, true, false),
        Lh => (2, true, false),
        Lw => (4, true, false),
        Ld => (8, false, false),
        Lbu => (1, false, false),
        Lhu => (2, false, false),
        Lwu => (4, false, false),
        Sb => (1, false, true),
        Sh => (2, false, true),
        Sw => (4, false, true),
        Sd => (8, false, true),
        other => unreachable!("{other:?} is not a load or store"),
    }
}

impl Emitter<'_> {
    /// rax = rs1 + imm, the access's virtual address.
    pub(super) fn address(&mut self, insn: &Insn) {
        let imm = insn.imm as i32;
        match (insn.rs1, self.host(insn.rs1)) {
            (0, _) => dynasm!(self.a ; .arch x64 ; mov rax, imm),
            (_, Some(h)) => dynasm!(self.a ; .arch x64 ; lea rax, [Rq(h) + imm]),
            (x, None) => {
                self.src(x, RAX);
                if imm != 0 {
                    dynasm!(self.a ; .arch x64 ; add rax, imm);
                }
            }
        }
    }

    pub(super) fn memory(&mut self, insn: &Insn, page_off: u16, idx: u8) {
        let (size, signed, store) = access(insn.op);
        let slow = self.a.new_dynamic_label();
        let resume = self.a.new_dynamic_label();
        self.stubs.push(Stub::Memory { label: slow, resume, insn: *insn, page_off, idx });
        if self.config.force_slow_memory {
            dynasm!(self.a ; .arch x64 ; jmp =>slow ; =>resume);
            return;
        }
        self.address(insn);
        self.tlb_fast_path(size, store, slow);
        if store {
            let v = self.src(insn.rs2, RCX);
            match size {
                1 => dynasm!(self.a ; .arch x64 ; mov [rax], Rb(v)),
                2 => dynasm!(self.a ; .arch x64 ; mov [rax], Rw(v)),
                4 => dynasm!(self.a ; .arch x64 ; mov [rax], Rd(v)),
                _ => dynasm!(self.a ; .arch x64 ; mov [rax], Rq(v)),
            }
        } else {
            let d = self.dst(insn.rd);
            match (size, signed) {
                (1, true) => dynasm!(self.a ; .arch x64 ; movsx Rq(d), BYTE [rax]),
                (1, false) => dynasm!(self.a ; .arch x64 ; movzx Rd(d), BYTE [rax]),
                (2, true) => dynasm!(self.a ; .arch x64 ; movsx Rq(d), WORD [rax]),
                (2, false) => dynasm!(self.a ; .arch x64 ; movzx Rd(d), WORD [rax]),
                (4, true) => dynasm!(self.a ; .arch x64 ; movsxd Rq(d), DWORD [rax]),
                (4, false) => dynasm!(self.a ; .arch x64 ; mov Rd(d), DWORD [rax]),
                _ => dynasm!(self.a ; .arch x64 ; mov Rq(d), QWORD [rax]),
            }
            self.commit(insn.rd, d);
        }
        dynasm!(self.a ; .arch x64 ; =>resume);
    }

    /// With the access's virtual address in rax: its host address in rax, or a jump to
    /// `slow` when the fast path does not apply (see the module comment).
    pub(super) fn tlb_fast_path(&mut self, size: u8, store: bool, slow: DynamicLabel) {
        let last = size as i32 - 1;
        let tag = if store { TLB_WRITE } else { TLB_READ };
        dynasm!(self.a
            ; .arch x64
            ; mov edx, eax
            ; shr edx, 12
            ; and edx, (TLB_SIZE - 1) as i32
            ; lea rdx, [rdx + rdx * 2]
            ; mov rcx, [rbx + JIT_TLB]
            ; lea rcx, [rcx + rdx * 8]
            ; lea rdx, [rax + last]
            ; and rdx, -4096
            ; cmp rdx, [rcx + tag]
            ; jne =>slow
            ; add rax, [rcx + TLB_ADDEND]
        );
        if store {
            dynasm!(self.a
                ; .arch x64
                ; mov rdx, rax
                ; sub rdx, [rbx + JIT_RAM_HOST]
                ; shr rdx, 12
                ; add rdx, [rbx + JIT_PAGE_FLAGS]
                ; cmp BYTE [rdx], 0
                ; jne =>slow
            );
        }
    }

    /// The out-of-line path: the interpreter's `load_slow`/`store_slow` (TLB miss and walk,
    /// devices, misaligned accesses across pages, code pages, faults).
    pub(super) fn memory_slow_path(
        &mut self,
        insn: &Insn,
        resume: DynamicLabel,
        page_off: u16,
        idx: u8,
    ) {
        let (size, signed, store) = access(insn.op);
        let stop = self.stop_label(page_off, idx);
        self.address(insn);
        if store {
            let v = self.src(insn.rs2, RDX);
            self.mov(RDX, v);
        }
        let size_index = size.trailing_zeros() as usize;
        let thunk = if store { self.shared.store } else { self.shared.load }[size_index];
        self.leave_swaps();
        self.call_thunk(thunk);
        if store {
            dynasm!(self.a ; .arch x64 ; test eax, eax ; jz =>stop);
            self.resume_swaps();
        } else {
            // `Loaded` comes back in rax (value) and rdx (ok).
            dynasm!(self.a ; .arch x64 ; test rdx, rdx ; jz =>stop);
            self.resume_swaps();
            let d = self.dst(insn.rd);
            match (size, signed) {
                (1, true) => dynasm!(self.a ; .arch x64 ; movsx Rq(d), al),
                (2, true) => dynasm!(self.a ; .arch x64 ; movsx Rq(d), ax),
                (4, true) => dynasm!(self.a ; .arch x64 ; movsxd Rq(d), eax),
                // Unsigned values come zero-extended from the helper.
                _ => self.mov(d, RAX),
            }
            self.commit(insn.rd, d);
        }
        dynasm!(self.a ; .arch x64 ; jmp =>resume);
    }
}
