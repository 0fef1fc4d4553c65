//! Executable code produced by the generators.
//!
//! dynasmrt maps the buffer writable while assembling and flips it to
//! read+execute on `finalize`, so generated code is never writable and
//! executable at the same time (DESIGN.md, "unsafe").

use dynasmrt::mmap::MutableBuffer;
use dynasmrt::{dynasm, x64::X64Relocation, AssemblyOffset, DynasmApi, ExecutableBuffer, VecAssembler};

use crate::encoder::{Encoded, Gpr};
use crate::tile_config::TileConfig;

/// Why a kernel could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    #[error("invalid kernel spec: {0}")]
    Spec(#[from] crate::spec::SpecError),
    #[error("invalid quantized kernel spec: {0}")]
    QuantSpec(#[from] crate::quant_format::QuantPackError),
    #[error("illegal tile configuration: {0}")]
    TileConfig(#[from] crate::tile_config::TileConfigError),
    #[error("encoder rejected an instruction: {0}")]
    Encode(#[from] crate::encoder::EncodeError),
    #[error("could not map executable memory: {0}")]
    Memory(#[from] std::io::Error),
    #[error("assembler failed: {0}")]
    Assembler(String),
}

/// An assembler that also takes our encoder's instructions. It assembles
/// into plain bytes (position independent: jumps and constants are
/// RIP-relative), so a kernel can be produced and inspected as data
/// ([`Self::finish_bytes`]) or mapped executable ([`Self::finish`]).
pub struct CodeBuilder {
    pub ops: VecAssembler<X64Relocation>,
    pinned: Vec<Pinned>,
}

/// Data the code points at by absolute address (a tile configuration, a
/// constant table): boxed so the address is stable, and owned by the code
/// so that both live exactly as long (and an emulator finds it).
struct Pinned {
    _keep: Box<dyn std::any::Any + Send + Sync>,
    addr: u64,
    len: usize,
}

impl CodeBuilder {
    pub fn new() -> Result<CodeBuilder, GenerateError> {
        Ok(CodeBuilder { ops: VecAssembler::new(0), pinned: Vec::new() })
    }

    /// Keeps `value` at a stable address for as long as the finished code
    /// lives, and returns that address (to bake into the code).
    pub fn pin<T: Send + Sync + 'static>(&mut self, value: T) -> u64 {
        let boxed = Box::new(value);
        let addr = &*boxed as *const T as u64;
        self.pinned.push(Pinned { _keep: boxed, addr, len: std::mem::size_of::<T>() });
        addr
    }

    /// Appends one instruction built by [`crate::encoder`].
    pub fn emit(&mut self, inst: Encoded) {
        self.ops.extend(inst.bytes());
    }

    pub fn offset(&self) -> AssemblyOffset {
        self.ops.offset()
    }

    /// Opens `frame`: pushes its callee-saved registers, reserves its
    /// locals and, for a kernel with its own MXCSR, saves the caller's at
    /// `[rsp + slot]` (the kernel then loads its own image). [`Self::leave`]
    /// undoes it; every generator enters and leaves through these two.
    pub fn enter(&mut self, frame: &Frame) {
        self.save(frame.saved);
        if frame.locals > 0 {
            dynasm!(self.ops ; .arch x64 ; sub rsp, frame.locals);
        }
        if let Some(slot) = frame.mxcsr_slot {
            dynasm!(self.ops ; .arch x64 ; stmxcsr [rsp + slot]);
        }
    }

    /// Closes `frame` and returns: the caller's MXCSR back, VZEROUPPER (no
    /// AVX-512 state leaks into the caller's SSE code), TILERELEASE for
    /// kernels that configured tiles, locals freed, registers popped.
    pub fn leave(&mut self, frame: &Frame) {
        if let Some(slot) = frame.mxcsr_slot {
            dynasm!(self.ops ; .arch x64 ; ldmxcsr [rsp + slot]);
        }
        dynasm!(self.ops ; .arch x64 ; vzeroupper);
        if frame.tiles {
            self.emit(crate::encoder::tilerelease());
        }
        if frame.locals > 0 {
            dynasm!(self.ops ; .arch x64 ; add rsp, frame.locals);
        }
        self.restore(frame.saved);
        dynasm!(self.ops ; .arch x64 ; ret);
    }

    /// Saves the callee-saved registers a kernel uses (SysV: rbx, rbp,
    /// r12-r15), in order; [`Self::restore`] pops them in reverse.
    pub fn save(&mut self, regs: &[Gpr]) {
        for r in regs {
            #[allow(clippy::useless_conversion)] // dynasm! register operands
            {
                dynasm!(self.ops ; .arch x64 ; push Rq(r.number()));
            }
        }
    }

    /// Undoes [`Self::save`] with the same list.
    pub fn restore(&mut self, regs: &[Gpr]) {
        for r in regs.iter().rev() {
            #[allow(clippy::useless_conversion)] // dynasm! register operands
            {
                dynasm!(self.ops ; .arch x64 ; pop Rq(r.number()));
            }
        }
    }

    /// `ldtilecfg` of `config`, pinned beside the code (its address is
    /// baked in); clobbers `scratch`.
    pub fn load_tile_config(&mut self, config: TileConfig, scratch: Gpr) {
        let at = self.pin(config) as i64;
        #[allow(clippy::useless_conversion)] // dynasm! register operands
        {
            dynasm!(self.ops ; .arch x64 ; mov Rq(scratch.number()), QWORD at);
        }
        self.emit(crate::encoder::ldtilecfg(crate::encoder::Mem::base(scratch)));
    }

    /// Finishes assembly and maps the code read+execute.
    ///
    /// # Errors
    /// An unresolved label (a typed error, not dynasmrt's panic), or
    /// executable memory that cannot be mapped.
    pub fn finish(self, entry: AssemblyOffset) -> Result<JitCode, GenerateError> {
        let pinned = self.pinned;
        let bytes = self.ops.finalize().map_err(|e| GenerateError::Assembler(format!("resolving labels: {e}")))?;
        let mut buffer = MutableBuffer::new(bytes.len())?;
        buffer.set_len(bytes.len());
        buffer.copy_from_slice(&bytes);
        Ok(JitCode { buffer: buffer.make_exec()?, entry, pinned })
    }

    /// The code as plain bytes, nothing mapped executable (for tests and
    /// dumps; absolute addresses of pinned data in it are dangling once
    /// this returns, so run [`Self::finish`]'s code instead).
    ///
    /// # Errors
    /// An unresolved label.
    pub fn finish_bytes(self) -> Result<Vec<u8>, GenerateError> {
        self.ops.finalize().map_err(|e| GenerateError::Assembler(format!("resolving labels: {e}")))
    }
}

/// A generated function's stack frame under the System V ABI (see
/// [`CodeBuilder::enter`] / [`CodeBuilder::leave`]).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Callee-saved registers the body uses (rbx, rbp, r12-r15).
    pub saved: &'a [Gpr],
    /// Bytes of locals below the pushes (`[rsp + 0 .. locals]`).
    pub locals: i32,
    /// Where the caller's MXCSR is kept, for kernels that load their own
    /// (bf16 emulation runs under DAZ | FTZ: docs/NUMERICS.md).
    pub mxcsr_slot: Option<i32>,
    /// Whether the body configured tiles (TILERELEASE on the way out).
    pub tiles: bool,
}

/// A finished, executable code buffer and its entry point.
pub struct JitCode {
    buffer: ExecutableBuffer,
    entry: AssemblyOffset,
    pinned: Vec<Pinned>,
}

impl JitCode {
    /// Where the code is mapped (RIP-relative constants resolve there).
    pub fn base_address(&self) -> u64 {
        self.buffer.ptr(AssemblyOffset(0)) as u64
    }

    /// The data the code points at by absolute address, as (address,
    /// bytes): what an emulator must let the code read besides its own bytes.
    pub fn pinned_data(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.pinned.iter().map(|p| (p.addr, p.len))
    }

    /// Address of the entry point.
    pub fn entry_ptr(&self) -> *const u8 {
        self.buffer.ptr(self.entry)
    }

    /// Calls the code as `extern "sysv64" fn(*const A)`: the one way every
    /// kernel taking an argument struct is run.
    ///
    /// # Safety
    /// The code must have been generated for that signature (one pointer in
    /// rdi, callee-saved registers restored, tiles released if configured),
    /// `args` must describe memory the code may touch, and the CPU must
    /// have the extensions the code executes.
    pub unsafe fn call<A>(&self, args: &A) {
        // SAFETY: the caller guarantees the signature; a function pointer
        // and a code address have the same size.
        let f: extern "sysv64" fn(*const A) = unsafe { std::mem::transmute(self.entry_ptr()) };
        f(args)
    }

    /// The machine code, for dumps and disassembly.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer
    }

    /// Writes the code to `$TILEJIT_DUMP/<name>.bin` when that variable is
    /// set (`objdump -b binary -m i386:x86-64 -D` reads it) and, with the
    /// `disasm` feature, its disassembly to `<name>.asm`.
    pub fn dump_if_requested(&self, name: &str) {
        let Some(dir) = std::env::var_os("TILEJIT_DUMP") else { return };
        let dir = std::path::Path::new(&dir);
        #[cfg_attr(not(feature = "disasm"), allow(unused_mut))]
        let mut files = vec![(format!("{name}.bin"), self.bytes().to_vec())];
        #[cfg(feature = "disasm")]
        files.push((format!("{name}.asm"), disassemble(self.bytes()).into_bytes()));
        for (file, bytes) in files {
            let path = dir.join(file);
            if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, bytes)) {
                eprintln!("tilejit: could not dump {name} to {}: {e}", path.display());
            }
        }
    }
}

/// One line per instruction: offset, bytes, Intel syntax.
#[cfg(feature = "disasm")]
pub fn disassemble(code: &[u8]) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::new();
    let (mut out, mut text) = (String::new(), String::new());
    while decoder.can_decode() {
        let ins = decoder.decode();
        text.clear();
        formatter.format(&ins, &mut text);
        let at = ins.ip() as usize;
        let bytes: Vec<String> = code[at..at + ins.len()].iter().map(|b| format!("{b:02x}")).collect();
        out += &format!("{at:6x}:  {:<40} {text}\n", bytes.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynasmrt::{dynasm, DynasmLabelApi};

    #[test]
    fn an_unresolved_label_is_an_error_not_a_panic() {
        let mut cb = CodeBuilder::new().unwrap();
        let entry = cb.offset();
        dynasm!(cb.ops ; .arch x64 ; jmp >nowhere ; ret);
        match cb.finish(entry) {
            Err(GenerateError::Assembler(msg)) => assert!(msg.contains("resolving labels"), "{msg}"),
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("an unresolved label assembled"),
        }
        let mut cb = CodeBuilder::new().unwrap();
        let entry = cb.offset();
        dynasm!(cb.ops ; .arch x64 ; jmp >done ; done: ; ret);
        assert!(cb.finish(entry).is_ok());
    }

    /// The bytes are position independent, so the plain-data form and the
    /// mapped one are the same code.
    #[test]
    fn plain_bytes_are_the_mapped_code() {
        let build = || {
            let mut cb = CodeBuilder::new().unwrap();
            dynasm!(cb.ops ; .arch x64 ; lea rax, [>consts] ; mov eax, [rax] ; jmp >out ; out: ; ret ; .align 8 ; consts: ; .u32 0x1234_5678);
            cb
        };
        let bytes = build().finish_bytes().unwrap();
        let mapped = build().finish(AssemblyOffset(0)).unwrap();
        assert_eq!(mapped.bytes(), &bytes[..]);
        assert_eq!(&bytes[bytes.len() - 4..], &0x1234_5678u32.to_le_bytes());
        // SAFETY: the code above takes no arguments, reads its own constant
        // and returns it in eax.
        let f: extern "sysv64" fn() -> u32 = unsafe { std::mem::transmute(mapped.entry_ptr()) };
        assert_eq!(f(), 0x1234_5678);
    }
}
