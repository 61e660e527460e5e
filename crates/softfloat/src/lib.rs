//! keel-softfloat: IEEE 754-2008 binary32/binary64 arithmetic in software,
//! with exactly the semantics the RISC-V F and D extensions require
//! (RISC-V unprivileged ISA, chapters 20 "F" and 21 "D").
//!
//! * All five RISC-V rounding modes, including round-to-nearest,
//!   ties-to-max-magnitude ([`RoundingMode::NearestMaxMagnitude`]).
//! * Accrued exception flags in the `fflags` bit layout ([`flags`]);
//!   tininess is detected after rounding and UNDERFLOW is raised only for
//!   tiny inexact results (§20.4).
//! * Every NaN result is the canonical NaN (§20.3); payloads are never
//!   propagated.
//! * FMIN/FMAX follow F version 2.2 (minimumNumber/maximumNumber with
//!   -0 < +0), FEQ is quiet while FLT/FLE are signaling, FCLASS returns
//!   the 10-bit mask.
//! * Float-to-integer conversions saturate as in the RISC-V conversion
//!   table (§20.7); fused multiply-add raises INVALID for `inf * 0 + qNaN`.
//!
//! Values are passed as raw bit patterns (`u32` for binary32, `u64` for
//! binary64) and flags are ORed into a caller-provided `u8`. The
//! implementation is generic over the two formats, uses only integer
//! arithmetic (with `u128` intermediates) and never allocates.

#![cfg_attr(not(test), forbid(unsafe_code))]
#![deny(clippy::undocumented_unsafe_blocks)]

mod arith;
mod compare;
mod convert;
mod format;
mod round;

#[cfg(test)]
mod tests;

use format::{F32, F64};

/// RISC-V `frm` encoding (§20.2, "Rounding mode encoding").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundingMode {
    /// RNE: round to nearest, ties to even.
    NearestEven = 0,
    /// RTZ: round towards zero.
    TowardZero = 1,
    /// RDN: round towards negative infinity.
    Down = 2,
    /// RUP: round towards positive infinity.
    Up = 3,
    /// RMM: round to nearest, ties to max magnitude (away from zero).
    NearestMaxMagnitude = 4,
}

impl RoundingMode {
    /// Decodes a 3-bit `rm`/`frm` value. 5 and 6 are reserved and 7 (DYN)
    /// is not a rounding mode by itself, so all three give `None`.
    pub fn from_bits(rm: u8) -> Option<RoundingMode> {
        match rm {
            0 => Some(RoundingMode::NearestEven),
            1 => Some(RoundingMode::TowardZero),
            2 => Some(RoundingMode::Down),
            3 => Some(RoundingMode::Up),
            4 => Some(RoundingMode::NearestMaxMagnitude),
            _ => None,
        }
    }
}

/// RISC-V `fflags` bits (§20.2, "Accrued exception flag encoding").
pub mod flags {
    /// NX: inexact.
    pub const INEXACT: u8 = 1;
    /// UF: underflow.
    pub const UNDERFLOW: u8 = 2;
    /// OF: overflow.
    pub const OVERFLOW: u8 = 4;
    /// DZ: divide by zero.
    pub const DIV_BY_ZERO: u8 = 8;
    /// NV: invalid operation.
    pub const INVALID: u8 = 16;
}

/// The binary32 canonical NaN (§20.3).
pub const F32_CANONICAL_NAN: u32 = 0x7fc0_0000;
/// The binary64 canonical NaN (§20.3, which the D extension applies to
/// binary64).
pub const F64_CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;

const _: () = assert!(F32_CANONICAL_NAN as u64 == <F32 as format::Format>::CANONICAL_NAN);
const _: () = assert!(F64_CANONICAL_NAN == <F64 as format::Format>::CANONICAL_NAN);

/// Generates the public entry points of one format from the generic core.
macro_rules! float_api {
    (
        $fmt:ty, $bits:ty,
        add: $add:ident, sub: $sub:ident, mul: $mul:ident, div: $div:ident,
        sqrt: $sqrt:ident, mul_add: $mul_add:ident,
        eq: $eq:ident, lt: $lt:ident, le: $le:ident,
        min: $min:ident, max: $max:ident, classify: $classify:ident,
        to_i32: $to_i32:ident, to_u32: $to_u32:ident,
        to_i64: $to_i64:ident, to_u64: $to_u64:ident,
        from_i32: $from_i32:ident, from_u32: $from_u32:ident,
        from_i64: $from_i64:ident, from_u64: $from_u64:ident,
        is_signaling_nan: $is_snan:ident $(,)?
    ) => {
        /// `a + b`, rounded per `rm` (FADD).
        #[inline]
        pub fn $add(a: $bits, b: $bits, rm: RoundingMode, flags: &mut u8) -> $bits {
            arith::add::<$fmt>(a.into(), b.into(), false, rm, flags) as $bits
        }

        /// `a - b`, rounded per `rm` (FSUB).
        #[inline]
        pub fn $sub(a: $bits, b: $bits, rm: RoundingMode, flags: &mut u8) -> $bits {
            arith::add::<$fmt>(a.into(), b.into(), true, rm, flags) as $bits
        }

        /// `a * b`, rounded per `rm` (FMUL).
        #[inline]
        pub fn $mul(a: $bits, b: $bits, rm: RoundingMode, flags: &mut u8) -> $bits {
            arith::mul::<$fmt>(a.into(), b.into(), rm, flags) as $bits
        }

        /// `a / b`, rounded per `rm` (FDIV).
        #[inline]
        pub fn $div(a: $bits, b: $bits, rm: RoundingMode, flags: &mut u8) -> $bits {
            arith::div::<$fmt>(a.into(), b.into(), rm, flags) as $bits
        }

        /// Square root, rounded per `rm` (FSQRT); `sqrt(-0) = -0`.
        #[inline]
        pub fn $sqrt(a: $bits, rm: RoundingMode, flags: &mut u8) -> $bits {
            arith::sqrt::<$fmt>(a.into(), rm, flags) as $bits
        }

        /// Fused `±(a * b) ± c` with one rounding. FMADD = (false, false),
        /// FMSUB = (false, true), FNMSUB = (true, false),
        /// FNMADD = (true, true).
        #[inline]
        pub fn $mul_add(
            a: $bits,
            b: $bits,
            c: $bits,
            negate_product: bool,
            negate_addend: bool,
            rm: RoundingMode,
            flags: &mut u8,
        ) -> $bits {
            arith::mul_add::<$fmt>(
                a.into(),
                b.into(),
                c.into(),
                negate_product,
                negate_addend,
                rm,
                flags,
            ) as $bits
        }

        /// Quiet `a == b` (FEQ): INVALID only for signaling NaNs.
        #[inline]
        pub fn $eq(a: $bits, b: $bits, flags: &mut u8) -> bool {
            compare::eq::<$fmt>(a.into(), b.into(), flags)
        }

        /// Signaling `a < b` (FLT): INVALID for any NaN.
        #[inline]
        pub fn $lt(a: $bits, b: $bits, flags: &mut u8) -> bool {
            compare::lt::<$fmt>(a.into(), b.into(), flags)
        }

        /// Signaling `a <= b` (FLE): INVALID for any NaN.
        #[inline]
        pub fn $le(a: $bits, b: $bits, flags: &mut u8) -> bool {
            compare::le::<$fmt>(a.into(), b.into(), flags)
        }

        /// FMIN: the smaller operand with -0 < +0; a single NaN is ignored.
        #[inline]
        pub fn $min(a: $bits, b: $bits, flags: &mut u8) -> $bits {
            compare::min_max::<$fmt>(a.into(), b.into(), false, flags) as $bits
        }

        /// FMAX: the larger operand with -0 < +0; a single NaN is ignored.
        #[inline]
        pub fn $max(a: $bits, b: $bits, flags: &mut u8) -> $bits {
            compare::min_max::<$fmt>(a.into(), b.into(), true, flags) as $bits
        }

        /// FCLASS: the one-hot 10-bit class mask.
        #[inline]
        pub fn $classify(a: $bits) -> u64 {
            compare::classify::<$fmt>(a.into())
        }

        /// FCVT.W: to `i32`, saturating; NaN gives `i32::MAX`.
        #[inline]
        pub fn $to_i32(a: $bits, rm: RoundingMode, flags: &mut u8) -> i32 {
            convert::to_int::<$fmt>(a.into(), rm, flags, i32::MIN.into(), i32::MAX.into()) as i32
        }

        /// FCVT.WU: to `u32`, saturating; NaN gives `u32::MAX`.
        #[inline]
        pub fn $to_u32(a: $bits, rm: RoundingMode, flags: &mut u8) -> u32 {
            convert::to_int::<$fmt>(a.into(), rm, flags, 0, u32::MAX.into()) as u32
        }

        /// FCVT.L: to `i64`, saturating; NaN gives `i64::MAX`.
        #[inline]
        pub fn $to_i64(a: $bits, rm: RoundingMode, flags: &mut u8) -> i64 {
            convert::to_int::<$fmt>(a.into(), rm, flags, i64::MIN.into(), i64::MAX.into()) as i64
        }

        /// FCVT.LU: to `u64`, saturating; NaN gives `u64::MAX`.
        #[inline]
        pub fn $to_u64(a: $bits, rm: RoundingMode, flags: &mut u8) -> u64 {
            convert::to_int::<$fmt>(a.into(), rm, flags, 0, u64::MAX.into()) as u64
        }

        /// FCVT from a signed 32-bit integer.
        #[inline]
        pub fn $from_i32(v: i32, rm: RoundingMode, flags: &mut u8) -> $bits {
            convert::from_int::<$fmt>(v < 0, v.unsigned_abs().into(), rm, flags) as $bits
        }

        /// FCVT from an unsigned 32-bit integer.
        #[inline]
        pub fn $from_u32(v: u32, rm: RoundingMode, flags: &mut u8) -> $bits {
            convert::from_int::<$fmt>(false, v.into(), rm, flags) as $bits
        }

        /// FCVT from a signed 64-bit integer.
        #[inline]
        pub fn $from_i64(v: i64, rm: RoundingMode, flags: &mut u8) -> $bits {
            convert::from_int::<$fmt>(v < 0, v.unsigned_abs(), rm, flags) as $bits
        }

        /// FCVT from an unsigned 64-bit integer.
        #[inline]
        pub fn $from_u64(v: u64, rm: RoundingMode, flags: &mut u8) -> $bits {
            convert::from_int::<$fmt>(false, v, rm, flags) as $bits
        }

        /// True for a signaling NaN (quiet bit clear, payload nonzero).
        #[inline]
        pub fn $is_snan(a: $bits) -> bool {
            format::is_signaling_nan::<$fmt>(a.into())
        }
    };
}

float_api!(
    F32, u32,
    add: f32_add, sub: f32_sub, mul: f32_mul, div: f32_div,
    sqrt: f32_sqrt, mul_add: f32_mul_add,
    eq: f32_eq, lt: f32_lt, le: f32_le,
    min: f32_min, max: f32_max, classify: f32_classify,
    to_i32: f32_to_i32, to_u32: f32_to_u32, to_i64: f32_to_i64, to_u64: f32_to_u64,
    from_i32: f32_from_i32, from_u32: f32_from_u32,
    from_i64: f32_from_i64, from_u64: f32_from_u64,
    is_signaling_nan: f32_is_signaling_nan,
);

float_api!(
    F64, u64,
    add: f64_add, sub: f64_sub, mul: f64_mul, div: f64_div,
    sqrt: f64_sqrt, mul_add: f64_mul_add,
    eq: f64_eq, lt: f64_lt, le: f64_le,
    min: f64_min, max: f64_max, classify: f64_classify,
    to_i32: f64_to_i32, to_u32: f64_to_u32, to_i64: f64_to_i64, to_u64: f64_to_u64,
    from_i32: f64_from_i32, from_u32: f64_from_u32,
    from_i64: f64_from_i64, from_u64: f64_from_u64,
    is_signaling_nan: f64_is_signaling_nan,
);

/// FCVT.D.S: widens exactly; a signaling NaN raises INVALID and every NaN
/// becomes the binary64 canonical NaN.
#[inline]
pub fn f32_to_f64(a: u32, flags: &mut u8) -> u64 {
    convert::convert::<F32, F64>(a.into(), RoundingMode::NearestEven, flags)
}

/// FCVT.S.D: narrows, rounding per `rm`; NaNs become the binary32
/// canonical NaN (INVALID for signaling NaNs).
#[inline]
pub fn f64_to_f32(a: u64, rm: RoundingMode, flags: &mut u8) -> u32 {
    convert::convert::<F64, F32>(a, rm, flags) as u32
}
