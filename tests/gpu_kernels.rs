//! The GPU kernels (src/gpu/kernels.cu, compiled by NVRTC) against the CPU
//! code they mirror, on random data. The matmuls, the activation
//! quantizers, RMSNorm and add must give the CPU's bits exactly (compared
//! bit for bit); the steps that call exp / sin / cos / pow (SwiGLU, RoPE,
//! attention) compute the double function rounded once, which equals the C
//! library's f32 result except in rare hard cases: those are compared
//! within a stated number of ulps, and the share of identical bits is
//! printed. Without a CUDA device the tests print why they were skipped.

use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::gemm::bf16_from_f32;
use tilejit::gpu::{probe, Gpu, RopeShape, RowFormat, Then};
use tilejit::model::ops;
use tilejit_verify::gemm::gemm_bf16_amx;
use tilejit_verify::paths::report_path;
use tilejit_verify::quant::{
    gemm_quant, quantize_row_q4_0, quantize_row_q4_1, quantize_row_q8_0, quantize_row_q8_0_weights, quantize_row_q8_1,
    BlockType,
};

/// The first GPU, or None (after printing why) where there is none.
fn gpu(test: &str) -> Option<Gpu> {
    let status = probe().map(|_| ());
    if !report_path(test, "gpu", status) {
        return None;
    }
    Some(Gpu::open(0).unwrap_or_else(|e| panic!("a probed GPU must open: {e}")))
}

fn normals(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0) * scale).collect()
}

/// Distance in units in the last place between two finite f32 of any sign.
fn ulps(a: f32, b: f32) -> u64 {
    let key = |x: f32| {
        let b = x.to_bits() as i64;
        if b < 0x8000_0000 {
            b
        } else {
            -(b & 0x7fff_ffff)
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// Every element within `max` ulps; prints how many are bit-identical.
fn ulps_within(what: &str, got: &[f32], want: &[f32], max: u64) {
    assert_eq!(got.len(), want.len());
    let same = got.iter().zip(want).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    let (worst, at) = got.iter().zip(want).map(|(a, b)| ulps(*a, *b)).zip(0..).max().unwrap_or((0, 0));
    eprintln!("{what}: {same} of {} bit-identical to the CPU, the rest within {worst} ulp", got.len());
    assert!(worst <= max, "{what}[{at}] = {} vs the CPU's {}: {worst} ulps (tolerance {max})", got[at], want[at]);
}

fn same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a.to_bits() != b.to_bits()) {
        panic!(
            "{what}[{i}]: GPU {:#010x} ({}) vs CPU {:#010x} ({})",
            got[i].to_bits(),
            got[i],
            want[i].to_bits(),
            want[i]
        );
    }
}

#[test]
fn rms_norm_and_add_give_the_cpus_bits_swiglu_its_rounding() {
    let Some(gpu) = gpu("gpu elementwise kernels") else { return };
    let mut rng = StdRng::seed_from_u64(1);
    let (rows, width) = (7, 576);
    let x = normals(&mut rng, rows * width, 3.0);
    let w = normals(&mut rng, width, 1.0);
    let mut want = vec![0f32; rows * width];
    for (o, xr) in want.chunks_exact_mut(width).zip(x.chunks_exact(width)) {
        ops::rms_norm(xr, &w, 1e-5, o);
    }
    let (dx, dw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    let mut out = gpu.upload(&vec![0f32; rows * width]).unwrap();
    gpu.rms_norm(&mut out, &dx, &dw, 1e-5, rows, width).unwrap();
    same_bits("rms_norm", &gpu.download(&out).unwrap(), &want);
    // A row whose mean of squares is, in the CPU's order, exactly an f32
    // rounding midpoint (2^51 + 2^27, rounds to even: 2^51), while a
    // parallel sum gets 2^51 + 2^27 + 0.5 (rounds up): the GPU must notice
    // and sum in the CPU's order.
    let x = [2f32.powi(27), 2f32.powi(15), 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    let w = [1f32; 8];
    let mut want = [0f32; 8];
    ops::rms_norm(&x, &w, 1e-5, &mut want);
    let mut out = gpu.zeros::<f32>(8, "t").unwrap();
    gpu.rms_norm(&mut out, &gpu.upload(&x).unwrap(), &gpu.upload(&w).unwrap(), 1e-5, 1, 8).unwrap();
    same_bits("rms_norm on a rounding midpoint", &gpu.download(&out).unwrap(), &want);

    let n = 5000;
    let (gate, up) = (normals(&mut rng, n, 8.0), normals(&mut rng, n, 2.0));
    let mut want = gate.clone();
    ops::swiglu(&mut want, &up);
    let mut dg = gpu.upload(&gate).unwrap();
    gpu.swiglu(&mut dg, &gpu.upload(&up).unwrap(), n).unwrap();
    ulps_within("swiglu", &gpu.download(&dg).unwrap(), &want, 2);

    let mut want = gate.clone();
    ops::add_in_place(&mut want, &up);
    let mut da = gpu.upload(&gate).unwrap();
    gpu.add(&mut da, &gpu.upload(&up).unwrap(), n).unwrap();
    same_bits("add", &gpu.download(&da).unwrap(), &want);
}

#[test]
fn rope_into_the_cache_matches_the_cpu() {
    let Some(gpu) = gpu("gpu rope") else { return };
    let mut rng = StdRng::seed_from_u64(2);
    let s = RopeShape { rows: 5, n_head: 9, n_head_kv: 3, head_dim: 64, rope_dim: 64, base: 10000.0 };
    let pos0 = 500;
    let kv = s.n_head_kv * s.head_dim;
    let (q, k, v) = (
        normals(&mut rng, s.rows * 9 * 64, 2.0),
        normals(&mut rng, s.rows * kv, 2.0),
        normals(&mut rng, s.rows * kv, 1.0),
    );
    let (mut want_q, mut want_k) = (q.clone(), k.clone());
    for (r, row) in want_q.chunks_exact_mut(9 * 64).enumerate() {
        row.chunks_exact_mut(64).for_each(|h| ops::rope(h, pos0 + r, s.rope_dim, s.base));
    }
    for (r, row) in want_k.chunks_exact_mut(kv).enumerate() {
        row.chunks_exact_mut(64).for_each(|h| ops::rope(h, pos0 + r, s.rope_dim, s.base));
    }
    let n_ctx = pos0 + s.rows;
    let mut dq = gpu.upload(&q).unwrap();
    let (dk, dv) = (gpu.upload(&k).unwrap(), gpu.upload(&v).unwrap());
    let (mut kc, mut vc) = (gpu.upload(&vec![0f32; n_ctx * kv]).unwrap(), gpu.upload(&vec![0f32; n_ctx * kv]).unwrap());
    gpu.rope_into_cache(&mut dq, &dk, &dv, &mut kc, &mut vc, s, &gpu.position(pos0).unwrap()).unwrap();
    // sin and cos (through pow's angle step) are correctly rounded here and
    // nearly so in the C library; where they differ by an ulp, x0 c - x1 s
    // can cancel, so the bound is on the pair's magnitude: 2^-22 of |x0| + |x1|.
    let rotated = |what: &str, got: &[f32], input: &[f32], want: &[f32]| {
        let same = got.iter().zip(want).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        eprintln!("{what}: {same} of {} bit-identical to the CPU", got.len());
        for (i, ((g, w), pair)) in got.iter().zip(want).zip(input.chunks_exact(2).flat_map(|p| [p, p])).enumerate() {
            let bound = (pair[0].abs() + pair[1].abs()) * 2f32.powi(-22);
            assert!((g - w).abs() <= bound, "{what}[{i}] = {g} vs the CPU's {w} (bound {bound})");
        }
    };
    rotated("rope q", &gpu.download(&dq).unwrap(), &q, &want_q);
    let (kc, vc) = (gpu.download(&kc).unwrap(), gpu.download(&vc).unwrap());
    rotated("rope k (in the cache)", &kc[pos0 * kv..], &k, &want_k);
    same_bits("v (in the cache)", &vc[pos0 * kv..], &v);
    assert!(kc[..pos0 * kv].iter().chain(&vc[..pos0 * kv]).all(|&x| x == 0.0), "rows before pos0 untouched");
}

/// GGUF rows of `w` in `format` and the CPU's reference outputs for the
/// activation rows `x`: the quantized dot product of verify/src/quant.rs,
/// or TDPBF16PS's order with 16 pairs per step.
fn reference(format: RowFormat, w: &[f32], x: &[f32], n: usize, k: usize) -> (Vec<u8>, Vec<u8>, Vec<f32>) {
    let rows = x.len() / k;
    let mut c = vec![0f32; rows * n];
    let q8 = |with_s: bool| -> Vec<u8> {
        x.chunks_exact(k).flat_map(|r| if with_s { quantize_row_q8_1(r) } else { quantize_row_q8_0(r) }).collect()
    };
    let (wb, ab) = match format {
        RowFormat::Bf16 => {
            let wb: Vec<u16> = w.iter().map(|&v| bf16_from_f32(v)).collect();
            let ab: Vec<u16> = x.iter().map(|&v| bf16_from_f32(v)).collect();
            let mut b = vec![0u16; k * n]; // B = W^T, k rows of n
            for j in 0..n {
                for p in 0..k {
                    b[p * n + j] = wb[j * k + p];
                }
            }
            gemm_bf16_amx(rows, n, k, &ab, &b, &mut c, 16);
            let bytes = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            return (bytes(&wb), bytes(&ab), c);
        }
        RowFormat::Q8_0 => (quantize_row_q8_0_weights(w), q8(false)),
        RowFormat::Q4_0 => (quantize_row_q4_0(w), q8(false)),
        RowFormat::Q4_1 => (quantize_row_q4_1(w), q8(true)),
    };
    let (wt, at) = match format {
        RowFormat::Q8_0 => (BlockType::Q8_0, BlockType::Q8_0),
        RowFormat::Q4_0 => (BlockType::Q4_0, BlockType::Q8_0),
        _ => (BlockType::Q4_1, BlockType::Q8_1),
    };
    gemm_quant(wt, at, rows, n, k, &ab, &wb, &mut c).unwrap();
    (wb, ab, c)
}

#[test]
fn activation_quantizers_write_the_cpus_bytes() {
    let Some(gpu) = gpu("gpu activation quantizers") else { return };
    let mut rng = StdRng::seed_from_u64(5);
    let k = 256;
    let mut x = normals(&mut rng, 3 * k, 4.0);
    x[40] = f32::NAN; // poisons block 1 of row 0
    x[k..k + 32].fill(0.0); // an all-zero block
    x[2 * k + 5] = 1e-30; // a tiny block: d underflows in f16
    for (format, with_s) in [(RowFormat::Q4_0, false), (RowFormat::Q4_1, true), (RowFormat::Bf16, false)] {
        let mut out = gpu.upload(&vec![0u8; 3 * format.activation_bytes(k)]).unwrap();
        gpu.quantize_activations(format, &mut out, &gpu.upload(&x).unwrap(), 3, k).unwrap();
        let want: Vec<u8> = match format {
            RowFormat::Bf16 => x.iter().flat_map(|&v| bf16_from_f32(v).to_le_bytes()).collect(),
            _ => x
                .chunks_exact(k)
                .flat_map(|r| if with_s { quantize_row_q8_1(r) } else { quantize_row_q8_0(r) })
                .collect(),
        };
        let got = gpu.download(&out).unwrap();
        if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
            panic!("{format:?} activations: byte {i} is {:#04x}, the CPU writes {:#04x}", got[i], want[i]);
        }
    }
}

#[test]
fn fused_launches_give_the_bits_of_their_parts() {
    let Some(gpu) = gpu("gpu fused kernels") else { return };
    let mut rng = StdRng::seed_from_u64(6);
    let (rows, width, n) = (2, 576, 100);
    let x = normals(&mut rng, rows * width, 3.0);
    let w = normals(&mut rng, width, 1.0);
    let (dx, dw) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap());
    for format in [RowFormat::Q4_0, RowFormat::Q4_1, RowFormat::Bf16] {
        let bytes = rows * format.activation_bytes(width);
        let (mut h1, mut h2) =
            (gpu.zeros::<f32>(rows * width, "t").unwrap(), gpu.zeros::<f32>(rows * width, "t").unwrap());
        let (mut a1, mut a2) = (gpu.zeros::<u8>(bytes, "t").unwrap(), gpu.zeros::<u8>(bytes, "t").unwrap());
        gpu.rms_norm_quantize(&mut h1, &mut a1, &dx, &dw, 1e-5, rows, format).unwrap();
        gpu.rms_norm(&mut h2, &dx, &dw, 1e-5, rows, width).unwrap();
        gpu.quantize_activations(format, &mut a2, &h2, rows, width).unwrap();
        same_bits("rms_norm_quantize h", &gpu.download(&h1).unwrap(), &gpu.download(&h2).unwrap());
        assert_eq!(gpu.download(&a1).unwrap(), gpu.download(&a2).unwrap(), "{format:?}: fused quantization");
        let up = gpu.upload(&normals(&mut rng, rows * width, 2.0)).unwrap();
        gpu.swiglu_quantize(&mut h1, &up, &mut a1, rows, width, format).unwrap();
        gpu.swiglu(&mut h2, &up, rows * width).unwrap();
        gpu.quantize_activations(format, &mut a2, &h2, rows, width).unwrap();
        same_bits("swiglu_quantize", &gpu.download(&h1).unwrap(), &gpu.download(&h2).unwrap());
        assert_eq!(gpu.download(&a1).unwrap(), gpu.download(&a2).unwrap(), "{format:?}: fused swiglu quantization");
        // Three matmuls in one launch against one each.
        let wts: Vec<Vec<u8>> = (0..3)
            .map(|i| reference(format, &normals(&mut rng, (n + i) * width, 0.1), &x[..width], n + i, width).0)
            .collect();
        let dws: Vec<_> = wts.iter().map(|b| gpu.upload(b).unwrap()).collect();
        let mut ys: Vec<_> = (0..3).map(|i| gpu.zeros::<f32>(rows * (n + i), "t").unwrap()).collect();
        let [y0, y1, y2] = &mut ys[..] else { unreachable!() };
        let targets = [Some((y0, &dws[0], n)), Some((y1, &dws[1], n + 1)), Some((y2, &dws[2], n + 2))];
        gpu.matmuls(format, targets, &a2, width, rows, false, Then::Nothing).unwrap();
        for i in 0..3 {
            let mut one = gpu.zeros::<f32>(rows * (n + i), "t").unwrap();
            gpu.matmul(format, &mut one, &dws[i], &a2, n + i, width, rows, false).unwrap();
            same_bits(
                &format!("{format:?} target {i} of 3"),
                &gpu.download(&ys[i]).unwrap(),
                &gpu.download(&one).unwrap(),
            );
        }
    }
}

/// A matmul's fused tail (RMSNorm or SwiGLU, then quantization, in the
/// GEMV's last block; a separate launch after the tiled GEMM) gives the
/// bits of the separate launches.
#[test]
fn matmul_tails_give_the_bits_of_separate_launches() {
    let Some(gpu) = gpu("gpu matmul tails") else { return };
    let mut rng = StdRng::seed_from_u64(10);
    let (k, n) = (576, 1536);
    for rows in [1, 3, 6] {
        let x = normals(&mut rng, rows * k, 2.0);
        for format in [RowFormat::Q4_0, RowFormat::Q4_1, RowFormat::Bf16] {
            let (wg, ab, _) = reference(format, &normals(&mut rng, n * k, 0.1), &x, n, k);
            let (wu, _, _) = reference(format, &normals(&mut rng, n * k, 0.1), &x, n, k);
            let (dg, du, da) = (gpu.upload(&wg).unwrap(), gpu.upload(&wu).unwrap(), gpu.upload(&ab).unwrap());
            let z = |len| gpu.zeros::<f32>(len, "t").unwrap();
            let zb = |len| gpu.zeros::<u8>(len, "t").unwrap();
            let act_bytes = rows * format.activation_bytes(n);
            // SwiGLU: fused, then apart.
            let (mut g1, mut u1, mut a1) = (z(rows * n), z(rows * n), zb(act_bytes));
            let targets = [Some((&mut g1, &dg, n)), Some((&mut u1, &du, n)), None];
            let then = Then::SwigluQuantize { act: &mut a1, format };
            gpu.matmuls(format, targets, &da, k, rows, false, then).unwrap();
            let (mut g2, mut u2, mut a2) = (z(rows * n), z(rows * n), zb(act_bytes));
            gpu.matmul(format, &mut g2, &dg, &da, n, k, rows, false).unwrap();
            gpu.matmul(format, &mut u2, &du, &da, n, k, rows, false).unwrap();
            gpu.swiglu_quantize(&mut g2, &u2, &mut a2, rows, n, format).unwrap();
            same_bits(
                &format!("{format:?} {rows} rows: SwiGLU tail"),
                &gpu.download(&g1).unwrap(),
                &gpu.download(&g2).unwrap(),
            );
            assert_eq!(
                gpu.download(&a1).unwrap(),
                gpu.download(&a2).unwrap(),
                "{format:?} {rows} rows: SwiGLU tail bytes"
            );
            // RMSNorm onto an accumulated output.
            let base = normals(&mut rng, rows * n, 3.0);
            let weight = gpu.upload(&normals(&mut rng, n, 1.0)).unwrap();
            let (mut y1, mut h1, mut b1) = (gpu.upload(&base).unwrap(), z(rows * n), zb(act_bytes));
            let then = Then::NormQuantize { h: &mut h1, act: &mut b1, weight: &weight, eps: 1e-5, format };
            gpu.matmuls(format, [Some((&mut y1, &dg, n)), None, None], &da, k, rows, true, then).unwrap();
            let (mut y2, mut h2, mut b2) = (gpu.upload(&base).unwrap(), z(rows * n), zb(act_bytes));
            gpu.matmul(format, &mut y2, &dg, &da, n, k, rows, true).unwrap();
            gpu.rms_norm_quantize(&mut h2, &mut b2, &y2, &weight, 1e-5, rows, format).unwrap();
            same_bits(
                &format!("{format:?} {rows} rows: norm tail"),
                &gpu.download(&h1).unwrap(),
                &gpu.download(&h2).unwrap(),
            );
            assert_eq!(
                gpu.download(&b1).unwrap(),
                gpu.download(&b2).unwrap(),
                "{format:?} {rows} rows: norm tail bytes"
            );
        }
    }
}

#[test]
fn matmuls_give_the_cpus_bits_in_every_format_and_shape() {
    let Some(gpu) = gpu("gpu matmul") else { return };
    let mut rng = StdRng::seed_from_u64(3);
    // k = 576 is 18 blocks of 32 (six stages of the BF16 GEMM), k = 160 is
    // five (a short last stage).
    for (n, k, rows) in [(300, 576, 1), (300, 576, 3), (300, 576, 45), (70, 160, 37)] {
        let w = normals(&mut rng, n * k, 0.1);
        // 1 and 3 rows run the GEMV, more the tiled GEMM (a partial tile in
        // both directions).
        let x = normals(&mut rng, rows * k, 2.0);
        for format in [RowFormat::Q8_0, RowFormat::Q4_0, RowFormat::Q4_1, RowFormat::Bf16] {
            let (wb, ab, want) = reference(format, &w, &x, n, k);
            assert_eq!(wb.len(), n * format.row_bytes(k), "{format:?}: GGUF row size");
            let (dw, da) = (gpu.upload(&wb).unwrap(), gpu.upload(&ab).unwrap());
            let mut y = gpu.upload(&vec![0f32; rows * n]).unwrap();
            gpu.matmul(format, &mut y, &dw, &da, n, k, rows, false).unwrap();
            same_bits(&format!("{format:?} {rows}x{n}x{k}"), &gpu.download(&y).unwrap(), &want);
            // accumulate: y + dot in one rounding, as the CPU's residual add.
            let base = normals(&mut rng, rows * n, 5.0);
            let mut y = gpu.upload(&base).unwrap();
            gpu.matmul(format, &mut y, &dw, &da, n, k, rows, true).unwrap();
            let summed: Vec<f32> = base.iter().zip(&want).map(|(a, b)| a + b).collect();
            same_bits(&format!("{format:?} {rows}x{n}x{k} accumulated"), &gpu.download(&y).unwrap(), &summed);
        }
    }
    let mut y = gpu.upload(&[0f32; 1]).unwrap();
    let w = gpu.upload(&[0u8; 8]).unwrap();
    let a = gpu.upload(&[0u8; 34]).unwrap();
    let err = gpu.matmul(RowFormat::Q4_0, &mut y, &w, &a, 1, 32, 1, false).unwrap_err();
    assert!(err.to_string().contains("w (bytes) has 8 elements, needs 18"), "{err}");
    let err = gpu.matmul(RowFormat::Q4_0, &mut y, &w, &a, 1, 40, 1, false).unwrap_err();
    assert!(err.to_string().contains("k = 40 is not a whole number of 32-element blocks"), "{err}");
}

/// TDPBF16PS flushes a step's result when, rounded to 24 bits with an
/// unbounded exponent, it is below 2^-126 (docs/NUMERICS.md): the even
/// chain's 2^-126 + p lands on each side of that line, in the GEMV and the
/// GEMM, with random near-underflow products after them.
#[test]
fn bf16_matmuls_flush_where_amx_flushes() {
    let Some(gpu) = gpu("gpu bf16 flush to zero") else { return };
    let mut rng = StdRng::seed_from_u64(8);
    let (n, k) = (40, 64);
    let p2 = |e: i32| 2f32.powi(e);
    let mut w = vec![0f32; n * k];
    // Product 2 (lane 2) against 2^-126 from lane 0 (2^-63 * 2^-63):
    // -1.5 * 2^-151 rounds to 2^-126 - 2^-150 and flushes (IEEE rounding
    // would keep 2^-126); -2^-151 ties to 2^-126 and stays; -2^-150 is
    // exactly below the line; +2^-151 rounds back down to 2^-126.
    for (j, w2) in [-1.5 * p2(-76), -p2(-76), -p2(-75), p2(-76)].into_iter().enumerate() {
        w[j * k] = p2(-63);
        w[j * k + 2] = w2;
    }
    for j in 4..n {
        for p in [0, 2, 4, 33] {
            w[j * k + p] = rng.random_range(-2.0f32..2.0) * p2(-63 - rng.random_range(0..14));
        }
    }
    for rows in [1, 6] {
        let mut x = vec![0f32; rows * k];
        for r in 0..rows {
            x[r * k] = p2(-63);
            x[r * k + 2] = p2(-75);
            x[r * k + 4] = rng.random_range(-1.0f32..1.0) * p2(-63);
            x[r * k + 33] = rng.random_range(-1.0f32..1.0) * p2(-63);
        }
        let (wb, ab, want) = reference(RowFormat::Bf16, &w, &x, n, k);
        assert_eq!(want[0].to_bits(), 0, "the reference flushes 2^-126 - 1.5 * 2^-151");
        assert_eq!(want[1], p2(-126), "the reference keeps the tie");
        let (dw, da) = (gpu.upload(&wb).unwrap(), gpu.upload(&ab).unwrap());
        let mut y = gpu.zeros::<f32>(rows * n, "t").unwrap();
        gpu.matmul(RowFormat::Bf16, &mut y, &dw, &da, n, k, rows, false).unwrap();
        same_bits(&format!("bf16 near underflow, {rows} rows"), &gpu.download(&y).unwrap(), &want);
    }
}

/// Without a CUDA driver the probe says so (typed), never panics.
#[test]
fn the_probe_answers_with_devices_or_a_reason() {
    match probe() {
        Ok(gpus) => {
            assert!(!gpus.is_empty());
            for g in &gpus {
                eprintln!(
                    "GPU {}: {} (sm_{}{}), {} MiB free of {}",
                    g.ordinal,
                    g.name,
                    g.compute_capability.0,
                    g.compute_capability.1,
                    g.free_bytes >> 20,
                    g.total_bytes >> 20
                );
            }
        }
        Err(why) => eprintln!("no CUDA device: {why}"),
    }
}

#[test]
fn attention_over_the_cache_matches_the_cpu() {
    use tilejit::gpu::AttentionShape;
    let Some(gpu) = gpu("gpu attention") else { return };
    let mut rng = StdRng::seed_from_u64(4);
    // SmolLM2's heads: 9 query heads on 3 KV heads of 64; 3 new rows after 60 cached positions.
    let a = AttentionShape { rows: 3, n_head: 9, n_head_kv: 3, head_dim: 64, n_ctx: 80, scale: 0.125 };
    let pos0 = 60;
    let kv = a.n_head_kv * a.head_dim;
    let q = normals(&mut rng, a.rows * a.n_head * a.head_dim, 2.0);
    let kc = normals(&mut rng, a.n_ctx * kv, 2.0);
    let vc = normals(&mut rng, a.n_ctx * kv, 1.0);
    // The CPU's order: scores with ops::dot, ops::softmax, then V summed in t order.
    let mut want = vec![0f32; a.rows * a.n_head * a.head_dim];
    for r in 0..a.rows {
        let pos = pos0 + r;
        for h in 0..a.n_head {
            let hk = h / (a.n_head / a.n_head_kv);
            let qh = &q[(r * a.n_head + h) * a.head_dim..][..a.head_dim];
            let mut s: Vec<f32> =
                (0..=pos).map(|t| ops::dot(qh, &kc[t * kv + hk * a.head_dim..][..a.head_dim]) * a.scale).collect();
            ops::softmax(&mut s);
            let out = &mut want[(r * a.n_head + h) * a.head_dim..][..a.head_dim];
            for (t, p) in s.iter().enumerate() {
                for (o, v) in out.iter_mut().zip(&vc[t * kv + hk * a.head_dim..][..a.head_dim]) {
                    *o += p * v;
                }
            }
        }
    }
    let mut out = gpu.upload(&vec![0f32; want.len()]).unwrap();
    let mut scores = gpu.upload(&vec![0f32; a.rows * a.n_head * a.n_ctx]).unwrap();
    let (dq, dk, dv) = (gpu.upload(&q).unwrap(), gpu.upload(&kc).unwrap(), gpu.upload(&vc).unwrap());
    let at = gpu.position(pos0).unwrap();
    gpu.attend(&mut out, &dq, &dk, &dv, &mut scores, a, &at, None).unwrap();
    let got = gpu.download(&out).unwrap();
    ulps_within("attention", &got, &want, 2);
    // The output quantized in the same launch: the bytes of a separate pass.
    let width = a.n_head * a.head_dim;
    for format in [RowFormat::Q4_0, RowFormat::Q4_1, RowFormat::Bf16] {
        let bytes = a.rows * format.activation_bytes(width);
        let (mut fused, mut apart) = (gpu.zeros::<u8>(bytes, "t").unwrap(), gpu.zeros::<u8>(bytes, "t").unwrap());
        gpu.attend(&mut out, &dq, &dk, &dv, &mut scores, a, &at, Some((&mut fused, format))).unwrap();
        gpu.quantize_activations(format, &mut apart, &out, a.rows, width).unwrap();
        assert_eq!(
            gpu.download(&fused).unwrap(),
            gpu.download(&apart).unwrap(),
            "{format:?}: attention quantized in place"
        );
    }
    let bad = AttentionShape { n_head_kv: 2, ..a };
    assert!(gpu.attend(&mut out, &dq, &dk, &dv, &mut scores, bad, &at, None).is_err());
}

/// A captured step reads the position staged before each replay, and a
/// position past the cache writes nothing.
#[test]
fn a_captured_step_takes_the_position_of_each_replay() {
    let Some(gpu) = gpu("gpu captured step") else { return };
    let mut rng = StdRng::seed_from_u64(9);
    let s = RopeShape { rows: 1, n_head: 1, n_head_kv: 1, head_dim: 8, rope_dim: 8, base: 10000.0 };
    let (n_ctx, kv) = (8, 8);
    let v = normals(&mut rng, kv, 1.0);
    let (mut dq, dk, dv) =
        (gpu.zeros::<f32>(8, "t").unwrap(), gpu.zeros::<f32>(kv, "t").unwrap(), gpu.upload(&v).unwrap());
    let (mut kc, mut vc) = (gpu.zeros::<f32>(n_ctx * kv, "t").unwrap(), gpu.zeros::<f32>(n_ctx * kv, "t").unwrap());
    let mut at = gpu.position(0).unwrap();
    let graph = gpu
        .capture(|| {
            gpu.upload_position(&mut at)?;
            gpu.rope_into_cache(&mut dq, &dk, &dv, &mut kc, &mut vc, s, &at)
        })
        .unwrap();
    for pos in [3, 5, n_ctx] {
        gpu.stage_position(&mut at, pos).unwrap();
        graph.replay().unwrap();
    }
    gpu.synchronize().unwrap();
    let cache = gpu.download(&vc).unwrap();
    for (pos, row) in cache.chunks_exact(kv).enumerate() {
        let want: &[f32] = if pos == 3 || pos == 5 { &v } else { &[0.0; 8] };
        same_bits(&format!("value cache row {pos}"), row, want);
    }
}
