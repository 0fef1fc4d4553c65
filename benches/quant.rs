//! Quantized GGUF formats (Q8_0, Q4_0, Q4_1): decode (M = 1, weights cycled
//! from DRAM, GGUF bytes per second) and prefill (every `PrefillStrategy`,
//! M = 128 and 512; Gelem/s = GOP/s). The cases are those of `tilejit bench`.
//!
//! `cargo bench --bench quant`; quick: `TILEJIT_BENCH_QUICK=1` (see
//! benches/common).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use tilejit::bench::cases;

fn decode(c: &mut Criterion) {
    common::bench_cases(c, "quant", cases::decode(&common::plan()));
}

fn prefill(c: &mut Criterion) {
    common::bench_cases(c, "quant", cases::prefill(&common::plan()));
}

criterion_group! { name = benches; config = common::config(); targets = decode, prefill }
criterion_main!(benches);
