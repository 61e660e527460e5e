//! The host FPU (x86_64 SSE/FMA3) as a reference implementation.
//!
//! Each wrapper saves MXCSR, loads one with the requested rounding control,
//! all exceptions masked, all flags clear and DAZ/FTZ off, performs a
//! single instruction, captures MXCSR, and restores the saved value, all in
//! one `asm!` block so the compiler never runs code under the modified
//! control word.

use crate::flags;
use crate::RoundingMode;
use core::arch::asm;

/// All six exception masks set (bits 7-12); RC, DAZ (bit 6), FTZ (bit 15)
/// and the flags (bits 0-5) clear.
const MXCSR_MASKED: u32 = 0x1f80;

/// MXCSR rounding-control field (bits 13-14) for a RISC-V mode, or `None`
/// for RMM, which SSE cannot do.
pub(crate) fn rounding_control(rm: RoundingMode) -> Option<u32> {
    match rm {
        RoundingMode::NearestEven => Some(0),
        RoundingMode::Down => Some(1),
        RoundingMode::Up => Some(2),
        RoundingMode::TowardZero => Some(3),
        RoundingMode::NearestMaxMagnitude => None,
    }
}

fn control_word(rm: RoundingMode) -> u32 {
    MXCSR_MASKED | (rounding_control(rm).expect("no SSE equivalent for RMM") << 13)
}

/// Translates MXCSR status bits into `fflags`. DE (bit 1, denormal
/// operand) has no RISC-V counterpart and is dropped.
pub(crate) fn riscv_flags(mxcsr: u32) -> u8 {
    let mut f = 0;
    if mxcsr & 0x01 != 0 {
        f |= flags::INVALID;
    }
    if mxcsr & 0x04 != 0 {
        f |= flags::DIV_BY_ZERO;
    }
    if mxcsr & 0x08 != 0 {
        f |= flags::OVERFLOW;
    }
    if mxcsr & 0x10 != 0 {
        f |= flags::UNDERFLOW;
    }
    if mxcsr & 0x20 != 0 {
        f |= flags::INEXACT;
    }
    f
}

pub(crate) fn has_fma() -> bool {
    std::arch::is_x86_feature_detected!("fma")
}

pub(crate) fn has_avx512f() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// `$insn dst, src` where `dst` starts as `a` (two-operand SSE form).
macro_rules! binary {
    ($name:ident, $insn:literal, $t:ty) => {
        pub(crate) fn $name(a: $t, b: $t, rm: RoundingMode) -> ($t, u8) {
            let cw = control_word(rm);
            let mut saved = 0u32;
            let mut status = 0u32;
            let mut x = a as i64;
            // SAFETY: the block only touches MXCSR (saved and restored
            // before it ends) and the registers and three local u32s named
            // as operands; the pointers are valid for the block's duration.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{saved}]",
                    "ldmxcsr dword ptr [{cw}]",
                    concat!($insn, " {x}, {y}"),
                    "stmxcsr dword ptr [{status}]",
                    "ldmxcsr dword ptr [{saved}]",
                    saved = in(reg) &mut saved as *mut u32,
                    cw = in(reg) &cw as *const u32,
                    status = in(reg) &mut status as *mut u32,
                    x = inout(xmm_reg) x,
                    y = in(xmm_reg) b as i64,
                    options(nostack),
                );
            }
            (x as $t, riscv_flags(status))
        }
    };
}

binary!(add32, "addss", u32);
binary!(sub32, "subss", u32);
binary!(mul32, "mulss", u32);
binary!(div32, "divss", u32);
binary!(sqrt32, "sqrtss", u32);
binary!(add64, "addsd", u64);
binary!(sub64, "subsd", u64);
binary!(mul64, "mulsd", u64);
binary!(div64, "divsd", u64);
binary!(sqrt64, "sqrtsd", u64);
binary!(cvt_f32_to_f64, "cvtss2sd", u64);
binary!(cvt_f64_to_f32, "cvtsd2ss", u64);

/// `$insn acc, a, b` (one of the `vf[n]m{add,sub}231` forms):
/// acc = ±(a * b) ± acc with one rounding.
macro_rules! fused {
    ($name:ident, $insn:literal, $t:ty) => {
        fn $name(a: $t, b: $t, c: $t, rm: RoundingMode) -> ($t, u8) {
            let cw = control_word(rm);
            let mut saved = 0u32;
            let mut status = 0u32;
            let mut acc = c as i64;
            // SAFETY: as for `binary!`; callers check for FMA3 first.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{saved}]",
                    "ldmxcsr dword ptr [{cw}]",
                    concat!($insn, " {acc}, {a}, {b}"),
                    "stmxcsr dword ptr [{status}]",
                    "ldmxcsr dword ptr [{saved}]",
                    saved = in(reg) &mut saved as *mut u32,
                    cw = in(reg) &cw as *const u32,
                    status = in(reg) &mut status as *mut u32,
                    acc = inout(xmm_reg) acc,
                    a = in(xmm_reg) a as i64,
                    b = in(xmm_reg) b as i64,
                    options(nostack),
                );
            }
            (acc as $t, riscv_flags(status))
        }
    };
}

fused!(fmadd32, "vfmadd231ss", u32);
fused!(fmsub32, "vfmsub231ss", u32);
fused!(fnmadd32, "vfnmadd231ss", u32);
fused!(fnmsub32, "vfnmsub231ss", u32);
fused!(fmadd64, "vfmadd231sd", u64);
fused!(fmsub64, "vfmsub231sd", u64);
fused!(fnmadd64, "vfnmadd231sd", u64);
fused!(fnmsub64, "vfnmsub231sd", u64);

/// RISC-V sign variants onto x86 mnemonics. x86 `vfnmadd` is
/// -(a * b) + c, i.e. RISC-V FNMSUB, and `vfnmsub` is RISC-V FNMADD (see
/// the note on FNMSUB/FNMADD naming in §20.6).
pub(crate) fn fma32(a: u32, b: u32, c: u32, np: bool, na: bool, rm: RoundingMode) -> (u32, u8) {
    match (np, na) {
        (false, false) => fmadd32(a, b, c, rm),
        (false, true) => fmsub32(a, b, c, rm),
        (true, false) => fnmadd32(a, b, c, rm),
        (true, true) => fnmsub32(a, b, c, rm),
    }
}

pub(crate) fn fma64(a: u64, b: u64, c: u64, np: bool, na: bool, rm: RoundingMode) -> (u64, u8) {
    match (np, na) {
        (false, false) => fmadd64(a, b, c, rm),
        (false, true) => fmsub64(a, b, c, rm),
        (true, false) => fnmadd64(a, b, c, rm),
        (true, true) => fnmsub64(a, b, c, rm),
    }
}

/// `cvtsi2s{s,d}` from a 32-bit (`wide == false`) or 64-bit general
/// register: signed integer to float.
macro_rules! from_int {
    ($insn:literal, $t:ty, $v:expr, $wide:expr, $rm:expr) => {{
        let cw = control_word($rm);
        let mut saved = 0u32;
        let mut status = 0u32;
        let mut x = 0i64;
        if $wide {
            // SAFETY: as for `binary!`.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{saved}]",
                    "ldmxcsr dword ptr [{cw}]",
                    concat!($insn, " {x}, {v}"),
                    "stmxcsr dword ptr [{status}]",
                    "ldmxcsr dword ptr [{saved}]",
                    saved = in(reg) &mut saved as *mut u32,
                    cw = in(reg) &cw as *const u32,
                    status = in(reg) &mut status as *mut u32,
                    x = inout(xmm_reg) x,
                    v = in(reg) $v,
                    options(nostack),
                );
            }
        } else {
            // SAFETY: as for `binary!`.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{saved}]",
                    "ldmxcsr dword ptr [{cw}]",
                    concat!($insn, " {x}, {v:e}"),
                    "stmxcsr dword ptr [{status}]",
                    "ldmxcsr dword ptr [{saved}]",
                    saved = in(reg) &mut saved as *mut u32,
                    cw = in(reg) &cw as *const u32,
                    status = in(reg) &mut status as *mut u32,
                    x = inout(xmm_reg) x,
                    v = in(reg) $v as i32,
                    options(nostack),
                );
            }
        }
        (x as $t, riscv_flags(status))
    }};
}

pub(crate) fn int_to_f32(v: i64, wide: bool, rm: RoundingMode) -> (u32, u8) {
    from_int!("cvtsi2ss", u32, v, wide, rm)
}

pub(crate) fn int_to_f64(v: i64, wide: bool, rm: RoundingMode) -> (u64, u8) {
    from_int!("cvtsi2sd", u64, v, wide, rm)
}

/// `vcvtusi2s{s,d}` (AVX-512F): unsigned 64-bit integer to float.
macro_rules! from_u64 {
    ($name:ident, $insn:literal, $t:ty) => {
        pub(crate) fn $name(v: u64, rm: RoundingMode) -> ($t, u8) {
            let cw = control_word(rm);
            let mut saved = 0u32;
            let mut status = 0u32;
            let mut x = 0i64;
            // SAFETY: as for `binary!`; callers check for AVX-512F first.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{saved}]",
                    "ldmxcsr dword ptr [{cw}]",
                    concat!($insn, " {x}, {x}, {v}"),
                    "stmxcsr dword ptr [{status}]",
                    "ldmxcsr dword ptr [{saved}]",
                    saved = in(reg) &mut saved as *mut u32,
                    cw = in(reg) &cw as *const u32,
                    status = in(reg) &mut status as *mut u32,
                    x = inout(xmm_reg) x,
                    v = in(reg) v,
                    options(nostack),
                );
            }
            (x as $t, riscv_flags(status))
        }
    };
}

from_u64!(u64_to_f32_avx512, "vcvtusi2ss", u32);
from_u64!(u64_to_f64_avx512, "vcvtusi2sd", u64);

/// Unsigned 64-bit to float without AVX-512: halve with the lost bit
/// ORed back in (round-to-odd), convert signed, double. The jammed bit
/// lies far below the rounding position of either format, so the final
/// doubling (exact) gives the correctly rounded result and flags.
pub(crate) fn u64_to_f32_sse(v: u64, rm: RoundingMode) -> (u32, u8) {
    if v >> 63 == 0 {
        return int_to_f32(v as i64, true, rm);
    }
    let (half, f) = int_to_f32(((v >> 1) | (v & 1)) as i64, true, rm);
    let (twice, g) = add32(half, half, rm);
    (twice, f | g)
}

pub(crate) fn u64_to_f64_sse(v: u64, rm: RoundingMode) -> (u64, u8) {
    if v >> 63 == 0 {
        return int_to_f64(v as i64, true, rm);
    }
    let (half, f) = int_to_f64(((v >> 1) | (v & 1)) as i64, true, rm);
    let (twice, g) = add64(half, half, rm);
    (twice, f | g)
}

/// `cvts{s,d}2si r64` (rounds per MXCSR): float to signed 64-bit integer.
/// Out-of-range inputs and NaN give the "integer indefinite" 2^63 with IE.
macro_rules! to_i64 {
    ($name:ident, $insn:literal) => {
        pub(crate) fn $name(a: u64, rm: RoundingMode) -> (i64, u8) {
            let cw = control_word(rm);
            let mut saved = 0u32;
            let mut status = 0u32;
            let r: i64;
            // SAFETY: as for `binary!`; callers check for AVX-512F before
            // using the `vcvts*2usi` forms.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{saved}]",
                    "ldmxcsr dword ptr [{cw}]",
                    concat!($insn, " {r}, {x}"),
                    "stmxcsr dword ptr [{status}]",
                    "ldmxcsr dword ptr [{saved}]",
                    saved = in(reg) &mut saved as *mut u32,
                    cw = in(reg) &cw as *const u32,
                    status = in(reg) &mut status as *mut u32,
                    x = in(xmm_reg) a as i64,
                    r = out(reg) r,
                    options(nostack),
                );
            }
            (r, riscv_flags(status))
        }
    };
}

to_i64!(f32_to_i64, "cvtss2si");
to_i64!(f64_to_i64, "cvtsd2si");
to_i64!(f32_to_u64_avx512, "vcvtss2usi");
to_i64!(f64_to_u64_avx512, "vcvtsd2usi");
