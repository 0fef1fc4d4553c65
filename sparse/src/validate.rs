//! [`SparseMatrix::from_parts`] and [`SparseMatrix::validate`]: the checks
//! that make packed data from an untrusted source safe to hand to a kernel.

use crate::elem::{Element, TileMasks, TileSummary};
use crate::matrix::{Shape, SparseMatrix, SparseParts};
use crate::SparseError;

impl<E: Element> SparseMatrix<E> {
    /// Builds a matrix from its arrays after checking all of them
    /// ([`Self::validate`] lists the checks); never panics, whatever the
    /// input.
    pub fn from_parts(parts: SparseParts<E>) -> Result<Self, SparseError> {
        let shape = Shape::new::<E>(parts.k, parts.n)?;
        check::<E>(&shape, &parts.masks, &parts.values, &parts.offsets, &parts.summaries)?;
        let mut values = parts.values;
        values.resize(values.len() + E::LANES, E::Value::default());
        Ok(SparseMatrix { shape, masks: parts.masks, values, offsets: parts.offsets, summaries: parts.summaries })
    }

    /// Checks every invariant a kernel relies on, in this order:
    ///
    /// 1. `k, n >= 1`, and every size derived from them (tiles, padded
    ///    dense bytes, `k * n`) fits the address space;
    /// 2. one mask block and one summary per tile, `tiles + 1` offsets;
    /// 3. `offsets[0] == 0`;
    /// 4. per tile in traversal order: no mask bit set for a column >= N
    ///    or a k >= K (padding is zero); the summary's `nnz` and `rows`
    ///    equal those of the masks; `offsets[t + 1] == offsets[t] +
    ///    popcount(masks of t)` (so offsets never decrease or overflow);
    /// 5. the last offset equals the number of values;
    /// 6. no stored value is the zero pattern (the format is canonical:
    ///    `from_dense(to_dense(x)) == x`).
    ///
    /// A matrix built by this crate always passes; the method exists for
    /// callers that want to re-check, and documents what `from_parts` and
    /// `from_bytes` guarantee.
    pub fn validate(&self) -> Result<(), SparseError> {
        let shape = Shape::new::<E>(self.shape.k, self.shape.n)?;
        check::<E>(&shape, &self.masks, self.values(), &self.offsets, &self.summaries)
    }
}

fn length(what: &'static str, expected: usize, actual: usize) -> Result<(), SparseError> {
    if expected == actual {
        Ok(())
    } else {
        Err(SparseError::Length { what, expected, actual })
    }
}

fn check<E: Element>(
    shape: &Shape,
    masks: &[TileMasks<E::Mask>],
    values: &[E::Value],
    offsets: &[u64],
    summaries: &[TileSummary],
) -> Result<(), SparseError> {
    length("masks (one block of 16 per tile)", shape.tiles, masks.len())?;
    length("offsets (tiles + 1)", shape.tiles + 1, offsets.len())?;
    length("summaries (one per tile)", shape.tiles, summaries.len())?;
    if offsets[0] != 0 {
        return Err(SparseError::FirstOffset(offsets[0]));
    }
    for panel in 0..shape.panels {
        for k_tile in 0..shape.k_tiles {
            let tile = panel * shape.k_tiles + k_tile;
            let tile_masks = &masks[tile];
            for (row, &m) in tile_masks.0.iter().enumerate() {
                let bits = E::mask_to_u64(m) & !shape.valid_bits::<E>(panel, k_tile, row);
                if bits != 0 {
                    return Err(SparseError::PaddingBits { panel, k_tile, row, bits });
                }
            }
            let expected = TileSummary::of::<E>(tile_masks);
            let found = summaries[tile];
            if found.nnz != expected.nnz {
                return Err(SparseError::SummaryNnz { tile, expected: expected.nnz, found: found.nnz });
            }
            if found.rows != expected.rows {
                return Err(SparseError::SummaryRows { tile, expected: expected.rows, found: found.rows });
            }
            // offsets[tile] is already checked (induction from offsets[0] = 0),
            // so it is at most 1024 * tile and the sum cannot overflow.
            let next = offsets[tile] + u64::from(expected.nnz);
            if offsets[tile + 1] != next {
                return Err(SparseError::Offset {
                    tile,
                    panel,
                    k_tile,
                    popcount: u32::from(expected.nnz),
                    expected: next,
                    found: offsets[tile + 1],
                });
            }
        }
    }
    let total = offsets[shape.tiles];
    if total != values.len() as u64 {
        return Err(SparseError::ValueCount { total, len: values.len() });
    }
    if let Some(index) = values.iter().position(|&v| E::is_zero(v)) {
        return Err(SparseError::StoredZero { index });
    }
    Ok(())
}
