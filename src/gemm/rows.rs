//! GEMMs on weights in their GGUF row layout, read in place: the CPU
//! layers of a run that also has GPU layers (docs/PLACEMENT.md rule 3:
//! host buffers in the original layout, never repacked). Same bits as
//! every other path (docs/NUMERICS.md): the quantized dot product in the
//! reference order, and BF16 in TDPBF16PS's order with 16 pairs per step
//! through the reference's own step ([`tdpbf16ps_bits`]), so a layer's
//! output does not depend on whether its weights were packed.
//!
//! Plain Rust, parallel over blocks of weight rows: slower than the packed
//! kernels, which is the price llama.cpp's users pay too for host buffers.

use tilejit_verify::amx::tdpbf16ps_bits;

use crate::kernels::quant_avx512::{ActivationFormat, QuantPackError, WeightFormat};
use crate::threads::run_units;

use super::error::{check_rows, GemmError};

/// A weight tensor's rows as the GGUF file stores them.
#[derive(Clone, Copy, Debug)]
pub struct GgufRows<'a> {
    pub format: RowsFormat,
    /// `n` rows of `k` weights, back to back.
    pub bytes: &'a [u8],
    pub n: usize,
    pub k: usize,
}

/// The formats [`GgufRows`] can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowsFormat {
    Quant(WeightFormat),
    Bf16,
}

impl RowsFormat {
    fn row_bytes(self, k: usize) -> usize {
        match self {
            RowsFormat::Quant(f) => k / 32 * f.gguf_block_bytes(),
            RowsFormat::Bf16 => 2 * k,
        }
    }
}

/// Weight rows per work unit.
const ROWS_PER_UNIT: usize = 16;

/// `c[i * ldc + j] = dot(a row i, w row j)` for `m` activation rows: GGUF
/// Q8_0 / Q8_1 blocks (as the CPU quantizer writes them) for quantized
/// weights, bf16 values for BF16 weights.
///
/// # Errors
/// `k` not a multiple of 32, a byte length that does not match, a C too
/// short for `m` rows of `ldc`.
pub fn gemm_rows(w: GgufRows, a: &[u8], m: usize, c: &mut [f32], ldc: usize, threads: usize) -> Result<(), GemmError> {
    let GgufRows { format, bytes, n, k } = w;
    if n == 0 || k == 0 {
        return Err(QuantPackError::ZeroDim { n, k }.into());
    }
    if !k.is_multiple_of(32) {
        return Err(QuantPackError::KNotBlockMultiple { k }.into());
    }
    let a_row = match format {
        RowsFormat::Quant(f) => k / 32 * f.activations().gguf_block_bytes(),
        RowsFormat::Bf16 => 2 * k,
    };
    let check_len = |what, rows: usize, row: usize, actual: usize| -> Result<(), GemmError> {
        match rows.checked_mul(row) {
            None => Err(QuantPackError::SizeOverflow.into()),
            Some(expected) if expected != actual => Err(QuantPackError::WrongLength { what, expected, actual }.into()),
            Some(_) => Ok(()),
        }
    };
    check_len("weights (bytes)", n, format.row_bytes(k), bytes.len())?;
    check_len("activations (bytes)", m, a_row, a.len())?;
    check_rows(("C", "ldc"), m, n, ldc, c.len())?;
    let units = n.div_ceil(ROWS_PER_UNIT);
    let results: Vec<std::sync::Mutex<Vec<f32>>> = (0..units).map(|_| std::sync::Mutex::new(Vec::new())).collect();
    run_units::<_, std::convert::Infallible>(
        threads,
        units,
        || (),
        |_, u| {
            let rows = u * ROWS_PER_UNIT..((u + 1) * ROWS_PER_UNIT).min(n);
            let width = rows.len();
            let mut out = vec![0f32; m * width];
            let row_bytes = format.row_bytes(k);
            for (jj, j) in rows.enumerate() {
                let wr = &bytes[j * row_bytes..(j + 1) * row_bytes];
                match format {
                    RowsFormat::Quant(f) => {
                        let blocks: Vec<Block> =
                            wr.chunks_exact(f.gguf_block_bytes()).map(|b| Block::weights(f, b)).collect();
                        for (i, ar) in a.chunks_exact(a_row).enumerate() {
                            out[i * width + jj] = quant_dot(f, &blocks, ar);
                        }
                    }
                    RowsFormat::Bf16 => {
                        let wv: Vec<u16> = wr.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
                        for (i, ar) in a.chunks_exact(a_row).enumerate() {
                            let av: Vec<u16> = ar.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
                            let acc = av
                                .chunks_exact(32)
                                .zip(wv.chunks_exact(32))
                                .fold(0u32, |acc, (ac, wc)| tdpbf16ps_bits(acc, ac, wc));
                            out[i * width + jj] = f32::from_bits(acc);
                        }
                    }
                }
            }
            *results[u].lock().unwrap_or_else(|p| p.into_inner()) = out;
            Ok(())
        },
    )
    .unwrap_or_else(|never| match never {});
    for (u, r) in results.into_iter().enumerate() {
        let r = r.into_inner().unwrap_or_else(|p| p.into_inner());
        let (j0, width) = (u * ROWS_PER_UNIT, ((u + 1) * ROWS_PER_UNIT).min(n) - u * ROWS_PER_UNIT);
        for i in 0..m {
            c[i * ldc + j0..i * ldc + j0 + width].copy_from_slice(&r[i * width..(i + 1) * width]);
        }
    }
    Ok(())
}

/// One weight block decoded: the quants as the dot product uses them
/// (Q4_0 nibble - 8, Q4_1 nibble, Q8_0 i8), d and Q4_1's m.
struct Block {
    q: [i8; 32],
    d: f32,
    m: f32,
}

fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

impl Block {
    fn weights(f: WeightFormat, b: &[u8]) -> Block {
        let nibbles = |qs: &[u8], bias: i8| -> [i8; 32] {
            std::array::from_fn(|e| if e < 16 { (qs[e] & 15) as i8 - bias } else { (qs[e - 16] >> 4) as i8 - bias })
        };
        match f {
            WeightFormat::Q8_0 => Block { q: std::array::from_fn(|e| b[2 + e] as i8), d: f16_at(b), m: 0.0 },
            WeightFormat::Q4_0 => Block { q: nibbles(&b[2..], 8), d: f16_at(b), m: 0.0 },
            WeightFormat::Q4_1 => Block { q: nibbles(&b[4..], 0), d: f16_at(b), m: f16_at(&b[2..]) },
        }
    }
}

/// One output in the reference order (verify/src/quant.rs): per block an
/// exact integer sum, `acc = fma(isum, dw * da, acc)`, and Q4_1's
/// `acc = fma(mw, sa, acc)` right after.
fn quant_dot(f: WeightFormat, w: &[Block], a: &[u8]) -> f32 {
    let with_s = f.activations() == ActivationFormat::Q8_1;
    let (a_bytes, quants_at) = if with_s { (36, 4) } else { (34, 2) };
    let mut acc = 0f32;
    for (wb, ab) in w.iter().zip(a.chunks_exact(a_bytes)) {
        let qa = &ab[quants_at..quants_at + 32];
        let isum: i32 = wb.q.iter().zip(qa).map(|(&x, &y)| i32::from(x) * i32::from(y as i8)).sum();
        acc = (isum as f32).mul_add(wb.d * f16_at(ab), acc);
        if with_s {
            acc = wb.m.mul_add(f16_at(&ab[2..]), acc);
        }
    }
    acc
}
