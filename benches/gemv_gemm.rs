//! GEMV against GEMM on the same 4096 x 4096 weights, cycled from DRAM:
//! time per call for M = 1 (decode), 4, 16 and 64 rows through the
//! dispatcher (AVX-512 below the calibrated crossover, AMX from it). The
//! throughput is weight bytes per second, so the M = 1 line reads against
//! the streaming-read bound and the others show how far one pass over the
//! weights stretches.
//!
//! `cargo bench --bench gemv_gemm`; quick (M = 1 and 16):
//! `TILEJIT_BENCH_QUICK=1` (see benches/common).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use tilejit::bench::cases::{WeightStream, ELEMS};
use tilejit::bench::suite::{Case, DRAM_SPAN};

fn gemv_vs_gemm(c: &mut Criterion) {
    let plan = common::plan();
    let ms: &[usize] = if plan.quick { &[1, 16] } else { &[1, 4, 16, 64] };
    let mut cases: Vec<Box<dyn Case>> = Vec::new();
    for elem in ELEMS {
        for &m in ms {
            cases.push(Box::new(WeightStream::new(elem, (m, 4096, 4096), plan.threads, DRAM_SPAN)));
        }
    }
    common::bench_cases(c, "gemv_vs_gemm", cases);
}

criterion_group! { name = benches; config = common::config(); targets = gemv_vs_gemm }
criterion_main!(benches);
