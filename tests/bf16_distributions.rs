//! The bf16 GEMM equals the oracle bit for bit on more than 100,000
//! outputs for every input distribution, special values included, on AMX
//! and on AVX-512 (the scalar path is the oracle itself).

mod common;

use common::options;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::gemm::{gemm_bf16, GemmOptions};
use tilejit::isa::{Isa, Op};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit_verify::strategies::{fill_f32, random_bf16};
use tilejit_verify::{fill_bf16, first_mismatch_f32, gemm_bf16_amx, Bf16Dist};

#[test]
fn bf16_gemm_is_bit_exact_on_100k_outputs_per_distribution() {
    for isa in [Isa::Amx, Isa::Avx512] {
        every_distribution(isa, options("bf16_distributions", isa, Op::Bf16));
    }
}

fn every_distribution(isa: Isa, forced: GemmOptions) {
    // 323 x 317 = 102,391 outputs; K = 67 leaves a K tail (odd, and not a
    // whole 16-pair chunk), M and N leave tile tails.
    let (m, n, k) = (323, 317, 67);
    for (i, dist) in Bf16Dist::ALL.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(1000 + i as u64);
        let (mut a, mut b, mut c0) = (vec![0u16; m * k], vec![0u16; k * n], vec![0f32; m * n]);
        fill_bf16(dist, &mut rng, &mut a);
        fill_bf16(dist, &mut rng, &mut b);
        fill_f32(dist, &mut rng, &mut c0);
        if matches!(dist, Bf16Dist::Specials | Bf16Dist::Overflow) {
            // Dense specials or overflows saturate every output to inf/NaN
            // through K = 67 terms; sprinkle them into normal data instead,
            // so that outputs mix finite values, infinities and NaNs.
            fill_bf16(Bf16Dist::Normal, &mut rng, &mut b);
            fill_f32(Bf16Dist::Normal, &mut rng, &mut c0);
            for x in a.iter_mut() {
                if rng.random_range(0..400) != 0 {
                    *x = random_bf16(Bf16Dist::Normal, &mut rng);
                }
            }
        }
        let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default()).unwrap();
        let mut c = c0.clone();
        let opts = GemmOptions { threads: 2, ..forced };
        gemm_bf16(m, &a, k, &packed, &mut c, n, true, &opts).unwrap();
        let mut expected = c0;
        gemm_bf16_amx(m, n, k, &a, &b, &mut expected, 16);
        if let Some(mm) = first_mismatch_f32(&expected, &c) {
            let (row, col) = mm.row_col(n);
            panic!("{isa} {dist:?}: C[{row}][{col}]: {mm}");
        }
        let nans = c.iter().filter(|x| x.is_nan()).count();
        let infs = c.iter().filter(|x| x.is_infinite()).count();
        let zeros = c.iter().filter(|x| **x == 0.0).count();
        eprintln!("{isa} {dist:?}: {} outputs bit-exact ({nans} NaN, {infs} inf, {zeros} zero)", m * n);
    }
}
