//! The GPU kernels (src/gpu/kernels.cu, compiled by NVRTC) against the CPU
//! ops they mirror, on random data, each within a stated tolerance: the
//! GPU's libm (powf, sincosf, expf) and its summation order differ from
//! the CPU's, so the results are close, not identical. Without a CUDA
//! device the tests print why they were skipped.

use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::gpu::{probe, Gpu, RowFormat};
use tilejit::model::ops;
use tilejit_verify::paths::report_path;
use tilejit_verify::quant::{decode_row, quantize_row_q4_0, quantize_row_q4_1, quantize_row_q8_0_weights, BlockType};

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

/// The largest |a - b| / (|b| + floor), with its index.
fn worst(a: &[f32], b: &[f32], floor: f32) -> (f32, usize) {
    a.iter().zip(b).enumerate().map(|(i, (x, y))| ((x - y).abs() / (y.abs() + floor), i)).fold((0.0, 0), |m, v| {
        if v.0 > m.0 {
            v
        } else {
            m
        }
    })
}

#[test]
fn rms_norm_swiglu_and_add_match_the_cpu() {
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
    let (err, at) = worst(&gpu.download(&out).unwrap(), &want, 1e-6);
    assert!(err < 2e-6, "rms_norm: relative error {err} at {at} (tolerance 2e-6)");

    let n = 5000;
    let (gate, up) = (normals(&mut rng, n, 8.0), normals(&mut rng, n, 2.0));
    let mut want = gate.clone();
    ops::swiglu(&mut want, &up);
    let mut dg = gpu.upload(&gate).unwrap();
    gpu.swiglu(&mut dg, &gpu.upload(&up).unwrap(), n).unwrap();
    let (err, at) = worst(&gpu.download(&dg).unwrap(), &want, 1e-6);
    assert!(err < 4e-6, "swiglu: relative error {err} at {at} (tolerance 4e-6)");

    let mut want = gate.clone();
    ops::add_in_place(&mut want, &up);
    let mut da = gpu.upload(&gate).unwrap();
    gpu.add(&mut da, &gpu.upload(&up).unwrap(), n).unwrap();
    assert_eq!(gpu.download(&da).unwrap(), want, "add is exact");
}

#[test]
fn rope_matches_the_cpu() {
    let Some(gpu) = gpu("gpu rope") else { return };
    let mut rng = StdRng::seed_from_u64(2);
    let (rows, heads, head_dim, pos0) = (5, 9, 64, 500);
    let x = normals(&mut rng, rows * heads * head_dim, 2.0);
    let mut want = x.clone();
    for (r, row) in want.chunks_exact_mut(heads * head_dim).enumerate() {
        for head in row.chunks_exact_mut(head_dim) {
            ops::rope(head, pos0 + r, head_dim, 10000.0);
        }
    }
    let mut dx = gpu.upload(&x).unwrap();
    gpu.rope(&mut dx, rows, heads, head_dim, head_dim, 10000.0, pos0).unwrap();
    let got = gpu.download(&dx).unwrap();
    let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    // Angles up to ~500 rad: one ulp of theta is ~3e-5, sin/cos differ by about that.
    assert!(err < 5e-4, "rope: absolute error {err} (tolerance 5e-4 at positions ~500)");
}

#[test]
fn gemv_reads_every_format_in_place() {
    let Some(gpu) = gpu("gpu gemv") else { return };
    let mut rng = StdRng::seed_from_u64(3);
    let (n, k, rows) = (300, 576, 3);
    let w = normals(&mut rng, n * k, 0.1);
    let x = normals(&mut rng, rows * k, 2.0);
    for format in [RowFormat::Q8_0, RowFormat::Q4_0, RowFormat::Q4_1, RowFormat::Bf16] {
        let (bytes, ty) = match format {
            RowFormat::Q8_0 => (quantize_row_q8_0_weights(&w), Some(BlockType::Q8_0)),
            RowFormat::Q4_0 => (quantize_row_q4_0(&w), Some(BlockType::Q4_0)),
            RowFormat::Q4_1 => (quantize_row_q4_1(&w), Some(BlockType::Q4_1)),
            RowFormat::Bf16 => (w.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect(), None),
        };
        assert_eq!(bytes.len(), n * format.row_bytes(k), "{format:?}: GGUF row size");
        // The CPU reference: the decoded weights (exact) and f64 dot products.
        let decoded: Vec<f32> = match ty {
            Some(ty) => decode_row(ty, &bytes, n * k).unwrap(),
            None => bytes
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
        };
        let mut y = gpu.upload(&vec![0f32; rows * n]).unwrap();
        gpu.gemv(format, &mut y, &gpu.upload(&bytes).unwrap(), &gpu.upload(&x).unwrap(), n, k, rows).unwrap();
        let got = gpu.download(&y).unwrap();
        for r in 0..rows {
            for i in 0..n {
                let terms = decoded[i * k..(i + 1) * k]
                    .iter()
                    .zip(&x[r * k..(r + 1) * k])
                    .map(|(a, b)| f64::from(*a) * f64::from(*b));
                let (exact, magnitude) = terms.fold((0f64, 0f64), |(s, m), t| (s + t, m + t.abs()));
                let err = (f64::from(got[r * n + i]) - exact).abs();
                // An f32 sum of k terms: error below k * 2^-24 of their magnitudes.
                assert!(err <= 1e-5 * magnitude + 1e-30, "{format:?} y[{r}][{i}] = {}, exact {exact}", got[r * n + i]);
            }
        }
    }
    let mut y = gpu.upload(&[0f32; 1]).unwrap();
    let w = gpu.upload(&[0u8; 8]).unwrap();
    let err = gpu.gemv(RowFormat::Q4_0, &mut y, &w, &gpu.upload(&[0f32; 32]).unwrap(), 1, 32, 1).unwrap_err();
    assert!(err.to_string().contains("w (bytes) has 8 elements, needs 18"), "{err}");
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
    let a = AttentionShape { rows: 3, pos0: 60, n_head: 9, n_head_kv: 3, head_dim: 64, n_ctx: 80, scale: 0.125 };
    let kv = a.n_head_kv * a.head_dim;
    let q = normals(&mut rng, a.rows * a.n_head * a.head_dim, 2.0);
    let kc = normals(&mut rng, a.n_ctx * kv, 2.0);
    let vc = normals(&mut rng, a.n_ctx * kv, 1.0);
    // The CPU's order: scores with ops::dot, ops::softmax, then V summed in t order.
    let mut want = vec![0f32; a.rows * a.n_head * a.head_dim];
    for r in 0..a.rows {
        let pos = a.pos0 + r;
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
    gpu.attend(&mut out, &dq, &dk, &dv, &mut scores, a).unwrap();
    let got = gpu.download(&out).unwrap();
    let err = got.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(err < 1e-5, "attention: absolute error {err} (tolerance 1e-5 on outputs of magnitude ~1)");
    let bad = AttentionShape { n_head_kv: 2, ..a };
    assert!(gpu.attend(&mut out, &dq, &dk, &dv, &mut scores, bad).is_err());
}
