//! Comparisons, minimum/maximum and classification (RISC-V unprivileged
//! ISA, §20.6 for FMIN/FMAX, §20.8 "Single-Precision Floating-Point Compare
//! Instructions", §20.9 "Single-Precision Floating-Point Classify
//! Instruction"; §21.4, §21.6 and §21.7 for double precision).

use crate::flags;
use crate::format::{is_nan, is_signaling_nan, unpack, Format, Kind};

/// Total order on non-NaN values in which -0 < +0, used by min/max.
#[inline]
fn less_signed_zero<F: Format>(a: u64, b: u64) -> bool {
    let (na, nb) = (a & F::SIGN != 0, b & F::SIGN != 0);
    match (na, nb) {
        (true, false) => true,
        (false, true) => false,
        (false, false) => a < b,
        (true, true) => a > b,
    }
}

/// IEEE `<` on non-NaN values: like [`less_signed_zero`] but ±0 are equal.
#[inline]
fn less<F: Format>(a: u64, b: u64) -> bool {
    let both_zero = (a | b) & !F::SIGN == 0;
    !both_zero && less_signed_zero::<F>(a, b)
}

/// Quiet equality (FEQ): INVALID only for a signaling NaN operand.
pub(crate) fn eq<F: Format>(a: u64, b: u64, flags: &mut u8) -> bool {
    if is_nan::<F>(a) || is_nan::<F>(b) {
        if is_signaling_nan::<F>(a) || is_signaling_nan::<F>(b) {
            *flags |= flags::INVALID;
        }
        return false;
    }
    a == b || (a | b) & !F::SIGN == 0
}

/// Signaling less-than (FLT): INVALID for any NaN operand.
pub(crate) fn lt<F: Format>(a: u64, b: u64, flags: &mut u8) -> bool {
    if is_nan::<F>(a) || is_nan::<F>(b) {
        *flags |= flags::INVALID;
        return false;
    }
    less::<F>(a, b)
}

/// Signaling less-or-equal (FLE): INVALID for any NaN operand.
pub(crate) fn le<F: Format>(a: u64, b: u64, flags: &mut u8) -> bool {
    if is_nan::<F>(a) || is_nan::<F>(b) {
        *flags |= flags::INVALID;
        return false;
    }
    !less::<F>(b, a)
}

/// FMIN (`want_max == false`) / FMAX: IEEE 754-201x minimumNumber /
/// maximumNumber as adopted by F version 2.2. A single NaN operand is
/// ignored, two NaNs give the canonical NaN, and any signaling NaN raises
/// INVALID even when the result is a number.
pub(crate) fn min_max<F: Format>(a: u64, b: u64, want_max: bool, flags: &mut u8) -> u64 {
    if is_signaling_nan::<F>(a) || is_signaling_nan::<F>(b) {
        *flags |= flags::INVALID;
    }
    match (is_nan::<F>(a), is_nan::<F>(b)) {
        (true, true) => F::CANONICAL_NAN,
        (true, false) => b,
        (false, true) => a,
        (false, false) => {
            if less_signed_zero::<F>(a, b) != want_max {
                a
            } else {
                b
            }
        }
    }
}

/// FCLASS: a one-hot 10-bit mask.
pub(crate) fn classify<F: Format>(a: u64) -> u64 {
    let (negative, kind) = unpack::<F>(a);
    let bit = match kind {
        Kind::Nan { signaling: true } => 8,
        Kind::Nan { signaling: false } => 9,
        Kind::Inf => {
            if negative {
                0
            } else {
                7
            }
        }
        Kind::Zero => {
            if negative {
                3
            } else {
                4
            }
        }
        Kind::Finite { sig, .. } => {
            let subnormal = sig >> F::FRAC_BITS == 0;
            match (negative, subnormal) {
                (true, false) => 1,
                (true, true) => 2,
                (false, true) => 5,
                (false, false) => 6,
            }
        }
    };
    1 << bit
}
