//! AMX prefill kernels for GGUF block-quantized weights, bit-identical to
//! `tilejit_verify::quant::gemm_quant` (per block: `acc = fma(isum,
//! dw * da, acc)`, then for Q4_1 `acc = fma(mw, sa, acc)`).
//!
//! The weights are the quantized kernels' panel layout
//! ([`PackedQuant`], as large as the GGUF tensor: Q4 nibbles stay packed,
//! scales stay f16), the one layout every path reads: no AMX copy of the
//! weights exists beside it. Each 32-wide block of a 16-column panel is
//! widened into an s8 B tile in the caller's scratch buffer just before its
//! TDP (AVX-512, ~12 instructions), which TDPBSSD then reads in its VNNI
//! order: row r = k `4r..4r+3` of the 16 columns. The panel layout already
//! is that order (`quant_avx512::pack` docs): a Q4 row r holds k `4r + t` in
//! its low nibbles and k `16 + 4r + t` in its high ones, so tile rows `r`
//! and `r + 4` are one load, a shift and two masks (and `- 8` for Q4_0);
//! a Q8_0 row is stored `q xor 0x80`, undone by one XOR.
//!
//! The per-block scales force the integer sums out of the tiles after every
//! block (docs/AMX.md, "llama.cpp AMX"): one TDP per block into a zeroed C
//! tile, TILESTORED to scratch, then an AVX-512 epilogue folds the sums
//! into f32 accumulators that live in zmm registers for the whole K loop
//! (one register per output row of the panel):
//!
//! ```text
//! for each panel (16 columns; the last one masked at the N tail):
//!     acc[r] <- +0.0                                 ; r = 0 .. rows
//!     TDP(block 0 -> set 0)
//!     for b in 1 .. k_blocks:                        ; unrolled by two
//!         TDP(block b -> set b % 2)                  ; TMUL works on b ...
//!         EPILOGUE(block b-1 <- set (b-1) % 2)       ; ... while the cores fold b-1
//!     EPILOGUE(last block)
//!     C rows <- acc
//!
//! TDP(b -> s):       B[s] <- widen(block b); tileloadd B <- B[s]
//!                    tilezero C[s][t]; tileloadd A[t](b); tdp C[s][t] += A[t] * B
//! EPILOGUE(b <- s):  tilestored scratch[s][t] <- C[s][t]; dw <- d of the 16 columns (f16 -> f32, exact)
//!                    per row r:  f = f32(isum[r])                    ; vcvtdq2ps, exact below 2^24
//!                                s = dw * broadcast(da[r][b])          ; exact (two f16)
//!                                acc[r] = fma(f, s, acc[r])            ; one rounding
//!                                Q4_1: acc[r] = fma(mw, broadcast(sa[r][b]), acc[r])
//! ```
//!
//! Two C tile sets (and two B buffers) alternate so the next block's TDP
//! never waits for the previous block's TILESTORED (tiles are not
//! renamed). Block b's set is b's parity, which is also its place in its
//! pair of the panel layout, so every weight address is a constant offset.
//! The order per output element is exactly the oracle's. MXCSR is left
//! alone (default: RNE, no DAZ/FTZ, which the oracle models; on integer
//! data TDPBSSD rounds nothing).

// dynasm! expands register operands with `.into()` even when they are
// already u8; that is the macro's business, not ours.
#![allow(clippy::useless_conversion)]

mod activations;

pub use crate::quant_avx512::{PackedQuant, WeightFormat, PANEL_COLS, QK};
pub use activations::{AmxActivations, QuantPackError};

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use crate::codegen::ZmmAlloc;
use crate::cpu::Feature;
use crate::encoder::{self as enc, kmovq_k_r64, EvexOp, Gpr, KReg, Mask, Mem, Scale, TdpOp, Tmm, Zmm};
use crate::jit::{CodeBuilder, Frame, GenerateError, JitCode};
use crate::tile_config::TileConfig;

/// The extensions the kernel executes: tiles and TDPBSSD, and AVX512F/BW
/// for the widening (VPSUBB) and the f32 fold (VCVTDQ2PS, VCVTPH2PS,
/// VFMADD231PS, KMOVQ).
pub const FEATURES: &[Feature] = &[Feature::AmxTile, Feature::AmxInt8, Feature::Avx512F, Feature::Avx512Bw];

/// Arguments of one kernel call: `rows` activation rows against
/// `n_full` full panels and, when `tail_mask != 0`, one masked panel.
/// Strides are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QuantAmxArgs {
    /// A operand at (row 0, k 0); rows `lda` bytes apart.
    pub a: *const u8,
    pub lda: usize,
    /// `lda * tile_rows`: from the first row tile to the second.
    pub a_tile2: usize,
    /// Scale table at (block 0, row 0) ([`AmxActivations::scales_t`]);
    /// blocks `table_stride` bytes apart, rows 4 bytes apart.
    pub da: *const f32,
    /// Sum table, same layout (Q4_1 only; otherwise unused).
    pub sa: *const f32,
    pub table_stride: usize,
    /// [`PackedQuant`] bytes at the first panel; panels `panel_stride` apart.
    pub w: *const u8,
    pub panel_stride: usize,
    /// C at (row 0, column 0); rows `ldc` bytes apart.
    pub c: *mut f32,
    pub ldc: usize,
    pub k_blocks: usize,
    pub n_full: usize,
    pub tail_mask: u64,
    /// 64-byte aligned, [`SCRATCH_BYTES`] long, private to the caller.
    pub scratch: *mut u8,
}

/// Scratch bytes per call: two sets of two 1 KiB C tiles, then two
/// 512-byte B tiles.
pub const SCRATCH_BYTES: usize = 5120;
/// Where the B tiles start in the scratch buffer.
const B_SCRATCH: i32 = 4096;
/// Bytes of one block's s8 B tile (8 rows of 64).
const B_TILE_BYTES: i32 = 512;

/// What changes the generated code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantAmxSpec {
    pub format: WeightFormat,
    /// Activation rows per call, 1..=`2 * tile_rows`, at most [`MAX_ROWS`].
    pub rows: u8,
    /// Rows of a full A / C tile (1..=16); a call uses one or two row tiles.
    pub tile_rows: u8,
}

/// Accumulator registers leave room for the scales, the widening's
/// constants and two temporaries (Q4_0: dw, mask, shift, bias; Q4_1: dw,
/// mw, mask, shift).
pub const MAX_ROWS: u8 = 26;

impl QuantAmxSpec {
    /// # Errors
    /// Rows out of range.
    pub fn validate(&self) -> Result<(), QuantPackError> {
        if !(1..=MAX_ROWS).contains(&self.rows) {
            return Err(QuantPackError::BadRows { m: self.rows.into(), max: MAX_ROWS.into() });
        }
        if !(1..=16).contains(&self.tile_rows) || u16::from(self.rows) > 2 * u16::from(self.tile_rows) {
            return Err(QuantPackError::BadSpec("tile rows must be 1..=16 and rows at most twice the tile rows"));
        }
        Ok(())
    }

    /// Rows of each row tile used (one or two).
    fn row_tiles(&self) -> Vec<u8> {
        let (r, t) = (self.rows, self.tile_rows);
        if r <= t {
            vec![r]
        } else {
            vec![t, r - t]
        }
    }

    pub fn name(&self) -> String {
        format!("quant_amx_{:?}_r{}_t{}", self.format, self.rows, self.tile_rows).to_lowercase()
    }
}

// GPR roles (SysV: the args pointer arrives in rdi).
const ARGS: Gpr = Gpr::RDI;
const LDA: Gpr = Gpr::RSI;
const STRIDE64: Gpr = Gpr::RDX;
const A_PTR: Gpr = Gpr::RCX;
const W_PTR: Gpr = Gpr::R8;
const DA_PTR: Gpr = Gpr::R9;
const SA_PTR: Gpr = Gpr::R10;
const SCRATCH: Gpr = Gpr::R11;
const K_COUNT: Gpr = Gpr::R12;
const W_PANEL: Gpr = Gpr::R13;
const C_PANEL: Gpr = Gpr::R14;
const N_COUNT: Gpr = Gpr::R15;
const TMP: Gpr = Gpr::RAX;
const TMP2: Gpr = Gpr::RBX;
const SAVED: [Gpr; 5] = [Gpr::RBX, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15];
const TAIL: KReg = KReg::K1;

/// C tiles of set s, row tile t: tmm(2s + t); A tiles tmm4, tmm5; B tmm6.
fn c_tile(set: usize, t: usize) -> Tmm {
    Tmm::new((2 * set + t) as u8).expect("tmm0..3")
}
const A_TILES: [Tmm; 2] = [Tmm::TMM4, Tmm::TMM5];
const B_TILE: Tmm = Tmm::TMM6;

/// The register map and the code emitters.
struct RegisterMap {
    spec: QuantAmxSpec,
    tiles: Vec<u8>,
    acc: Vec<Zmm>,
    dw: Zmm,
    /// Q4_1's mins.
    mw: Option<Zmm>,
    /// Q4: 0x0F in every byte, and 4 in every dword (VPSRLVD's count).
    nib_mask: Option<Zmm>,
    shift: Option<Zmm>,
    /// Q4_0: 8 in every byte (subtracted); Q8_0: 0x80 (XORed).
    bias: Option<Zmm>,
    /// At least two.
    temps: Vec<Zmm>,
}

impl RegisterMap {
    fn new(spec: QuantAmxSpec) -> RegisterMap {
        let f = spec.format;
        let mut r = ZmmAlloc::new();
        let acc = (0..spec.rows).map(|_| r.take()).collect();
        let dw = r.take();
        let mut take_if = |want: bool| want.then(|| r.take());
        let mw = take_if(f.has_min());
        let nib_mask = take_if(f != WeightFormat::Q8_0);
        let shift = take_if(f != WeightFormat::Q8_0);
        let bias = take_if(f != WeightFormat::Q4_1);
        let temps = r.rest();
        assert!(temps.len() >= 2, "MAX_ROWS leaves two temporaries for every format");
        RegisterMap { spec, tiles: spec.row_tiles(), acc, dw, mw, nib_mask, shift, bias, temps }
    }

    /// Quant bytes of one block, and of one block pair with its scales
    /// (the panel layout: `quant_avx512::pack` docs).
    fn quant_bytes(&self) -> i32 {
        self.spec.format.quant_bytes() as i32
    }

    fn pair_bytes(&self) -> i32 {
        self.spec.format.pair_bytes() as i32
    }

    /// Offset of the quants of block `j` (of parity `j % 2`, first pair)
    /// from the panel start; so for any pair it is this plus the pair's
    /// offset.
    fn quants_at(&self, j: i32) -> i32 {
        self.pair_bytes() * (j / 2) + self.quant_bytes() * (j % 2)
    }

    fn scales_at(&self, j: i32) -> i32 {
        self.pair_bytes() * (j / 2) + 2 * self.quant_bytes() + self.spec.format.scale_bytes() as i32 * (j % 2)
    }

    fn config(&self) -> Result<TileConfig, GenerateError> {
        let mut cfg = TileConfig::new();
        let (a_colsb, b_rows) = (32, 8);
        let err = GenerateError::TileConfig;
        for (t, &rows) in self.tiles.iter().enumerate() {
            cfg.set(c_tile(0, t), rows, 64).map_err(err)?;
            cfg.set(c_tile(1, t), rows, 64).map_err(err)?;
            cfg.set(A_TILES[t], rows, a_colsb).map_err(err)?;
        }
        cfg.set(B_TILE, b_rows, 64).map_err(err)?;
        let op = self.tdp_op();
        for (t, &a) in A_TILES.iter().enumerate().take(self.tiles.len()) {
            for set in 0..2 {
                cfg.check_tdp(op.mnemonic(), c_tile(set, t), a, B_TILE).map_err(err)?;
            }
        }
        Ok(cfg)
    }

    fn tdp_op(&self) -> TdpOp {
        TdpOp::Bssd
    }

    /// Widens the block at W_PTR into B buffer `set` (module docs).
    fn emit_widen(&self, cb: &mut CodeBuilder, set: usize) -> Result<(), GenerateError> {
        let none = Mask::NONE;
        let b_row = |r: i32| Mem::base_disp(SCRATCH, B_SCRATCH + set as i32 * B_TILE_BYTES + 64 * r);
        let (t0, t1) = (self.temps[0], self.temps[1]);
        match (self.nib_mask, self.shift) {
            (Some(mask), Some(shift)) => {
                for r in 0..4 {
                    cb.emit(EvexOp::VMOVDQU32_LOAD.rm_mem(t0, Mem::base_disp(W_PTR, 64 * r), none)?);
                    cb.emit(EvexOp::VPSRLVD.rvm(t1, t0, shift, none)?);
                    cb.emit(EvexOp::VPANDD.rvm(t0, t0, mask, none)?);
                    cb.emit(EvexOp::VPANDD.rvm(t1, t1, mask, none)?);
                    if let Some(eight) = self.bias {
                        cb.emit(EvexOp::VPSUBB.rvm(t0, t0, eight, none)?);
                        cb.emit(EvexOp::VPSUBB.rvm(t1, t1, eight, none)?);
                    }
                    cb.emit(EvexOp::VMOVDQU32_STORE.mr_mem(b_row(r), t0, none)?);
                    cb.emit(EvexOp::VMOVDQU32_STORE.mr_mem(b_row(r + 4), t1, none)?);
                }
            }
            _ => {
                let flip = self.bias.expect("Q8_0 holds its 0x80 bias");
                for r in 0..8 {
                    let t = self.temps[r as usize % 2];
                    cb.emit(EvexOp::VPXORD.rvm_mem(t, flip, Mem::base_disp(W_PTR, 64 * r), none, false)?);
                    cb.emit(EvexOp::VMOVDQU32_STORE.mr_mem(b_row(r), t, none)?);
                }
            }
        }
        Ok(())
    }

    /// TDP of the block at A_PTR / W_PTR (of parity `set`) into set `set`;
    /// advances both to the next block.
    fn emit_tdp(&self, cb: &mut CodeBuilder, set: usize) -> Result<(), GenerateError> {
        self.emit_widen(cb, set)?;
        let b = Mem::base_disp(SCRATCH, B_SCRATCH + set as i32 * B_TILE_BYTES).with_index(STRIDE64, Scale::S1)?;
        cb.emit(enc::tileloadd(B_TILE, b)?);
        for (t, &a) in A_TILES.iter().enumerate().take(self.tiles.len()) {
            cb.emit(enc::tilezero(c_tile(set, t)));
            let base = if t == 0 {
                A_PTR
            } else {
                dynasm!(cb.ops
                    ; .arch x64
                    ; mov Rq(TMP.number()), Rq(A_PTR.number())
                    ; add Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, a_tile2)]
                );
                TMP
            };
            cb.emit(enc::tileloadd(a, Mem::base(base).with_index(LDA, Scale::S1)?)?);
            cb.emit(enc::tdp(self.tdp_op(), c_tile(set, t), a, B_TILE)?);
        }
        let (set, a_step) = (set as i32, QK as i32);
        let w_step = self.quants_at(set + 1) - self.quants_at(set);
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(A_PTR.number()), a_step
            ; add Rq(W_PTR.number()), w_step
        );
        Ok(())
    }

    /// TILESTORED of C set `set` to scratch buffer `set`.
    fn emit_store(&self, cb: &mut CodeBuilder, set: usize) -> Result<(), GenerateError> {
        for t in 0..self.tiles.len() {
            let mem = Mem::base_disp(SCRATCH, ((set * 2 + t) * 1024) as i32).with_index(STRIDE64, Scale::S1)?;
            cb.emit(enc::tilestored(mem, c_tile(set, t))?);
        }
        Ok(())
    }

    /// Folds scratch buffer `set` (the block `blocks_back` blocks before
    /// the one W_PTR points at; its parity is `set`) into the
    /// accumulators; advances the tables.
    fn emit_fold(&self, cb: &mut CodeBuilder, set: usize, blocks_back: i32) -> Result<(), GenerateError> {
        let none = Mask::NONE;
        let scratch = |t: usize, row: usize| Mem::base_disp(SCRATCH, ((set * 2 + t) * 1024 + row * 64) as i32);
        // W_PTR is at the quants of block set + blocks_back (counting from
        // the pair the folded block is in).
        let j = set as i32;
        let scales_at = self.scales_at(j) - self.quants_at(j + blocks_back);
        // The 16 f16 d (then m) of the block, widened exactly.
        cb.emit(EvexOp::VCVTPH2PS.rm_mem(self.dw, Mem::base_disp(W_PTR, scales_at), none)?);
        if let Some(mw) = self.mw {
            cb.emit(EvexOp::VCVTPH2PS.rm_mem(mw, Mem::base_disp(W_PTR, scales_at + 32), none)?);
        }
        let tile_rows = usize::from(self.spec.tile_rows);
        for (r, &acc) in self.acc.iter().enumerate() {
            let isum = scratch(r / tile_rows, r % tile_rows);
            let s = self.temps[(2 * r) % self.temps.len()];
            cb.emit(EvexOp::VMULPS.rvm_mem(s, self.dw, Mem::base_disp(DA_PTR, 4 * r as i32), none, true)?);
            let f = self.temps[(2 * r + 1) % self.temps.len()];
            cb.emit(EvexOp::VCVTDQ2PS.rm_mem(f, isum, none)?);
            cb.emit(EvexOp::VFMADD231PS.rvm(acc, f, s, none)?);
            if let Some(mw) = self.mw {
                cb.emit(EvexOp::VFMADD231PS.rvm_mem(acc, mw, Mem::base_disp(SA_PTR, 4 * r as i32), none, true)?);
            }
        }
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, table_stride)]
            ; add Rq(DA_PTR.number()), Rq(TMP.number())
            ; add Rq(SA_PTR.number()), Rq(TMP.number())
        );
        Ok(())
    }

    /// All K blocks of the panel at W_PANEL, stored to the C columns at C_PANEL.
    fn emit_panel(&self, cb: &mut CodeBuilder, masked: bool) -> Result<(), GenerateError> {
        let none = Mask::NONE;
        for &acc in &self.acc {
            cb.emit(EvexOp::VPXORD.rvm(acc, acc, acc, none)?);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(A_PTR.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, a)]
            ; mov Rq(DA_PTR.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, da)]
            ; mov Rq(SA_PTR.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, sa)]
            ; mov Rq(W_PTR.number()), Rq(W_PANEL.number())
            ; mov Rq(K_COUNT.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, k_blocks)]
        );
        // Three stages a block apart: TDP(b), TILESTORED(b - 1), fold(b - 2),
        // so neither the next TDP waits for a store (tiles are not renamed)
        // nor a fold's loads for the TILESTORED just issued. Block b uses
        // C set and scratch buffer b % 2; K_COUNT = blocks still to TDP.
        self.emit_tdp(cb, 0)?;
        dynasm!(cb.ops
            ; .arch x64
            ; dec Rq(K_COUNT.number())
            ; jz >one_block
        );
        self.emit_tdp(cb, 1)?;
        self.emit_store(cb, 0)?;
        dynasm!(cb.ops
            ; .arch x64
            ; dec Rq(K_COUNT.number())
            ; cmp Rq(K_COUNT.number()), 2
            ; jb >pairs_done
            ; pairs:
        );
        for set in [0, 1] {
            self.emit_tdp(cb, set)?;
            self.emit_fold(cb, set, 3)?;
            self.emit_store(cb, 1 - set)?;
        }
        dynasm!(cb.ops
            ; .arch x64
            ; sub Rq(K_COUNT.number()), 2
            ; cmp Rq(K_COUNT.number()), 2
            ; jae <pairs
            ; pairs_done:
            ; test Rq(K_COUNT.number()), Rq(K_COUNT.number())
            ; jz >last_odd
        );
        // One more block (even): then the last block is even.
        self.emit_tdp(cb, 0)?;
        self.emit_fold(cb, 0, 3)?;
        self.emit_store(cb, 1)?;
        self.emit_store(cb, 0)?;
        self.emit_fold(cb, 1, 2)?;
        self.emit_fold(cb, 0, 1)?;
        dynasm!(cb.ops ; .arch x64 ; jmp >stored ; last_odd:);
        self.emit_store(cb, 1)?;
        self.emit_fold(cb, 0, 2)?;
        self.emit_fold(cb, 1, 1)?;
        dynasm!(cb.ops ; .arch x64 ; jmp >stored ; one_block:);
        self.emit_store(cb, 0)?;
        self.emit_fold(cb, 0, 1)?;
        dynasm!(cb.ops
            ; .arch x64
            ; stored:
            ; mov Rq(TMP.number()), Rq(C_PANEL.number())
            ; mov Rq(TMP2.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, ldc)]
        );
        let mask = if masked { Mask::merge(TAIL) } else { none };
        for &acc in &self.acc {
            cb.emit(EvexOp::VMOVUPS_STORE.mr_mem(Mem::base(TMP), acc, mask)?);
            dynasm!(cb.ops ; .arch x64 ; add Rq(TMP.number()), Rq(TMP2.number()));
        }
        Ok(())
    }
}

/// A generated quantized AMX kernel with its tile configuration.
pub struct QuantAmxKernel {
    spec: QuantAmxSpec,
    code: JitCode,
}

impl QuantAmxKernel {
    /// Generates the kernel for `spec`.
    ///
    /// # Errors
    /// An invalid spec, or the assembler / executable memory failing.
    pub fn generate(spec: QuantAmxSpec) -> Result<QuantAmxKernel, GenerateError> {
        spec.validate()?;
        let plan = RegisterMap::new(spec);
        let config = plan.config()?;
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        let frame = Frame { saved: &SAVED, locals: 0, mxcsr_slot: None, tiles: true };
        cb.enter(&frame);
        cb.load_tile_config(config, TMP);
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, tail_mask)]
        );
        cb.emit(kmovq_k_r64(TAIL, TMP));
        // The widening's constants, read once (after `ret` below).
        dynasm!(cb.ops ; .arch x64 ; lea Rq(TMP.number()), [>consts]);
        for (reg, at) in [(plan.nib_mask, 0), (plan.shift, 4), (plan.bias, 8)] {
            if let Some(reg) = reg {
                cb.emit(EvexOp::VPBROADCASTD.rm_mem(reg, Mem::base_disp(TMP, at), Mask::NONE)?);
            }
        }
        let bias: u32 = if spec.format == WeightFormat::Q8_0 { 0x8080_8080 } else { 0x0808_0808 };
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(LDA.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, lda)]
            ; mov Rq(STRIDE64.number()), 64
            ; mov Rq(SCRATCH.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, scratch)]
            ; mov Rq(W_PANEL.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, w)]
            ; mov Rq(C_PANEL.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, c)]
            ; mov Rq(N_COUNT.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, n_full)]
            ; test Rq(N_COUNT.number()), Rq(N_COUNT.number())
            ; jz >panels_done
            ; panels:
        );
        plan.emit_panel(&mut cb, false)?;
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(W_PANEL.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, panel_stride)]
            ; add Rq(C_PANEL.number()), 64
            ; dec Rq(N_COUNT.number())
            ; jnz <panels
            ; panels_done:
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAmxArgs, tail_mask)]
            ; test Rq(TMP.number()), Rq(TMP.number())
            ; jz >done
        );
        plan.emit_panel(&mut cb, true)?;
        dynasm!(cb.ops ; .arch x64 ; done:);
        cb.leave(&frame);
        dynasm!(cb.ops
            ; .arch x64
            ; .align 8
            ; consts:
            ; .u32 0x0F0F_0F0F
            ; .u32 4
            ; .u32 bias as _
        );
        let code = cb.finish(entry)?;
        code.dump_if_requested(&spec.name());
        Ok(QuantAmxKernel { spec, code })
    }

    pub fn spec(&self) -> &QuantAmxSpec {
        &self.spec
    }

    pub fn code(&self) -> &[u8] {
        self.code.bytes()
    }

    /// The executable code with the data it points at (for emulation).
    pub fn jit_code(&self) -> &JitCode {
        &self.code
    }

    /// Runs the kernel.
    ///
    /// # Safety
    /// The process must have AMX permission (arch_prctl) and the CPU
    /// AVX-512F; MXCSR must be the default for oracle bits; `args` must
    /// describe buffers holding every byte touched: `rows` A rows of
    /// `k_blocks * 32` elements at `lda` (`a_tile2 = lda * tile_rows`);
    /// tables of `k_blocks` blocks at `table_stride` with `rows` f32 each
    /// (`sa` only for Q4_1); `n_full + (tail_mask != 0)` panels of
    /// `k_blocks` blocks of the panel layout at `panel_stride`; C rows of the full panels'
    /// columns plus the masked tail columns; a private scratch buffer.
    pub unsafe fn run(&self, args: &QuantAmxArgs) {
        // SAFETY: generated for this signature (SysV, one pointer argument),
        // restoring every callee-saved register and releasing the tiles;
        // touches only memory `args` describes (masked-off lanes are not
        // stored).
        unsafe { self.code.call(args) }
    }
}
