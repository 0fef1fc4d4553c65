//! Dense -> sparse -> dense is bit-exact; the traversal order, offsets,
//! summaries and byte counts are what the crate docs say.

mod common;

use common::*;
use proptest::prelude::*;
use rand::Rng;
use tilejit_sparse::{Bf16, Element, Int8, SparseBf16, SparseI8, SparseMatrix, TileSummary};

/// Everything a packed matrix must satisfy, checked from the public arrays
/// alone: walking the value stream in traversal order with a cursor (as a
/// kernel does, POPCNT by POPCNT) meets every tile at its offset, and the
/// summaries match.
fn check_structure<E: Element>(s: &SparseMatrix<E>, dense: &[E::Value]) {
    assert_eq!(s.to_dense(), dense, "round trip");
    s.validate().unwrap();
    let nnz = dense.iter().filter(|&&v| !E::is_zero(v)).count();
    assert_eq!(s.nnz(), nnz);
    assert_eq!(s.values().len(), nnz);
    assert_eq!(s.values_with_slack().len(), nnz + E::LANES);
    assert!(s.values_with_slack()[nnz..].iter().all(|&v| E::is_zero(v)));
    assert_eq!(s.tiles(), s.panels() * s.k_tiles());
    assert_eq!((s.panels(), s.k_tiles()), (s.n().div_ceil(16), s.k().div_ceil(E::TILE_K)));
    assert_eq!(s.masks().len(), s.tiles());
    assert_eq!(s.offsets().len(), s.tiles() + 1);
    let mut cursor = 0u64;
    for t in 0..s.tiles() {
        assert_eq!(s.offsets()[t], cursor, "tile {t} offset");
        let masks = &s.masks()[t];
        cursor += masks.0.iter().map(|&m| u64::from(E::mask_to_u64(m).count_ones())).sum::<u64>();
        assert_eq!(s.summaries()[t], TileSummary::of::<E>(masks));
        let tile = s.tile_at(t).unwrap();
        assert_eq!((tile.index, tile.value_offset as u64), (t, s.offsets()[t]));
        assert_eq!(usize::from(tile.summary.nnz), tile.values.len());
    }
    assert_eq!(cursor, nnz as u64);
    assert_eq!(s.offsets()[s.tiles()], cursor);
    if nnz == dense.len() {
        assert_eq!(s.density(), 1.0);
    }
    assert!((s.density() - nnz as f64 / dense.len() as f64).abs() < 1e-15);
    // The other two ways in give the same matrix.
    assert_eq!(&SparseMatrix::<E>::from_bytes(&s.to_bytes()).unwrap(), s);
    assert_eq!(&SparseMatrix::<E>::from_parts(s.clone().into_parts()).unwrap(), s);
}

#[test]
fn listed_shapes_round_trip_at_every_density() {
    let mut rng = rng(1);
    for (k, n) in SHAPES {
        for density in [0.0, 0.01, 0.3, 0.5, 0.9, 1.0] {
            let b = bf16_matrix(&mut rng, k, n, density);
            check_structure(&SparseBf16::from_dense_bf16(&b, k, n).unwrap(), &b);
            let b = i8_matrix(&mut rng, k, n, density);
            check_structure(&SparseI8::from_dense_i8(&b, k, n).unwrap(), &b);
        }
    }
}

#[test]
fn all_zero_and_all_dense_matrices() {
    let (k, n) = (77, 45);
    let s = SparseBf16::from_dense_bf16(&vec![0; k * n], k, n).unwrap();
    assert_eq!((s.nnz(), s.density()), (0, 0.0));
    assert!(s.summaries().iter().all(|t| t.is_empty()));
    assert!(s.offsets().iter().all(|&o| o == 0));
    assert_eq!(s.to_dense_bf16(), vec![0; k * n]);
    let s = SparseI8::from_dense_i8(&vec![-1; k * n], k, n).unwrap();
    assert_eq!(s.nnz(), k * n);
    assert_eq!(s.to_dense_i8(), vec![-1; k * n]);
    // Full tiles have every row; the K tail tile only its real rows:
    // K = 77 is 64 + 13, 13 k = groups 0..=3 (the last one partial).
    assert_eq!(s.summaries()[0].rows, 0xffff);
    assert_eq!(s.summaries()[1].rows, 0b1111);
}

#[test]
fn special_bf16_values_survive_with_their_bits() {
    // -0.0 is stored (only 0x0000 is zero), NaN payloads, infinities and
    // subnormals are kept bit for bit.
    let (k, n) = (37, 19);
    let mut rng = rng(2);
    let mut b = bf16_matrix(&mut rng, k, n, 0.5);
    for (i, v) in b.iter_mut().enumerate().filter(|(i, _)| i % 3 == 0) {
        *v = BF16_SPECIALS[i % BF16_SPECIALS.len()];
    }
    let s = SparseBf16::from_dense_bf16(&b, k, n).unwrap();
    check_structure(&s, &b);
    let minus_zero = b.iter().filter(|&&v| v == 0x8000).count();
    assert!(minus_zero > 0);
    assert_eq!(s.values().iter().filter(|&&v| v == 0x8000).count(), minus_zero);
    // A matrix of only -0.0 is fully dense in this format.
    let s = SparseBf16::from_dense_bf16(&[0x8000; 6], 2, 3).unwrap();
    assert_eq!((s.nnz(), s.to_dense_bf16()), (6, vec![0x8000; 6]));
}

#[test]
fn bytes_follow_the_sparse_md_formula() {
    // Whole tiles, exactly nnz non-zeros: stream / dense = (1 - s) + 1/16
    // (bf16) or + 1/8 (int8), s over the padded elements.
    let mut rng = rng(3);
    for &(k, n) in &[(64, 32), (128, 48), (320, 160), (33, 17), (1, 1), (100, 70)] {
        for s_target in [0.0, 0.5, 0.7, 0.9, 1.0] {
            let count = k * n;
            let nnz = count - (s_target * count as f64).round() as usize;
            let mut order: Vec<usize> = (0..count).collect();
            for i in (1..count).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            let mut bf = vec![0u16; count];
            let mut i8s = vec![0i8; count];
            for &i in &order[..nnz] {
                bf[i] = nonzero_bf16(&mut rng);
                i8s[i] = nonzero_i8(&mut rng);
            }
            let sb = SparseBf16::from_dense_bf16(&bf, k, n).unwrap();
            let si = SparseI8::from_dense_i8(&i8s, k, n).unwrap();
            for (stream, dense, tiles, padded, extra, nnz_bytes) in [
                (sb.stream_bytes(), sb.dense_bytes(), sb.tiles(), sb.tiles() * 512, 1.0 / 16.0, 2 * nnz),
                (si.stream_bytes(), si.dense_bytes(), si.tiles(), si.tiles() * 1024, 1.0 / 8.0, nnz),
            ] {
                let s = 1.0 - nnz as f64 / padded as f64;
                let ratio = stream as f64 / dense as f64;
                assert!((ratio - ((1.0 - s) + extra)).abs() < 1e-12, "{k}x{n} s={s}: {ratio}");
                assert_eq!(dense, tiles * 1024);
                assert_eq!(stream, nnz_bytes + (extra * 1024.0) as usize * tiles);
            }
            for (bytes, stream, tiles) in
                [(sb.bytes(), sb.stream_bytes(), sb.tiles()), (si.bytes(), si.stream_bytes(), si.tiles())]
            {
                assert_eq!(bytes, stream + 12 * tiles + 8);
            }
        }
    }
    // SPARSE.md's figures: 0.5625 at 50 %, 0.3625 at 70 %, 0.1625 at 90 % (bf16).
    for (s_target, expect) in [(0.5, 0.5625), (0.7, 0.3625), (0.9, 0.1625)] {
        let count = 32 * 160;
        let nz = count - (s_target * count as f64) as usize;
        let b: Vec<u16> = (0..count).map(|i| if i < nz { 0x3f80 } else { 0 }).collect();
        let s = SparseBf16::from_dense_bf16(&b, 32, 160).unwrap();
        assert!((s.stream_bytes() as f64 / s.dense_bytes() as f64 - expect).abs() < 1e-12);
    }
}

#[test]
fn bad_dense_input_is_a_typed_error() {
    use tilejit_sparse::SparseError;
    assert_eq!(SparseBf16::from_dense_bf16(&[], 0, 5).unwrap_err(), SparseError::Empty { k: 0, n: 5 });
    assert_eq!(SparseI8::from_dense_i8(&[], 3, 0).unwrap_err(), SparseError::Empty { k: 3, n: 0 });
    assert!(matches!(
        SparseBf16::from_dense_bf16(&[1; 5], 2, 3),
        Err(SparseError::Length { expected: 6, actual: 5, .. })
    ));
    assert!(matches!(SparseI8::from_dense_i8(&[1; 5], usize::MAX, usize::MAX), Err(SparseError::TooLarge { .. })));
    assert!(matches!(SparseI8::from_dense_i8(&[1; 5], 1 << 40, 1 << 40), Err(SparseError::TooLarge { .. })));
}

#[test]
fn accessors_out_of_range_are_none() {
    let s = SparseI8::from_dense_i8(&[1; 100 * 20], 100, 20).unwrap();
    assert_eq!((s.panels(), s.k_tiles()), (2, 2));
    assert!(s.tile(2, 0).is_none() && s.tile(0, 2).is_none() && s.tile_at(4).is_none());
    assert_eq!(s.tile_index(1, 1), Some(3));
    assert!(s.tile(1, 1).is_some());
}

fn shape_and_density() -> impl Strategy<Value = (usize, usize, f64, u64)> {
    (1usize..=300, 1usize..=300, prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0], any::<u64>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn random_bf16_round_trips((k, n, density, seed) in shape_and_density()) {
        let b = bf16_matrix(&mut rng(seed), k, n, density);
        check_structure(&SparseMatrix::<Bf16>::from_dense(&b, k, n).unwrap(), &b);
    }

    #[test]
    fn random_i8_round_trips((k, n, density, seed) in shape_and_density()) {
        let b = i8_matrix(&mut rng(seed), k, n, density);
        check_structure(&SparseMatrix::<Int8>::from_dense(&b, k, n).unwrap(), &b);
    }
}
