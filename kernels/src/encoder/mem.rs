//! Memory operands and the ModRM/SIB/displacement bytes that address them.
//!
//! The SIB rules live here and nowhere else: rsp cannot be an index, rbp/r13
//! as base need an explicit displacement byte, rsp/r12 as base need a SIB
//! byte, and EVEX compresses 8-bit displacements by the operand size N
//! (docs/AMX.md, "EVEX pitfalls").

use super::{EncodeError, Encoded, Gpr};

/// The SIB scale factor applied to the index register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scale {
    S1,
    S2,
    S4,
    S8,
}

impl Scale {
    /// Checked conversion from a byte multiplier.
    pub fn from_factor(factor: u8) -> Result<Scale, EncodeError> {
        match factor {
            1 => Ok(Scale::S1),
            2 => Ok(Scale::S2),
            4 => Ok(Scale::S4),
            8 => Ok(Scale::S8),
            _ => Err(EncodeError::BadScale(factor)),
        }
    }

    pub const fn factor(self) -> u8 {
        1 << self.bits()
    }

    const fn bits(self) -> u8 {
        match self {
            Scale::S1 => 0,
            Scale::S2 => 1,
            Scale::S4 => 2,
            Scale::S8 => 3,
        }
    }
}

/// `[base + index*scale + disp]`. A base register is always present: the
/// kernels address everything relative to argument pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mem {
    base: Gpr,
    index: Option<(Gpr, Scale)>,
    disp: i32,
}

impl Mem {
    /// `[base]`.
    pub const fn base(base: Gpr) -> Mem {
        Mem { base, index: None, disp: 0 }
    }

    /// `[base + disp]`.
    pub const fn base_disp(base: Gpr, disp: i32) -> Mem {
        Mem { base, index: None, disp }
    }

    /// Adds `index*scale`. rsp cannot be encoded as an index (the SIB value
    /// 100 means "no index"), so it is rejected here.
    pub fn with_index(self, index: Gpr, scale: Scale) -> Result<Mem, EncodeError> {
        if index == Gpr::RSP {
            return Err(EncodeError::RspIndex);
        }
        Ok(Mem { index: Some((index, scale)), ..self })
    }

    /// Row `i` (0..4) of four rows at `base + i * stride`, `disp` bytes in:
    /// rows 1 and 2 scale the stride register, row 3 takes `stride3`
    /// (a register holding `3 * stride`), since SIB scales are 1, 2, 4, 8.
    ///
    /// # Errors
    /// An index register the SIB byte cannot hold (rsp).
    pub fn row_of_four(base: Gpr, stride: Gpr, stride3: Gpr, i: usize, disp: i32) -> Result<Mem, EncodeError> {
        let m = Mem::base_disp(base, disp);
        match i % 4 {
            0 => Ok(m),
            1 => m.with_index(stride, Scale::S1),
            2 => m.with_index(stride, Scale::S2),
            _ => m.with_index(stride3, Scale::S1),
        }
    }

    /// Replaces the displacement.
    pub const fn with_disp(self, disp: i32) -> Mem {
        Mem { disp, ..self }
    }

    pub const fn base_reg(&self) -> Gpr {
        self.base
    }

    pub const fn index_reg(&self) -> Option<(Gpr, Scale)> {
        self.index
    }

    pub const fn disp(&self) -> i32 {
        self.disp
    }

    /// Extension bit for the index (REX.X / VEX.X / EVEX.X, inverted by the caller).
    pub(crate) fn x_bit(&self) -> u8 {
        self.index.map_or(0, |(r, _)| r.high())
    }

    /// Extension bit for the base.
    pub(crate) fn b_bit(&self) -> u8 {
        self.base.high()
    }

    /// Appends ModRM, optional SIB and displacement. `reg` is the ModRM.reg
    /// field (3 bits). `force_sib` is for AMX tile loads/stores, which #UD
    /// without a SIB byte. `disp_n` is the EVEX disp8*N factor (1 for VEX).
    pub(crate) fn encode(&self, out: &mut Encoded, reg: u8, force_sib: bool, disp_n: i32) {
        let base_low = self.base.low3();
        let need_sib = force_sib || self.index.is_some() || base_low == 0b100;
        // mod=00 with base field 101 means "disp32, no base" (or RIP), so
        // rbp/r13 always need an explicit displacement.
        let (mode, disp_bytes): (u8, &[u8]) = if self.disp == 0 && base_low != 0b101 {
            (0b00, &[])
        } else if self.disp % disp_n == 0 && i8::try_from(self.disp / disp_n).is_ok() {
            (0b01, &[0])
        } else {
            (0b10, &[0, 0, 0, 0])
        };
        let rm = if need_sib { 0b100 } else { base_low };
        out.push(mode << 6 | (reg & 7) << 3 | rm);
        if need_sib {
            let (index_low, scale) = match self.index {
                Some((r, s)) => (r.low3(), s.bits()),
                None => (0b100, 0),
            };
            out.push(scale << 6 | index_low << 3 | base_low);
        }
        match disp_bytes.len() {
            0 => {}
            1 => out.push((self.disp / disp_n) as i8 as u8),
            _ => out.extend_from_slice(&self.disp.to_le_bytes()),
        }
    }
}

impl std::fmt::Display for Mem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}", self.base)?;
        if let Some((r, s)) = self.index {
            write!(f, "+{}*{}", r, s.factor())?;
        }
        match self.disp {
            0 => f.write_str("]"),
            d if d < 0 => write!(f, "-{:#x}]", -(d as i64)),
            d => write!(f, "+{d:#x}]"),
        }
    }
}
