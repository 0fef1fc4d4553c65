//! The layers `-ngl N` puts on a GPU: the last N repeating layers (and the
//! output norm and LM head when N covers every layer), their weights
//! uploaded as the file's tensor bytes in their GGUF block format
//! (docs/PLACEMENT.md), a KV cache on the GPU, and the forward pass of
//! those layers built from the kernels of src/gpu/kernels.cu in the order
//! of the CPU's ([`super::llama`]), so that the GPU's logits carry the
//! CPU's bits wherever the C library's and CUDA's double functions round
//! alike (tests/placement_scenarios.rs measures it).
//!
//! The hidden state crosses between the CPU's layers and the GPU's through
//! one page-locked host buffer, once per boundary: up before the first GPU
//! layer, back after the last when the CPU runs the LM head. With several
//! GPUs each holds one [`GpuWeights`] part (a range of layers, the last
//! part the head) and the hidden state passes from part to part through
//! their page-locked buffers (no peer-to-peer copy yet). A single-row step
//! (generation) runs as a CUDA graph captured once per session.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use cudarc::driver::{CudaSlice, PinnedHostSlice};

use crate::gguf::{Gguf, TensorInfo};
use crate::gpu::{AttentionShape, Gpu, GpuError, Graph, Position, RopeShape, RowFormat, Then};

use super::config::LlamaConfig;
use super::weights::{f32_vector, Tensors};
use super::ModelError;

/// A linear weight on the GPU: `n` rows of `k` in `format`, the file's bytes.
struct GpuLinear {
    bytes: CudaSlice<u8>,
    format: RowFormat,
    n: usize,
    k: usize,
}

struct GpuLayer {
    attn_norm: CudaSlice<f32>,
    ffn_norm: CudaSlice<f32>,
    wq: GpuLinear,
    wk: GpuLinear,
    wv: GpuLinear,
    wo: GpuLinear,
    w_gate: GpuLinear,
    w_up: GpuLinear,
    w_down: GpuLinear,
}

/// The output norm and the LM head, when every layer is on the GPU.
struct GpuHead {
    norm: CudaSlice<f32>,
    output: GpuLinear,
}

/// One GPU's share of a model: a range of layers and maybe the head.
pub struct GpuWeights {
    gpu: Gpu,
    range: Range<usize>,
    layers: Vec<GpuLayer>,
    head: Option<GpuHead>,
    bytes: u64,
    /// Working buffers and the page-locked boundary buffer, kept from call
    /// to call and session to session (allocating page-locked memory takes
    /// milliseconds); one forward pass holds them at a time.
    workspace: std::sync::Mutex<Option<Workspace>>,
}

/// [`GpuWeights::workspace`]: buffers for `rows` rows and a context of
/// `n_ctx`, and the decode step last captured on them.
struct Workspace {
    scratch: Scratch,
    io: HostIo,
    rows: usize,
    n_ctx: usize,
    /// A one-row step captured for (session id, logit rows): it names this
    /// workspace's buffers and that session's KV cache, so it goes when the
    /// workspace grows and is never replayed for another session.
    decode: Option<((u64, usize), Graph)>,
}

/// Page-locked buffers the GPU's DMA reads and writes directly.
struct HostIo {
    /// The hidden state crossing between the CPU's and the GPU's layers.
    boundary: PinnedHostSlice<f32>,
    /// One row of logits: where a captured step leaves them.
    logits_row: PinnedHostSlice<f32>,
}

impl GpuWeights {
    /// Uploads layers `range` of `t` (and the head with `with_head`)
    /// to `gpu`.
    ///
    /// # Errors
    /// A tensor type without a GPU kernel, out of GPU memory or another
    /// driver error (naming the step); nothing stays allocated on error.
    pub fn load(
        gpu: Gpu,
        g: &Gguf,
        t: &Tensors,
        range: Range<usize>,
        with_head: bool,
    ) -> Result<GpuWeights, ModelError> {
        let mut bytes = 0u64;
        let mut upload_norm = |t: &TensorInfo| -> Result<CudaSlice<f32>, ModelError> {
            bytes += t.byte_size();
            gpu.upload(&f32_vector(g.tensor_data(t))).map_err(gpu_error)
        };
        let mut layers = Vec::with_capacity(range.len());
        let mut linear_bytes = 0u64;
        let mut linear = |t: &TensorInfo| -> Result<GpuLinear, ModelError> {
            let format = RowFormat::of(t.ggml_type()).ok_or_else(|| ModelError::TensorType {
                name: t.name().to_string(),
                found: t.ggml_type().name(),
                supported: "Q8_0, Q4_0, Q4_1 or BF16 on a GPU (run this layer on the CPU: lower -ngl)".into(),
            })?;
            linear_bytes += t.byte_size();
            let (k, n) = (t.dims()[0] as usize, t.dims()[1] as usize);
            Ok(GpuLinear { bytes: gpu.upload(g.tensor_data(t)).map_err(gpu_error)?, format, n, k })
        };
        for ts in &t.layers[range.clone()] {
            // Role::LAYER order: attn_norm, q, k, v, o, ffn_norm, gate, up, down.
            let (wq, wk, wv, wo) = (linear(&ts[1])?, linear(&ts[2])?, linear(&ts[3])?, linear(&ts[4])?);
            let (w_gate, w_up, w_down) = (linear(&ts[6])?, linear(&ts[7])?, linear(&ts[8])?);
            layers.push(GpuLayer {
                attn_norm: upload_norm(&ts[0])?,
                ffn_norm: upload_norm(&ts[5])?,
                wq,
                wk,
                wv,
                wo,
                w_gate,
                w_up,
                w_down,
            });
        }
        let head = if with_head {
            let output = linear(t.output.as_ref().unwrap_or(&t.token_embd))?;
            Some(GpuHead { norm: upload_norm(&t.output_norm)?, output })
        } else {
            None
        };
        Ok(GpuWeights { range, layers, head, bytes: bytes + linear_bytes, gpu, workspace: std::sync::Mutex::new(None) })
    }

    /// The repeating layers on this GPU.
    pub fn layers(&self) -> Range<usize> {
        self.range.clone()
    }

    /// Whether the output norm and LM head run on the GPU.
    pub fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// Bytes of weights on the GPU (the file's tensor bytes).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

fn gpu_error(e: GpuError) -> ModelError {
    ModelError::Gpu(Box::new(e))
}

/// A session's state on the GPU: the KV cache of the GPU's layers and the
/// position of its next batch.
pub struct GpuSession {
    /// Names this session's captured decode step in the workspace.
    id: u64,
    k_cache: Vec<CudaSlice<f32>>,
    v_cache: Vec<CudaSlice<f32>>,
    position: Position,
    n_ctx: usize,
}

/// Session ids, never reused: a graph captured for a dropped session's KV
/// cache can never be replayed for another.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(0);

struct Scratch {
    x: CudaSlice<f32>,
    h: CudaSlice<f32>,
    q: CudaSlice<f32>,
    k: CudaSlice<f32>,
    v: CudaSlice<f32>,
    attn: CudaSlice<f32>,
    gate: CudaSlice<f32>,
    up: CudaSlice<f32>,
    /// Quantized (or bf16) activations of the widest input, two of them:
    /// a matmul reads one while its fused tail writes the other.
    act: CudaSlice<u8>,
    act2: CudaSlice<u8>,
    scores: CudaSlice<f32>,
    logits: CudaSlice<f32>,
}

impl GpuSession {
    /// A KV cache of `n_ctx` positions for every GPU layer of `w`.
    ///
    /// # Errors
    /// Out of GPU memory (lower -c or -ngl), another driver error.
    pub fn new(w: &GpuWeights, cfg: &LlamaConfig, n_ctx: usize) -> Result<GpuSession, ModelError> {
        let per_layer = n_ctx * cfg.kv_dim();
        let mut k_cache = Vec::with_capacity(w.layers.len());
        let mut v_cache = Vec::with_capacity(w.layers.len());
        for _ in &w.layers {
            k_cache.push(w.gpu.zeros(per_layer, "allocating the GPU KV cache").map_err(gpu_error)?);
            v_cache.push(w.gpu.zeros(per_layer, "allocating the GPU KV cache").map_err(gpu_error)?);
        }
        let position = w.gpu.position(0).map_err(gpu_error)?;
        let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        Ok(GpuSession { id, k_cache, v_cache, position, n_ctx })
    }
}

impl Workspace {
    /// Buffers for `m` rows and a context of `n_ctx` (`current` kept when
    /// large enough).
    fn ensure(
        current: &mut Option<Workspace>,
        w: &GpuWeights,
        cfg: &LlamaConfig,
        m: usize,
        n_ctx: usize,
    ) -> Result<(), ModelError> {
        if current.as_ref().is_some_and(|ws| ws.rows >= m && ws.n_ctx >= n_ctx) {
            return Ok(());
        }
        // Grow both dimensions to at least what was there before.
        let (m, n_ctx) = current.as_ref().map_or((m, n_ctx), |ws| (ws.rows.max(m), ws.n_ctx.max(n_ctx)));
        *current = None;
        let gpu = &w.gpu;
        let (e, kv, ff) = (cfg.n_embd, cfg.kv_dim(), cfg.n_ff);
        let step = "allocating GPU working buffers";
        let z = |len: usize| gpu.zeros::<f32>(len, step).map_err(gpu_error);
        // The widest activation row in its widest format (bf16: 2 bytes per value).
        let act = m * 2 * e.max(ff);
        let vocab = w.head.as_ref().map_or(1, |h| h.output.n);
        let scratch = Scratch {
            x: z(m * e)?,
            h: z(m * e)?,
            q: z(m * e)?,
            k: z(m * kv)?,
            v: z(m * kv)?,
            attn: z(m * e)?,
            gate: z(m * ff)?,
            up: z(m * ff)?,
            act: gpu.zeros::<u8>(act, step).map_err(gpu_error)?,
            act2: gpu.zeros::<u8>(act, step).map_err(gpu_error)?,
            scores: z(m * cfg.n_head * n_ctx)?,
            logits: z(m * vocab)?,
        };
        let io = HostIo {
            boundary: gpu.pinned(m * e).map_err(gpu_error)?,
            logits_row: gpu.pinned(vocab).map_err(gpu_error)?,
        };
        *current = Some(Workspace { scratch, io, rows: m, n_ctx, decode: None });
        Ok(())
    }
}

impl GpuSession {
    /// Runs the GPU's layers on the `m` rows of hidden state in `x` (row
    /// `i` at position `pos0 + i`). With the head on the GPU, returns the
    /// logits of rows `first_logits..m`; otherwise writes the hidden state
    /// after the last layer back into `x` and returns None.
    ///
    /// One row (a generated token) runs as a captured graph: the step is
    /// recorded once per session and replayed, the hidden state and the
    /// position read from page-locked memory at each replay. Generation is
    /// otherwise bound by the ~300 launches of a token.
    ///
    /// # Errors
    /// A GPU error naming the step (a kernel's fault surfaces when the
    /// work is waited for).
    pub fn run(
        &mut self,
        w: &GpuWeights,
        cfg: &LlamaConfig,
        x: &mut [f32],
        pos0: usize,
        first_logits: usize,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        let e = cfg.n_embd;
        let m = x.len() / e;
        if pos0 + m > self.n_ctx {
            return Err(ModelError::Context(format!(
                "context full: {pos0} + {m} exceed the GPU cache of {}",
                self.n_ctx
            )));
        }
        let mut workspace = w.workspace.lock().unwrap_or_else(|p| p.into_inner());
        Workspace::ensure(&mut workspace, w, cfg, m, self.n_ctx)?;
        let gpu = &w.gpu;
        let Some(Workspace { scratch, io, decode, .. }) = workspace.as_mut() else {
            unreachable!("ensure allocated it")
        };
        io.boundary
            .as_mut_slice()
            .map_err(|source| gpu_error(GpuError::Driver { step: "writing the boundary buffer", source }))?[..m * e]
            .copy_from_slice(x);
        gpu.stage_position(&mut self.position, pos0).map_err(gpu_error)?;
        let head_rows = if w.head.is_some() { m - first_logits } else { 0 };
        if m == 1 {
            let key = (self.id, head_rows);
            if decode.as_ref().map(|(k, _)| *k) != Some(key) {
                *decode = None;
                let graph = gpu.capture(|| self.enqueue(w, cfg, scratch, io, 1, first_logits)).map_err(gpu_error)?;
                *decode = Some((key, graph));
            }
            decode.as_ref().map_or(Ok(()), |(_, g)| g.replay()).map_err(gpu_error)?;
        } else {
            self.enqueue(w, cfg, scratch, io, m, first_logits).map_err(gpu_error)?;
        }
        gpu.synchronize().map_err(gpu_error)?;
        let Some(head) = &w.head else {
            let host = io
                .boundary
                .as_slice()
                .map_err(|source| gpu_error(GpuError::Driver { step: "reading the boundary buffer", source }))?;
            x.copy_from_slice(&host[..m * e]);
            return Ok(None);
        };
        let len = head_rows * head.output.n;
        if m == 1 {
            let host = io
                .logits_row
                .as_slice()
                .map_err(|source| gpu_error(GpuError::Driver { step: "reading the logits", source }))?;
            return Ok(Some(host[..len].to_vec()));
        }
        // Only the rows asked for: the buffer is sized for the largest batch.
        gpu.download_prefix(&scratch.logits, len).map(Some).map_err(gpu_error)
    }

    /// Queues the GPU's part of a forward pass on the `m` rows of hidden
    /// state in `io.boundary` at the staged position: the copy up, the
    /// layers, then the hidden state back into `io.boundary` or, with the
    /// head, the logits of rows `first_logits..m` into `scratch.logits`
    /// (and the one row of a single-row step into `io.logits_row`).
    fn enqueue(
        &mut self,
        w: &GpuWeights,
        cfg: &LlamaConfig,
        s: &mut Scratch,
        io: &mut HostIo,
        m: usize,
        first_logits: usize,
    ) -> Result<(), GpuError> {
        let gpu = &w.gpu;
        let (e, kv, ff) = (cfg.n_embd, cfg.kv_dim(), cfg.n_ff);
        gpu.copy_to_device(&io.boundary, &mut s.x, m * e)?;
        gpu.upload_position(&mut self.position)?;
        let Scratch { x: dx, h, q, k, v, attn, gate, up, act, act2, scores, logits } = s;
        // x W^T for the activation rows in `input` (`k` wide) into `out`.
        let matmul = |lin: &GpuLinear,
                      input: &CudaSlice<f32>,
                      act: &mut CudaSlice<u8>,
                      out: &mut CudaSlice<f32>,
                      rows: usize,
                      accumulate: bool|
         -> Result<(), GpuError> {
            gpu.quantize_activations(lin.format, act, input, rows, lin.k)?;
            gpu.matmul(lin.format, out, &lin.bytes, act, lin.n, lin.k, rows, accumulate)
        };
        let rope = RopeShape {
            rows: m,
            n_head: cfg.n_head,
            n_head_kv: cfg.n_head_kv,
            head_dim: cfg.head_dim,
            rope_dim: cfg.rope_dim,
            base: cfg.rope_base,
        };
        let attention = AttentionShape {
            rows: m,
            n_head: cfg.n_head,
            n_head_kv: cfg.n_head_kv,
            head_dim: cfg.head_dim,
            n_ctx: self.n_ctx,
            scale: 1.0 / (cfg.head_dim as f32).sqrt(),
        };
        // Six launches per layer for a token: Q, K and V in one GEMV, gate
        // and up in one (when their formats agree, as in every llama.cpp
        // quantization); each step that needs a whole output row (a norm,
        // SwiGLU, the quantization of the next matmul's input) fused into
        // the launch before it. `act` carries a layer's attention and FFN
        // inputs, `act2` the inputs of its output and down projections.
        let eps = cfg.rms_eps;
        if let Some(first) = w.layers.first() {
            gpu.rms_norm_quantize(h, act, dx, &first.attn_norm, eps, m, first.wq.format)?;
        }
        for (l, layer) in w.layers.iter().enumerate() {
            let fq = layer.wq.format;
            if layer.wk.format == fq && layer.wv.format == fq {
                let targets = [
                    Some((&mut *q, &layer.wq.bytes, e)),
                    Some((&mut *k, &layer.wk.bytes, kv)),
                    Some((&mut *v, &layer.wv.bytes, kv)),
                ];
                gpu.matmuls(fq, targets, act, e, m, false, Then::Nothing)?;
            } else {
                gpu.matmul(fq, q, &layer.wq.bytes, act, e, e, m, false)?;
                matmul(&layer.wk, h, act, k, m, false)?;
                matmul(&layer.wv, h, act, v, m, false)?;
            }
            let (kc, vc) = (&mut self.k_cache[l], &mut self.v_cache[l]);
            gpu.rope_into_cache(q, k, v, kc, vc, rope, &self.position)?;
            if cfg.head_dim.is_multiple_of(32) {
                gpu.attend(attn, q, kc, vc, scores, attention, &self.position, Some((&mut *act2, layer.wo.format)))?;
            } else {
                gpu.attend(attn, q, kc, vc, scores, attention, &self.position, None)?;
                gpu.quantize_activations(layer.wo.format, act2, attn, m, e)?;
            }
            let fg = layer.w_gate.format;
            let ffn_norm = Then::NormQuantize { h: &mut *h, act: &mut *act, weight: &layer.ffn_norm, eps, format: fg };
            gpu.matmuls(
                layer.wo.format,
                [Some((&mut *dx, &layer.wo.bytes, e)), None, None],
                act2,
                e,
                m,
                true,
                ffn_norm,
            )?;
            let fd = layer.w_down.format;
            if layer.w_up.format == fg {
                let targets =
                    [Some((&mut *gate, &layer.w_gate.bytes, ff)), Some((&mut *up, &layer.w_up.bytes, ff)), None];
                gpu.matmuls(fg, targets, act, e, m, false, Then::SwigluQuantize { act: &mut *act2, format: fd })?;
            } else {
                gpu.matmul(fg, gate, &layer.w_gate.bytes, act, ff, e, m, false)?;
                matmul(&layer.w_up, h, act, up, m, false)?;
                gpu.swiglu_quantize(gate, up, act2, m, ff, fd)?;
            }
            let next_norm = match w.layers.get(l + 1) {
                Some(next) => Then::NormQuantize {
                    h: &mut *h,
                    act: &mut *act,
                    weight: &next.attn_norm,
                    eps,
                    format: next.wq.format,
                },
                None => Then::Nothing,
            };
            gpu.matmuls(fd, [Some((&mut *dx, &layer.w_down.bytes, e)), None, None], act2, ff, m, true, next_norm)?;
        }
        let Some(head) = &w.head else {
            return gpu.copy_to_host(dx, 0, &mut io.boundary, m * e);
        };
        // The head on rows first_logits..m: those rows of x, normed, in h.
        let rows = m - first_logits;
        if rows == 0 {
            return Ok(());
        }
        gpu.copy_within(dx, first_logits * e, rows * e, q)?;
        let out = &head.output;
        gpu.rms_norm_quantize(h, act, q, &head.norm, cfg.rms_eps, rows, out.format)?;
        gpu.matmul(out.format, logits, &out.bytes, act, out.n, out.k, rows, false)?;
        if m == 1 {
            gpu.copy_to_host(logits, 0, &mut io.logits_row, out.n)?;
        }
        Ok(())
    }
}
