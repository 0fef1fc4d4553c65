//! The two element families (bf16 and int8) and the per-tile records that
//! do not depend on them: the 16 masks of one tile, and its summary.

use std::fmt::Debug;
use std::hash::Hash;

/// Columns per panel: one 64-byte tile row covers 16 output columns.
pub const PANEL_COLS: usize = 16;
/// Tile rows (VNNI K groups) per tile: the full AMX B tile height.
pub const TILE_ROWS: usize = 16;
/// Bytes of one tile row.
pub const ROW_BYTES: usize = 64;

/// An element family of a sparse matrix: the value type, the mask type of
/// one 64-byte tile row (one bit per element) and the zero rule.
///
/// Implemented by [`Bf16`] and [`Int8`] only.
pub trait Element: sealed::Sealed + Copy + Debug + Eq + Hash + Send + Sync + 'static {
    /// One weight: `u16` bf16 bit pattern, or `i8`.
    type Value: Copy + Default + Eq + Debug + Send + Sync + 'static;
    /// The mask of one 64-byte tile row, bit `i` = element `i`: `u32`
    /// (VPEXPANDW, KMOVD) or `u64` (VPEXPANDB, KMOVQ).
    type Mask: Copy + Default + Eq + Debug + Send + Sync + 'static;
    /// Name in messages and debug output.
    const NAME: &'static str;
    /// Code of the element type in the byte image ([`crate::SparseMatrix::to_bytes`]).
    const CODE: u32;
    /// Bytes of one value.
    const VALUE_BYTES: usize;
    /// Consecutive K elements of one column in one tile row (the VNNI
    /// group): 2 for bf16, 4 for int8.
    const PER_GROUP: usize;
    /// Elements (= mask bits) in one 64-byte tile row: `16 * PER_GROUP`.
    const LANES: usize = PANEL_COLS * Self::PER_GROUP;
    /// K covered by one tile of 16 rows: 32 for bf16, 64 for int8.
    const TILE_K: usize = TILE_ROWS * Self::PER_GROUP;

    /// Whether `v` is the zero that is not stored: the all-zero bit pattern
    /// only (+0.0 for bf16; -0.0, NaN, inf and subnormals are stored).
    fn is_zero(v: Self::Value) -> bool;
    /// Pruning magnitude as an order-preserving integer (see `crate::prune`).
    fn magnitude(v: Self::Value) -> u16;
    fn mask_to_u64(m: Self::Mask) -> u64;
    /// Keeps the low `LANES` bits.
    fn mask_from_u64(m: u64) -> Self::Mask;
    /// Little-endian bytes of `v` into `out[..VALUE_BYTES]`.
    fn write_le(v: Self::Value, out: &mut [u8]);
    /// A value from `bytes[..VALUE_BYTES]`, little-endian.
    fn read_le(bytes: &[u8]) -> Self::Value;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Bf16 {}
    impl Sealed for super::Int8 {}
}

/// bf16 weights as raw `u16` bit patterns; masks are `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bf16;

/// int8 weights (`i8`; the signedness of the GEMM does not matter to the
/// format, a byte is zero or it is not); masks are `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Int8;

impl Element for Bf16 {
    type Value = u16;
    type Mask = u32;
    const NAME: &'static str = "bf16";
    const CODE: u32 = 1;
    const VALUE_BYTES: usize = 2;
    const PER_GROUP: usize = 2;

    fn is_zero(v: u16) -> bool {
        v == 0
    }
    /// `|x|` ordered as bits (IEEE magnitudes order like their bit
    /// patterns), every NaN mapped to one key above +inf (0x7f80).
    fn magnitude(v: u16) -> u16 {
        (v & 0x7fff).min(0x7f81)
    }
    fn mask_to_u64(m: u32) -> u64 {
        u64::from(m)
    }
    fn mask_from_u64(m: u64) -> u32 {
        m as u32
    }
    fn write_le(v: u16, out: &mut [u8]) {
        out[..2].copy_from_slice(&v.to_le_bytes());
    }
    fn read_le(bytes: &[u8]) -> u16 {
        u16::from_le_bytes([bytes[0], bytes[1]])
    }
}

impl Element for Int8 {
    type Value = i8;
    type Mask = u64;
    const NAME: &'static str = "int8";
    const CODE: u32 = 2;
    const VALUE_BYTES: usize = 1;
    const PER_GROUP: usize = 4;

    fn is_zero(v: i8) -> bool {
        v == 0
    }
    /// `|x|`, with |-128| = 128.
    fn magnitude(v: i8) -> u16 {
        u16::from(v.unsigned_abs())
    }
    fn mask_to_u64(m: u64) -> u64 {
        m
    }
    fn mask_from_u64(m: u64) -> u64 {
        m
    }
    fn write_le(v: i8, out: &mut [u8]) {
        out[0] = v as u8;
    }
    fn read_le(bytes: &[u8]) -> i8 {
        bytes[0] as i8
    }
}

/// The 16 row masks of one tile, mask `r` for tile row `r` (K group
/// `16 * tile + r`). 64-byte aligned, so one tile's masks are one cache
/// line (bf16: 64 bytes, one ZMM load) or two (int8: 128 bytes), and a
/// `Vec` of them is the contiguous mask array a kernel walks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C, align(64))]
pub struct TileMasks<M>(pub [M; TILE_ROWS]);

const _: () = assert!(std::mem::size_of::<TileMasks<u32>>() == 64);
const _: () = assert!(std::mem::size_of::<TileMasks<u64>>() == 128);

/// What a kernel may skip in one tile, derived from its masks (and checked
/// against them by validation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct TileSummary {
    /// Non-zeros in the tile (at most 512 for bf16, 1024 for int8).
    pub nnz: u16,
    /// Bit `r` set iff tile row `r` has a non-zero.
    pub rows: u16,
}

const _: () = assert!(std::mem::size_of::<TileSummary>() == 4);

impl TileSummary {
    /// The summary of a tile with these row masks.
    pub fn of<E: Element>(masks: &TileMasks<E::Mask>) -> TileSummary {
        let mut summary = TileSummary::default();
        for (r, &m) in masks.0.iter().enumerate() {
            let m = E::mask_to_u64(m);
            summary.nnz += m.count_ones() as u16;
            summary.rows |= u16::from(m != 0) << r;
        }
        summary
    }

    /// No non-zero at all.
    pub fn is_empty(self) -> bool {
        self.rows == 0
    }
}
