//! Why a GEMM did not run: the caller's input ([`ShapeError`], the
//! options, the operands' formats) kept apart from what this machine
//! cannot do ([`GemmError::Unsupported`]), and no typed error flattened
//! into a string on the way up.

use tilejit_kernels::dense_amx::Blocking;
use tilejit_kernels::jit::GenerateError;

use crate::cpu::AmxUnavailable;
use crate::isa::{Isa, IsaError, Unsupported};

/// Why a GEMM did not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GemmError {
    /// The operands' shapes or lengths do not fit together (input).
    #[error("bad GEMM shape: {0}")]
    Shape(#[from] ShapeError),
    #[error("B was packed as {packed:?} but the GEMM is {gemm}: pack B for this element type")]
    ElemMismatch { packed: tilejit_kernels::pack::PackedElem, gemm: &'static str },
    #[error("threads must be at least 1")]
    Threads,
    /// `GemmOptions::blocking` outside [`Blocking::ALL`] (checked on every
    /// path, so success does not depend on which path M selects).
    #[error("blocking {blocking} is not supported; use one of {:?}", Blocking::ALL)]
    Blocking { blocking: Blocking },
    /// The path this call resolved to cannot run on this machine.
    #[error("the {isa} path is not available here: {reason}")]
    Unsupported { isa: Isa, reason: Unsupported },
    /// `TILEJIT_ISA` or `TILEJIT_HIDE` is malformed or forces the impossible.
    #[error(transparent)]
    Isa(#[from] IsaError),
    #[error("kernel generation failed: {0}")]
    Generate(#[from] GenerateError),
    #[error("could not pack B: {0}")]
    Pack(#[from] tilejit_kernels::pack::PackError),
    #[error("sparse weights: {0}")]
    SparseFormat(#[from] tilejit_sparse::SparseError),
    #[error("sparse AVX-512 kernel: {0}")]
    SparseAvx512(#[from] tilejit_sparse::avx512::Avx512Error),
    #[error("the reference quantized GEMM (scalar path): {0}")]
    Reference(#[from] tilejit_verify::quant::QuantError),
    #[error("quantized weights or activations: {0}")]
    Quant(#[from] tilejit_kernels::quant_avx512::QuantPackError),
    /// The emulator refused a kernel's code (`Execution::Emulated`): an
    /// instruction outside its subset, an access outside the call's
    /// buffers, a fault, a broken calling convention. A generator bug.
    #[error("emulated kernel: {0}")]
    Emulation(#[from] tilejit_verify::emu::EmuError),
}

impl GemmError {
    /// Whether the call failed for want of something on this machine (not
    /// because of its input): another ISA, or another machine, may run it.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, GemmError::Unsupported { .. } | GemmError::Isa(IsaError::Unavailable { .. }))
    }
}

impl From<AmxUnavailable> for GemmError {
    fn from(e: AmxUnavailable) -> Self {
        GemmError::Unsupported { isa: Isa::Amx, reason: e.into() }
    }
}

/// What is wrong with a call's shapes; each field a number the caller
/// passed (or the weights carry), so a test or a tool can act on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    #[error("m must be at least 1")]
    NoRows,
    /// A row stride shorter than a row: `what` is "lda" or "ldc".
    #[error("{what} = {stride} is shorter than a row of {row} elements")]
    Stride { what: &'static str, stride: usize, row: usize },
    /// `what` ("A" or "C") is too short for `rows` rows of `row` elements
    /// `stride` apart (or the size overflows).
    #[error("{what} has {len} elements; {rows} rows of {row} at a stride of {stride} do not fit")]
    Short { what: &'static str, len: usize, rows: usize, row: usize, stride: usize },
    /// The activations' K is not the weights' K.
    #[error("the activations have k = {a_k} but the weights have k = {w_k}")]
    InnerDim { a_k: usize, w_k: usize },
    /// Dense weights whose length is not K x N, or a zero dimension.
    #[error("B has {len} elements; K x N = {k} x {n} (both >= 1) needs exactly that")]
    Weights { len: usize, k: usize, n: usize },
}

/// Checks that `rows` rows of `row` elements, `stride` apart, fit `len`
/// elements (`what` names the operand and its stride, e.g. ("C", "ldc")).
/// Every product is checked, so a huge stride is an error, not a wrapped
/// product that lets a short buffer through.
pub(crate) fn check_rows(
    (what, stride_name): (&'static str, &'static str),
    rows: usize,
    row: usize,
    stride: usize,
    len: usize,
) -> Result<(), ShapeError> {
    if rows == 0 {
        return Err(ShapeError::NoRows);
    }
    if stride < row {
        return Err(ShapeError::Stride { what: stride_name, stride, row });
    }
    match (rows - 1).checked_mul(stride).and_then(|x| x.checked_add(row)) {
        Some(need) if len >= need => Ok(()),
        _ => Err(ShapeError::Short { what, len, rows, row, stride }),
    }
}
