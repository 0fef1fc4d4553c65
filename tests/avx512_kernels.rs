//! Differential tests of the dense AVX-512 kernels against the oracle, bit
//! for bit: random specs (rows 1..=16, panels, N tails, K chunking, K
//! blocks, accumulate or overwrite, prefetch distance) and random data (all
//! four int8 signedness pairs, every bf16 distribution), with A, B, C and
//! the int8 column bias flush against guard pages. Plus targeted NaN / FTZ
//! matrices for the two-chain bf16 emulation, MXCSR restoration, and an
//! ignored GEMV timing (`-- --ignored --nocapture gemv_timing`).

mod common;

use common::{features_or_skip, Flush, Guarded};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::gemm::oracle_sign;
use tilejit::kernels::dense_avx512::{int8_col_bias, DenseAvx512Args, DenseAvx512Kernel};
use tilejit::kernels::dense_avx512::{Avx512Kind, DenseAvx512Spec};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::spec::{CInit, Int8Sign};
use tilejit_verify::strategies::fill_f32;
use tilejit_verify::{
    fill_bf16, fill_i8, first_mismatch_i32, gemm_bf16_amx, gemm_bf16_vdpbf16ps, gemm_i8, Bf16Dist, Mismatch,
};

const KINDS: [Avx512Kind; 6] = [
    Avx512Kind::Int8(Int8Sign::SS),
    Avx512Kind::Int8(Int8Sign::SU),
    Avx512Kind::Int8(Int8Sign::US),
    Avx512Kind::Int8(Int8Sign::UU),
    Avx512Kind::Bf16Chains,
    Avx512Kind::Bf16Dot,
];

/// Whether the `kind` kernels run here; the path line is printed once per
/// test name and kind (proptest calls it for every case).
fn runnable(test: &str, kind: Avx512Kind) -> bool {
    features_or_skip(&format!("{test} ({})", kind.name()), kind.features())
}

/// Everything one differential case varies.
#[derive(Clone, Debug)]
struct Case {
    spec: DenseAvx512Spec,
    /// K before padding to whole steps.
    k: usize,
    k_block_steps: usize,
    n_blocks: usize,
    /// Extra bytes per row of A, extra elements per row of C.
    lda_pad: usize,
    ldc_pad: usize,
    dist: Bf16Dist,
    flush: Flush,
    seed: u64,
}

/// The largest panel count `kind` with `m` rows fits in registers.
fn max_panels(kind: Avx512Kind, m: u8) -> u8 {
    (1..=8u8).rev().find(|&n| DenseAvx512Spec::new(kind, m, n, CInit::Zero).validate().is_ok()).unwrap_or(1)
}

fn case_for(kinds: Vec<Avx512Kind>) -> impl Strategy<Value = Case> {
    (
        (prop::sample::select(kinds), 1u8..=16, 1u8..=8, prop_oneof![1 => Just(16u8), 1 => 1u8..=16]),
        (
            prop::sample::select(vec![16u8, 16, 8, 5, 1]),
            1usize..300,
            prop::sample::select(vec![1usize, 2, 3, 16, 1000]),
        ),
        (1usize..=3, any::<bool>(), prop::sample::select(vec![0u8, 8, 32])),
        (0usize..3, 0usize..3, prop::sample::select(Bf16Dist::ALL.to_vec()), any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |((kind, m, n, cols), (kg, k, kbs), (n_blocks, accumulate, pf), (lda_pad, ldc_pad, dist, end, seed))| {
                let spec = DenseAvx512Spec {
                    k_groups_per_tdp: kg,
                    last_panel_cols: cols,
                    prefetch_lines: pf,
                    ..DenseAvx512Spec::new(
                        kind,
                        m,
                        n.min(max_panels(kind, m)),
                        if accumulate { CInit::Load } else { CInit::Zero },
                    )
                };
                let flush = if end { Flush::End } else { Flush::Start };
                Case { spec, k, k_block_steps: kbs, n_blocks, lda_pad: lda_pad * 4, ldc_pad, dist, flush, seed }
            },
        )
}

/// Random logical inputs of a case: A (m x k), B (k x n), C0 (m x ldc).
struct Data {
    /// A as the kernel reads it (padded rows of `a_row_bytes` at `lda`).
    a_bytes: Vec<u8>,
    /// Logical A for the oracle: bytes (int8) or bf16 bits.
    a8: Vec<u8>,
    a16: Vec<u16>,
    b8: Vec<u8>,
    b16: Vec<u16>,
    /// Initial C bits, `m` rows at `ldc` (the last row only `width` long).
    c0: Vec<u32>,
}

/// Geometry shared by the kernel run and the oracle.
struct Shape {
    m: usize,
    /// Columns from the first to the last written one (the last block's tail).
    width: usize,
    k: usize,
    k_steps: usize,
    lda: usize,
    ldc: usize,
}

impl Case {
    fn int8(&self) -> Option<Int8Sign> {
        match self.spec.kind {
            Avx512Kind::Int8(s) => Some(s),
            _ => None,
        }
    }

    fn shape(&self) -> Shape {
        let s = &self.spec;
        let k_per_step = s.k_groups_per_tdp as usize * if self.int8().is_some() { 4 } else { 2 };
        let k_steps = self.k.div_ceil(k_per_step);
        let width = (self.n_blocks - 1) * s.n_panels as usize * 16 + s.block_cols();
        let lda = k_steps * s.a_step_bytes() + self.lda_pad;
        Shape { m: s.m_rows as usize, width, k: self.k, k_steps, lda, ldc: width + self.ldc_pad }
    }

    fn data(&self, sh: &Shape) -> Data {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let (m, n, k) = (sh.m, sh.width, sh.k);
        let mut d = Data {
            a_bytes: vec![0; (m - 1) * sh.lda + sh.k_steps * self.spec.a_step_bytes()],
            a8: vec![0; m * k],
            a16: vec![0; m * k],
            b8: vec![0; k * n],
            b16: vec![0; k * n],
            c0: vec![0; (m - 1) * sh.ldc + n],
        };
        for i in 0..m {
            let row = &mut d.a_bytes[i * sh.lda..];
            match self.spec.kind {
                Avx512Kind::Int8(_) => {
                    fill_i8(&mut rng, &mut d.a8[i * k..(i + 1) * k]);
                    row[..k].copy_from_slice(&d.a8[i * k..(i + 1) * k]);
                }
                Avx512Kind::Bf16Dot | Avx512Kind::Bf16Chains => {
                    fill_bf16(self.dist, &mut rng, &mut d.a16[i * k..(i + 1) * k]);
                    for (p, &x) in d.a16[i * k..(i + 1) * k].iter().enumerate() {
                        if self.spec.kind == Avx512Kind::Bf16Dot {
                            row[2 * p..2 * p + 2].copy_from_slice(&x.to_le_bytes());
                        } else {
                            row[4 * p..4 * p + 4].copy_from_slice(&(u32::from(x) << 16).to_le_bytes());
                        }
                    }
                }
            }
        }
        fill_i8(&mut rng, &mut d.b8);
        fill_bf16(self.dist, &mut rng, &mut d.b16);
        // C starts as noise in every case: with CInit::Zero the kernel must
        // overwrite the written columns and leave the others alone.
        if self.int8().is_some() {
            d.c0.iter_mut().for_each(|x| *x = rng.random());
        } else {
            let mut c = vec![0f32; d.c0.len()];
            fill_f32(self.dist, &mut rng, &mut c);
            d.c0 = c.iter().map(|x| x.to_bits()).collect();
        }
        d
    }
}

/// Runs the kernel(s) like a driver would, one call per K block, with
/// every buffer flush against a guard page. Returns C's bits.
fn run_kernels(case: &Case, sh: &Shape, d: &Data) -> Vec<u32> {
    let s = case.spec;
    let layout = BLayout { k_groups_per_tdp: s.k_groups_per_tdp, k_block_steps: case.k_block_steps };
    let packed = match s.kind {
        Avx512Kind::Int8(_) => PackedB::pack_int8(&d.b8, sh.k, sh.width, sh.width, layout),
        _ => PackedB::pack_bf16(&d.b16, sh.k, sh.width, sh.width, layout),
    }
    .unwrap();
    assert_eq!(packed.k_steps(), sh.k_steps);
    let first = DenseAvx512Kernel::generate(s).unwrap();
    let rest = DenseAvx512Kernel::generate(DenseAvx512Spec { c_init: CInit::Load, ..s }).unwrap();
    let a = Guarded::new(&d.a_bytes, case.flush);
    let b = Guarded::new(packed.as_bytes(), case.flush);
    let mut c = Guarded::new(&d.c0, case.flush);
    let bias = case.int8().and_then(|sign| int8_col_bias(sign, &packed)).map(|v| Guarded::new(&v, case.flush));
    let mut step = 0;
    while step < sh.k_steps {
        let steps = case.k_block_steps.min(sh.k_steps - step);
        let args = DenseAvx512Args {
            a: a.as_slice()[step * s.a_step_bytes()..].as_ptr(),
            lda: sh.lda,
            b: b.as_slice()[packed.tile_offset(step, 0)..].as_ptr(),
            b_panel_stride: packed.block_panel_stride(step),
            c: c.as_mut_slice().as_mut_ptr().cast(),
            ldc: sh.ldc * 4,
            k_steps: steps,
            n_blocks: case.n_blocks,
            col_bias: match (&bias, step) {
                (Some(v), 0) => v.as_slice().as_ptr(),
                _ => std::ptr::null(),
            },
        };
        let kernel = if step == 0 { &first } else { &rest };
        // SAFETY: the caller checked the ISA; the buffers hold what the
        // spec and args describe (that is what the guard pages check).
        unsafe { kernel.run(&args) };
        step += steps;
    }
    c.as_slice().to_vec()
}

/// The oracle's C, with the columns the kernel must not write (the masked
/// part of each block's tail panel, and the ldc padding) left as they were.
fn expected(case: &Case, sh: &Shape, d: &Data) -> Vec<u32> {
    let (m, n, k) = (sh.m, sh.width, sh.k);
    let s = &case.spec;
    let accumulate = s.c_init == CInit::Load;
    let dense: Vec<u32> = (0..m * n).map(|idx| if accumulate { d.c0[idx / n * sh.ldc + idx % n] } else { 0 }).collect();
    let out: Vec<u32> = match s.kind {
        Avx512Kind::Int8(sign) => {
            let mut c: Vec<i32> = dense.iter().map(|&x| x as i32).collect();
            gemm_i8(oracle_sign(sign), m, n, k, &d.a8, &d.b8, &mut c);
            c.iter().map(|&x| x as u32).collect()
        }
        Avx512Kind::Bf16Chains => {
            let mut c: Vec<f32> = dense.iter().map(|&x| f32::from_bits(x)).collect();
            gemm_bf16_amx(m, n, k, &d.a16, &d.b16, &mut c, s.k_groups_per_tdp as usize);
            c.iter().map(|x| x.to_bits()).collect()
        }
        Avx512Kind::Bf16Dot => {
            // The kernel's K is zero padded to whole steps; padding is not
            // bit-neutral for VDPBF16PS (-0 + 0*0 = +0), so pad the oracle too.
            let kp = sh.k_steps * s.k_groups_per_tdp as usize * 2;
            let mut a = vec![0u16; m * kp];
            let mut b = vec![0u16; kp * n];
            for i in 0..m {
                a[i * kp..i * kp + k].copy_from_slice(&d.a16[i * k..(i + 1) * k]);
            }
            b[..k * n].copy_from_slice(&d.b16);
            let mut c: Vec<f32> = dense.iter().map(|&x| f32::from_bits(x)).collect();
            gemm_bf16_vdpbf16ps(m, n, kp, &a, &b, &mut c);
            c.iter().map(|x| x.to_bits()).collect()
        }
    };
    let block = s.n_panels as usize * 16;
    let mut c = d.c0.clone();
    for i in 0..m {
        for j in 0..n {
            let in_tail = j % block >= (s.n_panels as usize - 1) * 16 + s.last_panel_cols as usize;
            if !in_tail {
                c[i * sh.ldc + j] = out[i * n + j];
            }
        }
    }
    c
}

fn check(case: &Case) -> Result<(), String> {
    let sh = case.shape();
    let d = case.data(&sh);
    let got = run_kernels(case, &sh, &d);
    let want = expected(case, &sh, &d);
    let as_i32 = |v: &[u32]| v.iter().map(|&x| x as i32).collect::<Vec<_>>();
    match first_mismatch_i32(&as_i32(&want), &as_i32(&got)) {
        None => Ok(()),
        Some(mm) => {
            let (row, col) = mm.row_col(sh.ldc);
            let mm = if case.int8().is_some() {
                mm
            } else {
                Mismatch { kind: tilejit_verify::report::ValueKind::F32, ..mm }
            };
            Err(format!("{} {case:?}: C[{row}][{col}]: {mm}", case.spec.name()))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn int8_kernels_match_reference(case in case_for(KINDS[..4].to_vec())) {
        if !runnable("int8_kernels_match_reference", case.spec.kind) { return Ok(()); }
        check(&case).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn bf16_chains_kernels_match_amx_reference(case in case_for(vec![Avx512Kind::Bf16Chains])) {
        if !runnable("bf16_chains_kernels_match_amx_reference", case.spec.kind) { return Ok(()); }
        check(&case).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn bf16_dot_kernels_match_vdpbf16ps_reference(case in case_for(vec![Avx512Kind::Bf16Dot])) {
        if !runnable("bf16_dot_kernels_match_vdpbf16ps_reference", case.spec.kind) { return Ok(()); }
        check(&case).map_err(TestCaseError::fail)?;
    }
}

/// Every kind, every row count, the widest panel count that fits, with and
/// without an N tail: the register plans at their edges.
#[test]
fn every_kind_and_row_count() {
    for kind in KINDS {
        if !runnable("every_kind_and_row_count", kind) {
            continue;
        }
        for m in 1..=16u8 {
            for (cols, n_blocks) in [(16, 2), (7, 1)] {
                let spec = DenseAvx512Spec {
                    last_panel_cols: cols,
                    ..DenseAvx512Spec::new(kind, m, max_panels(kind, m), CInit::Load)
                };
                let case = Case {
                    spec,
                    k: 150,
                    k_block_steps: 2,
                    n_blocks,
                    lda_pad: 4,
                    ldc_pad: 1,
                    dist: Bf16Dist::Specials,
                    flush: Flush::End,
                    seed: u64::from(m) * 31 + u64::from(cols),
                };
                check(&case).unwrap();
            }
        }
    }
}

/// Each distribution (Specials above all) over many outputs for the bf16
/// kinds, with the default K chunking and a few others.
#[test]
fn bf16_every_distribution() {
    for kind in [Avx512Kind::Bf16Chains, Avx512Kind::Bf16Dot] {
        if !runnable("bf16_every_distribution", kind) {
            continue;
        }
        for dist in Bf16Dist::ALL {
            for (kg, seed) in [(16, 1), (8, 2), (1, 3), (3, 4)] {
                let spec = DenseAvx512Spec { k_groups_per_tdp: kg, ..DenseAvx512Spec::new(kind, 4, 2, CInit::Load) };
                let case = Case {
                    spec,
                    k: 96,
                    k_block_steps: 3,
                    n_blocks: 4,
                    lda_pad: 0,
                    ldc_pad: 0,
                    dist,
                    flush: Flush::End,
                    seed,
                };
                check(&case).unwrap_or_else(|e| panic!("{dist:?}: {e}"));
            }
        }
    }
}

/// A call with `k_steps = 0` leaves C as its init (plus the int8 bias), and
/// one with `n_blocks = 0` touches nothing.
#[test]
fn empty_calls() {
    for kind in KINDS {
        if !runnable("empty_calls", kind) {
            continue;
        }
        for c_init in [CInit::Zero, CInit::Load] {
            let kernel = DenseAvx512Kernel::generate(DenseAvx512Spec::new(kind, 2, 1, c_init)).unwrap();
            let mut c = Guarded::new(&[7u32; 32], Flush::End);
            let bias = Guarded::new(&[5i32; 16], Flush::End);
            let mut args = DenseAvx512Args {
                a: std::ptr::null(),
                lda: 0,
                b: std::ptr::null(),
                b_panel_stride: 0,
                c: c.as_mut_slice().as_mut_ptr().cast(),
                ldc: 64,
                k_steps: 0,
                n_blocks: 0,
                col_bias: bias.as_slice().as_ptr(),
            };
            // SAFETY: n_blocks = 0 reads and writes nothing.
            unsafe { kernel.run(&args) };
            assert!(c.as_slice().iter().all(|&x| x == 7));
            args.n_blocks = 1;
            // SAFETY: k_steps = 0 reads no A or B; C is 2 rows of 16.
            unsafe { kernel.run(&args) };
            let init = if c_init == CInit::Load { 7 } else { 0 };
            let want = if matches!(kind, Avx512Kind::Int8(_)) { init + 5 } else { init };
            assert!(c.as_slice().iter().all(|&x| x == want), "{kind:?} {c_init:?}: {:?}", c.as_slice());
        }
    }
}

// ------------------------------------------------------- bf16 chains: NaN / FTZ

fn mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: stmxcsr stores 4 bytes to the given address.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) };
    v
}

/// One output (m = n = 1 column 0), K = `a.len()`, through a Bf16Chains
/// kernel with `pairs` pairs per step, against the AMX oracle.
fn chains_one(c: u32, a: &[u16], b: &[u16], pairs: u8) -> (u32, u32) {
    let k = a.len();
    let mut bm = vec![0u16; k * 16];
    for (p, &x) in b.iter().enumerate() {
        bm[p * 16] = x;
    }
    let layout = BLayout { k_groups_per_tdp: pairs, k_block_steps: 1000 };
    let packed = PackedB::pack_bf16(&bm, k, 16, 16, layout).unwrap();
    let mut a32 = vec![0u32; packed.k_steps() * pairs as usize * 2];
    for (p, &x) in a.iter().enumerate() {
        a32[p] = u32::from(x) << 16;
    }
    let spec = DenseAvx512Spec {
        k_groups_per_tdp: pairs,
        last_panel_cols: 1,
        ..DenseAvx512Spec::new(Avx512Kind::Bf16Chains, 1, 1, CInit::Load)
    };
    let kernel = DenseAvx512Kernel::generate(spec).unwrap();
    let mut out = [c];
    let args = DenseAvx512Args {
        a: a32.as_ptr().cast(),
        lda: 0,
        b: packed.as_bytes().as_ptr(),
        b_panel_stride: packed.block_panel_stride(0),
        c: out.as_mut_ptr().cast(),
        ldc: 4,
        k_steps: packed.k_steps(),
        n_blocks: 1,
        col_bias: std::ptr::null(),
    };
    // SAFETY: AVX-512 checked by the callers; one row, one masked column.
    unsafe { kernel.run(&args) };
    let mut want = [f32::from_bits(c)];
    gemm_bf16_amx(1, 1, k, a, b, &mut want, pairs as usize);
    (want[0].to_bits(), out[0])
}

const SNAN_A: u16 = 0x7F81; // quiets to 0x7FC10000
const SNAN_B: u16 = 0xFF82; // quiets to 0xFFC20000
const QNAN_A: u16 = 0x7FC3;
const INF: u16 = 0x7F80;
const ONE: u16 = 0x3F80;

/// What a NaN matrix row checks, C, A lanes, B lanes, the expected bits.
type NanCase = (&'static str, u32, Vec<u16>, Vec<u16>, u32);

/// The NaN matrix of docs/NUMERICS.md rule 7, stage by stage. Each row is
/// (what it checks, C, A lanes, B lanes); the kernel must give the oracle's
/// bits, and the oracle's NaN rules are asserted alongside.
#[test]
fn bf16_chains_nan_matrix() {
    if !runnable("bf16_chains_nan_matrix", Avx512Kind::Bf16Chains) {
        return;
    }
    let c_nan = 0x7F80_0042u32; // sNaN in C
    #[rustfmt::skip]
    let rows: Vec<NanCase> = vec![
        ("A's NaN beats B's",                    0, vec![SNAN_A, 0], vec![SNAN_B, 0], 0x7FC1_0000),
        ("B's NaN when A is a number",           0, vec![ONE, 0], vec![SNAN_B, 0], 0xFFC2_0000),
        ("NaN product beats earlier NaN chain",  0, vec![SNAN_A, 0, QNAN_A, 0], vec![ONE, 0, ONE, 0], 0x7FC3_0000),
        ("NaN chain survives a later inf*0",     0, vec![SNAN_A, 0, INF, 0], vec![ONE, 0, 0, 0], 0x7FC1_0000),
        ("inf*0 alone is the default NaN",       0, vec![INF, 0], vec![0, 0], 0xFFC0_0000),
        ("inf-inf in a chain is the default NaN", 0, vec![INF, 0, INF, 0], vec![ONE, 0, 0xBF80, 0], 0xFFC0_0000),
        ("even beats odd",                       0, vec![SNAN_A, QNAN_A], vec![ONE, ONE], 0x7FC1_0000),
        ("odd NaN when even is a number",        0, vec![ONE, QNAN_A], vec![ONE, ONE], 0x7FC3_0000),
        ("inf + -inf between chains",            0, vec![INF, INF], vec![ONE, 0xBF80], 0xFFC0_0000),
        ("C's NaN beats t's",                    c_nan, vec![SNAN_A, 0], vec![ONE, 0], 0x7FC0_0042),
        ("C's NaN beats an invalid t",           c_nan, vec![INF, 0], vec![0, 0], 0x7FC0_0042),
        ("t's NaN into a number C",              0x3F80_0000, vec![0, SNAN_A], vec![0, ONE], 0x7FC1_0000),
        ("C inf + t -inf",                       0x7F80_0000, vec![INF, 0], vec![0xBF80, 0], 0xFFC0_0000),
    ];
    for (what, c, a, b, bits) in rows {
        for pairs in [1, 2, 16] {
            let (want, got) = chains_one(c, &a, &b, pairs);
            if 2 * pairs as usize >= a.len() {
                // One step covers every lane: the stage under test decides.
                assert_eq!(want, bits, "oracle, {what}");
            }
            assert_eq!(got, want, "{what} (pairs {pairs}): kernel {got:#010x}, oracle {want:#010x}");
        }
    }
}

/// FTZ after rounding with unbounded exponent, DAZ on every input, signed
/// zeros (docs/NUMERICS.md rules 4-6), and that MXCSR comes back unchanged.
#[test]
fn bf16_chains_ftz_daz_and_mxcsr() {
    if !runnable("bf16_chains_ftz_daz_and_mxcsr", Avx512Kind::Bf16Chains) {
        return;
    }
    let before = mxcsr();
    #[rustfmt::skip]
    let rows: Vec<(&str, u32, Vec<u16>, Vec<u16>)> = vec![
        // 2^-126 - 3*2^-152 flushes; 2^-126 - 2^-151 rounds up to 2^-126.
        // (Even lanes of two pairs: 2^-126 * 1, then -1.5*2^-75 * 2^-76.)
        ("FTZ corner, flushes",   0, vec![0x0080, 0, 0x9A40, 0], vec![0x3F80, 0, 0x1980, 0]),
        ("FTZ corner, rounds up", 0, vec![0x0080, 0, 0x9A00, 0], vec![0x3F80, 0, 0x1980, 0]),
        ("DAZ on A",              0, vec![0x0001, 0], vec![0x3F80, 0]),
        ("DAZ on B",              0, vec![0x3F80, 0], vec![0x8001, 0]),
        ("DAZ on C",              0x0000_0001, vec![0x3F80, 0], vec![0x3F80, 0]),
        ("-0 products start at +0", 0x8000_0000, vec![0x8000, 0x8000], vec![0x3F80, 0x3F80]),
        ("flushed negative chains", 0x8000_0000, vec![0x2000, 0x2000], vec![0x9F80, 0x9F80]),
        ("overflow to inf",       0, vec![0x7F7F, 0x7F7F], vec![0x7F7F, 0x7F7F]),
    ];
    for (what, c, a, b) in rows {
        for pairs in [1, 16] {
            let (want, got) = chains_one(c, &a, &b, pairs);
            assert_eq!(got, want, "{what} (pairs {pairs}): kernel {got:#010x}, oracle {want:#010x}");
        }
    }
    assert_eq!(mxcsr(), before, "the kernel must restore MXCSR");
}

/// Random near-underflow and special lanes through single outputs.
#[test]
fn bf16_chains_random_lanes() {
    if !runnable("bf16_chains_random_lanes", Avx512Kind::Bf16Chains) {
        return;
    }
    let mut rng = StdRng::seed_from_u64(77);
    for round in 0..3000 {
        let dist = [Bf16Dist::Specials, Bf16Dist::Subnormal, Bf16Dist::Overflow][round % 3];
        let k = rng.random_range(1..=40);
        let mut a = vec![0u16; k];
        let mut b = vec![0u16; k];
        fill_bf16(dist, &mut rng, &mut a);
        fill_bf16(dist, &mut rng, &mut b);
        let mut c = [0f32];
        fill_f32(dist, &mut rng, &mut c);
        let pairs = [1u8, 2, 5, 16][rng.random_range(0..4)];
        let (want, got) = chains_one(c[0].to_bits(), &a, &b, pairs);
        assert_eq!(got, want, "{dist:?} c={:#010x} a={a:04x?} b={b:04x?} pairs {pairs}", c[0].to_bits());
    }
}

// ------------------------------------------------------------ timing (ignored)

/// Median seconds of `f` over `reps` runs.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let start = std::time::Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

/// Single-thread GEMV, M = 1, N = K = 4096: each kind over one packed B
/// (cache warm, B in L3) and over copies that exceed the L3 (DRAM).
/// `TILEJIT_GEMV_COPIES` sets the copy count (default 40 x int8 16 MiB).
#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn gemv_timing() {
    let (n, k) = (4096usize, 4096usize);
    let copies: usize = std::env::var("TILEJIT_GEMV_COPIES").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mut rng = StdRng::seed_from_u64(1);
    // The same machine's single-thread streaming-read bound, for scale.
    for (what, bytes) in [("L3-warm 16 MiB", 16 << 20), ("DRAM", copies * (16 << 20))] {
        match tilejit::bench::read_bandwidth(bytes, 1, 5) {
            Ok(bw) => println!("streaming read, 1 thread, {what}: {:.1} GB/s", bw / 1e9),
            Err(e) => println!("streaming read: {e}"),
        }
    }
    for kind in
        [Avx512Kind::Int8(Int8Sign::US), Avx512Kind::Int8(Int8Sign::SS), Avx512Kind::Bf16Chains, Avx512Kind::Bf16Dot]
    {
        if !runnable("gemv_timing", kind) {
            continue;
        }
        let int8 = matches!(kind, Avx512Kind::Int8(_));
        let layout = BLayout { k_groups_per_tdp: 16, k_block_steps: 1 << 20 }; // one K block
        let packed = if int8 {
            let mut b = vec![0u8; k * n];
            rng.fill(&mut b[..]);
            PackedB::pack_int8(&b, k, n, n, layout).unwrap()
        } else {
            let mut b = vec![0u16; k * n];
            fill_bf16(Bf16Dist::Normal, &mut rng, &mut b);
            PackedB::pack_bf16(&b, k, n, n, layout).unwrap()
        };
        let bytes = packed.as_bytes().len();
        let n_copies = (copies * 16 * 1024 * 1024 / bytes).max(1);
        let weights: Vec<PackedB> = vec![packed.clone(); n_copies];
        let a = vec![0x3F80_0000u32; k]; // wide enough for every kind's A
        let bias = int8_col_bias(
            match kind {
                Avx512Kind::Int8(s) => s,
                _ => Int8Sign::US,
            },
            &packed,
        );
        let mut c = vec![0u32; n];
        for (n_panels, pf) in [(8u8, 8u8), (8, 0), (8, 16), (4, 8), (2, 8)] {
            let spec = DenseAvx512Spec { prefetch_lines: pf, ..DenseAvx512Spec::new(kind, 1, n_panels, CInit::Zero) };
            let kernel = DenseAvx512Kernel::generate(spec).unwrap();
            let mut call = |p: &PackedB| {
                let args = DenseAvx512Args {
                    a: a.as_ptr().cast(),
                    lda: 0,
                    b: p.as_bytes().as_ptr(),
                    b_panel_stride: p.block_panel_stride(0),
                    c: c.as_mut_ptr().cast(),
                    ldc: 0,
                    k_steps: p.k_steps(),
                    n_blocks: n / (16 * n_panels as usize),
                    col_bias: bias.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
                };
                // SAFETY: ISA checked; one row of A (k elements), full B, n columns of C.
                unsafe { kernel.run(&args) };
            };
            let warm = median_secs(21, || call(&weights[0]));
            let cold = median_secs(3, || weights.iter().for_each(&mut call)) / n_copies as f64;
            println!(
                "{:<40} B {:>3} MiB  L3-warm {:>8.1} us ({:>5.1} GB/s)  DRAM {:>8.1} us ({:>5.1} GB/s)",
                spec.name(),
                bytes >> 20,
                warm * 1e6,
                bytes as f64 / warm / 1e9,
                cold * 1e6,
                bytes as f64 / cold / 1e9
            );
        }
    }
}
