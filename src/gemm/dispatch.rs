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

use crate::isa::{availability, Isa};

/// Smallest M for which AMX beat AVX-512 in the calibration above.
pub const AMX_FROM_M_INT8: usize = 12;
pub const AMX_FROM_M_BF16: usize = 4;

/// The ISA for an M-row GEMM of `elem`, among those available here.
/// `dot` (VDPBF16PS semantics) exists on AVX-512 and scalar only.
pub fn choose(elem: ElemType, m: usize, dot: bool) -> Isa {
    if dot {
        return if availability(Isa::Avx512).is_ok() { Isa::Avx512 } else { Isa::Scalar };
    }
    let amx_from = match elem {
        ElemType::Int8(_) => AMX_FROM_M_INT8,
        ElemType::Bf16 => AMX_FROM_M_BF16,
    };
    by_rows(m, amx_from)
}

/// AMX from `amx_from` rows and AVX-512 below, among the paths this
/// machine has (the rule of every crossover in the crate).
pub fn by_rows(m: usize, amx_from: usize) -> Isa {
    let (amx, avx512) = (availability(Isa::Amx).is_ok(), availability(Isa::Avx512).is_ok());
    match (amx, avx512) {
        (true, true) if m >= amx_from => Isa::Amx,
        (_, true) => Isa::Avx512,
        (true, false) => Isa::Amx,
        (false, false) => Isa::Scalar,
    }
}
