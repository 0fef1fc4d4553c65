//! The GGUF-row GEMM (src/gemm/rows.rs; the CPU layers of a run with GPU
//! layers) against the references, bit for bit: the quantized dot product
//! of verify/src/quant.rs and TDPBF16PS with 16 pairs per step, on every
//! thread count, with a row stride in C, and its typed refusals.

use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::gemm::quant::activations::quantize_rows_threaded;
use tilejit::gemm::rows::{gemm_rows, GgufRows, RowsFormat};
use tilejit::gemm::{bf16_from_f32, GemmError};
use tilejit::kernels::quant_avx512::WeightFormat;
use tilejit_verify::gemm::gemm_bf16_amx;
use tilejit_verify::quant::{gemm_quant, quantize_row_q4_0, quantize_row_q4_1, quantize_row_q8_0_weights, BlockType};

fn values(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect()
}

#[test]
fn gguf_rows_give_the_reference_bits() {
    let mut rng = StdRng::seed_from_u64(7);
    let (m, n, k, ldc) = (5, 37, 96, 41);
    let w = values(&mut rng, n * k, 0.2);
    let x = values(&mut rng, m * k, 3.0);
    for threads in [1, 2, 7] {
        for format in [WeightFormat::Q8_0, WeightFormat::Q4_0, WeightFormat::Q4_1] {
            let (bytes, wt) = match format {
                WeightFormat::Q8_0 => (quantize_row_q8_0_weights(&w), BlockType::Q8_0),
                WeightFormat::Q4_0 => (quantize_row_q4_0(&w), BlockType::Q4_0),
                WeightFormat::Q4_1 => (quantize_row_q4_1(&w), BlockType::Q4_1),
            };
            let at = if format == WeightFormat::Q4_1 { BlockType::Q8_1 } else { BlockType::Q8_0 };
            let a = quantize_rows_threaded(format.activations(), &x, k, 1);
            let mut want = vec![0f32; m * n];
            gemm_quant(wt, at, m, n, k, &a, &bytes, &mut want).unwrap();
            let mut c = vec![-7f32; m * ldc];
            let rows = GgufRows { format: RowsFormat::Quant(format), bytes: &bytes, n, k };
            gemm_rows(rows, &a, m, &mut c, ldc, threads).unwrap();
            for i in 0..m {
                for j in 0..ldc {
                    let got = c[i * ldc + j];
                    if j < n {
                        assert_eq!(
                            got.to_bits(),
                            want[i * n + j].to_bits(),
                            "{format:?} c[{i}][{j}], {threads} threads"
                        );
                    } else {
                        assert_eq!(got, -7.0, "padding of row {i} untouched");
                    }
                }
            }
        }
        // BF16: activations rounded as VCVTNEPS2BF16, TDPBF16PS's order.
        let wb: Vec<u16> = w.iter().map(|&v| bf16_from_f32(v)).collect();
        let ab: Vec<u16> = x.iter().map(|&v| bf16_from_f32(v)).collect();
        let mut b = vec![0u16; k * n];
        for j in 0..n {
            for p in 0..k {
                b[p * n + j] = wb[j * k + p];
            }
        }
        let mut want = vec![0f32; m * n];
        gemm_bf16_amx(m, n, k, &ab, &b, &mut want, 16);
        let bytes: Vec<u8> = wb.iter().flat_map(|v| v.to_le_bytes()).collect();
        let a: Vec<u8> = ab.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut c = vec![0f32; m * n];
        gemm_rows(GgufRows { format: RowsFormat::Bf16, bytes: &bytes, n, k }, &a, m, &mut c, n, threads).unwrap();
        for (i, (g, r)) in c.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), r.to_bits(), "bf16 c[{i}], {threads} threads");
        }
    }
}

#[test]
fn bad_shapes_are_typed_errors() {
    let bytes = vec![0u8; 18];
    let rows = |k| GgufRows { format: RowsFormat::Quant(WeightFormat::Q4_0), bytes: &bytes, n: 1, k };
    let mut c = vec![0f32; 4];
    let e = gemm_rows(rows(40), &[0; 34], 1, &mut c, 1, 1).unwrap_err();
    assert!(matches!(e, GemmError::Quant(_)) && e.to_string().contains("k = 40"), "{e}");
    let e = gemm_rows(rows(64), &[0; 68], 1, &mut c, 1, 1).unwrap_err();
    assert!(e.to_string().contains("weights (bytes): expected length 36, got 18"), "{e}");
    let e = gemm_rows(rows(32), &[0; 30], 1, &mut c, 1, 1).unwrap_err();
    assert!(e.to_string().contains("activations (bytes): expected length 34, got 30"), "{e}");
    let e = gemm_rows(rows(32), &[0; 34 * 5], 5, &mut c, 1, 1).unwrap_err();
    assert!(matches!(e, GemmError::Shape(_)), "{e}");
}
