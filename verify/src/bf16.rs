//! bf16 <-> f32 conversions, modelled on the hardware (docs/NUMERICS.md,
//! "VCVTNEPS2BF16 (producing bf16 inputs)").
//!
//! bf16 is the upper half of an f32, so widening is a shift and exact. The
//! narrowing direction is where paths can disagree: an IEEE round-to-nearest
//! conversion (e.g. the `half` crate) keeps denormals and quiets NaNs its own
//! way, while VCVTNEPS2BF16 flushes denormals and forces one quiet bit. Every
//! path in the project that narrows f32 to bf16 must produce the bits of
//! [`f32_to_bf16`], so that is the one defined here.

/// bf16 sign bit.
pub const BF16_SIGN: u16 = 0x8000;
/// bf16 exponent field.
pub const BF16_EXP: u16 = 0x7F80;
/// bf16 fraction field (7 bits).
pub const BF16_FRAC: u16 = 0x007F;
/// The bf16 quiet bit: the top fraction bit, bit 6 (the f32 quiet bit 22
/// shifted down by 16).
pub const BF16_QUIET: u16 = 0x0040;

/// Widens bf16 bits to f32. Exact for every pattern, NaN payloads and
/// signaling NaNs included: the bf16 bits become the upper 16 bits of the
/// f32 and the lower 16 bits are zero (what `make_fp32` does in the SDM
/// pseudocode). No DAZ here: flushing is part of the arithmetic, not of the
/// format (docs/NUMERICS.md, TDPBF16PS rule 4).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(bf16_to_f32_bits(bits))
}

/// [`bf16_to_f32`] on bit patterns.
pub fn bf16_to_f32_bits(bits: u16) -> u32 {
    u32::from(bits) << 16
}

/// True for a bf16 NaN (exponent all ones, fraction non-zero).
pub fn bf16_is_nan(bits: u16) -> bool {
    bits & !BF16_SIGN > BF16_EXP
}

/// True for a bf16 subnormal (exponent zero, fraction non-zero): the
/// values DAZ reads as zero.
pub fn bf16_is_subnormal(bits: u16) -> bool {
    bits & BF16_EXP == 0 && bits & BF16_FRAC != 0
}

/// Narrows an f32 to bf16 exactly as VCVTNEPS2BF16 does
/// (docs/NUMERICS.md, "VCVTNEPS2BF16"):
///
/// - zero and denormal inputs give a zero of the same sign (the instruction
///   has DAZ semantics on its input and ignores MXCSR);
/// - NaN: the upper 16 bits are kept (truncated, so the payload's top bits
///   and the sign survive) and the quiet bit, bf16 fraction bit 6, is forced
///   to 1, so a signaling NaN whose payload lives only in the low 16 bits
///   still stays a NaN;
/// - everything else (normals and infinities) is rounded to nearest even by
///   the integer trick `bits + 0x7FFF + bit16`, then truncated. The carry of
///   that add is what rounds up, including into the exponent: the largest
///   finite f32 becomes infinity, which is correct round-to-nearest
///   overflow. Infinity itself is unchanged because its low bits are zero.
///
/// `x` is taken by value; passing an f32 through registers keeps all its
/// bits on x86-64, but [`f32_bits_to_bf16`] avoids the question entirely.
pub fn f32_to_bf16(x: f32) -> u16 {
    f32_bits_to_bf16(x.to_bits())
}

/// [`f32_to_bf16`] on an f32 bit pattern.
pub fn f32_bits_to_bf16(bits: u32) -> u16 {
    let exponent = bits & 0x7F80_0000;
    let fraction = bits & 0x007F_FFFF;
    if exponent == 0 {
        // Zero or denormal: signed zero.
        return ((bits >> 16) as u16) & BF16_SIGN;
    }
    if exponent == 0x7F80_0000 && fraction != 0 {
        // NaN: truncate, force quiet.
        return ((bits >> 16) as u16) | BF16_QUIET;
    }
    let lsb = (bits >> 16) & 1;
    // Cannot overflow u32: the largest non-NaN pattern is 0xFF80_0000
    // (-inf), and 0xFF80_0000 + 0x8000 < 2^32.
    ((bits + 0x7FFF + lsb) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_is_a_shift() {
        assert_eq!(bf16_to_f32(0x3F80), 1.0);
        assert_eq!(bf16_to_f32(0xC000), -2.0);
        assert_eq!(bf16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(bf16_to_f32_bits(0x7F81), 0x7F81_0000); // sNaN kept as is
        assert_eq!(bf16_to_f32_bits(0x0001), 0x0001_0000); // subnormal kept
    }

    #[test]
    fn classification() {
        assert!(bf16_is_nan(0x7F81));
        assert!(bf16_is_nan(0xFFC0));
        assert!(!bf16_is_nan(0x7F80));
        assert!(!bf16_is_nan(0xFF80));
        assert!(bf16_is_subnormal(0x0001));
        assert!(bf16_is_subnormal(0x807F));
        assert!(!bf16_is_subnormal(0x0080));
        assert!(!bf16_is_subnormal(0x8000));
    }

    #[test]
    fn rounding_ties_to_even() {
        // Exactly representable.
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        // Halfway between 0x3F80 and 0x3F81: stays on the even 0x3F80.
        assert_eq!(f32_bits_to_bf16(0x3F80_8000), 0x3F80);
        // Halfway between 0x3F81 and 0x3F82: goes up to the even 0x3F82.
        assert_eq!(f32_bits_to_bf16(0x3F81_8000), 0x3F82);
        // Just above / below half.
        assert_eq!(f32_bits_to_bf16(0x3F80_8001), 0x3F81);
        assert_eq!(f32_bits_to_bf16(0x3F81_7FFF), 0x3F81);
        // Negative values round on magnitude.
        assert_eq!(f32_bits_to_bf16(0xBF81_8000), 0xBF82);
        // Carry into the exponent: largest fraction rounds up to 2.0.
        assert_eq!(f32_bits_to_bf16(0x3FFF_FFFF), 0x4000);
    }

    #[test]
    fn denormals_become_signed_zero() {
        assert_eq!(f32_bits_to_bf16(0x0000_0001), 0x0000);
        assert_eq!(f32_bits_to_bf16(0x007F_FFFF), 0x0000); // would round to min normal in IEEE
        assert_eq!(f32_bits_to_bf16(0x8040_0000), 0x8000);
        assert_eq!(f32_bits_to_bf16(0x8000_0000), 0x8000);
        // Smallest normal is kept.
        assert_eq!(f32_bits_to_bf16(0x0080_0000), 0x0080);
    }

    #[test]
    fn infinities_and_overflow() {
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7F80);
        assert_eq!(f32_to_bf16(f32::NEG_INFINITY), 0xFF80);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7F80);
        assert_eq!(f32_to_bf16(f32::MIN), 0xFF80);
        // Largest value that still rounds down to bf16 max finite 0x7F7F.
        assert_eq!(f32_bits_to_bf16(0x7F7F_7FFF), 0x7F7F);
    }

    #[test]
    fn nan_truncated_and_quieted() {
        // sNaN with payload only in the low half: stays NaN thanks to bit 6.
        assert_eq!(f32_bits_to_bf16(0x7F80_0001), 0x7FC0);
        // Payload's upper bits and sign survive.
        assert_eq!(f32_bits_to_bf16(0xFF81_2345), 0xFFC1);
        assert_eq!(f32_bits_to_bf16(0x7FC1_FFFF), 0x7FC1); // no rounding on NaN
        assert_eq!(f32_bits_to_bf16(0xFFC0_0000), 0xFFC0);
    }

    #[test]
    fn agrees_with_ieee_rne_on_normals() {
        // The `half` crate rounds to nearest even in IEEE fashion. On finite
        // normal inputs whose result is normal both must agree; it is an
        // independent check of the integer rounding trick.
        let mut state = 0x1234_5678_9ABC_DEF0_u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bits = state as u32;
            let x = f32::from_bits(bits);
            if !x.is_normal() {
                continue;
            }
            let ours = f32_bits_to_bf16(bits);
            let theirs = half::bf16::from_f32(x).to_bits();
            assert_eq!(ours, theirs, "input {bits:#010x}");
        }
    }
}
