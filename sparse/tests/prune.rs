//! Magnitude pruning: exact counts, smallest magnitudes first, determinism
//! for a seed, seeds differing only among ties, per-column mode.

mod common;

use common::*;
use rand::Rng;
use tilejit_sparse::{prune_count, Bf16, Element, Int8, PruneScope, Pruning, SparseBf16, SparseError};

/// The groups of flat indices a scope compares.
fn groups(scope: PruneScope, k: usize, n: usize) -> Vec<Vec<usize>> {
    match scope {
        PruneScope::Matrix => vec![(0..k * n).collect()],
        PruneScope::PerColumn => (0..n).map(|c| (0..k).map(|kk| kk * n + c).collect()).collect(),
    }
}

/// Checks one pruning against its definition; returns the threshold
/// magnitude of each group (the largest pruned one, if any).
fn check<E: Element>(b: &[E::Value], out: &[E::Value], k: usize, n: usize, p: &Pruning) -> Vec<Option<u16>> {
    assert_eq!(out.len(), b.len());
    let mut thresholds = Vec::new();
    for g in groups(p.scope, k, n) {
        let r = prune_count(g.len(), p.sparsity);
        let pruned: Vec<usize> = g.iter().copied().filter(|&i| out[i] != b[i] || E::is_zero(b[i])).collect();
        // Kept elements keep their bits; changed ones became the zero pattern.
        for &i in &g {
            assert!(out[i] == b[i] || E::is_zero(out[i]), "element {i} changed to a non-zero");
        }
        let zeros_before = g.iter().filter(|&&i| E::magnitude(b[i]) == 0).count();
        let zeros_after = g.iter().filter(|&&i| E::is_zero(out[i])).count();
        // Exactly r pruned, existing zeros (+0.0 and -0.0) first: if there
        // are at most r of them the result has exactly r zeros; otherwise r
        // of them were picked by tie hash and the +0.0 ones not picked stay.
        let plus_zero_before = g.iter().filter(|&&i| E::is_zero(b[i])).count();
        if r >= zeros_before {
            assert_eq!(zeros_after, r, "group of {}", g.len());
        } else {
            assert!(zeros_after >= r.max(plus_zero_before) && zeros_after <= zeros_before.min(r + plus_zero_before));
        }
        let max_pruned = pruned.iter().filter(|&&i| E::is_zero(out[i])).map(|&i| E::magnitude(b[i])).max();
        let min_kept = g.iter().filter(|&&i| !E::is_zero(out[i])).map(|&i| E::magnitude(b[i])).min();
        if let (Some(a), Some(b)) = (max_pruned, min_kept) {
            assert!(a <= b, "pruned magnitude {a} above kept {b}");
        }
        thresholds.push(if r == 0 { None } else { max_pruned });
    }
    thresholds
}

fn all_pairs() -> impl Iterator<Item = (PruneScope, f64)> {
    [PruneScope::Matrix, PruneScope::PerColumn]
        .into_iter()
        .flat_map(|s| [0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 0.999, 1.0].map(move |x| (s, x)))
}

#[test]
fn exact_counts_and_smallest_first() {
    let mut rng = rng(20);
    for (k, n) in SHAPES {
        for (scope, sparsity) in all_pairs() {
            let p = Pruning { sparsity, scope, seed: rng.random() };
            let b = bf16_matrix(&mut rng, k, n, 1.0);
            check::<Bf16>(&b, &p.prune_bf16(&b, k, n).unwrap(), k, n, &p);
            let b = i8_matrix(&mut rng, k, n, 1.0);
            check::<Int8>(&b, &p.prune_i8(&b, k, n).unwrap(), k, n, &p);
            // With zeros already present.
            let b = bf16_matrix(&mut rng, k, n, 0.6);
            check::<Bf16>(&b, &p.prune_bf16(&b, k, n).unwrap(), k, n, &p);
            let b = i8_matrix(&mut rng, k, n, 0.6);
            check::<Int8>(&b, &p.prune_i8(&b, k, n).unwrap(), k, n, &p);
        }
    }
}

#[test]
fn exact_count_without_existing_zeros() {
    let (k, n) = (97, 61);
    let b: Vec<i8> = (0..k * n).map(|i| [1, -1, 2, -2, 3, 127, -128][i % 7]).collect();
    for sparsity in [0.3, 0.5, 0.75] {
        let out = Pruning::new(sparsity).prune_i8(&b, k, n).unwrap();
        assert_eq!(out.iter().filter(|&&v| v == 0).count(), (sparsity * (k * n) as f64).round() as usize);
        let p = Pruning { scope: PruneScope::PerColumn, ..Pruning::new(sparsity) };
        let out = p.prune_i8(&b, k, n).unwrap();
        for c in 0..n {
            let zeros = (0..k).filter(|&kk| out[kk * n + c] == 0).count();
            assert_eq!(zeros, prune_count(k, sparsity), "column {c}");
        }
    }
}

#[test]
fn same_seed_same_result_other_seeds_differ_only_on_ties() {
    let mut rng = rng(21);
    let (k, n) = (150, 70);
    // Few distinct magnitudes, so there are many ties.
    let b: Vec<i8> = (0..k * n).map(|_| rng.random_range(-4..=4)).collect();
    let bf: Vec<u16> =
        (0..k * n).map(|_| [0x3f80, 0xbf80, 0x4000, 0xc000, 0x8000, 0x7fc0][rng.random_range(0..6)]).collect();
    for scope in [PruneScope::Matrix, PruneScope::PerColumn] {
        for sparsity in [0.2, 0.5, 0.8] {
            let p = Pruning { sparsity, scope, seed: 1 };
            let base = p.prune_i8(&b, k, n).unwrap();
            assert_eq!(p.prune_i8(&b, k, n).unwrap(), base, "deterministic");
            let t = check::<Int8>(&b, &base, k, n, &p);
            let base_bf = p.prune_bf16(&bf, k, n).unwrap();
            assert_eq!(p.prune_bf16(&bf, k, n).unwrap(), base_bf);
            let t_bf = check::<Bf16>(&bf, &base_bf, k, n, &p);
            let mut differed = false;
            for seed in 2..6 {
                let q = Pruning { seed, ..p };
                let other = q.prune_i8(&b, k, n).unwrap();
                assert_eq!(check::<Int8>(&b, &other, k, n, &q), t, "same thresholds");
                let other_bf = q.prune_bf16(&bf, k, n).unwrap();
                assert_eq!(check::<Bf16>(&bf, &other_bf, k, n, &q), t_bf);
                for (gi, g) in groups(scope, k, n).iter().enumerate() {
                    for &i in g {
                        if Some(Int8::magnitude(b[i])) != t[gi] {
                            assert_eq!(other[i], base[i], "seed {seed} changed a non-tie at {i}");
                        }
                        if Some(Bf16::magnitude(bf[i])) != t_bf[gi] {
                            assert_eq!(other_bf[i], base_bf[i], "seed {seed} changed a non-tie at {i}");
                        }
                    }
                }
                differed |= other != base;
            }
            assert!(differed, "seeds never changed a tie ({scope:?}, {sparsity})");
        }
    }
}

#[test]
fn per_column_prunes_each_column_alone() {
    // Column c holds magnitudes c + 1 (all the same within a column): whole
    // matrix pruning takes the small columns, per-column takes half of each.
    let (k, n) = (40, 10);
    let b: Vec<i8> = (0..k * n).map(|i| (i % n) as i8 + 1).collect();
    let whole = Pruning::new(0.5).prune_i8(&b, k, n).unwrap();
    for c in 0..n {
        let zeros = (0..k).filter(|&kk| whole[kk * n + c] == 0).count();
        assert_eq!(zeros, if c < 5 { k } else { 0 });
    }
    let cols = Pruning { scope: PruneScope::PerColumn, ..Pruning::new(0.5) }.prune_i8(&b, k, n).unwrap();
    for c in 0..n {
        assert_eq!((0..k).filter(|&kk| cols[kk * n + c] == 0).count(), 20);
    }
}

#[test]
fn bf16_specials_rank_as_documented() {
    // -0.0 < subnormal < 1 < inf < NaN; pruned elements become +0.0.
    let b = [0x7fc0u16, 0x7f80, 0x3f80, 0x0001, 0x8000, 0xffc1];
    let steps: [&[u16]; 7] = [
        &[0x7fc0, 0x7f80, 0x3f80, 0x0001, 0x8000, 0xffc1],
        &[0x7fc0, 0x7f80, 0x3f80, 0x0001, 0, 0xffc1],
        &[0x7fc0, 0x7f80, 0x3f80, 0, 0, 0xffc1],
        &[0x7fc0, 0x7f80, 0, 0, 0, 0xffc1],
        &[0x7fc0, 0, 0, 0, 0, 0xffc1],
        &[],
        &[0, 0, 0, 0, 0, 0],
    ];
    for (r, want) in steps.iter().enumerate() {
        let out = Pruning::new(r as f64 / 6.0).prune_bf16(&b, 2, 3).unwrap();
        if want.is_empty() {
            // One NaN of two is pruned, chosen by the seed's tie hash.
            assert_eq!(out.iter().filter(|&&v| v == 0).count(), 5);
            assert!(out.contains(&0x7fc0) ^ out.contains(&0xffc1));
        } else {
            assert_eq!(&out[..], *want, "{r} pruned");
        }
    }
}

#[test]
fn pruned_matrices_pack_at_the_requested_density() {
    let mut rng = rng(22);
    let (k, n) = (256, 96);
    let b = bf16_matrix(&mut rng, k, n, 1.0);
    for sparsity in [0.5, 0.7, 0.9] {
        let out = Pruning { sparsity, scope: PruneScope::PerColumn, seed: 3 }.prune_bf16(&b, k, n).unwrap();
        let s = SparseBf16::from_dense_bf16(&out, k, n).unwrap();
        assert_eq!(s.nnz(), n * (k - prune_count(k, sparsity)));
        assert_eq!(s.to_dense_bf16(), out);
    }
}

#[test]
fn bad_requests_are_typed_errors() {
    for s in [-0.1, 1.0001, f64::NAN, f64::INFINITY] {
        assert!(matches!(Pruning::new(s).prune_i8(&[1; 4], 2, 2), Err(SparseError::Sparsity(_))), "{s}");
    }
    assert!(matches!(Pruning::new(0.5).prune_bf16(&[1; 5], 2, 2), Err(SparseError::Length { .. })));
    assert_eq!(Pruning::new(0.5).prune_i8(&[], 0, 2).unwrap_err(), SparseError::Empty { k: 0, n: 2 });
    assert!(matches!(Pruning::new(0.5).prune_i8(&[1], usize::MAX, 2), Err(SparseError::TooLarge { .. })));
}
