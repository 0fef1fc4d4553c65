//! The TMUL peak probe: a loop of register-resident TDPs with no memory
//! traffic, the bound that GEMM throughput is reported against
//! (docs/AMX.md, "Throughput": one full TDP every ~16 cycles).
//!
//! Four independent C tiles (tmm0-3) against two A (tmm4-5) and two B
//! (tmm6-7) tiles, 16 TDPs per loop iteration. The operand tiles are
//! loaded once from caller data: the TMUL runs measurably faster on zero
//! tiles than on random data (the clock depends on the switching activity),
//! so a bound measured on zeros would flatter nobody but itself.

#![allow(clippy::useless_conversion)] // dynasm! register operands, see dense_amx

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};

use crate::encoder::{self as enc, Gpr, Mem, Tmm};
use crate::jit::{CodeBuilder, GenerateError, JitCode};
use crate::spec::ElemType;
use crate::tile_config::TileConfig;

/// TDPs executed per loop iteration.
pub const TDPS_PER_ITERATION: usize = 16;

/// A generated TMUL peak loop.
pub struct TmulPeakKernel {
    elem: ElemType,
    code: JitCode,
    _config: Box<TileConfig>,
}

impl TmulPeakKernel {
    pub fn generate(elem: ElemType) -> Result<TmulPeakKernel, GenerateError> {
        let mut config = Box::new(TileConfig::new());
        for t in Tmm::all() {
            config.set(t, 16, 64)?;
        }
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        dynasm!(cb.ops
            ; .arch x64
            ; mov rax, QWORD &*config as *const TileConfig as i64
        );
        cb.emit(enc::ldtilecfg(Mem::base(Gpr::RAX)));
        for t in 0..4 {
            cb.emit(enc::tilezero(Tmm::new(t)?));
        }
        // rsi: 4 KiB of operand data, one 1 KiB tile each for tmm4..tmm7.
        dynasm!(cb.ops ; .arch x64 ; mov rcx, 64);
        for t in 4..8u8 {
            let at = Mem::base_disp(Gpr::RSI, (t as i32 - 4) * 1024).with_index(Gpr::RCX, crate::encoder::Scale::S1)?;
            cb.emit(enc::tileloadd(Tmm::new(t)?, at)?);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; test rdi, rdi
            ; jz ->done
            ; ->again:
        );
        let op = elem.tdp_op();
        for _ in 0..TDPS_PER_ITERATION / 4 {
            for (c, a, b) in [(0, 4, 6), (1, 4, 7), (2, 5, 6), (3, 5, 7)] {
                cb.emit(enc::tdp(op, Tmm::new(c)?, Tmm::new(a)?, Tmm::new(b)?)?);
            }
        }
        dynasm!(cb.ops
            ; .arch x64
            ; dec rdi
            ; jnz ->again
            ; ->done:
        );
        cb.emit(enc::tilerelease());
        dynasm!(cb.ops ; .arch x64 ; ret);
        let code = cb.finish(entry)?;
        Ok(TmulPeakKernel { elem, code, _config: config })
    }

    /// Operations (2 per multiply-add) one TDP performs on full tiles.
    pub fn ops_per_tdp(&self) -> usize {
        16 * 16 * (64 / self.elem.elem_bytes()) * 2
    }

    /// Runs `iterations` loop iterations (16 TDPs each) on operand tiles
    /// loaded from `operands` (4 tiles of 1 KiB).
    ///
    /// # Safety
    /// The process must have AMX permission.
    pub unsafe fn run(&self, iterations: u64, operands: &[u8; 4096]) {
        // SAFETY: the code reads the 4 KiB behind `operands` and its own
        // tile config, and writes nothing.
        let f: extern "sysv64" fn(u64, *const u8) = unsafe { std::mem::transmute(self.code.entry_ptr()) };
        f(iterations, operands.as_ptr())
    }
}

/// The streaming-read probe: the bound that memory-bound kernels (GEMV,
/// decode) are reported against. Eight independent 64-byte loads per
/// iteration, nothing else, so the only limit is how fast lines arrive.
pub struct ReadBandwidthKernel {
    code: JitCode,
}

/// Bytes read per loop iteration; buffers must be a multiple of it.
pub const READ_CHUNK: usize = 512;

impl ReadBandwidthKernel {
    pub fn generate() -> Result<ReadBandwidthKernel, GenerateError> {
        use crate::encoder::{EvexOp, Mask, Zmm};
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        dynasm!(cb.ops
            ; .arch x64
            ; test rsi, rsi
            ; jz ->done
            ; ->again:
        );
        for i in 0..8u8 {
            cb.emit(EvexOp::VMOVDQU32_LOAD.rm_mem(Zmm::new(i)?, Mem::base_disp(Gpr::RDI, i as i32 * 64), Mask::NONE)?);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; add rdi, READ_CHUNK as i32
            ; sub rsi, READ_CHUNK as i32
            ; jnz ->again
            ; ->done:
            ; vzeroupper
            ; ret
        );
        Ok(ReadBandwidthKernel { code: cb.finish(entry)? })
    }

    /// Reads `buf` once, front to back.
    ///
    /// # Safety
    /// The CPU and OS must support AVX-512F.
    pub unsafe fn run(&self, buf: &[u8]) {
        let len = buf.len() - buf.len() % READ_CHUNK;
        // SAFETY: the code reads exactly `len` <= buf.len() bytes from
        // buf.as_ptr() and writes nothing (zmm registers are caller-saved).
        let f: extern "sysv64" fn(*const u8, usize) = unsafe { std::mem::transmute(self.code.entry_ptr()) };
        f(buf.as_ptr(), len)
    }
}
