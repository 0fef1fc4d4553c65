//! An emulator of the instructions tilejit's generators emit, so that the
//! generated machine code itself is checked on any x86-64, with or without
//! AVX-512 or AMX (issue 15).
//!
//! It executes one call of a generated function under the System V ABI:
//! the general-purpose subset the generators use (moves, address
//! arithmetic, compares and conditional branches with the flags they read,
//! pushes, pops, the return), the AVX-512 instructions of the kernels with
//! write masks (merge and zero), broadcasts and opmask moves, LDMXCSR and
//! STMXCSR with the DAZ/FTZ state, and the AMX instructions (LDTILECFG with
//! the validity rules the hardware enforces, tile loads and stores,
//! TILEZERO, the five TDPs, TILERELEASE). The arithmetic is the oracle's:
//! [`crate::amx`], [`crate::avx512`] and [`crate::fp`] model each step bit
//! for bit (docs/NUMERICS.md); the decoder is iced-x86, each address
//! decoded once.
//!
//! Anything else is a typed error naming the instruction and its offset,
//! so a generator that starts emitting something new fails loudly instead
//! of being emulated wrongly. Memory is checked, not trusted: the caller
//! registers the regions a call may touch ([`Region`]: inputs read-only,
//! outputs writable; the emulator adds its own stack), and every access
//! (each enabled element of a masked one) is checked before it happens;
//! an access outside them is [`EmuError::Access`] with the address, the
//! size and the nearest region. At the return the callee-saved registers,
//! the stack pointer and MXCSR must be the caller's again, and no tile
//! configuration may be left behind.

mod exec;
mod fpu;
mod memory;
mod tiles;

use std::collections::{BTreeMap, HashMap};

use iced_x86::{Decoder, DecoderOptions, Instruction, Register};

pub use memory::{Access, Region};
use memory::{Memory, Refused};
use tiles::Tiles;

/// Why an emulated call did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmuError {
    /// An instruction outside the emulated subset.
    Unsupported { offset: u64, mnemonic: String, disasm: String },
    /// An access outside every registered region (or a write to a
    /// read-only one).
    Access { offset: u64, disasm: String, addr: u64, size: u64, write: bool, nearest: String },
    /// What the hardware would fault on (#GP, #UD): an invalid tile
    /// configuration, TDP shapes that do not fit, an MXCSR image with
    /// reserved bits.
    Fault { offset: u64, disasm: String, reason: String },
    /// Bytes that do not decode, or a jump outside the code.
    Decode { offset: u64 },
    /// No return within the step budget (a loop bound gone wrong).
    StepLimit { steps: u64 },
    /// The function returned but broke the calling convention.
    Abi { what: String },
}

impl std::fmt::Display for EmuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmuError::Unsupported { offset, mnemonic, disasm } => {
                write!(f, "offset {offset:#x}: `{disasm}` ({mnemonic}) is outside the emulated instruction subset")
            }
            EmuError::Access { offset, disasm, addr, size, write, nearest } => {
                let what = if *write { "writes" } else { "reads" };
                write!(f, "offset {offset:#x}: `{disasm}` {what} {size} bytes at {addr:#x}, outside the regions it may touch; nearest: {nearest}")
            }
            EmuError::Fault { offset, disasm, reason } => write!(f, "offset {offset:#x}: `{disasm}` faults: {reason}"),
            EmuError::Decode { offset } => write!(f, "offset {offset:#x}: no instruction decodes here"),
            EmuError::StepLimit { steps } => write!(f, "no return after {steps} instructions"),
            EmuError::Abi { what } => write!(f, "the call broke the System V ABI: {what}"),
        }
    }
}

impl std::error::Error for EmuError {}

/// Generated code to run: its bytes as mapped at `base` (RIP-relative
/// constants resolve to host addresses there) and the entry point.
#[derive(Clone, Copy, Debug)]
pub struct Code<'a> {
    pub bytes: &'a [u8],
    pub base: u64,
    pub entry: u64,
}

/// What one call executed and touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Instructions executed.
    pub instructions: u64,
    /// Executions per mnemonic (lower case, e.g. "tdpbssd").
    pub by_mnemonic: BTreeMap<String, u64>,
    /// Per region (name), bytes read and bytes written.
    pub touched: BTreeMap<String, (u64, u64)>,
}

/// Where the emulated `ret` goes when the function returns to its caller.
const RETURN_SENTINEL: u64 = 0x0000_7EED_F00D_0000;
/// The callee-saved registers (System V) and the values they start with.
const CALLEE_SAVED: [(Register, u64); 6] = [
    (Register::RBX, 0x1111_2222_3333_4444),
    (Register::RBP, 0x5555_6666_7777_8888),
    (Register::R12, 0x0C0C_0C0C_0C0C_0C0C),
    (Register::R13, 0x0D0D_0D0D_0D0D_0D0D),
    (Register::R14, 0x0E0E_0E0E_0E0E_0E0E),
    (Register::R15, 0x0F0F_0F0F_0F0F_0F0F),
];
/// MXCSR at entry: the power-on default (all exceptions masked, RNE, no
/// DAZ/FTZ), which is what the kernels' callers run under.
pub const MXCSR_DEFAULT: u32 = 0x1F80;
const STACK_BYTES: usize = 64 * 1024;

/// The architectural state the subset reads and writes.
#[derive(Clone)]
pub(crate) struct State {
    pub gpr: [u64; 16],
    pub rip: u64,
    pub cf: bool,
    pub zf: bool,
    pub sf: bool,
    pub of: bool,
    pub zmm: [[u8; 64]; 32],
    pub k: [u64; 8],
    pub mxcsr: u32,
    pub tiles: Tiles,
}

impl State {
    fn new() -> State {
        State {
            gpr: [0; 16],
            rip: 0,
            cf: false,
            zf: false,
            sf: false,
            of: false,
            zmm: [[0; 64]; 32],
            k: [0; 8],
            mxcsr: MXCSR_DEFAULT,
            tiles: Tiles::default(),
        }
    }
}

/// Why one instruction stopped (the run loop adds its offset and text).
pub(crate) enum Trap {
    Unsupported,
    Refused(Refused),
    Fault(String),
}

impl From<Refused> for Trap {
    fn from(r: Refused) -> Trap {
        Trap::Refused(r)
    }
}

/// An emulator with its registered regions; reusable across calls.
#[derive(Default)]
pub struct Emulator {
    regions: Vec<Region>,
    /// Decoded instructions by address, with the bytes they were decoded
    /// from: a hit counts only while the code there is still those bytes,
    /// so one emulator serves many kernels (and a freed buffer reused for
    /// other code is decoded afresh).
    decoded: HashMap<u64, (Instruction, [u8; 15])>,
    /// Instructions one call may execute.
    pub max_steps: u64,
}

impl Emulator {
    pub fn new() -> Emulator {
        Emulator { max_steps: 2_000_000_000, ..Emulator::default() }
    }

    /// Lets the next calls touch `region` (as its access allows).
    pub fn allow(&mut self, region: Region) -> &mut Emulator {
        self.regions.push(region);
        self
    }

    /// Forgets the registered regions.
    pub fn clear_regions(&mut self) {
        self.regions.clear();
    }

    /// Runs `code` from its entry as `extern "sysv64" fn(args)` and returns
    /// what it executed and touched.
    ///
    /// # Errors
    /// See [`EmuError`]: the first instruction outside the subset, access
    /// outside the regions, fault, or a broken calling convention.
    ///
    /// # Safety
    /// Every registered region must be host memory valid for its access
    /// for the whole call (readable; writable where `ReadWrite`, and not
    /// accessed by anything else meanwhile), and `code.bytes` must be the
    /// bytes at `code.base`. The emulator itself touches nothing else.
    pub unsafe fn call(&mut self, code: Code, args: u64) -> Result<Report, EmuError> {
        let mut stack = vec![0u64; STACK_BYTES / 8];
        let mut memory = Memory { regions: self.regions.clone(), touched: Vec::new() };
        memory.regions.push(Region::read("code", code.bytes));
        memory.regions.push(Region::write("stack", &mut stack));
        let mut s = State::new();
        // At the call, rsp + 8 is 16-byte aligned and holds the return address.
        let top = stack.as_ptr() as u64 + STACK_BYTES as u64 - 64;
        let rsp = top - 8;
        memory.write(rsp, &RETURN_SENTINEL.to_le_bytes()).expect("the stack is registered");
        // Count the call's accesses only (not the caller's push of the return address).
        memory.touched = vec![std::cell::Cell::new((0, 0)); memory.regions.len()];
        s.gpr[4] = rsp;
        s.gpr[7] = args;
        for (reg, value) in CALLEE_SAVED {
            s.gpr[exec::gpr_index(reg).expect("a GPR")] = value;
        }
        s.rip = code.entry;
        let mut report = Report::default();
        let mut counts: HashMap<iced_x86::Mnemonic, u64> = HashMap::new();
        let offset = |rip: u64| rip.wrapping_sub(code.base);
        loop {
            if s.rip == RETURN_SENTINEL {
                break;
            }
            if report.instructions >= self.max_steps {
                return Err(EmuError::StepLimit { steps: report.instructions });
            }
            let instr = self.decode(&code, s.rip).ok_or(EmuError::Decode { offset: offset(s.rip) })?;
            report.instructions += 1;
            *counts.entry(instr.mnemonic()).or_default() += 1;
            let here = s.rip;
            s.rip = instr.next_ip();
            if let Err(trap) = exec::step(&mut s, &memory, &instr) {
                let (offset, disasm) = (offset(here), instr.to_string());
                return Err(match trap {
                    Trap::Unsupported => {
                        EmuError::Unsupported { offset, mnemonic: format!("{:?}", instr.mnemonic()), disasm }
                    }
                    Trap::Refused(r) => EmuError::Access {
                        offset,
                        disasm,
                        addr: r.addr,
                        size: r.size,
                        write: r.write,
                        nearest: r.nearest,
                    },
                    Trap::Fault(reason) => EmuError::Fault { offset, disasm, reason },
                });
            }
        }
        if s.gpr[4] != rsp + 8 {
            return Err(EmuError::Abi { what: format!("rsp is {:#x} after the return, not {:#x}", s.gpr[4], rsp + 8) });
        }
        for (reg, value) in CALLEE_SAVED {
            let got = s.gpr[exec::gpr_index(reg).expect("a GPR")];
            if got != value {
                return Err(EmuError::Abi {
                    what: format!("callee-saved {reg:?} is {got:#x}, not the caller's {value:#x}"),
                });
            }
        }
        if s.mxcsr != MXCSR_DEFAULT {
            return Err(EmuError::Abi {
                what: format!("MXCSR is {:#x} after the return, not the caller's {MXCSR_DEFAULT:#x}", s.mxcsr),
            });
        }
        if s.tiles.configured() {
            return Err(EmuError::Abi { what: "tiles left configured (no TILERELEASE)".into() });
        }
        report.by_mnemonic = counts.into_iter().map(|(m, n)| (format!("{m:?}").to_lowercase(), n)).collect();
        for (region, (read, written)) in memory.regions.iter().zip(memory.touched.iter().map(std::cell::Cell::get)) {
            if read + written > 0 {
                let entry = report.touched.entry(region.name.clone()).or_default();
                entry.0 += read;
                entry.1 += written;
            }
        }
        Ok(report)
    }

    fn decode(&mut self, code: &Code, rip: u64) -> Option<Instruction> {
        let at = usize::try_from(rip.checked_sub(code.base)?).ok()?;
        let bytes = code.bytes.get(at..)?;
        if let Some((instr, seen)) = self.decoded.get(&rip) {
            if bytes.get(..instr.len()) == Some(&seen[..instr.len()]) {
                return Some(*instr);
            }
        }
        let mut decoder = Decoder::with_ip(64, bytes, rip, DecoderOptions::NONE);
        let instr = decoder.decode();
        if instr.is_invalid() {
            return None;
        }
        let mut seen = [0u8; 15];
        seen[..instr.len()].copy_from_slice(&bytes[..instr.len()]);
        self.decoded.insert(rip, (instr, seen));
        Some(instr)
    }
}
