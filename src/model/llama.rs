//! The llama forward pass: embedding lookup; per layer RMSNorm, Q/K/V,
//! RoPE, grouped-query attention over the KV cache, output projection,
//! residual, RMSNorm, gate/up, SwiGLU, down, residual; final norm and the
//! LM head. Matmuls go through `gemm_quant` (prefill kernels for a batch
//! of prompt tokens, decode kernels for one), every other step through
//! [`super::ops`] in a fixed order, so the logits' bits do not depend on
//! the ISA, the thread count or `--amx`.

use std::path::Path;

use crate::gemm::quant::activations::quantize_rows_threaded;
use crate::gemm::rows::{gemm_rows, GgufRows, RowsFormat};
use crate::gemm::{bf16_from_f32, gemm_bf16, gemm_quant, GemmError, GemmOptions};
use crate::gguf::Gguf;
use crate::gpu::Gpu;
use crate::isa::{self, availability_for, Isa, Op};
use crate::kernels::quant_avx512::{ActivationFormat, QuantActivations};
use crate::sparse::gemm_sparse_bf16;

use super::config::{LlamaConfig, MAX_CONTEXT};
use super::offload::{GpuSession, GpuWeights};
use super::ops::{add_in_place, dot, rms_norm, rope, softmax, swiglu};
use super::placement::{place, Buffer, Machine, Placement, PlacementFlags, Role, Slot};
use super::profile::{start, stop, Profile};
use super::weights::{dequantize_row, Linear, LinearWeights, Tensors, Weights};

use super::ModelError;

/// How to load a model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadOptions {
    pub placement: PlacementFlags,
    /// The CUDA devices to plan with, by ordinal: GPU i of the plan runs
    /// on device `gpu_devices[i]` (repeats allowed: the split tests run
    /// two parts on one device). None: every device the driver reports.
    pub gpu_devices: Option<Vec<usize>>,
    /// `--gpu-fallback`: when the GPU layers cannot be set up (a GPU too
    /// small for its share, out of GPU memory, a driver or NVRTC error),
    /// warn and run every layer on the CPU instead of stopping.
    pub gpu_fallback: bool,
    /// `--sparse S`: prune every repeating-layer linear weight to this
    /// sparsity (magnitude, per output row) and run it through the sparse
    /// dispatch ([`crate::sparse`]). BF16 models only.
    pub sparsity: Option<f64>,
}

/// A loaded model: the mapped file, its config, its weights as placed.
pub struct Model {
    gguf: Gguf,
    pub config: LlamaConfig,
    pub plan: Placement,
    weights: Weights,
    /// The layers the plan put on GPUs, uploaded: one part per GPU with
    /// layers, in layer order.
    gpu: Vec<GpuWeights>,
}

impl Model {
    /// Opens, validates, plans and packs. `progress(done, total)` is called
    /// after each tensor.
    ///
    /// # Errors
    /// A bad file, a non-llama model, a missing or mis-shaped tensor, an
    /// unsupported type, a packing failure.
    pub fn load(
        path: impl AsRef<Path>,
        opts: LoadOptions,
        progress: impl FnMut(usize, usize),
    ) -> Result<Model, ModelError> {
        let gguf = Gguf::open(path)?;
        Self::from_gguf(gguf, opts, progress)
    }

    /// [`Model::load`] from a parsed file.
    ///
    /// # Errors
    /// As [`Model::load`].
    pub fn from_gguf(gguf: Gguf, opts: LoadOptions, progress: impl FnMut(usize, usize)) -> Result<Model, ModelError> {
        let config = LlamaConfig::from_gguf(&gguf)?;
        let tensors = Tensors::find(&gguf, &config)?;
        let devices = match (&opts.gpu_devices, opts.placement.n_gpu_layers) {
            (_, 0) => Ok(Vec::new()),
            (Some(list), _) => Ok(list.clone()),
            (None, _) => crate::gpu::probe()
                .map(|found| found.iter().map(|g| g.ordinal).collect())
                .map_err(|why| format!("no CUDA device ({why})")),
        };
        let gpus = devices.as_ref().map_err(Clone::clone).and_then(|d| free_memory(d));
        let machine = Machine { amx: amx_for_placement(), gpus };
        let descs = tensors.descs();
        let planned =
            place(&opts.placement, &machine, config.n_layers, &descs).map_err(ModelError::from).and_then(|plan| {
                let devices = devices.as_deref().unwrap_or_default();
                upload_gpu_layers(&gguf, &tensors, &plan, devices).map(|gpu| (plan, gpu))
            });
        let (plan, gpu) = match planned {
            Ok(placed) => placed,
            Err(e) if opts.gpu_fallback => {
                // Nothing of the failed attempt stays on a GPU (its buffers
                // were dropped with the error); plan again without GPUs.
                let flags = PlacementFlags { n_gpu_layers: 0, ..opts.placement };
                let mut plan = place(&flags, &Machine { gpus: Ok(Vec::new()), ..machine }, config.n_layers, &descs)?;
                plan.warnings.push(format!("--gpu-fallback: {e}: running every layer on the CPU"));
                (plan, Vec::new())
            }
            Err(e) => return Err(e),
        };
        let weights = Weights::load(&gguf, &tensors, &plan, opts.sparsity, progress)?;
        Ok(Model { gguf, config, plan, weights, gpu })
    }

    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    /// Bytes of packed weights in memory (the rest is read from the map).
    pub fn packed_bytes(&self) -> usize {
        self.weights.packed_bytes()
    }

    /// The GPUs the plan put layers on, in layer order.
    pub fn gpus(&self) -> Vec<&crate::gpu::GpuInfo> {
        self.gpu.iter().map(|g| &g.gpu().info).collect()
    }
}

/// Whether `--amx` can be honoured: the AMX quantized kernels run here and
/// `TILEJIT_ISA` does not force another path.
fn amx_for_placement() -> Result<(), String> {
    match isa::forced().map_err(|e| e.to_string())? {
        Some(Isa::Amx) | None => availability_for(Isa::Amx, Op::Quant).map_err(|e| e.to_string()),
        Some(other) => Err(format!("TILEJIT_ISA={other} forces another path")),
    }
}

/// The free memory of each of `devices` (CUDA ordinals), or why there is
/// no CUDA device (or no such one).
fn free_memory(devices: &[usize]) -> Result<Vec<u64>, String> {
    let found = crate::gpu::probe().map_err(|why| format!("no CUDA device ({why})"))?;
    devices
        .iter()
        .map(|&d| {
            let gpu = found.get(d).ok_or_else(|| format!("no CUDA device {d} (the driver reports {})", found.len()))?;
            Ok(gpu.free_bytes as u64)
        })
        .collect()
}

/// The layers `plan` puts on GPUs, uploaded, one part per GPU with layers
/// (the head with the part that has the last layer, when the plan says
/// so); GPU i of the plan is CUDA device `devices[i]`.
fn upload_gpu_layers(
    g: &Gguf,
    t: &Tensors,
    plan: &Placement,
    devices: &[usize],
) -> Result<Vec<GpuWeights>, ModelError> {
    let head = plan.buffer(Slot { role: Role::Output, layer: None });
    let mut parts = Vec::new();
    for (i, layers) in plan.gpu_ranges.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
        let gpu = Gpu::open(devices[i]).map_err(|e| ModelError::Gpu(Box::new(e)))?;
        parts.push(GpuWeights::load(gpu, g, t, layers.clone(), head == Buffer::Gpu(i))?);
    }
    Ok(parts)
}

/// The KV cache: per layer, `n_ctx` positions of K and of V, f32.
struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

/// The forward pass's working buffers, reused from call to call.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
}

/// The GEMM options of one forward pass, per kind of weights. AMX runs
/// only for weights the plan put in an AMX buffer (`--amx`); for the
/// others the path is narrowed to the non-AMX ones, even when AMX is forced
/// (`TILEJIT_ISA` or the session's ISA): forcing AMX means AMX wherever the
/// plan allows it. The bits are the same either way. Resolved once per
/// forward pass, not per matmul.
struct Paths<'g> {
    amx: GemmOptions,
    quant: GemmOptions,
    bf16: GemmOptions,
    sparse_bf16: GemmOptions,
    /// The file, for weights read in place ([`LinearWeights::Rows`]).
    gguf: &'g Gguf,
}

/// One conversation with the model: its KV cache and position.
pub struct Session<'m> {
    model: &'m Model,
    cache: KvCache,
    /// The GPU layers' cache and buffers, when the model has GPU layers.
    /// Per GPU part of the model, its KV cache and position.
    gpu: Vec<GpuSession>,
    scratch: Scratch,
    profile: Option<Profile>,
    n_ctx: usize,
    pos: usize,
    opts: GemmOptions,
}

impl<'m> Session<'m> {
    /// A session with room for `n_ctx` tokens (at most the training
    /// context), running matmuls on `threads` threads.
    ///
    /// # Errors
    /// `n_ctx` zero or above the training context or [`MAX_CONTEXT`];
    /// zero threads; a cache that would not fit in memory.
    pub fn new(model: &'m Model, n_ctx: usize, threads: usize) -> Result<Session<'m>, ModelError> {
        let cfg = &model.config;
        let most = cfg.n_ctx_train.min(MAX_CONTEXT as usize);
        if n_ctx == 0 || n_ctx > most {
            return Err(ModelError::Context(format!(
                "-c {n_ctx}: the context must be 1..={most} (the model's training context)"
            )));
        }
        if threads == 0 {
            return Err(ModelError::Context("the thread count must be at least 1".into()));
        }
        let per_layer =
            n_ctx.checked_mul(cfg.kv_dim()).ok_or_else(|| ModelError::Context("KV cache size overflows".into()))?;
        let layer = || -> Result<Vec<f32>, ModelError> {
            let mut v = Vec::new();
            v.try_reserve_exact(per_layer).map_err(|_| {
                ModelError::Context(format!("a KV cache of {n_ctx} tokens does not fit in memory; lower -c"))
            })?;
            v.resize(per_layer, 0.0);
            Ok(v)
        };
        let cpu_layers = model.weights.layers.len();
        let mut k = Vec::with_capacity(cpu_layers);
        let mut v = Vec::with_capacity(cpu_layers);
        for _ in 0..cpu_layers {
            k.push(layer()?);
            v.push(layer()?);
        }
        let gpu = model.gpu.iter().map(|w| GpuSession::new(w, cfg, n_ctx)).collect::<Result<Vec<_>, _>>()?;
        let opts = GemmOptions { threads, ..GemmOptions::default() };
        Ok(Session {
            model,
            cache: KvCache { k, v },
            gpu,
            scratch: Scratch::default(),
            profile: None,
            n_ctx,
            pos: 0,
            opts,
        })
    }

    /// Runs the matmuls on `isa` (None: the dispatcher's choice, or
    /// `TILEJIT_ISA`). The output bits are the same on every path.
    pub fn with_isa(mut self, isa: Option<Isa>) -> Self {
        self.opts.isa = isa;
        self
    }

    /// Records where the time goes ([`Profile`]).
    pub fn with_profile(mut self) -> Self {
        self.profile = Some(Profile::default());
        self
    }

    /// The profile, if recording.
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    /// Tokens in the cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Runs `tokens` (a prompt batch, or one generated token) at the next
    /// positions and returns the logits of the last one.
    ///
    /// # Errors
    /// An empty batch, a token id outside the vocabulary, the context full.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.run(tokens, tokens.len().saturating_sub(1))
    }

    /// [`Session::forward`] returning the logits of every token of the
    /// batch, `tokens.len()` rows of the vocabulary (for perplexity and
    /// checks).
    ///
    /// # Errors
    /// As [`Session::forward`].
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.run(tokens, 0)
    }

    /// [`Session::forward`] returning the logits of the batch's tokens from
    /// `first` on (`tokens.len() - first` rows): the LM head, the largest
    /// matmul, runs only for those.
    ///
    /// # Errors
    /// As [`Session::forward`]; `first` beyond the batch.
    pub fn forward_from(&mut self, tokens: &[u32], first: usize) -> Result<Vec<f32>, ModelError> {
        if first >= tokens.len() {
            return Err(ModelError::Context(format!("logits from row {first} of a {}-token batch", tokens.len())));
        }
        self.run(tokens, first)
    }

    fn paths(&self) -> Result<Paths<'m>, ModelError> {
        let asked = match self.opts.isa {
            Some(isa) => Some(isa),
            None => isa::forced().map_err(GemmError::from)?,
        };
        let off_amx = |op| match asked {
            None | Some(Isa::Amx) => {
                let isa = if availability_for(Isa::Avx512, op).is_ok() { Isa::Avx512 } else { Isa::Scalar };
                GemmOptions { isa: Some(isa), ..self.opts }
            }
            Some(_) => self.opts,
        };
        Ok(Paths {
            amx: self.opts,
            quant: off_amx(Op::Quant),
            bf16: off_amx(Op::Bf16),
            sparse_bf16: off_amx(Op::SparseBf16),
            gguf: &self.model.gguf,
        })
    }

    /// Wall time of the model's linear layers alone on `m` rows (every
    /// repeating layer's seven matmuls with their activation quantisation,
    /// then the LM head on one row, as a prompt's forward pass runs them),
    /// through the paths a forward pass takes. Activations are a fixed
    /// pseudo-random pattern; the cache is not touched. `bench-model`'s
    /// prompt bound.
    ///
    /// # Errors
    /// `m` zero, a GEMM error.
    pub fn time_linear_layers(&self, m: usize) -> Result<std::time::Duration, ModelError> {
        if m == 0 {
            return Err(ModelError::Context("no rows to time".into()));
        }
        let (cfg, weights) = (&self.model.config, &self.model.weights);
        let (e, kv, ff) = (cfg.n_embd, cfg.kv_dim(), cfg.n_ff);
        let paths = self.paths()?;
        let wave = |len: usize| (0..len).map(|i| (i * 7919 % 1000) as f32 / 500.0 - 1.0).collect::<Vec<f32>>();
        let (h, g) = (wave(m * e), wave(m * ff));
        let (mut out_e, mut out_kv, mut out_ff) = (vec![0f32; m * e], vec![0f32; m * kv], vec![0f32; m * ff]);
        let mut logits = vec![0f32; cfg.n_vocab];
        let t = std::time::Instant::now();
        for layer in &weights.layers {
            let a = Activations::new(&h, m, e, None, None);
            a.matmul(&layer.wq, &mut out_e, &paths, "attn_q")?;
            a.matmul(&layer.wk, &mut out_kv, &paths, "attn_k")?;
            a.matmul(&layer.wv, &mut out_kv, &paths, "attn_v")?;
            Activations::new(&h, m, e, None, None).matmul(&layer.wo, &mut out_e, &paths, "attn_output")?;
            let a = Activations::new(&h, m, e, None, None);
            a.matmul(&layer.w_gate, &mut out_ff, &paths, "ffn_gate")?;
            a.matmul(&layer.w_up, &mut out_ff, &paths, "ffn_up")?;
            Activations::new(&g, m, ff, None, None).matmul(&layer.w_down, &mut out_e, &paths, "ffn_down")?;
        }
        if let Some(output) = &weights.output {
            Activations::new(&h[..e], 1, e, None, None).matmul(output, &mut logits, &paths, "output")?;
        }
        Ok(t.elapsed())
    }

    fn run(&mut self, tokens: &[u32], first_logits: usize) -> Result<Vec<f32>, ModelError> {
        let (model, cfg) = (self.model, &self.model.config);
        let m = tokens.len();
        if m == 0 {
            return Err(ModelError::Context("no tokens to run".into()));
        }
        if self.pos + m > self.n_ctx {
            return Err(ModelError::Context(format!(
                "context full: {} tokens in the cache + {m} new exceed -c {}",
                self.pos, self.n_ctx
            )));
        }
        let (e, kv, hd) = (cfg.n_embd, cfg.kv_dim(), cfg.head_dim);
        let paths = self.paths()?;
        // The buffers live in the session and keep their capacity from
        // token to token; every element is written before it is read.
        let Scratch { x, h, q, k, v, attn, proj, gate, up, scores } = &mut self.scratch;
        for (buf, len) in
            [(&mut *x, m * e), (&mut *h, m * e), (&mut *q, m * e), (&mut *attn, m * e), (&mut *proj, m * e)]
                .into_iter()
                .chain([(&mut *k, m * kv), (&mut *v, m * kv), (&mut *gate, m * cfg.n_ff), (&mut *up, m * cfg.n_ff)])
                .chain([(&mut *scores, self.pos + m)])
        {
            buf.resize(len, 0.0);
        }
        let prof = self.profile.as_ref();
        let t = start(prof);
        for (row, &t) in x.chunks_exact_mut(e).zip(tokens) {
            dequantize_row(&model.gguf, &model.weights.token_embd, t, row)?;
        }
        stop(prof, "embedding (copies)", None, t);
        let scale = 1.0 / (hd as f32).sqrt();
        for (l, layer) in model.weights.layers.iter().enumerate() {
            let at = Some(l);
            let t = start(prof);
            norm_rows(x, &layer.attn_norm, cfg.rms_eps, e, h);
            stop(prof, "norms", at, t);
            let a = Activations::new(h, m, e, prof, at);
            a.matmul(&layer.wq, q, &paths, "attn_q")?;
            a.matmul(&layer.wk, k, &paths, "attn_k")?;
            a.matmul(&layer.wv, v, &paths, "attn_v")?;
            let t = start(prof);
            for i in 0..m {
                let pos = self.pos + i;
                for head in q[i * e..(i + 1) * e].chunks_exact_mut(hd) {
                    rope(head, pos, cfg.rope_dim, cfg.rope_base);
                }
                for head in k[i * kv..(i + 1) * kv].chunks_exact_mut(hd) {
                    rope(head, pos, cfg.rope_dim, cfg.rope_base);
                }
                self.cache.k[l][pos * kv..(pos + 1) * kv].copy_from_slice(&k[i * kv..(i + 1) * kv]);
                self.cache.v[l][pos * kv..(pos + 1) * kv].copy_from_slice(&v[i * kv..(i + 1) * kv]);
            }
            stop(prof, "rope and KV cache copy", at, t);
            let t = start(prof);
            let (kc, vc) = (&self.cache.k[l], &self.cache.v[l]);
            if m == 1 {
                attend_row(cfg, &q[..e], kc, vc, self.pos, scale, scores, &mut attn[..e]);
            } else {
                let pos0 = self.pos;
                par_rows(self.opts.threads, &mut attn[..m * e], e, |i, out| {
                    let mut scores = vec![0f32; pos0 + i + 1];
                    attend_row(cfg, &q[i * e..(i + 1) * e], kc, vc, pos0 + i, scale, &mut scores, out);
                });
            }
            stop(prof, "attention", at, t);
            Activations::new(attn, m, e, prof, at).matmul(&layer.wo, proj, &paths, "attn_output")?;
            let t = start(prof);
            add_in_place(x, proj);
            norm_rows(x, &layer.ffn_norm, cfg.rms_eps, e, h);
            stop(prof, "norms", at, t);
            let a = Activations::new(h, m, e, prof, at);
            a.matmul(&layer.w_gate, gate, &paths, "ffn_gate")?;
            a.matmul(&layer.w_up, up, &paths, "ffn_up")?;
            let t = start(prof);
            let ff = cfg.n_ff;
            par_rows(self.opts.threads, gate, ff, |i, g| swiglu(g, &up[i * ff..(i + 1) * ff]));
            stop(prof, "swiglu", at, t);
            Activations::new(gate, m, cfg.n_ff, prof, at).matmul(&layer.w_down, proj, &paths, "ffn_down")?;
            let t = start(prof);
            add_in_place(x, proj);
            stop(prof, "norms", at, t);
        }
        // The GPUs' parts in layer order; the hidden state crosses between
        // them through each part's page-locked buffer, and the part with
        // the head returns the logits.
        for (part, weights) in self.gpu.iter_mut().zip(&model.gpu) {
            let t = start(prof);
            let logits = part.run(weights, cfg, x, self.pos, first_logits)?;
            stop(prof, "GPU layers", None, t);
            if let Some(logits) = logits {
                self.pos += m;
                return Ok(logits);
            }
        }
        self.pos += m;
        // The LM head on the rows asked for.
        let rows = m - first_logits;
        let t = start(prof);
        let mut normed = vec![0f32; rows * e];
        norm_rows(&x[(m - rows) * e..], &model.weights.output_norm, cfg.rms_eps, e, &mut normed);
        stop(prof, "norms", None, t);
        let mut logits = vec![0f32; rows * cfg.n_vocab];
        let output = model.weights.output.as_ref().expect("the plan keeps the head on the CPU without GPU logits");
        Activations::new(&normed, rows, e, prof, None).matmul(output, &mut logits, &paths, "output")?;
        Ok(logits)
    }
}

/// `f(i, row i)` for the `width`-wide rows of `data`, each row a work unit
/// of [`crate::threads::run_units`] (handed out dynamically, which also
/// balances a prompt's attention, where row i costs i + pos). Each row is one thread's whole work, in the
/// one-thread order: the thread count changes speed, never bits.
fn par_rows(threads: usize, data: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if threads <= 1 {
        data.chunks_exact_mut(width).enumerate().for_each(|(i, row)| f(i, row));
        return;
    }
    // Rows are the work units; one uncontended lock per row hands each to
    // its thread safely.
    let rows: Vec<std::sync::Mutex<&mut [f32]>> = data.chunks_exact_mut(width).map(std::sync::Mutex::new).collect();
    crate::threads::run_units::<_, std::convert::Infallible>(
        threads,
        rows.len(),
        || (),
        |_, i| {
            f(i, &mut rows[i].lock().unwrap_or_else(|p| p.into_inner()));
            Ok(())
        },
    )
    .unwrap_or_else(|never| match never {});
}

/// Causal grouped-query attention of one query row at position `pos`:
/// query head `hq` reads KV head `hq / group` at positions 0..=pos; the
/// head outputs go to `out` (`n_embd` wide). `scores` holds at least
/// `pos + 1` values.
#[allow(clippy::too_many_arguments)]
fn attend_row(
    cfg: &LlamaConfig,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    pos: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let (hd, kv) = (cfg.head_dim, cfg.kv_dim());
    for hq in 0..cfg.n_head {
        let hk = hq / cfg.group();
        let qh = &q[hq * hd..(hq + 1) * hd];
        let s = &mut scores[..=pos];
        for (t, s) in s.iter_mut().enumerate() {
            *s = dot(qh, &kc[t * kv + hk * hd..t * kv + (hk + 1) * hd]) * scale;
        }
        softmax(s);
        let out = &mut out[hq * hd..(hq + 1) * hd];
        out.fill(0.0);
        for (t, &p) in s.iter().enumerate() {
            let vt = &vc[t * kv + hk * hd..t * kv + (hk + 1) * hd];
            out.iter_mut().zip(vt).for_each(|(o, &x)| *o += p * x);
        }
    }
}

fn norm_rows(x: &[f32], w: &[f32], eps: f32, width: usize, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        rms_norm(xr, w, eps, or);
    }
}

/// `m` rows of f32 activations, quantized once per activation format the
/// weights ask for (Q8_0, or Q8_1 for Q4_1 weights).
struct Activations<'a> {
    x: &'a [f32],
    m: usize,
    k: usize,
    quantized: std::cell::RefCell<Vec<(ActivationFormat, QuantActivations)>>,
    /// Where to record time, and the layer it belongs to.
    prof: Option<&'a Profile>,
    layer: Option<usize>,
}

impl<'a> Activations<'a> {
    fn new(x: &'a [f32], m: usize, k: usize, prof: Option<&'a Profile>, layer: Option<usize>) -> Self {
        Activations { x, m, k, quantized: std::cell::RefCell::new(Vec::new()), prof, layer }
    }

    /// `out[i][j] = dot(row i, weight row j)`, on the path [`Paths`] gives
    /// the weights' buffer.
    fn matmul(&self, w: &Linear, out: &mut [f32], paths: &Paths, role: &'static str) -> Result<(), ModelError> {
        let opts = match (w.buffer, &w.weights) {
            (Buffer::Amx, _) => &paths.amx,
            (_, LinearWeights::Quant(_)) => &paths.quant,
            (_, LinearWeights::Bf16(_)) => &paths.bf16,
            (_, LinearWeights::SparseBf16(_)) => &paths.sparse_bf16,
            (_, LinearWeights::Rows { .. }) => &paths.quant,
        };
        let bf16_activations = || {
            let t = start(self.prof);
            let a: Vec<u16> = self.x.iter().map(|&v| bf16_from_f32(v)).collect();
            stop(self.prof, "activation quantisation", self.layer, t);
            a
        };
        let timed = |gemm: &mut dyn FnMut() -> Result<(), GemmError>| -> Result<(), ModelError> {
            let t = start(self.prof);
            gemm()?;
            stop(self.prof, role, self.layer, t);
            Ok(())
        };
        let q = match &w.weights {
            LinearWeights::Quant(q) => q,
            LinearWeights::Rows { format: RowsFormat::Bf16, tensor } => {
                let a: Vec<u8> = bf16_activations().iter().flat_map(|v| v.to_le_bytes()).collect();
                let (k, n) = (tensor.dims()[0] as usize, tensor.dims()[1] as usize);
                let rows = GgufRows { format: RowsFormat::Bf16, bytes: paths.gguf.tensor_data(tensor), n, k };
                return timed(&mut || gemm_rows(rows, &a, self.m, out, n, opts.threads));
            }
            LinearWeights::Rows { format: RowsFormat::Quant(f), tensor } => {
                let (k, n) = (tensor.dims()[0] as usize, tensor.dims()[1] as usize);
                let t = start(self.prof);
                let a = quantize_rows_threaded(f.activations(), self.x, self.k, opts.threads);
                stop(self.prof, "activation quantisation", self.layer, t);
                let rows = GgufRows { format: RowsFormat::Quant(*f), bytes: paths.gguf.tensor_data(tensor), n, k };
                return timed(&mut || gemm_rows(rows, &a, self.m, out, n, opts.threads));
            }
            LinearWeights::Bf16(b) => {
                let a = bf16_activations();
                return timed(&mut || gemm_bf16(self.m, &a, self.k, b, out, b.n(), false, opts));
            }
            LinearWeights::SparseBf16(s) => {
                let a = bf16_activations();
                return timed(&mut || gemm_sparse_bf16(self.m, &a, self.k, s, out, s.n(), false, opts));
            }
        };
        let format = q.format().activations();
        let mut cache = self.quantized.borrow_mut();
        if !cache.iter().any(|(f, _)| *f == format) {
            let t = start(self.prof);
            let bytes = quantize_rows_threaded(format, self.x, self.k, opts.threads);
            let a =
                QuantActivations::from_gguf(format, &bytes, self.m, self.k).map_err(crate::gemm::GemmError::from)?;
            cache.push((format, a));
            stop(self.prof, "activation quantisation", self.layer, t);
        }
        let a = &cache.iter().find(|(f, _)| *f == format).expect("quantized above").1;
        let t = start(self.prof);
        gemm_quant(q, a, out, q.n(), opts)?;
        stop(self.prof, role, self.layer, t);
        Ok(())
    }
}
