//! Data for the sparse tests.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// bf16 patterns a kernel must see unchanged: -0.0, +-inf, NaNs (quiet,
/// signalling, negative), subnormals, the extremes.
pub const BF16_SPECIALS: [u16; 12] =
    [0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffff, 0x0001, 0x807f, 0x007f, 0x7f7f, 0xff7f, 0x0080];

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A bf16 that is never +0.0: mostly ordinary values, some specials.
pub fn nonzero_bf16(rng: &mut StdRng) -> u16 {
    if rng.random_bool(0.1) {
        BF16_SPECIALS[rng.random_range(0..BF16_SPECIALS.len())]
    } else {
        rng.random_range(1..=u16::MAX)
    }
}

pub fn nonzero_i8(rng: &mut StdRng) -> i8 {
    loop {
        let v: i8 = rng.random();
        if v != 0 {
            return v;
        }
    }
}

/// bf16 B[k][n] with each element non-zero with probability `density`.
pub fn bf16_matrix(rng: &mut StdRng, k: usize, n: usize, density: f64) -> Vec<u16> {
    (0..k * n).map(|_| if rng.random_bool(density) { nonzero_bf16(rng) } else { 0 }).collect()
}

pub fn i8_matrix(rng: &mut StdRng, k: usize, n: usize, density: f64) -> Vec<i8> {
    (0..k * n).map(|_| if rng.random_bool(density) { nonzero_i8(rng) } else { 0 }).collect()
}

/// Shapes grouped by what they exercise: exact tiles, N tail, K tail,
/// both, degenerate, several tiles and panels.
pub const SHAPES: [(usize, usize); 12] = [
    (1, 1),
    (1, 16),
    (32, 16),
    (64, 16),
    (64, 32),
    (33, 17),
    (63, 15),
    (65, 47),
    (2, 300),
    (300, 2),
    (129, 129),
    (300, 300),
];
