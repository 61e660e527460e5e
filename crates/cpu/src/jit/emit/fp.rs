//! F and D (unprivileged spec ch. 20-21): the common cases inline, everything else through
//! the interpreter's softfloat handler, with results and flags identical either way.
//!
//! Loads, stores, moves and sign injection are exact bit operations and always run inline.
//! Arithmetic uses the host's SSE/FMA instructions only where those give RISC-V's result
//! bit for bit and raise no flag RISC-V would not already have: round to nearest even, every
//! input zero or normal, a normal result (so no overflow, underflow or NaN, whose encodings
//! and flags differ between x86 and RISC-V), and NX already set in `fflags` (so an inexact
//! result changes no flag). This is QEMU's "hardfloat" rule. Comparisons are exact whenever
//! no input is a NaN. Any other case, and any instruction with FS off (which traps), runs
//! the interpreter's handler from a cold stub, which then resumes the inline code.

use dynasmrt::{dynasm, DynamicLabel, DynasmApi, DynasmLabelApi};

use super::layout::{off_f, FFLAGS, FRM, MSTATUS};
use super::{Emitter, Stub};
use crate::consts::status;
use crate::insn::{Insn, Opcode};
use crate::interp::op::Op;
use crate::jit::regs::{RAX, RCX};

/// Precision of an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prec {
    S,
    D,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// `fflags` NX.
const NX: i8 = 1;

/// The F/D instructions this module translates inline (with a softfloat fallback).
pub(super) fn translated(op: Opcode) -> bool {
    use Opcode::*;
    matches!(
        op,
        Flw | Fld
            | Fsw
            | Fsd
            | FsgnjS
            | FsgnjnS
            | FsgnjxS
            | FsgnjD
            | FsgnjnD
            | FsgnjxD
            | FmvXW
            | FmvWX
            | FmvXD
            | FmvDX
            | FaddS
            | FsubS
            | FmulS
            | FdivS
            | FaddD
            | FsubD
            | FmulD
            | FdivD
            | FsqrtS
            | FsqrtD
            | FmaddS
            | FmsubS
            | FnmsubS
            | FnmaddS
            | FmaddD
            | FmsubD
            | FnmsubD
            | FnmaddD
            | FeqS
            | FltS
            | FleS
            | FeqD
            | FltD
            | FleD
            | FcvtDW
            | FcvtSW
    )
}

impl Emitter<'_> {
    /// An F/D instruction: its inline form, with `soft` (the interpreter's handler, then a
    /// jump back to `resume`) for every case the inline form does not cover.
    pub(super) fn fp(&mut self, insn: &Insn, op: &Op, page_off: u16, idx: u8) {
        use Opcode::*;
        let soft = self.a.new_dynamic_label();
        let resume = self.a.new_dynamic_label();
        self.stubs.push(Stub::Fallback { label: soft, resume, op, page_off, idx });
        self.fs_check(soft);
        let prec = match insn.op {
            FsgnjS | FsgnjnS | FsgnjxS | FmvWX | FaddS | FsubS | FmulS | FdivS | FsqrtS
            | FmaddS | FmsubS | FnmsubS | FnmaddS | FeqS | FltS | FleS | FcvtSW | Flw | Fsw
            | FmvXW => Prec::S,
            _ => Prec::D,
        };
        match insn.op {
            Flw | Fld | Fsw | Fsd => self.fp_memory(insn, prec, soft),
            FsgnjS | FsgnjnS | FsgnjxS | FsgnjD | FsgnjnD | FsgnjxD => {
                self.sign_inject(insn, prec, soft)
            }
            FmvXW => {
                let d = self.dst(insn.rd);
                dynasm!(self.a ; .arch x64 ; movsxd Rq(d), DWORD [rbx + off_f(insn.rs1)]);
                self.commit(insn.rd, d);
            }
            FmvXD => {
                let d = self.dst(insn.rd);
                dynasm!(self.a ; .arch x64 ; mov Rq(d), [rbx + off_f(insn.rs1)]);
                self.commit(insn.rd, d);
            }
            FmvWX => {
                let v = self.src(insn.rs1, RAX);
                self.store_f32_from(insn.rd, v);
            }
            FmvDX => {
                let v = self.src(insn.rs1, RAX);
                dynasm!(self.a ; .arch x64 ; mov [rbx + off_f(insn.rd)], Rq(v));
                self.mark_fs_dirty();
            }
            FaddS | FaddD => self.arith(Arith::Add, insn, prec, soft),
            FsubS | FsubD => self.arith(Arith::Sub, insn, prec, soft),
            FmulS | FmulD => self.arith(Arith::Mul, insn, prec, soft),
            FdivS | FdivD => self.arith(Arith::Div, insn, prec, soft),
            FsqrtS | FsqrtD => self.sqrt(insn, prec, soft),
            FmaddS | FmsubS | FnmsubS | FnmaddS | FmaddD | FmsubD | FnmsubD | FnmaddD => {
                self.fused(insn, prec, soft)
            }
            FeqS | FltS | FleS | FeqD | FltD | FleD => self.compare(insn, prec, soft),
            FcvtDW | FcvtSW => self.convert_from_i32(insn, prec, soft),
            other => unreachable!("{other:?} has no inline form"),
        }
        dynasm!(self.a ; .arch x64 ; =>resume);
    }

    /// FS = Off makes every F/D instruction illegal (privileged spec §3.1.6.6): the handler
    /// raises it. FS only changes through instructions that end the block, so one check per
    /// block does.
    fn fs_check(&mut self, soft: DynamicLabel) {
        if self.fs_checked {
            return;
        }
        self.fs_checked = true;
        dynasm!(self.a
            ; .arch x64
            ; test DWORD [rbx + MSTATUS], status::FS as i32
            ; jz =>soft
        );
    }

    /// An FP register was written: FS becomes Dirty and SD set (as `Hart::mark_fp_dirty`).
    /// Once per block: nothing in the block can clean it again.
    fn mark_fs_dirty(&mut self) {
        if self.fs_dirty {
            return;
        }
        self.fs_dirty = true;
        let bits = (status::FS_DIRTY | status::SD) as i64;
        dynasm!(self.a ; .arch x64 ; mov rax, QWORD bits ; or [rbx + MSTATUS], rax);
    }

    /// Stores the 32 bits in `v` to f[rd], NaN-boxed.
    fn store_f32_from(&mut self, rd: u8, v: u8) {
        dynasm!(self.a
            ; .arch x64
            ; mov [rbx + off_f(rd)], Rd(v)
            ; mov DWORD [rbx + off_f(rd) + 4], -1
        );
        self.mark_fs_dirty();
    }

    /// FLW/FLD/FSW/FSD: the TLB fast path; a miss runs the whole instruction softly.
    fn fp_memory(&mut self, insn: &Insn, prec: Prec, soft: DynamicLabel) {
        let store = matches!(insn.op, Opcode::Fsw | Opcode::Fsd);
        let size = if prec == Prec::S { 4 } else { 8 };
        if self.config.force_slow_memory {
            dynasm!(self.a ; .arch x64 ; jmp =>soft);
            return;
        }
        self.address(insn);
        self.tlb_fast_path(size, store, soft);
        match (store, prec) {
            (false, Prec::S) => {
                dynasm!(self.a ; .arch x64 ; mov ecx, [rax]);
                self.store_f32_from(insn.rd, RCX);
            }
            (false, Prec::D) => {
                dynasm!(self.a ; .arch x64 ; mov rcx, [rax] ; mov [rbx + off_f(insn.rd)], rcx);
                self.mark_fs_dirty();
            }
            // FSW stores the low 32 bits as they are, boxed or not (§20.5).
            (true, Prec::S) => {
                dynasm!(self.a ; .arch x64 ; mov ecx, [rbx + off_f(insn.rs2)] ; mov [rax], ecx)
            }
            (true, Prec::D) => {
                dynasm!(self.a ; .arch x64 ; mov rcx, [rbx + off_f(insn.rs2)] ; mov [rax], rcx)
            }
        }
    }

    /// Jumps to `soft` unless the single-precision register `f` holds a NaN-boxed value
    /// (an unboxed one reads as the canonical NaN, §20.2). Leaves its 64 bits in `r`.
    fn require_boxed(&mut self, f: u8, r: u8, soft: DynamicLabel) {
        dynasm!(self.a
            ; .arch x64
            ; mov Rq(r), [rbx + off_f(f)]
            ; mov rdx, Rq(r)
            ; shr rdx, 32
            ; cmp edx, -1
            ; jne =>soft
        );
    }

    /// FSGNJ/FSGNJN/FSGNJX: the magnitude of rs1 with a sign from rs2 (§20.6). Exact; the
    /// single forms still need boxed inputs (else the canonical NaN, which the handler does).
    fn sign_inject(&mut self, insn: &Insn, prec: Prec, soft: DynamicLabel) {
        use Opcode::*;
        let (a, b) = (insn.rs1, insn.rs2);
        if prec == Prec::S {
            self.require_boxed(a, RAX, soft);
            self.require_boxed(b, RCX, soft);
        } else {
            dynasm!(self.a
                ; .arch x64
                ; mov rax, [rbx + off_f(a)]
                ; mov rcx, [rbx + off_f(b)]
            );
        }
        let sign_bit: i8 = if prec == Prec::S { 31 } else { 63 };
        match insn.op {
            FsgnjS | FsgnjD => {}
            FsgnjnS | FsgnjnD => dynasm!(self.a ; .arch x64 ; not rcx),
            _ => dynasm!(self.a ; .arch x64 ; xor rcx, rax),
        }
        // rax = rax with bit `sign_bit` taken from rcx.
        dynasm!(self.a
            ; .arch x64
            ; btr rax, BYTE sign_bit
            ; shr rcx, sign_bit
            ; and ecx, 1
            ; shl rcx, sign_bit
            ; or rax, rcx
        );
        if prec == Prec::S {
            self.store_f32_from(insn.rd, RAX);
        } else {
            dynasm!(self.a ; .arch x64 ; mov [rbx + off_f(insn.rd)], rax);
            self.mark_fs_dirty();
        }
    }

    /// The dynamic conditions of the inline arithmetic: the rounding mode resolves to RNE,
    /// and NX is already set.
    fn require_nearest_and_nx(&mut self, rm: i64, soft: DynamicLabel) {
        match rm {
            0 => {}
            7 => dynasm!(self.a ; .arch x64 ; cmp BYTE [rbx + FRM], 0 ; jne =>soft),
            // Other static modes (and the reserved ones, which trap) run softly.
            _ => dynasm!(self.a ; .arch x64 ; jmp =>soft),
        }
        dynasm!(self.a ; .arch x64 ; test BYTE [rbx + FFLAGS], NX ; jz =>soft);
    }

    /// Jumps to `soft` unless FP register `f` holds zero or a normal number (`zero_ok`
    /// false: a normal number only). Singles must be boxed too. Uses rax and rdx.
    fn require_normal(&mut self, f: u8, prec: Prec, zero_ok: bool, soft: DynamicLabel) {
        let (shift, max): (i8, i32) = match prec {
            Prec::S => (24, 0xfd),
            Prec::D => (53, 0x7fd),
        };
        if prec == Prec::S {
            self.require_boxed(f, RAX, soft);
            dynasm!(self.a ; .arch x64 ; add eax, eax);
        } else {
            dynasm!(self.a ; .arch x64 ; mov rax, [rbx + off_f(f)] ; add rax, rax);
        }
        // The sign is shifted out: zero now, or the exponent above `shift`.
        if zero_ok {
            dynasm!(self.a ; .arch x64 ; jz >ok);
        }
        dynasm!(self.a
            ; .arch x64
            ; shr rax, shift
            ; dec eax
            ; cmp eax, max
            ; ja =>soft
            ; ok:
        );
    }

    /// Jumps to `soft` unless xmm0 holds a normal number not at the bottom of the normal
    /// range (`zero_ok`: or a zero). Normal results that were tiny before rounding are the
    /// smallest normal numbers, which this excludes too, so underflow never needs deciding.
    fn require_normal_result(&mut self, prec: Prec, zero_ok: bool, soft: DynamicLabel) {
        let (shift, max): (i8, i32) = match prec {
            Prec::S => (24, 0xfc),
            Prec::D => (53, 0x7fc),
        };
        match prec {
            Prec::S => dynasm!(self.a ; .arch x64 ; movd eax, xmm0 ; add eax, eax),
            Prec::D => dynasm!(self.a ; .arch x64 ; movq rax, xmm0 ; add rax, rax),
        }
        if zero_ok {
            dynasm!(self.a ; .arch x64 ; jz >ok);
        }
        dynasm!(self.a
            ; .arch x64
            ; shr rax, shift
            ; sub eax, 2
            ; cmp eax, max
            ; ja =>soft
            ; ok:
        );
    }

    fn load_xmm(&mut self, xmm: u8, f: u8, prec: Prec) {
        match prec {
            Prec::S => dynasm!(self.a ; .arch x64 ; movss Rx(xmm), DWORD [rbx + off_f(f)]),
            Prec::D => dynasm!(self.a ; .arch x64 ; movsd Rx(xmm), QWORD [rbx + off_f(f)]),
        }
    }

    fn store_xmm0(&mut self, rd: u8, prec: Prec) {
        match prec {
            Prec::S => {
                dynasm!(self.a ; .arch x64 ; movd eax, xmm0);
                self.store_f32_from(rd, RAX);
            }
            Prec::D => {
                dynasm!(self.a ; .arch x64 ; movsd QWORD [rbx + off_f(rd)], xmm0);
                self.mark_fs_dirty();
            }
        }
    }

    fn arith(&mut self, kind: Arith, insn: &Insn, prec: Prec, soft: DynamicLabel) {
        self.require_nearest_and_nx(insn.imm, soft);
        self.require_normal(insn.rs1, prec, true, soft);
        // A zero divisor raises DZ: only normal divisors inline.
        self.require_normal(insn.rs2, prec, kind != Arith::Div, soft);
        self.load_xmm(0, insn.rs1, prec);
        self.load_xmm(1, insn.rs2, prec);
        match (kind, prec) {
            (Arith::Add, Prec::S) => dynasm!(self.a ; .arch x64 ; addss xmm0, xmm1),
            (Arith::Sub, Prec::S) => dynasm!(self.a ; .arch x64 ; subss xmm0, xmm1),
            (Arith::Mul, Prec::S) => dynasm!(self.a ; .arch x64 ; mulss xmm0, xmm1),
            (Arith::Div, Prec::S) => dynasm!(self.a ; .arch x64 ; divss xmm0, xmm1),
            (Arith::Add, Prec::D) => dynasm!(self.a ; .arch x64 ; addsd xmm0, xmm1),
            (Arith::Sub, Prec::D) => dynasm!(self.a ; .arch x64 ; subsd xmm0, xmm1),
            (Arith::Mul, Prec::D) => dynasm!(self.a ; .arch x64 ; mulsd xmm0, xmm1),
            (Arith::Div, Prec::D) => dynasm!(self.a ; .arch x64 ; divsd xmm0, xmm1),
        }
        // A zero sum of normal numbers is exact (and +0 in RNE on both); a zero product or
        // quotient of normal numbers underflowed.
        let zero_ok = matches!(kind, Arith::Add | Arith::Sub);
        self.require_normal_result(prec, zero_ok, soft);
        self.store_xmm0(insn.rd, prec);
    }

    fn sqrt(&mut self, insn: &Insn, prec: Prec, soft: DynamicLabel) {
        self.require_nearest_and_nx(insn.imm, soft);
        // Positive normal inputs only (the root of a negative is invalid).
        let f = insn.rs1;
        match prec {
            Prec::S => dynasm!(self.a ; .arch x64 ; bt DWORD [rbx + off_f(f)], 31 ; jc =>soft),
            Prec::D => dynasm!(self.a ; .arch x64 ; bt QWORD [rbx + off_f(f)], 63 ; jc =>soft),
        }
        self.require_normal(f, prec, false, soft);
        self.load_xmm(0, f, prec);
        match prec {
            Prec::S => dynasm!(self.a ; .arch x64 ; sqrtss xmm0, xmm0),
            Prec::D => dynasm!(self.a ; .arch x64 ; sqrtsd xmm0, xmm0),
        }
        self.store_xmm0(insn.rd, prec);
    }

    /// FMADD and friends with the host's fused multiply-add (one rounding, as RISC-V's):
    /// rd = ±(rs1 × rs2) ± rs3.
    fn fused(&mut self, insn: &Insn, prec: Prec, soft: DynamicLabel) {
        use Opcode::*;
        if !self.fma {
            dynasm!(self.a ; .arch x64 ; jmp =>soft);
            return;
        }
        self.require_nearest_and_nx(insn.imm, soft);
        for f in [insn.rs1, insn.rs2, insn.rs3] {
            self.require_normal(f, prec, true, soft);
        }
        // xmm0 = rs3, xmm1 = rs1, xmm2 = rs2; the 231 forms compute from xmm1 × xmm2 and xmm0.
        self.load_xmm(0, insn.rs3, prec);
        self.load_xmm(1, insn.rs1, prec);
        self.load_xmm(2, insn.rs2, prec);
        match (insn.op, prec) {
            (FmaddS, _) => dynasm!(self.a ; .arch x64 ; vfmadd231ss xmm0, xmm1, xmm2),
            (FmsubS, _) => dynasm!(self.a ; .arch x64 ; vfmsub231ss xmm0, xmm1, xmm2),
            // RISC-V's FNMSUB is -(a × b) + c, x86's FNMADD.
            (FnmsubS, _) => dynasm!(self.a ; .arch x64 ; vfnmadd231ss xmm0, xmm1, xmm2),
            (FnmaddS, _) => dynasm!(self.a ; .arch x64 ; vfnmsub231ss xmm0, xmm1, xmm2),
            (FmaddD, _) => dynasm!(self.a ; .arch x64 ; vfmadd231sd xmm0, xmm1, xmm2),
            (FmsubD, _) => dynasm!(self.a ; .arch x64 ; vfmsub231sd xmm0, xmm1, xmm2),
            (FnmsubD, _) => dynasm!(self.a ; .arch x64 ; vfnmadd231sd xmm0, xmm1, xmm2),
            _ => dynasm!(self.a ; .arch x64 ; vfnmsub231sd xmm0, xmm1, xmm2),
        }
        // A zero result may be an exact cancellation or an underflow: decide softly.
        self.require_normal_result(prec, false, soft);
        self.store_xmm0(insn.rd, prec);
    }

    /// FEQ, FLT, FLE: exact, and raise nothing, when neither input is a NaN.
    fn compare(&mut self, insn: &Insn, prec: Prec, soft: DynamicLabel) {
        use Opcode::*;
        if prec == Prec::S {
            self.require_boxed(insn.rs1, RAX, soft);
            self.require_boxed(insn.rs2, RAX, soft);
        }
        self.load_xmm(0, insn.rs1, prec);
        self.load_xmm(1, insn.rs2, prec);
        match prec {
            Prec::S => dynasm!(self.a ; .arch x64 ; ucomiss xmm0, xmm1),
            Prec::D => dynasm!(self.a ; .arch x64 ; ucomisd xmm0, xmm1),
        }
        dynasm!(self.a ; .arch x64 ; jp =>soft);
        match insn.op {
            FeqS | FeqD => dynasm!(self.a ; .arch x64 ; sete al),
            FltS | FltD => dynasm!(self.a ; .arch x64 ; setb al),
            _ => dynasm!(self.a ; .arch x64 ; setbe al),
        }
        let d = self.dst(insn.rd);
        dynasm!(self.a ; .arch x64 ; movzx Rd(d), al);
        self.commit(insn.rd, d);
    }

    /// FCVT.D.W is always exact; FCVT.S.W is exact below 2^24 in magnitude.
    fn convert_from_i32(&mut self, insn: &Insn, prec: Prec, soft: DynamicLabel) {
        // Even an exact conversion must have a valid rounding mode (reserved ones trap).
        if matches!(insn.imm, 5 | 6) {
            dynasm!(self.a ; .arch x64 ; jmp =>soft);
            return;
        }
        let v = self.src(insn.rs1, RCX);
        if prec == Prec::S {
            dynasm!(self.a
                ; .arch x64
                ; movsxd rax, Rd(v)
                ; mov rdx, rax
                ; neg rdx
                ; cmovs rdx, rax
                ; cmp rdx, 1 << 24
                ; ja =>soft
                ; cvtsi2ss xmm0, Rd(v)
            );
        } else {
            dynasm!(self.a ; .arch x64 ; cvtsi2sd xmm0, Rd(v));
        }
        if insn.imm == 7 {
            // DYN with a reserved frm traps.
            dynasm!(self.a ; .arch x64 ; cmp BYTE [rbx + FRM], 4 ; ja =>soft);
        }
        self.store_xmm0(insn.rd, prec);
    }
}
