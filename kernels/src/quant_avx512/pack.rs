//! GGUF Q8_0 / Q4_0 / Q4_1 weights repacked for the VPDPBUSD kernel, byte
//! for byte as large as GGUF (34 / 18 / 20 bytes per 32 weights), and
//! Q8_0 / Q8_1 activation rows split into the kernel's operands.
//!
//! # [`PackedQuant`] layout
//!
//! `n` weight rows of `k` (a GGUF tensor with dims `[k, n]`; output column
//! `j` is weight row `j`). N is padded to whole panels of 16 columns and the
//! K blocks are grouped in pairs; an odd block count is padded with one
//! zero block (the code of zero, +0.0 scales) that the kernel never reads. Panel
//! `p` holds its pairs back to back, pair `q` at
//! `(p * k_pairs + q) * pair_bytes`, 64-byte aligned (the buffer is, and
//! every size below is a multiple of 64):
//!
//! | bytes (QB = quant bytes, SB = scale bytes per block) | content |
//! |---|---|
//! | `0 .. QB` | quants of block `2q` |
//! | `QB .. 2 QB` | quants of block `2q + 1` |
//! | `2 QB .. 2 QB + SB` | scales of block `2q` |
//! | `2 QB + SB .. 2 QB + 2 SB` | scales of block `2q + 1` |
//!
//! | format | QB | SB | pair | quants of one block | scales of one block |
//! |---|---|---|---|---|---|
//! | Q8_0 | 512 | 32 | 1088 | 8 rows of 64 bytes: row r byte `4c + t` = column c's element `4r + t`, stored `q xor 0x80` (= q + 128, VPDPBUSD's u8 operand) | d of the 16 columns (f16, as in GGUF) |
//! | Q4_0 | 256 | 32 | 576 | 4 rows of 64 bytes: row r byte `4c + t` = column c's GGUF byte `qs[4r + t]`: low nibble element `4r + t`, high nibble element `16 + 4r + t` | d (f16) |
//! | Q4_1 | 256 | 64 | 640 | as Q4_0 | d (f16) of the 16 columns, then m (f16) |
//!
//! So a Q4 row's low nibbles are the VPDPBUSD operand of k group `r` and
//! its high nibbles that of group `r + 4` (GGUF already pairs element `j`
//! with `j + 16`): the packed quant bytes are GGUF's, moved in 4-byte
//! pieces. Nibbles are natively unsigned: Q4_1 needs no correction; Q4_0's
//! `nibble - 8` costs `8 * sum(qa)` per activation block and Q8_0's `+128`
//! costs `128 * sum(qa)`, both carried by the activations
//! ([`QuantActivations::kernel_terms`]), never by the weight stream.
//! Scales stay f16 and are widened in the kernel (VCVTPH2PS, exact), so
//! [`PackedQuant::unpack`] gives back the GGUF bytes exactly, NaN payloads
//! included. Padding columns hold the code of zero (Q8_0 0x80, Q4_0 0x88,
//! Q4_1 0x00) and +0.0 scales; their outputs are never stored.

use crate::pack::AlignedBytes;
pub(crate) use crate::quant_format::{check_len, f16_at, k_blocks};
pub use crate::quant_format::{ActivationFormat, QuantPackError, WeightFormat, QK};

/// Output columns per panel (one zmm of f32 or i32).
pub const PANEL_COLS: usize = 16;
/// 32-bit words of kernel terms per activation row and block
/// ([`QuantActivations::kernel_terms`]).
pub const TERM_WORDS: usize = 4;
/// Byte offsets inside one block's kernel terms.
pub const TERM_DA: usize = 0;
pub const TERM_SA: usize = 4;
pub const TERM_Q8_0_INIT: usize = 8;
pub const TERM_Q4_0_INIT: usize = 12;

/// The packed layout's sizes per format (the format itself is shared:
/// [`crate::quant_format`]).
impl WeightFormat {
    /// Packed quant bytes of one block of one panel (rows of 64 bytes).
    pub const fn quant_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 512,
            Self::Q4_0 | Self::Q4_1 => 256,
        }
    }

    /// Packed scale bytes of one block of one panel (f16 d, then f16 m for Q4_1).
    pub const fn scale_bytes(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q4_0 => 32,
            Self::Q4_1 => 64,
        }
    }

    /// Bytes of one block pair of one panel (a multiple of 64).
    pub const fn pair_bytes(self) -> usize {
        2 * (self.quant_bytes() + self.scale_bytes())
    }

    /// The quant byte that decodes to zero (for padding).
    const fn zero_code(self) -> u8 {
        match self {
            Self::Q8_0 => 0x80,
            Self::Q4_0 => 0x88,
            Self::Q4_1 => 0,
        }
    }

    /// Offset of the quants inside a GGUF block.
    const fn gguf_quants_at(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q4_0 => 2,
            Self::Q4_1 => 4,
        }
    }
}

/// Weights in the kernel's panel layout (module docs). Its own type: the
/// bytes are not a GGUF tensor and nothing reads them as one.
#[derive(Clone)]
pub struct PackedQuant {
    n: usize,
    k: usize,
    format: WeightFormat,
    bytes: AlignedBytes,
}

impl std::fmt::Debug for PackedQuant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedQuant")
            .field("format", &self.format)
            .field("n", &self.n)
            .field("k", &self.k)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl PackedQuant {
    /// Packs `n` GGUF rows of `k` in `format` (`n * k / 32 * block bytes`).
    ///
    /// # Errors
    /// `n` or `k` zero, `k` not a multiple of 32, a wrong byte length, or a
    /// size overflow.
    pub fn from_gguf(format: WeightFormat, bytes: &[u8], n: usize, k: usize) -> Result<PackedQuant, QuantPackError> {
        let kb = k_blocks(n, k)?;
        let block_bytes = format.gguf_block_bytes();
        let row_bytes = kb.checked_mul(block_bytes).ok_or(QuantPackError::SizeOverflow)?;
        let expected = n.checked_mul(row_bytes).ok_or(QuantPackError::SizeOverflow)?;
        check_len("weight bytes", expected, bytes.len())?;
        let (qb, sb, pair) = (format.quant_bytes(), format.scale_bytes(), format.pair_bytes());
        let panels = n.div_ceil(PANEL_COLS);
        let total =
            panels.checked_mul(kb.div_ceil(2)).and_then(|c| c.checked_mul(pair)).ok_or(QuantPackError::SizeOverflow)?;
        let mut packed = AlignedBytes::zeroed(total);
        let out = packed.as_mut_slice();
        // Padding (columns, the odd block): the zero code, +0.0 scales.
        for chunk in out.chunks_exact_mut(pair) {
            chunk[..2 * qb].fill(format.zero_code());
        }
        let qs_at = format.gguf_quants_at();
        for col in 0..n {
            let (p, c) = (col / PANEL_COLS, col % PANEL_COLS);
            for b in 0..kb {
                let blk = &bytes[col * row_bytes + b * block_bytes..][..block_bytes];
                let chunk = &mut out[(p * kb.div_ceil(2) + b / 2) * pair..][..pair];
                let half = b % 2;
                let q = &mut chunk[half * qb..][..qb];
                match format {
                    WeightFormat::Q8_0 => {
                        for (e, &v) in blk[qs_at..].iter().enumerate() {
                            q[(e / 4) * 64 + c * 4 + e % 4] = v ^ 0x80;
                        }
                    }
                    WeightFormat::Q4_0 | WeightFormat::Q4_1 => {
                        for r in 0..4 {
                            q[r * 64 + c * 4..][..4].copy_from_slice(&blk[qs_at + 4 * r..][..4]);
                        }
                    }
                }
                let s = &mut chunk[2 * qb + half * sb..][..sb];
                s[2 * c..2 * c + 2].copy_from_slice(&blk[..2]);
                if format == WeightFormat::Q4_1 {
                    s[32 + 2 * c..32 + 2 * c + 2].copy_from_slice(&blk[2..4]);
                }
            }
        }
        Ok(PackedQuant { n, k, format, bytes: packed })
    }

    /// [`Self::from_gguf`] for Q8_0 rows.
    ///
    /// # Errors
    /// As [`Self::from_gguf`].
    pub fn from_q8_0(bytes: &[u8], n: usize, k: usize) -> Result<PackedQuant, QuantPackError> {
        Self::from_gguf(WeightFormat::Q8_0, bytes, n, k)
    }

    /// [`Self::from_gguf`] for Q4_0 rows.
    ///
    /// # Errors
    /// As [`Self::from_gguf`].
    pub fn from_q4_0(bytes: &[u8], n: usize, k: usize) -> Result<PackedQuant, QuantPackError> {
        Self::from_gguf(WeightFormat::Q4_0, bytes, n, k)
    }

    /// [`Self::from_gguf`] for Q4_1 rows.
    ///
    /// # Errors
    /// As [`Self::from_gguf`].
    pub fn from_q4_1(bytes: &[u8], n: usize, k: usize) -> Result<PackedQuant, QuantPackError> {
        Self::from_gguf(WeightFormat::Q4_1, bytes, n, k)
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

    /// Block pairs per panel (an odd last block is padded to a pair).
    pub fn k_pairs(&self) -> usize {
        self.k_blocks().div_ceil(2)
    }

    pub fn panels(&self) -> usize {
        self.n.div_ceil(PANEL_COLS)
    }

    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// Bytes from one panel to the next (a multiple of 64).
    pub fn panel_stride(&self) -> usize {
        self.k_pairs() * self.format.pair_bytes()
    }

    /// The packed bytes (module docs), 64-byte aligned, for kernels and tests.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// Back to `n` GGUF rows in [`Self::format`]: the bytes packed, exactly.
    pub fn unpack(&self) -> Vec<u8> {
        let (kb, f) = (self.k_blocks(), self.format);
        let (qb, sb, pair) = (f.quant_bytes(), f.scale_bytes(), f.pair_bytes());
        let bytes = self.as_bytes();
        let mut out = Vec::with_capacity(self.n * kb * f.gguf_block_bytes());
        for col in 0..self.n {
            let (p, c) = (col / PANEL_COLS, col % PANEL_COLS);
            for b in 0..kb {
                let chunk = &bytes[(p * self.k_pairs() + b / 2) * pair..][..pair];
                let (q, s) = (&chunk[(b % 2) * qb..][..qb], &chunk[2 * qb + (b % 2) * sb..][..sb]);
                out.extend_from_slice(&s[2 * c..2 * c + 2]);
                match f {
                    WeightFormat::Q8_0 => out.extend((0..QK).map(|e| q[(e / 4) * 64 + c * 4 + e % 4] ^ 0x80)),
                    WeightFormat::Q4_0 | WeightFormat::Q4_1 => {
                        if f == WeightFormat::Q4_1 {
                            out.extend_from_slice(&s[32 + 2 * c..32 + 2 * c + 2]);
                        }
                        for r in 0..4 {
                            out.extend_from_slice(&q[r * 64 + c * 4..][..4]);
                        }
                    }
                }
            }
        }
        out
    }
}

/// `m` GGUF Q8_0 or Q8_1 activation rows of `k`, split into plain arrays
/// (for any kernel) plus the terms this kernel reads.
#[derive(Clone, Debug)]
pub struct QuantActivations {
    m: usize,
    k: usize,
    format: ActivationFormat,
    quants: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<f32>,
    terms: Vec<u32>,
}

impl QuantActivations {
    /// Splits `m` GGUF rows of `k` in `format` (as `quantize_row_q8_0` /
    /// `quantize_row_q8_1` make them).
    ///
    /// # Errors
    /// `m` or `k` zero, `k` not a multiple of 32, a wrong byte length, or a
    /// size overflow.
    pub fn from_gguf(
        format: ActivationFormat,
        bytes: &[u8],
        m: usize,
        k: usize,
    ) -> Result<QuantActivations, QuantPackError> {
        let kb = k_blocks(m, k)?;
        let block_bytes = format.gguf_block_bytes();
        let expected =
            kb.checked_mul(block_bytes).and_then(|row| row.checked_mul(m)).ok_or(QuantPackError::SizeOverflow)?;
        check_len("activation bytes", expected, bytes.len())?;
        let mut a = QuantActivations {
            m,
            k,
            format,
            quants: Vec::with_capacity(m * k),
            scales: Vec::with_capacity(m * kb),
            sums: Vec::with_capacity(m * kb),
            terms: Vec::with_capacity(TERM_WORDS * m * kb),
        };
        for blk in bytes.chunks_exact(block_bytes) {
            let q = blk[block_bytes - QK..].iter().map(|&v| v as i8);
            let qsum: i32 = q.clone().map(i32::from).sum();
            let d = f16_at(blk, 0);
            let s = if format == ActivationFormat::Q8_1 { f16_at(blk, 2) } else { 0.0 };
            a.quants.extend(q);
            a.scales.push(d);
            a.sums.push(s);
            a.terms.extend([d.to_bits(), s.to_bits(), (-128 * qsum) as u32, (-8 * qsum) as u32]);
        }
        Ok(a)
    }

    /// [`Self::from_gguf`] for Q8_0 rows.
    ///
    /// # Errors
    /// As [`Self::from_gguf`].
    pub fn from_q8_0(bytes: &[u8], m: usize, k: usize) -> Result<QuantActivations, QuantPackError> {
        Self::from_gguf(ActivationFormat::Q8_0, bytes, m, k)
    }

    /// [`Self::from_gguf`] for Q8_1 rows.
    ///
    /// # Errors
    /// As [`Self::from_gguf`].
    pub fn from_q8_1(bytes: &[u8], m: usize, k: usize) -> Result<QuantActivations, QuantPackError> {
        Self::from_gguf(ActivationFormat::Q8_1, bytes, m, k)
    }

    /// Rows.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Elements per row (a multiple of 32).
    pub fn k(&self) -> usize {
        self.k
    }

    pub fn k_blocks(&self) -> usize {
        self.k / QK
    }

    pub fn format(&self) -> ActivationFormat {
        self.format
    }

    /// The quants, `m` x `k` row-major, row stride exactly `k`.
    pub fn quants(&self) -> &[i8] {
        &self.quants
    }

    /// `f32(d)` per row and block, `m` x `k / 32` row-major (exact widening).
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// `f32(s)` of Q8_1 per row and block, `m` x `k / 32` (all +0.0 for Q8_0).
    pub fn sums(&self) -> &[f32] {
        &self.sums
    }

    /// This kernel's operands: per row and block [`TERM_WORDS`] words,
    /// `[f32(d), f32(s), -128 * sum(q), -8 * sum(q)]` (f32 bits, then
    /// i32): the scales, and the start values of the integer sum for Q8_0
    /// and Q4_0 weights, which undo their u8 bias (module docs). Rows are
    /// `TERM_WORDS * k / 32` words apart.
    pub fn kernel_terms(&self) -> &[u32] {
        &self.terms
    }
}
