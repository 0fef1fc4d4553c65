//! Prefill over GGUF block weights by "dequantize once, then dense bf16":
//! the weights are dequantized to bf16 and packed as the dense GEMM's B once
//! ([`PackedDequantBf16`]); every call then narrows its f32 activations to
//! bf16 and runs [`gemm_bf16`] over the full K (TDPBF16PS on AMX, its exact
//! FP32-FMA emulation on AVX-512, the oracle on the scalar path: the same
//! bits on all three, and for any thread count).
//!
//! The result is defined by the oracle's
//! `tilejit_verify::quant::gemm_dequant_bf16_reference` (its docs and those
//! of `dequantize_row_to_bf16` state the rule). It is not the quantized dot
//! product of [`super::gemm_quant`]: weights are rounded to 8 significant bits
//! and the products are summed by TDPBF16PS chains, not block by block.
//!
//! This file is a second implementation of the rule, sharing no code with
//! the oracle (only its `BlockType` enum names the formats): f16 widening,
//! the products and the f32 -> bf16 narrowing are written out here on bit
//! patterns, including which NaN comes out, so tests can compare the two.
//! The rule, per weight element, with `d`, `m` the block's f16 fields
//! widened exactly and `q` the quant (Q4_0: nibble - 8; Q4_1: nibble;
//! Q8_0/Q8_1: the i8):
//!
//! - Q4_0, Q8_0, Q8_1: `x = d * q` (exact in f32); Q4_1: `x = d * q + m`
//!   (one f32 rounding, nearest even); F16: exact widening; BF16: the bits
//!   widened; F32: as stored;
//! - then bf16 = VCVTNEPS2BF16(x) (docs/NUMERICS.md): round to nearest even,
//!   zero and f32 subnormals to a zero of the same sign, infinities kept,
//!   NaN truncated with the quiet bit (bf16 bit 6) forced;
//! - NaNs: a NaN d (quieted, payload kept) is the product; `inf * 0` is the
//!   default NaN 0xFFC0_0000; for Q4_1 the product's NaN wins over a NaN m,
//!   a NaN m alone is kept (quieted), and `inf + -inf` is the default NaN.
//!
//! The activations use the same narrowing.

use tilejit_kernels::pack::{BLayout, PackedB};
use tilejit_kernels::quant_avx512::QuantPackError;
use tilejit_verify::quant::BlockType;

use crate::gemm::{check_operands, gemm_bf16, GemmError, GemmOptions};

/// Elements per quantized block.
const QK: usize = 32;
/// x86's default NaN ("real indefinite"), the result of `inf * 0` and
/// `inf - inf`.
const DEFAULT_NAN: u32 = 0xFFC0_0000;
/// The f32 quiet bit.
const F32_QUIET: u32 = 0x0040_0000;
/// 2^-24, the unit of an f16 subnormal's fraction.
const TWO_POW_M24: f32 = f32::from_bits(0x3380_0000);

/// f32 -> bf16 bits as VCVTNEPS2BF16 does it (docs/NUMERICS.md): round to
/// nearest even; zero and subnormal inputs give a zero of the same sign;
/// infinities pass; NaN keeps its upper 16 bits with the quiet bit (bit 6)
/// forced. Values from the largest bf16 halfway point up round to infinity.
/// Written without branches so that loops over it vectorize.
pub fn bf16_from_f32(x: f32) -> u16 {
    let b = x.to_bits();
    let mag = b & 0x7FFF_FFFF;
    let upper = b >> 16;
    let rounded = b.wrapping_add(0x7FFF + (upper & 1)) >> 16;
    let r = if mag > 0x7F80_0000 {
        upper | 0x40
    } else if mag < 0x0080_0000 {
        upper & 0x8000
    } else {
        rounded
    };
    r as u16
}

/// f16 bits widened to f32, exactly; a NaN is quieted with sign and
/// payload kept (`sign | 0x7FC0_0000 | fraction << 13`).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from(h >> 10) & 0x1F;
    let frac = u32::from(h & 0x03FF);
    let bits = match exp {
        // Zero or subnormal: frac * 2^-24, exact (and normal in f32).
        0 => sign | (frac as f32 * TWO_POW_M24).to_bits(),
        0x1F if frac == 0 => sign | 0x7F80_0000,
        0x1F => sign | 0x7FC0_0000 | (frac << 13),
        // Rebias 15 -> 127.
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

fn quiet(x: f32) -> f32 {
    f32::from_bits(x.to_bits() | F32_QUIET)
}

/// `d * q` with the rule's NaNs: a NaN d quieted, `inf * 0` the default NaN.
/// Otherwise exact (11 x 8 significant bits, no under/overflow).
fn scale(d: f32, q: i32) -> f32 {
    if d.is_nan() {
        quiet(d)
    } else if d.is_infinite() && q == 0 {
        f32::from_bits(DEFAULT_NAN)
    } else {
        d * q as f32
    }
}

/// Q4_1's `d * q + m`, one rounding, the product's NaN first.
fn scale_add_min(d: f32, q: i32, m: f32) -> f32 {
    let p = scale(d, q);
    if p.is_nan() {
        p
    } else if m.is_nan() {
        quiet(m)
    } else if p.is_infinite() && m.is_infinite() && p != m {
        f32::from_bits(DEFAULT_NAN)
    } else {
        p + m
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Dequantizes one row (`out.len()` elements; `row` already checked to be
/// its exact size) to bf16 bits.
fn dequantize_row(ty: BlockType, row: &[u8], out: &mut [u16]) {
    let bb = ty.block_bytes();
    match ty {
        BlockType::Q4_0 | BlockType::Q4_1 => {
            for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(QK)) {
                let d = f16_to_f32(le16(blk, 0));
                // 16 nibble values per block: a table, then lookups.
                let (table, qs): ([u16; 16], &[u8]) = if ty == BlockType::Q4_0 {
                    (std::array::from_fn(|q| bf16_from_f32(scale(d, q as i32 - 8))), &blk[2..])
                } else {
                    let m = f16_to_f32(le16(blk, 2));
                    (std::array::from_fn(|q| bf16_from_f32(scale_add_min(d, q as i32, m))), &blk[4..])
                };
                let (lo, hi) = o.split_at_mut(QK / 2);
                for ((l, h), &byte) in lo.iter_mut().zip(hi).zip(qs) {
                    *l = table[usize::from(byte & 0x0F)];
                    *h = table[usize::from(byte >> 4)];
                }
            }
        }
        BlockType::Q8_0 | BlockType::Q8_1 => {
            // Q8_1's s (bytes 2..4) is not part of the value.
            for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(QK)) {
                let d = f16_to_f32(le16(blk, 0));
                for (v, &q) in o.iter_mut().zip(&blk[bb - QK..]) {
                    *v = bf16_from_f32(scale(d, i32::from(q as i8)));
                }
            }
        }
        BlockType::F16 => {
            for (v, h) in out.iter_mut().zip(row.chunks_exact(2)) {
                *v = bf16_from_f32(f16_to_f32(le16(h, 0)));
            }
        }
        BlockType::Bf16 => {
            for (v, h) in out.iter_mut().zip(row.chunks_exact(2)) {
                *v = bf16_from_f32(f32::from_bits(u32::from(le16(h, 0)) << 16));
            }
        }
        BlockType::F32 => {
            for (v, x) in out.iter_mut().zip(row.chunks_exact(4)) {
                *v = bf16_from_f32(f32::from_le_bytes([x[0], x[1], x[2], x[3]]));
            }
        }
    }
}

/// Bytes of one row of `k` elements, after the shape checks.
fn row_bytes(ty: BlockType, n: usize, k: usize, len: usize) -> Result<usize, QuantPackError> {
    if n == 0 || k == 0 {
        return Err(QuantPackError::ZeroDim { n, k });
    }
    // The message of KNotBlockMultiple says 32: only the quantized types
    // have blocks of more than one element.
    if !k.is_multiple_of(ty.block_elems()) {
        return Err(QuantPackError::KNotBlockMultiple { k });
    }
    let row = (k / ty.block_elems()).checked_mul(ty.block_bytes()).ok_or(QuantPackError::SizeOverflow)?;
    let total = n.checked_mul(row).ok_or(QuantPackError::SizeOverflow)?;
    n.checked_mul(k).ok_or(QuantPackError::SizeOverflow)?;
    if len != total {
        return Err(QuantPackError::WrongLength { what: "weight bytes", expected: total, actual: len });
    }
    Ok(row)
}

/// Dequantizes `n` GGUF rows of `k` elements (`bytes` holds exactly those
/// rows) to bf16 bits, row-major `n x k`, by the rule of the module docs.
///
/// # Errors
/// `n` or `k` zero, `k` not a multiple of the format's block size (32 for
/// Q4_0/Q4_1/Q8_0/Q8_1), a wrong byte length, or a size overflow
/// ([`GemmError::Quant`]).
pub fn dequantize_rows_to_bf16(format: BlockType, bytes: &[u8], n: usize, k: usize) -> Result<Vec<u16>, GemmError> {
    let row = row_bytes(format, n, k, bytes.len())?;
    let mut out = vec![0u16; n * k];
    for (src, dst) in bytes.chunks_exact(row).zip(out.chunks_exact_mut(k)) {
        dequantize_row(format, src, dst);
    }
    Ok(out)
}

/// A GGUF linear weight (`n` rows of `k`: dims `[k, n]`) dequantized to
/// bf16 once and packed as the dense GEMM's B: weight row `j` is output
/// column `j` (B = W^T). The packing's K chunk per TDP
/// ([`Self::pairs_per_tdp`]) is part of the result's definition.
#[derive(Clone, Debug)]
pub struct PackedDequantBf16 {
    format: BlockType,
    b: PackedB,
}

impl PackedDequantBf16 {
    /// Dequantizes and packs with the default layout (16 pairs per TDP).
    /// Every `BlockType` is accepted: Q4_0, Q4_1, Q8_0, F16, BF16, F32, and
    /// Q8_1 (its s is ignored, as the oracle's `decode_row` does).
    ///
    /// # Errors
    /// `n` or `k` zero, `k` not a multiple of the format's block size (32
    /// for the quantized formats), a wrong byte length or a size overflow
    /// ([`GemmError::Quant`]); never a panic.
    pub fn from_gguf(format: BlockType, bytes: &[u8], n: usize, k: usize) -> Result<Self, GemmError> {
        Self::from_gguf_with_layout(format, bytes, n, k, BLayout::default())
    }

    /// [`Self::from_gguf`] with a chosen packing (`k_groups_per_tdp` is the
    /// reference's `pairs_per_tdp`).
    ///
    /// # Errors
    /// As [`Self::from_gguf`], and a bad layout ([`GemmError::Pack`]).
    pub fn from_gguf_with_layout(
        format: BlockType,
        bytes: &[u8],
        n: usize,
        k: usize,
        layout: BLayout,
    ) -> Result<Self, GemmError> {
        let row = row_bytes(format, n, k, bytes.len())?;
        // The layout's own checks, before the expensive part.
        PackedB::pack_bf16(&[0], 1, 1, 1, layout)?;
        // B[p][j] = W[j][p]: dequantize 16 rows at a time into a strip,
        // then write them transposed, 16 neighbours per B row.
        const STRIP: usize = 16;
        let mut b = vec![0u16; k * n];
        let mut strip = vec![0u16; STRIP * k];
        for (s, rows) in bytes.chunks(STRIP * row).enumerate() {
            let j0 = s * STRIP;
            let cols = rows.len() / row;
            for (src, dst) in rows.chunks_exact(row).zip(strip.chunks_exact_mut(k)) {
                dequantize_row(format, src, dst);
            }
            for (p, b_row) in b.chunks_exact_mut(n).enumerate() {
                for (c, v) in b_row[j0..j0 + cols].iter_mut().enumerate() {
                    *v = strip[c * k + p];
                }
            }
        }
        let b = PackedB::pack_bf16(&b, k, n, n, layout)?;
        Ok(PackedDequantBf16 { format, b })
    }

    /// The GGUF format the weights came from.
    pub fn format(&self) -> BlockType {
        self.format
    }

    /// Output columns (weight rows).
    pub fn n(&self) -> usize {
        self.b.n()
    }

    pub fn k(&self) -> usize {
        self.b.k()
    }

    /// bf16 pairs per TDP of the packing: the K chunking the result bits
    /// depend on (the reference's `pairs_per_tdp`).
    pub fn pairs_per_tdp(&self) -> usize {
        usize::from(self.b.k_groups_per_tdp())
    }

    /// The packed bf16 B, for [`gemm_bf16`] callers that bring bf16
    /// activations themselves.
    pub fn packed(&self) -> &PackedB {
        &self.b
    }
}

/// `c[i * ldc + j] = sum_p bf16(a[i * k + p]) * W'[j][p]` (overwrite) for
/// `m` rows of f32 activations `a` (row-major, `k` apart) and the
/// dequantized weights `W'`: the activations are narrowed with
/// [`bf16_from_f32`], then [`gemm_bf16`] runs with overwrite on the path
/// `opts` picks. Bit-identical to the oracle's
/// `gemm_dequant_bf16_reference(format, m, n, k, a, bytes, w.pairs_per_tdp(), c)`
/// on every path and thread count.
///
/// # Errors
/// `m` zero, `a` shorter than `m * k` elements, `ldc < n` or `c` too short
/// for `m` rows `ldc` apart ([`GemmError::Shape`]), zero threads, or the errors of [`gemm_bf16`]
/// (an ISA that cannot run here, kernel generation).
pub fn gemm_dequant_bf16(
    w: &PackedDequantBf16,
    a: &[f32],
    m: usize,
    c: &mut [f32],
    ldc: usize,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    let (n, k) = (w.n(), w.k());
    if opts.threads == 0 {
        return Err(GemmError::Threads);
    }
    check_operands(m, n, k, (a.len(), k), (c.len(), ldc))?;
    let a = &a[..m * k];
    let a16: Vec<u16> = a.iter().map(|&x| bf16_from_f32(x)).collect();
    gemm_bf16(m, &a16, k, &w.b, c, ldc, false, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_widening_is_exact() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x7BFF), 65504.0);
        assert_eq!(f16_to_f32(0x0001), TWO_POW_M24);
        assert_eq!(f16_to_f32(0x83FF).to_bits(), (-1023.0 * TWO_POW_M24).to_bits());
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(f16_to_f32(0xFC00), f32::NEG_INFINITY);
        assert_eq!(f16_to_f32(0x7C01).to_bits(), 0x7FC0_2000);
        assert_eq!(f16_to_f32(0xFE3F).to_bits(), 0xFFC7_E000);
    }

    #[test]
    fn narrowing_rounds_to_nearest_even_and_flushes() {
        for (bits, want) in [
            (0x3F80_8000u32, 0x3F80u16),
            (0x3F81_8000, 0x3F82),
            (0x3F80_8001, 0x3F81),
            (0x3FFF_FFFF, 0x4000),
            (0x7F7F_FFFF, 0x7F80),
            (0x007F_FFFF, 0x0000),
            (0x8000_0001, 0x8000),
            (0xFF80_0000, 0xFF80),
            (0x7F80_0001, 0x7FC0),
            (0xFFFF_FFFF, 0xFFFF),
        ] {
            assert_eq!(bf16_from_f32(f32::from_bits(bits)), want, "{bits:#010x}");
        }
    }

    #[test]
    fn rule_nans() {
        let nan = f16_to_f32(0x7E3F);
        assert_eq!(scale(nan, 0).to_bits(), 0x7FC7_E000);
        assert_eq!(scale(f32::INFINITY, 0).to_bits(), DEFAULT_NAN);
        assert_eq!(scale(f32::NEG_INFINITY, -3), f32::INFINITY);
        assert_eq!(scale_add_min(nan, 1, f16_to_f32(0xFE00)).to_bits(), 0x7FC7_E000);
        assert_eq!(scale_add_min(1.0, 1, f16_to_f32(0xFE3F)).to_bits(), 0xFFC7_E000);
        assert_eq!(scale_add_min(f32::INFINITY, 1, f32::NEG_INFINITY).to_bits(), DEFAULT_NAN);
        assert_eq!(scale_add_min(f32::INFINITY, 1, f32::INFINITY), f32::INFINITY);
    }
}
