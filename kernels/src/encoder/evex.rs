//! AVX-512 (EVEX) instructions and the opmask moves that feed them.
//!
//! One declarative table row per instruction ([`EvexOp`]) and one function
//! per operand form. The subtle part is the compressed 8-bit displacement:
//! EVEX scales disp8 by the memory operand size N, which depends on the
//! tuple type and on embedded broadcast (docs/AMX.md, "EVEX pitfalls").

use super::{vex3, EncodeError, Encoded, Gpr, KReg, Map, Mem, Pp, Zmm};

/// How the memory operand size N for disp8*N is derived (SDM tuple types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Tuple {
    /// Full vector, broadcast allowed: N = 64, or the element size when broadcasting.
    Full { elem: u8 },
    /// Full vector memory (moves): N = 64, no broadcast.
    FullMem,
    /// One scalar element (expand, broadcast sources): N = element size.
    Scalar { elem: u8 },
    /// Half of a vector from memory (VCVTPH2PS zmm, m256; HVM without
    /// broadcast): N = 32.
    HalfMem,
}

/// Operand order of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Form {
    /// `op dst, src1, src2/mem` with src1 in EVEX.vvvv.
    Rvm,
    /// `op dst, src/mem` (vvvv unused).
    Rm,
    /// `op mem, src` (stores).
    Mr,
}

/// One row of the EVEX instruction table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EvexOp {
    mnemonic: &'static str,
    pp: Pp,
    map: Map,
    opcode: u8,
    w: bool,
    tuple: Tuple,
    form: Form,
    /// The register form of the source is not a zmm (e.g. vpbroadcastd
    /// takes an xmm), so only the memory form is offered.
    memory_only: bool,
}

macro_rules! evex_table {
    ($($name:ident = $mn:literal, $pp:ident, $map:ident, $op:literal, w = $w:literal, $tuple:expr, $form:ident, $memonly:literal;)*) => {
        impl EvexOp {
            $(pub const $name: EvexOp = EvexOp {
                mnemonic: $mn, pp: Pp::$pp, map: Map::$map, opcode: $op, w: $w != 0,
                tuple: $tuple, form: Form::$form, memory_only: $memonly,
            };)*
            /// Every row of the table (for tests and dumps).
            pub const ALL: &'static [EvexOp] = &[$(EvexOp::$name),*];
        }
    };
}

evex_table! {
    VPDPBUSD = "vpdpbusd", P66, M0F38, 0x50, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    VDPBF16PS = "vdpbf16ps", PF3, M0F38, 0x52, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    VFMADD231PS = "vfmadd231ps", P66, M0F38, 0xB8, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    VADDPS = "vaddps", None, M0F, 0x58, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    VPADDD = "vpaddd", P66, M0F, 0xFE, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    VPSUBD = "vpsubd", P66, M0F, 0xFA, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    VPXORD = "vpxord", P66, M0F, 0xEF, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    VMOVUPS_LOAD = "vmovups", None, M0F, 0x10, w = 0, Tuple::FullMem, Rm, false;
    VMOVUPS_STORE = "vmovups", None, M0F, 0x11, w = 0, Tuple::FullMem, Mr, false;
    VMOVDQU8_LOAD = "vmovdqu8", PF2, M0F, 0x6F, w = 0, Tuple::FullMem, Rm, false;
    VMOVDQU8_STORE = "vmovdqu8", PF2, M0F, 0x7F, w = 0, Tuple::FullMem, Mr, false;
    VMOVDQU16_LOAD = "vmovdqu16", PF2, M0F, 0x6F, w = 1, Tuple::FullMem, Rm, false;
    VMOVDQU16_STORE = "vmovdqu16", PF2, M0F, 0x7F, w = 1, Tuple::FullMem, Mr, false;
    VMOVDQU32_LOAD = "vmovdqu32", PF3, M0F, 0x6F, w = 0, Tuple::FullMem, Rm, false;
    VMOVDQU32_STORE = "vmovdqu32", PF3, M0F, 0x7F, w = 0, Tuple::FullMem, Mr, false;
    VPEXPANDB = "vpexpandb", P66, M0F38, 0x62, w = 0, Tuple::Scalar { elem: 1 }, Rm, false;
    VPEXPANDW = "vpexpandw", P66, M0F38, 0x62, w = 1, Tuple::Scalar { elem: 2 }, Rm, false;
    VPBROADCASTD = "vpbroadcastd", P66, M0F38, 0x58, w = 0, Tuple::Scalar { elem: 4 }, Rm, true;
    VBROADCASTSS = "vbroadcastss", P66, M0F38, 0x18, w = 0, Tuple::Scalar { elem: 4 }, Rm, true;
    VFMADD213PS = "vfmadd213ps", P66, M0F38, 0xA8, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    VPANDD = "vpandd", P66, M0F, 0xDB, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    VPSHUFB = "vpshufb", P66, M0F38, 0x00, w = 0, Tuple::FullMem, Rvm, false;
    // Byte subtraction (AVX512BW; bytes take no embedded broadcast).
    VPSUBB = "vpsubb", P66, M0F, 0xF8, w = 0, Tuple::FullMem, Rvm, false;
    VCVTDQ2PS = "vcvtdq2ps", None, M0F, 0x5B, w = 0, Tuple::Full { elem: 4 }, Rm, false;
    VMULPS = "vmulps", None, M0F, 0x59, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    // Variable logical right shift of dwords: src2 (zmm/m512/m32bcst) holds the counts.
    VPSRLVD = "vpsrlvd", P66, M0F38, 0x45, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    // Variable logical left shift of dwords (src2 holds the counts).
    VPSLLVD = "vpsllvd", P66, M0F38, 0x47, w = 0, Tuple::Full { elem: 4 }, Rvm, false;
    // 16 f16 (a ymm or m256) widened to 16 f32, exactly; only the memory form
    // is offered (the register source is a ymm, which `Zmm` does not name).
    VCVTPH2PS = "vcvtph2ps", P66, M0F38, 0x13, w = 0, Tuple::HalfMem, Rm, true;
}

/// Write mask `{k}` or `{k}{z}`; `Mask::NONE` is no masking (k0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mask {
    k: KReg,
    zeroing: bool,
}

impl Mask {
    pub const NONE: Mask = Mask { k: KReg::K0, zeroing: false };

    /// `{k}`: lanes whose mask bit is 0 keep the destination's old value.
    pub const fn merge(k: KReg) -> Mask {
        Mask { k, zeroing: false }
    }

    /// `{k}{z}`: lanes whose mask bit is 0 become zero.
    pub const fn zero(k: KReg) -> Mask {
        Mask { k, zeroing: true }
    }

    pub const fn reg(&self) -> KReg {
        self.k
    }

    pub const fn is_zeroing(&self) -> bool {
        self.zeroing
    }
}

/// The register fields an EVEX prefix extends, before inversion.
struct Fields {
    reg: u8,
    vvvv: u8,
    x: u8,
    b: u8,
}

impl EvexOp {
    pub const fn mnemonic(&self) -> &'static str {
        self.mnemonic
    }

    fn bad(&self, what: &'static str) -> EncodeError {
        EncodeError::BadOperands { mnemonic: self.mnemonic, what }
    }

    fn check(&self, form: Form, mask: Mask, is_mem: bool) -> Result<(), EncodeError> {
        if self.form != form {
            return Err(self.bad("wrong operand form for this instruction"));
        }
        if self.memory_only && !is_mem {
            return Err(self.bad("only the memory source form is supported"));
        }
        if mask.zeroing && mask.k == KReg::K0 {
            return Err(self.bad("zeroing {z} needs a mask register other than k0"));
        }
        if mask.zeroing && form == Form::Mr {
            return Err(self.bad("zeroing {z} is not allowed with a memory destination"));
        }
        Ok(())
    }

    /// EVEX prefix (4 bytes) + opcode. `fields` hold full register numbers.
    fn prefix(&self, out: &mut Encoded, f: &Fields, mask: Mask, broadcast: bool) {
        let inv = |bit: u8| !bit & 1;
        out.push(0x62);
        out.push(inv(f.reg >> 3) << 7 | inv(f.x) << 6 | inv(f.b) << 5 | inv(f.reg >> 4) << 4 | self.map as u8);
        out.push((self.w as u8) << 7 | (!f.vvvv & 0xF) << 3 | 1 << 2 | self.pp as u8);
        // L'L = 10: 512-bit vectors. With broadcast L'L still gives the vector length.
        out.push(
            (mask.zeroing as u8) << 7 | 0b10 << 5 | (broadcast as u8) << 4 | inv(f.vvvv >> 4) << 3 | mask.k.number(),
        );
        out.push(self.opcode);
    }

    fn disp_n(&self, broadcast: bool) -> i32 {
        match self.tuple {
            Tuple::Full { elem } if broadcast => elem as i32,
            Tuple::Full { .. } | Tuple::FullMem => 64,
            Tuple::HalfMem => 32,
            Tuple::Scalar { elem } => elem as i32,
        }
    }

    fn encode_mem(&self, reg: Zmm, vvvv: u8, mem: &Mem, mask: Mask, broadcast: bool) -> Encoded {
        let mut out = Encoded::new();
        let fields = Fields { reg: reg.number(), vvvv, x: mem.x_bit(), b: mem.b_bit() };
        self.prefix(&mut out, &fields, mask, broadcast);
        mem.encode(&mut out, reg.number() & 7, false, self.disp_n(broadcast));
        out
    }

    fn encode_reg(&self, reg: Zmm, vvvv: u8, rm: Zmm, mask: Mask) -> Encoded {
        let mut out = Encoded::new();
        // With a register rm, EVEX.X supplies bit 4 of its number.
        let fields = Fields { reg: reg.number(), vvvv, x: rm.number() >> 4, b: (rm.number() >> 3) & 1 };
        self.prefix(&mut out, &fields, mask, false);
        out.push(0xC0 | (reg.number() & 7) << 3 | (rm.number() & 7));
        out
    }

    /// `op dst{mask}, src1, src2`.
    pub fn rvm(&self, dst: Zmm, src1: Zmm, src2: Zmm, mask: Mask) -> Result<Encoded, EncodeError> {
        self.check(Form::Rvm, mask, false)?;
        Ok(self.encode_reg(dst, src1.number(), src2, mask))
    }

    /// `op dst{mask}, src1, [mem]` or, with `broadcast`, `[mem]{1toN}`.
    pub fn rvm_mem(&self, dst: Zmm, src1: Zmm, mem: Mem, mask: Mask, broadcast: bool) -> Result<Encoded, EncodeError> {
        self.check(Form::Rvm, mask, true)?;
        if broadcast && !matches!(self.tuple, Tuple::Full { .. }) {
            return Err(self.bad("embedded broadcast is not allowed"));
        }
        Ok(self.encode_mem(dst, src1.number(), &mem, mask, broadcast))
    }

    /// `op dst{mask}, src` (register to register).
    pub fn rm(&self, dst: Zmm, src: Zmm, mask: Mask) -> Result<Encoded, EncodeError> {
        self.check(Form::Rm, mask, false)?;
        Ok(self.encode_reg(dst, 0, src, mask))
    }

    /// `op dst{mask}, [mem]` (loads, expands, broadcasts).
    pub fn rm_mem(&self, dst: Zmm, mem: Mem, mask: Mask) -> Result<Encoded, EncodeError> {
        self.check(Form::Rm, mask, true)?;
        Ok(self.encode_mem(dst, 0, &mem, mask, false))
    }

    /// `op [mem]{mask}, src` (stores; merge masking only).
    pub fn mr_mem(&self, mem: Mem, src: Zmm, mask: Mask) -> Result<Encoded, EncodeError> {
        self.check(Form::Mr, mask, true)?;
        Ok(self.encode_mem(src, 0, &mem, mask, false))
    }
}

const OP_KMOV_LOAD: u8 = 0x90;
const OP_KMOV_GPR: u8 = 0x92;

/// `kmovq k, r64` (VEX.L0.F2.0F.W1 92): a 64-bit mask from a GPR.
pub fn kmovq_k_r64(k: KReg, src: Gpr) -> Encoded {
    let mut out = Encoded::new();
    vex3(&mut out, 0, 0, src.high(), Map::M0F, true, 0, Pp::PF2);
    out.push(OP_KMOV_GPR);
    out.push(0xC0 | k.number() << 3 | src.low3());
    out
}

/// `kmovd k, m32` (VEX.L0.66.0F.W1 90): a 32-bit mask straight from memory.
pub fn kmovd_k_mem(k: KReg, mem: Mem) -> Encoded {
    let mut out = Encoded::new();
    vex3(&mut out, 0, mem.x_bit(), mem.b_bit(), Map::M0F, true, 0, Pp::P66);
    out.push(OP_KMOV_LOAD);
    mem.encode(&mut out, k.number(), false, 1);
    out
}

/// `kmovq k, m64` (VEX.L0.0F.W1 90): a 64-bit mask straight from memory.
pub fn kmovq_k_mem(k: KReg, mem: Mem) -> Encoded {
    let mut out = Encoded::new();
    vex3(&mut out, 0, mem.x_bit(), mem.b_bit(), Map::M0F, true, 0, Pp::None);
    out.push(OP_KMOV_LOAD);
    mem.encode(&mut out, k.number(), false, 1);
    out
}
