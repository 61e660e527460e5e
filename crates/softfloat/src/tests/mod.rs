//! Tests: differential tests against the host FPU (x86_64 only), a
//! round-to-nearest-max-magnitude property test, and hand-written tables
//! for the operations whose RISC-V semantics have no x86 counterpart.

#[cfg(target_arch = "x86_64")]
mod differential;
#[cfg(target_arch = "x86_64")]
mod host;
#[cfg(target_arch = "x86_64")]
mod rmm;

mod corner;
mod tables;

use crate::format::Format;
use crate::RoundingMode;

pub(crate) const RNE: RoundingMode = RoundingMode::NearestEven;
pub(crate) const RTZ: RoundingMode = RoundingMode::TowardZero;
pub(crate) const RDN: RoundingMode = RoundingMode::Down;
pub(crate) const RUP: RoundingMode = RoundingMode::Up;
pub(crate) const RMM: RoundingMode = RoundingMode::NearestMaxMagnitude;
pub(crate) const ALL_MODES: [RoundingMode; 5] = [RNE, RTZ, RDN, RUP, RMM];

/// xorshift64* — small, fast and deterministic for a fixed seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // Mix the seed so that nearby seeds give unrelated streams.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-enough value in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Value in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
}

/// A `bits`-wide bit pattern biased toward the shapes that exercise
/// rounding: all ones, a few set bits (exact ties), runs of ones/zeros.
pub(crate) fn pattern(rng: &mut Rng, bits: u32) -> u64 {
    let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let v = match rng.below(10) {
        0 => 0,
        1 => u64::MAX,
        2 => 1u64 << rng.below(bits as u64),
        // Few significant bits: products and sums of these are often ties.
        3 | 4 => {
            let keep = rng.below(8) + 1;
            let shift = rng.below(bits as u64);
            (rng.next_u64() >> (64 - keep)) << shift
        }
        // A run of ones at the top or bottom.
        5 => u64::MAX << rng.below(bits as u64),
        6 => u64::MAX >> rng.below(64),
        // Random with the low bits all ones or zeros.
        7 => rng.next_u64() | ((1u64 << rng.below(16)) - 1),
        8 => rng.next_u64() & (u64::MAX << rng.below(16)),
        _ => rng.next_u64(),
    };
    v & mask
}

/// Assembles a value from sign, biased exponent field and fraction.
pub(crate) fn make<F: Format>(negative: bool, biased: i64, frac: u64) -> u64 {
    let biased = biased.clamp(0, F::EXP_MAX as i64) as u64;
    (if negative { F::SIGN } else { 0 }) | (biased << F::FRAC_BITS) | (frac & F::FRAC_MASK)
}

pub(crate) fn biased_exp<F: Format>(x: u64) -> i64 {
    ((x >> F::FRAC_BITS) as i64) & F::EXP_MAX as i64
}

/// A random operand biased toward the hard cases: specials, NaNs (quiet
/// and signaling), subnormals, the edges of the exponent range, values
/// near one, and fully random bit patterns.
pub(crate) fn operand<F: Format>(rng: &mut Rng) -> u64 {
    let sign = rng.chance(50);
    let emax = F::EXP_MAX as i64;
    let frac = pattern(rng, F::FRAC_BITS);
    match rng.below(20) {
        0 => {
            let specials = [
                0,
                F::INF,
                F::MAX_FINITE,
                1,
                F::FRAC_MASK,
                F::FRAC_MASK + 1,
                (F::BIAS as u64) << F::FRAC_BITS,
            ];
            specials[rng.below(specials.len() as u64) as usize] | if sign { F::SIGN } else { 0 }
        }
        1 => {
            // NaN: signaling or quiet, random payload.
            let payload = (frac | 1) & (F::QUIET_BIT - 1);
            let quiet = if rng.chance(50) { F::QUIET_BIT } else { 0 };
            make::<F>(sign, emax, payload | quiet)
        }
        2..=4 => make::<F>(sign, 0, frac.max(1)),
        5 | 6 => make::<F>(sign, emax - 1 - rng.range(0, 3), frac),
        7 | 8 => make::<F>(sign, rng.range(1, 4), frac),
        9 | 10 => make::<F>(sign, F::BIAS as i64 + rng.range(-3, 3), frac),
        11 => rng.next_u64() & (F::SIGN | (F::SIGN - 1)),
        _ => make::<F>(sign, rng.range(0, emax - 1), frac),
    }
}

/// An operand close to `x`: neighbours in the last places, the same
/// significand at a nearby exponent, or its negation. Used to provoke
/// cancellation, ties and exact results.
pub(crate) fn related<F: Format>(rng: &mut Rng, x: u64) -> u64 {
    let sign = if rng.chance(50) { F::SIGN } else { 0 };
    let y = match rng.below(5) {
        0 => x,
        1 => x.wrapping_add(rng.below(4)),
        2 => x.wrapping_sub(rng.below(4)),
        3 => {
            let e =
                biased_exp::<F>(x) + rng.range(-(F::FRAC_BITS as i64) - 2, F::FRAC_BITS as i64 + 2);
            make::<F>(false, e.clamp(0, F::EXP_MAX as i64 - 1), x ^ pattern(rng, 3))
        }
        _ => {
            let e = biased_exp::<F>(x) + rng.range(-2, 2);
            make::<F>(false, e.clamp(0, F::EXP_MAX as i64 - 1), pattern(rng, F::FRAC_BITS))
        }
    };
    (y & (F::SIGN - 1)) | sign
}

/// A partner for `x` whose exponent puts `x * partner` (or, with
/// `subtract`, `x / partner`) near an edge of the range: overflow, the
/// smallest normal, the tininess-after-rounding band, the smallest
/// subnormal, or just below it.
pub(crate) fn scaled_partner<F: Format>(rng: &mut Rng, x: u64, subtract: bool) -> u64 {
    let ex = biased_exp::<F>(x).max(1) - F::BIAS as i64;
    let targets = [
        F::BIAS as i64,                           // overflow boundary
        F::EMIN as i64,                           // smallest normal
        F::EMIN as i64 - 1,                       // tininess-after-rounding band
        F::EMIN as i64 - F::FRAC_BITS as i64,     // smallest subnormal
        F::EMIN as i64 - F::FRAC_BITS as i64 - 1, // rounds to zero or min subnormal
        0,
    ];
    let t = targets[rng.below(targets.len() as u64) as usize] + rng.range(-2, 1);
    let e = if subtract { ex - t } else { t - ex };
    let biased = (e + F::BIAS as i64).clamp(0, F::EXP_MAX as i64 - 1);
    let frac =
        if biased == 0 { pattern(rng, F::FRAC_BITS).max(1) } else { pattern(rng, F::FRAC_BITS) };
    make::<F>(rng.chance(50), biased, frac)
}

pub(crate) fn flag_names(f: u8) -> String {
    let names = ["NX", "UF", "OF", "DZ", "NV"];
    let v: Vec<&str> = (0..5).filter(|i| f & (1 << i) != 0).map(|i| names[i]).collect();
    format!("[{}]", v.join(" "))
}
