//! Quantized GEMM over GGUF block weights: `C[i][j] = dot(A row i, W row j)`
//! for Q8_0 x Q8_0, Q4_0 x Q8_0 and Q4_1 x Q8_1 ([`PackedQuant`],
//! [`QuantActivations`]), with the oracle's epilogue order
//! (`tilejit_verify::quant`). AVX-512 VNNI only so far; rows go in groups
//! of up to 4, threads take dynamic units of whole panel passes.

use std::sync::Arc;

use tilejit_kernels::quant_avx512::{
    PackedQuant, QuantActivations, QuantAvx512Args, QuantAvx512Kernel, QuantAvx512Spec, QuantPackError, PANEL_COLS,
    TERM_WORDS,
};

use super::check_quant_shapes;
use crate::emulate::{Execution, Executor};
use crate::gemm::GemmError;
use crate::isa::{availability_with, Isa, Op};
use tilejit_kernels::cache::KernelCache;

/// Rows per kernel call at most.
const MAX_ROWS: usize = 4;
/// Work units per thread when several threads share a call.
const UNITS_PER_THREAD: usize = 4;

fn kernel(spec: QuantAvx512Spec) -> Result<Arc<QuantAvx512Kernel>, GemmError> {
    static CACHE: KernelCache<QuantAvx512Spec, QuantAvx512Kernel> = KernelCache::new();
    Ok(CACHE.get(spec, QuantAvx512Kernel::generate)?)
}

/// `c[i * ldc + j] = dot(a row i, w row j)` (overwrite) for all `a.m()` rows
/// and all of `w`'s N, bit-identical to `gemm_quant(w format, a format, ..)`,
/// on `threads` threads (the bits do not depend on it).
///
/// # Errors
/// `threads == 0`; a (weights, activations) pair the oracle does not define
/// ([`QuantPackError::UnsupportedPair`]); mismatched `k`, `ldc < n` or a `c`
/// too short; a CPU without AVX-512 VNNI.
pub fn gemm_quant_avx512(
    w: &PackedQuant,
    a: &QuantActivations,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
) -> Result<(), GemmError> {
    run(w, a, c, ldc, threads, Execution::Native)
}

/// [`gemm_quant_avx512`], natively or emulated.
pub(super) fn run(
    w: &PackedQuant,
    a: &QuantActivations,
    c: &mut [f32],
    ldc: usize,
    threads: usize,
    execution: Execution,
) -> Result<(), GemmError> {
    let (m, n, k, kb) = (a.m(), w.n(), w.k(), w.k_blocks());
    if threads == 0 {
        return Err(GemmError::Threads);
    }
    if w.format().activations() != a.format() {
        return Err(QuantPackError::UnsupportedPair { weights: w.format(), activations: a.format() }.into());
    }
    check_quant_shapes(w, m, a.k(), c.len(), ldc)?;
    availability_with(Isa::Avx512, Op::Quant, execution)
        .map_err(|reason| GemmError::Unsupported { isa: Isa::Avx512, reason })?;
    let exec = Executor::new(execution)
        .input("activations", a.quants().as_ptr().cast(), a.quants().len())
        .input("activation terms", a.kernel_terms().as_ptr().cast(), std::mem::size_of_val(a.kernel_terms()))
        .input("weights", w.as_bytes().as_ptr(), w.as_bytes().len())
        .output("C", c.as_ptr().cast(), std::mem::size_of_val(c));
    let panels = w.panels();
    let threads = threads.min(panels).max(1);
    let c_base = &crate::gemm::SharedC(c.as_mut_ptr().cast::<u8>());
    let mut calls = Vec::new();
    for row0 in (0..m).step_by(MAX_ROWS) {
        let rows = MAX_ROWS.min(m - row0);
        calls.push((row0, kernel(QuantAvx512Spec::new(w.format(), rows as u8))?));
    }
    // Units of whole passes of panels, handed out dynamically (as in the
    // dense AVX-512 path: a late thread must not hold up a ~200 us call).
    let pass = usize::from(calls[0].1.spec().panels_per_pass);
    let unit = if threads == 1 { panels } else { pass * (panels / (threads * UNITS_PER_THREAD * pass)).max(1) };
    let (quants, terms, bytes) = (a.quants(), a.kernel_terms(), w.as_bytes());
    crate::threads::run_units(
        threads,
        panels.div_ceil(unit),
        || (),
        |_, u| {
            let p0 = u * unit;
            let p1 = (p0 + unit).min(panels);
            // Columns of this unit's panels; only the last panel of N is partial.
            let cols = (p1 * PANEL_COLS).min(n) - p0 * PANEL_COLS;
            for (row0, kernel) in &calls {
                let shape = kernel.shape_args(cols, k);
                let args = QuantAvx512Args {
                    a: quants[row0 * k..].as_ptr(),
                    a_terms: terms[row0 * kb * TERM_WORDS..].as_ptr(),
                    w: bytes[p0 * w.panel_stride()..].as_ptr(),
                    // SAFETY (pointer arithmetic): row0 < m and p0 * 16 < n, inside C.
                    c: unsafe { c_base.0.cast::<f32>().add(row0 * ldc + p0 * PANEL_COLS) },
                    ldc: 4 * ldc,
                    ..shape
                };
                // SAFETY: AVX512F/BW/VNNI were checked above; the default MXCSR is
                // in force (nothing here changes it). The kernel (generated for
                // w's format) reads its rows of quants and block terms (`a` holds
                // m rows of k and k/32, its constructor guarantees it), the panels
                // p0..p1 of the packed weights (64-byte aligned, as every panel
                // stride is), and writes rows row0.. of this thread's columns of C
                // (masked at the N tail); no other thread writes them.
                unsafe { exec.run(kernel.jit_code(), &args, Vec::new)? };
            }
            Ok(())
        },
    )
}
