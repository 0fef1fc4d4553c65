//! Dense GEMM on every ISA path: AMX, AVX-512 and scalar (a small shape:
//! the scalar model is slow), u8s8 and bf16, B packed once. The cases are
//! those of `tilejit bench` (`tilejit::bench::cases::dense_gemm`).
//!
//! `cargo bench --bench dense_isa`; quick: `TILEJIT_BENCH_QUICK=1` (see
//! benches/common). Gelem/s = GOP/s.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use tilejit::bench::cases;

fn dense_isa(c: &mut Criterion) {
    common::bench_cases(c, "dense_isa", cases::dense_gemm(&common::plan()));
}

criterion_group! { name = benches; config = common::config(); targets = dense_isa }
criterion_main!(benches);
