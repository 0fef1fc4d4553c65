//! The byte image of a sparse matrix ([`SparseMatrix::to_bytes`],
//! [`SparseMatrix::from_bytes`]): a little-endian file or wire format whose
//! reader trusts nothing (sizes computed without overflow and compared with
//! the input before anything is allocated, then [`SparseMatrix::from_parts`]).

use crate::elem::{Element, TileMasks, TileSummary, TILE_ROWS};
use crate::matrix::{Shape, SparseMatrix, SparseParts};
use crate::SparseError;

/// First 8 bytes of every image.
pub const MAGIC: [u8; 8] = *b"TJSPARSE";
/// The image version this build writes and reads.
pub const VERSION: u32 = 1;
/// Header bytes (the mask section starts 64-byte aligned).
pub const HEADER_BYTES: usize = 64;

impl<E: Element> SparseMatrix<E> {
    /// The image: header, masks, offsets, summaries, values (crate docs,
    /// "Byte image").
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.bytes());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&E::CODE.to_le_bytes());
        for x in [self.k() as u64, self.n() as u64, self.nnz() as u64] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.resize(HEADER_BYTES, 0);
        let mask_bytes = std::mem::size_of::<E::Mask>();
        for tile in &self.masks {
            for &m in &tile.0 {
                out.extend_from_slice(&E::mask_to_u64(m).to_le_bytes()[..mask_bytes]);
            }
        }
        for &o in &self.offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
        for s in &self.summaries {
            out.extend_from_slice(&s.nnz.to_le_bytes());
            out.extend_from_slice(&s.rows.to_le_bytes());
        }
        let mut v = [0u8; 2];
        for &x in self.values() {
            E::write_le(x, &mut v);
            out.extend_from_slice(&v[..E::VALUE_BYTES]);
        }
        out
    }

    /// Reads an image written by [`Self::to_bytes`], checking the header,
    /// the exact length and then everything [`Self::validate`] checks.
    /// Never panics and never allocates more than the input's size.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SparseError> {
        if bytes.len() < HEADER_BYTES {
            return Err(SparseError::ImageLength { expected: HEADER_BYTES as u64, actual: bytes.len() });
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if bytes[..8] != MAGIC {
            return Err(SparseError::BadMagic);
        }
        if u32_at(8) != VERSION {
            return Err(SparseError::Version { found: u32_at(8), supported: VERSION });
        }
        if u32_at(12) != E::CODE {
            return Err(SparseError::ElemType { expected: E::CODE, found: u32_at(12), name: E::NAME });
        }
        if bytes[40..HEADER_BYTES].iter().any(|&b| b != 0) {
            return Err(SparseError::Reserved);
        }
        let (k, n, nnz) = (u64_at(16), u64_at(24), u64_at(32));
        let too_large = SparseError::TooLarge { k, n };
        let shape = match (usize::try_from(k), usize::try_from(n)) {
            (Ok(k), Ok(n)) => Shape::new::<E>(k, n)?,
            _ => return Err(too_large),
        };
        let mask_bytes = std::mem::size_of::<E::Mask>();
        let tiles = shape.tiles as u128;
        let expected = HEADER_BYTES as u128
            + tiles * (TILE_ROWS * mask_bytes) as u128
            + (tiles + 1) * 8
            + tiles * 4
            + u128::from(nnz) * E::VALUE_BYTES as u128;
        if expected != bytes.len() as u128 {
            return Err(SparseError::ImageLength {
                expected: u64::try_from(expected).unwrap_or(u64::MAX),
                actual: bytes.len(),
            });
        }
        // From here every section fits inside `bytes`.
        let nnz = nnz as usize;
        let (mask_section, rest) = bytes[HEADER_BYTES..].split_at(shape.tiles * TILE_ROWS * mask_bytes);
        let (offset_section, rest) = rest.split_at((shape.tiles + 1) * 8);
        let (summary_section, value_section) = rest.split_at(shape.tiles * 4);
        let masks = mask_section
            .chunks_exact(TILE_ROWS * mask_bytes)
            .map(|tile| {
                let mut m = TileMasks::<E::Mask>::default();
                for (dst, src) in m.0.iter_mut().zip(tile.chunks_exact(mask_bytes)) {
                    let mut word = [0u8; 8];
                    word[..mask_bytes].copy_from_slice(src);
                    *dst = E::mask_from_u64(u64::from_le_bytes(word));
                }
                m
            })
            .collect();
        let offsets = offset_section.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect();
        let summaries = summary_section
            .chunks_exact(4)
            .map(|c| TileSummary { nnz: u16::from_le_bytes([c[0], c[1]]), rows: u16::from_le_bytes([c[2], c[3]]) })
            .collect();
        let values: Vec<E::Value> = value_section.chunks_exact(E::VALUE_BYTES).map(E::read_le).collect();
        debug_assert_eq!(values.len(), nnz);
        Self::from_parts(SparseParts { k: shape.k, n: shape.n, masks, values, offsets, summaries })
    }
}
