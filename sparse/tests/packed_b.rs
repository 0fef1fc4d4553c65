//! The dense tile rows rebuilt from masks + values are the rows
//! `tilejit_kernels::pack::PackedB` holds for the same B: a sparse kernel
//! that expands them feeds the TDP the same tile as the dense kernel.

mod common;

use common::*;
use proptest::prelude::*;
use tilejit_kernels::pack::{BLayout, PackedB};
use tilejit_sparse::{Element, SparseBf16, SparseI8, SparseMatrix, ROW_BYTES, TILE_ROWS};

/// The 64-byte row of K group `g` of `panel` in `p` (zeros past its padded K).
fn packed_row(p: &PackedB, panel: usize, g: usize) -> [u8; 64] {
    let kg = usize::from(p.k_groups_per_tdp());
    let (step, row) = (g / kg, g % kg);
    if step >= p.k_steps() {
        return [0; 64];
    }
    let at = p.tile_offset(step, panel) + row * ROW_BYTES;
    p.as_bytes()[at..at + ROW_BYTES].try_into().unwrap()
}

/// Same from the sparse matrix, through the public masks/values/offsets
/// only (a kernel's view), independently of `Tile::row_bytes`: start at the
/// tile's offset, skip the popcounts of the rows before, expand.
fn sparse_row<E: Element>(s: &SparseMatrix<E>, panel: usize, g: usize) -> [u8; 64] {
    let mut out = [0; 64];
    let (q, r) = (g / TILE_ROWS, g % TILE_ROWS);
    let Some(t) = s.tile_index(panel, q) else { return out };
    let masks = &s.masks()[t].0;
    let before: u32 = masks[..r].iter().map(|&m| E::mask_to_u64(m).count_ones()).sum();
    let mut at = s.offsets()[t] as usize + before as usize;
    let m = E::mask_to_u64(masks[r]);
    for i in 0..E::LANES {
        if m >> i & 1 == 1 {
            E::write_le(s.values()[at], &mut out[i * E::VALUE_BYTES..]);
            at += 1;
        }
    }
    out
}

fn compare<E: Element>(s: &SparseMatrix<E>, p: &PackedB) {
    let groups = (s.k_tiles() * TILE_ROWS).max(p.k_steps() * usize::from(p.k_groups_per_tdp()));
    assert_eq!(s.panels(), p.panels());
    for panel in 0..s.panels() {
        for g in 0..groups {
            let want = packed_row(p, panel, g);
            assert_eq!(sparse_row(s, panel, g), want, "panel {panel} group {g} ({:?})", p.layout());
            if g < s.k_tiles() * TILE_ROWS {
                let tile = s.tile(panel, g / TILE_ROWS).unwrap();
                assert_eq!(tile.row_bytes(g % TILE_ROWS), want);
            }
        }
    }
}

const LAYOUTS: [BLayout; 5] = [
    BLayout { k_groups_per_tdp: 16, k_block_steps: 16 },
    BLayout { k_groups_per_tdp: 16, k_block_steps: 3 },
    BLayout { k_groups_per_tdp: 8, k_block_steps: 2 },
    BLayout { k_groups_per_tdp: 5, k_block_steps: 1 },
    BLayout { k_groups_per_tdp: 1, k_block_steps: 7 },
];

fn check_bf16(k: usize, n: usize, density: f64, seed: u64, layout: BLayout) {
    let b = bf16_matrix(&mut rng(seed), k, n, density);
    compare(&SparseBf16::from_dense_bf16(&b, k, n).unwrap(), &PackedB::pack_bf16(&b, k, n, n, layout).unwrap());
}

fn check_i8(k: usize, n: usize, density: f64, seed: u64, layout: BLayout) {
    let b = i8_matrix(&mut rng(seed), k, n, density);
    compare(&SparseI8::from_dense_i8(&b, k, n).unwrap(), &PackedB::pack_s8(&b, k, n, n, layout).unwrap());
}

#[test]
fn whole_tiles_equal_packed_b_tiles_with_the_default_layout() {
    // With 16 groups per TDP a sparse tile is one PackedB tile: 1 KiB at
    // tile_offset(q, p), same K padding.
    for (k, n) in SHAPES {
        let b = bf16_matrix(&mut rng(5), k, n, 0.4);
        let s = SparseBf16::from_dense_bf16(&b, k, n).unwrap();
        let p = PackedB::pack_bf16(&b, k, n, n, BLayout::default()).unwrap();
        assert_eq!((s.k_tiles(), s.dense_bytes()), (p.k_steps(), p.as_bytes().len()));
        for panel in 0..s.panels() {
            for q in 0..s.k_tiles() {
                let at = p.tile_offset(q, panel);
                assert_eq!(s.tile(panel, q).unwrap().dense_rows().as_flattened(), &p.as_bytes()[at..at + 1024]);
            }
        }
        let b = i8_matrix(&mut rng(6), k, n, 0.4);
        let s = SparseI8::from_dense_i8(&b, k, n).unwrap();
        let p = PackedB::pack_s8(&b, k, n, n, BLayout::default()).unwrap();
        assert_eq!((s.k_tiles(), s.dense_bytes()), (p.k_steps(), p.as_bytes().len()));
        for panel in 0..s.panels() {
            for q in 0..s.k_tiles() {
                let at = p.tile_offset(q, panel);
                assert_eq!(s.tile(panel, q).unwrap().dense_rows().as_flattened(), &p.as_bytes()[at..at + 1024]);
            }
        }
    }
}

#[test]
fn listed_shapes_match_every_layout() {
    for (i, (k, n)) in SHAPES.into_iter().enumerate() {
        for layout in LAYOUTS {
            for density in [0.0, 0.5, 1.0] {
                check_bf16(k, n, density, i as u64, layout);
                check_i8(k, n, density, i as u64, layout);
            }
        }
    }
}

#[test]
fn special_bf16_rows_match() {
    let (k, n) = (70, 33);
    let b: Vec<u16> = (0..k * n).map(|i| if i % 2 == 0 { BF16_SPECIALS[i % 12] } else { 0 }).collect();
    let s = SparseBf16::from_dense_bf16(&b, k, n).unwrap();
    for layout in LAYOUTS {
        compare(&s, &PackedB::pack_bf16(&b, k, n, n, layout).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_shapes_match_packed_b(
        k in 1usize..=300, n in 1usize..=300, density in 0.0f64..=1.0, seed in any::<u64>(),
        layout in prop::sample::select(LAYOUTS.to_vec()),
    ) {
        check_bf16(k, n, density, seed, layout);
        check_i8(k, n, density, seed, layout);
    }
}
