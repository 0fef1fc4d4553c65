//! Dense AVX-512 GEMM micro-kernels for decode shapes (M = 1..16), reading
//! the same packed B as the AMX kernels and proven against the same oracle.
//!
//! One call computes `n_blocks` consecutive C blocks of `m_rows` x
//! `block_cols()` over `k_steps` K steps of one K block:
//!
//! ```text
//! [Bf16Chains: save MXCSR, load RNE | DAZ | FTZ]
//! for nb in 0..n_blocks:                       ; N loop
//!     acc[i][j] <- 0 | C                       ; CInit, masked on the tail panel
//!     for s in 0..k_steps:                     ; K loop
//!         one K step, unrolled                 ; dot.rs or chains.rs
//!         A rows += a_step_bytes; B panels += k_groups * 64
//!     [int8: acc += col_bias, if not null]     ; the VPDPBUSD correction
//!     C <- acc                                 ; masked on the tail panel
//!     C += n_panels * 64; B += n_panels * b_panel_stride; col_bias likewise
//! [restore MXCSR]; vzeroupper
//! ```
//!
//! Every output of the block stays in one zmm register for the whole call
//! (the register plan of each kind says which), so B is read exactly once:
//! one 64-byte row per panel per K group, with a software prefetch of the
//! same panel stream `prefetch_lines` lines ahead. The kinds:
//!
//! - `dot`: `Int8(sign)` with VPDPBUSD and `Bf16Dot` with VDPBF16PS, one
//!   accumulator per output;
//! - `chains`: `Bf16Chains`, TDPBF16PS's two chains emulated with FP32
//!   FMAs, bit-identical to the AMX kernel with the same K chunking.
//!
//! # The int8 correction
//! VPDPBUSD multiplies u8 (src1) by s8 (src2). `SS` feeds `a + 128` (A xor
//! 0x80) as the u8 operand and `UU` feeds `a - 128` (A xor 0x80) as the s8
//! one, so their sums are off by `+128 * colsum_s8(B)` resp.
//! `-128 * colsum_u8(B)`, exactly, in wrapping i32. The kernel adds the
//! per-column vector `args.col_bias` (when it is not null) to C after the
//! K loop; [`int8_col_bias`] builds it from the column sums that
//! [`PackedB`] computes while packing. A driver that splits K into several
//! calls passes it with exactly one of them.

// dynasm! expands register operands with `.into()` even when they are
// already u8; that is the macro's business, not ours.
#![allow(clippy::useless_conversion)]

mod chains;
mod dot;
mod spec;

pub use spec::{Avx512Kind, DenseAvx512Spec};

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use crate::encoder::{kmovq_k_r64, EncodeError, EvexOp, Gpr, KReg, Mask, Mem, Zmm};
use crate::jit::{CodeBuilder, Frame, GenerateError, JitCode};
use crate::pack::PackedB;
use crate::spec::{CInit, Int8Sign};

/// Arguments of a dense AVX-512 kernel call; the same meaning as
/// `DenseAmxArgs`. All strides are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DenseAvx512Args {
    /// A at (row 0, k 0 of this K block); row stride `lda`. Int8: the bytes;
    /// `Bf16Dot`: the bf16 values; `Bf16Chains`: A widened to f32
    /// (`bf16 << 16`, exact), `2 * k_groups_per_tdp` f32 per K step. Rows
    /// are zero padded to whole K steps.
    pub a: *const u8,
    pub lda: usize,
    /// Packed B at the first panel of this K block
    /// (`PackedB::tile_offset(first_step, panel)`).
    pub b: *const u8,
    /// `PackedB::block_panel_stride(first_step)`.
    pub b_panel_stride: usize,
    /// C at (row 0, first column); row stride `ldc`; i32 or f32.
    pub c: *mut u8,
    pub ldc: usize,
    pub k_steps: usize,
    /// Blocks of `n_panels` panels; C advances `n_panels * 64` bytes per
    /// block, B `n_panels * b_panel_stride`.
    pub n_blocks: usize,
    /// Int8 kinds only (ignored by bf16): null, or one i32 per column of
    /// every block (`n_panels * 16` per block, the tail panel read masked),
    /// added to C after the K loop. See [`int8_col_bias`].
    pub col_bias: *const i32,
}

/// The per-column `col_bias` that corrects the VPDPBUSD operand shift for
/// `sign` over all of `packed`'s K: `-128 * colsum_s8` for `SS`,
/// `+128 * colsum_u8` for `UU` (wrapping, exact modulo 2^32). `None` when
/// no correction is needed (`US`, `SU`) or `packed` is not int8.
pub fn int8_col_bias(sign: Int8Sign, packed: &PackedB) -> Option<Vec<i32>> {
    let (sums, factor) = match sign {
        Int8Sign::SS => (packed.col_sums_signed()?, -128),
        Int8Sign::UU => (packed.col_sums_unsigned()?, 128),
        Int8Sign::US | Int8Sign::SU => return None,
    };
    Some(sums.iter().map(|&s| s.wrapping_mul(factor)).collect())
}

/// Constants the code reads, owned by the kernel (like the AMX kernel's
/// tile config) and addressed through `CONSTS`.
#[repr(C, align(64))]
struct Constants {
    /// VPSHUFB control: in each dword the low bf16 (the even K element)
    /// moves to bits 31:16 and bits 15:0 become zero.
    even_shuffle: [u8; 64],
    /// The odd K element of each dword is already in bits 31:16.
    odd_mask: u32,
    /// 0x80 in every byte: `a xor 0x80` is `a + 128` as u8, `a - 128` as s8.
    flip: u32,
    /// MXCSR inside `Bf16Chains`: FTZ (bit 15), all exceptions masked,
    /// round to nearest even, DAZ (bit 6).
    mxcsr: u32,
}

impl Constants {
    fn new() -> Constants {
        let mut even_shuffle = [0x80u8; 64];
        for (dword, c) in even_shuffle.chunks_exact_mut(4).enumerate() {
            let lo = (dword % 4 * 4) as u8; // VPSHUFB indexes within its 128-bit lane
            c[2] = lo;
            c[3] = lo + 1;
        }
        Constants { even_shuffle, odd_mask: 0xFFFF_0000, flip: 0x8080_8080, mxcsr: crate::codegen::MXCSR_RNE_DAZ_FTZ }
    }
}

macro_rules! constant {
    ($f:ident) => {
        std::mem::offset_of!($crate::dense_avx512::Constants, $f) as i32
    };
}
pub(crate) use constant;

// GPR roles (SysV: the args pointer arrives in rdi).
const ARGS: Gpr = Gpr::RDI;
/// lda inside the K loop, ldc around it; STRIDE3 = 3 * STRIDE.
const STRIDE: Gpr = Gpr::RSI;
const STRIDE3: Gpr = Gpr::RDX;
/// Rows 4q .. 4q+3 are at ROW_BASES[q] + {0, 1, 2, 3} * STRIDE.
const ROW_BASES: [Gpr; 4] = [Gpr::R8, Gpr::R9, Gpr::R10, Gpr::R11];
/// Panels 4h .. 4h+3 are at PANEL_BASES[h] + {0, 1, 2, 3} * PANEL_STRIDE.
const PANEL_BASES: [Gpr; 2] = [Gpr::R12, Gpr::R13];
const PANEL_STRIDE: Gpr = Gpr::RCX;
const PANEL_STRIDE3: Gpr = Gpr::R14;
const CONSTS: Gpr = Gpr::R15;
const K_COUNT: Gpr = Gpr::RAX;
/// Scratch outside the K loop (shares rax with K_COUNT).
const TMP: Gpr = Gpr::RAX;
const N_COUNT: Gpr = Gpr::RBX;
const C_PTR: Gpr = Gpr::RBP;
const SAVED: [Gpr; 6] = [Gpr::RBX, Gpr::RBP, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15];
// Stack frame.
const B_BLOCK: i32 = 0;
const BIAS: i32 = 8;
const SAVED_MXCSR: i32 = 16;
const FRAME: i32 = 24;
/// Columns of the tail panel.
const TAIL: KReg = KReg::K1;

/// Row `i` of A (in the K loop) or C (around it), `disp` bytes in.
fn row_mem(i: usize, disp: i32) -> Result<Mem, EncodeError> {
    Mem::row_of_four(ROW_BASES[i / 4], STRIDE, STRIDE3, i, disp)
}

/// Panel `j` of packed B, `disp` bytes into the current K step.
fn panel_mem(j: usize, disp: i32) -> Result<Mem, EncodeError> {
    Mem::row_of_four(PANEL_BASES[j / 4], PANEL_STRIDE, PANEL_STRIDE3, j, disp)
}

/// Per panel: the write mask of its C columns (the tail panel is masked).
fn panel_mask(spec: &DenseAvx512Spec, j: usize) -> Option<KReg> {
    (j + 1 == spec.n_panels as usize && spec.last_panel_cols < 16).then_some(TAIL)
}

/// What each kind contributes: its register plan and its K step.
enum Body {
    Dot(dot::RegisterMap),
    Chains(chains::RegisterMap),
}

impl Body {
    fn new(spec: &DenseAvx512Spec) -> Body {
        match spec.kind {
            Avx512Kind::Bf16Chains => Body::Chains(chains::RegisterMap::new(spec)),
            Avx512Kind::Int8(_) | Avx512Kind::Bf16Dot => Body::Dot(dot::RegisterMap::new(spec)),
        }
    }

    /// C of row `i`, panel `j`.
    fn acc(&self, i: usize, j: usize) -> Zmm {
        match self {
            Body::Dot(p) => p.acc[i][j],
            Body::Chains(p) => p.acc[i][j],
        }
    }

    fn emit_setup(&self, cb: &mut CodeBuilder) -> Result<(), GenerateError> {
        match self {
            Body::Dot(p) => p.emit_setup(cb),
            Body::Chains(p) => p.emit_setup(cb),
        }
    }

    fn emit_step(&self, cb: &mut CodeBuilder, spec: &DenseAvx512Spec) -> Result<(), GenerateError> {
        match self {
            Body::Dot(p) => p.emit_step(cb, spec),
            Body::Chains(p) => p.emit_step(cb, spec),
        }
    }
}

/// zmm registers `spec` needs with its register plan (at most 32 for a
/// valid spec); called by `DenseAvx512Spec::validate` after the range checks.
pub(crate) fn zmm_needed(spec: &DenseAvx512Spec) -> usize {
    match spec.kind {
        Avx512Kind::Bf16Chains => chains::zmm_needed(spec),
        Avx512Kind::Int8(_) | Avx512Kind::Bf16Dot => dot::zmm_needed(spec),
    }
}

/// A generated dense AVX-512 kernel.
pub struct DenseAvx512Kernel {
    spec: DenseAvx512Spec,
    code: JitCode,
}

impl DenseAvx512Kernel {
    /// Generates the kernel for `spec`.
    pub fn generate(spec: DenseAvx512Spec) -> Result<DenseAvx512Kernel, GenerateError> {
        spec.validate()?;
        let body = Body::new(&spec);

        let chains = spec.kind == Avx512Kind::Bf16Chains;
        let (m, n) = (spec.m_rows as usize, spec.n_panels as usize);
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();

        let frame = Frame { saved: &SAVED, locals: FRAME, mxcsr_slot: chains.then_some(SAVED_MXCSR), tiles: false };
        cb.enter(&frame);
        let consts = cb.pin(Constants::new()) as i64;
        dynasm!(cb.ops ; .arch x64 ; mov Rq(CONSTS.number()), QWORD consts);
        if chains {
            dynasm!(cb.ops ; .arch x64 ; ldmxcsr [Rq(CONSTS.number()) + constant!(mxcsr)]);
        }
        if spec.last_panel_cols < 16 {
            dynasm!(cb.ops ; .arch x64 ; mov Rq(TMP.number()), (1i32 << spec.last_panel_cols) - 1);
            cb.emit(kmovq_k_r64(TAIL, TMP));
        }
        body.emit_setup(&mut cb)?;
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAvx512Args, b)]
            ; mov [rsp + B_BLOCK], Rq(TMP.number())
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAvx512Args, col_bias)]
            ; mov [rsp + BIAS], Rq(TMP.number())
            ; mov Rq(PANEL_STRIDE.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAvx512Args, b_panel_stride)]
            ; lea Rq(PANEL_STRIDE3.number()), [Rq(PANEL_STRIDE.number()) + Rq(PANEL_STRIDE.number()) * 2]
            ; mov Rq(C_PTR.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAvx512Args, c)]
            ; mov Rq(N_COUNT.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAvx512Args, n_blocks)]
            ; test Rq(N_COUNT.number()), Rq(N_COUNT.number())
            ; jz ->done
            ; ->n_loop:
        );

        // Accumulators from C (or zero).
        let (c_load, c_store) = match spec.kind {
            Avx512Kind::Int8(_) => (EvexOp::VMOVDQU32_LOAD, EvexOp::VMOVDQU32_STORE),
            Avx512Kind::Bf16Chains | Avx512Kind::Bf16Dot => (EvexOp::VMOVUPS_LOAD, EvexOp::VMOVUPS_STORE),
        };
        emit_row_bases(&mut cb, RowSource::C, m);
        for i in 0..m {
            for j in 0..n {
                let acc = body.acc(i, j);
                match spec.c_init {
                    CInit::Zero => cb.emit(EvexOp::VPXORD.rvm(acc, acc, acc, Mask::NONE)?),
                    CInit::Load => {
                        let mask = panel_mask(&spec, j).map_or(Mask::NONE, Mask::zero);
                        cb.emit(c_load.rm_mem(acc, row_mem(i, 64 * j as i32)?, mask)?);
                    }
                }
            }
        }

        // K loop.
        emit_row_bases(&mut cb, RowSource::A, m);
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(PANEL_BASES[0].number()), [rsp + B_BLOCK]
        );
        if n > 4 {
            let (lo, hi) = (PANEL_BASES[0].number(), PANEL_BASES[1].number());
            dynasm!(cb.ops ; .arch x64 ; lea Rq(hi), [Rq(lo) + Rq(PANEL_STRIDE.number()) * 4]);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(K_COUNT.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAvx512Args, k_steps)]
            ; test Rq(K_COUNT.number()), Rq(K_COUNT.number())
            ; jz ->k_done
            ; ->k_loop:
        );
        body.emit_step(&mut cb, &spec)?;
        for &base in &ROW_BASES[..m.div_ceil(4)] {
            dynasm!(cb.ops ; .arch x64 ; add Rq(base.number()), spec.a_step_bytes() as i32);
        }
        for &base in &PANEL_BASES[..n.div_ceil(4)] {
            dynasm!(cb.ops ; .arch x64 ; add Rq(base.number()), spec.b_step_bytes() as i32);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; dec Rq(K_COUNT.number())
            ; jnz ->k_loop
            ; ->k_done:
        );

        // C <- accumulators (+ the int8 correction).
        emit_row_bases(&mut cb, RowSource::C, m);
        if let Avx512Kind::Int8(_) = spec.kind {
            dynasm!(cb.ops
                ; .arch x64
                ; mov Rq(TMP.number()), [rsp + BIAS]
                ; test Rq(TMP.number()), Rq(TMP.number())
                ; jz >no_bias
            );
            for j in 0..n {
                let mask = panel_mask(&spec, j).map_or(Mask::NONE, Mask::merge);
                let bias = Mem::base_disp(TMP, 64 * j as i32);
                for i in 0..m {
                    let acc = body.acc(i, j);
                    cb.emit(EvexOp::VPADDD.rvm_mem(acc, acc, bias, mask, false)?);
                }
            }
            dynasm!(cb.ops
                ; .arch x64
                ; add Rq(TMP.number()), (n * 64) as i32
                ; mov [rsp + BIAS], Rq(TMP.number())
                ; no_bias:
            );
        }
        for i in 0..m {
            for j in 0..n {
                let mask = panel_mask(&spec, j).map_or(Mask::NONE, Mask::merge);
                cb.emit(c_store.mr_mem(row_mem(i, 64 * j as i32)?, body.acc(i, j), mask)?);
            }
        }

        // Next block.
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(C_PTR.number()), (n * 64) as i32
            ; imul Rq(TMP.number()), Rq(PANEL_STRIDE.number()), n as i32
            ; add [rsp + B_BLOCK], Rq(TMP.number())
            ; dec Rq(N_COUNT.number())
            ; jnz ->n_loop
            ; ->done:
        );
        cb.leave(&frame);

        let code = cb.finish(entry)?;
        code.dump_if_requested(&spec.name());
        Ok(DenseAvx512Kernel { spec, code })
    }

    pub fn spec(&self) -> &DenseAvx512Spec {
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
    /// The CPU and OS must support [`Avx512Kind::features`] of the kind
    /// (AVX512F/BW, plus VNNI for int8 and AVX512_BF16 for `Bf16Dot`), and `args`
    /// must describe buffers that hold every byte the kernel touches:
    /// A: `m_rows` rows of `k_steps * a_step_bytes()` bytes at `lda`;
    /// B: `n_blocks * n_panels` panels of `k_steps * b_step_bytes()` bytes at
    /// `b_panel_stride`; C: `m_rows` rows at `ldc`, of
    /// `(n_blocks - 1) * n_panels * 64 + block_cols() * 4` bytes; for int8,
    /// `col_bias` null or as many i32 as the C rows have columns.
    pub unsafe fn run(&self, args: &DenseAvx512Args) {
        // SAFETY: the code was generated for this signature (SysV, one
        // pointer argument), restores every callee-saved register and MXCSR,
        // and only touches memory described by `args` (prefetches never fault).
        unsafe { self.code.call(args) }
    }
}

/// Which matrix the row bases point into.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowSource {
    /// A at `args.a`, stride `lda` (the K loop).
    A,
    /// C at `C_PTR`, stride `ldc` (around the K loop).
    C,
}

/// ROW_BASES, STRIDE and STRIDE3 for the first `m` rows of A or C.
fn emit_row_bases(cb: &mut CodeBuilder, source: RowSource, m: usize) {
    let (args, stride, stride3, first) = (ARGS.number(), STRIDE.number(), STRIDE3.number(), ROW_BASES[0].number());
    match source {
        RowSource::A => dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(first), QWORD [Rq(args) + crate::arg_offset!(DenseAvx512Args, a)]
            ; mov Rq(stride), QWORD [Rq(args) + crate::arg_offset!(DenseAvx512Args, lda)]
        ),
        RowSource::C => dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(first), Rq(C_PTR.number())
            ; mov Rq(stride), QWORD [Rq(args) + crate::arg_offset!(DenseAvx512Args, ldc)]
        ),
    }
    dynasm!(cb.ops ; .arch x64 ; lea Rq(stride3), [Rq(stride) + Rq(stride) * 2]);
    for q in 1..m.div_ceil(4) {
        let (prev, cur) = (ROW_BASES[q - 1].number(), ROW_BASES[q].number());
        dynasm!(cb.ops ; .arch x64 ; lea Rq(cur), [Rq(prev) + Rq(stride) * 4]);
    }
}

#[cfg(test)]
mod tests;
