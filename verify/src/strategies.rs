//! Test data: rand-based fills in the distributions docs/NUMERICS.md asks
//! the conformance tests to cover ("Hardware conformance tests", item 5:
//! normal, wide exponent range, subnormal inputs, overflow, heavy
//! cancellation), plus specials and small integers, and proptest strategies
//! for single bf16 patterns.
//!
//! Random data alone rarely hits the cases that break kernels (a NaN with a
//! payload, a subnormal, a product just below 2^-126, a +M/-M pair that
//! swamps), so every distribution here is biased toward one such family.
//! Small integers are the exception: their sums are exact in any order, so
//! they check the reference itself against plain integer arithmetic (the
//! benchdnn trick, docs/STYLE.md habit 4).

use crate::bf16::{f32_to_bf16, BF16_SIGN};
#[cfg(any(test, feature = "proptest"))]
use proptest::prelude::*;
use rand::Rng;

/// Interesting bf16 patterns: signed zeros and infinities, quiet and
/// signaling NaNs of both signs with payloads, subnormals (smallest,
/// largest), the smallest normal, the largest finite, and ones.
pub const BF16_SPECIALS: [u16; 24] = [
    0x0000, 0x8000, // +-0
    0x7F80, 0xFF80, // +-inf
    0x7FC0, 0xFFC0, // default-like quiet NaNs
    0x7FC1, 0xFFE5, // quiet NaNs with payload
    0x7F81, 0xFF81, // signaling NaNs, payload 1
    0x7FBF, 0xFFA5, // signaling NaNs, other payloads
    0x0001, 0x8001, // smallest subnormals
    0x007F, 0x807F, // largest subnormals
    0x0080, 0x8080, // smallest normals (2^-126)
    0x7F7F, 0xFF7F, // largest finite
    0x3F80, 0xBF80, // +-1
    0x0100, 0x7F00, // 2^-125, 2^127
];

/// f32 patterns worth having in C besides the widened bf16 specials: NaNs
/// whose payload lives only in the low 16 bits (no bf16 can make them),
/// f32 subnormals and the f32 extremes.
pub const F32_SPECIALS: [u32; 10] = [
    0x7F80_0001, // sNaN, low payload
    0xFF80_1234, // negative sNaN, low payload
    0x7FC0_0001, // qNaN, low payload
    0x0000_0001, // smallest subnormal
    0x807F_FFFF, // largest negative subnormal
    0x0080_0000, // 2^-126
    0x7F7F_FFFF, // f32::MAX
    0xFF7F_FFFF, // f32::MIN
    0x8000_0000, // -0
    0xFFC0_0000, // the default NaN
];

/// Distributions of bf16 test data (see [`fill_bf16`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bf16Dist {
    /// Standard normal N(0, 1), rounded with [`f32_to_bf16`].
    Normal,
    /// Random sign and mantissa, exponent uniform in 2^-63 .. 2^63: products
    /// span 2^-126 .. 2^127, so underflow, FTZ and swamping all occur.
    WideExponent,
    /// Subnormal inputs (DAZ), tiny normals, values near 2^-63 whose
    /// products land around the 2^-126 FTZ threshold, and signed zeros.
    Subnormal,
    /// Half [`BF16_SPECIALS`] plus random NaNs and subnormals, half normal.
    Specials,
    /// Large powers of two (+-M with a few M) among N(0, 1) values: exact
    /// +M/-M cancellation and swamping of small terms, the FPRev pattern
    /// that exposes the order of operations (docs/NUMERICS.md).
    Cancellation,
    /// Magnitudes 2^63 .. 2^128 among normal values: products and sums
    /// overflow to infinity, and opposite infinities meet (inf - inf).
    Overflow,
    /// Integers in -8 ..= 8: exact, and every partial sum of a realistic
    /// dot product is exact, so any summation order gives the same bits.
    SmallInt,
}

impl Bf16Dist {
    /// Every distribution, for loops in tests.
    pub const ALL: [Bf16Dist; 7] = [
        Bf16Dist::Normal,
        Bf16Dist::WideExponent,
        Bf16Dist::Subnormal,
        Bf16Dist::Specials,
        Bf16Dist::Cancellation,
        Bf16Dist::Overflow,
        Bf16Dist::SmallInt,
    ];
}

/// A standard normal sample by Box-Muller (rand 0.9 has no normal
/// distribution without rand_distr, and the exact shape does not matter).
pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1], so ln is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A bf16 pattern with the given sign, biased exponent field (0..=255) and
/// 7-bit fraction.
fn bf16_parts(negative: bool, exponent: u16, fraction: u16) -> u16 {
    debug_assert!(exponent <= 0xFF && fraction <= 0x7F);
    (if negative { BF16_SIGN } else { 0 }) | (exponent << 7) | fraction
}

fn random_sign<R: Rng + ?Sized>(rng: &mut R) -> bool {
    rng.random_bool(0.5)
}

fn normal_bf16<R: Rng + ?Sized>(rng: &mut R) -> u16 {
    f32_to_bf16(standard_normal(rng) as f32)
}

fn small_int_bf16<R: Rng + ?Sized>(rng: &mut R) -> u16 {
    f32_to_bf16(rng.random_range(-8i32..=8) as f32)
}

/// A random NaN (quiet or signaling, either sign, random payload).
fn random_nan_bf16<R: Rng + ?Sized>(rng: &mut R) -> u16 {
    let fraction = rng.random_range(1u16..=0x7F);
    bf16_parts(random_sign(rng), 0xFF, fraction)
}

fn random_subnormal_bf16<R: Rng + ?Sized>(rng: &mut R) -> u16 {
    bf16_parts(random_sign(rng), 0, rng.random_range(1u16..=0x7F))
}

/// One sample of `dist`.
pub fn random_bf16<R: Rng + ?Sized>(dist: Bf16Dist, rng: &mut R) -> u16 {
    match dist {
        Bf16Dist::Normal => normal_bf16(rng),
        Bf16Dist::WideExponent => {
            let exponent = rng.random_range(127 - 63..=127 + 63);
            bf16_parts(random_sign(rng), exponent, rng.random_range(0..=0x7F))
        }
        Bf16Dist::Subnormal => {
            let sign = random_sign(rng);
            match rng.random_range(0..100) {
                0..35 => random_subnormal_bf16(rng),
                35..60 => bf16_parts(sign, rng.random_range(1..=16), rng.random_range(0..=0x7F)),
                60..85 => bf16_parts(sign, rng.random_range(56..=72), rng.random_range(0..=0x7F)),
                _ => bf16_parts(sign, 0, 0),
            }
        }
        Bf16Dist::Specials => match rng.random_range(0..100) {
            0..40 => BF16_SPECIALS[rng.random_range(0..BF16_SPECIALS.len())],
            40..45 => random_nan_bf16(rng),
            45..50 => random_subnormal_bf16(rng),
            _ => normal_bf16(rng),
        },
        Bf16Dist::Cancellation => {
            if rng.random_bool(0.3) {
                let exponent = [8u16, 12, 16, 24][rng.random_range(0..4)];
                let fraction = [0u16, 0x40][rng.random_range(0..2)]; // 1.0 or 1.5
                bf16_parts(random_sign(rng), 127 + exponent, fraction)
            } else {
                normal_bf16(rng)
            }
        }
        Bf16Dist::Overflow => match rng.random_range(0..100) {
            0..45 => bf16_parts(random_sign(rng), rng.random_range(190..=254), rng.random_range(0..=0x7F)),
            45..55 => bf16_parts(random_sign(rng), 254, 0x7F), // largest finite
            _ => normal_bf16(rng),
        },
        Bf16Dist::SmallInt => small_int_bf16(rng),
    }
}

/// Fills `out` with independent samples of `dist`.
pub fn fill_bf16(dist: Bf16Dist, rng: &mut impl Rng, out: &mut [u16]) {
    for x in out.iter_mut() {
        *x = random_bf16(dist, rng);
    }
}

/// Fills `out` with f32 values (typically initial C) in the spirit of
/// `dist`: a widened sample of `dist` with random low 16 bits for finite
/// normal values (C is full f32, not bf16), and for [`Bf16Dist::Specials`]
/// also [`F32_SPECIALS`]. [`Bf16Dist::SmallInt`] gives integers in
/// -64 ..= 64, still exact. Sets the bits with `from_bits`, so NaN payloads
/// are exactly as chosen.
pub fn fill_f32(dist: Bf16Dist, rng: &mut impl Rng, out: &mut [f32]) {
    for x in out.iter_mut() {
        let bits = match dist {
            Bf16Dist::SmallInt => (rng.random_range(-64i32..=64) as f32).to_bits(),
            Bf16Dist::Specials if rng.random_bool(0.2) => F32_SPECIALS[rng.random_range(0..F32_SPECIALS.len())],
            _ => {
                let high = u32::from(random_bf16(dist, rng)) << 16;
                let exponent = high & 0x7F80_0000;
                if exponent != 0 && exponent != 0x7F80_0000 {
                    high | rng.random_range(0..=0xFFFF)
                } else {
                    high
                }
            }
        };
        *x = f32::from_bits(bits);
    }
}

/// Bytes that matter for int8 dot products.
pub const I8_EXTREMES: [u8; 6] = [0, 1, 127, 128, 129, 255];

/// Fills `out` with random bytes, a quarter of them from [`I8_EXTREMES`]
/// (0, 1, 127 = i8::MAX, 128 = i8::MIN, 129, 255 = -1 / u8::MAX) so that
/// every signedness reaches its extreme products and sums wrap.
pub fn fill_i8(rng: &mut impl Rng, out: &mut [u8]) {
    for x in out.iter_mut() {
        *x = if rng.random_bool(0.25) { I8_EXTREMES[rng.random_range(0..I8_EXTREMES.len())] } else { rng.random() };
    }
}

/// A proptest strategy for one bf16 pattern, biased toward specials: about
/// a third uniform over all 65536 patterns, the rest [`BF16_SPECIALS`],
/// random NaNs, random subnormals, values near 2^-63 (products near the FTZ
/// threshold) and small integers. Shrinks toward simple patterns. (Feature
/// `proptest`.)
#[cfg(any(test, feature = "proptest"))]
pub fn any_bf16() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => any::<u16>(),
        3 => proptest::sample::select(BF16_SPECIALS.to_vec()),
        1 => (any::<bool>(), 1u16..=0x7F).prop_map(|(s, f)| bf16_parts(s, 0xFF, f)),
        1 => (any::<bool>(), 1u16..=0x7F).prop_map(|(s, f)| bf16_parts(s, 0, f)),
        1 => (any::<bool>(), 56u16..=72, 0u16..=0x7F).prop_map(|(s, e, f)| bf16_parts(s, e, f)),
        2 => (-8i32..=8).prop_map(|v| f32_to_bf16(v as f32)),
    ]
}

/// A proptest strategy for an f32 pattern (an initial C), biased like
/// [`any_bf16`] plus [`F32_SPECIALS`] and arbitrary low bits. (Feature
/// `proptest`.)
#[cfg(any(test, feature = "proptest"))]
pub fn any_f32_bits() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => any::<u32>(),
        2 => proptest::sample::select(F32_SPECIALS.to_vec()),
        3 => any_bf16().prop_map(|b| u32::from(b) << 16),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bf16::{bf16_is_nan, bf16_is_subnormal, bf16_to_f32};
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn sample(dist: Bf16Dist, n: usize) -> Vec<u16> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut v = vec![0u16; n];
        fill_bf16(dist, &mut rng, &mut v);
        v
    }

    #[test]
    fn small_ints_are_small_integers() {
        for x in sample(Bf16Dist::SmallInt, 1000) {
            let v = bf16_to_f32(x);
            assert!(v.fract() == 0.0 && v.abs() <= 8.0, "{x:#06x}");
        }
    }

    #[test]
    fn distributions_hit_their_families() {
        let specials = sample(Bf16Dist::Specials, 4000);
        assert!(specials.iter().any(|&x| bf16_is_nan(x) && x & 0x40 == 0), "no sNaN");
        assert!(specials.iter().any(|&x| bf16_is_nan(x) && x & 0x40 != 0), "no qNaN");
        assert!(specials.contains(&0x8000) && specials.contains(&0xFF80));
        assert!(specials.iter().any(|&x| bf16_is_subnormal(x)));
        let sub = sample(Bf16Dist::Subnormal, 1000);
        assert!(sub.iter().filter(|&&x| bf16_is_subnormal(x)).count() > 200);
        assert!(!sub.iter().any(|&x| bf16_is_nan(x)));
        let over = sample(Bf16Dist::Overflow, 1000);
        assert!(over.iter().filter(|&&x| bf16_to_f32(x).abs() > 1e18).count() > 400);
        assert!(over.iter().all(|&x| bf16_to_f32(x).is_finite()));
        let wide = sample(Bf16Dist::WideExponent, 1000);
        assert!(wide.iter().any(|&x| bf16_to_f32(x).abs() < 1e-15));
        assert!(wide.iter().any(|&x| bf16_to_f32(x).abs() > 1e15));
        let canc = sample(Bf16Dist::Cancellation, 1000);
        assert!(canc.contains(&0x4B80) && canc.contains(&0xCB80)); // +-2^24
        for x in sample(Bf16Dist::Normal, 1000) {
            assert!(bf16_to_f32(x).abs() < 10.0);
        }
    }

    #[test]
    fn f32_fill_keeps_chosen_bits() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut c = vec![0f32; 5000];
        fill_f32(Bf16Dist::Specials, &mut rng, &mut c);
        assert!(c.iter().any(|x| x.to_bits() == 0x7F80_0001));
        fill_f32(Bf16Dist::Normal, &mut rng, &mut c);
        assert!(c.iter().any(|x| x.to_bits() & 0xFFFF != 0), "low bits used");
        assert!(c.iter().all(|x| x.is_finite()));
        fill_f32(Bf16Dist::SmallInt, &mut rng, &mut c);
        assert!(c.iter().all(|x| x.fract() == 0.0 && x.abs() <= 64.0));
    }

    #[test]
    fn i8_fill_has_extremes() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut v = vec![0u8; 2000];
        fill_i8(&mut rng, &mut v);
        for e in I8_EXTREMES {
            assert!(v.contains(&e), "missing {e}");
        }
    }

    #[test]
    fn any_bf16_is_biased_toward_specials() {
        let mut runner = TestRunner::deterministic();
        let strategy = any_bf16();
        let draws: Vec<u16> = (0..2000).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect();
        let nans = draws.iter().filter(|&&x| bf16_is_nan(x)).count();
        let subs = draws.iter().filter(|&&x| bf16_is_subnormal(x)).count();
        // Uniform bits would give about 0.4 % NaNs and 0.4 % subnormals.
        assert!(nans > 100, "{nans} NaNs");
        assert!(subs > 100, "{subs} subnormals");
    }
}
