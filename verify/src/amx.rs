//! Scalar models of the AMX dot-product instructions, one output element
//! at a time (docs/NUMERICS.md, "TDPBF16PS (AMX-BF16)" and "Integer dot
//! products").
//!
//! A tile instruction computes every (m, n) element independently, so the
//! model takes one row of A and one column of B (already gathered into
//! lane order) and returns one C element. Tile shapes, strides and the
//! VNNI layout of B are the business of the GEMM references in
//! [`crate::gemm`] and of the kernels, not of the arithmetic.

use crate::bf16::bf16_to_f32_bits;
use crate::fp::{add_step, fma_step};

/// One TDPBF16PS for one output element, on bit patterns.
///
/// `a` and `b` hold the 2*K bf16 lanes of this element's A row and B
/// column for *one* instruction (K pairs; lane 2k is the even element of
/// pair k, lane 2k+1 the odd one). K is at most 16 on hardware
/// (`A.colsb / 4`), but any K is accepted so that callers can model
/// hypothetical chunkings.
///
/// The order is the measured one (docs/NUMERICS.md, TDPBF16PS rules 1-3):
/// two chains from +0.0, `even` over lanes 2k and `odd` over lanes 2k+1,
/// each step one exact FMA with one rounding ([`fma_step`]); then
/// `t = even + odd`; then `C + t`, C added last ([`add_step`]). DAZ, FTZ,
/// overflow and NaN rules live in those two steps; the operand order here
/// encodes the NaN priorities: A before B within a product, the product
/// before the chain accumulator, `even` before `odd`, `C` before `t`
/// (rule 7).
///
/// Chains start at +0 whatever C is, which is why `-0 + (-0 * 1)` gives +0
/// (rule 6), and why the result depends on how K is split into
/// instructions (see [`crate::gemm::gemm_bf16_amx`]).
///
/// # Panics
/// If `a.len() != b.len()` or the length is odd.
pub fn tdpbf16ps_bits(c: u32, a: &[u16], b: &[u16]) -> u32 {
    assert_eq!(a.len(), b.len(), "tdpbf16ps: A and B lane counts differ");
    assert!(a.len() & 1 == 0, "tdpbf16ps: lane count must be even (pairs)");
    let mut even = 0u32; // +0.0
    let mut odd = 0u32; // +0.0
    for (pair_a, pair_b) in a.chunks_exact(2).zip(b.chunks_exact(2)) {
        even = fma_step(even, bf16_to_f32_bits(pair_a[0]), bf16_to_f32_bits(pair_b[0]));
        odd = fma_step(odd, bf16_to_f32_bits(pair_a[1]), bf16_to_f32_bits(pair_b[1]));
    }
    let t = add_step(even, odd);
    add_step(c, t)
}

/// One TDPBF16PS for one output element: [`tdpbf16ps_bits`] on `f32`
/// values. The bits of `c` and of the result are passed through
/// `to_bits`/`from_bits`, which keep NaN payloads; prefer the `_bits` form
/// where signaling NaNs in C matter and the value passes through other
/// code.
pub fn tdpbf16ps(c: f32, a: &[u16], b: &[u16]) -> f32 {
    f32::from_bits(tdpbf16ps_bits(c.to_bits(), a, b))
}

/// Signedness of the two byte operands of the AMX int8 dot products; the
/// first letter is A (tsrc1), the second B (tsrc2), as in the mnemonics
/// (docs/NUMERICS.md, "Integer dot products"):
/// SS = TDPBSSD, SU = TDPBSUD, US = TDPBUSD, UU = TDPBUUD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Signedness {
    /// TDPBSSD: A signed, B signed.
    SS,
    /// TDPBSUD: A signed, B unsigned.
    SU,
    /// TDPBUSD: A unsigned, B signed.
    US,
    /// TDPBUUD: A unsigned, B unsigned.
    UU,
}

impl Int8Signedness {
    /// All four variants, for exhaustive tests.
    pub const ALL: [Int8Signedness; 4] =
        [Int8Signedness::SS, Int8Signedness::SU, Int8Signedness::US, Int8Signedness::UU];

    /// Whether A's bytes are read as `i8`.
    pub fn a_signed(self) -> bool {
        matches!(self, Int8Signedness::SS | Int8Signedness::SU)
    }

    /// Whether B's bytes are read as `i8`.
    pub fn b_signed(self) -> bool {
        matches!(self, Int8Signedness::SS | Int8Signedness::US)
    }

    /// The AMX mnemonic of this variant.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Int8Signedness::SS => "TDPBSSD",
            Int8Signedness::SU => "TDPBSUD",
            Int8Signedness::US => "TDPBUSD",
            Int8Signedness::UU => "TDPBUUD",
        }
    }
}

/// A byte read as signed or unsigned, widened to i32.
pub fn byte_value(byte: u8, signed: bool) -> i32 {
    if signed {
        i32::from(byte as i8)
    } else {
        i32::from(byte)
    }
}

/// `c + sum(a[i] * b[i])` with each byte read per `sign`, as the AMX int8
/// dot products compute one output element (any number of bytes; on
/// hardware a TDP covers 4 per dword times up to 16). Each product is
/// exact (it fits in 16 bits plus sign); the accumulation wraps modulo
/// 2^32 (measured: INT32_MAX + 1 -> INT32_MIN, docs/NUMERICS.md). Since
/// wrapping addition is associative, the order and the K chunking do not
/// matter, unlike for bf16.
///
/// # Panics
/// If `a.len() != b.len()`.
pub fn tdpb_dot(sign: Int8Signedness, c: i32, a: &[u8], b: &[u8]) -> i32 {
    assert_eq!(a.len(), b.len(), "tdpb_dot: A and B byte counts differ");
    let mut acc = c;
    for (&x, &y) in a.iter().zip(b) {
        let product = byte_value(x, sign.a_signed()) * byte_value(y, sign.b_signed());
        acc = acc.wrapping_add(product);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fp::DEFAULT_NAN;

    const ONE: u16 = 0x3F80;
    const TWO: u16 = 0x4000;
    const INF: u16 = 0x7F80;
    const NEG_INF: u16 = 0xFF80;

    #[test]
    fn simple_dot_product() {
        // even: 1*2 + 2*2 = 6, odd: 2*1 + 1*1 = 3, t = 9, C = 1 + 9.
        let a = [ONE, TWO, TWO, ONE];
        let b = [TWO, ONE, TWO, ONE];
        assert_eq!(tdpbf16ps(1.0, &a, &b), 10.0);
        assert_eq!(tdpbf16ps(1.0, &[], &[]), 1.0);
    }

    #[test]
    fn chains_are_separate_and_c_is_added_last() {
        // Swamping: M = 2^24 in the even chain absorbs the +1 of the next
        // even step (2^24 + 1 ties to 2^24), the odd chain keeps its 1s.
        let m = 0x4B80; // 2^24
        let neg_m = 0xCB80;
        let a = [m, ONE, ONE, ONE, neg_m, ONE];
        let b = [ONE; 6];
        // even: 2^24, 2^24, 0; odd: 3; t = 3; C = 0 + 3 (exact sum: 4).
        assert_eq!(tdpbf16ps(0.0, &a, &b), 3.0);
        // With the 1 in the even lanes only it is lost entirely.
        let a = [m, 0, ONE, 0, neg_m, 0];
        assert_eq!(tdpbf16ps(0.0, &a, &b), 0.0);
        // C joins last: C = 2^24 swamps t = 1.
        let a = [ONE, 0];
        let b = [ONE, 0];
        assert_eq!(tdpbf16ps(16_777_216.0, &a, &b), 16_777_216.0);
        // C = -2^24, even = 2^24, odd = 1: t = 2^24 + 1 ties to 2^24, so
        // C + t = 0. Were C the chain start, -2^24 + 2^24 + 1 would be 1.
        let a = [m, ONE];
        let b = [ONE, ONE];
        assert_eq!(tdpbf16ps_bits(0xCB80_0000, &a, &b), 0);
    }

    #[test]
    fn ftz_corner_through_the_instruction() {
        // even chain: 2^-126 (= 2^-63 * 2^-63), then -3 * 2^-152: flushed.
        let p2m63 = 0x2000; // 2^-63
        let p2m76 = 0x1980; // 2^-76
        let neg_1_5_p2m75 = 0x9A40; // -1.5 * 2^-75
        let a = [p2m63, 0, neg_1_5_p2m75, 0];
        let b = [p2m63, 0, p2m76, 0];
        assert_eq!(tdpbf16ps_bits(0, &a, &b), 0);
        // ... then -2^-151 instead: rounds up to 2^-126 and is kept.
        let neg_p2m75 = 0x9A00;
        let a = [p2m63, 0, neg_p2m75, 0];
        assert_eq!(tdpbf16ps_bits(0, &a, &b), 0x0080_0000);
    }

    #[test]
    fn signed_zero() {
        // -0 * 1 from the +0 chain start gives +0; t = +0; -0 + +0 = +0.
        let a = [0x8000, 0x8000];
        let b = [ONE, ONE];
        assert_eq!(tdpbf16ps_bits(0x8000_0000, &a, &b), 0x0000_0000);
        // A subnormal negative C reads as -0: same result.
        assert_eq!(tdpbf16ps_bits(0x8000_0001, &a, &b), 0x0000_0000);
        // Both chains flushed to -0 keep t = -0, so C = -0 stays -0.
        let tiny = 0x2000; // 2^-63; 2^-63 * -2^-64 = -2^-127: flushed to -0
        let neg_p2m64 = 0x9F80;
        let a = [tiny, tiny];
        let b = [neg_p2m64, neg_p2m64];
        assert_eq!(tdpbf16ps_bits(0x8000_0000, &a, &b), 0x8000_0000);
    }

    #[test]
    fn signaling_nan_is_quieted_with_payload() {
        let a = [0x7F81, 0];
        let b = [ONE, 0];
        assert_eq!(tdpbf16ps_bits(0, &a, &b), 0x7FC1_0000);
        // Sign kept.
        let a = [0, 0xFF81];
        assert_eq!(tdpbf16ps_bits(0, &a, &[0, ONE]), 0xFFC1_0000);
    }

    #[test]
    fn invalid_operations_give_negative_default_nan() {
        assert_eq!(tdpbf16ps_bits(0, &[INF, 0], &[0, 0]), DEFAULT_NAN);
        // inf - inf inside a chain.
        assert_eq!(tdpbf16ps_bits(0, &[INF, 0, NEG_INF, 0], &[ONE, 0, ONE, 0]), DEFAULT_NAN);
        // inf - inf in even + odd.
        assert_eq!(tdpbf16ps_bits(0, &[INF, NEG_INF], &[ONE, ONE]), DEFAULT_NAN);
        // inf - inf in C + t.
        assert_eq!(tdpbf16ps_bits(0xFF80_0000, &[INF, 0], &[ONE, 0]), DEFAULT_NAN);
        // inf times a subnormal (read as zero).
        assert_eq!(tdpbf16ps_bits(0, &[0, INF], &[0, 0x0001]), DEFAULT_NAN);
    }

    #[test]
    fn nan_priorities() {
        let nan1 = 0x7F81; // sNaN, payload 1
        let nan2 = 0xFFC2; // qNaN, payload 2, negative
        let nan3 = 0x7FA3; // sNaN, payload 0x23
                           // A's NaN beats B's.
        assert_eq!(tdpbf16ps_bits(0, &[nan1, 0], &[nan2, 0]), 0x7FC1_0000);
        assert_eq!(tdpbf16ps_bits(0, &[ONE, 0], &[nan2, 0]), 0xFFC2_0000);
        // A later NaN product overrides the earlier NaN accumulator.
        assert_eq!(tdpbf16ps_bits(0, &[nan1, 0, nan3, 0], &[ONE, 0, ONE, 0]), 0x7FE3_0000);
        assert_eq!(tdpbf16ps_bits(0, &[nan1, 0, ONE, 0], &[ONE, 0, nan2, 0]), 0xFFC2_0000);
        // even beats odd, whichever pair the NaNs are in.
        assert_eq!(tdpbf16ps_bits(0, &[ONE, nan1, nan2, ONE], &[ONE; 4]), 0xFFC2_0000);
        assert_eq!(tdpbf16ps_bits(0, &[nan2, nan1], &[ONE; 2]), 0xFFC2_0000);
        // A NaN in C wins over everything, and is quieted.
        assert_eq!(tdpbf16ps_bits(0x7F80_0005, &[nan2, nan1], &[ONE; 2]), 0x7FC0_0005);
        assert_eq!(tdpbf16ps_bits(0xFFC0_0007, &[INF, 0], &[0, 0]), 0xFFC0_0007);
        // A NaN in the chain beats a later invalid inf*0 in the same chain
        // (interpretation, see fp::fma_step), and beats inf in C.
        assert_eq!(tdpbf16ps_bits(0, &[nan1, 0, INF, 0], &[ONE, 0, 0, 0]), 0x7FC1_0000);
        assert_eq!(tdpbf16ps_bits(0xFF80_0000, &[nan1, 0], &[ONE, 0]), 0x7FC1_0000);
    }

    #[test]
    fn overflow() {
        let max = 0x7F7F; // largest finite bf16
                          // Product overflows.
        assert_eq!(tdpbf16ps_bits(0, &[max, 0], &[max, 0]), 0x7F80_0000);
        // Each chain finite, even + odd overflows.
        assert_eq!(tdpbf16ps_bits(0, &[max, max], &[ONE, ONE]), 0x7F80_0000);
        assert_eq!(tdpbf16ps_bits(0, &[max | 0x8000, max], &[ONE, 0xBF80]), 0xFF80_0000);
        // C + t overflows.
        assert_eq!(tdpbf16ps_bits(0x7F7F_FFFF, &[max, 0], &[ONE, 0]), 0x7F80_0000);
    }

    #[test]
    fn signedness_accessors() {
        use Int8Signedness::*;
        assert_eq!(Int8Signedness::ALL, [SS, SU, US, UU]);
        assert_eq!(SU.mnemonic(), "TDPBSUD");
        assert!(SU.a_signed() && !SU.b_signed());
        assert!(!US.a_signed() && US.b_signed());
        assert!(SS.a_signed() && SS.b_signed());
        assert!(!UU.a_signed() && !UU.b_signed());
    }

    #[test]
    fn int8_byte_interpretation() {
        let a = [0xFF, 0x80, 0x7F];
        let b = [0xFF, 0x02, 0x01];
        // SS: (-1)(-1) + (-128)(2) + 127 = 1 - 256 + 127.
        assert_eq!(tdpb_dot(Int8Signedness::SS, 0, &a, &b), -128);
        // SU: (-1)(255) + (-128)(2) + 127.
        assert_eq!(tdpb_dot(Int8Signedness::SU, 0, &a, &b), -255 - 256 + 127);
        // US: 255(-1) + 128*2 + 127.
        assert_eq!(tdpb_dot(Int8Signedness::US, 0, &a, &b), -255 + 256 + 127);
        // UU: 255*255 + 128*2 + 127.
        assert_eq!(tdpb_dot(Int8Signedness::UU, 0, &a, &b), 65_025 + 256 + 127);
    }

    #[test]
    fn int8_wraps_modulo_2_32() {
        assert_eq!(tdpb_dot(Int8Signedness::SS, i32::MAX, &[1], &[1]), i32::MIN);
        assert_eq!(tdpb_dot(Int8Signedness::SS, i32::MIN, &[0xFF], &[1]), i32::MAX);
        // Many maximal UU products wrap too.
        let a = vec![0xFF; 64];
        let expected = (i64::from(i32::MAX - 10) + 64 * 65_025) as u64 as u32 as i32;
        assert_eq!(tdpb_dot(Int8Signedness::UU, i32::MAX - 10, &a, &a), expected);
    }
}
