//! Sparse against dense: every case of `tilejit::bench::sparse::sparse_cases`
//! (the one registry of sparse cases, shared with `tilejit bench`), each
//! next to its dense reference on the same pruned matrix
//! (`.../reference-dense`). The registry is empty until the sparse kernels
//! exist; this bench then says so and measures nothing. Adding a case there
//! adds it here.
//!
//! `cargo bench --bench sparse_dense`; quick: `TILEJIT_BENCH_QUICK=1` (see
//! benches/common).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use tilejit::bench::sparse::sparse_cases;

fn sparse_vs_dense(c: &mut Criterion) {
    let cases = sparse_cases(&common::plan());
    if cases.is_empty() {
        eprintln!("sparse_dense: no sparse cases registered (tilejit::bench::sparse::sparse_cases is empty); nothing to measure");
        return;
    }
    common::bench_cases(c, "sparse_vs_dense", cases);
}

criterion_group! { name = benches; config = common::config(); targets = sparse_vs_dense }
criterion_main!(benches);
