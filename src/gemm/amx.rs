//! The AMX path: C[M,N] (+)= A[M,K] x B[K,N] for any M, N, K >= 1 and any
//! thread count, over JIT-compiled AMX micro-kernels.
//!
//! The output is cut into blocks of the kernel's blocking; the last block
//! row/column uses a tail spec whose tile config has fewer rows/columns.
//! K is cut into K blocks so that a block row of A stays in L1 while the
//! kernel walks the N blocks; C is stored and reloaded between K blocks,
//! which changes no bits (int8 adds wrap associatively; a bf16 C tile holds
//! exactly the f32 it stores). Threads split output blocks, never K.

use std::sync::Arc;

use tilejit_kernels::dense_amx::{Blocking, DenseAmxSpec};
use tilejit_kernels::dense_amx::{DenseAmxArgs, DenseAmxKernel};
use tilejit_kernels::jit::GenerateError;
use tilejit_kernels::pack::{AlignedBytes, PackedB};
use tilejit_kernels::spec::{CInit, ElemType};

use tilejit_verify::emu::Region;

use super::{GemmError, GemmOptions, Problem, SharedC};
use crate::cpu::amx_ready;
use crate::emulate::Executor;
use tilejit_kernels::cache::KernelCache;

/// Lines per prefetch stream per K step: 2 x 64 bytes per ~64 cycles of
/// TDPs covers a 32-row A slice over 16 N blocks and a B slice over a pass.
const PREFETCH_LINES: u8 = 2;

/// A process-wide cache of generated kernels, keyed by spec.
pub fn kernel(spec: DenseAmxSpec) -> Result<Arc<DenseAmxKernel>, GenerateError> {
    static CACHE: KernelCache<DenseAmxSpec, DenseAmxKernel> = KernelCache::new();
    CACHE.get(spec, DenseAmxKernel::generate)
}

/// One unit of thread work: a block row and a range of N blocks in it.
#[derive(Clone, Copy, Debug)]
struct Task {
    block_row: usize,
    n_block_start: usize,
    n_block_end: usize,
}

/// One kernel round: a task in a K block, the round after it (whose A
/// slice is prefetched) and the B prefetch stream's position.
struct Round<'c> {
    task: Task,
    kb: usize,
    next: Option<(usize, Task)>,
    b_cursor: &'c mut usize,
}

/// The geometry of one GEMM call, derived once.
struct Layout {
    m: usize,
    n: usize,
    block_rows: usize,
    block_cols: usize,
    m_blocks: usize,
    n_blocks: usize,
    /// Bytes of one row of A that hold data (the rest of a step is padding).
    k_bytes: usize,
    k_steps: usize,
    step_bytes: usize,
    lda_bytes: usize,
    ldc_bytes: usize,
}

/// Runs a validated problem on AMX.
pub(super) fn run(p: &Problem, opts: &GemmOptions, exec: &Executor) -> Result<(), GemmError> {
    if !exec.emulated() {
        amx_ready()?;
    }
    let Problem { elem, m, a, lda, b, c: shared_c, ldc, accumulate, .. } = *p;
    let (n, k, esize) = (b.n(), b.k(), elem.elem_bytes());
    let step_bytes = b.k_groups_per_tdp() as usize * 4;
    let k_steps = b.k_steps();
    let block_rows = opts.blocking.m_tiles as usize * 16;
    let block_cols = opts.blocking.n_tiles as usize * 16;
    let layout = Layout {
        m,
        n,
        block_rows,
        block_cols,
        m_blocks: m.div_ceil(block_rows),
        n_blocks: n.div_ceil(block_cols),
        k_bytes: k * esize,
        k_steps,
        step_bytes,
        lda_bytes: lda * esize,
        ldc_bytes: ldc * 4,
    };
    // No more threads than output blocks (so `threads * 4` below cannot
    // overflow for any thread count).
    let threads = opts.threads.min(layout.m_blocks * layout.n_blocks).max(1);
    let tasks = split_tasks(&layout, threads);
    let threads = threads.min(tasks.len());
    let k_block_steps = b.layout().k_block_steps;
    let k_blocks = k_steps.div_ceil(k_block_steps);
    // K blocks outermost: B's K slice (k_block x N) then stays in L2 while
    // the thread walks its block rows, and one block row's A slice stays in
    // L1 while the kernel walks the N blocks.
    let work = |thread: usize| -> Result<(), GemmError> {
        let mut a_slice = AlignedBytes::zeroed(block_rows * k_block_steps.min(k_steps) * step_bytes);
        let mine: Vec<Task> = tasks.iter().skip(thread).step_by(threads).copied().collect();
        for kb in 0..k_blocks {
            // The B prefetch stream walks the next K block's slice.
            let mut b_cursor = if kb + 1 < k_blocks { b.tile_offset((kb + 1) * k_block_steps, 0) } else { 0 };
            for (i, task) in mine.iter().enumerate() {
                let next = match mine.get(i + 1) {
                    Some(t) => Some((kb, *t)),
                    None if kb + 1 < k_blocks => Some((kb + 1, mine[0])),
                    None => None,
                };
                let round = Round { task: *task, kb, next, b_cursor: &mut b_cursor };
                run_task(elem, &layout, opts, exec, accumulate, a, &mut a_slice, b, shared_c, round)?;
            }
        }
        Ok(())
    };
    crate::threads::run_parallel(threads, work)
}

/// Splits the output into about 4 tasks per thread, whole block rows first,
/// N ranges when there are fewer block rows than that.
fn split_tasks(l: &Layout, threads: usize) -> Vec<Task> {
    let want = threads * 4;
    let n_parts = want.div_ceil(l.m_blocks).clamp(1, l.n_blocks);
    let mut tasks = Vec::with_capacity(l.m_blocks * n_parts);
    for block_row in 0..l.m_blocks {
        for p in 0..n_parts {
            let (start, end) = (p * l.n_blocks / n_parts, (p + 1) * l.n_blocks / n_parts);
            if start < end {
                tasks.push(Task { block_row, n_block_start: start, n_block_end: end });
            }
        }
    }
    tasks
}

/// Tiles and the rows/cols of the last tile for a block of `len` <= `full` elements.
fn tail_shape(len: usize) -> (u8, u8) {
    let tiles = len.div_ceil(16);
    (tiles as u8, (len - (tiles - 1) * 16) as u8)
}

#[allow(clippy::too_many_arguments)]
fn run_task(
    elem: ElemType,
    l: &Layout,
    opts: &GemmOptions,
    exec: &Executor,
    accumulate: bool,
    a: &[u8],
    a_slice: &mut AlignedBytes,
    b: &PackedB,
    c: SharedC,
    round: Round,
) -> Result<(), GemmError> {
    let Round { task, kb, next, b_cursor } = round;
    let row0 = task.block_row * l.block_rows;
    let rows = l.block_rows.min(l.m - row0);
    let (m_tiles, last_rows) = tail_shape(rows);
    // Full-width blocks, then at most one narrower tail block at the end of N.
    let full_end = task.n_block_end.min(l.n / l.block_cols);
    let full = full_end.saturating_sub(task.n_block_start);
    let tail_cols =
        (task.n_block_end * l.block_cols).min(l.n).saturating_sub(full_end.max(task.n_block_start) * l.block_cols);
    let spec_for = |cols: usize, c_init| {
        let (n_tiles, last_cols) = tail_shape(cols);
        DenseAmxSpec {
            elem,
            blocking: Blocking { m_tiles, n_tiles },
            schedule: opts.schedule,
            k_groups_per_tdp: b.k_groups_per_tdp(),
            c_init,
            last_tile_rows: last_rows,
            last_tile_cols: last_cols,
            prefetch_lines: if opts.prefetch { PREFETCH_LINES } else { 0 },
            b_load: opts.b_load,
        }
    };
    let k_block_steps = b.layout().k_block_steps;
    let s0 = kb * k_block_steps;
    let steps = k_block_steps.min(l.k_steps - s0);
    let c_init = if kb == 0 && !accumulate { CInit::Zero } else { CInit::Load };
    // A is read in place when its rows are 64-byte aligned, the slice has
    // no K tail and the row stride is not a multiple of 4 KiB. Otherwise
    // this block row's K slice is copied into a contiguous aligned buffer,
    // zero padded past K: tile loads of rows that straddle cache lines run
    // ~7x slower, and 16 rows at a 4 KiB-multiple stride share one L1 set,
    // so such an A would be re-fetched for every N block (measured; see
    // kernels/PERFORMANCE.md).
    let slice_row = steps * l.step_bytes;
    let k_first = s0 * l.step_bytes;
    let k_last = (k_first + slice_row).min(l.k_bytes);
    let a_row0 = &a[row0 * l.lda_bytes..];
    let in_place = (a_row0.as_ptr() as usize).is_multiple_of(64)
        && l.lda_bytes.is_multiple_of(64)
        && !l.lda_bytes.is_multiple_of(4096)
        && k_last == k_first + slice_row;
    let (a_ptr, lda) = if in_place {
        (a_row0[k_first..].as_ptr(), l.lda_bytes)
    } else {
        for (r, dst) in a_slice.as_mut_slice()[..rows * slice_row].chunks_exact_mut(slice_row).enumerate() {
            let src = (row0 + r) * l.lda_bytes;
            let data = k_last.saturating_sub(k_first);
            dst[..data].copy_from_slice(&a[src + k_first..src + k_first + data]);
            dst[data..].fill(0);
        }
        (a_slice.as_slice().as_ptr(), slice_row)
    };
    // Prefetch stream 1: the source rows of the next round's A slice.
    let (pf_a, pf_a_row_lines, pf_a_skip) = match next {
        Some((next_kb, next_task)) => {
            let first = next_kb * k_block_steps * l.step_bytes;
            let data = (k_block_steps * l.step_bytes).min(l.k_bytes.saturating_sub(first)).max(1);
            let lines = data.div_ceil(64);
            let at = next_task.block_row * l.block_rows * l.lda_bytes + first;
            (a.as_ptr().wrapping_add(at), lines, l.lda_bytes.wrapping_sub(lines * 64))
        }
        None => (a.as_ptr(), 1, 0),
    };
    let mut segments = Vec::with_capacity(2);
    if full > 0 {
        segments.push((task.n_block_start, full, l.block_cols));
    }
    if tail_cols > 0 {
        segments.push((full_end.max(task.n_block_start), 1, tail_cols));
    }
    for (first_block, count, cols) in segments {
        let kernel = kernel(spec_for(cols, c_init))?;
        let col0 = first_block * l.block_cols;
        let args = DenseAmxArgs {
            a: a_ptr,
            lda,
            b: b.as_bytes()[b.tile_offset(s0, col0 / 16)..].as_ptr(),
            b_panel_stride: b.block_panel_stride(s0),
            // SAFETY (pointer arithmetic): row0 < m and col0 < n, so the
            // offset lies inside C, which `run` checked.
            c: unsafe { c.0.add(row0 * l.ldc_bytes + col0 * 4) },
            ldc: l.ldc_bytes,
            k_steps: steps,
            n_blocks: count,
            prefetch_a: pf_a,
            prefetch_a_row_lines: pf_a_row_lines,
            prefetch_a_skip: pf_a_skip,
            prefetch_b: b.as_bytes().as_ptr().wrapping_add(*b_cursor),
        };
        *b_cursor += count * steps * kernel.spec().prefetch_lines as usize * 64;
        // SAFETY: AMX permission was granted (amx_ready). The kernel
        // reads `rows` rows of `steps` whole steps from the A slice copied
        // above, reads B panels
        // col0/16 .. inside the packed buffer, and writes `rows` rows x
        // `count * block_cols` (or `cols`) columns of C inside the
        // checked C; this thread is the only writer of these blocks.
        unsafe { exec.run(kernel.jit_code(), &args, || vec![Region::read("A slice", a_slice.as_slice())])? };
    }
    Ok(())
}
