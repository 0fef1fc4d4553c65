//! B in the VNNI tile layout the AMX kernels read, packed once.
//!
//! A tile row holds, for 16 columns, one 4-byte group of consecutive K
//! elements (4 int8 or 2 bf16), so TDP row r of B is K group r. One B tile
//! is `k_groups_per_tdp` such 64-byte rows (one K step of one 16-column
//! panel). Tiles are laid out K block by K block:
//! `[K block][panel][step in block][group][column][element]`, so the K
//! slice the driver keeps in L2 while it walks the block rows is one
//! contiguous range, which the L2 prefetch stream can walk linearly. (A
//! panel-major layout puts every panel's slice at a K-sized stride, for
//! K = 4096 a 64 KiB one that maps all slices onto a sixteenth of the L2
//! sets. At 512x512x4096 the two layouts measured the same within noise
//! here; see kernels/PERFORMANCE.md.)
//!
//! K is zero padded to whole steps and N to whole panels: zero padding in
//! B (with zeros in the padded A columns too) does not change int8
//! results, and for bf16 the reference pads the same way
//! (docs/NUMERICS.md).

use crate::spec::ElemType;

/// One cache line; the unit of [`AlignedBytes`].
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A zero-initialised, 64-byte aligned byte buffer (tile rows are 64 bytes).
#[derive(Clone)]
pub struct AlignedBytes {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBytes {
    pub fn zeroed(len: usize) -> AlignedBytes {
        AlignedBytes { lines: vec![Line([0; 64]); len.div_ceil(64)], len }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `lines` is a contiguous allocation of at least `len` bytes
        // of plain integers.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<u8>(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes viewed as plain numbers (u8, u16, i32, f32); a trailing
    /// partial element is not included.
    pub fn typed<T: Plain>(&self) -> &[T] {
        // SAFETY: the buffer is 64-byte aligned (enough for any Plain type),
        // initialised, and every bit pattern is a valid Plain value.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len / std::mem::size_of::<T>()) }
    }

    /// Mutable view of [`Self::typed`].
    pub fn typed_mut<T: Plain>(&mut self) -> &mut [T] {
        // SAFETY: as in `typed`, and we hold the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len / std::mem::size_of::<T>())
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Numbers for which every bit pattern is a valid value (so bytes may be
/// viewed as them).
pub trait Plain: Copy + sealed::Sealed {}
mod sealed {
    pub trait Sealed {}
}
macro_rules! plain {
    ($($t:ty),*) => {$(impl sealed::Sealed for $t {} impl Plain for $t {})*};
}
plain!(u8, i8, u16, i32, u32, f32);

/// Element family of a packed B (int8 signedness is chosen per GEMM call).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PackedElem {
    Int8,
    Bf16,
}

impl PackedElem {
    pub const fn matches(self, elem: ElemType) -> bool {
        matches!((self, elem), (PackedElem::Int8, ElemType::Int8(_)) | (PackedElem::Bf16, ElemType::Bf16))
    }

    const fn bytes(self) -> usize {
        match self {
            PackedElem::Int8 => 1,
            PackedElem::Bf16 => 2,
        }
    }
}

/// The packing choices that the kernels must agree with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BLayout {
    /// K groups (dwords) per TDP, 1..=16: the tile height of B. For bf16
    /// this is the pairs per instruction, which the result bits depend on.
    pub k_groups_per_tdp: u8,
    /// K steps per K block: the driver's K blocking.
    pub k_block_steps: usize,
}

impl Default for BLayout {
    /// Full 16-group tiles; K blocks of 16 steps (1 KiB of int8 K), which
    /// keeps a 32-row A slice in L1 (kernels/PERFORMANCE.md).
    fn default() -> Self {
        BLayout { k_groups_per_tdp: 16, k_block_steps: 16 }
    }
}

/// Why B could not be packed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    #[error("B is {k} x {n}: both dimensions must be at least 1")]
    Empty { k: usize, n: usize },
    #[error("ldb = {ldb} is smaller than n = {n}")]
    Stride { ldb: usize, n: usize },
    #[error("B holds {len} elements but {k} rows at ldb = {ldb} need {need}")]
    TooShort { len: usize, k: usize, ldb: usize, need: usize },
    #[error("k_groups_per_tdp = {0}: must be 1..=16")]
    KGroups(u8),
    #[error("k_block_steps must be at least 1")]
    KBlock,
    #[error("B of {k} x {n} is too large to pack on this machine")]
    TooLarge { k: usize, n: usize },
}

/// B[K, N] in the VNNI tile layout.
#[derive(Clone)]
pub struct PackedB {
    elem: PackedElem,
    k: usize,
    n: usize,
    layout: BLayout,
    k_steps: usize,
    panels: usize,
    data: AlignedBytes,
    /// Int8 only: per-column sums of B, computed while packing.
    col_sums: Option<ColSums>,
}

/// Per-column sums of an int8 B over all of K, wrapping modulo 2^32 (exact
/// for K < 2^23). The AVX-512 int8 kernels need them: VPDPBUSD is u8 x s8,
/// so s8 x s8 and u8 x u8 shift one operand by 128 and subtract
/// `128 * column sum` afterwards (docs/AMX.md, "VPDPBUSD").
#[derive(Clone, Debug, PartialEq, Eq)]
struct ColSums {
    signed: Vec<i32>,
    unsigned: Vec<i32>,
}

impl ColSums {
    fn of(b: &[u8], k: usize, n: usize, ldb: usize) -> ColSums {
        let mut sums = ColSums { signed: vec![0; n], unsigned: vec![0; n] };
        for row in b.chunks(ldb).take(k) {
            for ((s, u), &x) in sums.signed.iter_mut().zip(&mut sums.unsigned).zip(&row[..n]) {
                *s = s.wrapping_add(i32::from(x as i8));
                *u = u.wrapping_add(i32::from(x));
            }
        }
        sums
    }
}

impl PackedB {
    /// Packs int8 B (row-major, `ldb` elements per row). Signedness is a
    /// property of the GEMM, not of the bytes.
    pub fn pack_int8(b: &[u8], k: usize, n: usize, ldb: usize, layout: BLayout) -> Result<PackedB, PackError> {
        Self::pack(PackedElem::Int8, b, k, n, ldb, layout)
    }

    /// Packs signed int8 B.
    pub fn pack_s8(b: &[i8], k: usize, n: usize, ldb: usize, layout: BLayout) -> Result<PackedB, PackError> {
        // SAFETY: i8 and u8 have the same size and alignment.
        let bytes = unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u8>(), b.len()) };
        Self::pack_int8(bytes, k, n, ldb, layout)
    }

    /// Packs bf16 B given as raw bit patterns.
    pub fn pack_bf16(b: &[u16], k: usize, n: usize, ldb: usize, layout: BLayout) -> Result<PackedB, PackError> {
        let bytes: Vec<u8> = b.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::pack(PackedElem::Bf16, &bytes, k, n, ldb, layout)
    }

    fn pack(elem: PackedElem, b: &[u8], k: usize, n: usize, ldb: usize, layout: BLayout) -> Result<PackedB, PackError> {
        if k == 0 || n == 0 {
            return Err(PackError::Empty { k, n });
        }
        if ldb < n {
            return Err(PackError::Stride { ldb, n });
        }
        if !(1..=16).contains(&layout.k_groups_per_tdp) {
            return Err(PackError::KGroups(layout.k_groups_per_tdp));
        }
        if layout.k_block_steps == 0 {
            return Err(PackError::KBlock);
        }
        let esize = elem.bytes();
        let len = b.len() / esize;
        let need = (k - 1).checked_mul(ldb).and_then(|x| x.checked_add(n)).ok_or(PackError::TooLarge { k, n })?;
        if len < need {
            return Err(PackError::TooShort { len, k, ldb, need });
        }
        let k_steps = k.div_ceil((4 / esize) * layout.k_groups_per_tdp as usize);
        let panels = n.div_ceil(16);
        let tile = layout.k_groups_per_tdp as usize * 64;
        let bytes =
            panels.checked_mul(k_steps).and_then(|x| x.checked_mul(tile)).ok_or(PackError::TooLarge { k, n })?;
        let col_sums = (elem == PackedElem::Int8).then(|| ColSums::of(b, k, n, ldb));
        let mut packed = PackedB { elem, k, n, layout, k_steps, panels, data: AlignedBytes::zeroed(bytes), col_sums };
        let out = packed.data.as_mut_slice();
        for kk in 0..k {
            for nn in 0..n {
                let dst = packed_offset(&layout, k_steps, panels, esize, kk, nn);
                let src = (kk * ldb + nn) * esize;
                out[dst..dst + esize].copy_from_slice(&b[src..src + esize]);
            }
        }
        Ok(packed)
    }

    /// Back to row-major bytes (k x n, little-endian elements), for tests.
    pub fn unpack_bytes(&self) -> Vec<u8> {
        let esize = self.elem.bytes();
        let src = self.data.as_slice();
        let mut out = vec![0u8; self.k * self.n * esize];
        for kk in 0..self.k {
            for nn in 0..self.n {
                let at = packed_offset(&self.layout, self.k_steps, self.panels, esize, kk, nn);
                let dst = (kk * self.n + nn) * esize;
                out[dst..dst + esize].copy_from_slice(&src[at..at + esize]);
            }
        }
        out
    }

    /// Byte offset of the tile for K step `step` of `panel`; tiles of
    /// consecutive panels in one K block are `block_panel_stride(step)` apart.
    pub fn tile_offset(&self, step: usize, panel: usize) -> usize {
        tile_offset(&self.layout, self.k_steps, self.panels, step, panel)
    }

    /// Bytes between the tiles of neighbouring panels inside the K block
    /// that holds `step`.
    pub fn block_panel_stride(&self, step: usize) -> usize {
        let first = step - step % self.layout.k_block_steps;
        self.layout.k_block_steps.min(self.k_steps - first) * self.layout.k_groups_per_tdp as usize * 64
    }

    pub fn elem(&self) -> PackedElem {
        self.elem
    }
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn layout(&self) -> BLayout {
        self.layout
    }
    pub fn k_groups_per_tdp(&self) -> u8 {
        self.layout.k_groups_per_tdp
    }
    /// K steps of `k_groups_per_tdp` groups (the padded K).
    pub fn k_steps(&self) -> usize {
        self.k_steps
    }
    pub fn panels(&self) -> usize {
        self.panels
    }
    pub fn as_bytes(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// Int8 B: `sum_k B[k][n]` for each of the `n()` columns, the bytes read
    /// as i8 (`signed`) or u8, wrapping modulo 2^32; computed at packing
    /// time so no GEMM has to pass over B for them. `None` for bf16.
    pub fn col_sums(&self, signed: bool) -> Option<&[i32]> {
        self.col_sums.as_ref().map(|s| if signed { &s.signed[..] } else { &s.unsigned[..] })
    }

    /// [`Self::col_sums`] with the bytes read as i8.
    pub fn col_sums_signed(&self) -> Option<&[i32]> {
        self.col_sums(true)
    }

    /// [`Self::col_sums`] with the bytes read as u8.
    pub fn col_sums_unsigned(&self) -> Option<&[i32]> {
        self.col_sums(false)
    }
}

fn tile_offset(layout: &BLayout, k_steps: usize, panels: usize, step: usize, panel: usize) -> usize {
    let tile = layout.k_groups_per_tdp as usize * 64;
    let kb = layout.k_block_steps;
    let first = step - step % kb;
    let steps_here = kb.min(k_steps - first);
    (first * panels + panel * steps_here + (step - first)) * tile
}

fn packed_offset(layout: &BLayout, k_steps: usize, panels: usize, esize: usize, kk: usize, nn: usize) -> usize {
    let per_group = 4 / esize;
    let group = kk / per_group;
    let kg = layout.k_groups_per_tdp as usize;
    let (step, row) = (group / kg, group % kg);
    tile_offset(layout, k_steps, panels, step, nn / 16) + row * 64 + (nn % 16) * 4 + (kk % per_group) * esize
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedB")
            .field("elem", &self.elem)
            .field("k", &self.k)
            .field("n", &self.n)
            .field("layout", &self.layout)
            .field("k_steps", &self.k_steps)
            .field("panels", &self.panels)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trips_and_pads_with_zeros() {
        for (k, n, kg, kbs) in [(1, 1, 16, 16), (67, 33, 16, 1), (5, 17, 3, 2), (128, 32, 16, 16), (300, 40, 5, 3)] {
            let layout = BLayout { k_groups_per_tdp: kg, k_block_steps: kbs };
            let b: Vec<u8> = (0..k * n).map(|i| (i * 7 + 1) as u8).collect();
            let p = PackedB::pack_int8(&b, k, n, n, layout).unwrap();
            assert_eq!(p.unpack_bytes(), b, "{k}x{n}");
            let nonzero = p.as_bytes().iter().filter(|&&x| x != 0).count();
            assert_eq!(nonzero, b.iter().filter(|&&x| x != 0).count(), "padding must be zero");
            let bf: Vec<u16> = (0..k * n).map(|i| i as u16 ^ 0x3f80).collect();
            let p = PackedB::pack_bf16(&bf, k, n, n, layout).unwrap();
            let back: Vec<u16> = p.unpack_bytes().chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            assert_eq!(back, bf);
        }
    }

    #[test]
    fn column_sums_are_computed_while_packing() {
        let (k, n, ldb) = (37, 19, 23);
        let b: Vec<u8> = (0..k * ldb).map(|i| (i * 131 + 7) as u8).collect();
        let p = PackedB::pack_int8(&b, k, n, ldb, BLayout { k_groups_per_tdp: 5, k_block_steps: 2 }).unwrap();
        for j in 0..n {
            let col = (0..k).map(|kk| b[kk * ldb + j]);
            assert_eq!(p.col_sums_signed().unwrap()[j], col.clone().map(|x| i32::from(x as i8)).sum::<i32>());
            assert_eq!(p.col_sums_unsigned().unwrap()[j], col.map(i32::from).sum::<i32>());
        }
        assert_eq!(p.col_sums(true).unwrap().len(), n);
        let bf = PackedB::pack_bf16(&[0x3f80; 4], 2, 2, 2, BLayout::default()).unwrap();
        assert!(bf.col_sums(true).is_none() && bf.col_sums(false).is_none());
    }

    #[test]
    fn k_block_slices_are_contiguous() {
        let layout = BLayout { k_groups_per_tdp: 16, k_block_steps: 4 };
        let p = PackedB::pack_int8(&vec![1; 64 * 10 * 48], 64 * 10, 48, 48, layout).unwrap();
        // 10 steps = blocks of 4, 4, 2; 3 panels.
        assert_eq!(p.tile_offset(4, 0), 3 * 4 * 1024);
        assert_eq!(p.tile_offset(5, 1), (12 + 4 + 1) * 1024);
        assert_eq!(p.block_panel_stride(9), 2 * 1024);
        assert_eq!(p.tile_offset(9, 2), (24 + 2 * 2 + 1) * 1024);
        assert_eq!(p.as_bytes().len(), 30 * 1024);
    }

    #[test]
    fn bad_shapes_are_typed_errors() {
        let l = BLayout::default();
        assert_eq!(PackedB::pack_int8(&[0; 4], 0, 4, 4, l).unwrap_err(), PackError::Empty { k: 0, n: 4 });
        assert_eq!(PackedB::pack_int8(&[0; 4], 2, 4, 3, l).unwrap_err(), PackError::Stride { ldb: 3, n: 4 });
        assert!(matches!(PackedB::pack_int8(&[0; 7], 2, 4, 4, l), Err(PackError::TooShort { .. })));
        let bad_kg = BLayout { k_groups_per_tdp: 0, ..l };
        assert_eq!(PackedB::pack_int8(&[0; 8], 2, 4, 4, bad_kg).unwrap_err(), PackError::KGroups(0));
        let bad_kb = BLayout { k_block_steps: 0, ..l };
        assert_eq!(PackedB::pack_int8(&[0; 8], 2, 4, 4, bad_kb).unwrap_err(), PackError::KBlock);
        assert!(matches!(PackedB::pack_int8(&[0; 8], usize::MAX, 4, usize::MAX, l), Err(PackError::TooLarge { .. })));
    }
}
