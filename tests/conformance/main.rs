//! Hardware conformance tests: the raw instructions against the oracle
//! (docs/NUMERICS.md, "Hardware conformance tests the project must keep").
//!
//! TDPBF16PS and the four int8 TDPs run in a tiny JIT routine built with our
//! encoder ([`TdpRoutine`](routine::TdpRoutine)); VDPBF16PS, VCVTNEPS2BF16
//! and VPDPBUSD run through the std intrinsics ([`avx512`]). Every output is
//! compared by its BITS with the tilejit-verify model; a family gathers all
//! mismatches and reports the first few (inputs in hex, expected and actual
//! bits) plus the count ([`report`]).
//!
//! Families, one module each:
//! 1. [`swamping`]: the swamping/ordering matrix (+M and -M at every pair
//!    of positions),
//! 2. [`ftz`]: FTZ corners (docs/NUMERICS.md rule 5) and random
//!    near-underflow data,
//! 3. [`nan_inf`]: the NaN/inf matrix (which NaN wins at each stage, sNaN
//!    quieting, inf*0, inf-inf), with printed probes for the oracle's
//!    interpretation "inf*0 creates the default NaN only when the step has
//!    no NaN operand",
//! 4. [`random`]: K-split sensitivity (one TDP over K pairs vs two over
//!    K/2) and random data in every `Bf16Dist`,
//! 5. [`conversion`]: VCVTNEPS2BF16 bit patterns, and [`int8`]: the int8
//!    dot products with wrap-around.
//!
//! The test entry points below check for the instruction, seed the random
//! data and gather the families of one test in a [`Report`]. Without the
//! instruction a test prints `SKIPPED <family>: <reason>` and returns; it
//! never passes silently. Run with `-- --nocapture` to see the per-family
//! output counts and the probes.

#[path = "../common/mod.rs"]
mod common;

mod avx512;
mod conversion;
mod ftz;
mod int8;
mod nan_inf;
mod random;
mod report;
mod routine;
mod swamping;
mod values;

use common::{features_or_skip, AMX_BF16, AMX_INT8, AVX512_BF16, AVX512_VNNI};
use rand::{rngs::StdRng, SeedableRng};
use report::Report;
use tilejit::kernels::encoder::TdpOp;

#[test]
fn swamping_ordering_matrix() {
    let mut report = Report::default();
    if features_or_skip("TDPBF16PS swamping", AMX_BF16) {
        swamping::tdpbf16ps(&mut report);
    }
    if features_or_skip("VDPBF16PS swamping", AVX512_BF16) {
        swamping::vdpbf16ps(&mut report);
    }
    report.finish();
}

#[test]
fn ftz_corners_and_near_underflow() {
    ftz::oracle_doc_examples();
    let mut report = Report::default();
    let mut rng = StdRng::seed_from_u64(0xF7F7);
    if features_or_skip("TDPBF16PS FTZ", AMX_BF16) {
        ftz::tdpbf16ps(&mut report, &mut rng);
    }
    if features_or_skip("VDPBF16PS FTZ", AVX512_BF16) {
        ftz::vdpbf16ps(&mut report, &mut rng);
    }
    report.finish();
}

#[test]
fn nan_inf_matrix() {
    let mut report = Report::default();
    if features_or_skip("TDPBF16PS NaN/inf", AMX_BF16) {
        nan_inf::tdpbf16ps(&mut report);
    }
    if features_or_skip("VDPBF16PS NaN/inf", AVX512_BF16) {
        nan_inf::vdpbf16ps(&mut report);
    }
    report.finish();
}

#[test]
fn k_split_sensitivity() {
    if !features_or_skip("TDPBF16PS K-split", AMX_BF16) {
        return;
    }
    let mut report = Report::default();
    let mut rng = StdRng::seed_from_u64(0x5917);
    random::k_split(&mut report, &mut rng);
    report.finish();
}

#[test]
fn random_tdpbf16ps_all_distributions() {
    if !features_or_skip("TDPBF16PS random", AMX_BF16) {
        return;
    }
    let mut report = Report::default();
    let mut rng = StdRng::seed_from_u64(0xB16);
    random::tdpbf16ps(&mut report, &mut rng);
    report.finish();
}

#[test]
fn random_vdpbf16ps_all_distributions() {
    if !features_or_skip("VDPBF16PS random", AVX512_BF16) {
        return;
    }
    let mut report = Report::default();
    let mut rng = StdRng::seed_from_u64(0xAB16);
    random::vdpbf16ps(&mut report, &mut rng);
    report.finish();
}

#[test]
fn vcvtneps2bf16_bit_patterns() {
    if !features_or_skip("VCVTNEPS2BF16", AVX512_BF16) {
        return;
    }
    let mut report = Report::default();
    let mut rng = StdRng::seed_from_u64(0xC7);
    conversion::vcvtneps2bf16(&mut report, &mut rng);
    report.finish();
}

#[test]
fn int8_tdp_wraparound() {
    if !features_or_skip("TDPB*D int8", AMX_INT8) {
        return;
    }
    let mut report = Report::default();
    let mut rng = StdRng::seed_from_u64(0x18);
    for op in [TdpOp::Bssd, TdpOp::Bsud, TdpOp::Busd, TdpOp::Buud] {
        int8::tdp_wraparound(&mut report, op, &mut rng);
    }
    report.finish();
}

#[test]
fn vpdpbusd_wraparound() {
    if !features_or_skip("VPDPBUSD", AVX512_VNNI) {
        return;
    }
    let mut report = Report::default();
    let mut rng = StdRng::seed_from_u64(0xD0B);
    int8::vpdpbusd_wraparound(&mut report, &mut rng);
    report.finish();
}
