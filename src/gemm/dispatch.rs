//! Which ISA runs a dense GEMM when nothing forces one.
//!
//! AVX-512 reads each weight once per call at memory speed but multiplies
//! slowly; AMX multiplies fast but pays per call and per tile row. The
//! crossover M comes from `tilejit calibrate` (AVX-512 vs AMX, M x 4096 x
//! 4096, weights cycled through 512 MiB so they come from DRAM, as in
//! decode), single thread on the 2-vCPU dev machine, 2026-11-26; time per
//! call in us:
//!
//! | M | u8s8 avx512 | u8s8 amx | bf16 avx512 | bf16 amx |
//! |---|---|---|---|---|
//! | 1 | 980 | 1206 | 2034 | 2413 |
//! | 2 | 1005 | 1198 | 2174 | 2419 |
//! | 4 | 1058 | 1262 | 2476 | 2434 |
//! | 8 | 1217 | 1226 | 3710 | 2428 |
//! | 12 | 1428 | 1251 | 4120 | 2465 |
//! | 16 | 1949 | 1279 | 5279 | 2494 |
//! | 32 | 3505 | 1489 | 9592 | 2997 |
//! | 64 | 5451 | 2671 | 17387 | 5504 |
//!
//! Re-run `tilejit calibrate` on a new machine and update the constants.

use tilejit_kernels::spec::ElemType;

use crate::isa::{availability_for, Isa, Op};

/// Smallest M for which AMX beat AVX-512 in the calibration above.
pub const AMX_FROM_M_INT8: usize = 12;
pub const AMX_FROM_M_BF16: usize = 4;

/// The kernel family of a dense GEMM of `elem` (`dot`: VDPBF16PS semantics).
pub fn op(elem: ElemType, dot: bool) -> Op {
    match elem {
        ElemType::Int8(_) => Op::Int8,
        ElemType::Bf16 if dot => Op::Bf16Dot,
        ElemType::Bf16 => Op::Bf16,
    }
}

/// The ISA for an M-row GEMM of `elem`, among those available here.
/// `dot` (VDPBF16PS semantics) exists on AVX-512 and scalar only.
pub fn choose(elem: ElemType, m: usize, dot: bool) -> Isa {
    let amx_from = match elem {
        ElemType::Int8(_) => AMX_FROM_M_INT8,
        ElemType::Bf16 => AMX_FROM_M_BF16,
    };
    by_rows(m, amx_from, op(elem, dot))
}

/// AMX from `amx_from` rows and AVX-512 below, among the paths this
/// machine has for `op` (the rule of every crossover in the crate): a
/// path missing one extension its kernels execute is passed over for the
/// next one, never chosen and then refused.
pub fn by_rows(m: usize, amx_from: usize, op: Op) -> Isa {
    let amx = availability_for(Isa::Amx, op).is_ok();
    let avx512 = availability_for(Isa::Avx512, op).is_ok();
    match (amx, avx512) {
        (true, true) if m >= amx_from => Isa::Amx,
        (_, true) => Isa::Avx512,
        (true, false) => Isa::Amx,
        (false, false) => Isa::Scalar,
    }
}
