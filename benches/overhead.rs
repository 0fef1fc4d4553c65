//! What a call costs besides the arithmetic: JIT compile time (fresh
//! generation of the dense 2x2 AMX kernels and the Q8_0 decode kernel, no
//! cache) and dispatch overhead (a one-block 32 x 32 GEMM through
//! `gemm_int8` / `gemm_bf16`, next to the same cached kernel called
//! directly: `.../reference-kernel`). The cases are those of `tilejit bench`.
//!
//! `cargo bench --bench overhead`; quick: `TILEJIT_BENCH_QUICK=1` (see
//! benches/common).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use tilejit::bench::cases;

fn jit(c: &mut Criterion) {
    common::bench_cases(c, "overhead", cases::jit(&common::plan()));
}

fn dispatch(c: &mut Criterion) {
    common::bench_cases(c, "overhead", cases::dispatch(&common::plan()));
}

criterion_group! { name = benches; config = common::config(); targets = jit, dispatch }
criterion_main!(benches);
