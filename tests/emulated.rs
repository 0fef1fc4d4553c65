//! Every kernel family's generated code, run under the emulator
//! (`Execution::Emulated`) through the public API, against the oracle,
//! bit for bit: on any x86-64, with or without AVX-512 or AMX.

use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::emulate::{emulated_instructions, Execution};
use tilejit::gemm::{gemm_bf16, gemm_int8, oracle_sign, GemmOptions};
use tilejit::isa::Isa;
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::Int8Sign;
use tilejit_verify::{fill_bf16, first_mismatch_f32, first_mismatch_i32, gemm_bf16_amx, gemm_i8, Bf16Dist};

fn emulated(isa: Isa, threads: usize) -> GemmOptions {
    GemmOptions { isa: Some(isa), execution: Execution::Emulated, threads, ..GemmOptions::DEFAULT }
}

#[test]
fn dense_kernels_match_the_oracle_emulated() {
    let mut rng = StdRng::seed_from_u64(1);
    let before = emulated_instructions();
    for isa in [Isa::Amx, Isa::Avx512] {
        for &(m, n, k) in &[(1, 1, 1), (5, 17, 33), (33, 40, 70), (17, 50, 130)] {
            for sign in [Int8Sign::SS, Int8Sign::US] {
                let a: Vec<u8> = (0..m * k).map(|_| rng.random()).collect();
                let b: Vec<u8> = (0..k * n).map(|_| rng.random()).collect();
                let packed = PackedB::pack_int8(&b, k, n, n, BLayout::default()).unwrap();
                let mut want = vec![0i32; m * n];
                gemm_i8(oracle_sign(sign), m, n, k, &a, &b, &mut want);
                let mut got = vec![0i32; m * n];
                gemm_int8(sign, m, &a, k, &packed, &mut got, n, false, &emulated(isa, 2)).unwrap();
                assert_eq!(first_mismatch_i32(&want, &got), None, "{isa} int8 {sign:?} {m}x{n}x{k}");
            }
            let mut a = vec![0u16; m * k];
            let mut b = vec![0u16; k * n];
            fill_bf16(Bf16Dist::Normal, &mut rng, &mut a);
            fill_bf16(Bf16Dist::Normal, &mut rng, &mut b);
            let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default()).unwrap();
            let mut want = vec![0f32; m * n];
            gemm_bf16_amx(m, n, k, &a, &b, &mut want, packed.k_groups_per_tdp() as usize);
            let mut got = vec![0f32; m * n];
            gemm_bf16(m, &a, k, &packed, &mut got, n, false, &emulated(isa, 1)).unwrap();
            assert_eq!(first_mismatch_f32(&want, &got), None, "{isa} bf16 {m}x{n}x{k}");
        }
    }
    println!("emulated {} instructions", emulated_instructions() - before);
}

#[test]
fn bf16_dot_kernels_match_the_oracle_emulated() {
    let mut rng = StdRng::seed_from_u64(2);
    for &(m, n, k) in &[(1, 5, 3), (4, 33, 64), (9, 20, 77)] {
        let mut a = vec![0u16; m * k];
        let mut b = vec![0u16; k * n];
        fill_bf16(Bf16Dist::Specials, &mut rng, &mut a);
        fill_bf16(Bf16Dist::Normal, &mut rng, &mut b);
        let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default()).unwrap();
        let kp = k.next_multiple_of(2 * usize::from(packed.k_groups_per_tdp()));
        let pad = |v: &[u16], rows: usize, cols: usize, rows_are_k: bool| -> Vec<u16> {
            // Zero padding of K: (rows x kp) for A, (kp x cols) for B.
            if rows_are_k {
                let mut out = vec![0u16; kp * cols];
                out[..rows * cols].copy_from_slice(v);
                out
            } else {
                let mut out = vec![0u16; rows * kp];
                for r in 0..rows {
                    out[r * kp..r * kp + cols].copy_from_slice(&v[r * cols..(r + 1) * cols]);
                }
                out
            }
        };
        let mut want = vec![0.5f32; m * n];
        tilejit_verify::gemm_bf16_vdpbf16ps(m, n, kp, &pad(&a, m, k, false), &pad(&b, k, n, true), &mut want);
        let mut got = vec![0.5f32; m * n];
        tilejit::gemm::gemm_bf16_dot(m, &a, k, &packed, &mut got, n, true, &emulated(Isa::Avx512, 2)).unwrap();
        assert_eq!(first_mismatch_f32(&want, &got), None, "bf16 dot {m}x{n}x{k}");
    }
}

#[test]
fn quantized_kernels_match_the_oracle_emulated() {
    use tilejit::gemm::{gemm_quant, quantize_activations, quantize_weights, reference_types, QuantWeights};
    use tilejit::kernels::quant_avx512::{QuantActivations, WeightFormat};
    let mut rng = StdRng::seed_from_u64(3);
    for format in WeightFormat::ALL {
        for &(m, n, k) in &[(1, 20, 64), (3, 40, 96), (13, 33, 160), (30, 17, 64)] {
            let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2f32..2.0)).collect();
            let (w_bytes, a_bytes) = (quantize_weights(format, &w), quantize_activations(format.activations(), &x));
            let (wt, at) = reference_types(format);
            let mut want = vec![0f32; m * n];
            tilejit_verify::quant::gemm_quant(wt, at, m, n, k, &a_bytes, &w_bytes, &mut want).unwrap();
            let qw = QuantWeights::from_gguf(format, &w_bytes, n, k).unwrap();
            let qa = QuantActivations::from_gguf(format.activations(), &a_bytes, m, k).unwrap();
            for isa in [Isa::Avx512, Isa::Amx] {
                let mut got = vec![f32::NAN; m * n];
                gemm_quant(&qw, &qa, &mut got, n, &emulated(isa, 2)).unwrap();
                assert_eq!(first_mismatch_f32(&want, &got), None, "{isa} {format:?} {m}x{n}x{k}");
            }
        }
    }
}
