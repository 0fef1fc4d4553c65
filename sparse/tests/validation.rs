//! Packed data from an untrusted source: every corrupted field class is a
//! typed error, and random damage never panics.

mod common;

use common::*;
use rand::Rng;
use tilejit_sparse::{
    Bf16, Element, Int8, SparseBf16, SparseError, SparseI8, SparseMatrix, SparseParts, TileSummary, HEADER_BYTES,
};

/// bf16 45 x 37: 3 panels (last one 5 columns) x 2 tiles (last one 13 k).
fn bf16_parts() -> SparseParts<Bf16> {
    let b = bf16_matrix(&mut rng(10), 45, 37, 0.5);
    SparseBf16::from_dense_bf16(&b, 45, 37).unwrap().into_parts()
}

/// int8 70 x 20: 2 panels (last one 4 columns) x 2 tiles (last one 6 k).
fn i8_parts() -> SparseParts<Int8> {
    let b = i8_matrix(&mut rng(11), 70, 20, 0.5);
    SparseI8::from_dense_i8(&b, 70, 20).unwrap().into_parts()
}

fn err<E: Element>(parts: SparseParts<E>) -> SparseError {
    SparseMatrix::from_parts(parts).expect_err("corrupted parts must be refused")
}

fn recompute_summaries<E: Element>(p: &mut SparseParts<E>) {
    p.summaries = p.masks.iter().map(TileSummary::of::<E>).collect();
}

fn recompute_offsets<E: Element>(p: &mut SparseParts<E>) {
    let mut at = 0;
    p.offsets = std::iter::once(0)
        .chain(p.summaries.iter().map(|s| {
            at += u64::from(s.nnz);
            at
        }))
        .collect();
}

/// A mask bit inside the matrix that is clear (bf16 parts, tile 0).
fn clear_bit(p: &SparseParts<Bf16>) -> (usize, u32) {
    (0..16).flat_map(|r| (0..32).map(move |i| (r, i))).find(|&(r, i)| p.masks[0].0[r] >> i & 1 == 0).unwrap()
}

#[test]
fn valid_parts_are_accepted() {
    SparseMatrix::from_parts(bf16_parts()).unwrap().validate().unwrap();
    SparseMatrix::from_parts(i8_parts()).unwrap().validate().unwrap();
}

#[test]
fn flipped_mask_bit() {
    let (r, i) = clear_bit(&bf16_parts());
    // Alone: the summary disagrees first.
    let mut p = bf16_parts();
    p.masks[0].0[r] |= 1 << i;
    let nnz = p.summaries[0].nnz;
    assert_eq!(err(p), SparseError::SummaryNnz { tile: 0, expected: nnz + 1, found: nnz });
    // With the summary fixed: the next offset.
    let mut p = bf16_parts();
    p.masks[0].0[r] |= 1 << i;
    recompute_summaries(&mut p);
    assert!(matches!(err(p), SparseError::Offset { tile: 0, panel: 0, k_tile: 0, popcount, expected, found }
        if expected == found + 1 && u64::from(popcount) == expected));
    // With every offset fixed: the value count.
    let mut p = bf16_parts();
    p.masks[0].0[r] |= 1 << i;
    recompute_summaries(&mut p);
    recompute_offsets(&mut p);
    let (total, len) = (*p.offsets.last().unwrap(), p.values.len());
    assert_eq!(err(p), SparseError::ValueCount { total, len });
    // With the value inserted too, it is a valid matrix with one more element.
    let mut p = bf16_parts();
    let before: u32 = p.masks[0].0[..r].iter().map(|m| m.count_ones()).sum();
    let at = before + (p.masks[0].0[r] & ((1u32 << i) - 1)).count_ones();
    p.masks[0].0[r] |= 1 << i;
    recompute_summaries(&mut p);
    recompute_offsets(&mut p);
    p.values.insert(at as usize, 0x4242);
    let s = SparseMatrix::from_parts(p).unwrap();
    let (c, kk) = (i as usize / 2, 2 * r + i as usize % 2);
    let mut want = SparseMatrix::from_parts(bf16_parts()).unwrap().to_dense_bf16();
    want[kk * 37 + c] = 0x4242;
    assert_eq!(s.to_dense_bf16(), want);
}

#[test]
fn summary_rows_disagree() {
    let mut p = bf16_parts();
    p.summaries[1].rows ^= 1 << 15;
    assert!(matches!(err(p), SparseError::SummaryRows { tile: 1, .. }));
    let mut p = i8_parts();
    p.summaries[3].nnz += 1;
    assert!(matches!(err(p), SparseError::SummaryNnz { tile: 3, .. }));
}

#[test]
fn offsets_off_by_one() {
    for t in 1..6 {
        for delta in [1u64, u64::MAX] {
            let mut p = bf16_parts();
            p.offsets[t] = p.offsets[t].wrapping_add(delta);
            let found = p.offsets[t];
            assert!(
                matches!(err(p), SparseError::Offset { tile, found: f, .. } if tile == t - 1 && f == found),
                "offset {t}"
            );
        }
    }
    let mut p = i8_parts();
    p.offsets[0] = 1;
    assert_eq!(err(p), SparseError::FirstOffset(1));
    let mut p = i8_parts();
    *p.offsets.last_mut().unwrap() += 1;
    assert!(matches!(err(p), SparseError::Offset { tile: 3, .. }));
}

#[test]
fn truncated_or_extra_values() {
    let mut p = bf16_parts();
    p.values.pop();
    let (total, len) = (*p.offsets.last().unwrap(), p.values.len());
    assert_eq!(err(p), SparseError::ValueCount { total, len });
    let mut p = i8_parts();
    p.values.push(3);
    assert!(matches!(err(p), SparseError::ValueCount { .. }));
    let mut p = i8_parts();
    p.values.clear();
    assert!(matches!(err(p), SparseError::ValueCount { len: 0, .. }));
}

#[test]
fn stored_zero_values() {
    let mut p = bf16_parts();
    p.values[7] = 0;
    assert_eq!(err(p), SparseError::StoredZero { index: 7 });
    let mut p = bf16_parts();
    p.values[7] = 0x8000; // -0.0 is a legal non-zero
    SparseMatrix::from_parts(p).unwrap();
    let mut p = i8_parts();
    *p.values.last_mut().unwrap() = 0;
    let index = p.values.len() - 1;
    assert_eq!(err(p), SparseError::StoredZero { index });
}

#[test]
fn padding_bits() {
    // bf16: panel 2 has columns 32..37 (5), so bits 10.. are padding.
    let mut p = bf16_parts();
    p.masks[4].0[0] |= 1 << 10;
    assert_eq!(err(p), SparseError::PaddingBits { panel: 2, k_tile: 0, row: 0, bits: 1 << 10 });
    // bf16: K = 45 ends in tile 1 at group 6's even element (k = 44):
    // its odd bits and every later row are padding.
    let mut p = bf16_parts();
    p.masks[1].0[6] |= 1 << 1;
    assert_eq!(err(p), SparseError::PaddingBits { panel: 0, k_tile: 1, row: 6, bits: 2 });
    let mut p = bf16_parts();
    p.masks[1].0[15] |= 1 << 31;
    assert!(matches!(err(p), SparseError::PaddingBits { panel: 0, k_tile: 1, row: 15, .. }));
    // int8: K = 70 = 64 + 6: tile 1 row 1 holds k 68, 69 only (lanes 0, 1).
    let mut p = i8_parts();
    p.masks[1].0[1] |= 1 << 2;
    assert_eq!(err(p), SparseError::PaddingBits { panel: 0, k_tile: 1, row: 1, bits: 4 });
    // int8: panel 1 has 4 columns = bits 0..16.
    let mut p = i8_parts();
    p.masks[2].0[3] |= 1 << 63;
    assert_eq!(err(p), SparseError::PaddingBits { panel: 1, k_tile: 0, row: 3, bits: 1 << 63 });
    // Padding is checked before the summary, so fixing summaries and
    // offsets does not help.
    let mut p = i8_parts();
    p.masks[3].0[15] |= 1;
    recompute_summaries(&mut p);
    recompute_offsets(&mut p);
    assert!(matches!(err(p), SparseError::PaddingBits { panel: 1, k_tile: 1, row: 15, .. }));
}

#[test]
fn array_lengths_and_dims() {
    let mut p = bf16_parts();
    p.masks.pop();
    assert!(matches!(err(p), SparseError::Length { expected: 6, actual: 5, .. }));
    let mut p = bf16_parts();
    p.offsets.push(0);
    assert!(matches!(err(p), SparseError::Length { expected: 7, actual: 8, .. }));
    let mut p = bf16_parts();
    p.summaries.clear();
    assert!(matches!(err(p), SparseError::Length { expected: 6, actual: 0, .. }));
    // Other dims than the arrays were packed for: more panels or tiles is
    // a length error; N = 48 keeps 3 panels and is valid (the padding
    // columns become real zero columns); K = 44 makes k 44 padding.
    let mut p = bf16_parts();
    p.n = 49;
    assert!(matches!(err(p), SparseError::Length { expected: 8, actual: 6, .. }));
    let mut p = bf16_parts();
    p.n = 48;
    let wider = SparseMatrix::from_parts(p).unwrap().to_dense_bf16();
    assert!(wider.chunks(48).all(|row| row[37..].iter().all(|&v| v == 0)));
    let mut p = bf16_parts();
    p.k = 44;
    assert_ne!(p.masks[1].0[6], 0, "the test needs a non-zero at k = 44");
    assert!(matches!(err(p), SparseError::PaddingBits { panel: 0, k_tile: 1, row: 6, .. }));
    // Huge and empty dims: typed, before any array is looked at.
    for (k, n) in [(usize::MAX, usize::MAX), (usize::MAX, 1), (1 << 40, 1 << 40), (1, usize::MAX)] {
        let mut p = i8_parts();
        (p.k, p.n) = (k, n);
        assert!(matches!(err(p), SparseError::TooLarge { .. }), "{k} x {n}");
    }
    let mut p = i8_parts();
    (p.k, p.n) = (1 << 31, 1 << 20);
    assert!(matches!(err(p), SparseError::Length { .. }));
    let mut p = i8_parts();
    p.k = 0;
    assert_eq!(err(p), SparseError::Empty { k: 0, n: 20 });
}

#[test]
fn byte_image_header_errors() {
    let s = SparseBf16::from_dense_bf16(&bf16_matrix(&mut rng(12), 45, 37, 0.5), 45, 37).unwrap();
    let good = s.to_bytes();
    assert_eq!(SparseBf16::from_bytes(&good).unwrap(), s);
    assert!(matches!(SparseI8::from_bytes(&good), Err(SparseError::ElemType { expected: 2, found: 1, .. })));
    let mut b = good.clone();
    b[0] ^= 1;
    assert_eq!(SparseBf16::from_bytes(&b).unwrap_err(), SparseError::BadMagic);
    let mut b = good.clone();
    b[8] = 2;
    assert_eq!(SparseBf16::from_bytes(&b).unwrap_err(), SparseError::Version { found: 2, supported: 1 });
    let mut b = good.clone();
    b[50] = 1;
    assert_eq!(SparseBf16::from_bytes(&b).unwrap_err(), SparseError::Reserved);
    for len in [0, 10, HEADER_BYTES, good.len() - 1] {
        assert!(matches!(SparseBf16::from_bytes(&good[..len]), Err(SparseError::ImageLength { .. })), "{len}");
    }
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(SparseBf16::from_bytes(&b), Err(SparseError::ImageLength { .. })));
    // nnz, K, N fields at their extremes.
    for (at, value) in [(32, u64::MAX), (32, 1 << 62), (16, u64::MAX), (24, u64::MAX), (16, 1 << 40), (16, 0)] {
        let mut b = good.clone();
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
        assert!(
            matches!(
                SparseBf16::from_bytes(&b),
                Err(SparseError::ImageLength { .. } | SparseError::TooLarge { .. } | SparseError::Empty { .. })
            ),
            "field {at} = {value}"
        );
    }
}

/// Flips, overwrites, truncates and extends a valid image at random: no
/// panic, and whatever is accepted is a valid matrix whose image is the
/// input (the format is canonical).
fn fuzz<E: Element>(good: &[u8], seed: u64, rounds: usize) -> (usize, usize) {
    let mut rng = rng(seed);
    let mut accepted = 0;
    for _ in 0..rounds {
        let mut b = good.to_vec();
        match rng.random_range(0..10) {
            0 => b.truncate(rng.random_range(0..b.len())),
            1 => b.extend((0..rng.random_range(1..40)).map(|_| rng.random::<u8>())),
            2 => {
                // A plausible header field: small numbers in K, N or nnz.
                let at = [16, 24, 32][rng.random_range(0..3)];
                b[at..at + 8].copy_from_slice(&rng.random_range(0u64..400).to_le_bytes());
            }
            _ => {
                for _ in 0..rng.random_range(1..=4) {
                    let at = rng.random_range(0..b.len());
                    b[at] ^= 1 << rng.random_range(0..8);
                }
            }
        }
        if let Ok(s) = SparseMatrix::<E>::from_bytes(&b) {
            accepted += 1;
            s.validate().unwrap();
            assert_eq!(s.to_dense().len(), s.k() * s.n());
            assert_eq!(s.to_bytes(), b);
            for t in 0..s.tiles() {
                s.tile_at(t).unwrap().dense_rows();
            }
        }
    }
    (accepted, rounds)
}

#[test]
fn mutation_fuzz_never_panics() {
    let mut r = rng(13);
    for (i, &(k, n)) in [(45, 37), (1, 1), (70, 20), (130, 3)].iter().enumerate() {
        let b = SparseBf16::from_dense_bf16(&bf16_matrix(&mut r, k, n, 0.3), k, n).unwrap().to_bytes();
        let (accepted, rounds) = fuzz::<Bf16>(&b, i as u64, 5000);
        println!("bf16 {k}x{n}: {accepted} of {rounds} mutants accepted");
        let b = SparseI8::from_dense_i8(&i8_matrix(&mut r, k, n, 0.3), k, n).unwrap().to_bytes();
        let (accepted, rounds) = fuzz::<Int8>(&b, 100 + i as u64, 5000);
        println!("int8 {k}x{n}: {accepted} of {rounds} mutants accepted");
    }
}
