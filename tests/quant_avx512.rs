//! Differential tests of the quantized AVX-512 decode kernel (GGUF Q8_0 x
//! Q8_0, Q4_0 x Q8_0, Q4_1 x Q8_1) against
//! `tilejit_verify::quant::gemm_quant`, bit for bit (NaN as NaN): random
//! shapes (m 1..=4, n 1..200 incl. tails, k up to 2048 incl. odd block
//! counts), panel grouping and prefetch variants, block contents (zero
//! scales, f16 subnormal scales, the largest f16, extreme quants,
//! all-equal blocks, random), every buffer flush against guard pages; inf
//! and NaN scales on every field; a proptest through the safe entry point;
//! packing round trips and the documented byte layout; typed errors; the
//! real SmolLM2 tensors (token_embd Q8_0, a Q4_1 FFN weight) when
//! `TILEJIT_TEST_MODEL` is set; and an ignored GEMV timing
//! (`-- --ignored --nocapture quant_gemv_timing`).

mod common;

use common::{features_or_skip, Flush, Guarded};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::gemm::{quantize_activations, reference_types};
use tilejit::kernels::quant_avx512::{
    ActivationFormat, PackedQuant, QuantActivations, QuantAvx512Args, QuantAvx512Kernel, QuantAvx512Spec,
    QuantPackError, WeightFormat, TERM_WORDS,
};
use tilejit_verify::quant::{decode_row, gemm_quant, BlockType};
use tilejit_verify::strategies::standard_normal;

fn runnable(test: &str) -> bool {
    features_or_skip(test, tilejit::kernels::quant_avx512::FEATURES)
}

const FORMATS: [WeightFormat; 3] = WeightFormat::ALL;

/// How a block's quants are drawn.
#[derive(Clone, Copy, Debug)]
enum Content {
    Random,
    /// Only the extreme codes (-128/127 for Q8, nibbles 0/15 for Q4).
    Extremes,
    /// One extreme value repeated over the block.
    AllEqual,
    /// The code of zero (Q4_1: nibble 0, i.e. the block is all m).
    Zero,
}

const CONTENTS: [Content; 4] = [Content::Random, Content::Extremes, Content::AllEqual, Content::Zero];

/// How a block's f16 fields (d, and m or s) are drawn. All finite; the
/// non-finite cases have their own test.
#[derive(Clone, Copy, Debug)]
enum ScaleKind {
    /// Any finite f16 with exponent field <= 20 (|d| < 64), either sign.
    Random,
    Zero,
    /// f16 subnormals (exponent field 0).
    Subnormal,
    /// +-65504 and its neighbours (exponent field 30).
    Largest,
    Mixed,
}

const SCALE_KINDS: [ScaleKind; 5] =
    [ScaleKind::Random, ScaleKind::Zero, ScaleKind::Subnormal, ScaleKind::Largest, ScaleKind::Mixed];

fn scale_bits(kind: ScaleKind, rng: &mut StdRng) -> u16 {
    let sign = if rng.random() { 0x8000 } else { 0 };
    match kind {
        ScaleKind::Random => sign | rng.random_range(0..=20u16) << 10 | rng.random_range(0..0x400u16),
        ScaleKind::Zero => sign,
        ScaleKind::Subnormal => sign | rng.random_range(1..0x400u16),
        ScaleKind::Largest => sign | (0x7BFF - rng.random_range(0..4u16)),
        ScaleKind::Mixed => {
            let k =
                [ScaleKind::Random, ScaleKind::Zero, ScaleKind::Subnormal, ScaleKind::Largest][rng.random_range(0..4)];
            scale_bits(k, rng)
        }
    }
}

/// 32 codes: Q8 as i8 in -128..=127, Q4 nibbles 0..=15.
fn codes(content: Content, q4: bool, zero: i32, rng: &mut StdRng) -> [i32; 32] {
    let (lo, hi) = if q4 { (0, 15) } else { (-128, 127) };
    match content {
        Content::Random => std::array::from_fn(|_| rng.random_range(lo..=hi)),
        Content::Extremes => std::array::from_fn(|_| if rng.random() { lo } else { hi }),
        Content::AllEqual => [if rng.random() { lo } else { hi }; 32],
        Content::Zero => [zero; 32],
    }
}

/// `rows` GGUF weight rows of `k` in `f`, fields drawn as asked.
fn weight_rows(
    f: WeightFormat,
    rows: usize,
    k: usize,
    content: Content,
    scales: ScaleKind,
    rng: &mut StdRng,
) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rows * k / 32 {
        out.extend_from_slice(&scale_bits(scales, rng).to_le_bytes());
        if f == WeightFormat::Q4_1 {
            out.extend_from_slice(&scale_bits(scales, rng).to_le_bytes());
        }
        match f {
            WeightFormat::Q8_0 => out.extend(codes(content, false, 0, rng).iter().map(|&v| v as i8 as u8)),
            _ => {
                let q = codes(content, true, if f == WeightFormat::Q4_0 { 8 } else { 0 }, rng);
                out.extend((0..16).map(|j| (q[j] | q[j + 16] << 4) as u8));
            }
        }
    }
    out
}

/// `rows` GGUF activation rows with raw fields (Q8_1's s drawn independently
/// of the quants: the dot product reads it from the bytes).
fn raw_act_rows(f: ActivationFormat, rows: usize, k: usize, content: Content, rng: &mut StdRng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rows * k / 32 {
        out.extend_from_slice(&scale_bits(ScaleKind::Mixed, rng).to_le_bytes());
        if f == ActivationFormat::Q8_1 {
            out.extend_from_slice(&scale_bits(ScaleKind::Mixed, rng).to_le_bytes());
        }
        out.extend(codes(content, false, 0, rng).iter().map(|&v| v as i8 as u8));
    }
    out
}

/// Activations as the model runner makes them: the quantizer of normal data.
fn quantized_acts(f: ActivationFormat, m: usize, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let sigma = [1e-3, 1.0, 100.0][rng.random_range(0..3)];
    let x: Vec<f32> = (0..m * k).map(|_| (sigma * standard_normal(rng)) as f32).collect();
    quantize_activations(f, &x)
}

/// Runs the kernel on guarded copies of everything and returns C.
fn run_guarded(kernel: &QuantAvx512Kernel, w: &PackedQuant, a: &QuantActivations, flush: Flush) -> Vec<f32> {
    let (m, n) = (a.m(), w.n());
    let wg = Guarded::new(w.as_bytes(), flush);
    let aq = Guarded::new(a.quants(), flush);
    let at = Guarded::new(a.kernel_terms(), flush);
    let mut c = Guarded::new(&vec![f32::from_bits(0x7FC0_DEAD); m * n], flush);
    let args = QuantAvx512Args {
        a: aq.as_slice().as_ptr(),
        a_terms: at.as_slice().as_ptr(),
        w: wg.as_slice().as_ptr(),
        c: c.as_mut_slice().as_mut_ptr(),
        ..kernel.shape_args(n, w.k())
    };
    // SAFETY: the ISA was checked by the caller; the kernel's format is w's
    // and the buffers have exactly the lengths `shape_args` describes.
    unsafe { kernel.run(&args) };
    c.as_slice().to_vec()
}

fn oracle(wf: WeightFormat, m: usize, n: usize, k: usize, a: &[u8], w: &[u8]) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    let (wt, at) = reference_types(wf);
    gemm_quant(wt, at, m, n, k, a, w, &mut c).unwrap();
    c
}

fn acts(f: ActivationFormat, a: &[u8], m: usize, k: usize) -> QuantActivations {
    QuantActivations::from_gguf(f, a, m, k).unwrap()
}

/// Bits equal, except that a NaN only has to be a NaN.
fn assert_bits(got: &[f32], want: &[f32], n: usize, what: &str) {
    assert_eq!(got.len(), want.len());
    for (idx, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
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
    let mut cases = [0usize; 3];
    for case in 0..1500 {
        let wf = FORMATS[case % 3];
        let af = wf.activations();
        let m = rng.random_range(1..=4usize);
        let n = if case % 4 == 0 { 16 * rng.random_range(1..=12) } else { rng.random_range(1..200) };
        let k = 32 * [1, 2, 3, rng.random_range(1..=64), rng.random_range(1..=64)][rng.random_range(0..5)];
        let content = CONTENTS[rng.random_range(0..4)];
        let scales = SCALE_KINDS[rng.random_range(0..5)];
        let mut spec = QuantAvx512Spec::new(wf, m as u8);
        spec.panels_per_pass = rng.random_range(1..=spec.panels_per_pass);
        spec.prefetch_pairs = [0, 1, 2, 4][rng.random_range(0..4)];
        let kernel = QuantAvx512Kernel::generate(spec).unwrap();
        let w = weight_rows(wf, n, k, content, scales, &mut rng);
        let a = if rng.random_range(0..3) == 0 {
            raw_act_rows(af, m, k, CONTENTS[rng.random_range(0..4)], &mut rng)
        } else {
            quantized_acts(af, m, k, &mut rng)
        };
        let want = oracle(wf, m, n, k, &a, &w);
        let packed = PackedQuant::from_gguf(wf, &w, n, k).unwrap();
        let flush = if case % 2 == 0 { Flush::End } else { Flush::Start };
        let got = run_guarded(&kernel, &packed, &acts(af, &a, m, k), flush);
        let what = format!("case {case}: {wf:?} m {m} n {n} k {k} {content:?} {scales:?} {spec:?} {flush:?}");
        assert_bits(&got, &want, n, &what);
        cases[case % 3] += 1;
    }
    eprintln!("random cases bit-exact: Q8_0 {}, Q4_0 {}, Q4_1 {}", cases[0], cases[1], cases[2]);
}

#[test]
fn safe_gemm_matches_oracle_for_every_row_count() {
    if !runnable("quant safe gemm") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(7);
    for wf in FORMATS {
        let af = wf.activations();
        for m in 1..=4 {
            let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(wf, m as u8)).unwrap();
            for (n, k) in [(1, 32), (15, 64), (16, 96), (17, 2048), (199, 512), (16 * 9 + 5, 1024), (130, 576)] {
                let w = weight_rows(wf, n, k, Content::Random, ScaleKind::Random, &mut rng);
                let a = quantized_acts(af, m, k, &mut rng);
                let mut got = vec![f32::NAN; m * n];
                kernel.gemm(&PackedQuant::from_gguf(wf, &w, n, k).unwrap(), &acts(af, &a, m, k), &mut got).unwrap();
                assert_bits(&got, &oracle(wf, m, n, k, &a, &w), n, &format!("{wf:?} m {m} n {n} k {k}"));
            }
        }
    }
}

/// Blocks whose 32 quants are all equal (weights and activations), with
/// every scale kind: sums hit their extremes (+-32*128*128, 32*15*127).
#[test]
fn all_equal_blocks() {
    if !runnable("quant all-equal blocks") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(31);
    for wf in FORMATS {
        let af = wf.activations();
        for scales in SCALE_KINDS {
            let (m, n, k) = (3, 45, 352);
            let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(wf, m as u8)).unwrap();
            let w = weight_rows(wf, n, k, Content::AllEqual, scales, &mut rng);
            let a = raw_act_rows(af, m, k, Content::AllEqual, &mut rng);
            let got =
                run_guarded(&kernel, &PackedQuant::from_gguf(wf, &w, n, k).unwrap(), &acts(af, &a, m, k), Flush::End);
            assert_bits(&got, &oracle(wf, m, n, k, &a, &w), n, &format!("{wf:?} all-equal {scales:?}"));
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
    for wf in FORMATS {
        let af = wf.activations();
        let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(wf, m as u8)).unwrap();
        let w = weight_rows(wf, n, k, Content::Extremes, ScaleKind::Subnormal, &mut rng);
        let mut a = Vec::new();
        for _ in 0..m * k / 32 {
            a.extend_from_slice(&scale_bits(ScaleKind::Subnormal, &mut rng).to_le_bytes());
            if af == ActivationFormat::Q8_1 {
                a.extend_from_slice(&scale_bits(ScaleKind::Subnormal, &mut rng).to_le_bytes());
            }
            a.extend((0..32).map(|_| rng.random::<u8>()));
        }
        let want = oracle(wf, m, n, k, &a, &w);
        assert!(want.iter().any(|&v| v != 0.0) && want.iter().all(|&v| v.abs() < 1e-2), "not a tiny-scale case");
        let got = run_guarded(&kernel, &PackedQuant::from_gguf(wf, &w, n, k).unwrap(), &acts(af, &a, m, k), Flush::End);
        assert_bits(&got, &want, n, &format!("{wf:?} subnormal scales"));
    }
    #[allow(deprecated)]
    // SAFETY: as above.
    let after = unsafe { std::arch::x86_64::_mm_getcsr() };
    // Bits 0..5 are sticky exception flags (inexact is expected); the
    // control bits must be untouched.
    assert_eq!(after & !0x3F, mxcsr & !0x3F, "the kernel changed MXCSR control bits");
}

/// NaN (quiet and signalling), +-inf and the largest finite f16 in every
/// f16 field (weights d and m, activations d and s), and poisoned
/// activation blocks: NaN exactly where the oracle has NaN, the same bits
/// everywhere else (inf included).
#[test]
fn non_finite_scales_propagate_like_the_oracle() {
    if !runnable("quant non-finite") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(3);
    let (n, k) = (50, 288);
    let specials: [u16; 6] = [0x7E00, 0xFE01, 0x7C01, 0x7C00, 0xFC00, 0x7BFF];
    let (mut saw_inf, mut saw_nan) = (false, false);
    for wf in FORMATS {
        let af = wf.activations();
        let (wb, ab) = (wf.gguf_block_bytes(), af.gguf_block_bytes());
        let w_fields = if wf == WeightFormat::Q4_1 { 2 } else { 1 };
        let a_fields = if af == ActivationFormat::Q8_1 { 2 } else { 1 };
        for m in 1..=4 {
            let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(wf, m as u8)).unwrap();
            let mut w = weight_rows(wf, n, k, Content::Random, ScaleKind::Random, &mut rng);
            for _ in 0..12 {
                let at = rng.random_range(0..w.len() / wb) * wb + 2 * rng.random_range(0..w_fields);
                let bits = specials[rng.random_range(0..specials.len())];
                w[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            }
            let mut x: Vec<f32> = (0..m * k).map(|_| standard_normal(&mut rng) as f32).collect();
            // Row 0: one block whose d overflows f16 (an inf scale); the last
            // row (when m > 1): one poisoned block (NaN scale).
            x[rng.random_range(0..k)] = 1e30;
            if m > 1 {
                x[(m - 1) * k + rng.random_range(0..k)] = f32::NAN;
            }
            let mut a = quantize_activations(af, &x);
            for _ in 0..2 {
                let at = rng.random_range(0..a.len() / ab) * ab + 2 * rng.random_range(0..a_fields);
                let bits = specials[rng.random_range(0..specials.len())];
                a[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            }
            let want = oracle(wf, m, n, k, &a, &w);
            saw_nan |= want.iter().any(|v| v.is_nan());
            saw_inf |= want.iter().any(|v| v.is_infinite());
            let got =
                run_guarded(&kernel, &PackedQuant::from_gguf(wf, &w, n, k).unwrap(), &acts(af, &a, m, k), Flush::End);
            assert_bits(&got, &want, n, &format!("{wf:?} m {m} non-finite"));
        }
    }
    assert!(saw_inf && saw_nan, "no case produced an infinite (or NaN) result");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

    /// The safe entry point over generated shapes, formats and data.
    #[test]
    fn proptest_kernel_matches_the_oracle(
        fi in 0usize..3,
        m in 1usize..=4,
        n in 1usize..150,
        kb in 1usize..48,
        content in 0usize..4,
        scales in 0usize..5,
        seed in any::<u64>(),
    ) {
        if !runnable("quant proptest") { return Ok(()); }
        let (wf, k) = (FORMATS[fi], 32 * kb);
        let af = wf.activations();
        let mut rng = StdRng::seed_from_u64(seed);
        let w = weight_rows(wf, n, k, CONTENTS[content], SCALE_KINDS[scales], &mut rng);
        let a = quantized_acts(af, m, k, &mut rng);
        let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(wf, m as u8)).unwrap();
        let mut got = vec![f32::NAN; m * n];
        kernel.gemm(&PackedQuant::from_gguf(wf, &w, n, k).unwrap(), &acts(af, &a, m, k), &mut got).unwrap();
        let want = oracle(wf, m, n, k, &a, &w);
        let bad = got.iter().zip(&want).position(|(g, o)| g.to_bits() != o.to_bits() && !(g.is_nan() && o.is_nan()));
        prop_assert!(bad.is_none(), "{:?} m {} n {} k {}: C[{}] = {:#x}, oracle {:#x}",
            wf, m, n, k, bad.unwrap(), got[bad.unwrap()].to_bits(), want[bad.unwrap()].to_bits());
    }
}

#[test]
fn pack_unpack_round_trip_is_exact() {
    let mut rng = StdRng::seed_from_u64(11);
    for wf in FORMATS {
        for (n, k) in [(1, 32), (16, 64), (17, 96), (200, 2048), (33, 32), (48, 576)] {
            for content in CONTENTS {
                let w = weight_rows(wf, n, k, content, ScaleKind::Mixed, &mut rng);
                let p = PackedQuant::from_gguf(wf, &w, n, k).unwrap();
                assert_eq!((p.n(), p.k(), p.panels(), p.format()), (n, k, n.div_ceil(16), wf));
                assert_eq!(p.unpack(), w, "{wf:?} n {n} k {k} {content:?}");
            }
        }
        // Every f16 field survives bit for bit, NaN payloads (even
        // signalling) and infinities included: scales are never widened.
        let mut w = weight_rows(wf, 1, 32, Content::Random, ScaleKind::Random, &mut rng);
        for bits in [0x7E00u16, 0x7C01, 0xFD55, 0x7C00, 0xFC00, 0x0001, 0x8000] {
            w[..2].copy_from_slice(&bits.to_le_bytes());
            w[2..4].copy_from_slice(&(!bits).to_le_bytes());
            assert_eq!(PackedQuant::from_gguf(wf, &w, 1, 32).unwrap().unpack(), w, "{wf:?} {bits:#06x}");
        }
    }
}

/// The packed size is GGUF's exactly (N a multiple of 16, an even block
/// count), the buffer and every panel are 64-byte aligned, and the bytes
/// sit where the module docs say.
#[test]
fn packed_layout_is_gguf_sized_aligned_and_documented() {
    let mut rng = StdRng::seed_from_u64(12);
    for wf in FORMATS {
        let (n, k) = (64, 4096);
        let w = weight_rows(wf, n, k, Content::Random, ScaleKind::Random, &mut rng);
        let p = PackedQuant::from_gguf(wf, &w, n, k).unwrap();
        assert_eq!(p.as_bytes().len(), w.len(), "{wf:?}: packed bytes != GGUF bytes");
        assert_eq!(p.as_bytes().as_ptr() as usize % 64, 0);
        assert_eq!((p.panel_stride() % 64, wf.pair_bytes() % 64), (0, 0));
        // Odd block count (5) and a partial panel: padded to 3 pairs and 2 panels.
        let w = weight_rows(wf, 22, 160, Content::Random, ScaleKind::Random, &mut rng);
        let p = PackedQuant::from_gguf(wf, &w, 22, 160).unwrap();
        assert_eq!(p.as_bytes().len(), 2 * 3 * wf.pair_bytes());
        // Column c = 5 of panel 1 (row 21), block b = 3 (pair 1, second half).
        let (row, b, c) = (21, 3, 5);
        let blk = &w[(row * 5 + b) * wf.gguf_block_bytes()..][..wf.gguf_block_bytes()];
        let (qb, sb) = (wf.quant_bytes(), wf.scale_bytes());
        let pair = &p.as_bytes()[(3 + 1) * wf.pair_bytes()..][..wf.pair_bytes()];
        let (q, s) = (&pair[qb..2 * qb], &pair[2 * qb + sb..2 * qb + 2 * sb]);
        assert_eq!(s[2 * c..2 * c + 2], blk[..2], "{wf:?} d");
        match wf {
            WeightFormat::Q8_0 => {
                for e in 0..32 {
                    assert_eq!(q[(e / 4) * 64 + 4 * c + e % 4], blk[2 + e] ^ 0x80, "Q8_0 element {e}");
                }
            }
            _ => {
                let qs = if wf == WeightFormat::Q4_1 { &blk[4..] } else { &blk[2..] };
                if wf == WeightFormat::Q4_1 {
                    assert_eq!(s[32 + 2 * c..32 + 2 * c + 2], blk[2..4], "Q4_1 m");
                }
                for r in 0..4 {
                    for t in 0..4 {
                        assert_eq!(q[r * 64 + 4 * c + t], qs[4 * r + t], "{wf:?} row {r} byte {t}");
                    }
                }
            }
        }
        // The padding block of a 3-block row (pair 1, second half) holds the zero code and +0.0.
        let w3 = weight_rows(wf, 16, 96, Content::Random, ScaleKind::Random, &mut rng);
        let p3 = PackedQuant::from_gguf(wf, &w3, 16, 96).unwrap();
        let pad = &p3.as_bytes()[wf.pair_bytes()..][..wf.pair_bytes()];
        let zero = match wf {
            WeightFormat::Q8_0 => 0x80,
            WeightFormat::Q4_0 => 0x88,
            WeightFormat::Q4_1 => 0,
        };
        assert!(pad[qb..2 * qb].iter().all(|&v| v == zero) && pad[2 * qb + sb..].iter().all(|&v| v == 0));
    }
}

#[test]
fn activations_expose_plain_arrays() {
    let mut rng = StdRng::seed_from_u64(13);
    let (m, k) = (3, 96);
    for af in [ActivationFormat::Q8_0, ActivationFormat::Q8_1] {
        let a = raw_act_rows(af, m, k, Content::Random, &mut rng);
        let acts = acts(af, &a, m, k);
        assert_eq!((acts.m(), acts.k(), acts.k_blocks(), acts.format()), (m, k, 3, af));
        assert_eq!((acts.quants().len(), acts.scales().len(), acts.sums().len()), (m * k, m * 3, m * 3));
        assert_eq!(acts.kernel_terms().len(), TERM_WORDS * m * 3);
        let bb = af.gguf_block_bytes();
        for (blk_i, blk) in a.chunks_exact(bb).enumerate() {
            let f16 = |at: usize| decode_row(BlockType::F16, &blk[at..at + 2], 1).unwrap()[0];
            let (d, s) = (f16(0), if af == ActivationFormat::Q8_1 { f16(2) } else { 0.0 });
            assert_eq!(acts.scales()[blk_i].to_bits(), d.to_bits());
            assert_eq!(acts.sums()[blk_i].to_bits(), s.to_bits());
            let q: Vec<i8> = blk[bb - 32..].iter().map(|&v| v as i8).collect();
            assert_eq!(acts.quants()[blk_i * 32..][..32], q[..]);
            let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
            let t = &acts.kernel_terms()[blk_i * TERM_WORDS..][..TERM_WORDS];
            assert_eq!(t, [d.to_bits(), s.to_bits(), (-128 * sum) as u32, (-8 * sum) as u32]);
        }
    }
}

#[test]
fn bad_inputs_give_typed_errors() {
    use QuantPackError::*;
    for wf in FORMATS {
        let bb = wf.gguf_block_bytes();
        assert_eq!(PackedQuant::from_gguf(wf, &[], 0, 32).unwrap_err(), ZeroDim { n: 0, k: 32 });
        assert_eq!(PackedQuant::from_gguf(wf, &[], 3, 0).unwrap_err(), ZeroDim { n: 3, k: 0 });
        assert_eq!(PackedQuant::from_gguf(wf, &vec![0; bb], 1, 33).unwrap_err(), KNotBlockMultiple { k: 33 });
        assert_eq!(PackedQuant::from_gguf(wf, &vec![0; bb], 1, 48).unwrap_err(), KNotBlockMultiple { k: 48 });
        assert_eq!(
            PackedQuant::from_gguf(wf, &vec![0; 2 * bb - 1], 2, 32).unwrap_err(),
            WrongLength { what: "weight bytes", expected: 2 * bb, actual: 2 * bb - 1 }
        );
        assert_eq!(PackedQuant::from_gguf(wf, &vec![0; bb], usize::MAX, 32).unwrap_err(), SizeOverflow);
        // The largest k: a row of it overflows for 34-byte blocks and is just too long for the others.
        let err = PackedQuant::from_gguf(wf, &vec![0; bb], 1, usize::MAX / 32 * 32).unwrap_err();
        assert!(matches!(err, SizeOverflow | WrongLength { .. }), "{wf:?}: {err:?}");
        assert!(wf != WeightFormat::Q8_0 || err == SizeOverflow, "{err:?}");
    }
    assert_eq!(
        PackedQuant::from_q4_0(&[0; 34], 1, 32).unwrap_err(),
        WrongLength { what: "weight bytes", expected: 18, actual: 34 }
    );
    assert_eq!(
        PackedQuant::from_q4_1(&[0; 18], 1, 32).unwrap_err(),
        WrongLength { what: "weight bytes", expected: 20, actual: 18 }
    );
    assert_eq!(QuantActivations::from_q8_0(&[0; 34], 1, 48).unwrap_err(), KNotBlockMultiple { k: 48 });
    assert_eq!(QuantActivations::from_q8_0(&[0; 34], 0, 32).unwrap_err(), ZeroDim { n: 0, k: 32 });
    assert_eq!(
        QuantActivations::from_q8_1(&[0; 34], 1, 32).unwrap_err(),
        WrongLength { what: "activation bytes", expected: 36, actual: 34 }
    );
    assert_eq!(QuantActivations::from_q8_0(&[0; 34], usize::MAX, 32).unwrap_err(), SizeOverflow);
    assert_eq!(QuantActivations::from_q8_1(&[0; 36], 1, usize::MAX / 32 * 32).unwrap_err(), SizeOverflow);
    let spec = |format, m_rows, panels_per_pass| QuantAvx512Spec { format, m_rows, panels_per_pass, prefetch_pairs: 0 };
    assert_eq!(spec(WeightFormat::Q8_0, 5, 1).validate(), Err(BadRows { m: 5, max: 4 }));
    assert!(matches!(spec(WeightFormat::Q8_0, 1, 9).validate(), Err(BadSpec(_))));
    assert!(matches!(spec(WeightFormat::Q4_1, 4, 3).validate(), Ok(())));
    assert!(matches!(spec(WeightFormat::Q8_0, 4, 4).validate(), Err(BadSpec(_))));
    assert!(matches!(spec(WeightFormat::Q4_0, 2, 7).validate(), Err(BadSpec(_))));
    assert!(QuantAvx512Kernel::generate(spec(WeightFormat::Q4_0, 0, 1)).is_err());
    if !runnable("quant bad inputs") {
        return;
    }
    let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(WeightFormat::Q8_0, 2)).unwrap();
    let w = PackedQuant::from_q8_0(&[0; 68], 2, 32).unwrap();
    let a1 = QuantActivations::from_q8_0(&[0; 34], 1, 32).unwrap();
    assert_eq!(kernel.gemm(&w, &a1, &mut [0.0; 2]).unwrap_err(), BadRows { m: 1, max: 2 });
    let a2 = QuantActivations::from_q8_0(&[0; 68], 2, 32).unwrap();
    assert_eq!(
        kernel.gemm(&w, &a2, &mut [0.0; 3]).unwrap_err(),
        WrongLength { what: "C elements", expected: 4, actual: 3 }
    );
    let a64 = QuantActivations::from_q8_0(&[0; 136], 2, 64).unwrap();
    assert_eq!(
        kernel.gemm(&w, &a64, &mut [0.0; 4]).unwrap_err(),
        WrongLength { what: "activation k", expected: 32, actual: 64 }
    );
    // Pairs the oracle does not define, and weights of another format.
    let a2_q81 = QuantActivations::from_q8_1(&[0; 72], 2, 32).unwrap();
    assert_eq!(
        kernel.gemm(&w, &a2_q81, &mut [0.0; 4]).unwrap_err(),
        UnsupportedPair { weights: WeightFormat::Q8_0, activations: ActivationFormat::Q8_1 }
    );
    let k41 = QuantAvx512Kernel::generate(QuantAvx512Spec::new(WeightFormat::Q4_1, 2)).unwrap();
    let w41 = PackedQuant::from_q4_1(&[0; 40], 2, 32).unwrap();
    assert_eq!(
        k41.gemm(&w41, &a2, &mut [0.0; 4]).unwrap_err(),
        UnsupportedPair { weights: WeightFormat::Q4_1, activations: ActivationFormat::Q8_0 }
    );
    assert_eq!(
        k41.gemm(&w, &a2, &mut [0.0; 4]).unwrap_err(),
        WrongFormat { kernel: WeightFormat::Q4_1, weights: WeightFormat::Q8_0 }
    );
    let w40 = PackedQuant::from_q4_0(&[0; 36], 2, 32).unwrap();
    assert_eq!(
        QuantAvx512Kernel::generate(QuantAvx512Spec::new(WeightFormat::Q4_0, 2))
            .unwrap()
            .gemm(&w40, &a2_q81, &mut [0.0; 4])
            .unwrap_err(),
        UnsupportedPair { weights: WeightFormat::Q4_0, activations: ActivationFormat::Q8_1 }
    );
}

/// The real SmolLM2 tensors: token_embd (Q8_0, dims [576, 49152]), its
/// first 256 rows, and blk.0.ffn_down (Q4_1, dims [1536, 576]), all of it,
/// with quantized random activations.
#[test]
fn real_model_tensors() {
    let Some(path) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED real model: TILEJIT_TEST_MODEL not set");
        return;
    };
    if !runnable("quant real model") {
        return;
    }
    let gguf = tilejit::gguf::Gguf::open(&path).unwrap();
    let mut rng = StdRng::seed_from_u64(2024);
    for (name, wf, rows) in
        [("token_embd.weight", WeightFormat::Q8_0, Some(256)), ("blk.0.ffn_down.weight", WeightFormat::Q4_1, None)]
    {
        let info = gguf.tensor(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(info.ggml_type().name(), wf.name().to_uppercase(), "{name}");
        let k = info.dims()[0] as usize;
        let n = rows.unwrap_or(info.dims()[1] as usize);
        let w = &gguf.tensor_data(info)[..n * k / 32 * wf.gguf_block_bytes()];
        let packed = PackedQuant::from_gguf(wf, w, n, k).unwrap();
        assert_eq!(packed.unpack(), w, "{name}: round trip");
        let af = wf.activations();
        for m in 1..=4 {
            let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(wf, m as u8)).unwrap();
            let a = quantized_acts(af, m, k, &mut rng);
            let got = run_guarded(&kernel, &packed, &acts(af, &a, m, k), Flush::End);
            assert_bits(&got, &oracle(wf, m, n, k, &a, w), n, &format!("{name} m {m}"));
        }
        eprintln!("real model: {name} [{k}, {n} of {}] bit-exact for m = 1..=4", info.dims()[1]);
    }
}

/// M = 1, N = K = 4096 GEMV per format, single thread, weights cycled
/// through about 1 GiB of packed copies (so they stream from DRAM), for
/// several prefetch distances. GB/s of GGUF (= packed) bytes.
#[test]
#[ignore]
fn quant_gemv_timing() {
    if !runnable("quant gemv timing") {
        return;
    }
    let (n, k) = (4096, 4096);
    let mut rng = StdRng::seed_from_u64(1);
    for wf in FORMATS {
        let w = weight_rows(wf, n, k, Content::Random, ScaleKind::Random, &mut rng);
        let packed = PackedQuant::from_gguf(wf, &w, n, k).unwrap();
        let af = wf.activations();
        let a = acts(af, &quantized_acts(af, 1, k, &mut rng), 1, k);
        let bytes = packed.as_bytes().len();
        let copies = std::env::var("QUANT_TIMING_COPIES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or((1usize << 30).div_ceil(bytes));
        let all: Vec<PackedQuant> = (0..copies).map(|_| packed.clone()).collect();
        let mut c = vec![0.0f32; n];
        for pf in [0u8, 1, 2, 4] {
            let spec = QuantAvx512Spec { prefetch_pairs: pf, ..QuantAvx512Spec::new(wf, 1) };
            let kernel = QuantAvx512Kernel::generate(spec).unwrap();
            for (label, set) in [("cold (cycled)", &all[..]), ("cache-warm", &all[..1])] {
                let reps = if set.len() == 1 { 200 } else { 3 * set.len() };
                let t = std::time::Instant::now();
                for r in 0..reps {
                    kernel.gemm(&set[r % set.len()], &a, &mut c).unwrap();
                }
                let s = t.elapsed().as_secs_f64();
                eprintln!(
                    "{wf:?} prefetch {pf} pairs: {label}: {:.1} GB/s ({:.1} us per GEMV, {} MB packed, {} copies)",
                    (reps * bytes) as f64 / s / 1e9,
                    s / reps as f64 * 1e6,
                    bytes / 1_000_000,
                    set.len()
                );
            }
        }
    }
}
