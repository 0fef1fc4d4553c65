//! The GPU side of the runner (issue 16): CUDA found at run time, never
//! linked, so the crate builds and runs where CUDA is absent; the layer
//! kernels (`kernels.cu`) compiled by NVRTC for the device at hand.
//!
//! [`probe`] says which GPUs there are or, typed, why there are none (the
//! driver library missing, no device, a driver error); [`Gpu::open`]
//! compiles and loads the kernels on one device; its methods run them on
//! device buffers, checking every length first.
//!
//! The kernels: RMSNorm, RoPE into the KV cache, attention, SwiGLU, add,
//! the activation quantizers, and GEMV / tiled GEMM over Q8_0 / Q4_0 /
//! Q4_1 / BF16 rows in their GGUF layout, with fused variants (a norm or
//! SwiGLU and the next matmul's quantization as a GEMV's tail, [`Then`];
//! attention quantizing its own output). Each gives the CPU's bits
//! (tests/gpu_kernels.rs, planted bugs shown to fail it). Work is queued
//! on one stream; [`Gpu::capture`] records a queued sequence as a
//! [`Graph`] (the runner's decode step), which is why RoPE and attention
//! read the batch's position from device memory ([`Position`]).
//! The runner's use of them is `crate::model::offload`.

use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PinnedHostSlice,
    PushKernelArg, ValidAsZeroBits,
};
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

/// A GGUF row format the GPU matmuls read in place, each with the
/// activation format the CPU pairs it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowFormat {
    Q8_0,
    Q4_0,
    Q4_1,
    Bf16,
}

impl RowFormat {
    /// Bytes of one row of `k` weights (`k` a multiple of 32).
    pub fn row_bytes(self, k: usize) -> usize {
        match self {
            RowFormat::Q8_0 => k / 32 * 34,
            RowFormat::Q4_0 => k / 32 * 18,
            RowFormat::Q4_1 => k / 32 * 20,
            RowFormat::Bf16 => 2 * k,
        }
    }

    /// Bytes of one activation row of `k` in the format these weights
    /// multiply: Q8_0 blocks (34 bytes), Q8_1 for Q4_1 (36), bf16.
    pub fn activation_bytes(self, k: usize) -> usize {
        match self {
            RowFormat::Q8_0 | RowFormat::Q4_0 => k / 32 * 34,
            RowFormat::Q4_1 => k / 32 * 36,
            RowFormat::Bf16 => 2 * k,
        }
    }

    /// The kernels' code for the activation format (kernels.cu
    /// `quantize_row`): 0 Q8_0, 1 Q8_1, 2 bf16.
    fn activation_kind(self) -> i32 {
        match self {
            RowFormat::Q8_0 | RowFormat::Q4_0 => 0,
            RowFormat::Q4_1 => 1,
            RowFormat::Bf16 => 2,
        }
    }

    /// The format of a GGUF tensor type, if the GPU reads it.
    pub fn of(ty: crate::gguf::GgmlType) -> Option<RowFormat> {
        use crate::gguf::GgmlType;
        match ty {
            GgmlType::Q8_0 => Some(RowFormat::Q8_0),
            GgmlType::Q4_0 => Some(RowFormat::Q4_0),
            GgmlType::Q4_1 => Some(RowFormat::Q4_1),
            GgmlType::BF16 => Some(RowFormat::Bf16),
            _ => None,
        }
    }

    /// Every format, in the order of [`Gpu`]'s matmul kernels.
    const ALL: [RowFormat; 4] = [RowFormat::Q8_0, RowFormat::Q4_0, RowFormat::Q4_1, RowFormat::Bf16];

    fn suffix(self) -> &'static str {
        match self {
            RowFormat::Q8_0 => "q8_0",
            RowFormat::Q4_0 => "q4_0",
            RowFormat::Q4_1 => "q4_1",
            RowFormat::Bf16 => "bf16",
        }
    }
}

/// One matmul of [`Gpu::matmuls`]: its output `y`, its weights `w` (GGUF
/// bytes) and their row count `n`.
pub type MatmulTarget<'a> = (&'a mut CudaSlice<f32>, &'a CudaSlice<u8>, usize);

/// The step that follows a [`Gpu::matmuls`] and reads its whole output
/// rows. With few rows it runs in the matmul's own launch, in the block
/// that finishes last (kernels.cu `gemv_tail`); with more, as its own
/// launch. Either way the bits are those of [`Gpu::rms_norm_quantize`] and
/// [`Gpu::swiglu_quantize`].
pub enum Then<'a> {
    Nothing,
    /// [`Gpu::rms_norm_quantize`] of target 0's output by `weight` into `h`
    /// and `act`.
    NormQuantize {
        h: &'a mut CudaSlice<f32>,
        act: &'a mut CudaSlice<u8>,
        weight: &'a CudaSlice<f32>,
        eps: f32,
        format: RowFormat,
    },
    /// [`Gpu::swiglu_quantize`] of target 0 (gate, in place) and target 1
    /// (up) into `act`.
    SwigluQuantize {
        act: &'a mut CudaSlice<u8>,
        format: RowFormat,
    },
}

/// kernels.cu `Tail`, field for field.
#[repr(C)]
#[derive(Clone, Copy)]
struct Tail {
    op: i32,
    done: u64,
    out: u64,
    act: u64,
    norm_w: u64,
    eps: f32,
    width: i32,
    kind: i32,
}

// SAFETY: plain data with the C layout of the kernel's parameter.
unsafe impl DeviceRepr for Tail {}

/// Activation rows up to this many go through the warp-per-output GEMV,
/// more through the tiled GEMM (same bits either way).
const GEMV_ROWS: usize = 4;
/// The tiled GEMMs' tiles (outputs, rows) and block sizes: kernels.cu
/// TILE_OUTS x TILE_ROWS for the block formats, BF16_OUTS x BF16_ROWS for
/// BF16.
fn gemm_tile(format: RowFormat) -> (usize, usize, u32) {
    match format {
        RowFormat::Bf16 => (32, 32, 128),
        RowFormat::Q8_0 | RowFormat::Q4_0 | RowFormat::Q4_1 => (64, 32, BLOCK),
    }
}

/// One device with the kernels loaded and a stream to run them on.
pub struct Gpu {
    pub info: GpuInfo,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    rms_norm: CudaFunction,
    quantize_rows: CudaFunction,
    rms_norm_quantize: CudaFunction,
    swiglu_quantize: CudaFunction,
    rope_into_cache: CudaFunction,
    swiglu: CudaFunction,
    add: CudaFunction,
    attend: CudaFunction,
    /// The GEMV tails' count of finished blocks (kernels.cu `Tail::done`):
    /// zero between launches.
    tail_done: CudaSlice<u32>,
    /// Per [`RowFormat`]: the GEMV and the tiled GEMM.
    matmul: [(CudaFunction, CudaFunction); 4],
}

/// The shape of an attention call: `rows` query rows at positions
/// `pos0..pos0 + rows` (pos0 from a [`Position`]), grouped-query heads, a
/// cache of `n_ctx` positions.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub rows: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ctx: usize,
    pub scale: f32,
}

/// The shape of a RoPE-and-cache call (see [`Gpu::rope_into_cache`]).
#[derive(Clone, Copy, Debug)]
pub struct RopeShape {
    pub rows: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub base: f32,
}

/// The first position of a batch, in device memory: RoPE and attention
/// read it there, so that a captured decode step ([`Gpu::capture`]) takes
/// the current position at each replay. Set it with [`Gpu::set_position`],
/// or [`Gpu::stage_position`] then [`Gpu::upload_position`] inside a capture.
pub struct Position {
    staged: PinnedHostSlice<i32>,
    dev: CudaSlice<i32>,
    value: usize,
}

impl Position {
    /// The position last staged.
    pub fn value(&self) -> usize {
        self.value
    }
}

/// A recorded sequence of queued GPU work, replayed as one launch (a CUDA
/// graph): a decode step's ~300 kernels cost one launch instead of ~300.
pub struct Graph(cudarc::driver::CudaGraph);

// SAFETY: CUDA graphs are not internally synchronized, so every call on
// one must be serialized (CUDA driver API, "Graph object thread safety");
// the runner keeps its graph behind its workspace's mutex. Moving it
// between threads is fine: the handles are not tied to a thread.
unsafe impl Send for Graph {}

impl Graph {
    /// Queues the recorded work on the stream it was captured from.
    ///
    /// # Errors
    /// A driver error.
    pub fn replay(&self) -> Result<(), GpuError> {
        self.0.launch().map_err(|source| GpuError::Driver { step: "launching a captured decode step", source })
    }
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

/// Grid sizes are u32 and kernel indices i32/i64: refuse what would not fit.
fn fits_i32(op: &'static str, values: &[usize]) -> Result<(), GpuError> {
    if values.iter().any(|&v| v > i32::MAX as usize) {
        return Err(GpuError::Shape { op, what: format!("a size in {values:?} exceeds 2^31 - 1") });
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
        // SAFETY: everything runs on the one stream below, in order, so the
        // per-buffer events cudarc records to order several streams are not
        // needed; without them a queued sequence can be captured as a graph.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = info.compute_capability;
        let arch = format!("compute_{major}{minor}");
        // The PTX targets the device's own virtual architecture; the driver
        // JIT-compiles it when the module loads. IEEE arithmetic throughout
        // (kernels.cu's header says why each option matters).
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
        let f = |name: &str| module.load_function(name).map_err(d("finding a kernel"));
        let pair = |format: RowFormat| -> Result<(CudaFunction, CudaFunction), GpuError> {
            Ok((f(&format!("gemv_{}", format.suffix()))?, f(&format!("gemm_{}", format.suffix()))?))
        };
        let [a, b, c, e] = RowFormat::ALL;
        // A stream of our own: the legacy default stream cannot be captured.
        let stream = ctx.new_stream().map_err(d("creating a stream"))?;
        Ok(Gpu {
            stream: stream.clone(),
            rms_norm: f("rms_norm")?,
            quantize_rows: f("quantize_rows")?,
            rms_norm_quantize: f("rms_norm_quantize")?,
            swiglu_quantize: f("swiglu_quantize")?,
            rope_into_cache: f("rope_into_cache")?,
            swiglu: f("swiglu")?,
            add: f("add_in_place")?,
            attend: f("attend")?,
            matmul: [pair(a)?, pair(b)?, pair(c)?, pair(e)?],
            tail_done: stream.alloc_zeros(1).map_err(d("allocating the tail counter"))?,
            ctx,
            info,
        })
    }

    /// Copies `host` to a new device buffer.
    ///
    /// # Errors
    /// Out of memory or another driver error, naming the step.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>, GpuError> {
        self.stream.clone_htod(host).map_err(|source| GpuError::Driver { step: "copying to the device", source })
    }

    /// A zeroed device buffer of `len` elements.
    ///
    /// # Errors
    /// Out of memory or another driver error, naming `step`.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        len: usize,
        step: &'static str,
    ) -> Result<CudaSlice<T>, GpuError> {
        self.stream.alloc_zeros(len.max(1)).map_err(|source| GpuError::Driver { step, source })
    }

    /// Page-locked host memory of `len` f32 (zeroed), for copies that
    /// cross between the CPU's and the GPU's layers: the DMA engine reads
    /// and writes it directly. Plain page-locked (not write-combined): the
    /// CPU reads it back too.
    ///
    /// # Errors
    /// A driver error (page-locked memory is limited), naming the step.
    pub fn pinned(&self, len: usize) -> Result<PinnedHostSlice<f32>, GpuError> {
        let step = "allocating page-locked host memory";
        // SAFETY: the buffer is zeroed below before anything reads it.
        let mut p = unsafe { self.ctx.alloc_pinned_with_flags::<f32>(len.max(1), 0) }
            .map_err(|source| GpuError::Driver { step, source })?;
        p.as_mut_slice().map_err(|source| GpuError::Driver { step, source })?.fill(0.0);
        Ok(p)
    }

    /// Queues a copy of the first `len` of `host` into the start of `dev`.
    /// `host` must stay alive until the stream is synchronized.
    ///
    /// # Errors
    /// Lengths out of range, a driver error.
    pub fn copy_to_device(
        &self,
        host: &PinnedHostSlice<f32>,
        dev: &mut CudaSlice<f32>,
        len: usize,
    ) -> Result<(), GpuError> {
        need("copy to the device", "the host buffer", host.len(), len)?;
        need("copy to the device", "the device buffer", dev.len(), len)?;
        let step = "copying the hidden state to the device";
        let src = host.as_slice().map_err(|source| GpuError::Driver { step, source })?;
        self.stream
            .memcpy_htod(&src[..len], &mut dev.slice_mut(..len))
            .map_err(|source| GpuError::Driver { step, source })
    }

    /// Queues a copy of `len` elements of `dev` from element `at` into the
    /// start of `host`; they are there once [`Gpu::synchronize`] returns.
    ///
    /// # Errors
    /// Lengths out of range, a driver error.
    pub fn copy_to_host(
        &self,
        dev: &CudaSlice<f32>,
        at: usize,
        host: &mut PinnedHostSlice<f32>,
        len: usize,
    ) -> Result<(), GpuError> {
        need("copy to the host", "the host buffer", host.len(), len)?;
        need("copy to the host", "the device buffer", dev.len(), at + len)?;
        let step = "copying from the device";
        // A plain slice of the page-locked memory: the copy is queued
        // (asynchronous) and no cudarc event is recorded, which a capture
        // would not allow.
        let dst = host.as_mut_slice().map_err(|source| GpuError::Driver { step, source })?;
        self.stream
            .memcpy_dtoh(&dev.slice(at..at + len), &mut dst[..len])
            .map_err(|source| GpuError::Driver { step, source })
    }

    /// Waits for everything queued so far (a kernel's fault surfaces here).
    ///
    /// # Errors
    /// A driver error.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.stream.synchronize().map_err(|source| GpuError::Driver { step: "waiting for the GPU", source })
    }

    /// A [`Position`] holding `value`, on the device once the queued copy runs.
    ///
    /// # Errors
    /// A driver error.
    pub fn position(&self, value: usize) -> Result<Position, GpuError> {
        let step = "allocating the position buffer";
        // SAFETY: written by `set_position` before anything reads it.
        let staged = unsafe { self.ctx.alloc_pinned_with_flags::<i32>(1, 0) }
            .map_err(|source| GpuError::Driver { step, source })?;
        let mut p = Position { staged, dev: self.zeros(1, step)?, value: 0 };
        self.set_position(&mut p, value)?;
        Ok(p)
    }

    /// Stages `value` and queues its copy to the device.
    ///
    /// # Errors
    /// A value beyond i32, a driver error.
    pub fn set_position(&self, p: &mut Position, value: usize) -> Result<(), GpuError> {
        self.stage_position(p, value)?;
        self.upload_position(p)
    }

    /// Writes `value` to the page-locked side of `p`, for the next
    /// [`Gpu::upload_position`] (or the next replay of a capture that
    /// holds one). Waits for the queued work first: a queued copy reads the
    /// page-locked value when it runs, not when it was queued.
    ///
    /// # Errors
    /// A value beyond i32, a driver error.
    pub fn stage_position(&self, p: &mut Position, value: usize) -> Result<(), GpuError> {
        fits_i32("position", &[value])?;
        self.synchronize()?;
        let step = "writing the position";
        p.staged.as_mut_slice().map_err(|source| GpuError::Driver { step, source })?[0] = value as i32;
        p.value = value;
        Ok(())
    }

    /// Queues the copy of the staged position to the device (inside a
    /// capture, the copy reads the page-locked value at each replay).
    ///
    /// # Errors
    /// A driver error.
    pub fn upload_position(&self, p: &mut Position) -> Result<(), GpuError> {
        let step = "copying the position to the device";
        let src = p.staged.as_slice().map_err(|source| GpuError::Driver { step, source })?;
        self.stream.memcpy_htod(&src[..1], &mut p.dev).map_err(|source| GpuError::Driver { step, source })
    }

    /// Records what `enqueue` queues into a [`Graph`] instead of running
    /// it. The buffers it names must outlive every replay.
    ///
    /// # Errors
    /// `enqueue`'s error (the capture is ended and dropped), a driver error.
    pub fn capture(&self, enqueue: impl FnOnce() -> Result<(), GpuError>) -> Result<Graph, GpuError> {
        let step = "capturing a decode step";
        let driver = |source| GpuError::Driver { step, source };
        // Relaxed: the host-side calls made while queuing (reading pinned
        // buffers' slices) are not refused during the capture.
        self.stream
            .begin_capture(cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .map_err(driver)?;
        let queued = enqueue();
        let graph = self.stream.end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0));
        queued?;
        match graph.map_err(driver)? {
            Some(g) => Ok(Graph(g)),
            None => Err(GpuError::Shape { op: "capture", what: "nothing was queued".into() }),
        }
    }

    /// Copies `len` elements of `src` from element `at` on into the start
    /// of `dst` (device to device).
    ///
    /// # Errors
    /// Lengths out of range, a driver error.
    pub fn copy_within(
        &self,
        src: &CudaSlice<f32>,
        at: usize,
        len: usize,
        dst: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        need("copy on the device", "the source", src.len(), at + len)?;
        need("copy on the device", "the destination", dst.len(), len)?;
        self.stream
            .memcpy_dtod(&src.slice(at..at + len), &mut dst.slice_mut(..len))
            .map_err(|source| GpuError::Driver { step: "copying on the device", source })
    }

    /// Copies the first `len` elements of `dev` back (waits for the work
    /// queued before).
    ///
    /// # Errors
    /// `len` beyond the buffer, a driver error (a kernel's fault surfaces here).
    pub fn download_prefix(&self, dev: &CudaSlice<f32>, len: usize) -> Result<Vec<f32>, GpuError> {
        need("copy to the host", "the device buffer", dev.len(), len)?;
        self.stream
            .clone_dtoh(&dev.slice(..len))
            .map_err(|source| GpuError::Driver { step: "copying from the device", source })
    }

    /// Copies `dev` back (waits for the work queued before).
    ///
    /// # Errors
    /// A driver error (a kernel's fault surfaces here), naming the step.
    pub fn download<T: DeviceRepr + Default + Clone>(&self, dev: &CudaSlice<T>) -> Result<Vec<T>, GpuError> {
        self.stream.clone_dtoh(dev).map_err(|source| GpuError::Driver { step: "copying from the device", source })
    }

    fn launched(
        r: Result<Option<(cudarc::driver::CudaEvent, cudarc::driver::CudaEvent)>, cudarc::driver::DriverError>,
    ) -> Result<(), GpuError> {
        r.map(|_| ()).map_err(|source| GpuError::Driver { step: "launching a kernel", source })
    }

    /// `out` = RMSNorm of each of `rows` rows of `x` (`width` wide) times
    /// `w`: the CPU's bits.
    ///
    /// # Errors
    /// A buffer too short, a launch error.
    pub fn rms_norm(
        &self,
        out: &mut CudaSlice<f32>,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        eps: f32,
        rows: usize,
        width: usize,
    ) -> Result<(), GpuError> {
        check_norm_width(width)?;
        fits_i32("rms_norm", &[rows, width])?;
        need("rms_norm", "x", x.len(), rows * width)?;
        need("rms_norm", "out", out.len(), rows * width)?;
        need("rms_norm", "w", w.len(), width)?;
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 };
        let width = width as i32;
        let mut b = self.stream.launch_builder(&self.rms_norm);
        b.arg(out).arg(x).arg(w).arg(&eps).arg(&width);
        // SAFETY: the kernel reads rows * width of x and width of w, writes
        // rows * width of out (all checked above), one block per row.
        Self::launched(unsafe { b.launch(cfg) })
    }

    /// Quantizes `rows` rows of `x` (`k` wide) into `out` in the
    /// activation format `format`'s weights multiply
    /// ([`RowFormat::activation_bytes`]): the CPU quantizer's bytes.
    ///
    /// # Errors
    /// `k` not a multiple of 32, a buffer too short, a launch error.
    pub fn quantize_activations(
        &self,
        format: RowFormat,
        out: &mut CudaSlice<u8>,
        x: &CudaSlice<f32>,
        rows: usize,
        k: usize,
    ) -> Result<(), GpuError> {
        check_k("quantize_activations", k)?;
        fits_i32("quantize_activations", &[rows * k])?;
        need("quantize_activations", "x", x.len(), rows * k)?;
        need("quantize_activations", "out (bytes)", out.len(), rows * format.activation_bytes(k))?;
        let (k_, kind) = (k as i32, format.activation_kind());
        let mut b = self.stream.launch_builder(&self.quantize_rows);
        b.arg(out).arg(x).arg(&k_).arg(&kind);
        // SAFETY: one block per row: reads k of x, writes one activation
        // row of out (lengths checked above).
        Self::launched(unsafe { b.launch(per_row(rows)) })
    }

    /// [`Gpu::rms_norm`] into `h`, then `h` quantized into `act` as
    /// [`Gpu::quantize_activations`] does for `format`: one launch.
    ///
    /// # Errors
    /// A buffer too short, a bad width, a launch error.
    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm_quantize(
        &self,
        h: &mut CudaSlice<f32>,
        act: &mut CudaSlice<u8>,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        eps: f32,
        rows: usize,
        format: RowFormat,
    ) -> Result<(), GpuError> {
        let width = w.len();
        check_norm_width(width)?;
        check_k("rms_norm_quantize", width)?;
        fits_i32("rms_norm_quantize", &[rows * width])?;
        need("rms_norm_quantize", "x", x.len(), rows * width)?;
        need("rms_norm_quantize", "h", h.len(), rows * width)?;
        need("rms_norm_quantize", "act (bytes)", act.len(), rows * format.activation_bytes(width))?;
        let (width_, kind) = (width as i32, format.activation_kind());
        let mut b = self.stream.launch_builder(&self.rms_norm_quantize);
        b.arg(h).arg(act).arg(x).arg(w).arg(&eps).arg(&width_).arg(&kind);
        // SAFETY: one block per row, lengths checked above.
        Self::launched(unsafe { b.launch(per_row(rows)) })
    }

    /// [`Gpu::swiglu`] on `rows` rows of `width`, then the result quantized
    /// into `act` for `format`: one launch.
    ///
    /// # Errors
    /// A buffer too short, a launch error.
    pub fn swiglu_quantize(
        &self,
        gate: &mut CudaSlice<f32>,
        up: &CudaSlice<f32>,
        act: &mut CudaSlice<u8>,
        rows: usize,
        width: usize,
        format: RowFormat,
    ) -> Result<(), GpuError> {
        check_k("swiglu_quantize", width)?;
        fits_i32("swiglu_quantize", &[rows * width])?;
        need("swiglu_quantize", "gate", gate.len(), rows * width)?;
        need("swiglu_quantize", "up", up.len(), rows * width)?;
        need("swiglu_quantize", "act (bytes)", act.len(), rows * format.activation_bytes(width))?;
        let (width_, kind) = (width as i32, format.activation_kind());
        let mut b = self.stream.launch_builder(&self.swiglu_quantize);
        b.arg(gate).arg(up).arg(act).arg(&width_).arg(&kind);
        // SAFETY: one block per row, lengths checked above.
        Self::launched(unsafe { b.launch(per_row(rows)) })
    }

    /// RoPE on the query heads (in place) and the key heads of `s.rows`
    /// rows, the rotated keys and `v` written into the caches at positions
    /// `s.pos0..`: `q` is rows x n_head x head_dim, `k` and `v` rows x
    /// kv_dim, the caches n_ctx x kv_dim.
    ///
    /// # Errors
    /// A bad shape, a buffer too short, a launch error.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_into_cache(
        &self,
        q: &mut CudaSlice<f32>,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        k_cache: &mut CudaSlice<f32>,
        v_cache: &mut CudaSlice<f32>,
        s: RopeShape,
        at: &Position,
    ) -> Result<(), GpuError> {
        let RopeShape { rows, n_head, n_head_kv, head_dim, rope_dim, base } = s;
        let pos0 = at.value;
        if rope_dim > head_dim || !rope_dim.is_multiple_of(2) || !head_dim.is_multiple_of(2) {
            return Err(GpuError::Shape { op: "rope", what: format!("rope_dim {rope_dim} for head_dim {head_dim}") });
        }
        let kv = n_head_kv * head_dim;
        let threads = rows * (n_head + n_head_kv) * head_dim / 2 + rows * kv;
        fits_i32("rope", &[threads, (pos0 + rows) * kv])?;
        need("rope", "q", q.len(), rows * n_head * head_dim)?;
        need("rope", "k", k.len(), rows * kv)?;
        need("rope", "v", v.len(), rows * kv)?;
        need("rope", "the k cache", k_cache.len(), (pos0 + rows) * kv)?;
        need("rope", "the v cache", v_cache.len(), (pos0 + rows) * kv)?;
        let ints = [rows, n_head, n_head_kv, head_dim, rope_dim].map(|v| v as i32);
        // The kernel writes nothing past this many cache rows, whatever the
        // position holds when a captured step replays.
        let cache_rows = (k_cache.len().min(v_cache.len()) / kv.max(1)).min(i32::MAX as usize) as i32;
        let mut b = self.stream.launch_builder(&self.rope_into_cache);
        b.arg(q).arg(k).arg(v).arg(k_cache).arg(v_cache);
        for i in &ints {
            b.arg(i);
        }
        // The CPU's theta scale, computed as the CPU computes it
        // (src/model/ops.rs `rope`): the same powf, so the same bits.
        let theta_scale = base.powf(-2.0 / rope_dim as f32);
        b.arg(&theta_scale).arg(&at.dev).arg(&cache_rows);
        // SAFETY: one thread per (row, head, pair) and per value element,
        // inside the lengths checked above; cache rows only below
        // cache_rows (the kernel checks the position it reads).
        Self::launched(unsafe { b.launch(linear(threads)) })
    }

    /// `gate = silu(gate) * up` over `n` elements.
    ///
    /// # Errors
    /// A buffer too short, a launch error.
    pub fn swiglu(&self, gate: &mut CudaSlice<f32>, up: &CudaSlice<f32>, n: usize) -> Result<(), GpuError> {
        self.elementwise("swiglu", &self.swiglu, gate, up, n)
    }

    /// `a += b` over `n` elements.
    ///
    /// # Errors
    /// A buffer too short, a launch error.
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
        fits_i32(op, &[n])?;
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
    ///
    /// # Errors
    /// A bad shape, a buffer too short, a launch error.
    #[allow(clippy::too_many_arguments)]
    pub fn attend(
        &self,
        out: &mut CudaSlice<f32>,
        q: &CudaSlice<f32>,
        kc: &CudaSlice<f32>,
        vc: &CudaSlice<f32>,
        scores: &mut CudaSlice<f32>,
        a: AttentionShape,
        at: &Position,
        quantized: Option<(&mut CudaSlice<u8>, RowFormat)>,
    ) -> Result<(), GpuError> {
        let AttentionShape { rows, n_head, n_head_kv, head_dim, n_ctx, scale } = a;
        let pos0 = at.value;
        if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) || pos0 + rows > n_ctx {
            return Err(GpuError::Shape {
                op: "attend",
                what: format!("{a:?} at position {pos0}: heads must group evenly, positions fit n_ctx"),
            });
        }
        let kv_dim = n_head_kv * head_dim;
        fits_i32("attend", &[rows * n_head * n_ctx, n_ctx * kv_dim])?;
        need("attend", "q", q.len(), rows * n_head * head_dim)?;
        need("attend", "out", out.len(), rows * n_head * head_dim)?;
        // The whole cache: a captured step replays at later positions (the
        // kernel refuses positions past n_ctx).
        need("attend", "k cache", kc.len(), n_ctx * kv_dim)?;
        need("attend", "v cache", vc.len(), n_ctx * kv_dim)?;
        need("attend", "scores", scores.len(), rows * n_head * n_ctx)?;
        let width = n_head * head_dim;
        if let Some((act, format)) = &quantized {
            if !head_dim.is_multiple_of(32) {
                return Err(GpuError::Shape {
                    op: "attend",
                    what: format!("head_dim {head_dim}: quantizing the output needs whole 32-value blocks per head"),
                });
            }
            need("attend", "act (bytes)", act.len(), rows * format.activation_bytes(width))?;
        }
        // One warp per (head, row), four heads to a block of 128 threads.
        let cfg = LaunchConfig {
            grid_dim: (n_head.div_ceil(4) as u32, rows as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let (nh, group, hd, kvd, nc) =
            (n_head as i32, (n_head / n_head_kv) as i32, head_dim as i32, kv_dim as i32, n_ctx as i32);
        let mut b = self.stream.launch_builder(&self.attend);
        b.arg(out).arg(q).arg(kc).arg(vc).arg(scores).arg(&at.dev);
        for v in [&nh, &group, &hd, &kvd] {
            b.arg(v);
        }
        b.arg(&scale).arg(&nc);
        let kind = quantized.as_ref().map_or(-1, |(_, f)| f.activation_kind());
        match quantized {
            Some((act, _)) => b.arg(act),
            // Never written with kind -1: any device pointer fills the slot.
            None => b.arg(q),
        };
        b.arg(&kind);
        // SAFETY: the warp of (h, r) reads q's row r head h, the cache
        // rows 0..=pos0 + r of KV head h / group (the kernel reads pos0 and
        // does nothing if pos0 + rows passes n_ctx), writes its scores
        // slice, its output head and its blocks of act (all lengths
        // checked above); warps past n_head return at once.
        Self::launched(unsafe { b.launch(cfg) })
    }

    /// `y[r][i] (+)= dot(a row r, w row i)` for `rows` activation rows
    /// (`a`, quantized by [`Gpu::quantize_activations`] for `format`) and
    /// the `n` rows of `w` (`k` weights each, the GGUF bytes in `format`):
    /// the CPU's bits. `accumulate` adds to `y` instead of overwriting it.
    ///
    /// # Errors
    /// `k` not a multiple of 32, a buffer too short, a launch error.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        format: RowFormat,
        y: &mut CudaSlice<f32>,
        w: &CudaSlice<u8>,
        a: &CudaSlice<u8>,
        n: usize,
        k: usize,
        rows: usize,
        accumulate: bool,
    ) -> Result<(), GpuError> {
        self.matmuls(format, [Some((y, w, n)), None, None], a, k, rows, accumulate, Then::Nothing)
    }

    /// Up to three matmuls of the same `format` and `k` on the same
    /// activations (Q, K and V; gate and up): `(y, w, n)` each, as
    /// [`Gpu::matmul`], then `then`. Few rows take one launch for all.
    ///
    /// # Errors
    /// As [`Gpu::matmul`]; `then`'s targets missing or of other widths.
    #[allow(clippy::too_many_arguments)]
    pub fn matmuls(
        &self,
        format: RowFormat,
        mut targets: [Option<MatmulTarget>; 3],
        a: &CudaSlice<u8>,
        k: usize,
        rows: usize,
        accumulate: bool,
        then: Then,
    ) -> Result<(), GpuError> {
        check_k("matmul", k)?;
        need("matmul", "a (bytes)", a.len(), rows * format.activation_bytes(k))?;
        let mut total = 0;
        for (y, w, n) in targets.iter().flatten() {
            fits_i32("matmul", &[*n, k, rows, 32 * (total + n) * rows])?;
            need("matmul", "w (bytes)", w.len(), n * format.row_bytes(k))?;
            need("matmul", "y", y.len(), rows * n)?;
            total += n;
        }
        let (gemv, gemm) = &self.matmul[format as usize];
        let (k_, r_, acc) = (k as i32, rows as i32, i32::from(accumulate));
        if rows > GEMV_ROWS {
            let (tile_outs, tile_rows, threads) = gemm_tile(format);
            for (y, w, n) in targets.iter_mut().flatten() {
                let grid = (n.div_ceil(tile_outs) as u32, rows.div_ceil(tile_rows) as u32, 1);
                let cfg = LaunchConfig { grid_dim: grid, block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
                let n_ = *n as i32;
                let mut b = self.stream.launch_builder(gemm);
                b.arg(&mut **y).arg(*w).arg(a).arg(&n_).arg(&k_).arg(&r_).arg(&acc);
                // SAFETY: one tile per block of the kernel's thread count,
                // each element bounds-checked against n and rows; reads n
                // rows of w and `rows` rows of a, writes rows x n of y
                // (checked above).
                Self::launched(unsafe { b.launch(cfg) })?;
            }
            let [t0, t1, _] = targets;
            return match then {
                Then::Nothing => Ok(()),
                Then::NormQuantize { h, act, weight, eps, format } => {
                    let (y, _, _) = t0.ok_or_else(|| then_shape("NormQuantize needs target 0"))?;
                    self.rms_norm_quantize(h, act, y, weight, eps, rows, format)
                }
                Then::SwigluQuantize { act, format } => {
                    let ((gate, _, n), (up, _, n1)) =
                        t0.zip(t1).ok_or_else(|| then_shape("SwiGLU needs targets 0 and 1"))?;
                    if n != n1 {
                        return Err(then_shape("SwiGLU needs gate and up of one width"));
                    }
                    self.swiglu_quantize(gate, up, act, rows, n, format)
                }
            };
        }
        let tail = self.tail(&then, &targets, rows)?;
        let ns = targets.each_ref().map(|t| t.as_ref().map_or(0, |(_, _, n)| *n as i32));
        let mut b = self.stream.launch_builder(gemv);
        for (i, t) in targets.iter_mut().enumerate() {
            match t {
                Some((y, w, _)) => {
                    b.arg(&mut **y).arg(*w);
                }
                // An empty target: n = 0, so the kernel never touches its
                // pointers (any device pointer fills the slots).
                None => {
                    b.arg(a).arg(a);
                }
            }
            b.arg(&ns[i]);
        }
        b.arg(a).arg(&k_).arg(&r_).arg(&acc).arg(&tail);
        // SAFETY: one warp per (output, row) of the targets together; each
        // reads its weight row and activation row and writes one element of
        // its y (lengths checked above); empty targets have n = 0. The tail
        // reads and writes the buffers `tail` checked, once every block is done.
        Self::launched(unsafe { b.launch(linear(32 * total * rows)) })
    }

    /// The GEMV launch's [`Tail`] for `then`, its buffers checked.
    fn tail(&self, then: &Then, targets: &[Option<MatmulTarget>; 3], rows: usize) -> Result<Tail, GpuError> {
        let ptr = |s: &CudaSlice<f32>| s.device_ptr(&self.stream).0;
        let done = self.tail_done.device_ptr(&self.stream).0;
        let none = Tail { op: 0, done, out: 0, act: 0, norm_w: 0, eps: 0.0, width: 0, kind: 0 };
        let width = |i: usize| targets[i].as_ref().map(|(_, _, n)| *n);
        match then {
            Then::Nothing => Ok(none),
            Then::NormQuantize { h, act, weight, eps, format } => {
                let n = width(0).ok_or_else(|| then_shape("NormQuantize needs target 0"))?;
                if weight.len() != n {
                    return Err(then_shape("the norm's weight is not as wide as target 0"));
                }
                check_norm_width(n)?;
                check_k("rms_norm_quantize", n)?;
                need("rms_norm_quantize", "h", h.len(), rows * n)?;
                need("rms_norm_quantize", "act (bytes)", act.len(), rows * format.activation_bytes(n))?;
                let (out, norm_w) = (ptr(h), ptr(weight));
                let act = act.device_ptr(&self.stream).0;
                Ok(Tail { op: 1, out, act, norm_w, eps: *eps, width: n as i32, kind: format.activation_kind(), ..none })
            }
            Then::SwigluQuantize { act, format } => {
                let (n, n1) = width(0).zip(width(1)).ok_or_else(|| then_shape("SwiGLU needs targets 0 and 1"))?;
                if n != n1 {
                    return Err(then_shape("SwiGLU needs gate and up of one width"));
                }
                check_norm_width(n)?;
                check_k("swiglu_quantize", n)?;
                need("swiglu_quantize", "act (bytes)", act.len(), rows * format.activation_bytes(n))?;
                let act = act.device_ptr(&self.stream).0;
                Ok(Tail { op: 2, act, width: n as i32, kind: format.activation_kind(), ..none })
            }
        }
    }
}

fn then_shape(what: &str) -> GpuError {
    GpuError::Shape { op: "matmul then", what: what.to_string() }
}

fn check_norm_width(width: usize) -> Result<(), GpuError> {
    if width == 0 || width > 8192 {
        return Err(GpuError::Shape { op: "rms_norm", what: format!("width {width} is outside 1..=8192") });
    }
    Ok(())
}

fn per_row(rows: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

fn check_k(op: &'static str, k: usize) -> Result<(), GpuError> {
    if k == 0 || !k.is_multiple_of(32) {
        return Err(GpuError::Shape { op, what: format!("k = {k} is not a whole number of 32-element blocks") });
    }
    Ok(())
}
