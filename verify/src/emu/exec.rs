//! One instruction of the subset: operand access (registers, checked
//! memory, immediates), the general-purpose instructions with the flags
//! they set, the AVX-512 rows with masking and broadcast, and the AMX
//! instructions. Anything else is [`Trap::Unsupported`].

use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

use super::fpu::{self, Mode};
use super::memory::Memory;
use super::tiles::Tdp;
use super::{State, Trap};
use crate::amx::Int8Signedness;
use crate::avx512::{vdpbf16ps_bits, vpdpbusd};

type Step = Result<(), Trap>;

/// Index 0..16 of a general-purpose register of any width (not AH..BH).
pub(crate) fn gpr_index(r: Register) -> Option<usize> {
    if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) {
        return None;
    }
    let full = r.full_register();
    full.is_gpr64().then(|| full as usize - Register::RAX as usize)
}

fn mask_of(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}

fn sign_bit(v: u64, size: usize) -> bool {
    v >> (8 * size - 1) & 1 != 0
}

/// The vector register file index and width in bytes of an xmm/ymm/zmm.
fn vreg(r: Register) -> Option<(usize, usize)> {
    if r.is_zmm() {
        Some((r as usize - Register::ZMM0 as usize, 64))
    } else if r.is_ymm() {
        Some((r as usize - Register::YMM0 as usize, 32))
    } else if r.is_xmm() {
        Some((r as usize - Register::XMM0 as usize, 16))
    } else {
        None
    }
}

fn kreg(r: Register) -> Option<usize> {
    r.is_k().then(|| r as usize - Register::K0 as usize)
}

fn treg(r: Register) -> Option<usize> {
    r.is_tmm().then(|| r as usize - Register::TMM0 as usize)
}

struct Cpu<'a> {
    s: &'a mut State,
    mem: &'a Memory,
    i: &'a Instruction,
}

pub(crate) fn step(s: &mut State, mem: &Memory, i: &Instruction) -> Step {
    let mut cpu = Cpu { s, mem, i };
    cpu.exec()
}

impl Cpu<'_> {
    // ---- operands ----

    fn address(&self) -> u64 {
        let i = self.i;
        if i.is_ip_rel_memory_operand() {
            return i.ip_rel_memory_address();
        }
        let reg = |r: Register| gpr_index(r).map_or(0, |x| self.s.gpr[x]);
        let base = if i.memory_base() == Register::None { 0 } else { reg(i.memory_base()) };
        let index = if i.memory_index() == Register::None { 0 } else { reg(i.memory_index()) };
        base.wrapping_add(index.wrapping_mul(u64::from(i.memory_index_scale()))).wrapping_add(i.memory_displacement64())
    }

    fn read_mem(&self, addr: u64, size: usize) -> Result<u64, Trap> {
        let mut b = [0u8; 8];
        self.mem.read(addr, &mut b[..size])?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_mem(&self, addr: u64, size: usize, v: u64) -> Step {
        Ok(self.mem.write(addr, &v.to_le_bytes()[..size])?)
    }

    /// Width in bytes of general-purpose operand `n`.
    fn size(&self, n: u32) -> Result<usize, Trap> {
        match self.i.op_kind(n) {
            OpKind::Register => Ok(self.i.op_register(n).size()),
            OpKind::Memory => Ok(self.i.memory_size().size()),
            _ => self.size(0),
        }
    }

    fn get(&self, n: u32) -> Result<u64, Trap> {
        let i = self.i;
        Ok(match i.op_kind(n) {
            OpKind::Register => {
                let r = i.op_register(n);
                let x = gpr_index(r).ok_or(Trap::Unsupported)?;
                self.s.gpr[x] & mask_of(r.size())
            }
            OpKind::Memory => self.read_mem(self.address(), i.memory_size().size())?,
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => i.immediate(n),
            _ => return Err(Trap::Unsupported),
        })
    }

    fn set(&mut self, n: u32, v: u64) -> Step {
        let i = self.i;
        match i.op_kind(n) {
            OpKind::Register => {
                let r = i.op_register(n);
                let x = gpr_index(r).ok_or(Trap::Unsupported)?;
                let size = r.size();
                self.s.gpr[x] = match size {
                    8 => v,
                    4 => v & 0xFFFF_FFFF, // 32-bit writes zero the upper half
                    _ => (self.s.gpr[x] & !mask_of(size)) | (v & mask_of(size)),
                };
                Ok(())
            }
            OpKind::Memory => self.write_mem(self.address(), i.memory_size().size(), v),
            _ => Err(Trap::Unsupported),
        }
    }

    fn flags_logic(&mut self, r: u64, size: usize) {
        self.s.cf = false;
        self.s.of = false;
        self.s.zf = r & mask_of(size) == 0;
        self.s.sf = sign_bit(r, size);
    }

    fn add_flags(&mut self, a: u64, b: u64, carry: u64, size: usize) -> u64 {
        let m = mask_of(size);
        let wide = u128::from(a & m) + u128::from(b & m) + u128::from(carry);
        let r = wide as u64 & m;
        self.s.cf = wide > u128::from(m);
        self.s.of = sign_bit(!(a ^ b) & (a ^ r), size);
        self.s.zf = r == 0;
        self.s.sf = sign_bit(r, size);
        r
    }

    fn sub_flags(&mut self, a: u64, b: u64, size: usize) -> u64 {
        let m = mask_of(size);
        let r = a.wrapping_sub(b) & m;
        self.s.cf = (a & m) < (b & m);
        self.s.of = sign_bit((a ^ b) & (a ^ r), size);
        self.s.zf = r == 0;
        self.s.sf = sign_bit(r, size);
        r
    }

    fn condition(&self, m: M) -> Option<bool> {
        let s = &self.s;
        Some(match m {
            M::Je | M::Cmove => s.zf,
            M::Jne | M::Cmovne => !s.zf,
            M::Jb | M::Cmovb => s.cf,
            M::Jae | M::Cmovae => !s.cf,
            M::Ja | M::Cmova => !s.cf && !s.zf,
            M::Jbe | M::Cmovbe => s.cf || s.zf,
            M::Jl | M::Cmovl => s.sf != s.of,
            M::Jge | M::Cmovge => s.sf == s.of,
            M::Jg | M::Cmovg => !s.zf && s.sf == s.of,
            M::Jle | M::Cmovle => s.zf || s.sf != s.of,
            M::Js | M::Cmovs => s.sf,
            M::Jns | M::Cmovns => !s.sf,
            M::Jo | M::Cmovo => s.of,
            M::Jno | M::Cmovno => !s.of,
            _ => return None,
        })
    }

    fn push(&mut self, v: u64) -> Step {
        let rsp = self.s.gpr[4].wrapping_sub(8);
        self.write_mem(rsp, 8, v)?;
        self.s.gpr[4] = rsp;
        Ok(())
    }

    fn pop(&mut self) -> Result<u64, Trap> {
        let v = self.read_mem(self.s.gpr[4], 8)?;
        self.s.gpr[4] = self.s.gpr[4].wrapping_add(8);
        Ok(v)
    }

    // ---- vector operands ----

    /// Elements enabled by the instruction's write mask (all without one).
    fn enabled(&self, count: usize) -> Vec<bool> {
        let k = match kreg(self.i.op_mask()) {
            Some(x) if x != 0 => self.s.k[x],
            _ => u64::MAX,
        };
        (0..count).map(|e| k >> e & 1 != 0).collect()
    }

    fn masked(&self) -> bool {
        kreg(self.i.op_mask()).is_some_and(|x| x != 0)
    }

    /// A vector source operand `n` of `width` bytes: a register, a full or
    /// masked memory read (masked-off elements are not read: fault
    /// suppression), or an element broadcast from memory.
    fn vsrc(&self, n: u32, width: usize, elem: usize) -> Result<[u8; 64], Trap> {
        let mut out = [0u8; 64];
        match self.i.op_kind(n) {
            OpKind::Register => {
                let (x, w) = vreg(self.i.op_register(n)).ok_or(Trap::Unsupported)?;
                out[..w].copy_from_slice(&self.s.zmm[x][..w]);
            }
            OpKind::Memory => {
                let addr = self.address();
                if self.i.is_broadcast() {
                    let e = self.i.memory_size().element_size();
                    let mut one = [0u8; 8];
                    self.mem.read(addr, &mut one[..e])?;
                    for chunk in out[..width].chunks_exact_mut(e) {
                        chunk.copy_from_slice(&one[..e]);
                    }
                } else if self.masked() {
                    for (e, on) in self.enabled(width / elem).into_iter().enumerate() {
                        if on {
                            self.mem.read(addr + (e * elem) as u64, &mut out[e * elem..(e + 1) * elem])?;
                        }
                    }
                } else {
                    self.mem.read(addr, &mut out[..width])?;
                }
            }
            _ => return Err(Trap::Unsupported),
        }
        Ok(out)
    }

    /// Writes `result` to the destination register with the write mask
    /// (merge, or zero with {z}); bits past the width are zeroed.
    fn vdst(&mut self, result: &[u8; 64], elem: usize) -> Step {
        let (x, w) = vreg(self.i.op_register(0)).ok_or(Trap::Unsupported)?;
        let zeroing = self.i.zeroing_masking();
        let old = self.s.zmm[x];
        let mut new = [0u8; 64];
        for (e, on) in self.enabled(w / elem).into_iter().enumerate() {
            let r = e * elem..(e + 1) * elem;
            if on {
                new[r.clone()].copy_from_slice(&result[r]);
            } else if !zeroing {
                new[r.clone()].copy_from_slice(&old[r]);
            }
        }
        self.s.zmm[x] = new;
        Ok(())
    }

    /// A vector store (masked elements only).
    fn vstore(&mut self, elem: usize) -> Step {
        let (x, w) = vreg(self.i.op_register(1)).ok_or(Trap::Unsupported)?;
        let addr = self.address();
        let data = self.s.zmm[x];
        if self.masked() {
            for (e, on) in self.enabled(w / elem).into_iter().enumerate() {
                if on {
                    self.mem.write(addr + (e * elem) as u64, &data[e * elem..(e + 1) * elem])?;
                }
            }
            Ok(())
        } else {
            Ok(self.mem.write(addr, &data[..w])?)
        }
    }

    fn width(&self) -> Result<usize, Trap> {
        vreg(self.i.op_register(0)).map(|v| v.1).ok_or(Trap::Unsupported)
    }

    /// dst = f(src1 dword, src2 dword) per dword lane (src2 may be memory).
    fn dwords2(&mut self, f: impl Fn(u32, u32) -> u32) -> Step {
        let w = self.width()?;
        let a = self.vsrc(1, w, 4)?;
        let b = self.vsrc(2, w, 4)?;
        let mut r = [0u8; 64];
        for e in 0..w / 4 {
            let x = u32::from_le_bytes(a[4 * e..4 * e + 4].try_into().expect("4"));
            let y = u32::from_le_bytes(b[4 * e..4 * e + 4].try_into().expect("4"));
            r[4 * e..4 * e + 4].copy_from_slice(&f(x, y).to_le_bytes());
        }
        self.vdst(&r, 4)
    }

    /// dst = f(dst dword, src1 dword, src2 dword) per lane (accumulating forms).
    fn dwords3(&mut self, f: impl Fn(u32, u32, u32) -> u32) -> Step {
        let w = self.width()?;
        let d = self.vsrc(0, w, 4)?;
        let a = self.vsrc(1, w, 4)?;
        let b = self.vsrc(2, w, 4)?;
        let mut r = [0u8; 64];
        let lane = |v: &[u8; 64], e: usize| u32::from_le_bytes(v[4 * e..4 * e + 4].try_into().expect("4"));
        for e in 0..w / 4 {
            r[4 * e..4 * e + 4].copy_from_slice(&f(lane(&d, e), lane(&a, e), lane(&b, e)).to_le_bytes());
        }
        self.vdst(&r, 4)
    }

    fn fp_mode(&self) -> Result<Mode, Trap> {
        fpu::mode(self.s.mxcsr).map_err(Trap::Fault)
    }

    fn tile(&self, n: u32) -> Result<usize, Trap> {
        treg(self.i.op_register(n)).ok_or(Trap::Unsupported)
    }

    // ---- the subset ----

    fn exec(&mut self) -> Step {
        let i = self.i;
        let m = i.mnemonic();
        match m {
            // General purpose.
            M::Nop | M::Prefetcht0 | M::Prefetcht1 | M::Prefetcht2 | M::Prefetchnta | M::Prefetchw => Ok(()),
            M::Mov => {
                let v = self.get(1)?;
                self.set(0, v)
            }
            M::Lea => {
                let a = self.address();
                self.set(0, a)
            }
            M::Add | M::Adc => {
                let size = self.size(0)?;
                let carry = u64::from(m == M::Adc && self.s.cf);
                let r = self.add_flags(self.get(0)?, self.get(1)?, carry, size);
                self.set(0, r)
            }
            M::Sub | M::Cmp => {
                let size = self.size(0)?;
                let r = self.sub_flags(self.get(0)?, self.get(1)?, size);
                if m == M::Sub {
                    self.set(0, r)?;
                }
                Ok(())
            }
            M::Inc | M::Dec => {
                let (size, cf) = (self.size(0)?, self.s.cf);
                let r = if m == M::Inc {
                    self.add_flags(self.get(0)?, 1, 0, size)
                } else {
                    self.sub_flags(self.get(0)?, 1, size)
                };
                self.s.cf = cf; // INC and DEC keep CF
                self.set(0, r)
            }
            M::And | M::Or | M::Xor | M::Test => {
                let size = self.size(0)?;
                let (a, b) = (self.get(0)?, self.get(1)?);
                let r = match m {
                    M::Or => a | b,
                    M::Xor => a ^ b,
                    _ => a & b,
                };
                self.flags_logic(r, size);
                if m != M::Test {
                    self.set(0, r)?;
                }
                Ok(())
            }
            M::Imul if i.op_count() >= 2 => {
                let size = self.size(0)?;
                let (a, b) =
                    if i.op_count() == 3 { (self.get(1)?, self.get(2)?) } else { (self.get(0)?, self.get(1)?) };
                let sx = |v: u64| ((v << (64 - 8 * size)) as i64) >> (64 - 8 * size);
                let wide = i128::from(sx(a)) * i128::from(sx(b));
                let r = wide as u64 & mask_of(size);
                let fits = i128::from(sx(r)) == wide;
                self.s.cf = !fits;
                self.s.of = !fits;
                self.set(0, r)
            }
            M::Shl | M::Shr | M::Sar => {
                let size = self.size(0)?;
                let count = (self.get(1)? & if size == 8 { 63 } else { 31 }) as u32;
                if count == 0 {
                    return Ok(());
                }
                let v = self.get(0)? & mask_of(size);
                let bits = 8 * size as u32;
                let (r, out) = match m {
                    M::Shl => (v.checked_shl(count).unwrap_or(0), count <= bits && v >> (bits - count) & 1 != 0),
                    M::Shr => (v >> count.min(63), v >> (count - 1) & 1 != 0),
                    _ => {
                        let sx = ((v << (64 - bits)) as i64) >> (64 - bits);
                        ((sx >> count.min(63)) as u64, sx >> (count - 1) & 1 != 0)
                    }
                };
                let r = r & mask_of(size);
                self.flags_logic(r, size);
                self.s.cf = out;
                self.set(0, r)
            }
            M::Popcnt => {
                let v = self.get(1)?;
                self.flags_logic(0, 8);
                self.s.zf = v == 0;
                self.set(0, u64::from(v.count_ones()))
            }
            M::Push => {
                let v = self.get(0)?;
                self.push(v)
            }
            M::Pop => {
                let v = self.pop()?;
                self.set(0, v)
            }
            M::Ret => {
                self.s.rip = self.pop()?;
                Ok(())
            }
            M::Jmp if i.op_kind(0) == OpKind::NearBranch64 => {
                self.s.rip = i.near_branch_target();
                Ok(())
            }
            _ if i.op_count() == 1 && i.op_kind(0) == OpKind::NearBranch64 => {
                if self.condition(m).ok_or(Trap::Unsupported)? {
                    self.s.rip = i.near_branch_target();
                }
                Ok(())
            }
            M::Cmova
            | M::Cmovae
            | M::Cmovb
            | M::Cmovbe
            | M::Cmove
            | M::Cmovne
            | M::Cmovg
            | M::Cmovge
            | M::Cmovl
            | M::Cmovle
            | M::Cmovs
            | M::Cmovns
            | M::Cmovo
            | M::Cmovno => {
                let take = self.condition(m).ok_or(Trap::Unsupported)?;
                // A 32-bit CMOVcc zero-extends its destination even when it does not move.
                let v = if take { self.get(1)? } else { self.get(0)? };
                self.set(0, v)
            }
            M::Ldmxcsr | M::Vldmxcsr => {
                let v = self.read_mem(self.address(), 4)? as u32;
                if fpu::reserved(v) {
                    return Err(Trap::Fault(format!("LDMXCSR of {v:#x} sets reserved bits (#GP)")));
                }
                self.s.mxcsr = fpu::controls(v);
                Ok(())
            }
            M::Stmxcsr | M::Vstmxcsr => self.write_mem(self.address(), 4, u64::from(self.s.mxcsr)),
            M::Vzeroupper => {
                for z in &mut self.s.zmm[..16] {
                    z[16..].fill(0);
                }
                Ok(())
            }

            // Opmask moves.
            M::Kmovq | M::Kmovd | M::Kmovw | M::Kmovb => {
                let size = match m {
                    M::Kmovq => 8,
                    M::Kmovd => 4,
                    M::Kmovw => 2,
                    _ => 1,
                };
                let value = match i.op_kind(1) {
                    OpKind::Register if i.op_register(1).is_k() => self.s.k[kreg(i.op_register(1)).expect("k")],
                    OpKind::Register => self.get(1)?,
                    OpKind::Memory => self.read_mem(self.address(), size)?,
                    _ => return Err(Trap::Unsupported),
                } & mask_of(size);
                match i.op_kind(0) {
                    OpKind::Register if i.op_register(0).is_k() => {
                        self.s.k[kreg(i.op_register(0)).expect("k")] = value;
                        Ok(())
                    }
                    OpKind::Register => {
                        let x = gpr_index(i.op_register(0)).ok_or(Trap::Unsupported)?;
                        self.s.gpr[x] = value; // KMOV to a GPR zero-extends
                        Ok(())
                    }
                    OpKind::Memory => self.write_mem(self.address(), size, value),
                    _ => Err(Trap::Unsupported),
                }
            }

            // AVX-512 moves, loads, stores, broadcasts.
            M::Vmovups | M::Vmovaps | M::Vmovdqu32 | M::Vmovdqa32 | M::Vmovdqu64 | M::Vmovdqu8 | M::Vmovdqu16 => {
                let elem = match m {
                    M::Vmovdqu64 => 8,
                    M::Vmovdqu8 => 1,
                    M::Vmovdqu16 => 2,
                    _ => 4,
                };
                if i.op_kind(0) == OpKind::Memory {
                    self.vstore(elem)
                } else {
                    let w = self.width()?;
                    let v = self.vsrc(1, w, elem)?;
                    self.vdst(&v, elem)
                }
            }
            M::Vpbroadcastd | M::Vbroadcastss | M::Vpbroadcastq | M::Vpbroadcastw | M::Vpbroadcastb => {
                let elem = match m {
                    M::Vpbroadcastq => 8,
                    M::Vpbroadcastw => 2,
                    M::Vpbroadcastb => 1,
                    _ => 4,
                };
                let w = self.width()?;
                let mut one = [0u8; 8];
                match i.op_kind(1) {
                    OpKind::Memory => self.mem.read(self.address(), &mut one[..elem])?,
                    OpKind::Register if vreg(i.op_register(1)).is_some() => {
                        let (x, _) = vreg(i.op_register(1)).expect("vector");
                        one[..elem].copy_from_slice(&self.s.zmm[x][..elem]);
                    }
                    OpKind::Register => one = self.get(1)?.to_le_bytes(),
                    _ => return Err(Trap::Unsupported),
                }
                let mut r = [0u8; 64];
                for c in r[..w].chunks_exact_mut(elem) {
                    c.copy_from_slice(&one[..elem]);
                }
                self.vdst(&r, elem)
            }
            M::Vpexpandb | M::Vpexpandw => {
                let elem = if m == M::Vpexpandb { 1 } else { 2 };
                let w = self.width()?;
                let on = self.enabled(w / elem);
                let mut packed = [0u8; 64];
                let taken = on.iter().filter(|&&b| b).count() * elem;
                match i.op_kind(1) {
                    // Only the enabled elements' worth of bytes is read, contiguously.
                    OpKind::Memory => self.mem.read(self.address(), &mut packed[..taken])?,
                    OpKind::Register => {
                        let (x, _) = vreg(i.op_register(1)).ok_or(Trap::Unsupported)?;
                        packed = self.s.zmm[x];
                    }
                    _ => return Err(Trap::Unsupported),
                }
                let mut r = [0u8; 64];
                let mut next = 0;
                for (e, &enabled) in on.iter().enumerate() {
                    if enabled {
                        r[e * elem..(e + 1) * elem].copy_from_slice(&packed[next..next + elem]);
                        next += elem;
                    }
                }
                self.vdst(&r, elem)
            }

            // AVX-512 integer.
            M::Vpaddd => self.dwords2(u32::wrapping_add),
            M::Vpsubd => self.dwords2(u32::wrapping_sub),
            M::Vpandd | M::Vpandq | M::Vpand => self.dwords2(|a, b| a & b),
            M::Vpord | M::Vporq | M::Vpor => self.dwords2(|a, b| a | b),
            M::Vpxord | M::Vpxorq | M::Vpxor | M::Vxorps => self.dwords2(|a, b| a ^ b),
            M::Vpsllvd => self.dwords2(|a, b| if b > 31 { 0 } else { a << b }),
            M::Vpsrlvd => self.dwords2(|a, b| if b > 31 { 0 } else { a >> b }),
            M::Vpsubb | M::Vpaddb => {
                let w = self.width()?;
                let (a, b) = (self.vsrc(1, w, 1)?, self.vsrc(2, w, 1)?);
                let mut r = [0u8; 64];
                for e in 0..w {
                    r[e] = if m == M::Vpsubb { a[e].wrapping_sub(b[e]) } else { a[e].wrapping_add(b[e]) };
                }
                self.vdst(&r, 1)
            }
            M::Vpshufb => {
                let w = self.width()?;
                let (a, b) = (self.vsrc(1, w, 1)?, self.vsrc(2, w, 1)?);
                let mut r = [0u8; 64];
                for e in 0..w {
                    let lane = e & !15;
                    r[e] = if b[e] & 0x80 != 0 { 0 } else { a[lane + usize::from(b[e] & 15)] };
                }
                self.vdst(&r, 1)
            }
            M::Vpdpbusd => self.dwords3(|acc, a, b| vpdpbusd(acc as i32, a.to_le_bytes(), b.to_le_bytes()) as u32),

            // AVX-512 floating point.
            M::Vdpbf16ps => self.dwords3(|acc, a, b| {
                let words = |v: u32| [v as u16, (v >> 16) as u16];
                vdpbf16ps_bits(acc, words(a), words(b))
            }),
            M::Vfmadd231ps => {
                let mode = self.fp_mode()?;
                self.dwords3(|c, a, b| fpu::fma(mode, a, b, c))
            }
            M::Vaddps => {
                let mode = self.fp_mode()?;
                self.dwords2(|a, b| fpu::add(mode, a, b))
            }
            M::Vmulps => {
                let mode = self.fp_mode()?;
                self.dwords2(|a, b| fpu::mul(mode, a, b))
            }
            M::Vcvtdq2ps => {
                self.fp_mode()?;
                let w = self.width()?;
                let a = self.vsrc(1, w, 4)?;
                let mut r = [0u8; 64];
                for e in 0..w / 4 {
                    let x = u32::from_le_bytes(a[4 * e..4 * e + 4].try_into().expect("4"));
                    r[4 * e..4 * e + 4].copy_from_slice(&fpu::cvtdq2ps(x).to_le_bytes());
                }
                self.vdst(&r, 4)
            }
            M::Vcvtph2ps => {
                let w = self.width()?;
                let a = self.vsrc(1, w / 2, 2)?;
                let mut r = [0u8; 64];
                for e in 0..w / 4 {
                    let h = u16::from_le_bytes([a[2 * e], a[2 * e + 1]]);
                    r[4 * e..4 * e + 4].copy_from_slice(&fpu::cvtph2ps(h).to_le_bytes());
                }
                self.vdst(&r, 4)
            }

            // AMX.
            M::Ldtilecfg => {
                let mut image = [0u8; 64];
                self.mem.read(self.address(), &mut image)?;
                self.s.tiles.load_config(&image).map_err(|e| Trap::Fault(format!("LDTILECFG: {e} (#GP)")))
            }
            M::Tilerelease => {
                self.s.tiles.release();
                Ok(())
            }
            M::Tilezero => {
                let t = self.tile(0)?;
                self.s.tiles.shape(t).map_err(Trap::Fault)?;
                self.s.tiles.zero(t);
                Ok(())
            }
            M::Tileloadd | M::Tileloaddt1 => {
                let t = self.tile(0)?;
                let (rows, colsb) = self.s.tiles.shape(t).map_err(Trap::Fault)?;
                let (base, stride) = self.tile_memory()?;
                self.s.tiles.zero(t);
                let mut row = [0u8; 64];
                for r in 0..rows {
                    self.mem.read(base.wrapping_add((r as u64).wrapping_mul(stride)), &mut row[..colsb])?;
                    self.s.tiles.set_row(t, r, &row[..colsb]);
                }
                Ok(())
            }
            M::Tilestored => {
                let t = self.tile(1)?;
                let (rows, colsb) = self.s.tiles.shape(t).map_err(Trap::Fault)?;
                let (base, stride) = self.tile_memory()?;
                for r in 0..rows {
                    let bytes = self.s.tiles.row(t, r)[..colsb].to_vec();
                    self.mem.write(base.wrapping_add((r as u64).wrapping_mul(stride)), &bytes)?;
                }
                Ok(())
            }
            M::Tdpbssd | M::Tdpbsud | M::Tdpbusd | M::Tdpbuud | M::Tdpbf16ps => {
                let op = match m {
                    M::Tdpbssd => Tdp::Int8(Int8Signedness::SS),
                    M::Tdpbsud => Tdp::Int8(Int8Signedness::SU),
                    M::Tdpbusd => Tdp::Int8(Int8Signedness::US),
                    M::Tdpbuud => Tdp::Int8(Int8Signedness::UU),
                    _ => Tdp::Bf16,
                };
                let (d, a, b) = (self.tile(0)?, self.tile(1)?, self.tile(2)?);
                self.s.tiles.tdp(op, d, a, b).map_err(|e| Trap::Fault(format!("{e} (#UD)")))
            }
            _ => Err(Trap::Unsupported),
        }
    }

    /// A tile instruction's memory operand: base + displacement, and the
    /// row stride held in the index register (SIB memory, scale 1).
    fn tile_memory(&self) -> Result<(u64, u64), Trap> {
        let i = self.i;
        let reg = |r: Register| gpr_index(r).map(|x| self.s.gpr[x]).ok_or(Trap::Unsupported);
        let base = if i.memory_base() == Register::None { 0 } else { reg(i.memory_base())? };
        let stride = if i.memory_index() == Register::None { 0 } else { reg(i.memory_index())? };
        if i.memory_index_scale() != 1 {
            return Err(Trap::Unsupported);
        }
        Ok((base.wrapping_add(i.memory_displacement64()), stride))
    }
}
