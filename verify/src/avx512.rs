//! Scalar models of the AVX-512 dot-product instructions, one dword lane at
//! a time (docs/NUMERICS.md, "VDPBF16PS (AVX512_BF16)" and "Integer dot
//! products").
//!
//! VDPBF16PS has a different order from TDPBF16PS: one accumulator, the odd
//! pair first, C as the chain start. So a kernel built on it cannot give
//! AMX bits, and has its own reference ([`crate::gemm::gemm_bf16_vdpbf16ps`]).

use crate::amx::{byte_value, Int8Signedness};
use crate::bf16::bf16_to_f32_bits;
use crate::fp::fma_step;

/// One dword lane of VDPBF16PS on bit patterns: `a` is the lane's bf16 pair
/// of src1 (`[low = element 2i, high = element 2i+1]`), `b` the pair of
/// src2, `acc` the srcdest lane.
///
/// Order (docs/NUMERICS.md, VDPBF16PS; it matches the SDM pseudocode):
/// `acc = fma(a[1], b[1], acc)` (odd/high pair first), then
/// `acc = fma(a[0], b[0], acc)`, each an exact FMA with one rounding,
/// DAZ on every input including `acc`, FTZ after rounding, RNE, overflow to
/// infinity ([`fma_step`]).
///
/// NaN priority. docs/NUMERICS.md gives it as "src1 low, src2 low, src1
/// high, src2 high, then the accumulator". We read "low"/"high" as the
/// halves of the dword, i.e. the even element (index 0 here) and the odd
/// one (index 1). That list is exactly what two chained [`fma_step`]s give
/// when each step prefers its own A, then its own B, then the incoming
/// accumulator: the second (low) step's factors beat whatever the first
/// (high) step produced, and that step's factors beat the original `acc`.
/// So no special NaN code is needed here, and the same step function
/// serves both instructions. Invalid operations (inf*0, inf-inf) produce
/// the default NaN 0xFFC00000 only when the step that meets them has no
/// NaN operand, so e.g. a NaN in `acc` survives an `inf*0` in the high
/// pair (our reading; docs/NUMERICS.md lists only NaN operands), and a
/// default NaN made by the high step is replaced by a NaN factor in the
/// low pair.
pub fn vdpbf16ps_bits(acc: u32, a: [u16; 2], b: [u16; 2]) -> u32 {
    let high = fma_step(acc, bf16_to_f32_bits(a[1]), bf16_to_f32_bits(b[1]));
    fma_step(high, bf16_to_f32_bits(a[0]), bf16_to_f32_bits(b[0]))
}

/// One dword lane of VDPBF16PS: [`vdpbf16ps_bits`] on `f32` values.
pub fn vdpbf16ps(acc: f32, a: [u16; 2], b: [u16; 2]) -> f32 {
    f32::from_bits(vdpbf16ps_bits(acc.to_bits(), a, b))
}

/// One dword lane of VPDPBUSD: `acc + sum a[i] * b[i]` with `a` (src1)
/// bytes unsigned and `b` (src2) bytes signed, wrapping modulo 2^32
/// (docs/NUMERICS.md, "Integer dot products"). This is the non-saturating
/// form; VPDPBUSDS saturates and is a different instruction.
pub fn vpdpbusd(acc: i32, a: [u8; 4], b: [u8; 4]) -> i32 {
    let mut sum = acc;
    for i in 0..4 {
        sum = sum.wrapping_add(byte_value(a[i], false) * byte_value(b[i], true));
    }
    sum
}

/// The AMX signedness that VPDPBUSD's operand order corresponds to
/// (A unsigned, B signed), for drivers that emulate TDPBUSD with it.
pub const VPDPBUSD_SIGNEDNESS: Int8Signedness = Int8Signedness::US;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amx::{tdpb_dot, tdpbf16ps_bits};
    use crate::fp::DEFAULT_NAN;

    const ONE: u16 = 0x3F80;
    const M: u16 = 0x4B80; // 2^24
    const NEG_M: u16 = 0xCB80;
    const INF: u16 = 0x7F80;

    #[test]
    fn odd_pair_first() {
        // acc = 1; high product 2^24 first swamps the 1: 2^24, then -2^24
        // gives 0. Even-first would keep the 1 (1 - 2^24 is exact).
        assert_eq!(vdpbf16ps(1.0, [NEG_M, M], [ONE, ONE]), 0.0);
        // Swapping the pairs keeps the 1: 1 - 2^24 is exact, + 2^24 is 1.
        assert_eq!(vdpbf16ps(1.0, [M, NEG_M], [ONE, ONE]), 1.0);
    }

    #[test]
    fn differs_from_amx_order() {
        // AMX: t = 2^24 + (-2^24) = 0 first, then C + 0 = 1.
        // AVX-512: (1 + 2^24) -> 2^24, then - 2^24 = 0.
        let a = [NEG_M, M];
        let b = [ONE, ONE];
        assert_eq!(tdpbf16ps_bits(0x3F80_0000, &a, &b), 0x3F80_0000);
        assert_eq!(vdpbf16ps_bits(0x3F80_0000, a, b), 0);
    }

    #[test]
    fn daz_on_acc_and_ftz() {
        // Subnormal acc reads as +0; product 1*1.
        assert_eq!(vdpbf16ps_bits(0x0000_0001, [ONE, 0], [ONE, 0]), 0x3F80_0000);
        // Subnormal negative acc + -0 products: -0 + -0 = -0 throughout.
        assert_eq!(vdpbf16ps_bits(0x8000_0001, [0x8000, 0x8000], [ONE, ONE]), 0x8000_0000);
        // FTZ corner: 2^-126 in acc, high product -3 * 2^-152: flushed to
        // +0; low product 0.
        let acc = 0x0080_0000;
        assert_eq!(vdpbf16ps_bits(acc, [0, 0x9A40], [0, 0x1980]), 0);
        assert_eq!(vdpbf16ps_bits(acc, [0, 0x9A00], [0, 0x1980]), 0x0080_0000);
    }

    #[test]
    fn nan_priority_list() {
        let s1_lo = 0x7F81;
        let s2_lo = 0x7F82;
        let s1_hi = 0x7F83;
        let s2_hi = 0x7F84;
        let acc_nan = 0x7F80_0005;
        let r = |acc, a, b| vdpbf16ps_bits(acc, a, b);
        assert_eq!(r(acc_nan, [s1_lo, s1_hi], [s2_lo, s2_hi]), 0x7FC1_0000);
        assert_eq!(r(acc_nan, [ONE, s1_hi], [s2_lo, s2_hi]), 0x7FC2_0000);
        assert_eq!(r(acc_nan, [ONE, s1_hi], [ONE, s2_hi]), 0x7FC3_0000);
        assert_eq!(r(acc_nan, [ONE, ONE], [ONE, s2_hi]), 0x7FC4_0000);
        assert_eq!(r(acc_nan, [ONE, ONE], [ONE, ONE]), 0x7FC0_0005);
        // Invalid operations.
        assert_eq!(r(0, [INF, 0], [0, 0]), DEFAULT_NAN);
        assert_eq!(r(0, [0, INF], [0, 0]), DEFAULT_NAN);
        assert_eq!(r(0xFF80_0000, [0, INF], [0, ONE]), DEFAULT_NAN);
        // Our reading where docs/NUMERICS.md is silent: a NaN operand of
        // a step beats that step's invalid operation; a later NaN factor
        // beats an earlier default NaN.
        assert_eq!(r(acc_nan, [0, INF], [0, 0]), 0x7FC0_0005);
        assert_eq!(r(0, [s1_lo, INF], [ONE, 0]), 0x7FC1_0000);
        assert_eq!(r(0, [INF, s1_hi], [0, ONE]), 0x7FC3_0000);
    }

    #[test]
    fn vpdpbusd_is_unsigned_times_signed_wrapping() {
        assert_eq!(vpdpbusd(0, [255; 4], [0x80; 4]), -4 * 255 * 128);
        assert_eq!(vpdpbusd(0, [255; 4], [0x7F; 4]), 4 * 255 * 127);
        assert_eq!(vpdpbusd(i32::MAX, [1, 0, 0, 0], [1, 0, 0, 0]), i32::MIN);
        assert_eq!(vpdpbusd(i32::MIN, [1, 0, 0, 0], [0xFF, 0, 0, 0]), i32::MAX);
        let (a, b) = ([0x80, 0x7F, 0xFF, 0x01], [0x80, 0xFF, 0x7F, 0x01]);
        assert_eq!(vpdpbusd(7, a, b), tdpb_dot(VPDPBUSD_SIGNEDNESS, 7, &a, &b));
    }
}
