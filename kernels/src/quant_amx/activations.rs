//! Q8 activations split into the AMX kernel's A operand and scale tables.
//!
//! The weights need no AMX layout of their own: the kernel reads the
//! quantized kernels' panel layout ([`crate::quant_avx512::PackedQuant`],
//! GGUF-sized) and widens each block into a B tile in its scratch buffer
//! (module docs of [`super`]).

use crate::pack::AlignedBytes;
pub use crate::quant_format::QuantPackError;
use crate::quant_format::{check_len, k_blocks};

/// Q8 activation rows as the AMX kernel reads them: the s8 quants as the A
/// operand (`m` rows of `k`, padded rows) and the per-block scales `d` and
/// (Q8_1) sums `s` as f32, transposed to block-major tables
/// (`table[b * m + i]`) so that the rows of one tile are adjacent for the
/// kernel's broadcasts.
#[derive(Clone)]
pub struct AmxActivations {
    m: usize,
    k: usize,
    lda: usize,
    a: AlignedBytes,
    scales_t: Vec<f32>,
    sums_t: Vec<f32>,
}

impl AmxActivations {
    /// From the row-major quants (`m * k`), scales and sums (`m * k / 32`
    /// each, `f32` widenings of the GGUF d and s; sums may be empty when
    /// the weights have no min).
    ///
    /// # Errors
    /// A zero dimension, `k` not a multiple of 32, or a wrong length.
    pub fn new(
        m: usize,
        k: usize,
        quants: &[i8],
        scales: &[f32],
        sums: &[f32],
    ) -> Result<AmxActivations, QuantPackError> {
        let kb = k_blocks(m, k)?;
        check_len("activation quants", m.checked_mul(k).ok_or(QuantPackError::SizeOverflow)?, quants.len())?;
        check_len("activation scales", m * kb, scales.len())?;
        if !sums.is_empty() {
            check_len("activation sums", m * kb, sums.len())?;
        }
        // One extra line per row: rows a multiple of 4 KiB apart would all
        // fall into the same L1 set, and a row group has more rows (up to
        // 26) than L1 has ways (12).
        let lda = k.next_multiple_of(64) + 64;
        let mut a = AlignedBytes::zeroed(m.checked_mul(lda).ok_or(QuantPackError::SizeOverflow)?);
        for (dst, src) in a.as_mut_slice().chunks_exact_mut(lda).zip(quants.chunks_exact(k)) {
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s as u8);
        }
        let transpose = |t: &[f32]| {
            let mut out = vec![0f32; t.len()];
            if t.is_empty() {
                return out;
            }
            for i in 0..m {
                for b in 0..kb {
                    out[b * m + i] = t[i * kb + b];
                }
            }
            out
        };
        Ok(AmxActivations { m, k, lda, a, scales_t: transpose(scales), sums_t: transpose(sums) })
    }

    pub fn m(&self) -> usize {
        self.m
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Whether Q8_1 sums were given.
    pub fn has_sums(&self) -> bool {
        !self.sums_t.is_empty()
    }

    /// Bytes from one A row to the next.
    pub fn lda(&self) -> usize {
        self.lda
    }

    /// The A operand bytes (`m` rows of `k` s8 at [`Self::lda`]).
    pub fn a_bytes(&self) -> &[u8] {
        self.a.as_slice()
    }

    /// Block-major scale table.
    pub fn scales_t(&self) -> &[f32] {
        &self.scales_t
    }

    /// Block-major sum table (empty without sums).
    pub fn sums_t(&self) -> &[f32] {
        &self.sums_t
    }
}
