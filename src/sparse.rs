//! Sparse GEMM over `tilejit_sparse` bitmap weights: `C[M,N] (+)= A[M,K] x
//! W`, with the dense GEMM's semantics and bits (bf16: TDPBF16PS with 16
//! pairs per instruction, the default `PackedB` layout; int8: s8 x s8,
//! wrapping i32). Paths:
//!
//! - AMX (`tilejit_sparse::amx`): each weight tile expanded once per call
//!   and row group (up to 80 rows), all of the group's row tiles run against
//!   it; threads take units of column panels;
//! - scalar: the weights unpacked to dense and the dense scalar path (the
//!   oracle), so the reference is literally the dense one.
//!
//! Which path runs: `opts.isa`, else `TILEJIT_ISA`, else the best
//! available.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tilejit_kernels::pack::{AlignedBytes, BLayout, PackedB};
use tilejit_sparse::amx::{
    pack_a, SparseAmxArgs, SparseAmxKernel, SparseAmxSpec, SparseKind, A_TILE_BYTES, MAX_ROWS, SCRATCH_BYTES,
};
use tilejit_sparse::{Element, SparseBf16, SparseI8, SparseMatrix, PANEL_COLS};

use crate::cpu::amx_ready;
use crate::gemm::cache::KernelCache;
use crate::gemm::{check_operands, gemm_bf16, gemm_int8, GemmError, GemmOptions, SharedC};
use crate::isa::{self, availability, Isa};
use tilejit_kernels::spec::Int8Sign;

/// Column panels per work unit.
const PANELS_PER_UNIT: usize = 4;

fn kernel(spec: SparseAmxSpec) -> Result<Arc<SparseAmxKernel>, GemmError> {
    static CACHE: KernelCache<SparseAmxSpec, SparseAmxKernel> = KernelCache::new();
    Ok(CACHE.get(spec, SparseAmxKernel::generate)?)
}

/// bf16 sparse GEMM: `c[i*ldc + j] (+)= sum_k a[i*lda + k] * W[k][j]` with
/// the bits of `gemm::gemm_bf16` on the same weights packed densely.
///
/// # Errors
/// Bad shapes (as `gemm_bf16`), zero threads, a forced ISA that cannot run.
#[allow(clippy::too_many_arguments)]
pub fn gemm_sparse_bf16(
    m: usize,
    a: &[u16],
    lda: usize,
    w: &SparseBf16,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    check_operands(m, w.n(), w.k(), (2 * a.len(), lda, 2), (4 * c.len(), ldc))?;
    match choose(opts)? {
        Isa::Amx => {
            let bytes = bf16_bytes(a);
            run_amx(SparseKind::Bf16, m, &bytes, lda, w, c.as_mut_ptr().cast(), ldc, accumulate, opts.threads)
        }
        isa => {
            let b = PackedB::pack_bf16(&w.to_dense_bf16(), w.k(), w.n(), w.n(), BLayout::default())?;
            gemm_bf16(m, a, lda, &b, c, ldc, accumulate, &GemmOptions { isa: Some(isa), ..*opts })
        }
    }
}

/// int8 sparse GEMM (A s8, W s8, wrapping i32), with the bits of
/// `gemm::gemm_int8(Int8Sign::SS, ..)` on the same weights packed densely.
///
/// # Errors
/// As [`gemm_sparse_bf16`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_sparse_i8(
    m: usize,
    a: &[i8],
    lda: usize,
    w: &SparseI8,
    c: &mut [i32],
    ldc: usize,
    accumulate: bool,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    check_operands(m, w.n(), w.k(), (a.len(), lda, 1), (4 * c.len(), ldc))?;
    let bytes: &[u8] = i8_bytes(a);
    match choose(opts)? {
        Isa::Amx => run_amx(SparseKind::Int8, m, bytes, lda, w, c.as_mut_ptr().cast(), ldc, accumulate, opts.threads),
        isa => {
            let b = PackedB::pack_s8(&w.to_dense_i8(), w.k(), w.n(), w.n(), BLayout::default())?;
            gemm_int8(Int8Sign::SS, m, bytes, lda, &b, c, ldc, accumulate, &GemmOptions { isa: Some(isa), ..*opts })
        }
    }
}

fn choose(opts: &GemmOptions) -> Result<Isa, GemmError> {
    if opts.threads == 0 {
        return Err(GemmError::Threads);
    }
    let isa = match opts.isa {
        Some(isa) => isa,
        None => isa::select()?,
    };
    availability(isa).map_err(|reason| GemmError::IsaUnavailable { isa, reason })?;
    Ok(isa)
}

fn bf16_bytes(a: &[u16]) -> Vec<u8> {
    a.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn i8_bytes(a: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size and alignment.
    unsafe { std::slice::from_raw_parts(a.as_ptr().cast::<u8>(), a.len()) }
}

/// The AMX path. `a` holds `m` rows at `lda` elements; `c` has been checked
/// for `m` rows of `n` 4-byte elements at `ldc`.
#[allow(clippy::too_many_arguments)]
fn run_amx<E: Element>(
    kind: SparseKind,
    m: usize,
    a: &[u8],
    lda: usize,
    w: &SparseMatrix<E>,
    c: *mut u8,
    ldc: usize,
    accumulate: bool,
    threads: usize,
) -> Result<(), GemmError> {
    amx_ready()?;
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
        groups.push((row0, rows, packed, kernel(spec(PANEL_COLS))?, kernel(spec(tail_cols))?));
    }
    let units = panels.div_ceil(PANELS_PER_UNIT);
    let threads = threads.min(units).max(1);
    let next = AtomicUsize::new(0);
    let c_base = &SharedC(c);
    crate::threads::run_parallel(threads, |_| {
        let masks = w.masks().as_ptr().cast::<u8>();
        let values = w.values_with_slack().as_ptr().cast::<u8>();
        let mut scratch = AlignedBytes::zeroed(SCRATCH_BYTES);
        loop {
            let u = next.fetch_add(1, Ordering::Relaxed);
            if u * PANELS_PER_UNIT >= panels {
                return Ok(());
            }
            let p0 = u * PANELS_PER_UNIT;
            let p1 = (p0 + PANELS_PER_UNIT).min(panels);
            for (row0, rows, packed, full, tail) in &groups {
                // Full panels in one call, the last panel of N in its own.
                let runs = if p1 == panels {
                    [(p0, p1 - 1, full), (p1 - 1, p1, tail)]
                } else {
                    [(p0, p1, full), (p1, p1, full)]
                };
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
                    unsafe { kernel.run(&args) };
                }
            }
        }
    })
}
