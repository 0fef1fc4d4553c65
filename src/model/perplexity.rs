//! Perplexity as llama.cpp's `llama-perplexity` computes it, so the
//! figures compare with its:
//!
//! 1. The whole text is tokenized once (no special tokens; a BOS first
//!    only if the model adds one), then cut into `n_chunks = tokens / n_ctx`
//!    non-overlapping windows of `n_ctx` tokens; the tail is dropped.
//! 2. Each window runs from an empty KV cache, its first token replaced by
//!    BOS when the model adds one. Only the second half is scored: for
//!    positions `j` in `n_ctx/2 .. n_ctx-1` the negative log-likelihood of
//!    token `j + 1` under the logits at `j`, `-(l[t] - max - ln sum exp(l -
//!    max))`, in f64 (so every scored token has at least `n_ctx/2` tokens
//!    of context).
//! 3. `PPL = exp(mean NLL)` over all scored tokens; its standard error is
//!    `PPL x sqrt((mean(NLL^2) - mean(NLL)^2) / (count - 1))` (llama.cpp's
//!    "+/-", the delta method on the mean).
//!
//! Everything is in a fixed order, so the value is the same bits on every
//! path and thread count.

use super::{Model, ModelError, Session};
use crate::isa::Isa;

/// The result of [`perplexity`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    /// Standard error of `ppl`.
    pub stderr: f64,
    pub chunks: usize,
    /// Tokens scored (`chunks x (n_ctx - 1 - n_ctx / 2)`).
    pub scored: usize,
    /// Sum of the negative log-likelihoods, for bit-level comparisons.
    pub nll_sum: f64,
}

/// `-ln softmax(logits)[target]`, in f64.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    -(f64::from(logits[target as usize] - max) - sum.ln())
}

/// Perplexity of `tokens` (already tokenized, BOS included if the model
/// wants one) over windows of `n_ctx`; `progress(done, total)` per window.
///
/// # Errors
/// `n_ctx` under 4 or above the model's context, fewer tokens than one
/// window, a forward pass error.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    bos: Option<u32>,
    n_ctx: usize,
    threads: usize,
    isa: Option<Isa>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity, ModelError> {
    if n_ctx < 4 {
        return Err(ModelError::Context(format!("-c {n_ctx}: perplexity needs windows of at least 4 tokens")));
    }
    let chunks = tokens.len() / n_ctx;
    if chunks == 0 {
        return Err(ModelError::Context(format!(
            "the text is {} tokens, fewer than one window of -c {n_ctx}; give a longer text or a smaller -c",
            tokens.len()
        )));
    }
    let vocab = model.config.n_vocab;
    let first = n_ctx / 2;
    let (mut sum, mut sum2, mut count) = (0f64, 0f64, 0usize);
    for c in 0..chunks {
        let mut window = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        let mut session = Session::new(model, n_ctx, threads)?.with_isa(isa);
        let logits = session.forward_from(&window, first)?;
        for j in first..n_ctx - 1 {
            let row = j - first;
            let v = nll(&logits[row * vocab..(row + 1) * vocab], window[j + 1]);
            sum += v;
            sum2 += v * v;
            count += 1;
        }
        progress(c + 1, chunks);
    }
    let mean = sum / count as f64;
    let ppl = mean.exp();
    let var = sum2 / count as f64 - mean * mean;
    let stderr = if count > 1 && var > 0.0 { ppl * (var / (count - 1) as f64).sqrt() } else { 0.0 };
    Ok(Perplexity { ppl, stderr, chunks, scored: count, nll_sum: sum })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_is_the_negative_log_softmax() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&x| f64::from(x).exp()).sum();
        for t in 0..3 {
            let want = -(f64::from(l[t]).exp() / z).ln();
            assert!((nll(&l, t as u32) - want).abs() < 1e-12);
        }
        assert_eq!(nll(&[5.0, 5.0], 0), std::f64::consts::LN_2);
    }
}
