//! The GPU side of the runner (issue 16): CUDA found at run time, never
//! linked, so the crate builds and runs where CUDA is absent; the layer
//! kernels (`kernels.cu`) compiled by NVRTC for the device at hand.
//!
//! [`probe`] says which GPUs there are or, typed, why there are none (the
//! driver library missing, no device, a driver error); [`Gpu::open`]
//! compiles and loads the kernels on one device; its methods run them on
//! device buffers, checking every length first.
//!
//! Built so far: discovery, the kernels (RMSNorm, RoPE, SwiGLU, add,
//! attention over a KV cache, GEMV over Q8_0 / Q4_0 / Q4_1 / BF16 rows in
//! their GGUF layout) and their
//! tests against the CPU ops (tests/gpu_kernels.rs). The runner does not
//! place layers on a GPU yet: `-ngl` says why and runs on the CPU.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};

/// The kernels' CUDA source (compiled at run time by NVRTC).
pub const KERNELS_CU: &str = include_str!("kernels.cu");

/// One visible CUDA device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_bytes: usize,
    pub free_bytes: usize,
}

/// Why no GPU can be used: a fact about this machine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoGpu {
    #[error("the CUDA driver library is not installed (none of {tried:?} loads)")]
    DriverLibrary { tried: Vec<&'static str> },
    #[error("NVRTC (the CUDA runtime compiler) is not installed (none of {tried:?} loads)")]
    NvrtcLibrary { tried: Vec<&'static str> },
    #[error("the CUDA driver reports no device")]
    NoDevice,
    #[error("the CUDA driver failed while {step}: {message}")]
    Driver { step: &'static str, message: String },
}

/// Why a GPU operation failed; each names the step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    #[error("no CUDA device: {0}")]
    Unavailable(#[from] NoGpu),
    #[error("CUDA driver error while {step}: {source}")]
    Driver {
        step: &'static str,
        #[source]
        source: cudarc::driver::DriverError,
    },
    #[error("NVRTC could not compile the GPU kernels for {arch}: {source}")]
    Compile {
        arch: String,
        #[source]
        source: cudarc::nvrtc::CompileError,
    },
    #[error("GPU {op}: {what}")]
    Shape { op: &'static str, what: String },
}

const DRIVER_NAMES: [&str; 2] = ["libcuda.so.1", "libcuda.so"];
const NVRTC_NAMES: [&str; 5] =
    ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so.11"];

/// Whether one of `names` loads (dlopen, then closed again): checked before
/// cudarc touches the library, which panics when it cannot load one.
fn loads(names: &[&'static str]) -> bool {
    names.iter().any(|name| {
        let c = std::ffi::CString::new(*name).expect("no NUL in a library name");
        // SAFETY: dlopen with a valid C string; the handle is closed at once
        // (cudarc opens the library again itself).
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return false;
        }
        // SAFETY: a handle dlopen returned.
        unsafe { libc::dlclose(handle) };
        true
    })
}

fn driver(step: &'static str) -> impl Fn(cudarc::driver::DriverError) -> NoGpu {
    move |e| NoGpu::Driver { step, message: e.to_string() }
}

/// The CUDA devices this process can use, or why there are none.
pub fn probe() -> Result<Vec<GpuInfo>, NoGpu> {
    if !loads(&DRIVER_NAMES) {
        return Err(NoGpu::DriverLibrary { tried: DRIVER_NAMES.to_vec() });
    }
    let count = CudaContext::device_count().map_err(driver("counting devices"))?;
    if count <= 0 {
        return Err(NoGpu::NoDevice);
    }
    if !loads(&NVRTC_NAMES) {
        return Err(NoGpu::NvrtcLibrary { tried: NVRTC_NAMES.to_vec() });
    }
    (0..count as usize)
        .map(|ordinal| {
            let ctx = CudaContext::new(ordinal).map_err(driver("opening a device"))?;
            let (free_bytes, total_bytes) = ctx.mem_get_info().map_err(driver("reading free memory"))?;
            Ok(GpuInfo {
                ordinal,
                name: ctx.name().map_err(driver("reading the device name"))?,
                compute_capability: ctx.compute_capability().map_err(driver("reading the compute capability"))?,
                total_bytes,
                free_bytes,
            })
        })
        .collect()
}

/// A GGUF row format the GEMV reads in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowFormat {
    Q8_0,
    Q4_0,
    Q4_1,
    Bf16,
}

impl RowFormat {
    /// Bytes of one row of `k` weights (`k` a multiple of 32 for the block formats).
    pub fn row_bytes(self, k: usize) -> usize {
        match self {
            RowFormat::Q8_0 => k / 32 * 34,
            RowFormat::Q4_0 => k / 32 * 18,
            RowFormat::Q4_1 => k / 32 * 20,
            RowFormat::Bf16 => 2 * k,
        }
    }

    /// Every format, in the order of [`Gpu`]'s GEMV kernels.
    const ALL: [RowFormat; 4] = [RowFormat::Q8_0, RowFormat::Q4_0, RowFormat::Q4_1, RowFormat::Bf16];

    fn kernel(self) -> &'static str {
        match self {
            RowFormat::Q8_0 => "gemv_q8_0",
            RowFormat::Q4_0 => "gemv_q4_0",
            RowFormat::Q4_1 => "gemv_q4_1",
            RowFormat::Bf16 => "gemv_bf16",
        }
    }
}

/// One device with the kernels loaded and a stream to run them on.
pub struct Gpu {
    pub info: GpuInfo,
    stream: Arc<CudaStream>,
    rms_norm: CudaFunction,
    rope: CudaFunction,
    swiglu: CudaFunction,
    add: CudaFunction,
    attend: CudaFunction,
    gemv: [CudaFunction; 4],
}

/// The shape of an attention call: `rows` query rows at positions
/// `pos0..pos0 + rows`, grouped-query heads, a cache of `n_ctx` positions.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub rows: usize,
    pub pos0: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ctx: usize,
    pub scale: f32,
}

const BLOCK: u32 = 256;

fn blocks(threads: usize) -> u32 {
    threads.div_ceil(BLOCK as usize) as u32
}

fn linear(threads: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (blocks(threads), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

fn need(op: &'static str, what: &str, len: usize, want: usize) -> Result<(), GpuError> {
    if len < want {
        return Err(GpuError::Shape { op, what: format!("{what} has {len} elements, needs {want}") });
    }
    Ok(())
}

impl Gpu {
    /// Opens device `ordinal` (as [`probe`] lists it) and compiles the
    /// kernels for its architecture.
    ///
    /// # Errors
    /// No usable device, a driver error, or an NVRTC compile error (with
    /// NVRTC's log), each naming the step.
    pub fn open(ordinal: usize) -> Result<Gpu, GpuError> {
        let info = probe()?.into_iter().nth(ordinal).ok_or(NoGpu::NoDevice)?;
        let d = |step| move |source| GpuError::Driver { step, source };
        let ctx = CudaContext::new(ordinal).map_err(d("opening the device"))?;
        let (major, minor) = info.compute_capability;
        let arch = format!("compute_{major}{minor}");
        // The PTX targets the device's own virtual architecture; the driver
        // JIT-compiles it when the module loads. No fast-math: the kernels
        // follow the CPU ops' IEEE arithmetic (no FTZ, exact division).
        let opts = CompileOptions {
            options: vec![format!("--gpu-architecture={arch}")],
            ftz: Some(false),
            prec_div: Some(true),
            prec_sqrt: Some(true),
            fmad: Some(false),
            ..CompileOptions::default()
        };
        let ptx = compile_ptx_with_opts(KERNELS_CU, opts).map_err(|source| GpuError::Compile { arch, source })?;
        let module = ctx.load_module(ptx).map_err(d("loading the kernels"))?;
        let f = |name| module.load_function(name).map_err(d("finding a kernel"));
        Ok(Gpu {
            stream: ctx.default_stream(),
            rms_norm: f("rms_norm")?,
            rope: f("rope")?,
            swiglu: f("swiglu")?,
            add: f("add_in_place")?,
            attend: f("attend")?,
            gemv: [
                f(RowFormat::ALL[0].kernel())?,
                f(RowFormat::ALL[1].kernel())?,
                f(RowFormat::ALL[2].kernel())?,
                f(RowFormat::ALL[3].kernel())?,
            ],
            info,
        })
    }

    /// Copies `host` to a new device buffer.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>, GpuError> {
        self.stream.clone_htod(host).map_err(|source| GpuError::Driver { step: "copying to the device", source })
    }

    /// Copies `dev` back (waits for the work queued before).
    pub fn download<T: DeviceRepr + Default + Clone>(&self, dev: &CudaSlice<T>) -> Result<Vec<T>, GpuError> {
        self.stream.clone_dtoh(dev).map_err(|source| GpuError::Driver { step: "copying from the device", source })
    }

    fn launched(
        r: Result<Option<(cudarc::driver::CudaEvent, cudarc::driver::CudaEvent)>, cudarc::driver::DriverError>,
    ) -> Result<(), GpuError> {
        r.map(|_| ()).map_err(|source| GpuError::Driver { step: "launching a kernel", source })
    }

    /// `out` = RMSNorm of each of `rows` rows of `x` (`width` wide) times `w`.
    pub fn rms_norm(
        &self,
        out: &mut CudaSlice<f32>,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        eps: f32,
        rows: usize,
        width: usize,
    ) -> Result<(), GpuError> {
        need("rms_norm", "x", x.len(), rows * width)?;
        need("rms_norm", "out", out.len(), rows * width)?;
        need("rms_norm", "w", w.len(), width)?;
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: BLOCK * 8 };
        let width = width as i32;
        let mut b = self.stream.launch_builder(&self.rms_norm);
        b.arg(out).arg(x).arg(w).arg(&eps).arg(&width);
        // SAFETY: the kernel reads rows * width of x and width of w, writes
        // rows * width of out (all checked above), one block per row.
        Self::launched(unsafe { b.launch(cfg) })
    }

    /// Normal RoPE in place on `rows` rows of `heads` heads of `head_dim`,
    /// row `r` at position `pos0 + r`.
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &self,
        x: &mut CudaSlice<f32>,
        rows: usize,
        heads: usize,
        head_dim: usize,
        rope_dim: usize,
        base: f32,
        pos0: usize,
    ) -> Result<(), GpuError> {
        need("rope", "x", x.len(), rows * heads * head_dim)?;
        if rope_dim > head_dim || !rope_dim.is_multiple_of(2) {
            return Err(GpuError::Shape { op: "rope", what: format!("rope_dim {rope_dim} for head_dim {head_dim}") });
        }
        let pairs = rows * heads * rope_dim / 2;
        let (rows_, heads_, hd, rd, p0) = (rows as i32, heads as i32, head_dim as i32, rope_dim as i32, pos0 as i32);
        let mut b = self.stream.launch_builder(&self.rope);
        b.arg(x).arg(&rows_).arg(&heads_).arg(&hd).arg(&rd).arg(&base).arg(&p0);
        // SAFETY: one thread per pair of the first rope_dim of each head,
        // inside the rows * heads * head_dim checked above.
        Self::launched(unsafe { b.launch(linear(pairs)) })
    }

    /// `gate = silu(gate) * up` over `n` elements.
    pub fn swiglu(&self, gate: &mut CudaSlice<f32>, up: &CudaSlice<f32>, n: usize) -> Result<(), GpuError> {
        self.elementwise("swiglu", &self.swiglu, gate, up, n)
    }

    /// `a += b` over `n` elements.
    pub fn add(&self, a: &mut CudaSlice<f32>, b: &CudaSlice<f32>, n: usize) -> Result<(), GpuError> {
        self.elementwise("add", &self.add, a, b, n)
    }

    /// `a = f(a, b)` element by element over `n` elements (`f(float* a,
    /// const float* b, long n)`).
    fn elementwise(
        &self,
        op: &'static str,
        f: &CudaFunction,
        a: &mut CudaSlice<f32>,
        b: &CudaSlice<f32>,
        n: usize,
    ) -> Result<(), GpuError> {
        need(op, "the first operand", a.len(), n)?;
        need(op, "the second operand", b.len(), n)?;
        let n_ = n as i64;
        let mut launch = self.stream.launch_builder(f);
        launch.arg(a).arg(b).arg(&n_);
        // SAFETY: the kernel touches n elements of each, checked above.
        Self::launched(unsafe { launch.launch(linear(n)) })
    }

    /// Causal grouped-query attention of `a.rows` query rows (`q`: rows x
    /// n_head x head_dim) over the cache `kc` / `vc` (n_ctx x n_head_kv x
    /// head_dim, filled up to the last row's position) into `out`
    /// (rows x n_head x head_dim); `scores` is scratch of rows x n_head x n_ctx.
    pub fn attend(
        &self,
        out: &mut CudaSlice<f32>,
        q: &CudaSlice<f32>,
        kc: &CudaSlice<f32>,
        vc: &CudaSlice<f32>,
        scores: &mut CudaSlice<f32>,
        a: AttentionShape,
    ) -> Result<(), GpuError> {
        let AttentionShape { rows, pos0, n_head, n_head_kv, head_dim, n_ctx, scale } = a;
        if n_head_kv == 0 || n_head % n_head_kv != 0 || pos0 + rows > n_ctx {
            return Err(GpuError::Shape {
                op: "attend",
                what: format!("{a:?}: heads must group evenly, positions fit n_ctx"),
            });
        }
        let kv_dim = n_head_kv * head_dim;
        need("attend", "q", q.len(), rows * n_head * head_dim)?;
        need("attend", "out", out.len(), rows * n_head * head_dim)?;
        need("attend", "k cache", kc.len(), (pos0 + rows) * kv_dim)?;
        need("attend", "v cache", vc.len(), (pos0 + rows) * kv_dim)?;
        need("attend", "scores", scores.len(), rows * n_head * n_ctx)?;
        let cfg =
            LaunchConfig { grid_dim: (n_head as u32, rows as u32, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        let (p0, nh, group, hd, kvd, nc) =
            (pos0 as i32, n_head as i32, (n_head / n_head_kv) as i32, head_dim as i32, kv_dim as i32, n_ctx as i32);
        let mut b = self.stream.launch_builder(&self.attend);
        b.arg(out)
            .arg(q)
            .arg(kc)
            .arg(vc)
            .arg(scores)
            .arg(&p0)
            .arg(&nh)
            .arg(&group)
            .arg(&hd)
            .arg(&kvd)
            .arg(&scale)
            .arg(&nc);
        // SAFETY: block (h, r) reads q's row r head h, the cache rows
        // 0..=pos0 + r of KV head h / group, writes its scores slice and its
        // output head (all lengths checked above; BLOCK matches the
        // kernel's 256-entry reduction array).
        Self::launched(unsafe { b.launch(cfg) })
    }

    /// `y[r][i] = sum_j W[i][j] * x[r][j]` for `rows` rows of `x` (`k`
    /// wide) and the `n` rows of `w` in `format` (its GGUF bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn gemv(
        &self,
        format: RowFormat,
        y: &mut CudaSlice<f32>,
        w: &CudaSlice<u8>,
        x: &CudaSlice<f32>,
        n: usize,
        k: usize,
        rows: usize,
    ) -> Result<(), GpuError> {
        if format != RowFormat::Bf16 && !k.is_multiple_of(32) {
            return Err(GpuError::Shape {
                op: "gemv",
                what: format!("k = {k} is not a whole number of 32-weight blocks"),
            });
        }
        let row_bytes = format.row_bytes(k);
        need("gemv", "w (bytes)", w.len(), n * row_bytes)?;
        need("gemv", "x", x.len(), rows * k)?;
        need("gemv", "y", y.len(), rows * n)?;
        let f = &self.gemv[format as usize];
        let (n_, k_, rb, r_) = (n as i32, k as i32, row_bytes as i64, rows as i32);
        let mut b = self.stream.launch_builder(f);
        b.arg(y).arg(w).arg(x).arg(&n_).arg(&k_).arg(&rb).arg(&r_);
        // SAFETY: one warp per (output, row): reads n rows of row_bytes of w
        // and rows * k of x, writes rows * n of y, all checked above.
        Self::launched(unsafe { b.launch(linear(32 * n * rows)) })
    }
}
