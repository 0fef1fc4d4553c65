//! Bad input to the GEMM API gets a typed error that says what is wrong,
//! never a panic or an out-of-bounds access, on every ISA path.

use tilejit::emulate::Execution;
use tilejit::gemm::{gemm_bf16, gemm_int8, GemmError, GemmOptions, ShapeError};
mod common;

use tilejit::isa::{Isa, Op};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::Int8Sign;

/// Every path, forced: natively where its int8 and bf16 kernels run here,
/// else emulated (reported once).
fn paths() -> Vec<GemmOptions> {
    [Isa::Scalar, Isa::Avx512, Isa::Amx]
        .into_iter()
        .map(|isa| {
            let int8 = common::options("gemm_errors int8", isa, Op::Int8);
            let bf16 = common::options("gemm_errors bf16", isa, Op::Bf16);
            if int8.execution == bf16.execution {
                int8
            } else {
                GemmOptions { execution: Execution::Emulated, ..int8 }
            }
        })
        .collect()
}

fn shape_error(r: Result<(), GemmError>, want: ShapeError) {
    match r {
        Err(GemmError::Shape(e)) => assert_eq!(e, want),
        other => panic!("expected {want:?}, got {other:?}"),
    }
}

fn short(what: &'static str, len: usize, rows: usize, row: usize, stride: usize) -> ShapeError {
    ShapeError::Short { what, len, rows, row, stride }
}

#[test]
fn shapes_that_do_not_fit_their_buffers_are_rejected() {
    let (k, n) = (40, 24);
    let b = PackedB::pack_int8(&vec![1; k * n], k, n, n, BLayout::default()).unwrap();
    for opts in paths() {
        let a = vec![1u8; 3 * k];
        let mut c = vec![0i32; 3 * n];
        shape_error(gemm_int8(Int8Sign::SS, 0, &a, k, &b, &mut c, n, false, &opts), ShapeError::NoRows);
        shape_error(
            gemm_int8(Int8Sign::SS, 3, &a, k - 1, &b, &mut c, n, false, &opts),
            ShapeError::Stride { what: "lda", stride: k - 1, row: k },
        );
        shape_error(
            gemm_int8(Int8Sign::SS, 3, &a, k, &b, &mut c, n - 1, false, &opts),
            ShapeError::Stride { what: "ldc", stride: n - 1, row: n },
        );
        shape_error(gemm_int8(Int8Sign::SS, 4, &a, k, &b, &mut c, n, false, &opts), short("A", 120, 4, k, k));
        shape_error(
            gemm_int8(Int8Sign::SS, 3, &a, k, &b, &mut c[..3 * n - 1], n, false, &opts),
            short("C", 71, 3, n, n),
        );
        // Strides whose products overflow must not wrap into "fits".
        shape_error(
            gemm_int8(Int8Sign::SS, 3, &a, usize::MAX / 2 + 1, &b, &mut c, n, false, &opts),
            short("A", 120, 3, k, usize::MAX / 2 + 1),
        );
        shape_error(
            gemm_int8(Int8Sign::SS, 3, &a, k, &b, &mut c, usize::MAX / 4 + 1, false, &opts),
            short("C", 72, 3, n, usize::MAX / 4 + 1),
        );
        let a16 = vec![0x3f80u16; 3 * k];
        let mut cf = vec![0f32; 3 * n];
        let b16 = PackedB::pack_bf16(&vec![0x3f80; k * n], k, n, n, BLayout::default()).unwrap();
        shape_error(
            gemm_bf16(3, &a16, usize::MAX / 2 + 1, &b16, &mut cf, n, false, &opts),
            short("A", 120, 3, k, usize::MAX / 2 + 1),
        );
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

/// Any thread count, up to `usize::MAX`, runs as many threads as there is
/// work for and gives the one-thread bits (dense, quantized and sparse,
/// every path that runs here); arithmetic on the count never overflows.
#[test]
fn any_thread_count_runs_and_gives_the_one_thread_bits() {
    use tilejit::gemm::{gemm_quant, quantize_activations, quantize_weights, QuantWeights};
    use tilejit::kernels::quant_avx512::{QuantActivations, WeightFormat};
    use tilejit::sparse::{gemm_sparse_bf16, gemm_sparse_i8, SparseWeights};
    let (m, k, n) = (5, 64, 48);
    let counts = [usize::MAX, usize::MAX / 3, 1 << 62, 7];
    let a8: Vec<u8> = (0..m * k).map(|i| (i * 37 % 251) as u8).collect();
    let b8: Vec<i8> = (0..k * n).map(|i| if i % 3 == 0 { 0 } else { (i * 11 % 255) as i8 }).collect();
    let a16: Vec<u16> = (0..m * k).map(|i| 0x3F80 + (i % 97) as u16).collect();
    let b16: Vec<u16> = (0..k * n).map(|i| if i % 2 == 0 { 0 } else { 0x3F00 + (i % 89) as u16 }).collect();
    let b8_bytes: Vec<u8> = b8.iter().map(|&v| v as u8).collect();
    let pb8 = PackedB::pack_int8(&b8_bytes, k, n, n, BLayout::default()).unwrap();
    let pb16 = PackedB::pack_bf16(&b16, k, n, n, BLayout::default()).unwrap();
    let (sb8, sb16) = (SparseWeights::i8(&b8, k, n).unwrap(), SparseWeights::bf16(&b16, k, n).unwrap());
    let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 - 6.0).collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i % 17) as f32 * 0.01 - 0.08).collect();
    let qw = QuantWeights::from_gguf(WeightFormat::Q4_0, &quantize_weights(WeightFormat::Q4_0, &w), n, k).unwrap();
    let af = WeightFormat::Q4_0.activations();
    let qa = QuantActivations::from_gguf(af, &quantize_activations(af, &x), m, k).unwrap();
    for base in paths() {
        let isa = base.isa.expect("paths() forces each ISA");
        let runs = |op| tilejit::isa::availability_with(isa, op, base.execution).is_ok();
        let (sparse, quant) = (runs(Op::SparseInt8) && runs(Op::SparseBf16), runs(Op::Quant));
        let run = |threads: usize| {
            let opts = GemmOptions { threads, ..base };
            let mut outs: Vec<Vec<u32>> = Vec::new();
            let mut ci = vec![0i32; m * n];
            gemm_int8(Int8Sign::US, m, &a8, k, &pb8, &mut ci, n, false, &opts).unwrap();
            outs.push(ci.iter().map(|&v| v as u32).collect());
            let mut cf = vec![0f32; m * n];
            gemm_bf16(m, &a16, k, &pb16, &mut cf, n, false, &opts).unwrap();
            outs.push(cf.iter().map(|v| v.to_bits()).collect());
            if sparse {
                let a8s: Vec<i8> = a8.iter().map(|&v| v as i8).collect();
                let mut ci = vec![0i32; m * n];
                gemm_sparse_i8(m, &a8s, k, &sb8, &mut ci, n, false, &opts).unwrap();
                outs.push(ci.iter().map(|&v| v as u32).collect());
                let mut cf = vec![0f32; m * n];
                gemm_sparse_bf16(m, &a16, k, &sb16, &mut cf, n, false, &opts).unwrap();
                outs.push(cf.iter().map(|v| v.to_bits()).collect());
            }
            if quant {
                let mut cf = vec![0f32; m * n];
                gemm_quant(&qw, &qa, &mut cf, qw.n(), &opts).unwrap();
                outs.push(cf.iter().map(|v| v.to_bits()).collect());
            }
            outs
        };
        let one = run(1);
        for threads in counts {
            assert!(run(threads) == one, "{isa:?}, {threads} threads (sparse {sparse}, quantized {quant})");
        }
    }
}

/// An option means the same on every path: a blocking no kernel supports
/// is refused whatever path M would pick (it only steers AMX).
#[test]
fn an_unsupported_blocking_is_refused_on_every_path() {
    use tilejit::kernels::dense_amx::Blocking;
    let (k, n) = (64, 32);
    let b = PackedB::pack_int8(&vec![1; k * n], k, n, n, BLayout::default()).unwrap();
    let bad = Blocking { m_tiles: 3, n_tiles: 3 };
    let mut forced = paths();
    forced.push(GemmOptions::default()); // dispatched by M
    for base in forced {
        for m in [1, 64] {
            let opts = GemmOptions { blocking: bad, ..base };
            let mut c = vec![0i32; m * n];
            let err = gemm_int8(Int8Sign::SS, m, &vec![1u8; m * k], k, &b, &mut c, n, false, &opts).unwrap_err();
            assert!(matches!(err, GemmError::Blocking { blocking } if blocking == bad), "{err:?}");
            assert!(err.to_string().contains("blocking 3x3"), "{err}");
        }
    }
}

/// The quantized calls take C as the dense ones do: `m` rows `ldc >= n`
/// apart, the columns past N untouched, the same bits as a dense C.
#[test]
fn quantized_calls_take_c_with_a_row_stride() {
    use tilejit::gemm::{gemm_quant, quantize_activations, quantize_weights, QuantWeights};
    use tilejit::kernels::quant_avx512::{QuantActivations, WeightFormat};
    let (m, k, n, ldc) = (6, 64, 40, 47);
    let x: Vec<f32> = (0..m * k).map(|i| (i % 11) as f32 - 5.0).collect();
    let w: Vec<f32> = (0..n * k).map(|i| (i % 19) as f32 * 0.02 - 0.2).collect();
    for format in [WeightFormat::Q8_0, WeightFormat::Q4_0, WeightFormat::Q4_1] {
        let qw = QuantWeights::from_gguf(format, &quantize_weights(format, &w), n, k).unwrap();
        let af = format.activations();
        let qa = QuantActivations::from_gguf(af, &quantize_activations(af, &x), m, k).unwrap();
        for isa in [Isa::Scalar, Isa::Avx512, Isa::Amx] {
            let opts = common::options("quantized_calls_take_c_with_a_row_stride", isa, Op::Quant);
            let mut dense = vec![0f32; m * n];
            gemm_quant(&qw, &qa, &mut dense, n, &opts).unwrap();
            const PAD: f32 = -7.25;
            let mut strided = vec![PAD; (m - 1) * ldc + n];
            gemm_quant(&qw, &qa, &mut strided, ldc, &opts).unwrap();
            for i in 0..m {
                let row: Vec<u32> = strided[i * ldc..i * ldc + n].iter().map(|v| v.to_bits()).collect();
                let want: Vec<u32> = dense[i * n..(i + 1) * n].iter().map(|v| v.to_bits()).collect();
                assert_eq!(row, want, "{format:?} {isa}: row {i}");
                if i + 1 < m {
                    assert!(strided[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == PAD), "{isa}: padding of row {i}");
                }
            }
            let err = gemm_quant(&qw, &qa, &mut strided[..(m - 1) * ldc + n - 1], ldc, &opts).unwrap_err();
            assert!(matches!(err, GemmError::Shape(ShapeError::Short { what: "C", .. })), "{err:?}");
        }
    }
}
