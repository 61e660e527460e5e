//! Hand-written tables for the operations whose RISC-V semantics differ
//! from x86: compare (§20.8), FMIN/FMAX (§20.6, F version 2.2), FCLASS
//! (§20.9) and float-to-integer conversion (§20.7 table "Domains of
//! float-to-integer conversions and behavior for invalid inputs"). Each
//! table is written once over named values and run for both formats.

use super::{ALL_MODES, RDN, RMM, RNE, RTZ, RUP};
use crate::flags::{INEXACT as NX, INVALID as NV};
use crate::format::{Format, F32, F64};
use crate::RoundingMode;

/// Named operands, instantiated per format.
#[derive(Clone, Copy, Debug)]
enum V {
    PZero,
    NZero,
    One,
    NOne,
    Two,
    Half,
    NHalf,
    MinSub,
    NMinSub,
    MaxSub,
    MinNorm,
    Max,
    NMax,
    PInf,
    NInf,
    QNan,
    /// Negative quiet NaN with a payload.
    NQNan,
    SNan,
    NSNan,
}

impl V {
    fn bits<F: Format>(self) -> u64 {
        let one = (F::BIAS as u64) << F::FRAC_BITS;
        let half = ((F::BIAS - 1) as u64) << F::FRAC_BITS;
        match self {
            V::PZero => 0,
            V::NZero => F::SIGN,
            V::One => one,
            V::NOne => one | F::SIGN,
            V::Two => one + (1 << F::FRAC_BITS),
            V::Half => half,
            V::NHalf => half | F::SIGN,
            V::MinSub => 1,
            V::NMinSub => 1 | F::SIGN,
            V::MaxSub => F::FRAC_MASK,
            V::MinNorm => 1 << F::FRAC_BITS,
            V::Max => F::MAX_FINITE,
            V::NMax => F::MAX_FINITE | F::SIGN,
            V::PInf => F::INF,
            V::NInf => F::INF | F::SIGN,
            V::QNan => F::CANONICAL_NAN,
            V::NQNan => F::CANONICAL_NAN | F::SIGN | 5,
            V::SNan => F::INF | 1,
            V::NSNan => F::INF | F::SIGN | (F::QUIET_BIT >> 1),
        }
    }
}

/// The public entry points of one format, widened to `u64`.
trait Api: Format {
    fn eq(a: u64, b: u64, f: &mut u8) -> bool;
    fn lt(a: u64, b: u64, f: &mut u8) -> bool;
    fn le(a: u64, b: u64, f: &mut u8) -> bool;
    fn min(a: u64, b: u64, f: &mut u8) -> u64;
    fn max(a: u64, b: u64, f: &mut u8) -> u64;
    fn classify(a: u64) -> u64;
    fn to_i32(a: u64, rm: RoundingMode, f: &mut u8) -> i32;
    fn to_u32(a: u64, rm: RoundingMode, f: &mut u8) -> u32;
    fn to_i64(a: u64, rm: RoundingMode, f: &mut u8) -> i64;
    fn to_u64(a: u64, rm: RoundingMode, f: &mut u8) -> u64;
    /// Bits of a value given as f64 (exact for the values used here).
    fn from_f64(v: f64) -> u64;
}

macro_rules! api {
    ($fmt:ty, $t:ty, $p:ident) => {
        impl Api for $fmt {
            fn eq(a: u64, b: u64, f: &mut u8) -> bool {
                $p::eq(a as $t, b as $t, f)
            }
            fn lt(a: u64, b: u64, f: &mut u8) -> bool {
                $p::lt(a as $t, b as $t, f)
            }
            fn le(a: u64, b: u64, f: &mut u8) -> bool {
                $p::le(a as $t, b as $t, f)
            }
            fn min(a: u64, b: u64, f: &mut u8) -> u64 {
                $p::min(a as $t, b as $t, f).into()
            }
            fn max(a: u64, b: u64, f: &mut u8) -> u64 {
                $p::max(a as $t, b as $t, f).into()
            }
            fn classify(a: u64) -> u64 {
                $p::classify(a as $t)
            }
            fn to_i32(a: u64, rm: RoundingMode, f: &mut u8) -> i32 {
                $p::to_i32(a as $t, rm, f)
            }
            fn to_u32(a: u64, rm: RoundingMode, f: &mut u8) -> u32 {
                $p::to_u32(a as $t, rm, f)
            }
            fn to_i64(a: u64, rm: RoundingMode, f: &mut u8) -> i64 {
                $p::to_i64(a as $t, rm, f)
            }
            fn to_u64(a: u64, rm: RoundingMode, f: &mut u8) -> u64 {
                $p::to_u64(a as $t, rm, f)
            }
            fn from_f64(v: f64) -> u64 {
                let r = crate::f64_to_f32(v.to_bits(), RNE, &mut 0);
                if <$fmt as Format>::BITS == 32 {
                    r.into()
                } else {
                    v.to_bits()
                }
            }
        }
    };
}

/// Groups the public functions of each format under short names so the
/// `api!` macro can address them uniformly.
mod f32_api {
    pub use crate::{
        f32_classify as classify, f32_eq as eq, f32_le as le, f32_lt as lt, f32_max as max,
        f32_min as min, f32_to_i32 as to_i32, f32_to_i64 as to_i64, f32_to_u32 as to_u32,
        f32_to_u64 as to_u64,
    };
}
mod f64_api {
    pub use crate::{
        f64_classify as classify, f64_eq as eq, f64_le as le, f64_lt as lt, f64_max as max,
        f64_min as min, f64_to_i32 as to_i32, f64_to_i64 as to_i64, f64_to_u32 as to_u32,
        f64_to_u64 as to_u64,
    };
}
api!(F32, u32, f32_api);
api!(F64, u64, f64_api);

const T: bool = true;
const F: bool = false;

/// (a, b, a == b, a < b, a <= b, flags of FEQ, flags of FLT/FLE).
#[rustfmt::skip]
const COMPARE: &[(V, V, bool, bool, bool, u8, u8)] = &[
    (V::One, V::One, T, F, T, 0, 0),
    (V::One, V::Two, F, T, T, 0, 0),
    (V::Two, V::One, F, F, F, 0, 0),
    // Zeros compare equal regardless of sign.
    (V::PZero, V::NZero, T, F, T, 0, 0),
    (V::NZero, V::PZero, T, F, T, 0, 0),
    (V::NOne, V::PZero, F, T, T, 0, 0),
    (V::NOne, V::NHalf, F, T, T, 0, 0),
    (V::NHalf, V::NOne, F, F, F, 0, 0),
    (V::NMinSub, V::NZero, F, T, T, 0, 0),
    (V::MinSub, V::PZero, F, F, F, 0, 0),
    (V::MaxSub, V::MinNorm, F, T, T, 0, 0),
    (V::NMax, V::NInf, F, F, F, 0, 0),
    (V::NInf, V::NMax, F, T, T, 0, 0),
    (V::Max, V::PInf, F, T, T, 0, 0),
    (V::PInf, V::PInf, T, F, T, 0, 0),
    (V::NInf, V::PInf, F, T, T, 0, 0),
    // FEQ is quiet (INVALID only for signaling NaNs); FLT/FLE signal on
    // any NaN. The result is false whenever a NaN is involved (§20.8).
    (V::QNan, V::One, F, F, F, 0, NV),
    (V::One, V::NQNan, F, F, F, 0, NV),
    (V::QNan, V::QNan, F, F, F, 0, NV),
    (V::SNan, V::One, F, F, F, NV, NV),
    (V::One, V::NSNan, F, F, F, NV, NV),
    (V::SNan, V::SNan, F, F, F, NV, NV),
    (V::QNan, V::SNan, F, F, F, NV, NV),
];

fn compare_table<A: Api>() {
    for &(a, b, eq, lt, le, eq_flags, ord_flags) in COMPARE {
        let (x, y) = (a.bits::<A>(), b.bits::<A>());
        let mut f = 0;
        assert_eq!((A::eq(x, y, &mut f), f), (eq, eq_flags), "eq({a:?}, {b:?})");
        let mut f = 0;
        assert_eq!((A::lt(x, y, &mut f), f), (lt, ord_flags), "lt({a:?}, {b:?})");
        let mut f = 0;
        assert_eq!((A::le(x, y, &mut f), f), (le, ord_flags), "le({a:?}, {b:?})");
    }
}

#[test]
fn compare() {
    compare_table::<F32>();
    compare_table::<F64>();
}

/// (a, b, min, max, flags). `V::QNan` is the canonical NaN.
#[rustfmt::skip]
const MIN_MAX: &[(V, V, V, V, u8)] = &[
    (V::One, V::Two, V::One, V::Two, 0),
    (V::Two, V::One, V::One, V::Two, 0),
    (V::One, V::One, V::One, V::One, 0),
    // -0 is smaller than +0 for FMIN/FMAX only.
    (V::NZero, V::PZero, V::NZero, V::PZero, 0),
    (V::PZero, V::NZero, V::NZero, V::PZero, 0),
    (V::MinSub, V::NMinSub, V::NMinSub, V::MinSub, 0),
    (V::NOne, V::One, V::NOne, V::One, 0),
    (V::NInf, V::Max, V::NInf, V::Max, 0),
    (V::PInf, V::NMax, V::NMax, V::PInf, 0),
    // One NaN: the other operand, INVALID only if the NaN signals.
    (V::QNan, V::One, V::One, V::One, 0),
    (V::One, V::NQNan, V::One, V::One, 0),
    (V::NQNan, V::NInf, V::NInf, V::NInf, 0),
    (V::SNan, V::One, V::One, V::One, NV),
    (V::NZero, V::NSNan, V::NZero, V::NZero, NV),
    // Two NaNs: the canonical NaN, never a payload.
    (V::QNan, V::QNan, V::QNan, V::QNan, 0),
    (V::NQNan, V::NQNan, V::QNan, V::QNan, 0),
    (V::SNan, V::QNan, V::QNan, V::QNan, NV),
    (V::NSNan, V::SNan, V::QNan, V::QNan, NV),
];

fn min_max_table<A: Api>() {
    for &(a, b, min, max, flags) in MIN_MAX {
        let (x, y) = (a.bits::<A>(), b.bits::<A>());
        let mut f = 0;
        assert_eq!((A::min(x, y, &mut f), f), (min.bits::<A>(), flags), "min({a:?}, {b:?})");
        let mut f = 0;
        assert_eq!((A::max(x, y, &mut f), f), (max.bits::<A>(), flags), "max({a:?}, {b:?})");
    }
}

#[test]
fn min_max() {
    min_max_table::<F32>();
    min_max_table::<F64>();
}

/// FCLASS bit for each named value (§20.9 "Format of result of FCLASS").
#[rustfmt::skip]
const CLASSES: &[(V, u32)] = &[
    (V::NInf, 0), (V::NOne, 1), (V::NMax, 1), (V::NHalf, 1), (V::NMinSub, 2),
    (V::NZero, 3), (V::PZero, 4), (V::MinSub, 5), (V::MaxSub, 5), (V::One, 6),
    (V::Two, 6), (V::Half, 6), (V::MinNorm, 6), (V::Max, 6), (V::PInf, 7),
    (V::SNan, 8), (V::NSNan, 8), (V::QNan, 9), (V::NQNan, 9),
];

#[test]
fn classify() {
    for &(v, bit) in CLASSES {
        assert_eq!(F32::classify(v.bits::<F32>()), 1 << bit, "{v:?}");
        assert_eq!(F64::classify(v.bits::<F64>()), 1 << bit, "{v:?}");
    }
    // Every class is covered, and the mask never has more than one bit.
    let seen = CLASSES.iter().fold(0u64, |m, &(_, b)| m | 1 << b);
    assert_eq!(seen, 0x3ff);
    for bits in [0x8000_0001u32, 0x807f_ffff, 0x0080_0000, 0x7fff_ffff, 0xff80_0001] {
        assert_eq!(crate::f32_classify(bits).count_ones(), 1);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    W,
    WU,
    L,
    LU,
}

/// Converts with the destination's function, widening the result.
fn convert<A: Api>(dest: Dest, a: u64, rm: RoundingMode) -> (i128, u8) {
    let mut f = 0;
    let r = match dest {
        Dest::W => A::to_i32(a, rm, &mut f).into(),
        Dest::WU => A::to_u32(a, rm, &mut f).into(),
        Dest::L => A::to_i64(a, rm, &mut f).into(),
        Dest::LU => A::to_u64(a, rm, &mut f).into(),
    };
    (r, f)
}

const I32MIN: i128 = i32::MIN as i128;
const I32MAX: i128 = i32::MAX as i128;
const U32MAX: i128 = u32::MAX as i128;
const I64MIN: i128 = i64::MIN as i128;
const I64MAX: i128 = i64::MAX as i128;
const U64MAX: i128 = u64::MAX as i128;
const P31: f64 = 2_147_483_648.0;
const P32: f64 = 4_294_967_296.0;
const P63: f64 = 9_223_372_036_854_775_808.0;
const P64: f64 = 18_446_744_073_709_551_616.0;

/// (destination, input, formats it is exact in (32 = both, 64 = binary64
/// only), expected (value, flags) under RNE, RTZ, RDN, RUP, RMM).
type ToIntRow = (Dest, f64, u32, [(i128, u8); 5]);

#[rustfmt::skip]
const TO_INT: &[ToIntRow] = &[
    (Dest::W, 0.0, 32, [(0, 0); 5]),
    (Dest::W, -0.0, 32, [(0, 0); 5]),
    (Dest::W, 2.5, 32, [(2, NX), (2, NX), (2, NX), (3, NX), (3, NX)]),
    (Dest::W, -2.5, 32, [(-2, NX), (-2, NX), (-3, NX), (-2, NX), (-3, NX)]),
    (Dest::W, 0.25, 32, [(0, NX), (0, NX), (0, NX), (1, NX), (0, NX)]),
    (Dest::W, -0.75, 32, [(-1, NX), (0, NX), (-1, NX), (0, NX), (-1, NX)]),
    (Dest::W, -7.0, 32, [(-7, 0); 5]),
    // 2^31 is out of range: saturate with INVALID only.
    (Dest::W, P31, 32, [(I32MAX, NV); 5]),
    (Dest::W, -P31, 32, [(I32MIN, 0); 5]),
    (Dest::W, 2_147_483_520.0, 32, [(2_147_483_520, 0); 5]),
    (Dest::W, P31 - 1.0, 64, [(I32MAX, 0); 5]),
    // The range check applies to the rounded value.
    (Dest::W, P31 - 0.5, 64, [(I32MAX, NV), (I32MAX, NX), (I32MAX, NX), (I32MAX, NV), (I32MAX, NV)]),
    (Dest::W, -P31 - 0.5, 64, [(I32MIN, NX), (I32MIN, NX), (I32MIN, NV), (I32MIN, NX), (I32MIN, NV)]),
    (Dest::W, -P31 - 1.0, 64, [(I32MIN, NV); 5]),
    (Dest::W, 1e10, 32, [(I32MAX, NV); 5]),
    (Dest::W, -1e10, 32, [(I32MIN, NV); 5]),
    (Dest::WU, 0.5, 32, [(0, NX), (0, NX), (0, NX), (1, NX), (1, NX)]),
    (Dest::WU, 3e9, 32, [(3_000_000_000, 0); 5]),
    (Dest::WU, P32 - 1.0, 64, [(U32MAX, 0); 5]),
    (Dest::WU, P32 - 0.5, 64, [(U32MAX, NV), (U32MAX, NX), (U32MAX, NX), (U32MAX, NV), (U32MAX, NV)]),
    (Dest::WU, P32, 32, [(U32MAX, NV); 5]),
    // Negative inputs that round to zero are in range (and inexact);
    // those that round to -1 or below saturate to 0 with INVALID.
    (Dest::WU, -0.0, 32, [(0, 0); 5]),
    (Dest::WU, -0.5, 32, [(0, NX), (0, NX), (0, NV), (0, NX), (0, NV)]),
    (Dest::WU, -0.25, 32, [(0, NX), (0, NX), (0, NV), (0, NX), (0, NX)]),
    (Dest::WU, -1.0, 32, [(0, NV); 5]),
    (Dest::L, 1.5, 32, [(2, NX), (1, NX), (1, NX), (2, NX), (2, NX)]),
    (Dest::L, -1.5, 32, [(-2, NX), (-1, NX), (-2, NX), (-1, NX), (-2, NX)]),
    (Dest::L, P31, 32, [(1 << 31, 0); 5]),
    (Dest::L, -P63, 32, [(I64MIN, 0); 5]),
    (Dest::L, P63, 32, [(I64MAX, NV); 5]),
    (Dest::L, P63 - 1024.0, 64, [(i64::MAX as i128 - 1023, 0); 5]),
    (Dest::L, 9_223_371_487_098_961_920.0, 32, [(9_223_371_487_098_961_920, 0); 5]),
    (Dest::L, -P63 - 2048.0, 64, [(I64MIN, NV); 5]),
    (Dest::L, 1e19, 64, [(I64MAX, NV); 5]),
    (Dest::LU, P63, 32, [(1 << 63, 0); 5]),
    (Dest::LU, 1e19, 64, [(10_000_000_000_000_000_000, 0); 5]),
    (Dest::LU, P64 - 2048.0, 64, [(U64MAX - 2047, 0); 5]),
    (Dest::LU, 18_446_742_974_197_923_840.0, 32, [(18_446_742_974_197_923_840, 0); 5]),
    (Dest::LU, P64, 32, [(U64MAX, NV); 5]),
    (Dest::LU, -0.5, 32, [(0, NX), (0, NX), (0, NV), (0, NX), (0, NV)]),
    (Dest::LU, -1.0, 32, [(0, NV); 5]),
    (Dest::LU, -P64, 32, [(0, NV); 5]),
];

fn to_int_table<A: Api>() {
    for &(dest, v, exact_in, expected) in TO_INT {
        if exact_in > A::BITS {
            continue;
        }
        let a = A::from_f64(v);
        for (rm, want) in ALL_MODES.into_iter().zip(expected) {
            assert_eq!(
                convert::<A>(dest, a, rm),
                want,
                "{dest:?}({v}) in {rm:?}, binary{}",
                A::BITS
            );
        }
    }
}

/// Values every conversion handles the same way in every mode: the
/// "invalid input" rows of the §20.7 table.
fn to_int_specials<A: Api>() {
    for v in [V::QNan, V::NQNan, V::SNan, V::NSNan, V::PInf, V::NInf, V::Max, V::NMax] {
        let negative = matches!(v, V::NInf | V::NMax);
        for rm in ALL_MODES {
            for (dest, min, max) in [
                (Dest::W, I32MIN, I32MAX),
                (Dest::WU, 0, U32MAX),
                (Dest::L, I64MIN, I64MAX),
                (Dest::LU, 0, U64MAX),
            ] {
                // NaN of either sign and +inf give the maximum.
                let want = if negative { min } else { max };
                assert_eq!(
                    convert::<A>(dest, v.bits::<A>(), rm),
                    (want, NV),
                    "{dest:?}({v:?}) {rm:?}"
                );
            }
        }
    }
    // Tiny values: RUP/RDN move to ±1, the others give 0, always inexact.
    for (v, rdn, rup) in [(V::MinSub, 0, 1), (V::NMinSub, -1, 0)] {
        for (rm, want) in [(RNE, 0), (RTZ, 0), (RDN, rdn), (RUP, rup), (RMM, 0)] {
            assert_eq!(convert::<A>(Dest::L, v.bits::<A>(), rm), (want, NX), "{v:?} {rm:?}");
        }
    }
}

#[test]
fn float_to_int() {
    to_int_table::<F32>();
    to_int_table::<F64>();
    to_int_specials::<F32>();
    to_int_specials::<F64>();
}

#[test]
fn table_inputs_are_exact() {
    // Guards the tables themselves: every binary32 row must be exactly
    // representable.
    for &(_, v, exact_in, _) in TO_INT {
        if exact_in == 32 {
            let mut f = 0;
            let narrowed = crate::f64_to_f32(v.to_bits(), RNE, &mut f);
            assert_eq!(f, 0, "{v} is not exact in binary32");
            assert_eq!(crate::f32_to_f64(narrowed, &mut 0), v.to_bits());
        }
    }
}
