//! AMX prefill kernels for GGUF block-quantized weights, bit-identical to
//! `tilejit_verify::quant::gemm_quant` (per block: `acc = fma(isum,
//! dw * da, acc)`, then for Q4_1 `acc = fma(mw, sa, acc)`).
//!
//! The per-block scales force the integer sums out of the tiles after every
//! 32-wide block (docs/AMX.md, "llama.cpp AMX"): one TDP per block into a
//! zeroed C tile, TILESTORED to a scratch buffer, then an AVX-512 epilogue
//! folds the sums into f32 accumulators that live in zmm registers for the
//! whole K loop (one register per output row of the 16-column panel, so
//! the accumulators never touch memory until the final store):
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
//! TDP(b -> s):       tilezero C[s][t]; tileloadd B(b); tileloadd A[t](b); tdp C[s][t] += A[t] * B
//! EPILOGUE(b <- s):  tilestored scratch[s][t] <- C[s][t]; dw <- d of the 16 columns
//!                    per row r:  f = isum[r]  (int8: vcvtdq2ps, exact below 2^24;
//!                                              bf16: already the exact f32 sum)
//!                                s = dw * broadcast(da[r][b])          ; exact (two f16)
//!                                acc[r] = fma(f, s, acc[r])            ; one rounding
//!                                Q4_1: acc[r] = fma(mw, broadcast(sa[r][b]), acc[r])
//! ```
//!
//! Two C tile sets alternate so the next block's TDP never waits for the
//! previous block's TILESTORED (tiles are not renamed). The order per
//! output element is exactly the oracle's. MXCSR is left alone (default:
//! RNE, no DAZ/FTZ, which the oracle models; TDPBF16PS ignores MXCSR and,
//! on integer data, rounds nothing).

// dynasm! expands register operands with `.into()` even when they are
// already u8; that is the macro's business, not ours.
#![allow(clippy::useless_conversion)]

mod pack;

pub use pack::{AmxActivations, PackedQuantAmx, QuantPackError, TileKind, WeightFormat, PANEL_COLS, QK};

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use crate::dense_avx512::ZmmAlloc;
use crate::encoder::{self as enc, kmovq_k_r64, EvexOp, Gpr, KReg, Mask, Mem, Scale, TdpOp, Tmm, Zmm};
use crate::jit::{CodeBuilder, GenerateError, JitCode};
use crate::tile_config::TileConfig;

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
    /// Packed weights at the first panel; panels `panel_stride` apart.
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

/// Scratch bytes per call: two sets of two 1 KiB C tiles.
pub const SCRATCH_BYTES: usize = 4096;

/// What changes the generated code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantAmxSpec {
    pub format: WeightFormat,
    pub kind: TileKind,
    /// Activation rows per call, 1..=`2 * tile_rows`, at most [`MAX_ROWS`].
    pub rows: u8,
    /// Rows of a full A / C tile (1..=16); a call uses one or two row tiles.
    pub tile_rows: u8,
}

/// Accumulator registers leave room for the scales and the epilogue temps.
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
        format!("quant_amx_{:?}_{:?}_r{}_t{}", self.format, self.kind, self.rows, self.tile_rows).to_lowercase()
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

macro_rules! field {
    ($f:ident) => {
        std::mem::offset_of!(QuantAmxArgs, $f) as i32
    };
}

/// The register map and the code emitters.
struct Plan {
    spec: QuantAmxSpec,
    tiles: Vec<u8>,
    acc: Vec<Zmm>,
    dw: Zmm,
    mw: Zmm,
    temps: Vec<Zmm>,
    chunk: i32,
}

impl Plan {
    fn new(spec: QuantAmxSpec) -> Plan {
        let mut r = ZmmAlloc::new();
        let acc = (0..spec.rows).map(|_| r.take()).collect();
        let (dw, mw) = (r.take(), r.take());
        let temps = (usize::from(spec.rows) + 2..32).map(|_| r.take()).collect();
        let chunk = (spec.kind.tile_bytes() + if spec.format.has_min() { 128 } else { 64 }) as i32;
        Plan { spec, tiles: spec.row_tiles(), acc, dw, mw, temps, chunk }
    }

    fn config(&self) -> Result<TileConfig, GenerateError> {
        let mut cfg = TileConfig::new();
        let (a_colsb, b_rows) = match self.spec.kind {
            TileKind::Int8 => (32, 8),
            TileKind::Bf16 => (64, 16),
        };
        let err = |e: crate::tile_config::TileConfigError| GenerateError::Assembler(e.to_string());
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
        match self.spec.kind {
            TileKind::Int8 => TdpOp::Bssd,
            TileKind::Bf16 => TdpOp::Bf16ps,
        }
    }

    /// TDP of the block at A_PTR / W_PTR into set `set`; advances both.
    fn emit_tdp(&self, cb: &mut CodeBuilder, set: usize) -> Result<(), GenerateError> {
        cb.emit(enc::tileloadd(B_TILE, Mem::base(W_PTR).with_index(STRIDE64, Scale::S1)?)?);
        for (t, &a) in A_TILES.iter().enumerate().take(self.tiles.len()) {
            cb.emit(enc::tilezero(c_tile(set, t)));
            let base = if t == 0 {
                A_PTR
            } else {
                dynasm!(cb.ops
                    ; .arch x64
                    ; mov Rq(TMP.number()), Rq(A_PTR.number())
                    ; add Rq(TMP.number()), QWORD [Rq(ARGS.number()) + field!(a_tile2)]
                );
                TMP
            };
            cb.emit(enc::tileloadd(a, Mem::base(base).with_index(LDA, Scale::S1)?)?);
            cb.emit(enc::tdp(self.tdp_op(), c_tile(set, t), a, B_TILE)?);
        }
        let a_step = (QK * self.spec.kind.a_elem_bytes()) as i32;
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(A_PTR.number()), a_step
            ; add Rq(W_PTR.number()), self.chunk
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

    /// Folds scratch buffer `set` (the block whose chunk starts
    /// `blocks_back` chunks before W_PTR) into the accumulators; advances
    /// the tables.
    fn emit_fold(&self, cb: &mut CodeBuilder, set: usize, blocks_back: i32) -> Result<(), GenerateError> {
        let none = Mask::NONE;
        let scratch = |t: usize, row: usize| Mem::base_disp(SCRATCH, ((set * 2 + t) * 1024 + row * 64) as i32);
        let scales_at = self.spec.kind.tile_bytes() as i32 - blocks_back * self.chunk;
        cb.emit(EvexOp::VMOVUPS_LOAD.rm_mem(self.dw, Mem::base_disp(W_PTR, scales_at), none)?);
        if self.spec.format.has_min() {
            cb.emit(EvexOp::VMOVUPS_LOAD.rm_mem(self.mw, Mem::base_disp(W_PTR, scales_at + 64), none)?);
        }
        let tile_rows = usize::from(self.spec.tile_rows);
        for (r, &acc) in self.acc.iter().enumerate() {
            let isum = scratch(r / tile_rows, r % tile_rows);
            let s = self.temps[(2 * r) % self.temps.len()];
            cb.emit(EvexOp::VMULPS.rvm_mem(s, self.dw, Mem::base_disp(DA_PTR, 4 * r as i32), none, true)?);
            match self.spec.kind {
                TileKind::Int8 => {
                    let f = self.temps[(2 * r + 1) % self.temps.len()];
                    cb.emit(EvexOp::VCVTDQ2PS.rm_mem(f, isum, none)?);
                    cb.emit(EvexOp::VFMADD231PS.rvm(acc, f, s, none)?);
                }
                TileKind::Bf16 => cb.emit(EvexOp::VFMADD231PS.rvm_mem(acc, s, isum, none, false)?),
            }
            if self.spec.format.has_min() {
                cb.emit(EvexOp::VFMADD231PS.rvm_mem(acc, self.mw, Mem::base_disp(SA_PTR, 4 * r as i32), none, true)?);
            }
        }
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + field!(table_stride)]
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
            ; mov Rq(A_PTR.number()), QWORD [Rq(ARGS.number()) + field!(a)]
            ; mov Rq(DA_PTR.number()), QWORD [Rq(ARGS.number()) + field!(da)]
            ; mov Rq(SA_PTR.number()), QWORD [Rq(ARGS.number()) + field!(sa)]
            ; mov Rq(W_PTR.number()), Rq(W_PANEL.number())
            ; mov Rq(K_COUNT.number()), QWORD [Rq(ARGS.number()) + field!(k_blocks)]
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
            ; mov Rq(TMP2.number()), QWORD [Rq(ARGS.number()) + field!(ldc)]
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
    _config: Box<TileConfig>,
}

impl QuantAmxKernel {
    /// Generates the kernel for `spec`.
    ///
    /// # Errors
    /// An invalid spec, or the assembler / executable memory failing.
    pub fn generate(spec: QuantAmxSpec) -> Result<QuantAmxKernel, GenerateError> {
        spec.validate().map_err(|e| GenerateError::Assembler(e.to_string()))?;
        let plan = Plan::new(spec);
        let config = Box::new(plan.config()?);
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        cb.save(&SAVED);
        cb.load_tile_config(&config, TMP);
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + field!(tail_mask)]
        );
        cb.emit(kmovq_k_r64(TAIL, TMP));
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(LDA.number()), QWORD [Rq(ARGS.number()) + field!(lda)]
            ; mov Rq(STRIDE64.number()), 64
            ; mov Rq(SCRATCH.number()), QWORD [Rq(ARGS.number()) + field!(scratch)]
            ; mov Rq(W_PANEL.number()), QWORD [Rq(ARGS.number()) + field!(w)]
            ; mov Rq(C_PANEL.number()), QWORD [Rq(ARGS.number()) + field!(c)]
            ; mov Rq(N_COUNT.number()), QWORD [Rq(ARGS.number()) + field!(n_full)]
            ; test Rq(N_COUNT.number()), Rq(N_COUNT.number())
            ; jz >panels_done
            ; panels:
        );
        plan.emit_panel(&mut cb, false)?;
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(W_PANEL.number()), QWORD [Rq(ARGS.number()) + field!(panel_stride)]
            ; add Rq(C_PANEL.number()), 64
            ; dec Rq(N_COUNT.number())
            ; jnz <panels
            ; panels_done:
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + field!(tail_mask)]
            ; test Rq(TMP.number()), Rq(TMP.number())
            ; jz >done
        );
        plan.emit_panel(&mut cb, true)?;
        dynasm!(cb.ops ; .arch x64 ; done: ; vzeroupper);
        cb.emit(enc::tilerelease());
        cb.restore(&SAVED);
        dynasm!(cb.ops ; .arch x64 ; ret);
        let code = cb.finish(entry)?;
        code.dump_if_requested(&spec.name());
        Ok(QuantAmxKernel { spec, code, _config: config })
    }

    pub fn spec(&self) -> &QuantAmxSpec {
        &self.spec
    }

    pub fn code(&self) -> &[u8] {
        self.code.bytes()
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
    /// `k_blocks` chunks at `panel_stride`; C rows of the full panels'
    /// columns plus the masked tail columns; a private scratch buffer.
    pub unsafe fn run(&self, args: &QuantAmxArgs) {
        // SAFETY: generated for this signature (SysV, one pointer argument),
        // restoring every callee-saved register and releasing the tiles;
        // touches only memory `args` describes (masked-off lanes are not
        // stored).
        let f: extern "sysv64" fn(*const QuantAmxArgs) = unsafe { std::mem::transmute(self.code.entry_ptr()) };
        f(args)
    }
}
