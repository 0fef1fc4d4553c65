//! The non-matmul operations of a llama layer, in plain Rust with one fixed
//! order of arithmetic, shared by every path: a forced ISA, the thread
//! count and `--amx` change which kernel runs the matmuls (which give the
//! same bits on every path), never these, so the model's output bits do not
//! change either. Each follows ggml's definition (the order of its steps
//! and its precision), so the runner stays close to llama.cpp.
//!
//! `exp`, `sin_cos` and `powf` are the C library's: identical within a
//! process, but not guaranteed across libm versions, so bit-identity is a
//! per-machine promise (observed: logits on the dev and the 16-core
//! machine differ in low bits, their greedy texts agree).

/// `out = x / sqrt(mean(x^2) + eps) * w`: the sum of squares in f64, the
/// scale in f32, applied before the weight (ggml's rms_norm then mul).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * g;
    }
}

/// Rotary position embedding on one head in place, adjacent pairs
/// `(x[2i], x[2i+1])` rotated by `pos * base^(-2i/rope_dim)` for the first
/// `rope_dim` dimensions ("normal" RoPE: llama.cpp's converter permutes
/// llama's Q and K rows into this layout, docs/FORMATS.md). The angle is
/// advanced by repeated multiplication, as ggml does.
pub fn rope(head: &mut [f32], pos: usize, rope_dim: usize, base: f32) {
    let theta_scale = base.powf(-2.0 / rope_dim as f32);
    let mut theta = pos as f32;
    for pair in head[..rope_dim].chunks_exact_mut(2) {
        let (sin, cos) = theta.sin_cos();
        let (x0, x1) = (pair[0], pair[1]);
        pair[0] = x0 * cos - x1 * sin;
        pair[1] = x0 * sin + x1 * cos;
        theta *= theta_scale;
    }
}

/// Softmax in place: the maximum subtracted, exponentials in f32, their
/// sum in f64, then one f32 scale (ggml's soft_max).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let scale = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= scale);
}

/// `gate = silu(gate) * up`, silu(x) = x / (1 + e^-x) (SwiGLU).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `a += b`, element by element.
pub fn add_in_place(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(x, &y)| *x += y);
}

/// Dot product in f32 (attention scores) in one fixed order that a
/// compiler can vectorise: 16 running sums, element `i` into sum `i % 16`
/// (products rounded, then added), then the 16 sums added pairwise in a
/// fixed tree. A single running sum would be a chain of dependent adds,
/// one per 4 cycles, and attention would dominate long prompts.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    for (i, (x, y)) in ta.iter().zip(tb).enumerate() {
        acc[i] += x * y;
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] += acc[i + width];
        }
    }
    acc[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_of_a_constant_is_the_weight() {
        let mut out = [0f32; 4];
        rms_norm(&[2.0; 4], &[1.0, 2.0, 3.0, 4.0], 0.0, &mut out);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn rope_at_position_zero_is_the_identity_and_preserves_norms() {
        let x: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
        let mut y = x.clone();
        rope(&mut y, 0, 8, 10_000.0);
        assert_eq!(x, y);
        rope(&mut y, 17, 8, 10_000.0);
        for (a, b) in x.chunks(2).zip(y.chunks(2)) {
            let (na, nb) = (a[0].hypot(a[1]), b[0].hypot(b[1]));
            assert!((na - nb).abs() < 1e-5 * na.max(1.0), "{na} vs {nb}");
        }
        // Pair 0 turns by exactly pos radians.
        let mut z = [1.0f32, 0.0];
        rope(&mut z, 1, 2, 10_000.0);
        assert_eq!(z, [1f32.cos(), 1f32.sin()]);
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_inputs() {
        let mut x = [1000.0f32, 1000.0, f32::NEG_INFINITY];
        softmax(&mut x);
        assert_eq!(x, [0.5, 0.5, 0.0]);
    }

    #[test]
    fn dot_sums_in_its_stated_order() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 1.3).cos()).collect();
        let mut acc = [0f32; 16];
        for i in 0..37 {
            acc[i % 16] += a[i] * b[i];
        }
        for w in [8, 4, 2, 1] {
            for i in 0..w {
                acc[i] += acc[i + w];
            }
        }
        assert_eq!(dot(&a, &b).to_bits(), acc[0].to_bits());
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn swiglu_matches_its_definition() {
        let mut g = [0.0f32, 1.0, -2.0];
        swiglu(&mut g, &[3.0, 2.0, 1.0]);
        assert_eq!(g[0], 0.0);
        assert_eq!(g[1], 1.0 / (1.0 + (-1f32).exp()) * 2.0);
        assert_eq!(g[2], -2.0 / (1.0 + 2f32.exp()));
    }
}
