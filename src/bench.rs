//! Measurement helpers shared by the tour and the benches: medians of wall
//! time (the core clock drops while AMX is busy, so cycles derived from the
//! TSC would overstate throughput; docs/AMX.md) and the TMUL peak bound.

use std::time::{Duration, Instant};

use tilejit_kernels::peak::{TmulPeakKernel, TDPS_PER_ITERATION};
use tilejit_kernels::spec::ElemType;

use crate::cpu::amx_ready;
use crate::gemm::GemmError;

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
