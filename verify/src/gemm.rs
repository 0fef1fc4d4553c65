//! Reference GEMMs: the exact result a kernel must produce, defined by the
//! order of instructions it claims to follow (docs/NUMERICS.md,
//! "Consequences" of TDPBF16PS, and "VDPBF16PS").
//!
//! All matrices are row-major with dense leading dimensions: A is m x k
//! (`a[i*k + p]`), B is k x n (`b[p*n + j]`), C is m x n (`c[i*n + j]`) and
//! holds the initial values on entry (zeros for overwrite semantics). The
//! packed layouts the kernels use (VNNI pairs, tiles) are their own
//! business; the reference sees logical matrices only, and computes one
//! output element at a time in the plainest way.
//!
//! These are test oracles: inconsistent slice lengths are a bug in the
//! test, so they panic (with a message) instead of returning an error.

use crate::amx::{byte_value, tdpbf16ps_bits, Int8Signedness};
use crate::avx512::vdpbf16ps_bits;

/// Panics unless the slices hold exactly m x k, k x n and m x n elements.
fn check_shapes(m: usize, n: usize, k: usize, a: usize, b: usize, c: usize) {
    assert_eq!(a, m * k, "A must hold m*k = {m}*{k} elements");
    assert_eq!(b, k * n, "B must hold k*n = {k}*{n} elements");
    assert_eq!(c, m * n, "C must hold m*n = {m}*{n} elements");
}

/// Int8 GEMM: `c[i][j] += sum_p a[i][p] * b[p][j]` with bytes read per
/// `sign` and wrapping modulo 2^32, as the AMX int8 dot products (and
/// VPDPBUSD for [`Int8Signedness::US`]) compute it (docs/NUMERICS.md,
/// "Integer dot products"). Integer wrapping addition is associative, so
/// this one result covers every blocking, K chunking and thread count.
///
/// # Panics
/// On inconsistent slice lengths.
pub fn gemm_i8(sign: Int8Signedness, m: usize, n: usize, k: usize, a: &[u8], b: &[u8], c: &mut [i32]) {
    check_shapes(m, n, k, a.len(), b.len(), c.len());
    for i in 0..m {
        for j in 0..n {
            let mut acc = c[i * n + j];
            for p in 0..k {
                let x = byte_value(a[i * k + p], sign.a_signed());
                let y = byte_value(b[p * n + j], sign.b_signed());
                acc = acc.wrapping_add(x * y);
            }
            c[i * n + j] = acc;
        }
    }
}

/// Row `i` of A and column `j` of B, zero-padded to `k_padded` elements.
fn gather(a: &[u16], b: &[u16], i: usize, j: usize, n: usize, k: usize, k_padded: usize) -> (Vec<u16>, Vec<u16>) {
    let mut row = vec![0u16; k_padded];
    let mut col = vec![0u16; k_padded];
    row[..k].copy_from_slice(&a[i * k..(i + 1) * k]);
    for p in 0..k {
        col[p] = b[p * n + j];
    }
    (row, col)
}

/// bf16 GEMM as an AMX kernel computes it: K is padded with zeros (+0 in
/// both A and B) up to a multiple of `2 * pairs_per_tdp` elements, then for
/// each chunk of `pairs_per_tdp` pairs, in increasing k, every C element
/// goes through one [`crate::amx::tdpbf16ps`]. Within a chunk, lane 2p is
/// padded-K index `chunk_start + 2p` and lane 2p+1 is `chunk_start + 2p+1`.
///
/// `pairs_per_tdp` is a parameter because the bits depend on it: each TDP
/// restarts its two chains at +0 and adds C last, so one TDP over 16 pairs
/// and two over 8 differ (in 59 % of outputs on random data, measured,
/// docs/NUMERICS.md "Consequences"). Hardware allows at most 16; larger
/// values are accepted to model hypothetical splits.
///
/// Zero padding inside the last chunk leaves every result unchanged except
/// one corner the model predicts: a chain that ended at -0 (a negative
/// product flushed by FTZ) becomes +0 after `-0 + 0*0`, so if both chains
/// end at -0 and C is -0 (or a negative subnormal), padding turns a -0
/// result into +0. A kernel that pads K must therefore be compared with
/// this padded reference, not with one unpadded TDP. With `k == 0` there is
/// no chunk at all and C is left as it is.
///
/// # Panics
/// On inconsistent slice lengths, or if `pairs_per_tdp` is zero.
pub fn gemm_bf16_amx(m: usize, n: usize, k: usize, a: &[u16], b: &[u16], c: &mut [f32], pairs_per_tdp: usize) {
    check_shapes(m, n, k, a.len(), b.len(), c.len());
    assert!(pairs_per_tdp > 0, "pairs_per_tdp must be at least 1");
    let chunk = 2 * pairs_per_tdp;
    let k_padded = k.div_ceil(chunk) * chunk;
    for i in 0..m {
        for j in 0..n {
            let (row, col) = gather(a, b, i, j, n, k, k_padded);
            let mut acc = c[i * n + j].to_bits();
            for (a_chunk, b_chunk) in row.chunks_exact(chunk).zip(col.chunks_exact(chunk)) {
                acc = tdpbf16ps_bits(acc, a_chunk, b_chunk);
            }
            c[i * n + j] = f32::from_bits(acc);
        }
    }
}

/// bf16 GEMM as a VDPBF16PS kernel computes it: K padded with zeros to even,
/// one accumulator per output starting from C, pairs in increasing k, each
/// pair through one [`crate::avx512::vdpbf16ps`] (odd element first). Not
/// bit-compatible with [`gemm_bf16_amx`] (docs/NUMERICS.md, "VDPBF16PS").
///
/// Padding with one zero pair only happens for odd k; the -0 corner of
/// [`gemm_bf16_amx`] applies here too, to an accumulator that is -0.
///
/// # Panics
/// On inconsistent slice lengths.
pub fn gemm_bf16_vdpbf16ps(m: usize, n: usize, k: usize, a: &[u16], b: &[u16], c: &mut [f32]) {
    check_shapes(m, n, k, a.len(), b.len(), c.len());
    let k_padded = k.div_ceil(2) * 2;
    for i in 0..m {
        for j in 0..n {
            let (row, col) = gather(a, b, i, j, n, k, k_padded);
            let mut acc = c[i * n + j].to_bits();
            for (pa, pb) in row.chunks_exact(2).zip(col.chunks_exact(2)) {
                acc = vdpbf16ps_bits(acc, [pa[0], pa[1]], [pb[0], pb[1]]);
            }
            c[i * n + j] = f32::from_bits(acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bf16::{bf16_to_f32, f32_to_bf16};
    use crate::report::{assert_same_f32, assert_same_i32, first_mismatch_f32};
    use crate::strategies::{any_bf16, any_f32_bits, fill_bf16, fill_f32, fill_i8, Bf16Dist};
    use approx::assert_abs_diff_eq;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Shapes grouped by what they exercise: no tail, K tails of every
    /// parity, degenerate sizes, K beyond one 16-pair TDP.
    const SHAPES: [(usize, usize, usize); 9] =
        [(1, 1, 1), (2, 3, 2), (3, 2, 5), (4, 4, 32), (2, 5, 33), (5, 3, 67), (1, 7, 100), (0, 3, 4), (3, 3, 0)];

    fn bf16_data(dist: Bf16Dist, len: usize, rng: &mut StdRng) -> Vec<u16> {
        let mut v = vec![0u16; len];
        fill_bf16(dist, rng, &mut v);
        v
    }

    #[test]
    fn i8_gemm_is_wrapping_integer_arithmetic() {
        let mut rng = StdRng::seed_from_u64(11);
        for sign in Int8Signedness::ALL {
            for &(m, n, k) in &SHAPES {
                let mut a = vec![0u8; m * k];
                let mut b = vec![0u8; k * n];
                fill_i8(&mut rng, &mut a);
                fill_i8(&mut rng, &mut b);
                let c0: Vec<i32> = (0..m * n).map(|x| i32::MAX - 3 * x as i32).collect();
                let mut c = c0.clone();
                gemm_i8(sign, m, n, k, &a, &b, &mut c);
                // Ground truth in i64, reduced mod 2^32 at the end.
                let widen = |x: u8, s: bool| if s { i64::from(x as i8) } else { i64::from(x) };
                let expected: Vec<i32> = (0..m * n)
                    .map(|idx| {
                        let (i, j) = (idx / n, idx % n);
                        let dot: i64 = (0..k)
                            .map(|p| widen(a[i * k + p], sign.a_signed()) * widen(b[p * n + j], sign.b_signed()))
                            .sum();
                        (i64::from(c0[idx]) + dot) as u64 as u32 as i32
                    })
                    .collect();
                assert_same_i32(&expected, &c, n.max(1));
            }
        }
    }

    #[test]
    fn i8_gemm_wraps_at_int32_max() {
        let mut c = [i32::MAX];
        gemm_i8(Int8Signedness::UU, 1, 1, 1, &[1], &[1], &mut c);
        assert_eq!(c, [i32::MIN]);
    }

    #[test]
    fn small_int_data_matches_plain_integer_arithmetic() {
        // Small integers make every partial sum exact, so every order (each
        // chunking, the VDPBF16PS order) must equal the integer result.
        let mut rng = StdRng::seed_from_u64(5);
        for &(m, n, k) in &SHAPES {
            let a = bf16_data(Bf16Dist::SmallInt, m * k, &mut rng);
            let b = bf16_data(Bf16Dist::SmallInt, k * n, &mut rng);
            let mut c0 = vec![0f32; m * n];
            fill_f32(Bf16Dist::SmallInt, &mut rng, &mut c0);
            let int = |x: u16| bf16_to_f32(x) as i64;
            let expected: Vec<f32> = (0..m * n)
                .map(|idx| {
                    let (i, j) = (idx / n, idx % n);
                    let dot: i64 = (0..k).map(|p| int(a[i * k + p]) * int(b[p * n + j])).sum();
                    (c0[idx] as i64 + dot) as f32
                })
                .collect();
            for pairs in [1, 2, 8, 16, 17] {
                let mut c = c0.clone();
                gemm_bf16_amx(m, n, k, &a, &b, &mut c, pairs);
                // A zero sum is +0 here (the chains start at +0).
                assert_same_f32(&expected, &c, n.max(1));
            }
            let mut c = c0.clone();
            gemm_bf16_vdpbf16ps(m, n, k, &a, &b, &mut c);
            // VDPBF16PS starts from C itself, so a -0 C could survive; the
            // SmallInt C fill contains +0 only, as its integers convert so.
            assert_same_f32(&expected, &c, n.max(1));
        }
    }

    /// One row, K = 16 pairs: +M at pair 0 and -M at pair 15 (even lanes),
    /// every other lane 1; B all ones. Exact answer 30.
    fn swamping_row() -> (Vec<u16>, Vec<u16>) {
        let m = f32_to_bf16(16_777_216.0); // 2^24
        let mut a = vec![f32_to_bf16(1.0); 32];
        a[0] = m;
        a[30] = m | 0x8000;
        (a, vec![f32_to_bf16(1.0); 32])
    }

    #[test]
    fn k_chunking_changes_the_bits() {
        let (a, b) = swamping_row();
        let run = |pairs| {
            let mut c = [0f32];
            gemm_bf16_amx(1, 1, 32, &a, &b, &mut c, pairs);
            c[0]
        };
        // One TDP: the even chain loses all 14 ones to +M, then M - M = 0;
        // the odd chain holds 16. Smaller chunks add partial sums into C
        // between TDPs and lose fewer ones. Worked out by hand:
        assert_eq!(run(16), 16.0);
        assert_eq!(run(8), 23.0);
        assert_eq!(run(4), 27.0);
        assert_eq!(run(2), 29.0);
        assert_eq!(run(1), 29.0);
        // VDPBF16PS: one accumulator, M swamps every 1.
        let mut c = [0f32];
        gemm_bf16_vdpbf16ps(1, 1, 32, &a, &b, &mut c);
        assert_eq!(c[0], 0.0);
    }

    #[test]
    fn k_chunking_differs_on_random_data() {
        let mut rng = StdRng::seed_from_u64(9);
        let (m, n, k) = (8, 8, 32);
        let a = bf16_data(Bf16Dist::Normal, m * k, &mut rng);
        let b = bf16_data(Bf16Dist::Normal, k * n, &mut rng);
        // Normal bf16 products have 16 bits, so partial sums of a few of
        // them are often exact; a full-precision C makes the extra C + t
        // rounding of the split visible in most outputs.
        let mut one = vec![0f32; m * n];
        fill_f32(Bf16Dist::Normal, &mut rng, &mut one);
        let mut two = one.clone();
        gemm_bf16_amx(m, n, k, &a, &b, &mut one, 16);
        gemm_bf16_amx(m, n, k, &a, &b, &mut two, 8);
        let diff = first_mismatch_f32(&one, &two).expect("chunkings should differ");
        assert!(diff.count > m * n / 5, "only {} of {} differ", diff.count, m * n);
    }

    /// Tolerance for a reference result against f64 ground truth: each of
    /// the at most k + 2 roundings of a partial sum errs by at most 2^-24
    /// relative to that partial sum, itself bounded by sum |terms|.
    fn assert_close_to_exact(k: usize, c0: f32, terms: &[f64], got: f32) {
        let exact = f64::from(c0) + terms.iter().sum::<f64>();
        let magnitude = f64::from(c0).abs() + terms.iter().map(|t| t.abs()).sum::<f64>();
        let relative = (k + 2) as f64 * f64::powi(2.0, -24);
        assert_abs_diff_eq!(f64::from(got), exact, epsilon = relative * magnitude);
    }

    #[test]
    fn random_normal_data_is_close_to_f64_truth() {
        let mut rng = StdRng::seed_from_u64(21);
        for &(m, n, k) in &SHAPES {
            let a = bf16_data(Bf16Dist::Normal, m * k, &mut rng);
            let b = bf16_data(Bf16Dist::Normal, k * n, &mut rng);
            let mut c0 = vec![0f32; m * n];
            fill_f32(Bf16Dist::Normal, &mut rng, &mut c0);
            let mut amx = c0.clone();
            gemm_bf16_amx(m, n, k, &a, &b, &mut amx, 16);
            let mut avx = c0.clone();
            gemm_bf16_vdpbf16ps(m, n, k, &a, &b, &mut avx);
            for idx in 0..m * n {
                let (i, j) = (idx / n, idx % n);
                let terms: Vec<f64> = (0..k)
                    .map(|p| f64::from(bf16_to_f32(a[i * k + p])) * f64::from(bf16_to_f32(b[p * n + j])))
                    .collect();
                assert_close_to_exact(k, c0[idx], &terms, amx[idx]);
                assert_close_to_exact(k, c0[idx], &terms, avx[idx]);
            }
        }
    }

    #[test]
    fn every_distribution_runs_and_specials_propagate() {
        let mut rng = StdRng::seed_from_u64(33);
        let (m, n, k) = (4, 4, 40);
        for dist in Bf16Dist::ALL {
            let a = bf16_data(dist, m * k, &mut rng);
            let b = bf16_data(dist, k * n, &mut rng);
            let mut c = vec![0f32; m * n];
            fill_f32(dist, &mut rng, &mut c);
            let c_before = c.clone();
            gemm_bf16_amx(m, n, k, &a, &b, &mut c, 16);
            // A NaN C always comes out as the same NaN, quieted.
            for (before, after) in c_before.iter().zip(&c) {
                if before.is_nan() {
                    assert_eq!(after.to_bits(), before.to_bits() | 0x0040_0000, "{dist:?}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Appending a zero pair to a TDP changes nothing but, possibly, a
        /// -0 result into +0 (see gemm_bf16_amx docs).
        #[test]
        fn zero_padding_keeps_bits_up_to_zero_sign(
            c in any_f32_bits(),
            lanes in proptest::collection::vec((any_bf16(), any_bf16()), 0..12),
        ) {
            let k2 = lanes.len() / 2 * 2;
            let mut a: Vec<u16> = lanes[..k2].iter().map(|l| l.0).collect();
            let mut b: Vec<u16> = lanes[..k2].iter().map(|l| l.1).collect();
            let plain = tdpbf16ps_bits(c, &a, &b);
            a.extend([0, 0]);
            b.extend([0, 0]);
            let padded = tdpbf16ps_bits(c, &a, &b);
            prop_assert!(plain == padded || (plain == 0x8000_0000 && padded == 0),
                "plain {plain:#010x} padded {padded:#010x}");
        }

        /// One TDP over K pairs equals the GEMM reference with one chunk.
        #[test]
        fn gemm_amx_is_the_instruction_model(
            c in any_f32_bits(),
            lanes in proptest::collection::vec((any_bf16(), any_bf16()), 16),
        ) {
            let a: Vec<u16> = lanes.iter().map(|l| l.0).collect();
            let b: Vec<u16> = lanes.iter().map(|l| l.1).collect();
            let mut out = [f32::from_bits(c)];
            gemm_bf16_amx(1, 1, 16, &a, &b, &mut out, 8);
            prop_assert_eq!(out[0].to_bits(), tdpbf16ps_bits(c, &a, &b));
        }
    }

    #[test]
    fn padding_corner_really_occurs() {
        // Both chains flush to -0 (2^-63 * -2^-64 = -2^-127), C = -0.
        let a = [0x2000, 0x2000];
        let b = [0x9F80, 0x9F80];
        assert_eq!(tdpbf16ps_bits(0x8000_0000, &a, &b), 0x8000_0000);
        assert_eq!(tdpbf16ps_bits(0x8000_0000, &[0x2000, 0x2000, 0, 0], &[0x9F80, 0x9F80, 0, 0]), 0);
        let mut c = [-0.0f32];
        gemm_bf16_amx(1, 1, 2, &a, &b, &mut c, 2);
        assert_eq!(c[0].to_bits(), 0);
    }

    #[test]
    #[should_panic(expected = "B must hold")]
    fn inconsistent_lengths_panic() {
        gemm_bf16_amx(1, 1, 2, &[0, 0], &[0], &mut [0.0], 1);
    }
}
