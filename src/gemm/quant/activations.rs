//! Activations to Q8_0 / Q8_1 blocks on every call of the runner, fast: an
//! AVX-512 path, and a plain one elsewhere, both giving the bytes of the
//! oracle's quantizers (llama.cpp's `quantize_row_q8_0_ref` /
//! `quantize_row_q8_1_ref`, `tilejit_verify::quant`) bit for bit, which
//! `tests/quant_activations.rs` checks. Per block of 32 finite values, in
//! f32 with round to nearest even:
//!
//! - `amax = max |x|`, `d = amax / 127`, `id = 1 / d` (or 0 when d = 0);
//! - `q = roundf(x * id)`: one rounding of the product, then round half
//!   away from zero, then a saturating cast to i8;
//! - d stored as f16 (nearest even); Q8_1 also `s = f16(f32(sum q) * d)`
//!   with the f32 d;
//! - a block holding a NaN or an infinity is "poisoned": every f16 field
//!   0x7E00 (a quiet NaN) and every quant 0, so the NaN reaches the output
//!   the way the oracle's dot product defines.

use half::f16;

use crate::kernels::quant_avx512::ActivationFormat;

const QK: usize = 32;
const POISON: u16 = 0x7E00;

/// GGUF rows of `x` in `format`.
///
/// # Panics
/// If `x.len()` is not a multiple of 32 (the callers' shapes are checked).
pub fn quantize_rows(format: ActivationFormat, x: &[f32]) -> Vec<u8> {
    rows(format, x, true)
}

/// [`quantize_rows`] of `x`'s rows of `k` values on up to `threads`
/// threads, each quantizing a contiguous range of rows: blocks are
/// independent, so the bytes are [`quantize_rows`]'s.
///
/// # Panics
/// If `k` is not a multiple of 32 or does not divide `x.len()`.
pub fn quantize_rows_threaded(format: ActivationFormat, x: &[f32], k: usize, threads: usize) -> Vec<u8> {
    assert!(k > 0 && x.len().is_multiple_of(k), "{} values are not whole rows of {k}", x.len());
    let m = x.len() / k;
    let threads = threads.min(m).max(1);
    if threads == 1 {
        return quantize_rows(format, x);
    }
    let per = m.div_ceil(threads);
    let parts: Vec<std::sync::Mutex<Vec<u8>>> = (0..threads).map(|_| std::sync::Mutex::new(Vec::new())).collect();
    crate::threads::run_parallel::<std::convert::Infallible>(threads, |t| {
        let rows = (t * per).min(m)..((t + 1) * per).min(m);
        *parts[t].lock().unwrap_or_else(|p| p.into_inner()) = quantize_rows(format, &x[rows.start * k..rows.end * k]);
        Ok(())
    })
    .unwrap_or_else(|never| match never {});
    parts.into_iter().flat_map(|p| p.into_inner().unwrap_or_else(|p| p.into_inner())).collect()
}

/// [`quantize_rows`] on the plain path only (public so that tests compare
/// both paths on a machine that has AVX-512).
///
/// # Panics
/// As [`quantize_rows`].
pub fn quantize_rows_plain(format: ActivationFormat, x: &[f32]) -> Vec<u8> {
    rows(format, x, false)
}

fn rows(format: ActivationFormat, x: &[f32], vector: bool) -> Vec<u8> {
    assert!(x.len().is_multiple_of(QK), "{} values are not whole 32-wide blocks", x.len());
    let with_s = format == ActivationFormat::Q8_1;
    let mut out = Vec::with_capacity(x.len() / QK * format.gguf_block_bytes());
    for blk in x.chunks_exact(QK) {
        let blk: &[f32; QK] = blk.try_into().expect("chunks of 32");
        let (d, q) = match if vector { block_avx512(blk) } else { None } {
            Some(done) => done,
            None => block_plain(blk),
        };
        push_block(&mut out, d, &q, with_s);
    }
    out
}

fn push_block(out: &mut Vec<u8>, d: Option<f32>, q: &[i8; QK], with_s: bool) {
    match d {
        None => {
            for _ in 0..1 + usize::from(with_s) {
                out.extend_from_slice(&POISON.to_le_bytes());
            }
        }
        Some(d) => {
            out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
            if with_s {
                let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
                out.extend_from_slice(&f16::from_f32(sum as f32 * d).to_le_bytes());
            }
        }
    }
    out.extend(q.iter().map(|&v| v as u8));
}

/// The plain path: (f32 d, or None for a poisoned block; the quants).
fn block_plain(x: &[f32; QK]) -> (Option<f32>, [i8; QK]) {
    if !x.iter().all(|v| v.is_finite()) {
        return (None, [0; QK]);
    }
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    (Some(d), std::array::from_fn(|j| (x[j] * id).round() as i8))
}

/// The AVX-512 path, or None where it does not apply (no AVX-512F here or
/// hidden, a poisoned block, or `1 / d` overflowing: tiny blocks, where the
/// plain path's saturating cast decides).
fn block_avx512(x: &[f32; QK]) -> Option<(Option<f32>, [i8; QK])> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static USABLE: OnceLock<bool> = OnceLock::new();
        let usable = *USABLE.get_or_init(|| {
            crate::cpu::require(&[crate::cpu::Feature::Avx512F]).is_ok() && std::is_x86_feature_detected!("avx512f")
        });
        if usable {
            // SAFETY: AVX-512F is present (checked above, as std sees it).
            return unsafe { avx512::block(x) };
        }
    }
    let _ = x;
    None
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::QK;

    /// One block; None hands it to the plain path.
    #[target_feature(enable = "avx512f")]
    pub(super) fn block(x: &[f32; QK]) -> Option<(Option<f32>, [i8; QK])> {
        // SAFETY: 32 f32 are readable at x (two unaligned 64-byte loads).
        let (a, b) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(16))) };
        // x - x is 0 exactly when x is finite (inf - inf and NaN give NaN).
        let zero = _mm512_setzero_ps();
        let finite = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_sub_ps(a, a), zero)
            & _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_sub_ps(b, b), zero);
        if finite != 0xFFFF {
            return None;
        }
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        if !id.is_finite() {
            return None;
        }
        let idv = _mm512_set1_ps(id);
        let mut q = [0i8; QK];
        for (half, v) in [a, b].into_iter().enumerate() {
            let v = _mm512_mul_ps(v, idv);
            // roundf: truncate, then step away from zero when the dropped
            // fraction (exact: v - trunc(v)) is at least one half.
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
            let frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
            let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, _mm512_set1_ps(0.5));
            let sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(i32::MIN));
            let step = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_castps_si512(_mm512_set1_ps(1.0))));
            let r = _mm512_mask_add_ps(t, away, t, step);
            // |r| <= 127 (|v| <= 127 up to one rounding), so the narrowing
            // conversions are exact.
            let bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r));
            // SAFETY: 16 bytes written inside q.
            unsafe { _mm_storeu_si128(q.as_mut_ptr().add(16 * half).cast(), bytes) };
        }
        Some((Some(d), q))
    }
}
