//! `tilejit bench-model`: model throughput in the shape of llama.cpp's
//! `llama-bench`, so the figures compare with what CPU users already read.
//! For every (`--amx` setting, thread count, test): one warm-up run, then
//! `reps` timed runs; a row reports tokens per second as mean and sample
//! standard deviation.
//!
//! - `ppN`: N prompt tokens in one batch from an empty KV cache (prefill);
//! - `tgN`: N tokens generated one at a time from an empty cache (decode).
//!
//! Tokens are drawn from the vocabulary with a fixed seed (as llama-bench
//! does, the text does not matter for speed).
//!
//! The JSON report (`--json FILE`):
//!
//! ```json
//! {"machine": {"cpu": str, "threads": int, "amx": bool, "avx512": bool},
//!  "tilejit_version": str,
//!  "results": [{"model": str, "type": str, "size_bytes": int, "params": int, "path": str, "amx": bool,
//!               "threads": int, "test": str, "n_prompt": int, "n_gen": int,
//!               "tokens_per_s_mean": num, "tokens_per_s_sd": num, "samples_tokens_per_s": [num]}]}
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::json::Machine;
use crate::isa::{availability_for, Isa, Op};
use crate::model::{LoadOptions, Model, ModelError, PlacementFlags, Session};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchModelOptions {
    pub model: PathBuf,
    pub prompts: Vec<usize>,
    pub gens: Vec<usize>,
    pub threads: Vec<usize>,
    pub amx: Vec<bool>,
    pub reps: usize,
}

/// One row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    pub model: String,
    #[serde(rename = "type")]
    pub ggml_type: String,
    pub size_bytes: u64,
    pub params: u64,
    /// The path the repeating layers ran on: "amx", "avx512" or "scalar".
    pub path: String,
    pub amx: bool,
    pub threads: usize,
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub tokens_per_s_mean: f64,
    pub tokens_per_s_sd: f64,
    pub samples_tokens_per_s: Vec<f64>,
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

/// Runs every combination; `row` is called as each row is done.
///
/// # Errors
/// A bad model, an empty or zero list entry, a run error.
pub fn bench_model(o: &BenchModelOptions, mut row: impl FnMut(&ModelResult)) -> Result<ModelReport, ModelError> {
    let bad = |what: &str| ModelError::Context(format!("bench-model: {what}"));
    if o.reps == 0 || o.threads.is_empty() || o.threads.contains(&0) || o.amx.is_empty() {
        return Err(bad("-r, -t and --amx need at least one value, and threads at least 1"));
    }
    if o.prompts.iter().chain(&o.gens).any(|&n| n == 0) || o.prompts.len() + o.gens.len() == 0 {
        return Err(bad("-p and -n sizes must be at least 1 (and one test given)"));
    }
    let name = Path::new(&o.model).file_name().map_or("?".into(), |n| n.to_string_lossy().into_owned());
    let mut results = Vec::new();
    for &amx in &o.amx {
        let opts = LoadOptions { placement: PlacementFlags { amx, n_gpu_layers: 0 }, gpus: 0 };
        let model = Model::load(&o.model, opts, |_, _| {})?;
        let path = if model.plan.amx {
            Isa::Amx
        } else if availability_for(Isa::Avx512, Op::Quant).is_ok() {
            Isa::Avx512
        } else {
            Isa::Scalar
        };
        let size_bytes = model.gguf().tensors().iter().map(|t| t.byte_size()).sum();
        let params = model.gguf().tensors().iter().map(|t| t.n_elements()).sum();
        let vocab = model.config.n_vocab as u32;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x11a3a);
        let tests = o.prompts.iter().map(|&n| (n, 0)).chain(o.gens.iter().map(|&n| (0, n)));
        for (n_prompt, n_gen) in tests {
            let tokens: Vec<u32> = (0..n_prompt.max(n_gen)).map(|_| rng.random_range(0..vocab)).collect();
            for &threads in &o.threads {
                let once = || -> Result<f64, ModelError> {
                    let mut s = Session::new(&model, (n_prompt + n_gen).max(1), threads)?;
                    let t = Instant::now();
                    if n_prompt > 0 {
                        s.forward(&tokens[..n_prompt])?;
                    }
                    for &tok in &tokens[..n_gen] {
                        s.forward(&[tok])?;
                    }
                    Ok((n_prompt + n_gen) as f64 / t.elapsed().as_secs_f64())
                };
                once()?; // warm-up
                let samples = (0..o.reps).map(|_| once()).collect::<Result<Vec<_>, _>>()?;
                let (mean, sd) = mean_sd(&samples);
                let r = ModelResult {
                    model: name.clone(),
                    ggml_type: model_type(&model),
                    size_bytes,
                    params,
                    path: path.name().to_string(),
                    amx: model.plan.amx,
                    threads,
                    test: if n_prompt > 0 { format!("pp{n_prompt}") } else { format!("tg{n_gen}") },
                    n_prompt,
                    n_gen,
                    tokens_per_s_mean: mean,
                    tokens_per_s_sd: sd,
                    samples_tokens_per_s: samples,
                };
                row(&r);
                results.push(r);
            }
        }
    }
    Ok(ModelReport { machine: Machine::detect(), tilejit_version: env!("CARGO_PKG_VERSION").into(), results })
}

/// The markdown table llama-bench prints.
pub fn table_header() -> String {
    format!(
        "| {:<34} | {:>5} | {:>10} | {:>8} | {:>6} | {:>7} | {:>6} | {:>20} |\n|{}|{}|{}|{}|{}|{}|{}|{}|",
        "model",
        "type",
        "size",
        "params",
        "path",
        "threads",
        "test",
        "t/s",
        "-".repeat(36),
        "-".repeat(7),
        "-".repeat(12),
        "-".repeat(10),
        "-".repeat(8),
        "-".repeat(9),
        "-".repeat(8),
        "-".repeat(22)
    )
}

impl ModelResult {
    pub fn table_row(&self) -> String {
        format!(
            "| {:<34} | {:>5} | {:>6.2} MiB | {:>7.1}M | {:>6} | {:>7} | {:>6} | {:>10.2} ± {:>7.2} |",
            self.model,
            self.ggml_type,
            self.size_bytes as f64 / (1 << 20) as f64,
            self.params as f64 / 1e6,
            self.path,
            self.threads,
            self.test,
            self.tokens_per_s_mean,
            self.tokens_per_s_sd
        )
    }
}
