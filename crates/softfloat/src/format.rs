//! Format descriptions and bit-level unpacking shared by both precisions.
//!
//! Everything inside the crate works on `u64` bit patterns; binary32 values
//! simply live in the low 32 bits. The [`Format`] trait carries the field
//! widths so every algorithm is written once and monomorphised per format.

/// Field layout of an IEEE-754 binary interchange format.
pub(crate) trait Format {
    /// Width of the biased exponent field.
    const EXP_BITS: u32;
    /// Width of the trailing significand field (precision minus one).
    const FRAC_BITS: u32;

    const BITS: u32 = 1 + Self::EXP_BITS + Self::FRAC_BITS;
    const SIGN: u64 = 1 << (Self::BITS - 1);
    /// The all-ones exponent field (infinities and NaNs).
    const EXP_MAX: i32 = (1 << Self::EXP_BITS) - 1;
    const BIAS: i32 = (1 << (Self::EXP_BITS - 1)) - 1;
    /// Unbiased exponent of the smallest normal number.
    const EMIN: i32 = 1 - Self::BIAS;
    const FRAC_MASK: u64 = (1 << Self::FRAC_BITS) - 1;
    /// Most significant trailing-significand bit: set for quiet NaNs.
    const QUIET_BIT: u64 = 1 << (Self::FRAC_BITS - 1);
    const INF: u64 = (Self::EXP_MAX as u64) << Self::FRAC_BITS;
    const MAX_FINITE: u64 = Self::INF - 1;
    /// RISC-V canonical NaN: positive, quiet, zero payload
    /// (RISC-V unprivileged ISA, §20.3 "NaN Generation and Propagation").
    const CANONICAL_NAN: u64 = Self::INF | Self::QUIET_BIT;
}

/// binary32 (RISC-V F extension).
pub(crate) struct F32;
impl Format for F32 {
    const EXP_BITS: u32 = 8;
    const FRAC_BITS: u32 = 23;
}

/// binary64 (RISC-V D extension).
pub(crate) struct F64;
impl Format for F64 {
    const EXP_BITS: u32 = 11;
    const FRAC_BITS: u32 = 52;
}

/// The class of an operand, with the magnitude of finite nonzero values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Zero,
    /// Value is `sig * 2^exp`; `sig` includes the implicit bit for normal
    /// numbers and is therefore not normalised for subnormals.
    Finite {
        exp: i32,
        sig: u64,
    },
    Inf,
    Nan {
        signaling: bool,
    },
}

/// Splits a bit pattern into its sign and [`Kind`].
#[inline]
pub(crate) fn unpack<F: Format>(bits: u64) -> (bool, Kind) {
    let sign = bits & F::SIGN != 0;
    let biased = ((bits >> F::FRAC_BITS) as i32) & F::EXP_MAX;
    let frac = bits & F::FRAC_MASK;
    let kind = if biased == F::EXP_MAX {
        if frac == 0 {
            Kind::Inf
        } else {
            Kind::Nan { signaling: frac & F::QUIET_BIT == 0 }
        }
    } else if biased == 0 {
        if frac == 0 {
            Kind::Zero
        } else {
            Kind::Finite { exp: F::EMIN - F::FRAC_BITS as i32, sig: frac }
        }
    } else {
        Kind::Finite {
            exp: biased - F::BIAS - F::FRAC_BITS as i32,
            sig: frac | (1 << F::FRAC_BITS),
        }
    };
    (sign, kind)
}

/// Shifts a finite operand so its significand has exactly `FRAC_BITS + 1`
/// bits (the leading one at bit `FRAC_BITS`); only subnormals move.
#[inline]
pub(crate) fn normalize<F: Format>(exp: i32, sig: u64) -> (i32, u64) {
    let shift = sig.leading_zeros() - (63 - F::FRAC_BITS);
    (exp - shift as i32, sig << shift)
}

#[inline]
pub(crate) fn signed_zero<F: Format>(negative: bool) -> u64 {
    if negative {
        F::SIGN
    } else {
        0
    }
}

#[inline]
pub(crate) fn signed_inf<F: Format>(negative: bool) -> u64 {
    signed_zero::<F>(negative) | F::INF
}

#[inline]
pub(crate) fn is_nan<F: Format>(bits: u64) -> bool {
    bits & !F::SIGN > F::INF
}

#[inline]
pub(crate) fn is_signaling_nan<F: Format>(bits: u64) -> bool {
    is_nan::<F>(bits) && bits & F::QUIET_BIT == 0
}
