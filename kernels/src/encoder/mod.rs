//! The x86 encoder for what dynasm-rs cannot emit: AMX (VEX-encoded) and
//! AVX-512 (EVEX) instructions. Only this module writes instruction bytes;
//! generators call its constructors and push the result into the same
//! dynasmrt assembler that holds their GPR code, labels and relocations
//! (docs/AMX.md, "dynasm-rs ... supports neither AMX nor EVEX").
//!
//! Every constructor validates its operands and returns a typed
//! [`EncodeError`] for combinations the CPU would reject (#UD or #GP), so a
//! bad kernel fails when it is built, not when it runs.

mod amx;
mod evex;
mod mem;
mod regs;

pub use amx::{ldtilecfg, sttilecfg, tdp, tileloadd, tileloaddt1, tilerelease, tilestored, tilezero, TdpOp};
pub use evex::{kmovd_k_mem, kmovq_k_mem, kmovq_k_r64, EvexOp, Mask};
pub use mem::{Mem, Scale};
pub use regs::{Gpr, KReg, Tmm, Zmm};

/// Why an instruction could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("{class} register number {number} is out of range (the class has {count}); use 0..{count}")]
    RegisterOutOfRange { class: &'static str, number: u8, count: u8 },
    #[error("scale {0} is not encodable; use 1, 2, 4 or 8")]
    BadScale(u8),
    #[error(
        "rsp cannot be an index register (SIB index 100 means 'none'); swap base and index or use another register"
    )]
    RspIndex,
    #[error(
        "{mnemonic} needs an index register (it is the row stride; without one the stride is 0): use Mem::with_index"
    )]
    MissingStride { mnemonic: &'static str },
    #[error("{mnemonic} needs three distinct tiles, got dst={dst}, a={a}, b={b} (the CPU raises #UD otherwise)")]
    TileAliasing { mnemonic: &'static str, dst: Tmm, a: Tmm, b: Tmm },
    #[error("{mnemonic}: {what}")]
    BadOperands { mnemonic: &'static str, what: &'static str },
}

/// The bytes of one instruction (x86 instructions are at most 15 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    bytes: [u8; 15],
    len: u8,
}

impl Encoded {
    pub(crate) const fn new() -> Encoded {
        Encoded { bytes: [0; 15], len: 0 }
    }

    pub(crate) fn push(&mut self, byte: u8) {
        self.bytes[self.len as usize] = byte;
        self.len += 1;
    }

    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(b);
        }
    }

    /// The encoded instruction.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Where prefix fields come from: the legacy prefix implied by VEX/EVEX.pp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Pp {
    None = 0,
    P66 = 1,
    PF3 = 2,
    PF2 = 3,
}

/// Opcode map selected by VEX.mmmmm / EVEX.mmm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Map {
    M0F = 1,
    M0F38 = 2,
}

/// Appends a 3-byte VEX prefix (C4). `r`, `x`, `b` are the (non-inverted)
/// extension bits; `vvvv` the second source register number (0 if unused).
/// One argument per prefix field, in the order the SDM lists them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn vex3(out: &mut Encoded, r: u8, x: u8, b: u8, map: Map, w: bool, vvvv: u8, pp: Pp) {
    out.push(0xC4);
    out.push((!r & 1) << 7 | (!x & 1) << 6 | (!b & 1) << 5 | map as u8);
    out.push((w as u8) << 7 | (!vvvv & 0xF) << 3 | pp as u8);
}
