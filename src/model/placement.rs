//! Where each tensor lives: a pure function of the flags, the tensors'
//! roles, types and shapes, what the CPU can run and which GPUs there are
//! with how much free memory (docs/PLACEMENT.md, "The rule"). Nothing here
//! touches memory; the loader follows the plan, and the printed report is
//! the plan.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use crate::gguf::GgmlType;

/// What a tensor is for in a llama model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    TokenEmbd,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    OutputNorm,
    /// The output projection; absent from the file when tied to the embedding.
    Output,
}

impl Role {
    /// The roles of one repeating layer, in forward order.
    pub const LAYER: [Role; 9] = [
        Role::AttnNorm,
        Role::AttnQ,
        Role::AttnK,
        Role::AttnV,
        Role::AttnOutput,
        Role::FfnNorm,
        Role::FfnGate,
        Role::FfnUp,
        Role::FfnDown,
    ];

    /// The GGUF tensor name's role part (`blk.N.<this>.weight`).
    pub const fn gguf_name(self) -> &'static str {
        match self {
            Role::TokenEmbd => "token_embd",
            Role::AttnNorm => "attn_norm",
            Role::AttnQ => "attn_q",
            Role::AttnK => "attn_k",
            Role::AttnV => "attn_v",
            Role::AttnOutput => "attn_output",
            Role::FfnNorm => "ffn_norm",
            Role::FfnGate => "ffn_gate",
            Role::FfnUp => "ffn_up",
            Role::FfnDown => "ffn_down",
            Role::OutputNorm => "output_norm",
            Role::Output => "output",
        }
    }

    /// Consumed by a plain matrix multiply (the rest are norm vectors and
    /// the embedding, read by row lookup).
    pub const fn is_matmul(self) -> bool {
        !matches!(self, Role::TokenEmbd | Role::AttnNorm | Role::FfnNorm | Role::OutputNorm)
    }
}

/// A tensor's place in the model: its role and, for repeating-layer
/// tensors, the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub role: Role,
    pub layer: Option<usize>,
}

impl Slot {
    /// The GGUF tensor name.
    pub fn gguf_name(&self) -> String {
        match self.layer {
            Some(l) => format!("blk.{l}.{}.weight", self.role.gguf_name()),
            None => format!("{}.weight", self.role.gguf_name()),
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.gguf_name())
    }
}

/// Where a tensor's bytes live while the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Buffer {
    /// Read in place from the memory-mapped file (norm vectors, the
    /// embedding rows looked up per token).
    CpuMapped,
    /// Repacked once into the AVX-512 panel layout (same bytes as GGUF),
    /// which the AVX-512 and scalar paths read.
    CpuPacked,
    /// Repacked into the AMX tile layout, replacing the CPU packed form.
    Amx,
    /// Pinned host memory in the original layout (CPU layers of a run with
    /// GPU layers), so the GPU backend can copy from it.
    Host,
    /// On GPU `n`, in the file's block format.
    Gpu(usize),
}

impl fmt::Display for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buffer::CpuMapped => f.write_str("CPU mapped"),
            Buffer::CpuPacked => f.write_str("CPU packed"),
            Buffer::Amx => f.write_str("AMX"),
            Buffer::Host => f.write_str("CPU pinned host"),
            Buffer::Gpu(n) => write!(f, "GPU {n}"),
        }
    }
}

/// One tensor as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDesc {
    pub slot: Slot,
    pub ggml_type: GgmlType,
    /// GGUF dims: `[k, n]` for a matrix of n rows of k.
    pub dims: Vec<u64>,
    pub bytes: u64,
}

/// What the user asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlacementFlags {
    /// `--amx`.
    pub amx: bool,
    /// `-ngl N`: repeating layers (from the last) to put on GPUs.
    pub n_gpu_layers: usize,
    /// `--tensor-split A,B,...`: the GPUs' shares of the offloaded layers
    /// (GPU 0 first, missing ones 0); empty: in proportion to free memory.
    pub tensor_split: Vec<f64>,
}

/// What the machine offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Ok when the AMX quantized kernels can run here (and are not
    /// excluded by `TILEJIT_ISA`), else the reason.
    pub amx: Result<(), String>,
    /// The free memory in bytes of each GPU that can run layers, in the
    /// driver's order, or why there is none (one line).
    pub gpus: Result<Vec<u64>, String>,
}

/// A plan that cannot be carried out: what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    #[error("--tensor-split {given:?}: {why}")]
    TensorSplit { given: Vec<f64>, why: String },
    #[error(
        "GPU {gpu} is too small for its share: {layers} layer(s) need {need_mib:.1} MiB of weights, {free_mib:.1} MiB \
         are free; lower -ngl or give it a smaller --tensor-split share"
    )]
    GpuTooSmall { gpu: usize, layers: usize, need_mib: f64, free_mib: f64 },
}

/// The plan: a buffer per tensor, and what the user should be told.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub buffers: BTreeMap<Slot, Buffer>,
    /// Repeating layers on GPUs (the last `gpu_layers`).
    pub gpu_layers: usize,
    /// Per GPU (by index), the repeating layers it runs: consecutive
    /// ranges in GPU order, possibly empty.
    pub gpu_ranges: Vec<Range<usize>>,
    /// Whether any tensor went to AMX.
    pub amx: bool,
    /// One line each, printed once before the run.
    pub warnings: Vec<String>,
    /// Sizes for the report, per buffer kind.
    bytes: BTreeMap<Buffer, u64>,
    /// Roles per buffer kind, for the report.
    roles: BTreeMap<Buffer, Vec<Role>>,
}

/// Types an AMX kernel reads (docs/PLACEMENT.md, rule 4): the quantized
/// prefill kernels' block formats, and BF16 (the dense TDPBF16PS GEMM).
fn amx_kernel_for(t: GgmlType) -> bool {
    matches!(t, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 | GgmlType::BF16)
}

/// The placement rule (docs/PLACEMENT.md):
/// 1. AMX only when `--amx` is set, no layer is on a GPU and AMX can run;
///    otherwise one warning and the run goes on without it.
/// 2. The input embedding, every norm vector, the output norm and the
///    output projection never go to AMX.
/// 3. With GPU layers, CPU-resident layers stay in host buffers in their
///    original layout.
/// 4. Only matmul weights of a type with an AMX kernel and a shape it takes
///    (K a multiple of the 32-wide block) are repacked for AMX.
/// 5. Layers on GPUs are the last `n_gpu_layers`; the output norm and
///    projection join them when every layer is offloaded (llama.cpp's
///    convention), on the GPU of the last layer.
/// 6. With several GPUs the offloaded layers are split into consecutive
///    ranges in proportion to `--tensor-split`, or to the GPUs' free memory
///    without it (llama.cpp's split); a GPU's share may be no layers.
///
/// # Errors
/// A `--tensor-split` that does not fit the GPUs, or a GPU whose share of
/// weights exceeds its free memory.
pub fn place(
    flags: &PlacementFlags,
    machine: &Machine,
    n_layers: usize,
    tensors: &[TensorDesc],
) -> Result<Placement, PlacementError> {
    let mut warnings = Vec::new();
    let gpu_layers = match (flags.n_gpu_layers, &machine.gpus) {
        (0, _) => 0,
        (n, Err(why)) => {
            warnings.push(format!("-ngl {n}: {why}: running every layer on the CPU"));
            0
        }
        (n, Ok(free)) if free.is_empty() => {
            warnings.push(format!("-ngl {n}: no CUDA device: running every layer on the CPU"));
            0
        }
        (n, _) if n > n_layers => {
            warnings.push(format!("-ngl {n}: the model has {n_layers} layers; offloading all {n_layers}"));
            n_layers
        }
        (n, _) => n,
    };
    let free = machine.gpus.as_ref().map_or(&[][..], |f| &f[..]);
    let gpu_ranges = if gpu_layers > 0 {
        let shares = shares(&flags.tensor_split, free)?;
        split_layers(n_layers - gpu_layers..n_layers, &shares)
    } else {
        Vec::new()
    };
    let gpu_of = |layer: usize| gpu_ranges.iter().position(|r| r.contains(&layer));
    let amx = match (flags.amx, gpu_layers, &machine.amx) {
        (false, ..) => false,
        (true, g, _) if g > 0 => {
            warnings.push(format!(
                "--amx ignored: {g} layer(s) run on a GPU, and AMX is used only when every layer runs on the CPU"
            ));
            false
        }
        (true, _, Err(why)) => {
            warnings.push(format!("--amx ignored: {why}"));
            false
        }
        (true, _, Ok(())) => true,
    };
    // The head joins the GPU of the last layer.
    let head_gpu = if gpu_layers == n_layers && n_layers > 0 { gpu_of(n_layers - 1) } else { None };
    let mut buffers = BTreeMap::new();
    let mut bytes: BTreeMap<Buffer, u64> = BTreeMap::new();
    let mut roles: BTreeMap<Buffer, Vec<Role>> = BTreeMap::new();
    for t in tensors {
        let on_gpu = match t.slot.layer {
            Some(l) => gpu_of(l),
            None => head_gpu,
        };
        let buffer = if t.slot.role == Role::TokenEmbd {
            // Read by row lookup on the CPU in every run (llama.cpp keeps
            // it there too), straight from the mapping.
            Buffer::CpuMapped
        } else if let Some(gpu) = on_gpu {
            Buffer::Gpu(gpu)
        } else if !t.slot.role.is_matmul() || t.ggml_type == GgmlType::F32 {
            if gpu_layers > 0 {
                Buffer::Host
            } else {
                Buffer::CpuMapped
            }
        } else if gpu_layers > 0 {
            Buffer::Host
        } else if amx
            && t.slot.layer.is_some()
            && amx_kernel_for(t.ggml_type)
            && t.dims.first().is_some_and(|k| k % 32 == 0)
        {
            Buffer::Amx
        } else {
            Buffer::CpuPacked
        };
        buffers.insert(t.slot, buffer);
        *bytes.entry(buffer).or_default() += t.bytes;
        let r = roles.entry(buffer).or_default();
        if !r.contains(&t.slot.role) {
            r.push(t.slot.role);
        }
    }
    for (gpu, range) in gpu_ranges.iter().enumerate() {
        let need = bytes.get(&Buffer::Gpu(gpu)).copied().unwrap_or(0);
        if need > free[gpu] {
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            let (need_mib, free_mib) = (mib(need), mib(free[gpu]));
            return Err(PlacementError::GpuTooSmall { gpu, layers: range.len(), need_mib, free_mib });
        }
    }
    let amx = buffers.values().any(|b| *b == Buffer::Amx);
    Ok(Placement { buffers, gpu_layers, gpu_ranges, amx, warnings, bytes, roles })
}

/// Each GPU's share of the offloaded layers: `split` (missing values 0)
/// or, without it, the GPUs' free memory.
fn shares(split: &[f64], free: &[u64]) -> Result<Vec<f64>, PlacementError> {
    if split.is_empty() {
        return Ok(free.iter().map(|&b| b as f64).collect());
    }
    let bad = |why: String| PlacementError::TensorSplit { given: split.to_vec(), why };
    if split.len() > free.len() {
        return Err(bad(format!("{} values for {} GPU(s); give one per GPU", split.len(), free.len())));
    }
    if split.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(bad("shares must be finite and not negative".into()));
    }
    if split.iter().sum::<f64>() <= 0.0 {
        return Err(bad("every share is 0: give at least one GPU a share".into()));
    }
    Ok((0..free.len()).map(|g| split.get(g).copied().unwrap_or(0.0)).collect())
}

/// `layers` split into consecutive ranges, one per share, in proportion
/// (llama.cpp's rule: layer i of n goes to the first GPU whose cumulative
/// share exceeds i / n), so a GPU with share 0 gets none. All shares 0
/// (no free memory reported) split evenly.
fn split_layers(layers: Range<usize>, shares: &[f64]) -> Vec<Range<usize>> {
    let total: f64 = shares.iter().sum();
    let (shares, total) =
        if total > 0.0 { (shares.to_vec(), total) } else { (vec![1.0; shares.len()], shares.len() as f64) };
    let n = layers.len();
    let (mut next, mut cumulative) = (layers.start, 0.0);
    let mut ranges = Vec::with_capacity(shares.len());
    for (g, share) in shares.iter().enumerate() {
        cumulative += share;
        // The last GPU takes whatever rounding left over.
        let fraction = if g + 1 == shares.len() { f64::INFINITY } else { cumulative / total };
        let end = layers.start + (0..n).filter(|&i| fraction > i as f64 / n as f64).count();
        ranges.push(next..end);
        next = end;
    }
    ranges
}

impl Placement {
    /// The buffer of `slot` (CPU mapped for a slot the plan does not name).
    pub fn buffer(&self, slot: Slot) -> Buffer {
        self.buffers.get(&slot).copied().unwrap_or(Buffer::CpuMapped)
    }

    /// Bytes of the file's tensors per buffer kind.
    pub fn bytes_by_buffer(&self) -> &BTreeMap<Buffer, u64> {
        &self.bytes
    }
}

impl fmt::Display for Placement {
    /// One line per buffer kind with its size in MiB and the roles in it,
    /// the way llama.cpp users read "CPU buffer size = ... MiB".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (buffer, bytes) in &self.bytes {
            let roles: Vec<_> = self.roles[buffer].iter().map(|r| r.gguf_name()).collect();
            writeln!(
                f,
                "{:<16} buffer size = {:>9.2} MiB  ({})",
                buffer.to_string(),
                *bytes as f64 / (1 << 20) as f64,
                roles.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-layer llama in the shape of SmolLM2 (Q4_1 layers, Q8_0
    /// embedding, F32 norms), tied or with its own output projection.
    fn model(output: bool) -> Vec<TensorDesc> {
        let desc = |role, layer, ggml_type, dims: &[u64]| TensorDesc {
            slot: Slot { role, layer },
            ggml_type,
            dims: dims.to_vec(),
            bytes: 1 << 20,
        };
        let mut t = vec![desc(Role::TokenEmbd, None, GgmlType::Q8_0, &[576, 49152])];
        for l in 0..2 {
            for role in Role::LAYER {
                let ty = if role.is_matmul() { GgmlType::Q4_1 } else { GgmlType::F32 };
                t.push(desc(role, Some(l), ty, if role.is_matmul() { &[576, 576] } else { &[576] }));
            }
        }
        t.push(desc(Role::OutputNorm, None, GgmlType::F32, &[576]));
        if output {
            t.push(desc(Role::Output, None, GgmlType::Q8_0, &[576, 49152]));
        }
        t
    }

    fn machine(amx: bool, gpus: usize) -> Machine {
        let gpus = if gpus == 0 { Err("no CUDA device: none in this test".to_string()) } else { Ok(vec![GIB; gpus]) };
        Machine { amx: if amx { Ok(()) } else { Err("AMX unavailable: no tiles".into()) }, gpus }
    }

    const GIB: u64 = 1 << 30;

    fn flags(amx: bool, n_gpu_layers: usize) -> PlacementFlags {
        PlacementFlags { amx, n_gpu_layers, tensor_split: Vec::new() }
    }

    /// A model of `n` layers (every tensor 1 MiB) planned with every layer
    /// on GPUs of the given free memory and split.
    fn split(n: usize, free: &[u64], tensor_split: &[f64]) -> Result<Placement, PlacementError> {
        let mut t = model(true);
        let layer0: Vec<TensorDesc> = t.iter().filter(|d| d.slot.layer == Some(0)).cloned().collect();
        t.retain(|d| d.slot.layer.is_none());
        for l in 0..n {
            t.extend(layer0.iter().cloned().map(|mut d| {
                d.slot.layer = Some(l);
                d
            }));
        }
        let machine = Machine { amx: Ok(()), gpus: Ok(free.to_vec()) };
        let flags = PlacementFlags { amx: true, n_gpu_layers: n, tensor_split: tensor_split.to_vec() };
        place(&flags, &machine, n, &t)
    }

    fn layer_counts(p: &Placement) -> Vec<usize> {
        p.gpu_ranges.iter().map(|r| r.len()).collect()
    }

    fn kinds(p: &Placement, role: Role) -> Vec<Buffer> {
        let mut v: Vec<_> = p.buffers.iter().filter(|(s, _)| s.role == role).map(|(_, b)| *b).collect();
        v.dedup();
        v
    }

    #[test]
    fn cpu_only_without_amx_has_no_amx_buffers() {
        let p = place(&flags(false, 0), &machine(true, 0), 2, &model(true)).unwrap();
        assert!(!p.amx && p.warnings.is_empty());
        assert!(p.buffers.values().all(|b| matches!(b, Buffer::CpuMapped | Buffer::CpuPacked)));
        assert_eq!(kinds(&p, Role::FfnDown), [Buffer::CpuPacked]);
        assert_eq!(kinds(&p, Role::TokenEmbd), [Buffer::CpuMapped]);
    }

    #[test]
    fn cpu_only_with_amx_packs_only_layer_matmuls() {
        let p = place(&flags(true, 0), &machine(true, 0), 2, &model(true)).unwrap();
        assert!(p.amx && p.warnings.is_empty(), "{:?}", p.warnings);
        for role in Role::LAYER {
            let want = if role.is_matmul() { Buffer::Amx } else { Buffer::CpuMapped };
            assert_eq!(kinds(&p, role), [want], "{role:?}");
        }
        // Rule 2: embedding, output norm and output projection never AMX.
        assert_eq!(kinds(&p, Role::TokenEmbd), [Buffer::CpuMapped]);
        assert_eq!(kinds(&p, Role::OutputNorm), [Buffer::CpuMapped]);
        assert_eq!(kinds(&p, Role::Output), [Buffer::CpuPacked]);
        let report = p.to_string();
        assert!(report.contains("AMX") && report.contains("MiB") && report.contains("ffn_down"), "{report}");
    }

    #[test]
    fn gpu_layers_without_amx_keep_cpu_layers_in_host_buffers() {
        let p = place(&flags(false, 1), &machine(true, 1), 2, &model(true)).unwrap();
        assert!(!p.amx && p.warnings.is_empty() && p.gpu_layers == 1);
        assert_eq!(p.buffer(Slot { role: Role::AttnQ, layer: Some(1) }), Buffer::Gpu(0));
        assert_eq!(p.buffer(Slot { role: Role::AttnQ, layer: Some(0) }), Buffer::Host);
        assert_eq!(p.buffer(Slot { role: Role::AttnNorm, layer: Some(0) }), Buffer::Host);
        // Not every layer offloaded: the output stays on the CPU.
        assert_eq!(p.buffer(Slot { role: Role::Output, layer: None }), Buffer::Host);
        assert!(!p.buffers.values().any(|b| *b == Buffer::Amx));
    }

    #[test]
    fn gpu_layers_with_amx_warn_once_and_use_no_amx() {
        let p = place(&flags(true, 1), &machine(true, 1), 2, &model(true)).unwrap();
        assert!(!p.amx);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].starts_with("--amx ignored: 1 layer(s) run on a GPU"), "{}", p.warnings[0]);
        assert!(!p.buffers.values().any(|b| *b == Buffer::Amx));
    }

    #[test]
    fn all_layers_on_gpu_take_the_output_along_and_ngl_clamps() {
        let p = place(&flags(false, 99), &machine(false, 1), 2, &model(false)).unwrap();
        assert_eq!(p.gpu_layers, 2);
        assert!(p.warnings[0].contains("offloading all 2"), "{:?}", p.warnings);
        assert_eq!(p.buffer(Slot { role: Role::OutputNorm, layer: None }), Buffer::Gpu(0));
        assert_eq!(p.buffer(Slot { role: Role::TokenEmbd, layer: None }), Buffer::CpuMapped);
    }

    #[test]
    fn amx_that_cannot_run_and_ngl_without_gpus_warn_and_run_on() {
        let p = place(&flags(true, 3), &machine(false, 0), 2, &model(true)).unwrap();
        assert!(!p.amx && p.gpu_layers == 0);
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("no CUDA device: none in this test: running every layer on the CPU"));
        assert!(p.warnings[1].contains("--amx ignored: AMX unavailable: no tiles"));
        assert!(p.buffers.values().all(|b| matches!(b, Buffer::CpuMapped | Buffer::CpuPacked)));
    }

    #[test]
    fn only_amx_kernel_types_and_shapes_go_to_amx() {
        let mut t = model(true);
        t[1 + 1].ggml_type = GgmlType::Q6_K; // blk.0.attn_q: no AMX kernel
        t[1 + 2].dims = vec![48, 576]; // blk.0.attn_k: K not a multiple of 32
        let p = place(&flags(true, 0), &machine(true, 0), 2, &t).unwrap();
        assert_eq!(p.buffer(t[2].slot), Buffer::CpuPacked);
        assert_eq!(p.buffer(t[3].slot), Buffer::CpuPacked);
        assert_eq!(p.buffer(t[4].slot), Buffer::Amx);
    }

    #[test]
    fn one_gpu_takes_every_offloaded_layer() {
        let p = split(30, &[8 * GIB], &[]).unwrap();
        assert_eq!((p.gpu_ranges.len(), p.gpu_ranges[0].clone()), (1, 0..30));
        assert_eq!(p.buffer(Slot { role: Role::Output, layer: None }), Buffer::Gpu(0));
    }

    #[test]
    fn layers_follow_free_memory_across_two_three_and_eight_gpus() {
        let p = split(30, &[8 * GIB, 8 * GIB], &[]).unwrap();
        assert_eq!(p.gpu_ranges, [0..15, 15..30]);
        // The head goes with the last layer; no AMX with any GPU layer.
        assert_eq!(p.buffer(Slot { role: Role::OutputNorm, layer: None }), Buffer::Gpu(1));
        assert_eq!(p.buffer(Slot { role: Role::FfnDown, layer: Some(14) }), Buffer::Gpu(0));
        assert_eq!(p.buffer(Slot { role: Role::FfnDown, layer: Some(15) }), Buffer::Gpu(1));
        assert!(!p.amx && p.warnings.len() == 1, "{:?}", p.warnings);
        let p = split(30, &[2 * GIB, 4 * GIB, 6 * GIB], &[]).unwrap();
        assert_eq!(p.gpu_ranges, [0..5, 5..15, 15..30]);
        let p = split(30, &[GIB; 8], &[]).unwrap();
        assert_eq!(layer_counts(&p), [4, 4, 4, 3, 4, 4, 4, 3]);
        assert_eq!(p.gpu_ranges.last().unwrap().end, 30);
        // The report names every GPU with its MiB.
        let report = p.to_string();
        for g in 0..8 {
            assert!(report.contains(&format!("GPU {g} ")), "{report}");
        }
    }

    #[test]
    fn tensor_split_overrides_free_memory_and_may_leave_a_gpu_empty() {
        let p = split(30, &[8 * GIB, 8 * GIB], &[3.0, 1.0]).unwrap();
        assert_eq!(layer_counts(&p), [23, 7]);
        let p = split(30, &[8 * GIB, 8 * GIB, 8 * GIB], &[1.0, 0.0, 1.0]).unwrap();
        assert_eq!(p.gpu_ranges, [0..15, 15..15, 15..30]);
        assert!(!p.to_string().contains("GPU 1 "), "an empty GPU has no buffer:\n{p}");
        // Fewer values than GPUs: the rest get nothing.
        let p = split(30, &[8 * GIB, 8 * GIB], &[1.0]).unwrap();
        assert_eq!(p.gpu_ranges, [0..30, 30..30]);
        assert_eq!(p.buffer(Slot { role: Role::Output, layer: None }), Buffer::Gpu(0));
        // A GPU without free memory reported gets no layers either.
        let p = split(30, &[0, 8 * GIB], &[]).unwrap();
        assert_eq!(p.gpu_ranges, [0..0, 0..30]);
    }

    #[test]
    fn bad_splits_and_small_gpus_are_refused_with_the_remedy() {
        for (given, want) in [
            (vec![1.0, 1.0, 1.0], "3 values for 2 GPU(s)"),
            (vec![1.0, -1.0], "not negative"),
            (vec![f64::NAN], "finite"),
            (vec![0.0, 0.0], "every share is 0"),
        ] {
            let err = split(30, &[8 * GIB, 8 * GIB], &given).unwrap_err();
            assert!(matches!(err, PlacementError::TensorSplit { .. }) && err.to_string().contains(want), "{err}");
        }
        // 30 layers of 9 tensors of 1 MiB: 135 MiB each for two GPUs (plus
        // the 2 MiB head on GPU 1); GPU 1 has 100 MiB free.
        let err = split(30, &[GIB, 100 << 20], &[1.0, 1.0]).unwrap_err();
        assert_eq!(err, PlacementError::GpuTooSmall { gpu: 1, layers: 15, need_mib: 137.0, free_mib: 100.0 });
        assert!(err.to_string().contains("lower -ngl or give it a smaller --tensor-split share"), "{err}");
    }
}
