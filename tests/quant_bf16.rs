//! "Dequantize once, then dense bf16" (`gemm::gemm_dequant_bf16`) against
//! the oracle's `quant::gemm_dequant_bf16_reference`, bit for bit (NaN
//! payloads included: docs/NUMERICS.md defines them for TDPBF16PS and the
//! oracle defines them for the dequantization), on every ISA path forced
//! through `GemmOptions::isa` and 1/2/3 threads, for every GGUF format and
//! block contents with zero, largest, equal, random and non-finite scales.
//! The library's dequantizer and bf16 narrowing are checked on their own
//! too, and bad shapes get typed errors.

mod common;

use common::{options, Flush, Guarded};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::gemm::{
    bf16_from_f32, dequantize_rows_to_bf16, gemm_dequant_bf16, GemmError, GemmOptions, PackedDequantBf16, ShapeError,
};
use tilejit::isa::{Isa, Op};
use tilejit::kernels::pack::{BLayout, PackError};
use tilejit::kernels::quant_avx512::QuantPackError;
use tilejit_verify::f32_to_bf16;
use tilejit_verify::first_mismatch_f32;
use tilejit_verify::quant::{dequantize_row_to_bf16, gemm_dequant_bf16_reference, BlockType};
use tilejit_verify::strategies::{any_f32_bits, standard_normal, F32_SPECIALS};

const FORMATS: [BlockType; 7] = [
    BlockType::Q4_0,
    BlockType::Q4_1,
    BlockType::Q8_0,
    BlockType::Q8_1,
    BlockType::F16,
    BlockType::Bf16,
    BlockType::F32,
];

/// What the weight blocks hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Content {
    /// Random scales (f16 subnormals included) and quants / values.
    Random,
    /// d = +-0 (Q4_1's m random), or +-0 values.
    ZeroScales,
    /// d (and m) = +-65504 with extreme quants, or the largest finite values.
    Largest,
    /// Every block and every quant the same.
    AllEqual,
    /// NaN (quiet, signalling, payloads, both signs) and +-inf scales or
    /// values among random ones.
    NonFinite,
}

const CONTENTS: [Content; 5] =
    [Content::Random, Content::ZeroScales, Content::Largest, Content::AllEqual, Content::NonFinite];

/// f16 NaNs and infinities: quiet and signalling, with payloads, both signs.
const F16_NON_FINITE: [u16; 8] = [0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7C01, 0xFE3F, 0x7D55, 0xFFFF];

/// A random finite f16 (subnormals included, no NaN/inf).
fn finite_f16(rng: &mut StdRng) -> u16 {
    loop {
        let h: u16 = rng.random();
        if h & 0x7C00 != 0x7C00 {
            return h;
        }
    }
}

/// A realistic weight scale: |d| in 2^-16 .. 2^-2, random sign, sometimes
/// an f16 subnormal.
fn realistic_f16(rng: &mut StdRng) -> u16 {
    let sign = if rng.random_bool(0.5) { 0x8000 } else { 0 };
    if rng.random_bool(0.1) {
        return sign | rng.random_range(1..0x400);
    }
    sign | (rng.random_range(1u16..=13) << 10) | rng.random_range(0..0x400)
}

/// One scale field for `content`.
fn scale_field(content: Content, rng: &mut StdRng, equal: u16) -> u16 {
    match content {
        Content::Random => realistic_f16(rng),
        Content::ZeroScales => [0x0000, 0x8000][rng.random_range(0..2)],
        Content::Largest => [0x7BFF, 0xFBFF][rng.random_range(0..2)],
        Content::AllEqual => equal,
        Content::NonFinite if rng.random_bool(0.4) => F16_NON_FINITE[rng.random_range(0..F16_NON_FINITE.len())],
        Content::NonFinite => realistic_f16(rng),
    }
}

/// `n` GGUF rows of `k` elements of format `ty` holding `content`.
fn weights(ty: BlockType, content: Content, n: usize, k: usize, rng: &mut StdRng) -> Vec<u8> {
    let (eq_d, eq_m, eq_byte) = (realistic_f16(rng), realistic_f16(rng), rng.random::<u8>());
    let mut out = Vec::with_capacity(n * ty.row_bytes(k).unwrap());
    for _ in 0..n * k / ty.block_elems() {
        match ty {
            BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q8_0 | BlockType::Q8_1 => {
                out.extend_from_slice(&scale_field(content, rng, eq_d).to_le_bytes());
                if matches!(ty, BlockType::Q4_1 | BlockType::Q8_1) {
                    // Q4_1's m follows the content too, except for zero scales
                    // (m random there). Q8_1's s must not matter: any bits.
                    let m = match (ty, content) {
                        (BlockType::Q8_1, _) => rng.random(),
                        (_, Content::ZeroScales) => realistic_f16(rng),
                        _ => scale_field(content, rng, eq_m),
                    };
                    out.extend_from_slice(&u16::to_le_bytes(m));
                }
                let quant_bytes = if matches!(ty, BlockType::Q4_0 | BlockType::Q4_1) { 16 } else { 32 };
                for _ in 0..quant_bytes {
                    out.push(match content {
                        Content::AllEqual => eq_byte,
                        // Q8: -128 / 127; Q4: nibbles 0 / 15 (both in one byte).
                        Content::Largest if quant_bytes == 32 => [0x80, 0x7F][rng.random_range(0..2)],
                        Content::Largest => [0x00, 0xFF, 0x0F, 0xF0][rng.random_range(0..4)],
                        _ => rng.random(),
                    });
                }
            }
            BlockType::F16 => {
                let h = match content {
                    Content::Random => finite_f16(rng),
                    _ => scale_field(content, rng, eq_d),
                };
                out.extend_from_slice(&h.to_le_bytes());
            }
            BlockType::Bf16 => {
                let b: u16 = match content {
                    Content::Random => f32_to_bf16(standard_normal(rng) as f32 * 2f32.powi(rng.random_range(-20..20))),
                    Content::ZeroScales => [0x0000, 0x8000, 0x0001, 0x807F][rng.random_range(0..4)],
                    Content::Largest => [0x7F7F, 0xFF7F][rng.random_range(0..2)],
                    Content::AllEqual => eq_d,
                    Content::NonFinite => [0x7F80, 0xFF80, 0x7FC0, 0xFF81, 0x7FBF, 0x3F80][rng.random_range(0..6)],
                };
                out.extend_from_slice(&b.to_le_bytes());
            }
            BlockType::F32 => {
                let x: u32 = match content {
                    Content::Random => {
                        // Random low bits, so RNE ties and near-ties occur.
                        let hi = f32_to_bf16(standard_normal(rng) as f32) as u32;
                        (hi << 16) | [0x8000, 0x7FFF, 0x8001, rng.random_range(0..0x10000)][rng.random_range(0..4)]
                    }
                    Content::ZeroScales => [0x0000_0000, 0x8000_0000, 0x0000_0001, 0x807F_FFFF][rng.random_range(0..4)],
                    // f32::MAX and the largest values that still round to bf16 max.
                    Content::Largest => [0x7F7F_FFFF, 0xFF7F_FFFF, 0x7F7F_7FFF, 0xFF7F_7FFF][rng.random_range(0..4)],
                    Content::AllEqual => u32::from(eq_d) << 16 | 0x8000,
                    Content::NonFinite => F32_SPECIALS[rng.random_range(0..F32_SPECIALS.len())],
                };
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    out
}

/// Activations: N(0, 1) with random low bits (RNE ties among them), or
/// with specials (NaN payloads, inf, subnormals, f32 extremes) mixed in.
fn activations(len: usize, specials: bool, rng: &mut StdRng) -> Vec<f32> {
    (0..len)
        .map(|_| {
            if specials && rng.random_bool(0.1) {
                return f32::from_bits(F32_SPECIALS[rng.random_range(0..F32_SPECIALS.len())]);
            }
            let x = standard_normal(rng) as f32;
            f32::from_bits(x.to_bits() & 0xFFFF_0000 | [0x8000, rng.random_range(0..0x10000)][rng.random_range(0..2)])
        })
        .collect()
}

/// Every path, forced: natively where this machine runs it, else emulated
/// (reported once per test).
fn paths(test: &str) -> Vec<GemmOptions> {
    [Isa::Scalar, Isa::Avx512, Isa::Amx].into_iter().map(|isa| options(test, isa, Op::Bf16)).collect()
}

/// Runs the library on `isa` with `threads`, A and C flush against guard
/// pages and C prefilled with a NaN (the call must overwrite it).
fn run(
    w: &PackedDequantBf16,
    a: &[f32],
    m: usize,
    forced: GemmOptions,
    threads: usize,
    flush: Flush,
) -> Result<Vec<f32>, GemmError> {
    let a_g = Guarded::new(a, flush);
    let mut c_g = Guarded::new(&vec![f32::from_bits(0x7FC0_DEAD); m * w.n()], flush);
    let opts = GemmOptions { threads, ..forced };
    gemm_dequant_bf16(w, a_g.as_slice(), m, c_g.as_mut_slice(), w.n(), &opts)?;
    Ok(c_g.as_slice().to_vec())
}

#[allow(clippy::too_many_arguments)]
fn check_case(
    test: &str,
    ty: BlockType,
    content: Content,
    m: usize,
    n: usize,
    k: usize,
    kg: u8,
    specials: bool,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let w = weights(ty, content, n, k, &mut rng);
    let a = activations(m * k, specials, &mut rng);
    let what = format!("{ty:?} {content:?} {m}x{n}x{k} pairs/TDP {kg} specials {specials} seed {seed}");

    // The two dequantizers first: a rule difference shows here with its row.
    let ours = dequantize_rows_to_bf16(ty, &w, n, k).unwrap();
    let row_bytes = ty.row_bytes(k).unwrap();
    for (j, row) in ours.chunks_exact(k).enumerate() {
        let reference = dequantize_row_to_bf16(ty, &w[j * row_bytes..(j + 1) * row_bytes], k).unwrap();
        if let Some(p) = reference.iter().zip(row).position(|(r, o)| r != o) {
            return Err(TestCaseError::fail(format!(
                "{what}: dequantized W[{j}][{p}] = {:#06x}, oracle {:#06x}",
                row[p], reference[p]
            )));
        }
    }

    let layout = BLayout { k_groups_per_tdp: kg, ..BLayout::default() };
    let packed = PackedDequantBf16::from_gguf_with_layout(ty, &w, n, k, layout).unwrap();
    prop_assert_eq!(packed.pairs_per_tdp(), usize::from(kg));
    let mut expected = vec![0f32; m * n];
    gemm_dequant_bf16_reference(ty, m, n, k, &a, &w, packed.pairs_per_tdp(), &mut expected).unwrap();
    for forced in paths(test) {
        let isa = forced.isa.expect("forced");
        for threads in [1, 2, 3] {
            let flush = if seed.wrapping_add(threads as u64).is_multiple_of(2) { Flush::End } else { Flush::Start };
            let c =
                run(&packed, &a, m, forced, threads, flush).map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
            if let Some(mm) = first_mismatch_f32(&expected, &c) {
                let (row, col) = mm.row_col(n);
                return Err(TestCaseError::fail(format!("{what}, {isa}, {threads} threads: C[{row}][{col}]: {mm}")));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// The main property: any M, N, K = 32 * (1..=10), every format and
    /// content, library == oracle on every path and thread count.
    #[test]
    fn gemm_dequant_bf16_matches_the_oracle(
        m in 1usize..70, n in 1usize..100, kb in 1usize..=10,
        ty in prop::sample::select(FORMATS.to_vec()),
        content in prop::sample::select(CONTENTS.to_vec()),
        kg in prop::sample::select(vec![16u8, 16, 16, 8, 5]),
        specials in prop::bool::weighted(0.25),
        seed in any::<u64>(),
    ) {
        check_case("quant_bf16", ty, content, m, n, kb * 32, kg, specials, seed)?;
    }

    /// F16/BF16/F32 rows have one-element blocks: any K, also off the
    /// 32-grid and off the TDP chunk (zero padding).
    #[test]
    fn float_formats_any_k(
        m in 1usize..20, n in 1usize..40, k in 1usize..100,
        ty in prop::sample::select(vec![BlockType::F16, BlockType::Bf16, BlockType::F32]),
        content in prop::sample::select(CONTENTS.to_vec()),
        seed in any::<u64>(),
    ) {
        check_case("quant_bf16_float_k", ty, content, m, n, k, 16, seed.is_multiple_of(4), seed)?;
    }

    /// The library's narrowing is VCVTNEPS2BF16, the oracle's `f32_to_bf16`.
    #[test]
    fn narrowing_matches_the_oracle(bits in any_f32_bits()) {
        let x = f32::from_bits(bits);
        prop_assert_eq!(bf16_from_f32(x), f32_to_bf16(x), "input {:#010x}", bits);
    }

    /// Arbitrary shapes and lengths: an error or a packing, never a panic;
    /// Ok exactly when the shape is valid and the length is right.
    #[test]
    fn from_gguf_never_panics(ty in prop::sample::select(FORMATS.to_vec()), n in 0usize..5, k in 0usize..100,
                              len in 0usize..1000) {
        let bytes = vec![0x3Cu8; len];
        let valid = n > 0 && k > 0 && k % ty.block_elems() == 0 && ty.row_bytes(k).unwrap() * n == len;
        match PackedDequantBf16::from_gguf(ty, &bytes, n, k) {
            Ok(p) => prop_assert!(valid && p.n() == n && p.k() == k && p.format() == ty),
            Err(GemmError::Quant(_)) => prop_assert!(!valid),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}

/// Every narrowing tie and special through the full path, exhaustively
/// over the bf16 upper halves with low halves 0x8000 (ties), 0x7FFF, 0x8001.
#[test]
fn narrowing_exhaustive_upper_halves() {
    for hi in 0..=0xFFFFu32 {
        for lo in [0x0000, 0x7FFF, 0x8000, 0x8001, 0xFFFF] {
            let x = f32::from_bits(hi << 16 | lo);
            assert_eq!(bf16_from_f32(x), f32_to_bf16(x), "input {:#010x}", x.to_bits());
        }
    }
}

/// Real-model-like data: quantized with the oracle's quantizers from
/// normal weights, K = 576 (SmolLM2's embedding width), M over the AMX
/// row-block edges.
#[test]
fn quantized_normal_weights_k576() {
    use tilejit_verify::quant::{quantize_row_q4_0, quantize_row_q4_1, quantize_row_q8_0_weights};
    let (n, k) = (70, 576);
    let mut rng = StdRng::seed_from_u64(576);
    let wf: Vec<f32> = (0..n * k).map(|_| (standard_normal(&mut rng) * 0.05) as f32).collect();
    let a = activations(33 * k, false, &mut rng);
    for (ty, bytes) in [
        (BlockType::Q4_0, quantize_row_q4_0(&wf)),
        (BlockType::Q4_1, quantize_row_q4_1(&wf)),
        (BlockType::Q8_0, quantize_row_q8_0_weights(&wf)),
    ] {
        let packed = PackedDequantBf16::from_gguf(ty, &bytes, n, k).unwrap();
        for m in [1, 16, 17, 33] {
            let mut expected = vec![0f32; m * n];
            gemm_dequant_bf16_reference(ty, m, n, k, &a[..m * k], &bytes, 16, &mut expected).unwrap();
            for forced in paths("quant_bf16_k576") {
                let isa = forced.isa.expect("forced");
                for threads in [1, 2, 3] {
                    let c = run(&packed, &a[..m * k], m, forced, threads, Flush::End).unwrap();
                    if let Some(mm) = first_mismatch_f32(&expected, &c) {
                        panic!("{ty:?} m = {m}, {isa}, {threads} threads: {mm}");
                    }
                }
            }
        }
    }
}

#[test]
fn bad_weights_are_typed_errors() {
    let quant = |r: Result<PackedDequantBf16, GemmError>| match r {
        Err(GemmError::Quant(e)) => e,
        other => panic!("expected a quantized-weights error, got {other:?}"),
    };
    let q40 = vec![0u8; 2 * 18 * 2]; // 2 rows of k = 64
    assert_eq!(
        quant(PackedDequantBf16::from_gguf(BlockType::Q4_0, &q40, 0, 64)),
        QuantPackError::ZeroDim { n: 0, k: 64 }
    );
    assert_eq!(
        quant(PackedDequantBf16::from_gguf(BlockType::Q4_0, &q40, 2, 0)),
        QuantPackError::ZeroDim { n: 2, k: 0 }
    );
    assert_eq!(
        quant(PackedDequantBf16::from_gguf(BlockType::Q4_0, &q40, 2, 48)),
        QuantPackError::KNotBlockMultiple { k: 48 }
    );
    assert_eq!(
        quant(PackedDequantBf16::from_gguf(BlockType::Q8_0, &q40, 2, 64)),
        QuantPackError::WrongLength { what: "weight bytes", expected: 136, actual: 72 }
    );
    assert_eq!(
        quant(PackedDequantBf16::from_gguf(BlockType::Q4_0, &q40[1..], 2, 64)),
        QuantPackError::WrongLength { what: "weight bytes", expected: 72, actual: 71 }
    );
    assert_eq!(
        quant(PackedDequantBf16::from_gguf(BlockType::Q4_1, &q40, usize::MAX / 4, 64)),
        QuantPackError::SizeOverflow
    );
    let huge = PackedDequantBf16::from_gguf(BlockType::F32, &[0; 8], usize::MAX / 2, 2);
    assert_eq!(quant(huge), QuantPackError::SizeOverflow);
    assert!(matches!(dequantize_rows_to_bf16(BlockType::Q8_0, &q40, 2, 31), Err(GemmError::Quant(_))));
    // Float formats take any K; a bad layout is the packer's typed error.
    assert!(PackedDequantBf16::from_gguf(BlockType::F32, &[0; 12], 1, 3).is_ok());
    let bad = BLayout { k_groups_per_tdp: 17, ..BLayout::default() };
    match PackedDequantBf16::from_gguf_with_layout(BlockType::Q4_0, &q40, 2, 64, bad) {
        Err(GemmError::Pack(PackError::KGroups(17))) => {}
        other => panic!("expected a packing error, got {other:?}"),
    }
}

#[test]
fn bad_calls_are_typed_errors_on_every_path() {
    let (n, k) = (20, 64);
    let w = PackedDequantBf16::from_gguf(BlockType::Q8_0, &vec![0x3C; n * 68], n, k).unwrap();
    let a = vec![1.0f32; 3 * k];
    let mut c = vec![0f32; 3 * n];
    let shape = |r: Result<(), GemmError>, want: ShapeError| match r {
        Err(GemmError::Shape(e)) => assert_eq!(e, want),
        other => panic!("expected {want:?}, got {other:?}"),
    };
    let short = |what, len, rows, row| ShapeError::Short { what, len, rows, row, stride: row };
    for forced in paths("quant_bf16_errors") {
        let opts = forced;
        let isa = forced.isa.expect("forced");
        shape(gemm_dequant_bf16(&w, &a, 0, &mut c, n, &opts), ShapeError::NoRows);
        shape(gemm_dequant_bf16(&w, &a[1..], 3, &mut c, n, &opts), short("A", 191, 3, k));
        shape(
            gemm_dequant_bf16(&w, &a, 3, &mut c, n - 1, &opts),
            ShapeError::Stride { what: "ldc", stride: n - 1, row: n },
        );
        shape(gemm_dequant_bf16(&w, &a, 3, &mut c[1..], n, &opts), short("C", 59, 3, n));
        shape(gemm_dequant_bf16(&w, &a, usize::MAX, &mut c, n, &opts), short("A", 192, usize::MAX, k));
        let zero = GemmOptions { threads: 0, ..opts };
        assert!(matches!(gemm_dequant_bf16(&w, &a, 3, &mut c, n, &zero), Err(GemmError::Threads)));
        gemm_dequant_bf16(&w, &a, 3, &mut c, n, &opts).unwrap();
        // 64 * 1.0 * bf16(d * q), d = f16 0x3C3C = 1.05859375, q = 0x3C = 60: 63.515625 -> bf16 63.5.
        assert!(c.iter().all(|&x| x == 64.0 * 63.5), "{isa}: {:?}", &c[..4]);
    }
}
