//! The runner of `tilejit bench`: the [`Case`] trait every measured kernel
//! implements, the machine's bounds ([`Bounds`]), and the timing that
//! relates one case to its bound ([`run_case`]).
//!
//! A case is one row of the table and of the JSON file. Its data are built
//! by [`Case::prepare`] outside the timed region; [`Case::run`] is one
//! timed unit of work whose size [`Case::work`] gives (operations, bytes or
//! kernels). Cases whose bound is another routine (the kernel alone for a
//! dispatch measurement, the dense kernel on the same matrix for a sparse
//! one) name it in [`CaseInfo::reference`] and time it in
//! [`Case::run_reference`], interleaved with `run` sample by sample.

use std::time::{Duration, Instant};

use tilejit_kernels::spec::{ElemType, Int8Sign};

use super::{tmul_peak_ops_threads, ReadProbe};
use crate::cpu::AmxUnavailable;
use crate::gemm::GemmError;
use crate::isa::{Isa, Unsupported};

/// Bytes that weights "from DRAM" are cycled through, and the size of the
/// streaming-read probe: beyond the last-level cache of the machines
/// measured so far (480 MiB reported on dev, 300 MiB on 16c).
pub const DRAM_SPAN: usize = 1 << 30;

/// What a case's throughput is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bound {
    /// The int8 TMUL peak (register-resident TDPBSSDs) on the case's threads.
    TmulInt8,
    /// The bf16 TMUL peak (register-resident TDPBF16PSs) on the case's threads.
    TmulBf16,
    /// The streaming-read bandwidth on the case's threads; the case's work
    /// is the bytes of its weights as stored.
    Read,
    /// The case's own reference routine ([`Case::run_reference`]): percent
    /// = reference time / case time.
    Reference,
    /// No bound (JIT compile time): the percent is reported as 0.
    None,
}

impl Bound {
    /// The TMUL peak of an element type's instructions.
    pub fn tmul(elem: ElemType) -> Bound {
        match elem {
            ElemType::Int8(_) => Bound::TmulInt8,
            ElemType::Bf16 => Bound::TmulBf16,
        }
    }

    /// The name written to the table and the JSON file.
    pub fn name(self) -> &'static str {
        match self {
            Bound::TmulInt8 => "int8_peak",
            Bound::TmulBf16 => "bf16_peak",
            Bound::Read => "read",
            Bound::Reference => "reference",
            Bound::None => "none",
        }
    }
}

/// What [`Case::run_reference`] times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reference {
    /// The generated kernel called directly, without the driver (dispatch).
    KernelAlone,
    /// The dense kernel on the same (pruned) matrix: sparse cases. The
    /// speedup plotted by `--plot` is reference time / case time.
    Dense,
}

impl Reference {
    pub fn name(self) -> &'static str {
        match self {
            Reference::KernelAlone => "kernel",
            Reference::Dense => "dense",
        }
    }
}

/// The amount of work one [`Case::run`] does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    /// Operations, 2 per multiply-add: throughput in GOP/s.
    Ops(f64),
    /// Bytes of weights as stored: throughput in GB/s.
    Bytes(f64),
    /// Generated kernels: throughput in kernel/s.
    Kernels(f64),
}

impl Work {
    /// Units per second from the amount per `median`, in [`Work::unit`].
    pub fn throughput(self, median: Duration) -> f64 {
        let secs = median.as_secs_f64();
        match self {
            Work::Ops(x) | Work::Bytes(x) => x / secs / 1e9,
            Work::Kernels(x) => x / secs,
        }
    }

    /// The unit of [`Work::throughput`].
    pub fn unit(self) -> &'static str {
        match self {
            Work::Ops(_) => "GOP/s",
            Work::Bytes(_) => "GB/s",
            Work::Kernels(_) => "kernel/s",
        }
    }
}

/// What a case is: the columns of its row.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseInfo {
    /// Unique and stable across runs, `op/dtype/variant/shape`; what
    /// `--filter` matches.
    pub name: String,
    /// "gemm", "gemv", "decode", "prefill", "jit", "dispatch", ...
    pub op: String,
    /// "u8s8", "bf16", "q8_0", "q4_0", "q4_1", ...
    pub dtype: String,
    pub isa: Isa,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Fraction of zero weights, 0 for dense cases.
    pub sparsity: f64,
    pub threads: usize,
    pub bound: Bound,
    /// What [`Case::run_reference`] times, if the case has a reference.
    pub reference: Option<Reference>,
}

impl CaseInfo {
    /// A dense case's row with no reference: `sparsity` 0.
    #[allow(clippy::too_many_arguments)]
    pub fn dense(
        name: String,
        op: &str,
        dtype: &str,
        isa: Isa,
        (m, n, k): (usize, usize, usize),
        threads: usize,
        bound: Bound,
    ) -> CaseInfo {
        CaseInfo {
            name,
            op: op.into(),
            dtype: dtype.into(),
            isa,
            m,
            n,
            k,
            sparsity: 0.0,
            threads,
            bound,
            reference: None,
        }
    }
}

/// Why a case did not give a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// This machine cannot run the case (no AMX, a forced ISA, ...): the
    /// runner reports the reason and goes on; not a failure.
    #[error("not available here: {0}")]
    Unavailable(#[from] Unsupported),
    /// The case does not apply to this machine's configuration (e.g. the
    /// driver routes its shape elsewhere): reported and skipped, not a failure.
    #[error("not applicable here: {0}")]
    NotApplicable(String),
    #[error(transparent)]
    Gemm(#[from] GemmError),
    #[error("{0}")]
    Failed(String),
}

impl From<AmxUnavailable> for BenchError {
    fn from(e: AmxUnavailable) -> Self {
        BenchError::Unavailable(e.into())
    }
}

/// One measured kernel configuration. Implement it to add a case; the
/// runner, the table, the JSON file and the criterion adapter in
/// `benches/common` need nothing else.
pub trait Case {
    /// The row's columns; cheap, callable before `prepare`.
    fn info(&self) -> CaseInfo;

    /// Builds the data outside the timed region and runs the case once to
    /// check it. [`BenchError::Unavailable`] when this machine cannot run it.
    fn prepare(&mut self) -> Result<(), BenchError>;

    /// One timed unit of work (after a successful `prepare`).
    fn run(&mut self) -> Result<(), BenchError>;

    /// The work one `run` does.
    fn work(&self) -> Work;

    /// The routine named by `info().reference`, timed like `run`.
    fn run_reference(&mut self) -> Result<(), BenchError> {
        Err(BenchError::Failed(format!("{} has no reference routine", self.info().name)))
    }

    /// Frees the data of `prepare` (the runner calls it after measuring).
    fn release(&mut self) {}
}

/// A titled group of cases: one block of the table.
pub struct Section {
    pub title: &'static str,
    pub cases: Vec<Box<dyn Case>>,
    /// Printed when the section has no case (before filtering).
    pub empty_note: &'static str,
}

/// How long and on how many threads: the quick or the full suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuiteConfig {
    /// Smaller shape lists and shorter timing.
    pub quick: bool,
    /// Threads for every case that can use them (the bounds are measured
    /// for 1 thread and for this many).
    pub threads: usize,
}

impl SuiteConfig {
    /// Least and most samples per case.
    fn sample_range(&self) -> (usize, usize) {
        if self.quick {
            (3, 15)
        } else {
            (5, 41)
        }
    }

    /// Time a case's samples should take together.
    fn case_budget(&self) -> Duration {
        Duration::from_millis(if self.quick { 300 } else { 1500 })
    }

    /// Shortest sample: faster runs are batched up to this.
    fn sample_time(&self) -> Duration {
        Duration::from_millis(if self.quick { 5 } else { 20 })
    }
}

/// Does `name` match one of `filters` (case-insensitive substrings)? No
/// filter matches everything.
pub fn matches(name: &str, filters: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    filters.is_empty() || filters.iter().any(|f| name.contains(&f.to_ascii_lowercase()))
}

/// The bounds for one thread count. A bound this machine cannot measure
/// (no AMX, no AVX-512) is `None`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundSet {
    pub threads: usize,
    /// Operations per second (2 per multiply-add).
    pub int8_ops: Option<f64>,
    pub bf16_ops: Option<f64>,
    /// Bytes per second.
    pub read_bytes: Option<f64>,
}

/// The machine's bounds for 1 thread and for the suite's thread count.
#[derive(Clone, Debug, PartialEq)]
pub struct Bounds {
    /// Increasing thread counts: `[1]` or `[1, N]`.
    pub sets: Vec<BoundSet>,
}

impl Bounds {
    /// Measures the TMUL peaks (register-resident TDP loops on every thread
    /// at once) and the streaming-read bandwidth over [`DRAM_SPAN`], for 1
    /// thread and for `plan.threads`; `step` is called before each
    /// measurement with what it measures.
    pub fn measure(plan: &SuiteConfig, mut step: impl FnMut(&str)) -> Result<Bounds, BenchError> {
        let mut counts = vec![1];
        if plan.threads > 1 {
            counts.push(plan.threads);
        }
        let mut sets = Vec::new();
        for threads in counts {
            let mut peak = |elem: ElemType| -> Result<Option<f64>, BenchError> {
                step(&format!("bound: {} TMUL peak, {threads} thread(s)", elem.name()));
                match tmul_peak_ops_threads(elem, threads) {
                    Ok(x) => Ok(Some(x)),
                    Err(GemmError::Unsupported { isa: Isa::Amx, .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            };
            let int8_ops = peak(ElemType::Int8(Int8Sign::SS))?;
            let bf16_ops = peak(ElemType::Bf16)?;
            step(&format!("bound: streaming read over 1 GiB, {threads} thread(s)"));
            let read_bytes = match ReadProbe::new(DRAM_SPAN, threads) {
                Ok(probe) => Some(probe.bandwidth(if plan.quick { 5 } else { 11 })),
                Err(_) => None,
            };
            sets.push(BoundSet { threads, int8_ops, bf16_ops, read_bytes });
        }
        Ok(Bounds { sets })
    }

    /// The set measured for `threads`.
    pub fn for_threads(&self, threads: usize) -> Option<&BoundSet> {
        self.sets.iter().find(|s| s.threads == threads)
    }

    /// The set of the most threads (the suite's thread count).
    pub fn widest(&self) -> &BoundSet {
        self.sets.last().expect("bounds hold at least the 1-thread set")
    }
}

/// The medians of one case: per `run`, and per `run_reference` if any.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub median: Duration,
    pub reference: Option<Duration>,
    pub samples: usize,
}

/// One row: a case, its timing, and its throughput against its bound.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    pub info: CaseInfo,
    /// Median time of one `run`.
    pub median: Duration,
    /// In `unit` ("GOP/s", "GB/s" or "kernel/s").
    pub throughput: f64,
    pub unit: &'static str,
    /// Percent of the bound; `None` without a bound or where it could not
    /// be measured (no AMX for a TMUL peak).
    pub pct_of_bound: Option<f64>,
    /// Median time of the reference routine, if the case has one.
    pub reference: Option<Duration>,
    pub samples: usize,
}

impl BenchResult {
    /// Relates a timing to the bound of `info` (for its thread count).
    pub fn new(info: CaseInfo, work: Work, timing: Timing, bounds: &Bounds) -> BenchResult {
        let per_s = match work {
            Work::Ops(x) | Work::Bytes(x) | Work::Kernels(x) => x / timing.median.as_secs_f64(),
        };
        let set = bounds.for_threads(info.threads);
        let pct_of_bound = match info.bound {
            Bound::TmulInt8 => set.and_then(|s| s.int8_ops).map(|b| 100.0 * per_s / b),
            Bound::TmulBf16 => set.and_then(|s| s.bf16_ops).map(|b| 100.0 * per_s / b),
            Bound::Read => set.and_then(|s| s.read_bytes).map(|b| 100.0 * per_s / b),
            Bound::Reference => timing.reference.map(|r| 100.0 * r.as_secs_f64() / timing.median.as_secs_f64()),
            Bound::None => None,
        };
        BenchResult {
            throughput: work.throughput(timing.median),
            unit: work.unit(),
            pct_of_bound,
            reference: timing.reference,
            samples: timing.samples,
            median: timing.median,
            info,
        }
    }

    /// Dense time / sparse time, for cases whose reference is the dense kernel.
    pub fn speedup_vs_dense(&self) -> Option<f64> {
        match (self.info.reference, self.reference) {
            (Some(Reference::Dense), Some(dense)) => Some(dense.as_secs_f64() / self.median.as_secs_f64()),
            _ => None,
        }
    }
}

/// Average time of one of `batch` back-to-back calls of `f`.
fn time_batch(batch: usize, mut f: impl FnMut() -> Result<(), BenchError>) -> Result<Duration, BenchError> {
    let t = Instant::now();
    for _ in 0..batch {
        f()?;
    }
    Ok(t.elapsed() / batch as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times a prepared case: a warm-up call, then samples of back-to-back
/// runs (batched up to the plan's sample time), as many as fit the plan's
/// budget within its range; the reference, if any, is sampled right after
/// each sample of the case. Medians.
pub fn time_case(case: &mut dyn Case, plan: &SuiteConfig) -> Result<Timing, BenchError> {
    let has_reference = case.info().reference.is_some();
    // Warm-up (and a first estimate) of each routine.
    let mut single = time_batch(1, || case.run())?.max(time_batch(1, || case.run())?);
    let mut single_ref = Duration::ZERO;
    if has_reference {
        time_batch(1, || case.run_reference())?;
        single_ref = time_batch(1, || case.run_reference())?;
    }
    single = single.max(Duration::from_nanos(1));
    let batch_of =
        |t: Duration| (plan.sample_time().as_secs_f64() / t.as_secs_f64().max(1e-9)).ceil().max(1.0) as usize;
    let (batch, batch_ref) = (batch_of(single), batch_of(single_ref.max(Duration::from_nanos(1))));
    let per_sample = single * batch as u32 + if has_reference { single_ref * batch_ref as u32 } else { Duration::ZERO };
    let (least, most) = plan.sample_range();
    let samples = ((plan.case_budget().as_secs_f64() / per_sample.as_secs_f64()) as usize).clamp(least, most) | 1;
    let (mut times, mut refs) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        times.push(time_batch(batch, || case.run())?);
        if has_reference {
            refs.push(time_batch(batch_ref, || case.run_reference())?);
        }
    }
    Ok(Timing { median: median(times), reference: has_reference.then(|| median(refs)), samples })
}

/// Prepares, times and releases one case and relates it to its bound.
pub fn run_case(case: &mut dyn Case, plan: &SuiteConfig, bounds: &Bounds) -> Result<BenchResult, BenchError> {
    let prepared = case.prepare();
    let result = prepared.and_then(|()| {
        let timing = time_case(case, plan)?;
        Ok(BenchResult::new(case.info(), case.work(), timing, bounds))
    });
    case.release();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_case_insensitive_substrings_and_none_matches_all() {
        assert!(matches("gemm/u8s8/amx/512x512x4096", &[]));
        assert!(matches("gemm/u8s8/amx/512x512x4096", &["AMX".into()]));
        assert!(matches("jit/bf16/amx", &["decode".into(), "jit".into()]));
        assert!(!matches("jit/bf16/amx", &["decode".into()]));
    }

    #[test]
    fn percent_of_bound_uses_the_set_of_the_case_threads() {
        let bounds = Bounds {
            sets: vec![
                BoundSet { threads: 1, int8_ops: Some(1e12), bf16_ops: Some(5e11), read_bytes: Some(1e10) },
                BoundSet { threads: 2, int8_ops: Some(2e12), bf16_ops: None, read_bytes: Some(1.5e10) },
            ],
        };
        let timing = Timing { median: Duration::from_millis(1), reference: None, samples: 3 };
        let info = |threads, bound| CaseInfo::dense("x".into(), "gemm", "u8s8", Isa::Amx, (1, 1, 1), threads, bound);
        let r = BenchResult::new(info(1, Bound::TmulInt8), Work::Ops(5e8), timing, &bounds);
        assert!((r.pct_of_bound.unwrap() - 50.0).abs() < 1e-9 && (r.throughput - 500.0).abs() < 1e-9);
        let r = BenchResult::new(info(2, Bound::TmulInt8), Work::Ops(5e8), timing, &bounds);
        assert!((r.pct_of_bound.unwrap() - 25.0).abs() < 1e-9);
        assert_eq!(BenchResult::new(info(2, Bound::TmulBf16), Work::Ops(5e8), timing, &bounds).pct_of_bound, None);
        let r = BenchResult::new(info(2, Bound::Read), Work::Bytes(7.5e6), timing, &bounds);
        assert!((r.pct_of_bound.unwrap() - 50.0).abs() < 1e-9 && r.unit == "GB/s");
        let mut i = info(1, Bound::Reference);
        i.reference = Some(Reference::KernelAlone);
        let t = Timing { reference: Some(Duration::from_micros(250)), ..timing };
        assert!((BenchResult::new(i, Work::Ops(1.0), t, &bounds).pct_of_bound.unwrap() - 25.0).abs() < 1e-9);
        assert_eq!(BenchResult::new(info(1, Bound::None), Work::Kernels(1.0), timing, &bounds).pct_of_bound, None);
    }
}
