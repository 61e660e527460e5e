//! F and D extensions (unprivileged spec ch. 13-14). Arithmetic goes through
//! `keel-softfloat` so rounding modes, exception flags and NaN handling are exactly RISC-V's.
//! For FP ops `imm` holds the instruction's rounding-mode field.

use keel_softfloat::{self as sf, RoundingMode, F32_CANONICAL_NAN};

use super::op::{next, stopped, Op};
use crate::consts::cause;
use crate::hart::Hart;
use crate::mmu::{load, store};

impl Hart {
    /// A single-precision operand: only a properly NaN-boxed value is one (§14.2).
    #[inline(always)]
    fn f32_reg(&self, i: u8) -> u32 {
        let v = self.f[(i & 31) as usize];
        if v >> 32 == 0xffff_ffff {
            v as u32
        } else {
            F32_CANONICAL_NAN
        }
    }

    #[inline(always)]
    fn f64_reg(&self, i: u8) -> u64 {
        self.f[(i & 31) as usize]
    }

    #[inline(always)]
    fn set_f32(&mut self, i: u8, v: u32) {
        self.f[(i & 31) as usize] = 0xffff_ffff_0000_0000 | v as u64;
        self.mark_fp_dirty();
    }

    #[inline(always)]
    fn set_f64(&mut self, i: u8, v: u64) {
        self.f[(i & 31) as usize] = v;
        self.mark_fp_dirty();
    }

    #[inline(always)]
    fn accrue(&mut self, flags: u8) {
        if flags != 0 {
            self.csr.fflags |= flags;
            self.mark_fp_dirty();
        }
    }
}

/// FS must not be Off (privileged spec §3.1.6.6), else the instruction is illegal.
#[inline(always)]
fn fp_enabled(h: &mut Hart, op: &Op) -> bool {
    if h.is_fp_enabled() {
        true
    } else {
        h.raise(cause::ILLEGAL_INSN, op.raw as u64)
    }
}

/// Resolves the rounding mode: the static field, or `frm` for DYN (7). Reserved values are
/// illegal instructions (§13.2).
#[inline(always)]
fn rounding(h: &mut Hart, op: &Op) -> Option<RoundingMode> {
    if !fp_enabled(h, op) {
        return None;
    }
    let bits = if op.imm == 7 { h.csr.frm } else { op.imm as u8 };
    match RoundingMode::from_bits(bits) {
        Some(rm) => Some(rm),
        None => {
            h.raise(cause::ILLEGAL_INSN, op.raw as u64);
            None
        }
    }
}

pub(crate) fn flw(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let addr = h.rs1(op).wrapping_add(op.imm as u64);
    match load::<u32>(h, addr) {
        Some(v) => {
            h.set_f32(op.rd, v);
            next(h, op)
        }
        None => stopped(h, op),
    }
}

pub(crate) fn fld(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let addr = h.rs1(op).wrapping_add(op.imm as u64);
    match load::<u64>(h, addr) {
        Some(v) => {
            h.set_f64(op.rd, v);
            next(h, op)
        }
        None => stopped(h, op),
    }
}

/// FSW stores the low 32 bits as they are, boxed or not (§14.2).
pub(crate) fn fsw(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let addr = h.rs1(op).wrapping_add(op.imm as u64);
    let v = h.f[(op.rs2 & 31) as usize] as u32;
    if store::<u32>(h, addr, v) {
        next(h, op)
    } else {
        stopped(h, op)
    }
}

pub(crate) fn fsd(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let addr = h.rs1(op).wrapping_add(op.imm as u64);
    let v = h.f[(op.rs2 & 31) as usize];
    if store::<u64>(h, addr, v) {
        next(h, op)
    } else {
        stopped(h, op)
    }
}

macro_rules! binop {
    ($($name:ident: $get:ident, $set:ident, $f:path;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            let Some(rm) = rounding(h, op) else { return stopped(h, op) };
            let mut fl = 0;
            let r = $f(h.$get(op.rs1), h.$get(op.rs2), rm, &mut fl);
            h.$set(op.rd, r);
            h.accrue(fl);
            next(h, op)
        }
    )*};
}

binop! {
    fadd_s: f32_reg, set_f32, sf::f32_add;
    fsub_s: f32_reg, set_f32, sf::f32_sub;
    fmul_s: f32_reg, set_f32, sf::f32_mul;
    fdiv_s: f32_reg, set_f32, sf::f32_div;
    fadd_d: f64_reg, set_f64, sf::f64_add;
    fsub_d: f64_reg, set_f64, sf::f64_sub;
    fmul_d: f64_reg, set_f64, sf::f64_mul;
    fdiv_d: f64_reg, set_f64, sf::f64_div;
}

macro_rules! fused {
    ($($name:ident: $get:ident, $set:ident, $f:path, $neg_prod:expr, $neg_add:expr;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            let Some(rm) = rounding(h, op) else { return stopped(h, op) };
            let mut fl = 0;
            let r = $f(h.$get(op.rs1), h.$get(op.rs2), h.$get(op.rs3), $neg_prod, $neg_add, rm, &mut fl);
            h.$set(op.rd, r);
            h.accrue(fl);
            next(h, op)
        }
    )*};
}

fused! {
    fmadd_s: f32_reg, set_f32, sf::f32_mul_add, false, false;
    fmsub_s: f32_reg, set_f32, sf::f32_mul_add, false, true;
    fnmsub_s: f32_reg, set_f32, sf::f32_mul_add, true, false;
    fnmadd_s: f32_reg, set_f32, sf::f32_mul_add, true, true;
    fmadd_d: f64_reg, set_f64, sf::f64_mul_add, false, false;
    fmsub_d: f64_reg, set_f64, sf::f64_mul_add, false, true;
    fnmsub_d: f64_reg, set_f64, sf::f64_mul_add, true, false;
    fnmadd_d: f64_reg, set_f64, sf::f64_mul_add, true, true;
}

pub(crate) fn fsqrt_s(h: &mut Hart, op: &Op) -> bool {
    let Some(rm) = rounding(h, op) else {
        return stopped(h, op);
    };
    let mut fl = 0;
    let r = sf::f32_sqrt(h.f32_reg(op.rs1), rm, &mut fl);
    h.set_f32(op.rd, r);
    h.accrue(fl);
    next(h, op)
}

pub(crate) fn fsqrt_d(h: &mut Hart, op: &Op) -> bool {
    let Some(rm) = rounding(h, op) else {
        return stopped(h, op);
    };
    let mut fl = 0;
    let r = sf::f64_sqrt(h.f64_reg(op.rs1), rm, &mut fl);
    h.set_f64(op.rd, r);
    h.accrue(fl);
    next(h, op)
}

/// Sign injection (§13.6): pure bit operations, no flags.
macro_rules! sgnj {
    ($($name:ident: $get:ident, $set:ident, $sign:expr, |$a:ident, $b:ident| $e:expr;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            if !fp_enabled(h, op) {
                return stopped(h, op);
            }
            let sign = $sign;
            let $a = h.$get(op.rs1);
            let $b = h.$get(op.rs2);
            let r = ($a & !sign) | ($e & sign);
            h.$set(op.rd, r);
            next(h, op)
        }
    )*};
}

sgnj! {
    fsgnj_s: f32_reg, set_f32, 1u32 << 31, |a, b| b;
    fsgnjn_s: f32_reg, set_f32, 1u32 << 31, |a, b| !b;
    fsgnjx_s: f32_reg, set_f32, 1u32 << 31, |a, b| a ^ b;
    fsgnj_d: f64_reg, set_f64, 1u64 << 63, |a, b| b;
    fsgnjn_d: f64_reg, set_f64, 1u64 << 63, |a, b| !b;
    fsgnjx_d: f64_reg, set_f64, 1u64 << 63, |a, b| a ^ b;
}

macro_rules! minmax {
    ($($name:ident: $get:ident, $set:ident, $f:path;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            if !fp_enabled(h, op) {
                return stopped(h, op);
            }
            let mut fl = 0;
            let r = $f(h.$get(op.rs1), h.$get(op.rs2), &mut fl);
            h.$set(op.rd, r);
            h.accrue(fl);
            next(h, op)
        }
    )*};
}

minmax! {
    fmin_s: f32_reg, set_f32, sf::f32_min;
    fmax_s: f32_reg, set_f32, sf::f32_max;
    fmin_d: f64_reg, set_f64, sf::f64_min;
    fmax_d: f64_reg, set_f64, sf::f64_max;
}

macro_rules! compare {
    ($($name:ident: $get:ident, $f:path;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            if !fp_enabled(h, op) {
                return stopped(h, op);
            }
            let mut fl = 0;
            let r = $f(h.$get(op.rs1), h.$get(op.rs2), &mut fl);
            h.set_rd(op, r as u64);
            h.accrue(fl);
            next(h, op)
        }
    )*};
}

compare! {
    feq_s: f32_reg, sf::f32_eq;
    flt_s: f32_reg, sf::f32_lt;
    fle_s: f32_reg, sf::f32_le;
    feq_d: f64_reg, sf::f64_eq;
    flt_d: f64_reg, sf::f64_lt;
    fle_d: f64_reg, sf::f64_le;
}

pub(crate) fn fclass_s(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let r = sf::f32_classify(h.f32_reg(op.rs1));
    h.set_rd(op, r);
    next(h, op)
}

pub(crate) fn fclass_d(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let r = sf::f64_classify(h.f64_reg(op.rs1));
    h.set_rd(op, r);
    next(h, op)
}

/// Float to integer (§13.7): 32-bit results are sign-extended, even for the unsigned forms.
macro_rules! to_int {
    ($($name:ident: $get:ident, $f:path, |$v:ident| $e:expr;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            let Some(rm) = rounding(h, op) else { return stopped(h, op) };
            let mut fl = 0;
            let $v = $f(h.$get(op.rs1), rm, &mut fl);
            h.set_rd(op, $e);
            h.accrue(fl);
            next(h, op)
        }
    )*};
}

to_int! {
    fcvt_w_s: f32_reg, sf::f32_to_i32, |v| v as i64 as u64;
    fcvt_wu_s: f32_reg, sf::f32_to_u32, |v| v as i32 as i64 as u64;
    fcvt_l_s: f32_reg, sf::f32_to_i64, |v| v as u64;
    fcvt_lu_s: f32_reg, sf::f32_to_u64, |v| v;
    fcvt_w_d: f64_reg, sf::f64_to_i32, |v| v as i64 as u64;
    fcvt_wu_d: f64_reg, sf::f64_to_u32, |v| v as i32 as i64 as u64;
    fcvt_l_d: f64_reg, sf::f64_to_i64, |v| v as u64;
    fcvt_lu_d: f64_reg, sf::f64_to_u64, |v| v;
}

macro_rules! from_int {
    ($($name:ident: $set:ident, $f:path, |$x:ident| $e:expr;)*) => {$(
        pub(crate) fn $name(h: &mut Hart, op: &Op) -> bool {
            let Some(rm) = rounding(h, op) else { return stopped(h, op) };
            let mut fl = 0;
            let $x = h.rs1(op);
            let r = $f($e, rm, &mut fl);
            h.$set(op.rd, r);
            h.accrue(fl);
            next(h, op)
        }
    )*};
}

from_int! {
    fcvt_s_w: set_f32, sf::f32_from_i32, |x| x as i32;
    fcvt_s_wu: set_f32, sf::f32_from_u32, |x| x as u32;
    fcvt_s_l: set_f32, sf::f32_from_i64, |x| x as i64;
    fcvt_s_lu: set_f32, sf::f32_from_u64, |x| x;
    fcvt_d_w: set_f64, sf::f64_from_i32, |x| x as i32;
    fcvt_d_wu: set_f64, sf::f64_from_u32, |x| x as u32;
    fcvt_d_l: set_f64, sf::f64_from_i64, |x| x as i64;
    fcvt_d_lu: set_f64, sf::f64_from_u64, |x| x;
}

pub(crate) fn fcvt_s_d(h: &mut Hart, op: &Op) -> bool {
    let Some(rm) = rounding(h, op) else {
        return stopped(h, op);
    };
    let mut fl = 0;
    let r = sf::f64_to_f32(h.f64_reg(op.rs1), rm, &mut fl);
    h.set_f32(op.rd, r);
    h.accrue(fl);
    next(h, op)
}

pub(crate) fn fcvt_d_s(h: &mut Hart, op: &Op) -> bool {
    // The rm field must still be a valid encoding even though the conversion is exact.
    if rounding(h, op).is_none() {
        return stopped(h, op);
    }
    let mut fl = 0;
    let r = sf::f32_to_f64(h.f32_reg(op.rs1), &mut fl);
    h.set_f64(op.rd, r);
    h.accrue(fl);
    next(h, op)
}

/// FMV.X.W moves the raw low 32 bits, sign-extended, without checking NaN-boxing (§13.8).
pub(crate) fn fmv_x_w(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let v = h.f[(op.rs1 & 31) as usize] as u32 as i32 as i64 as u64;
    h.set_rd(op, v);
    next(h, op)
}

pub(crate) fn fmv_w_x(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let v = h.rs1(op) as u32;
    h.set_f32(op.rd, v);
    next(h, op)
}

pub(crate) fn fmv_x_d(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let v = h.f[(op.rs1 & 31) as usize];
    h.set_rd(op, v);
    next(h, op)
}

pub(crate) fn fmv_d_x(h: &mut Hart, op: &Op) -> bool {
    if !fp_enabled(h, op) {
        return stopped(h, op);
    }
    let v = h.rs1(op);
    h.set_f64(op.rd, v);
    next(h, op)
}
