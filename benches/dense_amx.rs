//! Dense AMX GEMM against the TMUL peak, and JIT compile time.
//!
//! `cargo bench --bench dense_amx` (add `-- --quick`, or set
//! `TILEJIT_BENCH_QUICK=1` for short criterion settings: benches/common).
//! Criterion reports Gelem/s where one element is one operation (2 per
//! multiply-add), so the GEMM and peak lines compare directly.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tilejit::bench::{measure_gemm, GemmFixture};
use tilejit::cpu::amx_ready;
use tilejit::gemm::GemmOptions;
use tilejit::kernels::dense_amx::DenseAmxKernel;
use tilejit::kernels::dense_amx::{Blocking, DenseAmxSpec};
use tilejit::kernels::peak::{TmulPeakKernel, TDPS_PER_ITERATION};
use tilejit::kernels::spec::{CInit, ElemType, Int8Sign};

const ELEMS: [ElemType; 2] = [ElemType::Int8(Int8Sign::SS), ElemType::Bf16];

fn amx_or_report() -> bool {
    match amx_ready() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("dense_amx benches SKIPPED: {e}");
            false
        }
    }
}

fn tmul_peak(c: &mut Criterion) {
    if !amx_or_report() {
        return;
    }
    let mut g = c.benchmark_group("tmul_peak");
    let iterations = 10_000u64;
    for elem in ELEMS {
        let kernel = TmulPeakKernel::generate(elem).unwrap();
        let operands = tilejit::bench::peak_operands(elem);
        g.throughput(Throughput::Elements(iterations * (TDPS_PER_ITERATION * kernel.ops_per_tdp()) as u64));
        // SAFETY: AMX permission was granted by amx_ready.
        g.bench_function(elem.name(), |b| b.iter(|| unsafe { kernel.run(iterations, &operands) }));
    }
    g.finish();
}

fn gemm(c: &mut Criterion) {
    if !amx_or_report() {
        return;
    }
    let (m, n, k) = (512, 512, 4096);
    let opts = GemmOptions::default();
    let mut g = c.benchmark_group("gemm_512x512x4096");
    g.sample_size(20);
    g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
    for elem in ELEMS {
        // The same random data as the tour's measurement.
        let mut fixture = GemmFixture::new(elem, m, n, k).unwrap();
        g.bench_function(elem.name(), |b| b.iter(|| fixture.run(&opts).unwrap()));
    }
    g.finish();
    // A one-line summary with the ratio, measured side by side.
    for elem in ELEMS {
        let peak = tilejit::bench::tmul_peak_ops(elem).unwrap();
        let r = measure_gemm(elem, m, n, k, &opts, 9).unwrap();
        eprintln!(
            "gemm {} {m}x{n}x{k}: {:.0} Gop/s = {:.1} % of TMUL peak {:.0} Gop/s",
            elem.name(),
            r.ops_per_s / 1e9,
            100.0 * r.ops_per_s / peak,
            peak / 1e9
        );
    }
}

fn jit_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("jit_compile");
    for elem in ELEMS {
        let spec = DenseAmxSpec::new(elem, Blocking::B2X2, CInit::Load);
        g.bench_function(spec.name(), |b| b.iter(|| DenseAmxKernel::generate(spec).unwrap()));
    }
    g.finish();
}

criterion_group! { name = benches; config = common::config(); targets = tmul_peak, gemm, jit_compile }
criterion_main!(benches);
