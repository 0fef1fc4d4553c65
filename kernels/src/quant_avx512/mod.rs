//! AVX-512 VNNI kernel for GGUF block-quantized weights (Q8_0, and Q4_0
//! unpacked to s8 by [`PackedQ8`]) times Q8_0 activations, bit-identical to
//! `tilejit_verify::quant::gemm_quant`.
//!
//! One call computes `C[m][n]` (f32, overwrite) for `m_rows` (1..=4)
//! activation rows and all N, `panels_per_pass` panels of 16 columns at a
//! time (several independent weight streams for memory-level parallelism),
//! then single panels, then the masked tail panel:
//!
//! ```text
//! for each pass of p panels:
//!     acc[i][j] <- +0.0
//!     for b in 0..k_blocks:                         ; increasing k
//!         isum[i][j] <- 0; prefetch block b + prefetch_blocks of each panel
//!         for r in 0..8: w <- W panel j row r               ; stored as w + 128 (u8)
//!                        isum[i][j] += vpdpbusd(w, broadcast A[i] dword 8b + r) ; u8 x s8
//!         isum -= 128 * sum(a[i] block b)           ; from the activation terms, exact i32
//!         f = vcvtdq2ps(isum)                       ; exact: |isum| <= 32*128*128 < 2^24
//!         s = vmulps(broadcast da[i][b], dw[j])     ; exact (two f16)
//!         acc[i][j] = vfmadd231ps(f, s, acc)        ; = fma(isum, scale, acc), one rounding
//!     C <- acc                                      ; the tail panel under a mask
//! ```
//!
//! This is exactly the oracle's order per output element. The kernel leaves
//! MXCSR alone: callers run it with the default (RNE, no DAZ, no FTZ), which
//! is what the oracle models; f16 subnormal scales arrive already widened
//! to normal f32 values, and no f32 subnormal can occur (oracle docs).

// dynasm! expands register operands with `.into()` even when they are
// already u8; that is the macro's business, not ours.
#![allow(clippy::useless_conversion)]

mod pack;

pub use pack::{PackedQ8, Q8Activations, QuantPackError, SourceFormat, CHUNK_BYTES, PANEL_COLS, QK, SCALES_AT};

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use crate::dense_avx512::{prefetch, ZmmAlloc};
use crate::encoder::{kmovq_k_r64, EncodeError, EvexOp, Gpr, KReg, Mask, Mem, Scale, Zmm};
use crate::jit::{CodeBuilder, GenerateError, JitCode};

/// Arguments of one kernel call. Strides are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct QuantAvx512Args {
    /// Activation quants (s8), row 0 at k 0; rows `lda` bytes apart.
    pub a: *const i8,
    pub lda: usize,
    /// Activation block terms ([`Q8Activations::terms`]: scale f32, then
    /// correction i32, per block), rows `lds` bytes apart.
    pub a_terms: *const u32,
    pub lds: usize,
    /// Packed weights at the first panel ([`PackedQ8::as_bytes`]).
    pub w: *const u8,
    /// [`PackedQ8::panel_stride`].
    pub panel_stride: usize,
    /// C at (row 0, column 0); rows `ldc` bytes apart.
    pub c: *mut f32,
    pub ldc: usize,
    pub k_blocks: usize,
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
    /// Activation rows, 1..=4.
    pub m_rows: u8,
    /// Panels per pass, 1..=8, with `2 * m_rows * panels_per_pass + 6 <= 32`.
    pub panels_per_pass: u8,
    /// Software prefetch distance in K blocks (0: none).
    pub prefetch_blocks: u8,
}

impl QuantAvx512Spec {
    /// The most panels per pass that fit the registers, prefetching 4 blocks ahead.
    pub fn new(m_rows: u8) -> QuantAvx512Spec {
        let p = (26 / (2 * m_rows.max(1))).clamp(1, 8);
        QuantAvx512Spec { m_rows, panels_per_pass: p, prefetch_blocks: 4 }
    }

    fn zmm_needed(&self) -> usize {
        2 * usize::from(self.m_rows) * usize::from(self.panels_per_pass) + 6
    }

    /// # Errors
    /// Rows or panels out of range, or more than 32 zmm registers.
    pub fn validate(&self) -> Result<(), QuantPackError> {
        if !(1..=4).contains(&self.m_rows) || !(1..=8).contains(&self.panels_per_pass) || self.zmm_needed() > 32 {
            return Err(QuantPackError::BadRows { m: self.m_rows.into(), max: 4 });
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
/// Activation block-term rows (scale, correction per block).
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

macro_rules! field {
    ($f:ident) => {
        std::mem::offset_of!(QuantAvx512Args, $f) as i32
    };
}

/// Row `i` (0..4) at `base + i * stride`, `disp` bytes in.
fn row_mem(base: Gpr, stride: Gpr, stride3: Gpr, i: usize, disp: i32) -> Result<Mem, EncodeError> {
    let m = Mem::base_disp(base, disp);
    match i {
        0 => Ok(m),
        1 => m.with_index(stride, Scale::S1),
        2 => m.with_index(stride, Scale::S2),
        _ => m.with_index(stride3, Scale::S1),
    }
}

/// Panel `j` of the pass, `disp` bytes into its current chunk.
fn panel_mem(j: usize, disp: i32) -> Result<Mem, EncodeError> {
    row_mem(PANEL_BASES[j / 4], PANEL_STRIDE, PANEL_STRIDE3, j % 4, disp)
}

/// The register map.
struct Plan {
    acc: Vec<Vec<Zmm>>,
    isum: Vec<Vec<Zmm>>,
    x: [Zmm; 2],
    a_scale: Zmm,
    scale: [Zmm; 2],
}

impl Plan {
    fn new(spec: &QuantAvx512Spec) -> Plan {
        let (m, p) = (usize::from(spec.m_rows), usize::from(spec.panels_per_pass));
        let mut r = ZmmAlloc::new();
        let acc = r.grid(m, p);
        let isum = r.grid(m, p);
        Plan { acc, isum, x: [r.take(), r.take()], a_scale: r.take(), scale: [r.take(), r.take()] }
    }

    /// One pass over all K blocks for `p` panels at W_GROUP, stored to C_PTR.
    fn emit_pass(
        &self,
        cb: &mut CodeBuilder,
        spec: &QuantAvx512Spec,
        p: usize,
        masked: bool,
    ) -> Result<(), GenerateError> {
        let (m, none) = (usize::from(spec.m_rows), Mask::NONE);
        for row in &self.acc {
            for &acc in &row[..p] {
                cb.emit(EvexOp::VPXORD.rvm(acc, acc, acc, none)?);
            }
        }
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(AQ.number()), QWORD [Rq(ARGS.number()) + field!(a)]
            ; mov Rq(AQ_STRIDE.number()), QWORD [Rq(ARGS.number()) + field!(lda)]
            ; lea Rq(AQ_STRIDE3.number()), [Rq(AQ_STRIDE.number()) + Rq(AQ_STRIDE.number()) * 2]
            ; mov Rq(AS.number()), QWORD [Rq(ARGS.number()) + field!(a_terms)]
            ; mov Rq(PANEL_BASES[0].number()), Rq(W_GROUP.number())
        );
        if p > 4 {
            let (lo, hi) = (PANEL_BASES[0].number(), PANEL_BASES[1].number());
            dynasm!(cb.ops ; .arch x64 ; lea Rq(hi), [Rq(lo) + Rq(PANEL_STRIDE.number()) * 4]);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(K_COUNT.number()), QWORD [Rq(ARGS.number()) + field!(k_blocks)]
            ; test Rq(K_COUNT.number()), Rq(K_COUNT.number())
            ; jz >k_done
            ; k_loop:
        );
        for row in &self.isum {
            for &s in &row[..p] {
                cb.emit(EvexOp::VPXORD.rvm(s, s, s, none)?);
            }
        }
        if spec.prefetch_blocks > 0 {
            let ahead = (CHUNK_BYTES * usize::from(spec.prefetch_blocks)) as i32;
            for j in 0..p {
                for line in 0..(CHUNK_BYTES / 64) as i32 {
                    prefetch(cb, panel_mem(j, ahead + 64 * line)?);
                }
            }
        }
        for r in 0..8 {
            for j in 0..p {
                let w = self.x[(r * p + j) % 2];
                cb.emit(EvexOp::VMOVDQU32_LOAD.rm_mem(w, panel_mem(j, 64 * r as i32)?, none)?);
                for i in 0..m {
                    let a = row_mem(AQ, AQ_STRIDE, AQ_STRIDE3, i, 4 * r as i32)?;
                    cb.emit(EvexOp::VPDPBUSD.rvm_mem(self.isum[i][j], w, a, none, true)?);
                }
            }
        }
        for (i, row) in self.isum.iter().enumerate() {
            let corr = row_mem(AS, AS_STRIDE, AS_STRIDE3, i, 4)?;
            for &s in &row[..p] {
                cb.emit(EvexOp::VPSUBD.rvm_mem(s, s, corr, none, true)?);
                cb.emit(EvexOp::VCVTDQ2PS.rm(s, s, none)?);
            }
        }
        for i in 0..m {
            let da = row_mem(AS, AS_STRIDE, AS_STRIDE3, i, 0)?;
            cb.emit(EvexOp::VBROADCASTSS.rm_mem(self.a_scale, da, none)?);
            for j in 0..p {
                let s = self.scale[(i * p + j) % 2];
                cb.emit(EvexOp::VMULPS.rvm_mem(s, self.a_scale, panel_mem(j, SCALES_AT as i32)?, none, false)?);
                cb.emit(EvexOp::VFMADD231PS.rvm(self.acc[i][j], self.isum[i][j], s, none)?);
            }
        }
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(AQ.number()), QK as i32
            ; add Rq(AS.number()), 8
        );
        for &base in &PANEL_BASES[..p.div_ceil(4)] {
            dynasm!(cb.ops ; .arch x64 ; add Rq(base.number()), CHUNK_BYTES as i32);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; dec Rq(K_COUNT.number())
            ; jnz <k_loop
            ; k_done:
            ; mov Rq(AQ_STRIDE.number()), QWORD [Rq(ARGS.number()) + field!(ldc)]
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
        spec.validate().map_err(|e| GenerateError::Assembler(e.to_string()))?;
        let plan = Plan::new(&spec);
        let p = usize::from(spec.panels_per_pass);
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        cb.save(&SAVED);
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + field!(tail_mask)]
        );
        cb.emit(kmovq_k_r64(TAIL, TMP));
        dynasm!(cb.ops
            ; .arch x64
            ; mov Rq(AS_STRIDE.number()), QWORD [Rq(ARGS.number()) + field!(lds)]
            ; lea Rq(AS_STRIDE3.number()), [Rq(AS_STRIDE.number()) + Rq(AS_STRIDE.number()) * 2]
            ; mov Rq(PANEL_STRIDE.number()), QWORD [Rq(ARGS.number()) + field!(panel_stride)]
            ; lea Rq(PANEL_STRIDE3.number()), [Rq(PANEL_STRIDE.number()) + Rq(PANEL_STRIDE.number()) * 2]
            ; mov Rq(W_GROUP.number()), QWORD [Rq(ARGS.number()) + field!(w)]
            ; mov Rq(C_PTR.number()), QWORD [Rq(ARGS.number()) + field!(c)]
            ; mov Rq(N_COUNT.number()), QWORD [Rq(ARGS.number()) + field!(n_groups)]
            ; test Rq(N_COUNT.number()), Rq(N_COUNT.number())
            ; jz >groups_done
            ; groups:
        );
        plan.emit_pass(&mut cb, &spec, p, false)?;
        dynasm!(cb.ops
            ; .arch x64
            ; imul Rq(TMP.number()), Rq(PANEL_STRIDE.number()), p as i32
            ; add Rq(W_GROUP.number()), Rq(TMP.number())
            ; add Rq(C_PTR.number()), (p * 64) as i32
            ; dec Rq(N_COUNT.number())
            ; jnz <groups
            ; groups_done:
            ; mov Rq(N_COUNT.number()), QWORD [Rq(ARGS.number()) + field!(n_single)]
            ; test Rq(N_COUNT.number()), Rq(N_COUNT.number())
            ; jz >singles_done
            ; singles:
        );
        plan.emit_pass(&mut cb, &spec, 1, false)?;
        dynasm!(cb.ops
            ; .arch x64
            ; add Rq(W_GROUP.number()), Rq(PANEL_STRIDE.number())
            ; add Rq(C_PTR.number()), 64
            ; dec Rq(N_COUNT.number())
            ; jnz <singles
            ; singles_done:
            ; mov Rq(TMP.number()), QWORD [Rq(ARGS.number()) + field!(tail_mask)]
            ; test Rq(TMP.number()), Rq(TMP.number())
            ; jz >done
        );
        plan.emit_pass(&mut cb, &spec, 1, true)?;
        dynasm!(cb.ops ; .arch x64 ; done: ; vzeroupper);
        cb.restore(&SAVED);
        dynasm!(cb.ops ; .arch x64 ; ret);
        let code = cb.finish(entry)?;
        code.dump_if_requested(&format!("quant_avx512_m{}_p{}_pf{}", spec.m_rows, p, spec.prefetch_blocks));
        Ok(QuantAvx512Kernel { spec, code })
    }

    pub fn spec(&self) -> &QuantAvx512Spec {
        &self.spec
    }

    pub fn code(&self) -> &[u8] {
        self.code.bytes()
    }

    /// Arguments for `n` columns and `k` (a multiple of 32) with dense
    /// operands (`lda = k`, `lds = 4 * k / 32`, `ldc = 4 * n`) and null
    /// pointers for the caller to fill in.
    pub fn shape_args(&self, n: usize, k: usize) -> QuantAvx512Args {
        let (full, tail) = (n / PANEL_COLS, n % PANEL_COLS);
        let p = usize::from(self.spec.panels_per_pass);
        QuantAvx512Args {
            a: std::ptr::null(),
            lda: k,
            a_terms: std::ptr::null(),
            lds: 8 * (k / QK),
            w: std::ptr::null(),
            panel_stride: k / QK * CHUNK_BYTES,
            c: std::ptr::null_mut(),
            ldc: 4 * n,
            k_blocks: k / QK,
            n_groups: full / p,
            n_single: full % p,
            tail_mask: (1u64 << tail) - 1,
        }
    }

    /// `c[i * n + j] = dot(activation row i, weight row j)` for all of
    /// `w`'s N, bit-identical to `gemm_quant(Q8_0 or Q4_0, Q8_0, ...)`.
    ///
    /// # Errors
    /// Row count other than the spec's, mismatched `k`, a wrong `c` length,
    /// or a CPU without AVX512F/BW/VNNI.
    pub fn gemm(&self, w: &PackedQ8, a: &Q8Activations, c: &mut [f32]) -> Result<(), QuantPackError> {
        let m = usize::from(self.spec.m_rows);
        if a.m != m {
            return Err(QuantPackError::BadRows { m: a.m, max: m });
        }
        pack::check_len("activation k", w.k(), a.k)?;
        pack::check_len("activation quants", m * a.k, a.quants.len())?;
        pack::check_len("activation terms", 2 * m * w.k_blocks(), a.terms.len())?;
        pack::check_len("C elements", m * w.n(), c.len())?;
        if !(std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni"))
        {
            return Err(QuantPackError::MissingIsa("AVX512F/BW/VNNI"));
        }
        let args = QuantAvx512Args {
            a: a.quants.as_ptr(),
            a_terms: a.terms.as_ptr(),
            w: w.as_bytes().as_ptr(),
            c: c.as_mut_ptr(),
            ..self.shape_args(w.n(), w.k())
        };
        // SAFETY: the ISA was checked above and every buffer has exactly the
        // lengths `shape_args` describes.
        unsafe { self.run(&args) };
        Ok(())
    }

    /// Runs the kernel.
    ///
    /// # Safety
    /// The CPU and OS must support AVX512F, AVX512BW and AVX512_VNNI, MXCSR
    /// must be the default (or at least round to nearest even without DAZ)
    /// for oracle bits, and `args` must describe buffers holding every byte
    /// touched: `m_rows` rows of `k_blocks * 32` quants and `k_blocks`
    /// scales; `(n_groups * panels_per_pass + n_single + (tail_mask != 0))`
    /// panels of `k_blocks * CHUNK_BYTES` at `panel_stride`; C rows of the
    /// full panels' columns plus the masked tail columns.
    pub unsafe fn run(&self, args: &QuantAvx512Args) {
        // SAFETY: generated for this signature (SysV, one pointer argument),
        // restoring every callee-saved register; touches only memory `args`
        // describes (prefetches never fault, masked-off lanes are not stored).
        let f: extern "sysv64" fn(*const QuantAvx512Args) = unsafe { std::mem::transmute(self.code.entry_ptr()) };
        f(args)
    }
}
