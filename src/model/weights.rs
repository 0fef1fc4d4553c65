//! The model's tensors by role, checked against the config, and the
//! buffers the plan puts them in. A linear weight's layout is its type
//! ([`Linear`] holds a [`QuantWeights`] whose layouts are fixed at packing),
//! so no path reads packed bytes as GGUF rows or the other way round.

use half::{bf16, f16};

use crate::gemm::rows::RowsFormat;
use crate::gemm::QuantWeights;
use crate::gguf::{shown_name, GgmlType, Gguf, TensorInfo};
use crate::kernels::pack::{BLayout, PackedB};
use crate::kernels::quant_avx512::WeightFormat;
use crate::sparse::SparseWeights;
use tilejit_sparse::Bf16;
use tilejit_sparse::{PruneScope, Pruning};

use super::config::LlamaConfig;
use super::placement::{Buffer, Placement, Role, Slot, TensorDesc};
use super::ModelError;

/// The formats the linear layers run on: the quantized kernels' block
/// formats, and BF16 on the dense GEMM (TDPBF16PS semantics).
pub const LINEAR_TYPES: [GgmlType; 4] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::BF16];
/// The formats an embedding row can be read from.
pub const EMBEDDING_TYPES: [GgmlType; 6] =
    [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F32, GgmlType::F16, GgmlType::BF16];

/// Every tensor of a llama model, found by name, its type and shape
/// checked. The output projection is `None` when tied to the embedding.
#[derive(Clone, Debug)]
pub struct Tensors {
    pub token_embd: TensorInfo,
    pub layers: Vec<[TensorInfo; 9]>,
    pub output_norm: TensorInfo,
    pub output: Option<TensorInfo>,
}

impl Tensors {
    /// Finds every role in `g`.
    ///
    /// # Errors
    /// A missing tensor, a shape other than the config implies, a type no
    /// path of this crate reads for that role.
    pub fn find(g: &Gguf, cfg: &LlamaConfig) -> Result<Tensors, ModelError> {
        let (e, ff, kv, v) = (cfg.n_embd as u64, cfg.n_ff as u64, cfg.kv_dim() as u64, cfg.n_vocab as u64);
        let get = |slot: Slot, dims: &[u64]| -> Result<TensorInfo, ModelError> {
            let name = slot.gguf_name();
            let t = g.tensor(&name).ok_or_else(|| ModelError::MissingTensor(name.clone()))?;
            if t.dims() != dims {
                return Err(ModelError::TensorShape { name, found: t.dims().to_vec(), expected: dims.to_vec() });
            }
            let allowed: &[GgmlType] = match slot.role {
                Role::TokenEmbd => &EMBEDDING_TYPES,
                Role::AttnNorm | Role::FfnNorm | Role::OutputNorm => &[GgmlType::F32],
                _ => &LINEAR_TYPES,
            };
            if !allowed.contains(&t.ggml_type()) {
                let supported = allowed.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
                return Err(ModelError::TensorType { name, found: t.ggml_type().name(), supported });
            }
            Ok(t.clone())
        };
        let at = |role, layer| Slot { role, layer };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let shape = |role| match role {
                Role::AttnNorm | Role::FfnNorm => vec![e],
                Role::AttnQ | Role::AttnOutput => vec![e, e],
                Role::AttnK | Role::AttnV => vec![e, kv],
                Role::FfnGate | Role::FfnUp => vec![e, ff],
                _ => vec![ff, e], // FfnDown
            };
            let mut found = Vec::with_capacity(9);
            for role in Role::LAYER {
                found.push(get(at(role, Some(l)), &shape(role))?);
            }
            layers.push(found.try_into().expect("nine roles per layer"));
        }
        let token_embd = get(at(Role::TokenEmbd, None), &[e, v])?;
        let output = match g.tensor("output.weight") {
            None => {
                if !LINEAR_TYPES.contains(&token_embd.ggml_type()) {
                    let supported = LINEAR_TYPES.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
                    let name = "token_embd.weight (tied output projection)".to_string();
                    return Err(ModelError::TensorType { name, found: token_embd.ggml_type().name(), supported });
                }
                None
            }
            Some(_) => Some(get(at(Role::Output, None), &[e, v])?),
        };
        Ok(Tensors { token_embd, layers, output_norm: get(at(Role::OutputNorm, None), &[e])?, output })
    }

    /// Whether `--sparse s` can apply: `s` in 0..=1, and every
    /// repeating-layer linear weight BF16.
    ///
    /// # Errors
    /// [`ModelError::Sparsity`], [`ModelError::SparseType`].
    pub fn check_sparsity(&self, s: f64) -> Result<(), ModelError> {
        if !(0.0..=1.0).contains(&s) {
            return Err(ModelError::Sparsity(s));
        }
        let linear = self.layers.iter().flat_map(|l| Role::LAYER.iter().zip(l)).filter(|(r, _)| r.is_matmul());
        if let Some((_, bad)) = linear.into_iter().find(|(_, x)| x.ggml_type() != GgmlType::BF16) {
            return Err(ModelError::SparseType { name: bad.name().to_string(), found: bad.ggml_type().name() });
        }
        Ok(())
    }

    /// The planner's view of every tensor.
    pub fn descs(&self) -> Vec<TensorDesc> {
        let desc = |slot, t: &TensorInfo| TensorDesc {
            slot,
            ggml_type: t.ggml_type(),
            dims: t.dims().to_vec(),
            bytes: t.byte_size(),
        };
        let mut out = vec![desc(Slot { role: Role::TokenEmbd, layer: None }, &self.token_embd)];
        for (l, layer) in self.layers.iter().enumerate() {
            for (role, t) in Role::LAYER.iter().zip(layer) {
                out.push(desc(Slot { role: *role, layer: Some(l) }, t));
            }
        }
        out.push(desc(Slot { role: Role::OutputNorm, layer: None }, &self.output_norm));
        // A tied projection is the embedding's bytes used a second way: the
        // plan places that use (and the report counts its packed copy).
        out.push(desc(Slot { role: Role::Output, layer: None }, self.output.as_ref().unwrap_or(&self.token_embd)));
        out
    }
}

/// A linear layer's weights in the layout their kernels read; the layout
/// is the type, so no path can read one as another.
pub enum LinearWeights {
    /// GGUF blocks, packed for the quantized kernels.
    Quant(QuantWeights),
    /// BF16 as the dense GEMM's B (`k x n`, the VNNI tile layout that both
    /// the AMX and the AVX-512 kernels read).
    Bf16(PackedB),
    /// BF16 pruned by `--sparse`, for the sparse dispatch (the bitmap
    /// format from 30 % sparsity, else the dense layout): the bits of the
    /// dense GEMM on the pruned weights.
    SparseBf16(SparseWeights<Bf16>),
    /// The file's own rows, read in place from the mapping by
    /// [`crate::gemm::rows`]: a CPU layer of a run with GPU layers
    /// (docs/PLACEMENT.md rule 3, host buffers in the original layout).
    Rows { format: RowsFormat, tensor: TensorInfo },
}

/// A linear layer's weights, `n` rows of `k`, packed as the plan says.
pub struct Linear {
    pub weights: LinearWeights,
    pub buffer: Buffer,
}

impl Linear {
    /// Packs `t` for `buffer`; `prune` (BF16 only, checked by the caller)
    /// prunes it to that sparsity first.
    fn pack(g: &Gguf, t: &TensorInfo, buffer: Buffer, prune: Option<f64>) -> Result<Linear, ModelError> {
        if buffer == Buffer::Host {
            let format = match WeightFormat::try_from(t.ggml_type()) {
                Ok(f) => RowsFormat::Quant(f),
                Err(_) => RowsFormat::Bf16,
            };
            return Ok(Linear { weights: LinearWeights::Rows { format, tensor: t.clone() }, buffer });
        }
        if !matches!(buffer, Buffer::Amx | Buffer::CpuPacked) {
            return Err(ModelError::NoBackend { name: t.name().to_string(), buffer: buffer.to_string() });
        }
        let (k, n) = (t.dims()[0] as usize, t.dims()[1] as usize);
        let pack_error = |e| ModelError::Pack { name: t.name().to_string(), source: Box::new(e) };
        let weights = match WeightFormat::try_from(t.ggml_type()).ok() {
            // One layout for every path: an AMX buffer differs from a CPU
            // packed one in which kernels may read it, not in its bytes.
            Some(format) => {
                LinearWeights::Quant(QuantWeights::from_gguf(format, g.tensor_data(t), n, k).map_err(pack_error)?)
            }
            None => {
                // GGUF rows are W[n][k]; the GEMM's B is W^T, k rows of n.
                let rows = g.tensor_data(t);
                let mut b = vec![0u16; k * n];
                for (j, row) in rows.chunks_exact(2 * k).enumerate() {
                    for (i, v) in row.chunks_exact(2).enumerate() {
                        b[i * n + j] = u16::from_le_bytes([v[0], v[1]]);
                    }
                }
                match prune {
                    // Per output row (a column of B), so every output
                    // feature keeps the same share of its inputs; seed 0
                    // breaks ties, so a run is reproducible.
                    Some(sparsity) => {
                        let pruning = Pruning { sparsity, scope: PruneScope::PerColumn, seed: 0 };
                        let pruned = pruning.prune_bf16(&b, k, n).map_err(|e| pack_error(e.into()))?;
                        LinearWeights::SparseBf16(SparseWeights::bf16(&pruned, k, n).map_err(pack_error)?)
                    }
                    None => {
                        let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default())
                            .map_err(|e| pack_error(crate::gemm::GemmError::from(e)))?;
                        LinearWeights::Bf16(packed)
                    }
                }
            }
        };
        // The packed copy replaces the mapped bytes (docs/PLACEMENT.md:
        // a repacked buffer never sits beside its source). A tied
        // embedding's rows are still looked up: each lookup faults back in
        // only the page of its row.
        g.release_pages(t);
        Ok(Linear { weights, buffer })
    }
}

impl Linear {
    /// Bytes of the packed weights.
    pub fn bytes(&self) -> usize {
        match &self.weights {
            LinearWeights::Quant(q) => q.packed_bytes(),
            LinearWeights::Bf16(b) => b.as_bytes().len(),
            LinearWeights::SparseBf16(s) => s.stream_bytes(),
            LinearWeights::Rows { .. } => 0,
        }
    }
}

/// One repeating layer, ready to run.
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Linear,
    pub w_up: Linear,
    pub w_down: Linear,
}

/// The weights the forward pass reads.
pub struct Weights {
    /// The embedding, read row by row from the mapping.
    pub token_embd: TensorInfo,
    /// The repeating layers the CPU runs (the first ones; the GPU has the rest).
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>,
    /// The LM head, unless the plan put it on a GPU.
    pub output: Option<Linear>,
}

impl Weights {
    /// Packs every linear weight where `plan` puts it, the repeating
    /// layers' pruned to `sparsity` if given; `progress` is called after
    /// each tensor with (done, total).
    ///
    /// # Errors
    /// A buffer kind no CPU path can run from yet (GPU and host buffers
    /// belong to the GPU backend), a packing error; with `sparsity`, a
    /// value outside 0..=1 or a repeating-layer weight that is not BF16.
    pub fn load(
        g: &Gguf,
        t: &Tensors,
        plan: &Placement,
        sparsity: Option<f64>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Weights, ModelError> {
        if let Some(s) = sparsity {
            t.check_sparsity(s)?;
        }
        // The GPU's layers are uploaded by the GPU backend, not here.
        let cpu_layers = t.layers.len() - plan.gpu_layers.min(t.layers.len());
        let total = cpu_layers * 9 + 2;
        let mut done = 0;
        let mut step = || {
            done += 1;
            progress(done, total);
        };
        let norm = |t: &TensorInfo| f32_vector(g.tensor_data(t));
        let mut layers = Vec::with_capacity(cpu_layers);
        for (l, ts) in t.layers.iter().enumerate().take(cpu_layers) {
            let lin = |i: usize| {
                let slot = Slot { role: Role::LAYER[i], layer: Some(l) };
                Linear::pack(g, &ts[i], plan.buffer(slot), sparsity)
            };
            let layer = Layer {
                attn_norm: norm(&ts[0]),
                wq: lin(1)?,
                wk: lin(2)?,
                wv: lin(3)?,
                wo: lin(4)?,
                ffn_norm: norm(&ts[5]),
                w_gate: lin(6)?,
                w_up: lin(7)?,
                w_down: lin(8)?,
            };
            layers.push(layer);
            for _ in 0..9 {
                step();
            }
        }
        // A tied projection is packed from the embedding's bytes; the
        // embedding itself stays mapped for row lookup.
        let out_tensor = t.output.as_ref().unwrap_or(&t.token_embd);
        let output = match plan.buffer(Slot { role: Role::Output, layer: None }) {
            Buffer::Gpu(_) => None,
            buffer => Some(Linear::pack(g, out_tensor, buffer, None)?),
        };
        step();
        let output_norm = norm(&t.output_norm);
        step();
        Ok(Weights { token_embd: t.token_embd.clone(), layers, output_norm, output })
    }

    /// Bytes of packed linear weights held in memory.
    pub fn packed_bytes(&self) -> usize {
        let layer = |l: &Layer| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|x| x.bytes()).sum::<usize>()
        };
        self.layers.iter().map(layer).sum::<usize>() + self.output.as_ref().map_or(0, Linear::bytes)
    }
}

/// Little-endian f32s.
pub(crate) fn f32_vector(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Row `row` of a 2-D tensor (an embedding row, or any weight row) as f32,
/// decoded the way
/// ggml dequantizes each format: `d * q` (Q8_0), `d * (q - 8)` (Q4_0),
/// `d * q + m` (Q4_1) with f16 scales widened exactly (docs/FORMATS.md,
/// "Block formats").
///
/// # Errors
/// A row index outside the vocabulary.
pub fn dequantize_row(g: &Gguf, t: &TensorInfo, row: u32, out: &mut [f32]) -> Result<(), ModelError> {
    let (width, rows) = (t.dims()[0] as usize, t.dims()[1]);
    if u64::from(row) >= rows {
        return Err(ModelError::TokenOutOfRange { token: row, n_vocab: rows as usize });
    }
    let row_bytes = t.byte_size() as usize / rows as usize;
    let start = row as usize * row_bytes;
    let bytes = &g.tensor_data(t)[start..start + row_bytes];
    let half = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    match t.ggml_type() {
        GgmlType::F32 => out
            .iter_mut()
            .zip(bytes.chunks_exact(4))
            .for_each(|(o, b)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => out.iter_mut().zip(bytes.chunks_exact(2)).for_each(|(o, b)| *o = half(b)),
        GgmlType::BF16 => {
            out.iter_mut().zip(bytes.chunks_exact(2)).for_each(|(o, b)| *o = bf16::from_le_bytes([b[0], b[1]]).to_f32())
        }
        GgmlType::Q8_0 => {
            for (o, blk) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(34)) {
                let d = half(blk);
                o.iter_mut().zip(&blk[2..]).for_each(|(o, &q)| *o = d * f32::from(q as i8));
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let (size, has_min) = if t.ggml_type() == GgmlType::Q4_1 { (20, true) } else { (18, false) };
            for (o, blk) in out.chunks_exact_mut(32).zip(bytes.chunks_exact(size)) {
                let d = half(blk);
                let (m, qs) = if has_min { (half(&blk[2..]), &blk[4..]) } else { (0.0, &blk[2..]) };
                for (j, &b) in qs.iter().enumerate() {
                    let (lo, hi) = (f32::from(b & 15), f32::from(b >> 4));
                    if has_min {
                        o[j] = d * lo + m;
                        o[j + 16] = d * hi + m;
                    } else {
                        o[j] = d * (lo - 8.0);
                        o[j + 16] = d * (hi - 8.0);
                    }
                }
            }
        }
        other => unreachable!("{} embeddings are refused by Tensors::find", shown_name(other.name())),
    }
    debug_assert_eq!(out.len(), width);
    Ok(())
}
