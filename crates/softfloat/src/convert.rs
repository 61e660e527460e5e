//! Conversions between the formats and to/from integers (RISC-V
//! unprivileged ISA, §20.7 "Single-Precision Floating-Point Conversion and
//! Move Instructions" and §21.5 for double precision).

use crate::flags;
use crate::format::{signed_inf, signed_zero, unpack, Format, Kind};
use crate::round::{round_pack, round_shift};
use crate::RoundingMode;

/// Converts to an integer in `[min, max]`, rounding per `rm`.
///
/// Follows the RISC-V table "Domains of float-to-integer conversions"
/// (§20.7): the range check applies to the rounded value; NaN and
/// out-of-range positive inputs give `max`, out-of-range negative inputs
/// give `min`, all with INVALID and without INEXACT. In-range results
/// raise INEXACT when rounding changed the value.
pub(crate) fn to_int<F: Format>(
    a: u64,
    rm: RoundingMode,
    flags: &mut u8,
    min: i128,
    max: i128,
) -> i128 {
    let (negative, kind) = unpack::<F>(a);
    let (magnitude, inexact) = match kind {
        Kind::Nan { .. } => {
            *flags |= flags::INVALID;
            return max;
        }
        Kind::Zero => return 0,
        Kind::Inf => (u128::MAX, false),
        // Every integer of up to 64 bits fits below 2^65, so larger
        // exponents are out of range without computing the value.
        Kind::Finite { exp, .. } if exp > 64 => (u128::MAX, false),
        Kind::Finite { exp, sig } if exp >= 0 => ((sig as u128) << exp, false),
        Kind::Finite { exp, sig } => round_shift(sig as u128, exp.unsigned_abs(), negative, rm),
    };
    // Magnitudes up to 2^117 fit in i128; anything above is out of range
    // for every destination anyway.
    let magnitude = magnitude.min(1 << 120) as i128;
    let value = if negative { -magnitude } else { magnitude };
    if value < min {
        *flags |= flags::INVALID;
        min
    } else if value > max {
        *flags |= flags::INVALID;
        max
    } else {
        if inexact {
            *flags |= flags::INEXACT;
        }
        value
    }
}

/// Converts the integer `(-1)^negative * magnitude`; zero is +0.
pub(crate) fn from_int<F: Format>(
    negative: bool,
    magnitude: u64,
    rm: RoundingMode,
    flags: &mut u8,
) -> u64 {
    if magnitude == 0 {
        return 0;
    }
    round_pack::<F>(negative, 0, magnitude as u128, rm, flags)
}

/// Converts between formats: NaNs become the destination's canonical NaN
/// (INVALID for signaling NaNs), everything else is rounded per `rm`
/// (exact when widening).
pub(crate) fn convert<S: Format, D: Format>(a: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    let (negative, kind) = unpack::<S>(a);
    match kind {
        Kind::Nan { signaling } => {
            if signaling {
                *flags |= flags::INVALID;
            }
            D::CANONICAL_NAN
        }
        Kind::Inf => signed_inf::<D>(negative),
        Kind::Zero => signed_zero::<D>(negative),
        Kind::Finite { exp, sig } => round_pack::<D>(negative, exp, sig as u128, rm, flags),
    }
}
