//! The sparse GEMM (`tilejit::sparse`) against the dense GEMM on the same
//! weights, bit for bit: the sparse AMX and AVX-512 paths and the
//! dispatcher (row groups and their tails, column panels and the N tail,
//! K padding, accumulate or overwrite, 1-3 threads) == the dense oracle ==
//! the dense library path, for bf16 (special values among the non-zeros
//! and in A) and int8, sparsity from 0 % to 100 %.

mod common;

use common::{cases, execution};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::emulate::Execution;
use tilejit::gemm::{gemm_bf16, gemm_int8, GemmOptions};
use tilejit::isa::{Isa, Op};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::Int8Sign;
use tilejit::sparse::{gemm_sparse_bf16, gemm_sparse_i8, SparseWeights, SPARSE_FROM};
use tilejit_sparse::{PruneScope, Pruning, SparseBf16, SparseI8};
use tilejit_verify::{f32_to_bf16, gemm_bf16_amx};

/// bf16 bits: mostly normal numbers, some specials (NaN, inf, -0, subnormals).
fn bf16_value(rng: &mut StdRng, specials: bool) -> u16 {
    if specials && rng.random_range(0..20) == 0 {
        [0x7FC0, 0xFF80, 0x7F80, 0x8000, 0x0001, 0x8042, 0x0000][rng.random_range(0..7)]
    } else {
        f32_to_bf16(rng.random_range(-2.0f32..2.0))
    }
}

fn pruned_bf16(rng: &mut StdRng, k: usize, n: usize, sparsity: f64, specials: bool) -> Vec<u16> {
    let dense: Vec<u16> = (0..k * n).map(|_| bf16_value(rng, specials)).collect();
    let p = Pruning { sparsity, scope: PruneScope::Matrix, seed: rng.random() };
    p.prune_bf16(&dense, k, n).unwrap()
}

/// First index where the bits differ.
fn mismatch(a: &[u32], b: &[u32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(Isa::Amx, Op::SparseBf16, 80, 16), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sparse_bf16_equals_dense(
        m in 1usize..100, n in 1usize..90, k in 1usize..150, sparsity in prop::sample::select(vec![0.0, 0.3, 0.5, 0.9, 1.0]),
        specials in any::<bool>(), accumulate in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let b = pruned_bf16(&mut rng, k, n, sparsity, specials);
        let w = SparseWeights::from_sparse_bf16(SparseBf16::from_dense_bf16(&b, k, n).unwrap());
        let auto = SparseWeights::bf16(&b, k, n).unwrap();
        let a: Vec<u16> = (0..m * k).map(|_| bf16_value(&mut rng, specials)).collect();
        let c0: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        // The oracle directly, and the dense library path (AMX when present).
        let mut want = if accumulate { c0.clone() } else { vec![0.0; m * n] };
        gemm_bf16_amx(m, n, k, &a, &b, &mut want, 16);
        let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default()).unwrap();
        let mut dense = c0.clone();
        gemm_bf16(m, &a, k, &packed, &mut dense, n, accumulate, &GemmOptions::default()).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(mismatch(&bits(&dense), &bits(&want)), None, "dense vs oracle");
        let paths = [(Some(Isa::Amx), &w), (Some(Isa::Avx512), &w), (None, &w), (None, &auto)];
        for (threads, (isa, weights)) in [1, 3].into_iter().flat_map(|t| paths.iter().map(move |p| (t, p))) {
            let execution = isa.map_or(Execution::Native, |isa| execution("sparse_gemm bf16", isa, Op::SparseBf16));
            let mut got = c0.clone();
            let opts = GemmOptions { threads, isa: *isa, execution, ..GemmOptions::default() };
            gemm_sparse_bf16(m, &a, k, weights, &mut got, n, accumulate, &opts).unwrap();
            if let Some(i) = mismatch(&bits(&got), &bits(&want)) {
                prop_assert!(false, "{m}x{n}x{k} sparsity {sparsity} acc {accumulate}, {isa:?} sparse {}, \
                    {threads} threads: C[{i}] = {:#x}, dense {:#x}", weights.is_sparse(), got[i].to_bits(),
                    want[i].to_bits());
            }
        }
    }

    #[test]
    fn sparse_int8_equals_dense(
        m in 1usize..100, n in 1usize..90, k in 1usize..300, sparsity in prop::sample::select(vec![0.0, 0.5, 0.8, 1.0]),
        accumulate in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let dense: Vec<i8> = (0..k * n).map(|_| rng.random()).collect();
        let p = Pruning { sparsity, scope: PruneScope::PerColumn, seed };
        let b = p.prune_i8(&dense, k, n).unwrap();
        let w = SparseWeights::from_sparse_i8(SparseI8::from_dense_i8(&b, k, n).unwrap());
        let a: Vec<i8> = (0..m * k).map(|_| rng.random()).collect();
        let c0: Vec<i32> = (0..m * n).map(|_| rng.random()).collect();
        let packed = PackedB::pack_s8(&b, k, n, n, BLayout::default()).unwrap();
        let a_u8: Vec<u8> = a.iter().map(|&v| v as u8).collect();
        let mut want = c0.clone();
        let scalar = GemmOptions { isa: Some(Isa::Scalar), ..GemmOptions::default() };
        gemm_int8(Int8Sign::SS, m, &a_u8, k, &packed, &mut want, n, accumulate, &scalar).unwrap();
        for (threads, isa) in [(1, Some(Isa::Amx)), (2, Some(Isa::Amx)), (1, Some(Isa::Avx512)), (2, Some(Isa::Avx512)), (2, None)] {
            let execution = isa.map_or(Execution::Native, |isa| execution("sparse_gemm int8", isa, Op::SparseInt8));
            let mut got = c0.clone();
            let opts = GemmOptions { threads, isa, execution, ..GemmOptions::default() };
            gemm_sparse_i8(m, &a, k, &w, &mut got, n, accumulate, &opts).unwrap();
            let i = got.iter().zip(&want).position(|(x, y)| x != y);
            prop_assert!(i.is_none(), "{m}x{n}x{k} sparsity {sparsity} {isa:?} {threads} threads: C[{}] = {}, dense {}",
                i.unwrap(), got[i.unwrap()], want[i.unwrap()]);
        }
    }
}

/// The scalar path of the sparse API is the dense oracle path, packing
/// picks the format by sparsity, and bad shapes are typed errors.
#[test]
fn scalar_path_and_errors() {
    let mut rng = StdRng::seed_from_u64(5);
    let (m, n, k) = (3, 20, 40);
    let b = pruned_bf16(&mut rng, k, n, 0.6, false);
    let w = SparseWeights::bf16(&b, k, n).unwrap();
    assert!(w.is_sparse() && w.sparsity() >= SPARSE_FROM, "60 % sparse weights are stored sparse");
    let dense = SparseWeights::bf16(&pruned_bf16(&mut rng, k, n, 0.1, false), k, n).unwrap();
    assert!(!dense.is_sparse(), "10 % sparse weights stay dense");
    let a: Vec<u16> = (0..m * k).map(|_| bf16_value(&mut rng, false)).collect();
    let mut want = vec![0f32; m * n];
    gemm_bf16_amx(m, n, k, &a, &b, &mut want, 16);
    let mut got = vec![f32::NAN; m * n];
    let scalar = GemmOptions { isa: Some(Isa::Scalar), ..GemmOptions::default() };
    gemm_sparse_bf16(m, &a, k, &w, &mut got, n, false, &scalar).unwrap();
    assert_eq!(
        got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    let err = gemm_sparse_bf16(m, &a[1..], k, &w, &mut got, n, false, &scalar).unwrap_err();
    assert!(err.to_string().contains("A has"), "{err}");
    let err = gemm_sparse_bf16(m, &a, k, &w, &mut got[1..], n, false, &scalar).unwrap_err();
    assert!(err.to_string().contains("C has"), "{err}");
    let zero = GemmOptions { threads: 0, ..GemmOptions::default() };
    assert!(gemm_sparse_bf16(m, &a, k, &w, &mut got, n, false, &zero).is_err());
    assert!(SparseWeights::bf16(&b[1..], k, n).is_err());
}
