//! `tilejit bench-model`: model throughput in the shape of llama.cpp's
//! `llama-bench`, so the figures compare with what CPU users already read.
//! For every (`--amx` setting, `--sparse` sparsity, thread count, test):
//! one warm-up run, then `reps` timed runs; a row reports tokens per second
//! as mean and sample standard deviation, and its bound measured in the
//! same run:
//!
//! - `ppN`: N prompt tokens in one batch from an empty KV cache (prefill).
//!   Bound: the model's linear layers alone on N rows, timed through the
//!   same kernels and paths (`Session::time_linear_layers`, median of
//!   `reps`): the rate if nothing but the matmuls took time.
//! - `tgN`: N tokens generated one at a time from an empty cache (decode).
//!   Bound: the bytes each token must read, the packed weights (sparse:
//!   their bitmap stream) plus the KV cache at the run's mean position
//!   (f32 K and V of every layer), at the streaming read bandwidth
//!   measured with the same thread count (`ReadProbe`, 1 GiB).
//!
//! `percent_of_bound` = tokens/s over the bound's tokens/s. A bound that
//! cannot be measured here (no AVX-512 for the read probe) is left out and
//! the row says why.
//!
//! Tokens are drawn from the vocabulary with a fixed seed (as llama-bench
//! does, the text does not matter for speed). With `--profile` one more run
//! per row records the time per op kind and per layer.
//!
//! The JSON report (`--json FILE`):
//!
//! ```json
//! {"machine": {"cpu": str, "threads": int, "amx": bool, "avx512": bool},
//!  "tilejit_version": str,
//!  "results": [{"model": str, "type": str, "size_bytes": int, "params": int, "path": str, "n_gpu_layers": int,
//!               "amx": bool,
//!               "sparsity": num, "threads": int, "test": str, "n_prompt": int, "n_gen": int,
//!               "tokens_per_s_mean": num, "tokens_per_s_sd": num, "samples_tokens_per_s": [num],
//!               "bound": {"kind": "linear" | "stream", "tokens_per_s": num, "detail": str} | null,
//!               "bound_missing": str | null, "percent_of_bound": num | null,
//!               "profile": {"total_ms": num, "ops": [{"op": str, "ms": num, "percent": num}],
//!                           "layers": [{"layer": int, "ms": num, "percent": num}]} | null}]}
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::json::Machine;
use super::{median_time, ReadProbe};
use crate::isa::{availability_for, Isa, Op};
use crate::model::profile::ProfileReport;
use crate::model::{LoadOptions, Model, ModelError, PlacementFlags, Session};

/// Bytes the read probe streams (well beyond any cache).
const PROBE_BYTES: usize = 1 << 30;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchModelOptions {
    pub model: PathBuf,
    pub prompts: Vec<usize>,
    pub gens: Vec<usize>,
    pub threads: Vec<usize>,
    pub amx: Vec<bool>,
    /// `-ngl` values: repeating layers on GPUs (0: CPU only).
    pub n_gpu_layers: Vec<usize>,
    /// `--tensor-split`: the GPUs' shares of those layers (empty: by free
    /// memory).
    pub tensor_split: Vec<f64>,
    /// 0 is the model as it is; above 0 prunes as `run --sparse`.
    pub sparsities: Vec<f64>,
    /// Add one profiled run per row.
    pub profile: bool,
    pub reps: usize,
}

/// The ceiling a row is measured against (module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bound {
    /// "linear" (prompts) or "stream" (generation).
    pub kind: String,
    pub tokens_per_s: f64,
    /// How it was obtained, e.g. "92.0 MiB per token at 17.1 GB/s".
    pub detail: String,
}

/// One row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    pub model: String,
    #[serde(rename = "type")]
    pub ggml_type: String,
    pub size_bytes: u64,
    pub params: u64,
    /// The path the repeating layers ran on: "amx", "avx512" or "scalar";
    /// "gpu" with every layer on the GPU, "gpuN+rows" with N there and the
    /// rest on the CPU reading GGUF rows in place.
    pub path: String,
    /// Repeating layers on the GPU (`-ngl`, after clamping).
    #[serde(default)]
    pub n_gpu_layers: usize,
    pub amx: bool,
    pub sparsity: f64,
    pub threads: usize,
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub tokens_per_s_mean: f64,
    pub tokens_per_s_sd: f64,
    pub samples_tokens_per_s: Vec<f64>,
    pub bound: Option<Bound>,
    /// Why there is no bound, when there is none.
    pub bound_missing: Option<String>,
    pub percent_of_bound: Option<f64>,
    pub profile: Option<ProfileReport>,
}

/// The report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    pub machine: Machine,
    pub tilejit_version: String,
    pub results: Vec<ModelResult>,
}

/// The most common type among the linear weights (llama-bench's "type").
fn model_type(model: &Model) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for t in model.gguf().tensors().iter().filter(|t| t.dims().len() == 2) {
        *counts.entry(t.ggml_type().name()).or_insert(0usize) += 1;
    }
    counts.into_iter().max_by_key(|&(_, n)| n).map_or("?".into(), |(name, _)| name.to_string())
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64 } else { 0.0 };
    (mean, var.sqrt())
}

/// One test of one configuration: `n_prompt` tokens as one batch, then
/// `n_gen` one at a time, from an empty cache; tokens per second.
fn run_once(
    model: &Model,
    tokens: &[u32],
    (n_prompt, n_gen): (usize, usize),
    threads: usize,
    profile: bool,
) -> Result<(f64, Option<ProfileReport>), ModelError> {
    let mut s = Session::new(model, (n_prompt + n_gen).max(1), threads)?;
    if profile {
        s = s.with_profile();
    }
    let t = Instant::now();
    if n_prompt > 0 {
        s.forward(&tokens[..n_prompt])?;
    }
    for &tok in &tokens[..n_gen] {
        s.forward(&[tok])?;
    }
    let rate = (n_prompt + n_gen) as f64 / t.elapsed().as_secs_f64();
    Ok((rate, s.profile().map(|p| p.report())))
}

/// The bound of a test (module docs); `Err` says why there is none.
fn bound(
    model: &Model,
    (n_prompt, n_gen): (usize, usize),
    threads: usize,
    reps: usize,
    bandwidth: &Result<f64, String>,
) -> Result<Result<Bound, String>, ModelError> {
    if model.plan.gpu_layers > 0 {
        return Ok(Err("no bound for GPU layers (the CPU bounds do not apply)".into()));
    }
    if n_prompt > 0 {
        let s = Session::new(model, 1, threads)?;
        s.time_linear_layers(n_prompt)?; // warm-up
        let mut err = None;
        let t = median_time(reps, || {
            if let Err(e) = s.time_linear_layers(n_prompt) {
                err = Some(e);
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        let detail = format!("linear layers alone on {n_prompt} rows: {:.2} ms", t.as_secs_f64() * 1e3);
        return Ok(Ok(Bound { kind: "linear".into(), tokens_per_s: n_prompt as f64 / t.as_secs_f64(), detail }));
    }
    let bw = match bandwidth {
        Ok(bw) => *bw,
        Err(why) => return Ok(Err(why.clone())),
    };
    let cfg = &model.config;
    // K and V, f32, every layer, at the mean position of the run.
    let kv = 2.0 * cfg.n_layers as f64 * cfg.kv_dim() as f64 * 4.0 * (n_gen as f64 - 1.0) / 2.0;
    let bytes = model.packed_bytes() as f64 + kv;
    let detail = format!(
        "{:.1} MiB per token (weights {:.1} MiB, KV cache {:.2} MiB) at {:.1} GB/s",
        bytes / (1 << 20) as f64,
        model.packed_bytes() as f64 / (1 << 20) as f64,
        kv / (1 << 20) as f64,
        bw / 1e9
    );
    Ok(Ok(Bound { kind: "stream".into(), tokens_per_s: bw / bytes, detail }))
}

/// Runs every combination; `row` is called as each row is done.
///
/// # Errors
/// A bad model, an empty or zero list entry, a sparsity outside 0..=1 or
/// on a model that is not BF16, a run error.
pub fn bench_model(o: &BenchModelOptions, mut row: impl FnMut(&ModelResult)) -> Result<ModelReport, ModelError> {
    let bad = |what: &str| ModelError::Context(format!("bench-model: {what}"));
    if o.reps == 0
        || o.threads.is_empty()
        || o.threads.contains(&0)
        || o.amx.is_empty()
        || o.n_gpu_layers.is_empty()
        || o.sparsities.is_empty()
    {
        return Err(bad("-r, -t, --amx and --sparse need at least one value, and threads at least 1"));
    }
    if o.prompts.iter().chain(&o.gens).any(|&n| n == 0) || o.prompts.len() + o.gens.len() == 0 {
        return Err(bad("-p and -n sizes must be at least 1 (and one test given)"));
    }
    // Every sparsity checked before the first run, not after the dense rows.
    if o.sparsities.iter().any(|&s| s != 0.0) {
        let g = crate::gguf::Gguf::open(&o.model)?;
        let tensors = crate::model::weights::Tensors::find(&g, &crate::model::config::LlamaConfig::from_gguf(&g)?)?;
        for &s in &o.sparsities {
            tensors.check_sparsity(s)?;
        }
    }
    let name = Path::new(&o.model).file_name().map_or("?".into(), |n| n.to_string_lossy().into_owned());
    // The read bandwidth per thread count, measured once, before the runs.
    let mut bandwidths = std::collections::BTreeMap::new();
    if !o.gens.is_empty() {
        for &threads in &o.threads {
            bandwidths.insert(threads, ReadProbe::new(PROBE_BYTES, threads).map(|p| p.bandwidth(5)));
        }
    }
    let mut results = Vec::new();
    for (&amx, &ngl) in o.amx.iter().flat_map(|a| o.n_gpu_layers.iter().map(move |n| (a, n))) {
        for &sparsity in &o.sparsities {
            let placement = PlacementFlags { amx, n_gpu_layers: ngl, tensor_split: o.tensor_split.clone() };
            let opts =
                LoadOptions { placement, sparsity: (sparsity > 0.0).then_some(sparsity), ..LoadOptions::default() };
            let model = Model::load(&o.model, opts, |_, _| {})?;
            for w in &model.plan.warnings {
                eprintln!("warning: {w}");
            }
            let gpu_layers = model.plan.gpu_layers;
            let cpu_path = if model.plan.amx {
                Isa::Amx
            } else if availability_for(Isa::Avx512, Op::Quant).is_ok() {
                Isa::Avx512
            } else {
                Isa::Scalar
            };
            // The CPU layers of a run with GPU layers read GGUF rows in place
            // (docs/PLACEMENT.md rule 3): "rows" then, not a kernel ISA.
            let path = match gpu_layers {
                0 => cpu_path.name().to_string(),
                g if g == model.config.n_layers => "gpu".to_string(),
                g => format!("gpu{g}+rows"),
            };
            let size_bytes = model.gguf().tensors().iter().map(|t| t.byte_size()).sum();
            let params = model.gguf().tensors().iter().map(|t| t.n_elements()).sum();
            let vocab = model.config.n_vocab as u32;
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x11a3a);
            let tests = o.prompts.iter().map(|&n| (n, 0)).chain(o.gens.iter().map(|&n| (0, n)));
            for test in tests {
                let (n_prompt, n_gen) = test;
                let tokens: Vec<u32> = (0..n_prompt.max(n_gen)).map(|_| rng.random_range(0..vocab)).collect();
                for &threads in &o.threads {
                    run_once(&model, &tokens, test, threads, false)?; // warm-up
                    let samples = (0..o.reps)
                        .map(|_| run_once(&model, &tokens, test, threads, false).map(|r| r.0))
                        .collect::<Result<Vec<_>, _>>()?;
                    let (mean, sd) = mean_sd(&samples);
                    let profile = if o.profile { run_once(&model, &tokens, test, threads, true)?.1 } else { None };
                    let no_probe = || Err("no read bandwidth measured".to_string());
                    let bandwidth = bandwidths.get(&threads).cloned().unwrap_or_else(no_probe);
                    let (bound, bound_missing) = match bound(&model, test, threads, o.reps, &bandwidth)? {
                        Ok(b) => (Some(b), None),
                        Err(why) => (None, Some(why)),
                    };
                    let r = ModelResult {
                        model: name.clone(),
                        ggml_type: model_type(&model),
                        size_bytes,
                        params,
                        path: path.clone(),
                        n_gpu_layers: gpu_layers,
                        amx: model.plan.amx,
                        sparsity,
                        threads,
                        test: if n_prompt > 0 { format!("pp{n_prompt}") } else { format!("tg{n_gen}") },
                        n_prompt,
                        n_gen,
                        tokens_per_s_mean: mean,
                        tokens_per_s_sd: sd,
                        samples_tokens_per_s: samples,
                        percent_of_bound: bound.as_ref().map(|b| 100.0 * mean / b.tokens_per_s),
                        bound,
                        bound_missing,
                        profile,
                    };
                    row(&r);
                    results.push(r);
                }
            }
        }
    }
    Ok(ModelReport { machine: Machine::detect(), tilejit_version: env!("CARGO_PKG_VERSION").into(), results })
}

/// The markdown table llama-bench prints, with the sparsity and the
/// percent of the row's bound added.
pub fn table_header() -> String {
    format!(
        "| {:<34} | {:>5} | {:>10} | {:>8} | {:>6} | {:>6} | {:>7} | {:>6} | {:>20} | {:>8} |\n\
         |{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|",
        "model",
        "type",
        "size",
        "params",
        "path",
        "sparse",
        "threads",
        "test",
        "t/s",
        "of bound",
        "-".repeat(36),
        "-".repeat(7),
        "-".repeat(12),
        "-".repeat(10),
        "-".repeat(8),
        "-".repeat(8),
        "-".repeat(9),
        "-".repeat(8),
        "-".repeat(22),
        "-".repeat(10)
    )
}

impl ModelResult {
    pub fn table_row(&self) -> String {
        let of_bound = self.percent_of_bound.map_or("-".to_string(), |p| format!("{p:.1} %"));
        format!(
            "| {:<34} | {:>5} | {:>6.2} MiB | {:>7.1}M | {:>6} | {:>5.0}% | {:>7} | {:>6} | {:>10.2} ± {:>7.2} | {:>8} |",
            self.model,
            self.ggml_type,
            self.size_bytes as f64 / (1 << 20) as f64,
            self.params as f64 / 1e6,
            self.path,
            100.0 * self.sparsity,
            self.threads,
            self.test,
            self.tokens_per_s_mean,
            self.tokens_per_s_sd,
            of_bound
        )
    }
}
