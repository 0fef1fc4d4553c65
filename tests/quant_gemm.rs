//! The quantized GEMM driver (`gemm::gemm_quant_avx512`): Q8_0 x Q8_0,
//! Q4_0 x Q8_0 and Q4_1 x Q8_1, any M (row groups of 4), any N, K any
//! multiple of 32 (odd block counts included), 1/2/3/7 threads, equal to
//! the oracle's `gemm_quant` bit for bit (NaN as NaN); typed errors.

mod common;

use common::avx512_or_skip;
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::gemm::{gemm_quant_avx512, quantize_activations, quantize_weights, reference_types, GemmError};
use tilejit::isa::Op;
use tilejit::kernels::quant_avx512::{ActivationFormat, PackedQuant, QuantActivations, QuantPackError, WeightFormat};
use tilejit_verify::quant::{gemm_quant, quantize_row_q4_1, quantize_row_q8_0, quantize_row_q8_1, BlockType};
use tilejit_verify::strategies::standard_normal;

fn normal_rows(rng: &mut StdRng, len: usize, scale: f64) -> Vec<f32> {
    (0..len).map(|_| (standard_normal(rng) * scale) as f32).collect()
}

/// GGUF weight and activation bytes and the oracle's block types for `format`.
fn quantize(format: WeightFormat, w: &[f32], a: &[f32]) -> (Vec<u8>, Vec<u8>, BlockType, BlockType) {
    let (wt, at) = reference_types(format);
    (quantize_weights(format, w), quantize_activations(format.activations(), a), wt, at)
}

fn first_mismatch(want: &[f32], got: &[f32]) -> Option<usize> {
    want.iter().zip(got).position(|(e, g)| e.to_bits() != g.to_bits() && !(e.is_nan() && g.is_nan()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn driver_matches_the_oracle(
        m in 1usize..10,
        n in 1usize..300,
        kb in 1usize..40,
        fi in 0usize..3,
        poison in any::<bool>(),
        seed in any::<u64>(),
    ) {
        if !avx512_or_skip("quant_gemm", Op::Quant) { return Ok(()); }
        let (format, k) = (WeightFormat::ALL[fi], kb * 32);
        let mut rng = StdRng::seed_from_u64(seed);
        let w_f = normal_rows(&mut rng, n * k, 0.05);
        let mut a_f = normal_rows(&mut rng, m * k, 1.0);
        if poison {
            // A NaN activation poisons its block (NaN d and s): NaN outputs in that row.
            a_f[rng.random_range(0..m * k)] = f32::NAN;
        }
        let (w_bytes, a_bytes, wt, at) = quantize(format, &w_f, &a_f);
        let w = PackedQuant::from_gguf(format, &w_bytes, n, k).unwrap();
        let a = QuantActivations::from_gguf(format.activations(), &a_bytes, m, k).unwrap();
        let mut expected = vec![0f32; m * n];
        gemm_quant(wt, at, m, n, k, &a_bytes, &w_bytes, &mut expected).unwrap();
        for threads in [1, 2, 3, 7] {
            let mut c = vec![f32::from_bits(0x7FC0_DEAD); m * n];
            gemm_quant_avx512(&w, &a, &mut c, n, threads).unwrap();
            let first = first_mismatch(&expected, &c);
            prop_assert!(first.is_none(), "{format:?} {m}x{n}x{k}, {threads} threads: C[{}] = {:#x}, oracle {:#x}",
                first.unwrap(), c[first.unwrap()].to_bits(), expected[first.unwrap()].to_bits());
        }
    }
}

/// Larger N with many units per thread (dynamic hand-out), every format.
#[test]
fn many_panels_many_threads() {
    if !avx512_or_skip("quant_gemm many panels", Op::Quant) {
        return;
    }
    let mut rng = StdRng::seed_from_u64(77);
    for format in WeightFormat::ALL {
        let (m, n, k) = (5, 16 * 97 + 3, 32 * 13);
        let (w_bytes, a_bytes, wt, at) =
            quantize(format, &normal_rows(&mut rng, n * k, 0.05), &normal_rows(&mut rng, m * k, 1.0));
        let w = PackedQuant::from_gguf(format, &w_bytes, n, k).unwrap();
        let a = QuantActivations::from_gguf(format.activations(), &a_bytes, m, k).unwrap();
        let mut expected = vec![0f32; m * n];
        gemm_quant(wt, at, m, n, k, &a_bytes, &w_bytes, &mut expected).unwrap();
        for threads in [1, 2, 3, 7] {
            let mut c = vec![f32::NAN; m * n];
            gemm_quant_avx512(&w, &a, &mut c, n, threads).unwrap();
            if let Some(i) = first_mismatch(&expected, &c) {
                panic!(
                    "{format:?} {m}x{n}x{k}, {threads} threads: C[{i}] = {:#x}, oracle {:#x}",
                    c[i].to_bits(),
                    expected[i].to_bits()
                );
            }
        }
    }
}

#[test]
fn bad_shapes_and_pairs_are_typed_errors() {
    let (n, k) = (20, 64);
    let w = PackedQuant::from_q8_0(&quantize_row_q8_0(&vec![0.5; n * k]), n, k).unwrap();
    let a = QuantActivations::from_q8_0(&quantize_row_q8_0(&vec![1.0; 2 * k]), 2, k).unwrap();
    let mut c = vec![0f32; 2 * n];
    assert!(matches!(gemm_quant_avx512(&w, &a, &mut c, n, 0), Err(GemmError::Threads)));
    assert!(matches!(gemm_quant_avx512(&w, &a, &mut c[..2 * n - 1], n, 1), Err(GemmError::Shape(_))));
    let short = QuantActivations::from_q8_0(&quantize_row_q8_0(&[1.0; 32]), 1, 32).unwrap();
    let err = gemm_quant_avx512(&w, &short, &mut c[..n], n, 1).unwrap_err();
    assert!(err.to_string().contains("weights have k = 64"), "{err}");
    // Q4_1 weights need Q8_1 activations; Q8_0 / Q4_0 weights need Q8_0.
    let w41 = PackedQuant::from_q4_1(&quantize_row_q4_1(&vec![0.5; n * k]), n, k).unwrap();
    let a81 = QuantActivations::from_q8_1(&quantize_row_q8_1(&vec![1.0; 2 * k]), 2, k).unwrap();
    for (w, a, af) in [(&w41, &a, ActivationFormat::Q8_0), (&w, &a81, ActivationFormat::Q8_1)] {
        let err = gemm_quant_avx512(w, a, &mut c, n, 1).unwrap_err();
        assert!(
            matches!(err, GemmError::Quant(QuantPackError::UnsupportedPair { weights, activations })
                if weights == w.format() && activations == af),
            "{err}"
        );
    }
}

/// The public entry `gemm_quant` refuses bad input with a typed error on
/// every path it can take (scalar, AVX-512, AMX), never a panic.
#[test]
fn gemm_quant_errors_on_every_path() {
    use tilejit::gemm::{gemm_quant, GemmOptions, QuantWeights};
    use tilejit::isa::Isa;
    let (n, k) = (20, 64);
    let w41 = QuantWeights::from_gguf(WeightFormat::Q4_1, &quantize_row_q4_1(&vec![0.5; n * k]), n, k).unwrap();
    let w80 = QuantWeights::from_gguf(WeightFormat::Q8_0, &quantize_row_q8_0(&vec![0.5; n * k]), n, k).unwrap();
    let a80 = QuantActivations::from_q8_0(&quantize_row_q8_0(&vec![1.0; 2 * k]), 2, k).unwrap();
    let short = QuantActivations::from_q8_0(&quantize_row_q8_0(&[1.0; 32]), 1, 32).unwrap();
    for isa in [Isa::Scalar, Isa::Avx512, Isa::Amx] {
        let opts = common::options("gemm_quant_errors_on_every_path", isa, Op::Quant);
        let mut c = vec![0f32; 2 * n];
        let pair = gemm_quant(&w41, &a80, &mut c, n, &opts).unwrap_err();
        assert!(matches!(pair, GemmError::Quant(QuantPackError::UnsupportedPair { .. })), "{isa}: {pair}");
        let kk = gemm_quant(&w80, &short, &mut c[..n], n, &opts).unwrap_err();
        assert!(matches!(kk, GemmError::Shape(_)), "{isa}: {kk}");
        let len = gemm_quant(&w80, &a80, &mut c[..2 * n - 1], n, &opts).unwrap_err();
        assert!(matches!(len, GemmError::Shape(_)), "{isa}: {len}");
        let zero = GemmOptions { threads: 0, ..opts };
        assert!(matches!(gemm_quant(&w80, &a80, &mut c, n, &zero), Err(GemmError::Threads)), "{isa}");
        gemm_quant(&w80, &a80, &mut c, n, &opts).unwrap();
    }
    assert!(QuantWeights::from_gguf(WeightFormat::Q8_0, &[0; 33], 1, 32).is_err());
    assert!(QuantWeights::from_gguf(WeightFormat::Q8_0, &[0; 34], 1, 33).is_err());
}
