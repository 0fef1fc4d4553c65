//! Differential tests of the dense AMX GEMM against the oracle: the driver
//! over random specs and shapes (tails everywhere) and random data (bf16
//! specials, subnormals, extreme magnitudes), compared bit for bit.

mod common;

use common::{cases, execution, Flush, Guarded};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::emulate::Execution;
use tilejit::gemm::oracle_sign;
use tilejit::gemm::{gemm_bf16, gemm_int8, GemmOptions};
use tilejit::isa::{Isa, Op};
use tilejit::kernels::dense_amx::{BLoad, Blocking, Schedule};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::Int8Sign;
use tilejit_verify::{fill_bf16, fill_i8, first_mismatch_f32, first_mismatch_i32, gemm_bf16_amx, gemm_i8, Bf16Dist};

/// Everything one differential case varies.
#[derive(Clone, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    blocking: Blocking,
    schedule: Schedule,
    k_groups: u8,
    k_block_steps: usize,
    threads: usize,
    accumulate: bool,
    seed: u64,
    execution: Execution,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1usize..300, 1usize..300, 1usize..300),
        prop::sample::select(Blocking::ALL.to_vec()),
        prop::sample::select(vec![Schedule::Pipelined, Schedule::LoadThenCompute]),
        prop::sample::select(vec![16u8, 16, 8, 5, 1]),
        prop::sample::select(vec![16usize, 3, 1]),
        1usize..4,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|((m, n, k), blocking, schedule, k_groups, k_block_steps, threads, accumulate, seed)| Case {
            m,
            n,
            k,
            blocking,
            schedule,
            k_groups,
            k_block_steps,
            threads,
            accumulate,
            seed,
            execution: Execution::Native,
        })
}

impl Case {
    fn layout(&self) -> BLayout {
        BLayout { k_groups_per_tdp: self.k_groups, k_block_steps: self.k_block_steps }
    }

    fn options(&self) -> GemmOptions {
        GemmOptions {
            threads: self.threads,
            blocking: self.blocking,
            schedule: self.schedule,
            prefetch: self.seed.is_multiple_of(2),
            isa: Some(Isa::Amx),
            b_load: if self.seed.is_multiple_of(3) { BLoad::Temporal } else { BLoad::NonTemporal },
            execution: self.execution,
        }
    }
}

/// Runs the int8 driver with A and C flush against guard pages.
fn check_int8(sign: Int8Sign, case: &Case, flush: Flush) -> Result<(), TestCaseError> {
    let Case { m, n, k, .. } = *case;
    let mut rng = StdRng::seed_from_u64(case.seed);
    let (mut a, mut b) = (vec![0u8; m * k], vec![0u8; k * n]);
    fill_i8(&mut rng, &mut a);
    fill_i8(&mut rng, &mut b);
    let c0: Vec<i32> = (0..m * n).map(|_| if case.accumulate { rng.random() } else { 0 }).collect();
    let packed = PackedB::pack_int8(&b, k, n, n, case.layout()).unwrap();
    let a_g = Guarded::new(&a, flush);
    let mut c_g = Guarded::new(&c0, flush);
    gemm_int8(sign, m, a_g.as_slice(), k, &packed, c_g.as_mut_slice(), n, case.accumulate, &case.options()).unwrap();
    let mut expected = c0.clone();
    gemm_i8(oracle_sign(sign), m, n, k, &a, &b, &mut expected);
    if let Some(mm) = first_mismatch_i32(&expected, c_g.as_slice()) {
        let (row, col) = mm.row_col(n);
        return Err(TestCaseError::fail(format!("int8 {sign:?} {case:?}: C[{row}][{col}]: {mm}")));
    }
    Ok(())
}

fn check_bf16(dist: Bf16Dist, case: &Case, flush: Flush) -> Result<(), TestCaseError> {
    let Case { m, n, k, .. } = *case;
    let mut rng = StdRng::seed_from_u64(case.seed);
    let (mut a, mut b) = (vec![0u16; m * k], vec![0u16; k * n]);
    fill_bf16(dist, &mut rng, &mut a);
    fill_bf16(dist, &mut rng, &mut b);
    let mut c0 = vec![0f32; m * n];
    if case.accumulate {
        tilejit_verify::strategies::fill_f32(dist, &mut rng, &mut c0);
    }
    let packed = PackedB::pack_bf16(&b, k, n, n, case.layout()).unwrap();
    let a_g = Guarded::new(&a, flush);
    let mut c_g = Guarded::new(&c0, flush);
    gemm_bf16(m, a_g.as_slice(), k, &packed, c_g.as_mut_slice(), n, case.accumulate, &case.options()).unwrap();
    let mut expected = c0.clone();
    gemm_bf16_amx(m, n, k, &a, &b, &mut expected, case.k_groups as usize);
    if let Some(mm) = first_mismatch_f32(&expected, c_g.as_slice()) {
        let (row, col) = mm.row_col(n);
        return Err(TestCaseError::fail(format!("bf16 {dist:?} {case:?}: C[{row}][{col}]: {mm}")));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(Isa::Amx, Op::Bf16, 200, 32), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn int8_gemm_matches_reference(case in case(), sign in prop::sample::select(Int8Sign::ALL.to_vec()), end in any::<bool>()) {
        let execution = execution("int8_gemm_matches_reference", Isa::Amx, Op::Int8);
        check_int8(sign, &Case { execution, ..case }, if end { Flush::End } else { Flush::Start })?;
    }

    #[test]
    fn bf16_gemm_matches_reference(case in case(), dist in prop::sample::select(Bf16Dist::ALL.to_vec()), end in any::<bool>()) {
        let execution = execution("bf16_gemm_matches_reference", Isa::Amx, Op::Bf16);
        check_bf16(dist, &Case { execution, ..case }, if end { Flush::End } else { Flush::Start })?;
    }
}

/// A whose rows are 64-byte aligned, with no K tail and a stride that is not
/// a multiple of 4 KiB, is read in place rather than copied: cover that path
/// explicitly (random shapes reach it only now and then).
#[test]
fn aligned_a_is_read_in_place_and_still_exact() {
    let execution = execution("aligned_a_in_place", Isa::Amx, Op::Int8);
    for (k, kg) in [(192, 16u8), (320, 16), (128, 8)] {
        let case = Case {
            m: 50,
            n: 40,
            k,
            blocking: Blocking::B2X2,
            schedule: Schedule::LoadThenCompute,
            k_groups: kg,
            k_block_steps: 1,
            threads: 2,
            accumulate: true,
            seed: k as u64,
            execution,
        };
        check_int8(Int8Sign::SU, &case, Flush::Start).unwrap();
        check_bf16(Bf16Dist::Normal, &Case { k: k / 2, ..case.clone() }, Flush::Start).unwrap();
    }
}
