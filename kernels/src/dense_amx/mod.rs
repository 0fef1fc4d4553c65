//! Dense AMX GEMM micro-kernel generator.
//!
//! One call computes `n_blocks` consecutive C blocks of
//! `spec.block_rows()` x `spec.block_cols()` over `k_steps` K steps:
//!
//! ```text
//! ldtilecfg                                  ; own config, see TilePlan
//! for nb in 0..n_blocks:                     ; N loop
//!     C tiles <- 0 | C                       ; CInit
//!     for s in 0..k_steps:                   ; K loop
//!         load A/B tiles, TDPs               ; plan.steps (schedule)
//!         prefetch next A and B slices to L2 ; spec.prefetch_lines each
//!         A += k bytes; B += k groups * 64
//!     C <- C tiles
//!     C += block cols; B panels += n_tiles
//! tilerelease
//! ```
//!
//! The kernel loads its own tile config and releases the tiles before it
//! returns, so any thread can call any kernel in any order (docs/AMX.md:
//! tile state is per thread; tiles left in use block deep C-states).

// dynasm! expands register operands with `.into()` even when they are
// already u8; that is the macro's business, not ours.
#![allow(clippy::useless_conversion)]

mod plan;
mod spec;

pub use plan::{schedule, Step, TilePlan};
pub use spec::{BLoad, Blocking, DenseAmxSpec, Schedule};

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use crate::encoder::{self as enc, Gpr, Mem, Scale};
use crate::jit::{CodeBuilder, Frame, GenerateError, JitCode};
use crate::spec::CInit;

/// Arguments of a dense AMX kernel call. All strides are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DenseAmxArgs {
    /// A at (block row 0, k 0); row stride `lda`.
    pub a: *const u8,
    pub lda: usize,
    /// Packed B at (first panel of the block, k 0).
    pub b: *const u8,
    /// Bytes between consecutive 16-column panels of packed B.
    pub b_panel_stride: usize,
    /// C at (block row 0, first column); row stride `ldc`.
    pub c: *mut u8,
    pub ldc: usize,
    pub k_steps: usize,
    pub n_blocks: usize,
    /// Prefetch stream 1, rows: the A slice the next call will read.
    /// `prefetch_lines` lines per K step go to L2, row by row: after
    /// `prefetch_a_row_lines` lines the pointer skips `prefetch_a_skip`
    /// bytes more (row stride minus the row's bytes). Prefetches never
    /// fault, so a stream may run past its region.
    pub prefetch_a: *const u8,
    pub prefetch_a_row_lines: usize,
    pub prefetch_a_skip: usize,
    /// Prefetch stream 2, contiguous: the next K block's B slice.
    pub prefetch_b: *const u8,
}

/// A generated dense AMX kernel.
pub struct DenseAmxKernel {
    spec: DenseAmxSpec,
    plan: TilePlan,
    code: JitCode,
}

// GPR roles (SysV: args pointer arrives in rdi).
const ARGS: Gpr = Gpr::RDI;
const LDA: Gpr = Gpr::RSI;
const B_STRIDE: Gpr = Gpr::RDX; // 64: row stride of packed B tiles
const LDC: Gpr = Gpr::RCX;
const K_COUNT: Gpr = Gpr::RAX;
const N_COUNT: Gpr = Gpr::RBX;
const PANEL_STRIDE: Gpr = Gpr::RBP;
const C_PTR: Gpr = Gpr::R13;
const B_BASE: Gpr = Gpr::R14;
const TMP: Gpr = Gpr::R15;
/// Operand row/panel pointers: m_tiles + n_tiles <= 5 for every blocking.
const OPERAND_PTRS: [Gpr; 5] = [Gpr::R8, Gpr::R9, Gpr::R10, Gpr::R11, Gpr::R12];
const SAVED: [Gpr; 6] = [Gpr::RBX, Gpr::RBP, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15];
// Stack frame: the prefetch streams' moving state.
const PF_A: i32 = 0;
const PF_A_LEFT: i32 = 8;
const PF_B: i32 = 16;
const FRAME: i32 = 24;

impl DenseAmxKernel {
    /// Generates the kernel for `spec`.
    pub fn generate(spec: DenseAmxSpec) -> Result<DenseAmxKernel, GenerateError> {
        spec.validate()?;
        let plan = TilePlan::new(&spec)?;
        let config = plan.config;
        let (mt, nt) = (spec.blocking.m_tiles as usize, spec.blocking.n_tiles as usize);
        let a_ptr = |i: usize| OPERAND_PTRS[i];
        let b_ptr = |j: usize| OPERAND_PTRS[mt + j];
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        let stride = |base: Gpr, index: Gpr, disp: i32| Mem::base_disp(base, disp).with_index(index, Scale::S1);

        let frame = Frame { saved: &SAVED, locals: FRAME, mxcsr_slot: None, tiles: true };
        cb.enter(&frame);
        cb.load_tile_config(config, TMP);
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, prefetch_a)]
            ; mov [rsp + PF_A], Rq(TMP.number())
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, prefetch_a_row_lines)]
            ; mov [rsp + PF_A_LEFT], Rq(TMP.number())
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, prefetch_b)]
            ; mov [rsp + PF_B], Rq(TMP.number())
            ; mov Rq(LDA.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, lda)]
            ; mov Rq(B_STRIDE.number()), 64
            ; mov Rq(LDC.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, ldc)]
            ; mov Rq(PANEL_STRIDE.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, b_panel_stride)]
            ; mov Rq(C_PTR.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, c)]
            ; mov Rq(B_BASE.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, b)]
            ; mov Rq(N_COUNT.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, n_blocks)]
            ; test Rq(N_COUNT.number()), Rq(N_COUNT.number())
            ; jz ->done
            ; ->n_loop:
        );

        // C tiles: zero, or load from C (TMP walks the tile rows).
        match spec.c_init {
            CInit::Zero => {
                for &t in plan.c.iter().flatten() {
                    cb.emit(enc::tilezero(t));
                }
            }
            CInit::Load => for_each_c_tile(&mut cb, &plan, |cb, t, disp| {
                cb.emit(enc::tileloadd(t, stride(TMP, LDC, disp)?)?);
                Ok(())
            })?,
        }

        // Operand pointers for this block: A rows from args.a, B panels from B_BASE.
        dynasm!(cb.ops ; .arch x64 ; mov Rq(a_ptr(0).number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, a)]);
        for i in 1..mt {
            let (prev, cur) = (a_ptr(i - 1).number(), a_ptr(i).number());
            dynasm!(cb.ops
                ; .arch x64
                ; lea Rq(cur), [Rq(prev) + Rq(LDA.number()) * 8]
                ; lea Rq(cur), [Rq(cur) + Rq(LDA.number()) * 8]
            );
        }
        dynasm!(cb.ops ; .arch x64 ; mov Rq(b_ptr(0).number()), Rq(B_BASE.number()));
        for j in 1..nt {
            let (prev, cur) = (b_ptr(j - 1).number(), b_ptr(j).number());
            dynasm!(cb.ops ; .arch x64 ; lea Rq(cur), [Rq(prev) + Rq(PANEL_STRIDE.number())]);
        }

        // K loop.
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(K_COUNT.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(DenseAmxArgs, k_steps)]
            ; test Rq(K_COUNT.number()), Rq(K_COUNT.number())
            ; jz ->k_done
            ; ->k_loop:
        );
        let op = spec.elem.tdp_op();
        for &step in &plan.steps {
            let inst = match step {
                Step::LoadA(i) => enc::tileloadd(plan.a[i], stride(a_ptr(i), LDA, 0)?)?,
                Step::LoadB(j) => {
                    let at = stride(b_ptr(j), B_STRIDE, 0)?;
                    match spec.b_load {
                        BLoad::Temporal => enc::tileloadd(plan.b[j], at)?,
                        BLoad::NonTemporal => enc::tileloaddt1(plan.b[j], at)?,
                    }
                }
                Step::Tdp(i, j) => enc::tdp(op, plan.c[i][j], plan.a[i], plan.b[j])?,
            };
            cb.emit(inst);
        }
        for _ in 0..spec.prefetch_lines {
            emit_prefetch_lines(&mut cb);
        }
        let (a_step, b_step) = (spec.a_step_bytes() as i32, spec.b_step_bytes() as i32);
        for i in 0..mt {
            dynasm!(cb.ops ; .arch x64 ; add Rq(a_ptr(i).number()), a_step);
        }
        for j in 0..nt {
            dynasm!(cb.ops ; .arch x64 ; add Rq(b_ptr(j).number()), b_step);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; dec Rq(K_COUNT.number())
            ; jnz ->k_loop
            ; ->k_done:
        );

        for_each_c_tile(&mut cb, &plan, |cb, t, disp| {
            cb.emit(enc::tilestored(stride(TMP, LDC, disp)?, t)?);
            Ok(())
        })?;

        // Next block: C moves right by the block's full tiles; B by n_tiles panels.
        dynasm!(cb.ops ; .arch x64 ; add Rq(C_PTR.number()), (nt * 64) as i32);
        for _ in 0..nt {
            dynasm!(cb.ops ; .arch x64 ; add Rq(B_BASE.number()), Rq(PANEL_STRIDE.number()));
        }
        dynasm!(cb.ops
            ; .arch x64
            ; dec Rq(N_COUNT.number())
            ; jnz ->n_loop
            ; ->done:
        );
        cb.leave(&frame);

        let code = cb.finish(entry)?;
        code.dump_if_requested(&spec.name());
        Ok(DenseAmxKernel { spec, plan, code })
    }

    pub fn spec(&self) -> &DenseAmxSpec {
        &self.spec
    }

    pub fn plan(&self) -> &TilePlan {
        &self.plan
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
    /// The caller must have AMX permission for the process (arch_prctl) and
    /// `args` must describe buffers that hold every byte the kernel touches:
    /// A: `block_rows()` rows of `k_steps * a_step_bytes()` bytes at `lda`;
    /// B: `n_blocks * n_tiles` panels of `k_steps * b_step_bytes()` bytes at
    /// `b_panel_stride`; C: `block_rows()` rows at `ldc`, of
    /// `(n_blocks - 1) * n_tiles * 64 + block_cols() * 4` bytes.
    pub unsafe fn run(&self, args: &DenseAmxArgs) {
        // SAFETY: the code was generated for this signature (SysV, one
        // pointer argument) and only touches memory described by `args`.
        unsafe { self.code.call(args) }
    }
}

/// One line of each prefetch stream into L2 (prefetcht1), advancing the
/// stream state kept in the stack frame. TMP is free inside the K loop.
fn emit_prefetch_lines(cb: &mut CodeBuilder) {
    let (tmp, args) = (TMP.number(), ARGS.number());
    dynasm!(cb.ops
        ; .arch x64
        ; mov Rq(tmp), [rsp + PF_A]
        ; prefetcht1 [Rq(tmp)]
        ; add Rq(tmp), 64
        ; dec QWORD [rsp + PF_A_LEFT]
        ; jnz >same_row
        ; add Rq(tmp), [Rq(args) + crate::arg_offset!(DenseAmxArgs, prefetch_a_skip)]
        ; mov [rsp + PF_A], Rq(tmp)
        ; mov Rq(tmp), [Rq(args) + crate::arg_offset!(DenseAmxArgs, prefetch_a_row_lines)]
        ; mov [rsp + PF_A_LEFT], Rq(tmp)
        ; jmp >a_done
        ; same_row:
        ; mov [rsp + PF_A], Rq(tmp)
        ; a_done:
        ; mov Rq(tmp), [rsp + PF_B]
        ; prefetcht1 [Rq(tmp)]
        ; add QWORD [rsp + PF_B], 64
    );
}

/// Calls `f` for every C tile with TMP pointing at its tile row and the
/// tile's byte offset within the row.
fn for_each_c_tile(
    cb: &mut CodeBuilder,
    plan: &TilePlan,
    mut f: impl FnMut(&mut CodeBuilder, enc::Tmm, i32) -> Result<(), GenerateError>,
) -> Result<(), GenerateError> {
    dynasm!(cb.ops ; .arch x64 ; mov Rq(TMP.number()), Rq(C_PTR.number()));
    for (i, row) in plan.c.iter().enumerate() {
        if i > 0 {
            // TMP += 16 * ldc
            dynasm!(cb.ops
                ; .arch x64
                ; lea Rq(TMP.number()), [Rq(TMP.number()) + Rq(LDC.number()) * 8]
                ; lea Rq(TMP.number()), [Rq(TMP.number()) + Rq(LDC.number()) * 8]
            );
        }
        for (j, &t) in row.iter().enumerate() {
            f(cb, t, (j * 64) as i32)?;
        }
    }
    Ok(())
}
