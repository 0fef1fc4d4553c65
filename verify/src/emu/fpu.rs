//! Packed-single arithmetic under an MXCSR image, per lane on bit
//! patterns. Two modes exist in generated code: the default (IEEE, RNE,
//! no DAZ/FTZ: the quantized epilogues) and DAZ | FTZ with RNE (the bf16
//! emulation of TDPBF16PS, docs/NUMERICS.md "VDPBF16PS"), whose steps are
//! the oracle's [`fma_step`] / [`add_step`]. Any other rounding mode, one
//! of DAZ/FTZ without the other, or an unmasked exception is refused: the
//! kernels never run under it, so a model of it would be untested.
//!
//! NaN operands: the result is the first NaN operand, quieted, in the
//! order the arithmetic reads them (SDM Vol. 1 table 4-7: src1 before
//! src2; for a fused a * b + c: a, b, then c, which is the order the
//! TDPBF16PS steps use and the one the hardware showed for the chains
//! kernel); an invalid operation without a NaN operand gives the default
//! NaN 0xFFC00000.

use crate::fp::{add_step, fma_step, is_nan, quiet, DEFAULT_NAN};

/// MXCSR fields (SDM Vol. 1 10.2.3).
const DAZ: u32 = 1 << 6;
const FTZ: u32 = 1 << 15;
const EXCEPTION_MASKS: u32 = 0x1F80;
const ROUNDING: u32 = 0x6000;
/// Flag bits (sticky exception flags), which the emulator does not track.
const FLAGS: u32 = 0x3F;

/// The arithmetic mode an MXCSR image selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ieee,
    DazFtz,
}

/// The mode of `mxcsr`, or why the emulator does not model it.
pub fn mode(mxcsr: u32) -> Result<Mode, String> {
    if mxcsr & EXCEPTION_MASKS != EXCEPTION_MASKS {
        return Err(format!("MXCSR {mxcsr:#x} unmasks floating-point exceptions"));
    }
    if mxcsr & ROUNDING != 0 {
        return Err(format!("MXCSR {mxcsr:#x} rounds other than to nearest even"));
    }
    match (mxcsr & DAZ != 0, mxcsr & FTZ != 0) {
        (false, false) => Ok(Mode::Ieee),
        (true, true) => Ok(Mode::DazFtz),
        _ => Err(format!("MXCSR {mxcsr:#x} sets only one of DAZ and FTZ")),
    }
}

/// Bits LDMXCSR refuses (#GP): above bit 15 (no MXCSR_MASK extension here).
pub fn reserved(mxcsr: u32) -> bool {
    mxcsr & !0xFFFF != 0
}

/// Clears the flag bits, which the emulator does not model, so images
/// compare by their control fields.
pub fn controls(mxcsr: u32) -> u32 {
    mxcsr & !FLAGS
}

fn first_nan(ops: &[u32]) -> Option<u32> {
    ops.iter().copied().find(|&x| is_nan(x)).map(quiet)
}

/// `round(a * b + c)` (VFMADD231PS: a = src2, b = src3, c = the destination).
pub fn fma(mode: Mode, a: u32, b: u32, c: u32) -> u32 {
    match mode {
        Mode::DazFtz => fma_step(c, a, b),
        Mode::Ieee => {
            if let Some(nan) = first_nan(&[a, b, c]) {
                return nan;
            }
            let r = f32::from_bits(a).mul_add(f32::from_bits(b), f32::from_bits(c));
            if r.is_nan() {
                DEFAULT_NAN
            } else {
                r.to_bits()
            }
        }
    }
}

/// `round(a + b)` (VADDPS src1, src2).
pub fn add(mode: Mode, a: u32, b: u32) -> u32 {
    match mode {
        Mode::DazFtz => add_step(a, b),
        Mode::Ieee => ieee2(a, b, f32::from_bits(a) + f32::from_bits(b)),
    }
}

/// `round(a * b)` (VMULPS src1, src2).
pub fn mul(mode: Mode, a: u32, b: u32) -> u32 {
    match mode {
        // a * b + (-0) is a * b exactly, signed zeros included.
        Mode::DazFtz => fma_step(0x8000_0000, a, b),
        Mode::Ieee => ieee2(a, b, f32::from_bits(a) * f32::from_bits(b)),
    }
}

fn ieee2(a: u32, b: u32, r: f32) -> u32 {
    if let Some(nan) = first_nan(&[a, b]) {
        nan
    } else if r.is_nan() {
        DEFAULT_NAN
    } else {
        r.to_bits()
    }
}

/// VCVTDQ2PS of one lane (RNE; exact or rounded, never subnormal).
pub fn cvtdq2ps(x: u32) -> u32 {
    (x as i32 as f32).to_bits()
}

/// VCVTPH2PS of one lane: exact; a NaN keeps sign and payload and is
/// quieted.
pub fn cvtph2ps(h: u16) -> u32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1F);
    let frac = u32::from(h & 0x3FF);
    if exp == 0x1F {
        return if frac == 0 { sign | 0x7F80_0000 } else { sign | 0x7FC0_0000 | (frac << 13) };
    }
    // Finite halves, subnormals included, are exact in f32.
    let magnitude =
        if exp == 0 { frac as f32 * 2f32.powi(-24) } else { f32::from_bits(((exp + 112) << 23) | (frac << 13)) };
    sign | magnitude.to_bits()
}
