//! Sparse GEMM over `tilejit_sparse` bitmap weights: `C[M,N] (+)= A[M,K] x
//! W`, with the dense GEMM's semantics and bits (bf16: TDPBF16PS with 16
//! pairs per instruction, the default `PackedB` layout; int8: s8 x s8,
//! wrapping i32).
//!
//! [`SparseWeights`] decides once, when packed, whether the matrix is worth
//! storing sparse ([`SPARSE_FROM`]); each call then picks the path:
//!
//! | weights | M | path |
//! |---|---|---|
//! | dense (sparsity below [`SPARSE_FROM`]) | any | the dense GEMM (`gemm::gemm_bf16` / `gemm_int8`) |
//! | sparse | below [`SPARSE_AMX_FROM_M`] (5) | AVX-512 (`tilejit_sparse::avx512`): expand + the exact FMA chains / VPDPBUSD, 4 rows per call, threads over column panels |
//! | sparse | from [`SPARSE_AMX_FROM_M`] | AMX (`tilejit_sparse::amx`): each weight tile expanded once per call and row group (80 rows), every row tile runs against it |
//! | any | any, `Isa::Scalar` forced | the dense oracle path on the unpacked weights |
//!
//! `opts.isa` (or `TILEJIT_ISA`) forces the ISA of the sparse path.

use std::sync::Arc;

use tilejit_kernels::pack::{AlignedBytes, BLayout, PackedB};
use tilejit_kernels::spec::{CInit, Int8Sign};
use tilejit_sparse::amx::{
    pack_a, SparseAmxArgs, SparseAmxKernel, SparseAmxSpec, SparseKind, A_TILE_BYTES, MAX_ROWS, SCRATCH_BYTES,
};
use tilejit_sparse::avx512::{self as sparse_avx512, PreparedA, SparseAvx512Args};
use tilejit_sparse::{Bf16, Element, Int8, SparseMatrix, PANEL_COLS};

use crate::cpu::amx_ready;
use crate::emulate::{Execution, Executor};
use crate::gemm::dispatch::by_rows;
use crate::gemm::{
    bytes, check_operands, gemm_bf16, gemm_int8, resolve_isa, GemmError, GemmOptions, ShapeError, SharedC,
};
use crate::isa::{Isa, Op};
use tilejit_kernels::cache::KernelCache;
use tilejit_verify::emu::Region;

/// Sparsity (fraction of zero weights) from which [`SparseWeights`] stores
/// the bitmap format. Measured (`tilejit bench --filter sparse`,
/// BENCHMARKS.md "Sparse against dense", dev, 1 thread): at 50 % the sparse
/// path is at least as fast as dense for every M (0.99x for bf16 at M =
/// 512, 1.25-2.17x elsewhere); the format's own bytes, (1 - s) + 1/16 of
/// dense, only pay from ~10 % at M = 1 and later for compute-bound M. 30 %
/// keeps dense below the range where sparse could lose; below it the dense
/// layout is kept and the dense GEMM runs, so dense matrices lose nothing.
pub const SPARSE_FROM: f64 = 0.3;

/// Rows from which the sparse AMX kernel beats the AVX-512 one (which
/// streams the weights once per 4 rows). dev, 1 thread, 4096 x 4096 bf16,
/// weights cycled through 256 MiB, 2026-11-26, us per call (AVX-512 / AMX):
///
/// | M | 50 % sparse | 90 % sparse |
/// |---|---|---|
/// | 2 | 1318 / 2105 | 971 / 1323 |
/// | 4 | 1885 / 2192 | 1330 / 1351 |
/// | 6 | 3198 / 2070 | 2431 / 1408 |
/// | 8 | 3780 / 2235 | 2715 / 1410 |
/// | 16 | 6588 / 2362 | 5302 / 1318 |
///
/// (5 rows are two AVX-512 calls, 4 + 1.)
pub const SPARSE_AMX_FROM_M: usize = 5;

/// Column panels per work unit.
const PANELS_PER_UNIT: usize = 4;

fn amx_kernel(spec: SparseAmxSpec) -> Result<Arc<SparseAmxKernel>, GemmError> {
    static CACHE: KernelCache<SparseAmxSpec, SparseAmxKernel> = KernelCache::new();
    Ok(CACHE.get(spec, SparseAmxKernel::generate)?)
}

/// A weight matrix `B[K][N]` for the sparse-or-dense dispatch: the bitmap
/// format when its sparsity reaches [`SPARSE_FROM`], the dense `PackedB`
/// otherwise (int8 keeps the column sums the AVX-512 kernel needs).
#[derive(Clone)]
pub struct SparseWeights<E: Element> {
    k: usize,
    n: usize,
    sparsity: f64,
    repr: Repr<E>,
}

#[derive(Clone)]
enum Repr<E: Element> {
    Dense(PackedB),
    Sparse { matrix: SparseMatrix<E>, col_bias: Vec<i32> },
}

impl<E: Element> SparseWeights<E> {
    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Fraction of zero weights (by bit pattern: +0.0 only for bf16).
    pub fn sparsity(&self) -> f64 {
        self.sparsity
    }

    /// Whether the bitmap format is stored (else the dense layout).
    pub fn is_sparse(&self) -> bool {
        matches!(self.repr, Repr::Sparse { .. })
    }

    /// The bitmap matrix, if stored.
    pub fn matrix(&self) -> Option<&SparseMatrix<E>> {
        match &self.repr {
            Repr::Sparse { matrix, .. } => Some(matrix),
            Repr::Dense(_) => None,
        }
    }

    /// Bytes a call streams: the bitmap stream, or the dense panels.
    pub fn stream_bytes(&self) -> usize {
        match &self.repr {
            Repr::Sparse { matrix, .. } => matrix.stream_bytes(),
            Repr::Dense(b) => b.as_bytes().len(),
        }
    }
}

impl SparseWeights<Bf16> {
    /// Packs bf16 `b` (K x N, row-major bit patterns), sparse or dense by
    /// [`SPARSE_FROM`].
    ///
    /// # Errors
    /// A zero dimension, a wrong length or a size overflow.
    pub fn bf16(b: &[u16], k: usize, n: usize) -> Result<Self, GemmError> {
        let sparsity = zero_fraction(b.iter().map(|&v| v == 0), k, n, b.len())?;
        if sparsity >= SPARSE_FROM {
            Ok(Self::from_sparse_bf16(SparseMatrix::from_dense_bf16(b, k, n)?))
        } else {
            let dense = PackedB::pack_bf16(b, k, n, n, BLayout::default())?;
            Ok(SparseWeights { k, n, sparsity, repr: Repr::Dense(dense) })
        }
    }

    /// The bitmap format, whatever its sparsity (for experiments).
    pub fn from_sparse_bf16(matrix: SparseMatrix<Bf16>) -> Self {
        let (k, n) = (matrix.k(), matrix.n());
        SparseWeights {
            k,
            n,
            sparsity: 1.0 - nnz_fraction(&matrix),
            repr: Repr::Sparse { matrix, col_bias: Vec::new() },
        }
    }
}

impl SparseWeights<Int8> {
    /// Packs s8 `b` (K x N, row-major), sparse or dense by [`SPARSE_FROM`].
    ///
    /// # Errors
    /// As [`SparseWeights::bf16`].
    pub fn i8(b: &[i8], k: usize, n: usize) -> Result<Self, GemmError> {
        let sparsity = zero_fraction(b.iter().map(|&v| v == 0), k, n, b.len())?;
        if sparsity >= SPARSE_FROM {
            Ok(Self::from_sparse_i8(SparseMatrix::from_dense_i8(b, k, n)?))
        } else {
            let dense = PackedB::pack_s8(b, k, n, n, BLayout::default())?;
            Ok(SparseWeights { k, n, sparsity, repr: Repr::Dense(dense) })
        }
    }

    /// The bitmap format, whatever its sparsity (for experiments).
    pub fn from_sparse_i8(matrix: SparseMatrix<Int8>) -> Self {
        let (k, n) = (matrix.k(), matrix.n());
        let col_bias = sparse_avx512::int8_col_bias(&matrix);
        SparseWeights { k, n, sparsity: 1.0 - nnz_fraction(&matrix), repr: Repr::Sparse { matrix, col_bias } }
    }
}

fn zero_fraction(zeros: impl Iterator<Item = bool>, k: usize, n: usize, len: usize) -> Result<f64, GemmError> {
    if k == 0 || n == 0 || k.checked_mul(n) != Some(len) {
        return Err(ShapeError::Weights { len, k, n }.into());
    }
    Ok(zeros.filter(|&z| z).count() as f64 / len as f64)
}

fn nnz_fraction<E: Element>(m: &SparseMatrix<E>) -> f64 {
    m.nnz() as f64 / (m.k() * m.n()) as f64
}

/// bf16 GEMM over [`SparseWeights`]:
/// `c[i*ldc + j] (+)= sum_k a[i*lda + k] * W[k][j]`, with the bits of `gemm::gemm_bf16` on the same weights
/// packed densely, on whichever path the module table picks.
///
/// # Errors
/// Bad shapes (as `gemm_bf16`), zero threads, a forced ISA that cannot run.
#[allow(clippy::too_many_arguments)]
pub fn gemm_sparse_bf16(
    m: usize,
    a: &[u16],
    lda: usize,
    w: &SparseWeights<Bf16>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    check_operands(m, w.n, w.k, (a.len(), lda), (c.len(), ldc))?;
    // Weights kept dense take the dense path and its own ISA choice.
    let matrix = match &w.repr {
        Repr::Dense(b) => return gemm_bf16(m, a, lda, b, c, ldc, accumulate, opts),
        Repr::Sparse { matrix, .. } => matrix,
    };
    let (isa, execution) = choose(opts, m, Op::SparseBf16)?;
    let out = Out { c: c.as_mut_ptr().cast(), ldc, m, n: w.n, accumulate, threads: opts.threads, execution };
    match isa {
        Isa::Amx => run_amx(SparseKind::Bf16, bytes(a), lda, matrix, out),
        Isa::Avx512 => {
            let prepared = PreparedA::bf16(m, a, lda, w.k)?;
            run_avx512(&prepared, matrix, &[], out)
        }
        Isa::Scalar => {
            let b = PackedB::pack_bf16(&matrix.to_dense_bf16(), w.k, w.n, w.n, BLayout::default())?;
            gemm_bf16(m, a, lda, &b, c, ldc, accumulate, &GemmOptions { isa: Some(Isa::Scalar), ..*opts })
        }
    }
}

/// int8 GEMM over [`SparseWeights`] (A s8, W s8, wrapping i32), with the
/// bits of `gemm::gemm_int8(Int8Sign::SS, ..)` on the same weights.
///
/// # Errors
/// As [`gemm_sparse_bf16`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_sparse_i8(
    m: usize,
    a: &[i8],
    lda: usize,
    w: &SparseWeights<Int8>,
    c: &mut [i32],
    ldc: usize,
    accumulate: bool,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    check_operands(m, w.n, w.k, (a.len(), lda), (c.len(), ldc))?;
    let a_bytes = bytes(a);
    let (matrix, col_bias) = match &w.repr {
        Repr::Dense(b) => return gemm_int8(Int8Sign::SS, m, a_bytes, lda, b, c, ldc, accumulate, opts),
        Repr::Sparse { matrix, col_bias } => (matrix, col_bias),
    };
    let (isa, execution) = choose(opts, m, Op::SparseInt8)?;
    let out = Out { c: c.as_mut_ptr().cast(), ldc, m, n: w.n, accumulate, threads: opts.threads, execution };
    match isa {
        Isa::Amx => run_amx(SparseKind::Int8, a_bytes, lda, matrix, out),
        Isa::Avx512 => {
            let prepared = PreparedA::i8(m, a, lda, w.k)?;
            run_avx512(&prepared, matrix, col_bias, out)
        }
        Isa::Scalar => {
            let b = PackedB::pack_s8(&matrix.to_dense_i8(), w.k, w.n, w.n, BLayout::default())?;
            let scalar = GemmOptions { isa: Some(Isa::Scalar), ..*opts };
            gemm_int8(Int8Sign::SS, m, a_bytes, lda, &b, c, ldc, accumulate, &scalar)
        }
    }
}

/// The ISA of the sparse path for `m` rows, and how it runs.
fn choose(opts: &GemmOptions, m: usize, op: Op) -> Result<(Isa, Execution), GemmError> {
    if opts.threads == 0 {
        return Err(GemmError::Threads);
    }
    resolve_isa(opts, op, || by_rows(m, SPARSE_AMX_FROM_M, op))
}

/// The output side of a sparse call: C (checked for `m` rows of `n`
/// 4-byte elements at `ldc`) and how to run.
#[derive(Clone, Copy)]
struct Out {
    c: *mut u8,
    ldc: usize,
    m: usize,
    n: usize,
    accumulate: bool,
    threads: usize,
    execution: Execution,
}

impl Out {
    /// The executor with the matrix and C registered (for emulation).
    fn executor<E: Element>(&self, w: &SparseMatrix<E>) -> Executor {
        let (masks, values, offsets) = (w.masks(), w.values_with_slack(), w.offsets());
        Executor::new(self.execution)
            .input("weight masks", masks.as_ptr().cast(), std::mem::size_of_val(masks))
            .input("weight values", values.as_ptr().cast(), std::mem::size_of_val(values))
            .input("weight tile offsets", offsets.as_ptr().cast(), std::mem::size_of_val(offsets))
            .output("C", self.c, ((self.m - 1) * self.ldc + self.n) * 4)
    }
}

/// The AVX-512 path: row groups of up to 4 per kernel call, threads take
/// units of column panels.
fn run_avx512<E: Element>(a: &PreparedA, w: &SparseMatrix<E>, col_bias: &[i32], out: Out) -> Result<(), GemmError> {
    let Out { c, ldc, accumulate, threads, .. } = out;
    let exec = out.executor(w).input("A (prepared)", a.as_bytes().as_ptr(), a.as_bytes().len()).input(
        "column bias",
        col_bias.as_ptr().cast(),
        std::mem::size_of_val(col_bias),
    );
    let m = a.m();
    let c_init = if accumulate { CInit::Load } else { CInit::Zero };
    let mut calls = Vec::new();
    for row0 in (0..m).step_by(sparse_avx512::MAX_ROWS) {
        let rows = sparse_avx512::MAX_ROWS.min(m - row0);
        calls.push((row0, sparse_avx512::kernel_for(w, rows, c_init)?));
    }
    let panels = w.panels();
    // More threads than panels have nothing to do (and 4 * threads must not
    // overflow for any thread count).
    let threads = threads.min(panels).max(1);
    // A late thread must not hold up a ~100 us call: 4 units per thread.
    let unit = if threads <= 1 { panels } else { panels.div_ceil(4 * threads).max(1) };
    let c_base = &SharedC(c);
    crate::threads::run_units(
        threads,
        panels.div_ceil(unit),
        || (),
        |_, u| {
            let (p0, p1) = (u * unit, ((u + 1) * unit).min(panels));
            for (row0, kernel) in &calls {
                let args = SparseAvx512Args {
                    a: a.row_ptr(*row0),
                    lda: a.row_bytes(),
                    // SAFETY (pointer arithmetic): row0 < m, inside the checked C.
                    c: unsafe { c_base.0.add(4 * row0 * ldc) },
                    ldc: 4 * ldc,
                    col_bias: if col_bias.is_empty() { std::ptr::null() } else { col_bias.as_ptr() },
                    first_panel: p0,
                    panel_count: p1 - p0,
                    ..kernel.matrix_args(w)?
                };
                // SAFETY: kernel_for generated the kernel for this matrix's kind
                // and shape after checking the CPU; A was prepared for all m rows;
                // C holds rows row0.. (checked) and this unit's panels are written
                // by this thread only; col_bias has panels * 16 entries
                // (int8_col_bias) or is null for bf16.
                unsafe { exec.run(kernel.jit_code(), &args, Vec::new)? };
            }
            Ok::<(), GemmError>(())
        },
    )
}

/// The AMX path. `a` holds `out.m` rows at `lda` elements.
fn run_amx<E: Element>(kind: SparseKind, a: &[u8], lda: usize, w: &SparseMatrix<E>, out: Out) -> Result<(), GemmError> {
    let Out { c, ldc, m, accumulate, threads, execution, .. } = out;
    if execution == Execution::Native {
        amx_ready()?;
    }
    let exec = out.executor(w);
    let (n, k) = (w.n(), w.k());
    let esize = E::VALUE_BYTES;
    let (panels, k_tiles) = (w.panels(), w.k_tiles());
    let tail_cols = n - (panels - 1) * PANEL_COLS;
    // Row groups of up to MAX_ROWS rows, each with its packed A and kernels
    // for the full panels and the last (possibly partial) one.
    let mut groups = Vec::new();
    for row0 in (0..m).step_by(MAX_ROWS) {
        let rows = MAX_ROWS.min(m - row0);
        let packed = pack_a(&a[row0 * lda * esize..], rows, k, lda, esize);
        let spec = |cols: usize| SparseAmxSpec { kind, rows: rows as u8, cols: cols as u8, accumulate };
        groups.push((row0, rows, packed, amx_kernel(spec(PANEL_COLS))?, amx_kernel(spec(tail_cols))?));
    }
    let units = panels.div_ceil(PANELS_PER_UNIT);
    let c_base = &SharedC(c);
    let scratch = || AlignedBytes::zeroed(SCRATCH_BYTES);
    crate::threads::run_units(threads, units, scratch, |scratch, u| {
        let (masks, values) = (w.masks().as_ptr().cast::<u8>(), w.values_with_slack().as_ptr().cast::<u8>());
        let p0 = u * PANELS_PER_UNIT;
        let p1 = (p0 + PANELS_PER_UNIT).min(panels);
        for (row0, rows, packed, full, tail) in &groups {
            // Full panels in one call, the last panel of N in its own.
            let runs =
                if p1 == panels { [(p0, p1 - 1, full), (p1 - 1, p1, tail)] } else { [(p0, p1, full), (p1, p1, full)] };
            for (first, end, kernel) in runs {
                if end <= first {
                    continue;
                }
                let tile = w.tile_index(first, 0).expect("panel in range");
                let args = SparseAmxArgs {
                    a: packed.as_ptr(),
                    a_step: rows.div_ceil(16) * A_TILE_BYTES,
                    // SAFETY (pointer arithmetic): tile < tiles and its value
                    // offset <= nnz, inside the arrays.
                    masks: unsafe { masks.add(tile * 16 * std::mem::size_of::<E::Mask>()) },
                    values: unsafe { values.add(w.offsets()[tile] as usize * esize) },
                    // SAFETY (pointer arithmetic): row0 < m, first * 16 < n.
                    c: unsafe { c_base.0.add(4 * (row0 * ldc + first * PANEL_COLS)) },
                    ldc: 4 * ldc,
                    k_tiles,
                    panels: end - first,
                    scratch: scratch.as_mut_slice().as_mut_ptr(),
                };
                // SAFETY: AMX permission granted (amx_ready). The kernel
                // reads this group's packed A (rows x k_tiles tiles), the
                // masks and values of panels first..end (the value stream
                // has its 64 bytes of slack), writes rows row0..row0+rows of
                // C in the columns of those panels (the last one only to N,
                // through its column count); no other thread writes them.
                let own = || vec![Region::read("A (packed)", packed), Region::write("scratch", scratch.as_mut_slice())];
                unsafe { exec.run(kernel.jit_code(), &args, own)? };
            }
        }
        Ok(())
    })
}
