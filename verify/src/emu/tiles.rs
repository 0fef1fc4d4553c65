//! The AMX tile state: LDTILECFG with the checks the hardware makes, tile
//! loads and stores row by row, and the TDPs with the oracle's arithmetic
//! (SDM Vol. 1 ch. 18 and Vol. 2 "LDTILECFG", "TDPBF16PS", "TDPBSSD").

use crate::amx::{tdpb_dot, tdpbf16ps_bits, Int8Signedness};

/// Eight tiles of up to 16 rows x 64 bytes and their configuration.
#[derive(Clone)]
pub struct Tiles {
    palette: u8,
    rows: [u8; 8],
    colsb: [u16; 8],
    data: Box<[[u8; 1024]; 8]>,
}

impl Default for Tiles {
    fn default() -> Tiles {
        Tiles { palette: 0, rows: [0; 8], colsb: [0; 8], data: Box::new([[0; 1024]; 8]) }
    }
}

/// Which TDP.
#[derive(Clone, Copy, Debug)]
pub enum Tdp {
    Int8(Int8Signedness),
    Bf16,
}

impl Tiles {
    pub fn configured(&self) -> bool {
        self.palette != 0
    }

    /// LDTILECFG of a 64-byte image: palette 0 releases; palette 1 needs
    /// zero reserved bytes, start_row 0, per tile rows <= 16 and colsb <=
    /// 64 with both zero or neither, and nothing for tiles 8..16 (#GP
    /// otherwise). Tile data is zeroed, as on the hardware.
    pub fn load_config(&mut self, image: &[u8; 64]) -> Result<(), String> {
        match image[0] {
            0 => {
                self.release();
                return Ok(());
            }
            1 => {}
            p => return Err(format!("palette {p} (only 0 and 1 exist)")),
        }
        if image[1] != 0 {
            return Err(format!("start_row {} (a fresh configuration starts at row 0)", image[1]));
        }
        if image[2..16].iter().any(|&b| b != 0) {
            return Err("reserved bytes 2..16 are not zero".into());
        }
        if image[32..48].iter().any(|&b| b != 0) || image[56..64].iter().any(|&b| b != 0) {
            return Err("tiles 8..15 are configured but palette 1 has 8 tiles".into());
        }
        let mut rows = [0u8; 8];
        let mut colsb = [0u16; 8];
        for t in 0..8 {
            colsb[t] = u16::from_le_bytes([image[16 + 2 * t], image[17 + 2 * t]]);
            rows[t] = image[48 + t];
            if rows[t] > 16 || colsb[t] > 64 {
                return Err(format!("tmm{t}: {} rows x {} bytes exceeds 16 x 64", rows[t], colsb[t]));
            }
            if (rows[t] == 0) != (colsb[t] == 0) {
                return Err(format!("tmm{t}: {} rows x {} bytes (both zero or neither)", rows[t], colsb[t]));
            }
        }
        *self = Tiles { palette: 1, rows, colsb, data: Box::new([[0; 1024]; 8]) };
        Ok(())
    }

    pub fn release(&mut self) {
        *self = Tiles::default();
    }

    /// The shape of tile `t`, which must be configured.
    pub fn shape(&self, t: usize) -> Result<(usize, usize), String> {
        if !self.configured() {
            return Err("tiles are not configured (no LDTILECFG)".into());
        }
        if self.rows[t] == 0 {
            return Err(format!("tmm{t} is not configured"));
        }
        Ok((usize::from(self.rows[t]), usize::from(self.colsb[t])))
    }

    /// Row `r` of tile `t` (64 bytes; bytes past colsb read as zero).
    pub fn row(&self, t: usize, r: usize) -> &[u8] {
        &self.data[t][r * 64..r * 64 + 64]
    }

    /// Sets row `r` of tile `t` to `bytes` (colsb of them), zeroing the rest.
    pub fn set_row(&mut self, t: usize, r: usize, bytes: &[u8]) {
        let row = &mut self.data[t][r * 64..r * 64 + 64];
        row.fill(0);
        row[..bytes.len()].copy_from_slice(bytes);
    }

    /// Zeroes tile `t` (TILEZERO, and the rows past `rows` after a load).
    pub fn zero(&mut self, t: usize) {
        self.data[t].fill(0);
    }

    /// `tdp dst, a, b`: for each of dst's M rows and N dwords, the dot
    /// product of A's row with B's column over K = colsb(A) / 4 dwords.
    /// Shapes as the SDM requires (#UD otherwise): distinct tiles,
    /// rows(A) = M, colsb(B) = colsb(dst), rows(B) = K.
    pub fn tdp(&mut self, op: Tdp, dst: usize, a: usize, b: usize) -> Result<(), String> {
        let (m, n_bytes) = self.shape(dst)?;
        let (a_rows, k_bytes) = self.shape(a)?;
        let (b_rows, b_cols) = self.shape(b)?;
        if dst == a || dst == b || a == b {
            return Err(format!("tmm{dst}, tmm{a}, tmm{b} are not three distinct tiles"));
        }
        if a_rows != m || b_cols != n_bytes || b_rows * 4 != k_bytes || n_bytes % 4 != 0 {
            return Err(format!(
                "shapes do not fit: C {m}x{n_bytes}, A {a_rows}x{k_bytes}, B {b_rows}x{b_cols} (bytes)"
            ));
        }
        let k = k_bytes / 4;
        // Column j of B: dword j of each of B's K rows, gathered once per TDP.
        let b_cols: Vec<Vec<u8>> = (0..n_bytes / 4)
            .map(|j| (0..k).flat_map(|r| self.row(b, r)[4 * j..4 * j + 4].to_vec()).collect())
            .collect();
        let words =
            |bytes: &[u8]| -> Vec<u16> { bytes.chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]])).collect() };
        let b_words: Vec<Vec<u16>> = match op {
            Tdp::Bf16 => b_cols.iter().map(|c| words(c)).collect(),
            Tdp::Int8(_) => Vec::new(),
        };
        for i in 0..m {
            let a_row = self.row(a, i)[..k_bytes].to_vec();
            let a_words = if matches!(op, Tdp::Bf16) { words(&a_row) } else { Vec::new() };
            let mut out = self.row(dst, i)[..n_bytes].to_vec();
            for (j, c) in out.chunks_exact_mut(4).enumerate() {
                let acc = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                let result = match op {
                    Tdp::Int8(sign) => tdpb_dot(sign, acc as i32, &a_row, &b_cols[j]) as u32,
                    Tdp::Bf16 => tdpbf16ps_bits(acc, &a_words, &b_words[j]),
                };
                c.copy_from_slice(&result.to_le_bytes());
            }
            self.set_row(dst, i, &out);
        }
        Ok(())
    }
}
