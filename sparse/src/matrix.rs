//! [`SparseMatrix`]: packing from dense B, unpacking, and the accessors a
//! kernel (or its scalar model) needs. The layout is described in the
//! crate docs.

use crate::elem::{Bf16, Element, Int8, TileMasks, TileSummary, PANEL_COLS, ROW_BYTES, TILE_ROWS};
use crate::SparseError;

/// The dimensions and tile counts of a matrix, checked so that every size
/// derived from them fits the address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    pub k: usize,
    pub n: usize,
    /// Tiles per panel (`ceil(k / TILE_K)`).
    pub k_tiles: usize,
    /// Panels of 16 columns (`ceil(n / 16)`).
    pub panels: usize,
    /// `panels * k_tiles`.
    pub tiles: usize,
}

impl Shape {
    pub fn new<E: Element>(k: usize, n: usize) -> Result<Shape, SparseError> {
        if k == 0 || n == 0 {
            return Err(SparseError::Empty { k, n });
        }
        let too_large = SparseError::TooLarge { k: k as u64, n: n as u64 };
        let k_tiles = k.div_ceil(E::TILE_K);
        let panels = n.div_ceil(PANEL_COLS);
        let tiles = k_tiles.checked_mul(panels).ok_or(too_large.clone())?;
        // The padded dense size bounds every array of the format (masks,
        // values, offsets, summaries), so it fitting in isize is enough.
        let dense = tiles.checked_mul(TILE_ROWS * ROW_BYTES).and_then(|b| b.checked_add(ROW_BYTES));
        if dense.is_none_or(|b| b > isize::MAX as usize) || k.checked_mul(n).is_none() {
            return Err(too_large);
        }
        Ok(Shape { k, n, k_tiles, panels, tiles })
    }

    /// The mask bits of tile row `row` of (`panel`, `k_tile`) that hold
    /// real elements (column < n and k < K); the others are padding.
    pub fn valid_bits<E: Element>(&self, panel: usize, k_tile: usize, row: usize) -> u64 {
        let cols = (self.n - panel * PANEL_COLS).min(PANEL_COLS);
        let k0 = (k_tile * TILE_ROWS + row) * E::PER_GROUP;
        let k_valid = self.k.saturating_sub(k0).min(E::PER_GROUP);
        if cols == PANEL_COLS && k_valid == E::PER_GROUP {
            return u64::MAX >> (64 - E::LANES);
        }
        let lane = (1u64 << k_valid) - 1;
        (0..cols).fold(0, |m, c| m | lane << (c * E::PER_GROUP))
    }
}

/// A sparse `B[K][N]` in the bitmap tile format (crate docs), for bf16
/// ([`SparseBf16`]) or int8 ([`SparseI8`]) weights.
///
/// Every instance is valid: it was packed from dense data, or built by
/// [`SparseMatrix::from_parts`] / [`SparseMatrix::from_bytes`], which check
/// everything ([`SparseMatrix::validate`] says what).
#[derive(Clone, PartialEq)]
pub struct SparseMatrix<E: Element> {
    pub(crate) shape: Shape,
    pub(crate) masks: Vec<TileMasks<E::Mask>>,
    /// The `nnz` values, then [`E::LANES`](Element::LANES) zeros of slack.
    pub(crate) values: Vec<E::Value>,
    pub(crate) offsets: Vec<u64>,
    pub(crate) summaries: Vec<TileSummary>,
}

/// bf16 weights (`u16` bit patterns, `u32` masks).
pub type SparseBf16 = SparseMatrix<Bf16>;
/// int8 weights (`i8`, `u64` masks).
pub type SparseI8 = SparseMatrix<Int8>;

/// The arrays of a sparse matrix, owned, for [`SparseMatrix::from_parts`]
/// and [`SparseMatrix::into_parts`]. `values` holds exactly the non-zeros
/// (no slack).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseParts<E: Element> {
    pub k: usize,
    pub n: usize,
    /// One entry per tile, tiles in traversal order.
    pub masks: Vec<TileMasks<E::Mask>>,
    pub values: Vec<E::Value>,
    /// `tiles + 1` value offsets: tile `t` starts at `offsets[t]`, the last
    /// entry is the total.
    pub offsets: Vec<u64>,
    /// One entry per tile.
    pub summaries: Vec<TileSummary>,
}

/// One tile of a [`SparseMatrix`], borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Tile<'a, E: Element> {
    /// Flat tile index, `panel * k_tiles + k_tile`.
    pub index: usize,
    pub masks: &'a TileMasks<E::Mask>,
    /// The tile's values, row 0 first.
    pub values: &'a [E::Value],
    /// Index of `values[0]` in [`SparseMatrix::values`].
    pub value_offset: usize,
    pub summary: TileSummary,
}

impl<'a, E: Element> Tile<'a, E> {
    /// The values of tile row `r`: they start after the popcounts of the
    /// rows before it.
    ///
    /// # Panics
    /// If `r >= 16`.
    pub fn row_values(&self, r: usize) -> &'a [E::Value] {
        let before: usize = self.masks.0[..r].iter().map(|&m| E::mask_to_u64(m).count_ones() as usize).sum();
        let here = E::mask_to_u64(self.masks.0[r]).count_ones() as usize;
        &self.values[before..before + here]
    }

    /// Tile row `r` as the dense 64 bytes (little-endian elements, element
    /// `i` at byte `i * VALUE_BYTES`): what VPEXPANDW/B with zero masking
    /// writes, and the row `tilejit_kernels::pack::PackedB` holds for the
    /// same K group and panel.
    ///
    /// # Panics
    /// If `r >= 16`.
    pub fn row_bytes(&self, r: usize) -> [u8; ROW_BYTES] {
        let mut out = [0u8; ROW_BYTES];
        let mut values = self.row_values(r).iter();
        let mut bits = E::mask_to_u64(self.masks.0[r]);
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            // A valid tile has exactly one value per set bit.
            let &v = values.next().expect("validated tile: one value per mask bit");
            E::write_le(v, &mut out[i * E::VALUE_BYTES..]);
        }
        out
    }

    /// The whole tile as 16 dense rows (1 KiB): the B tile a TILELOADD of
    /// the dense layout would load.
    pub fn dense_rows(&self) -> [[u8; ROW_BYTES]; TILE_ROWS] {
        std::array::from_fn(|r| self.row_bytes(r))
    }
}

impl SparseMatrix<Bf16> {
    /// Packs bf16 `B[K][N]` (row-major, `k * n` bit patterns). Only 0x0000
    /// (+0.0) counts as zero.
    pub fn from_dense_bf16(b: &[u16], k: usize, n: usize) -> Result<SparseBf16, SparseError> {
        Self::from_dense(b, k, n)
    }

    /// Back to row-major `B[K][N]`, every bit pattern as packed.
    pub fn to_dense_bf16(&self) -> Vec<u16> {
        self.to_dense()
    }
}

impl SparseMatrix<Int8> {
    /// Packs int8 `B[K][N]` (row-major, `k * n` values).
    pub fn from_dense_i8(b: &[i8], k: usize, n: usize) -> Result<SparseI8, SparseError> {
        Self::from_dense(b, k, n)
    }

    /// Back to row-major `B[K][N]`.
    pub fn to_dense_i8(&self) -> Vec<i8> {
        self.to_dense()
    }
}

impl<E: Element> SparseMatrix<E> {
    /// Packs `B[K][N]` (row-major, exactly `k * n` values): every value that
    /// is not the zero pattern gets its mask bit and is appended to the
    /// value stream, in traversal order (crate docs).
    pub fn from_dense(b: &[E::Value], k: usize, n: usize) -> Result<Self, SparseError> {
        let shape = Shape::new::<E>(k, n)?;
        if b.len() != k * n {
            return Err(SparseError::Length { what: "dense B (k * n values)", expected: k * n, actual: b.len() });
        }
        let mut masks = Vec::with_capacity(shape.tiles);
        let mut summaries = Vec::with_capacity(shape.tiles);
        let mut offsets = Vec::with_capacity(shape.tiles + 1);
        let mut values = Vec::new();
        offsets.push(0);
        for panel in 0..shape.panels {
            let col0 = panel * PANEL_COLS;
            let cols = (n - col0).min(PANEL_COLS);
            for k_tile in 0..shape.k_tiles {
                let mut tile = TileMasks::<E::Mask>::default();
                for (r, mask) in tile.0.iter_mut().enumerate() {
                    let k0 = (k_tile * TILE_ROWS + r) * E::PER_GROUP;
                    let k_valid = k.saturating_sub(k0).min(E::PER_GROUP);
                    let mut m = 0u64;
                    for c in 0..cols {
                        for j in 0..k_valid {
                            let v = b[(k0 + j) * n + col0 + c];
                            if !E::is_zero(v) {
                                m |= 1 << (c * E::PER_GROUP + j);
                                values.push(v);
                            }
                        }
                    }
                    *mask = E::mask_from_u64(m);
                }
                summaries.push(TileSummary::of::<E>(&tile));
                masks.push(tile);
                offsets.push(values.len() as u64);
            }
        }
        values.resize(values.len() + E::LANES, E::Value::default());
        Ok(SparseMatrix { shape, masks, values, offsets, summaries })
    }

    /// Unpacks to row-major `B[K][N]` (`k * n` values), exactly the values
    /// that were packed (zeros as the zero pattern).
    pub fn to_dense(&self) -> Vec<E::Value> {
        let Shape { k, n, .. } = self.shape;
        let mut out = vec![E::Value::default(); k * n];
        for panel in 0..self.shape.panels {
            for k_tile in 0..self.shape.k_tiles {
                let tile = self.tile_at(panel * self.shape.k_tiles + k_tile).expect("index in range");
                let mut values = tile.values.iter();
                for (r, &mask) in tile.masks.0.iter().enumerate() {
                    let k0 = (k_tile * TILE_ROWS + r) * E::PER_GROUP;
                    let mut bits = E::mask_to_u64(mask);
                    while bits != 0 {
                        let i = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        let (c, j) = (i / E::PER_GROUP, i % E::PER_GROUP);
                        // Validation keeps padding bits clear, so (k0 + j, c) is inside B.
                        out[(k0 + j) * n + panel * PANEL_COLS + c] = *values.next().expect("validated tile");
                    }
                }
            }
        }
        out
    }

    /// K (rows of B, the reduction dimension).
    pub fn k(&self) -> usize {
        self.shape.k
    }
    /// N (columns of B, the outputs).
    pub fn n(&self) -> usize {
        self.shape.n
    }
    /// Panels of 16 columns: `ceil(n / 16)`.
    pub fn panels(&self) -> usize {
        self.shape.panels
    }
    /// Tiles per panel: `ceil(k / TILE_K)` (TILE_K = 32 for bf16, 64 for int8).
    pub fn k_tiles(&self) -> usize {
        self.shape.k_tiles
    }
    /// All tiles: `panels * k_tiles`.
    pub fn tiles(&self) -> usize {
        self.shape.tiles
    }
    /// Stored (non-zero) values.
    pub fn nnz(&self) -> usize {
        self.values.len() - E::LANES
    }

    /// Flat index of tile `k_tile` of `panel` (`panel * k_tiles + k_tile`).
    pub fn tile_index(&self, panel: usize, k_tile: usize) -> Option<usize> {
        (panel < self.shape.panels && k_tile < self.shape.k_tiles).then(|| panel * self.shape.k_tiles + k_tile)
    }

    /// Tile `k_tile` of `panel`, or `None` out of range.
    pub fn tile(&self, panel: usize, k_tile: usize) -> Option<Tile<'_, E>> {
        self.tile_at(self.tile_index(panel, k_tile)?)
    }

    /// The tile with flat index `index`, or `None` out of range.
    pub fn tile_at(&self, index: usize) -> Option<Tile<'_, E>> {
        let masks = self.masks.get(index)?;
        // Validated: offsets are non-decreasing and end at nnz.
        let (start, end) = (self.offsets[index] as usize, self.offsets[index + 1] as usize);
        Some(Tile {
            index,
            masks,
            values: &self.values[start..end],
            value_offset: start,
            summary: self.summaries[index],
        })
    }

    /// The masks of every tile, in traversal order (tile `t` at byte
    /// `t * 16 * size_of::<Mask>()`, 64-byte aligned).
    pub fn masks(&self) -> &[TileMasks<E::Mask>] {
        &self.masks
    }
    /// The non-zero values, back to back in traversal order.
    pub fn values(&self) -> &[E::Value] {
        &self.values[..self.nnz()]
    }
    /// [`Self::values`] followed by 64 bytes of zeros, so that a full
    /// 64-byte load from any offset `<= nnz` stays inside the buffer.
    pub fn values_with_slack(&self) -> &[E::Value] {
        &self.values
    }
    /// `tiles + 1` value offsets (in elements): tile `t` starts at
    /// `offsets[t]`, the last entry is `nnz`. A range of tiles `a..b` owns
    /// the values `offsets[a]..offsets[b]`.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }
    /// One summary per tile.
    pub fn summaries(&self) -> &[TileSummary] {
        &self.summaries
    }

    /// Non-zeros over the K x N real elements (padding not counted).
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.shape.k as f64 * self.shape.n as f64)
    }

    /// Bytes a kernel streams per pass: masks and values.
    pub fn stream_bytes(&self) -> usize {
        self.masks.len() * std::mem::size_of::<TileMasks<E::Mask>>() + self.nnz() * E::VALUE_BYTES
    }
    /// Bytes of the offsets and summaries: `8 * (tiles + 1) + 4 * tiles`.
    pub fn metadata_bytes(&self) -> usize {
        self.offsets.len() * 8 + self.summaries.len() * std::mem::size_of::<TileSummary>()
    }
    /// Compressed size: [`Self::stream_bytes`] + [`Self::metadata_bytes`]
    /// (the 64-byte value slack not counted).
    pub fn bytes(&self) -> usize {
        self.stream_bytes() + self.metadata_bytes()
    }
    /// Size of the same B packed dense with the same padding (`PackedB`
    /// with 16-row tiles): `tiles * 1024`.
    pub fn dense_bytes(&self) -> usize {
        self.shape.tiles * TILE_ROWS * ROW_BYTES
    }

    /// Gives the arrays back (values without the slack).
    pub fn into_parts(self) -> SparseParts<E> {
        let nnz = self.nnz();
        let mut values = self.values;
        values.truncate(nnz);
        SparseParts {
            k: self.shape.k,
            n: self.shape.n,
            masks: self.masks,
            values,
            offsets: self.offsets,
            summaries: self.summaries,
        }
    }
}

impl<E: Element> std::fmt::Debug for SparseMatrix<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseMatrix")
            .field("elem", &E::NAME)
            .field("k", &self.shape.k)
            .field("n", &self.shape.n)
            .field("panels", &self.shape.panels)
            .field("k_tiles", &self.shape.k_tiles)
            .field("nnz", &self.nnz())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_bits_cover_real_elements_only() {
        let s = Shape::new::<Bf16>(33, 20).unwrap();
        assert_eq!((s.panels, s.k_tiles, s.tiles), (2, 2, 4));
        assert_eq!(s.valid_bits::<Bf16>(0, 0, 0), u64::from(u32::MAX));
        // k = 32 is group 16 = tile 1 row 0, only its even element is real.
        assert_eq!(s.valid_bits::<Bf16>(0, 1, 0), 0x5555_5555);
        assert_eq!(s.valid_bits::<Bf16>(0, 1, 1), 0);
        // Panel 1 has 4 columns.
        assert_eq!(s.valid_bits::<Bf16>(1, 0, 3), 0xff);
        let s = Shape::new::<Int8>(67, 17).unwrap();
        assert_eq!(s.valid_bits::<Int8>(0, 0, 15), u64::MAX);
        assert_eq!(s.valid_bits::<Int8>(0, 1, 0), 0x7777_7777_7777_7777);
        assert_eq!(s.valid_bits::<Int8>(1, 1, 0), 0x7);
    }

    #[test]
    fn a_small_matrix_packs_in_traversal_order() {
        // K = 3, N = 2 bf16: one panel, one tile; group 0 = k 0..2, group 1 = k 2.
        let b = [1, 0, 0, 4, 5, 6];
        let s = SparseMatrix::from_dense_bf16(&b, 3, 2).unwrap();
        // Row 0: column 0 (k0 = 1, k1 = 0), column 1 (k0 = 0, k1 = 4): bits 0 and 3.
        // Row 1: column 0 k2 = 5 (bit 0), column 1 k2 = 6 (bit 2).
        assert_eq!(s.masks()[0].0[..3], [0b1001, 0b101, 0]);
        assert_eq!(s.values(), [1, 4, 5, 6]);
        assert_eq!(s.offsets(), [0, 4]);
        assert_eq!(s.summaries()[0], TileSummary { nnz: 4, rows: 0b11 });
        let t = s.tile(0, 0).unwrap();
        assert_eq!(t.row_values(1), [5, 6]);
        let row = t.row_bytes(0);
        assert_eq!(row[..8], [1, 0, 0, 0, 0, 0, 4, 0]);
        assert_eq!(s.to_dense_bf16(), b);
        assert!(s.tile(1, 0).is_none() && s.tile(0, 1).is_none());
        assert_eq!(s.values_with_slack().len(), 4 + 32);
    }
}
