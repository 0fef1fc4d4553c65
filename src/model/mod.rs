//! The model runner's model side: hyper-parameters from the GGUF metadata
//! ([`config`]), the placement rule as a pure plan ([`placement`]), tensors
//! by role and packed as placed ([`weights`]), the non-matmul operations
//! ([`ops`]), the llama forward pass with its KV cache ([`llama`]),
//! perplexity as llama.cpp defines it ([`perplexity`]) and requantization
//! to another block format ([`quantize`]).

pub mod config;
pub mod llama;
pub mod offload;
pub mod ops;
pub mod perplexity;
pub mod placement;
pub mod profile;
pub mod quantize;
pub mod weights;

pub use config::LlamaConfig;
pub use llama::{LoadOptions, Model, Session};
pub use placement::{Buffer, Placement, PlacementError, PlacementFlags, Role, Slot};

use crate::gemm::GemmError;
use crate::gguf::GgufError;

/// Why a model could not be loaded or run: each says what was found and
/// what is supported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(
        "architecture {0:?} is not supported: this runner runs llama-architecture models (SmolLM2, Llama 2/3, ...)"
    )]
    Architecture(String),
    #[error("metadata key {0} is missing (a llama GGUF has it)")]
    MissingKey(&'static str),
    #[error("metadata key {key}: {why}")]
    BadKey { key: &'static str, why: String },
    #[error("tensor {0} is missing")]
    MissingTensor(String),
    #[error("tensor {name} has shape {found:?}, the config implies {expected:?}")]
    TensorShape { name: String, found: Vec<u64>, expected: Vec<u64> },
    #[error("tensor {name} is {found}; for this role the runner supports {supported}")]
    TensorType { name: String, found: &'static str, supported: String },
    #[error("tensor {name}: no backend runs from a {buffer} buffer yet (GPU layers need the GPU backend)")]
    NoBackend { name: String, buffer: String },
    #[error("packing {name}: {source}")]
    Pack { name: String, source: Box<GemmError> },
    #[error(
        "--sparse needs BF16 linear weights (the sparse kernels are bf16 and int8 GEMMs), but {name} is {found}; \
         convert the model first: tilejit quantize IN.gguf OUT.gguf bf16"
    )]
    SparseType { name: String, found: &'static str },
    #[error("--sparse {0}: the sparsity must be a fraction in 0..=1 (0.5 zeroes half of each weight row)")]
    Sparsity(f64),
    #[error("token id {token} is outside the vocabulary of {n_vocab}")]
    TokenOutOfRange { token: u32, n_vocab: usize },
    #[error("{0}")]
    Context(String),
    #[error(transparent)]
    Gemm(#[from] GemmError),
    /// A GPU layer failed (out of memory, a driver or compile error): the
    /// error names the step.
    #[error("GPU layers: {0}")]
    Gpu(Box<crate::gpu::GpuError>),
    #[error(transparent)]
    Placement(#[from] placement::PlacementError),
}
