//! Bad input to the GEMM API gets a typed error that says what is wrong,
//! never a panic or an out-of-bounds access, on every ISA path.

use tilejit::gemm::{gemm_bf16, gemm_int8, GemmError, GemmOptions};
mod common;

use tilejit::isa::{Isa, Op};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::Int8Sign;

/// The paths whose int8 and bf16 kernels both run here (the others are
/// reported with the reason).
fn paths() -> Vec<GemmOptions> {
    [Isa::Scalar, Isa::Avx512, Isa::Amx]
        .into_iter()
        .filter(|&isa| {
            common::gate("gemm_errors int8", isa, Op::Int8) & common::gate("gemm_errors bf16", isa, Op::Bf16)
        })
        .map(|isa| GemmOptions { isa: Some(isa), ..GemmOptions::default() })
        .collect()
}

fn shape_error(r: Result<(), GemmError>, what: &str) {
    match r {
        Err(GemmError::Shape(msg)) => assert!(msg.contains(what), "{msg:?} should mention {what:?}"),
        other => panic!("expected a shape error mentioning {what:?}, got {other:?}"),
    }
}

#[test]
fn shapes_that_do_not_fit_their_buffers_are_rejected() {
    let (k, n) = (40, 24);
    let b = PackedB::pack_int8(&vec![1; k * n], k, n, n, BLayout::default()).unwrap();
    for opts in paths() {
        let a = vec![1u8; 3 * k];
        let mut c = vec![0i32; 3 * n];
        shape_error(gemm_int8(Int8Sign::SS, 0, &a, k, &b, &mut c, n, false, &opts), "m must be at least 1");
        shape_error(gemm_int8(Int8Sign::SS, 3, &a, k - 1, &b, &mut c, n, false, &opts), "lda");
        shape_error(gemm_int8(Int8Sign::SS, 3, &a, k, &b, &mut c, n - 1, false, &opts), "ldc");
        shape_error(gemm_int8(Int8Sign::SS, 4, &a, k, &b, &mut c, n, false, &opts), "A has 120 elements");
        shape_error(gemm_int8(Int8Sign::SS, 3, &a, k, &b, &mut c[..3 * n - 1], n, false, &opts), "C has 71 elements");
        // Strides whose products overflow must not wrap into "fits".
        shape_error(gemm_int8(Int8Sign::SS, 3, &a, usize::MAX / 2 + 1, &b, &mut c, n, false, &opts), "A has");
        shape_error(gemm_int8(Int8Sign::SS, 3, &a, k, &b, &mut c, usize::MAX / 4 + 1, false, &opts), "C has");
        let a16 = vec![0x3f80u16; 3 * k];
        let mut cf = vec![0f32; 3 * n];
        let b16 = PackedB::pack_bf16(&vec![0x3f80; k * n], k, n, n, BLayout::default()).unwrap();
        shape_error(gemm_bf16(3, &a16, usize::MAX / 2 + 1, &b16, &mut cf, n, false, &opts), "A has");
    }
}

#[test]
fn wrong_packing_and_zero_threads_are_rejected() {
    let (k, n) = (32, 16);
    let b8 = PackedB::pack_int8(&vec![1; k * n], k, n, n, BLayout::default()).unwrap();
    let b16 = PackedB::pack_bf16(&vec![0x3f80; k * n], k, n, n, BLayout::default()).unwrap();
    for opts in paths() {
        let mut cf = vec![0f32; n];
        let err = gemm_bf16(1, &vec![0x3f80; k], k, &b8, &mut cf, n, false, &opts).unwrap_err();
        assert!(matches!(err, GemmError::ElemMismatch { .. }), "{err}");
        assert!(err.to_string().contains("pack B for this element type"), "{err}");
        let mut ci = vec![0i32; n];
        let err = gemm_int8(Int8Sign::UU, 1, &[1; 32], k, &b16, &mut ci, n, false, &opts).unwrap_err();
        assert!(matches!(err, GemmError::ElemMismatch { .. }), "{err}");
        let zero = GemmOptions { threads: 0, ..opts };
        let err = gemm_int8(Int8Sign::UU, 1, &[1; 32], k, &b8, &mut ci, n, false, &zero).unwrap_err();
        assert!(matches!(err, GemmError::Threads), "{err}");
    }
}
