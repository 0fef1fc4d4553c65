//! The sparse AMX kernel: every weight tile is expanded once per call and
//! every row tile of A runs against it before the next tile (SPARSE.md,
//! "What a better design does"). One call computes `rows` (1..=80) rows of
//! C for a run of whole column panels:
//!
//! ```text
//! expand(first tile) -> buf[0]
//! for each panel (16 columns; `cols` of them stored):
//!     C[t] <- 0 or C (accumulate)                 ; t = row tiles (<= 5)
//!     for each K tile q:                          ; buffers alternate
//!         tileloadd B <- buf[q % 2]
//!         expand(next tile of the stream) -> buf[(q + 1) % 2]
//!         for t: tileloadd A[t % 2] <- A packed (q, t); TDP C[t] += A * B
//!     C <- C[t]
//!
//! expand(tile): for r in 0..16:  mov rax, mask[r]; kmov k, rax
//!                                vpexpandw/b zmm{k}{z}, [values]   ; the dense row, zeros elsewhere
//!                                vmovdqu [buf + 64 r], zmm
//!                                values += popcnt(rax) * elem bytes
//! ```
//!
//! The B tile is byte for byte the one the dense kernel loads from
//! `PackedB` (the format's guarantee), A is the same data, and the TDPs run
//! in the same K order starting from the same C, so the result has the
//! dense kernel's bits: TDPBF16PS with 16 pairs per instruction for bf16,
//! wrapping TDPBSSD for int8. Tiles that are all zero are still multiplied
//! (for bf16, a TDP over a zero B is not a no-op: the format's docs).
//!
//! The mask and value streams are walked in traversal order straight
//! through panel boundaries: the expansion of a panel's first tile happens
//! during the previous panel's last TDPs. The expansion of tile q + 1 is
//! issued after the tile load of tile q, so its stores never feed the load
//! issued right after them.

// dynasm! expands register operands with `.into()` even when they are
// already u8; that is the macro's business, not ours.
#![allow(clippy::useless_conversion)]

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};
use tilejit_kernels::cpu::Feature;
use tilejit_kernels::encoder::{self as enc, kmovq_k_r64, EvexOp, Gpr, KReg, Mask, Mem, Scale, TdpOp, Tmm, Zmm};
use tilejit_kernels::jit::{CodeBuilder, Frame, GenerateError, JitCode};
use tilejit_kernels::tile_config::TileConfig;

use crate::elem::{PANEL_COLS, ROW_BYTES, TILE_ROWS};

/// Which weights the kernel expands, and so which TDP it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SparseKind {
    /// bf16 x bf16 -> f32 (TDPBF16PS, 16 pairs per instruction).
    Bf16,
    /// s8 (A) x s8 (W) -> i32, wrapping (TDPBSSD).
    Int8,
}

impl SparseKind {
    /// The extensions the kernel executes: tiles and the kind's TDP, and
    /// the expansion in zmm registers (VPEXPANDW/B are VBMI2, KMOVQ and
    /// VMOVDQU8/16 BW).
    pub const fn features(self) -> &'static [Feature] {
        match self {
            Self::Bf16 => {
                &[Feature::AmxTile, Feature::AmxBf16, Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Vbmi2]
            }
            Self::Int8 => {
                &[Feature::AmxTile, Feature::AmxInt8, Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Vbmi2]
            }
        }
    }

    fn mask_bytes(self) -> i32 {
        match self {
            Self::Bf16 => 4,
            Self::Int8 => 8,
        }
    }
}

/// Row tiles per call at most: 5 C tiles, B, and two A tiles that
/// alternate so a load never waits for the previous TDP to release its A.
pub const MAX_ROW_TILES: usize = 5;
/// Rows per call at most.
pub const MAX_ROWS: usize = MAX_ROW_TILES * TILE_ROWS;
/// Bytes of one packed A tile (16 rows x 64 bytes).
pub const A_TILE_BYTES: usize = TILE_ROWS * ROW_BYTES;
/// Bytes of the expansion buffers.
pub const SCRATCH_BYTES: usize = 2 * A_TILE_BYTES;

/// What changes the generated code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SparseAmxSpec {
    pub kind: SparseKind,
    /// Rows of C per call, 1..=[`MAX_ROWS`].
    pub rows: u8,
    /// Columns stored per panel, 1..=16 (less than 16 only for the last
    /// panel of N, which gets its own call).
    pub cols: u8,
    /// Start from C (true) or from zero.
    pub accumulate: bool,
}

impl SparseAmxSpec {
    /// # Errors
    /// Rows or columns out of range.
    pub fn validate(&self) -> Result<(), GenerateError> {
        if !(1..=MAX_ROWS).contains(&usize::from(self.rows)) || !(1..=16).contains(&self.cols) {
            return Err(GenerateError::Assembler(format!(
                "sparse AMX kernel: rows {} (1..={MAX_ROWS}) x cols {} (1..=16)",
                self.rows, self.cols
            )));
        }
        Ok(())
    }

    /// Row tiles (the last may have fewer than 16 rows).
    pub fn row_tiles(&self) -> usize {
        usize::from(self.rows).div_ceil(TILE_ROWS)
    }

    pub fn name(&self) -> String {
        let acc = if self.accumulate { "acc" } else { "ovw" };
        format!("sparse_amx_{:?}_r{}_c{}_{acc}", self.kind, self.rows, self.cols).to_lowercase()
    }
}

/// Arguments of one call. Strides in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SparseAmxArgs {
    /// A packed by [`pack_a`] for this call's rows.
    pub a: *const u8,
    /// Bytes of A per K tile: `row_tiles * A_TILE_BYTES`.
    pub a_step: usize,
    /// The masks of the first panel's first tile (64-byte aligned).
    pub masks: *const u8,
    /// Its first value; the stream must have 64 bytes of slack after the
    /// last value (`values_with_slack`).
    pub values: *const u8,
    /// C at (row 0, the first panel's column 0); rows `ldc` apart.
    pub c: *mut u8,
    pub ldc: usize,
    pub k_tiles: usize,
    pub panels: usize,
    /// 64-byte aligned, [`SCRATCH_BYTES`] long, private to the caller.
    pub scratch: *mut u8,
}

// GPR roles (SysV: the args pointer arrives in rdi).
const ARGS: Gpr = Gpr::RDI;
const STRIDE64: Gpr = Gpr::RSI;
const MASKS: Gpr = Gpr::RDX;
const VALUES: Gpr = Gpr::RCX;
const A_PTR: Gpr = Gpr::R8;
const C_PANEL: Gpr = Gpr::R9;
const LDC: Gpr = Gpr::R10;
const SCRATCH: Gpr = Gpr::R11;
const K_COUNT: Gpr = Gpr::R12;
const N_COUNT: Gpr = Gpr::R13;
/// Tiles still to expand.
const REMAIN: Gpr = Gpr::R14;
const ROW: Gpr = Gpr::R15;
const MASK: Gpr = Gpr::RAX;
const SAVED: [Gpr; 4] = [Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15];

const B_TILE: Tmm = Tmm::TMM5;
const A_TILES: [Tmm; 2] = [Tmm::TMM6, Tmm::TMM7];

fn c_tile(t: usize) -> Tmm {
    Tmm::new(t as u8).expect("tmm0..4")
}

struct RowTiles {
    spec: SparseAmxSpec,
    /// Rows of each row tile.
    tiles: Vec<u8>,
}

impl RowTiles {
    fn config(&self) -> Result<TileConfig, GenerateError> {
        let err = GenerateError::TileConfig;
        let mut cfg = TileConfig::new();
        let colsb = 4 * u16::from(self.spec.cols);
        for (t, &rows) in self.tiles.iter().enumerate() {
            cfg.set(c_tile(t), rows, colsb).map_err(err)?;
        }
        // TDP needs A.rows == C.rows: a short last row tile has its own A
        // tile configured to its rows (`a_index`).
        for (i, &a) in A_TILES.iter().enumerate() {
            cfg.set(a, self.a_rows(i), 64).map_err(err)?;
        }
        cfg.set(B_TILE, 16, colsb).map_err(err)?;
        for t in 0..self.tiles.len() {
            cfg.check_tdp("tdp", c_tile(t), self.a_tile(t), B_TILE).map_err(err)?;
        }
        Ok(cfg)
    }

    /// The A tile register row tile `t` loads into.
    fn a_tile(&self, t: usize) -> Tmm {
        A_TILES[self.a_index(t)]
    }

    /// Full row tiles alternate between the two A tiles; a short last row
    /// tile always uses A_TILES[1], configured to its row count.
    fn a_index(&self, t: usize) -> usize {
        let short = self.tiles.last().is_some_and(|&r| usize::from(r) < TILE_ROWS);
        if short && t + 1 == self.tiles.len() {
            1
        } else if short {
            0
        } else {
            t % 2
        }
    }

    fn a_rows(&self, i: usize) -> u8 {
        let short = self.tiles.last().copied().filter(|&r| usize::from(r) < TILE_ROWS);
        match (i, short) {
            (1, Some(r)) => r,
            _ => TILE_ROWS as u8,
        }
    }

    fn tdp(&self) -> TdpOp {
        match self.spec.kind {
            SparseKind::Bf16 => TdpOp::Bf16ps,
            SparseKind::Int8 => TdpOp::Bssd,
        }
    }

    /// Expands the tile at MASKS / VALUES into scratch buffer `buf` and
    /// advances both streams, if any tile remains (REMAIN).
    fn emit_expand(&self, cb: &mut CodeBuilder, buf: usize) -> Result<(), GenerateError> {
        let mb = self.spec.kind.mask_bytes();
        let (expand, store) = match self.spec.kind {
            SparseKind::Bf16 => (EvexOp::VPEXPANDW, EvexOp::VMOVDQU16_STORE),
            SparseKind::Int8 => (EvexOp::VPEXPANDB, EvexOp::VMOVDQU8_STORE),
        };
        dynasm!(cb.ops
            ; .arch x64
            ; test Rq(REMAIN.number()), Rq(REMAIN.number())
            ; jz >skip
        );
        for r in 0..TILE_ROWS {
            let k = KReg::new(1 + (r % 7) as u8).expect("k1..k7");
            let z = Zmm::new((r % 16) as u8).expect("zmm0..15");
            let dst = Mem::base_disp(SCRATCH, (buf * A_TILE_BYTES + r * ROW_BYTES) as i32);
            // The mask into MASK (a 32-bit load zero-extends, so the 64-bit
            // POPCNT below counts a bf16 row's bits only), then into k.
            let at = mb * r as i32;
            match self.spec.kind {
                SparseKind::Bf16 => {
                    dynasm!(cb.ops ; .arch x64 ; mov Rd(MASK.number()), DWORD [Rq(MASKS.number()) + at])
                }
                SparseKind::Int8 => {
                    dynasm!(cb.ops ; .arch x64 ; mov Rq(MASK.number()), QWORD [Rq(MASKS.number()) + at])
                }
            }
            cb.emit(kmovq_k_r64(k, MASK));
            cb.emit(expand.rm_mem(z, Mem::base(VALUES), Mask::zero(k))?);
            cb.emit(store.mr_mem(dst, z, Mask::NONE)?);
            dynasm!(cb.ops ; .arch x64 ; popcnt Rq(MASK.number()), Rq(MASK.number()));
            match self.spec.kind {
                SparseKind::Bf16 => {
                    dynasm!(cb.ops ; .arch x64 ; lea Rq(VALUES.number()), [Rq(VALUES.number()) + Rq(MASK.number()) * 2])
                }
                SparseKind::Int8 => dynasm!(cb.ops ; .arch x64 ; add Rq(VALUES.number()), Rq(MASK.number())),
            }
        }
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(MASKS.number()), mb * TILE_ROWS as i32
            ; dec Rq(REMAIN.number())
            ; skip:
        );
        Ok(())
    }

    /// C tiles from C (accumulate) or zero; A back to its first K tile.
    fn emit_panel_start(&self, cb: &mut CodeBuilder) -> Result<(), GenerateError> {
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(A_PTR.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, a)]
            ; mov Rq(K_COUNT.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, k_tiles)]
            ; mov Rq(ROW.number()), Rq(C_PANEL.number())
        );
        for t in 0..self.tiles.len() {
            if self.spec.accumulate {
                cb.emit(enc::tileloadd(c_tile(t), Mem::base(ROW).with_index(LDC, Scale::S1)?)?);
                self.emit_next_row_tile(cb);
            } else {
                cb.emit(enc::tilezero(c_tile(t)));
            }
        }
        Ok(())
    }

    /// ROW += 16 rows of C.
    fn emit_next_row_tile(&self, cb: &mut CodeBuilder) {
        for _ in 0..TILE_ROWS / 8 {
            dynasm!(cb.ops ; .arch x64 ; lea Rq(ROW.number()), [Rq(ROW.number()) + Rq(LDC.number()) * 8]);
        }
    }

    /// One K tile: B from `buf`, expand the next tile into the other
    /// buffer, the TDPs of every row tile.
    fn emit_step(&self, cb: &mut CodeBuilder, buf: usize) -> Result<(), GenerateError> {
        let b_mem = Mem::base_disp(SCRATCH, (buf * A_TILE_BYTES) as i32).with_index(STRIDE64, Scale::S1)?;
        cb.emit(enc::tileloadd(B_TILE, b_mem)?);
        self.emit_expand(cb, 1 - buf)?;
        for t in 0..self.tiles.len() {
            let a = self.a_tile(t);
            let mem = Mem::base_disp(A_PTR, (t * A_TILE_BYTES) as i32).with_index(STRIDE64, Scale::S1)?;
            cb.emit(enc::tileloadd(a, mem)?);
            cb.emit(enc::tdp(self.tdp(), c_tile(t), a, B_TILE)?);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(A_PTR.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, a_step)]
        );
        Ok(())
    }

    /// After a step: at the end of a panel, store C and start the next
    /// panel (or leave for `done`).
    fn emit_panel_check(&self, cb: &mut CodeBuilder) -> Result<(), GenerateError> {
        dynasm!(cb.ops
            ; .arch x64
            ; dec Rq(K_COUNT.number())
            ; jnz >same_panel
            ; mov Rq(ROW.number()), Rq(C_PANEL.number())
        );
        for t in 0..self.tiles.len() {
            cb.emit(enc::tilestored(Mem::base(ROW).with_index(LDC, Scale::S1)?, c_tile(t))?);
            self.emit_next_row_tile(cb);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(C_PANEL.number()), (PANEL_COLS * 4) as i32
            ; dec Rq(N_COUNT.number())
            ; jz ->done
        );
        self.emit_panel_start(cb)?;
        dynasm!(cb.ops ; .arch x64 ; same_panel:);
        Ok(())
    }
}

/// A generated sparse AMX kernel with its tile configuration.
pub struct SparseAmxKernel {
    spec: SparseAmxSpec,
    code: JitCode,
}

impl SparseAmxKernel {
    /// Generates the kernel for `spec`.
    ///
    /// # Errors
    /// An invalid spec, or the assembler / executable memory failing.
    pub fn generate(spec: SparseAmxSpec) -> Result<SparseAmxKernel, GenerateError> {
        spec.validate()?;
        let tiles =
            (0..spec.row_tiles()).map(|t| (usize::from(spec.rows) - t * TILE_ROWS).min(TILE_ROWS) as u8).collect();
        let plan = RowTiles { spec, tiles };
        let config = plan.config()?;
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        let frame = Frame { saved: &SAVED, locals: 0, mxcsr_slot: None, tiles: true };
        cb.enter(&frame);
        cb.load_tile_config(config, Gpr::RAX);
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(STRIDE64.number()), 64
            ; mov Rq(MASKS.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, masks)]
            ; mov Rq(VALUES.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, values)]
            ; mov Rq(C_PANEL.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, c)]
            ; mov Rq(LDC.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, ldc)]
            ; mov Rq(SCRATCH.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, scratch)]
            ; mov Rq(N_COUNT.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, panels)]
            ; mov Rq(REMAIN.number()), Rq(N_COUNT.number())
            ; imul Rq(REMAIN.number()), QWORD [Rq(ARGS.number()) + tilejit_kernels::arg_offset!(SparseAmxArgs, k_tiles)]
            ; test Rq(REMAIN.number()), Rq(REMAIN.number())
            ; jz ->done
        );
        // The first tile into buffer 0; then steps alternate buffers over
        // the whole stream, panel boundaries included.
        plan.emit_expand(&mut cb, 0)?;
        plan.emit_panel_start(&mut cb)?;
        dynasm!(cb.ops ; .arch x64 ; ->steps:);
        plan.emit_step(&mut cb, 0)?;
        plan.emit_panel_check(&mut cb)?;
        plan.emit_step(&mut cb, 1)?;
        plan.emit_panel_check(&mut cb)?;
        dynasm!(cb.ops
            ; .arch x64
            ; jmp ->steps
            ; ->done:
        );
        cb.leave(&frame);
        let code = cb.finish(entry)?;
        code.dump_if_requested(&spec.name());
        Ok(SparseAmxKernel { spec, code })
    }

    pub fn spec(&self) -> &SparseAmxSpec {
        &self.spec
    }

    /// The executable code with the data it points at (for emulation).
    pub fn jit_code(&self) -> &JitCode {
        &self.code
    }

    /// Runs the kernel.
    ///
    /// # Safety
    /// AMX permission for the process (arch_prctl); `args` describes
    /// buffers holding every byte touched: A packed for `rows` rows and
    /// `k_tiles` K tiles; the masks of `panels * k_tiles` tiles from
    /// `masks`, and their values from `values` plus 64 bytes of slack; C
    /// rows `0..rows` at `ldc`, `(panels - 1) * 16 + cols` columns (f32 or
    /// i32); a private scratch buffer.
    pub unsafe fn run(&self, args: &SparseAmxArgs) {
        // SAFETY: generated for this signature (SysV, one pointer argument),
        // restoring the callee-saved registers it uses and releasing the
        // tiles; touches only what `args` describes.
        unsafe { self.code.call(args) }
    }
}

/// A (`m` rows of `k` elements of `elem_bytes` bytes, rows `lda` elements
/// apart) packed for the kernel: for each K tile q (64 bytes of each row:
/// 32 bf16 or 64 int8), for each row tile t, 16 rows x 64 bytes at
/// `(q * row_tiles + t) * A_TILE_BYTES`; K and the last row tile padded
/// with zeros (a zero A element times a zero B padding element is +0 for
/// bf16 and 0 for int8, as in the dense kernels' padding).
pub fn pack_a(a: &[u8], m: usize, k: usize, lda: usize, elem_bytes: usize) -> Vec<u8> {
    let row_tiles = m.div_ceil(TILE_ROWS);
    let k_tile = ROW_BYTES / elem_bytes;
    let k_tiles = k.div_ceil(k_tile);
    let mut out = vec![0u8; k_tiles * row_tiles * A_TILE_BYTES];
    for i in 0..m {
        let row = &a[i * lda * elem_bytes..][..k * elem_bytes];
        let (t, r) = (i / TILE_ROWS, i % TILE_ROWS);
        for (q, chunk) in row.chunks(ROW_BYTES).enumerate() {
            let at = (q * row_tiles + t) * A_TILE_BYTES + r * ROW_BYTES;
            out[at..at + chunk.len()].copy_from_slice(chunk);
        }
    }
    out
}
