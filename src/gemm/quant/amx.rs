//! Quantized prefill on AMX: `C[i][j] = dot(A row i, W row j)` over GGUF
//! block weights in the panel layout ([`PackedQuant`], GGUF size; each
//! block widened to an s8 tile in the kernel), bit-identical to the
//! oracle's `gemm_quant` (one TDP per 32-wide block, the f32 epilogue in
//! zmm registers: `tilejit_kernels::quant_amx`).
//!
//! Work is cut into units of `PANELS_PER_UNIT` panels (their B chunks stay
//! in L2) that threads take dynamically; inside a unit every group of
//! `2 * tile_rows` rows runs against all of the unit's panels, so each
//! group's A rows are reused from L2 across the panels.

use std::sync::Arc;

use tilejit_kernels::pack::AlignedBytes;
use tilejit_kernels::quant_amx::{
    AmxActivations, PackedQuant, QuantAmxArgs, QuantAmxKernel, QuantAmxSpec, MAX_ROWS, PANEL_COLS, SCRATCH_BYTES,
};

use tilejit_kernels::quant_avx512::{ActivationFormat, QuantPackError};

use tilejit_verify::emu::Region;

use super::check_quant_shapes;
use crate::cpu::amx_ready;
use crate::emulate::{Execution, Executor};
use crate::gemm::{GemmError, SharedC};
use tilejit_kernels::cache::KernelCache;

/// Panels per work unit: 4 x 16 columns x K of B (128 KiB of Q4 at K = 4096).
const PANELS_PER_UNIT: usize = 4;
/// Rows of a full row tile; two row tiles make a group of 24 rows, which
/// leaves 8 zmm registers beside the accumulators.
pub const DEFAULT_TILE_ROWS: u8 = 12;

fn kernel(spec: QuantAmxSpec) -> Result<Arc<QuantAmxKernel>, GemmError> {
    static CACHE: KernelCache<QuantAmxSpec, QuantAmxKernel> = KernelCache::new();
    Ok(CACHE.get(spec, QuantAmxKernel::generate)?)
}

/// `c[i * ldc + j] = dot(a row i, w row j)` (overwrite) for all rows of `a`
/// and all of `w`'s N, on `threads` threads (the bits do not depend on
/// it), with row tiles of `tile_rows` (1..=13; groups of up to
/// `2 * tile_rows` rows).
///
/// # Errors
/// Mismatched shapes, Q4_1 weights without activation sums,
/// zero threads, a bad `tile_rows`, no AMX permission.
pub fn gemm_quant_amx(
    w: &PackedQuant,
    a: &AmxActivations,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
    tile_rows: u8,
) -> Result<(), GemmError> {
    run(w, a, c, ldc, threads, tile_rows, Execution::Native)
}

/// [`gemm_quant_amx`], natively or emulated.
pub(super) fn run(
    w: &PackedQuant,
    a: &AmxActivations,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
    tile_rows: u8,
    execution: Execution,
) -> Result<(), GemmError> {
    let (m, n) = (a.m(), w.n());
    if threads == 0 {
        return Err(GemmError::Threads);
    }
    if w.format().has_min() && !a.has_sums() {
        // Activations without sums are Q8_0 ones; Q4_1 needs Q8_1's.
        let activations = ActivationFormat::Q8_0;
        return Err(QuantPackError::UnsupportedPair { weights: w.format(), activations }.into());
    }
    check_quant_shapes(w, m, a.k(), c.len(), ldc)?;
    let group = usize::from(tile_rows).saturating_mul(2).min(usize::from(MAX_ROWS));
    let spec = |rows: usize| QuantAmxSpec { format: w.format(), rows: rows as u8, tile_rows };
    spec(group.max(1)).validate()?;
    if execution == Execution::Native {
        amx_ready()?;
    }
    let f32s = |v: &[f32]| (v.as_ptr().cast::<u8>(), std::mem::size_of_val(v));
    let (scales, scales_len) = f32s(a.scales_t());
    let (sums, sums_len) = f32s(a.sums_t());
    let exec = Executor::new(execution)
        .input("activations", a.a_bytes().as_ptr(), a.a_bytes().len())
        .input("activation scales", scales, scales_len)
        .input("activation sums", sums, sums_len)
        .input("weights", w.as_bytes().as_ptr(), w.as_bytes().len())
        .output("C", c.as_ptr().cast(), std::mem::size_of_val(c));
    let mut calls = Vec::new();
    for row0 in (0..m).step_by(group) {
        let rows = group.min(m - row0);
        let kernel = if calls.last().is_some_and(|(_, k): &(usize, Arc<QuantAmxKernel>)| k.spec().rows as usize == rows)
        {
            Arc::clone(&calls.last().expect("checked").1)
        } else {
            kernel(spec(rows))?
        };
        calls.push((row0, kernel));
    }
    let panels = w.panels();
    let units = panels.div_ceil(PANELS_PER_UNIT);
    let c_base = &SharedC(c.as_mut_ptr().cast::<u8>());
    let a_row_bytes = a.lda();
    let scratch = || AlignedBytes::zeroed(SCRATCH_BYTES);
    crate::threads::run_units(threads, units, scratch, |scratch, u| {
        let p0 = u * PANELS_PER_UNIT;
        let p1 = (p0 + PANELS_PER_UNIT).min(panels);
        let cols = (p1 * PANEL_COLS).min(n) - p0 * PANEL_COLS;
        let tail = cols % PANEL_COLS;
        for (row0, kernel) in &calls {
            let args = QuantAmxArgs {
                a: a.a_bytes()[row0 * a_row_bytes..].as_ptr(),
                lda: a_row_bytes,
                a_tile2: a_row_bytes * usize::from(tile_rows),
                da: a.scales_t()[*row0..].as_ptr(),
                sa: if a.has_sums() { a.sums_t()[*row0..].as_ptr() } else { std::ptr::null() },
                table_stride: 4 * m,
                w: w.as_bytes()[p0 * w.panel_stride()..].as_ptr(),
                panel_stride: w.panel_stride(),
                // SAFETY (pointer arithmetic): row0 < m and p0 * 16 < n, inside C.
                c: unsafe { c_base.0.cast::<f32>().add(row0 * ldc + p0 * PANEL_COLS) },
                ldc: 4 * ldc,
                k_blocks: w.k_blocks(),
                n_full: cols / PANEL_COLS,
                tail_mask: (1u64 << tail) - 1,
                scratch: scratch.as_mut_slice().as_mut_ptr(),
            };
            // SAFETY: AMX permission was granted (amx_ready) and AVX-512
            // comes with every AMX CPU; the default MXCSR is in force. The
            // kernel reads `rows` A rows from row0 (lengths checked by
            // AmxActivations), the scale/sum tables of those rows for all
            // blocks, the panels p0..p1 of the packed weights, writes this
            // unit's columns of rows row0.. of C (masked at the N tail; no
            // other thread writes them) and this thread's scratch.
            let own = || vec![Region::write("scratch", scratch.as_mut_slice())];
            unsafe { exec.run(kernel.jit_code(), &args, own)? };
        }
        Ok(())
    })
}
