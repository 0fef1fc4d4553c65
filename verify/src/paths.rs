//! What a test run executed and what it skipped, in one line format that
//! `.ci/run` collects into its closing summary.
//!
//! A test that exercises a path (an ISA, a kernel family) asks whether the
//! machine can run it and passes the answer to [`report_path`], which
//! prints, once per (test, path) in the test binary (proptest calls the
//! body for every case):
//!
//! ```text
//! ISA path avx512: executed [quant_gemm]
//! ISA path amx: SKIPPED [quant_gemm] the amx quantized GEMM kernels need amx_tile (not reported by CPUID)
//! ISA path amx: EMULATED [dense_gemm] the amx int8 GEMM kernels need amx_tile (not reported by CPUID)
//! ```
//!
//! EMULATED: the CPU cannot run the path, so the test runs the same
//! generated code under the emulator ([`crate::emu`]); the reason says why
//! it did not run natively.
//!
//! The answer comes from the caller (the oracle judges; it does not detect
//! CPUs), so this module depends on nothing of the project either.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::sync::Mutex;

/// The marker every line starts with; `.ci/run` greps for it.
pub const MARKER: &str = "ISA path";

/// Prints whether `test` executes `path` (`Ok`) or skips it (`Err`, with
/// the one-line reason), the first time this (test, path) is seen in the
/// process; returns whether the path runs.
pub fn report_path<E: Display>(test: &str, path: &str, status: Result<(), E>) -> bool {
    static REPORTED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());
    let first = REPORTED.lock().unwrap_or_else(|p| p.into_inner()).insert((test.to_string(), path.to_string()));
    let runs = status.is_ok();
    if first {
        eprintln!("{}", path_line(test, path, status));
    }
    runs
}

/// Prints, once per (test, path), that `test` runs `path` under the
/// emulator because the CPU cannot (`why`).
pub fn report_emulated<E: Display>(test: &str, path: &str, why: E) {
    static REPORTED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());
    if REPORTED.lock().unwrap_or_else(|p| p.into_inner()).insert((test.to_string(), path.to_string())) {
        eprintln!("{MARKER} {path}: EMULATED [{test}] {}", one_line(&why.to_string()));
    }
}

/// The line [`report_path`] prints.
pub fn path_line<E: Display>(test: &str, path: &str, status: Result<(), E>) -> String {
    match status {
        Ok(()) => format!("{MARKER} {path}: executed [{test}]"),
        Err(why) => format!("{MARKER} {path}: SKIPPED [{test}] {}", one_line(&why.to_string())),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_summarised_format() {
        assert_eq!(path_line::<String>("t", "scalar", Ok(())), "ISA path scalar: executed [t]");
        assert_eq!(path_line("t x", "amx", Err("no\n  tiles")), "ISA path amx: SKIPPED [t x] no tiles");
    }
}
