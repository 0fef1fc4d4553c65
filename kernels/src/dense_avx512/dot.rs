//! The one-accumulator kinds: `Int8(sign)` with VPDPBUSD and `Bf16Dot` with
//! VDPBF16PS. Each output adds one dot instruction per K group, straight
//! into its accumulator, in increasing k (for `Bf16Dot` that order is the
//! result: `gemm_bf16_vdpbf16ps`; for int8 any order gives the same bits).
//!
//! ```text
//! for g in 0..k_groups:                         ; unrolled K step
//!     for j in 0..n_panels: b[j] <- B panel j row g; prefetch ahead
//!     for i in 0..m_rows:
//!         x <- broadcast A[i] dword g (xor 0x80 for SS, UU)
//!         for j: acc[i][j] += dot(x, b[j])      ; operand order per kind
//! ```
//!
//! VPDPBUSD takes u8 from src1 (EVEX.vvvv) and s8 from src2 (rm):
//!
//! | sign | src1 (u8)  | src2 (s8)        | correction (`col_bias`)  |
//! |------|------------|------------------|--------------------------|
//! | US   | A          | B                | none                     |
//! | SU   | B          | A ({1to16} load) | none                     |
//! | SS   | A xor 0x80 | B                | `-128 * colsum_s8(B)`    |
//! | UU   | B          | A xor 0x80       | `+128 * colsum_u8(B)`    |
//!
//! VDPBF16PS takes A as src1 and B as src2: its NaN priority lists src1
//! before src2 (docs/NUMERICS.md, "VDPBF16PS"), and the oracle models A
//! first.

use super::{panel_mem, row_mem, CONSTS};
use super::{Avx512Kind, DenseAvx512Spec};
use crate::codegen::{prefetch, ZmmAlloc};
use crate::encoder::{EvexOp, Mask, Mem, Zmm};
use crate::jit::{CodeBuilder, GenerateError};
use crate::spec::Int8Sign;

/// Where the A operand comes from.
fn a_in_register(kind: Avx512Kind) -> bool {
    kind != Avx512Kind::Int8(Int8Sign::SU)
}

fn flips_a(kind: Avx512Kind) -> bool {
    matches!(kind, Avx512Kind::Int8(Int8Sign::SS | Int8Sign::UU))
}

/// Accumulators, one B row per panel, two A broadcasts (renamed by the
/// CPU, so two let one row's broadcast run ahead of the previous row's
/// dots), and the 0x80 constant.
pub(super) fn zmm_needed(spec: &DenseAvx512Spec) -> usize {
    let (m, n) = (spec.m_rows as usize, spec.n_panels as usize);
    m * n + n + 2 * usize::from(a_in_register(spec.kind)) + usize::from(flips_a(spec.kind))
}

/// The register map of a one-accumulator kernel.
pub(super) struct RegisterMap {
    kind: Avx512Kind,
    /// `acc[row][panel]`: C of that row and panel.
    pub(super) acc: Vec<Vec<Zmm>>,
    /// The current K group's B row of each panel.
    b: Vec<Zmm>,
    /// A broadcasts, used alternately by consecutive rows.
    a: Vec<Zmm>,
    /// 0x80 in every byte (SS, UU).
    flip: Option<Zmm>,
}

impl RegisterMap {
    pub(super) fn new(spec: &DenseAvx512Spec) -> RegisterMap {
        let (m, n) = (spec.m_rows as usize, spec.n_panels as usize);
        let mut regs = ZmmAlloc::new();
        let acc = regs.grid(m, n);
        let b = (0..n).map(|_| regs.take()).collect();
        let a = if a_in_register(spec.kind) { vec![regs.take(), regs.take()] } else { Vec::new() };
        let flip = flips_a(spec.kind).then(|| regs.take());
        RegisterMap { kind: spec.kind, acc, b, a, flip }
    }

    pub(super) fn emit_setup(&self, cb: &mut CodeBuilder) -> Result<(), GenerateError> {
        if let Some(flip) = self.flip {
            let at = Mem::base_disp(CONSTS, super::constant!(flip));
            cb.emit(EvexOp::VPBROADCASTD.rm_mem(flip, at, Mask::NONE)?);
        }
        Ok(())
    }

    /// One K step: `k_groups_per_tdp` groups, unrolled.
    pub(super) fn emit_step(&self, cb: &mut CodeBuilder, spec: &DenseAvx512Spec) -> Result<(), GenerateError> {
        let none = Mask::NONE;
        for g in 0..spec.k_groups_per_tdp as i32 {
            for (j, &b) in self.b.iter().enumerate() {
                cb.emit(EvexOp::VMOVDQU32_LOAD.rm_mem(b, panel_mem(j, 64 * g)?, none)?);
                if spec.prefetch_lines > 0 {
                    prefetch(cb, panel_mem(j, 64 * (g + i32::from(spec.prefetch_lines)))?);
                }
            }
            for (i, row) in self.acc.iter().enumerate() {
                let a_mem = row_mem(i, 4 * g)?;
                if !a_in_register(self.kind) {
                    // SU: src1 = B (u8), src2 = the A dword broadcast (s8).
                    for (&acc, &b) in row.iter().zip(&self.b) {
                        cb.emit(EvexOp::VPDPBUSD.rvm_mem(acc, b, a_mem, none, true)?);
                    }
                    continue;
                }
                let x = self.a[i % 2];
                cb.emit(EvexOp::VPBROADCASTD.rm_mem(x, a_mem, none)?);
                if let Some(flip) = self.flip {
                    cb.emit(EvexOp::VPXORD.rvm(x, x, flip, none)?);
                }
                for (&acc, &b) in row.iter().zip(&self.b) {
                    let inst = match self.kind {
                        Avx512Kind::Int8(Int8Sign::US | Int8Sign::SS) => EvexOp::VPDPBUSD.rvm(acc, x, b, none)?,
                        Avx512Kind::Int8(Int8Sign::UU | Int8Sign::SU) => EvexOp::VPDPBUSD.rvm(acc, b, x, none)?,
                        Avx512Kind::Bf16Dot | Avx512Kind::Bf16Chains => EvexOp::VDPBF16PS.rvm(acc, x, b, none)?,
                    };
                    cb.emit(inst);
                }
            }
        }
        Ok(())
    }
}
