//! Hand-written corner cases for arithmetic and format conversion, each
//! checked against values worked out from IEEE 754-2008 and the RISC-V
//! F/D chapters (not against the implementation).

use super::{ALL_MODES, RDN, RMM, RNE, RTZ, RUP};
use crate::flags::{
    DIV_BY_ZERO as DZ, INEXACT as NX, INVALID as NV, OVERFLOW as OF, UNDERFLOW as UF,
};
use crate::*;

const ONE32: u32 = 0x3f80_0000;
const TWO32: u32 = 0x4000_0000;
const INF32: u32 = 0x7f80_0000;
const MAX32: u32 = 0x7f7f_ffff;
const SNAN32: u32 = 0x7f80_0001;
const NEG32: u32 = 0x8000_0000;

const ONE64: u64 = 0x3ff0_0000_0000_0000;
const TWO64: u64 = 0x4000_0000_0000_0000;
const HALF64: u64 = 0x3fe0_0000_0000_0000;
const INF64: u64 = 0x7ff0_0000_0000_0000;
const MAX64: u64 = 0x7fef_ffff_ffff_ffff;
const SNAN64: u64 = 0x7ff0_0000_0000_0001;
const NEG64: u64 = 0x8000_0000_0000_0000;

/// Runs `f` with fresh flags and returns (result, flags).
fn fl<T>(f: impl FnOnce(&mut u8) -> T) -> (T, u8) {
    let mut flags = 0;
    let r = f(&mut flags);
    (r, flags)
}

#[test]
fn api_constants() {
    assert_eq!(RoundingMode::from_bits(0), Some(RNE));
    assert_eq!(RoundingMode::from_bits(1), Some(RTZ));
    assert_eq!(RoundingMode::from_bits(2), Some(RDN));
    assert_eq!(RoundingMode::from_bits(3), Some(RUP));
    assert_eq!(RoundingMode::from_bits(4), Some(RMM));
    for rm in 5..=255 {
        assert_eq!(RoundingMode::from_bits(rm), None);
    }
    assert_eq!(RMM as u8, 4);
    assert_eq!([NX, UF, OF, DZ, NV], [1, 2, 4, 8, 16]);
    assert_eq!(F32_CANONICAL_NAN, 0x7fc0_0000);
    assert_eq!(F64_CANONICAL_NAN, 0x7ff8_0000_0000_0000);
    assert!(f32_is_signaling_nan(SNAN32));
    assert!(f32_is_signaling_nan(0xffbf_ffff));
    assert!(!f32_is_signaling_nan(F32_CANONICAL_NAN));
    assert!(!f32_is_signaling_nan(INF32));
    assert!(f64_is_signaling_nan(SNAN64));
    assert!(!f64_is_signaling_nan(F64_CANONICAL_NAN | NEG64));
    assert!(!f64_is_signaling_nan(INF64));
}

#[test]
fn nan_results_are_canonical() {
    // Quiet NaN with a payload and a sign bit: result is the canonical
    // NaN and no flag is raised.
    let qnan32 = 0xffc1_2345;
    let qnan64 = 0xfff8_0000_dead_beef;
    for rm in ALL_MODES {
        assert_eq!(fl(|f| f32_add(qnan32, ONE32, rm, f)), (F32_CANONICAL_NAN, 0));
        assert_eq!(fl(|f| f32_mul(ONE32, qnan32, rm, f)), (F32_CANONICAL_NAN, 0));
        assert_eq!(fl(|f| f32_sqrt(qnan32, rm, f)), (F32_CANONICAL_NAN, 0));
        assert_eq!(fl(|f| f64_div(qnan64, ONE64, rm, f)), (F64_CANONICAL_NAN, 0));
        assert_eq!(fl(|f| f64_sub(ONE64, qnan64, rm, f)), (F64_CANONICAL_NAN, 0));
        let r = fl(|f| f64_mul_add(ONE64, ONE64, qnan64, true, true, rm, f));
        assert_eq!(r, (F64_CANONICAL_NAN, 0));
        // Signaling NaNs additionally raise INVALID.
        assert_eq!(fl(|f| f32_add(ONE32, SNAN32, rm, f)), (F32_CANONICAL_NAN, NV));
        assert_eq!(fl(|f| f32_mul(SNAN32, 0, rm, f)), (F32_CANONICAL_NAN, NV));
        assert_eq!(fl(|f| f64_sqrt(SNAN64 | NEG64, rm, f)), (F64_CANONICAL_NAN, NV));
        assert_eq!(fl(|f| f64_div(SNAN64, 0, rm, f)), (F64_CANONICAL_NAN, NV));
        let r = fl(|f| f32_mul_add(ONE32, SNAN32, ONE32, false, false, rm, f));
        assert_eq!(r, (F32_CANONICAL_NAN, NV));
    }
    // Conversions between formats canonicalise too.
    assert_eq!(fl(|f| f32_to_f64(qnan32, f)), (F64_CANONICAL_NAN, 0));
    assert_eq!(fl(|f| f32_to_f64(SNAN32, f)), (F64_CANONICAL_NAN, NV));
    assert_eq!(fl(|f| f64_to_f32(qnan64, RNE, f)), (F32_CANONICAL_NAN, 0));
    assert_eq!(fl(|f| f64_to_f32(SNAN64, RNE, f)), (F32_CANONICAL_NAN, NV));
    // A binary64 NaN whose payload lives only in the low bits stays a NaN.
    assert_eq!(fl(|f| f64_to_f32(0x7ff8_0000_0000_0001, RNE, f)), (F32_CANONICAL_NAN, 0));
}

#[test]
fn invalid_operations() {
    for rm in ALL_MODES {
        // inf - inf, inf + -inf.
        assert_eq!(fl(|f| f32_sub(INF32, INF32, rm, f)), (F32_CANONICAL_NAN, NV));
        assert_eq!(fl(|f| f64_add(INF64 | NEG64, INF64, rm, f)), (F64_CANONICAL_NAN, NV));
        assert_eq!(fl(|f| f64_add(INF64, INF64, rm, f)), (INF64, 0));
        // 0 * inf, 0 / 0, inf / inf.
        assert_eq!(fl(|f| f32_mul(NEG32, INF32, rm, f)), (F32_CANONICAL_NAN, NV));
        assert_eq!(fl(|f| f64_div(0, NEG64, rm, f)), (F64_CANONICAL_NAN, NV));
        assert_eq!(fl(|f| f32_div(INF32, INF32 | NEG32, rm, f)), (F32_CANONICAL_NAN, NV));
        // sqrt of a negative number (including -inf and -subnormal).
        assert_eq!(fl(|f| f32_sqrt(ONE32 | NEG32, rm, f)), (F32_CANONICAL_NAN, NV));
        assert_eq!(fl(|f| f64_sqrt(INF64 | NEG64, rm, f)), (F64_CANONICAL_NAN, NV));
        assert_eq!(fl(|f| f64_sqrt(NEG64 | 1, rm, f)), (F64_CANONICAL_NAN, NV));
        // fma: inf * 0 + qNaN raises INVALID on RISC-V (§20.6).
        for (np, na) in [(false, false), (false, true), (true, false), (true, true)] {
            let r = fl(|f| f32_mul_add(0, INF32, F32_CANONICAL_NAN, np, na, rm, f));
            assert_eq!(r, (F32_CANONICAL_NAN, NV));
            let r = fl(|f| f64_mul_add(INF64 | NEG64, 0, F64_CANONICAL_NAN, np, na, rm, f));
            assert_eq!(r, (F64_CANONICAL_NAN, NV));
            // A NaN multiplicand with a zero is just a quiet NaN.
            let r = fl(|f| f64_mul_add(F64_CANONICAL_NAN, 0, INF64, np, na, rm, f));
            assert_eq!(r, (F64_CANONICAL_NAN, 0));
        }
        // fma: inf * 1 - inf.
        let r = fl(|f| f64_mul_add(INF64, ONE64, INF64, false, true, rm, f));
        assert_eq!(r, (F64_CANONICAL_NAN, NV));
        let r = fl(|f| f64_mul_add(INF64, ONE64, INF64, false, false, rm, f));
        assert_eq!(r, (INF64, 0));
    }
}

#[test]
fn division_by_zero() {
    for rm in ALL_MODES {
        assert_eq!(fl(|f| f32_div(ONE32, 0, rm, f)), (INF32, DZ));
        assert_eq!(fl(|f| f32_div(ONE32, NEG32, rm, f)), (INF32 | NEG32, DZ));
        assert_eq!(fl(|f| f64_div(ONE64 | NEG64, 0, rm, f)), (INF64 | NEG64, DZ));
        assert_eq!(fl(|f| f64_div(1, NEG64, rm, f)), (INF64 | NEG64, DZ));
        // inf / 0 is an exact infinity; 0 / x and x / inf are exact zeros.
        assert_eq!(fl(|f| f64_div(INF64, 0, rm, f)), (INF64, 0));
        assert_eq!(fl(|f| f32_div(NEG32, ONE32, rm, f)), (NEG32, 0));
        assert_eq!(fl(|f| f32_div(ONE32, INF32 | NEG32, rm, f)), (NEG32, 0));
    }
}

#[test]
fn square_root_specials() {
    for rm in ALL_MODES {
        // sqrt(-0) = -0 (IEEE 754-2008 §5.4.1), no flags.
        assert_eq!(fl(|f| f32_sqrt(NEG32, rm, f)), (NEG32, 0));
        assert_eq!(fl(|f| f64_sqrt(NEG64, rm, f)), (NEG64, 0));
        assert_eq!(fl(|f| f64_sqrt(0, rm, f)), (0, 0));
        assert_eq!(fl(|f| f64_sqrt(INF64, rm, f)), (INF64, 0));
        assert_eq!(fl(|f| f64_sqrt(0x4010_0000_0000_0000, rm, f)), (TWO64, 0));
        // sqrt(2^-1074) = 2^-537, exact.
        assert_eq!(fl(|f| f64_sqrt(1, rm, f)), (0x1e60_0000_0000_0000, 0));
    }
    // sqrt(2) = 1.0110101000001001111001...: RNE/RUP/RMM round up,
    // RTZ/RDN truncate to 0x3fb504f3.
    assert_eq!(fl(|f| f32_sqrt(TWO32, RNE, f)), (0x3fb5_04f3, NX));
    assert_eq!(fl(|f| f32_sqrt(TWO32, RTZ, f)), (0x3fb5_04f3, NX));
    assert_eq!(fl(|f| f32_sqrt(TWO32, RUP, f)), (0x3fb5_04f4, NX));
    assert_eq!(fl(|f| f64_sqrt(TWO64, RNE, f)), (0x3ff6_a09e_667f_3bcd, NX));
    assert_eq!(fl(|f| f64_sqrt(TWO64, RDN, f)), (0x3ff6_a09e_667f_3bcc, NX));
}

#[test]
fn signed_zero_sums() {
    for rm in ALL_MODES {
        let neg = rm == RDN;
        let z32 = if neg { NEG32 } else { 0 };
        let z64 = if neg { NEG64 } else { 0 };
        // x - x is +0, except -0 under round-down (IEEE 754-2008 §6.3).
        assert_eq!(fl(|f| f32_sub(ONE32, ONE32, rm, f)), (z32, 0));
        assert_eq!(fl(|f| f64_add(MAX64, MAX64 | NEG64, rm, f)), (z64, 0));
        assert_eq!(fl(|f| f64_sub(1, 1, rm, f)), (z64, 0));
        // +0 + -0 likewise; equal signs keep their sign in every mode.
        assert_eq!(fl(|f| f32_add(0, NEG32, rm, f)), (z32, 0));
        assert_eq!(fl(|f| f32_add(NEG32, NEG32, rm, f)), (NEG32, 0));
        assert_eq!(fl(|f| f64_sub(NEG64, 0, rm, f)), (NEG64, 0));
        assert_eq!(fl(|f| f64_sub(0, NEG64, rm, f)), (0, 0));
        // x + 0 is x exactly, even for subnormals.
        assert_eq!(fl(|f| f64_add(NEG64 | 1, 0, rm, f)), (NEG64 | 1, 0));
        // Products: sign is the XOR of the operand signs.
        assert_eq!(fl(|f| f32_mul(NEG32, TWO32, rm, f)), (NEG32, 0));
        assert_eq!(fl(|f| f64_mul(NEG64, NEG64 | ONE64, rm, f)), (0, 0));
        // fma with an exactly cancelling product: ±(1 * 1) ∓ 1.
        assert_eq!(fl(|f| f64_mul_add(ONE64, ONE64, ONE64, false, true, rm, f)), (z64, 0));
        // FNMADD is (-(a * b)) - c: -(1 * 1) - (-1) = +0 (-0 under RDN),
        // whereas negating the sum would give -(1 + -1) = -0.
        let r = fl(|f| f64_mul_add(ONE64, ONE64, ONE64 | NEG64, true, true, rm, f));
        assert_eq!(r, (z64, 0));
        let r = fl(|f| f32_mul_add(ONE32, ONE32, ONE32 | NEG32, true, true, rm, f));
        assert_eq!(r, (z32, 0));
        // A zero product plus a zero addend: (-0) + (-0) = -0 in every
        // mode; (+0) + (-0) follows the round-down rule.
        let r = fl(|f| f64_mul_add(0, ONE64, 0, true, true, rm, f));
        assert_eq!(r, (NEG64, 0));
        let r = fl(|f| f64_mul_add(0, ONE64, 0, false, true, rm, f));
        assert_eq!(r, (z64, 0));
        let r = fl(|f| f32_mul_add(NEG32, ONE32, 0, false, false, rm, f));
        assert_eq!(r, (z32, 0));
        // A zero product plus a nonzero addend is the addend, exactly.
        let r = fl(|f| f32_mul_add(0, INF32 - 1, 1, true, true, rm, f));
        assert_eq!(r, (NEG32 | 1, 0));
    }
    // A nonzero sum that rounds to zero keeps the sign of the exact sum:
    // fma(2^-1074, 2^-1, -0) = -(2^-1075) rounds to -0 under RTZ.
    let r = fl(|f| f64_mul_add(1, HALF64, 0, true, false, RTZ, f));
    assert_eq!(r, (NEG64, UF | NX));
}

#[test]
fn overflow_follows_rounding_mode() {
    // MAX * 2: RNE and RMM give inf, RTZ gives MAX, directed modes
    // depend on the sign (IEEE 754-2008 §7.4).
    let cases32 = [
        (RNE, INF32, INF32),
        (RMM, INF32, INF32),
        (RTZ, MAX32, MAX32),
        (RDN, MAX32, INF32),
        (RUP, INF32, MAX32),
    ];
    for (rm, pos, neg) in cases32 {
        assert_eq!(fl(|f| f32_mul(MAX32, TWO32, rm, f)), (pos, OF | NX), "{rm:?}");
        assert_eq!(fl(|f| f32_mul(MAX32 | NEG32, TWO32, rm, f)), (neg | NEG32, OF | NX), "{rm:?}");
    }
    let cases64 = [(RNE, INF64), (RMM, INF64), (RTZ, MAX64), (RDN, MAX64), (RUP, INF64)];
    for (rm, pos) in cases64 {
        assert_eq!(fl(|f| f64_add(MAX64, MAX64, rm, f)), (pos, OF | NX), "{rm:?}");
    }
    // binary64 -> binary32 overflow.
    assert_eq!(fl(|f| f64_to_f32(MAX64, RNE, f)), (INF32, OF | NX));
    assert_eq!(fl(|f| f64_to_f32(MAX64 | NEG64, RUP, f)), (MAX32 | NEG32, OF | NX));
    // MAX + 2^103 (half an ulp) is a tie whose even neighbour is 2^128,
    // so RNE overflows; just below half an ulp the result stays MAX,
    // inexact only.
    assert_eq!(fl(|f| f32_add(MAX32, 0x7300_0000, RNE, f)), (INF32, OF | NX));
    assert_eq!(fl(|f| f32_add(MAX32, 0x72ff_ffff, RNE, f)), (MAX32, NX));
    // Exactly representable large results raise nothing.
    assert_eq!(fl(|f| f64_mul(0x7fd0_0000_0000_0000, TWO64, RNE, f)), (0x7fe0_0000_0000_0000, 0));
}

#[test]
fn underflow_and_tininess() {
    // 2^-1074 * 0.5: tiny and inexact.
    let half_min = |rm, sign| fl(|f| f64_mul(1 | sign, HALF64, rm, f));
    assert_eq!(half_min(RNE, 0), (0, UF | NX));
    assert_eq!(half_min(RTZ, 0), (0, UF | NX));
    assert_eq!(half_min(RUP, 0), (1, UF | NX));
    assert_eq!(half_min(RDN, NEG64), (NEG64 | 1, UF | NX));
    assert_eq!(half_min(RUP, NEG64), (NEG64, UF | NX));
    // Exact subnormal results are not underflows.
    assert_eq!(fl(|f| f64_mul(2, HALF64, RNE, f)), (1, 0));
    assert_eq!(fl(|f| f32_sub(0x0080_0000, 1, RNE, f)), (0x007f_ffff, 0));
    // (1 - 2^-53) * 2^-1022 = 2^-1022 - 2^-1075: halfway between the
    // largest subnormal and 2^-1022. It has 53 significant bits, so with
    // unbounded exponent it stays below 2^-1022: tiny after rounding,
    // even when the delivered result is the smallest normal.
    let a = 0x3fef_ffff_ffff_ffff;
    let min_normal = 0x0010_0000_0000_0000;
    assert_eq!(fl(|f| f64_mul(a, min_normal, RNE, f)), (min_normal, UF | NX));
    assert_eq!(fl(|f| f64_mul(a, min_normal, RUP, f)), (min_normal, UF | NX));
    assert_eq!(fl(|f| f64_mul(a, min_normal, RTZ, f)), (min_normal - 1, UF | NX));
    // 2^-126 - 2^-151 rounds to 2^-126 at full precision as well: not
    // tiny after rounding, so only INEXACT (tiny before rounding would
    // have raised UNDERFLOW).
    assert_eq!(fl(|f| f64_to_f32(0x380f_ffff_f000_0000, RNE, f)), (0x0080_0000, NX));
    assert_eq!(fl(|f| f64_to_f32(0x380f_ffff_f000_0000, RUP, f)), (0x0080_0000, NX));
    assert_eq!(fl(|f| f64_to_f32(0x380f_ffff_f000_0000, RTZ, f)), (0x007f_ffff, UF | NX));
    // Subnormal binary32 widens exactly.
    assert_eq!(fl(|f| f32_to_f64(1, f)), (0x36a0_0000_0000_0000, 0));
    assert_eq!(fl(|f| f32_to_f64(NEG32 | 0x007f_ffff, f)), (0xb80f_ffff_c000_0000, 0));
}

#[test]
fn integer_to_float() {
    for rm in ALL_MODES {
        assert_eq!(fl(|f| f32_from_i32(0, rm, f)), (0, 0));
        assert_eq!(fl(|f| f64_from_u64(0, rm, f)), (0, 0));
        assert_eq!(fl(|f| f32_from_i32(i32::MIN, rm, f)), (0xcf00_0000, 0));
        assert_eq!(fl(|f| f64_from_i64(i64::MIN, rm, f)), (0xc3e0_0000_0000_0000, 0));
        assert_eq!(fl(|f| f64_from_u32(u32::MAX, rm, f)), (0x41ef_ffff_ffe0_0000, 0));
        assert_eq!(fl(|f| f64_from_i32(-1, rm, f)), (ONE64 | NEG64, 0));
    }
    // u64::MAX = 2^64 - 1.
    assert_eq!(fl(|f| f32_from_u64(u64::MAX, RNE, f)), (0x5f80_0000, NX));
    assert_eq!(fl(|f| f32_from_u64(u64::MAX, RTZ, f)), (0x5f7f_ffff, NX));
    assert_eq!(fl(|f| f64_from_u64(u64::MAX, RDN, f)), (0x43ef_ffff_ffff_ffff, NX));
    assert_eq!(fl(|f| f64_from_u64(u64::MAX, RUP, f)), (0x43f0_0000_0000_0000, NX));
    // i32::MAX to binary32: 2^31 - 1 needs 31 bits.
    assert_eq!(fl(|f| f32_from_i32(i32::MAX, RNE, f)), (0x4f00_0000, NX));
    assert_eq!(fl(|f| f32_from_i32(i32::MAX, RTZ, f)), (0x4eff_ffff, NX));
    assert_eq!(fl(|f| f32_from_i32(-i32::MAX, RDN, f)), (0xcf00_0000, NX));
}
