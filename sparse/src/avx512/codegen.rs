//! The code generator behind [`super::SparseAvx512Kernel`]: register plan,
//! pass dispatch, one fully unrolled K tile. The shape of the code is in
//! the module docs of [`super`].

// dynasm! expands register operands with `.into()` even when they are
// already u8; that is the macro's business, not ours.
#![allow(clippy::useless_conversion)]

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};
use tilejit_kernels::codegen::{prefetch, ZmmAlloc, MXCSR_RNE_DAZ_FTZ};
use tilejit_kernels::encoder::{
    kmovd_k_mem, kmovq_k_mem, kmovq_k_r64, EncodeError, EvexOp, Gpr, KReg, Mask, Mem, Scale, Zmm,
};
use tilejit_kernels::jit::{CodeBuilder, Frame, GenerateError, JitCode};
use tilejit_kernels::spec::CInit;

use super::{SparseAvx512Args, SparseAvx512Kind, SparseAvx512Spec};
use crate::elem::{PANEL_COLS, TILE_ROWS};

// GPR roles inside a pass (SysV: the args pointer arrives in rdi and is
// kept on the stack; every register below is reloaded per pass).
/// POPCNT results (a bf16 row pair: the first row's count in TMP[0], the
/// pair's in TMP[1]); scratch around the K loop.
const TMP: [Gpr; 2] = [Gpr::RAX, Gpr::RDX];
/// The current tile's masks of the pass's first panel; panel `j` is
/// `j * panel_mask_stride` bytes further (an immediate).
const MASK: Gpr = Gpr::RSI;
/// A row 0 at the current tile in the K loop; C row 0 around it.
const ROWS: Gpr = Gpr::RDI;
/// lda (K loop) or ldc, and three times it.
const STRIDE: Gpr = Gpr::RCX;
const STRIDE3: Gpr = Gpr::RBX;
const K_COUNT: Gpr = Gpr::RBP;
/// Value stream pointer of panel `j` of the pass.
const VPTR: [Gpr; 8] = [Gpr::R8, Gpr::R9, Gpr::R10, Gpr::R11, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15];
const SAVED: [Gpr; 6] = [Gpr::RBX, Gpr::RBP, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15];
/// Write mask of the pass's last panel (all 16 columns unless it is N's tail).
const TAIL: KReg = KReg::K1;
/// Masks of the expansions rotate through k2..k7.
const FIRST_EXPAND_K: u8 = 2;
const EXPAND_KS: u8 = 6;

// Stack frame.
const F_ARGS: i32 = 0;
const F_CUR: i32 = 8;
const F_END: i32 = 16;
const F_MXCSR: i32 = 24;
const FRAME: i32 = 32;

// Constants after the code.
const C_ODD: i32 = 0;
const C_SHIFT: i32 = 4;
const C_MXCSR: i32 = 8;

/// Row `i` (0..4) of A or C at ROWS, `disp` bytes in.
fn row_mem(i: usize, disp: i32) -> Result<Mem, EncodeError> {
    Mem::row_of_four(ROWS, STRIDE, STRIDE3, i, disp)
}

/// zmm registers of a plan with `raw` expansion registers (and, bf16,
/// `split` even-half registers).
pub(super) fn zmm_needed(kind: SparseAvx512Kind, m: usize, p: usize, raw: usize, split: usize) -> usize {
    match kind {
        // acc, even, odd per output; a_even, a_odd per row; the odd mask
        // and the shift count.
        SparseAvx512Kind::Bf16 => 3 * m * p + 2 * m + 2 + raw + split,
        // acc per output; the A dword per row.
        SparseAvx512Kind::Int8 => m * p + m + raw,
    }
}

/// (expansion registers, even-half registers) of a plan: bf16 wants two
/// per panel (a row pair), int8 one, as many as fit. The expansions of a
/// group of panels are issued before the arithmetic on them (kmov and
/// expand are port-5 only; issued first, the scheduler tends to put the
/// FMAs on port 0: ~8 % in a microbenchmark, within noise in the kernel).
pub(super) fn temporaries(kind: SparseAvx512Kind, m: usize, p: usize) -> (usize, usize) {
    let split = match kind {
        SparseAvx512Kind::Bf16 => 2,
        SparseAvx512Kind::Int8 => 0,
    };
    let fixed = zmm_needed(kind, m, p, 0, 0);
    let split = split.min(32usize.saturating_sub(fixed + 1)).max(usize::from(kind == SparseAvx512Kind::Bf16));
    let rows = if kind == SparseAvx512Kind::Bf16 { 2 } else { 1 };
    let raw = 32usize.saturating_sub(fixed + split).clamp(1, rows * p.max(2));
    (raw, split)
}

struct RegisterMap {
    spec: SparseAvx512Spec,
    m: usize,
    /// `acc[i][j]`: C of row i, panel j of the pass.
    acc: Vec<Vec<Zmm>>,
    /// bf16: the two chains of every output.
    even: Vec<Vec<Zmm>>,
    odd: Vec<Vec<Zmm>>,
    /// bf16: A[i][2r], A[i][2r+1] as f32 broadcasts; int8: A[i] dword r (xor 0x80) in `a_even`.
    a_even: Vec<Zmm>,
    a_odd: Vec<Zmm>,
    odd_mask: Option<Zmm>,
    shift16: Option<Zmm>,
    /// Expanded rows (then their odd halves, bf16), one per panel of a
    /// group of expansions issued together.
    raw: Vec<Zmm>,
    /// bf16: even halves, alternated.
    split: Vec<Zmm>,
    /// Tile rows expanded together per panel: 2 for bf16 when the
    /// registers allow (one 64-bit POPCNT advances past both), else 1.
    row_block: usize,
    /// Bytes between the mask arrays of consecutive panels.
    panel_mask_stride: i32,
}

impl RegisterMap {
    fn new(spec: &SparseAvx512Spec) -> RegisterMap {
        let (kind, m, p) = (spec.kind, usize::from(spec.m_rows), usize::from(spec.panels_per_pass));
        let (n_raw, n_split) = temporaries(kind, m, p);
        let mut r = ZmmAlloc::new();
        let acc = r.grid(m, p);
        let bf16 = kind == SparseAvx512Kind::Bf16;
        let (even, odd) = if bf16 { (r.grid(m, p), r.grid(m, p)) } else { (Vec::new(), Vec::new()) };
        let a_even = (0..m).map(|_| r.take()).collect();
        let a_odd = if bf16 { (0..m).map(|_| r.take()).collect() } else { Vec::new() };
        let (odd_mask, shift16) = if bf16 { (Some(r.take()), Some(r.take())) } else { (None, None) };
        let raw = (0..n_raw).map(|_| r.take()).collect();
        let split = (0..n_split).map(|_| r.take()).collect();
        let panel_mask_stride = (spec.k_tiles as usize * kind.tile_mask_bytes()) as i32;
        let row_block = if bf16 && n_raw >= 2 { 2 } else { 1 };
        RegisterMap {
            spec: *spec,
            m,
            acc,
            even,
            odd,
            a_even,
            a_odd,
            odd_mask,
            shift16,
            raw,
            split,
            row_block,
            panel_mask_stride,
        }
    }

    fn kind(&self) -> SparseAvx512Kind {
        self.spec.kind
    }

    fn tail_cols(&self) -> usize {
        self.spec.n as usize - (self.spec.panels() - 1) * PANEL_COLS
    }

    /// The write mask of panel `j` of a pass of width `w`.
    fn c_mask(&self, j: usize, w: usize, zeroing: bool) -> Mask {
        if self.tail_cols() < PANEL_COLS && j + 1 == w {
            if zeroing {
                Mask::zero(TAIL)
            } else {
                Mask::merge(TAIL)
            }
        } else {
            Mask::NONE
        }
    }

    /// ROWS, STRIDE, STRIDE3 for C of the pass (column `cur * 16`), with
    /// the args pointer in `args`.
    fn emit_c_rows(&self, cb: &mut CodeBuilder, args: Gpr) {
        let (rows, s, s3, a) = (ROWS.number(), STRIDE.number(), STRIDE3.number(), args.number());
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(rows), QWORD [rsp + F_CUR]
            ; shl Rq(rows), 6
            ; add Rq(rows), QWORD [Rq(a) + tilejit_kernels::arg_offset!(SparseAvx512Args, c)]
            ; mov Rq(s), QWORD [Rq(a) + tilejit_kernels::arg_offset!(SparseAvx512Args, ldc)]
            ; lea Rq(s3), [Rq(s) + Rq(s) * 2]
        );
    }

    /// One pass over all K tiles for `w` panels starting at panel `[rsp + F_CUR]`.
    fn emit_pass(&self, cb: &mut CodeBuilder, w: usize) -> Result<(), GenerateError> {
        let kind = self.kind();
        let spec = &self.spec;
        let panels = spec.panels();
        let (t0, t1) = (TMP[0].number(), TMP[1].number());
        let kt8 = spec.k_tiles as i32 * 8;

        if self.tail_cols() < PANEL_COLS {
            // The pass's last panel is N's tail iff cur == panels - w.
            let tail = (1i32 << self.tail_cols()) - 1;
            dynasm!(cb.ops
                ; .arch x64
                ; mov Rq(t0), QWORD [rsp + F_CUR]
                ; mov Rd(t1), 0xFFFF
                ; mov Rd(STRIDE.number()), tail
                ; cmp Rq(t0), panels.saturating_sub(w) as i32
                ; cmove Rd(t1), Rd(STRIDE.number())
            );
            cb.emit(kmovq_k_r64(TAIL, TMP[1]));
        }

        // Masks and value pointers of the pass's panels.
        let (args, cur) = (TMP[1], TMP[0]);
        let (a, c) = (args.number(), cur.number());
        let (mask, kc, s3) = (MASK.number(), K_COUNT.number(), STRIDE3.number());
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(a), QWORD [rsp + F_ARGS]
            ; mov Rq(c), QWORD [rsp + F_CUR]
            ; imul Rq(mask), Rq(c), self.panel_mask_stride
            ; add Rq(mask), QWORD [Rq(a) + tilejit_kernels::arg_offset!(SparseAvx512Args, masks)]
            ; imul Rq(kc), Rq(c), kt8
            ; add Rq(kc), QWORD [Rq(a) + tilejit_kernels::arg_offset!(SparseAvx512Args, offsets)]
            ; mov Rq(s3), QWORD [Rq(a) + tilejit_kernels::arg_offset!(SparseAvx512Args, values)]
        );
        for (j, v) in VPTR[..w].iter().enumerate() {
            let v = v.number();
            dynasm!(cb.ops ; .arch x64 ; mov Rq(v), QWORD [Rq(kc) + j as i32 * kt8]);
            match kind {
                SparseAvx512Kind::Bf16 => dynasm!(cb.ops ; .arch x64 ; lea Rq(v), [Rq(s3) + Rq(v) * 2]),
                SparseAvx512Kind::Int8 => dynasm!(cb.ops ; .arch x64 ; add Rq(v), Rq(s3)),
            }
        }

        // Accumulators: zero, or C (the tail panel's columns only).
        let (c_load, c_store) = match kind {
            SparseAvx512Kind::Bf16 => (EvexOp::VMOVUPS_LOAD, EvexOp::VMOVUPS_STORE),
            SparseAvx512Kind::Int8 => (EvexOp::VMOVDQU32_LOAD, EvexOp::VMOVDQU32_STORE),
        };
        match spec.c_init {
            CInit::Zero => {
                for row in &self.acc {
                    for &z in &row[..w] {
                        cb.emit(EvexOp::VPXORD.rvm(z, z, z, Mask::NONE)?);
                    }
                }
            }
            CInit::Load => {
                self.emit_c_rows(cb, args);
                for (i, row) in self.acc.iter().enumerate() {
                    for (j, &z) in row[..w].iter().enumerate() {
                        cb.emit(c_load.rm_mem(z, row_mem(i, 64 * j as i32)?, self.c_mask(j, w, true))?);
                    }
                }
            }
        }

        // K loop.
        let (rows, s) = (ROWS.number(), STRIDE.number());
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(rows), QWORD [Rq(a) + tilejit_kernels::arg_offset!(SparseAvx512Args, a)]
            ; mov Rq(s), QWORD [Rq(a) + tilejit_kernels::arg_offset!(SparseAvx512Args, lda)]
            ; lea Rq(s3), [Rq(s) + Rq(s) * 2]
            ; mov Rd(kc), spec.k_tiles as i32
            ; tile_loop:
        );
        self.emit_tile(cb, w)?;
        let a_tile = (kind.tile_k() * kind.a_elem_bytes()) as i32;
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(mask), kind.tile_mask_bytes() as i32
            ; add Rq(rows), a_tile
            ; dec Rq(kc)
            ; jnz <tile_loop
            ; mov Rq(a), QWORD [rsp + F_ARGS]
        );

        // int8: + the per-column correction of the operand shift.
        if kind == SparseAvx512Kind::Int8 {
            dynasm!(cb.ops
                ; .arch x64
                ; mov Rq(kc), QWORD [Rq(a) + tilejit_kernels::arg_offset!(SparseAvx512Args, col_bias)]
                ; test Rq(kc), Rq(kc)
                ; jz >no_bias
                ; mov Rq(c), QWORD [rsp + F_CUR]
                ; shl Rq(c), 6
                ; add Rq(kc), Rq(c)
            );
            for row in &self.acc {
                for (j, &z) in row[..w].iter().enumerate() {
                    cb.emit(EvexOp::VPADDD.rvm_mem(z, z, Mem::base_disp(K_COUNT, 64 * j as i32), Mask::NONE, false)?);
                }
            }
            dynasm!(cb.ops ; .arch x64 ; no_bias:);
        }

        // C <- accumulators.
        self.emit_c_rows(cb, args);
        for (i, row) in self.acc.iter().enumerate() {
            for (j, &z) in row[..w].iter().enumerate() {
                cb.emit(c_store.mr_mem(row_mem(i, 64 * j as i32)?, z, self.c_mask(j, w, false))?);
            }
        }
        dynasm!(cb.ops
            ; .arch x64
            ; add QWORD [rsp + F_CUR], w as i32
            ; jmp ->dispatch
        );
        Ok(())
    }

    /// One K tile of `w` panels: 16 rows, each expanded once and used by
    /// every row of A.
    fn emit_tile(&self, cb: &mut CodeBuilder, w: usize) -> Result<(), GenerateError> {
        let (kind, spec, none) = (self.kind(), &self.spec, Mask::NONE);
        let tmb = kind.tile_mask_bytes() as i32;
        if spec.prefetch_masks > 0 {
            for j in 0..w {
                for line in 0..tmb / 64 {
                    let d = j as i32 * self.panel_mask_stride + i32::from(spec.prefetch_masks) * tmb + 64 * line;
                    prefetch(cb, Mem::base_disp(MASK, d));
                }
            }
        }
        if kind == SparseAvx512Kind::Bf16 {
            for z in self.even.iter().chain(&self.odd).flat_map(|row| &row[..w]) {
                cb.emit(EvexOp::VPXORD.rvm(*z, *z, *z, none)?);
            }
        }
        let rb = self.row_block;
        let group = (self.raw.len() / rb).max(1);
        let mut n = Counters::default();
        for r0 in (0..TILE_ROWS).step_by(rb) {
            for g0 in (0..w).step_by(group) {
                let panels = g0..(g0 + group).min(w);
                // The expansions of the group first (kmov and expand are
                // port 5 only), then the arithmetic on them.
                for j in panels.clone() {
                    self.emit_expand(cb, j, r0, &self.raw[(j - g0) * rb..(j - g0 + 1) * rb], &mut n)?;
                }
                for dr in 0..rb {
                    self.emit_broadcast_a(cb, r0 + dr)?;
                    for j in panels.clone() {
                        self.emit_math(cb, j, self.raw[(j - g0) * rb + dr], &mut n)?;
                    }
                }
            }
        }
        if kind == SparseAvx512Kind::Bf16 {
            for i in 0..self.m {
                for j in 0..w {
                    let (e, o, c) = (self.even[i][j], self.odd[i][j], self.acc[i][j]);
                    // even + odd (even's NaN wins), then C + that (C's NaN wins).
                    cb.emit(EvexOp::VADDPS.rvm(e, e, o, none)?);
                    cb.emit(EvexOp::VADDPS.rvm(c, c, e, none)?);
                }
            }
        }
        Ok(())
    }

    /// A of tile row `r` for every row of A: bf16 the even and the odd k
    /// as f32 broadcasts, int8 the dword (4 k, already xor 0x80).
    fn emit_broadcast_a(&self, cb: &mut CodeBuilder, r: usize) -> Result<(), GenerateError> {
        let (none, r) = (Mask::NONE, r as i32);
        for i in 0..self.m {
            match self.kind() {
                SparseAvx512Kind::Bf16 => {
                    cb.emit(EvexOp::VBROADCASTSS.rm_mem(self.a_even[i], row_mem(i, 8 * r)?, none)?);
                    cb.emit(EvexOp::VBROADCASTSS.rm_mem(self.a_odd[i], row_mem(i, 8 * r + 4)?, none)?);
                }
                SparseAvx512Kind::Int8 => {
                    cb.emit(EvexOp::VPBROADCASTD.rm_mem(self.a_even[i], row_mem(i, 4 * r)?, none)?);
                }
            }
        }
        Ok(())
    }

    /// Expands tile rows `r0 .. r0 + raw.len()` of panel `j` into `raw`
    /// and advances the panel's value pointer past them: the mask straight
    /// from memory into a k register, VPEXPANDW/B with zero masking from
    /// the value stream, the pointer moved by POPCNT of the mask(s). A bf16
    /// row pair takes one 64-bit POPCNT of both masks for the pointer, the
    /// second row addressed at `[v + popcnt(first) * 2]`.
    fn emit_expand(
        &self,
        cb: &mut CodeBuilder,
        j: usize,
        r0: usize,
        raw: &[Zmm],
        n: &mut Counters,
    ) -> Result<(), GenerateError> {
        let kind = self.kind();
        let vptr = VPTR[j];
        let (v, mask) = (vptr.number(), MASK.number());
        let md = j as i32 * self.panel_mask_stride + (r0 * kind.mask_bytes()) as i32;
        let mut k = || -> Result<KReg, EncodeError> {
            n.expand += 1;
            KReg::new(FIRST_EXPAND_K + (n.expand % usize::from(EXPAND_KS)) as u8)
        };
        let (t0, t1) = (TMP[0].number(), TMP[1].number());
        match (kind, raw) {
            (SparseAvx512Kind::Bf16, &[row]) => {
                let k = k()?;
                cb.emit(kmovd_k_mem(k, Mem::base_disp(MASK, md)));
                cb.emit(EvexOp::VPEXPANDW.rm_mem(row, Mem::base(vptr), Mask::zero(k))?);
                dynasm!(cb.ops
                    ; .arch x64
                    ; popcnt Rd(t0), DWORD [Rq(mask) + md]
                    ; lea Rq(v), [Rq(v) + Rq(t0) * 2]
                );
            }
            (SparseAvx512Kind::Bf16, &[first, second]) => {
                let (k0, k1) = (k()?, k()?);
                cb.emit(kmovd_k_mem(k0, Mem::base_disp(MASK, md)));
                cb.emit(EvexOp::VPEXPANDW.rm_mem(first, Mem::base(vptr), Mask::zero(k0))?);
                dynasm!(cb.ops ; .arch x64 ; popcnt Rd(t0), DWORD [Rq(mask) + md]);
                cb.emit(kmovd_k_mem(k1, Mem::base_disp(MASK, md + 4)));
                let at = Mem::base(vptr).with_index(TMP[0], Scale::S2)?;
                cb.emit(EvexOp::VPEXPANDW.rm_mem(second, at, Mask::zero(k1))?);
                dynasm!(cb.ops
                    ; .arch x64
                    ; popcnt Rq(t1), QWORD [Rq(mask) + md]
                    ; lea Rq(v), [Rq(v) + Rq(t1) * 2]
                );
            }
            (SparseAvx512Kind::Int8, &[row]) => {
                let k = k()?;
                cb.emit(kmovq_k_mem(k, Mem::base_disp(MASK, md)));
                cb.emit(EvexOp::VPEXPANDB.rm_mem(row, Mem::base(vptr), Mask::zero(k))?);
                dynasm!(cb.ops
                    ; .arch x64
                    ; popcnt Rq(t0), QWORD [Rq(mask) + md]
                    ; add Rq(v), Rq(t0)
                );
            }
            _ => unreachable!("row blocks are 1 row (int8) or 1-2 rows (bf16)"),
        }
        if self.spec.prefetch_values > 0 {
            prefetch(cb, Mem::base_disp(vptr, i32::from(self.spec.prefetch_values)));
        }
        Ok(())
    }

    /// The arithmetic on one expanded row of panel `j`, for every row of A.
    fn emit_math(&self, cb: &mut CodeBuilder, j: usize, raw: Zmm, n: &mut Counters) -> Result<(), GenerateError> {
        let none = Mask::NONE;
        match self.kind() {
            SparseAvx512Kind::Bf16 => {
                let (odd_mask, shift16) = (self.odd_mask.expect("bf16"), self.shift16.expect("bf16"));
                let even = self.split[n.split % self.split.len()];
                n.split += 1;
                // Even k of each column: its bf16 moved to bits 31:16 (an
                // exact f32); odd k: already in bits 31:16, the even one cleared.
                cb.emit(EvexOp::VPSLLVD.rvm(even, raw, shift16, none)?);
                cb.emit(EvexOp::VPANDD.rvm(raw, raw, odd_mask, none)?);
                for i in 0..self.m {
                    // A in vvvv, B in rm, the chain in the destination: the
                    // AMX NaN order (the dense kernels' chains.rs).
                    cb.emit(EvexOp::VFMADD231PS.rvm(self.even[i][j], self.a_even[i], even, none)?);
                    cb.emit(EvexOp::VFMADD231PS.rvm(self.odd[i][j], self.a_odd[i], raw, none)?);
                }
            }
            SparseAvx512Kind::Int8 => {
                for i in 0..self.m {
                    // u8 (A + 128) in src1, s8 W in src2.
                    cb.emit(EvexOp::VPDPBUSD.rvm(self.acc[i][j], self.a_even[i], raw, none)?);
                }
            }
        }
        Ok(())
    }
}

/// Rotation counters of a tile body.
#[derive(Default)]
struct Counters {
    expand: usize,
    split: usize,
}

/// Pass widths: the spec's, then the powers of two below it, descending;
/// the last is 1, so any remainder is covered.
pub(super) fn pass_widths(p: usize) -> Vec<usize> {
    let mut widths = vec![p];
    let mut w = if p.is_power_of_two() { p / 2 } else { p.next_power_of_two() / 2 };
    while w >= 1 {
        widths.push(w);
        w /= 2;
    }
    widths
}

/// Generates the kernel for a validated spec.
pub(super) fn generate(spec: &SparseAvx512Spec) -> Result<JitCode, GenerateError> {
    let plan = RegisterMap::new(spec);
    let bf16 = spec.kind == SparseAvx512Kind::Bf16;
    let mut cb = CodeBuilder::new()?;
    let entry = cb.offset();
    let (t0, args) = (TMP[0].number(), Gpr::RDI.number());
    let frame = Frame { saved: &SAVED, locals: FRAME, mxcsr_slot: bf16.then_some(F_MXCSR), tiles: false };
    cb.enter(&frame);
    dynasm!(cb.ops
        ; .arch x64
        ; mov QWORD [rsp + F_ARGS], Rq(args)
        ; lea Rq(t0), [->consts]
    );
    if bf16 {
        dynasm!(cb.ops ; .arch x64 ; ldmxcsr [Rq(t0) + C_MXCSR]);
        let (odd, shift) = (plan.odd_mask.expect("bf16"), plan.shift16.expect("bf16"));
        cb.emit(EvexOp::VPBROADCASTD.rm_mem(odd, Mem::base_disp(TMP[0], C_ODD), Mask::NONE)?);
        cb.emit(EvexOp::VPBROADCASTD.rm_mem(shift, Mem::base_disp(TMP[0], C_SHIFT), Mask::NONE)?);
    }
    dynasm!(cb.ops
        ; .arch x64
        ; mov Rq(t0), QWORD [Rq(args) + tilejit_kernels::arg_offset!(SparseAvx512Args, first_panel)]
        ; mov QWORD [rsp + F_CUR], Rq(t0)
        ; add Rq(t0), QWORD [Rq(args) + tilejit_kernels::arg_offset!(SparseAvx512Args, panel_count)]
        ; mov QWORD [rsp + F_END], Rq(t0)
        ; ->dispatch:
        ; mov Rq(t0), QWORD [rsp + F_END]
        ; sub Rq(t0), QWORD [rsp + F_CUR]
        ; jz ->done
    );
    // Widths above the matrix's panel count could never run.
    let widths = pass_widths(usize::from(spec.panels_per_pass).min(spec.panels()));
    let labels: Vec<_> = widths.iter().map(|_| cb.ops.new_dynamic_label()).collect();
    for (&w, &label) in widths.iter().zip(&labels).take(widths.len() - 1) {
        dynasm!(cb.ops
            ; .arch x64
            ; cmp Rq(t0), w as i32
            ; jae =>label
        );
    }
    dynasm!(cb.ops ; .arch x64 ; jmp =>labels[widths.len() - 1]);
    for (&w, &label) in widths.iter().zip(&labels) {
        dynasm!(cb.ops ; .arch x64 ; .align 16 ; =>label);
        plan.emit_pass(&mut cb, w)?;
    }
    dynasm!(cb.ops ; .arch x64 ; ->done:);
    cb.leave(&frame);
    dynasm!(cb.ops
        ; .arch x64
        ; .align 16
        ; ->consts:
        ; .u32 0xFFFF_0000u32 as i32 as u32
        ; .u32 16
        ; .u32 MXCSR_RNE_DAZ_FTZ
    );
    let code = cb.finish(entry)?;
    code.dump_if_requested(&spec.name());
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_widths_end_in_one_and_descend() {
        assert_eq!(pass_widths(1), [1]);
        assert_eq!(pass_widths(2), [2, 1]);
        assert_eq!(pass_widths(3), [3, 2, 1]);
        assert_eq!(pass_widths(6), [6, 4, 2, 1]);
        assert_eq!(pass_widths(8), [8, 4, 2, 1]);
    }
}
