//! AVX-512 decode kernels over a [`SparseMatrix`]: `C[M][N] (+)= A[M][K] x W`
//! for M = 1..=4 rows per call, bit-identical to the dense kernels on the
//! same (unpruned-equivalent) dense B:
//!
//! - bf16 ([`SparseAvx512Kind::Bf16`]): TDPBF16PS semantics with 16 pairs
//!   per instruction (32 k per chunk, K zero padded to whole chunks), as
//!   `tilejit_verify::gemm_bf16_amx(m, n, k, a, b, c, 16)` models them and
//!   the dense `Bf16Chains` AVX-512 kernel emulates them: per output and
//!   32-k tile two FP32 FMA chains (even and odd k) from +0, then
//!   `even + odd`, then `C + that`, under MXCSR = RNE | DAZ | FTZ (set on
//!   entry, restored on exit);
//! - int8 ([`SparseAvx512Kind::Int8`]): s8 A x s8 W -> i32, wrapping, as
//!   `tilejit_verify::gemm_i8(Int8Signedness::SS, ..)`: VPDPBUSD on
//!   `A + 128` (u8) x W (s8), then `-128 * colsum(W)` per column
//!   ([`int8_col_bias`], computed once beside the matrix: [`SparseI8Weights`]).
//!
//! # One call
//!
//! ```text
//! for each pass of w panels (w = panels_per_pass, then 4, 2, 1 for the rest of the range):
//!     acc[i][j] <- +0 | C                                  ; tail panel masked
//!     vptr[j] <- values + offsets[(panel + j) * k_tiles]   ; one value stream per panel
//!     for each K tile q (16 tile rows = 16 K groups), K loop count baked in:
//!         prefetch each panel's masks `prefetch_masks` tiles ahead
//!         bf16: even[i][j], odd[i][j] <- +0
//!         for each block of tile rows (bf16: pairs r, r+1; int8: single rows), unrolled:
//!             for j in the panels of a register group:                      ; all port-5 work first
//!                 kmov k, mask[j][q][r]                                      ; straight from memory
//!                 vpexpandw/b row[j][r]{k}{z}, [vptr[j]]                     ; the dense 64-byte tile row
//!                 bf16 pair: kmov k', mask[j][q][r+1]
//!                            vpexpandw row[j][r+1]{k'}{z}, [vptr[j] + popcnt32(mask r) * 2]
//!                            vptr[j] += popcnt64(masks r, r+1) * 2
//!                 int8:      vptr[j] += popcnt64(mask r)
//!                 prefetch [vptr[j] + prefetch_values]
//!             for each row r of the block:
//!                 broadcast A[i] at group 16q + r (bf16: the even and the odd k as f32; int8: the dword)
//!                 for j in the group:
//!                     bf16: e <- row << 16 (per dword); o <- row & 0xFFFF0000
//!                           for i: even[i][j] = fma(a_even[i], e, even); odd[i][j] = fma(a_odd[i], o, odd)
//!                     int8: for i: acc[i][j] = vpdpbusd(acc, a[i], row)
//!         bf16: for i, j: even += odd; acc += even
//!     int8: acc += col_bias (when not null)
//!     C <- acc                                             ; tail panel masked
//! ```
//!
//! All outputs of a pass stay in zmm registers for the whole K loop; the
//! masks and values of each panel are one sequential stream each, so a
//! pass of `w` panels reads `2w` independent streams. K (as `k_tiles`) and
//! N are baked into the code: mask addresses are immediates off one
//! pointer (panel `j` at `j * k_tiles * 64` bytes, 128 for int8), the K
//! loop count is an immediate. The prefetch distances are per matrix
//! density ([`SparseAvx512Spec::for_matrix`]).
//!
//! # Performance (M = 1, one thread, this project's 2-vCPU development VM)
//!
//! Bytes: at sparsity `s` the kernel streams `(1 - s) + 1/16` (bf16) or
//! `(1 - s) + 1/8` (int8) of the dense bytes. Up to 70 % sparsity it runs
//! at the dense kernel's DRAM bandwidth (~14-15 GB/s), so the speedup is
//! close to that ratio. At 90 % bf16 is bound by instruction throughput,
//! not bytes: every 64-byte tile row costs KMOVD k, m32 (one port-5 uop)
//! and VPEXPANDW (two port-5 uops), and the exact TDPBF16PS emulation adds
//! VPSLLVD + VPANDD + 2 VFMADD231PS on ports 0/5: seven vector uops on two
//! ports, >= 3.5 cycles per row and panel, measured 4.2-4.4 (~1.1 ns) with
//! the weights in L2, against ~4.4 ns for the dense kernel's 64 bytes from
//! DRAM, so the ceiling is ~4x and DRAM latency costs another ~15 %. int8
//! (KMOVQ + VPEXPANDB + one VPDPBUSD) is close to its byte ratio.
//!
//! Sparse over dense AVX-512 GEMV (`tilejit::gemm::gemm_bf16` /
//! `gemm_int8` SS forced to AVX-512, one thread), weights cycled through
//! 1 GiB of copies for each side, random sparsity, default specs; median
//! of 3 runs, [ideal from bytes]:
//!
//! | N x K | kind | 0 % | 50 % | 70 % | 90 % |
//! |---|---|---|---|---|---|
//! | 4096 x 4096 | bf16 | 0.90x [0.94] | 1.77x [1.78] | 2.62x [2.76] | 3.27x [6.15] |
//! | 14336 x 4096 | bf16 | 0.89x | 1.74x | 2.56x | 3.17x |
//! | 4096 x 14336 | bf16 | 0.90x | 1.79x | 2.71x | 3.27x |
//! | 4096 x 4096 | int8 | 0.89x [0.89] | 1.54x [1.60] | 2.25x [2.35] | 3.53x [4.44] |
//! | 14336 x 4096 | int8 | 0.89x | 1.53x | 2.25x | 3.51x |
//! | 4096 x 14336 | int8 | 0.91x | 1.63x | 2.48x | 3.97x |
//!
//! # Zero rows are not skipped
//!
//! An expanded all-zero row (mask 0, summary bit clear) still goes through
//! its FMAs. Skipping `even = fma(a, +0, even)` is not exact: for `a` =
//! NaN or +-inf it gives NaN (the AMX result too); and with `even` = -0 (a
//! negative product flushed to -0 by FTZ, or -0 * x) `-0 + (+0)` is +0, so
//! the chain's sign would change and, if both chains and C are -0 in the
//! end, the output's sign (docs/NUMERICS.md, TDPBF16PS rules 5 and 6). The
//! kernel cannot see A's values at generation time and a run-time test per
//! row costs more than the two FMAs, so it runs them; the mask-0 expansion
//! costs no value bytes. For int8 skipping would be exact (`+0` wraps to
//! the same i32) but saves nothing measurable, so both kinds run the same
//! schedule.
//!
//! # Reads
//!
//! VPEXPANDW/B from memory read exactly popcount(mask) elements, so the
//! value stream is read strictly inside `values()`; the 64-byte slack of
//! `values_with_slack()` is not needed by the kernel (prefetches may point
//! past the end; they never fault). Masks are read as 4- or 8-byte loads
//! inside the tiles of the range.

mod codegen;

use std::ops::Range;
use std::sync::Arc;

use tilejit_kernels::cache::KernelCache;
use tilejit_kernels::cpu::{self, Feature, MissingFeatures};
use tilejit_kernels::jit::{GenerateError, JitCode};
use tilejit_kernels::pack::AlignedBytes;
use tilejit_kernels::spec::CInit;

use crate::elem::{Bf16, Element, PANEL_COLS, TILE_ROWS};
use crate::matrix::{SparseBf16, SparseI8, SparseMatrix};

/// Rows of A and C per kernel call at most.
pub const MAX_ROWS: usize = 4;
/// Panels per pass at most (one value-pointer GPR each).
pub const MAX_PANELS_PER_PASS: u8 = 8;

/// The element family of the weights, and so the instruction sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SparseAvx512Kind {
    /// bf16 x bf16 -> f32, TDPBF16PS semantics (16 pairs per chunk).
    Bf16,
    /// s8 x s8 -> i32, wrapping.
    Int8,
}

impl SparseAvx512Kind {
    /// The kind of weights of element family `E`.
    pub fn of<E: Element>() -> SparseAvx512Kind {
        if E::CODE == Bf16::CODE {
            SparseAvx512Kind::Bf16
        } else {
            SparseAvx512Kind::Int8
        }
    }

    /// K per tile: 32 (bf16) or 64 (int8).
    pub const fn tile_k(self) -> usize {
        match self {
            SparseAvx512Kind::Bf16 => 32,
            SparseAvx512Kind::Int8 => 64,
        }
    }

    /// Bytes of one tile row's mask: 4 or 8.
    pub const fn mask_bytes(self) -> usize {
        match self {
            SparseAvx512Kind::Bf16 => 4,
            SparseAvx512Kind::Int8 => 8,
        }
    }

    /// Bytes of one tile's 16 masks: 64 or 128.
    pub const fn tile_mask_bytes(self) -> usize {
        TILE_ROWS * self.mask_bytes()
    }

    /// Bytes of one stored value: 2 or 1.
    pub const fn value_bytes(self) -> usize {
        match self {
            SparseAvx512Kind::Bf16 => 2,
            SparseAvx512Kind::Int8 => 1,
        }
    }

    /// Bytes of one element of the *prepared* A ([`PreparedA`]): an f32
    /// (the bf16 widened exactly) or a byte (`a xor 0x80`).
    pub const fn a_elem_bytes(self) -> usize {
        match self {
            SparseAvx512Kind::Bf16 => 4,
            SparseAvx512Kind::Int8 => 1,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            SparseAvx512Kind::Bf16 => "bf16",
            SparseAvx512Kind::Int8 => "int8",
        }
    }

    /// The extensions the kernel executes (besides POPCNT, which every
    /// AVX-512 CPU has and [`check_cpu`] checks too): VPEXPANDW/B are VBMI2,
    /// the mask loads BW, VPDPBUSD VNNI.
    pub const fn features(self) -> &'static [Feature] {
        match self {
            SparseAvx512Kind::Bf16 => &[Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Vbmi2],
            SparseAvx512Kind::Int8 => &[Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Vbmi2, Feature::Avx512Vnni],
        }
    }
}

/// Why a sparse AVX-512 kernel could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Avx512Error {
    #[error("the sparse {kind} AVX-512 kernel needs {missing}")]
    MissingIsa { kind: &'static str, missing: MissingFeatures },
    #[error("the sparse AVX-512 kernels need POPCNT, which this CPU lacks")]
    MissingPopcnt,
    #[error("invalid sparse AVX-512 spec: {0}")]
    Spec(String),
    #[error("m = {m} rows: the GEMM needs at least 1 (and a kernel call 1..={max})")]
    Rows { m: usize, max: usize },
    #[error("{what} = {value} must be at least {min}")]
    Stride { what: &'static str, value: usize, min: usize },
    #[error("{what} holds {actual} elements; {need} are needed")]
    Length { what: &'static str, need: usize, actual: usize },
    #[error("{what}: the sizes overflow this machine's address space")]
    Overflow { what: &'static str },
    #[error("panels {start}..{end} are not inside the matrix's {panels} panels")]
    Panels { start: usize, end: usize, panels: usize },
    #[error("the kernel was generated for {expected}, but the {what} is {actual}")]
    Mismatch { what: &'static str, expected: String, actual: String },
    #[error("kernel generation failed: {0}")]
    Generate(#[from] GenerateError),
}

/// Everything that changes the generated code (the cache key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SparseAvx512Spec {
    pub kind: SparseAvx512Kind,
    /// K tiles of the matrix (`ceil(K / tile_k)`), baked in.
    pub k_tiles: u32,
    /// N of the matrix, baked in (panels and the tail mask follow from it).
    pub n: u32,
    /// Rows of A and C per call, 1..=[`MAX_ROWS`].
    pub m_rows: u8,
    /// Panels per pass, 1..=[`SparseAvx512Spec::max_panels_per_pass`].
    pub panels_per_pass: u8,
    /// Start from +0.0 / 0 (overwrite) or from C (accumulate).
    pub c_init: CInit,
    /// Software prefetch (PREFETCHT0) of each value stream this many bytes
    /// ahead of the expansion, once per expansion block (a bf16 row pair,
    /// an int8 row; 0: none).
    pub prefetch_values: u16,
    /// Software prefetch of each mask stream this many tiles ahead, once
    /// per tile (0: none).
    pub prefetch_masks: u8,
}

impl SparseAvx512Spec {
    /// The default kernel for a `k` x `n` matrix of `kind` and `m_rows`
    /// rows: [`default_panels_per_pass`] panels per pass (fewer if the
    /// registers do not fit them), prefetch distances for a density of
    /// 50 % ([`Self::prefetch_for_density`]; [`Self::for_matrix`] uses the
    /// matrix's own).
    pub fn new(kind: SparseAvx512Kind, k: usize, n: usize, m_rows: usize, c_init: CInit) -> SparseAvx512Spec {
        let m = m_rows.clamp(1, MAX_ROWS) as u8;
        let panels_per_pass = Self::max_panels_per_pass(kind, m).min(default_panels_per_pass(kind));
        let (prefetch_values, prefetch_masks) = Self::prefetch_for_density(kind, 0.5, panels_per_pass);
        SparseAvx512Spec {
            kind,
            k_tiles: k.div_ceil(kind.tile_k()).try_into().unwrap_or(u32::MAX),
            n: n.try_into().unwrap_or(u32::MAX),
            m_rows: m_rows.try_into().unwrap_or(u8::MAX),
            panels_per_pass,
            c_init,
            prefetch_values,
            prefetch_masks,
        }
    }

    /// Prefetch distances for a matrix of `kind` whose stored values are
    /// `density` of its elements, read `panels_per_pass` panels at a time:
    /// about one DRAM latency ahead at the kernel's M = 1 rate on the
    /// development machine, `R / panels_per_pass` tile rows ahead in each
    /// stream with R = 160 for bf16 and 320 for int8 (a faster row), i.e.
    /// `64 * R * density / panels_per_pass` value bytes (64-byte multiples
    /// in 128..=4096) and `R / 16 / panels_per_pass` tiles of masks
    /// (1..=16). Measured with M = 1, 4096 x 4096 cycled from DRAM: bf16
    /// with 4 panels best at 256 B / 2-3 tiles for 90 %, 512-1024 B for
    /// 70 %, 1024-2048 B for 50 % sparsity; int8 with 8 panels 256 B / 2
    /// tiles at 90 %, 384-1024 B at 50 %.
    pub fn prefetch_for_density(kind: SparseAvx512Kind, density: f64, panels_per_pass: u8) -> (u16, u8) {
        let rows = match kind {
            SparseAvx512Kind::Bf16 => 160.0,
            SparseAvx512Kind::Int8 => 320.0,
        } / f64::from(panels_per_pass.max(1));
        let bytes = (rows * density.clamp(0.0, 1.0)).round() * 64.0;
        let tiles = (rows / TILE_ROWS as f64).round();
        (bytes.clamp(128.0, 4096.0) as u16, tiles.clamp(1.0, 16.0) as u8)
    }

    /// [`Self::new`] for the shape and kind of `w`, with the prefetch
    /// distances for its density.
    pub fn for_matrix<E: Element>(w: &SparseMatrix<E>, m_rows: usize, c_init: CInit) -> SparseAvx512Spec {
        let spec = Self::new(SparseAvx512Kind::of::<E>(), w.k(), w.n(), m_rows, c_init);
        let padded = (w.tiles() * TILE_ROWS * E::LANES).max(1);
        let density = w.nnz() as f64 / padded as f64;
        let (prefetch_values, prefetch_masks) = Self::prefetch_for_density(spec.kind, density, spec.panels_per_pass);
        SparseAvx512Spec { prefetch_values, prefetch_masks, ..spec }
    }

    /// The most panels per pass whose registers fit the 32 zmm for
    /// `m_rows` rows (at most [`MAX_PANELS_PER_PASS`]).
    pub fn max_panels_per_pass(kind: SparseAvx512Kind, m_rows: u8) -> u8 {
        let m = usize::from(m_rows.max(1));
        (1..=MAX_PANELS_PER_PASS).rev().find(|&p| codegen::zmm_needed(kind, m, p.into(), 1, 1) <= 32).unwrap_or(0)
    }

    /// Panels of 16 columns.
    pub fn panels(&self) -> usize {
        (self.n as usize).div_ceil(PANEL_COLS)
    }

    /// Bytes of one prepared A row: `k_tiles * tile_k` elements of
    /// [`SparseAvx512Kind::a_elem_bytes`].
    pub fn a_row_bytes(&self) -> usize {
        self.k_tiles as usize * self.kind.tile_k() * self.kind.a_elem_bytes()
    }

    pub fn name(&self) -> String {
        let init = match self.c_init {
            CInit::Zero => "ovw",
            CInit::Load => "acc",
        };
        format!(
            "sparse_avx512_{}_kt{}_n{}_m{}_p{}_{init}_pfv{}_pfm{}",
            self.kind.name(),
            self.k_tiles,
            self.n,
            self.m_rows,
            self.panels_per_pass,
            self.prefetch_values,
            self.prefetch_masks
        )
    }

    /// # Errors
    /// Rows, panels per pass or the shape out of range, or displacements
    /// that do not fit the instruction encodings.
    pub fn validate(&self) -> Result<(), Avx512Error> {
        let bad = |s: String| Err(Avx512Error::Spec(s));
        if !(1..=MAX_ROWS).contains(&usize::from(self.m_rows)) {
            return Err(Avx512Error::Rows { m: self.m_rows.into(), max: MAX_ROWS });
        }
        let max_p = Self::max_panels_per_pass(self.kind, self.m_rows);
        if !(1..=max_p).contains(&self.panels_per_pass) {
            return bad(format!(
                "panels_per_pass = {} with {} rows: {} kernels take 1..={max_p}",
                self.panels_per_pass,
                self.m_rows,
                self.kind.name()
            ));
        }
        if self.k_tiles == 0 || self.n == 0 {
            return bad(format!("k_tiles = {} and n = {} must be at least 1", self.k_tiles, self.n));
        }
        // Immediates: mask displacements up to the last panel of a pass
        // plus the prefetch distance, offsets displacements, the pass
        // count compare.
        let kt = self.k_tiles as u64;
        let tmb = self.kind.tile_mask_bytes() as u64;
        let far_mask = u64::from(MAX_PANELS_PER_PASS) * kt * tmb + (u64::from(self.prefetch_masks) + 1) * tmb;
        if far_mask > i32::MAX as u64 || kt * 8 * u64::from(MAX_PANELS_PER_PASS) > i32::MAX as u64 {
            return bad(format!("k_tiles = {} is too large for 32-bit displacements", self.k_tiles));
        }
        Ok(())
    }
}

/// Panels per pass of [`SparseAvx512Spec::new`] when the registers allow
/// them, measured with M = 1 from DRAM: bf16 4 (as fast as or faster than
/// 2, 6 and 8), int8 8 (~5 % over 4 at 90 % sparsity).
pub const fn default_panels_per_pass(kind: SparseAvx512Kind) -> u8 {
    match kind {
        SparseAvx512Kind::Bf16 => 4,
        SparseAvx512Kind::Int8 => 8,
    }
}

/// Arguments of one kernel call. Strides in bytes; the matrix pointers are
/// those of the whole matrix (the kernel finds the range's panels itself),
/// so threads splitting N copy one `SparseAvx512Args` and change only
/// `first_panel` / `panel_count`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SparseAvx512Args {
    /// Prepared A ([`PreparedA`]) at row 0 of this call: `m_rows` rows of
    /// [`SparseAvx512Spec::a_row_bytes`] bytes, `lda` apart. bf16: the
    /// bf16 widened to f32 (`bits << 16`), K zero padded; int8: every byte
    /// xor 0x80 (`a + 128` as u8), K padded with anything.
    pub a: *const u8,
    pub lda: usize,
    /// C at row 0, column 0 of the *matrix* (not of `first_panel`), f32 or
    /// i32; rows `ldc` bytes apart.
    pub c: *mut u8,
    pub ldc: usize,
    /// [`SparseMatrix::masks`] of the whole matrix.
    pub masks: *const u8,
    /// [`SparseMatrix::values_with_slack`] of the whole matrix.
    pub values: *const u8,
    /// [`SparseMatrix::offsets`] of the whole matrix.
    pub offsets: *const u64,
    /// int8: null, or `panels * 16` i32 added to C per column after the K
    /// loop ([`int8_col_bias`]); ignored by bf16.
    pub col_bias: *const i32,
    /// The panels (16 columns each) this call computes.
    pub first_panel: usize,
    pub panel_count: usize,
}

/// A generated sparse AVX-512 kernel.
pub struct SparseAvx512Kernel {
    spec: SparseAvx512Spec,
    code: JitCode,
}

impl std::fmt::Debug for SparseAvx512Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseAvx512Kernel")
            .field("spec", &self.spec)
            .field("code_bytes", &self.code.bytes().len())
            .finish()
    }
}

impl SparseAvx512Kernel {
    /// Generates the kernel for `spec`.
    ///
    /// # Errors
    /// An invalid spec, or the assembler / executable memory failing.
    pub fn generate(spec: SparseAvx512Spec) -> Result<SparseAvx512Kernel, Avx512Error> {
        spec.validate()?;
        let code = codegen::generate(&spec)?;
        Ok(SparseAvx512Kernel { spec, code })
    }

    pub fn spec(&self) -> &SparseAvx512Spec {
        &self.spec
    }

    /// The machine code (for dumps and disassembly).
    pub fn code(&self) -> &[u8] {
        self.code.bytes()
    }

    /// The executable code with the data it points at (for emulation).
    pub fn jit_code(&self) -> &JitCode {
        &self.code
    }

    /// Arguments for the spec's shape with dense strides (`lda` =
    /// [`SparseAvx512Spec::a_row_bytes`], `ldc = 4 n`), all panels, and null
    /// pointers for the caller to fill in.
    pub fn shape_args(&self) -> SparseAvx512Args {
        SparseAvx512Args {
            a: std::ptr::null(),
            lda: self.spec.a_row_bytes(),
            c: std::ptr::null_mut(),
            ldc: 4 * self.spec.n as usize,
            masks: std::ptr::null(),
            values: std::ptr::null(),
            offsets: std::ptr::null(),
            col_bias: std::ptr::null(),
            first_panel: 0,
            panel_count: self.spec.panels(),
        }
    }

    /// [`Self::shape_args`] with the matrix pointers of `w` filled in.
    ///
    /// # Errors
    /// `w` is of another kind or shape than the spec.
    pub fn matrix_args<E: Element>(&self, w: &SparseMatrix<E>) -> Result<SparseAvx512Args, Avx512Error> {
        self.check_matrix(w)?;
        Ok(SparseAvx512Args {
            masks: w.masks().as_ptr().cast(),
            values: w.values_with_slack().as_ptr().cast(),
            offsets: w.offsets().as_ptr(),
            ..self.shape_args()
        })
    }

    fn check_matrix<E: Element>(&self, w: &SparseMatrix<E>) -> Result<(), Avx512Error> {
        let s = &self.spec;
        let (kind, k_tiles) = (SparseAvx512Kind::of::<E>(), w.k_tiles());
        if kind != s.kind || k_tiles != s.k_tiles as usize || w.n() != s.n as usize {
            return Err(Avx512Error::Mismatch {
                what: "matrix",
                expected: format!("{} with {} K tiles and n = {}", s.kind.name(), s.k_tiles, s.n),
                actual: format!("{} with {k_tiles} K tiles and n = {}", kind.name(), w.n()),
            });
        }
        Ok(())
    }

    /// Runs the kernel on `w` for rows `row0 .. row0 + m_rows` of `a` and
    /// `c` (`ldc` elements apart) and the panels `panels`, checking
    /// everything first.
    ///
    /// # Errors
    /// Anything [`Self::run`] would need that does not hold: the CPU,
    /// kind, shapes, lengths, the panel range.
    pub fn run_bf16(
        &self,
        a: &PreparedA,
        row0: usize,
        w: &SparseBf16,
        c: &mut [f32],
        ldc: usize,
        panels: Range<usize>,
    ) -> Result<(), Avx512Error> {
        self.checked_run(a, row0, w, std::ptr::null(), (c.as_mut_ptr().cast(), c.len()), ldc, panels)
    }

    /// [`Self::run_bf16`] for int8 weights (the correction included).
    ///
    /// # Errors
    /// As [`Self::run_bf16`].
    pub fn run_i8(
        &self,
        a: &PreparedA,
        row0: usize,
        w: &SparseI8Weights,
        c: &mut [i32],
        ldc: usize,
        panels: Range<usize>,
    ) -> Result<(), Avx512Error> {
        let bias = w.col_bias.as_ptr();
        self.checked_run(a, row0, &w.matrix, bias, (c.as_mut_ptr().cast(), c.len()), ldc, panels)
    }

    #[allow(clippy::too_many_arguments)]
    fn checked_run<E: Element>(
        &self,
        a: &PreparedA,
        row0: usize,
        w: &SparseMatrix<E>,
        col_bias: *const i32,
        (c, c_len): (*mut u8, usize),
        ldc: usize,
        panels: Range<usize>,
    ) -> Result<(), Avx512Error> {
        let s = &self.spec;
        check_cpu(s.kind)?;
        self.check_matrix(w)?;
        if a.kind != s.kind || a.k != w.k() {
            return Err(Avx512Error::Mismatch {
                what: "prepared A",
                expected: format!("{} with k = {}", s.kind.name(), w.k()),
                actual: format!("{} with k = {}", a.kind.name(), a.k),
            });
        }
        let m = usize::from(s.m_rows);
        let rows_end = row0.checked_add(m).ok_or(Avx512Error::Overflow { what: "row0 + m_rows" })?;
        if rows_end > a.m {
            return Err(Avx512Error::Length { what: "prepared A (rows)", need: rows_end, actual: a.m });
        }
        let n = w.n();
        if panels.start > panels.end || panels.end > s.panels() {
            return Err(Avx512Error::Panels { start: panels.start, end: panels.end, panels: s.panels() });
        }
        check_rows("C", rows_end, ldc, n, c_len, "ldc")?;
        let args = SparseAvx512Args {
            a: a.row_ptr(row0),
            lda: a.row_bytes,
            // SAFETY (pointer arithmetic): row0 * ldc <= (rows_end - 1) * ldc < c_len.
            c: unsafe { c.add(row0 * ldc * 4) },
            ldc: ldc * 4,
            col_bias,
            first_panel: panels.start,
            panel_count: panels.end - panels.start,
            ..self.matrix_args(w)?
        };
        // SAFETY: the CPU features were checked; A holds rows row0..rows_end
        // of a_row_bytes; C holds rows row0..rows_end of n elements at ldc
        // (check_rows); the matrix pointers are the matrix's own arrays,
        // valid by construction; the bias (int8) has panels * 16 entries
        // (SparseI8Weights); the panel range is inside the matrix.
        unsafe { self.run(&args) };
        Ok(())
    }

    /// Runs the kernel.
    ///
    /// # Safety
    /// - The CPU and OS support [`SparseAvx512Kind::features`] of the spec's kind
    ///   ([`check_cpu`]).
    /// - `masks`, `values`, `offsets` are the arrays of one valid
    ///   [`SparseMatrix`] of the spec's kind, `k_tiles` and `n` (a matrix
    ///   built any other way, e.g. with a tampered mask, must still have
    ///   every tile's values inside the value buffer: the kernel trusts
    ///   the masks and the offsets). The kernel reads the masks of tiles
    ///   `first_panel * k_tiles .. (first_panel + panel_count) * k_tiles`
    ///   (64-byte aligned, as [`SparseMatrix::masks`] is),
    ///   `offsets[p * k_tiles]` for those panels, and from `values` exactly
    ///   popcount(mask) elements per tile row starting at those offsets
    ///   (so at most `nnz` elements; [`SparseMatrix::values_with_slack`]
    ///   satisfies it with 64 bytes to spare).
    /// - `first_panel + panel_count <= panels`.
    /// - `a`: `m_rows` rows of [`SparseAvx512Spec::a_row_bytes`] readable
    ///   bytes, `lda` apart, in the prepared form ([`PreparedA`]).
    /// - `c`: rows `0..m_rows`, `ldc` bytes apart, each holding the `n`
    ///   columns' f32 / i32 of the panels in range (the N tail is read and
    ///   written under a mask), read (accumulate) and written by this call
    ///   only.
    /// - int8: `col_bias` null or `panels * 16` readable i32.
    ///
    /// MXCSR is saved, set to RNE | DAZ | FTZ (bf16) and restored.
    pub unsafe fn run(&self, args: &SparseAvx512Args) {
        // SAFETY: the code was generated for this signature (SysV, one
        // pointer argument), restores every callee-saved register and
        // MXCSR, and touches only the memory the contract above describes
        // (prefetches never fault, masked-off lanes are neither loaded nor
        // stored).
        unsafe { self.code.call(args) }
    }
}

/// Whether this CPU and OS can run the `kind` kernels (with
/// `TILEJIT_HIDE` applied, docs in `tilejit_kernels::cpu`).
///
/// # Errors
/// [`Avx512Error::MissingIsa`] naming every missing feature and why.
pub fn check_cpu(kind: SparseAvx512Kind) -> Result<(), Avx512Error> {
    cpu::require(kind.features()).map_err(|missing| Avx512Error::MissingIsa { kind: kind.name(), missing })?;
    if !std::is_x86_feature_detected!("popcnt") {
        return Err(Avx512Error::MissingPopcnt);
    }
    Ok(())
}

/// `rows` rows of `cols` elements, `ld` apart, fit `len` elements (checked).
fn check_rows(
    what: &'static str,
    rows: usize,
    ld: usize,
    cols: usize,
    len: usize,
    ld_name: &'static str,
) -> Result<(), Avx512Error> {
    if ld < cols {
        return Err(Avx512Error::Stride { what: ld_name, value: ld, min: cols });
    }
    let need = (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols)).ok_or(Avx512Error::Overflow { what })?;
    if ld.checked_mul(4).is_none() {
        return Err(Avx512Error::Overflow { what });
    }
    if len < need {
        return Err(Avx512Error::Length { what, need, actual: len });
    }
    Ok(())
}

/// A in the form the kernels read: rows of `k_tiles * tile_k` elements,
/// 64-byte aligned, K padded. bf16: each bf16 widened to its f32 (`bits <<
/// 16`, exact; the padding is +0.0); int8: each byte xor 0x80 (the padding
/// is 0x80, i.e. A = 0).
#[derive(Clone)]
pub struct PreparedA {
    kind: SparseAvx512Kind,
    m: usize,
    k: usize,
    k_tiles: usize,
    row_bytes: usize,
    bytes: AlignedBytes,
}

impl std::fmt::Debug for PreparedA {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedA").field("kind", &self.kind).field("m", &self.m).field("k", &self.k).finish()
    }
}

impl PreparedA {
    fn new<T: Copy>(
        kind: SparseAvx512Kind,
        (m, a, lda, k): (usize, &[T], usize, usize),
        write: impl Fn(T, &mut [u8]),
        pad: u8,
    ) -> Result<PreparedA, Avx512Error> {
        if m == 0 {
            return Err(Avx512Error::Rows { m, max: MAX_ROWS });
        }
        if k == 0 {
            return Err(Avx512Error::Stride { what: "k", value: 0, min: 1 });
        }
        check_rows("A", m, lda, k, a.len(), "lda")?;
        let k_tiles = k.div_ceil(kind.tile_k());
        let row_bytes = k_tiles * kind.tile_k() * kind.a_elem_bytes();
        let total = m.checked_mul(row_bytes).ok_or(Avx512Error::Overflow { what: "prepared A" })?;
        let mut bytes = AlignedBytes::zeroed(total);
        let e = kind.a_elem_bytes();
        for (i, dst) in bytes.as_mut_slice().chunks_exact_mut(row_bytes).enumerate() {
            let src = &a[i * lda..i * lda + k];
            for (d, &s) in dst.chunks_exact_mut(e).zip(src) {
                write(s, d);
            }
            dst[k * e..].fill(pad);
        }
        Ok(PreparedA { kind, m, k, k_tiles, row_bytes, bytes })
    }

    /// `m` rows of bf16 A (`k` elements each, `lda` apart) widened to f32.
    ///
    /// # Errors
    /// `m` or `k` zero, `lda < k`, or `a` too short.
    pub fn bf16(m: usize, a: &[u16], lda: usize, k: usize) -> Result<PreparedA, Avx512Error> {
        Self::new(
            SparseAvx512Kind::Bf16,
            (m, a, lda, k),
            |s, d| d.copy_from_slice(&(u32::from(s) << 16).to_le_bytes()),
            0,
        )
    }

    /// `m` rows of s8 A (`k` elements each, `lda` apart) as `a + 128` (u8).
    ///
    /// # Errors
    /// As [`Self::bf16`].
    pub fn i8(m: usize, a: &[i8], lda: usize, k: usize) -> Result<PreparedA, Avx512Error> {
        Self::new(SparseAvx512Kind::Int8, (m, a, lda, k), |s, d| d[0] = (s as u8) ^ 0x80, 0x80)
    }

    pub fn kind(&self) -> SparseAvx512Kind {
        self.kind
    }
    pub fn m(&self) -> usize {
        self.m
    }
    pub fn k(&self) -> usize {
        self.k
    }
    /// K tiles per row (`ceil(k / tile_k)`).
    pub fn k_tiles(&self) -> usize {
        self.k_tiles
    }
    /// Bytes per row (the `lda` of [`SparseAvx512Args`]).
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }
    /// All rows, row-major.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }
    /// Row `i` (clamped to the buffer; valid for `i < m`).
    pub fn row_ptr(&self, i: usize) -> *const u8 {
        self.bytes.as_slice()[(i * self.row_bytes).min(self.bytes.len())..].as_ptr()
    }
}

/// The per-column correction of the int8 kernel, `-128 * sum_k W[k][j]`
/// (wrapping i32), for `panels * 16` columns (the padding columns 0).
pub fn int8_col_bias(w: &SparseI8) -> Vec<i32> {
    let mut bias = vec![0i32; w.panels() * PANEL_COLS];
    for p in 0..w.panels() {
        for q in 0..w.k_tiles() {
            let tile = w.tile(p, q).expect("panel and k tile in range");
            let mut values = tile.values.iter();
            for &mask in &tile.masks.0 {
                let mut bits = mask;
                while bits != 0 {
                    let i = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let v = *values.next().expect("valid matrix: one value per mask bit");
                    let col = &mut bias[p * PANEL_COLS + i / 4];
                    *col = col.wrapping_add(i32::from(v).wrapping_mul(-128));
                }
            }
        }
    }
    bias
}

/// int8 weights as the kernel needs them: the sparse matrix and, beside
/// it, its column correction ([`int8_col_bias`]), computed once.
#[derive(Clone, Debug)]
pub struct SparseI8Weights {
    matrix: SparseI8,
    col_bias: Vec<i32>,
}

impl SparseI8Weights {
    pub fn new(matrix: SparseI8) -> SparseI8Weights {
        let col_bias = int8_col_bias(&matrix);
        SparseI8Weights { matrix, col_bias }
    }
    pub fn matrix(&self) -> &SparseI8 {
        &self.matrix
    }
    /// `panels * 16` entries.
    pub fn col_bias(&self) -> &[i32] {
        &self.col_bias
    }
    pub fn into_matrix(self) -> SparseI8 {
        self.matrix
    }
}

/// Kernels by spec, built once per process ([`KernelCache`], bounded).
fn cached(spec: SparseAvx512Spec) -> Result<Arc<SparseAvx512Kernel>, Avx512Error> {
    static CACHE: KernelCache<SparseAvx512Spec, SparseAvx512Kernel> = KernelCache::new();
    CACHE.get(spec, SparseAvx512Kernel::generate)
}

/// The kernel for `m_rows` rows of `w` (from a process-wide cache); the
/// drivers (`tilejit::sparse`) take one per row group.
///
/// # Errors
/// As [`SparseAvx512Kernel::generate`].
pub fn kernel_for<E: Element>(
    w: &SparseMatrix<E>,
    m_rows: usize,
    c_init: CInit,
) -> Result<Arc<SparseAvx512Kernel>, Avx512Error> {
    cached(SparseAvx512Spec::for_matrix(w, m_rows, c_init))
}
