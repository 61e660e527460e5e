//! Round to nearest, ties to max magnitude (RMM) has no SSE equivalent.
//!
//! Two kinds of checks: hand-verified ties, and the property "RMM equals
//! RNE (value and flags) unless the exact result lies exactly halfway
//! between two adjacent representable numbers, in which case RMM picks the
//! one of larger magnitude and RNE the even one". Whether an exact result
//! is a tie is decided independently of the code under test, using the
//! host FPU: binary32 results are recomputed exactly in binary64 (a
//! binary32 halfway point has 25 significant bits, so if the binary64
//! operation is inexact there is no tie), binary64 results via
//! error-free transformations (TwoSum, FMA-based product and division
//! residuals) in the exponent range where those are exact.

use super::host;
use super::{flag_names, operand, related, scaled_partner, Rng, RMM, RNE, RTZ};
use crate::format::{unpack, Format, Kind, F32, F64};
use crate::{arith, convert, flags, RoundingMode};

fn with_flags(f: impl Fn(&mut u8, RoundingMode) -> u64, rm: RoundingMode) -> (u64, u8) {
    let mut fl = 0;
    let r = f(&mut fl, rm);
    (r, fl)
}

// ---------------------------------------------------------------------
// Hand-verified cases.

#[test]
fn rmm_hand_verified_ties() {
    let mut fl = 0;
    // 1 + 2^-24 lies halfway between 1 and 1 + 2^-23 (binary32).
    assert_eq!(crate::f32_add(0x3f80_0000, 0x3380_0000, RMM, &mut fl), 0x3f80_0001);
    assert_eq!(fl, flags::INEXACT);
    assert_eq!(crate::f32_add(0x3f80_0000, 0x3380_0000, RNE, &mut 0), 0x3f80_0000);
    // Same magnitude, negative: away from zero is downwards.
    assert_eq!(crate::f32_sub(0xbf80_0000, 0x3380_0000, RMM, &mut 0), 0xbf80_0001);
    // (1 + 2^-23) + 2^-24: the tie's even neighbour is also the larger
    // one, so RNE and RMM agree.
    assert_eq!(crate::f32_add(0x3f80_0001, 0x3380_0000, RMM, &mut 0), 0x3f80_0002);
    assert_eq!(crate::f32_add(0x3f80_0001, 0x3380_0000, RNE, &mut 0), 0x3f80_0002);
    // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: a product tie.
    assert_eq!(crate::f32_mul(0x3f80_0800, 0x3f80_0800, RMM, &mut 0), 0x3f80_1001);
    assert_eq!(crate::f32_mul(0x3f80_0800, 0x3f80_0800, RNE, &mut 0), 0x3f80_1000);
    // FMA: 1 * 1 + 2^-24.
    let r = crate::f32_mul_add(0x3f80_0000, 0x3f80_0000, 0x3380_0000, false, false, RMM, &mut 0);
    assert_eq!(r, 0x3f80_0001);
    // binary64: 1 + 2^-53 and 2^53 + 1.
    assert_eq!(
        crate::f64_add(0x3ff0_0000_0000_0000, 0x3ca0_0000_0000_0000, RMM, &mut 0),
        0x3ff0_0000_0000_0001
    );
    assert_eq!(crate::f64_from_i64((1 << 53) + 1, RMM, &mut 0), 0x4340_0000_0000_0001);
    assert_eq!(crate::f64_from_i64((1 << 53) + 1, RNE, &mut 0), 0x4340_0000_0000_0000);
    assert_eq!(crate::f64_from_i64(-(1 << 53) - 1, RMM, &mut 0), 0xc340_0000_0000_0001);
    // 2^24 + 1 to binary32.
    assert_eq!(crate::f32_from_u32((1 << 24) + 1, RMM, &mut 0), 0x4b80_0001);
    assert_eq!(crate::f32_from_u32((1 << 24) + 1, RNE, &mut 0), 0x4b80_0000);
    // binary64 1 + 2^-24 narrowed to binary32.
    assert_eq!(crate::f64_to_f32(0x3ff0_0000_1000_0000, RMM, &mut 0), 0x3f80_0001);
    assert_eq!(crate::f64_to_f32(0x3ff0_0000_1000_0000, RNE, &mut 0), 0x3f80_0000);
    // Subnormal ties: 2^-1074 / 2 and 5 * 2^-1074 / 2.
    let mut fl = 0;
    assert_eq!(crate::f64_div(1, 0x4000_0000_0000_0000, RMM, &mut fl), 1);
    assert_eq!(fl, flags::UNDERFLOW | flags::INEXACT);
    let mut fl = 0;
    assert_eq!(crate::f64_div(1, 0x4000_0000_0000_0000, RNE, &mut fl), 0);
    assert_eq!(fl, flags::UNDERFLOW | flags::INEXACT);
    assert_eq!(crate::f64_div(5, 0x4000_0000_0000_0000, RMM, &mut 0), 3);
    assert_eq!(crate::f64_div(5, 0x4000_0000_0000_0000, RNE, &mut 0), 2);
    assert_eq!(crate::f32_mul(0x8000_0005, 0x3f00_0000, RMM, &mut 0), 0x8000_0003);
    // 2^-126 - 2^-151 lies above the midpoint between the largest
    // subnormal and 2^-126, so it rounds to 2^-126. Rounded to full
    // precision with unbounded exponent it is a tie that also goes to
    // 2^-126, so it is not tiny after rounding: no UNDERFLOW.
    let mut fl = 0;
    assert_eq!(crate::f64_to_f32(0x380f_ffff_f000_0000, RMM, &mut fl), 0x0080_0000);
    assert_eq!(fl, flags::INEXACT);
    // 2^-126 - 2^-150 is that midpoint: it still rounds up to 2^-126, but
    // it has 24 significant bits, stays below 2^-126 at full precision
    // and so is tiny: UNDERFLOW although the result is normal.
    for rm in [RNE, RMM] {
        let mut fl = 0;
        assert_eq!(crate::f64_to_f32(0x380f_ffff_e000_0000, rm, &mut fl), 0x0080_0000);
        assert_eq!(fl, flags::UNDERFLOW | flags::INEXACT);
    }
    // Overflow rounds to infinity.
    let mut fl = 0;
    assert_eq!(crate::f32_mul(0x7f7f_ffff, 0x4000_0000, RMM, &mut fl), 0x7f80_0000);
    assert_eq!(fl, flags::OVERFLOW | flags::INEXACT);
    // Float-to-integer: halves go away from zero.
    for (v, rmm, rne) in [(2.5f64, 3, 2), (-2.5, -3, -2), (0.5, 1, 0), (-0.5, -1, 0), (1.5, 2, 2)] {
        assert_eq!(crate::f64_to_i32(v.to_bits(), RMM, &mut 0), rmm, "{v}");
        assert_eq!(crate::f64_to_i32(v.to_bits(), RNE, &mut 0), rne, "{v}");
        assert_eq!(crate::f32_to_i64((v as f32).to_bits(), RMM, &mut 0), rmm.into(), "{v}");
    }
    // -0.5 to unsigned under RMM rounds to -1: out of range.
    let mut fl = 0;
    assert_eq!(crate::f64_to_u64((-0.5f64).to_bits(), RMM, &mut fl), 0);
    assert_eq!(fl, flags::INVALID);
}

// ---------------------------------------------------------------------
// Property test.

/// What an independent oracle says about the exact result.
#[derive(Clone, Copy, Debug)]
enum Tie {
    No,
    /// The neighbours, as (toward zero, away from zero) bit patterns.
    Yes(u64, u64),
    /// Outside the range where the oracle is exact.
    Unknown,
}

/// Checks one case: with `Tie::No`, RMM must equal RNE exactly;
/// otherwise RMM must give the neighbour away from zero and RNE the even
/// one. Returns whether the case was a tie.
fn check<F: Format>(
    what: &dyn Fn() -> String,
    op: &dyn Fn(&mut u8, RoundingMode) -> u64,
    tie: Tie,
) -> bool {
    let rne = with_flags(op, RNE);
    let rmm = with_flags(op, RMM);
    match tie {
        Tie::No => {
            assert_eq!(
                rmm,
                rne,
                "{}: RMM {:#x} {} differs from RNE {:#x} {} without a tie",
                what(),
                rmm.0,
                flag_names(rmm.1),
                rne.0,
                flag_names(rne.1)
            );
            false
        }
        Tie::Unknown => {
            // Only the shape can be checked: equal, or adjacent with RMM
            // the larger magnitude and RNE even.
            if rmm != rne {
                let (m, n) = (rmm.0 & !F::SIGN, rne.0 & !F::SIGN);
                assert!(m == n + 1 && n & 1 == 0, "{}: RMM {:#x} RNE {:#x}", what(), rmm.0, rne.0);
            }
            false
        }
        Tie::Yes(lo, hi) => {
            let even = if lo & 1 == 0 { lo } else { hi };
            assert_eq!(rmm.0, hi, "{}: RMM {:#x}, tie {lo:#x}/{hi:#x}", what(), rmm.0);
            assert_eq!(rne.0, even, "{}: RNE {:#x}, tie {lo:#x}/{hi:#x}", what(), rne.0);
            assert!(rmm.1 & flags::INEXACT != 0, "{}: tie not inexact", what());
            let overflowed = hi & !F::SIGN == F::INF;
            assert_eq!(rmm.1 & flags::OVERFLOW != 0, overflowed, "{}", what());
            true
        }
    }
}

/// Decides whether the binary64 value `x`, known to be the exact result,
/// is halfway between two adjacent binary32 numbers (subnormal spacing
/// included). The neighbour toward zero comes from the host's
/// round-toward-zero conversion.
fn f32_tie(x: u64) -> Tie {
    let (_, Kind::Finite { exp, sig }) = unpack::<F64>(x) else {
        return Tie::No;
    };
    let tz = sig.trailing_zeros();
    let (m, e) = (sig >> tz, exp + tz as i32);
    let top = e + (63 - m.leading_zeros()) as i32;
    if top > F32::BIAS {
        return Tie::No; // at or above 2^128: overflows in every mode
    }
    let ulp = top.max(F32::EMIN) - F32::FRAC_BITS as i32;
    // x / 2^(ulp-1) is an odd integer exactly when x is a tie.
    if e != ulp - 1 {
        return Tie::No;
    }
    let lo = host::cvt_f64_to_f32(0, x, RTZ).0 & 0xffff_ffff;
    Tie::Yes(lo, lo + 1)
}

/// The exact binary64 value of a host computation, if it was exact.
fn exact((bits, fl): (u64, u8)) -> Option<u64> {
    (fl & flags::INEXACT == 0).then_some(bits)
}

fn widen(a: u64) -> u64 {
    host::cvt_f32_to_f64(0, a, RNE).0
}

const CASES: usize = 300_000;

#[test]
fn rmm_property_f32() {
    assert!(host::has_fma(), "host lacks FMA3");
    let mut rng = Rng::new(71);
    let mut ties = [0usize; 8];
    for i in 0..CASES * 8 {
        let which = i % 8;
        let a = operand::<F32>(&mut rng);
        let b = match rng.below(3) {
            0 => related::<F32>(&mut rng, a),
            1 => scaled_partner::<F32>(&mut rng, a, which == 3),
            _ => operand::<F32>(&mut rng),
        };
        let c = if rng.chance(50) {
            related::<F32>(&mut rng, arith::mul::<F32>(a, b, RTZ, &mut 0))
        } else {
            operand::<F32>(&mut rng)
        };
        let (wa, wb, wc) = (widen(a), widen(b), widen(c));
        let what = || format!("f32 op {which} ({a:#x}, {b:#x}, {c:#x})");
        // An inexact binary64 result cannot be a binary32 tie.
        let tie = |r: Option<u64>| r.map_or(Tie::No, f32_tie);
        let hit = match which {
            0 => check::<F32>(
                &what,
                &|fl, rm| arith::add::<F32>(a, b, false, rm, fl),
                tie(exact(host::add64(wa, wb, RNE))),
            ),
            1 => check::<F32>(
                &what,
                &|fl, rm| arith::add::<F32>(a, b, true, rm, fl),
                tie(exact(host::sub64(wa, wb, RNE))),
            ),
            2 => check::<F32>(
                &what,
                &|fl, rm| arith::mul::<F32>(a, b, rm, fl),
                tie(exact(host::mul64(wa, wb, RNE))),
            ),
            3 => check::<F32>(
                &what,
                &|fl, rm| arith::div::<F32>(a, b, rm, fl),
                tie(exact(host::div64(wa, wb, RNE))),
            ),
            4 => check::<F32>(
                &what,
                &|fl, rm| arith::sqrt::<F32>(a, rm, fl),
                tie(exact(host::sqrt64(0, wa, RNE))),
            ),
            5 => {
                let (np, na) = (rng.chance(50), rng.chance(50));
                let host = exact(host::fma64(wa, wb, wc, np, na, RNE));
                check::<F32>(
                    &what,
                    &|fl, rm| arith::mul_add::<F32>(a, b, c, np, na, rm, fl),
                    tie(host),
                )
            }
            6 => {
                // Narrowing: the binary64 operand is itself the exact value.
                let x = (wa & !0xffff_ffff)
                    | (rng.next_u64() & 0xffff_ffff & (u64::MAX << rng.below(33)));
                check::<F32>(
                    &|| format!("f64_to_f32({x:#x})"),
                    &|fl, rm| convert::convert::<F64, F32>(x, rm, fl),
                    f32_tie(x),
                )
            }
            _ => {
                let v = (rng.next_u64() >> rng.below(40)) & (u64::MAX << rng.below(40));
                let v = if rng.chance(50) { v.wrapping_neg() } else { v };
                let x = exact(host::int_to_f64(v as i64, true, RNE));
                check::<F32>(
                    &|| format!("f32_from_i64({v:#x})"),
                    &|fl, rm| crate::f32_from_i64(v as i64, rm, fl).into(),
                    tie(x),
                )
            }
        };
        ties[which] += hit as usize;
    }
    eprintln!(
        "rmm property f32: {} cases, ties per op (add sub mul div sqrt fma narrow int) {ties:?}",
        CASES * 8
    );
    assert_eq!(ties[4], 0, "square roots are never ties");
    for (op, &n) in ties.iter().enumerate() {
        assert!(op == 4 || n > 100, "too few ties for op {op}: {n}");
    }
}

/// For a binary64 result `s` = RNE(exact) with exact rounding error `e`
/// (exact = s + e), the tie neighbours if s + 2e is exactly the adjacent
/// binary64 number.
fn f64_tie_from_error(s: f64, e: f64) -> Tie {
    if e == 0.0 {
        return Tie::No;
    }
    // If s + 2e is inexact it is not a binary64 number, let alone s's
    // neighbour.
    let (t, fl) = host::add64(s.to_bits(), (2.0 * e).to_bits(), RNE);
    if fl & flags::INEXACT != 0 || t.abs_diff(s.to_bits()) != 1 {
        return Tie::No;
    }
    ordered(s.to_bits(), t)
}

fn ordered(x: u64, y: u64) -> Tie {
    if x & !F64::SIGN < y & !F64::SIGN {
        Tie::Yes(x, y)
    } else {
        Tie::Yes(y, x)
    }
}

/// Whether error-free transformations are exact for these magnitudes.
fn safe(x: f64) -> bool {
    let m = x.abs();
    (2f64.powi(-900)..=2f64.powi(1000)).contains(&m)
}

fn fma(a: f64, b: f64, c: f64) -> (f64, u8) {
    let (r, fl) = host::fma64(a.to_bits(), b.to_bits(), c.to_bits(), false, false, RNE);
    (f64::from_bits(r), fl)
}

/// Tie oracle for binary64 a ± b via TwoSum (exact in round-to-nearest).
fn f64_sum_tie(a: f64, b: f64) -> Tie {
    if !(safe(a) && safe(b) && safe(a + b)) {
        return Tie::Unknown;
    }
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    f64_tie_from_error(s, e)
}

/// Tie oracle for a * b: the residual fma(a, b, -p) is exact.
fn f64_mul_tie(a: f64, b: f64) -> Tie {
    let p = a * b;
    if !safe(p) {
        return Tie::Unknown;
    }
    f64_tie_from_error(p, fma(a, b, -p).0)
}

/// Tie oracle for a / b: r = a - q*b is exact, and the exact quotient is
/// q + r/b, a tie when r = b * (n - q) / 2 for the neighbour n of q on
/// the side of r/b.
fn f64_div_tie(a: f64, b: f64) -> Tie {
    let q = a / b;
    if !(safe(a) && safe(b) && safe(q)) {
        return Tie::Unknown;
    }
    let (r, fl) = fma(-q, b, a);
    if fl & flags::INEXACT != 0 {
        return Tie::Unknown;
    }
    if r == 0.0 {
        return Tie::No;
    }
    let up = (r > 0.0) == (b > 0.0); // exact quotient above q
    let n = if up == (q > 0.0) {
        f64::from_bits(q.to_bits() + 1)
    } else {
        f64::from_bits(q.to_bits() - 1)
    };
    let h = (n - q) / 2.0;
    let (z, fl) = fma(h, b, -r);
    if z != 0.0 || fl & flags::INEXACT != 0 {
        return Tie::No;
    }
    ordered(q.to_bits(), n.to_bits())
}

/// Tie oracle for integer conversion: compare in exact integer arithmetic.
fn f64_int_tie(v: i128, toward_zero: u64) -> Tie {
    let lo = toward_zero;
    let hi = lo + 1;
    let (l, h) = (f64::from_bits(lo) as i128, f64::from_bits(hi) as i128);
    if l + h == 2 * v && l != v {
        Tie::Yes(lo, hi)
    } else {
        Tie::No
    }
}

#[test]
fn rmm_property_f64() {
    assert!(host::has_fma(), "host lacks FMA3");
    let mut rng = Rng::new(81);
    let mut ties = [0usize; 8];
    for i in 0..CASES * 8 {
        let which = i % 8;
        let a = operand::<F64>(&mut rng);
        let b = match rng.below(3) {
            0 => related::<F64>(&mut rng, a),
            1 => scaled_partner::<F64>(&mut rng, a, which == 3),
            _ => operand::<F64>(&mut rng),
        };
        let (fa, fb) = (f64::from_bits(a), f64::from_bits(b));
        let what = || format!("f64 op {which} ({a:#x}, {b:#x})");
        let hit = match which {
            0 => check::<F64>(
                &what,
                &|fl, rm| arith::add::<F64>(a, b, false, rm, fl),
                f64_sum_tie(fa, fb),
            ),
            1 => check::<F64>(
                &what,
                &|fl, rm| arith::add::<F64>(a, b, true, rm, fl),
                f64_sum_tie(fa, -fb),
            ),
            2 => {
                check::<F64>(&what, &|fl, rm| arith::mul::<F64>(a, b, rm, fl), f64_mul_tie(fa, fb))
            }
            3 => {
                check::<F64>(&what, &|fl, rm| arith::div::<F64>(a, b, rm, fl), f64_div_tie(fa, fb))
            }
            4 => check::<F64>(&what, &|fl, rm| arith::sqrt::<F64>(a, rm, fl), Tie::No),
            5 => {
                // No exact binary64 oracle for a fused multiply-add: check
                // the shape only.
                let p = arith::mul::<F64>(a, b, RTZ, &mut 0);
                let c = related::<F64>(&mut rng, p);
                let (np, na) = (rng.chance(50), rng.chance(50));
                check::<F64>(
                    &what,
                    &|fl, rm| arith::mul_add::<F64>(a, b, c, np, na, rm, fl),
                    Tie::Unknown,
                )
            }
            6 => {
                let v = (rng.next_u64() >> rng.below(11)) & (u64::MAX << rng.below(12));
                let lo = host::u64_to_f64_sse(v, RTZ).0;
                let tie = f64_int_tie(v.into(), lo);
                check::<F64>(
                    &|| format!("f64_from_u64({v:#x})"),
                    &|fl, rm| crate::f64_from_u64(v, rm, fl),
                    tie,
                )
            }
            _ => {
                let v = ((rng.next_u64() >> rng.below(11)) & (u64::MAX << rng.below(12))) as i64;
                let v = if rng.chance(50) { v.wrapping_neg() } else { v };
                let lo = host::int_to_f64(v, true, RTZ).0;
                let tie = f64_int_tie(v.into(), lo);
                check::<F64>(
                    &|| format!("f64_from_i64({v:#x})"),
                    &|fl, rm| crate::f64_from_i64(v, rm, fl),
                    tie,
                )
            }
        };
        ties[which] += hit as usize;
    }
    eprintln!(
        "rmm property f64: {} cases, ties per op (add sub mul div sqrt fma u64 i64) {ties:?}",
        CASES * 8
    );
    // Quotients and square roots of binary64 numbers are never ties in
    // the normal range (a tie needs p + 1 significant bits, and a * b or
    // r * r of such a value has more than p); subnormal quotient ties are
    // covered by the binary32 test and the hand-verified cases.
    for (op, &n) in ties.iter().enumerate() {
        assert!(matches!(op, 3..=5) || n > 100, "too few ties for op {op}: {n}");
    }
}
