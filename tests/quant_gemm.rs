//! The quantized GEMM driver (`gemm::gemm_q8`): any M (row groups of 4),
//! any N, 1/2/3/7 threads, equal to the oracle's `gemm_quant` bit for bit.

mod common;

use common::avx512_or_skip;
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};
use tilejit::gemm::{gemm_q8, GemmError};
use tilejit::kernels::quant_avx512::{PackedQ8, Q8Activations};
use tilejit_verify::quant::{gemm_quant, quantize_row_q4_0, quantize_row_q8_0, BlockType};
use tilejit_verify::strategies::standard_normal;

fn normal_rows(rng: &mut StdRng, len: usize, scale: f64) -> Vec<f32> {
    (0..len).map(|_| (standard_normal(rng) * scale) as f32).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn driver_matches_the_oracle(m in 1usize..10, n in 1usize..300, kb in 1usize..40, q4 in any::<bool>(), seed in any::<u64>()) {
        if !avx512_or_skip("quant_gemm", false, true) { return Ok(()); }
        let k = kb * 32;
        let mut rng = StdRng::seed_from_u64(seed);
        let w_f = normal_rows(&mut rng, n * k, 0.05);
        let a_f = normal_rows(&mut rng, m * k, 1.0);
        let (wt, w_bytes) = if q4 { (BlockType::Q4_0, quantize_row_q4_0(&w_f)) } else { (BlockType::Q8_0, quantize_row_q8_0(&w_f)) };
        let a_bytes = quantize_row_q8_0(&a_f);
        let w = if q4 { PackedQ8::from_q4_0(&w_bytes, n, k) } else { PackedQ8::from_q8_0(&w_bytes, n, k) }.unwrap();
        let a = Q8Activations::from_q8_0(&a_bytes, m, k).unwrap();
        let mut expected = vec![0f32; m * n];
        gemm_quant(wt, BlockType::Q8_0, m, n, k, &a_bytes, &w_bytes, &mut expected).unwrap();
        for threads in [1, 2, 3, 7] {
            let mut c = vec![f32::NAN; m * n];
            gemm_q8(&w, &a, &mut c, threads).unwrap();
            let first = expected.iter().zip(&c).position(|(e, g)| e.to_bits() != g.to_bits());
            prop_assert!(first.is_none(), "{wt:?} {m}x{n}x{k}, {threads} threads: C[{}] = {:#x}, oracle {:#x}",
                first.unwrap(), c[first.unwrap()].to_bits(), expected[first.unwrap()].to_bits());
        }
    }
}

#[test]
fn bad_shapes_are_typed_errors() {
    let (n, k) = (20, 64);
    let w = PackedQ8::from_q8_0(&quantize_row_q8_0(&vec![0.5; n * k]), n, k).unwrap();
    let a = Q8Activations::from_q8_0(&quantize_row_q8_0(&vec![1.0; 2 * k]), 2, k).unwrap();
    let mut c = vec![0f32; 2 * n];
    assert!(matches!(gemm_q8(&w, &a, &mut c, 0), Err(GemmError::Threads)));
    assert!(matches!(gemm_q8(&w, &a, &mut c[..2 * n - 1], 1), Err(GemmError::Shape(_))));
    let short = Q8Activations::from_q8_0(&quantize_row_q8_0(&[1.0; 32]), 1, 32).unwrap();
    let err = gemm_q8(&w, &short, &mut c[..n], 1).unwrap_err();
    assert!(err.to_string().contains("weights have k = 64"), "{err}");
}
