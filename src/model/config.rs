//! The hyper-parameters of a llama-architecture model, read from the GGUF
//! metadata once and validated (docs/FORMATS.md, "Llama-family keys"), so
//! the forward pass can index without checks that could fail later.

use crate::gguf::Gguf;

use super::ModelError;

/// Most layers, heads and dimensions accepted. Far above any model in
/// circulation; they keep arithmetic on products of them in range and a
/// hostile header from sizing buffers.
const MAX_LAYERS: u64 = 1024;
const MAX_DIM: u64 = 1 << 20;
const MAX_HEADS: u64 = 4096;
/// Most tokens of context: 2^24, 64x the longest contexts of current
/// models; the KV cache is sized from the smaller of this, `-c` and the
/// file's training context.
pub const MAX_CONTEXT: u64 = 1 << 24;

/// What the llama forward pass needs, checked for consistency.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Dimensions of each head that RoPE rotates (the first `rope_dim`).
    pub rope_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    /// The context length the model was trained with.
    pub n_ctx_train: usize,
    pub n_vocab: usize,
}

impl LlamaConfig {
    /// Reads `llama.*` from `g`.
    ///
    /// # Errors
    /// An architecture other than llama, a missing or non-integer key, a
    /// zero or absurd size, heads that do not divide the embedding, KV heads
    /// that do not divide the heads, a rotary dimension larger than a head
    /// or odd, a non-finite or non-positive epsilon or base.
    pub fn from_gguf(g: &Gguf) -> Result<LlamaConfig, ModelError> {
        let arch = g.get_str("general.architecture").unwrap_or("<missing>");
        if arch != "llama" {
            return Err(ModelError::Architecture(crate::gguf::shown_name(arch)));
        }
        let uint = |key: &'static str, max: u64| -> Result<usize, ModelError> {
            let v = g.get_uint(key).ok_or(ModelError::MissingKey(key))?;
            if v == 0 || v > max {
                return Err(ModelError::BadKey { key, why: format!("{v} is outside 1..={max}") });
            }
            Ok(v as usize)
        };
        let float = |key: &'static str, default: Option<f32>| -> Result<f32, ModelError> {
            let v = match (g.get_f32(key), default) {
                (Some(v), _) => v,
                (None, Some(d)) => d,
                (None, None) => return Err(ModelError::MissingKey(key)),
            };
            if !(v.is_finite() && v > 0.0) {
                return Err(ModelError::BadKey { key, why: format!("{v} is not a positive finite number") });
            }
            Ok(v)
        };
        let n_embd = uint("llama.embedding_length", MAX_DIM)?;
        let n_head = uint("llama.attention.head_count", MAX_HEADS)?;
        let n_head_kv = match g.get_uint("llama.attention.head_count_kv") {
            None => n_head,
            Some(_) => uint("llama.attention.head_count_kv", MAX_HEADS)?,
        };
        if n_embd % n_head != 0 {
            let why = format!("{n_head} heads do not divide the embedding length {n_embd}");
            return Err(ModelError::BadKey { key: "llama.attention.head_count", why });
        }
        if n_head % n_head_kv != 0 {
            let why = format!("{n_head_kv} KV heads do not divide the {n_head} heads (grouped-query attention)");
            return Err(ModelError::BadKey { key: "llama.attention.head_count_kv", why });
        }
        let head_dim = n_embd / n_head;
        let rope_dim = match g.get_uint("llama.rope.dimension_count") {
            None => head_dim,
            Some(_) => uint("llama.rope.dimension_count", MAX_DIM)?,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            let why = format!("{rope_dim} must be even and at most the head dimension {head_dim}");
            return Err(ModelError::BadKey { key: "llama.rope.dimension_count", why });
        }
        let n_vocab = match g.get_uint("llama.vocab_size") {
            Some(_) => uint("llama.vocab_size", MAX_DIM)?,
            None => g
                .get_array("tokenizer.ggml.tokens")
                .map(|a| a.len())
                .ok_or(ModelError::MissingKey("llama.vocab_size"))?,
        };
        Ok(LlamaConfig {
            n_layers: uint("llama.block_count", MAX_LAYERS)?,
            n_embd,
            n_ff: uint("llama.feed_forward_length", MAX_DIM)?,
            n_head,
            n_head_kv,
            head_dim,
            rope_dim,
            // llama.cpp's defaults when the keys are absent.
            rope_base: float("llama.rope.freq_base", Some(10_000.0))?,
            rms_eps: float("llama.attention.layer_norm_rms_epsilon", None)?,
            n_ctx_train: uint("llama.context_length", MAX_CONTEXT)?,
            n_vocab,
        })
    }

    /// Width of the K and V projections (all KV heads).
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Query heads per KV head.
    pub fn group(&self) -> usize {
        self.n_head / self.n_head_kv
    }
}
