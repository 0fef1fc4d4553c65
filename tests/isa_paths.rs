//! One summary of which ISA paths this test run executes and which it
//! skips, with the reason, so CI output answers the question directly.

use tilejit::isa::{availability, Isa};

#[test]
fn report_isa_paths() {
    let line = |isa: Isa, runs: &str| match availability(isa) {
        Ok(()) => eprintln!("ISA path {:<6}: available -> {runs}", isa.name()),
        Err(reason) => eprintln!("ISA path {:<6}: SKIPPED ({reason})", isa.name()),
    };
    line(Isa::Amx, "dense GEMM differential and cross-ISA tests, AMX conformance tests");
    line(Isa::Avx512, "AVX-512 kernel and cross-ISA tests, VDPBF16PS/VCVTNEPS2BF16/VPDPBUSD conformance tests");
    line(Isa::Scalar, "the oracle (tilejit-verify) in every differential and conformance test");
    assert_eq!(availability(Isa::Scalar), Ok(()), "the scalar path can always run");
}
