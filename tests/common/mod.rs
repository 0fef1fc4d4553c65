//! Shared test support: AMX availability with a printed reason, guard-page
//! buffers, and conversions between the kernels' and the oracle's enums.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Mutex;

/// True when AMX can run here; otherwise prints why the caller skips, so
/// the reason shows in CI output (`cargo test -- --show-output`). Prints
/// once per test name: proptest calls this for every case.
pub fn amx_or_skip(test: &str) -> bool {
    let ready = tilejit::cpu::amx_ready();
    match &ready {
        Ok(()) => report_once(test, || format!("[{test}] ISA path: amx (executed)")),
        Err(e) => report_once(test, || format!("SKIPPED {test}: amx path: {e}")),
    }
    ready.is_ok()
}

/// Prints `line()` the first time `key` is seen in this test binary.
fn report_once(key: &str, line: impl FnOnce() -> String) {
    static REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    if REPORTED.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_string()) {
        eprintln!("{}", line());
    }
}

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

/// Like [`amx_or_skip`], and also prints the one-line
/// `SKIPPED <family>: <reason>` that the conformance tests promise.
/// [`amx_or_skip`] for a conformance family.
pub fn amx_family_or_skip(family: &str) -> bool {
    amx_or_skip(family)
}

/// True when AVX512F/BW plus AVX512_BF16 (if `bf16`) and AVX512_VNNI (if
/// `vnni`) are reported by CPUID, enabled by the OS, and detected by std
/// (which the `#[target_feature]` callers rely on for soundness); otherwise
/// prints `SKIPPED <family>: <reason>` and returns false.
pub fn avx512_or_skip(family: &str, bf16: bool, vnni: bool) -> bool {
    let f = tilejit::cpu::CpuFeatures::get();
    let mut missing = Vec::new();
    if !(f.avx512f && f.avx512bw) {
        missing.push("AVX512F/BW");
    }
    if !f.os_avx512 {
        missing.push("OS support for AVX-512 state (XCR0 bits 1,2,5-7)");
    }
    if bf16 && !f.avx512_bf16 {
        missing.push("AVX512_BF16 (CPUID.(7,1):EAX[5])");
    }
    if vnni && !f.avx512_vnni {
        missing.push("AVX512_VNNI (CPUID.(7,0):ECX[11])");
    }
    #[cfg(target_arch = "x86_64")]
    let std_ok = std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && (!bf16 || std::is_x86_feature_detected!("avx512bf16"))
        && (!vnni || std::is_x86_feature_detected!("avx512vnni"));
    #[cfg(not(target_arch = "x86_64"))]
    let std_ok = false;
    if missing.is_empty() && !std_ok {
        missing.push("std::is_x86_feature_detected disagrees with CPUID");
    }
    if missing.is_empty() {
        report_once(family, || format!("[{family}] ISA path: avx512 (executed)"));
        return true;
    }
    report_once(family, || format!("SKIPPED {family}: the CPU/OS lacks {} ({})", missing.join(", "), f.brand));
    false
}
