//! [`DenseAvx512Spec`]: every parameter that changes a dense AVX-512
//! kernel's code or its result bits; the kernel cache key.

use crate::cpu::Feature;
use crate::spec::{CInit, ElemType, Int8Sign, SpecError};

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
            return Err(SpecError::PrefetchDistance { lines: self.prefetch_lines, max: Self::MAX_PREFETCH_LINES });
        }
        let needed = super::zmm_needed(self);
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
