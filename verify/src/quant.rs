//! Block-quantized (GGUF-style) rows: decoders, the quantizers, and THE
//! quantized dot product every kernel must reproduce bit for bit
//! (docs/FORMATS.md "Block formats", docs/NUMERICS.md "Quantized (GGUF-style)
//! dot products").
//!
//! A row of `k` elements is `k / block_elems` blocks stored back to back
//! (little endian, no padding). Quantized blocks hold 32 elements:
//!
//! | type | bytes | layout |
//! |---|---|---|
//! | Q4_0 | 18 | d: f16, qs\[16\]; byte j: low nibble = element j, high = element j+16 |
//! | Q4_1 | 20 | d: f16, m: f16, qs\[16\] (same nibble order) |
//! | Q8_0 | 34 | d: f16, qs: i8\[32\] |
//! | Q8_1 | 36 | d: f16, s: f16, qs: i8\[32\] |
//!
//! F16, BF16 and F32 rows are plain arrays (a "block" of one element).
//!
//! # The quantized dot product (the definition)
//!
//! Supported pairs (weights, activations): (Q4_0, Q8_0), (Q8_0, Q8_0),
//! (Q4_1, Q8_1). For one output element, with `a` an activation row and `w`
//! a weight row of the same `k`:
//!
//! ```text
//! acc = +0.0f32
//! for b in 0 .. k/32 (increasing k):
//!     isum  = sum over e in 0..32 of qw[e] * qa[e]     (exact i32)
//!     scale = f32(dw) * f32(da)                         (one f32 multiply)
//!     acc   = fma(f32(isum), scale, acc)                (one rounding)
//!     if Q4_1: acc = fma(f32(mw), f32(sa), acc)         (one rounding)
//! result = acc
//! ```
//!
//! - `qw` is `nibble - 8` for Q4_0, the raw nibble 0..=15 for Q4_1, the i8
//!   for Q8_0; `qa` is the activation's i8. `f32(x)` of an f16 is the exact
//!   widening; `mw` is the Q4_1 block's m, `sa` the Q8_1 block's stored s
//!   (read from the bytes, never recomputed from the quants).
//! - Every fma is IEEE binary32 with the exact product and one rounding to
//!   nearest even, no DAZ, no FTZ (`f32::mul_add`).
//! - `|isum| <= 32 * 15 * 128` (Q4) or `32 * 128 * 128` (Q8), so
//!   `f32(isum)` is exact; the product of two f16 values (11 significant bits
//!   each, magnitudes in [2^-24, 65504]) is exact in f32, so `scale` never
//!   rounds and `dw * da == da * dw`.
//! - Every term is a multiple of 2^-48 and acc starts at +0, so a nonzero
//!   acc is never below 2^-71: no f32 subnormal ever occurs (DAZ/FTZ could
//!   not change the bits, but a kernel must widen f16 subnormals exactly),
//!   and acc is never -0.
//! - What does change the bits: fusing (mul then add rounds twice), the
//!   block order, summing integer sums of several blocks before scaling, or
//!   adding the Q4_1 min term elsewhere than right after its block's main
//!   term. Thread count and tiling must not change this order.
//! - Non-finite scales (an f16 inf or NaN) give inf/NaN as IEEE says; which
//!   NaN bit pattern comes out is not defined here: compare NaN as NaN.
//!
//! # Non-finite inputs to the quantizers
//!
//! llama.cpp's reference quantizers leave them undefined (NaN comparisons
//! in MAX, float -> int8 conversion of NaN). Here a block with any NaN or
//! +-inf element is stored as "poisoned": every f16 field (d, and m or s)
//! is the quiet NaN 0x7E00 and every quant is the code of zero (i8 0, Q4_0
//! nibble 8, Q4_1 nibble 0). It decodes to NaN and makes every dot product
//! that uses it NaN. Nothing panics.

use half::f16;
use std::fmt;

/// Elements per quantized block.
pub const QK: usize = 32;

/// The f16 stored in every scale field of a block with a NaN or inf input.
pub const POISON_F16: u16 = 0x7E00;

/// Row storage formats the oracle understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockType {
    Q4_0,
    Q4_1,
    Q8_0,
    Q8_1,
    F16,
    Bf16,
    F32,
}

impl BlockType {
    /// Elements per block: 32 for the quantized types, 1 otherwise.
    pub const fn block_elems(self) -> usize {
        match self {
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 | Self::Q8_1 => QK,
            Self::F16 | Self::Bf16 | Self::F32 => 1,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
            Self::Q8_1 => 36,
            Self::F16 | Self::Bf16 => 2,
            Self::F32 => 4,
        }
    }

    /// Bytes of a row of `k` elements.
    ///
    /// # Errors
    /// [`QuantError::KNotBlockMultiple`] unless `k` is a multiple of
    /// [`Self::block_elems`]; [`QuantError::SizeOverflow`] if it overflows.
    pub fn row_bytes(self, k: usize) -> Result<usize, QuantError> {
        if !k.is_multiple_of(self.block_elems()) {
            return Err(QuantError::KNotBlockMultiple { ty: self, k });
        }
        (k / self.block_elems()).checked_mul(self.block_bytes()).ok_or(QuantError::SizeOverflow)
    }
}

/// Why a quantized operation was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantError {
    /// `k` is not a multiple of the block size of `ty`.
    KNotBlockMultiple { ty: BlockType, k: usize },
    /// A slice has the wrong length (`what` names it; bytes or elements).
    WrongLength { what: &'static str, expected: usize, actual: usize },
    /// A size computation overflowed `usize`.
    SizeOverflow,
    /// This (weights, activations) pair has no defined dot product.
    UnsupportedPair { weights: BlockType, activations: BlockType },
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KNotBlockMultiple { ty, k } => {
                write!(f, "k = {k} is not a multiple of the {ty:?} block size {}", ty.block_elems())
            }
            Self::WrongLength { what, expected, actual } => {
                write!(f, "{what}: expected length {expected}, got {actual}")
            }
            Self::SizeOverflow => write!(f, "size computation overflowed"),
            Self::UnsupportedPair { weights, activations } => {
                write!(f, "no quantized dot product for {weights:?} weights with {activations:?} activations")
            }
        }
    }
}

impl std::error::Error for QuantError {}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), QuantError> {
    if expected == actual {
        Ok(())
    } else {
        Err(QuantError::WrongLength { what, expected, actual })
    }
}

/// The f16 at byte `at`, widened to f32 exactly (NaN stays NaN).
fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// Nibble of element `e` (0..32) of a 16-byte Q4 quant array.
fn nibble(qs: &[u8], e: usize) -> u8 {
    if e < QK / 2 {
        qs[e] & 0x0F
    } else {
        qs[e - QK / 2] >> 4
    }
}

/// Decodes a row of `k` elements to f32. Per element:
///
/// - Q4_0: `x = f32(d) * f32(q - 8)`; Q8_0, Q8_1: `x = f32(d) * f32(q)`
///   (the Q8_1 s is not used). One f32 multiply, which is exact (11 x 8
///   significant bits, far from under/overflow): no rounding happens at
///   all; only `inf * 0` or a NaN d gives NaN.
/// - Q4_1: `x = f32(d) * f32(q) + f32(m)`: the multiply is exact, the add
///   rounds once to nearest even (so this equals `fma(d, q, m)`).
/// - F16: exact widening (`half`); BF16: the bits shifted left by 16
///   (exact); F32: the bits as stored. NaN payloads survive except that f16
///   signalling NaNs are quieted.
///
/// `f32(d)` is the exact widening of the stored f16.
///
/// # Errors
/// `k` not a multiple of the block size, or `bytes.len()` not the row size.
pub fn decode_row(ty: BlockType, bytes: &[u8], k: usize) -> Result<Vec<f32>, QuantError> {
    check_len("row bytes", ty.row_bytes(k)?, bytes.len())?;
    let mut out = Vec::with_capacity(k);
    for blk in bytes.chunks_exact(ty.block_bytes()) {
        match ty {
            BlockType::Q4_0 => {
                let d = f16_at(blk, 0);
                out.extend((0..QK).map(|e| d * (i32::from(nibble(&blk[2..], e)) - 8) as f32));
            }
            BlockType::Q4_1 => {
                let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
                out.extend((0..QK).map(|e| d * f32::from(nibble(&blk[4..], e)) + m));
            }
            BlockType::Q8_0 | BlockType::Q8_1 => {
                let d = f16_at(blk, 0);
                let qs = &blk[ty.block_bytes() - QK..];
                out.extend(qs.iter().map(|&q| d * f32::from(q as i8)));
            }
            BlockType::F16 => out.push(f16_at(blk, 0)),
            BlockType::Bf16 => out.push(f32::from_bits(u32::from(u16::from_le_bytes([blk[0], blk[1]])) << 16)),
            BlockType::F32 => out.push(f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]])),
        }
    }
    Ok(out)
}

fn assert_blocks(len: usize) {
    assert!(len.is_multiple_of(QK), "row length {len} is not a multiple of {QK}");
}

fn push_f16(out: &mut Vec<u8>, x: f32) {
    out.extend_from_slice(&f16::from_f32(x).to_bits().to_le_bytes());
}

fn push_poison(out: &mut Vec<u8>, scale_fields: usize, quant_bytes: usize, zero_code: u8) {
    for _ in 0..scale_fields {
        out.extend_from_slice(&POISON_F16.to_le_bytes());
    }
    out.extend(std::iter::repeat_n(zero_code, quant_bytes));
}

fn all_finite(x: &[f32]) -> bool {
    x.iter().all(|v| v.is_finite())
}

/// One Q8 block of finite values: the f32 scale d and the quants.
fn q8_block(x: &[f32]) -> (f32, [i8; QK]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    (d, std::array::from_fn(|j| (x[j] * id).round() as i8))
}

/// Quantizes activations to Q8_0 (llama.cpp's `quantize_row_q8_0_ref`).
/// Per block of 32 finite values, in f32 with round to nearest even:
///
/// - `amax = max |x_j|` (exact), `d = amax / 127` (one rounding),
///   `id = 1 / d` (one rounding), or `0` if `d == 0`;
/// - `q_j = (x_j * id).round() as i8`: one rounding of the product, then
///   round half away from zero (C `roundf`), then Rust's saturating cast.
///   For `d` normal, `|q_j| <= 127`; the cast only matters when `1/d`
///   overflows (amax < ~127 * 2^-128), where `0 * inf` is NaN -> 0 and
///   `+-inf` clamps to 127 / -128;
/// - stored d = `f16::from_f32(d)` (nearest even; amax >= ~8.32e6 gives
///   an f16 inf). An all-zero block (either sign) gives d = 0, q = 0.
///
/// A block with a NaN or inf element is poisoned (module docs).
///
/// # Panics
/// If `x.len()` is not a multiple of 32.
pub fn quantize_row_q8_0(x: &[f32]) -> Vec<u8> {
    quantize_q8(x, false)
}

/// Q8_0 (`with_s` false) or Q8_1 rows, one definition for both.
fn quantize_q8(x: &[f32], with_s: bool) -> Vec<u8> {
    assert_blocks(x.len());
    let mut out = Vec::with_capacity(x.len() / QK * (34 + 2 * usize::from(with_s)));
    for blk in x.chunks_exact(QK) {
        if !all_finite(blk) {
            push_poison(&mut out, 1 + usize::from(with_s), QK, 0);
            continue;
        }
        let (d, q) = q8_block(blk);
        push_f16(&mut out, d);
        if with_s {
            push_f16(&mut out, q.iter().map(|&v| i32::from(v)).sum::<i32>() as f32 * d);
        }
        out.extend(q.iter().map(|&v| v as u8));
    }
    out
}

/// Quantizes activations to Q8_1 (llama.cpp's `quantize_row_q8_1_ref`): d
/// and q exactly as [`quantize_row_q8_0`], plus
/// `s = f16::from_f32(f32(sum_j q_j) * d)` with the **f32** d, not the
/// f16-rounded one: the integer sum is exact in f32, the multiply rounds
/// once to f32, then the f16 conversion rounds again (nearest even both
/// times). This is llama.cpp's choice (`y.s = FP32_TO_FP16(sum*d)`), kept
/// so our bytes equal its reference bytes; it means s is not exactly
/// `f16(d) * sum(q)`, which is harmless because the dot product reads s
/// from the bytes. A poisoned block has d = s = 0x7E00 and q = 0.
///
/// # Panics
/// If `x.len()` is not a multiple of 32.
pub fn quantize_row_q8_1(x: &[f32]) -> Vec<u8> {
    quantize_q8(x, true)
}

/// Quantizes weights to Q8_0: the same function as activations
/// ([`quantize_row_q8_0`]), as in llama.cpp.
///
/// # Panics
/// If `x.len()` is not a multiple of 32.
pub fn quantize_row_q8_0_weights(x: &[f32]) -> Vec<u8> {
    quantize_row_q8_0(x)
}

/// Packs 32 nibbles: byte j = q[j] | q[j + 16] << 4.
fn pack_nibbles(out: &mut Vec<u8>, q: &[u8; QK]) {
    out.extend((0..QK / 2).map(|j| q[j] | (q[j + QK / 2] << 4)));
}

/// Quantizes weights to Q4_0 (llama.cpp's `quantize_row_q4_0_ref`). Per
/// block of 32 finite values, in f32 with round to nearest even:
///
/// - `max` = the first element with the largest `|x_j|` (strict `<`
///   scan, sign kept), `d = max / -8` (one rounding), `id = 1 / d`, or `0`
///   if `d == 0`;
/// - `q_j = min(15, (x_j * id + 8.5) as u8)`: the product and the add each
///   round once, the cast truncates toward zero (saturating; NaN -> 0).
///   `x == max` gives 0, `x == -max` gives 16 -> 15;
/// - stored d = `f16::from_f32(d)`, nibbles packed as in the module table.
///
/// A block with a NaN or inf element is poisoned (d = 0x7E00, nibbles 8).
///
/// # Panics
/// If `x.len()` is not a multiple of 32.
pub fn quantize_row_q4_0(x: &[f32]) -> Vec<u8> {
    assert_blocks(x.len());
    let mut out = Vec::with_capacity(x.len() / QK * BlockType::Q4_0.block_bytes());
    for blk in x.chunks_exact(QK) {
        if !all_finite(blk) {
            push_poison(&mut out, 1, QK / 2, 0x88);
            continue;
        }
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in blk {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let q: [u8; QK] = std::array::from_fn(|j| ((blk[j] * id + 8.5) as u8).min(15));
        push_f16(&mut out, d);
        pack_nibbles(&mut out, &q);
    }
    out
}

/// Quantizes weights to Q4_1 (llama.cpp's `quantize_row_q4_1_ref`). Per
/// block of 32 finite values, in f32 with round to nearest even:
///
/// - `min`, `max` over the block, `d = (max - min) / 15` (two roundings;
///   the subtraction may overflow to inf, then id = 0 and all q = 0),
///   `id = 1 / d`, or `0` if `d == 0`;
/// - `q_j = min(15, ((x_j - min) * id + 0.5) as u8)`: subtract, multiply,
///   add each round once, the cast truncates (saturating; NaN -> 0);
/// - stored d = `f16::from_f32(d)`, m = `f16::from_f32(min)` (q is computed
///   against the f32 min, as llama.cpp does).
///
/// A block with a NaN or inf element is poisoned (d = m = 0x7E00,
/// nibbles 0).
///
/// # Panics
/// If `x.len()` is not a multiple of 32.
pub fn quantize_row_q4_1(x: &[f32]) -> Vec<u8> {
    assert_blocks(x.len());
    let mut out = Vec::with_capacity(x.len() / QK * BlockType::Q4_1.block_bytes());
    for blk in x.chunks_exact(QK) {
        if !all_finite(blk) {
            push_poison(&mut out, 2, QK / 2, 0);
            continue;
        }
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in blk {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let q: [u8; QK] = std::array::from_fn(|j| (((blk[j] - min) * id + 0.5) as u8).min(15));
        push_f16(&mut out, d);
        push_f16(&mut out, min);
        pack_nibbles(&mut out, &q);
    }
    out
}

/// The integer quant of weight element `e` of one block, as the dot
/// product uses it.
fn weight_q(wt: BlockType, blk: &[u8], e: usize) -> i32 {
    match wt {
        BlockType::Q4_0 => i32::from(nibble(&blk[2..], e)) - 8,
        BlockType::Q4_1 => i32::from(nibble(&blk[4..], e)),
        _ => i32::from(blk[2 + e] as i8),
    }
}

/// One output element, in exactly the order of the module docs.
fn dot_row(wt: BlockType, at: BlockType, a: &[u8], w: &[u8]) -> f32 {
    let mut acc = 0.0f32;
    for (ab, wb) in a.chunks_exact(at.block_bytes()).zip(w.chunks_exact(wt.block_bytes())) {
        let qa = &ab[at.block_bytes() - QK..];
        let isum: i32 = (0..QK).map(|e| weight_q(wt, wb, e) * i32::from(qa[e] as i8)).sum();
        let scale = f16_at(wb, 0) * f16_at(ab, 0);
        acc = (isum as f32).mul_add(scale, acc);
        if wt == BlockType::Q4_1 {
            acc = f16_at(wb, 2).mul_add(f16_at(ab, 2), acc);
        }
    }
    acc
}

/// The reference quantized GEMM: `c[i*n + j] = dot(a row i, w row j)`
/// (overwrite), each dot computed in THE order of the module docs.
/// `a_rows` holds `m` activation rows and `w_rows` `n` weight rows, each of
/// `k` elements (a GGUF linear weight with dims `[k, n]` is exactly `n`
/// such rows). `k == 0` gives +0.0 everywhere.
///
/// # Errors
/// An unsupported (weights, activations) pair (only (Q4_0, Q8_0),
/// (Q8_0, Q8_0), (Q4_1, Q8_1) are defined), `k` not a multiple of 32, a
/// slice of the wrong length, or a size overflow.
#[allow(clippy::too_many_arguments)]
pub fn gemm_quant(
    wt: BlockType,
    at: BlockType,
    m: usize,
    n: usize,
    k: usize,
    a_rows: &[u8],
    w_rows: &[u8],
    c: &mut [f32],
) -> Result<(), QuantError> {
    use BlockType::{Q4_0, Q4_1, Q8_0, Q8_1};
    if !matches!((wt, at), (Q4_0, Q8_0) | (Q8_0, Q8_0) | (Q4_1, Q8_1)) {
        return Err(QuantError::UnsupportedPair { weights: wt, activations: at });
    }
    let (a_row, w_row) = (at.row_bytes(k)?, wt.row_bytes(k)?);
    check_len("activation bytes", m.checked_mul(a_row).ok_or(QuantError::SizeOverflow)?, a_rows.len())?;
    check_len("weight bytes", n.checked_mul(w_row).ok_or(QuantError::SizeOverflow)?, w_rows.len())?;
    check_len("C elements", m.checked_mul(n).ok_or(QuantError::SizeOverflow)?, c.len())?;
    for i in 0..m {
        for j in 0..n {
            let a = &a_rows[i * a_row..(i + 1) * a_row];
            let w = &w_rows[j * w_row..(j + 1) * w_row];
            c[i * n + j] = dot_row(wt, at, a, w);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategies::standard_normal;
    use approx::assert_abs_diff_eq;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn normal_row(len: usize, sigma: f64, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len).map(|_| (sigma * standard_normal(&mut rng)) as f32).collect()
    }

    fn quantize(ty: BlockType, x: &[f32]) -> Vec<u8> {
        match ty {
            BlockType::Q4_0 => quantize_row_q4_0(x),
            BlockType::Q4_1 => quantize_row_q4_1(x),
            BlockType::Q8_0 => quantize_row_q8_0_weights(x),
            _ => quantize_row_q8_1(x),
        }
    }

    /// A Q8 block from raw fields (`s` only for Q8_1).
    fn q8_block_bytes(d: u16, s: Option<u16>, q: &[i8; QK]) -> Vec<u8> {
        let mut v = d.to_le_bytes().to_vec();
        if let Some(s) = s {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v.extend(q.iter().map(|&x| x as u8));
        v
    }

    /// A Q4 block from raw fields (`m` only for Q4_1) and 32 nibbles.
    fn q4_block_bytes(d: u16, m: Option<u16>, q: &[u8; QK]) -> Vec<u8> {
        let mut v = d.to_le_bytes().to_vec();
        if let Some(m) = m {
            v.extend_from_slice(&m.to_le_bytes());
        }
        pack_nibbles(&mut v, q);
        v
    }

    #[test]
    fn sizes_and_errors() {
        assert_eq!(BlockType::Q4_1.row_bytes(64), Ok(40));
        assert_eq!(BlockType::F32.row_bytes(3), Ok(12));
        assert_eq!(
            decode_row(BlockType::Q8_0, &[0; 34], 31),
            Err(QuantError::KNotBlockMultiple { ty: BlockType::Q8_0, k: 31 })
        );
        let err = decode_row(BlockType::Q4_0, &[0; 17], 32).unwrap_err();
        assert_eq!(err, QuantError::WrongLength { what: "row bytes", expected: 18, actual: 17 });
        let mut c = [0.0f32; 1];
        let e = gemm_quant(BlockType::Q4_1, BlockType::Q8_0, 1, 1, 32, &[0; 34], &[0; 20], &mut c);
        assert_eq!(e, Err(QuantError::UnsupportedPair { weights: BlockType::Q4_1, activations: BlockType::Q8_0 }));
        let e = gemm_quant(BlockType::Q8_0, BlockType::Q8_0, 1, 1, 32, &[0; 34], &[0; 34], &mut [0.0; 2]);
        assert_eq!(e, Err(QuantError::WrongLength { what: "C elements", expected: 1, actual: 2 }));
    }

    #[test]
    fn decode_hand_built_blocks() {
        // Q4_0, d = -0.5 (0xB800): byte 0 = 0xF0 -> element 0 nibble 0, element 16 nibble 15.
        let mut q = [8u8; QK];
        q[0] = 0;
        q[16] = 15;
        q[3] = 9;
        let x = decode_row(BlockType::Q4_0, &q4_block_bytes(0xB800, None, &q), 32).unwrap();
        assert_eq!((x[0], x[16], x[3], x[1]), (4.0, -3.5, -0.5, -0.0));
        // Q4_1, d = 0.25 (0x3400), m = -1.5 (0xBE00): x = q/4 - 1.5.
        let q: [u8; QK] = std::array::from_fn(|e| (e % 16) as u8);
        let x = decode_row(BlockType::Q4_1, &q4_block_bytes(0x3400, Some(0xBE00), &q), 32).unwrap();
        assert_eq!((x[0], x[15], x[17], x[31]), (-1.5, 2.25, -1.25, 2.25));
        // Q8_0, d = -2 (0xC000); Q8_1 ignores s.
        let q: [i8; QK] = std::array::from_fn(|e| e as i8 * 4 - 64);
        let x = decode_row(BlockType::Q8_0, &q8_block_bytes(0xC000, None, &q), 32).unwrap();
        assert_eq!((x[0], x[31]), (128.0, -120.0));
        let x = decode_row(BlockType::Q8_1, &q8_block_bytes(0x3C00, Some(0x7C00), &q), 32).unwrap();
        assert_eq!((x[0], x[16]), (-64.0, 0.0));
        // F16 1.5 and the smallest subnormal, BF16 -2, F32 bits as stored.
        assert_eq!(decode_row(BlockType::F16, &[0x00, 0x3E, 0x01, 0x00], 2).unwrap(), [1.5, 2f32.powi(-24)]);
        assert_eq!(decode_row(BlockType::Bf16, &[0x00, 0xC0], 1).unwrap(), [-2.0]);
        assert_eq!(decode_row(BlockType::F32, &0.1f32.to_le_bytes(), 1).unwrap(), [0.1]);
    }

    #[test]
    fn q8_exact_bytes_half_way_rounding() {
        // amax 127 -> d = 1, id = 1, so q = round-half-away(x) exactly.
        let mut x = [0.0f32; QK];
        x[..6].copy_from_slice(&[127.0, 2.5, -2.5, 0.5, -0.5, 1.5]);
        let mut q = [0i8; QK];
        q[..6].copy_from_slice(&[127, 3, -3, 1, -1, 2]);
        assert_eq!(quantize_row_q8_0(&x), q8_block_bytes(0x3C00, None, &q));
        // sum(q) = 129, s = f16(129) = 0x5808.
        assert_eq!(quantize_row_q8_1(&x), q8_block_bytes(0x3C00, Some(0x5808), &q));
    }

    #[test]
    fn q8_exact_bytes_zero_and_single_large_value() {
        let mut x = [0.0f32; QK];
        x[7] = -0.0;
        assert_eq!(quantize_row_q8_1(&x), q8_block_bytes(0, Some(0), &[0; QK]));
        x[5] = 1000.0;
        let mut q = [0i8; QK];
        q[5] = 127;
        // d = 1000/127 = 7.874016 -> f16 7.875 = 0x47E0; s = f16(127 * d) = f16(1000) = 0x63D0.
        assert_eq!(quantize_row_q8_1(&x), q8_block_bytes(0x47E0, Some(0x63D0), &q));
        // Q4_0: max = 1000, d = -125 (0xD7D0), x = 1000 -> 0, zeros -> 8.
        let mut q = [8u8; QK];
        q[5] = 0;
        assert_eq!(quantize_row_q4_0(&x), q4_block_bytes(0xD7D0, None, &q));
    }

    #[test]
    fn q8_1_s_uses_the_f32_scale() {
        // All 0.3: d = 0.3/127 = 0.0023622 (f32), f16(d) = 0x18D6 = 0.0023613.
        // s = f16(4064 * d) = f16(9.6000004) = 0x48CD, while the f16 d would give
        // f16(4064 * f16(d)) = f16(9.5963135) = 0x48CC.
        let bytes = quantize_row_q8_1(&[0.3f32; QK]);
        assert_eq!(bytes[..4], [0xD6, 0x18, 0xCD, 0x48]);
        let d16 = f16::from_bits(0x18D6).to_f32();
        assert_eq!(f16::from_f32(4064.0 * d16).to_bits(), 0x48CC);
    }

    #[test]
    fn q4_exact_bytes() {
        // Q4_1: min -1, max 14 -> d = 1, m = -1; q = trunc(x + 1 + 0.5).
        let mut x = [0.0f32; QK];
        x[..5].copy_from_slice(&[-1.0, 14.0, 0.5, 1.4999, 6.0]);
        let mut q = [1u8; QK];
        q[..5].copy_from_slice(&[0, 15, 2, 2, 7]);
        assert_eq!(quantize_row_q4_1(&x), q4_block_bytes(0x3C00, Some(0xBC00), &q));
        // Q4_0: the first largest magnitude wins (-8 before 8): d = 1, -8 -> 0, 8 -> 16 -> 15.
        x[..5].copy_from_slice(&[-8.0, 8.0, 0.5, -0.5, 2.0]);
        let mut q = [8u8; QK];
        q[..5].copy_from_slice(&[0, 15, 9, 8, 10]);
        assert_eq!(quantize_row_q4_0(&x), q4_block_bytes(0x3C00, None, &q));
    }

    #[test]
    fn round_trip_error_bounds() {
        let x = normal_row(32 * 64, 1.5, 11);
        let check = |ty: BlockType, bytes: Vec<u8>, bound: &dyn Fn(&[f32]) -> f64| {
            let y = decode_row(ty, &bytes, x.len()).unwrap();
            for (xb, yb) in x.chunks(QK).zip(y.chunks(QK)) {
                let b = bound(xb);
                for (&u, &v) in xb.iter().zip(yb) {
                    assert_abs_diff_eq!(f64::from(u), f64::from(v), epsilon = b);
                }
            }
        };
        let amax = |b: &[f32]| b.iter().fold(0.0f64, |a, v| a.max(f64::from(v.abs())));
        let range = |b: &[f32]| {
            let (lo, hi) = b.iter().fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v.into()), h.max(v.into())));
            (lo, hi - lo)
        };
        // Half a step, plus the f16 error of d times the largest |q|, plus slack.
        check(BlockType::Q8_0, quantize_row_q8_0_weights(&x), &|b| amax(b) * (0.5 / 127.0 + 2f64.powi(-11) + 1e-6));
        check(BlockType::Q8_1, quantize_row_q8_1(&x), &|b| amax(b) * (0.5 / 127.0 + 2f64.powi(-11) + 1e-6));
        // Q4_0 clamps -max to 7 steps: a full step d = amax/8.
        check(BlockType::Q4_0, quantize_row_q4_0(&x), &|b| amax(b) * (1.0 / 8.0 + 2f64.powi(-11) + 1e-6));
        check(BlockType::Q4_1, quantize_row_q4_1(&x), &|b| {
            let (lo, r) = range(b);
            r * (0.5 / 15.0 + 2f64.powi(-11)) + lo.abs() * 2f64.powi(-11) + 1e-6
        });
    }

    #[test]
    fn non_finite_inputs_poison_the_block_only() {
        let mut x = normal_row(64, 1.0, 5);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::from_bits(0xFF80_0001)] {
            x[33] = bad;
            let q80 = quantize_row_q8_0(&x);
            assert_eq!(q80[34..], q8_block_bytes(POISON_F16, None, &[0; QK])[..]);
            assert_eq!(q80[..34], quantize_row_q8_0(&x[..32])[..]);
            assert_eq!(quantize_row_q8_1(&x)[36..], q8_block_bytes(POISON_F16, Some(POISON_F16), &[0; QK])[..]);
            assert_eq!(quantize_row_q4_0(&x)[18..], q4_block_bytes(POISON_F16, None, &[8; QK])[..]);
            assert_eq!(quantize_row_q4_1(&x)[20..], q4_block_bytes(POISON_F16, Some(POISON_F16), &[0; QK])[..]);
            let y = decode_row(BlockType::Q8_0, &q80, 64).unwrap();
            assert!(y[..32].iter().all(|v| v.is_finite()) && y[32..].iter().all(|v| v.is_nan()));
            let w = quantize_row_q8_0_weights(&normal_row(64, 1.0, 6));
            let mut c = [0.0f32];
            gemm_quant(BlockType::Q8_0, BlockType::Q8_0, 1, 1, 64, &q80, &w, &mut c).unwrap();
            assert!(c[0].is_nan());
        }
        // Huge and tiny finite blocks do not panic either.
        let big = [f32::MAX, -f32::MAX, 1.0, f32::MIN_POSITIVE].repeat(8);
        let tiny = [1e-45f32, -1e-45, 3e-39, 0.0].repeat(8);
        for v in [&big, &tiny] {
            for ty in [BlockType::Q8_0, BlockType::Q8_1, BlockType::Q4_0, BlockType::Q4_1] {
                decode_row(ty, &quantize(ty, v), 32).unwrap();
            }
        }
    }

    /// Small-integer data: every step is exact, so THE order equals the
    /// exact f64 sum of decoded products, block by block.
    #[test]
    fn dot_matches_exact_f64_on_small_integers() {
        let k = 4 * QK;
        let (m, n) = (3, 2);
        let da = [0x3C00u16, 0x4000, 0x3800, 0x3C00]; // 1, 2, 0.5, 1 per block
        let qa = |i: usize, e: usize| ((i * 7 + e * 3) % 11) as i8 - 5;
        let mut a8_0 = Vec::new();
        let mut a8_1 = Vec::new();
        for i in 0..m {
            for (b, &d) in da.iter().enumerate() {
                let q: [i8; QK] = std::array::from_fn(|e| qa(i, b * QK + e));
                let s = f16::from_f32(f16::from_bits(d).to_f32() * q.iter().map(|&v| f32::from(v)).sum::<f32>());
                a8_0.extend(q8_block_bytes(d, None, &q));
                a8_1.extend(q8_block_bytes(d, Some(s.to_bits()), &q));
            }
        }
        let nib = |j: usize, e: usize| ((j * 5 + e) % 16) as u8;
        let (mut w40, mut w41, mut w80) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..n {
            for b in 0..k / QK {
                let q: [u8; QK] = std::array::from_fn(|e| nib(j, b * QK + e));
                w40.extend(q4_block_bytes(0x4000, None, &q)); // d = 2
                w41.extend(q4_block_bytes(0x3800, Some(0xC200), &q)); // d = 0.5, m = -3
                w80.extend(q8_block_bytes(0xBC00, None, &q.map(|v| v as i8 - 3)));
                // d = -1
            }
        }
        for (wt, at, a, w) in [
            (BlockType::Q4_0, BlockType::Q8_0, &a8_0, &w40),
            (BlockType::Q8_0, BlockType::Q8_0, &a8_0, &w80),
            (BlockType::Q4_1, BlockType::Q8_1, &a8_1, &w41),
        ] {
            let mut c = vec![f32::NAN; m * n];
            gemm_quant(wt, at, m, n, k, a, w, &mut c).unwrap();
            for i in 0..m {
                let x = decode_row(at, &a[i * a.len() / m..(i + 1) * a.len() / m], k).unwrap();
                for j in 0..n {
                    let y = decode_row(wt, &w[j * w.len() / n..(j + 1) * w.len() / n], k).unwrap();
                    let exact: f64 = x.iter().zip(&y).map(|(&u, &v)| f64::from(u) * f64::from(v)).sum();
                    assert_eq!(f64::from(c[i * n + j]), exact, "{wt:?} ({i}, {j})");
                }
            }
        }
    }

    /// The order is part of the definition: summing the integer sums first,
    /// or rounding the product before the add, gives other bits.
    #[test]
    fn epilogue_order_matters() {
        let d = f16::from_f32(1.1).to_bits(); // scale = 1.0996^2, 21 significant bits
        let big = q8_block_bytes(d, None, &[127; QK]);
        let neg = q8_block_bytes(d, None, &[-127; QK]);
        let mut one = [0i8; QK];
        one[0] = 1;
        let a = [big.clone(), big.clone(), big].concat();
        let w = [q8_block_bytes(d, None, &[127; QK]), q8_block_bytes(d, None, &one), neg].concat();
        let mut c = [0.0f32];
        gemm_quant(BlockType::Q8_0, BlockType::Q8_0, 1, 1, 3 * QK, &a, &w, &mut c).unwrap();
        let scale = f16::from_bits(d).to_f32() * f16::from_bits(d).to_f32();
        let isums = [32.0 * 127.0 * 127.0, 127.0, -32.0 * 127.0 * 127.0];
        // The same order recomputed: agrees.
        let ordered = isums.iter().fold(0.0f32, |acc, &s: &f32| s.mul_add(scale, acc));
        assert_eq!(c[0].to_bits(), ordered.to_bits());
        // Integer sums first (exactly 127), one multiply: differs.
        let isum_first = isums.iter().sum::<f32>() * scale;
        assert_eq!(isum_first, 127.0 * scale);
        assert_ne!(c[0].to_bits(), isum_first.to_bits());
        // Unfused multiply then add: differs.
        let unfused = isums.iter().fold(0.0f32, |acc, &s| acc + s * scale);
        assert_ne!(c[0].to_bits(), unfused.to_bits());
    }

    #[test]
    fn quantized_gemm_close_to_f64_on_normal_data() {
        let (m, n, k) = (2, 3, 5 * QK);
        let x = normal_row(m * k, 1.0, 21);
        let wf = normal_row(n * k, 0.05, 22);
        for (wt, at) in
            [(BlockType::Q4_0, BlockType::Q8_0), (BlockType::Q8_0, BlockType::Q8_0), (BlockType::Q4_1, BlockType::Q8_1)]
        {
            let (a, w) = (quantize(at, &x), quantize(wt, &wf));
            let (xa, yw) = (decode_row(at, &a, m * k).unwrap(), decode_row(wt, &w, n * k).unwrap());
            let mut c = vec![0.0f32; m * n];
            gemm_quant(wt, at, m, n, k, &a, &w, &mut c).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let r = (0..k).map(|p| f64::from(xa[i * k + p]) * f64::from(yw[j * k + p])).sum::<f64>();
                    // Q4_1's s is rounded to f16 and not exactly f16(d) * sum(q): a looser bound.
                    let eps = if wt == BlockType::Q4_1 { 1e-2 } else { 1e-5 };
                    assert_abs_diff_eq!(f64::from(c[i * n + j]), r, epsilon = eps);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Dequantize to bf16, then dense bf16 GEMM (a prefill strategy)
// ---------------------------------------------------------------------------

/// Dequantizes a row of `k` weights to bf16 bit patterns: THE rule of the
/// "dequantize once, then dense bf16 GEMM" strategy, which every kernel
/// that claims it must reproduce bit for bit. It is not the quantized dot
/// product ([`gemm_quant`]): the weights are rounded to 8 significant bits
/// here, and the products are summed by TDPBF16PS, not per block.
///
/// Per element: `x` = the [`decode_row`] value, then `bf16 =
/// crate::bf16::f32_to_bf16(x)`, the VCVTNEPS2BF16 conversion
/// (docs/NUMERICS.md, "VCVTNEPS2BF16"): round to nearest even on normals,
/// f32 zero and subnormal inputs give a zero of the same sign, infinities
/// pass, a NaN keeps its sign and upper payload bits with the quiet bit
/// (bf16 bit 6) forced. So, per format:
///
/// - Q4_0, Q8_0 (and Q8_1, whose s is ignored): `x = f32(d) * q` is exact
///   (at most 11 + 8 significant bits), so the one rounding is the bf16
///   one. Nonzero `|x| >= 2^-24` (the smallest f16 subnormal d), never an
///   f32 subnormal, and `|x| <= 65504 * 128`, never an overflow.
/// - Q4_1: `x = f32(d) * q + f32(m)`: the add rounds to f32 (nearest even),
///   then bf16 rounds again. This double rounding IS the rule (it is what
///   decoding to f32 and narrowing gives), not an approximation of one
///   rounding of the exact value; a kernel must not fuse the two. `x` is a
///   multiple of 2^-24 below 2^21, so again no subnormal, no overflow.
/// - F16: the exact widening, then one rounding; f16 subnormals are normal
///   in bf16's range and survive (rounded). 65504 rounds up to 65536.
/// - BF16: the bits as stored, except that bf16 subnormals become a zero of
///   the same sign and signalling NaNs are quieted (payload kept). Neither
///   is visible through TDPBF16PS, which applies DAZ and quiets NaNs
///   (docs/NUMERICS.md, "TDPBF16PS" rules 4 and 7), so the GEMM sees BF16
///   weights exactly.
/// - F32: one rounding; f32 subnormals become signed zero; values at or
///   above the largest bf16 halfway point (e.g. `f32::MAX`) round to inf.
///
/// Non-finite scales (NaN, inf and which NaN comes out):
///
/// - a NaN d (or F16 NaN) widens to `sign | 0x7FC0_0000 | payload << 13`
///   (quieted, payload kept), and `d * q` is that NaN, so every element of
///   the block is `sign | 0x7FC0 | (payload >> 3)` in bf16;
/// - an infinite d gives `+-inf` where `q != 0` and the default NaN
///   `0xFFC0_0000` (x86's "real indefinite", bf16 `0xFFC0`) where `q == 0`
///   (`inf * 0`);
/// - Q4_1: the product's NaN wins. If `d * q` is NaN the element is that
///   NaN, whatever m is; otherwise a NaN m gives quiet(m), and `+-inf + -+inf`
///   (inf d with an opposite inf m) gives the default NaN. (Rust does not
///   promise which NaN operand an add returns, so this case is fixed here
///   explicitly instead of being left to [`decode_row`]'s add.)
///
/// # Errors
/// As [`decode_row`]: `k` not a multiple of the block size (32 for the
/// quantized types, 1 otherwise), or `bytes.len()` not the row size.
pub fn dequantize_row_to_bf16(ty: BlockType, bytes: &[u8], k: usize) -> Result<Vec<u16>, QuantError> {
    let mut x = decode_row(ty, bytes, k)?;
    if ty == BlockType::Q4_1 {
        // The product's NaN wins over m's (see above).
        for (blk, xs) in bytes.chunks_exact(ty.block_bytes()).zip(x.chunks_exact_mut(QK)) {
            let d = f16_at(blk, 0);
            for (e, v) in xs.iter_mut().enumerate() {
                let p = d * f32::from(nibble(&blk[4..], e));
                if p.is_nan() {
                    *v = p;
                }
            }
        }
    }
    Ok(x.into_iter().map(crate::bf16::f32_to_bf16).collect())
}

/// The reference for "dequantize the weights to bf16 once, then the dense
/// bf16 GEMM over the full K" (overwrite): `c[i*n + j]` for `i < m`, `j < n`.
///
/// - `a` holds `m` activation rows of `k` f32 (row-major); each element is
///   narrowed with `crate::bf16::f32_to_bf16` (the same VCVTNEPS2BF16 rule
///   as the weights, see [`dequantize_row_to_bf16`]).
/// - `w_rows` holds `n` GGUF weight rows of `k` elements in format `wt` (a
///   linear weight with dims `[k, n]`): weight row `j` is output column
///   `j`, i.e. `B = W^T`, each row dequantized by [`dequantize_row_to_bf16`].
/// - C starts at +0.0 and the product is [`crate::gemm::gemm_bf16_amx`] with
///   `pairs_per_tdp`: TDPBF16PS per K chunk of `pairs_per_tdp` pairs, K
///   zero-padded to whole chunks (docs/NUMERICS.md, "TDPBF16PS"). For the
///   library's packed B, `pairs_per_tdp` is `BLayout::k_groups_per_tdp`
///   (16 by default): the K chunk the packing fixes.
///
/// Any `k` that is a multiple of `wt`'s block size is accepted; `k == 0`
/// gives +0.0 everywhere.
///
/// # Errors
/// `k` not a multiple of the block size, a slice of the wrong length
/// (`a`: `m * k`, `w_rows`: `n` rows, `c`: `m * n`), or a size overflow.
///
/// # Panics
/// If `pairs_per_tdp` is zero (as [`crate::gemm::gemm_bf16_amx`]).
#[allow(clippy::too_many_arguments)]
pub fn gemm_dequant_bf16_reference(
    wt: BlockType,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    w_rows: &[u8],
    pairs_per_tdp: usize,
    c: &mut [f32],
) -> Result<(), QuantError> {
    let w_row = wt.row_bytes(k)?;
    check_len("activation elements", m.checked_mul(k).ok_or(QuantError::SizeOverflow)?, a.len())?;
    check_len("weight bytes", n.checked_mul(w_row).ok_or(QuantError::SizeOverflow)?, w_rows.len())?;
    check_len("C elements", m.checked_mul(n).ok_or(QuantError::SizeOverflow)?, c.len())?;
    let a16: Vec<u16> = a.iter().map(|&x| crate::bf16::f32_to_bf16(x)).collect();
    // B is k x n: B[p][j] = W[j][p].
    let mut b = vec![0u16; k * n];
    if w_row > 0 {
        for (j, row) in w_rows.chunks_exact(w_row).enumerate() {
            for (p, v) in dequantize_row_to_bf16(wt, row, k)?.into_iter().enumerate() {
                b[p * n + j] = v;
            }
        }
    }
    c.fill(0.0);
    crate::gemm::gemm_bf16_amx(m, n, k, &a16, &b, c, pairs_per_tdp);
    Ok(())
}

#[cfg(test)]
mod dequant_bf16_tests {
    use super::*;

    fn q4_block(d: u16, m: Option<u16>, q: &[u8; QK]) -> Vec<u8> {
        let mut v = d.to_le_bytes().to_vec();
        if let Some(m) = m {
            v.extend_from_slice(&m.to_le_bytes());
        }
        pack_nibbles(&mut v, q);
        v
    }

    fn q8_block(d: u16, q: &[i8; QK]) -> Vec<u8> {
        let mut v = d.to_le_bytes().to_vec();
        v.extend(q.iter().map(|&x| x as u8));
        v
    }

    #[test]
    fn exact_values_and_rne_ties() {
        // Q8_0, d = 1: q = 127 = 0b111_1111 (7 bits) is exact in bf16;
        // -127 too; 0 stays +0 (1 * 0 = +0), and d = -1 gives -0.
        let mut q = [0i8; QK];
        q[..4].copy_from_slice(&[127, -127, 1, -128]);
        let x = dequantize_row_to_bf16(BlockType::Q8_0, &q8_block(0x3C00, &q), 32).unwrap();
        assert_eq!(x[..5], [0x42FE, 0xC2FE, 0x3F80, 0xC300, 0x0000]);
        let x = dequantize_row_to_bf16(BlockType::Q8_0, &q8_block(0xBC00, &q), 32).unwrap();
        assert_eq!(x[4], 0x8000);
        // d = 1 + 2^-10 (f16 0x3C01): d = 0x3F802000 rounds down to 0x3F80, and
        // 3d = 0x40403000 to 0x4040 (below half).
        // d = 1 + 2^-8 (0x3C04) = 0x3F808000: a tie, to even 0x3F80; 3d = 0x4040C000:
        // above half, up to 0x4041. d = 1 + 3 * 2^-8 (0x3C0C) = 0x3F818000: a tie
        // between 0x3F81 and 0x3F82, to even 0x3F82.
        let mut q = [0i8; QK];
        q[..2].copy_from_slice(&[1, 3]);
        let row = |d: u16| dequantize_row_to_bf16(BlockType::Q8_0, &q8_block(d, &q), 32).unwrap();
        assert_eq!(row(0x3C01)[..2], [0x3F80, 0x4040]);
        assert_eq!(row(0x3C04)[..2], [0x3F80, 0x4041]);
        assert_eq!(row(0x3C0C)[0], 0x3F82);
        // The same ties through F16 and F32 rows.
        let f16_row = [0x3C04u16, 0x3C0C, 0xBC0C, 0x7BFF, 0x0001];
        let bytes: Vec<u8> = f16_row.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            dequantize_row_to_bf16(BlockType::F16, &bytes, 5).unwrap(),
            // 65504 rounds up to 65536; the smallest f16 subnormal 2^-24 is a bf16 normal.
            [0x3F80, 0x3F82, 0xBF82, 0x4780, 0x3380]
        );
        let f32_row = [f32::from_bits(0x3F80_8000), f32::from_bits(0x3F81_8000), f32::from_bits(0x3F80_8001), 0.1];
        let bytes: Vec<u8> = f32_row.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(dequantize_row_to_bf16(BlockType::F32, &bytes, 4).unwrap(), [0x3F80, 0x3F82, 0x3F81, 0x3DCD]);
    }

    #[test]
    fn q4_formats_and_double_rounding() {
        // Q4_0, d = -0.5: nibble 0 -> 4, 15 -> -3.5, 8 -> -0.
        let mut q = [8u8; QK];
        q[0] = 0;
        q[16] = 15;
        let x = dequantize_row_to_bf16(BlockType::Q4_0, &q4_block(0xB800, None, &q), 32).unwrap();
        assert_eq!((x[0], x[16], x[1]), (0x4080, 0xC060, 0x8000));
        // Q4_1, d = 1 + 2^-10 (0x3C01), m = 2048 (0x6800), q = 15: x = 2063 + 15 * 2^-10
        // is exact in f32; bf16 (steps of 16 there) rounds it to 2064 (0x4501).
        let q: [u8; QK] = std::array::from_fn(|e| if e == 0 { 15 } else { 1 });
        let x = dequantize_row_to_bf16(BlockType::Q4_1, &q4_block(0x3C01, Some(0x6800), &q), 32).unwrap();
        assert_eq!(x[0], 0x4501);
        // d = 2^-14 (0x0400), m = 1024 (0x6400), q = 1: 1024 + 2^-14 is an f32 tie
        // (half of the ulp 2^-13), to even 1024 (0x4480).
        let x = dequantize_row_to_bf16(BlockType::Q4_1, &q4_block(0x0400, Some(0x6400), &q), 32).unwrap();
        assert_eq!(x[1], 0x4480);
        // Double rounding is the rule: d = 2^-24 (f16 0x0001), m = 257 (0x5C04), q = 1.
        // The f32 add rounds 257 + 2^-24 to 257, which is a bf16 tie (steps of 2) and
        // goes to even 256 (0x4380); one rounding of the exact value, just above the
        // tie, would give 258 (0x4381).
        let blk = q4_block(0x0001, Some(0x5C04), &q);
        assert_eq!(decode_row(BlockType::Q4_1, &blk, 32).unwrap()[1], 257.0);
        assert_eq!(dequantize_row_to_bf16(BlockType::Q4_1, &blk, 32).unwrap()[1], 0x4380);
    }

    #[test]
    fn bf16_subnormals_and_snan() {
        let row = [0x0001u16, 0x8001, 0x7F81, 0xFF80, 0x3F80, 0x8000];
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            dequantize_row_to_bf16(BlockType::Bf16, &bytes, 6).unwrap(),
            [0x0000, 0x8000, 0x7FC1, 0xFF80, 0x3F80, 0x8000]
        );
        // F32 subnormals -> signed zero; f32::MAX -> inf; NaN truncated and quieted.
        let row = [f32::from_bits(0x0000_0001), f32::from_bits(0x807F_FFFF), f32::MAX, f32::from_bits(0x7F80_0001)];
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(dequantize_row_to_bf16(BlockType::F32, &bytes, 4).unwrap(), [0x0000, 0x8000, 0x7F80, 0x7FC0]);
    }

    #[test]
    fn nan_and_inf_scales() {
        let q: [i8; QK] = std::array::from_fn(|e| [0, 1, -1][e % 3]);
        // NaN d with payload (f16 sNaN 0xFE05: sign, fraction 0b00_0000_0101) -> quieted,
        // payload >> 3 = 0 in the 7 bf16 bits: 0xFFC0. f16 0x7E3F: fraction 0x23F -> 0x47.
        let x = dequantize_row_to_bf16(BlockType::Q8_0, &q8_block(0xFE05, &q), 32).unwrap();
        assert!(x.iter().all(|&v| v == 0xFFC0), "{x:x?}");
        let x = dequantize_row_to_bf16(BlockType::Q8_0, &q8_block(0x7E3F, &q), 32).unwrap();
        assert!(x.iter().all(|&v| v == 0x7FC7), "{x:x?}");
        // inf d: inf * 0 = default NaN 0xFFC0, +-inf elsewhere.
        let x = dequantize_row_to_bf16(BlockType::Q8_0, &q8_block(0x7C00, &q), 32).unwrap();
        assert_eq!(x[..3], [0xFFC0, 0x7F80, 0xFF80]);
        let x = dequantize_row_to_bf16(BlockType::Q4_0, &q4_block(0xFC00, None, &[8; QK]), 32).unwrap();
        assert!(x.iter().all(|&v| v == 0xFFC0));
        // Q4_1: the product's NaN beats m's NaN; a NaN m alone is kept; inf - inf.
        let q4: [u8; QK] = std::array::from_fn(|e| (e % 2) as u8);
        let x = dequantize_row_to_bf16(BlockType::Q4_1, &q4_block(0x7E3F, Some(0xFE00), &q4), 32).unwrap();
        assert!(x.iter().all(|&v| v == 0x7FC7), "{x:x?}");
        let x = dequantize_row_to_bf16(BlockType::Q4_1, &q4_block(0x3C00, Some(0xFE3F), &q4), 32).unwrap();
        assert!(x.iter().all(|&v| v == 0xFFC7), "{x:x?}");
        // d = inf, m = NaN: q = 0 gives inf * 0 (default NaN, wins), q = 1 gives inf + NaN = m.
        let x = dequantize_row_to_bf16(BlockType::Q4_1, &q4_block(0x7C00, Some(0x7E3F), &q4), 32).unwrap();
        assert_eq!(x[..2], [0xFFC0, 0x7FC7]);
        // d = inf, m = -inf: q = 0 -> default NaN, q = 1 -> inf - inf = default NaN.
        let x = dequantize_row_to_bf16(BlockType::Q4_1, &q4_block(0x7C00, Some(0xFC00), &q4), 32).unwrap();
        assert_eq!(x[..2], [0xFFC0, 0xFFC0]);
        // d = -inf, m = -inf, q = 1: -inf.
        let x = dequantize_row_to_bf16(BlockType::Q4_1, &q4_block(0xFC00, Some(0xFC00), &q4), 32).unwrap();
        assert_eq!(x[1], 0xFF80);
    }

    #[test]
    fn reference_gemm_small_integers_and_errors() {
        // Small integers: every step exact, so the result is the integer dot product.
        let (m, n, k) = (3, 2, 64);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 9) as f32 - 4.0).collect();
        let q: Vec<i8> = (0..n * k).map(|i| ((i * 5) % 11) as i8 - 5).collect();
        let w: Vec<u8> = q.chunks(QK).flat_map(|b| q8_block(0x4000, &b.try_into().unwrap())).collect();
        for ppt in [16, 5, 1] {
            let mut c = vec![f32::NAN; m * n];
            gemm_dequant_bf16_reference(BlockType::Q8_0, m, n, k, &a, &w, ppt, &mut c).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let exact: f32 = (0..k).map(|p| a[i * k + p] * 2.0 * f32::from(q[j * k + p])).sum();
                    assert_eq!(c[i * n + j], exact, "({i}, {j}) pairs_per_tdp {ppt}");
                }
            }
        }
        let mut c = vec![0f32; m * n];
        assert_eq!(
            gemm_dequant_bf16_reference(BlockType::Q8_0, m, n, 48, &a, &w, 16, &mut c),
            Err(QuantError::KNotBlockMultiple { ty: BlockType::Q8_0, k: 48 })
        );
        assert_eq!(
            gemm_dequant_bf16_reference(BlockType::Q8_0, m, n, k, &a[1..], &w, 16, &mut c),
            Err(QuantError::WrongLength { what: "activation elements", expected: m * k, actual: m * k - 1 })
        );
        assert_eq!(
            gemm_dequant_bf16_reference(BlockType::Q8_0, m, n, k, &a, &w[1..], 16, &mut c),
            Err(QuantError::WrongLength { what: "weight bytes", expected: w.len(), actual: w.len() - 1 })
        );
        assert_eq!(
            gemm_dequant_bf16_reference(BlockType::Q8_0, m, n, k, &a, &w, 16, &mut c[1..]),
            Err(QuantError::WrongLength { what: "C elements", expected: m * n, actual: m * n - 1 })
        );
        assert_eq!(
            gemm_dequant_bf16_reference(BlockType::Q8_0, usize::MAX, 2, k, &a, &w, 16, &mut c),
            Err(QuantError::SizeOverflow)
        );
        assert_eq!(
            dequantize_row_to_bf16(BlockType::Q4_1, &[0; 19], 32),
            Err(QuantError::WrongLength { what: "row bytes", expected: 20, actual: 19 })
        );
    }
}
