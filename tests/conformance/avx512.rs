//! The AVX-512 instructions through the std intrinsics: VDPBF16PS (with
//! [`run_vdp`], which checks lanes against the oracle 16 per instruction),
//! VCVTNEPS2BF16 and VPDPBUSD.

use std::arch::x86_64::*;
use std::mem::transmute;

use tilejit_verify::vdpbf16ps_bits;

use crate::report::Family;

/// VDPBF16PS on 16 dword lanes: lane i has src1 pair `a[2i]` (low/even),
/// `a[2i+1]` (high/odd), src2 pair `b[..]`, accumulator `acc[i]`.
///
/// # Safety
/// The CPU must support AVX512F, AVX512BW and AVX512_BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn hw_vdpbf16ps(acc: [u32; 16], a: [u16; 32], b: [u16; 32]) -> [u32; 16] {
    let src: __m512 = transmute(acc);
    let a: __m512bh = transmute(a);
    let b: __m512bh = transmute(b);
    transmute(_mm512_dpbf16_ps(src, a, b))
}

/// VCVTNEPS2BF16 on 16 f32 lanes (given as bits).
///
/// # Safety
/// The CPU must support AVX512F, AVX512BW and AVX512_BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub unsafe fn hw_vcvtneps2bf16(x: [u32; 16]) -> [u16; 16] {
    let x: __m512 = transmute(x);
    transmute(_mm512_cvtneps_pbh(x))
}

/// VPDPBUSD: a (src1) bytes unsigned, b (src2) bytes signed.
///
/// # Safety
/// The CPU must support AVX512F, AVX512BW and AVX512_VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn hw_vpdpbusd(acc: [i32; 16], a: [u8; 64], b: [u8; 64]) -> [i32; 16] {
    let src: __m512i = transmute(acc);
    let a: __m512i = transmute(a);
    let b: __m512i = transmute(b);
    transmute(_mm512_dpbusd_epi32(src, a, b))
}

/// One VDPBF16PS lane's inputs.
#[derive(Clone, Copy)]
pub struct VdpLane {
    pub acc: u32,
    pub a: [u16; 2],
    pub b: [u16; 2],
}

pub fn vdp(acc: u32, a: [u16; 2], b: [u16; 2]) -> VdpLane {
    VdpLane { acc, a, b }
}

/// Runs lanes 16 per instruction and checks each against
/// `vdpbf16ps_bits`. Caller has checked AVX512_BF16.
pub fn run_vdp(fam: &mut Family, lanes: &[VdpLane], label: &str) -> Vec<u32> {
    let mut out = Vec::with_capacity(lanes.len());
    for chunk in lanes.chunks(16) {
        let at = |i: usize| chunk[i % chunk.len()];
        let acc = std::array::from_fn(|i| at(i).acc);
        let a = std::array::from_fn(|i| at(i / 2).a[i % 2]);
        let b = std::array::from_fn(|i| at(i / 2).b[i % 2]);
        // SAFETY: the caller checked avx512f/bw/bf16 (features_or_skip).
        let hw = unsafe { hw_vdpbf16ps(acc, a, b) };
        for (i, l) in chunk.iter().enumerate() {
            let expected = vdpbf16ps_bits(l.acc, l.a, l.b);
            fam.check(expected, hw[i], || {
                format!(
                    "VDPBF16PS [{label}] acc={:#010x} src1=[lo {:04x}, hi {:04x}] src2=[lo {:04x}, hi {:04x}]",
                    l.acc, l.a[0], l.a[1], l.b[0], l.b[1]
                )
            });
            out.push(hw[i]);
        }
    }
    out
}
