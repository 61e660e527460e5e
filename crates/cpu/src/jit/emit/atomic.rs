//! AMOs (unprivileged spec ch. 14) as locked host instructions on guest RAM, so they stay
//! atomic against other vCPU threads: `xchg`, `lock xadd`, and a `lock cmpxchg` loop for the
//! logical and min/max forms. A locked instruction orders all memory around it on x86,
//! which covers any aq/rl bits.
//!
//! LR and SC keep the interpreter's reservation (physical address and value seen, in the
//! hart): SC succeeds only if it names the reserved address and a `lock cmpxchg` finds the
//! value LR saw, and always drops the reservation (§14.2).
//!
//! Only the plain case runs inline: a naturally aligned address whose page the TLB maps
//! (writable with a zero flags byte for writes: no code on it, dirty tracking has seen it).
//! Anything else (misaligned addresses trap, TLB misses, code pages, devices) runs the
//! interpreter's handler, which does the same atomically and tells whoever must know.

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use super::layout::{off_x, JIT_RAM_BASE, JIT_RAM_HOST, RESERVATION_ADDR, RESERVATION_VALUE};
use super::{Emitter, Stub};
use crate::hart::LrReservation;
use crate::insn::{Insn, Opcode};
use crate::interp::op::Op;
use crate::jit::regs::{RAX, RCX};

/// The AMOs and LR/SC this module translates inline.
pub(super) fn translated(op: Opcode) -> bool {
    use Opcode::*;
    matches!(
        op,
        LrW | LrD
            | ScW
            | ScD
            | AmoswapW
            | AmoaddW
            | AmoxorW
            | AmoandW
            | AmoorW
            | AmominW
            | AmomaxW
            | AmominuW
            | AmomaxuW
            | AmoswapD
            | AmoaddD
            | AmoxorD
            | AmoandD
            | AmoorD
            | AmominD
            | AmomaxD
            | AmominuD
            | AmomaxuD
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Swap,
    Add,
    Xor,
    And,
    Or,
    Min,
    Max,
    MinU,
    MaxU,
}

fn kind(op: Opcode) -> (Kind, bool) {
    use Opcode::*;
    let word = matches!(
        op,
        AmoswapW | AmoaddW | AmoxorW | AmoandW | AmoorW | AmominW | AmomaxW | AmominuW | AmomaxuW
    );
    let kind = match op {
        AmoswapW | AmoswapD => Kind::Swap,
        AmoaddW | AmoaddD => Kind::Add,
        AmoxorW | AmoxorD => Kind::Xor,
        AmoandW | AmoandD => Kind::And,
        AmoorW | AmoorD => Kind::Or,
        AmominW | AmominD => Kind::Min,
        AmomaxW | AmomaxD => Kind::Max,
        AmominuW | AmominuD => Kind::MinU,
        _ => Kind::MaxU,
    };
    (kind, word)
}

impl Emitter<'_> {
    pub(super) fn amo(&mut self, insn: &Insn, op: &Op, page_off: u16, idx: u8) {
        if matches!(insn.op, Opcode::LrW | Opcode::LrD | Opcode::ScW | Opcode::ScD) {
            return self.lr_sc(insn, op, page_off, idx);
        }
        let (kind, word) = kind(insn.op);
        let size: u8 = if word { 4 } else { 8 };
        let soft = self.a.new_dynamic_label();
        let resume = self.a.new_dynamic_label();
        self.stubs.push(Stub::Fallback { label: soft, resume, op, page_off, idx });
        if self.config.force_slow_memory {
            dynasm!(self.a ; .arch x64 ; jmp =>soft ; =>resume);
            return;
        }
        let a = self.src(insn.rs1, RAX);
        self.mov(RAX, a);
        dynasm!(self.a ; .arch x64 ; test al, (size - 1) as i8 ; jnz =>soft);
        self.tlb_fast_path(size, true, soft);
        // rax: the host address. The old value ends up in rcx.
        match kind {
            Kind::Swap | Kind::Add => {
                let v = self.src(insn.rs2, RCX);
                self.mov(RCX, v);
                match (kind, word) {
                    (Kind::Swap, true) => dynasm!(self.a ; .arch x64 ; xchg [rax], ecx),
                    (Kind::Swap, false) => dynasm!(self.a ; .arch x64 ; xchg [rax], rcx),
                    (_, true) => dynasm!(self.a ; .arch x64 ; lock xadd [rax], ecx),
                    (_, false) => dynasm!(self.a ; .arch x64 ; lock xadd [rax], rcx),
                }
            }
            _ => self.amo_loop(kind, word, insn.rs2),
        }
        if insn.rd != 0 {
            let d = self.dst(insn.rd);
            if word {
                dynasm!(self.a ; .arch x64 ; movsxd Rq(d), ecx);
            } else {
                self.mov(d, RCX);
            }
            self.commit(insn.rd, d);
        }
        dynasm!(self.a ; .arch x64 ; =>resume);
    }

    fn lr_sc(&mut self, insn: &Insn, op: &Op, page_off: u16, idx: u8) {
        use Opcode::*;
        let word = matches!(insn.op, LrW | ScW);
        let lr = matches!(insn.op, LrW | LrD);
        let size: u8 = if word { 4 } else { 8 };
        let soft = self.a.new_dynamic_label();
        let resume = self.a.new_dynamic_label();
        self.stubs.push(Stub::Fallback { label: soft, resume, op, page_off, idx });
        if self.config.force_slow_memory {
            dynasm!(self.a ; .arch x64 ; jmp =>soft ; =>resume);
            return;
        }
        let a = self.src(insn.rs1, RAX);
        self.mov(RAX, a);
        dynasm!(self.a ; .arch x64 ; test al, (size - 1) as i8 ; jnz =>soft);
        self.tlb_fast_path(size, !lr, soft);
        // rdx: the host address; rcx: the physical one.
        dynasm!(self.a
            ; .arch x64
            ; mov rdx, rax
            ; mov rcx, rax
            ; sub rcx, [rbx + JIT_RAM_HOST]
            ; add rcx, [rbx + JIT_RAM_BASE]
        );
        if lr {
            // The reservation keeps the value zero-extended, as the handler does.
            if word {
                dynasm!(self.a ; .arch x64 ; mov eax, [rdx]);
            } else {
                dynasm!(self.a ; .arch x64 ; mov rax, [rdx]);
            }
            dynasm!(self.a
                ; .arch x64
                ; mov [rbx + RESERVATION_ADDR], rcx
                ; mov [rbx + RESERVATION_VALUE], rax
            );
            if insn.rd != 0 {
                let d = self.dst(insn.rd);
                if word {
                    dynasm!(self.a ; .arch x64 ; movsxd Rq(d), eax);
                } else {
                    self.mov(d, RAX);
                }
                self.commit(insn.rd, d);
            }
        } else {
            // Whatever happens, the reservation is gone after SC.
            let no_reservation = LrReservation::NO_ADDRESS as i64 as i32;
            dynasm!(self.a
                ; .arch x64
                ; cmp rcx, [rbx + RESERVATION_ADDR]
                ; mov QWORD [rbx + RESERVATION_ADDR], no_reservation
                ; jne >failed
                ; mov rax, [rbx + RESERVATION_VALUE]
            );
            let v = self.src(insn.rs2, RCX);
            self.mov(RCX, v);
            if word {
                dynasm!(self.a ; .arch x64 ; lock cmpxchg [rdx], ecx);
            } else {
                dynasm!(self.a ; .arch x64 ; lock cmpxchg [rdx], rcx);
            }
            dynasm!(self.a
                ; .arch x64
                ; jne >failed
                ; xor eax, eax
                ; jmp >done
                ; failed:
                ; mov eax, 1
                ; done:
            );
            if insn.rd != 0 {
                let d = self.dst(insn.rd);
                self.mov(d, RAX);
                self.commit(insn.rd, d);
            }
        }
        dynasm!(self.a ; .arch x64 ; =>resume);
    }

    /// old = [addr]; do new = old op rs2 until `lock cmpxchg` stores it over an unchanged
    /// old. In: rax = address. Out: rcx = old. rs2 is read where it lives (a host register,
    /// the hart, or zero), since all three scratch registers are taken.
    fn amo_loop(&mut self, kind: Kind, word: bool, rs2: u8) {
        dynasm!(self.a ; .arch x64 ; mov rdx, rax);
        if word {
            dynasm!(self.a ; .arch x64 ; mov eax, [rdx]);
        } else {
            dynasm!(self.a ; .arch x64 ; mov rax, [rdx]);
        }
        dynasm!(self.a ; .arch x64 ; retry:);
        // rcx = rs2, then rcx = old op rcx.
        match self.host(rs2) {
            _ if rs2 == 0 => dynasm!(self.a ; .arch x64 ; xor ecx, ecx),
            Some(h) => dynasm!(self.a ; .arch x64 ; mov rcx, Rq(h)),
            None => dynasm!(self.a ; .arch x64 ; mov rcx, [rbx + off_x(rs2)]),
        }
        match (kind, word) {
            (Kind::Xor, _) => dynasm!(self.a ; .arch x64 ; xor rcx, rax),
            (Kind::And, _) => dynasm!(self.a ; .arch x64 ; and rcx, rax),
            (Kind::Or, _) => dynasm!(self.a ; .arch x64 ; or rcx, rax),
            // The smaller (larger) of old and rs2: take old where rs2 is above (below) it.
            (Kind::Min, true) => dynasm!(self.a ; .arch x64 ; cmp ecx, eax ; cmovg ecx, eax),
            (Kind::Min, false) => dynasm!(self.a ; .arch x64 ; cmp rcx, rax ; cmovg rcx, rax),
            (Kind::Max, true) => dynasm!(self.a ; .arch x64 ; cmp ecx, eax ; cmovl ecx, eax),
            (Kind::Max, false) => dynasm!(self.a ; .arch x64 ; cmp rcx, rax ; cmovl rcx, rax),
            (Kind::MinU, true) => dynasm!(self.a ; .arch x64 ; cmp ecx, eax ; cmova ecx, eax),
            (Kind::MinU, false) => dynasm!(self.a ; .arch x64 ; cmp rcx, rax ; cmova rcx, rax),
            (Kind::MaxU, true) => dynasm!(self.a ; .arch x64 ; cmp ecx, eax ; cmovb ecx, eax),
            (Kind::MaxU, false) => dynasm!(self.a ; .arch x64 ; cmp rcx, rax ; cmovb rcx, rax),
            (Kind::Swap | Kind::Add, _) => unreachable!("xchg and xadd need no loop"),
        }
        if word {
            dynasm!(self.a ; .arch x64 ; lock cmpxchg [rdx], ecx ; jne <retry ; mov ecx, eax);
        } else {
            dynasm!(self.a ; .arch x64 ; lock cmpxchg [rdx], rcx ; jne <retry ; mov rcx, rax);
        }
    }
}
