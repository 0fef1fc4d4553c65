//! The runner on the real model (SmolLM2-135M-Instruct, Q4_1, from
//! `TILEJIT_TEST_MODEL`): llama.cpp's greedy text, its chat answer, the
//! same bits on every path and thread count, and an independent f64
//! forward pass written here, sharing no code with the runner.

mod common;

use std::path::PathBuf;

use common::model_path;

use tilejit::isa::{availability_for, Isa, Op};
use tilejit::model::{LoadOptions, Model, PlacementFlags, Session};
use tilejit::text::chat::{ChatTemplate, SystemPrompt};
use tilejit::text::sampler::greedy;
use tilejit::text::tokenizer::Tokenizer;
use tilejit_verify::paths::report_path;
use tilejit_verify::quant::{decode_row, BlockType};

fn load(path: &PathBuf, amx: bool) -> Model {
    let opts = LoadOptions {
        placement: PlacementFlags { amx, n_gpu_layers: 0, ..PlacementFlags::default() },
        sparsity: None,
        ..LoadOptions::default()
    };
    Model::load(path, opts, |_, _| {}).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Greedy tokens after `prompt` until `n` tokens or an end of generation;
/// returns them and the logits the last one was picked from.
fn greedy_run(session: &mut Session, tok: &Tokenizer, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<f32>) {
    let mut logits = session.forward(prompt).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let next = greedy(&logits);
        if tok.is_end_of_generation(next) {
            break;
        }
        out.push(next);
        logits = session.forward(&[next]).unwrap();
    }
    (out, logits)
}

/// llama.cpp (build 4748), greedy, 24 tokens from "The quick brown fox" on
/// this Q4_1 file (issue 12). The runner keeps its KV cache in f32 where
/// llama.cpp uses f16 and sums in another order, so only the first 16
/// tokens are required to match; all 24 do.
#[test]
fn greedy_completion_matches_llama_cpp() {
    let Some(path) = model_path("greedy_completion_matches_llama_cpp") else { return };
    let model = load(&path, false);
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    let mut s = Session::new(&model, 256, 2).unwrap();
    let (out, _) = greedy_run(&mut s, &tok, &tok.encode("The quick brown fox", false), 24);
    let llama_cpp =
        " with a quick brown bear.\n\nThe original sentence is a classic example of a homophone fallacy, where two words";
    let want = tok.encode(llama_cpp, false);
    let text = tok.decode(&out);
    eprintln!("greedy: {text:?}");
    let same = out.iter().zip(&want).take_while(|(a, b)| a == b).count();
    assert!(same >= 16, "only {same} tokens match llama.cpp: {text:?}");
    assert_eq!(text, llama_cpp, "all 24 tokens matched when this test was written");
}

/// With no system prompt the model answers as llama.cpp's does; with the
/// template's default system prompt (inserted when none is given) the 4-bit
/// 135M model is known to ramble, so that answer is printed, not judged.
#[test]
fn chat_applies_the_template_and_answers_like_llama_cpp() {
    let Some(path) = model_path("chat_applies_the_template_and_answers_like_llama_cpp") else { return };
    let model = load(&path, false);
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    let chat = ChatTemplate::from_gguf(model.gguf()).unwrap();
    let question = "What is the capital of France?";
    let with_default = chat.first_turn(&SystemPrompt::Template, question);
    assert!(
        with_default.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{with_default}"
    );
    let answer = |prompt: &str| {
        let mut s = Session::new(&model, 512, 2).unwrap();
        let (out, _) = greedy_run(&mut s, &tok, &tok.encode(prompt, true), 40);
        tok.decode(&out)
    };
    assert_eq!(answer(&chat.first_turn(&SystemPrompt::Omit, question)), "The capital of France is Paris.");
    eprintln!("under the default system prompt: {:?}", answer(&with_default));
}

/// Greedy tokens and the final logits, bit for bit, on every forced path
/// the machine has, with 1, 2 and 3 threads, with and without `--amx`.
#[test]
fn output_bits_are_the_same_on_every_path_thread_count_and_amx() {
    let test = "model bits on every path";
    let Some(path) = model_path(test) else { return };
    let plain = load(&path, false);
    let tok = Tokenizer::from_gguf(plain.gguf()).unwrap();
    let prompt = tok.encode("Rust is a programming language that", false);
    let run = |model: &Model, isa: Option<Isa>, threads: usize| {
        let mut s = Session::new(model, 64, threads).unwrap().with_isa(isa);
        let (out, logits) = greedy_run(&mut s, &tok, &prompt, 6);
        (out, logits.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
    };
    let reference = run(&plain, Some(Isa::Scalar), 1);
    eprintln!("greedy: {:?}", tok.decode(&reference.0));
    let mut runs = 0;
    // Without --amx the weights hold the AVX-512 layout only (AMX runs
    // only from AMX buffers, the placement rule), so the forced paths are
    // scalar and AVX-512; AMX runs from the --amx model below.
    for isa in [Isa::Scalar, Isa::Avx512] {
        if !report_path(test, isa.name(), availability_for(isa, Op::Quant)) {
            continue;
        }
        for threads in [1, 2, 3] {
            assert!(run(&plain, Some(isa), threads) == reference, "{isa}, {threads} threads differs from scalar");
            runs += 1;
        }
    }
    assert!(run(&plain, None, 2) == reference, "the dispatched path differs");
    if report_path(test, "amx (--amx)", availability_for(Isa::Amx, Op::Quant)) {
        let packed = load(&path, true);
        assert!(packed.plan.amx, "--amx on an AMX machine packs for AMX:\n{}", packed.plan);
        for (isa, threads) in [(None, 1), (None, 3), (Some(Isa::Amx), 2), (Some(Isa::Scalar), 2)] {
            assert!(run(&packed, isa, threads) == reference, "--amx {isa:?} {threads} threads differs");
            runs += 1;
        }
    }
    eprintln!("{runs} runs bit-identical to the scalar path");
}

// ------------------------------------------------ an independent f64 pass

/// The model's weights dequantized by the oracle's decoder, as f64.
struct F64Model {
    n_embd: usize,
    n_head: usize,
    n_kv: usize,
    eps: f64,
    base: f64,
    embd: Vec<f64>,
    layers: Vec<[Vec<f64>; 9]>,
    out_norm: Vec<f64>,
    n_vocab: usize,
}

fn dequant(g: &tilejit::gguf::Gguf, name: &str) -> Vec<f64> {
    let t = g.tensor(name).unwrap();
    let ty = match t.ggml_type().name() {
        "Q4_0" => BlockType::Q4_0,
        "Q4_1" => BlockType::Q4_1,
        "Q8_0" => BlockType::Q8_0,
        "F32" => BlockType::F32,
        other => panic!("{name}: {other}"),
    };
    let k = t.dims()[0] as usize;
    let rows = t.n_elements() as usize / k;
    let bytes = g.tensor_data(t);
    let row_bytes = bytes.len() / rows;
    bytes.chunks_exact(row_bytes).flat_map(|r| decode_row(ty, r, k).unwrap()).map(f64::from).collect()
}

impl F64Model {
    fn new(g: &tilejit::gguf::Gguf) -> F64Model {
        let u = |k: &str| g.get_uint(k).unwrap() as usize;
        let names =
            ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"];
        F64Model {
            n_embd: u("llama.embedding_length"),
            n_head: u("llama.attention.head_count"),
            n_kv: u("llama.attention.head_count_kv"),
            eps: f64::from(g.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap()),
            base: f64::from(g.get_f32("llama.rope.freq_base").unwrap()),
            embd: dequant(g, "token_embd.weight"),
            layers: (0..u("llama.block_count"))
                .map(|l| names.map(|n| dequant(g, &format!("blk.{l}.{n}.weight"))))
                .collect(),
            out_norm: dequant(g, "output_norm.weight"),
            n_vocab: u("llama.vocab_size"),
        }
    }

    /// y = W x for W of `x.len()`-wide rows.
    fn mv(w: &[f64], x: &[f64]) -> Vec<f64> {
        w.chunks_exact(x.len()).map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    }

    fn norm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
        let s = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt();
        x.iter().zip(w).map(|(v, g)| v * s * g).collect()
    }

    fn rope(v: &mut [f64], pos: usize, base: f64) {
        let d = v.len();
        for i in (0..d).step_by(2) {
            let th = pos as f64 * base.powf(-(i as f64) / d as f64);
            let (s, c) = th.sin_cos();
            let (a, b) = (v[i], v[i + 1]);
            v[i] = a * c - b * s;
            v[i + 1] = a * s + b * c;
        }
    }

    /// Logits at every position of `tokens`.
    fn logits(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let (e, hd) = (self.n_embd, self.n_embd / self.n_head);
        let mut keys: Vec<Vec<Vec<f64>>> = vec![Vec::new(); self.layers.len()];
        let mut vals = keys.clone();
        let mut out = Vec::new();
        for (pos, &t) in tokens.iter().enumerate() {
            let mut x = self.embd[t as usize * e..(t as usize + 1) * e].to_vec();
            for (l, w) in self.layers.iter().enumerate() {
                let h = Self::norm(&x, &w[0], self.eps);
                let (mut q, mut k, v) = (Self::mv(&w[1], &h), Self::mv(&w[2], &h), Self::mv(&w[3], &h));
                q.chunks_exact_mut(hd).for_each(|head| Self::rope(head, pos, self.base));
                k.chunks_exact_mut(hd).for_each(|head| Self::rope(head, pos, self.base));
                keys[l].push(k);
                vals[l].push(v);
                let mut att = vec![0.0; e];
                for hq in 0..self.n_head {
                    let hk = hq / (self.n_head / self.n_kv);
                    let qh = &q[hq * hd..(hq + 1) * hd];
                    let s: Vec<f64> = keys[l]
                        .iter()
                        .map(|k| {
                            qh.iter().zip(&k[hk * hd..(hk + 1) * hd]).map(|(a, b)| a * b).sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let p: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = p.iter().sum();
                    for (pt, v) in p.iter().zip(&vals[l]) {
                        for d in 0..hd {
                            att[hq * hd + d] += pt / z * v[hk * hd + d];
                        }
                    }
                }
                x.iter_mut().zip(Self::mv(&w[4], &att)).for_each(|(a, b)| *a += b);
                let h = Self::norm(&x, &w[5], self.eps);
                let (g, u) = (Self::mv(&w[6], &h), Self::mv(&w[7], &h));
                let a: Vec<f64> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
                x.iter_mut().zip(Self::mv(&w[8], &a)).for_each(|(a, b)| *a += b);
            }
            out.push(Self::mv(&self.embd, &Self::norm(&x, &self.out_norm, self.eps)));
            assert_eq!(out.last().unwrap().len(), self.n_vocab);
        }
        out
    }
}

/// The runner quantizes activations to 8 bits before each of its 211
/// matmuls (as llama.cpp does); the f64 pass does not, so logits differ by
/// up to about a unit and near ties can flip. Measured on this machine
/// kind (dev, 2026-12-03) over the nine 64-token windows below: the
/// largest |logit difference| is 1.63 (logits span about 30), so the
/// stated tolerance is 2.0; the top-1 agrees wherever the f64 lead exceeds
/// it, and at 551 of 576 positions overall (95.7 %; the prose window alone:
/// 61 of 64; the worst window 57); every disagreement is a lead under 0.25.
const TOLERANCE: f64 = 2.0;
/// The share of all positions where the top-1 must agree.
const MIN_AGREEING: f64 = 0.95;

/// One 64-token window: (max |logit difference|, positions agreeing,
/// decisive positions); panics where a decisive position disagrees.
fn compare_window(model: &Model, reference: &F64Model, name: &str, tokens: &[u32]) -> (f64, usize, usize) {
    let mut s = Session::new(model, 128, 2).unwrap();
    let ours = s.forward_all(tokens).unwrap();
    let want_all = reference.logits(tokens);
    let n_vocab = model.config.n_vocab;
    let (mut max_diff, mut agree, mut decisive) = (0f64, 0, 0);
    for (pos, (row, want)) in ours.chunks_exact(n_vocab).zip(&want_all).enumerate() {
        let diff = row.iter().zip(want).map(|(&a, &b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
        max_diff = max_diff.max(diff);
        let mut order: Vec<usize> = (0..n_vocab).collect();
        order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
        let (ours_top, lead) = (greedy(row) as usize, want[order[0]] - want[order[1]]);
        let same = ours_top == order[0];
        agree += usize::from(same);
        if !same {
            eprintln!(
                "{name} position {pos}: f64 top-1 {} leads {} by {lead:.4}; the runner picks {ours_top} \
                 (f64 logit {:.4}, runner {:.4} vs {:.4})",
                order[0], order[1], want[ours_top], row[ours_top], row[order[0]]
            );
        }
        if lead > TOLERANCE {
            decisive += 1;
            assert!(same, "{name} position {pos}: the f64 top-1 leads by {lead} > {TOLERANCE} but the runner differs");
        }
    }
    eprintln!(
        "{name}: max |logit difference| {max_diff:.4}; top-1 agrees at {agree}/{} positions ({decisive} decisive)",
        tokens.len()
    );
    (max_diff, agree, decisive)
}

#[test]
fn an_independent_f64_forward_pass_agrees_with_the_runner() {
    let Some(path) = model_path("an_independent_f64_forward_pass_agrees_with_the_runner") else { return };
    let model = load(&path, false);
    let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
    let reference = F64Model::new(model.gguf());
    let prose = "The history of the city goes back more than two thousand years. It was founded on the banks of a \
                 wide river, where merchants traded grain, wool and salt. Over the centuries it grew into a busy port \
                 with markets, churches and a large university. Today visitors come to walk its narrow streets, \
                 to see the old bridge and to taste the fish that is still sold near the harbour every morning.";
    let mut windows = vec![("prose".to_string(), tok.encode(prose, false)[..64].to_vec())];
    // Eight more windows of English from the perplexity text, 640 tokens
    // apart: one text can be lucky or unlucky in its near ties.
    let shipped = std::fs::read_to_string("tests/fixtures/text/cpython-reference.txt").unwrap();
    let tokens = tok.encode(&shipped, false);
    for w in 0..8 {
        let at = 1000 + 640 * w;
        windows.push((format!("cpython-reference tokens {at}.."), tokens[at..at + 64].to_vec()));
    }
    let (mut max_diff, mut agree, mut decisive, mut total) = (0f64, 0, 0, 0);
    for (name, window) in &windows {
        let (d, a, n) = compare_window(&model, &reference, name, window);
        (max_diff, agree, decisive, total) = (max_diff.max(d), agree + a, decisive + n, total + window.len());
    }
    eprintln!(
        "over {} windows: max |logit difference| {max_diff:.4} (tolerance {TOLERANCE}); top-1 agrees at \
         {agree}/{total} positions ({:.1} %), at every one of the {decisive} where the f64 lead exceeds the tolerance",
        windows.len(),
        100.0 * agree as f64 / total as f64
    );
    assert!(max_diff <= TOLERANCE, "max |logit difference| {max_diff} over {TOLERANCE}");
    assert!(agree as f64 >= MIN_AGREEING * total as f64, "top-1 agrees at only {agree}/{total} positions");
}
