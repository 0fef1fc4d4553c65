//! The vocabulary the dense generators share: element types and int8
//! signedness, how C starts, and why a spec cannot be built. Each
//! generator owns its spec, the kernel cache key that holds every
//! parameter changing the generated code or its result bits (DESIGN.md,
//! "The central contract"): `dense_amx::DenseAmxSpec`,
//! `dense_avx512::DenseAvx512Spec`. This module imports no generator.

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

/// What the C tiles start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CInit {
    /// C = A x B (tiles start at +0.0 / 0).
    Zero,
    /// C += A x B (tiles start from the C in memory).
    Load,
}

/// A spec the generator cannot build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("blocking {m_tiles}x{n_tiles} is not supported: use one of 1x1, 1x2, 2x1, 2x2, 1x3, 3x1, 1x4, 4x1 (at most 4 C tiles)")]
    Blocking { m_tiles: u8, n_tiles: u8 },
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
    #[error("prefetch distance of {lines} lines: must be 0..={max}")]
    PrefetchDistance { lines: u8, max: u8 },
}
