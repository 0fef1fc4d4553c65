//! The sparse-vs-dense section of `tilejit bench` and of
//! `benches/sparse_dense.rs`: the one place sparse cases are registered.
//!
//! # Adding a sparse case
//!
//! Implement [`Case`] for it and return it from [`sparse_cases`]; nothing
//! else changes (the runner, the table, the JSON file, `--plot` and the
//! criterion bench all take the list from here). A sparse case:
//!
//! - fills [`CaseInfo`] with its `sparsity` (fraction of zero weights,
//!   0 < s < 1), its `op` (e.g. "sparse_gemm" or "sparse_gemv"), `dtype`,
//!   `isa`, M, N, K and `threads`, and a name that is unique across
//!   sparsities, e.g. `sparse_gemm/bf16/amx/s0.75/128x4096x4096`;
//! - sets `reference: Some(Reference::Dense)` and implements
//!   [`Case::run_reference`] as the dense kernel on the *same* pruned
//!   matrix (the TMUL is faster on zero tiles, so a dense run on other
//!   data would not be the same baseline). The runner times the two
//!   interleaved, and `--plot` draws dense time / sparse time against
//!   sparsity, one line per dtype and M, next to the ideal bytes ratio;
//! - picks its bound like the dense cases: [`Bound::TmulBf16`] /
//!   [`Bound::TmulInt8`] with [`Work::Ops`] counting the *dense*
//!   operations (2 M N K, so that the percentages compare with the dense
//!   rows), or [`Bound::Read`] with [`Work::Bytes`] counting the bytes as
//!   stored (values, masks and offsets) for decode shapes;
//! - builds its data in [`Case::prepare`] (return
//!   [`BenchError::Unavailable`] where the machine cannot run it) and frees
//!   them in [`Case::release`].
//!
//! [`Bound::TmulBf16`]: super::suite::Bound::TmulBf16
//! [`Bound::TmulInt8`]: super::suite::Bound::TmulInt8
//! [`Bound::Read`]: super::suite::Bound::Read
//! [`Work::Ops`]: super::suite::Work::Ops
//! [`Work::Bytes`]: super::suite::Work::Bytes
//! [`BenchError::Unavailable`]: super::suite::BenchError::Unavailable
//! [`CaseInfo`]: super::suite::CaseInfo

use super::suite::{Case, Plan};

/// The sparse cases of the suite, in table order. Empty: no sparse kernel
/// exists yet (`tilejit-sparse` has the format and pruning only), so the
/// section reports that it has no case and `--plot` that it has nothing to
/// draw.
pub fn sparse_cases(_plan: &Plan) -> Vec<Box<dyn Case>> {
    Vec::new()
}

/// The speedup the stored bytes allow: dense bytes over sparse bytes, with
/// one mask bit per element (bf16: 1/16 of the dense bytes; int8: 1/8).
pub fn ideal_speedup(elem_bytes: usize, sparsity: f64) -> f64 {
    1.0 / ((1.0 - sparsity) + 1.0 / (8.0 * elem_bytes as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ideal_speedup_is_the_bytes_ratio() {
        assert!((ideal_speedup(2, 0.0) - 16.0 / 17.0).abs() < 1e-12);
        assert!((ideal_speedup(2, 0.9) - 1.0 / (0.1 + 1.0 / 16.0)).abs() < 1e-12);
        assert!((ideal_speedup(1, 0.5) - 1.0 / 0.625).abs() < 1e-12);
    }
}
