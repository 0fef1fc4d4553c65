//! `TILEJIT_HIDE` makes a machine with the instructions play one without
//! them: the dispatcher passes over a path that lacks one extension its
//! kernels execute, forced paths are refused with the reason, the kernels
//! still give the oracle's bits on the path picked, and gated tests skip
//! with a printed reason. The environment is read once per process, so each
//! case re-runs this test binary as a child with `TILEJIT_HIDE` set, running
//! one `child_*` test (ignored in a normal run, so it never runs unhidden).

use std::process::Command;

use tilejit::cpu::{parse_hide, CpuFeatures, Feature};
use tilejit::cpu::{Absence, AmxUnavailable, MissingFeatures};
use tilejit::gemm::{dispatch, gemm_bf16, gemm_bf16_dot, gemm_int8, GemmError, GemmOptions};
use tilejit::isa::{availability_for, Isa, Op, Unsupported};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::{ElemType, Int8Sign};
use tilejit_verify::paths::report_path;
use tilejit_verify::{fill_bf16, fill_i8, first_mismatch_f32, first_mismatch_i32, gemm_bf16_amx, gemm_i8, Bf16Dist};

/// Runs the ignored test `name` of this binary with `TILEJIT_HIDE=hide`;
/// returns (passed, its output).
fn child(name: &str, hide: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads", "1"])
        .env("TILEJIT_HIDE", hide)
        .env_remove("TILEJIT_ISA")
        .output()
        .expect("run the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains("1 passed"), text)
}

/// The hides that matter: each single extension a kernel family needs,
/// the two groups, and both together.
const HIDES: [&str; 9] =
    ["amx", "avx512", "amx,avx512", "avx512_vnni", "avx512_bf16", "avx512_vbmi2", "amx_int8", "amx_bf16", "avx512bw"];

#[test]
fn every_hide_leaves_a_dispatcher_that_runs_the_oracles_bits() {
    let present = &CpuFeatures::get().cpuid;
    eprintln!("CPUID reports: {present}");
    for hide in HIDES {
        let hidden = parse_hide(hide).unwrap();
        if !hidden.iter().any(|f| present.contains(f)) {
            // Hiding what is absent changes nothing; the run still checks
            // the dispatcher, so it is not skipped, only noted.
            eprintln!("TILEJIT_HIDE={hide}: hides nothing this CPU has");
        }
        let (ok, out) = child("child_dispatch_follows_the_hidden_features", hide);
        assert!(ok, "TILEJIT_HIDE={hide}:\n{out}");
        eprintln!(
            "TILEJIT_HIDE={hide}: {}",
            out.lines().filter(|l| l.starts_with("picked")).collect::<Vec<_>>().join("; ")
        );
    }
}

#[test]
fn an_unknown_hide_name_is_a_typed_error_and_hides_everything() {
    let (ok, out) = child("child_unknown_name", "amx,avx2");
    assert!(ok, "{out}");
}

/// A gated test under a hide that removes its path: it passes and says
/// SKIPPED with the reason; and a test that asserts without its gate fails
/// (the gate is what keeps it from failing, shown here on purpose).
#[test]
fn a_gated_test_skips_cleanly_and_an_ungated_one_fails() {
    let (ok, out) = child("child_gated_avx512_test", "avx512");
    assert!(ok, "{out}");
    assert!(out.contains("ISA path avx512: SKIPPED [child gated] the avx512 int8 GEMM kernels need"), "{out}");
    assert!(out.contains("(hidden by TILEJIT_HIDE)"), "{out}");
    let (ok, out) = child("child_ungated_avx512_test", "avx512");
    assert!(!ok, "an AVX-512 call without its gate must fail when AVX-512 is hidden:\n{out}");
    assert!(out.contains("Unsupported") && out.contains("Hidden"), "{out}");
}

/// Under the hide of the parent: every family dispatches to a path that
/// runs it, a path missing a hidden feature is refused when forced, and
/// the dispatched GEMMs match the oracle bit for bit.
#[test]
#[ignore = "run by every_hide_leaves_a_dispatcher_that_runs_the_oracles_bits with TILEJIT_HIDE set"]
fn child_dispatch_follows_the_hidden_features() {
    let f = CpuFeatures::get();
    assert!(f.hide_error().is_none());
    for feature in f.hidden.iter() {
        assert!(!f.has(feature), "{feature} is hidden but reported usable");
    }
    for op in [Op::Int8, Op::Bf16, Op::Bf16Dot, Op::Quant, Op::SparseBf16, Op::SparseInt8] {
        for isa in [Isa::Avx512, Isa::Amx] {
            if let Some(needs) = op.features(isa) {
                if needs.iter().any(|&x| f.hidden.contains(x)) {
                    let why = availability_for(isa, op).expect_err("a path missing a hidden feature must be refused");
                    let hidden = |m: &MissingFeatures| m.0.iter().any(|&(_, why)| why == Absence::Hidden);
                    match &why {
                        Unsupported::MissingFeatures { missing, .. } => assert!(hidden(missing), "{why}"),
                        // Without AMX in CPUID, AMX-TILE is missing whatever is hidden.
                        Unsupported::Amx(AmxUnavailable::Missing { .. }) => {}
                        other => panic!("expected a hidden feature, got {other:?}"),
                    }
                }
            }
        }
        for m in [1, 16, 64] {
            let isa = dispatch::by_rows(m, 8, op);
            assert_eq!(availability_for(isa, op), Ok(()), "{op} m = {m} dispatched to {isa}");
        }
    }
    // The dense calls the dispatcher makes, against the oracle.
    let (m, n, k) = (20, 37, 70);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let (mut a, mut b) = (vec![0u8; m * k], vec![0u8; k * n]);
    fill_i8(&mut rng, &mut a);
    fill_i8(&mut rng, &mut b);
    let packed = PackedB::pack_int8(&b, k, n, n, BLayout::default()).unwrap();
    let mut c = vec![0i32; m * n];
    gemm_int8(Int8Sign::SS, m, &a, k, &packed, &mut c, n, false, &GemmOptions::default()).unwrap();
    let mut want = vec![0i32; m * n];
    gemm_i8(tilejit::gemm::oracle_sign(Int8Sign::SS), m, n, k, &a, &b, &mut want);
    assert_eq!(first_mismatch_i32(&want, &c), None);
    println!("\npicked {} for int8 m = {m}", dispatch::choose(ElemType::Int8(Int8Sign::SS), m, false));

    let (mut a, mut b) = (vec![0u16; m * k], vec![0u16; k * n]);
    fill_bf16(Bf16Dist::Specials, &mut rng, &mut a);
    fill_bf16(Bf16Dist::Normal, &mut rng, &mut b);
    let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default()).unwrap();
    let mut c = vec![0f32; m * n];
    gemm_bf16(m, &a, k, &packed, &mut c, n, false, &GemmOptions::default()).unwrap();
    let mut want = vec![0f32; m * n];
    gemm_bf16_amx(m, n, k, &a, &b, &mut want, packed.k_groups_per_tdp() as usize);
    assert_eq!(first_mismatch_f32(&want, &c), None);
    println!("picked {} for bf16 m = {m}", dispatch::choose(ElemType::Bf16, m, false));
    gemm_bf16_dot(m, &a, k, &packed, &mut c, n, false, &GemmOptions::default()).unwrap();
    println!("picked {} for bf16 dot", dispatch::choose(ElemType::Bf16, m, true));
}

#[test]
#[ignore = "run by an_unknown_hide_name_is_a_typed_error_and_hides_everything"]
fn child_unknown_name() {
    let f = CpuFeatures::get();
    assert_eq!(f.hide_error().map(|e| e.0.as_str()), Some("avx2"));
    assert!(Feature::ALL.iter().all(|&x| !f.has(x)), "an invalid hide must not test more than asked");
    let err = tilejit::isa::select().unwrap_err();
    assert!(err.to_string().contains("TILEJIT_HIDE names \"avx2\""), "{err}");
    let packed = PackedB::pack_int8(&[1; 64], 4, 16, 16, BLayout::default()).unwrap();
    let mut c = vec![0i32; 16];
    let r = gemm_int8(Int8Sign::SS, 1, &[1; 4], 4, &packed, &mut c, 16, false, &GemmOptions::default());
    assert!(matches!(r, Err(GemmError::Isa(_))), "{r:?}");
}

#[test]
#[ignore = "run by a_gated_test_skips_cleanly_and_an_ungated_one_fails"]
fn child_gated_avx512_test() {
    if !report_path("child gated", "avx512", availability_for(Isa::Avx512, Op::Int8)) {
        return;
    }
    ungated_avx512_call();
}

#[test]
#[ignore = "run by a_gated_test_skips_cleanly_and_an_ungated_one_fails"]
fn child_ungated_avx512_test() {
    ungated_avx512_call();
}

fn ungated_avx512_call() {
    let packed = PackedB::pack_int8(&[1; 64], 4, 16, 16, BLayout::default()).unwrap();
    let mut c = vec![0i32; 16];
    let opts = GemmOptions { isa: Some(Isa::Avx512), ..GemmOptions::default() };
    gemm_int8(Int8Sign::SS, 1, &[1; 4], 4, &packed, &mut c, 16, false, &opts).unwrap();
    assert_eq!(c, vec![4; 16]);
}
