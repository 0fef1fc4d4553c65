//! The sparse AVX-512 kernels (`tilejit_sparse::avx512`), through the
//! crate's driver (`tilejit::sparse`, AVX-512 forced, one thread) and
//! directly, against the oracle, bit for bit: bf16 against `gemm_bf16_amx(.., 16)` (TDPBF16PS,
//! 16 pairs per chunk, NaNs compared by their bits too: the dense
//! emulation reproduces the AMX NaN rules, docs/NUMERICS.md), int8 against
//! `gemm_i8(SS, ..)`. Every comparison goes through `check_f32` /
//! `check_i32`, and the tamper tests at the end show that they fail when a
//! mask bit or a value offset is wrong.

// The sparse crate's test data (shapes, specials, seeded RNG), shared
// rather than copied: these tests moved here with the drivers they call.
#[path = "../sparse/tests/common/mod.rs"]
mod sparse_data;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::Rng;
use sparse_data::*;
use tilejit::gemm::{GemmError, GemmOptions, ShapeError};
use tilejit::isa::Isa;
use tilejit::sparse::{gemm_sparse_bf16, gemm_sparse_i8, SparseWeights};
use tilejit_kernels::spec::CInit;
use tilejit_sparse::avx512::{
    check_cpu, int8_col_bias, Avx512Error, PreparedA, SparseAvx512Args, SparseAvx512Kernel, SparseAvx512Kind,
    SparseAvx512Spec, SparseI8Weights,
};
use tilejit_sparse::{PruneScope, Pruning, SparseBf16, SparseI8};
use tilejit_verify::paths::report_path;
use tilejit_verify::strategies::random_bf16;
use tilejit_verify::{first_mismatch_f32, first_mismatch_i32, gemm_bf16_amx, Bf16Dist, Int8Signedness};

/// Whether the `kind` kernels can run here (with `TILEJIT_HIDE` applied);
/// the path line, with the reason when they cannot, is printed once per
/// test and kind (proptest calls this for every case).
fn runnable(test: &str, kind: SparseAvx512Kind) -> bool {
    report_path(&format!("sparse {test} {}", kind.name()), "avx512", check_cpu(kind))
}

fn check_f32(expected: &[f32], actual: &[f32], n: usize) -> Result<(), String> {
    match first_mismatch_f32(expected, actual) {
        None => Ok(()),
        Some(m) => Err(format!("{m} (row {}, col {} of {n} columns)", m.index / n, m.index % n)),
    }
}

fn check_i32(expected: &[i32], actual: &[i32], n: usize) -> Result<(), String> {
    match first_mismatch_i32(expected, actual) {
        None => Ok(()),
        Some(m) => Err(format!("{m} (row {}, col {} of {n} columns)", m.index / n, m.index % n)),
    }
}

/// The AVX-512 path of the crate's sparse driver on one thread: row groups
/// of up to 4 rows, every panel in one call.
const AVX512_1T: GemmOptions = GemmOptions { threads: 1, isa: Some(Isa::Avx512), ..GemmOptions::DEFAULT };

#[allow(clippy::too_many_arguments)]
fn gemm_bf16(
    m: usize,
    a: &[u16],
    lda: usize,
    w: &SparseBf16,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) -> Result<(), GemmError> {
    let w = SparseWeights::from_sparse_bf16(w.clone());
    gemm_sparse_bf16(m, a, lda, &w, c, ldc, accumulate, &AVX512_1T)
}

#[allow(clippy::too_many_arguments)]
fn gemm_i8(
    m: usize,
    a: &[i8],
    lda: usize,
    w: &SparseI8,
    c: &mut [i32],
    ldc: usize,
    accumulate: bool,
) -> Result<(), GemmError> {
    let w = SparseWeights::from_sparse_i8(w.clone());
    gemm_sparse_i8(m, a, lda, &w, c, ldc, accumulate, &AVX512_1T)
}

/// How a test matrix is made sparse.
#[derive(Clone, Copy, Debug)]
enum Sparsity {
    /// Each element zero with this probability (0.0 and 1.0 included).
    Random(f64),
    /// Magnitude pruning of a dense random matrix.
    Pruned(f64, PruneScope),
}

fn sparsity_strategy() -> impl Strategy<Value = Sparsity> {
    prop_oneof![
        Just(Sparsity::Random(0.0)),
        Just(Sparsity::Random(1.0)),
        (0.0f64..1.0).prop_map(Sparsity::Random),
        (0.0f64..=1.0).prop_map(|s| Sparsity::Pruned(s, PruneScope::Matrix)),
        (0.0f64..=1.0).prop_map(|s| Sparsity::Pruned(s, PruneScope::PerColumn)),
    ]
}

/// A bf16 that is never +0.0: from `dist`, with the format's specials
/// (NaN, inf, -0.0, subnormals) mixed in.
fn weight_bf16(rng: &mut StdRng, dist: Bf16Dist) -> u16 {
    if rng.random_bool(0.05) {
        return BF16_SPECIALS[rng.random_range(0..BF16_SPECIALS.len())];
    }
    loop {
        let v = random_bf16(dist, rng);
        if v != 0 {
            return v;
        }
    }
}

fn sparse_bf16(rng: &mut StdRng, k: usize, n: usize, dist: Bf16Dist, sparsity: Sparsity) -> (Vec<u16>, SparseBf16) {
    let b = match sparsity {
        Sparsity::Random(s) => {
            (0..k * n).map(|_| if rng.random_bool(s) { 0 } else { weight_bf16(rng, dist) }).collect()
        }
        Sparsity::Pruned(s, scope) => {
            let dense: Vec<u16> = (0..k * n).map(|_| weight_bf16(rng, dist)).collect();
            Pruning { sparsity: s, scope, seed: rng.random() }.prune_bf16(&dense, k, n).unwrap()
        }
    };
    let w = SparseBf16::from_dense_bf16(&b, k, n).unwrap();
    (b, w)
}

fn sparse_i8(rng: &mut StdRng, k: usize, n: usize, sparsity: Sparsity) -> (Vec<i8>, SparseI8) {
    let b = match sparsity {
        Sparsity::Random(s) => (0..k * n).map(|_| if rng.random_bool(s) { 0 } else { nonzero_i8(rng) }).collect(),
        Sparsity::Pruned(s, scope) => {
            let dense: Vec<i8> = (0..k * n).map(|_| rng.random()).collect();
            Pruning { sparsity: s, scope, seed: rng.random() }.prune_i8(&dense, k, n).unwrap()
        }
    };
    let w = SparseI8::from_dense_i8(&b, k, n).unwrap();
    (b, w)
}

/// A (m x k, dense) from `dist` with some specials, C from `dist` with some
/// specials and -0.0 (used when accumulating).
fn bf16_operands(rng: &mut StdRng, m: usize, n: usize, k: usize, dist: Bf16Dist) -> (Vec<u16>, Vec<f32>) {
    let a = (0..m * k)
        .map(|_| match rng.random_range(0..20) {
            0 => BF16_SPECIALS[rng.random_range(0..BF16_SPECIALS.len())],
            1 => 0,
            _ => random_bf16(dist, rng),
        })
        .collect();
    let c = (0..m * n)
        .map(|_| match rng.random_range(0..10) {
            0 => -0.0,
            1 => f32::from_bits(u32::from(BF16_SPECIALS[rng.random_range(0..BF16_SPECIALS.len())]) << 16),
            2 => f32::from_bits(rng.random_range(1..0x0080_0000) | (rng.random::<u32>() & 0x8000_0000)),
            _ => f32::from_bits(u32::from(random_bf16(dist, rng)) << 16),
        })
        .collect();
    (a, c)
}

fn bf16_reference(m: usize, n: usize, k: usize, a: &[u16], b: &[u16], c0: &[f32], accumulate: bool) -> Vec<f32> {
    let mut c = if accumulate { c0.to_vec() } else { vec![0.0; m * n] };
    gemm_bf16_amx(m, n, k, a, b, &mut c, 16);
    c
}

fn i8_reference(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], c0: &[i32], accumulate: bool) -> Vec<i32> {
    let mut c = if accumulate { c0.to_vec() } else { vec![0; m * n] };
    let bytes = |v: &[i8]| v.iter().map(|&x| x as u8).collect::<Vec<u8>>();
    tilejit_verify::gemm_i8(Int8Signedness::SS, m, n, k, &bytes(a), &bytes(b), &mut c);
    c
}

/// One bf16 case through the safe wrapper; `Err` describes the first
/// difference from the oracle.
fn bf16_case(
    (m, n, k): (usize, usize, usize),
    seed: u64,
    dist: Bf16Dist,
    sparsity: Sparsity,
    accumulate: bool,
) -> Result<(), String> {
    let mut rng = rng(seed);
    let (b, w) = sparse_bf16(&mut rng, k, n, dist, sparsity);
    let (a, c0) = bf16_operands(&mut rng, m, n, k, dist);
    let want = bf16_reference(m, n, k, &a, &b, &c0, accumulate);
    let mut got = c0.clone();
    gemm_bf16(m, &a, k, &w, &mut got, n, accumulate).map_err(|e| e.to_string())?;
    check_f32(&want, &got, n)
}

fn i8_case((m, n, k): (usize, usize, usize), seed: u64, sparsity: Sparsity, accumulate: bool) -> Result<(), String> {
    let mut rng = rng(seed);
    let (b, w) = sparse_i8(&mut rng, k, n, sparsity);
    let a: Vec<i8> = (0..m * k).map(|_| rng.random()).collect();
    let c0: Vec<i32> = (0..m * n).map(|_| rng.random()).collect();
    let want = i8_reference(m, n, k, &a, &b, &c0, accumulate);
    let mut got = c0.clone();
    gemm_i8(m, &a, k, &w, &mut got, n, accumulate).map_err(|e| e.to_string())?;
    check_i32(&want, &got, n)
}

fn dist_strategy() -> impl Strategy<Value = Bf16Dist> {
    proptest::sample::select(Bf16Dist::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    /// M 1..=4 is one kernel call; 5..=9 also runs the wrapper's loop over
    /// row groups (4 + 4 + 1 rows use two kernels).
    #[test]
    fn bf16_matches_oracle(
        m in prop_oneof![4 => 1usize..=4, 1 => 5usize..=9],
        n in 1usize..300,
        k in 1usize..300,
        seed: u64,
        dist in dist_strategy(),
        sparsity in sparsity_strategy(),
        accumulate: bool,
    ) {
        if !runnable("bf16_matches_oracle", SparseAvx512Kind::Bf16) { return Ok(()); }
        bf16_case((m, n, k), seed, dist, sparsity, accumulate).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn int8_matches_oracle(
        m in prop_oneof![4 => 1usize..=4, 1 => 5usize..=9],
        n in 1usize..300,
        k in 1usize..300,
        seed: u64,
        sparsity in sparsity_strategy(),
        accumulate: bool,
    ) {
        if !runnable("int8_matches_oracle", SparseAvx512Kind::Int8) { return Ok(()); }
        i8_case((m, n, k), seed, sparsity, accumulate).map_err(TestCaseError::fail)?;
    }
}

/// Every panels-per-pass a row count allows, with and without prefetch,
/// and the N range split into three calls (as threads would), on shapes
/// with K and N tails: each pass width (8/4/2/1 remainders) and the tail
/// mask in every position.
#[test]
fn every_spec_and_panel_split_matches_oracle() {
    for kind in [SparseAvx512Kind::Bf16, SparseAvx512Kind::Int8] {
        if !runnable("every_spec_and_panel_split_matches_oracle", kind) {
            continue;
        }
        for (case, &(k, n)) in [(33usize, 17usize), (64, 160), (95, 200), (300, 143), (1, 1)].iter().enumerate() {
            for m in 1..=4u8 {
                for p in 1..=SparseAvx512Spec::max_panels_per_pass(kind, m) {
                    for (pfv, pfm) in [(0, 0), (256, 2), (1024, 8)] {
                        for c_init in [CInit::Zero, CInit::Load] {
                            let seed = (case as u64) << 32 | u64::from(m) << 16 | u64::from(p) << 8 | u64::from(pfm);
                            let spec = SparseAvx512Spec {
                                panels_per_pass: p,
                                prefetch_values: pfv,
                                prefetch_masks: pfm,
                                ..SparseAvx512Spec::new(kind, k, n, m.into(), c_init)
                            };
                            let r = run_spec_split(spec, k, n, seed);
                            if let Err(e) = r {
                                panic!("{}: {e}", spec.name());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs `spec` over panels split in three ranges through the checked
/// kernel entry, compares with the oracle.
fn run_spec_split(spec: SparseAvx512Spec, k: usize, n: usize, seed: u64) -> Result<(), String> {
    let mut rng = rng(seed);
    let m = usize::from(spec.m_rows);
    let kernel = SparseAvx512Kernel::generate(spec).map_err(|e| e.to_string())?;
    let panels = n.div_ceil(16);
    let cut1 = rng.random_range(0..=panels);
    let cut2 = rng.random_range(cut1..=panels);
    let ranges = [0..cut1, cut1..cut2, cut2..panels];
    let accumulate = spec.c_init == CInit::Load;
    // C rows with a wider stride than n, to check ldc.
    let ldc = n + 3;
    let spread = |c: &[f32]| -> Vec<f32> {
        let mut out = vec![f32::from_bits(0x7fc0_dead); m * ldc];
        for i in 0..m {
            out[i * ldc..i * ldc + n].copy_from_slice(&c[i * n..(i + 1) * n]);
        }
        out
    };
    match spec.kind {
        SparseAvx512Kind::Bf16 => {
            let dist = Bf16Dist::ALL[rng.random_range(0..Bf16Dist::ALL.len())];
            let density = Sparsity::Random(rng.random_range(0.0..1.0));
            let (b, w) = sparse_bf16(&mut rng, k, n, dist, density);
            let (a, c0) = bf16_operands(&mut rng, m, n, k, dist);
            let want = bf16_reference(m, n, k, &a, &b, &c0, accumulate);
            let prepared = PreparedA::bf16(m, &a, k, k).map_err(|e| e.to_string())?;
            let mut got = spread(&c0);
            for r in ranges {
                kernel.run_bf16(&prepared, 0, &w, &mut got, ldc, r).map_err(|e| e.to_string())?;
            }
            let mut dense = Vec::new();
            for i in 0..m {
                dense.extend_from_slice(&got[i * ldc..i * ldc + n]);
                let pad = &got[i * ldc + n..(i + 1) * ldc];
                if pad.iter().any(|x| x.to_bits() != 0x7fc0_dead) {
                    return Err(format!("row {i}: the kernel wrote past column {n}"));
                }
            }
            check_f32(&want, &dense, n)
        }
        SparseAvx512Kind::Int8 => {
            let density = Sparsity::Random(rng.random_range(0.0..1.0));
            let (b, w) = sparse_i8(&mut rng, k, n, density);
            let a: Vec<i8> = (0..m * k).map(|_| rng.random()).collect();
            let c0: Vec<i32> = (0..m * n).map(|_| rng.random()).collect();
            let want = i8_reference(m, n, k, &a, &b, &c0, accumulate);
            let prepared = PreparedA::i8(m, &a, k, k).map_err(|e| e.to_string())?;
            let weights = SparseI8Weights::new(w);
            let mut got = vec![0x5a5a_5a5a; m * ldc];
            for i in 0..m {
                got[i * ldc..i * ldc + n].copy_from_slice(&c0[i * n..(i + 1) * n]);
            }
            for r in ranges {
                kernel.run_i8(&prepared, 0, &weights, &mut got, ldc, r).map_err(|e| e.to_string())?;
            }
            let mut dense = Vec::new();
            for i in 0..m {
                dense.extend_from_slice(&got[i * ldc..i * ldc + n]);
                if got[i * ldc + n..(i + 1) * ldc].iter().any(|&x| x != 0x5a5a_5a5a) {
                    return Err(format!("row {i}: the kernel wrote past column {n}"));
                }
            }
            check_i32(&want, &dense, n)
        }
    }
}

/// The fixed shapes of the format tests, every distribution, densities
/// 0, 0.5 and 1, both C modes, M = 1 and 4.
#[test]
fn fixed_shapes_match_oracle() {
    if !runnable("fixed_shapes_match_oracle", SparseAvx512Kind::Bf16)
        || !runnable("fixed_shapes_match_oracle", SparseAvx512Kind::Int8)
    {
        return;
    }
    for (s, &(k, n)) in SHAPES.iter().enumerate() {
        for m in [1, 4] {
            for sparsity in [0.0, 0.5, 1.0] {
                for accumulate in [false, true] {
                    for (d, &dist) in Bf16Dist::ALL.iter().enumerate() {
                        let seed = (s * 1000 + m * 100 + d * 10) as u64 + u64::from(accumulate);
                        if let Err(e) = bf16_case((m, n, k), seed, dist, Sparsity::Random(sparsity), accumulate) {
                            panic!("bf16 m={m} n={n} k={k} {dist:?} sparsity {sparsity} acc {accumulate}: {e}");
                        }
                    }
                    if let Err(e) = i8_case((m, n, k), s as u64, Sparsity::Random(sparsity), accumulate) {
                        panic!("int8 m={m} n={n} k={k} sparsity {sparsity} acc {accumulate}: {e}");
                    }
                }
            }
        }
    }
}

/// All-zero rows and tiles are still multiplied: an inf/NaN in A times an
/// all-zero W gives NaN, and C = -0.0 plus an all-zero tile gives +0.0
/// (TDPBF16PS over a zero B is not a no-op). A kernel that skipped empty
/// rows or tiles fails here.
#[test]
fn empty_rows_and_tiles_are_not_skipped() {
    if !runnable("empty_rows_and_tiles_are_not_skipped", SparseAvx512Kind::Bf16) {
        return;
    }
    let (k, n) = (70, 20);
    let mut b = vec![0u16; k * n];
    // One non-zero in column 3 at k = 40 (tile 1): every other tile row is empty.
    b[40 * n + 3] = 0x3f80;
    let w = SparseBf16::from_dense_bf16(&b, k, n).unwrap();
    for (what, a_val, c_val) in [
        ("inf in A", 0x7f80u16, 1.0f32),
        ("NaN in A", 0xffc1, 1.0),
        ("-0 in C", 0x3f80, -0.0),
        ("negative subnormal C (DAZ: -0)", 0x3f80, -f32::from_bits(5)),
        ("tiny negative products flushed to -0", 0x8001, -0.0),
    ] {
        let a: Vec<u16> = (0..2 * k).map(|i| if i % 7 == 0 { a_val } else { 0 }).collect();
        let c0 = vec![c_val; 2 * n];
        let want = bf16_reference(2, n, k, &a, &b, &c0, true);
        let mut got = c0.clone();
        gemm_bf16(2, &a, k, &w, &mut got, n, true).unwrap();
        if let Err(e) = check_f32(&want, &got, n) {
            panic!("{what}: {e}");
        }
        // Nothing to compare if the oracle itself left C alone.
        assert!(want.iter().zip(&c0).any(|(x, y)| x.to_bits() != y.to_bits()), "{what}: the case is vacuous");
    }
}

/// A caller's MXCSR (here: round toward zero, no DAZ/FTZ) is restored and
/// does not change the bits.
#[test]
fn mxcsr_is_restored_and_ignored() {
    if !runnable("mxcsr_is_restored_and_ignored", SparseAvx512Kind::Bf16) {
        return;
    }
    fn get() -> u32 {
        let mut v = 0u32;
        // SAFETY: stmxcsr writes 4 bytes to the given address.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) };
        v
    }
    fn set(v: u32) {
        // SAFETY: ldmxcsr of a valid MXCSR value (reserved bits clear).
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack)) };
    }
    let mut rng = rng(7);
    let (m, n, k) = (3, 40, 100);
    let (b, w) = sparse_bf16(&mut rng, k, n, Bf16Dist::Subnormal, Sparsity::Random(0.5));
    let (a, c0) = bf16_operands(&mut rng, m, n, k, Bf16Dist::Subnormal);
    let want = bf16_reference(m, n, k, &a, &b, &c0, true);
    let saved = get();
    let odd = (saved & !0x6000) | 0x6000; // round toward zero
    set(odd);
    let mut got = c0.clone();
    let r = gemm_bf16(m, &a, k, &w, &mut got, n, true);
    let after = get();
    set(saved);
    r.unwrap();
    assert_eq!(after, odd, "MXCSR not restored");
    check_f32(&want, &got, n).unwrap();
}

/// Typed errors for every bad input of the safe entries, never a panic.
#[test]
fn bad_inputs_are_typed_errors() {
    if !runnable("bad_inputs_are_typed_errors", SparseAvx512Kind::Bf16)
        || !runnable("bad_inputs_are_typed_errors", SparseAvx512Kind::Int8)
    {
        return;
    }
    let (k, n) = (40, 20);
    let b = vec![0x3f80u16; k * n];
    let w = SparseBf16::from_dense_bf16(&b, k, n).unwrap();
    let a = vec![0x3f80u16; 2 * k];
    let mut c = vec![0f32; 2 * n];
    let shape = |r: Result<(), GemmError>, want: ShapeError| match r {
        Err(GemmError::Shape(e)) => assert_eq!(e, want),
        other => panic!("expected {want:?}, got {other:?}"),
    };
    let short = |what, len, rows, row, stride| ShapeError::Short { what, len, rows, row, stride };
    shape(gemm_bf16(0, &a, k, &w, &mut c, n, false), ShapeError::NoRows);
    shape(gemm_bf16(2, &a, k - 1, &w, &mut c, n, false), ShapeError::Stride { what: "lda", stride: k - 1, row: k });
    shape(gemm_bf16(2, &a, k, &w, &mut c, n - 1, false), ShapeError::Stride { what: "ldc", stride: n - 1, row: n });
    let mut big_c = vec![0f32; 3 * n];
    shape(gemm_bf16(3, &a, k, &w, &mut big_c, n, false), short("A", 2 * k, 3, k, k));
    shape(gemm_bf16(2, &a, usize::MAX, &w, &mut c, n, false), short("A", 2 * k, 2, k, usize::MAX));
    shape(gemm_bf16(2, &a, k, &w, &mut c, usize::MAX / 2, false), short("C", 2 * n, 2, n, usize::MAX / 2));

    let kernel = SparseAvx512Kernel::generate(SparseAvx512Spec::for_matrix(&w, 2, CInit::Zero)).unwrap();
    let prepared = PreparedA::bf16(2, &a, k, k).unwrap();
    assert!(matches!(kernel.run_bf16(&prepared, 0, &w, &mut c, n, 0..3), Err(Avx512Error::Panels { .. })));
    assert!(matches!(kernel.run_bf16(&prepared, 1, &w, &mut c, n, 0..2), Err(Avx512Error::Length { .. })));
    let other = SparseBf16::from_dense_bf16(&vec![1u16; 70 * n], 70, n).unwrap();
    assert!(matches!(kernel.run_bf16(&prepared, 0, &other, &mut c, n, 0..2), Err(Avx512Error::Mismatch { .. })));
    let a8 = vec![1i8; 2 * k];
    let prepared8 = PreparedA::i8(2, &a8, k, k).unwrap();
    assert!(matches!(kernel.run_bf16(&prepared8, 0, &w, &mut c, n, 0..2), Err(Avx512Error::Mismatch { .. })));
    let w8 = SparseI8Weights::new(SparseI8::from_dense_i8(&vec![1i8; k * n], k, n).unwrap());
    let mut c8 = vec![0i32; 2 * n];
    assert!(matches!(kernel.run_i8(&prepared8, 0, &w8, &mut c8, n, 0..2), Err(Avx512Error::Mismatch { .. })));
    shape(gemm_i8(2, &a8, k, w8.matrix(), &mut c8[..n], n, false), short("C", n, 2, n, n));

    for bad in [
        SparseAvx512Spec { m_rows: 0, ..*kernel.spec() },
        SparseAvx512Spec { m_rows: 5, ..*kernel.spec() },
        SparseAvx512Spec { panels_per_pass: 0, ..*kernel.spec() },
        SparseAvx512Spec { panels_per_pass: 9, ..*kernel.spec() },
        SparseAvx512Spec { m_rows: 4, panels_per_pass: 2, ..*kernel.spec() },
        SparseAvx512Spec { k_tiles: 0, ..*kernel.spec() },
        SparseAvx512Spec { n: 0, ..*kernel.spec() },
        SparseAvx512Spec { k_tiles: u32::MAX, ..*kernel.spec() },
    ] {
        assert!(SparseAvx512Kernel::generate(bad).is_err(), "{bad:?} accepted");
    }
}

/// The int8 correction is `-128 * colsum` per column, padding columns 0.
#[test]
fn int8_col_bias_is_minus_128_colsum() {
    let mut rng = rng(3);
    let (k, n) = (130, 37);
    let (b, w) = sparse_i8(&mut rng, k, n, Sparsity::Random(0.3));
    let bias = int8_col_bias(&w);
    assert_eq!(bias.len(), 48);
    for (j, &x) in bias.iter().enumerate() {
        let sum: i32 = if j < n { (0..k).map(|p| i32::from(b[p * n + j])).sum() } else { 0 };
        assert_eq!(x, -128 * sum, "column {j}");
    }
}

// ------------------------------------------------------------ tampering

/// A bf16 case run through the unsafe entry with the matrix arrays given
/// by the caller (`masks`, `offsets` possibly tampered); the values buffer
/// is the matrix's own, with its slack, so an extra popcount bit still
/// reads inside the buffer.
fn run_tampered_bf16(
    w: &SparseBf16,
    masks: &[tilejit_sparse::TileMasks<u32>],
    offsets: &[u64],
    a: &[u16],
    m: usize,
) -> Vec<f32> {
    let kernel = SparseAvx512Kernel::generate(SparseAvx512Spec::for_matrix(w, m, CInit::Zero)).unwrap();
    let prepared = PreparedA::bf16(m, a, w.k(), w.k()).unwrap();
    let mut c = vec![0f32; m * w.n()];
    let args = SparseAvx512Args {
        a: prepared.as_bytes().as_ptr(),
        c: c.as_mut_ptr().cast(),
        masks: masks.as_ptr().cast(),
        offsets: offsets.as_ptr(),
        ..kernel.matrix_args(w).unwrap()
    };
    // SAFETY: features checked by the caller; A, C and the arrays have the
    // matrix's shape; the tampering adds at most one value per tile row
    // read past a tile's end, which stays inside the 64-byte slack of
    // values_with_slack for the last tile and inside the stream otherwise.
    unsafe { kernel.run(&args) };
    c
}

/// Fixture for the tamper tests: a 50 % sparse bf16 matrix of normal
/// values (no specials, so a difference shows as a wrong number) and its
/// oracle result.
fn tamper_fixture() -> (SparseBf16, Vec<u16>, Vec<f32>, usize, usize) {
    let mut rng = rng(99);
    let (m, n, k) = (2, 40, 96);
    let normal = |rng: &mut StdRng| loop {
        let v = random_bf16(Bf16Dist::Normal, rng);
        if v != 0 {
            return v;
        }
    };
    let b: Vec<u16> = (0..k * n).map(|_| if rng.random_bool(0.5) { 0 } else { normal(&mut rng) }).collect();
    let w = SparseBf16::from_dense_bf16(&b, k, n).unwrap();
    let a: Vec<u16> = (0..m * k).map(|_| normal(&mut rng)).collect();
    let want = bf16_reference(m, n, k, &a, &b, &vec![0.0; m * n], false);
    (w, a, want, m, n)
}

#[test]
fn untampered_unsafe_entry_matches() {
    if !runnable("untampered_unsafe_entry_matches", SparseAvx512Kind::Bf16) {
        return;
    }
    let (w, a, want, m, n) = tamper_fixture();
    let got = run_tampered_bf16(&w, w.masks(), w.offsets(), &a, m);
    check_f32(&want, &got, n).unwrap();
}

/// One mask bit set that the matrix does not have (panel 1, K tile 1, row
/// 5): the check must report a mismatch. Prints the message.
#[test]
fn tampered_mask_bit_is_detected() {
    if !runnable("tampered_mask_bit_is_detected", SparseAvx512Kind::Bf16) {
        return;
    }
    let (w, a, want, m, n) = tamper_fixture();
    let mut masks = w.masks().to_vec();
    let t = w.tile_index(1, 1).unwrap();
    let row = &mut masks[t].0[5];
    let free = (!*row).trailing_zeros();
    assert!(free < 32, "fixture row is full");
    *row |= 1 << free;
    let got = run_tampered_bf16(&w, &masks, w.offsets(), &a, m);
    let err = check_f32(&want, &got, n).expect_err("a corrupted mask bit went unnoticed");
    println!("tampered mask bit (tile {t}, row 5, bit {free}): {err}");
}

/// A cleared mask bit is caught too.
#[test]
fn cleared_mask_bit_is_detected() {
    if !runnable("cleared_mask_bit_is_detected", SparseAvx512Kind::Bf16) {
        return;
    }
    let (w, a, want, m, n) = tamper_fixture();
    let mut masks = w.masks().to_vec();
    let t = w.tile_index(2, 0).unwrap();
    let row = &mut masks[t].0[3];
    assert!(*row != 0, "fixture row is empty");
    *row &= *row - 1;
    let got = run_tampered_bf16(&w, &masks, w.offsets(), &a, m);
    let err = check_f32(&want, &got, n).expect_err("a cleared mask bit went unnoticed");
    println!("cleared mask bit (tile {t}, row 3): {err}");
}

/// A panel's value offset one element too far: the whole panel reads
/// shifted values.
#[test]
fn value_offset_off_by_one_is_detected() {
    if !runnable("value_offset_off_by_one_is_detected", SparseAvx512Kind::Bf16) {
        return;
    }
    let (w, a, want, m, n) = tamper_fixture();
    let mut offsets = w.offsets().to_vec();
    offsets[w.tile_index(1, 0).unwrap()] += 1;
    let got = run_tampered_bf16(&w, w.masks(), &offsets, &a, m);
    let err = check_f32(&want, &got, n).expect_err("an off-by-one value offset went unnoticed");
    println!("value offset of panel 1 + 1: {err}");
}

/// The default specs of every kind, row count and density validate and
/// generate; kernels can be shared across threads (a driver's cache).
#[test]
fn default_specs_generate() {
    fn shared<T: Send + Sync>() {}
    shared::<SparseAvx512Kernel>();
    let mut rng = rng(5);
    for density in [0.0, 0.1, 0.5, 1.0] {
        let (_, wb) = sparse_bf16(&mut rng, 100, 40, Bf16Dist::Normal, Sparsity::Random(1.0 - density));
        let (_, wi) = sparse_i8(&mut rng, 100, 40, Sparsity::Random(1.0 - density));
        for m in 1..=4 {
            for c_init in [CInit::Zero, CInit::Load] {
                for spec in [SparseAvx512Spec::for_matrix(&wb, m, c_init), SparseAvx512Spec::for_matrix(&wi, m, c_init)]
                {
                    spec.validate().unwrap();
                    let kernel = SparseAvx512Kernel::generate(spec).unwrap();
                    assert!(!kernel.code().is_empty());
                    assert!(spec.prefetch_values >= 128 && spec.prefetch_masks >= 1, "{spec:?}");
                }
            }
        }
    }
}
