//! Exact single steps of the FP32 arithmetic inside the BF16 dot-product
//! instructions: DAZ, one fused multiply-add or add with one rounding, FTZ,
//! overflow and NaN selection (docs/NUMERICS.md, "TDPBF16PS" rules 2-7 and
//! "A reference recipe").
//!
//! Everything works on f32 *bit patterns* (`u32`): NaN payloads, the quiet
//! bit and the sign of zero are part of what the hardware produces, and bit
//! patterns are the only representation where they are never in question.
//!
//! # Why f64, and why it is exact
//!
//! Each step is `round(x + y*z)` (or `round(x + y)`) with *one* rounding.
//! Rust's `f32::mul_add` may round correctly, but it does not flush
//! subnormals and we must not touch MXCSR (docs/NUMERICS.md, end of the
//! recipe), so the model builds the step from pieces whose exactness can be
//! argued:
//!
//! 1. The product of two f32 values (24-bit significands, so bf16's 8 bits
//!    all the more) has at most 48 significant bits and an exponent within
//!    2^-252 .. 2^256 after DAZ, so it is *exact* in f64.
//! 2. The f64 sum `s = x + p` may round, but the TwoSum error term `e` makes
//!    `s + e` the exact sum (Knuth's TwoSum is exact for any finite f64
//!    operands that do not overflow; ours are below 2^257 and far above the
//!    f64 subnormal range).
//! 3. [`round_ftz`] rounds the exact value `s + e` to 24 bits in one go,
//!    using `e` as a sticky bit where `s` sits exactly on a tie. The
//!    recipe in docs/NUMERICS.md notes that for two <= 24-bit operands the
//!    f64 sum alone is already free of double-rounding trouble (53 >= 2*24+2);
//!    the sticky term keeps the model exact without relying on that theorem,
//!    and also for full 48-bit f32 x f32 products.
//!
//! # Rounding, FTZ, overflow
//!
//! Rounding is to nearest even on a 24-bit significand with an *unbounded*
//! exponent, and only then is the result flushed if its magnitude is below
//! 2^-126 (docs/NUMERICS.md, TDPBF16PS rule 5: "FTZ ... decided after
//! rounding with unbounded exponent"). Rounding to an IEEE subnormal first
//! and flushing that is wrong at the corner `2^-126 - 2^-151`, which must
//! give 2^-126. Results at or above 2^128 after rounding become infinity of
//! the same sign (rule 7, "Overflow -> +-inf").

/// f32 sign bit.
pub const SIGN: u32 = 0x8000_0000;
/// f32 exponent field; also the bits of +infinity.
pub const EXP_MASK: u32 = 0x7F80_0000;
/// f32 fraction field.
pub const FRAC_MASK: u32 = 0x007F_FFFF;
/// f32 quiet bit (top fraction bit).
pub const QUIET: u32 = 0x0040_0000;
/// +infinity.
pub const POS_INF: u32 = 0x7F80_0000;
/// The NaN the hardware *creates* for an invalid operation (inf*0,
/// inf-inf): the x86 "QNaN floating-point indefinite", negative
/// (docs/NUMERICS.md, TDPBF16PS rule 7).
pub const DEFAULT_NAN: u32 = 0xFFC0_0000;

/// True for an f32 NaN pattern.
pub fn is_nan(bits: u32) -> bool {
    bits & !SIGN > EXP_MASK
}

/// True for an f32 subnormal pattern (exponent zero, fraction non-zero).
pub fn is_subnormal(bits: u32) -> bool {
    bits & EXP_MASK == 0 && bits & FRAC_MASK != 0
}

/// Quiets a NaN by setting the quiet bit, keeping sign and payload
/// (docs/NUMERICS.md, rule 7: "sNaN 0x7F81 -> 0x7FC10000, sign kept").
/// A NaN that is already quiet is unchanged.
pub fn quiet(bits: u32) -> u32 {
    debug_assert!(is_nan(bits));
    bits | QUIET
}

/// Denormals-are-zero on an input: a subnormal reads as zero of the same
/// sign; every other pattern (zeros, normals, inf, NaN) is unchanged.
/// Applied to every operand of every step, the accumulator and C included
/// (docs/NUMERICS.md, TDPBF16PS rule 4 and VDPBF16PS).
pub fn daz(bits: u32) -> u32 {
    if bits & EXP_MASK == 0 {
        bits & SIGN
    } else {
        bits
    }
}

/// Exact f64 value of a non-NaN f32 pattern (f32 -> f64 is exact,
/// infinities included).
fn value(bits: u32) -> f64 {
    debug_assert!(!is_nan(bits));
    f64::from(f32::from_bits(bits))
}

/// Knuth's TwoSum: `(s, e)` with `s = fl(a + b)` and `s + e == a + b`
/// exactly, for finite `a`, `b` whose sum does not overflow. When `s` is
/// zero the sum was exact and `e` is zero.
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let b_virtual = s - a;
    let a_virtual = s - b_virtual;
    let e = (a - a_virtual) + (b - b_virtual);
    (s, e)
}

/// Rounds the exact real `hi + lo` to an f32 pattern: 24-bit significand,
/// round to nearest even, unbounded exponent, then FTZ below 2^-126 (zero
/// of the rounded value's sign) and overflow to infinity at 2^128 or
/// above. See the module docs for why this order (docs/NUMERICS.md,
/// TDPBF16PS rule 5).
///
/// Preconditions: `hi` is finite and `lo` is the rounding error of `hi`
/// (`|lo| <= ulp(hi)/2`, as TwoSum gives), or zero. A zero `hi` is
/// returned as a zero of its own sign: the sign of an exact zero sum was
/// already decided by the f64 addition under IEEE round-to-nearest rules
/// (`x + (-x) = +0`, `-0 + -0 = -0`), which is what rule 6 relies on.
pub fn round_ftz(hi: f64, lo: f64) -> u32 {
    debug_assert!(hi.is_finite());
    let sign = if hi.is_sign_negative() { SIGN } else { 0 };
    let bits = hi.to_bits();
    let biased = ((bits >> 52) & 0x7FF) as i32;
    if biased == 0 {
        // Zero, or an f64 subnormal (< 2^-1022, so far below 2^-126 and
        // below the rounding threshold too): flush.
        return sign;
    }
    let mut exponent = biased - 1023;
    // 53-bit significand with the implicit bit; keep the top 24.
    let significand = (1u64 << 52) | (bits & ((1u64 << 52) - 1));
    let mut kept = significand >> 29;
    let dropped = significand & ((1u64 << 29) - 1);
    const HALF: u64 = 1 << 28;
    let round_up = match dropped.cmp(&HALF) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        // `hi` sits exactly on a tie; the exact value is above it in
        // magnitude if `lo` has `hi`'s sign, below if opposite, and a true
        // tie (to even) only if `lo` is zero.
        std::cmp::Ordering::Equal => {
            if lo == 0.0 {
                kept & 1 == 1
            } else {
                lo.is_sign_negative() == hi.is_sign_negative()
            }
        }
    };
    // (When `dropped` is not HALF, |lo| <= half an f64 ulp cannot move the
    // exact value across the tie, nor away from a representable `hi` by
    // more than a tiny fraction of an f32 ulp, so `hi` alone decides.)
    if round_up {
        kept += 1;
        if kept == 1 << 24 {
            kept >>= 1;
            exponent += 1;
        }
    }
    // The rounded value is kept * 2^(exponent - 23), kept in [2^23, 2^24),
    // so its magnitude is >= 2^-126 exactly when exponent >= -126.
    if exponent < -126 {
        return sign;
    }
    if exponent > 127 {
        return sign | POS_INF;
    }
    sign | (((exponent + 127) as u32) << 23) | (kept as u32 & FRAC_MASK)
}

/// `round(x + y)` for non-NaN, already-DAZed patterns: inf - inf is the
/// default NaN, an infinite operand otherwise gives that infinity, and
/// finite sums are rounded exactly by [`round_ftz`].
fn sum_and_round(x: f64, y: f64) -> u32 {
    let s = x + y;
    if s.is_nan() {
        return DEFAULT_NAN;
    }
    if s.is_infinite() {
        // Only an infinite operand gets here: finite operands are below
        // 2^257, so their f64 sum cannot overflow.
        return if s < 0.0 { SIGN | POS_INF } else { POS_INF };
    }
    let (hi, lo) = two_sum(x, y);
    round_ftz(hi, lo)
}

/// One fused multiply-add step of a dot-product chain:
/// `acc + a*b` with the exact product and one rounding
/// (docs/NUMERICS.md, TDPBF16PS rule 2; VDPBF16PS). All three are f32
/// patterns; a bf16 operand is passed widened
/// ([`crate::bf16::bf16_to_f32_bits`]).
///
/// In order:
/// 1. DAZ on `acc`, `a` and `b` (rule 4).
/// 2. NaN operands, first one wins in the order `a`, `b`, `acc`, quieted
///    with payload and sign kept (rule 7: "A's NaN beats B's in a
///    product; within a chain a NaN product overrides an earlier NaN
///    accumulator").
/// 3. Only when no operand is a NaN: an invalid operation (inf*0, or an
///    infinite product meeting an opposite infinite `acc`) gives
///    [`DEFAULT_NAN`].
/// 4. Otherwise the exact sum is rounded by [`round_ftz`] (RNE, FTZ after
///    rounding, overflow to infinity; rules 2, 5, 7).
///
/// Interpretation (not spelled out in docs/NUMERICS.md): "NaN product" is
/// read as "a product with a NaN factor", so an invalid `inf*0` product
/// does *not* override a NaN accumulator; the accumulator's NaN survives.
/// This is the x86/IEEE 754 convention that the default NaN is created only
/// when no operand is a NaN (IEEE 754-2008 sections 6.2 and 7.2, where
/// `fma(0, inf, qNaN)` delivers the qNaN). The hardware NaN matrix
/// (docs/NUMERICS.md, conformance test 3) is what settles it; if it
/// disagrees, step 3 moves above the `acc` check in step 2.
pub fn fma_step(acc: u32, a: u32, b: u32) -> u32 {
    let (acc, a, b) = (daz(acc), daz(a), daz(b));
    if is_nan(a) {
        return quiet(a);
    }
    if is_nan(b) {
        return quiet(b);
    }
    if is_nan(acc) {
        return quiet(acc);
    }
    // Exact: at most 48 significant bits, exponent well inside f64's range.
    let product = value(a) * value(b);
    if product.is_nan() {
        return DEFAULT_NAN; // inf * 0
    }
    sum_and_round(value(acc), product)
}

/// One addition with one rounding, `first + second`, as in the
/// `t = even + odd` and `C + t` steps of TDPBF16PS (docs/NUMERICS.md,
/// rule 3).
///
/// DAZ on both operands (rule 4; C may be a subnormal the caller passed
/// in). NaN priority: `first` beats `second` (rule 7: "in even+odd the even
/// lane wins; in the final add a NaN in C wins", so callers pass `even`
/// resp. `C` first). inf + (-inf) without a NaN operand is
/// [`DEFAULT_NAN`]. Rounding, FTZ and overflow as in [`round_ftz`].
pub fn add_step(first: u32, second: u32) -> u32 {
    let (first, second) = (daz(first), daz(second));
    if is_nan(first) {
        return quiet(first);
    }
    if is_nan(second) {
        return quiet(second);
    }
    sum_and_round(value(first), value(second))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2^e as an f32 pattern (normal range only).
    fn pow2(e: i32) -> u32 {
        assert!((-126..=127).contains(&e));
        ((e + 127) as u32) << 23
    }

    /// A normal f32 pattern with the given significand in [1, 2) as an
    /// integer over 2^23, times 2^e.
    fn f32_pattern(sign: bool, significand: u32, e: i32) -> u32 {
        assert!((1 << 23..1 << 24).contains(&significand));
        (if sign { SIGN } else { 0 }) | (((e + 127) as u32) << 23) | (significand & FRAC_MASK)
    }

    #[test]
    fn daz_flushes_only_subnormals() {
        assert_eq!(daz(0x0000_0001), 0);
        assert_eq!(daz(0x807F_FFFF), 0x8000_0000);
        assert_eq!(daz(0x8000_0000), 0x8000_0000);
        assert_eq!(daz(0x0080_0000), 0x0080_0000);
        assert_eq!(daz(0x7F80_0001), 0x7F80_0001);
        assert_eq!(daz(0xFF80_0000), 0xFF80_0000);
    }

    #[test]
    fn ftz_after_rounding_corner_flushes() {
        // acc = 2^-126, product = -3 * 2^-152 = (-3 * 2^-76) * 2^-76:
        // exact 2^-126 - 3*2^-152 rounds (unbounded exponent, ulp 2^-150)
        // to 2^-126 - 2^-150 < 2^-126, so it flushes to +0.
        let acc = pow2(-126);
        let a = f32_pattern(true, 3 << 22, -75); // -1.5 * 2^-75 = -3 * 2^-76
        let b = pow2(-76);
        assert_eq!(fma_step(acc, a, b), 0x0000_0000);
        // Mirrored: flushes to -0.
        assert_eq!(fma_step(acc | SIGN, a & !SIGN, b), 0x8000_0000);
    }

    #[test]
    fn ftz_after_rounding_corner_rounds_up_to_min_normal() {
        // 2^-126 - 2^-151 is a tie between 2^-126 - 2^-150 (odd) and 2^-126
        // (even): rounds to 2^-126, which is normal, so it is kept.
        // "Round to IEEE subnormal, then flush" would give 0 here.
        let acc = pow2(-126);
        let a = pow2(-75) | SIGN;
        let b = pow2(-76);
        assert_eq!(fma_step(acc, a, b), 0x0080_0000);
        // Closer than the tie (2^-126 - 2^-152) also rounds to 2^-126.
        assert_eq!(fma_step(acc, b | SIGN, b), 0x0080_0000);
    }

    #[test]
    fn signed_zero_from_positive_chain_start() {
        // +0 + (-0 * 1) = +0 (IEEE: sum of opposite zeros is +0 in RNE).
        assert_eq!(fma_step(0, 0x8000_0000, 0x3F80_0000), 0x0000_0000);
        // Only a -0 accumulator keeps -0.
        assert_eq!(fma_step(0x8000_0000, 0x8000_0000, 0x3F80_0000), 0x8000_0000);
        // Exact cancellation gives +0.
        assert_eq!(fma_step(0x3F80_0000, 0xBF80_0000, 0x3F80_0000), 0);
        assert_eq!(add_step(0x8000_0000, 0x8000_0000), 0x8000_0000);
        assert_eq!(add_step(0x8000_0000, 0x0000_0000), 0x0000_0000);
    }

    #[test]
    fn subnormal_inputs_read_as_zero() {
        // acc subnormal -> -0; product -0 * 1 = -0; -0 + -0 = -0.
        assert_eq!(fma_step(0x8000_0001, 0x8000_0000, 0x3F80_0000), 0x8000_0000);
        // Subnormal factor: product is 0, acc returned.
        assert_eq!(fma_step(0x3F80_0000, 0x0040_0000, 0x7F00_0000), 0x3F80_0000);
        assert_eq!(add_step(0x0000_0001, 0x8000_0001), 0x0000_0000);
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-24 is a tie between 1 and 1 + 2^-23: even is 1.
        assert_eq!(fma_step(0x3F80_0000, pow2(-12), pow2(-12)), 0x3F80_0000);
        // 1 + 3*2^-24: tie between 1+2^-23 (odd) and 1+2^-22 (even).
        let three_2m24 = f32_pattern(false, 3 << 22, -23); // 1.5 * 2^-23
        assert_eq!(fma_step(0x3F80_0000, three_2m24, 0x3F80_0000), 0x3F80_0002);
        // (1 + 2^-23) + 2^-24: tie, rounds up to even 1 + 2^-22.
        assert_eq!(add_step(0x3F80_0001, pow2(-24)), 0x3F80_0002);
    }

    #[test]
    fn single_rounding_of_a_wide_product() {
        // (1 + 2^-23)^2 = 1 + 2^-22 + 2^-46: one rounding gives 1 + 2^-22,
        // and adding -1 afterwards shows the low bits were not lost early:
        // acc = -1, exact result 2^-22 + 2^-46, rounds to 2^-22 * (1 + 2^-24)
        // -> a tie that goes to even 2^-22.
        let x = 0x3F80_0001;
        assert_eq!(fma_step(0x3F80_0000 | SIGN, x, x), pow2(-22));
        // acc = -(1 + 2^-22): exact result 2^-46, exactly representable.
        assert_eq!(fma_step(0x3F80_0002 | SIGN, x, x), pow2(-46));
    }

    #[test]
    fn sticky_decides_near_ties() {
        // x + y where the f64 sum itself rounds: x = 1, y = 2^-24 + 2^-80
        // would need 57 bits, so the f64 sum is 1 + 2^-24 (a tie at 24
        // bits) with error term 2^-80: the exact value is above the tie and
        // must round up. y is not an f32 value, so test round_ftz directly.
        let hi = 1.0 + f64::powi(2.0, -24);
        assert_eq!(round_ftz(hi, f64::powi(2.0, -80)), 0x3F80_0001);
        assert_eq!(round_ftz(hi, -f64::powi(2.0, -80)), 0x3F80_0000);
        assert_eq!(round_ftz(hi, 0.0), 0x3F80_0000);
        assert_eq!(round_ftz(-hi, -f64::powi(2.0, -80)), 0xBF80_0001);
    }

    #[test]
    fn overflow_to_infinity() {
        let max = 0x7F7F_FFFF; // f32::MAX
        assert_eq!(add_step(max, max), POS_INF);
        assert_eq!(add_step(max | SIGN, max | SIGN), SIGN | POS_INF);
        // MAX + half an ulp is a tie, even is 2^128: overflow.
        assert_eq!(fma_step(max, pow2(52), pow2(51)), POS_INF);
        // MAX + a quarter ulp rounds back to MAX.
        assert_eq!(fma_step(max, pow2(51), pow2(51)), max);
        // Product overflow.
        assert_eq!(fma_step(0, pow2(100), pow2(100) | SIGN), SIGN | POS_INF);
    }

    #[test]
    fn infinities_propagate() {
        assert_eq!(fma_step(0x3F80_0000, POS_INF, 0x4000_0000), POS_INF);
        assert_eq!(fma_step(POS_INF | SIGN, 0x3F80_0000, 0x3F80_0000), POS_INF | SIGN);
        assert_eq!(add_step(POS_INF, 0xFF7F_FFFF), POS_INF);
    }

    #[test]
    fn invalid_operations_give_default_nan() {
        assert_eq!(fma_step(0, POS_INF, 0), DEFAULT_NAN);
        assert_eq!(fma_step(0x3F80_0000, 0x8000_0000, POS_INF | SIGN), DEFAULT_NAN);
        // inf * (subnormal read as 0).
        assert_eq!(fma_step(0, POS_INF, 0x0000_0001), DEFAULT_NAN);
        // inf - inf.
        assert_eq!(fma_step(POS_INF, POS_INF | SIGN, 0x3F80_0000), DEFAULT_NAN);
        assert_eq!(add_step(POS_INF | SIGN, POS_INF), DEFAULT_NAN);
    }

    /// Random f32 pattern with biased exponent field in `exponents`.
    fn random_f32(rng: &mut impl rand::Rng, exponents: std::ops::RangeInclusive<u32>) -> u32 {
        let sign = if rng.random_bool(0.5) { SIGN } else { 0 };
        sign | (rng.random_range(exponents) << 23) | (rng.random::<u32>() & FRAC_MASK)
    }

    #[test]
    fn agrees_with_ieee_fma_away_from_underflow() {
        // Where no input is subnormal and the result is comfortably normal,
        // DAZ/FTZ do nothing and the step must be the correctly rounded
        // IEEE fma, which `f32::mul_add` is (an independent
        // implementation of the rounding).
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut checked = 0;
        for _ in 0..300_000 {
            let acc = random_f32(&mut rng, 100..=154);
            let a = random_f32(&mut rng, 110..=144);
            let b = random_f32(&mut rng, 110..=144);
            let ieee = f32::from_bits(a).mul_add(f32::from_bits(b), f32::from_bits(acc));
            if !ieee.is_normal() || ieee.abs() < 1e-30 {
                continue;
            }
            checked += 1;
            assert_eq!(fma_step(acc, a, b), ieee.to_bits(), "acc {acc:#x} a {a:#x} b {b:#x}");
            let sum = f32::from_bits(acc) + f32::from_bits(a);
            if sum.is_normal() {
                assert_eq!(add_step(acc, a), sum.to_bits(), "{acc:#x} + {a:#x}");
            }
        }
        assert!(checked > 250_000);
    }

    #[test]
    fn agrees_with_scaling_recipe_near_underflow() {
        // docs/NUMERICS.md's recipe: f64 sum, scale tiny values by 2^64,
        // round with an f32 conversion, scale back, flush below 2^-126.
        // Valid for bf16 factors (<= 24-bit operands of the sum), so drive
        // it with bf16 a, b whose products land around 2^-126.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let two64 = f64::powi(2.0, 64);
        let mut flushed = 0;
        for _ in 0..300_000 {
            let acc = random_f32(&mut rng, 0..=4) & !0x0000_FFFF;
            let acc = if rng.random_bool(0.5) { acc } else { random_f32(&mut rng, 0..=4) };
            let a = random_f32(&mut rng, 56..=72) & 0xFFFF_0000;
            let b = random_f32(&mut rng, 56..=72) & 0xFFFF_0000;
            let exact = value(daz(acc)) + value(a) * value(b);
            let scaled = ((exact * two64) as f32) as f64 / two64;
            let recipe = if scaled.abs() < f64::powi(2.0, -126) {
                if scaled.is_sign_negative() {
                    SIGN
                } else {
                    0
                }
            } else {
                (scaled as f32).to_bits()
            };
            flushed += usize::from(recipe & !SIGN == 0);
            assert_eq!(fma_step(acc, a, b), recipe, "acc {acc:#x} a {a:#x} b {b:#x}");
        }
        assert!(flushed > 10_000 && flushed < 290_000, "{flushed} flushed");
    }

    #[test]
    fn nan_priority_and_quieting() {
        let s_nan_a = 0x7F81_0000; // bf16 sNaN 0x7F81 widened
        let q_nan_b = 0xFFC2_0000;
        let nan_acc = 0x7FC3_0000;
        assert_eq!(fma_step(0, s_nan_a, 0x3F80_0000), 0x7FC1_0000);
        assert_eq!(fma_step(nan_acc, s_nan_a, q_nan_b), 0x7FC1_0000);
        assert_eq!(fma_step(nan_acc, 0x3F80_0000, q_nan_b), 0xFFC2_0000);
        assert_eq!(fma_step(nan_acc, 0x3F80_0000, 0x3F80_0000), 0x7FC3_0000);
        // Interpretation: an invalid inf*0 does not beat a NaN accumulator.
        assert_eq!(fma_step(nan_acc, POS_INF, 0), nan_acc);
        assert_eq!(add_step(0x7F80_0001, q_nan_b), 0x7FC0_0001);
        assert_eq!(add_step(0x3F80_0000, 0xFF80_0001), 0xFFC0_0001);
        assert_eq!(add_step(DEFAULT_NAN, POS_INF), DEFAULT_NAN);
    }
}
