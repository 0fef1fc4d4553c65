//! `DenseAmxSpec`: every parameter that changes the generated code or its
//! result bits (DESIGN.md, "The central contract"). It is the kernel cache
//! key, so it holds inputs only; everything derived (tile palette, register
//! plan, schedule) is computed from it by pure functions.

use crate::cpu::Feature;
use crate::encoder::TdpOp;

/// Signedness of the int8 operands: first letter A, second letter B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Int8Sign {
    SS,
    SU,
    US,
    UU,
}

impl Int8Sign {
    pub const ALL: [Int8Sign; 4] = [Int8Sign::SS, Int8Sign::SU, Int8Sign::US, Int8Sign::UU];
}

/// Element type of A and B; C is i32 for int8 (wrapping) and f32 for bf16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElemType {
    Int8(Int8Sign),
    Bf16,
}

impl ElemType {
    pub const fn tdp_op(self) -> TdpOp {
        match self {
            ElemType::Int8(Int8Sign::SS) => TdpOp::Bssd,
            ElemType::Int8(Int8Sign::SU) => TdpOp::Bsud,
            ElemType::Int8(Int8Sign::US) => TdpOp::Busd,
            ElemType::Int8(Int8Sign::UU) => TdpOp::Buud,
            ElemType::Bf16 => TdpOp::Bf16ps,
        }
    }

    /// The extensions the dense AMX kernel for this type executes: tile
    /// moves and config, and the TDP family of the type (docs/AMX.md).
    pub const fn amx_features(self) -> &'static [Feature] {
        match self {
            ElemType::Int8(_) => &[Feature::AmxTile, Feature::AmxInt8],
            ElemType::Bf16 => &[Feature::AmxTile, Feature::AmxBf16],
        }
    }

    /// Bytes per element of A and B.
    pub const fn elem_bytes(self) -> usize {
        match self {
            ElemType::Int8(_) => 1,
            ElemType::Bf16 => 2,
        }
    }

    /// Elements of K in one 4-byte VNNI group (one dword of a tile row).
    pub const fn elems_per_group(self) -> usize {
        4 / self.elem_bytes()
    }

    pub const fn name(self) -> &'static str {
        match self {
            ElemType::Int8(Int8Sign::SS) => "s8s8",
            ElemType::Int8(Int8Sign::SU) => "s8u8",
            ElemType::Int8(Int8Sign::US) => "u8s8",
            ElemType::Int8(Int8Sign::UU) => "u8u8",
            ElemType::Bf16 => "bf16",
        }
    }
}

/// How many C tiles a kernel keeps in registers: `m_tiles` x `n_tiles`.
/// At most 4 C tiles, so that at least 4 of the 8 tiles carry operands
/// (docs/AMX.md: 2x2 reached ~100 % of peak from L1, 1x4 ~86 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blocking {
    pub m_tiles: u8,
    pub n_tiles: u8,
}

impl Blocking {
    pub const B2X2: Blocking = Blocking { m_tiles: 2, n_tiles: 2 };
    pub const B1X4: Blocking = Blocking { m_tiles: 1, n_tiles: 4 };
    pub const B4X1: Blocking = Blocking { m_tiles: 4, n_tiles: 1 };
    /// Every blocking the generator accepts.
    pub const ALL: [Blocking; 8] = [
        Blocking { m_tiles: 1, n_tiles: 1 },
        Blocking { m_tiles: 1, n_tiles: 2 },
        Blocking { m_tiles: 2, n_tiles: 1 },
        Blocking::B2X2,
        Blocking { m_tiles: 1, n_tiles: 3 },
        Blocking { m_tiles: 3, n_tiles: 1 },
        Blocking::B1X4,
        Blocking::B4X1,
    ];
}

impl std::fmt::Display for Blocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.m_tiles, self.n_tiles)
    }
}

/// Order of tile loads and TDPs inside one K step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Schedule {
    /// Each TDP right after the loads of its operands.
    LoadThenCompute,
    /// Each TDP issued one load after its last operand's load, so a load's
    /// latency hides behind the next load (oneDNN brgemm's order; for 2x2:
    /// LA0 LB0 LB1 T00 LA1 T01 T10 T11, docs/AMX.md).
    Pipelined,
}

/// How B tiles are loaded. B streams through once per block row, so the
/// non-temporal hint (TILELOADDT1) keeps it from evicting the A slice that
/// every N block reuses from L1: +2 % (int8) to +6 % (bf16) of TMUL peak on
/// the 512x512x4096 GEMM here, although a single T1 load is slower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BLoad {
    Temporal,
    NonTemporal,
}

/// What the C tiles start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CInit {
    /// C = A x B (tiles start at +0.0 / 0).
    Zero,
    /// C += A x B (tiles start from the C in memory).
    Load,
}

/// A dense AMX GEMM micro-kernel: C block (+)= A block x B panel(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DenseAmxSpec {
    pub elem: ElemType,
    pub blocking: Blocking,
    pub schedule: Schedule,
    /// VNNI groups (dwords) of K per TDP, 1..=16. For bf16 these are the
    /// pairs per instruction, which change the result bits
    /// (docs/NUMERICS.md, "K-split").
    pub k_groups_per_tdp: u8,
    pub c_init: CInit,
    /// Rows in the last tile row of the block (1..=16): the M tail.
    pub last_tile_rows: u8,
    /// Columns in the last tile column of the block (1..=16): the N tail.
    pub last_tile_cols: u8,
    /// Lines (64 bytes) of each of the two prefetch streams (the next A
    /// slice and the next B slice, see `DenseAmxArgs`) brought into L2 per
    /// K step, 0..=4. Without it the first touch of each A slice and B
    /// slice waits on L3 while the TMUL idles (+2-3 % of peak at
    /// 512x512x4096 here, kernels/PERFORMANCE.md).
    pub prefetch_lines: u8,
    pub b_load: BLoad,
}

/// A spec the generator cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("blocking {0} is not supported: use one of 1x1, 1x2, 2x1, 2x2, 1x3, 3x1, 1x4, 4x1 (at most 4 C tiles)")]
    Blocking(Blocking),
    #[error("k_groups_per_tdp = {0}: a TDP takes 1..=16 dword groups of K")]
    KGroups(u8),
    #[error("prefetch_lines = {0}: must be 0..=4")]
    Prefetch(u8),
    #[error("tail of {what} = {value}: must be 1..=16")]
    Tail { what: &'static str, value: u8 },
    #[error("m_rows = {0}: an AVX-512 kernel takes 1..=16 rows of A")]
    Rows(u8),
    #[error("n_panels = {0}: an AVX-512 kernel takes 1..=8 panels of 16 columns")]
    Panels(u8),
    #[error(
        "{kind} with {m_rows} rows x {n_panels} panels needs {needed} zmm registers (there are 32): use fewer panels or rows"
    )]
    Registers { kind: &'static str, m_rows: u8, n_panels: u8, needed: usize },
    #[error("prefetch distance of {0} lines: must be 0..={max}", max = DenseAvx512Spec::MAX_PREFETCH_LINES)]
    PrefetchDistance(u8),
}

impl DenseAmxSpec {
    /// The full-block spec with the defaults measured fastest here: 16 x 16
    /// tiles, 16 groups per TDP, LoadThenCompute, prefetch, T1 loads of B.
    pub const fn new(elem: ElemType, blocking: Blocking, c_init: CInit) -> DenseAmxSpec {
        DenseAmxSpec {
            elem,
            blocking,
            schedule: Schedule::LoadThenCompute,
            k_groups_per_tdp: 16,
            c_init,
            last_tile_rows: 16,
            last_tile_cols: 16,
            prefetch_lines: 2,
            b_load: BLoad::NonTemporal,
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        if !Blocking::ALL.contains(&self.blocking) {
            return Err(SpecError::Blocking(self.blocking));
        }
        if !(1..=16).contains(&self.k_groups_per_tdp) {
            return Err(SpecError::KGroups(self.k_groups_per_tdp));
        }
        if self.prefetch_lines > 4 {
            return Err(SpecError::Prefetch(self.prefetch_lines));
        }
        for (what, value) in [("rows", self.last_tile_rows), ("cols", self.last_tile_cols)] {
            if !(1..=16).contains(&value) {
                return Err(SpecError::Tail { what, value });
            }
        }
        Ok(())
    }

    /// Bytes of K consumed per step (one TDP per C tile): A advances by this.
    pub const fn a_step_bytes(&self) -> usize {
        self.k_groups_per_tdp as usize * 4
    }

    /// Bytes of packed B per panel per step (k_groups rows of 64 bytes).
    pub const fn b_step_bytes(&self) -> usize {
        self.k_groups_per_tdp as usize * 64
    }

    /// Elements of K per step.
    pub const fn k_per_step(&self) -> usize {
        self.k_groups_per_tdp as usize * self.elem.elems_per_group()
    }

    /// Rows of C the block covers.
    pub const fn block_rows(&self) -> usize {
        (self.blocking.m_tiles as usize - 1) * 16 + self.last_tile_rows as usize
    }

    /// Columns of C the block covers.
    pub const fn block_cols(&self) -> usize {
        (self.blocking.n_tiles as usize - 1) * 16 + self.last_tile_cols as usize
    }

    /// A short stable name, used in dumps, benches and error messages.
    pub fn name(&self) -> String {
        format!(
            "amx_{}_{}_{}_k{}_{}_r{}c{}_pf{}{}",
            self.elem.name(),
            self.blocking,
            match self.schedule {
                Schedule::LoadThenCompute => "seq",
                Schedule::Pipelined => "pipe",
            },
            self.k_groups_per_tdp,
            match self.c_init {
                CInit::Zero => "zero",
                CInit::Load => "acc",
            },
            self.last_tile_rows,
            self.last_tile_cols,
            self.prefetch_lines,
            match self.b_load {
                BLoad::Temporal => "",
                BLoad::NonTemporal => "_bt1",
            }
        )
    }
}

/// What an AVX-512 dense kernel computes, and with which result bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Avx512Kind {
    /// int8 with VPDPBUSD, exact and wrapping: the same bits as TDPB*D.
    /// VPDPBUSD is u8 x s8; the other signedness pairs shift one operand
    /// by 128 and correct with a per-column sum (see `dense_avx512`).
    Int8(Int8Sign),
    /// bf16 with TDPBF16PS semantics, emulated with FP32 FMAs: two chains
    /// (even and odd pairs) per chunk of `k_groups_per_tdp` pairs from +0,
    /// then even + odd, then C; DAZ and FTZ set in MXCSR inside the kernel
    /// (docs/NUMERICS.md, "VDPBF16PS ... An AVX-512 fallback that must
    /// match AMX"). Bit-identical to the AMX kernel with the same chunking.
    Bf16Chains,
    /// bf16 with native VDPBF16PS: one accumulator per output starting
    /// from C, each pair odd lane first. Faster, different bits: its
    /// reference is `gemm_bf16_vdpbf16ps`, not the AMX one.
    Bf16Dot,
}

impl Avx512Kind {
    pub const fn name(self) -> &'static str {
        match self {
            Avx512Kind::Int8(s) => ElemType::Int8(s).name(),
            Avx512Kind::Bf16Chains => "bf16chains",
            Avx512Kind::Bf16Dot => "bf16dot",
        }
    }

    /// The extensions the kernel executes: AVX512F (FP32 FMAs, dword
    /// ops) and BW (KMOVQ, VPSHUFB) always; VNNI for VPDPBUSD; AVX512_BF16
    /// for VDPBF16PS. `Bf16Chains` uses plain FP32 FMAs and runs without it.
    pub const fn features(self) -> &'static [Feature] {
        match self {
            Avx512Kind::Int8(_) => &[Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Vnni],
            Avx512Kind::Bf16Chains => &[Feature::Avx512F, Feature::Avx512Bw],
            Avx512Kind::Bf16Dot => &[Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Bf16],
        }
    }
}

/// An AVX-512 dense micro-kernel: `m_rows` rows of A against `n_panels`
/// 16-column panels of packed B (the same `PackedB` the AMX kernels read).
/// Made for decode shapes (M = 1..16): B streams from memory once, every
/// output of the block lives in a zmm register (see `dense_avx512`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DenseAvx512Spec {
    pub kind: Avx512Kind,
    /// Rows of C per call, 1..=16.
    pub m_rows: u8,
    /// 16-column panels per block, 1..=8; the register budget limits
    /// `m_rows * n_panels` (see `DenseAvx512Spec::validate`).
    pub n_panels: u8,
    /// Must equal the packed B's; for `Bf16Chains` it is the chunk of
    /// pairs per emulated TDP.
    pub k_groups_per_tdp: u8,
    pub c_init: CInit,
    /// Columns of the last panel of the block (1..=16): the N tail, done
    /// with masked loads and stores.
    pub last_panel_cols: u8,
    /// Software prefetch of B: each panel's stream is prefetched (to L1)
    /// this many 64-byte lines ahead of the row being read, one line per
    /// row read; 0 turns it off, at most [`Self::MAX_PREFETCH_LINES`].
    /// Measured here (GEMV 1 x 4096 x 4096, B from DRAM): 8 lines took
    /// bf16 from ~15 to ~18 GB/s and int8 from ~17.3 to ~17.8 GB/s; 16
    /// lines was no better.
    pub prefetch_lines: u8,
}

impl DenseAvx512Spec {
    /// Prefetch distance limit: 32 lines = 2 KiB ahead of each panel stream.
    pub const MAX_PREFETCH_LINES: u8 = 32;

    /// A spec with full panels, 16 groups per step and the default
    /// prefetch distance (8 lines = 512 bytes ahead per panel).
    pub const fn new(kind: Avx512Kind, m_rows: u8, n_panels: u8, c_init: CInit) -> DenseAvx512Spec {
        DenseAvx512Spec { kind, m_rows, n_panels, k_groups_per_tdp: 16, c_init, last_panel_cols: 16, prefetch_lines: 8 }
    }

    /// Checks the ranges, then that the kernel's registers fit in 32 zmm
    /// (the budget is computed by `dense_avx512`'s register plan).
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(1..=16).contains(&self.m_rows) {
            return Err(SpecError::Rows(self.m_rows));
        }
        if !(1..=8).contains(&self.n_panels) {
            return Err(SpecError::Panels(self.n_panels));
        }
        if !(1..=16).contains(&self.k_groups_per_tdp) {
            return Err(SpecError::KGroups(self.k_groups_per_tdp));
        }
        if !(1..=16).contains(&self.last_panel_cols) {
            return Err(SpecError::Tail { what: "panel cols", value: self.last_panel_cols });
        }
        if self.prefetch_lines > Self::MAX_PREFETCH_LINES {
            return Err(SpecError::PrefetchDistance(self.prefetch_lines));
        }
        let needed = crate::dense_avx512::zmm_needed(self);
        if needed > 32 {
            return Err(SpecError::Registers {
                kind: self.kind.name(),
                m_rows: self.m_rows,
                n_panels: self.n_panels,
                needed,
            });
        }
        Ok(())
    }

    /// Bytes of one K group of one row of A: a dword of 4 int8 or one bf16
    /// pair, or for `Bf16Chains` one pair widened to two f32 (the driver
    /// passes A as f32 there, `bf16 << 16`, so it can be broadcast).
    pub const fn a_group_bytes(&self) -> usize {
        match self.kind {
            Avx512Kind::Bf16Chains => 8,
            Avx512Kind::Int8(_) | Avx512Kind::Bf16Dot => 4,
        }
    }

    /// Bytes of A per row per K step: A advances by this.
    pub const fn a_step_bytes(&self) -> usize {
        self.k_groups_per_tdp as usize * self.a_group_bytes()
    }

    /// Bytes of packed B per panel per K step.
    pub const fn b_step_bytes(&self) -> usize {
        self.k_groups_per_tdp as usize * 64
    }

    /// Columns of C the block covers.
    pub const fn block_cols(&self) -> usize {
        (self.n_panels as usize - 1) * 16 + self.last_panel_cols as usize
    }

    /// A short stable name, used in dumps, benches and error messages.
    pub fn name(&self) -> String {
        format!(
            "avx512_{}_m{}_n{}_k{}_{}_c{}_pf{}",
            self.kind.name(),
            self.m_rows,
            self.n_panels,
            self.k_groups_per_tdp,
            match self.c_init {
                CInit::Zero => "zero",
                CInit::Load => "acc",
            },
            self.last_panel_cols,
            self.prefetch_lines,
        )
    }
}
