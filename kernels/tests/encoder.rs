//! Encoder tests with iced-x86 as the oracle (docs/AMX.md, "Encodings" and
//! "EVEX pitfalls"). Every emitted instruction is decoded as one 64-bit
//! instruction and compared with what was asked for: mnemonic, operand count,
//! each operand (register, or memory base/index/scale/displacement), opmask,
//! zeroing and broadcast. Its length is predicted from the ModRM/SIB/disp8*N
//! rules, independently of the encoder, and must equal both the number of
//! bytes emitted and the number iced consumed.
//!
//! Each sweep prints how many instructions it checked (`-- --nocapture`).

use std::fmt;

use iced_x86::{Code, Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic, OpKind, Register};
use tilejit_kernels::encoder::{
    kmovd_k_mem, kmovq_k_mem, kmovq_k_r64, ldtilecfg, sttilecfg, tdp, tileloadd, tileloaddt1, tilerelease, tilestored,
    tilezero, EncodeError, Encoded, EvexOp, Gpr, KReg, Mask, Mem, Scale, TdpOp, Tmm, Zmm,
};

// ---------------------------------------------------------------- registers

fn r_gpr(g: Gpr) -> Register {
    Register::RAX + u32::from(g.number())
}
fn r_zmm(z: Zmm) -> Register {
    Register::ZMM0 + u32::from(z.number())
}
fn r_tmm(t: Tmm) -> Register {
    Register::TMM0 + u32::from(t.number())
}
fn r_k(k: KReg) -> Register {
    Register::K0 + u32::from(k.number())
}
fn zmm(n: u8) -> Zmm {
    Zmm::new(n).unwrap()
}

const SCALES: [Scale; 4] = [Scale::S1, Scale::S2, Scale::S4, Scale::S8];

/// Every base register, each with no index (if `no_index`) and with every
/// legal index (not rsp) at every scale, at every displacement in `disps`.
fn mem_sweep(disps: &[i32], no_index: bool) -> Vec<Mem> {
    let mut out = Vec::new();
    for base in Gpr::all() {
        for &d in disps {
            let m = Mem::base_disp(base, d);
            if no_index {
                out.push(m);
            }
            for index in Gpr::all().filter(|&g| g != Gpr::RSP) {
                for s in SCALES {
                    out.push(m.with_index(index, s).unwrap());
                }
            }
        }
    }
    out
}

/// Displacements for an operand whose disp8 is scaled by `n`: 0, compressible
/// multiples including the extremes 127*N and -128*N, the first values past
/// them, non-multiples of N (disp32), and the disp32 extremes.
fn disps(n: i32) -> Vec<i32> {
    let mut v =
        vec![0, n, -n, 2 * n, 127 * n, -128 * n, 128 * n, -129 * n, 0x44, 0x80, -0x81, 0x12345, i32::MAX, i32::MIN];
    if n > 1 {
        v.extend([n + n / 2, -(n / 2), n + 1]);
    }
    v
}

// ------------------------------------------------- expected length (the spec)

fn rbp_like(base: Gpr) -> bool {
    base == Gpr::RBP || base == Gpr::R13
}

/// Displacement bytes: none for disp 0 (except rbp/r13 base: mod=01 disp8=0),
/// one if disp is a multiple of N with disp/N in i8, else four.
fn disp_len(m: &Mem, n: i32) -> usize {
    let d = m.disp();
    if d == 0 && !rbp_like(m.base_reg()) {
        0
    } else if d % n == 0 && (-128..=127).contains(&(d / n)) {
        1
    } else {
        4
    }
}

/// ModRM + SIB (needed for an index, a rsp/r12 base, or forced) + displacement.
fn modrm_len(m: &Mem, n: i32, force_sib: bool) -> usize {
    let base = m.base_reg();
    let sib = force_sib || m.index_reg().is_some() || base == Gpr::RSP || base == Gpr::R12;
    1 + usize::from(sib) + disp_len(m, n)
}

// ------------------------------------------------------- what we asked for

#[derive(Clone, Copy)]
enum Opnd {
    R(Register),
    M(Mem),
}
use Opnd::{M, R};

/// The instruction intended, as the decoder should see it.
struct Want {
    mnemonic: Mnemonic,
    ops: Vec<Opnd>,
    mask: Mask,
    bcst: bool,
    /// Prefix + opcode bytes: 4 for VEX (C4), 5 for EVEX.
    head: usize,
    /// disp8 scale N (1 for VEX).
    disp_n: i32,
    /// AMX tile moves always carry a SIB byte.
    force_sib: bool,
}

impl Want {
    fn vex(mnemonic: Mnemonic, ops: &[Opnd]) -> Want {
        Want { mnemonic, ops: ops.to_vec(), mask: Mask::NONE, bcst: false, head: 4, disp_n: 1, force_sib: false }
    }

    fn evex(mnemonic: Mnemonic, ops: Vec<Opnd>, mask: Mask, bcst: bool, disp_n: i32) -> Want {
        Want { mnemonic, ops, mask, bcst, head: 5, disp_n, force_sib: false }
    }

    fn sib(self) -> Want {
        Want { force_sib: true, ..self }
    }

    /// Expected length: prefix + opcode + ModRM [+ SIB + displacement].
    fn len(&self) -> usize {
        let mem = self.ops.iter().find_map(|o| if let M(m) = o { Some(m) } else { None });
        self.head + mem.map_or(1, |m| modrm_len(m, self.disp_n, self.force_sib))
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", format!("{:?}", self.mnemonic).to_lowercase())?;
        for (i, op) in self.ops.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            match op {
                R(r) => write!(f, "{}", format!("{r:?}").to_lowercase())?,
                M(m) if self.bcst => write!(f, "{m}{{1to{}}}", 64 / self.disp_n)?,
                M(m) => write!(f, "{m}")?,
            }
            if i == 0 && self.mask.reg() != KReg::K0 {
                write!(f, "{{{}}}", self.mask.reg())?;
            }
            if i == 0 && self.mask.is_zeroing() {
                f.write_str("{z}")?;
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------- decoding

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn iced_text(ins: &Instruction) -> String {
    let mut s = String::new();
    IntelFormatter::new().format(ins, &mut s);
    format!("{s}  ({:?}, {} bytes)", ins.code(), ins.len())
}

/// Decodes `bytes` as one 64-bit instruction; also returns how many bytes
/// the decoder consumed.
fn decode_one(bytes: &[u8]) -> (Instruction, usize) {
    let mut decoder = Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE);
    let ins = decoder.decode();
    (ins, decoder.position())
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Compares memory operand `i` of `ins` with `m` (iced reports the real byte
/// displacement, disp8*N already expanded).
fn check_mem(ins: &Instruction, i: u32, m: &Mem, n: i32) -> Result<(), String> {
    ensure!(ins.op_kind(i) == OpKind::Memory, "operand {i} is {:?}, want memory {m}", ins.op_kind(i));
    let base = r_gpr(m.base_reg());
    ensure!(ins.memory_base() == base, "base {:?}, want {base:?}", ins.memory_base());
    let (index, scale) = m.index_reg().map_or((Register::None, 1), |(r, s)| (r_gpr(r), u32::from(s.factor())));
    let (got_index, got_scale) = (ins.memory_index(), ins.memory_index_scale());
    ensure!((got_index, got_scale) == (index, scale), "index {got_index:?}*{got_scale}, want {index:?}*{scale}");
    let disp = ins.memory_displacement64() as i64;
    let shex = |v: i64| if v < 0 { format!("-{:#x}", -i128::from(v)) } else { format!("{v:#x}") };
    ensure!(disp == i64::from(m.disp()), "displacement {}, want {}", shex(disp), shex(m.disp().into()));
    let size = ins.memory_displ_size();
    let ok = match disp_len(m, n) {
        0 => size == 0,
        1 => size == 1,
        _ => size == 4 || size == 8,
    };
    ensure!(ok, "displacement field of {size} bytes, want {} (N = {n})", disp_len(m, n));
    Ok(())
}

fn compare(want: &Want, bytes: &[u8], ins: &Instruction, used: usize) -> Result<(), String> {
    ensure!(!ins.is_invalid() && ins.code() != Code::INVALID, "iced: invalid instruction");
    let (emitted, rules) = (bytes.len(), want.len());
    ensure!(used == emitted && ins.len() == emitted, "iced consumed {used} of the {emitted} bytes emitted");
    ensure!(emitted == rules, "{emitted} bytes emitted, the encoding rules give {rules}");
    ensure!(ins.mnemonic() == want.mnemonic, "mnemonic {:?}, want {:?}", ins.mnemonic(), want.mnemonic);
    ensure!(ins.op_count() as usize == want.ops.len(), "{} operands, want {}", ins.op_count(), want.ops.len());
    for (i, op) in (0u32..).zip(&want.ops) {
        match op {
            R(r) => {
                let (kind, reg) = (ins.op_kind(i), ins.op_register(i));
                ensure!(kind == OpKind::Register && reg == *r, "operand {i} is {kind:?} {reg:?}, want {r:?}");
            }
            M(m) => check_mem(ins, i, m, want.disp_n)?,
        }
    }
    let k = match want.mask.reg() {
        KReg::K0 => Register::None,
        k => r_k(k),
    };
    ensure!(ins.op_mask() == k, "opmask {:?}, want {k:?}", ins.op_mask());
    let (z, want_z) = (ins.zeroing_masking(), want.mask.is_zeroing());
    ensure!(z == want_z, "zeroing {z}, want {want_z}");
    ensure!(ins.is_broadcast() == want.bcst, "broadcast {}, want {}", ins.is_broadcast(), want.bcst);
    Ok(())
}

/// Counts and checks the instructions of one sweep.
struct Sweep {
    name: &'static str,
    count: usize,
}

impl Sweep {
    fn new(name: &'static str) -> Sweep {
        Sweep { name, count: 0 }
    }

    fn check(&mut self, want: &Want, got: Result<Encoded, EncodeError>) -> Encoded {
        self.count += 1;
        let enc = got.unwrap_or_else(|e| panic!("[{}] encoder refused `{want}`: {e}", self.name));
        let bytes = enc.bytes();
        let (ins, used) = decode_one(bytes);
        if let Err(why) = compare(want, bytes, &ins, used) {
            panic!(
                "[{}] {why}\n  intended: {want}\n  emitted:  {}\n  iced:     {}",
                self.name,
                hex(bytes),
                iced_text(&ins)
            );
        }
        enc
    }

    fn done(self, expected: usize) {
        println!("sweep {:<34} {:>7} instructions checked", self.name, self.count);
        assert_eq!(self.count, expected, "[{}] sweep size", self.name);
    }
}

// ------------------------------------------------------------------- AMX

#[test]
fn amx_tile_config_release_zero() {
    let mut s = Sweep::new("ldtilecfg/sttilecfg");
    let ds = [0, 0x40, -0x80, 0x7f, 0x80, 0x12345, -0x81, i32::MAX, i32::MIN];
    for m in mem_sweep(&ds, true) {
        s.check(&Want::vex(Mnemonic::Ldtilecfg, &[M(m)]), Ok(ldtilecfg(m)));
        s.check(&Want::vex(Mnemonic::Sttilecfg, &[M(m)]), Ok(sttilecfg(m)));
    }
    s.done(2 * 16 * ds.len() * 61);

    let mut s = Sweep::new("tilerelease/tilezero");
    s.check(&Want::vex(Mnemonic::Tilerelease, &[]), Ok(tilerelease()));
    for t in Tmm::all() {
        s.check(&Want::vex(Mnemonic::Tilezero, &[R(r_tmm(t))]), Ok(tilezero(t)));
    }
    s.done(1 + 8);
}

#[test]
fn amx_tile_loads_and_stores() {
    let mut s = Sweep::new("tileloadd/tileloaddt1/tilestored");
    let ds = [0, 0x40, -0x80, 0x7f, 0x80, -0x81, 0x12345];
    let mems = mem_sweep(&ds, false);
    for t in Tmm::all() {
        for &m in &mems {
            let (rt, mm) = (R(r_tmm(t)), M(m));
            s.check(&Want::vex(Mnemonic::Tileloadd, &[rt, mm]).sib(), tileloadd(t, m));
            s.check(&Want::vex(Mnemonic::Tileloaddt1, &[rt, mm]).sib(), tileloaddt1(t, m));
            s.check(&Want::vex(Mnemonic::Tilestored, &[mm, rt]).sib(), tilestored(m, t));
        }
    }
    s.done(3 * 8 * 16 * 15 * 4 * ds.len());
}

/// The SIB corner cases spelled out byte by byte (the sweep above covers
/// them through iced; this says what exactly is expected).
#[test]
fn amx_sib_special_bases() {
    for base in Gpr::all() {
        let m = Mem::base(base).with_index(Gpr::RCX, Scale::S1).unwrap();
        let enc = tileloadd(Tmm::TMM2, m).unwrap();
        let b = enc.bytes();
        let what = format!("tileloadd tmm2, {m}: emitted {}", hex(b));
        assert_eq!(b[4] & 7, 0b100, "{what}: ModRM.rm must select a SIB byte");
        assert_eq!(b[5] & 7, base.number() & 7, "{what}: SIB.base");
        if rbp_like(base) {
            // mod=00 with SIB.base=101 would mean "no base, disp32".
            assert_eq!((b[4] >> 6, b.len(), b[6]), (0b01, 7, 0), "{what}: rbp/r13 need mod=01 disp8=0");
        } else {
            assert_eq!((b[4] >> 6, b.len()), (0b00, 6), "{what}: no displacement byte expected");
        }
    }
}

const TDP_OPS: [(TdpOp, Mnemonic); 5] = [
    (TdpOp::Bssd, Mnemonic::Tdpbssd),
    (TdpOp::Bsud, Mnemonic::Tdpbsud),
    (TdpOp::Busd, Mnemonic::Tdpbusd),
    (TdpOp::Buud, Mnemonic::Tdpbuud),
    (TdpOp::Bf16ps, Mnemonic::Tdpbf16ps),
];

#[test]
fn amx_tdp_all_tile_triples() {
    let mut s = Sweep::new("tdp (distinct triples)");
    let mut refused = 0;
    for (op, mnemonic) in TDP_OPS {
        assert_eq!(op.mnemonic(), format!("{mnemonic:?}").to_lowercase());
        for (d, a, b) in Tmm::all().flat_map(|d| Tmm::all().flat_map(move |a| Tmm::all().map(move |b| (d, a, b)))) {
            let got = tdp(op, d, a, b);
            if d == a || d == b || a == b {
                let want = EncodeError::TileAliasing { mnemonic: op.mnemonic(), dst: d, a, b };
                assert_eq!(got, Err(want), "{} {d}, {a}, {b}", op.mnemonic());
                refused += 1;
            } else {
                s.check(&Want::vex(mnemonic, &[R(r_tmm(d)), R(r_tmm(a)), R(r_tmm(b))]), got);
            }
        }
    }
    s.done(5 * 8 * 7 * 6);
    assert_eq!(refused, 5 * (512 - 336));
    println!("sweep {:<34} {refused:>7} aliasing triples refused", "tdp (aliased triples)");
}

// ------------------------------------------------------------------ kmovq

#[test]
fn kmovq_from_gpr_and_memory() {
    let mut s = Sweep::new("kmovq k, r64");
    for k in KReg::all() {
        for g in Gpr::all() {
            s.check(&Want::vex(Mnemonic::Kmovq, &[R(r_k(k)), R(r_gpr(g))]), Ok(kmovq_k_r64(k, g)));
        }
    }
    s.done(8 * 16);

    let mut s = Sweep::new("kmovq k, m64");
    let ds = [0, 8, -0x80, 0x7f, 0x80, -0x81, 0x12345];
    let mems = mem_sweep(&ds, true);
    for k in KReg::all() {
        for &m in &mems {
            s.check(&Want::vex(Mnemonic::Kmovq, &[R(r_k(k)), M(m)]), Ok(kmovq_k_mem(k, m)));
        }
    }
    s.done(8 * mems.len());

    let mut s = Sweep::new("kmovd k, m32");
    for k in KReg::all() {
        for &m in &mems {
            s.check(&Want::vex(Mnemonic::Kmovd, &[R(r_k(k)), M(m)]), Ok(kmovd_k_mem(k, m)));
        }
    }
    s.done(8 * mems.len());
}

// ------------------------------------------------------------------- EVEX

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Form {
    /// `op dst, src1, src2/mem` (`rvm`, `rvm_mem`).
    Rvm,
    /// `op dst, src/mem` (`rm`, `rm_mem`).
    Rm,
    /// `op mem, src` (`mr_mem`).
    Mr,
}

/// What the SDM says about each table row, written down independently of
/// the encoder's table: operand form, full-operand disp8 scale N, broadcast
/// element size (None: no {1toN}), and whether the register form is absent.
struct Row {
    op: EvexOp,
    mnemonic: Mnemonic,
    form: Form,
    n: i32,
    bcst_n: Option<i32>,
    mem_only: bool,
}

const fn row(op: EvexOp, mnemonic: Mnemonic, form: Form, n: i32, bcst_n: Option<i32>, mem_only: bool) -> Row {
    Row { op, mnemonic, form, n, bcst_n, mem_only }
}

#[rustfmt::skip]
const ROWS: [Row; 28] = [
    row(EvexOp::VPDPBUSD, Mnemonic::Vpdpbusd, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VDPBF16PS, Mnemonic::Vdpbf16ps, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VFMADD231PS, Mnemonic::Vfmadd231ps, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VADDPS, Mnemonic::Vaddps, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VPADDD, Mnemonic::Vpaddd, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VPSUBD, Mnemonic::Vpsubd, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VPXORD, Mnemonic::Vpxord, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VMOVUPS_LOAD, Mnemonic::Vmovups, Form::Rm, 64, None, false),
    row(EvexOp::VMOVUPS_STORE, Mnemonic::Vmovups, Form::Mr, 64, None, false),
    row(EvexOp::VMOVDQU8_LOAD, Mnemonic::Vmovdqu8, Form::Rm, 64, None, false),
    row(EvexOp::VMOVDQU8_STORE, Mnemonic::Vmovdqu8, Form::Mr, 64, None, false),
    row(EvexOp::VMOVDQU16_LOAD, Mnemonic::Vmovdqu16, Form::Rm, 64, None, false),
    row(EvexOp::VMOVDQU16_STORE, Mnemonic::Vmovdqu16, Form::Mr, 64, None, false),
    row(EvexOp::VMOVDQU32_LOAD, Mnemonic::Vmovdqu32, Form::Rm, 64, None, false),
    row(EvexOp::VMOVDQU32_STORE, Mnemonic::Vmovdqu32, Form::Mr, 64, None, false),
    row(EvexOp::VPEXPANDB, Mnemonic::Vpexpandb, Form::Rm, 1, None, false),
    row(EvexOp::VPEXPANDW, Mnemonic::Vpexpandw, Form::Rm, 2, None, false),
    row(EvexOp::VPBROADCASTD, Mnemonic::Vpbroadcastd, Form::Rm, 4, None, true),
    row(EvexOp::VBROADCASTSS, Mnemonic::Vbroadcastss, Form::Rm, 4, None, true),
    row(EvexOp::VFMADD213PS, Mnemonic::Vfmadd213ps, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VPANDD, Mnemonic::Vpandd, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VPSHUFB, Mnemonic::Vpshufb, Form::Rvm, 64, None, false),
    row(EvexOp::VPSUBB, Mnemonic::Vpsubb, Form::Rvm, 64, None, false),
    row(EvexOp::VCVTDQ2PS, Mnemonic::Vcvtdq2ps, Form::Rm, 64, None, false),
    row(EvexOp::VMULPS, Mnemonic::Vmulps, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VPSRLVD, Mnemonic::Vpsrlvd, Form::Rvm, 64, Some(4), false),
    row(EvexOp::VPSLLVD, Mnemonic::Vpsllvd, Form::Rvm, 64, Some(4), false),
    // Half-vector memory (HVM): 16 f16 = 32 bytes, so disp8 is scaled by 32.
    row(EvexOp::VCVTPH2PS, Mnemonic::Vcvtph2ps, Form::Rm, 32, None, true),
];

impl Row {
    fn has_reg_form(&self) -> bool {
        self.form != Form::Mr && !self.mem_only
    }
    /// Zmm operands of the register form / of the memory form.
    fn regs(&self, mem: bool) -> usize {
        match self.form {
            Form::Rvm => 3 - usize::from(mem),
            Form::Rm => 2 - usize::from(mem),
            Form::Mr => 1,
        }
    }
    /// `false`, plus `true` where embedded broadcast is legal.
    fn bcst_variants(&self) -> &'static [bool] {
        &[false, true][..1 + usize::from(self.bcst_n.is_some())]
    }
    /// disp8 scale: the element size with broadcast, else the full operand.
    fn n_for(&self, bcst: bool) -> i32 {
        self.bcst_n.filter(|_| bcst).unwrap_or(self.n)
    }
}

/// The register form: `regs` = [dst, src1, src2] (Rvm) or [dst, src] (Rm).
fn evex_reg(row: &Row, regs: &[Zmm], mask: Mask) -> (Want, Result<Encoded, EncodeError>) {
    let ops = regs.iter().map(|&z| R(r_zmm(z))).collect();
    let got = match row.form {
        Form::Rvm => row.op.rvm(regs[0], regs[1], regs[2], mask),
        Form::Rm => row.op.rm(regs[0], regs[1], mask),
        Form::Mr => unreachable!("stores have no register form"),
    };
    (Want::evex(row.mnemonic, ops, mask, false, row.n), got)
}

/// The memory form: `regs` = [dst, src1] (Rvm), [dst] (Rm) or [src] (Mr).
fn evex_mem(row: &Row, regs: &[Zmm], mem: Mem, mask: Mask, bcst: bool) -> (Want, Result<Encoded, EncodeError>) {
    let r = |i: usize| R(r_zmm(regs[i]));
    let (ops, got) = match row.form {
        Form::Rvm => (vec![r(0), r(1), M(mem)], row.op.rvm_mem(regs[0], regs[1], mem, mask, bcst)),
        Form::Rm => (vec![r(0), M(mem)], row.op.rm_mem(regs[0], mem, mask)),
        Form::Mr => (vec![M(mem), r(0)], row.op.mr_mem(mem, regs[0], mask)),
    };
    let n = row.n_for(bcst);
    (Want::evex(row.mnemonic, ops, mask, bcst, n), got)
}

/// Fixed operands when another one is swept (high numbers exercise R'/V'/X).
const FIXED: [u8; 3] = [17, 6, 29];

#[test]
fn evex_table_is_covered() {
    assert_eq!(ROWS.len(), EvexOp::ALL.len());
    for op in EvexOp::ALL {
        let n = ROWS.iter().filter(|r| r.op == *op).count();
        assert_eq!(n, 1, "{} is described {n} times in ROWS", op.mnemonic());
    }
    for r in &ROWS {
        assert_eq!(r.op.mnemonic(), format!("{:?}", r.mnemonic).to_lowercase());
    }
}

#[test]
fn evex_register_forms_all_combinations() {
    let mut s = Sweep::new("evex register forms");
    let mut expected = 0;
    for row in ROWS.iter().filter(|r| r.has_reg_form()) {
        let k = row.regs(false);
        expected += 1 << (5 * k);
        for i in 0u32..1 << (5 * k) {
            let regs = [zmm((i & 31) as u8), zmm((i >> 5 & 31) as u8), zmm((i >> 10 & 31) as u8)];
            let (want, got) = evex_reg(row, &regs[..k], Mask::NONE);
            s.check(&want, got);
        }
    }
    s.done(expected);
}

#[test]
fn evex_memory_forms() {
    let mut zs = Sweep::new("evex memory forms: zmm");
    let mut ms = Sweep::new("evex memory forms: address");
    let (mut z_count, mut m_count) = (0, 0);
    let fixed_mem = Mem::base_disp(Gpr::R13, 0x40).with_index(Gpr::R10, Scale::S8).unwrap();
    for row in &ROWS {
        let k = row.regs(true);
        for &bcst in row.bcst_variants() {
            // Each zmm in each register position, with the others fixed.
            for (pos, r) in (0..k).flat_map(|pos| (0..32).map(move |r| (pos, r))) {
                let mut regs = FIXED.map(zmm);
                regs[pos] = zmm(r);
                let (want, got) = evex_mem(row, &regs[..k], fixed_mem, Mask::NONE, bcst);
                zs.check(&want, got);
                z_count += 1;
            }
            // Every base/index/scale at displacements chosen around disp8*N.
            for m in mem_sweep(&disps(row.n_for(bcst)), true) {
                let (want, got) = evex_mem(row, &FIXED.map(zmm)[..k], m, Mask::NONE, bcst);
                ms.check(&want, got);
                m_count += 1;
            }
        }
    }
    zs.done(z_count);
    ms.done(m_count);
}

#[test]
fn evex_disp8_compression() {
    let mut s = Sweep::new("evex disp8*N, k*N for all k");
    let mut expected = 0;
    for row in &ROWS {
        for &bcst in row.bcst_variants() {
            let n = row.n_for(bcst);
            let regs = &FIXED.map(zmm)[..row.regs(true)];
            // Every compressible displacement: the disp8 byte is disp/N.
            for k in -128..=127 {
                let (want, got) = evex_mem(row, regs, Mem::base_disp(Gpr::RAX, k * n), Mask::NONE, bcst);
                let enc = s.check(&want, got);
                let last = *enc.bytes().last().unwrap();
                assert!(k == 0 || last == k as u8, "{want}: disp8 byte {last:#04x}, want {k} (N = {n})");
                expected += 1;
            }
            // The compressed form is 3 bytes shorter than disp32.
            for base in Gpr::all() {
                let mut len = |d: i32| {
                    let (want, got) = evex_mem(row, regs, Mem::base_disp(base, d), Mask::NONE, bcst);
                    let enc = s.check(&want, got);
                    expected += 1;
                    (want.to_string(), enc.bytes().len())
                };
                let pairs = [(127 * n, 128 * n), (-128 * n, -129 * n), (n, n + i32::from(n > 1))];
                for (short, long) in pairs.into_iter().filter(|(a, b)| a != b) {
                    let ((ws, ls), (wl, ll)) = (len(short), len(long));
                    assert_eq!(ls + 3, ll, "`{ws}` ({ls} bytes) vs `{wl}` ({ll} bytes)");
                }
            }
        }
    }
    s.done(expected);
}

fn expect_bad(got: Result<Encoded, EncodeError>, mnemonic: &str, keyword: &str, what: &dyn fmt::Display) {
    match got {
        Err(EncodeError::BadOperands { mnemonic: m, what: why }) if m == mnemonic && why.contains(keyword) => {}
        other => panic!("`{what}`: want BadOperands {{ {mnemonic}, \"..{keyword}..\" }}, got {other:?}"),
    }
}

#[test]
fn evex_masks() {
    let mut s = Sweep::new("evex masks {k}/{k}{z}");
    let mut refused = 0;
    let mem = Mem::base_disp(Gpr::R12, -0x80).with_index(Gpr::R15, Scale::S2).unwrap();
    for row in &ROWS {
        for k in KReg::all() {
            for mask in [Mask::merge(k), Mask::zero(k)] {
                let legal = !(mask.is_zeroing() && (k == KReg::K0 || row.form == Form::Mr));
                let keyword = if k == KReg::K0 { "k0" } else { "memory destination" };
                let mut cases = Vec::new();
                if row.has_reg_form() {
                    for r in 0..32 {
                        let regs = [zmm(r), zmm((r + 11) % 32), zmm((r + 23) % 32)];
                        cases.push(evex_reg(row, &regs[..row.regs(false)], mask));
                    }
                }
                for &bcst in row.bcst_variants() {
                    for r in [0, 9, 16, 31] {
                        let regs = [zmm(r), zmm(31 - r)];
                        cases.push(evex_mem(row, &regs[..row.regs(true)], mem, mask, bcst));
                    }
                }
                for (want, got) in cases {
                    if legal {
                        s.check(&want, got);
                    } else {
                        expect_bad(got, row.op.mnemonic(), keyword, &want);
                        refused += 1;
                    }
                }
            }
        }
    }
    // Legal: 8 merge masks everywhere plus 7 zeroing masks except on stores.
    let per_mask = |r: &Row| 32 * usize::from(r.has_reg_form()) + 4 * r.bcst_variants().len();
    let legal: usize = ROWS.iter().map(|r| per_mask(r) * if r.form == Form::Mr { 8 } else { 15 }).sum();
    s.done(legal);
    println!("sweep {:<34} {refused:>7} illegal masks refused", "evex masks {z}");
}

#[test]
fn evex_operand_errors() {
    let (a, b, c) = (Zmm::ZMM1, Zmm::ZMM2, Zmm::ZMM3);
    let mem = Mem::base(Gpr::RSI);
    for row in &ROWS {
        let mn = row.op.mnemonic();
        let attempts: [(Form, bool, Result<Encoded, EncodeError>); 5] = [
            (Form::Rvm, false, row.op.rvm(a, b, c, Mask::NONE)),
            (Form::Rvm, true, row.op.rvm_mem(a, b, mem, Mask::NONE, false)),
            (Form::Rm, false, row.op.rm(a, b, Mask::NONE)),
            (Form::Rm, true, row.op.rm_mem(a, mem, Mask::NONE)),
            (Form::Mr, true, row.op.mr_mem(mem, a, Mask::NONE)),
        ];
        for (form, is_mem, got) in attempts {
            let what = format!("{mn} as {form:?} (memory: {is_mem})");
            if form != row.form {
                expect_bad(got, mn, "wrong operand form", &what);
            } else if row.mem_only && !is_mem {
                expect_bad(got, mn, "only the memory", &what);
            } else {
                assert!(got.is_ok(), "{what}: {got:?}");
            }
        }
        // Embedded broadcast: refused by the form check for non-rvm rows, by
        // the tuple check for an rvm row without broadcast (none in the table today).
        let got = row.op.rvm_mem(a, b, mem, Mask::NONE, true);
        match (row.form, row.bcst_n) {
            (Form::Rvm, Some(_)) => assert!(got.is_ok(), "{mn} {{1to16}}: {got:?}"),
            (Form::Rvm, None) => expect_bad(got, mn, "broadcast", &mn),
            _ => expect_bad(got, mn, "wrong operand form", &mn),
        }
    }
    // So vmovups-store.rvm, vpbroadcastd.rm and vmovups-load with {1to16} are
    // all refused above; {z} with k0 and {z} on stores are refused in evex_masks.
}

// ------------------------------------------------------- other error cases

#[test]
fn register_and_scale_constructors() {
    let range =
        |class, count, n| (n < count).then_some(n).ok_or(EncodeError::RegisterOutOfRange { class, number: n, count });
    for n in 0..=255u8 {
        assert_eq!(Tmm::new(n).map(Tmm::number), range("tmm", 8, n));
        assert_eq!(Zmm::new(n).map(Zmm::number), range("zmm", 32, n));
        assert_eq!(KReg::new(n).map(KReg::number), range("k", 8, n));
        assert_eq!(Gpr::new(n).map(Gpr::number), range("gpr", 16, n));
        let scale = Scale::from_factor(n).map(Scale::factor);
        assert_eq!(scale, if matches!(n, 1 | 2 | 4 | 8) { Ok(n) } else { Err(EncodeError::BadScale(n)) });
    }
    assert_eq!((Tmm::all().count(), Zmm::all().count(), KReg::all().count(), Gpr::all().count()), (8, 32, 8, 16));
}

#[test]
fn memory_and_tile_errors() {
    for base in Gpr::all() {
        for s in SCALES {
            let m = Mem::base_disp(base, 0x40).with_index(Gpr::RSP, s);
            assert_eq!(m, Err(EncodeError::RspIndex), "[{base}+rsp*{}]", s.factor());
        }
        for d in [0, 0x40, -0x81, 0x12345] {
            let m = Mem::base_disp(base, d);
            for t in Tmm::all() {
                let missing = |mnemonic| Err(EncodeError::MissingStride { mnemonic });
                assert_eq!(tileloadd(t, m), missing("tileloadd"), "tileloadd {t}, {m}");
                assert_eq!(tileloaddt1(t, m), missing("tileloaddt1"), "tileloaddt1 {t}, {m}");
                assert_eq!(tilestored(m, t), missing("tilestored"), "tilestored {m}, {t}");
            }
        }
    }
}

// ------------------------------------------------- byte vectors of AMX.md

#[test]
fn known_byte_vectors() {
    let rax_rcx = Mem::base(Gpr::RAX).with_index(Gpr::RCX, Scale::S1).unwrap();
    let r8_r9 = Mem::base(Gpr::R8).with_index(Gpr::R9, Scale::S1).unwrap();
    let (z0, z1, z2) = (Zmm::ZMM0, Zmm::ZMM1, Zmm::ZMM2);
    let (t0, t1, t2) = (Tmm::TMM0, Tmm::TMM1, Tmm::TMM2);
    let (k1z, none, rax) = (Mask::zero(KReg::K1), Mask::NONE, |d| Mem::base_disp(Gpr::RAX, d));
    let cases: Vec<(&str, Result<Encoded, EncodeError>, &str)> = vec![
        ("ldtilecfg [rax]", Ok(ldtilecfg(rax(0))), "c4 e2 78 49 00"),
        ("sttilecfg [rax]", Ok(sttilecfg(rax(0))), "c4 e2 79 49 00"),
        ("tilerelease", Ok(tilerelease()), "c4 e2 78 49 c0"),
        ("tilezero tmm0", Ok(tilezero(t0)), "c4 e2 7b 49 c0"),
        ("tileloadd tmm0,[rax+rcx]", tileloadd(t0, rax_rcx), "c4 e2 7b 4b 04 08"),
        ("tileloaddt1 tmm4,[rax+rcx]", tileloaddt1(Tmm::TMM4, rax_rcx), "c4 e2 79 4b 24 08"),
        ("tilestored [rax+rcx],tmm5", tilestored(rax_rcx, Tmm::TMM5), "c4 e2 7a 4b 2c 08"),
        ("tileloadd tmm3,[r8+r9]", tileloadd(Tmm::TMM3, r8_r9), "c4 82 7b 4b 1c 08"),
        ("tdpbssd tmm0,tmm1,tmm2", tdp(TdpOp::Bssd, t0, t1, t2), "c4 e2 6b 5e c1"),
        ("tdpbsud tmm0,tmm1,tmm2", tdp(TdpOp::Bsud, t0, t1, t2), "c4 e2 6a 5e c1"),
        ("tdpbusd tmm0,tmm1,tmm2", tdp(TdpOp::Busd, t0, t1, t2), "c4 e2 69 5e c1"),
        ("tdpbuud tmm0,tmm1,tmm2", tdp(TdpOp::Buud, t0, t1, t2), "c4 e2 68 5e c1"),
        ("tdpbf16ps tmm0,tmm1,tmm2", tdp(TdpOp::Bf16ps, t0, t1, t2), "c4 e2 6a 5c c1"),
        ("tdpbssd tmm7,tmm6,tmm5", tdp(TdpOp::Bssd, Tmm::TMM7, Tmm::TMM6, Tmm::TMM5), "c4 e2 53 5e fe"),
        ("vpdpbusd zmm0,zmm1,zmm2", EvexOp::VPDPBUSD.rvm(z0, z1, z2, none), "62 f2 75 48 50 c2"),
        ("vdpbf16ps zmm0,zmm1,zmm2", EvexOp::VDPBF16PS.rvm(z0, z1, z2, none), "62 f2 76 48 52 c2"),
        ("vpexpandb zmm0{k1}{z},[rsi]", EvexOp::VPEXPANDB.rm_mem(z0, Mem::base(Gpr::RSI), k1z), "62 f2 7d c9 62 06"),
        ("vpexpandw zmm0{k1}{z},zmm1", EvexOp::VPEXPANDW.rm(z0, z1, k1z), "62 f2 fd c9 62 c1"),
        ("kmovq k1,rax", Ok(kmovq_k_r64(KReg::K1, Gpr::RAX)), "c4 e1 fb 92 c8"),
        ("vpsrlvd zmm0,zmm1,zmm2", EvexOp::VPSRLVD.rvm(z0, z1, z2, none), "62 f2 75 48 45 c2"),
        ("vpsllvd zmm0,zmm1,zmm2", EvexOp::VPSLLVD.rvm(z0, z1, z2, none), "62 f2 75 48 47 c2"),
        ("kmovd k1,[rax]", Ok(kmovd_k_mem(KReg::K1, Mem::base(Gpr::RAX))), "c4 e1 f9 90 08"),
        ("vcvtph2ps zmm0,[rax]", EvexOp::VCVTPH2PS.rm_mem(z0, rax(0), none), "62 f2 7d 48 13 00"),
        // HVM: disp8*32, so [rax+0x20] is disp8 = 1 and [rax+0x40] disp8 = 2.
        ("vcvtph2ps zmm0,[rax+0x20]", EvexOp::VCVTPH2PS.rm_mem(z0, rax(0x20), none), "62 f2 7d 48 13 40 01"),
        ("vcvtph2ps zmm0,[rax+0x40]", EvexOp::VCVTPH2PS.rm_mem(z0, rax(0x40), none), "62 f2 7d 48 13 40 02"),
        // disp8*N: [rax+0x40] is disp8 = 1 for a 64-byte operand, [rax+0x44] needs disp32.
        ("vmovups zmm0,[rax+0x40]", EvexOp::VMOVUPS_LOAD.rm_mem(z0, rax(0x40), none), "62 f1 7c 48 10 40 01"),
        ("vmovups zmm0,[rax+0x44]", EvexOp::VMOVUPS_LOAD.rm_mem(z0, rax(0x44), none), "62 f1 7c 48 10 80 44 00 00 00"),
    ];
    for (what, got, want) in cases {
        let got = got.unwrap_or_else(|e| panic!("{what}: encoder refused: {e}"));
        let (emitted, iced) = (hex(got.bytes()), iced_text(&decode_one(got.bytes()).0));
        assert_eq!(emitted, want, "{what}: emitted {emitted}, AMX.md says {want}; iced reads {iced}");
    }
}
