//! The emulator checked against the CPU: every kernel family that runs
//! natively here runs again emulated on the same inputs, and the whole
//! output buffer (C with a row stride wider than N, prefilled with a
//! sentinel, so the set of bytes written is compared too) must be the same
//! bits. Paths the CPU lacks are reported as skipped: there is nothing to
//! compare the emulator with.

mod common;

use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::emulate::Execution;
use tilejit::gemm::{
    gemm_bf16, gemm_bf16_dot, gemm_int8, gemm_quant, quantize_activations, quantize_weights, GemmOptions, QuantWeights,
};
use tilejit::isa::{availability_for, Isa, Op};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::quant_avx512::{QuantActivations, WeightFormat};
use tilejit::kernels::spec::Int8Sign;
use tilejit::sparse::{gemm_sparse_bf16, gemm_sparse_i8, SparseWeights};
use tilejit_sparse::{PruneScope, Pruning};
use tilejit_verify::paths::report_path;
use tilejit_verify::{fill_bf16, Bf16Dist};

const SENTINEL: u32 = 0x7FC0_5A5A;
/// Row stride of C: wider than every N below, so writes past N show.
const LDC: usize = 71;

/// Runs `f` natively and emulated on `isa` (if the CPU runs `op` there)
/// and compares every bit of C, padding included.
fn same_bits(what: &str, isa: Isa, op: Op, m: usize, f: impl Fn(&GemmOptions, &mut [u32])) {
    if !report_path(&format!("native == emulated {op}"), isa.name(), availability_for(isa, op)) {
        return;
    }
    let mut outs = Vec::new();
    for execution in [Execution::Native, Execution::Emulated] {
        let opts = GemmOptions { isa: Some(isa), execution, threads: 2, ..GemmOptions::DEFAULT };
        let mut c = vec![SENTINEL; m * LDC];
        f(&opts, &mut c);
        outs.push(c);
    }
    if let Some(i) = outs[0].iter().zip(&outs[1]).position(|(a, b)| a != b) {
        panic!(
            "{what} on {isa}: native and emulated differ at C[{}][{}]: {:#010x} vs {:#010x}",
            i / LDC,
            i % LDC,
            outs[0][i],
            outs[1][i]
        );
    }
    assert!(outs[0].contains(&SENTINEL), "{what}: the padding must stay untouched (and be compared)");
}

fn f32s(c: &mut [u32]) -> &mut [f32] {
    // SAFETY: u32 and f32 have the same size and alignment; any bits are an f32.
    unsafe { std::slice::from_raw_parts_mut(c.as_mut_ptr().cast(), c.len()) }
}

fn i32s(c: &mut [u32]) -> &mut [i32] {
    // SAFETY: as above.
    unsafe { std::slice::from_raw_parts_mut(c.as_mut_ptr().cast(), c.len()) }
}

#[test]
fn every_family_gives_the_same_bits_natively_and_emulated() {
    let mut rng = StdRng::seed_from_u64(11);
    for &(m, n, k) in &[(1, 70, 64), (7, 33, 100), (40, 50, 96)] {
        let a8: Vec<u8> = (0..m * k).map(|_| rng.random()).collect();
        let b8: Vec<u8> = (0..k * n).map(|_| rng.random()).collect();
        let (mut a16, mut b16) = (vec![0u16; m * k], vec![0u16; k * n]);
        fill_bf16(Bf16Dist::Specials, &mut rng, &mut a16);
        fill_bf16(Bf16Dist::Specials, &mut rng, &mut b16);
        let p8 = PackedB::pack_int8(&b8, k, n, n, BLayout::default()).unwrap();
        let p16 = PackedB::pack_bf16(&b16, k, n, n, BLayout::default()).unwrap();
        let shape = format!("{m}x{n}x{k}");
        for isa in [Isa::Amx, Isa::Avx512] {
            same_bits(&format!("int8 {shape}"), isa, Op::Int8, m, |o, c| {
                gemm_int8(Int8Sign::US, m, &a8, k, &p8, i32s(c), LDC, true, o).unwrap()
            });
            same_bits(&format!("bf16 {shape}"), isa, Op::Bf16, m, |o, c| {
                gemm_bf16(m, &a16, k, &p16, f32s(c), LDC, true, o).unwrap()
            });
            let pruning = Pruning { sparsity: 0.6, scope: PruneScope::PerColumn, seed: 5 };
            let sb16 = SparseWeights::from_sparse_bf16(
                tilejit_sparse::SparseBf16::from_dense_bf16(&pruning.prune_bf16(&b16, k, n).unwrap(), k, n).unwrap(),
            );
            same_bits(&format!("sparse bf16 {shape}"), isa, Op::SparseBf16, m, |o, c| {
                gemm_sparse_bf16(m, &a16, k, &sb16, f32s(c), LDC, false, o).unwrap()
            });
            let b8s: Vec<i8> = b8.iter().map(|&v| v as i8).collect();
            let sb8 = SparseWeights::from_sparse_i8(
                tilejit_sparse::SparseI8::from_dense_i8(&pruning.prune_i8(&b8s, k, n).unwrap(), k, n).unwrap(),
            );
            let a8s: Vec<i8> = a8.iter().map(|&v| v as i8).collect();
            same_bits(&format!("sparse int8 {shape}"), isa, Op::SparseInt8, m, |o, c| {
                gemm_sparse_i8(m, &a8s, k, &sb8, i32s(c), LDC, true, o).unwrap()
            });
            if k.is_multiple_of(32) {
                for format in WeightFormat::ALL {
                    let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.2f32..0.2)).collect();
                    let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-3f32..3.0)).collect();
                    let qw = QuantWeights::from_gguf(format, &quantize_weights(format, &w), n, k).unwrap();
                    let af = format.activations();
                    let qa = QuantActivations::from_gguf(af, &quantize_activations(af, &x), m, k).unwrap();
                    same_bits(&format!("{format:?} {shape}"), isa, Op::Quant, m, |o, c| {
                        gemm_quant(&qw, &qa, f32s(c), LDC, o).unwrap()
                    });
                }
            }
        }
        same_bits(&format!("bf16 dot {shape}"), Isa::Avx512, Op::Bf16Dot, m, |o, c| {
            gemm_bf16_dot(m, &a16, k, &p16, f32s(c), LDC, true, o).unwrap()
        });
    }
}
