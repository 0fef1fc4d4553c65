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
}

impl TmulPeakKernel {
    pub fn generate(elem: ElemType) -> Result<TmulPeakKernel, GenerateError> {
        let mut config = TileConfig::new();
        for t in Tmm::all() {
            config.set(t, 16, 64)?;
        }
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        cb.load_tile_config(config, Gpr::RAX);
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
        Ok(TmulPeakKernel { elem, code })
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
/// decode) are reported against. Each iteration issues eight independent
/// 64-byte loads spread over `streams` interleaved streams (each walking its
/// own contiguous part of the buffer), optionally with a software prefetch
/// `prefetch` bytes ahead in every stream. No single shape is fastest
/// everywhere (here: 1 stream 16.1 GB/s, 2 streams with a 2 KiB prefetch
/// 18.1 GB/s from DRAM), so callers take the best of several.
pub struct ReadBandwidthKernel {
    code: JitCode,
    streams: usize,
}

/// Bytes read per loop iteration; each stream's part must be a multiple
/// of `READ_CHUNK / streams`.
pub const READ_CHUNK: usize = 512;

/// Stream base registers: rdi, then r8..r10 (caller-saved, no frame needed).
const STREAM_BASES: [Gpr; 4] = [Gpr::RDI, Gpr::R8, Gpr::R9, Gpr::R10];

impl ReadBandwidthKernel {
    /// `streams` is 1, 2 or 4; `prefetch` 0 (none) or a distance in bytes.
    pub fn generate(streams: usize, prefetch: i32) -> Result<ReadBandwidthKernel, GenerateError> {
        use crate::encoder::{EvexOp, Mask, Zmm};
        if ![1, 2, 4].contains(&streams) {
            return Err(GenerateError::Assembler(format!("read probe: {streams} streams; use 1, 2 or 4")));
        }
        let per = 8 / streams;
        let mut cb = CodeBuilder::new()?;
        let entry = cb.offset();
        // rdi: buffer, rsi: bytes per stream, rdx: bytes between stream starts.
        dynasm!(cb.ops
            ; .arch x64
            ; test rsi, rsi
            ; jz ->done
            ; lea r8, [rdi + rdx]
            ; lea r9, [r8 + rdx]
            ; lea r10, [r9 + rdx]
            ; ->again:
        );
        for (s, &base) in STREAM_BASES[..streams].iter().enumerate() {
            for i in 0..per {
                let z = Zmm::new((s * per + i) as u8)?;
                cb.emit(EvexOp::VMOVDQU32_LOAD.rm_mem(z, Mem::base_disp(base, i as i32 * 64), Mask::NONE)?);
            }
            if prefetch > 0 {
                for i in 0..per as i32 {
                    dynasm!(cb.ops ; .arch x64 ; prefetcht0 [Rq(base.number()) + prefetch + i * 64]);
                }
            }
        }
        for &base in &STREAM_BASES[..streams] {
            dynasm!(cb.ops ; .arch x64 ; add Rq(base.number()), (per * 64) as i32);
        }
        dynasm!(cb.ops
            ; .arch x64
            ; sub rsi, (per * 64) as i32
            ; jnz ->again
            ; ->done:
            ; vzeroupper
            ; ret
        );
        Ok(ReadBandwidthKernel { code: cb.finish(entry)?, streams })
    }

    /// Reads `buf` once (its largest prefix that splits evenly into streams).
    ///
    /// # Safety
    /// The CPU and OS must support AVX-512F.
    pub unsafe fn run(&self, buf: &[u8]) {
        let unit = READ_CHUNK / self.streams * self.streams;
        let per = buf.len() / unit * unit / self.streams;
        // SAFETY: the code reads `per` bytes from each of `streams` parts
        // starting at buf + i * per, all inside `buf`, and writes nothing
        // (zmm0-7 and r8-r10 are caller-saved).
        let f: extern "sysv64" fn(*const u8, usize, usize) = unsafe { std::mem::transmute(self.code.entry_ptr()) };
        f(buf.as_ptr(), per, per)
    }
}
