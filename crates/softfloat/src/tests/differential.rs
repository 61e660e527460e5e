//! Differential tests against the host FPU for every operation whose
//! x86 SSE/FMA3 semantics coincide with RISC-V in the four rounding modes
//! SSE supports. NaN results are compared after canonicalisation, since
//! x86 propagates payloads where RISC-V returns the canonical NaN.

use super::host;
use super::{flag_names, operand, related, scaled_partner, Rng, RDN, RNE, RTZ, RUP};
use crate::format::{is_nan, Format, F32, F64};
use crate::{arith, convert, flags, RoundingMode};
use std::fmt::Write as _;

/// Cases per operation per rounding mode.
const CASES: usize = 1_000_000;
const HOST_MODES: [RoundingMode; 4] = [RNE, RTZ, RDN, RUP];

enum Outcome {
    /// Agreement; carries the flags raised, for the coverage summary.
    Match(u8),
    Mismatch(String),
}

/// Runs `CASES` cases in each SSE rounding mode and fails with the first
/// few mismatches if any case disagrees with the host.
fn run(name: &str, seed: u64, mut case: impl FnMut(&mut Rng, RoundingMode) -> Outcome) {
    let mut rng = Rng::new(seed);
    let mut mismatches = 0usize;
    let mut report = String::new();
    // How often each flag was raised (NX, UF, OF, DZ, NV) and how many
    // results were exact: evidence that the generator reaches hard cases.
    let mut raised = [0usize; 5];
    let mut exact = 0usize;
    for rm in HOST_MODES {
        for _ in 0..CASES {
            match case(&mut rng, rm) {
                Outcome::Match(f) => {
                    exact += (f == 0) as usize;
                    for (bit, count) in raised.iter_mut().enumerate() {
                        *count += (f >> bit) as usize & 1;
                    }
                }
                Outcome::Mismatch(m) => {
                    mismatches += 1;
                    if mismatches <= 20 {
                        let _ = writeln!(report, "  {rm:?}: {m}");
                    }
                }
            }
        }
    }
    eprintln!(
        "differential {name}: {} cases, {mismatches} mismatches \
         (flag-free {exact}, NX {}, UF {}, OF {}, DZ {}, NV {})",
        CASES * HOST_MODES.len(),
        raised[0],
        raised[1],
        raised[2],
        raised[3],
        raised[4],
    );
    assert!(mismatches == 0, "{name}: {mismatches} mismatches\n{report}");
}

/// Compares a float result with the host's, canonicalising host NaNs.
fn compare<F: Format>(what: impl FnOnce() -> String, ours: (u64, u8), host: (u64, u8)) -> Outcome {
    let host_bits = if is_nan::<F>(host.0) { F::CANONICAL_NAN } else { host.0 };
    if ours == (host_bits, host.1) {
        Outcome::Match(ours.1)
    } else {
        Outcome::Mismatch(format!(
            "{}: ours {:#x} {} host {:#x} {}",
            what(),
            ours.0,
            flag_names(ours.1),
            host.0,
            flag_names(host.1)
        ))
    }
}

/// The host operations for one format, widened to `u64` bit patterns.
trait Host: Format {
    fn add(a: u64, b: u64, rm: RoundingMode) -> (u64, u8);
    fn sub(a: u64, b: u64, rm: RoundingMode) -> (u64, u8);
    fn mul(a: u64, b: u64, rm: RoundingMode) -> (u64, u8);
    fn div(a: u64, b: u64, rm: RoundingMode) -> (u64, u8);
    fn sqrt(a: u64, rm: RoundingMode) -> (u64, u8);
    fn fma(a: u64, b: u64, c: u64, np: bool, na: bool, rm: RoundingMode) -> (u64, u8);
}

macro_rules! widen {
    ($e:expr) => {{
        let (r, f) = $e;
        (r as u64, f)
    }};
}

impl Host for F32 {
    fn add(a: u64, b: u64, rm: RoundingMode) -> (u64, u8) {
        widen!(host::add32(a as u32, b as u32, rm))
    }
    fn sub(a: u64, b: u64, rm: RoundingMode) -> (u64, u8) {
        widen!(host::sub32(a as u32, b as u32, rm))
    }
    fn mul(a: u64, b: u64, rm: RoundingMode) -> (u64, u8) {
        widen!(host::mul32(a as u32, b as u32, rm))
    }
    fn div(a: u64, b: u64, rm: RoundingMode) -> (u64, u8) {
        widen!(host::div32(a as u32, b as u32, rm))
    }
    fn sqrt(a: u64, rm: RoundingMode) -> (u64, u8) {
        widen!(host::sqrt32(0, a as u32, rm))
    }
    fn fma(a: u64, b: u64, c: u64, np: bool, na: bool, rm: RoundingMode) -> (u64, u8) {
        widen!(host::fma32(a as u32, b as u32, c as u32, np, na, rm))
    }
}

impl Host for F64 {
    fn add(a: u64, b: u64, rm: RoundingMode) -> (u64, u8) {
        host::add64(a, b, rm)
    }
    fn sub(a: u64, b: u64, rm: RoundingMode) -> (u64, u8) {
        host::sub64(a, b, rm)
    }
    fn mul(a: u64, b: u64, rm: RoundingMode) -> (u64, u8) {
        host::mul64(a, b, rm)
    }
    fn div(a: u64, b: u64, rm: RoundingMode) -> (u64, u8) {
        host::div64(a, b, rm)
    }
    fn sqrt(a: u64, rm: RoundingMode) -> (u64, u8) {
        host::sqrt64(0, a, rm)
    }
    fn fma(a: u64, b: u64, c: u64, np: bool, na: bool, rm: RoundingMode) -> (u64, u8) {
        host::fma64(a, b, c, np, na, rm)
    }
}

fn with_flags(f: impl FnOnce(&mut u8) -> u64) -> (u64, u8) {
    let mut flags = 0;
    let r = f(&mut flags);
    (r, flags)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

fn binary_operands<F: Format>(rng: &mut Rng, op: Bin) -> (u64, u64) {
    let a = operand::<F>(rng);
    let b = match (op, rng.below(100)) {
        (Bin::Add | Bin::Sub, 0..=44) => related::<F>(rng, a),
        (Bin::Mul, 0..=34) => scaled_partner::<F>(rng, a, false),
        (Bin::Div, 0..=34) => scaled_partner::<F>(rng, a, true),
        (Bin::Mul | Bin::Div, 35..=49) => related::<F>(rng, a),
        _ => operand::<F>(rng),
    };
    if rng.chance(50) {
        (a, b)
    } else {
        (b, a)
    }
}

fn binary<F: Host>(name: &str, seed: u64, op: Bin) {
    run(name, seed, |rng, rm| {
        let (a, b) = binary_operands::<F>(rng, op);
        let ours = with_flags(|fl| match op {
            Bin::Add => arith::add::<F>(a, b, false, rm, fl),
            Bin::Sub => arith::add::<F>(a, b, true, rm, fl),
            Bin::Mul => arith::mul::<F>(a, b, rm, fl),
            Bin::Div => arith::div::<F>(a, b, rm, fl),
        });
        let theirs = match op {
            Bin::Add => F::add(a, b, rm),
            Bin::Sub => F::sub(a, b, rm),
            Bin::Mul => F::mul(a, b, rm),
            Bin::Div => F::div(a, b, rm),
        };
        compare::<F>(|| format!("{name}({a:#x}, {b:#x})"), ours, theirs)
    });
}

fn sqrt<F: Host>(name: &str, seed: u64) {
    run(name, seed, |rng, rm| {
        let mut a = operand::<F>(rng);
        if rng.chance(25) {
            // An exact square: a short significand squared.
            let x = operand::<F>(rng) & !((1u64 << (F::FRAC_BITS / 2)) - 1);
            a = arith::mul::<F>(x, x, RNE, &mut 0);
        }
        if rng.chance(80) {
            a &= !F::SIGN;
        }
        let ours = with_flags(|fl| arith::sqrt::<F>(a, rm, fl));
        compare::<F>(|| format!("{name}({a:#x})"), ours, F::sqrt(a, rm))
    });
}

fn inf_times_zero<F: Format>(a: u64, b: u64) -> bool {
    let (a, b) = (a & !F::SIGN, b & !F::SIGN);
    (a == F::INF && b == 0) || (a == 0 && b == F::INF)
}

fn mul_add<F: Host>(name: &str, seed: u64) {
    let mut overridden = 0usize;
    run(name, seed, |rng, rm| {
        let (a, b) = binary_operands::<F>(rng, Bin::Mul);
        let c = match rng.below(100) {
            // Near ±(a * b): heavy cancellation and exact zeros.
            0..=44 => {
                let p = arith::mul::<F>(a, b, RTZ, &mut 0);
                related::<F>(rng, p)
            }
            45..=59 => related::<F>(rng, a),
            _ => operand::<F>(rng),
        };
        let (np, na) = (rng.chance(50), rng.chance(50));
        let ours = with_flags(|fl| arith::mul_add::<F>(a, b, c, np, na, rm, fl));
        let mut theirs = F::fma(a, b, c, np, na, rm);
        if inf_times_zero::<F>(a, b) && is_nan::<F>(c) {
            // x86 leaves IE clear for inf * 0 + qNaN, which IEEE 754-2008
            // permits; RISC-V requires INVALID (§20.6, fused multiply-add).
            if theirs.1 & flags::INVALID == 0 {
                overridden += 1;
            }
            theirs.1 |= flags::INVALID;
        }
        compare::<F>(|| format!("{name}({a:#x}, {b:#x}, {c:#x}, np={np}, na={na})"), ours, theirs)
    });
    eprintln!("differential {name}: {overridden} cases of inf * 0 + qNaN expected INVALID where x86 raises none");
}

#[test]
fn f32_add() {
    binary::<F32>("f32_add", 1, Bin::Add);
}

#[test]
fn f32_sub() {
    binary::<F32>("f32_sub", 2, Bin::Sub);
}

#[test]
fn f32_mul() {
    binary::<F32>("f32_mul", 3, Bin::Mul);
}

#[test]
fn f32_div() {
    binary::<F32>("f32_div", 4, Bin::Div);
}

#[test]
fn f32_sqrt() {
    sqrt::<F32>("f32_sqrt", 5);
}

#[test]
fn f32_mul_add() {
    assert!(host::has_fma(), "host lacks FMA3");
    mul_add::<F32>("f32_mul_add", 6);
}

#[test]
fn f64_add() {
    binary::<F64>("f64_add", 11, Bin::Add);
}

#[test]
fn f64_sub() {
    binary::<F64>("f64_sub", 12, Bin::Sub);
}

#[test]
fn f64_mul() {
    binary::<F64>("f64_mul", 13, Bin::Mul);
}

#[test]
fn f64_div() {
    binary::<F64>("f64_div", 14, Bin::Div);
}

#[test]
fn f64_sqrt() {
    sqrt::<F64>("f64_sqrt", 15);
}

#[test]
fn f64_mul_add() {
    assert!(host::has_fma(), "host lacks FMA3");
    mul_add::<F64>("f64_mul_add", 16);
}

#[test]
fn f32_to_f64() {
    run("f32_to_f64", 21, |rng, _| {
        let a = operand::<F32>(rng);
        let ours = with_flags(|fl| crate::f32_to_f64(a as u32, fl));
        compare::<F64>(|| format!("f32_to_f64({a:#x})"), ours, host::cvt_f32_to_f64(0, a, RNE))
    });
}

#[test]
fn f64_to_f32() {
    run("f64_to_f32", 22, |rng, rm| {
        // Bias the exponent into and around binary32's range, including
        // its subnormals, and the low fraction bits toward ties.
        let mut a = operand::<F64>(rng);
        if rng.chance(70) {
            let e = 1023 + rng.range(-152, 130);
            a = (a & !(0x7ff << 52)) | ((e as u64) << 52);
        }
        let ours = with_flags(|fl| convert::convert::<F64, F32>(a, rm, fl));
        let (h, f) = host::cvt_f64_to_f32(0, a, rm);
        compare::<F32>(|| format!("f64_to_f32({a:#x})"), ours, (h as u32 as u64, f))
    });
}

/// A random integer of random width, often with few significant bits or
/// a tie pattern just below the binary32/binary64 precision.
fn integer(rng: &mut Rng) -> u64 {
    let width = rng.below(64) + 1;
    let v = super::pattern(rng, width as u32) | (1u64 << (width - 1));
    if rng.chance(10) {
        [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 31, (1 << 31) - 1][rng.below(7) as usize]
    } else {
        v
    }
}

fn from_int<F: Format>(
    name: &str,
    seed: u64,
    ours: impl Fn(u64, RoundingMode, &mut u8) -> u64,
    theirs: impl Fn(u64, RoundingMode) -> (u64, u8),
) {
    run(name, seed, |rng, rm| {
        let v = integer(rng);
        let v = if rng.chance(50) { v.wrapping_neg() } else { v };
        let mine = with_flags(|fl| ours(v, rm, fl));
        compare::<F>(|| format!("{name}({v:#x})"), mine, theirs(v, rm))
    });
}

#[test]
fn f32_from_int() {
    from_int::<F32>(
        "f32_from_i32",
        31,
        |v, rm, fl| crate::f32_from_i32(v as i32, rm, fl).into(),
        |v, rm| widen!(host::int_to_f32(v as i32 as i64, false, rm)),
    );
    // u32 is exactly representable as i64: use the 64-bit signed source.
    from_int::<F32>(
        "f32_from_u32",
        32,
        |v, rm, fl| crate::f32_from_u32(v as u32, rm, fl).into(),
        |v, rm| widen!(host::int_to_f32(v as u32 as i64, true, rm)),
    );
    from_int::<F32>(
        "f32_from_i64",
        33,
        |v, rm, fl| crate::f32_from_i64(v as i64, rm, fl).into(),
        |v, rm| widen!(host::int_to_f32(v as i64, true, rm)),
    );
    let avx512 = host::has_avx512f();
    from_int::<F32>(
        "f32_from_u64",
        34,
        |v, rm, fl| crate::f32_from_u64(v, rm, fl).into(),
        |v, rm| {
            if avx512 {
                widen!(host::u64_to_f32_avx512(v, rm))
            } else {
                widen!(host::u64_to_f32_sse(v, rm))
            }
        },
    );
}

#[test]
fn f64_from_int() {
    from_int::<F64>(
        "f64_from_i32",
        41,
        |v, rm, fl| crate::f64_from_i32(v as i32, rm, fl),
        |v, rm| host::int_to_f64(v as i32 as i64, false, rm),
    );
    from_int::<F64>(
        "f64_from_u32",
        42,
        |v, rm, fl| crate::f64_from_u32(v as u32, rm, fl),
        |v, rm| host::int_to_f64(v as u32 as i64, true, rm),
    );
    from_int::<F64>(
        "f64_from_i64",
        43,
        |v, rm, fl| crate::f64_from_i64(v as i64, rm, fl),
        |v, rm| host::int_to_f64(v as i64, true, rm),
    );
    let avx512 = host::has_avx512f();
    from_int::<F64>("f64_from_u64", 44, crate::f64_from_u64, |v, rm| {
        if avx512 {
            host::u64_to_f64_avx512(v, rm)
        } else {
            host::u64_to_f64_sse(v, rm)
        }
    });
}

/// Operands for float-to-integer conversion: mostly values of integer
/// magnitude, halfway cases, and the neighbourhood of ±2^31, ±2^32,
/// ±2^63 and ±2^64.
fn int_operand<F: Format>(rng: &mut Rng) -> u64 {
    let sign = rng.chance(50);
    let pattern = super::pattern(rng, F::FRAC_BITS);
    match rng.below(10) {
        0..=2 => operand::<F>(rng),
        3..=5 => {
            let k = [31i64, 32, 63, 64][rng.below(4) as usize];
            let edge = super::make::<F>(sign, F::BIAS as i64 + k, 0);
            let d = rng.below(5);
            if rng.chance(50) {
                edge + d
            } else {
                edge - d
            }
        }
        _ => super::make::<F>(sign, F::BIAS as i64 + rng.range(-3, 66), pattern),
    }
}

/// Float-to-integer conversion checked against `cvts*2si`/`vcvts*2usi`
/// where the two agree: in range, the host result and flags must match;
/// where the host reports invalid or the value lies outside the narrower
/// RISC-V range, RISC-V saturates per the §20.7 table with INVALID only.
fn to_int<F: Format>(
    name: &str,
    seed: u64,
    (min, max): (i128, i128),
    ours: impl Fn(u64, RoundingMode, &mut u8) -> i128,
    theirs: impl Fn(u64, RoundingMode) -> (i128, u8),
) {
    run(name, seed, |rng, rm| {
        let a = int_operand::<F>(rng);
        let mut fl = 0;
        let mine = (ours(a, rm, &mut fl), fl);
        let (h, hf) = theirs(a, rm);
        let expected = if hf & flags::INVALID == 0 && (min..=max).contains(&h) {
            (h, hf)
        } else {
            // Saturate per §20.7: NaN and positive out-of-range inputs
            // give the maximum, negative ones the minimum.
            let positive =
                is_nan::<F>(a) || if hf & flags::INVALID == 0 { h > max } else { a & F::SIGN == 0 };
            (if positive { max } else { min }, flags::INVALID)
        };
        if mine == expected {
            Outcome::Match(mine.1)
        } else {
            Outcome::Mismatch(format!(
                "{name}({a:#x}): ours {} {} expected {} {}",
                mine.0,
                flag_names(mine.1),
                expected.0,
                flag_names(expected.1)
            ))
        }
    });
}

fn host_signed<F: Format>(a: u64, rm: RoundingMode) -> (i128, u8) {
    let (r, f) = if F::BITS == 32 { host::f32_to_i64(a, rm) } else { host::f64_to_i64(a, rm) };
    (r.into(), f)
}

fn host_unsigned<F: Format>(a: u64, rm: RoundingMode) -> (i128, u8) {
    let (r, f) =
        if F::BITS == 32 { host::f32_to_u64_avx512(a, rm) } else { host::f64_to_u64_avx512(a, rm) };
    (i128::from(r as u64), f)
}

fn to_int_all<F: Format>(seed: u64, prefix: &str) {
    let i32_range = (i32::MIN.into(), i32::MAX.into());
    let u32_range = (0, u32::MAX.into());
    let i64_range = (i64::MIN.into(), i64::MAX.into());
    let u64_range = (0, u64::MAX.into());
    let ours = |min, max| move |a, rm, fl: &mut u8| convert::to_int::<F>(a, rm, fl, min, max);
    let name = |s: &str| format!("{prefix}_{s}");
    to_int::<F>(&name("to_i32"), seed, i32_range, ours(i32_range.0, i32_range.1), host_signed::<F>);
    to_int::<F>(
        &name("to_u32"),
        seed + 1,
        u32_range,
        ours(u32_range.0, u32_range.1),
        host_signed::<F>,
    );
    to_int::<F>(
        &name("to_i64"),
        seed + 2,
        i64_range,
        ours(i64_range.0, i64_range.1),
        host_signed::<F>,
    );
    if host::has_avx512f() {
        to_int::<F>(
            &name("to_u64"),
            seed + 3,
            u64_range,
            ours(u64_range.0, u64_range.1),
            host_unsigned::<F>,
        );
    } else {
        eprintln!("differential {prefix}_to_u64: skipped, host lacks AVX-512F");
    }
}

#[test]
fn f32_to_int() {
    to_int_all::<F32>(51, "f32");
}

#[test]
fn f64_to_int() {
    to_int_all::<F64>(61, "f64");
}
