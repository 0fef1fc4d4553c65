//! The AMX quantized prefill kernels (`gemm::gemm_quant_amx`: each block of
//! the GGUF-sized panel layout widened to an s8 tile, TDPBSSD), all three
//! weight formats, against the oracle's `gemm_quant` bit for bit:
//! any M (row groups and their tails), any N (panel tails), K a multiple
//! of 32 (odd and even block counts: the kernel pipelines blocks in pairs),
//! 1/2/3 threads, block contents from zero to the largest codes, scales
//! zero / subnormal / random, and non-finite scales (NaN as NaN).

mod common;

use common::features_or_skip;
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::gemm::{gemm_quant_amx, quantize_activations, reference_types, GemmError, ShapeError};
use tilejit::kernels::quant_amx::{AmxActivations, PackedQuant, WeightFormat, FEATURES};
use tilejit::kernels::quant_avx512::{ActivationFormat, QuantActivations, QuantPackError};
use tilejit_verify::quant::gemm_quant;
use tilejit_verify::strategies::standard_normal;

const FORMATS: [WeightFormat; 3] = [WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q8_0];

/// A finite f16 scale: random (|d| < 64), zero, or subnormal, either sign.
fn scale_bits(rng: &mut StdRng, style: u8) -> u16 {
    let sign = if rng.random() { 0x8000 } else { 0 };
    match style % 3 {
        0 => sign | rng.random_range(0..=20u16) << 10 | rng.random_range(0..0x400u16),
        1 => sign,
        _ => sign | rng.random_range(1..0x400u16),
    }
}

/// `n` GGUF rows of `k` in `f`, blocks built from raw fields: codes random,
/// extreme (0/15 or -128/127), all equal, or zero; scales by `style`.
fn weight_rows(f: WeightFormat, n: usize, k: usize, style: u8, rng: &mut StdRng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n * k / 32 {
        let content = rng.random_range(0..4);
        let (lo, hi) = if f == WeightFormat::Q8_0 { (-128i32, 127) } else { (0, 15) };
        let one = if rng.random() { lo } else { hi };
        let codes: [i32; 32] = std::array::from_fn(|_| match content {
            0 => rng.random_range(lo..=hi),
            1 => {
                if rng.random() {
                    lo
                } else {
                    hi
                }
            }
            2 => one,
            _ => 0,
        });
        out.extend_from_slice(&scale_bits(rng, style).to_le_bytes());
        if f == WeightFormat::Q4_1 {
            out.extend_from_slice(&scale_bits(rng, style).to_le_bytes());
        }
        match f {
            WeightFormat::Q8_0 => out.extend(codes.iter().map(|&q| q as i8 as u8)),
            _ => out.extend((0..16).map(|j| codes[j] as u8 | (codes[j + 16] as u8) << 4)),
        }
    }
    out
}

fn activations(f: WeightFormat, m: usize, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let x: Vec<f32> = (0..m * k).map(|_| standard_normal(rng) as f32 * rng.random_range(0.01f32..10.0)).collect();
    quantize_activations(f.activations(), &x)
}

/// Runs the AMX path and the oracle; returns (got, want).
#[allow(clippy::too_many_arguments)]
fn both(
    f: WeightFormat,
    m: usize,
    n: usize,
    k: usize,
    w: &[u8],
    a: &[u8],
    threads: usize,
    tile_rows: u8,
) -> (Vec<f32>, Vec<f32>) {
    let (wt, at) = reference_types(f);
    let mut want = vec![0f32; m * n];
    gemm_quant(wt, at, m, n, k, a, w, &mut want).unwrap();
    let packed = PackedQuant::from_gguf(f, w, n, k).unwrap();
    let split = QuantActivations::from_gguf(f.activations(), a, m, k).unwrap();
    let sums: &[f32] = if f.has_min() { split.sums() } else { &[] };
    let acts = AmxActivations::new(m, k, split.quants(), split.scales(), sums).unwrap();
    let mut got = vec![f32::NAN; m * n];
    gemm_quant_amx(&packed, &acts, &mut got, n, threads, tile_rows).unwrap();
    (got, want)
}

/// Bits equal, except that NaN matches NaN (the oracle leaves the NaN
/// pattern undefined).
fn first_mismatch(got: &[f32], want: &[f32]) -> Option<usize> {
    got.iter().zip(want).position(|(g, w)| if w.is_nan() { !g.is_nan() } else { g.to_bits() != w.to_bits() })
}

fn runnable(test: &str) -> bool {
    features_or_skip(test, FEATURES)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn amx_matches_the_oracle(
        m in 1usize..60, n in 1usize..90, kb in 1usize..12, fi in 0usize..3,
        style in 0u8..3, tile_rows in prop::sample::select(vec![1u8, 5, 12, 13]), seed in any::<u64>(),
    ) {
        if !runnable("quant_amx") { return Ok(()); }
        let (f, k) = (FORMATS[fi], kb * 32);
        let mut rng = StdRng::seed_from_u64(seed);
        let w = weight_rows(f, n, k, style, &mut rng);
        let a = activations(f, m, k, &mut rng);
        for threads in [1, 2, 3] {
            let (got, want) = both(f, m, n, k, &w, &a, threads, tile_rows);
            if let Some(i) = first_mismatch(&got, &want) {
                prop_assert!(false, "{f:?} {m}x{n}x{k} tile rows {tile_rows}, {threads} threads: \
                    C[{i}] = {:#x}, oracle {:#x}", got[i].to_bits(), want[i].to_bits());
            }
        }
    }
}

/// Infinite and NaN weight scales and poisoned activation blocks.
#[test]
fn non_finite_scales_propagate_like_the_oracle() {
    if !runnable("quant_amx non-finite") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(7);
    let (m, n, k) = (30, 40, 7 * 32);
    for f in FORMATS {
        let mut w = weight_rows(f, n, k, 0, &mut rng);
        let block = w.len() / (n * k / 32);
        for _ in 0..10 {
            let at = rng.random_range(0..n * k / 32) * block + 2 * rng.random_range(0..1 + usize::from(f.has_min()));
            let bits: u16 = [0x7E00, 0xFE01, 0x7C00, 0xFC00, 0x7BFF][rng.random_range(0..5)];
            w[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        }
        let mut x: Vec<f32> = (0..m * k).map(|_| standard_normal(&mut rng) as f32).collect();
        x[rng.random_range(0..k)] = 1e30; // an activation scale that overflows f16
        x[(m - 1) * k + 5] = f32::NAN; // a poisoned block
        let a = quantize_activations(f.activations(), &x);
        let (got, want) = both(f, m, n, k, &w, &a, 2, 12);
        assert!(want.iter().any(|v| v.is_nan()) && want.iter().any(|v| v.is_infinite()));
        assert_eq!(first_mismatch(&got, &want), None, "{f:?}");
    }
}

#[test]
fn bad_shapes_are_typed_errors() {
    let w = weight_rows(WeightFormat::Q8_0, 3, 64, 0, &mut StdRng::seed_from_u64(1));
    let packed = PackedQuant::from_gguf(WeightFormat::Q8_0, &w, 3, 64).unwrap();
    let acts = AmxActivations::new(2, 64, &[0; 128], &[0.0; 4], &[]).unwrap();
    let short = AmxActivations::new(2, 32, &[0; 64], &[0.0; 2], &[]).unwrap();
    let mut c = vec![0f32; 6];
    assert!(matches!(gemm_quant_amx(&packed, &acts, &mut c, 3, 0, 12), Err(GemmError::Threads)));
    let short_c = ShapeError::Short { what: "C", len: 5, rows: 2, row: 3, stride: 3 };
    assert!(matches!(gemm_quant_amx(&packed, &acts, &mut c[..5], 3, 1, 12), Err(GemmError::Shape(e)) if e == short_c));
    let inner = ShapeError::InnerDim { a_k: 32, w_k: 64 };
    assert!(matches!(gemm_quant_amx(&packed, &short, &mut c, 3, 1, 12), Err(GemmError::Shape(e)) if e == inner));
    assert!(matches!(gemm_quant_amx(&packed, &acts, &mut c, 3, 1, 17), Err(GemmError::Quant(_))));
    let w41 = weight_rows(WeightFormat::Q4_1, 3, 64, 0, &mut StdRng::seed_from_u64(2));
    let p41 = PackedQuant::from_gguf(WeightFormat::Q4_1, &w41, 3, 64).unwrap();
    // Activations without sums are Q8_0 ones; Q4_1 weights need Q8_1.
    let err = gemm_quant_amx(&p41, &acts, &mut c, 3, 1, 12).unwrap_err();
    assert!(
        matches!(
            err,
            GemmError::Quant(QuantPackError::UnsupportedPair {
                weights: WeightFormat::Q4_1,
                activations: ActivationFormat::Q8_0
            })
        ),
        "{err:?}"
    );
    assert!(AmxActivations::new(2, 64, &[0; 127], &[0.0; 4], &[]).is_err());
}
