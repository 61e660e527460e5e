//! RV64I computation and the M extension (unprivileged spec ch. 2, 4, 13) as x86-64 code.
//! Results match `interp/int.rs` bit for bit: x86 masks shift counts the way RISC-V does
//! (6 bits, 5 for 32-bit forms), W forms sign-extend their 32-bit result, and division by zero
//! or overflow takes the values of table 13.1 instead of faulting.

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use super::layout::BLOCK_VPC;
use super::Emitter;
use crate::insn::{Insn, Opcode};
use crate::jit::regs::{RAX, RCX, RDX};

/// Two-operand x86 operations `d = d op s`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bin {
    Add,
    Sub,
    And,
    Or,
    Xor,
    Mul,
}

#[derive(Clone, Copy)]
enum Shift {
    Left,
    Right,
    Arith,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cond {
    Less,
    Below,
}

impl Emitter<'_> {
    /// LUI and AUIPC. AUIPC's pc is the running page plus a constant: native code runs at
    /// whatever virtual address maps its physical page.
    pub(super) fn upper(&mut self, insn: &Insn, page_off: u16) {
        if insn.rd == 0 {
            return;
        }
        let d = self.dst(insn.rd);
        if insn.op == Opcode::Lui {
            let imm = insn.imm as i32;
            dynasm!(self.a ; .arch x64 ; mov Rq(d), imm);
        } else {
            dynasm!(self.a ; .arch x64 ; mov Rq(d), [rbx + BLOCK_VPC]);
            self.add_imm(d, page_off as i64 + insn.imm);
        }
        self.commit(insn.rd, d);
    }

    /// Register-register and register-immediate computation, M included.
    pub(super) fn alu(&mut self, insn: &Insn) {
        use Opcode::*;
        let Insn { rd, rs1, rs2, imm, .. } = *insn;
        if rd == 0 {
            // No side effects: writes to x0 are hints (unprivileged spec §2.9).
            return;
        }
        let sub = if self.config.inject_fault { Bin::Add } else { Bin::Sub };
        match insn.op {
            Addi => self.addi(rd, rs1, imm, false),
            Addiw => self.addi(rd, rs1, imm, true),
            Xori => self.bin_imm(Bin::Xor, rd, rs1, imm),
            Ori => self.bin_imm(Bin::Or, rd, rs1, imm),
            Andi => self.bin_imm(Bin::And, rd, rs1, imm),
            Slti => self.set_imm(Cond::Less, rd, rs1, imm),
            Sltiu => self.set_imm(Cond::Below, rd, rs1, imm),
            Slli => self.shift_imm(Shift::Left, rd, rs1, imm, false),
            Srli => self.shift_imm(Shift::Right, rd, rs1, imm, false),
            Srai => self.shift_imm(Shift::Arith, rd, rs1, imm, false),
            Slliw => self.shift_imm(Shift::Left, rd, rs1, imm, true),
            Srliw => self.shift_imm(Shift::Right, rd, rs1, imm, true),
            Sraiw => self.shift_imm(Shift::Arith, rd, rs1, imm, true),
            Add => self.bin(Bin::Add, rd, rs1, rs2, false),
            Sub => self.bin(sub, rd, rs1, rs2, false),
            And => self.bin(Bin::And, rd, rs1, rs2, false),
            Or => self.bin(Bin::Or, rd, rs1, rs2, false),
            Xor => self.bin(Bin::Xor, rd, rs1, rs2, false),
            Mul => self.bin(Bin::Mul, rd, rs1, rs2, false),
            Addw => self.bin(Bin::Add, rd, rs1, rs2, true),
            Subw => self.bin(Bin::Sub, rd, rs1, rs2, true),
            Mulw => self.bin(Bin::Mul, rd, rs1, rs2, true),
            Slt => self.set(Cond::Less, rd, rs1, rs2),
            Sltu => self.set(Cond::Below, rd, rs1, rs2),
            Sll => self.shift(Shift::Left, rd, rs1, rs2, false),
            Srl => self.shift(Shift::Right, rd, rs1, rs2, false),
            Sra => self.shift(Shift::Arith, rd, rs1, rs2, false),
            Sllw => self.shift(Shift::Left, rd, rs1, rs2, true),
            Srlw => self.shift(Shift::Right, rd, rs1, rs2, true),
            Sraw => self.shift(Shift::Arith, rd, rs1, rs2, true),
            Mulh | Mulhu | Mulhsu => self.mul_high(insn.op, rd, rs1, rs2),
            Div | Divu | Rem | Remu | Divw | Divuw | Remw | Remuw => {
                self.divide(insn.op, rd, rs1, rs2)
            }
            other => unreachable!("{other:?} is not an ALU instruction"),
        }
    }

    fn bin_rr(&mut self, op: Bin, d: u8, s: u8) {
        match op {
            Bin::Add => dynasm!(self.a ; .arch x64 ; add Rq(d), Rq(s)),
            Bin::Sub => dynasm!(self.a ; .arch x64 ; sub Rq(d), Rq(s)),
            Bin::And => dynasm!(self.a ; .arch x64 ; and Rq(d), Rq(s)),
            Bin::Or => dynasm!(self.a ; .arch x64 ; or Rq(d), Rq(s)),
            Bin::Xor => dynasm!(self.a ; .arch x64 ; xor Rq(d), Rq(s)),
            Bin::Mul => dynasm!(self.a ; .arch x64 ; imul Rq(d), Rq(s)),
        }
    }

    /// Sign-extends the low 32 bits of `d` (the W forms' result).
    fn sext32(&mut self, d: u8) {
        dynasm!(self.a ; .arch x64 ; movsxd Rq(d), Rd(d));
    }

    fn bin(&mut self, op: Bin, rd: u8, rs1: u8, rs2: u8, word: bool) {
        let d = self.dst(rd);
        if self.host(rs2) == Some(d) && rs1 != rs2 {
            // rd is rs2: computing into it would overwrite the second operand.
            if op != Bin::Sub {
                let a = self.src(rs1, RCX);
                self.bin_rr(op, d, a);
            } else {
                let a = self.src(rs1, RAX);
                self.mov(RAX, a);
                self.bin_rr(op, RAX, d);
                self.mov(d, RAX);
            }
        } else {
            let b = self.src(rs2, RCX);
            let a = self.src(rs1, RDX);
            self.mov(d, a);
            self.bin_rr(op, d, b);
        }
        if word {
            self.sext32(d);
        }
        self.commit(rd, d);
    }

    fn addi(&mut self, rd: u8, rs1: u8, imm: i64, word: bool) {
        let d = self.dst(rd);
        let imm = imm as i32;
        if rs1 == 0 {
            // `li`: a 12-bit immediate is the same sign-extended from 32 or 64 bits.
            dynasm!(self.a ; .arch x64 ; mov Rq(d), imm);
            self.commit(rd, d);
            return;
        }
        let a = self.src(rs1, d);
        if word {
            dynasm!(self.a ; .arch x64 ; lea Rd(d), [Rq(a) + imm]);
            self.sext32(d);
        } else if a != d {
            dynasm!(self.a ; .arch x64 ; lea Rq(d), [Rq(a) + imm]);
        } else if imm != 0 {
            dynasm!(self.a ; .arch x64 ; add Rq(d), imm);
        }
        self.commit(rd, d);
    }

    fn bin_imm(&mut self, op: Bin, rd: u8, rs1: u8, imm: i64) {
        let d = self.dst(rd);
        let a = self.src(rs1, d);
        self.mov(d, a);
        let imm = imm as i32;
        match op {
            Bin::Xor => dynasm!(self.a ; .arch x64 ; xor Rq(d), imm),
            Bin::Or => dynasm!(self.a ; .arch x64 ; or Rq(d), imm),
            Bin::And => dynasm!(self.a ; .arch x64 ; and Rq(d), imm),
            _ => unreachable!(),
        }
        self.commit(rd, d);
    }

    /// `d = 0/1` from the flags of the compare just made.
    fn set_from_flags(&mut self, cond: Cond, d: u8) {
        match cond {
            Cond::Less => dynasm!(self.a ; .arch x64 ; setl al),
            Cond::Below => dynasm!(self.a ; .arch x64 ; setb al),
        }
        dynasm!(self.a ; .arch x64 ; movzx Rd(d), al);
    }

    fn set(&mut self, cond: Cond, rd: u8, rs1: u8, rs2: u8) {
        let b = self.src(rs2, RCX);
        let a = self.src(rs1, RDX);
        dynasm!(self.a ; .arch x64 ; cmp Rq(a), Rq(b));
        let d = self.dst(rd);
        self.set_from_flags(cond, d);
        self.commit(rd, d);
    }

    /// SLTI and SLTIU compare with the sign-extended immediate (SLTIU as unsigned), which is
    /// how x86 compares with an immediate too.
    fn set_imm(&mut self, cond: Cond, rd: u8, rs1: u8, imm: i64) {
        let a = self.src(rs1, RCX);
        let imm = imm as i32;
        dynasm!(self.a ; .arch x64 ; cmp Rq(a), imm);
        let d = self.dst(rd);
        self.set_from_flags(cond, d);
        self.commit(rd, d);
    }

    fn shift_imm(&mut self, kind: Shift, rd: u8, rs1: u8, imm: i64, word: bool) {
        let d = self.dst(rd);
        let a = self.src(rs1, d);
        self.mov(d, a);
        let n = imm as i8;
        match (kind, word) {
            (Shift::Left, false) => dynasm!(self.a ; .arch x64 ; shl Rq(d), n),
            (Shift::Right, false) => dynasm!(self.a ; .arch x64 ; shr Rq(d), n),
            (Shift::Arith, false) => dynasm!(self.a ; .arch x64 ; sar Rq(d), n),
            (Shift::Left, true) => dynasm!(self.a ; .arch x64 ; shl Rd(d), n),
            (Shift::Right, true) => dynasm!(self.a ; .arch x64 ; shr Rd(d), n),
            (Shift::Arith, true) => dynasm!(self.a ; .arch x64 ; sar Rd(d), n),
        }
        if word {
            self.sext32(d);
        }
        self.commit(rd, d);
    }

    fn shift(&mut self, kind: Shift, rd: u8, rs1: u8, rs2: u8, word: bool) {
        let b = self.src(rs2, RCX);
        self.mov(RCX, b);
        let d = self.dst(rd);
        let a = self.src(rs1, RDX);
        self.mov(d, a);
        match (kind, word) {
            (Shift::Left, false) => dynasm!(self.a ; .arch x64 ; shl Rq(d), cl),
            (Shift::Right, false) => dynasm!(self.a ; .arch x64 ; shr Rq(d), cl),
            (Shift::Arith, false) => dynasm!(self.a ; .arch x64 ; sar Rq(d), cl),
            (Shift::Left, true) => dynasm!(self.a ; .arch x64 ; shl Rd(d), cl),
            (Shift::Right, true) => dynasm!(self.a ; .arch x64 ; shr Rd(d), cl),
            (Shift::Arith, true) => dynasm!(self.a ; .arch x64 ; sar Rd(d), cl),
        }
        if word {
            self.sext32(d);
        }
        self.commit(rd, d);
    }

    /// MULH, MULHU, MULHSU: the high half of the 128-bit product, from rdx.
    fn mul_high(&mut self, op: Opcode, rd: u8, rs1: u8, rs2: u8) {
        let b = self.src(rs2, RCX);
        self.mov(RCX, b);
        let a = self.src(rs1, RAX);
        self.mov(RAX, a);
        match op {
            Opcode::Mulh => dynasm!(self.a ; .arch x64 ; imul rcx),
            _ => dynasm!(self.a ; .arch x64 ; mul rcx),
        }
        if op == Opcode::Mulhsu {
            // signed × unsigned = unsigned product, less b·2^64 when a is negative.
            let a = self.src(rs1, RAX);
            dynasm!(self.a
                ; .arch x64
                ; test Rq(a), Rq(a)
                ; jns >positive
                ; sub rdx, rcx
                ; positive:
            );
        }
        let d = self.dst(rd);
        self.mov(d, RDX);
        self.commit(rd, d);
    }

    /// The division family. The dividend goes to rax, the divisor to rcx; division by zero
    /// and the signed overflow (MIN / -1) are answered without `div`, which would fault.
    fn divide(&mut self, op: Opcode, rd: u8, rs1: u8, rs2: u8) {
        use Opcode::*;
        let b = self.src(rs2, RCX);
        self.mov(RCX, b);
        let a = self.src(rs1, RAX);
        self.mov(RAX, a);
        let word = matches!(op, Divw | Divuw | Remw | Remuw);
        let signed = matches!(op, Div | Rem | Divw | Remw);
        let rem = matches!(op, Rem | Remu | Remw | Remuw);
        if word {
            dynasm!(self.a ; .arch x64 ; test ecx, ecx ; jz >zero);
        } else {
            dynasm!(self.a ; .arch x64 ; test rcx, rcx ; jz >zero);
        }
        if signed {
            // x / -1 = -x (wrapping, so MIN / -1 = MIN) and x % -1 = 0.
            if word {
                dynasm!(self.a ; .arch x64 ; cmp ecx, -1 ; jne >divide);
            } else {
                dynasm!(self.a ; .arch x64 ; cmp rcx, -1 ; jne >divide);
            }
            match (rem, word) {
                (false, false) => dynasm!(self.a ; .arch x64 ; neg rax),
                (false, true) => dynasm!(self.a ; .arch x64 ; neg eax),
                (true, _) => dynasm!(self.a ; .arch x64 ; xor eax, eax),
            }
            dynasm!(self.a ; .arch x64 ; jmp >done ; divide:);
            if word {
                dynasm!(self.a ; .arch x64 ; cdq ; idiv ecx);
            } else {
                dynasm!(self.a ; .arch x64 ; cqo ; idiv rcx);
            }
        } else if word {
            dynasm!(self.a ; .arch x64 ; xor edx, edx ; div ecx);
        } else {
            dynasm!(self.a ; .arch x64 ; xor edx, edx ; div rcx);
        }
        if rem {
            dynasm!(self.a ; .arch x64 ; mov rax, rdx);
        }
        dynasm!(self.a ; .arch x64 ; jmp >done ; zero:);
        // By zero: the quotient is all ones, the remainder the dividend (already in rax).
        if !rem {
            dynasm!(self.a ; .arch x64 ; mov rax, -1);
        }
        dynasm!(self.a ; .arch x64 ; done:);
        if word {
            self.sext32(RAX);
        }
        let d = self.dst(rd);
        self.mov(d, RAX);
        self.commit(rd, d);
    }
}
