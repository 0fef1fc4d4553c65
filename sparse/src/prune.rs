//! Unstructured magnitude pruning for experiments: zero the smallest
//! weights of B (or of each column of B) to a target sparsity,
//! deterministically for a seed.

use crate::elem::{Bf16, Element, Int8};
use crate::SparseError;

/// Which elements compete with each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PruneScope {
    /// All K x N elements of B together.
    Matrix,
    /// Each column of B (its K elements) on its own, so every output gets
    /// the same sparsity. A column of B is one output feature: a *row* of
    /// the weight as GGUF and PyTorch store it (`W[out][in]`, B = W^T).
    PerColumn,
}

/// A pruning request: prune `round(sparsity * count)` elements of each
/// group (`scope`), ties broken by `seed` (crate docs, "Pruning").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pruning {
    /// Fraction of elements to zero, `0.0..=1.0`.
    pub sparsity: f64,
    pub scope: PruneScope,
    pub seed: u64,
}

impl Pruning {
    /// Whole-matrix pruning with seed 0.
    pub fn new(sparsity: f64) -> Pruning {
        Pruning { sparsity, scope: PruneScope::Matrix, seed: 0 }
    }

    /// Prunes bf16 `B[K][N]` (bit patterns) by `|x|` as f32, every NaN
    /// ranking above +inf; returns the pruned copy (pruned elements are
    /// +0.0, the others keep their bits).
    pub fn prune_bf16(&self, b: &[u16], k: usize, n: usize) -> Result<Vec<u16>, SparseError> {
        self.prune::<Bf16>(b, k, n)
    }

    /// Prunes int8 `B[K][N]` by `|x|` (|-128| = 128); returns the pruned copy.
    pub fn prune_i8(&self, b: &[i8], k: usize, n: usize) -> Result<Vec<i8>, SparseError> {
        self.prune::<Int8>(b, k, n)
    }

    /// [`Self::prune_bf16`] / [`Self::prune_i8`] for any element family.
    pub fn prune<E: Element>(&self, b: &[E::Value], k: usize, n: usize) -> Result<Vec<E::Value>, SparseError> {
        if !(0.0..=1.0).contains(&self.sparsity) {
            return Err(SparseError::Sparsity(self.sparsity));
        }
        if k == 0 || n == 0 {
            return Err(SparseError::Empty { k, n });
        }
        let count = k.checked_mul(n).ok_or(SparseError::TooLarge { k: k as u64, n: n as u64 })?;
        if b.len() != count {
            return Err(SparseError::Length { what: "dense B (k * n values)", expected: count, actual: b.len() });
        }
        let mut out = b.to_vec();
        let mut scratch = Scratch::default();
        match self.scope {
            PruneScope::Matrix => {
                let r = prune_count(count, self.sparsity);
                prune_group::<E>(&mut out, |i| i, r, self.seed, &mut scratch);
            }
            PruneScope::PerColumn => {
                // Columns are gathered COLUMN_BLOCK at a time by row sweeps
                // (whole cache lines), pruned contiguously, scattered back.
                let r = prune_count(k, self.sparsity);
                let mut columns = vec![E::Value::default(); COLUMN_BLOCK * k];
                for c0 in (0..n).step_by(COLUMN_BLOCK) {
                    let width = (n - c0).min(COLUMN_BLOCK);
                    for (kk, row) in out.chunks_exact(n).enumerate() {
                        for (j, &v) in row[c0..c0 + width].iter().enumerate() {
                            columns[j * k + kk] = v;
                        }
                    }
                    for (j, column) in columns.chunks_exact_mut(k).take(width).enumerate() {
                        prune_group::<E>(column, |kk| kk * n + c0 + j, r, self.seed, &mut scratch);
                    }
                    for (kk, row) in out.chunks_exact_mut(n).enumerate() {
                        for (j, v) in row[c0..c0 + width].iter_mut().enumerate() {
                            *v = columns[j * k + kk];
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Elements pruned from a group of `count`: `round(sparsity * count)` in
/// f64, halves rounded away from zero (`f64::round`), at most `count`.
pub fn prune_count(count: usize, sparsity: f64) -> usize {
    ((sparsity * count as f64).round() as usize).min(count)
}

/// The tie-break key of the element at flat index `index` (`k * n + c` in
/// B, whatever the scope): SplitMix64 of `SplitMix64(seed) ^ index`.
/// Among elements of equal magnitude the smaller key is pruned first (the
/// smaller index if two keys collide).
pub fn tie_hash(seed: u64, index: usize) -> u64 {
    splitmix64(splitmix64(seed) ^ index as u64)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Default)]
struct Scratch {
    magnitudes: Vec<u16>,
    /// (tie hash, flat index, index in the group).
    ties: Vec<(u64, usize, usize)>,
}

/// Columns pruned together in per-column mode.
const COLUMN_BLOCK: usize = 64;

/// Zeros the `r` elements of `group` that come first in the order
/// (magnitude, tie hash of the flat index `flat(i)` of `group[i]`, flat
/// index): finds the r-th smallest magnitude `t` by selection, zeros
/// everything below it, and of the elements equal to `t` the ones with the
/// smallest keys. O(group) time, no full sort.
fn prune_group<E: Element>(
    group: &mut [E::Value],
    flat: impl Fn(usize) -> usize,
    r: usize,
    seed: u64,
    scratch: &mut Scratch,
) {
    if r == 0 {
        return;
    }
    let mags = &mut scratch.magnitudes;
    mags.clear();
    mags.extend(group.iter().map(|&v| E::magnitude(v)));
    let (_, &mut t, _) = mags.select_nth_unstable(r - 1);
    let below = mags.iter().filter(|&&m| m < t).count();
    let ties = &mut scratch.ties;
    ties.clear();
    ties.extend(
        group
            .iter()
            .enumerate()
            .filter(|&(_, &v)| E::magnitude(v) == t)
            .map(|(i, _)| (tie_hash(seed, flat(i)), flat(i), i)),
    );
    // The r-th smallest is t, so fewer than r are below it and at least
    // r - below are equal to it.
    let need = r - below;
    ties.select_nth_unstable(need - 1);
    for v in group.iter_mut() {
        if E::magnitude(*v) < t {
            *v = E::Value::default();
        }
    }
    for &(_, _, i) in &ties[..need] {
        group[i] = E::Value::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_half_away_from_zero() {
        assert_eq!(prune_count(3, 0.5), 2);
        assert_eq!(prune_count(5, 0.3), 2); // 1.5 -> 2
        assert_eq!(prune_count(10, 0.04), 0);
        assert_eq!(prune_count(10, 0.05), 1); // 0.5 -> 1
        assert_eq!(prune_count(7, 1.0), 7);
        assert_eq!(prune_count(7, 0.0), 0);
    }

    #[test]
    fn tie_hash_is_pinned() {
        // SplitMix64's published first output for state 0; the pruned sets of
        // saved experiments depend on these values, so they must not change.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(tie_hash(0, 0), 0xa706_dd2f_4d19_7e6f);
        assert_eq!(tie_hash(7, 3), 0x6baa_7868_1a99_f995);
        let all_ties = [5i8; 8];
        let p = Pruning { sparsity: 0.5, scope: PruneScope::Matrix, seed: 7 };
        assert_eq!(p.prune_i8(&all_ties, 2, 4).unwrap(), [5, 0, 0, 0, 5, 5, 5, 0]);
        assert_eq!(Pruning { seed: 8, ..p }.prune_i8(&all_ties, 2, 4).unwrap(), [0, 0, 5, 0, 5, 5, 0, 5]);
    }

    #[test]
    fn bf16_magnitudes_order_like_f32_with_nan_on_top() {
        let m = Bf16::magnitude;
        assert_eq!(m(0x8000), 0); // -0.0
        assert!(m(0x0001) > m(0x0000)); // subnormal above zero
        assert!(m(0xbf80) == m(0x3f80)); // |-1| = |1|
        assert!(m(0x7f80) > m(0x7f7f)); // inf above max finite
        assert_eq!(m(0x7fc0), m(0xffff)); // all NaN equal
        assert!(m(0x7f81) > m(0x7f80)); // NaN above inf
        assert_eq!(Int8::magnitude(-128), 128);
        assert_eq!(Int8::magnitude(-3), Int8::magnitude(3));
    }
}
