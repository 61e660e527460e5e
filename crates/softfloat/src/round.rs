//! Rounding an exact (or sticky-jammed) intermediate to a format.
//!
//! Every arithmetic operation reduces its result to `sign * sig * 2^exp`
//! with `sig` a `u128` and hands it to [`round_pack`], which is the only
//! place rounding, overflow and underflow are decided.
//!
//! Inexact intermediates use "jamming": bits lost before rounding are ORed
//! into bit 0 of `sig`. That is sound as long as bit 0 lies strictly below
//! the round bit, so callers guarantee that a jammed `sig` has at least
//! `FRAC_BITS + 3` significant bits (round bit at position >= 1 even when
//! tininess is probed at full precision).

use crate::flags;
use crate::format::Format;
use crate::RoundingMode;

/// Shifts `sig` right by `shift` bits and rounds the discarded part
/// according to `rm`. Returns the rounded quotient and whether any nonzero
/// bit was discarded. `negative` is the sign of the value (directed modes
/// depend on it).
#[inline]
pub(crate) fn round_shift(sig: u128, shift: u32, negative: bool, rm: RoundingMode) -> (u128, bool) {
    if shift == 0 {
        return (sig, false);
    }
    let (kept, half, sticky) = if shift < 128 {
        let rem = sig & ((1u128 << shift) - 1);
        let half_bit = 1u128 << (shift - 1);
        (sig >> shift, rem & half_bit != 0, rem & (half_bit - 1) != 0)
    } else if shift == 128 {
        (0, sig >> 127 != 0, sig & (u128::MAX >> 1) != 0)
    } else {
        (0, false, sig != 0)
    };
    let inexact = half || sticky;
    let up = match rm {
        RoundingMode::NearestEven => half && (sticky || kept & 1 != 0),
        RoundingMode::NearestMaxMagnitude => half,
        RoundingMode::TowardZero => false,
        RoundingMode::Down => negative && inexact,
        RoundingMode::Up => !negative && inexact,
    };
    (kept + up as u128, inexact)
}

/// The result of an overflow: infinity for the round-to-nearest modes and
/// for directed rounding away from zero, the largest finite number
/// otherwise (IEEE 754-2008 §7.4).
#[inline]
fn overflow_result<F: Format>(negative: bool, rm: RoundingMode) -> u64 {
    let to_inf = match rm {
        RoundingMode::NearestEven | RoundingMode::NearestMaxMagnitude => true,
        RoundingMode::TowardZero => false,
        RoundingMode::Down => negative,
        RoundingMode::Up => !negative,
    };
    let sign = if negative { F::SIGN } else { 0 };
    sign | if to_inf { F::INF } else { F::MAX_FINITE }
}

/// Rounds `(-1)^negative * sig * 2^exp` (`sig != 0`) to format `F`,
/// raising INEXACT, UNDERFLOW and OVERFLOW as appropriate.
///
/// Tininess is detected after rounding, as RISC-V requires (RISC-V
/// unprivileged ISA, §20.4 "Subnormal Arithmetic"): the value is tiny when
/// rounding it to full precision with an unbounded exponent range gives a
/// magnitude below the smallest normal number. UNDERFLOW is only raised
/// for results that are both tiny and inexact (IEEE 754-2008 §7.5, default
/// exception handling).
pub(crate) fn round_pack<F: Format>(
    negative: bool,
    exp: i32,
    sig: u128,
    rm: RoundingMode,
    flags: &mut u8,
) -> u64 {
    debug_assert!(sig != 0);
    let frac = F::FRAC_BITS as i32;
    let msb = 127 - sig.leading_zeros() as i32;
    // The value lies in [2^e, 2^(e+1)).
    let e = exp + msb;
    // Exponent of the unit in the last place of the result: fixed at the
    // subnormal spacing below the normal range.
    let ulp = e.max(F::EMIN) - frac;
    let shift = ulp - exp;
    let (kept, inexact) = if shift <= 0 {
        // Exact; the significand has at most FRAC_BITS + 1 bits here.
        (sig << (-shift) as u32, false)
    } else {
        round_shift(sig, shift as u32, negative, rm)
    };
    // Exponent field minus one: adding the significand (implicit bit
    // included) carries into the exponent field, which also handles a
    // rounding carry and subnormals rounding up to the smallest normal.
    let biased_m1 = ulp + F::BIAS + frac - 1;
    let biased = biased_m1 + (kept >> F::FRAC_BITS) as i32;
    if biased >= F::EXP_MAX {
        *flags |= flags::OVERFLOW | flags::INEXACT;
        return overflow_result::<F>(negative, rm);
    }
    if inexact {
        *flags |= flags::INEXACT;
        if e < F::EMIN {
            // Only a value just below 2^EMIN can round up to it at full
            // precision; everything smaller stays tiny.
            let tiny = e < F::EMIN - 1 || {
                let (full, _) = round_shift(sig, shift as u32 - 1, negative, rm);
                full >> (F::FRAC_BITS + 1) == 0
            };
            if tiny {
                *flags |= flags::UNDERFLOW;
            }
        }
    }
    let sign = if negative { F::SIGN } else { 0 };
    sign | (((biased_m1 as u64) << F::FRAC_BITS) + kept as u64)
}
