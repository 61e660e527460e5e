//! Arithmetic: add/sub, mul, div, sqrt and fused multiply-add
//! (RISC-V unprivileged ISA, §20.6 "Single-Precision Floating-Point
//! Computational Instructions" and §21.4 for double precision).
//!
//! Each operation first settles the special operands (NaN, infinity,
//! zero), then forms an exact or sticky-jammed `u128` intermediate and
//! rounds it once with [`round_pack`].

use crate::flags;
use crate::format::{normalize, signed_inf, signed_zero, unpack, Format, Kind};
use crate::round::round_pack;
use crate::RoundingMode;

/// Any NaN result is the canonical NaN; payloads are not propagated
/// (RISC-V unprivileged ISA, §20.3 "NaN Generation and Propagation").
#[inline]
fn invalid<F: Format>(flags: &mut u8) -> u64 {
    *flags |= flags::INVALID;
    F::CANONICAL_NAN
}

#[inline]
fn is_snan(k: Kind) -> bool {
    matches!(k, Kind::Nan { signaling: true })
}

/// Result when at least one operand is NaN: INVALID only for signaling NaNs.
#[inline]
fn nan_operand<F: Format>(kinds: &[Kind], flags: &mut u8) -> u64 {
    if kinds.iter().any(|&k| is_snan(k)) {
        *flags |= flags::INVALID;
    }
    F::CANONICAL_NAN
}

/// Sign of an exact zero sum of operands with opposite signs: +0 in every
/// mode except round-down (IEEE 754-2008 §6.3).
#[inline]
fn zero_sum_sign(rm: RoundingMode) -> bool {
    rm == RoundingMode::Down
}

/// Position of the leading bit of both addends in [`sum_round`]; leaves
/// one bit of headroom for the carry of an effective addition.
const SUM_MSB: u32 = 125;

/// Adds two finite nonzero values `(-1)^sx * mx * 2^ex + (-1)^sy * my * 2^ey`
/// and rounds once. The significands may have up to 106 bits (a binary64
/// product), so after normalising to bit 125 at least 20 low bits are zero.
/// Bits are only lost (jammed) when the exponents differ by more than
/// that, and then no cancellation beyond one bit can happen, which keeps
/// the jammed result long enough for [`round_pack`].
#[allow(clippy::too_many_arguments)]
fn sum_round<F: Format>(
    sx: bool,
    ex: i32,
    mx: u128,
    sy: bool,
    ey: i32,
    my: u128,
    rm: RoundingMode,
    flags: &mut u8,
) -> u64 {
    let nx = mx.leading_zeros() - (127 - SUM_MSB);
    let ny = my.leading_zeros() - (127 - SUM_MSB);
    let (mut sx, mut ex, mut mx) = (sx, ex - nx as i32, mx << nx);
    let (mut sy, mut ey, mut my) = (sy, ey - ny as i32, my << ny);
    if ex < ey {
        core::mem::swap(&mut sx, &mut sy);
        core::mem::swap(&mut ex, &mut ey);
        core::mem::swap(&mut mx, &mut my);
    }
    let d = (ex - ey) as u32;
    let my = if d == 0 {
        my
    } else if d < 128 {
        (my >> d) | ((my & ((1u128 << d) - 1) != 0) as u128)
    } else {
        1
    };
    let (sign, mag) = if sx == sy {
        (sx, mx + my)
    } else if mx >= my {
        (sx, mx - my)
    } else {
        (sy, my - mx)
    };
    if mag == 0 {
        return signed_zero::<F>(zero_sum_sign(rm));
    }
    round_pack::<F>(sign, ex, mag, rm, flags)
}

/// `a + b`, or `a - b` when `negate_b` is set.
pub(crate) fn add<F: Format>(
    a: u64,
    b: u64,
    negate_b: bool,
    rm: RoundingMode,
    flags: &mut u8,
) -> u64 {
    let (sa, ka) = unpack::<F>(a);
    let (sb, kb) = unpack::<F>(b);
    let sb = sb ^ negate_b;
    match (ka, kb) {
        (Kind::Nan { .. }, _) | (_, Kind::Nan { .. }) => nan_operand::<F>(&[ka, kb], flags),
        // inf - inf is invalid (IEEE 754-2008 §7.2).
        (Kind::Inf, Kind::Inf) if sa != sb => invalid::<F>(flags),
        (Kind::Inf, _) => signed_inf::<F>(sa),
        (_, Kind::Inf) => signed_inf::<F>(sb),
        (Kind::Zero, Kind::Zero) => signed_zero::<F>(if sa == sb { sa } else { zero_sum_sign(rm) }),
        (Kind::Zero, _) => b ^ if negate_b { F::SIGN } else { 0 },
        (_, Kind::Zero) => a,
        (Kind::Finite { exp: ea, sig: ma }, Kind::Finite { exp: eb, sig: mb }) => {
            sum_round::<F>(sa, ea, ma as u128, sb, eb, mb as u128, rm, flags)
        }
    }
}

pub(crate) fn mul<F: Format>(a: u64, b: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    let (sa, ka) = unpack::<F>(a);
    let (sb, kb) = unpack::<F>(b);
    let sign = sa ^ sb;
    match (ka, kb) {
        (Kind::Nan { .. }, _) | (_, Kind::Nan { .. }) => nan_operand::<F>(&[ka, kb], flags),
        (Kind::Inf, Kind::Zero) | (Kind::Zero, Kind::Inf) => invalid::<F>(flags),
        (Kind::Inf, _) | (_, Kind::Inf) => signed_inf::<F>(sign),
        (Kind::Zero, _) | (_, Kind::Zero) => signed_zero::<F>(sign),
        (Kind::Finite { exp: ea, sig: ma }, Kind::Finite { exp: eb, sig: mb }) => {
            // The product of two significands is exact in 128 bits.
            round_pack::<F>(sign, ea + eb, ma as u128 * mb as u128, rm, flags)
        }
    }
}

pub(crate) fn div<F: Format>(a: u64, b: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    let (sa, ka) = unpack::<F>(a);
    let (sb, kb) = unpack::<F>(b);
    let sign = sa ^ sb;
    match (ka, kb) {
        (Kind::Nan { .. }, _) | (_, Kind::Nan { .. }) => nan_operand::<F>(&[ka, kb], flags),
        (Kind::Inf, Kind::Inf) | (Kind::Zero, Kind::Zero) => invalid::<F>(flags),
        (Kind::Inf, _) => signed_inf::<F>(sign),
        (_, Kind::Inf) | (Kind::Zero, _) => signed_zero::<F>(sign),
        (_, Kind::Zero) => {
            *flags |= flags::DIV_BY_ZERO;
            signed_inf::<F>(sign)
        }
        (Kind::Finite { exp: ea, sig: ma }, Kind::Finite { exp: eb, sig: mb }) => {
            let (ea, ma) = normalize::<F>(ea, ma);
            let (eb, mb) = normalize::<F>(eb, mb);
            // ma / mb lies in (1/2, 2), so scaling the dividend by
            // 2^(FRAC_BITS + 4) yields a quotient of at least FRAC_BITS + 4
            // bits; the remainder becomes the sticky bit.
            let scale = F::FRAC_BITS + 4;
            // The dividend has 2 * FRAC_BITS + 5 bits: binary32 divides in
            // 64 bits, which is much cheaper than a 128-bit division.
            let q = if 2 * F::FRAC_BITS + 5 <= 64 {
                let n = ma << scale;
                ((n / mb) | (n % mb != 0) as u64) as u128
            } else {
                let n = (ma as u128) << scale;
                let d = mb as u128;
                (n / d) | (n % d != 0) as u128
            };
            round_pack::<F>(sign, ea - eb - scale as i32, q, rm, flags)
        }
    }
}

pub(crate) fn sqrt<F: Format>(a: u64, rm: RoundingMode, flags: &mut u8) -> u64 {
    let (sa, ka) = unpack::<F>(a);
    match ka {
        Kind::Nan { .. } => nan_operand::<F>(&[ka], flags),
        // sqrt(-0) = -0 (IEEE 754-2008 §5.4.1).
        Kind::Zero => a,
        _ if sa => invalid::<F>(flags),
        Kind::Inf => a,
        Kind::Finite { exp, sig } => {
            let (exp, sig) = normalize::<F>(exp, sig);
            // Scale so the radicand has about 2 * (FRAC_BITS + 4) bits and
            // an even exponent: the integer root then has FRAC_BITS + 4 bits
            // and a nonzero remainder becomes the sticky bit.
            let mut scale = F::FRAC_BITS + 8;
            if (exp - scale as i32) & 1 != 0 {
                scale += 1;
            }
            // The radicand has at most 2 * FRAC_BITS + 10 bits; binary32
            // takes the cheaper 64-bit root.
            let r = if 2 * F::FRAC_BITS + 10 <= 64 {
                let n = sig << scale;
                let r = n.isqrt();
                (r | (r * r != n) as u64) as u128
            } else {
                let n = (sig as u128) << scale;
                let r = n.isqrt();
                r | (r * r != n) as u128
            };
            round_pack::<F>(false, (exp - scale as i32) / 2, r, rm, flags)
        }
    }
}

/// `(-1)^negate_product * a * b + (-1)^negate_addend * c` with a single
/// rounding (RISC-V unprivileged ISA, §20.6: FMADD/FMSUB/FNMSUB/FNMADD
/// negate the product, not the sum, which matters for signed zeros).
#[allow(clippy::too_many_arguments)]
pub(crate) fn mul_add<F: Format>(
    a: u64,
    b: u64,
    c: u64,
    negate_product: bool,
    negate_addend: bool,
    rm: RoundingMode,
    flags: &mut u8,
) -> u64 {
    let (sa, ka) = unpack::<F>(a);
    let (sb, kb) = unpack::<F>(b);
    let (sc, kc) = unpack::<F>(c);
    let sp = sa ^ sb ^ negate_product;
    let sc = sc ^ negate_addend;
    let inf_times_zero = matches!((ka, kb), (Kind::Inf, Kind::Zero) | (Kind::Zero, Kind::Inf));
    if matches!(ka, Kind::Nan { .. })
        || matches!(kb, Kind::Nan { .. })
        || matches!(kc, Kind::Nan { .. })
    {
        // RISC-V requires INVALID for inf * 0 even when the addend is a
        // quiet NaN (§20.6, last paragraph on fused multiply-add).
        if inf_times_zero {
            *flags |= flags::INVALID;
        }
        return nan_operand::<F>(&[ka, kb, kc], flags);
    }
    if inf_times_zero {
        return invalid::<F>(flags);
    }
    if matches!(ka, Kind::Inf) || matches!(kb, Kind::Inf) {
        return match kc {
            Kind::Inf if sc != sp => invalid::<F>(flags),
            _ => signed_inf::<F>(sp),
        };
    }
    if kc == Kind::Inf {
        return signed_inf::<F>(sc);
    }
    match (ka, kb) {
        (Kind::Finite { exp: ea, sig: ma }, Kind::Finite { exp: eb, sig: mb }) => {
            let ep = ea + eb;
            let mp = ma as u128 * mb as u128;
            match kc {
                Kind::Finite { exp: ec, sig: mc } => {
                    sum_round::<F>(sp, ep, mp, sc, ec, mc as u128, rm, flags)
                }
                _ => round_pack::<F>(sp, ep, mp, rm, flags),
            }
        }
        // The product is an exact zero.
        _ => match kc {
            Kind::Zero => signed_zero::<F>(if sp == sc { sp } else { zero_sum_sign(rm) }),
            _ => c ^ if negate_addend { F::SIGN } else { 0 },
        },
    }
}
