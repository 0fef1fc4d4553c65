//! Measurement helpers shared by the tour and the benches: medians of wall
//! time (the core clock drops while AMX is busy, so cycles derived from the
//! TSC would overstate throughput; docs/AMX.md) and the TMUL peak bound.
//!
//! `tilejit bench` is built from the submodules: [`suite`] (the [`suite::Case`]
//! trait, the runner and the machine's bounds), [`cases`] (the kernel suite),
//! [`sparse`] (the sparse-vs-dense extension point), [`json`], [`plot`] and
//! [`cli`] (the table, progress bar and files of the command).

pub mod cases;
pub mod cli;
pub mod json;
pub mod model;
pub mod plot;
pub mod sparse;
pub mod suite;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tilejit_kernels::dense_amx::DenseAmxKernel;
use tilejit_kernels::dense_amx::DenseAmxSpec;
use tilejit_kernels::dense_avx512::DenseAvx512Kernel;
use tilejit_kernels::dense_avx512::DenseAvx512Spec;
use tilejit_kernels::pack::{AlignedBytes, BLayout, PackedB};
use tilejit_kernels::peak::{ReadBandwidthKernel, TmulPeakKernel, READ_CHUNK, TDPS_PER_ITERATION};
use tilejit_kernels::quant_avx512::WeightFormat;
use tilejit_kernels::spec::ElemType;
use tilejit_verify::f32_to_bf16;

use crate::cpu::amx_ready;
use crate::gemm::{
    gemm_bf16, gemm_int8, quantize_activations, quantize_weights, reference_types, GemmError, GemmOptions,
};

/// Median wall time of `reps` runs of `f` after one warm-up run.
pub fn median_time(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Random operand tiles for the peak loop: finite bf16 for bf16, any bytes
/// for int8 (the data the GEMM benches use too).
pub fn peak_operands(elem: ElemType) -> [u8; 4096] {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut out = [0u8; 4096];
    match elem {
        ElemType::Bf16 => out.chunks_exact_mut(2).for_each(|c| c.copy_from_slice(&random_bf16(&mut rng).to_le_bytes())),
        ElemType::Int8(_) => rng.fill(&mut out[..]),
    }
    out
}

fn random_bf16(rng: &mut rand::rngs::StdRng) -> u16 {
    f32_to_bf16(rng.random_range(-1.0f32..1.0))
}

/// Operations per second (2 per multiply-add) of one thread running
/// register-resident TDPs on random tiles: the TMUL peak of this core.
pub fn tmul_peak_ops(elem: ElemType) -> Result<f64, GemmError> {
    tmul_peak_ops_threads(elem, 1)
}

/// [`tmul_peak_ops`] on `threads` threads at once (the GEMM worker pool),
/// summed: operations of all threads per second of wall time. Hardware
/// threads that share one core's TMUL add nothing, which is what this
/// shows.
pub fn tmul_peak_ops_threads(elem: ElemType, threads: usize) -> Result<f64, GemmError> {
    amx_ready()?;
    let threads = threads.max(1);
    let kernel = TmulPeakKernel::generate(elem)?;
    let operands = peak_operands(elem);
    let iterations = 20_000u64;
    let pass = |iterations: u64| {
        crate::threads::run_parallel::<()>(threads, |_| {
            // SAFETY: AMX permission granted above (process-wide, so for the workers too).
            unsafe { kernel.run(iterations, &operands) };
            Ok(())
        })
        .expect("the peak loop cannot fail")
    };
    // The first AMX work after idle runs at a lower clock for a while
    // (seen on the 16-core machine: 2.4x lower for the first milliseconds);
    // keep the unit busy for 100 ms before timing.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(100) {
        pass(iterations / 10);
    }
    let t = median_time(7, || pass(iterations));
    let ops = (threads as u64 * iterations) as f64 * TDPS_PER_ITERATION as f64 * kernel.ops_per_tdp() as f64;
    Ok(ops / t.as_secs_f64())
}

/// Throughput of one dense AMX GEMM shape: A and C 64-byte aligned, B
/// packed once outside the timed region, C overwritten (not accumulated).
#[derive(Clone, Debug)]
pub struct GemmMeasurement {
    pub elem: ElemType,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub threads: usize,
    pub median: Duration,
    /// Operations per second (2 per multiply-add).
    pub ops_per_s: f64,
}

/// Random A (64-byte aligned) and packed B for an `m x n x k` GEMM. Random
/// data, because the TMUL runs faster on zeros (see peak.rs).
fn random_operands(
    elem: ElemType,
    m: usize,
    n: usize,
    k: usize,
    seed: u64,
) -> Result<(AlignedBytes, PackedB), GemmError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut a = AlignedBytes::zeroed(m * k * elem.elem_bytes());
    let b = match elem {
        ElemType::Bf16 => {
            a.typed_mut::<u16>().iter_mut().for_each(|x| *x = random_bf16(&mut rng));
            let b16: Vec<u16> = (0..k * n).map(|_| random_bf16(&mut rng)).collect();
            PackedB::pack_bf16(&b16, k, n, n, BLayout::default())?
        }
        ElemType::Int8(_) => {
            rng.fill(a.as_mut_slice());
            let mut b8 = vec![0u8; k * n];
            rng.fill(&mut b8[..]);
            PackedB::pack_int8(&b8, k, n, n, BLayout::default())?
        }
    };
    Ok((a, b))
}

/// One GEMM of `elem` on bytes, C overwritten.
fn run_on(
    elem: ElemType,
    (m, n, k): (usize, usize, usize),
    a: &AlignedBytes,
    b: &PackedB,
    c: &mut AlignedBytes,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    match elem {
        ElemType::Bf16 => gemm_bf16(m, a.typed::<u16>(), k, b, c.typed_mut::<f32>(), n, false, opts),
        ElemType::Int8(sign) => gemm_int8(sign, m, a.as_slice(), k, b, c.typed_mut::<i32>(), n, false, opts),
    }
}

/// Random A (64-byte aligned), B packed once, and C for one GEMM shape:
/// the data every throughput measurement uses.
pub struct GemmFixture {
    pub elem: ElemType,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    a: AlignedBytes,
    b: PackedB,
    c: AlignedBytes,
}

impl GemmFixture {
    pub fn new(elem: ElemType, m: usize, n: usize, k: usize) -> Result<GemmFixture, GemmError> {
        let (a, b) = random_operands(elem, m, n, k, 7)?;
        Ok(GemmFixture { elem, m, n, k, a, b, c: AlignedBytes::zeroed(m * n * 4) })
    }

    /// One GEMM, C overwritten.
    pub fn run(&mut self, opts: &GemmOptions) -> Result<(), GemmError> {
        run_on(self.elem, (self.m, self.n, self.k), &self.a, &self.b, &mut self.c, opts)
    }

    /// Operations of one GEMM (2 per multiply-add).
    pub fn ops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }
}

/// Times one GEMM shape (median of `reps`, after a checked first run).
pub fn measure_gemm(
    elem: ElemType,
    m: usize,
    n: usize,
    k: usize,
    opts: &GemmOptions,
    reps: usize,
) -> Result<GemmMeasurement, GemmError> {
    let mut fixture = GemmFixture::new(elem, m, n, k)?;
    fixture.run(opts)?;
    let median = median_time(reps, || fixture.run(opts).expect("checked by the first run"));
    let ops_per_s = fixture.ops() / median.as_secs_f64();
    Ok(GemmMeasurement { elem, m, n, k, threads: opts.threads, median, ops_per_s })
}

/// Median time to generate one kernel (no cache), over `reps` fresh generations.
pub fn jit_compile_time(spec: DenseAmxSpec, reps: usize) -> Result<(Duration, usize), GemmError> {
    let size = DenseAmxKernel::generate(spec)?.code().len();
    let t = median_time(reps, || {
        DenseAmxKernel::generate(spec).expect("generated once above");
    });
    Ok((t, size))
}

/// [`jit_compile_time`] for a dense AVX-512 kernel.
pub fn jit_compile_time_avx512(spec: DenseAvx512Spec, reps: usize) -> Result<(Duration, usize), GemmError> {
    let size = DenseAvx512Kernel::generate(spec)?.code().len();
    let t = median_time(reps, || {
        DenseAvx512Kernel::generate(spec).expect("generated once above");
    });
    Ok((t, size))
}

/// The streaming-read bound: `threads` threads each read their share of a
/// buffer (make it larger than the last-level cache to measure DRAM) with
/// the best of several probe shapes (streams x prefetch distance).
pub struct ReadProbe {
    buf: AlignedBytes,
    share: usize,
    threads: usize,
    /// The fastest probe shape on this machine, chosen once in `new`, so
    /// that later measurements are single samples like the kernels they
    /// are compared with (a max over shapes per sample would add noise to
    /// the bound only).
    kernel: ReadBandwidthKernel,
}

impl ReadProbe {
    pub fn new(bytes: usize, threads: usize) -> Result<ReadProbe, String> {
        crate::isa::availability(crate::isa::Isa::Avx512).map_err(|e| e.to_string())?;
        let threads = threads.max(1);
        let share = (bytes / threads / READ_CHUNK).max(1) * READ_CHUNK;
        let mut buf = AlignedBytes::zeroed(share * threads);
        // Touch every page so a pass measures reads, not page faults.
        buf.as_mut_slice().iter_mut().step_by(4096).for_each(|b| *b = 1);
        let mut best: Option<(f64, ReadBandwidthKernel)> = None;
        for (streams, prefetch) in [(1, 0), (2, 2048), (4, 1024)] {
            let kernel = ReadBandwidthKernel::generate(streams, prefetch).map_err(|e| e.to_string())?;
            let bw = Self::measure(&buf, share, threads, &kernel, 3);
            if best.as_ref().is_none_or(|(b, _)| bw > *b) {
                best = Some((bw, kernel));
            }
        }
        let kernel = best.expect("three shapes were measured").1;
        Ok(ReadProbe { buf, share, threads, kernel })
    }

    fn measure(buf: &AlignedBytes, share: usize, threads: usize, kernel: &ReadBandwidthKernel, reps: usize) -> f64 {
        // The same worker threads as the GEMM paths.
        let pass = || {
            crate::threads::run_parallel::<()>(threads, |t| {
                // SAFETY: AVX-512 availability was checked in `new`.
                unsafe { kernel.run(&buf.as_slice()[t * share..(t + 1) * share]) };
                Ok(())
            })
            .expect("the read probe cannot fail")
        };
        (share * threads) as f64 / median_time(reps, pass).as_secs_f64()
    }

    /// Bytes per second of the chosen probe shape, median of `reps` passes.
    pub fn bandwidth(&self, reps: usize) -> f64 {
        Self::measure(&self.buf, self.share, self.threads, &self.kernel, reps)
    }
}

/// [`ReadProbe::bandwidth`] of a fresh probe over `bytes`.
pub fn read_bandwidth(bytes: usize, threads: usize, reps: usize) -> Result<f64, String> {
    Ok(ReadProbe::new(bytes, threads)?.bandwidth(reps))
}

/// Weights that are not cache resident for GEMV (or small-M GEMM)
/// measurements: `copies` packed B matrices are cycled through, so each call reads its weights from DRAM when
/// `copies * B bytes` exceeds the last-level cache.
pub struct GemvFixture {
    elem: ElemType,
    m: usize,
    n: usize,
    k: usize,
    a: AlignedBytes,
    weights: Vec<PackedB>,
    c: AlignedBytes,
}

impl GemvFixture {
    pub fn new(elem: ElemType, m: usize, n: usize, k: usize, copies: usize) -> Result<GemvFixture, GemmError> {
        let (a, first) = random_operands(elem, m, n, k, 5)?;
        let weights = vec![first; copies.max(1)];
        Ok(GemvFixture { elem, m, n, k, a, weights, c: AlignedBytes::zeroed(m * n * 4) })
    }

    fn call(&mut self, b: usize, opts: &GemmOptions) -> Result<(), GemmError> {
        run_on(self.elem, (self.m, self.n, self.k), &self.a, &self.weights[b], &mut self.c, opts)
    }

    /// Number of weight copies cycled through.
    pub fn copies(&self) -> usize {
        self.weights.len()
    }

    /// Bytes of one copy of the packed weights.
    pub fn copy_bytes(&self) -> usize {
        self.weights[0].as_bytes().len()
    }

    /// One call on copy `copy % copies()`.
    pub fn run_copy(&mut self, copy: usize, opts: &GemmOptions) -> Result<(), GemmError> {
        self.call(copy % self.weights.len(), opts)
    }

    /// Bytes of packed weights per second over one round of every copy
    /// (median of `reps` rounds, after one checked call).
    pub fn bandwidth(&mut self, opts: &GemmOptions, reps: usize) -> Result<f64, GemmError> {
        self.call(0, opts)?;
        let copies = self.weights.len();
        let round = median_time(reps, || {
            for b in 0..copies {
                self.call(b, opts).expect("checked by the first call");
            }
        });
        let bytes = self.weights.iter().map(|b| b.as_bytes().len()).sum::<usize>();
        Ok(bytes as f64 / round.as_secs_f64())
    }
}

/// [`GemvFixture::bandwidth`] of a fresh fixture.
#[allow(clippy::too_many_arguments)]
pub fn gemv_weight_bandwidth(
    elem: ElemType,
    m: usize,
    n: usize,
    k: usize,
    copies: usize,
    opts: &GemmOptions,
    reps: usize,
) -> Result<f64, GemmError> {
    GemvFixture::new(elem, m, n, k, copies)?.bandwidth(opts, reps)
}

/// Decode over GGUF block-quantized weights that are not cache resident:
/// `copies` packed copies of one random N x K matrix in `format` (Q8_0,
/// Q4_0 or Q4_1) are cycled through, with one activation row in the
/// format's pair (Q8_0, or Q8_1 for Q4_1). Throughput is counted in bytes
/// of the GGUF-quantized weights (34, 18 and 20 bytes per 32 weights), the
/// measure the model runner cares about.
pub struct QuantGemvFixture {
    weights: Vec<tilejit_kernels::quant_avx512::PackedQuant>,
    a: tilejit_kernels::quant_avx512::QuantActivations,
    c: Vec<f32>,
    gguf_bytes: usize,
}

impl QuantGemvFixture {
    pub fn new(format: WeightFormat, n: usize, k: usize, copies: usize) -> Result<QuantGemvFixture, GemmError> {
        use tilejit_kernels::quant_avx512::{PackedQuant, QuantActivations};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        let q = quantize_weights(format, &w);
        let packed = PackedQuant::from_gguf(format, &q, n, k)?;
        let x: Vec<f32> = (0..k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let af = format.activations();
        let a = QuantActivations::from_gguf(af, &quantize_activations(af, &x), 1, k)?;
        Ok(QuantGemvFixture { weights: vec![packed; copies.max(1)], a, c: vec![0.0; n], gguf_bytes: q.len() })
    }

    /// Number of weight copies cycled through.
    pub fn copies(&self) -> usize {
        self.weights.len()
    }

    /// GGUF bytes of one copy of the weights.
    pub fn copy_gguf_bytes(&self) -> usize {
        self.gguf_bytes
    }

    /// One GEMV on copy `copy % copies()`.
    pub fn run_copy(&mut self, copy: usize, threads: usize) -> Result<(), GemmError> {
        let w = &self.weights[copy % self.weights.len()];
        crate::gemm::gemm_quant_avx512(w, &self.a, &mut self.c, w.n(), threads)
    }

    /// GGUF-quantized weight bytes per second over one round of every copy
    /// (median of `reps` rounds, after one checked call).
    pub fn bandwidth(&mut self, threads: usize, reps: usize) -> Result<f64, GemmError> {
        crate::gemm::gemm_quant_avx512(&self.weights[0], &self.a, &mut self.c, self.weights[0].n(), threads)?;
        let round = median_time(reps, || {
            for w in &self.weights {
                crate::gemm::gemm_quant_avx512(w, &self.a, &mut self.c, w.n(), threads)
                    .expect("checked by the first call");
            }
        });
        Ok((self.gguf_bytes * self.weights.len()) as f64 / round.as_secs_f64())
    }
}

/// How a quantized prefill runs (the strategies compared in BENCHMARKS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefillStrategy {
    /// AMX, each block widened from the panel layout to an s8 tile,
    /// TDPBSSD, f32 epilogue per block.
    AmxInt8Blocks,
    /// The AVX-512 VNNI decode kernel, four rows per call.
    Avx512Vnni,
    /// Weights dequantized to bf16 once (outside the timed region), then
    /// the dense bf16 GEMM on f32 activations rounded to bf16: a different
    /// semantics (`tilejit_verify::quant::gemm_dequant_bf16_reference`).
    DequantBf16,
}

impl PrefillStrategy {
    pub const ALL: [PrefillStrategy; 3] = [Self::AmxInt8Blocks, Self::Avx512Vnni, Self::DequantBf16];

    pub fn name(self) -> &'static str {
        match self {
            Self::AmxInt8Blocks => "amx int8 per block",
            Self::Avx512Vnni => "avx512 vnni",
            Self::DequantBf16 => "dequant bf16 + amx bf16",
        }
    }

    /// The name without spaces, as `tilejit bench` case names use it.
    pub fn slug(self) -> &'static str {
        match self {
            Self::AmxInt8Blocks => "amx-int8-blocks",
            Self::Avx512Vnni => "avx512-vnni",
            Self::DequantBf16 => "dequant-bf16",
        }
    }

    /// The instruction set the strategy runs on.
    pub fn isa(self) -> crate::isa::Isa {
        match self {
            Self::Avx512Vnni => crate::isa::Isa::Avx512,
            _ => crate::isa::Isa::Amx,
        }
    }
}

/// Quantized prefill: `m` Q8 activation rows against one N x K matrix of
/// GGUF weights (random data quantized by the oracle's quantizers), packed
/// for every strategy outside the timed region.
pub struct QuantPrefillFixture {
    m: usize,
    n: usize,
    k: usize,
    amx: tilejit_kernels::quant_amx::AmxActivations,
    avx512: (tilejit_kernels::quant_avx512::PackedQuant, tilejit_kernels::quant_avx512::QuantActivations),
    dequant: (crate::gemm::PackedDequantBf16, Vec<f32>),
    c: Vec<f32>,
}

impl QuantPrefillFixture {
    pub fn new(format: WeightFormat, m: usize, n: usize, k: usize) -> Result<QuantPrefillFixture, GemmError> {
        use tilejit_kernels::quant_amx::AmxActivations;
        use tilejit_kernels::quant_avx512::{PackedQuant, QuantActivations};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let (gguf, (block_type, _)) = (quantize_weights(format, &w), reference_types(format));
        let act_format = format.activations();
        let acts = QuantActivations::from_gguf(act_format, &quantize_activations(act_format, &x), m, k)?;
        let sums: &[f32] = if format.has_min() { acts.sums() } else { &[] };
        let amx = AmxActivations::new(m, k, acts.quants(), acts.scales(), sums)?;
        let avx512 = (PackedQuant::from_gguf(format, &gguf, n, k)?, acts);
        let dequant = (crate::gemm::PackedDequantBf16::from_gguf(block_type, &gguf, n, k)?, x);
        Ok(QuantPrefillFixture { m, n, k, amx, avx512, dequant, c: vec![0.0; m * n] })
    }

    /// Operations of one run (2 per multiply-add).
    pub fn ops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }

    /// One run.
    pub fn run(&mut self, strategy: PrefillStrategy, threads: usize) -> Result<(), GemmError> {
        let tile_rows = crate::gemm::DEFAULT_TILE_ROWS;
        match strategy {
            PrefillStrategy::AmxInt8Blocks => crate::gemm::gemm_quant_amx(
                &self.avx512.0,
                &self.amx,
                &mut self.c,
                self.avx512.0.n(),
                threads,
                tile_rows,
            ),
            PrefillStrategy::Avx512Vnni => {
                crate::gemm::gemm_quant_avx512(&self.avx512.0, &self.avx512.1, &mut self.c, self.avx512.0.n(), threads)
            }
            PrefillStrategy::DequantBf16 => {
                let opts = GemmOptions { threads, ..GemmOptions::default() };
                crate::gemm::gemm_dequant_bf16(
                    &self.dequant.0,
                    &self.dequant.1,
                    self.m,
                    &mut self.c,
                    self.dequant.0.n(),
                    &opts,
                )
            }
        }
    }

    /// Median operations per second (2 per multiply-add) over `reps` runs.
    pub fn ops_per_s(&mut self, strategy: PrefillStrategy, threads: usize, reps: usize) -> Result<f64, GemmError> {
        self.run(strategy, threads)?;
        let t = median_time(reps, || self.run(strategy, threads).expect("checked by the first call"));
        Ok(2.0 * (self.m * self.n * self.k) as f64 / t.as_secs_f64())
    }
}

/// Quantized GEMMs of `m` rows through `gemm::gemm_quant` on weights that
/// are not cache resident (`copies` packed copies cycled), for the
/// AVX-512 / AMX crossover (`tilejit calibrate`).
pub struct QuantCallFixture {
    weights: Vec<crate::gemm::QuantWeights>,
    a: tilejit_kernels::quant_avx512::QuantActivations,
    c: Vec<f32>,
}

impl QuantCallFixture {
    pub fn new(format: WeightFormat, m: usize, n: usize, k: usize, copies: usize) -> Result<Self, GemmError> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let w: Vec<f32> = (0..n * k).map(|_| rng.random_range(-0.1f32..0.1)).collect();
        let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let weights = crate::gemm::QuantWeights::from_gguf(format, &quantize_weights(format, &w), n, k)?;
        let af = format.activations();
        let a = tilejit_kernels::quant_avx512::QuantActivations::from_gguf(af, &quantize_activations(af, &x), m, k)?;
        Ok(QuantCallFixture { weights: vec![weights; copies.max(1)], a, c: vec![0.0; m * n] })
    }

    /// Median seconds per call over `reps` rounds of every copy.
    pub fn seconds_per_call(&mut self, opts: &GemmOptions, reps: usize) -> Result<f64, GemmError> {
        crate::gemm::gemm_quant(&self.weights[0], &self.a, &mut self.c, self.weights[0].n(), opts)?;
        let round = median_time(reps, || {
            for w in &self.weights {
                crate::gemm::gemm_quant(w, &self.a, &mut self.c, w.n(), opts).expect("checked by the first call");
            }
        });
        Ok(round.as_secs_f64() / self.weights.len() as f64)
    }
}
