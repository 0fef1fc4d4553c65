//! Running generated kernels under the emulator ([`tilejit_verify::emu`])
//! instead of on the CPU: the same bytes the native path would execute,
//! on any x86-64, each access checked against the buffers the call was
//! given (issue 15).
//!
//! A driver picks its [`Execution`] once per call (from `GemmOptions` or
//! `TILEJIT_ISA=amx-emu` / `avx512-emu`) and runs every kernel call
//! through [`Executor::run`], naming the buffers that call may touch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tilejit_kernels::jit::JitCode;
pub use tilejit_verify::emu::Report;
use tilejit_verify::emu::{Access, Code, EmuError, Emulator, Region};

/// How generated code runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Execution {
    /// On this CPU.
    #[default]
    Native,
    /// Under the emulator: needs no AVX-512 or AMX, checks every access.
    Emulated,
}

/// Instructions emulated by this process so far (for tests and reports).
static EMULATED: AtomicU64 = AtomicU64::new(0);

/// What the emulated calls since the last [`take_report`] executed and
/// touched, summed (regions by name).
static REPORT: Mutex<Option<Report>> = Mutex::new(None);

/// Instructions emulated by this process so far.
pub fn emulated_instructions() -> u64 {
    EMULATED.load(Ordering::Relaxed)
}

/// The summed report of the emulated calls since the last call of this
/// function (for `tilejit emulate`), and starts a new one.
pub fn take_report() -> Report {
    REPORT.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default()
}

fn add_report(r: &Report) {
    let mut guard = REPORT.lock().unwrap_or_else(|p| p.into_inner());
    let sum = guard.get_or_insert_with(Report::default);
    sum.instructions += r.instructions;
    for (m, n) in &r.by_mnemonic {
        *sum.by_mnemonic.entry(m.clone()).or_default() += n;
    }
    for (region, (read, written)) in &r.touched {
        let e = sum.touched.entry(region.clone()).or_default();
        e.0 += read;
        e.1 += written;
    }
}

/// Runs kernel calls natively or emulated; for emulation it carries the
/// regions every call of one GEMM may touch (its A, B and C).
pub(crate) struct Executor {
    execution: Execution,
    regions: Vec<Region>,
}

impl Executor {
    pub fn new(execution: Execution) -> Executor {
        Executor { execution, regions: Vec::new() }
    }

    /// Lets every emulated call read `bytes` (an input of the GEMM).
    pub fn input(self, name: &str, start: *const u8, len: usize) -> Executor {
        self.region(name, start, len, Access::Read)
    }

    /// Lets every emulated call write `bytes` (the output of the GEMM).
    pub fn output(self, name: &str, start: *const u8, len: usize) -> Executor {
        self.region(name, start, len, Access::ReadWrite)
    }

    /// Records a region for emulated calls; native calls need none, so a
    /// native GEMM pays nothing for it.
    fn region(mut self, name: &str, start: *const u8, len: usize, access: Access) -> Executor {
        if self.emulated() {
            self.regions.push(Region { name: name.into(), start: start as u64, len: len as u64, access });
        }
        self
    }

    pub fn emulated(&self) -> bool {
        self.execution == Execution::Emulated
    }

    /// One call of `code` with `args`; `own` gives the regions of this
    /// call only (a thread's scratch, a per-call table), asked for only
    /// when the call is emulated.
    ///
    /// # Errors
    /// Emulated: what the emulator refused (the kernel is broken or the
    /// regions are too narrow). Native: never.
    ///
    /// # Safety
    /// As the kernel's own `run`: `code` was generated for `A`, `args`
    /// describes memory the code may touch, and natively the CPU has the
    /// extensions the code executes. Emulated, the regions must be valid
    /// host memory for their access during the call.
    pub unsafe fn run<A>(&self, code: &JitCode, args: &A, own: impl FnOnce() -> Vec<Region>) -> Result<(), EmuError> {
        if self.execution == Execution::Native {
            // SAFETY: the caller's contract.
            unsafe { code.call(args) };
            return Ok(());
        }
        // One emulator per thread, so its decoded instructions serve every
        // kernel call of the thread (the regions are this call's).
        thread_local! {
            static EMULATOR: std::cell::RefCell<Emulator> = std::cell::RefCell::new(Emulator::new());
        }
        // SAFETY: the caller's contract, passed on.
        EMULATOR.with_borrow_mut(|emu| unsafe { self.emulate(emu, code, args, &own()) })
    }

    /// [`Self::run`] on `emu` (its regions replaced by this call's).
    ///
    /// # Safety
    /// As [`Self::run`].
    unsafe fn emulate<A>(&self, emu: &mut Emulator, code: &JitCode, args: &A, own: &[Region]) -> Result<(), EmuError> {
        emu.clear_regions();
        for r in self.regions.iter().chain(own) {
            emu.allow(r.clone());
        }
        emu.allow(Region::read_value("arguments", args));
        for (i, (start, len)) in code.pinned_data().enumerate() {
            emu.allow(Region { name: format!("kernel data {i}"), start, len: len as u64, access: Access::Read });
        }
        let code = Code { bytes: code.bytes(), base: code.base_address(), entry: code.entry_ptr() as u64 };
        // SAFETY: the regions are the caller's valid buffers (contract above).
        let report = unsafe { emu.call(code, args as *const A as u64) }?;
        EMULATED.fetch_add(report.instructions, Ordering::Relaxed);
        add_report(&report);
        Ok(())
    }
}
