//! `tilejit emulate`: one GEMM of one kernel family, its generated code run
//! under the emulator on random data, checked against the scalar path bit
//! for bit; prints the instructions executed per mnemonic and the memory
//! each region saw. For developing a kernel on a machine without AMX.

use std::time::Instant;

use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::emulate::{take_report, Execution};
use tilejit::gemm::{
    gemm_bf16, gemm_bf16_dot, gemm_int8, gemm_quant, quantize_activations, quantize_weights, GemmError, GemmOptions,
    QuantWeights,
};
use tilejit::isa::Isa;
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::quant_avx512::{QuantActivations, WeightFormat};
use tilejit::kernels::spec::Int8Sign;
use tilejit::sparse::{gemm_sparse_bf16, gemm_sparse_i8, SparseWeights};
use tilejit_sparse::{PruneScope, Pruning, SparseBf16, SparseI8};

/// The kernel families `--op` names.
pub const OPS: [&str; 8] = ["int8", "bf16", "bf16-dot", "q8_0", "q4_0", "q4_1", "sparse-bf16", "sparse-int8"];

pub struct EmulateOptions {
    pub op: String,
    pub isa: Isa,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub sparsity: f64,
    pub threads: usize,
}

pub fn run(o: &EmulateOptions) -> Result<(), Box<dyn std::error::Error>> {
    let (m, n, k) = (o.m, o.n, o.k);
    let mut rng = StdRng::seed_from_u64(1);
    let emulated =
        GemmOptions { isa: Some(o.isa), execution: Execution::Emulated, threads: o.threads, ..GemmOptions::DEFAULT };
    let scalar = GemmOptions { isa: Some(Isa::Scalar), ..GemmOptions::DEFAULT };
    let bf16 =
        |rng: &mut StdRng, len| -> Vec<u16> { (0..len).map(|_| 0x3C00 + rng.random_range(0..0x700u16)).collect() };
    // Each op: run on `opts`, return C's bits.
    type Run<'a> = Box<dyn Fn(&GemmOptions) -> Result<Vec<u32>, GemmError> + 'a>;
    let bits_f = |c: Vec<f32>| c.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    let bits_i = |c: Vec<i32>| c.into_iter().map(|v| v as u32).collect::<Vec<_>>();
    let (a8, b8): (Vec<u8>, Vec<u8>) =
        ((0..m * k).map(|_| rng.random()).collect(), (0..k * n).map(|_| rng.random()).collect());
    let (a16, b16) = (bf16(&mut rng, m * k), bf16(&mut rng, k * n));
    let pruning = Pruning { sparsity: o.sparsity, scope: PruneScope::PerColumn, seed: 1 };
    let run: Run = match o.op.as_str() {
        "int8" => {
            let p = PackedB::pack_int8(&b8, k, n, n, BLayout::default())?;
            Box::new(move |opts| {
                let mut c = vec![0i32; m * n];
                gemm_int8(Int8Sign::US, m, &a8, k, &p, &mut c, n, false, opts).map(|()| bits_i(c))
            })
        }
        "bf16" | "bf16-dot" => {
            let p = PackedB::pack_bf16(&b16, k, n, n, BLayout::default())?;
            let dot = o.op == "bf16-dot";
            Box::new(move |opts| {
                let mut c = vec![0f32; m * n];
                let r = if dot { gemm_bf16_dot } else { gemm_bf16 };
                r(m, &a16, k, &p, &mut c, n, false, opts).map(|()| bits_f(c))
            })
        }
        "q8_0" | "q4_0" | "q4_1" => {
            let format = match o.op.as_str() {
                "q8_0" => WeightFormat::Q8_0,
                "q4_0" => WeightFormat::Q4_0,
                _ => WeightFormat::Q4_1,
            };
            if k % 32 != 0 {
                return Err(format!("--k {k}: the quantized formats need K a multiple of 32").into());
            }
            let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2f32..2.0)).collect();
            let qw = QuantWeights::from_gguf(format, &quantize_weights(format, &w), n, k)?;
            let af = format.activations();
            let qa = QuantActivations::from_gguf(af, &quantize_activations(af, &x), m, k)?;
            Box::new(move |opts| {
                let mut c = vec![0f32; m * n];
                gemm_quant(&qw, &qa, &mut c, n, opts).map(|()| bits_f(c))
            })
        }
        "sparse-bf16" => {
            let w =
                SparseWeights::from_sparse_bf16(SparseBf16::from_dense_bf16(&pruning.prune_bf16(&b16, k, n)?, k, n)?);
            Box::new(move |opts| {
                let mut c = vec![0f32; m * n];
                gemm_sparse_bf16(m, &a16, k, &w, &mut c, n, false, opts).map(|()| bits_f(c))
            })
        }
        "sparse-int8" => {
            let b: Vec<i8> = b8.iter().map(|&v| v as i8).collect();
            let w = SparseWeights::from_sparse_i8(SparseI8::from_dense_i8(&pruning.prune_i8(&b, k, n)?, k, n)?);
            let a: Vec<i8> = a8.iter().map(|&v| v as i8).collect();
            Box::new(move |opts| {
                let mut c = vec![0i32; m * n];
                gemm_sparse_i8(m, &a, k, &w, &mut c, n, false, opts).map(|()| bits_i(c))
            })
        }
        other => return Err(format!("--op {other:?}: use one of {}", OPS.join(", ")).into()),
    };
    take_report();
    let start = Instant::now();
    let got = run(&emulated)?;
    let seconds = start.elapsed().as_secs_f64();
    let report = take_report();
    let want = run(&scalar)?;
    println!("{} {m}x{n}x{k} on {} (emulated, {} thread(s))", o.op, o.isa, o.threads);
    match got.iter().zip(&want).position(|(a, b)| a != b) {
        None => println!("bits: identical to the scalar path on all {} outputs", m * n),
        Some(i) => {
            return Err(format!("C[{}][{}]: emulated {:#010x}, scalar {:#010x}", i / n, i % n, got[i], want[i]).into())
        }
    }
    println!(
        "{} instructions in {:.3} s: {:.1} M emulated instructions/s",
        report.instructions,
        seconds,
        report.instructions as f64 / seconds / 1e6
    );
    let mut by_count: Vec<_> = report.by_mnemonic.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!("\n{:<16} {:>14}", "mnemonic", "executed");
    for (mnemonic, count) in by_count {
        println!("{mnemonic:<16} {count:>14}");
    }
    println!("\n{:<22} {:>14} {:>14}", "region", "bytes read", "bytes written");
    for (region, (read, written)) in &report.touched {
        println!("{region:<22} {read:>14} {written:>14}");
    }
    Ok(())
}
