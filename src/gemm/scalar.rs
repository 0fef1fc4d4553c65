//! The scalar path: the oracle itself (`tilejit-verify`), run on B
//! unpacked from the packed layout. Slow by design; it exists so that every
//! operation has a path on any machine and so that `TILEJIT_ISA=scalar`
//! reproduces the reference bits through the public API.

use tilejit_kernels::spec::{ElemType, Int8Sign};
use tilejit_verify::{gemm_bf16_amx, gemm_bf16_vdpbf16ps, gemm_i8, Int8Signedness};

use super::Problem;

pub(super) fn run(p: &Problem) {
    let (m, n, k) = (p.m, p.n(), p.k());
    let esize = p.elem.elem_bytes();
    let a: Vec<u8> = (0..m).flat_map(|i| p.a[i * p.lda * esize..(i * p.lda + k) * esize].iter().copied()).collect();
    let b = p.b.unpack_bytes();
    let mut c = vec![0u32; m * n];
    if p.accumulate {
        for (i, row) in c.chunks_exact_mut(n).enumerate() {
            // SAFETY: Problem::new checked that C holds rows 0..m of n
            // elements at stride ldc.
            let src = unsafe { std::slice::from_raw_parts(p.c.0.add(i * p.ldc * 4).cast::<u32>(), n) };
            row.copy_from_slice(src);
        }
    }
    match p.elem {
        ElemType::Int8(sign) => {
            let mut ci: Vec<i32> = c.iter().map(|&x| x as i32).collect();
            gemm_i8(oracle_sign(sign), m, n, k, &a, &b, &mut ci);
            c = ci.iter().map(|&x| x as u32).collect();
        }
        ElemType::Bf16 => {
            let a16: Vec<u16> = a.chunks_exact(2).map(|x| u16::from_le_bytes([x[0], x[1]])).collect();
            let b16: Vec<u16> = b.chunks_exact(2).map(|x| u16::from_le_bytes([x[0], x[1]])).collect();
            let mut cf: Vec<f32> = c.iter().map(|&x| f32::from_bits(x)).collect();
            if p.dot {
                // The kernels pad K with zeros to whole chunks, and for
                // VDPBF16PS that is not bit-neutral (-0 + 0*0 = +0): pad the same.
                let kp = p.b.k_steps() * p.b.k_groups_per_tdp() as usize * 2;
                let pad = |v: &[u16], rows: usize, cols: usize, row_major_k: bool| -> Vec<u16> {
                    if row_major_k {
                        // A: rows x k -> rows x kp
                        (0..rows)
                            .flat_map(|r| (0..kp).map(move |j| if j < cols { v[r * cols + j] } else { 0 }))
                            .collect()
                    } else {
                        // B: k x n -> kp x n
                        (0..kp)
                            .flat_map(|r| (0..cols).map(move |j| if r < rows { v[r * cols + j] } else { 0 }))
                            .collect()
                    }
                };
                gemm_bf16_vdpbf16ps(m, n, kp, &pad(&a16, m, k, true), &pad(&b16, k, n, false), &mut cf);
            } else {
                gemm_bf16_amx(m, n, k, &a16, &b16, &mut cf, p.b.k_groups_per_tdp() as usize);
            }
            c = cf.iter().map(|x| x.to_bits()).collect();
        }
    }
    for (i, row) in c.chunks_exact(n).enumerate() {
        // SAFETY: as above; this path runs on the calling thread only.
        let dst = unsafe { std::slice::from_raw_parts_mut(p.c.0.add(i * p.ldc * 4).cast::<u32>(), n) };
        dst.copy_from_slice(row);
    }
}

/// The oracle's name for an int8 signedness pair.
pub fn oracle_sign(s: Int8Sign) -> Int8Signedness {
    match s {
        Int8Sign::SS => Int8Signedness::SS,
        Int8Sign::SU => Int8Signedness::SU,
        Int8Sign::US => Int8Signedness::US,
        Int8Sign::UU => Int8Signedness::UU,
    }
}
