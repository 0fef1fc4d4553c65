//! GGUF Q8_0 / Q4_0 weights repacked for the VPDPBUSD kernel, and Q8_0
//! activation rows split into the kernel's operands.
//!
//! [`PackedQ8`] layout (`n` weight rows of `k`, i.e. a GGUF tensor with dims
//! `[k, n]`; output column `j` is weight row `j`): N is padded to whole
//! panels of 16 columns; panel `p` holds all of its K blocks back to back,
//! each a [`CHUNK_BYTES`]-byte chunk at
//! `(p * k_blocks + b) * CHUNK_BYTES`:
//!
//! | bytes | content |
//! |---|---|
//! | 0..512 | 8 rows of 64 bytes; row r = k `4r..4r+3` of the 16 columns (one VPDPBUSD operand), the quants as `q xor 0x80` (= q + 128 as u8) |
//! | 512..576 | the 16 weight scales as f32 (exact widening of the f16 d, NaN/inf kept) |
//!
//! The weights are VPDPBUSD's u8 operand (shifted by 128) and the
//! activations its s8 one, so the shift's correction, `128 * sum(a)` per
//! activation block, rides with the activations ([`Q8Activations`]) instead
//! of costing 4 bytes per column per block in the weight stream: a chunk is
//! 36 bytes per 32 weights against GGUF Q8_0's 34. Q4_0 nibbles become the
//! s8 values `q - 8` at packing time, so one kernel serves both formats.
//! Padding columns have zero quants (stored 0x80) and zero scales.

use half::f16;

/// Elements per GGUF block.
pub const QK: usize = 32;
/// Output columns per panel (one zmm of f32 or i32).
pub const PANEL_COLS: usize = 16;
/// Offset of the 16 f32 weight scales inside a chunk.
pub const SCALES_AT: usize = 512;
/// Bytes of one (panel, K block) chunk.
pub const CHUNK_BYTES: usize = 576;

const Q8_0_BYTES: usize = 34;
const Q4_0_BYTES: usize = 18;

/// Why packing or a quantized kernel call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantPackError {
    #[error("n = {n} and k = {k} must both be nonzero")]
    ZeroDim { n: usize, k: usize },
    #[error("k = {k} is not a multiple of the block size 32")]
    KNotBlockMultiple { k: usize },
    #[error("{what}: expected length {expected}, got {actual}")]
    WrongLength { what: &'static str, expected: usize, actual: usize },
    #[error("size computation overflowed")]
    SizeOverflow,
    #[error("m = {m} rows is not supported (1..={max})")]
    BadRows { m: usize, max: usize },
    #[error("the CPU lacks {0}")]
    MissingIsa(&'static str),
}

/// The GGUF format the weights were packed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Q8_0,
    Q4_0,
}

/// Weights in the kernel's panel layout (module docs). Its own type: the
/// bytes are not a GGUF tensor and nothing reads them as one.
#[derive(Clone, Debug)]
pub struct PackedQ8 {
    n: usize,
    k: usize,
    source: SourceFormat,
    bytes: Vec<u8>,
}

pub(crate) fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), QuantPackError> {
    if expected == actual {
        Ok(())
    } else {
        Err(QuantPackError::WrongLength { what, expected, actual })
    }
}

/// `k / 32` after the shape checks.
fn k_blocks(n: usize, k: usize) -> Result<usize, QuantPackError> {
    if n == 0 || k == 0 {
        return Err(QuantPackError::ZeroDim { n, k });
    }
    if !k.is_multiple_of(QK) {
        return Err(QuantPackError::KNotBlockMultiple { k });
    }
    Ok(k / QK)
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

impl PackedQ8 {
    /// Packs `n` GGUF Q8_0 rows of `k` (`n * k / 32 * 34` bytes).
    ///
    /// # Errors
    /// `n` or `k` zero, `k` not a multiple of 32, a wrong byte length, or a
    /// size overflow.
    pub fn from_q8_0(bytes: &[u8], n: usize, k: usize) -> Result<PackedQ8, QuantPackError> {
        Self::pack(bytes, n, k, SourceFormat::Q8_0, |blk, q| {
            for (d, &s) in q.iter_mut().zip(&blk[2..]) {
                *d = s as i8;
            }
            f16_at(blk, 0)
        })
    }

    /// Packs `n` GGUF Q4_0 rows of `k` (`n * k / 32 * 18` bytes); the
    /// quants become `nibble - 8`.
    ///
    /// # Errors
    /// As [`Self::from_q8_0`].
    pub fn from_q4_0(bytes: &[u8], n: usize, k: usize) -> Result<PackedQ8, QuantPackError> {
        Self::pack(bytes, n, k, SourceFormat::Q4_0, |blk, q| {
            for (e, &byte) in blk[2..].iter().enumerate() {
                q[e] = (byte & 0x0F) as i8 - 8;
                q[e + QK / 2] = (byte >> 4) as i8 - 8;
            }
            f16_at(blk, 0)
        })
    }

    /// `decode(block, quants) -> scale` reads one GGUF block.
    fn pack(
        bytes: &[u8],
        n: usize,
        k: usize,
        source: SourceFormat,
        decode: impl Fn(&[u8], &mut [i8; QK]) -> f32,
    ) -> Result<PackedQ8, QuantPackError> {
        let kb = k_blocks(n, k)?;
        let block_bytes = match source {
            SourceFormat::Q8_0 => Q8_0_BYTES,
            SourceFormat::Q4_0 => Q4_0_BYTES,
        };
        let row_bytes = kb * block_bytes;
        let expected = n.checked_mul(row_bytes).ok_or(QuantPackError::SizeOverflow)?;
        check_len("weight bytes", expected, bytes.len())?;
        let panels = n.div_ceil(PANEL_COLS);
        let total =
            panels.checked_mul(kb).and_then(|c| c.checked_mul(CHUNK_BYTES)).ok_or(QuantPackError::SizeOverflow)?;
        // Padding columns: quant 0 is stored as 0x80.
        let mut out = vec![0u8; total];
        for chunk in out.chunks_exact_mut(CHUNK_BYTES) {
            chunk[..SCALES_AT].fill(0x80);
        }
        let mut q = [0i8; QK];
        for col in 0..n {
            let (p, c) = (col / PANEL_COLS, col % PANEL_COLS);
            for b in 0..kb {
                let blk = &bytes[col * row_bytes + b * block_bytes..][..block_bytes];
                let d = decode(blk, &mut q);
                let chunk = &mut out[(p * kb + b) * CHUNK_BYTES..][..CHUNK_BYTES];
                for (e, &v) in q.iter().enumerate() {
                    chunk[(e / 4) * 64 + c * 4 + e % 4] = (v as u8) ^ 0x80;
                }
                chunk[SCALES_AT + 4 * c..][..4].copy_from_slice(&d.to_le_bytes());
            }
        }
        Ok(PackedQ8 { n, k, source, bytes: out })
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

    pub fn source(&self) -> SourceFormat {
        self.source
    }

    /// Bytes from one panel to the next.
    pub fn panel_stride(&self) -> usize {
        self.k_blocks() * CHUNK_BYTES
    }

    /// The packed bytes (module docs), for kernels and tests.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Back to GGUF Q8_0 rows: the s8 quants (for Q4_0 sources `nibble - 8`,
    /// which gives the same dot products) and d narrowed back to f16, which
    /// is exact (it was widened from an f16) except that a signalling NaN
    /// comes back quieted.
    pub fn unpack_to_q8_0(&self) -> Vec<u8> {
        let kb = self.k_blocks();
        let mut out = Vec::with_capacity(self.n * kb * Q8_0_BYTES);
        for col in 0..self.n {
            let (p, c) = (col / PANEL_COLS, col % PANEL_COLS);
            for b in 0..kb {
                let chunk = &self.bytes[(p * kb + b) * CHUNK_BYTES..][..CHUNK_BYTES];
                let word = |at: usize| <[u8; 4]>::try_from(&chunk[at + 4 * c..][..4]).expect("4 bytes");
                let d = f32::from_le_bytes(word(SCALES_AT));
                out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                out.extend((0..QK).map(|e| chunk[(e / 4) * 64 + c * 4 + e % 4] ^ 0x80));
            }
        }
        out
    }
}

/// Q8_0 activation rows split into the kernel's operands: the quants as s8
/// (`m` rows of `k`) and, per row and block, two words: the f16 scale
/// widened to f32 (bits), then the correction `128 * sum(q)` as i32 that
/// undoes the weights' +128 shift (`m` rows of `2 * k / 32` words).
#[derive(Clone, Debug)]
pub struct Q8Activations {
    pub m: usize,
    pub k: usize,
    pub quants: Vec<i8>,
    pub terms: Vec<u32>,
}

impl Q8Activations {
    /// Splits `m` GGUF Q8_0 rows of `k` (as `quantize_row_q8_0` makes them).
    ///
    /// # Errors
    /// `m` or `k` zero, `k` not a multiple of 32, a wrong byte length.
    pub fn from_q8_0(bytes: &[u8], m: usize, k: usize) -> Result<Q8Activations, QuantPackError> {
        let kb = k_blocks(m, k)?;
        let expected = m.checked_mul(kb * Q8_0_BYTES).ok_or(QuantPackError::SizeOverflow)?;
        check_len("activation bytes", expected, bytes.len())?;
        let mut quants = Vec::with_capacity(m * k);
        let mut terms = Vec::with_capacity(2 * m * kb);
        for blk in bytes.chunks_exact(Q8_0_BYTES) {
            let q = blk[2..].iter().map(|&v| v as i8);
            let sum: i32 = q.clone().map(i32::from).sum();
            terms.push(f16_at(blk, 0).to_bits());
            terms.push((128 * sum) as u32);
            quants.extend(q);
        }
        Ok(Q8Activations { m, k, quants, terms })
    }
}
