//! AVX-512 VNNI decode kernel for GGUF block-quantized weights: Q8_0 x
//! Q8_0, Q4_0 x Q8_0 and Q4_1 x Q8_1, bit-identical to
//! `tilejit_verify::quant::gemm_quant`.
//!
//! The weights stream in their GGUF size ([`PackedQuant`], layout in
//! `pack.rs`): Q4 nibbles stay packed and f16 scales stay f16; both are
//! widened in registers. One call computes `C[m][n]` (f32, overwrite) for
//! `m_rows` (1..=4) activation rows and all N, `panels_per_pass` panels of
//! 16 columns at a time (several independent weight streams for
//! memory-level parallelism, each prefetched `prefetch_pairs` block pairs
//! ahead), then single panels, then the masked tail panel:
//!
//! ```text
//! for each pass of p panels:
//!     acc[i][j] <- +0.0
//!     for each block b (pairs, then an odd last block), in increasing k:
//!         isum[i][j] <- bias[i][b]          ; -128*sum(qa) Q8_0, -8*sum(qa) Q4_0, 0 Q4_1 (exact i32)
//!         Q8_0: for r in 0..8: w <- W panel j row r                 ; q + 128 as u8, one aligned zmm
//!                   isum[i][j] += vpdpbusd(w, bcst A[i] dword 8b + r)
//!         Q4:   for r in 0..4: w <- W panel j row r                 ; 128 nibbles, one aligned zmm
//!                   lo <- w & 0x0F;  hi <- (w >>d 4) & 0x0F         ; vpandd, vpsrlvd, vpandd
//!                   isum[i][j] += vpdpbusd(lo, bcst A[i] dword 8b + r)
//!                   isum[i][j] += vpdpbusd(hi, bcst A[i] dword 8b + 4 + r)
//!         f = vcvtdq2ps(isum)                       ; exact: |isum| <= 32*128*128 < 2^24
//!         dw = vcvtph2ps(W panel j scales)          ; exact widening of the f16 d (NaN stays NaN)
//!         s = vmulps(dw, bcst da[i][b])             ; exact (two f16)
//!         acc[i][j] = vfmadd231ps(f, s, acc)        ; = fma(isum, scale, acc), one rounding
//!         Q4_1: mw = vcvtph2ps(W panel j mins)
//!               acc[i][j] = vfmadd231ps(mw, bcst sa[i][b], acc)   ; = fma(mw, sa, acc), right after
//!     C <- acc                                      ; the tail panel under a mask
//! ```
//!
//! This is exactly the oracle's order per output element; the integer
//! sums are exact in any order. The kernel leaves MXCSR alone: callers run
//! it with the default (RNE, no DAZ, no FTZ), which is what the oracle
//! models; f16 subnormal scales are widened exactly by VCVTPH2PS (which
//! ignores DAZ for its f16 source anyway), and no f32 subnormal can occur
//! (oracle docs). The zero block that pads an odd block count is never
//! read (an odd last block runs as its own step), so no activation padding
//! is needed; it would contribute `fma(0, 0, acc) = acc` anyway.

// dynasm! expands register operands with `.into()` even when they are
// already u8; that is the macro's business, not ours.
#![allow(clippy::useless_conversion)]

mod pack;

pub use pack::{
    ActivationFormat, PackedQuant, QuantActivations, QuantPackError, WeightFormat, PANEL_COLS, QK, TERM_DA,
    TERM_Q4_0_INIT, TERM_Q8_0_INIT, TERM_SA, TERM_WORDS,
};

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use crate::codegen::{prefetch, ZmmAlloc};
use crate::cpu::Feature;
use crate::encoder::{kmovq_k_r64, EncodeError, EvexOp, Gpr, KReg, Mask, Mem, Zmm};
use crate::jit::{CodeBuilder, Frame, GenerateError, JitCode};

/// The extensions the decode kernels execute: AVX512F (FP32 epilogue,
/// VCVTPH2PS), BW (KMOVQ) and VNNI (VPDPBUSD).
pub const FEATURES: &[Feature] = &[Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Vnni];

/// Arguments of one kernel call. Strides are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QuantAvx512Args {
    /// Activation quants (s8), row 0 at k 0; rows `lda` bytes apart.
    pub a: *const i8,
    pub lda: usize,
    /// Activation block terms ([`QuantActivations::kernel_terms`]), rows
    /// `lds` bytes apart.
    pub a_terms: *const u32,
    pub lds: usize,
    /// Packed weights at the first panel ([`PackedQuant::as_bytes`]).
    pub w: *const u8,
    /// [`PackedQuant::panel_stride`].
    pub panel_stride: usize,
    /// C at (row 0, column 0); rows `ldc` bytes apart.
    pub c: *mut f32,
    pub ldc: usize,
    /// Whole block pairs (`k_blocks / 2`).
    pub k_pairs: usize,
    /// Nonzero when one last block follows the pairs (`k_blocks` odd).
    pub k_odd: usize,
    /// Passes of `panels_per_pass` full panels, then `n_single` full panels,
    /// then, when `tail_mask != 0`, one panel whose columns under the mask
    /// are stored.
    pub n_groups: usize,
    pub n_single: usize,
    pub tail_mask: u64,
}

/// What changes the generated code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantAvx512Spec {
    pub format: WeightFormat,
    /// Activation rows, 1..=4.
    pub m_rows: u8,
    /// Panels per pass, 1..=8, with `2 * m_rows * panels_per_pass` plus the
    /// format's temporaries within the 32 zmm registers.
    pub panels_per_pass: u8,
    /// Software prefetch distance in block pairs (0: none).
    pub prefetch_pairs: u8,
}

/// Zmm registers besides the accumulators and integer sums.
const fn temporaries(format: WeightFormat) -> usize {
    match format {
        // w x2, dw, s.
        WeightFormat::Q8_0 => 4,
        // w, lo, hi, dw, s, the 0x0F mask, the shift count 4.
        WeightFormat::Q4_0 => 7,
        // ... and mw.
        WeightFormat::Q4_1 => 8,
    }
}

impl QuantAvx512Spec {
    /// The most panels per pass that fit the registers (at most 8),
    /// prefetching one pair ahead for Q4 and not at all for Q8_0 (measured:
    /// kernels/PERFORMANCE.md).
    pub fn new(format: WeightFormat, m_rows: u8) -> QuantAvx512Spec {
        let m = usize::from(m_rows.max(1));
        let p = ((32 - temporaries(format)) / (2 * m)).clamp(1, 8) as u8;
        let prefetch_pairs = if format == WeightFormat::Q8_0 { 0 } else { 1 };
        QuantAvx512Spec { format, m_rows, panels_per_pass: p, prefetch_pairs }
    }

    fn zmm_needed(&self) -> usize {
        2 * usize::from(self.m_rows) * usize::from(self.panels_per_pass) + temporaries(self.format)
    }

    /// A short name for dumps.
    pub fn name(&self) -> String {
        format!(
            "quant_avx512_{}_m{}_p{}_pf{}",
            self.format.name(),
            self.m_rows,
            self.panels_per_pass,
            self.prefetch_pairs
        )
    }

    /// # Errors
    /// Rows or panels out of range, or more than 32 zmm registers.
    pub fn validate(&self) -> Result<(), QuantPackError> {
        if !(1..=4).contains(&self.m_rows) {
            return Err(QuantPackError::BadRows { m: self.m_rows.into(), max: 4 });
        }
        if !(1..=8).contains(&self.panels_per_pass) {
            return Err(QuantPackError::BadSpec("panels_per_pass must be 1..=8"));
        }
        if self.zmm_needed() > 32 {
            return Err(QuantPackError::BadSpec("m_rows x panels_per_pass needs more than 32 zmm registers"));
        }
        Ok(())
    }
}

// GPR roles (SysV: the args pointer arrives in rdi).
const ARGS: Gpr = Gpr::RDI;
/// Activation quant rows: AQ + {0, 1, 2, 3} * AQ_STRIDE (C rows while storing).
const AQ: Gpr = Gpr::RSI;
const AQ_STRIDE: Gpr = Gpr::RDX;
const AQ_STRIDE3: Gpr = Gpr::RCX;
/// Activation block-term rows.
const AS: Gpr = Gpr::R8;
const AS_STRIDE: Gpr = Gpr::R9;
const AS_STRIDE3: Gpr = Gpr::R10;
/// Panels 4h .. 4h+3 at PANEL_BASES[h] + {0, 1, 2, 3} * PANEL_STRIDE.
const PANEL_BASES: [Gpr; 2] = [Gpr::R11, Gpr::R12];
const PANEL_STRIDE: Gpr = Gpr::R13;
const PANEL_STRIDE3: Gpr = Gpr::R14;
const W_GROUP: Gpr = Gpr::R15;
const C_PTR: Gpr = Gpr::RBP;
const N_COUNT: Gpr = Gpr::RBX;
/// K loop counter; scratch outside it.
const K_COUNT: Gpr = Gpr::RAX;
const TMP: Gpr = Gpr::RAX;
const SAVED: [Gpr; 6] = [Gpr::RBX, Gpr::RBP, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15];
const TAIL: KReg = KReg::K1;
/// Bytes of activation quants and of kernel terms per block.
const A_BLOCK: i32 = QK as i32;
const T_BLOCK: i32 = (TERM_WORDS * 4) as i32;

/// Row `i` (0..4) at `base + i * stride`, `disp` bytes in.
fn row_mem(base: Gpr, stride: Gpr, stride3: Gpr, i: usize, disp: i32) -> Result<Mem, EncodeError> {
    Mem::row_of_four(base, stride, stride3, i, disp)
}

/// Panel `j` of the pass, `disp` bytes into its current pair.
fn panel_mem(j: usize, disp: i32) -> Result<Mem, EncodeError> {
    row_mem(PANEL_BASES[j / 4], PANEL_STRIDE, PANEL_STRIDE3, j % 4, disp)
}

/// Activation row `i`'s quants, `disp` bytes into the current pair.
fn a_mem(i: usize, disp: i32) -> Result<Mem, EncodeError> {
    row_mem(AQ, AQ_STRIDE, AQ_STRIDE3, i, disp)
}

/// Activation row `i`'s terms, `disp` bytes into the current pair.
fn t_mem(i: usize, disp: i32) -> Result<Mem, EncodeError> {
    row_mem(AS, AS_STRIDE, AS_STRIDE3, i, disp)
}

/// The register map.
struct RegisterMap {
    format: WeightFormat,
    m: usize,
    acc: Vec<Vec<Zmm>>,
    isum: Vec<Vec<Zmm>>,
    /// Weight rows as loaded (Q8_0 alternates two).
    w: [Zmm; 2],
    /// Q4: the low and high nibbles of `w`.
    lo: Zmm,
    hi: Zmm,
    dw: Zmm,
    mw: Zmm,
    scale: Zmm,
    nib_mask: Zmm,
    shift: Zmm,
    prefetch_pairs: usize,
}

impl RegisterMap {
    fn new(spec: &QuantAvx512Spec) -> RegisterMap {
        let (m, p) = (usize::from(spec.m_rows), usize::from(spec.panels_per_pass));
        let mut r = ZmmAlloc::new();
        let acc = r.grid(m, p);
        let isum = r.grid(m, p);
        let q4 = spec.format != WeightFormat::Q8_0;
        let w0 = r.take();
        // Q8_0 alternates two weight registers; Q4 uses the second as `lo`.
        let w1 = r.take();
        let hi = if q4 { r.take() } else { w1 };
        let (dw, scale) = (r.take(), r.take());
        let (nib_mask, shift) = if q4 { (r.take(), r.take()) } else { (dw, dw) };
        let mw = if spec.format == WeightFormat::Q4_1 { r.take() } else { dw };
        RegisterMap {
            format: spec.format,
            m,
            acc,
            isum,
            w: [w0, w1],
            lo: w1,
            hi,
            dw,
            mw,
            scale,
            nib_mask,
            shift,
            prefetch_pairs: usize::from(spec.prefetch_pairs),
        }
    }

    /// One K block of `p` panels: quants at `half * QB` of the current pair,
    /// scales at `2 QB + half * SB`, activations at `half` blocks in.
    fn emit_block(&self, cb: &mut CodeBuilder, p: usize, half: usize) -> Result<(), GenerateError> {
        let (f, m, none) = (self.format, self.m, Mask::NONE);
        let (qb, sb) = (f.quant_bytes() as i32, f.scale_bytes() as i32);
        let h = half as i32;
        let (q_at, s_at, a_at, t_at) = (h * qb, 2 * qb + h * sb, h * A_BLOCK, h * T_BLOCK);
        // isum starts at the bias correction (exact i32) or zero.
        for (i, row) in self.isum.iter().enumerate() {
            for &s in &row[..p] {
                match f {
                    WeightFormat::Q8_0 => {
                        cb.emit(EvexOp::VPBROADCASTD.rm_mem(s, t_mem(i, t_at + TERM_Q8_0_INIT as i32)?, none)?)
                    }
                    WeightFormat::Q4_0 => {
                        cb.emit(EvexOp::VPBROADCASTD.rm_mem(s, t_mem(i, t_at + TERM_Q4_0_INIT as i32)?, none)?)
                    }
                    WeightFormat::Q4_1 => cb.emit(EvexOp::VPXORD.rvm(s, s, s, none)?),
                }
            }
        }
        match f {
            WeightFormat::Q8_0 => {
                for r in 0..8 {
                    for j in 0..p {
                        let w = self.w[(r * p + j) % 2];
                        cb.emit(EvexOp::VMOVDQU32_LOAD.rm_mem(w, panel_mem(j, q_at + 64 * r as i32)?, none)?);
                        for i in 0..m {
                            let a = a_mem(i, a_at + 4 * r as i32)?;
                            cb.emit(EvexOp::VPDPBUSD.rvm_mem(self.isum[i][j], w, a, none, true)?);
                        }
                    }
                }
            }
            WeightFormat::Q4_0 | WeightFormat::Q4_1 => {
                let (w, lo, hi) = (self.w[0], self.lo, self.hi);
                for r in 0..4i32 {
                    for j in 0..p {
                        cb.emit(EvexOp::VMOVDQU32_LOAD.rm_mem(w, panel_mem(j, q_at + 64 * r)?, none)?);
                        cb.emit(EvexOp::VPANDD.rvm(lo, w, self.nib_mask, none)?);
                        cb.emit(EvexOp::VPSRLVD.rvm(hi, w, self.shift, none)?);
                        cb.emit(EvexOp::VPANDD.rvm(hi, hi, self.nib_mask, none)?);
                        for i in 0..m {
                            let a_lo = a_mem(i, a_at + 4 * r)?;
                            cb.emit(EvexOp::VPDPBUSD.rvm_mem(self.isum[i][j], lo, a_lo, none, true)?);
                            let a_hi = a_mem(i, a_at + 16 + 4 * r)?;
                            cb.emit(EvexOp::VPDPBUSD.rvm_mem(self.isum[i][j], hi, a_hi, none, true)?);
                        }
                    }
                }
            }
        }
        for j in 0..p {
            cb.emit(EvexOp::VCVTPH2PS.rm_mem(self.dw, panel_mem(j, s_at)?, none)?);
            if f == WeightFormat::Q4_1 {
                cb.emit(EvexOp::VCVTPH2PS.rm_mem(self.mw, panel_mem(j, s_at + 32)?, none)?);
            }
            for i in 0..m {
                let (isum, acc) = (self.isum[i][j], self.acc[i][j]);
                cb.emit(EvexOp::VCVTDQ2PS.rm(isum, isum, none)?);
                cb.emit(EvexOp::VMULPS.rvm_mem(self.scale, self.dw, t_mem(i, t_at + TERM_DA as i32)?, none, true)?);
                cb.emit(EvexOp::VFMADD231PS.rvm(acc, isum, self.scale, none)?);
                if f == WeightFormat::Q4_1 {
                    let sa = t_mem(i, t_at + TERM_SA as i32)?;
                    cb.emit(EvexOp::VFMADD231PS.rvm_mem(acc, self.mw, sa, none, true)?);
                }
            }
        }
        Ok(())
    }

    /// One pass over all K blocks for `p` panels at W_GROUP, stored to C_PTR.
    fn emit_pass(&self, cb: &mut CodeBuilder, p: usize, masked: bool) -> Result<(), GenerateError> {
        let none = Mask::NONE;
        for row in &self.acc {
            for &acc in &row[..p] {
                cb.emit(EvexOp::VPXORD.rvm(acc, acc, acc, none)?);
            }
        }
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(AQ.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, a)]
            ; mov Rq(AQ_STRIDE.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, lda)]
            ; lea Rq(AQ_STRIDE3.number()), [Rq(AQ_STRIDE.number()) + Rq(AQ_STRIDE.number()) * 2]
            ; mov Rq(AS.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, a_terms)]
            ; mov Rq(PANEL_BASES[0].number()), Rq(W_GROUP.number())
        );
        if p > 4 {
            let (lo, hi) = (PANEL_BASES[0].number(), PANEL_BASES[1].number());
            dynasm!(cb.ops ; .arch x64 ; lea Rq(hi), [Rq(lo) + Rq(PANEL_STRIDE.number()) * 4]);
        }
        let pair = self.format.pair_bytes() as i32;
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(K_COUNT.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, k_pairs)]
            ; test Rq(K_COUNT.number()), Rq(K_COUNT.number())
            ; jz >pairs_done
            ; pairs:
        );
        if self.prefetch_pairs > 0 {
            let ahead = pair * self.prefetch_pairs as i32;
            for j in 0..p {
                for line in 0..pair / 64 {
                    prefetch(cb, panel_mem(j, ahead + 64 * line)?);
                }
            }
        }
        self.emit_block(cb, p, 0)?;
        self.emit_block(cb, p, 1)?;
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(AQ.number()), 2 * A_BLOCK
            ; add Rq(AS.number()), 2 * T_BLOCK
        );
        for &base in &PANEL_BASES[..p.div_ceil(4)] {
            dynasm!(cb.ops ; .arch x64 ; add Rq(base.number()), pair);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; dec Rq(K_COUNT.number())
            ; jnz <pairs
            ; pairs_done:
            ; cmp QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, k_odd)], 0
            ; je >odd_done
        );
        self.emit_block(cb, p, 0)?;
        dynasm!(cb.ops
            ; .arch x64
            ; odd_done:
            ; mov Rq(AQ_STRIDE.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, ldc)]
            ; lea Rq(AQ_STRIDE3.number()), [Rq(AQ_STRIDE.number()) + Rq(AQ_STRIDE.number()) * 2]
        );
        for (i, row) in self.acc.iter().enumerate() {
            for (j, &acc) in row[..p].iter().enumerate() {
                let mask = if masked && j + 1 == p { Mask::merge(TAIL) } else { none };
                let c = row_mem(C_PTR, AQ_STRIDE, AQ_STRIDE3, i, 64 * j as i32)?;
                cb.emit(EvexOp::VMOVUPS_STORE.mr_mem(c, acc, mask)?);
            }
        }
        Ok(())
    }
}

/// A generated quantized kernel.
pub struct QuantAvx512Kernel {
    spec: QuantAvx512Spec,
    code: JitCode,
}

impl QuantAvx512Kernel {
    /// Generates the kernel for `spec`.
    ///
    /// # Errors
    /// An invalid spec, or the assembler / executable memory failing.
    pub fn generate(spec: QuantAvx512Spec) -> Result<QuantAvx512Kernel, GenerateError> {
        spec.validate()?;
        let plan = RegisterMap::new(&spec);
        let p = usize::from(spec.panels_per_pass);
        let q4 = spec.format != WeightFormat::Q8_0;
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        let frame = Frame { saved: &SAVED, locals: 0, mxcsr_slot: None, tiles: false };
        cb.enter(&frame);
        if q4 {
            dynasm!(cb.ops ; .arch x64 ; lea Rq(TMP.number()), [>consts]);
            cb.emit(EvexOp::VPBROADCASTD.rm_mem(plan.nib_mask, Mem::base(TMP), Mask::NONE)?);
            cb.emit(EvexOp::VPBROADCASTD.rm_mem(plan.shift, Mem::base_disp(TMP, 4), Mask::NONE)?);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, tail_mask)]
        );
        cb.emit(kmovq_k_r64(TAIL, TMP));
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(AS_STRIDE.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, lds)]
            ; lea Rq(AS_STRIDE3.number()), [Rq(AS_STRIDE.number()) + Rq(AS_STRIDE.number()) * 2]
            ; mov Rq(PANEL_STRIDE.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, panel_stride)]
            ; lea Rq(PANEL_STRIDE3.number()), [Rq(PANEL_STRIDE.number()) + Rq(PANEL_STRIDE.number()) * 2]
            ; mov Rq(W_GROUP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, w)]
            ; mov Rq(C_PTR.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, c)]
            ; mov Rq(N_COUNT.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, n_groups)]
            ; test Rq(N_COUNT.number()), Rq(N_COUNT.number())
            ; jz >groups_done
            ; groups:
        );
        plan.emit_pass(&mut cb, p, false)?;
        dynasm!(cb.ops
            ; .arch x64
            ; imul Rq(TMP.number()), Rq(PANEL_STRIDE.number()), p as i32
            ; add Rq(W_GROUP.number()), Rq(TMP.number())
            ; add Rq(C_PTR.number()), (p * 64) as i32
            ; dec Rq(N_COUNT.number())
            ; jnz <groups
            ; groups_done:
            ; mov Rq(N_COUNT.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, n_single)]
            ; test Rq(N_COUNT.number()), Rq(N_COUNT.number())
            ; jz >singles_done
            ; singles:
        );
        plan.emit_pass(&mut cb, 1, false)?;
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(W_GROUP.number()), Rq(PANEL_STRIDE.number())
            ; add Rq(C_PTR.number()), 64
            ; dec Rq(N_COUNT.number())
            ; jnz <singles
            ; singles_done:
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + crate::arg_offset!(QuantAvx512Args, tail_mask)]
            ; test Rq(TMP.number()), Rq(TMP.number())
            ; jz >done
        );
        plan.emit_pass(&mut cb, 1, true)?;
        dynasm!(cb.ops ; .arch x64 ; done:);
        cb.leave(&frame);
        if q4 {
            // The nibble mask and the shift count, read once at entry.
            dynasm!(cb.ops ; .arch x64 ; .align 8 ; consts: ; .u32 0x0F0F_0F0F ; .u32 4);
        }
        let code = cb.finish(entry)?;
        code.dump_if_requested(&spec.name());
        Ok(QuantAvx512Kernel { spec, code })
    }

    pub fn spec(&self) -> &QuantAvx512Spec {
        &self.spec
    }

    pub fn code(&self) -> &[u8] {
        self.code.bytes()
    }

    /// The executable code with the data it points at (for emulation).
    pub fn jit_code(&self) -> &JitCode {
        &self.code
    }

    /// Arguments for `n` columns and `k` (a multiple of 32) with dense
    /// operands (`lda = k`, `lds = 16 * k / 32`, `ldc = 4 * n`, panels
    /// `ceil(k / 64)` pairs apart) and null pointers for the caller to fill in.
    pub fn shape_args(&self, n: usize, k: usize) -> QuantAvx512Args {
        let (full, tail) = (n / PANEL_COLS, n % PANEL_COLS);
        let p = usize::from(self.spec.panels_per_pass);
        let kb = k / QK;
        QuantAvx512Args {
            a: std::ptr::null(),
            lda: k,
            a_terms: std::ptr::null(),
            lds: 4 * TERM_WORDS * kb,
            w: std::ptr::null(),
            panel_stride: kb.div_ceil(2) * self.spec.format.pair_bytes(),
            c: std::ptr::null_mut(),
            ldc: 4 * n,
            k_pairs: kb / 2,
            k_odd: kb % 2,
            n_groups: full / p,
            n_single: full % p,
            tail_mask: (1u64 << tail) - 1,
        }
    }

    /// `c[i * n + j] = dot(activation row i, weight row j)` for all of
    /// `w`'s N, bit-identical to `gemm_quant(w format, a format, ...)`.
    ///
    /// # Errors
    /// Weights of another format than the spec's, a (weights, activations)
    /// pair the oracle does not define, a row count other than the spec's,
    /// mismatched `k`, a wrong `c` length, or a CPU without AVX512F/BW/VNNI.
    pub fn gemm(&self, w: &PackedQuant, a: &QuantActivations, c: &mut [f32]) -> Result<(), QuantPackError> {
        if w.format() != self.spec.format {
            return Err(QuantPackError::WrongFormat { kernel: self.spec.format, weights: w.format() });
        }
        if w.format().activations() != a.format() {
            return Err(QuantPackError::UnsupportedPair { weights: w.format(), activations: a.format() });
        }
        let m = usize::from(self.spec.m_rows);
        if a.m() != m {
            return Err(QuantPackError::BadRows { m: a.m(), max: m });
        }
        pack::check_len("activation k", w.k(), a.k())?;
        pack::check_len("C elements", m * w.n(), c.len())?;
        crate::cpu::require(FEATURES).map_err(QuantPackError::MissingIsa)?;
        let args = QuantAvx512Args {
            a: a.quants().as_ptr(),
            a_terms: a.kernel_terms().as_ptr(),
            w: w.as_bytes().as_ptr(),
            c: c.as_mut_ptr(),
            ..self.shape_args(w.n(), w.k())
        };
        // SAFETY: the ISA was checked above; `a` holds m rows of k quants and
        // k/32 term groups (its constructor made them so), `w` all panels of
        // this format and k, and `c` exactly m x n elements.
        unsafe { self.run(&args) };
        Ok(())
    }

    /// Runs the kernel.
    ///
    /// # Safety
    /// The CPU and OS must support AVX512F, AVX512BW and AVX512_VNNI, MXCSR
    /// must be the default (or at least round to nearest even without DAZ)
    /// for oracle bits, and `args` must describe buffers holding every byte
    /// touched: `m_rows` rows of `(2 k_pairs + k_odd) * 32` quants and as
    /// many term groups; `(n_groups * panels_per_pass + n_single +
    /// (tail_mask != 0))` panels of `(k_pairs + k_odd)` pairs of the spec's
    /// format at `panel_stride`; C rows of the full panels' columns plus
    /// the masked tail columns. (Aligned weights are faster, not required.)
    pub unsafe fn run(&self, args: &QuantAvx512Args) {
        // SAFETY: generated for this signature (SysV, one pointer argument),
        // restoring every callee-saved register; touches only memory `args`
        // describes (prefetches never fault, masked-off lanes are not stored).
        unsafe { self.code.call(args) }
    }
}
