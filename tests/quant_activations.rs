//! The runner's activation quantizer (`gemm::quant::activations`) gives the
//! oracle's Q8_0 / Q8_1 bytes bit for bit, on its AVX-512 path and on its
//! plain one, for ordinary values, ties at .5, zeros of both signs,
//! subnormals, tiny blocks whose 1/d overflows, values that overflow f16,
//! and NaN / inf blocks (poisoned).

use proptest::prelude::*;
use tilejit::cpu::{require, Feature};
use tilejit::gemm::quant::activations::{quantize_rows, quantize_rows_plain, quantize_rows_threaded};
use tilejit::kernels::quant_avx512::ActivationFormat;
use tilejit_verify::paths::report_path;
use tilejit_verify::quant::{quantize_row_q8_0, quantize_row_q8_1};

fn oracle(format: ActivationFormat, x: &[f32]) -> Vec<u8> {
    match format {
        ActivationFormat::Q8_0 => quantize_row_q8_0(x),
        ActivationFormat::Q8_1 => quantize_row_q8_1(x),
    }
}

/// Values biased to the corners: specials, subnormals, halves, extremes.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -100.0f32..100.0,
        2 => any::<u32>().prop_map(f32::from_bits),
        1 => prop::sample::select(vec![0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 127.0, 1e-45, -1e-45, 1e-40, 6.0e4, 7.0e5, 3.4e38,
            f32::MIN_POSITIVE, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]),
        1 => (-8i32..8).prop_map(|i| i as f32 * 0.5),
    ]
}

fn check(x: &[f32]) -> Result<(), TestCaseError> {
    let avx512 = require(&[Feature::Avx512F]).map_err(|m| format!("needs {m}"));
    let vector_runs = report_path("quant_activations", "avx512", avx512);
    report_path::<String>("quant_activations", "scalar", Ok(()));
    for format in [ActivationFormat::Q8_0, ActivationFormat::Q8_1] {
        let want = oracle(format, x);
        prop_assert_eq!(&quantize_rows_plain(format, x), &want, "plain {:?}", format);
        if vector_runs {
            prop_assert_eq!(&quantize_rows(format, x), &want, "avx512 {:?}", format);
        }
        // Rows of one block over 1 to 4 threads: the same bytes.
        for threads in 1..=4 {
            prop_assert_eq!(&quantize_rows_threaded(format, x, 32, threads), &want, "{} threads {:?}", threads, format);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn both_paths_give_the_oracles_bytes(x in prop::collection::vec(value(), 1..6).prop_flat_map(|v| {
        let n = v.len() * 32;
        prop::collection::vec(value(), n..=n)
    })) {
        check(&x)?;
    }

    /// Whole blocks scaled so that amax is tiny, huge or a tie-maker.
    #[test]
    fn scaled_blocks(seed in prop::collection::vec(-1.0f32..1.0, 32..=32),
                     scale in prop::sample::select(vec![1e-38f32, 1e-40, 1e-44, 1.0, 127.0, 1e5, 1e30])) {
        let x: Vec<f32> = seed.iter().map(|v| v * scale).collect();
        check(&x)?;
    }
}

#[test]
fn ties_round_away_from_zero() {
    // amax 127 gives d = 1, id = 1: q = roundf(x).
    let mut x = vec![0f32; 32];
    x[0] = 127.0;
    x[1..9].copy_from_slice(&[0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997]);
    let q = quantize_rows(ActivationFormat::Q8_0, &x);
    assert_eq!(&q[2..11], &[127, 1, (-1i8) as u8, 2, (-2i8) as u8, 3, (-3i8) as u8, 0, 0]);
    assert_eq!(q, quantize_row_q8_0(&x));
}
