//! The 64-byte palette-1 tile configuration, mirrored field by field
//! (docs/AMX.md, "Tile config"), and the shape rules LDTILECFG and the TDP
//! instructions enforce. The CPU answers a bad config with #GP and a bad TDP
//! shape with #UD; we answer both with a typed error before emitting code.

use crate::encoder::Tmm;

/// Maximum bytes per tile row and rows per tile (palette 1).
pub const MAX_COLSB: u16 = 64;
pub const MAX_ROWS: u8 = 16;

/// Exactly the memory image LDTILECFG reads; must be 64-byte aligned.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileConfig {
    palette_id: u8,
    start_row: u8,
    reserved_a: [u8; 14],
    colsb: [u16; 8],
    reserved_b: [u8; 16],
    rows: [u8; 8],
    reserved_c: [u8; 8],
}

const _: () = assert!(std::mem::size_of::<TileConfig>() == 64);
const _: () = assert!(std::mem::align_of::<TileConfig>() == 64);

/// A tile configuration or TDP shape the CPU would fault on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileConfigError {
    #[error("{tile}: {rows} rows x {colsb} bytes is not a legal tile shape (rows 1..=16, bytes 4..=64 in steps of 4)")]
    BadShape { tile: Tmm, rows: u8, colsb: u16 },
    #[error("{tile} is used but not configured")]
    Unconfigured { tile: Tmm },
    #[error("{mnemonic} {dst}, {a}, {b}: {rule}")]
    TdpShape { mnemonic: &'static str, dst: Tmm, a: Tmm, b: Tmm, rule: &'static str },
}

impl Default for TileConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TileConfig {
    /// Palette 1 with every tile unconfigured.
    pub const fn new() -> TileConfig {
        TileConfig {
            palette_id: 1,
            start_row: 0,
            reserved_a: [0; 14],
            colsb: [0; 8],
            reserved_b: [0; 16],
            rows: [0; 8],
            reserved_c: [0; 8],
        }
    }

    /// Configures `tile` as `rows` x `colsb` bytes. colsb must be a multiple
    /// of 4 (otherwise the first load is #UD, measured), at most 64; rows at
    /// most 16 and non-zero.
    pub fn set(&mut self, tile: Tmm, rows: u8, colsb: u16) -> Result<(), TileConfigError> {
        if rows == 0 || rows > MAX_ROWS || colsb == 0 || colsb > MAX_COLSB || !colsb.is_multiple_of(4) {
            return Err(TileConfigError::BadShape { tile, rows, colsb });
        }
        self.rows[tile.number() as usize] = rows;
        self.colsb[tile.number() as usize] = colsb;
        Ok(())
    }

    /// `(rows, colsb)` of a configured tile.
    pub fn shape(&self, tile: Tmm) -> Result<(u8, u16), TileConfigError> {
        let i = tile.number() as usize;
        match (self.rows[i], self.colsb[i]) {
            (0, _) => Err(TileConfigError::Unconfigured { tile }),
            (r, c) => Ok((r, c)),
        }
    }

    /// Checks the TDP shape rules: C.colsb == B.colsb, C.rows == A.rows,
    /// A.colsb / 4 == B.rows (docs/AMX.md, "TDP shape rules").
    pub fn check_tdp(&self, mnemonic: &'static str, dst: Tmm, a: Tmm, b: Tmm) -> Result<(), TileConfigError> {
        let (c_rows, c_colsb) = self.shape(dst)?;
        let (a_rows, a_colsb) = self.shape(a)?;
        let (b_rows, b_colsb) = self.shape(b)?;
        let fail = |rule| Err(TileConfigError::TdpShape { mnemonic, dst, a, b, rule });
        if c_colsb != b_colsb {
            return fail("C and B must have the same bytes per row");
        }
        if c_rows != a_rows {
            return fail("C and A must have the same number of rows");
        }
        if u16::from(b_rows) * 4 != a_colsb {
            return fail("B must have A.colsb / 4 rows");
        }
        Ok(())
    }

    /// The raw 64 bytes, as LDTILECFG sees them.
    pub fn as_bytes(&self) -> &[u8; 64] {
        // SAFETY: TileConfig is repr(C), 64 bytes, made only of integers
        // with no padding (the size assertion above proves it).
        unsafe { &*(self as *const TileConfig as *const [u8; 64]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_hardware_image() {
        let mut cfg = TileConfig::new();
        cfg.set(Tmm::TMM3, 7, 40).unwrap();
        let bytes = cfg.as_bytes();
        assert_eq!(bytes[0], 1, "palette id");
        assert_eq!(u16::from_le_bytes([bytes[16 + 6], bytes[16 + 7]]), 40, "colsb of tmm3");
        assert_eq!(bytes[48 + 3], 7, "rows of tmm3");
        let others: usize =
            bytes.iter().enumerate().filter(|&(i, _)| ![0, 22, 51].contains(&i)).map(|(_, &b)| b as usize).sum();
        assert_eq!(others, 0, "reserved bytes and other tiles stay zero");
    }

    #[test]
    fn illegal_shapes_are_rejected() {
        let mut cfg = TileConfig::new();
        for (rows, colsb) in [(0, 64), (17, 64), (16, 0), (16, 68), (16, 62), (1, 2)] {
            assert!(matches!(cfg.set(Tmm::TMM0, rows, colsb), Err(TileConfigError::BadShape { .. })), "{rows}x{colsb}");
        }
        cfg.set(Tmm::TMM0, 16, 64).unwrap();
        cfg.set(Tmm::TMM1, 16, 64).unwrap();
        cfg.set(Tmm::TMM2, 16, 64).unwrap();
        assert!(cfg.check_tdp("tdpbssd", Tmm::TMM0, Tmm::TMM1, Tmm::TMM2).is_ok());
        cfg.set(Tmm::TMM2, 15, 64).unwrap();
        assert!(cfg.check_tdp("tdpbssd", Tmm::TMM0, Tmm::TMM1, Tmm::TMM2).is_err());
        assert!(matches!(
            cfg.check_tdp("tdpbssd", Tmm::TMM0, Tmm::TMM1, Tmm::TMM5),
            Err(TileConfigError::Unconfigured { .. })
        ));
    }
}
