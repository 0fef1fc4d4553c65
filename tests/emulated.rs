//! Every kernel family's generated code, run under the emulator
//! (`Execution::Emulated`) through the public API, against the oracle,
//! bit for bit: on any x86-64, with or without AVX-512 or AMX.

use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::emulate::{emulated_instructions, Execution};
use tilejit::gemm::{gemm_bf16, gemm_int8, oracle_sign, GemmOptions};
use tilejit::isa::Isa;
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::Int8Sign;
use tilejit_verify::{fill_bf16, first_mismatch_f32, first_mismatch_i32, gemm_bf16_amx, gemm_i8, Bf16Dist};

fn emulated(isa: Isa, threads: usize) -> GemmOptions {
    GemmOptions { isa: Some(isa), execution: Execution::Emulated, threads, ..GemmOptions::DEFAULT }
}

#[test]
fn dense_kernels_match_the_oracle_emulated() {
    let mut rng = StdRng::seed_from_u64(1);
    let before = emulated_instructions();
    for isa in [Isa::Amx, Isa::Avx512] {
        for &(m, n, k) in &[(1, 1, 1), (5, 17, 33), (33, 40, 70), (17, 50, 130)] {
            for sign in [Int8Sign::SS, Int8Sign::US] {
                let a: Vec<u8> = (0..m * k).map(|_| rng.random()).collect();
                let b: Vec<u8> = (0..k * n).map(|_| rng.random()).collect();
                let packed = PackedB::pack_int8(&b, k, n, n, BLayout::default()).unwrap();
                let mut want = vec![0i32; m * n];
                gemm_i8(oracle_sign(sign), m, n, k, &a, &b, &mut want);
                let mut got = vec![0i32; m * n];
                gemm_int8(sign, m, &a, k, &packed, &mut got, n, false, &emulated(isa, 2)).unwrap();
                assert_eq!(first_mismatch_i32(&want, &got), None, "{isa} int8 {sign:?} {m}x{n}x{k}");
            }
            let mut a = vec![0u16; m * k];
            let mut b = vec![0u16; k * n];
            fill_bf16(Bf16Dist::Normal, &mut rng, &mut a);
            fill_bf16(Bf16Dist::Normal, &mut rng, &mut b);
            let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default()).unwrap();
            let mut want = vec![0f32; m * n];
            gemm_bf16_amx(m, n, k, &a, &b, &mut want, packed.k_groups_per_tdp() as usize);
            let mut got = vec![0f32; m * n];
            gemm_bf16(m, &a, k, &packed, &mut got, n, false, &emulated(isa, 1)).unwrap();
            assert_eq!(first_mismatch_f32(&want, &got), None, "{isa} bf16 {m}x{n}x{k}");
        }
    }
    println!("emulated {} instructions", emulated_instructions() - before);
}
