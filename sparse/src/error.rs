//! Why a sparse matrix could not be built, read or pruned.

/// Every way [`crate::SparseMatrix`] construction, validation, byte
/// reading and pruning can refuse its input. Tile numbers are flat
/// (`panel * k_tiles + k_tile`); the message also names panel and K tile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SparseError {
    #[error("the matrix is {k} x {n}: both dimensions must be at least 1")]
    Empty { k: usize, n: usize },
    #[error("a {k} x {n} matrix is too large: its sizes overflow this machine's address space")]
    TooLarge { k: u64, n: u64 },
    #[error("{what}: expected {expected} entries, got {actual}")]
    Length { what: &'static str, expected: usize, actual: usize },
    #[error("offsets[0] = {0}: the first tile must start at value 0")]
    FirstOffset(u64),
    #[error(
        "tile {tile} (panel {panel}, k tile {k_tile}) has {popcount} mask bits set, so offsets[{next}] must be \
         {expected}, found {found}",
        next = tile + 1
    )]
    Offset { tile: usize, panel: usize, k_tile: usize, popcount: u32, expected: u64, found: u64 },
    #[error("the offsets end at {total} values but {len} values were given")]
    ValueCount { total: u64, len: usize },
    #[error(
        "mask of panel {panel}, k tile {k_tile}, row {row} sets padding bits {bits:#x} (columns >= n or k >= K): \
         padding must be zero"
    )]
    PaddingBits { panel: usize, k_tile: usize, row: usize, bits: u64 },
    #[error("summary of tile {tile} says {found} non-zeros, its masks hold {expected}")]
    SummaryNnz { tile: usize, expected: u16, found: u16 },
    #[error("summary of tile {tile} says non-empty rows {found:#06x}, its masks give {expected:#06x}")]
    SummaryRows { tile: usize, expected: u16, found: u16 },
    #[error("stored value {index} is the zero pattern: zeros are never stored (clear its mask bit instead)")]
    StoredZero { index: usize },
    #[error("not a tilejit sparse matrix image (bad magic)")]
    BadMagic,
    #[error("sparse image version {found} is not supported (this build reads {supported})")]
    Version { found: u32, supported: u32 },
    #[error("the image holds element type code {found}, expected {expected} ({name})")]
    ElemType { expected: u32, found: u32, name: &'static str },
    #[error("header bytes 40..64 are reserved and must be zero")]
    Reserved,
    #[error("the image is {actual} bytes; its header describes {expected}")]
    ImageLength { expected: u64, actual: usize },
    #[error("sparsity {0} must be a number in 0.0..=1.0")]
    Sparsity(f64),
}
