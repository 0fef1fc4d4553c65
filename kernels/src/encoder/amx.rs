//! AMX instructions: all 3-byte VEX, map 0F38, W0, L0 (docs/AMX.md,
//! "Encodings"). In TDP* the destination is ModRM.reg, A (src1) is ModRM.rm
//! and B (src2) is VEX.vvvv.

use super::{vex3, EncodeError, Encoded, Map, Mem, Pp, Tmm};

const OP_TILECFG: u8 = 0x49;
const OP_TILEMOV: u8 = 0x4B;

/// The tile dot-product instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TdpOp {
    /// s8 x s8 -> i32.
    Bssd,
    /// s8 (A) x u8 (B) -> i32.
    Bsud,
    /// u8 (A) x s8 (B) -> i32.
    Busd,
    /// u8 x u8 -> i32.
    Buud,
    /// bf16 x bf16 -> f32 (docs/NUMERICS.md, "TDPBF16PS").
    Bf16ps,
}

impl TdpOp {
    pub const fn mnemonic(self) -> &'static str {
        match self {
            TdpOp::Bssd => "tdpbssd",
            TdpOp::Bsud => "tdpbsud",
            TdpOp::Busd => "tdpbusd",
            TdpOp::Buud => "tdpbuud",
            TdpOp::Bf16ps => "tdpbf16ps",
        }
    }

    const fn pp_opcode(self) -> (Pp, u8) {
        match self {
            TdpOp::Bssd => (Pp::PF2, 0x5E),
            TdpOp::Bsud => (Pp::PF3, 0x5E),
            TdpOp::Busd => (Pp::P66, 0x5E),
            TdpOp::Buud => (Pp::None, 0x5E),
            TdpOp::Bf16ps => (Pp::PF3, 0x5C),
        }
    }
}

fn tile_config_op(pp: Pp, mem: &Mem) -> Encoded {
    let mut out = Encoded::new();
    vex3(&mut out, 0, mem.x_bit(), mem.b_bit(), Map::M0F38, false, 0, pp);
    out.push(OP_TILECFG);
    mem.encode(&mut out, 0, false, 1);
    out
}

/// `ldtilecfg m512`: loads the 64-byte tile configuration (must be 64-byte
/// aligned and valid, see `TileConfig`).
pub fn ldtilecfg(mem: Mem) -> Encoded {
    tile_config_op(Pp::None, &mem)
}

/// `sttilecfg m512`: stores the current tile configuration.
pub fn sttilecfg(mem: Mem) -> Encoded {
    tile_config_op(Pp::P66, &mem)
}

/// `tilerelease`: returns the tiles to their init state. Every kernel
/// thread ends with it: tiles left in use block deep C-states.
pub fn tilerelease() -> Encoded {
    let mut out = Encoded::new();
    vex3(&mut out, 0, 0, 0, Map::M0F38, false, 0, Pp::None);
    out.push(OP_TILECFG);
    out.push(0xC0);
    out
}

/// `tilezero tmm`.
pub fn tilezero(tile: Tmm) -> Encoded {
    let mut out = Encoded::new();
    vex3(&mut out, 0, 0, 0, Map::M0F38, false, 0, Pp::PF2);
    out.push(OP_TILECFG);
    out.push(0xC0 | tile.number() << 3);
    out
}

fn tile_move(mnemonic: &'static str, pp: Pp, tile: Tmm, mem: &Mem) -> Result<Encoded, EncodeError> {
    // The SIB index is the row stride; SIB.index = none would silently mean
    // stride 0, which no kernel wants.
    if mem.index_reg().is_none() {
        return Err(EncodeError::MissingStride { mnemonic });
    }
    let mut out = Encoded::new();
    vex3(&mut out, 0, mem.x_bit(), mem.b_bit(), Map::M0F38, false, 0, pp);
    out.push(OP_TILEMOV);
    mem.encode(&mut out, tile.number(), true, 1);
    Ok(out)
}

/// `tileloadd tmm, [base + stride*scale + disp]`.
pub fn tileloadd(tile: Tmm, mem: Mem) -> Result<Encoded, EncodeError> {
    tile_move("tileloadd", Pp::PF2, tile, &mem)
}

/// `tileloaddt1`: the same load with a non-temporal hint (slower here,
/// ~19 vs ~9 cycles per KiB, docs/AMX.md "Throughput").
pub fn tileloaddt1(tile: Tmm, mem: Mem) -> Result<Encoded, EncodeError> {
    tile_move("tileloaddt1", Pp::P66, tile, &mem)
}

/// `tilestored [base + stride*scale + disp], tmm`.
pub fn tilestored(mem: Mem, tile: Tmm) -> Result<Encoded, EncodeError> {
    tile_move("tilestored", Pp::PF3, tile, &mem)
}

/// `tdp* dst, a, b`: dst += A x B. The three tiles must be distinct (#UD).
pub fn tdp(op: TdpOp, dst: Tmm, a: Tmm, b: Tmm) -> Result<Encoded, EncodeError> {
    if dst == a || dst == b || a == b {
        return Err(EncodeError::TileAliasing { mnemonic: op.mnemonic(), dst, a, b });
    }
    let (pp, opcode) = op.pp_opcode();
    let mut out = Encoded::new();
    vex3(&mut out, 0, 0, 0, Map::M0F38, false, b.number(), pp);
    out.push(opcode);
    out.push(0xC0 | dst.number() << 3 | a.number());
    Ok(out)
}
