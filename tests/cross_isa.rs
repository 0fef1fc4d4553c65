//! Every ISA path gives the same bits, and so does every thread count:
//! AMX == AVX-512 == scalar for the operations whose semantics they share
//! (int8 wrapping, bf16 with TDPBF16PS semantics), through the public API.

mod common;

use common::options;
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};
use tilejit::gemm::{gemm_bf16, gemm_bf16_dot, gemm_int8, GemmError, GemmOptions};
use tilejit::isa::{Isa, Op, Unsupported};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::Int8Sign;
use tilejit_verify::{fill_bf16, fill_i8, Bf16Dist};

const ISAS: [Isa; 3] = [Isa::Scalar, Isa::Avx512, Isa::Amx];

/// Runs `f` on every ISA path that has `op` kernels, natively where the
/// machine can and emulated where it cannot (reported once); a path that
/// fails is a test failure. Returns (isa, bits) per path.
fn on_every_isa(
    op: Op,
    mut f: impl FnMut(&GemmOptions) -> Result<Vec<u32>, GemmError>,
    threads: usize,
) -> Vec<(Isa, Vec<u32>)> {
    let mut out = Vec::new();
    for isa in ISAS {
        if op.features(isa).is_none() {
            continue; // no kernel of this family on this ISA (bf16 dot on AMX)
        }
        let opts = GemmOptions { threads, ..options(&format!("cross_isa {op}"), isa, op) };
        match f(&opts) {
            Ok(bits) => out.push((isa, bits)),
            Err(e) => panic!("{isa}: {e}"),
        }
    }
    out
}

fn assert_all_equal(what: &str, runs: &[(Isa, Vec<u32>)]) -> Result<(), TestCaseError> {
    let (first_isa, first) = &runs[0];
    for (isa, bits) in &runs[1..] {
        if let Some(i) = first.iter().zip(bits).position(|(a, b)| a != b) {
            return Err(TestCaseError::fail(format!(
                "{what}: {first_isa} and {isa} differ at output {i}: {:#010x} vs {:#010x}",
                first[i], bits[i]
            )));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn int8_paths_agree(m in 1usize..40, n in 1usize..70, k in 1usize..200,
                        sign in prop::sample::select(Int8Sign::ALL.to_vec()), seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (vec![0u8; m * k], vec![0u8; k * n]);
        fill_i8(&mut rng, &mut a);
        fill_i8(&mut rng, &mut b);
        let packed = PackedB::pack_int8(&b, k, n, n, BLayout::default()).unwrap();
        let runs = on_every_isa(Op::Int8, |opts| {
            let mut c = vec![7i32; m * n];
            gemm_int8(sign, m, &a, k, &packed, &mut c, n, true, opts).map(|()| c.iter().map(|&x| x as u32).collect())
        }, 1);
        assert_all_equal(&format!("int8 {sign:?} {m}x{n}x{k}"), &runs)?;
    }

    #[test]
    fn bf16_paths_agree(m in 1usize..40, n in 1usize..70, k in 1usize..200,
                        dist in prop::sample::select(Bf16Dist::ALL.to_vec()), kg in prop::sample::select(vec![16u8, 5]),
                        seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (vec![0u16; m * k], vec![0u16; k * n]);
        fill_bf16(dist, &mut rng, &mut a);
        fill_bf16(dist, &mut rng, &mut b);
        let layout = BLayout { k_groups_per_tdp: kg, ..BLayout::default() };
        let packed = PackedB::pack_bf16(&b, k, n, n, layout).unwrap();
        let runs = on_every_isa(Op::Bf16, |opts| {
            let mut c = vec![0f32; m * n];
            gemm_bf16(m, &a, k, &packed, &mut c, n, false, opts).map(|()| c.iter().map(|x| x.to_bits()).collect())
        }, 1);
        assert_all_equal(&format!("bf16 {dist:?} {m}x{n}x{k} kg={kg}"), &runs)?;
    }

    /// VDPBF16PS semantics: AVX-512 == scalar (AMX has no such path and
    /// must say so rather than run TDPBF16PS).
    #[test]
    fn bf16_dot_paths_agree(m in 1usize..20, n in 1usize..70, k in 1usize..200,
                            dist in prop::sample::select(Bf16Dist::ALL.to_vec()), seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (vec![0u16; m * k], vec![0u16; k * n]);
        fill_bf16(dist, &mut rng, &mut a);
        fill_bf16(dist, &mut rng, &mut b);
        let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default()).unwrap();
        let runs = on_every_isa(Op::Bf16Dot, |opts| {
            let mut c = vec![1.5f32; m * n];
            gemm_bf16_dot(m, &a, k, &packed, &mut c, n, true, opts).map(|()| c.iter().map(|x| x.to_bits()).collect())
        }, 2);
        prop_assert!(runs.iter().all(|(isa, _)| *isa != Isa::Amx), "AMX ran VDPBF16PS semantics");
        let mut c = vec![0f32; m * n];
        let amx = GemmOptions { isa: Some(Isa::Amx), ..GemmOptions::default() };
        let refused = gemm_bf16_dot(m, &a, k, &packed, &mut c, n, true, &amx);
        prop_assert!(matches!(refused, Err(GemmError::Unsupported { isa: Isa::Amx, reason: Unsupported::NoKernel { op: Op::Bf16Dot, .. } })), "{refused:?}");
        assert_all_equal(&format!("bf16 dot {dist:?} {m}x{n}x{k}"), &runs)?;
    }

    #[test]
    fn thread_counts_agree(m in 1usize..120, n in 1usize..120, k in 1usize..150, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (vec![0u16; m * k], vec![0u16; k * n]);
        fill_bf16(Bf16Dist::Normal, &mut rng, &mut a);
        fill_bf16(Bf16Dist::Cancellation, &mut rng, &mut b);
        let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default()).unwrap();
        for threads in [2, 3, 7] {
            let mut runs = Vec::new();
            for t in [1, threads] {
                let r = on_every_isa(Op::Bf16, |opts| {
                    let mut c = vec![0f32; m * n];
                    gemm_bf16(m, &a, k, &packed, &mut c, n, false, opts).map(|()| c.iter().map(|x| x.to_bits()).collect())
                }, t);
                runs.extend(r);
            }
            assert_all_equal(&format!("bf16 {m}x{n}x{k}, 1 vs {threads} threads"), &runs)?;
        }
    }
}
