//! Quantized GEMM over GGUF block weights: `C[i][j] = dot(A row i, W row j)`
//! for Q8_0 x Q8_0, Q4_0 x Q8_0 and Q4_1 x Q8_1, with the oracle's
//! per-block epilogue (`tilejit_verify::quant`, "the quantized dot
//! product"). Every path reads one packed layout ([`QuantWeights`], GGUF
//! size) and gives the same bits for any thread count:
//!
//! | path | kernel | rows per call | chosen for |
//! |---|---|---|---|
//! | AVX-512 | `avx512.rs`: VPDPBUSD decode | 1..=4 | M below [`amx_from_m`] |
//! | AMX | `amx.rs`: each block widened to an s8 tile, one TDPBSSD, f32 fold in zmm | 1..=24 | M from [`amx_from_m`] |
//! | scalar | the oracle itself | any | `TILEJIT_ISA=scalar` or `GemmOptions::isa` |
//!
//! A second prefill strategy with its own semantics, "dequantize to bf16
//! once, then the dense bf16 GEMM", is [`gemm_dequant_bf16`]; the two AMX
//! strategies are compared in BENCHMARKS.md ("Quantized prefill"). The
//! per-block one is the default: it is as fast or faster on the measured
//! shapes, and it keeps the GGUF semantics, so a row's result does not
//! depend on how many rows share the call.

pub mod activations;
mod amx;
mod avx512;
mod dequant_bf16;

pub use amx::{gemm_quant_amx, DEFAULT_TILE_ROWS};
pub use avx512::gemm_quant_avx512;
pub use dequant_bf16::{bf16_from_f32, dequantize_rows_to_bf16, gemm_dequant_bf16, PackedDequantBf16};

use tilejit_kernels::quant_amx::AmxActivations;
use tilejit_kernels::quant_avx512::{ActivationFormat, PackedQuant, QuantActivations, WeightFormat};
use tilejit_verify::quant::BlockType;

use super::{check_rows, GemmError, GemmOptions, ShapeError};
use crate::isa::{Isa, Op};

/// Smallest M from which the AMX path beat AVX-512, per weight format
/// (`tilejit calibrate`, M x 4096 x 4096, weights cycled through 512 MiB,
/// 1 thread, the 16-core AMX machine, 2026-12-03, both kernels reading the
/// one GGUF-sized layout; time per call in us):
///
/// | M | q8_0 avx512 | q8_0 amx | q4_0 avx512 | q4_0 amx | q4_1 avx512 | q4_1 amx |
/// |---|---|---|---|---|---|---|
/// | 1 | 1384 | 1949 | 709 | 1300 | 696 | 1235 |
/// | 4 | 1615 | 1936 | 889 | 1354 | 783 | 1236 |
/// | 8 | 3128 | 1979 | 1724 | 1471 | 1628 | 1320 |
/// | 16 | 4169 | 1987 | 2272 | 1665 | 2813 | 1702 |
/// | 64 | 12176 | 5220 | 7131 | 4531 | 8601 | 4865 |
///
/// The AVX-512 kernel reads the weights once per 4 rows; the AMX one once
/// per 24 rows but pays the per-block widening, TILESTORED and fold
/// (kernels/PERFORMANCE.md), so it wins from the second pass of 4 rows.
pub fn amx_from_m(format: WeightFormat) -> usize {
    match format {
        WeightFormat::Q8_0 | WeightFormat::Q4_0 | WeightFormat::Q4_1 => 8,
    }
}

/// GGUF weights packed once in the panel layout every path reads
/// (`quant_avx512::pack` docs): as large as the GGUF tensor, which it
/// replaces. The AVX-512 kernels stream it, the AMX kernels widen it block
/// by block into tiles, the scalar path unpacks it to GGUF rows. Its own
/// type: no path can read it as the GGUF rows it came from
/// (docs/PLACEMENT.md, last lesson).
#[derive(Clone, Debug)]
pub struct QuantWeights {
    packed: PackedQuant,
}

impl QuantWeights {
    /// Packs `n` GGUF rows of `k` weights (a GGUF tensor with dims `[k, n]`).
    ///
    /// # Errors
    /// A zero dimension, `k` not a multiple of 32, a byte length other than
    /// `n * k / 32 * block bytes`, a size overflow.
    pub fn from_gguf(format: WeightFormat, bytes: &[u8], n: usize, k: usize) -> Result<QuantWeights, GemmError> {
        Ok(QuantWeights { packed: PackedQuant::from_gguf(format, bytes, n, k)? })
    }

    /// Bytes the packed layout takes (the GGUF tensor's, up to panel and
    /// block-pair padding).
    pub fn packed_bytes(&self) -> usize {
        self.packed.as_bytes().len()
    }

    pub fn format(&self) -> WeightFormat {
        self.packed.format()
    }

    pub fn n(&self) -> usize {
        self.packed.n()
    }

    pub fn k(&self) -> usize {
        self.packed.k()
    }

    /// The GGUF rows back, exactly as packed.
    pub fn to_gguf(&self) -> Vec<u8> {
        self.packed.unpack()
    }
}

/// `c[i * ldc + j] = dot(a row i, w row j)` (overwrite; C as the dense
/// calls take it: `m` rows `ldc >= n` apart), bit-identical to
/// `tilejit_verify::quant::gemm_quant` on every path. The path is
/// `opts.isa` if set, else `TILEJIT_ISA`, else AVX-512 below
/// [`amx_from_m`] rows and AMX from there; `opts.threads` threads (the
/// other options are the dense GEMM's and are ignored here).
///
/// # Errors
/// Zero threads, a (weights, activations) pair the oracle does not define
/// (Q4_1 needs Q8_1 activations, the others Q8_0), mismatched `k`, `ldc < n`
/// or a `c` too short, a forced ISA that cannot run here.
pub fn gemm_quant(
    w: &QuantWeights,
    a: &QuantActivations,
    c: &mut [f32],
    ldc: usize,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    if opts.threads == 0 {
        return Err(GemmError::Threads);
    }
    // Shapes checked before the path is chosen: the same error on every path.
    check_pair(w.format(), a.format())?;
    check_quant_shapes(&w.packed, a.m(), a.k(), c.len(), ldc)?;
    let choose = || super::dispatch::by_rows(a.m(), amx_from_m(w.format()), Op::Quant);
    let (isa, execution) = super::resolve_isa(opts, Op::Quant, choose)?;
    match isa {
        Isa::Avx512 => avx512::run(&w.packed, a, c, ldc, opts.threads, execution),
        Isa::Amx => {
            let sums: &[f32] = if w.format().has_min() { a.sums() } else { &[] };
            let acts = AmxActivations::new(a.m(), a.k(), a.quants(), a.scales(), sums)?;
            amx::run(&w.packed, &acts, c, ldc, opts.threads, DEFAULT_TILE_ROWS, execution)
        }
        Isa::Scalar => scalar(w, a, c, ldc),
    }
}

/// The oracle's names (`tilejit_verify::quant::BlockType`) of `format`
/// and of the activation format it pairs with.
pub fn reference_types(format: WeightFormat) -> (BlockType, BlockType) {
    let weights = match format {
        WeightFormat::Q8_0 => BlockType::Q8_0,
        WeightFormat::Q4_0 => BlockType::Q4_0,
        WeightFormat::Q4_1 => BlockType::Q4_1,
    };
    let activations = match format.activations() {
        ActivationFormat::Q8_0 => BlockType::Q8_0,
        ActivationFormat::Q8_1 => BlockType::Q8_1,
    };
    (weights, activations)
}

/// GGUF rows of f32 weights `w` in `format`, by the oracle's (llama.cpp's
/// reference) quantizers.
///
/// # Panics
/// If `w.len()` is not a multiple of 32.
pub fn quantize_weights(format: WeightFormat, w: &[f32]) -> Vec<u8> {
    use tilejit_verify::quant::{quantize_row_q4_0, quantize_row_q4_1, quantize_row_q8_0_weights};
    match format {
        WeightFormat::Q8_0 => quantize_row_q8_0_weights(w),
        WeightFormat::Q4_0 => quantize_row_q4_0(w),
        WeightFormat::Q4_1 => quantize_row_q4_1(w),
    }
}

/// GGUF rows of f32 activations `x` in `format` (Q8_0 or Q8_1): the
/// oracle's bytes, made by the vectorised quantizer ([`activations`]).
///
/// # Panics
/// If `x.len()` is not a multiple of 32.
pub fn quantize_activations(format: ActivationFormat, x: &[f32]) -> Vec<u8> {
    activations::quantize_rows(format, x)
}

fn check_pair(w: WeightFormat, a: ActivationFormat) -> Result<(), GemmError> {
    if w.activations() == a {
        Ok(())
    } else {
        Err(tilejit_kernels::quant_avx512::QuantPackError::UnsupportedPair { weights: w, activations: a }.into())
    }
}

/// The scalar path: the oracle on the GGUF bytes, rebuilt from the packed
/// weights and the activations (whose f32 scales are exact widenings of
/// f16, so narrowing them back is exact; a signalling NaN comes back
/// quieted, which the oracle treats as the NaN it is).
/// The pair, k and C were checked by [`gemm_quant`].
fn scalar(w: &QuantWeights, a: &QuantActivations, c: &mut [f32], ldc: usize) -> Result<(), GemmError> {
    let (m, n, k) = (a.m(), w.n(), w.k());
    let f16 = |x: f32| half::f16::from_f32(x).to_bits().to_le_bytes();
    let mut a_bytes = Vec::with_capacity(m * k / 32 * a.format().gguf_block_bytes());
    for ((q, &d), &s) in a.quants().chunks_exact(32).zip(a.scales()).zip(a.sums()) {
        a_bytes.extend_from_slice(&f16(d));
        if a.format() == ActivationFormat::Q8_1 {
            a_bytes.extend_from_slice(&f16(s));
        }
        a_bytes.extend(q.iter().map(|&v| v as u8));
    }
    let (wt, at) = reference_types(w.format());
    let mut dense = vec![0f32; m * n];
    tilejit_verify::quant::gemm_quant(wt, at, m, n, k, &a_bytes, &w.to_gguf(), &mut dense)?;
    for (row, out) in dense.chunks_exact(n).zip(c.chunks_mut(ldc)) {
        out[..n].copy_from_slice(row);
    }
    Ok(())
}

/// The shape checks every quantized path makes before it runs (the same
/// error on every path): K matches, C holds `m` rows of N `ldc` apart.
pub(crate) fn check_quant_shapes(
    w: &PackedQuant,
    m: usize,
    a_k: usize,
    c_len: usize,
    ldc: usize,
) -> Result<(), GemmError> {
    if a_k != w.k() {
        return Err(ShapeError::InnerDim { a_k, w_k: w.k() }.into());
    }
    Ok(check_rows(("C", "ldc"), m, w.n(), ldc, c_len)?)
}
