//! VCVTNEPS2BF16 bit patterns: every upper half with the rounding-deciding
//! low halves, plus random denormals, NaNs and ties.

use rand::{rngs::StdRng, Rng};
use tilejit_verify::bf16::f32_bits_to_bf16;

use crate::avx512::hw_vcvtneps2bf16;
use crate::report::{Family, Kind, Report};

/// Caller has checked AVX512_BF16.
pub fn vcvtneps2bf16(report: &mut Report, rng: &mut StdRng) {
    let mut inputs: Vec<u32> = Vec::new();
    // Every upper half with the low halves that decide rounding: exact,
    // just above zero, just below the tie, the tie, just above, all ones.
    // Covers every denormal/NaN/inf class and every tie-to-even case.
    for hi in 0..=0xFFFFu32 {
        for lo in [0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF] {
            inputs.push(hi << 16 | lo);
        }
    }
    for _ in 0..500_000 {
        let x: u32 = rng.random();
        inputs.push(match rng.random_range(0..5) {
            0 => x & 0x807F_FFFF,            // denormal or zero
            1 => x | 0x7F80_0000,            // NaN (or inf) with random payload
            2 => (x & 0xFFFF_0000) | 0x8000, // tie
            _ => x,
        });
    }
    let (mut denormals, mut nans, mut ties) = (0, 0, 0);
    let mut fam = Family::new("VCVTNEPS2BF16", Kind::Bf16);
    for chunk in inputs.chunks(16) {
        let x: [u32; 16] = std::array::from_fn(|i| chunk[i % chunk.len()]);
        // SAFETY: features_or_skip checked avx512f/bw/bf16.
        let hw = unsafe { hw_vcvtneps2bf16(x) };
        for (i, &bits) in chunk.iter().enumerate() {
            denormals += usize::from(bits & 0x7F80_0000 == 0 && bits & 0x007F_FFFF != 0);
            nans += usize::from(f32::from_bits(bits).is_nan());
            ties += usize::from(bits & 0xFFFF == 0x8000 && !f32::from_bits(bits).is_nan());
            fam.check(u32::from(f32_bits_to_bf16(bits)), u32::from(hw[i]), || {
                format!("VCVTNEPS2BF16 input {bits:#010x}")
            });
        }
    }
    eprintln!("[VCVTNEPS2BF16] inputs include {denormals} denormals, {nans} NaNs, {ties} exact ties");
    report.add(fam);
}
