//! GGUF block weights repacked as AMX B tiles with per-block scales, and
//! Q8 activations split into the kernel's A operand and scale tables.
//!
//! [`PackedQuantAmx`] layout (`n` GGUF weight rows of `k`; output column `j`
//! is weight row `j`): N is padded to panels of 16 columns; panel `p`, K
//! block `b` is one chunk at `(p * k_blocks + b) * chunk_bytes`, every
//! chunk 64-byte aligned:
//!
//! | bytes | content |
//! |---|---|
//! | 0..tile | the block's B tile: [`TileKind::Int8`] 8 rows x 64 bytes, row r = k `4r..4r+3` of the 16 columns as s8 (TDPBSSD's VNNI order); [`TileKind::Bf16`] 16 rows x 64 bytes, row r = k `2r, 2r+1` as bf16 (TDPBF16PS's pair order) |
//! | tile..tile+64 | the 16 weight scales d as f32 (exact widening of the f16) |
//! | +64..+128 | Q4_1 only: the 16 mins m as f32 |
//!
//! The quant of an element is what the quantized dot product multiplies
//! (`tilejit_verify::quant` docs): `q` for Q8_0, `nibble - 8` for Q4_0, the
//! raw nibble for Q4_1. As bf16 these small integers are exact (|q| <= 128
//! needs 8 significant bits), and so is every product and every partial
//! sum of a 32-element block (|sum| <= 2^19 < 2^24): TDPBF16PS over one
//! block gives exactly `f32(isum)`, whatever its internal order (docs/
//! NUMERICS.md, "TDPBF16PS": only rounding could differ, and nothing
//! rounds). Padding columns have zero quants and zero scales.

use half::f16;

use crate::cpu::Feature;
use crate::pack::AlignedBytes;
use crate::quant_format::{check_len, f16_at, k_blocks};
pub use crate::quant_format::{QuantPackError, WeightFormat, QK};

/// Output columns per panel (one C tile row of f32).
pub const PANEL_COLS: usize = 16;

/// How the B tile of a block holds the quants, and so which TDP runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// s8, TDPBSSD with K = 32: 8 B rows, i32 results.
    Int8,
    /// bf16 holding the integer quants exactly, TDPBF16PS with K = 32: 16 B
    /// rows, f32 results that are the exact integer sums.
    Bf16,
}

impl TileKind {
    /// The extensions the prefill kernel of this kind executes: tiles and
    /// the kind's TDP, and AVX512F/BW for the f32 fold (VCVTDQ2PS,
    /// VFMADD231PS, KMOVQ).
    pub const fn features(self) -> &'static [Feature] {
        match self {
            Self::Int8 => &[Feature::AmxTile, Feature::AmxInt8, Feature::Avx512F, Feature::Avx512Bw],
            Self::Bf16 => &[Feature::AmxTile, Feature::AmxBf16, Feature::Avx512F, Feature::Avx512Bw],
        }
    }

    /// Bytes of one block's B tile (16 columns x 32 k).
    pub const fn tile_bytes(self) -> usize {
        match self {
            Self::Int8 => 512,
            Self::Bf16 => 1024,
        }
    }

    /// Bytes per element of the A operand.
    pub const fn a_elem_bytes(self) -> usize {
        match self {
            Self::Int8 => 1,
            Self::Bf16 => 2,
        }
    }
}

/// The 32 dot-product quants of one GGUF block, its d and (Q4_1) m.
fn decode_block(format: WeightFormat, blk: &[u8]) -> ([i8; QK], f32, f32) {
    let mut q = [0i8; QK];
    match format {
        WeightFormat::Q8_0 => {
            for (d, &s) in q.iter_mut().zip(&blk[2..]) {
                *d = s as i8;
            }
            (q, f16_at(blk, 0), 0.0)
        }
        WeightFormat::Q4_0 | WeightFormat::Q4_1 => {
            let (qs, bias) = if format == WeightFormat::Q4_0 { (&blk[2..], 8) } else { (&blk[4..], 0) };
            for (e, &byte) in qs.iter().enumerate() {
                q[e] = (byte & 0x0F) as i8 - bias;
                q[e + QK / 2] = (byte >> 4) as i8 - bias;
            }
            let m = if format == WeightFormat::Q4_1 { f16_at(blk, 2) } else { 0.0 };
            (q, f16_at(blk, 0), m)
        }
    }
}

/// The bf16 bits of a small integer (exact: at most 8 significant bits).
fn int_to_bf16(v: i8) -> u16 {
    ((f32::from(v)).to_bits() >> 16) as u16
}

/// Weights in the AMX layout (module docs). Its own type: nothing reads the
/// bytes as a GGUF tensor.
#[derive(Clone)]
pub struct PackedQuantAmx {
    n: usize,
    k: usize,
    format: WeightFormat,
    kind: TileKind,
    bytes: AlignedBytes,
}

impl std::fmt::Debug for PackedQuantAmx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedQuantAmx")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("format", &self.format)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl PackedQuantAmx {
    /// Packs `n` GGUF rows of `k` weights in `format` for `kind` tiles.
    ///
    /// # Errors
    /// `n` or `k` zero, `k` not a multiple of 32, a wrong byte length, or a
    /// size overflow.
    pub fn pack(
        format: WeightFormat,
        kind: TileKind,
        bytes: &[u8],
        n: usize,
        k: usize,
    ) -> Result<PackedQuantAmx, QuantPackError> {
        let kb = k_blocks(n, k)?;
        let row_bytes = kb * format.gguf_block_bytes();
        check_len("weight bytes", n.checked_mul(row_bytes).ok_or(QuantPackError::SizeOverflow)?, bytes.len())?;
        let chunk = chunk_bytes(format, kind);
        let total = n
            .div_ceil(PANEL_COLS)
            .checked_mul(kb)
            .and_then(|c| c.checked_mul(chunk))
            .ok_or(QuantPackError::SizeOverflow)?;
        let mut out = AlignedBytes::zeroed(total);
        let dst = out.as_mut_slice();
        let tile = kind.tile_bytes();
        for col in 0..n {
            let (p, c) = (col / PANEL_COLS, col % PANEL_COLS);
            for b in 0..kb {
                let (q, d, m) = decode_block(
                    format,
                    &bytes[col * row_bytes + b * format.gguf_block_bytes()..][..format.gguf_block_bytes()],
                );
                let ch = &mut dst[(p * kb + b) * chunk..][..chunk];
                for (e, &v) in q.iter().enumerate() {
                    match kind {
                        TileKind::Int8 => ch[(e / 4) * 64 + c * 4 + e % 4] = v as u8,
                        TileKind::Bf16 => {
                            let at = (e / 2) * 64 + c * 4 + (e % 2) * 2;
                            ch[at..at + 2].copy_from_slice(&int_to_bf16(v).to_le_bytes());
                        }
                    }
                }
                ch[tile + 4 * c..][..4].copy_from_slice(&d.to_le_bytes());
                if format.has_min() {
                    ch[tile + 64 + 4 * c..][..4].copy_from_slice(&m.to_le_bytes());
                }
            }
        }
        Ok(PackedQuantAmx { n, k, format, kind, bytes: out })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn k_blocks(&self) -> usize {
        self.k / QK
    }

    pub fn panels(&self) -> usize {
        self.n.div_ceil(PANEL_COLS)
    }

    pub fn format(&self) -> WeightFormat {
        self.format
    }

    pub fn kind(&self) -> TileKind {
        self.kind
    }

    /// Bytes of one (panel, block) chunk.
    pub fn chunk_bytes(&self) -> usize {
        chunk_bytes(self.format, self.kind)
    }

    /// Bytes from one panel to the next.
    pub fn panel_stride(&self) -> usize {
        self.k_blocks() * self.chunk_bytes()
    }

    /// The packed bytes (module docs), for kernels and tests.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Back to the GGUF rows it was packed from. Exact, except that a
    /// signalling-NaN f16 scale comes back quieted (it went through f32).
    pub fn unpack_to_gguf(&self) -> Vec<u8> {
        let (kb, chunk, tile) = (self.k_blocks(), self.chunk_bytes(), self.kind.tile_bytes());
        let src = self.as_bytes();
        let mut out = Vec::with_capacity(self.n * kb * self.format.gguf_block_bytes());
        for col in 0..self.n {
            let (p, c) = (col / PANEL_COLS, col % PANEL_COLS);
            for b in 0..kb {
                let ch = &src[(p * kb + b) * chunk..][..chunk];
                let f32_at = |at: usize| f32::from_le_bytes(ch[at..at + 4].try_into().expect("4 bytes"));
                let q: [i8; QK] = std::array::from_fn(|e| match self.kind {
                    TileKind::Int8 => ch[(e / 4) * 64 + c * 4 + e % 4] as i8,
                    TileKind::Bf16 => {
                        let at = (e / 2) * 64 + c * 4 + (e % 2) * 2;
                        f32::from_bits(u32::from(u16::from_le_bytes([ch[at], ch[at + 1]])) << 16) as i8
                    }
                });
                out.extend_from_slice(&f16::from_f32(f32_at(tile + 4 * c)).to_bits().to_le_bytes());
                match self.format {
                    WeightFormat::Q8_0 => out.extend(q.iter().map(|&v| v as u8)),
                    WeightFormat::Q4_0 | WeightFormat::Q4_1 => {
                        let bias = if self.format == WeightFormat::Q4_0 { 8 } else { 0 };
                        if self.format.has_min() {
                            let m = f16::from_f32(f32_at(tile + 64 + 4 * c));
                            out.extend_from_slice(&m.to_bits().to_le_bytes());
                        }
                        let nib = |v: i8| (v + bias) as u8 & 0x0F;
                        out.extend((0..QK / 2).map(|j| nib(q[j]) | nib(q[j + QK / 2]) << 4));
                    }
                }
            }
        }
        out
    }
}

fn chunk_bytes(format: WeightFormat, kind: TileKind) -> usize {
    kind.tile_bytes() + if format.has_min() { 128 } else { 64 }
}

/// Q8 activation rows as the AMX kernels read them: the quants as the A
/// operand (s8 for [`TileKind::Int8`], bf16 of the same integers for
/// [`TileKind::Bf16`]; `m` rows of `k`, padded rows) and the
/// per-block scales `d` and (Q8_1) sums `s` as f32, transposed to
/// block-major tables (`table[b * m + i]`) so that the rows of one tile are
/// adjacent for the kernel's broadcasts.
#[derive(Clone)]
pub struct AmxActivations {
    m: usize,
    k: usize,
    kind: TileKind,
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
        kind: TileKind,
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
        let row = k * kind.a_elem_bytes();
        // One extra line per row: rows a multiple of 4 KiB apart would all
        // fall into the same L1 set, and a row group has more rows (up to
        // 26) than L1 has ways (12).
        let lda = row.next_multiple_of(64) + 64;
        let mut a = AlignedBytes::zeroed(m.checked_mul(lda).ok_or(QuantPackError::SizeOverflow)?);
        for (dst, src) in a.as_mut_slice().chunks_exact_mut(lda).zip(quants.chunks_exact(k)) {
            match kind {
                TileKind::Int8 => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s as u8),
                TileKind::Bf16 => dst
                    .chunks_exact_mut(2)
                    .zip(src)
                    .for_each(|(d, &s)| d.copy_from_slice(&int_to_bf16(s).to_le_bytes())),
            }
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
        Ok(AmxActivations { m, k, kind, lda, a, scales_t: transpose(scales), sums_t: transpose(sums) })
    }

    pub fn m(&self) -> usize {
        self.m
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn kind(&self) -> TileKind {
        self.kind
    }

    /// Whether Q8_1 sums were given.
    pub fn has_sums(&self) -> bool {
        !self.sums_t.is_empty()
    }

    /// Bytes from one A row to the next.
    pub fn lda(&self) -> usize {
        self.lda
    }

    /// The A operand bytes (`m` rows of `k * a_elem_bytes` at [`Self::lda`]).
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
