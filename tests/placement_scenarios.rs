//! The seed's four placement scenarios (docs/PLACEMENT.md) on SmolLM2
//! (`TILEJIT_TEST_MODEL`), each checking the plan, the warnings (at most
//! one each) and the output:
//!
//! 1. CPU only: no AMX buffers, no warning; the reference logits.
//! 2. CPU with `--amx`: the layers' matmul weights in AMX buffers where AMX
//!    runs (else one warning); the same bits as 1.
//! 3. `-ngl N`: N layers on the GPU, the CPU's layers in host buffers read
//!    in their GGUF layout, no AMX. With a GPU: the logits at every position
//!    of a 64-token text within [`LOGIT_TOLERANCE`] of the CPU's and 32
//!    greedy tokens identical, for N = 15 and N = 30 (every layer, the head
//!    too). Without one: one warning, every layer on the CPU, the bits of 1.
//! 4. `-ngl N --amx`: as 3 plus one warning that `--amx` was ignored.
//!
//! Without a CUDA device the GPU comparisons print that they were skipped
//! and why.

mod common;

use std::path::PathBuf;

use common::model_path;

use tilejit::gpu::probe;
use tilejit::model::{Buffer, LoadOptions, Model, PlacementFlags, Session};
use tilejit::text::sampler::greedy;
use tilejit::text::tokenizer::Tokenizer;
use tilejit_verify::paths::report_path;

/// The GPU's matmuls, quantizers and norms give the CPU's bits; only the
/// C library's exp / sin / cos / pow may differ in a last bit (kernels.cu),
/// and such a difference grows through 30 layers. Measured on the H200:
/// see the closing note of issue 16 and BENCHMARKS.md.
const LOGIT_TOLERANCE: f32 = 0.05;

const TEXT: &str = "The history of the town goes back to a small market on the river, where farmers from the \
surrounding hills brought grain, wool and cheese every week. Over the centuries the market grew into a trading \
post, then into a town with a church, a school and a bridge that still stands today.";

fn load(path: &PathBuf, amx: bool, n_gpu_layers: usize) -> Model {
    let opts = LoadOptions {
        placement: PlacementFlags { amx, n_gpu_layers, ..PlacementFlags::default() },
        ..LoadOptions::default()
    };
    Model::load(path, opts, |_, _| {}).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a scenario produced: the logits of every position of the text
/// (fed one token at a time, as generation does) and 32 greedy tokens
/// after it.
struct Output {
    logits: Vec<Vec<f32>>,
    greedy: Vec<u32>,
}

fn run(model: &Model, tokens: &[u32]) -> Output {
    let mut s = Session::new(model, 256, 2).unwrap();
    let logits: Vec<Vec<f32>> = tokens.iter().map(|&t| s.forward(&[t]).unwrap()).collect();
    let mut next = greedy(logits.last().unwrap());
    let mut out = Vec::new();
    for _ in 0..32 {
        out.push(next);
        next = greedy(&s.forward(&[next]).unwrap());
    }
    Output { logits, greedy: out }
}

/// The 64 tokens of the text.
fn tokens(model: &Model) -> Vec<u32> {
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    let t: Vec<u32> = tok.encode(&format!("{TEXT} {TEXT}"), true).into_iter().take(64).collect();
    assert_eq!(t.len(), 64, "the text gives 64 tokens");
    t
}

fn same_bits(what: &str, a: &Output, b: &Output) {
    for (pos, (x, y)) in a.logits.iter().zip(&b.logits).enumerate() {
        let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{what}: logits at position {pos} differ in their bits");
    }
    assert_eq!(a.greedy, b.greedy, "{what}: greedy tokens");
}

/// GPU logits against the CPU's: within the tolerance at every position,
/// and 32 greedy tokens identical. Prints what it measured.
fn agrees(what: &str, gpu: &Output, cpu: &Output) {
    let (mut worst, mut identical, mut total) = (0f32, 0usize, 0usize);
    for (pos, (g, c)) in gpu.logits.iter().zip(&cpu.logits).enumerate() {
        let d = g.iter().zip(c).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d <= LOGIT_TOLERANCE, "{what}: position {pos}: max |logit difference| {d} > {LOGIT_TOLERANCE}");
        worst = worst.max(d);
        identical += g.iter().zip(c).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        total += g.len();
    }
    let same = gpu.greedy.iter().zip(&cpu.greedy).take_while(|(a, b)| a == b).count();
    eprintln!(
        "{what}: 64 positions, max |logit difference| {worst:e}, {identical} of {total} logits bit-identical; \
         greedy {same} of 32 tokens identical"
    );
    assert_eq!(same, 32, "{what}: greedy tokens diverge after {same}");
}

fn no_amx_buffers(m: &Model) -> bool {
    !m.plan.amx && !m.plan.buffers.values().any(|b| *b == Buffer::Amx)
}

#[test]
fn the_four_placement_scenarios() {
    let Some(path) = model_path("the four placement scenarios") else { return };
    let amx_runs = tilejit::isa::availability_for(tilejit::isa::Isa::Amx, tilejit::isa::Op::Quant);

    // 1. CPU only.
    let cpu = load(&path, false, 0);
    assert!(cpu.plan.warnings.is_empty() && no_amx_buffers(&cpu), "{:?}", cpu.plan.warnings);
    assert!(cpu.plan.buffers.values().all(|b| matches!(b, Buffer::CpuMapped | Buffer::CpuPacked)));
    let tokens = tokens(&cpu);
    let reference = run(&cpu, &tokens);
    eprintln!("scenario 1 (CPU only): plan\n{}", cpu.plan);

    // 2. CPU with --amx: AMX where it runs, the same bits either way.
    let amx = load(&path, true, 0);
    match &amx_runs {
        Ok(()) => {
            assert!(amx.plan.amx && amx.plan.warnings.is_empty(), "{:?}", amx.plan.warnings);
            assert!(amx.plan.bytes_by_buffer().contains_key(&Buffer::Amx));
        }
        Err(why) => {
            eprintln!("scenario 2 (--amx): AMX does not run here ({why}): checking the warning instead");
            assert_eq!(amx.plan.warnings.len(), 1, "{:?}", amx.plan.warnings);
            assert!(amx.plan.warnings[0].starts_with("--amx ignored: "), "{:?}", amx.plan.warnings);
            assert!(no_amx_buffers(&amx));
        }
    }
    same_bits("scenario 2 (--amx) vs 1", &run(&amx, &tokens), &reference);
    drop(amx);

    let gpu = probe();
    for n in [15, 30] {
        // 3. -ngl N.
        let offload = load(&path, false, n);
        assert!(no_amx_buffers(&offload));
        if !report_path(&format!("scenario 3 (-ngl {n})"), "gpu", gpu.as_ref().map(|_| ())) {
            assert_eq!(offload.plan.warnings.len(), 1, "{:?}", offload.plan.warnings);
            let w = &offload.plan.warnings[0];
            assert!(w.starts_with(&format!("-ngl {n}: no CUDA device (")), "{w}");
            assert!(w.ends_with(": running every layer on the CPU"), "{w}");
            assert_eq!(offload.plan.gpu_layers, 0);
            same_bits(&format!("-ngl {n} without a GPU vs 1"), &run(&offload, &tokens), &reference);
            // 4. -ngl N --amx without a GPU: no GPU layer, so --amx is judged as in 2.
            let both = load(&path, true, n);
            let amx_warnings = usize::from(amx_runs.is_err());
            assert_eq!(both.plan.warnings.len(), 1 + amx_warnings, "{:?}", both.plan.warnings);
            continue;
        }
        assert!(offload.plan.warnings.is_empty(), "{:?}", offload.plan.warnings);
        assert_eq!(offload.plan.gpu_layers, n);
        let layers = offload.config.n_layers;
        for (slot, buffer) in &offload.plan.buffers {
            let want = match slot.layer {
                Some(l) if l >= layers - n => Buffer::Gpu(0),
                Some(_) => Buffer::Host,
                None if slot.role == tilejit::model::Role::TokenEmbd => Buffer::CpuMapped,
                None if n == layers => Buffer::Gpu(0),
                None => Buffer::Host,
            };
            assert_eq!(*buffer, want, "-ngl {n}: {slot}");
        }
        let report = offload.plan.to_string();
        assert!(report.contains("GPU 0") && report.contains("MiB"), "{report}");
        eprintln!("scenario 3 (-ngl {n}): plan\n{report}");
        let on_gpu = run(&offload, &tokens);
        agrees(&format!("scenario 3 (-ngl {n})"), &on_gpu, &reference);
        drop(offload);

        // 4. -ngl N --amx: one warning, no AMX, the output of 3.
        let both = load(&path, true, n);
        assert_eq!(both.plan.warnings.len(), 1, "{:?}", both.plan.warnings);
        let w = &both.plan.warnings[0];
        assert!(w.starts_with(&format!("--amx ignored: {n} layer(s) run on a GPU")), "{w}");
        assert!(no_amx_buffers(&both));
        same_bits(&format!("scenario 4 (-ngl {n} --amx) vs 3"), &run(&both, &tokens), &on_gpu);
    }
}

/// Issue 17's split, as far as one device shows it: every layer on "two
/// GPUs" that are both device 0 (the plan and the runner cannot tell), split
/// 1:1, so the hidden state crosses from part to part and the second part
/// runs the head. The output must agree with the CPU's within the
/// single-GPU tolerance (it prints how many logits are bit-identical), and
/// a split that does not fit is refused with the remedy. (Two real GPUs: the
/// nvidia-h200-x2 machine, when lent.)
#[test]
fn layers_split_over_two_gpu_parts_keep_the_cpus_bits() {
    let Some(path) = model_path("layers split over two GPU parts") else { return };
    if !report_path("layers split over two GPU parts", "gpu", probe().map(|_| ())) {
        return;
    }
    let split_load = |tensor_split: Vec<f64>| {
        let opts = LoadOptions {
            placement: PlacementFlags { amx: true, n_gpu_layers: 30, tensor_split },
            gpu_devices: Some(vec![0, 0]),
            ..LoadOptions::default()
        };
        Model::load(&path, opts, |_, _| {})
    };
    let split = split_load(vec![1.0, 1.0]).expect("the split loads");
    assert_eq!(split.plan.gpu_ranges, [0..15, 15..30]);
    assert_eq!(split.gpus().len(), 2, "two GPU parts");
    assert!(no_amx_buffers(&split));
    assert_eq!(split.plan.warnings.len(), 1, "{:?}", split.plan.warnings); // --amx ignored
    let report = split.plan.to_string();
    assert!(report.contains("GPU 0 ") && report.contains("GPU 1 "), "{report}");
    eprintln!("split over two GPU parts: plan\n{report}");
    let cpu = load(&path, false, 0);
    let tokens = tokens(&cpu);
    agrees("split over two GPU parts (15 + 15 layers)", &run(&split, &tokens), &run(&cpu, &tokens));
    let err = split_load(vec![1.0, 1.0, 1.0]).err().expect("three shares for two GPUs are refused");
    assert!(err.to_string().contains("3 values for 2 GPU(s)"), "{err}");
}

/// `-ngl` above the layer count clamps with one message and offloads
/// every layer (with a GPU; without one the no-device warning comes first).
#[test]
fn ngl_above_the_layer_count_clamps() {
    let Some(path) = model_path("-ngl clamps") else { return };
    let m = load(&path, false, 99);
    if !report_path("-ngl 99 clamps", "gpu", probe().map(|_| ())) {
        assert_eq!(m.plan.warnings.len(), 1, "{:?}", m.plan.warnings);
        assert!(m.plan.warnings[0].contains("no CUDA device"), "{:?}", m.plan.warnings);
        return;
    }
    assert_eq!(m.plan.warnings.len(), 1, "{:?}", m.plan.warnings);
    assert!(m.plan.warnings[0].contains("the model has 30 layers; offloading all 30"), "{:?}", m.plan.warnings);
    assert_eq!(m.plan.gpu_layers, 30);
    assert_eq!(m.gpus().len(), 1, "one GPU part");
}
