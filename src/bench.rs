//! Measurement helpers shared by the tour and the benches: medians of wall
//! time (the core clock drops while AMX is busy, so cycles derived from the
//! TSC would overstate throughput; docs/AMX.md) and the TMUL peak bound.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tilejit_kernels::dense_amx::DenseAmxKernel;
use tilejit_kernels::pack::{AlignedBytes, BLayout, PackedB};
use tilejit_kernels::peak::{TmulPeakKernel, TDPS_PER_ITERATION};
use tilejit_kernels::spec::{DenseAmxSpec, ElemType};
use tilejit_verify::f32_to_bf16;

use crate::cpu::amx_ready;
use crate::gemm::{gemm_bf16, gemm_int8, GemmError, GemmOptions};

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

/// Operations per second (2 per multiply-add) of one thread running
/// register-resident TDPs: the TMUL peak of this core.
pub fn tmul_peak_ops(elem: ElemType) -> Result<f64, GemmError> {
    amx_ready()?;
    let kernel = TmulPeakKernel::generate(elem)?;
    let iterations = 20_000u64;
    // SAFETY: AMX permission granted above.
    let t = median_time(7, || unsafe { kernel.run(iterations) });
    let ops = iterations as f64 * TDPS_PER_ITERATION as f64 * kernel.ops_per_tdp() as f64;
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

/// Times `gemm_int8`/`gemm_bf16` on `m x n x k` (median of `reps`).
pub fn measure_gemm(elem: ElemType, m: usize, n: usize, k: usize, opts: &GemmOptions, reps: usize) -> Result<GemmMeasurement, GemmError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut a = AlignedBytes::zeroed(m * k * elem.elem_bytes());
    let mut b_rows = vec![0u8; k * n * elem.elem_bytes()];
    let mut c = AlignedBytes::zeroed(m * n * 4);
    let median = match elem {
        ElemType::Bf16 => {
            // Small normal values: throughput does not depend on the data,
            // but this keeps the C values finite and readable.
            let bf16 = |r: &mut rand::rngs::StdRng| f32_to_bf16(r.random_range(-1.0f32..1.0));
            a.typed_mut::<u16>().iter_mut().for_each(|x| *x = bf16(&mut rng));
            let b16: Vec<u16> = (0..k * n).map(|_| bf16(&mut rng)).collect();
            let packed = PackedB::pack_bf16(&b16, k, n, n, BLayout::default())?;
            let c = c.typed_mut::<f32>();
            gemm_bf16(m, a.typed::<u16>(), k, &packed, c, n, false, opts)?;
            median_time(reps, || gemm_bf16(m, a.typed::<u16>(), k, &packed, c, n, false, opts).expect("checked by the first run"))
        }
        ElemType::Int8(sign) => {
            rng.fill(a.as_mut_slice());
            rng.fill(&mut b_rows[..]);
            let packed = PackedB::pack_int8(&b_rows, k, n, n, BLayout::default())?;
            let c = c.typed_mut::<i32>();
            gemm_int8(sign, m, a.as_slice(), k, &packed, c, n, false, opts)?;
            median_time(reps, || gemm_int8(sign, m, a.as_slice(), k, &packed, c, n, false, opts).expect("checked by the first run"))
        }
    };
    let ops_per_s = 2.0 * (m * n * k) as f64 / median.as_secs_f64();
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
