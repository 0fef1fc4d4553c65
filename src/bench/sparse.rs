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

use rand::{Rng, SeedableRng};
use tilejit_kernels::pack::{BLayout, PackedB};
use tilejit_kernels::spec::{ElemType, Int8Sign};
use tilejit_sparse::{Bf16, Int8, PruneScope, Pruning};

use super::suite::{BenchError, Bound, Case, CaseInfo, Reference, SuiteConfig, Work, DRAM_SPAN};
use crate::gemm::{gemm_bf16, gemm_int8, GemmError, GemmOptions};
use crate::isa::{self, Isa};
use crate::sparse::{gemm_sparse_bf16, gemm_sparse_i8, SparseWeights, SPARSE_AMX_FROM_M, SPARSE_FROM};

/// The weight element type of a sparse case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseDtype {
    Bf16,
    Int8,
}

impl SparseDtype {
    fn name(self) -> &'static str {
        match self {
            Self::Bf16 => "bf16",
            Self::Int8 => "s8s8",
        }
    }

    fn elem_bytes(self) -> usize {
        match self {
            Self::Bf16 => 2,
            Self::Int8 => 1,
        }
    }
}

/// The sparsities and row counts of the sweep (issue 6).
pub const SPARSITIES: [f64; 7] = [0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95];
pub const MS: [usize; 5] = [1, 4, 16, 64, 512];

/// The sparse cases of the suite, in table order: the sweep over
/// [`SPARSITIES`] x [`MS`] on 4096 x 4096 for bf16 and int8, plus the three
/// shapes of the sparse issue (4096 x 4096, 14336 x 4096, 4096 x 14336) at
/// M = 1 and 64 for bf16. Quick: bf16, 1024 x 1024, M = 1 and 64, 0/50/90 %.
pub fn sparse_cases(plan: &SuiteConfig) -> Vec<Box<dyn Case>> {
    let mut out: Vec<Box<dyn Case>> = Vec::new();
    let mut push =
        |dtype, m, (n, k), s, span| out.push(Box::new(SparseVsDense::new(dtype, m, n, k, s, plan.threads, span)));
    if plan.quick {
        for m in [1, 64] {
            for s in [0.0, 0.5, 0.9] {
                push(SparseDtype::Bf16, m, (1024, 1024), s, DRAM_SPAN / 4);
            }
        }
        return out;
    }
    for dtype in [SparseDtype::Bf16, SparseDtype::Int8] {
        for m in MS {
            for s in SPARSITIES {
                push(dtype, m, (4096, 4096), s, DRAM_SPAN / 2);
            }
        }
    }
    for (n, k) in [(14336, 4096), (4096, 14336)] {
        for m in [1, 64] {
            for s in [0.0, 0.5, 0.7, 0.9] {
                push(SparseDtype::Bf16, m, (n, k), s, DRAM_SPAN / 2);
            }
        }
    }
    out
}

/// The sparse-or-dense dispatcher ([`SparseWeights`] + `gemm_sparse_*`)
/// against the dense GEMM on the same pruned matrix, both with weight copies
/// cycled through `span` bytes each (so neither runs from cache; the sparse
/// copies are smaller, so there are more of them), one copy per run.
pub struct SparseVsDense {
    dtype: SparseDtype,
    shape: (usize, usize, usize),
    sparsity: f64,
    threads: usize,
    span: usize,
    data: Option<Data>,
    next: usize,
    next_ref: usize,
}

enum Data {
    Bf16 { a: Vec<u16>, sparse: Vec<SparseWeights<Bf16>>, dense: Vec<PackedB>, c: Vec<f32> },
    Int8 { a: Vec<i8>, a_u8: Vec<u8>, sparse: Vec<SparseWeights<Int8>>, dense: Vec<PackedB>, c: Vec<i32> },
}

impl SparseVsDense {
    pub fn new(dtype: SparseDtype, m: usize, n: usize, k: usize, sparsity: f64, threads: usize, span: usize) -> Self {
        SparseVsDense { dtype, shape: (m, n, k), sparsity, threads, span, data: None, next: 0, next_ref: 0 }
    }

    fn opts(&self) -> GemmOptions {
        GemmOptions { threads: self.threads, ..GemmOptions::default() }
    }

    /// The ISA the dispatcher takes (the dense GEMM's below SPARSE_FROM).
    fn routed(&self) -> Isa {
        let m = self.shape.0;
        if let Ok(Some(isa)) = isa::forced() {
            return isa;
        }
        if self.sparsity < SPARSE_FROM {
            let elem = match self.dtype {
                SparseDtype::Bf16 => ElemType::Bf16,
                SparseDtype::Int8 => ElemType::Int8(Int8Sign::SS),
            };
            return crate::gemm::dispatch::choose(elem, m, false);
        }
        if m >= SPARSE_AMX_FROM_M && isa::availability(Isa::Amx).is_ok() {
            Isa::Amx
        } else {
            Isa::Avx512
        }
    }

    fn sparse_bytes(&self) -> usize {
        match &self.data {
            Some(Data::Bf16 { sparse, .. }) => sparse[0].stream_bytes(),
            Some(Data::Int8 { sparse, .. }) => sparse[0].stream_bytes(),
            None => 0,
        }
    }
}

fn copies(span: usize, bytes: usize) -> usize {
    span.div_ceil(bytes.max(1)).max(1)
}

impl Case for SparseVsDense {
    fn info(&self) -> CaseInfo {
        let (m, n, k) = self.shape;
        let op = if m == 1 { "sparse_gemv" } else { "sparse_gemm" };
        let isa = self.routed();
        let format = if self.sparsity < SPARSE_FROM { "dense" } else { "sparse" };
        let name = format!("{op}/{}/{format}-{isa}/s{:.2}/{m}x{n}x{k}", self.dtype.name(), self.sparsity);
        let bound = match (m <= 4, self.dtype) {
            (true, _) => Bound::Read,
            (false, SparseDtype::Bf16) => Bound::TmulBf16,
            (false, SparseDtype::Int8) => Bound::TmulInt8,
        };
        CaseInfo {
            sparsity: self.sparsity,
            reference: Some(Reference::Dense),
            ..CaseInfo::dense(name, op, self.dtype.name(), isa, self.shape, self.threads, bound)
        }
    }

    fn prepare(&mut self) -> Result<(), BenchError> {
        let (m, n, k) = self.shape;
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let prune = Pruning { sparsity: self.sparsity, scope: PruneScope::Matrix, seed: 17 };
        let dense_copies = copies(self.span, n * k * self.dtype.elem_bytes());
        let failed = |e: tilejit_sparse::SparseError| BenchError::Failed(e.to_string());
        self.data = Some(match self.dtype {
            SparseDtype::Bf16 => {
                let w: Vec<u16> =
                    (0..n * k).map(|_| tilejit_verify::f32_to_bf16(rng.random_range(-1.0f32..1.0))).collect();
                let w = prune.prune_bf16(&w, k, n).map_err(failed)?;
                let a = (0..m * k).map(|_| tilejit_verify::f32_to_bf16(rng.random_range(-1.0f32..1.0))).collect();
                let sparse = SparseWeights::bf16(&w, k, n)?;
                let packed = PackedB::pack_bf16(&w, k, n, n, BLayout::default()).map_err(GemmError::from)?;
                let sparse = vec![sparse.clone(); copies(self.span, sparse.stream_bytes())];
                Data::Bf16 { a, sparse, dense: vec![packed; dense_copies], c: vec![0.0; m * n] }
            }
            SparseDtype::Int8 => {
                let w: Vec<i8> = (0..n * k).map(|_| rng.random()).collect();
                let w = prune.prune_i8(&w, k, n).map_err(failed)?;
                let a: Vec<i8> = (0..m * k).map(|_| rng.random()).collect();
                let a_u8 = a.iter().map(|&v| v as u8).collect();
                let sparse = SparseWeights::i8(&w, k, n)?;
                let packed = PackedB::pack_s8(&w, k, n, n, BLayout::default()).map_err(GemmError::from)?;
                let sparse = vec![sparse.clone(); copies(self.span, sparse.stream_bytes())];
                Data::Int8 { a, a_u8, sparse, dense: vec![packed; dense_copies], c: vec![0; m * n] }
            }
        });
        self.run()?;
        self.run_reference()
    }

    fn run(&mut self) -> Result<(), BenchError> {
        let (m, n, k) = self.shape;
        let opts = self.opts();
        self.next += 1;
        match self.data.as_mut().expect("prepared") {
            Data::Bf16 { a, sparse, c, .. } => {
                gemm_sparse_bf16(m, a, k, &sparse[self.next % sparse.len()], c, n, false, &opts)?
            }
            Data::Int8 { a, sparse, c, .. } => {
                gemm_sparse_i8(m, a, k, &sparse[self.next % sparse.len()], c, n, false, &opts)?
            }
        }
        Ok(())
    }

    fn run_reference(&mut self) -> Result<(), BenchError> {
        let (m, n, k) = self.shape;
        let opts = self.opts();
        self.next_ref += 1;
        match self.data.as_mut().expect("prepared") {
            Data::Bf16 { a, dense, c, .. } => {
                gemm_bf16(m, a, k, &dense[self.next_ref % dense.len()], c, n, false, &opts)?
            }
            Data::Int8 { a_u8, dense, c, .. } => {
                let b = &dense[self.next_ref % dense.len()];
                gemm_int8(Int8Sign::SS, m, a_u8, k, b, c, n, false, &opts)?
            }
        }
        Ok(())
    }

    fn work(&self) -> Work {
        let (m, n, k) = self.shape;
        if m <= 4 {
            Work::Bytes(self.sparse_bytes() as f64)
        } else {
            Work::Ops(2.0 * (m * n * k) as f64)
        }
    }

    fn release(&mut self) {
        self.data = None;
    }
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
