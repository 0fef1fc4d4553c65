//! Dense GEMM: `C[M,N] (+)= A[M,K] x B[K,N]` with B packed once.
//!
//! The public functions validate the shapes once, then pick an ISA path:
//! `opts.isa` if set, else `TILEJIT_ISA` if set, else by measurement
//! ([`dispatch`]: AVX-512 for small M, AMX from a calibrated crossover).
//! Every path gives the same bits for the same semantics (int8: wrapping
//! i32; bf16: TDPBF16PS with the packed B's chunking).

mod amx;
mod avx512;
pub mod dispatch;
mod error;
pub mod quant;
pub mod rows;
mod scalar;

use tilejit_kernels::dense_amx::{BLoad, Blocking, Schedule};
use tilejit_kernels::dense_avx512::Avx512Kind;
use tilejit_kernels::pack::{PackedB, Plain};
use tilejit_kernels::spec::{ElemType, Int8Sign};

use crate::emulate::{Execution, Executor};
use crate::isa::{self, Isa, Op};

pub use amx::kernel;
pub(crate) use error::check_rows;
pub use error::{GemmError, ShapeError};
pub use quant::{
    bf16_from_f32, dequantize_rows_to_bf16, gemm_dequant_bf16, gemm_quant, gemm_quant_amx, gemm_quant_avx512,
    quantize_activations, quantize_weights, reference_types, PackedDequantBf16, QuantWeights, DEFAULT_TILE_ROWS,
};
pub use scalar::oracle_sign;
/// Tuning knobs of a GEMM call; none of them changes the result bits. (The
/// K chunk per TDP, which does for bf16, and the K block size belong to the
/// packed B: see `BLayout`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmOptions {
    pub threads: usize,
    pub blocking: Blocking,
    pub schedule: Schedule,
    /// Prefetch the next A slice and the next K block of B into L2 while
    /// the kernels run (2 lines of each per K step).
    pub prefetch: bool,
    pub b_load: BLoad,
    /// Force an ISA path (tests compare paths this way); `None` honours
    /// `TILEJIT_ISA`, then picks the best available.
    pub isa: Option<Isa>,
    /// Run the path's generated code on this CPU or under the emulator
    /// (any x86-64; every access checked). With `isa: None`,
    /// `TILEJIT_ISA=amx-emu` / `avx512-emu` choose emulation too.
    pub execution: Execution,
}

impl GemmOptions {
    /// One thread, the measured default blocking and schedule, any ISA
    /// (usable in constants: `GemmOptions { threads: 4, ..GemmOptions::DEFAULT }`).
    pub const DEFAULT: GemmOptions = GemmOptions {
        threads: 1,
        blocking: Blocking::B2X2,
        schedule: Schedule::LoadThenCompute,
        prefetch: true,
        b_load: BLoad::NonTemporal,
        isa: None,
        execution: Execution::Native,
    };
}

impl Default for GemmOptions {
    fn default() -> Self {
        GemmOptions::DEFAULT
    }
}

/// int8 GEMM: `c[i*ldc + j] (+)= sum_k a[i*lda + k] * B[k][j]`, wrapping,
/// bytes read as signed or unsigned per `sign`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_int8(
    sign: Int8Sign,
    m: usize,
    a: &[u8],
    lda: usize,
    b: &PackedB,
    c: &mut [i32],
    ldc: usize,
    accumulate: bool,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    dispatch(Problem::new(ElemType::Int8(sign), m, a, lda, b, bytes_mut(c), ldc, accumulate)?, opts)
}

/// bf16 GEMM with TDPBF16PS semantics (docs/NUMERICS.md): A and B are bf16
/// bit patterns, C is f32.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16(
    m: usize,
    a: &[u16],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    dispatch(Problem::new(ElemType::Bf16, m, bytes(a), lda, b, bytes_mut(c), ldc, accumulate)?, opts)
}

/// bf16 GEMM with VDPBF16PS semantics: per output one f32 accumulator
/// starting from C, each bf16 pair added odd lane first (docs/NUMERICS.md,
/// "VDPBF16PS"), K zero padded to whole chunks of the packed B. Faster than
/// [`gemm_bf16`] on AVX-512 but with different bits, so it is its own
/// operation: there is no AMX path for it (TDPBF16PS rounds differently),
/// and its reference is the oracle's `gemm_bf16_vdpbf16ps`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16_dot(
    m: usize,
    a: &[u16],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    opts: &GemmOptions,
) -> Result<(), GemmError> {
    let mut p = Problem::new(ElemType::Bf16, m, bytes(a), lda, b, bytes_mut(c), ldc, accumulate)?;
    p.dot = true;
    dispatch(p, opts)
}

/// A slice of plain numbers as its bytes (the paths move bytes only).
pub(crate) fn bytes<T: Plain>(s: &[T]) -> &[u8] {
    // SAFETY: Plain types have no padding and any alignment suffices for u8.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

/// [`bytes`] for writing: every bit pattern is a valid Plain value.
fn bytes_mut<T: Plain>(s: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `bytes`, and writes of any bytes leave valid values.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
}

/// The ISA an `op` call runs on and how: `opts.isa` with
/// `opts.execution` if set, else `TILEJIT_ISA` (which may ask for
/// emulation), else `choose()` natively; an error if the `op` kernels of
/// that ISA cannot run that way here.
pub(crate) fn resolve_isa(
    opts: &GemmOptions,
    op: Op,
    choose: impl FnOnce() -> Isa,
) -> Result<(Isa, Execution), GemmError> {
    let (isa, execution) = match opts.isa {
        Some(isa) => (isa, opts.execution),
        None => match isa::forced()? {
            Some(isa) => (isa, isa::forced_execution()),
            None => (choose(), opts.execution),
        },
    };
    isa::availability_with(isa, op, execution).map_err(|reason| GemmError::Unsupported { isa, reason })?;
    Ok((isa, execution))
}

/// Checks that `m` rows of `k` A elements (`a = (elements, lda)`) and `m`
/// rows of `n` C elements (`c = (elements, ldc)`) fit their buffers.
pub(crate) fn check_operands(
    m: usize,
    n: usize,
    k: usize,
    (a_len, lda): (usize, usize),
    (c_len, ldc): (usize, usize),
) -> Result<(), ShapeError> {
    check_rows(("A", "lda"), m, k, lda, a_len)?;
    check_rows(("C", "ldc"), m, n, ldc, c_len)
}

/// A C pointer that may cross threads: every thread writes its own blocks.
#[derive(Clone, Copy)]
pub(crate) struct SharedC(pub *mut u8);
// SAFETY: threads write disjoint C blocks (each path splits the output, never
// K), and the paths join their threads before the borrow of C ends.
unsafe impl Send for SharedC {}
unsafe impl Sync for SharedC {}

/// A GEMM call whose shapes have been checked against its buffers: every
/// path may touch A rows `0..m` (`k` elements at `lda`), all of the packed
/// B, and C rows `0..m` (`n` elements at `ldc`), nothing else.
#[derive(Clone, Copy)]
pub(crate) struct Problem<'a> {
    pub elem: ElemType,
    pub m: usize,
    /// A as bytes; `lda` in elements.
    pub a: &'a [u8],
    pub lda: usize,
    pub b: &'a PackedB,
    /// C as a raw pointer (4-byte elements); `ldc` in elements.
    pub c: SharedC,
    pub ldc: usize,
    pub accumulate: bool,
    /// bf16 with VDPBF16PS semantics ([`gemm_bf16_dot`]) instead of TDPBF16PS.
    pub dot: bool,
}

impl<'a> Problem<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        elem: ElemType,
        m: usize,
        a: &'a [u8],
        lda: usize,
        b: &'a PackedB,
        c: &'a mut [u8],
        ldc: usize,
        accumulate: bool,
    ) -> Result<Problem<'a>, GemmError> {
        let (n, k, esize) = (b.n(), b.k(), elem.elem_bytes());
        if !b.elem().matches(elem) {
            return Err(GemmError::ElemMismatch { packed: b.elem(), gemm: elem.name() });
        }
        check_operands(m, n, k, (a.len() / esize, lda), (c.len() / 4, ldc))?;
        Ok(Problem { elem, m, a, lda, b, c: SharedC(c.as_mut_ptr()), ldc, accumulate, dot: false })
    }

    pub fn n(&self) -> usize {
        self.b.n()
    }

    pub fn k(&self) -> usize {
        self.b.k()
    }
}

/// Picks the path and runs it.
fn dispatch(p: Problem, opts: &GemmOptions) -> Result<(), GemmError> {
    if opts.threads == 0 {
        return Err(GemmError::Threads);
    }
    // Checked before the path is chosen: whether a call succeeds must not
    // depend on M through the dispatch (only the AMX path reads it).
    if !Blocking::ALL.contains(&opts.blocking) {
        return Err(GemmError::Blocking { blocking: opts.blocking });
    }
    let (isa, execution) = resolve_isa(opts, dispatch::op(p.elem, p.dot), || dispatch::choose(p.elem, p.m, p.dot))?;
    let c_bytes = ((p.m - 1) * p.ldc + p.n()) * 4;
    let exec = Executor::new(execution)
        .input("A", p.a.as_ptr(), p.a.len())
        .input("B", p.b.as_bytes().as_ptr(), p.b.as_bytes().len())
        .output("C", p.c.0, c_bytes);
    match isa {
        // resolve_isa refuses it (the family has no AMX kernel); kept as a guard.
        Isa::Amx if p.dot => {
            Err(GemmError::Unsupported { isa, reason: isa::Unsupported::NoKernel { op: Op::Bf16Dot, isa } })
        }
        Isa::Amx => amx::run(&p, opts, &exec),
        Isa::Scalar => {
            scalar::run(&p);
            Ok(())
        }
        Isa::Avx512 => {
            let kind = match p.elem {
                ElemType::Int8(sign) => Avx512Kind::Int8(sign),
                ElemType::Bf16 if p.dot => Avx512Kind::Bf16Dot,
                ElemType::Bf16 => Avx512Kind::Bf16Chains,
            };
            avx512::run(&p, opts, kind, &exec)
        }
    }
}
