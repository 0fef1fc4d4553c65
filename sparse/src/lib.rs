//! tilejit-sparse: the SPARAMX-style sparse weight format, pruning, and
//! the sparse kernel generators (docs/SPARSE.md): [`amx`] (each weight tile
//! expanded once per call, every row tile of A against it) and [`avx512`]
//! (decode: expand + the exact TDPBF16PS FMA chains, or VPDPBUSD). The
//! threaded driver and the sparse-or-dense dispatch are `tilejit::sparse`.
//!
//! # The format
//!
//! B is K x N (K rows of N columns, row-major: the orientation
//! `tilejit_kernels::pack::PackedB::pack_bf16` / `pack_s8` take; column `j`
//! is output `j`). The dense layout splits B into panels of 16 columns and
//! each panel into 64-byte VNNI tile rows, one per K group: 16 columns x 2
//! consecutive k (bf16) or x 4 (int8). This format keeps exactly those rows
//! but stores each as a bitmask plus its non-zero values, so a kernel
//! rebuilds the *same* 64 bytes (VPEXPANDW / VPEXPANDB with zero masking)
//! and feeds the TDP the very tile the dense kernel would load: bit-exact
//! with the dense path by construction.
//!
//! Tiles are 16 rows (16 K groups: 32 k for bf16, 64 k for int8) of one
//! panel. Traversal order, for masks and values alike: panel by panel
//! (`p = 0 .. ceil(N/16)`), inside a panel tile by tile in increasing K
//! (`q = 0 .. ceil(K/TILE_K)`), inside a tile row 0 to 15, inside a row
//! element 0 upwards. The flat tile index is `t = p * k_tiles + q`.
//!
//! | one tile row (row `r` of tile `q` of panel `p`) | bf16 ([`Bf16`]) | int8 ([`Int8`]) |
//! |---|---|---|
//! | K group | `16q + r` | `16q + r` |
//! | mask type, instruction | `u32`, KMOVD + VPEXPANDW | `u64`, KMOVQ + VPEXPANDB |
//! | element `i` = mask bit `i` (LSB first) | column `16p + i/2`, k = `32q + 2r + i%2` | column `16p + i/4`, k = `64q + 4r + i%4` |
//! | byte of element `i` in the dense row | `2i .. 2i+2` (little-endian) | `i` |
//! | its values start at | `offsets[t] + sum(popcnt(mask[t][r']), r' < r)` | same |
//!
//! | array ([`SparseMatrix`] accessor) | type | entries | tile `t` |
//! |---|---|---|---|
//! | [`masks`](SparseMatrix::masks) | [`TileMasks`]: 16 x `u32` / `u64`, `#[repr(C, align(64))]` | `tiles` | bytes `64t .. 64t+64` (bf16: one line, one ZMM) / `128t .. 128t+128` (int8); mask `r` at `+4r` / `+8r` |
//! | [`values`](SparseMatrix::values) | `u16` bit patterns / `i8` | `nnz`, then 64 bytes of zeros ([`values_with_slack`](SparseMatrix::values_with_slack)) | elements `offsets[t] .. offsets[t+1]` |
//! | [`offsets`](SparseMatrix::offsets) | `u64`, in elements | `tiles + 1` (last = `nnz`) | `offsets[t]` |
//! | [`summaries`](SparseMatrix::summaries) | [`TileSummary`] `{ nnz: u16, rows: u16 }` | `tiles` | bytes `4t .. 4t+4` |
//!
//! Offsets exist for every tile, so any range of tiles (whole panels for a
//! column split, or K ranges inside a panel) can be given to any thread;
//! the split is a run-time choice, not frozen into the data (SPARSE.md's
//! complaint about SparAMX). A thread walking tiles `a..b` in order needs
//! only `offsets[a]` and then advances by POPCNT of each mask.
//!
//! ## Padding
//!
//! N is padded with zero columns to a whole panel (16), K with zero k to a
//! whole tile (32 for bf16, 64 for int8): `k_tiles = ceil(K / TILE_K)`, and
//! with the default `BLayout` (16 groups per TDP) the dense `PackedB` pads
//! to the same tiles. Padding is zero *by mask*: its bits are always clear
//! (validation refuses a set one), so padding costs mask bits, never values.
//!
//! ## The zero rule
//!
//! A value is "zero" (not stored, mask bit clear) iff its bits are all zero:
//! int8 0, bf16 0x0000 (+0.0) only. -0.0 (0x8000), NaN, inf and subnormals
//! are ordinary non-zeros and come back with their exact bits, so the dense
//! kernel and the sparse one see identical tiles even where TDPBF16PS's DAZ
//! would treat a subnormal as zero, or -0.0 matters to the -0 corner of
//! docs/NUMERICS.md.
//!
//! ## Sizes
//!
//! With `tiles = panels * k_tiles`, `nnz` non-zeros and value size `e`
//! (2 or 1 bytes):
//! - [`stream_bytes`](SparseMatrix::stream_bytes) (what a kernel reads per
//!   pass) = `e * nnz + tiles * 16 * mask bytes` (64 / 128 per tile);
//! - [`dense_bytes`](SparseMatrix::dense_bytes) = `tiles * 1024` (the dense
//!   padded layout);
//! - so for a sparsity `s` over the padded elements, stream / dense =
//!   `(1 - s) + 1/16` for bf16 and `(1 - s) + 1/8` for int8 (SPARSE.md);
//! - [`bytes`](SparseMatrix::bytes) adds the metadata, `8 * (tiles + 1) +
//!   4 * tiles` bytes: 12/1024 = +1.2 % of dense per tile.
//!
//! ## Validation
//!
//! Every [`SparseMatrix`] is valid. [`SparseMatrix::from_parts`] (arrays)
//! and [`SparseMatrix::from_bytes`] (the byte image) accept data from
//! untrusted sources: all sizes are computed without overflow, the masks
//! have no padding bits, the summaries match the masks, every offset equals
//! the previous one plus the popcount of the tile's masks, the last equals
//! the number of values, and no stored value is the zero pattern; anything
//! else is a typed [`SparseError`] naming the field, never a panic or an
//! out-of-bounds access ([`SparseMatrix::validate`] lists the order). A
//! kernel may therefore trust popcounts and offsets without re-checking.
//!
//! ## For kernel writers
//!
//! - Order differs from `PackedB`: sparse tiles are panel-major (all K of a
//!   panel, then the next panel), `PackedB` is K-block-major. Only the
//!   *content* of a tile row is shared.
//! - Offsets count elements, not bytes (bf16: byte offset `2 * offset`).
//! - VPEXPANDW/B from memory reads only popcount elements; a kernel that
//!   instead loads 64 bytes and expands in registers may do so from any
//!   offset `<= nnz`: [`values_with_slack`](SparseMatrix::values_with_slack)
//!   has 64 zero bytes after the last value. The value stream itself has no
//!   alignment guarantee; the masks are 64-byte aligned.
//! - Skipping an empty *row* (summary bit clear) means not expanding it; the
//!   tile buffer row must then already be zero (expand with `{z}` writes
//!   zeros, so a row written zero by an earlier tile can be left alone).
//! - Skipping a whole empty *tile*'s TDP is exact for int8 (adding 0 wraps
//!   to the same i32) but **not** for bf16: TDPBF16PS over a zero B still
//!   turns C = -0.0 (or a negative subnormal C, read as -0 by DAZ) into
//!   +0.0, flushes a subnormal C, and gives NaN for inf/NaN in A
//!   (docs/NUMERICS.md). A bf16 kernel that claims bit-exactness with the
//!   dense path runs the TDP on the zero tile, or proves those cases away.
//! - bf16 results depend on the pairs per TDP (`k_groups_per_tdp`). With 16
//!   a sparse tile is one dense TDP tile. With fewer, a kernel feeds row
//!   ranges of sparse tiles (rows of K group `g` are in tile `g / 16`, row
//!   `g % 16`) and must run exactly `PackedB::k_steps()` TDPs: the extra
//!   zero rows up to the next multiple of 16 groups are not a TDP of the
//!   dense kernel, and an extra all-zero TDP is not a no-op (see above).
//!
//! ## Byte image
//!
//! [`SparseMatrix::to_bytes`] / [`SparseMatrix::from_bytes`], little-endian:
//!
//! | bytes | content |
//! |---|---|
//! | `0 .. 8` | magic `TJSPARSE` |
//! | `8 .. 12` | version, `u32` = 1 |
//! | `12 .. 16` | element type, `u32`: 1 = bf16, 2 = int8 |
//! | `16 .. 24`, `24 .. 32`, `32 .. 40` | K, N, nnz (`u64`) |
//! | `40 .. 64` | reserved, zero |
//! | `64 ..` | masks: `tiles * 16` masks of 4 (bf16) / 8 (int8) bytes |
//! | then | offsets: `tiles + 1` x `u64` |
//! | then | summaries: `tiles` x (`nnz: u16`, `rows: u16`) |
//! | then | values: `nnz` x 2 / 1 bytes; the image ends there exactly |
//!
//! # AMX kernel
//!
//! [`amx`] JITs the kernel for M >= 5 (the driver's measured crossover):
//! per call up to 80 rows of A (packed by [`amx::pack_a`] into 16-row
//! tiles per K tile) against a run of whole panels. Each weight tile is
//! expanded once into a double-buffered 1 KiB tile (KMOV of the masks,
//! VPEXPANDW/B with zero masking, POPCNT), loaded with TILELOADD and
//! multiplied into up to five C tiles, one per row tile: the TDP sequence
//! of the dense kernel on the same bytes, hence the same bits. The mask
//! and value streams run straight through panel boundaries.
//!
//! # AVX-512 decode kernels
//!
//! [`avx512`] JITs AVX-512 kernels that multiply 1..=4 rows of A by a
//! [`SparseMatrix`] straight from this format (KMOV of each row mask from
//! memory, VPEXPANDW/B with zero masking from the value stream, POPCNT to
//! advance), bit-identical to the dense paths: bf16 emulates TDPBF16PS
//! with 16 pairs per instruction exactly as the dense AVX-512 `Bf16Chains`
//! kernel does (MXCSR DAZ | FTZ inside the kernel), int8 is s8 x s8 with
//! VPDPBUSD and a per-column correction kept beside the matrix
//! ([`avx512::SparseI8Weights`]). A call covers a range of panels, so a
//! driver splits N across threads without touching the data. The drivers
//! (row groups, threads, the path per M) are the main crate's
//! (`tilejit::sparse`); this crate keeps the format and the generators.
//!
//! # Pruning
//!
//! [`Pruning`] zeros, per group (the whole matrix, or each column of B =
//! each output = a row of the GGUF / PyTorch weight), exactly
//! [`prune_count`]`(group size, s) = round(s * size)` elements (f64, halves
//! away from zero), those with the smallest magnitude: `|x|` of the bf16 as
//! f32 (subnormals by their real value, -0.0 as 0, every NaN above +inf) or
//! `|x|` of the int8 (|-128| = 128). Ties in magnitude go by
//! [`tie_hash`]`(seed, index)` (then by index), so the result is a function
//! of (input, sparsity, scope, seed), and two seeds can only choose
//! differently among elements of the threshold magnitude. Pruned elements
//! become +0.0 / 0, kept ones keep their bits; existing zeros have the
//! smallest magnitude and are counted among the pruned first.

pub mod amx;
pub mod avx512;
mod bytes;
mod elem;
mod error;
mod matrix;
mod prune;
mod validate;

pub use bytes::{HEADER_BYTES, MAGIC, VERSION};
pub use elem::{Bf16, Element, Int8, TileMasks, TileSummary, PANEL_COLS, ROW_BYTES, TILE_ROWS};
pub use error::SparseError;
pub use matrix::{SparseBf16, SparseI8, SparseMatrix, SparseParts, Tile};
pub use prune::{prune_count, tie_hash, PruneScope, Pruning};
