//! What the criterion benches share: the quick mode, the thread count, and
//! an adapter that benches any `tilejit::bench::suite::Case` (the cases of
//! `tilejit bench`), so the CLI and criterion measure the same code on the
//! same data.
//!
//! Quick mode: `TILEJIT_BENCH_QUICK=1 cargo bench` takes the quick case
//! lists of `tilejit bench --quick` and short criterion settings (10
//! samples, 0.3 s warm-up, 1 s measurement per bench). Criterion's own
//! `-- --quick` only shortens the statistics, not the case lists; both can
//! be combined. `TILEJIT_BENCH_THREADS=N` sets the cases' threads (default 1).

#![allow(dead_code)] // each bench binary uses part of this module

use std::time::Duration;

use criterion::{Criterion, Throughput};
use tilejit::bench::suite::{BenchError, Case, SuiteConfig, Work};

/// `TILEJIT_BENCH_QUICK` is set to something other than "" or "0".
pub fn quick() -> bool {
    std::env::var("TILEJIT_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The suite plan of this run.
pub fn plan() -> SuiteConfig {
    let threads = std::env::var("TILEJIT_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1usize);
    SuiteConfig { quick: quick(), threads: threads.max(1) }
}

/// Criterion's settings: its defaults, or short ones in quick mode.
pub fn config() -> Criterion {
    let c = Criterion::default();
    if quick() {
        c.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1))
    } else {
        c
    }
}

fn throughput(work: Work) -> Throughput {
    match work {
        // Criterion's Gelem/s is then GOP/s (2 operations per multiply-add).
        Work::Ops(x) => Throughput::Elements(x as u64),
        Work::Bytes(x) => Throughput::Bytes(x as u64),
        Work::Kernels(x) => Throughput::Elements(x as u64),
    }
}

/// Benches every case in criterion group `group`: `run` as the case's
/// name, and its reference routine (if any) as `<name>/reference-<what>`.
/// Cases this machine cannot run are reported and skipped.
pub fn bench_cases(c: &mut Criterion, group: &str, cases: Vec<Box<dyn Case>>) {
    let mut g = c.benchmark_group(group);
    // Criterion's fewest samples: a prefill case can take 0.5 s per run.
    g.sample_size(10);
    for mut case in cases {
        let info = case.info();
        match case.prepare() {
            Ok(()) => {}
            Err(BenchError::Unavailable(reason)) => {
                eprintln!("{group}/{} SKIPPED: {reason}", info.name);
                continue;
            }
            Err(e) => panic!("{}: {e}", info.name),
        }
        g.throughput(throughput(case.work()));
        g.bench_function(&info.name, |b| b.iter(|| case.run().expect("checked by prepare")));
        if let Some(what) = info.reference {
            g.bench_function(format!("{}/reference-{}", info.name, what.name()), |b| {
                b.iter(|| case.run_reference().expect("checked by prepare"))
            });
        }
        case.release();
    }
    g.finish();
}
