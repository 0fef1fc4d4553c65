//! `Bf16Chains`: TDPBF16PS emulated with FP32 FMAs, bit for bit
//! (docs/NUMERICS.md, "TDPBF16PS" and the AVX-512 fallback paragraph of
//! "VDPBF16PS"). Per output and K step of `kg` pairs:
//!
//! ```text
//! even = +0; odd = +0
//! for p in 0..kg: even = fma(a[2p], b[2p], even); odd = fma(a[2p+1], b[2p+1], odd)
//! t = even + odd; C = C + t
//! ```
//!
//! with MXCSR = RNE | DAZ | FTZ, set by the kernel around its body (x86
//! detects tininess after rounding, so FTZ matches AMX's "flush after
//! rounding with unbounded exponent").
//!
//! # NaN choice (measured here, `tests/avx512_kernels.rs`)
//! An x86 FMA returns its first NaN operand in the order of the *formula*
//! its form names, not of the encoding: VFMADD231PS computes
//! `src2 * src3 + src1` and prefers vvvv, then rm, then the destination;
//! VFMADD213PS (`src2 * src1 + src3`) prefers vvvv, then the destination,
//! then rm. So:
//!
//! - `vfmadd231ps chain, a, b` (A in vvvv, B in rm): A's NaN beats B's and
//!   a NaN factor beats a NaN chain, as AMX does. (The 213 form with A in
//!   the destination lets B's NaN win: it failed the NaN matrix.)
//! - `vaddps even, even, odd`: the first source (vvvv) wins, so even's NaN.
//! - `vaddps c, c, even`: C's NaN wins.
//!
//! Invalid operations (inf * 0, inf - inf) give 0xFFC00000 only without a
//! NaN operand, and sNaNs come out quieted with sign and payload, as the
//! oracle models.
//!
//! # Shape of the code
//! B rows hold 16 columns x (even, odd) bf16 per dword; VPSHUFB moves the
//! even bf16 to bits 31:16 (an f32), VPANDD keeps the odd one there. C
//! stays in registers for the whole call; the two chains of every output
//! of a *row group* are live during a K step, and the step runs the row
//! groups one after the other (re-reading the step's B rows from L1), so
//! that up to 16 rows fit in 32 registers. Within a pair either the A
//! broadcasts of the group are held while the panels stream past
//! ([`Hold::A`]), or the split B rows of every panel are held while the
//! rows stream past ([`Hold::B`]), whichever fits more rows per group:
//!
//! ```text
//! for rows in row_groups:                       ; unrolled K step
//!     even, odd <- +0 (zero idioms)
//!     for p in 0..kg:
//!         Hold::A: a_even[i], a_odd[i] <- broadcast A[i][2p], A[i][2p+1]
//!                  for j: raw <- B panel j row p; be <- shuffle(raw); bo <- raw & 0xFFFF0000
//!                         for i: even[i][j] = fma(a_even[i], be, ..); odd[i][j] = fma(a_odd[i], bo, ..)
//!         Hold::B: for j: split B panel j row p into be[j], bo[j]
//!                  for i: broadcast a_even, a_odd; for j: the same two FMAs
//!     for i in rows, j: even += odd; C[i][j] += even
//! ```

use std::ops::Range;

use super::DenseAvx512Spec;
use super::{panel_mem, row_mem, CONSTS};
use crate::codegen::{prefetch, ZmmAlloc};
use crate::encoder::{EvexOp, Mask, Mem, Zmm};
use crate::jit::{CodeBuilder, GenerateError};

/// Which operand's registers stay live across the inner loop of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// Two A broadcasts per row of the group; B streams (raw, even, odd).
    A,
    /// Even and odd B per panel; A streams (two broadcasts).
    B,
}

/// Registers besides C and the chains: raw B row, shuffle control, odd
/// mask, plus the held and streamed operands.
fn operand_regs(hold: Hold, rows: usize, n: usize) -> usize {
    3 + match hold {
        Hold::A => 2 * rows + 2,
        Hold::B => 2 * n + 2,
    }
}

/// Registers for `m` x `n` outputs with `rows` rows per group.
fn regs_for(hold: Hold, m: usize, n: usize, rows: usize) -> usize {
    m * n + 2 * rows * n + operand_regs(hold, rows, n)
}

/// The order and group size that fit the most rows per group (0 if none).
fn best_grouping(m: usize, n: usize) -> (Hold, usize) {
    let fit = |hold| (1..=m).rev().find(|&r| regs_for(hold, m, n, r) <= 32).unwrap_or(0);
    let (a, b) = (fit(Hold::A), fit(Hold::B));
    if b > a {
        (Hold::B, b)
    } else {
        (Hold::A, a)
    }
}

/// Registers of the smallest plan (one row per group): what `validate`
/// checks against 32.
pub(super) fn zmm_needed(spec: &DenseAvx512Spec) -> usize {
    let (m, n) = (spec.m_rows as usize, spec.n_panels as usize);
    regs_for(Hold::A, m, n, 1).min(regs_for(Hold::B, m, n, 1))
}

/// `m` rows in the fewest groups of at most `per` rows, balanced.
fn row_groups(m: usize, per: usize) -> Vec<Range<usize>> {
    let groups = m.div_ceil(per.max(1));
    let size = m.div_ceil(groups);
    (0..groups).map(|g| g * size..((g + 1) * size).min(m)).collect()
}

/// The register map of a `Bf16Chains` kernel.
pub(super) struct RegisterMap {
    /// `acc[row][panel]`: C of that row and panel.
    pub(super) acc: Vec<Vec<Zmm>>,
    hold: Hold,
    row_groups: Vec<Range<usize>>,
    /// `even[r][j]`, `odd[r][j]`: the chains of row `r` of a group, panel `j`.
    even: Vec<Vec<Zmm>>,
    odd: Vec<Vec<Zmm>>,
    raw: Zmm,
    even_shuffle: Zmm,
    odd_mask: Zmm,
    /// Even and odd A broadcasts: one pair per group row (Hold::A) or one (Hold::B).
    a_even: Vec<Zmm>,
    a_odd: Vec<Zmm>,
    /// Even and odd B halves: one per panel (Hold::B) or one (Hold::A).
    b_even: Vec<Zmm>,
    b_odd: Vec<Zmm>,
}

impl RegisterMap {
    pub(super) fn new(spec: &DenseAvx512Spec) -> RegisterMap {
        let (m, n) = (spec.m_rows as usize, spec.n_panels as usize);
        let (hold, per) = best_grouping(m, n);
        let row_groups = row_groups(m, per);
        let rows = row_groups.iter().map(|g| g.len()).max().unwrap_or(1);
        let mut regs = ZmmAlloc::new();
        let acc = regs.grid(m, n);
        let even = regs.grid(rows, n);
        let odd = regs.grid(rows, n);
        let (raw, even_shuffle, odd_mask) = (regs.take(), regs.take(), regs.take());
        let (a_count, b_count) = match hold {
            Hold::A => (rows, 1),
            Hold::B => (1, n),
        };
        let mut take = |count: usize| (0..count).map(|_| regs.take()).collect::<Vec<_>>();
        let (a_even, a_odd, b_even, b_odd) = (take(a_count), take(a_count), take(b_count), take(b_count));
        RegisterMap { acc, hold, row_groups, even, odd, raw, even_shuffle, odd_mask, a_even, a_odd, b_even, b_odd }
    }

    pub(super) fn emit_setup(&self, cb: &mut CodeBuilder) -> Result<(), GenerateError> {
        let shuffle = Mem::base_disp(CONSTS, super::constant!(even_shuffle));
        cb.emit(EvexOp::VMOVDQU32_LOAD.rm_mem(self.even_shuffle, shuffle, Mask::NONE)?);
        let odd_mask = Mem::base_disp(CONSTS, super::constant!(odd_mask));
        cb.emit(EvexOp::VPBROADCASTD.rm_mem(self.odd_mask, odd_mask, Mask::NONE)?);
        Ok(())
    }

    /// Loads B row `p` of panel `j` (prefetching ahead in the first row
    /// group only) and splits it into the halves `be`, `bo`.
    fn emit_split_b(
        &self,
        cb: &mut CodeBuilder,
        spec: &DenseAvx512Spec,
        (p, j, first_group): (i32, usize, bool),
        (be, bo): (Zmm, Zmm),
    ) -> Result<(), GenerateError> {
        cb.emit(EvexOp::VMOVDQU32_LOAD.rm_mem(self.raw, panel_mem(j, 64 * p)?, Mask::NONE)?);
        if first_group && spec.prefetch_lines > 0 {
            prefetch(cb, panel_mem(j, 64 * (p + i32::from(spec.prefetch_lines)))?);
        }
        cb.emit(EvexOp::VPSHUFB.rvm(be, self.raw, self.even_shuffle, Mask::NONE)?);
        cb.emit(EvexOp::VPANDD.rvm(bo, self.raw, self.odd_mask, Mask::NONE)?);
        Ok(())
    }

    /// Broadcasts the even and odd A of pair `p` of row `i` into `ae`, `ao`.
    fn emit_broadcast_a(cb: &mut CodeBuilder, i: usize, p: i32, (ae, ao): (Zmm, Zmm)) -> Result<(), GenerateError> {
        cb.emit(EvexOp::VBROADCASTSS.rm_mem(ae, row_mem(i, 8 * p)?, Mask::NONE)?);
        cb.emit(EvexOp::VBROADCASTSS.rm_mem(ao, row_mem(i, 8 * p + 4)?, Mask::NONE)?);
        Ok(())
    }

    /// The two chain steps of group row `r`, panel `j`: A in vvvv, B in
    /// rm, the chain in the destination (see the module docs on NaNs).
    fn emit_fmas(
        &self,
        cb: &mut CodeBuilder,
        r: usize,
        j: usize,
        a: (Zmm, Zmm),
        b: (Zmm, Zmm),
    ) -> Result<(), GenerateError> {
        cb.emit(EvexOp::VFMADD231PS.rvm(self.even[r][j], a.0, b.0, Mask::NONE)?);
        cb.emit(EvexOp::VFMADD231PS.rvm(self.odd[r][j], a.1, b.1, Mask::NONE)?);
        Ok(())
    }

    /// One K step (one emulated TDP per output): every row group, unrolled.
    pub(super) fn emit_step(&self, cb: &mut CodeBuilder, spec: &DenseAvx512Spec) -> Result<(), GenerateError> {
        let n = spec.n_panels as usize;
        for (g, rows) in self.row_groups.iter().enumerate() {
            let rows: Vec<usize> = rows.clone().collect();
            for chain in self.even[..rows.len()].iter().chain(&self.odd[..rows.len()]).flatten() {
                cb.emit(EvexOp::VPXORD.rvm(*chain, *chain, *chain, Mask::NONE)?);
            }
            for p in 0..spec.k_groups_per_tdp as i32 {
                match self.hold {
                    Hold::A => {
                        for (r, &i) in rows.iter().enumerate() {
                            Self::emit_broadcast_a(cb, i, p, (self.a_even[r], self.a_odd[r]))?;
                        }
                        let b = (self.b_even[0], self.b_odd[0]);
                        for j in 0..n {
                            self.emit_split_b(cb, spec, (p, j, g == 0), b)?;
                            for r in 0..rows.len() {
                                self.emit_fmas(cb, r, j, (self.a_even[r], self.a_odd[r]), b)?;
                            }
                        }
                    }
                    Hold::B => {
                        for j in 0..n {
                            self.emit_split_b(cb, spec, (p, j, g == 0), (self.b_even[j], self.b_odd[j]))?;
                        }
                        let a = (self.a_even[0], self.a_odd[0]);
                        for (r, &i) in rows.iter().enumerate() {
                            Self::emit_broadcast_a(cb, i, p, a)?;
                            for j in 0..n {
                                self.emit_fmas(cb, r, j, a, (self.b_even[j], self.b_odd[j]))?;
                            }
                        }
                    }
                }
            }
            for (r, &i) in rows.iter().enumerate() {
                for j in 0..n {
                    let (e, o, c) = (self.even[r][j], self.odd[r][j], self.acc[i][j]);
                    cb.emit(EvexOp::VADDPS.rvm(e, e, o, Mask::NONE)?);
                    cb.emit(EvexOp::VADDPS.rvm(c, c, e, Mask::NONE)?);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_groups_cover_every_row_once_and_fit() {
        for m in 1..=16 {
            for n in 1..=8 {
                let (hold, per) = best_grouping(m, n);
                if per == 0 {
                    assert!(regs_for(Hold::A, m, n, 1).min(regs_for(Hold::B, m, n, 1)) > 32);
                    continue;
                }
                let groups = row_groups(m, per);
                let rows: Vec<usize> = groups.iter().flat_map(|g| g.clone()).collect();
                assert_eq!(rows, (0..m).collect::<Vec<_>>(), "m={m} n={n}");
                for g in &groups {
                    assert!(!g.is_empty() && regs_for(hold, m, n, g.len()) <= 32, "m={m} n={n} group {g:?}");
                }
            }
        }
        // Decode: one row, A held, eight panels.
        assert_eq!(best_grouping(1, 8), (Hold::A, 1));
        // Sixteen rows, one panel: B held lets four rows share a pass.
        assert_eq!(best_grouping(16, 1), (Hold::B, 4));
        assert_eq!(row_groups(16, 4), [0..4, 4..8, 8..12, 12..16]);
        assert_eq!(row_groups(5, 4), [0..3, 3..5]);
    }
}
