//! Differential tests of the quantized AVX-512 kernel (GGUF Q8_0 / Q4_0
//! weights x Q8_0 activations) against `tilejit_verify::quant::gemm_quant`,
//! bit for bit: random shapes (m 1..=4, n 1..200, k up to 2048), panel
//! grouping and prefetch variants, block contents (zero scales, f16
//! subnormal scales, extreme quants, all-equal blocks, random), every
//! buffer flush against guard pages. Plus NaN/inf propagation, packing
//! round trips, typed errors, the real SmolLM2 token_embd (Q8_0) when
//! `TILEJIT_TEST_MODEL` is set, and an ignored GEMV timing
//! (`-- --ignored --nocapture quant_gemv_timing`).

mod common;

use common::{avx512_or_skip, Flush, Guarded};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::kernels::quant_avx512::{
    PackedQ8, Q8Activations, QuantAvx512Kernel, QuantAvx512Spec, QuantPackError, SourceFormat, CHUNK_BYTES,
};
use tilejit_verify::quant::{gemm_quant, quantize_row_q8_0, BlockType};
use tilejit_verify::strategies::standard_normal;

fn runnable(test: &str) -> bool {
    avx512_or_skip(test, false, true)
}

/// How a block's quants are drawn.
#[derive(Clone, Copy, Debug)]
enum Content {
    Random,
    /// Only the extreme codes (-128/127 for Q8_0, nibbles 0/15 for Q4_0).
    Extremes,
    /// One value repeated over the block.
    AllEqual,
    Zero,
}

const CONTENTS: [Content; 4] = [Content::Random, Content::Extremes, Content::AllEqual, Content::Zero];

/// How a block's f16 scale is drawn (all finite, small enough that no sum
/// overflows: the bit-exact comparisons avoid inf and NaN).
#[derive(Clone, Copy, Debug)]
enum ScaleKind {
    /// Any finite f16 with exponent field <= 20 (|d| < 64), either sign.
    Random,
    Zero,
    /// f16 subnormals (exponent field 0).
    Subnormal,
    Mixed,
}

fn scale_bits(kind: ScaleKind, rng: &mut StdRng) -> u16 {
    let sign = if rng.random() { 0x8000 } else { 0 };
    match kind {
        ScaleKind::Random => sign | rng.random_range(0..=20u16) << 10 | rng.random_range(0..0x400u16),
        ScaleKind::Zero => sign,
        ScaleKind::Subnormal => sign | rng.random_range(1..0x400u16),
        ScaleKind::Mixed => {
            let k = [ScaleKind::Random, ScaleKind::Zero, ScaleKind::Subnormal][rng.random_range(0..3)];
            scale_bits(k, rng)
        }
    }
}

/// 32 codes: Q8_0 as i8 in -128..=127, Q4_0 nibbles 0..=15.
fn codes(content: Content, q4: bool, rng: &mut StdRng) -> [i32; 32] {
    let (lo, hi) = if q4 { (0, 15) } else { (-128, 127) };
    let pick = |rng: &mut StdRng| match content {
        Content::Random => rng.random_range(lo..=hi),
        Content::Extremes => {
            if rng.random() {
                lo
            } else {
                hi
            }
        }
        Content::AllEqual | Content::Zero => 0,
    };
    match content {
        Content::AllEqual => [if rng.random() { lo } else { hi }; 32],
        Content::Zero => [if q4 { 8 } else { 0 }; 32],
        _ => std::array::from_fn(|_| pick(rng)),
    }
}

/// `rows` GGUF rows of `k` in `ty` (Q8_0 or Q4_0).
fn gguf_rows(ty: BlockType, rows: usize, k: usize, content: Content, scales: ScaleKind, rng: &mut StdRng) -> Vec<u8> {
    let q4 = ty == BlockType::Q4_0;
    let mut out = Vec::new();
    for _ in 0..rows * k / 32 {
        out.extend_from_slice(&scale_bits(scales, rng).to_le_bytes());
        let q = codes(content, q4, rng);
        if q4 {
            out.extend((0..16).map(|j| (q[j] | q[j + 16] << 4) as u8));
        } else {
            out.extend(q.iter().map(|&v| v as i8 as u8));
        }
    }
    out
}

/// Activations as the driver makes them: `quantize_row_q8_0` of normal data.
fn quantized_activations(m: usize, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let sigma = [1e-3, 1.0, 100.0][rng.random_range(0..3)];
    let x: Vec<f32> = (0..m * k).map(|_| (sigma * standard_normal(rng)) as f32).collect();
    quantize_row_q8_0(&x)
}

/// Runs the kernel on guarded copies of everything and returns C.
fn run_guarded(kernel: &QuantAvx512Kernel, w: &PackedQ8, a: &Q8Activations, flush: Flush) -> Vec<f32> {
    let (m, n) = (a.m, w.n());
    let wg = Guarded::new(w.as_bytes(), flush);
    let aq = Guarded::new(&a.quants, flush);
    let asc = Guarded::new(&a.terms, flush);
    let mut c = Guarded::new(&vec![f32::from_bits(0x7FC0_DEAD); m * n], flush);
    let args = tilejit::kernels::quant_avx512::QuantAvx512Args {
        a: aq.as_slice().as_ptr(),
        a_terms: asc.as_slice().as_ptr(),
        w: wg.as_slice().as_ptr(),
        c: c.as_mut_slice().as_mut_ptr(),
        ..kernel.shape_args(n, w.k())
    };
    // SAFETY: the ISA was checked by the caller; the buffers have exactly
    // the lengths `shape_args` describes.
    unsafe { kernel.run(&args) };
    c.as_slice().to_vec()
}

fn oracle(wt: BlockType, m: usize, n: usize, k: usize, a: &[u8], w: &[u8]) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    gemm_quant(wt, BlockType::Q8_0, m, n, k, a, w, &mut c).unwrap();
    c
}

fn pack(wt: BlockType, w: &[u8], n: usize, k: usize) -> PackedQ8 {
    match wt {
        BlockType::Q4_0 => PackedQ8::from_q4_0(w, n, k),
        _ => PackedQ8::from_q8_0(w, n, k),
    }
    .unwrap()
}

fn assert_bits(got: &[f32], want: &[f32], n: usize, what: &str) {
    assert_eq!(got.len(), want.len());
    for (idx, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: C[{}][{}] = {g:e} ({:#010x}), oracle {w:e} ({:#010x})",
            idx / n,
            idx % n,
            g.to_bits(),
            w.to_bits()
        );
    }
}

#[test]
fn random_shapes_match_oracle_bit_for_bit() {
    if !runnable("quant random shapes") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(0x5151);
    let mut cases = 0;
    for case in 0..400 {
        let m = rng.random_range(1..=4usize);
        let n = if case % 4 == 0 { 16 * rng.random_range(1..=12) } else { rng.random_range(1..200) };
        let k = 32 * [1, 2, 3, rng.random_range(1..=64), rng.random_range(1..=64)][rng.random_range(0..5)];
        let wt = if rng.random() { BlockType::Q8_0 } else { BlockType::Q4_0 };
        let content = CONTENTS[rng.random_range(0..4)];
        let scales =
            [ScaleKind::Random, ScaleKind::Zero, ScaleKind::Subnormal, ScaleKind::Mixed][rng.random_range(0..4)];
        let mut spec = QuantAvx512Spec::new(m as u8);
        spec.panels_per_pass = rng.random_range(1..=spec.panels_per_pass);
        spec.prefetch_blocks = [0, 1, 4][rng.random_range(0..3)];
        let kernel = QuantAvx512Kernel::generate(spec).unwrap();
        let w = gguf_rows(wt, n, k, content, scales, &mut rng);
        let a = if rng.random_range(0..3) == 0 {
            let ac = CONTENTS[rng.random_range(0..4)];
            gguf_rows(BlockType::Q8_0, m, k, ac, ScaleKind::Mixed, &mut rng)
        } else {
            quantized_activations(m, k, &mut rng)
        };
        let want = oracle(wt, m, n, k, &a, &w);
        let packed = pack(wt, &w, n, k);
        let acts = Q8Activations::from_q8_0(&a, m, k).unwrap();
        let flush = if case % 2 == 0 { Flush::End } else { Flush::Start };
        let got = run_guarded(&kernel, &packed, &acts, flush);
        let what = format!("case {case}: {wt:?} m {m} n {n} k {k} {content:?} {scales:?} {spec:?} {flush:?}");
        assert_bits(&got, &want, n, &what);
        cases += 1;
    }
    eprintln!("{cases} random cases bit-exact");
}

#[test]
fn safe_gemm_matches_oracle_for_every_row_count() {
    if !runnable("quant safe gemm") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(7);
    for m in 1..=4 {
        let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(m as u8)).unwrap();
        for (n, k) in [(1, 32), (15, 64), (16, 96), (17, 2048), (199, 512), (16 * 9 + 5, 1024)] {
            for wt in [BlockType::Q8_0, BlockType::Q4_0] {
                let w = gguf_rows(wt, n, k, Content::Random, ScaleKind::Random, &mut rng);
                let a = quantized_activations(m, k, &mut rng);
                let mut got = vec![f32::NAN; m * n];
                kernel.gemm(&pack(wt, &w, n, k), &Q8Activations::from_q8_0(&a, m, k).unwrap(), &mut got).unwrap();
                assert_bits(&got, &oracle(wt, m, n, k, &a, &w), n, &format!("{wt:?} m {m} n {n} k {k}"));
            }
        }
    }
}

/// f16 subnormal scales on both sides: the kernel runs under the default
/// MXCSR (no DAZ/FTZ) and widens exactly, so it still matches.
#[test]
fn subnormal_scales_under_default_mxcsr() {
    if !runnable("quant subnormal scales") {
        return;
    }
    #[allow(deprecated)]
    // SAFETY: reading MXCSR has no side effects.
    let mxcsr = unsafe { std::arch::x86_64::_mm_getcsr() };
    assert_eq!(mxcsr & (1 << 6 | 1 << 15), 0, "test thread runs with DAZ/FTZ: MXCSR {mxcsr:#x}");
    let mut rng = StdRng::seed_from_u64(99);
    let (m, n, k) = (4, 37, 320);
    let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(m as u8)).unwrap();
    for wt in [BlockType::Q8_0, BlockType::Q4_0] {
        let w = gguf_rows(wt, n, k, Content::Extremes, ScaleKind::Subnormal, &mut rng);
        let a = gguf_rows(BlockType::Q8_0, m, k, Content::Random, ScaleKind::Subnormal, &mut rng);
        let want = oracle(wt, m, n, k, &a, &w);
        assert!(want.iter().any(|&v| v != 0.0) && want.iter().all(|&v| v.abs() < 1e-2), "not a tiny-scale case");
        let got = run_guarded(&kernel, &pack(wt, &w, n, k), &Q8Activations::from_q8_0(&a, m, k).unwrap(), Flush::End);
        assert_bits(&got, &want, n, &format!("{wt:?} subnormal scales"));
    }
    #[allow(deprecated)]
    // SAFETY: as above.
    let after = unsafe { std::arch::x86_64::_mm_getcsr() };
    // Bits 0..5 are sticky exception flags (inexact is expected); the
    // control bits must be untouched.
    assert_eq!(after & !0x3F, mxcsr & !0x3F, "the kernel changed MXCSR control bits");
}

/// NaN and inf scales (and poisoned activation blocks): NaN exactly where
/// the oracle has NaN, the same bits everywhere else (inf included).
#[test]
fn non_finite_scales_propagate_like_the_oracle() {
    if !runnable("quant non-finite") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(3);
    let (n, k) = (50, 256);
    let mut saw_inf = false;
    for m in 1..=4 {
        let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(m as u8)).unwrap();
        for wt in [BlockType::Q8_0, BlockType::Q4_0] {
            let block = if wt == BlockType::Q4_0 { 18 } else { 34 };
            let mut w = gguf_rows(wt, n, k, Content::Random, ScaleKind::Random, &mut rng);
            for _ in 0..12 {
                let at = rng.random_range(0..w.len() / block) * block;
                let bits: u16 = [0x7E00, 0xFE01, 0x7C00, 0xFC00, 0x7BFF][rng.random_range(0..5)];
                w[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            }
            let mut x: Vec<f32> = (0..m * k).map(|_| standard_normal(&mut rng) as f32).collect();
            // Row 0: one block whose d overflows f16 (an inf scale); the last
            // row (when m > 1): one poisoned block (NaN scale).
            x[rng.random_range(0..k)] = 1e30;
            if m > 1 {
                x[(m - 1) * k + rng.random_range(0..k)] = f32::NAN;
            }
            let a = quantize_row_q8_0(&x);
            let want = oracle(wt, m, n, k, &a, &w);
            assert!(want.iter().any(|v| v.is_nan()));
            saw_inf |= want.iter().any(|v| v.is_infinite());
            let got =
                run_guarded(&kernel, &pack(wt, &w, n, k), &Q8Activations::from_q8_0(&a, m, k).unwrap(), Flush::End);
            for (idx, (g, o)) in got.iter().zip(&want).enumerate() {
                if o.is_nan() {
                    assert!(g.is_nan(), "{wt:?} m {m} C[{idx}] = {g}, oracle NaN");
                } else {
                    assert_eq!(g.to_bits(), o.to_bits(), "{wt:?} m {m} C[{idx}]: {g} vs oracle {o}");
                }
            }
        }
    }
    assert!(saw_inf, "no case produced an infinite result");
}

#[test]
fn pack_unpack_round_trip() {
    let mut rng = StdRng::seed_from_u64(11);
    for (n, k) in [(1, 32), (16, 64), (17, 96), (200, 2048), (33, 32)] {
        for content in CONTENTS {
            let w = gguf_rows(BlockType::Q8_0, n, k, content, ScaleKind::Mixed, &mut rng);
            let p = PackedQ8::from_q8_0(&w, n, k).unwrap();
            assert_eq!((p.n(), p.k(), p.panels(), p.source()), (n, k, n.div_ceil(16), SourceFormat::Q8_0));
            assert_eq!(p.as_bytes().len(), n.div_ceil(16) * k / 32 * CHUNK_BYTES);
            assert_eq!(p.unpack_to_q8_0(), w, "Q8_0 n {n} k {k} {content:?}");
            // Q4_0 comes back as Q8_0 with q = nibble - 8 and the same d.
            let w4 = gguf_rows(BlockType::Q4_0, n, k, content, ScaleKind::Mixed, &mut rng);
            let want: Vec<u8> = w4
                .chunks_exact(18)
                .flat_map(|b| {
                    let q = (0..32).map(|e| {
                        let nib = if e < 16 { b[2 + e] & 15 } else { b[2 + e - 16] >> 4 };
                        (nib as i8 - 8) as u8
                    });
                    b[..2].iter().copied().chain(q).collect::<Vec<_>>()
                })
                .collect();
            let p4 = PackedQ8::from_q4_0(&w4, n, k).unwrap();
            assert_eq!(p4.source(), SourceFormat::Q4_0);
            assert_eq!(p4.unpack_to_q8_0(), want, "Q4_0 n {n} k {k} {content:?}");
        }
    }
    // Non-finite scales survive (quiet NaN, inf).
    let mut w = vec![0u8; 34];
    for bits in [0x7E00u16, 0x7C00, 0xFC00, 0x0001] {
        w[..2].copy_from_slice(&bits.to_le_bytes());
        assert_eq!(PackedQ8::from_q8_0(&w, 1, 32).unwrap().unpack_to_q8_0(), w);
    }
}

#[test]
fn bad_inputs_give_typed_errors() {
    use QuantPackError::*;
    assert_eq!(PackedQ8::from_q8_0(&[], 0, 32).unwrap_err(), ZeroDim { n: 0, k: 32 });
    assert_eq!(PackedQ8::from_q4_0(&[], 3, 0).unwrap_err(), ZeroDim { n: 3, k: 0 });
    assert_eq!(PackedQ8::from_q8_0(&[0; 34], 1, 33).unwrap_err(), KNotBlockMultiple { k: 33 });
    assert_eq!(
        PackedQ8::from_q8_0(&[0; 67], 2, 32).unwrap_err(),
        WrongLength { what: "weight bytes", expected: 68, actual: 67 }
    );
    assert_eq!(
        PackedQ8::from_q4_0(&[0; 34], 1, 32).unwrap_err(),
        WrongLength { what: "weight bytes", expected: 18, actual: 34 }
    );
    assert_eq!(PackedQ8::from_q8_0(&[0; 34], usize::MAX, 32).unwrap_err(), SizeOverflow);
    assert_eq!(Q8Activations::from_q8_0(&[0; 34], 1, 48).unwrap_err(), KNotBlockMultiple { k: 48 });
    assert!(QuantAvx512Spec { m_rows: 5, panels_per_pass: 1, prefetch_blocks: 0 }.validate().is_err());
    assert!(QuantAvx512Spec { m_rows: 4, panels_per_pass: 4, prefetch_blocks: 0 }.validate().is_err());
    assert!(QuantAvx512Kernel::generate(QuantAvx512Spec { m_rows: 0, panels_per_pass: 1, prefetch_blocks: 0 }).is_err());
    if !runnable("quant bad inputs") {
        return;
    }
    let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(2)).unwrap();
    let w = PackedQ8::from_q8_0(&[0; 68], 2, 32).unwrap();
    let a1 = Q8Activations::from_q8_0(&[0; 34], 1, 32).unwrap();
    assert_eq!(kernel.gemm(&w, &a1, &mut [0.0; 2]).unwrap_err(), BadRows { m: 1, max: 2 });
    let a2 = Q8Activations::from_q8_0(&[0; 68], 2, 32).unwrap();
    assert_eq!(
        kernel.gemm(&w, &a2, &mut [0.0; 3]).unwrap_err(),
        WrongLength { what: "C elements", expected: 4, actual: 3 }
    );
    let a64 = Q8Activations::from_q8_0(&[0; 136], 2, 64).unwrap();
    assert_eq!(
        kernel.gemm(&w, &a64, &mut [0.0; 4]).unwrap_err(),
        WrongLength { what: "activation k", expected: 32, actual: 64 }
    );
}

/// The real SmolLM2 token_embd (Q8_0, dims [576, 49152]): its first 256
/// rows as N, random activations.
#[test]
fn real_model_token_embd() {
    let Some(path) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED real model: TILEJIT_TEST_MODEL not set");
        return;
    };
    if !runnable("quant real model") {
        return;
    }
    let gguf = tilejit::gguf::Gguf::open(&path).unwrap();
    let info = gguf.tensor("token_embd.weight").expect("token_embd.weight");
    assert_eq!(info.ggml_type().name(), "Q8_0");
    let k = info.dims()[0] as usize;
    let n = 256;
    let w = &gguf.tensor_data(info)[..n * k / 32 * 34];
    let mut rng = StdRng::seed_from_u64(2024);
    for m in 1..=4 {
        let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(m as u8)).unwrap();
        let a = quantized_activations(m, k, &mut rng);
        let want = oracle(BlockType::Q8_0, m, n, k, &a, w);
        let got = run_guarded(
            &kernel,
            &pack(BlockType::Q8_0, w, n, k),
            &Q8Activations::from_q8_0(&a, m, k).unwrap(),
            Flush::End,
        );
        assert_bits(&got, &want, n, &format!("token_embd m {m}"));
    }
    eprintln!("real model: token_embd.weight [{k}, 256 of {}] bit-exact for m = 1..=4", info.dims()[1]);
}

/// M = 1, N = K = 4096 Q8_0 GEMV, single thread, weights cycled through
/// about 1 GiB of packed copies (so they stream from DRAM).
#[test]
#[ignore]
fn quant_gemv_timing() {
    if !runnable("quant gemv timing") {
        return;
    }
    let (n, k) = (4096, 4096);
    let mut rng = StdRng::seed_from_u64(1);
    let w = gguf_rows(BlockType::Q8_0, n, k, Content::Random, ScaleKind::Random, &mut rng);
    let packed = pack(BlockType::Q8_0, &w, n, k);
    let a = Q8Activations::from_q8_0(&quantized_activations(1, k, &mut rng), 1, k).unwrap();
    let bytes = packed.as_bytes().len();
    let copies = std::env::var("QUANT_TIMING_COPIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or((1usize << 30).div_ceil(bytes));
    let all: Vec<PackedQ8> = (0..copies).map(|_| packed.clone()).collect();
    let mut c = vec![0.0f32; n];
    for pf in [0u8, 2, 4, 8] {
        let spec = QuantAvx512Spec { prefetch_blocks: pf, ..QuantAvx512Spec::new(1) };
        let kernel = QuantAvx512Kernel::generate(spec).unwrap();
        for (label, set) in [("cold (cycled)", &all[..]), ("cache-warm", &all[..1])] {
            let reps = if set.len() == 1 { 200 } else { 3 * set.len() };
            let t = std::time::Instant::now();
            for r in 0..reps {
                kernel.gemm(&set[r % set.len()], &a, &mut c).unwrap();
            }
            let s = t.elapsed().as_secs_f64();
            eprintln!(
                "prefetch {pf}: {label}: {:.1} GB/s of packed weights ({:.1} us per GEMV, {} MB packed, {} copies)",
                (reps * bytes) as f64 / s / 1e9,
                s / reps as f64 * 1e6,
                bytes / 1_000_000,
                set.len()
            );
        }
    }
}
