//! `TILEJIT_ISA=amx-emu` / `avx512-emu`: a GEMM with no ISA chosen in its
//! options runs that path's generated code under the emulator, on any
//! x86-64, with the oracle's bits. The variable is read once per process,
//! so each case re-runs this binary as a child with it set.

use std::process::Command;

use tilejit::emulate::emulated_instructions;
use tilejit::gemm::{gemm_bf16, gemm_int8, GemmOptions};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::Int8Sign;
use tilejit_verify::{fill_bf16, first_mismatch_f32, first_mismatch_i32, gemm_bf16_amx, gemm_i8, Bf16Dist};

fn child(isa: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", "child_runs_emulated", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("TILEJIT_ISA", isa)
        .env("TILEJIT_HIDE", "amx,avx512")
        .output()
        .expect("run the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains("1 passed"), text)
}

#[test]
fn tilejit_isa_emu_runs_the_generated_code_under_the_emulator() {
    // With AVX-512 and AMX hidden, only emulation can run these paths.
    for isa in ["amx-emu", "avx512-emu"] {
        let (ok, out) = child(isa);
        assert!(ok, "TILEJIT_ISA={isa}:\n{out}");
        let line = out.lines().find_map(|l| l.rsplit_once("emulated ").map(|(_, rest)| rest));
        eprintln!("TILEJIT_ISA={isa}: emulated {}", line.expect("the child reports its emulated instructions"));
    }
    // And the native path stays refused where the CPU (here: the hide) lacks it.
    let out = Command::new(env!("CARGO_BIN_EXE_tilejit"))
        .args(["tour"])
        .env("TILEJIT_ISA", "amx")
        .env("TILEJIT_HIDE", "amx")
        .output()
        .expect("run tilejit");
    assert!(!out.status.success(), "a forced native path that cannot run must be refused");
}

#[test]
#[ignore = "run by tilejit_isa_emu_runs_the_generated_code_under_the_emulator with TILEJIT_ISA set"]
fn child_runs_emulated() {
    let (m, n, k) = (19, 37, 70);
    let before = emulated_instructions();
    let mut rng = rand::rng();
    let a: Vec<u8> = (0..m * k).map(|i| (i * 31 % 251) as u8).collect();
    let b: Vec<u8> = (0..k * n).map(|i| (i * 17 % 253) as u8).collect();
    let packed = PackedB::pack_int8(&b, k, n, n, BLayout::default()).unwrap();
    let mut want = vec![0i32; m * n];
    gemm_i8(tilejit::gemm::oracle_sign(Int8Sign::SU), m, n, k, &a, &b, &mut want);
    let mut got = vec![0i32; m * n];
    gemm_int8(Int8Sign::SU, m, &a, k, &packed, &mut got, n, false, &GemmOptions::DEFAULT).unwrap();
    assert_eq!(first_mismatch_i32(&want, &got), None);
    let (mut a16, mut b16) = (vec![0u16; m * k], vec![0u16; k * n]);
    fill_bf16(Bf16Dist::Specials, &mut rng, &mut a16);
    fill_bf16(Bf16Dist::Normal, &mut rng, &mut b16);
    let packed = PackedB::pack_bf16(&b16, k, n, n, BLayout::default()).unwrap();
    let mut want = vec![0f32; m * n];
    gemm_bf16_amx(m, n, k, &a16, &b16, &mut want, packed.k_groups_per_tdp() as usize);
    let mut got = vec![0f32; m * n];
    gemm_bf16(m, &a16, k, &packed, &mut got, n, false, &GemmOptions::DEFAULT).unwrap();
    assert_eq!(first_mismatch_f32(&want, &got), None);
    let emulated = emulated_instructions() - before;
    assert!(emulated > 0, "the kernels must have run under the emulator");
    println!("emulated {emulated} instructions");
}
