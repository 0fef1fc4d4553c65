//! `tilejit quantize`: a model's linear weights and embedding requantized
//! to another block format (or BF16) with the project's own (llama.cpp reference)
//! quantizers, written as a new GGUF file that `inspect` and `run` accept.
//! Each weight is dequantized to f32 first (docs/FORMATS.md, "Real model
//! for tests": requantize = dequantize, then quantize); norm vectors and
//! every other F32 tensor are copied unchanged, and so is the metadata,
//! but for `general.file_type`.

use std::borrow::Cow;
use std::io::Write;

use crate::gemm::quantize_weights;
use crate::gguf::{write_gguf, GgmlType, Gguf, TensorOut, Value};
use crate::kernels::quant_avx512::WeightFormat;

use super::weights::{dequantize_row, EMBEDDING_TYPES};
use super::ModelError;

/// What `quantize` writes the weights as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Quant(WeightFormat),
    /// BF16, each value rounded to nearest even from the f32 weight.
    Bf16,
}

impl Target {
    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_MOSTLY_*).
    fn file_type(self) -> u32 {
        match self {
            Target::Quant(WeightFormat::Q4_0) => 2,
            Target::Quant(WeightFormat::Q4_1) => 3,
            Target::Quant(WeightFormat::Q8_0) => 7,
            Target::Bf16 => 32,
        }
    }

    pub fn ggml_type(self) -> GgmlType {
        match self {
            Target::Quant(f) => f.into(),
            Target::Bf16 => GgmlType::BF16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Quant(f) => f.name(),
            Target::Bf16 => "bf16",
        }
    }

    /// `rows` of f32 weights in this format.
    fn encode(self, rows: &[f32]) -> Vec<u8> {
        match self {
            Target::Quant(f) => quantize_weights(f, rows),
            Target::Bf16 => rows.iter().flat_map(|&v| crate::gemm::bf16_from_f32(v).to_le_bytes()).collect(),
        }
    }
}

/// Parses `q4_0`, `q4_1`, `q8_0` or `bf16` (any case).
///
/// # Errors
/// Any other name, with the list of supported ones.
pub fn parse_format(name: &str) -> Result<Target, String> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("bf16") {
        return Ok(Target::Bf16);
    }
    WeightFormat::ALL
        .into_iter()
        .find(|f| f.name().eq_ignore_ascii_case(name))
        .map(Target::Quant)
        .ok_or_else(|| format!("{name:?} is not a type this crate writes: use q4_0, q4_1, q8_0 or bf16"))
}

/// Requantizes every 2-D tensor of a type the runner reads (the linear
/// weights and the embedding) to `format` and writes the file to `out`;
/// `progress(done, total)` after each tensor. Returns the bytes of tensor
/// data written.
///
/// # Errors
/// A tensor whose rows are not whole 32-wide blocks; an I/O error.
pub fn requantize(
    g: &Gguf,
    target: Target,
    out: &mut impl Write,
    mut progress: impl FnMut(usize, usize),
) -> Result<u64, ModelError> {
    let mut tensors = Vec::with_capacity(g.tensors().len());
    let total = g.tensors().len();
    for (i, t) in g.tensors().iter().enumerate() {
        let convert = t.dims().len() == 2 && EMBEDDING_TYPES.contains(&t.ggml_type()) && t.ggml_type() != GgmlType::F32;
        let data = if convert {
            let (k, rows) = (t.dims()[0] as usize, t.dims()[1] as u32);
            if k % 32 != 0 {
                return Err(ModelError::Context(format!("{}: rows of {k} are not whole 32-wide blocks", t.name())));
            }
            let mut f = vec![0f32; k * rows as usize];
            for (r, row) in f.chunks_exact_mut(k).enumerate() {
                dequantize_row(g, t, r as u32, row)?;
            }
            Cow::Owned(target.encode(&f))
        } else {
            Cow::Borrowed(g.tensor_data(t))
        };
        tensors.push(TensorOut {
            name: t.name(),
            ggml_type: if convert { target.ggml_type() } else { t.ggml_type() },
            dims: t.dims(),
            data,
        });
        progress(i + 1, total);
    }
    let metadata: Vec<(String, Value)> = g
        .metadata()
        .iter()
        .map(|(k, v)| match k.as_str() {
            "general.file_type" => (k.clone(), Value::U32(target.file_type())),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    write_gguf(out, &metadata, &tensors).map_err(|e| ModelError::Context(format!("writing the GGUF file: {e}")))?;
    Ok(tensors.iter().map(|t| t.data.len() as u64).sum())
}
