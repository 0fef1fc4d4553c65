//! What this CPU and OS offer, read straight from CPUID and XCR0, and the
//! once-per-process AMX permission request (docs/AMX.md, "Enabling AMX on
//! Linux").

use std::sync::OnceLock;

/// CPU features relevant to tilejit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub brand: String,
    pub amx_tile: bool,
    pub amx_int8: bool,
    pub amx_bf16: bool,
    pub amx_fp16: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512_vnni: bool,
    pub avx512_bf16: bool,
    pub avx512_vbmi2: bool,
    /// XCR0 bits 5-7 (opmask, ZMM_Hi256, Hi16_ZMM) and 1-2: the OS saves AVX-512 state.
    pub os_avx512: bool,
    /// XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS supports tile state.
    pub os_amx: bool,
}

#[cfg(target_arch = "x86_64")]
fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    // SAFETY: CPUID exists on every x86_64 CPU.
    let r = std::arch::x86_64::__cpuid_count(leaf, sub);
    (r.eax, r.ebx, r.ecx, r.edx)
}

#[cfg(target_arch = "x86_64")]
fn xcr0() -> u64 {
    let (_, _, ecx, _) = cpuid(1, 0);
    if ecx & (1 << 27) == 0 {
        return 0; // no OSXSAVE: XGETBV would fault
    }
    // SAFETY: OSXSAVE is set, so XGETBV with ecx = 0 is defined.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

impl CpuFeatures {
    /// Reads the features once; cheap to call again.
    pub fn get() -> &'static CpuFeatures {
        static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
        FEATURES.get_or_init(CpuFeatures::detect)
    }

    #[cfg(target_arch = "x86_64")]
    fn detect() -> CpuFeatures {
        let bit = |v: u32, b: u32| v & (1 << b) != 0;
        let (max_leaf, ..) = cpuid(0, 0);
        let (_, ebx7, ecx7, edx7) = if max_leaf >= 7 { cpuid(7, 0) } else { (0, 0, 0, 0) };
        let (eax71, ..) = if max_leaf >= 7 { cpuid(7, 1) } else { (0, 0, 0, 0) };
        let xcr0 = xcr0();
        CpuFeatures {
            brand: brand_string(),
            amx_tile: bit(edx7, 24),
            amx_int8: bit(edx7, 25),
            amx_bf16: bit(edx7, 22),
            amx_fp16: bit(eax71, 21),
            avx512f: bit(ebx7, 16),
            avx512bw: bit(ebx7, 30),
            avx512vl: bit(ebx7, 31),
            avx512_vnni: bit(ecx7, 11),
            avx512_bf16: bit(eax71, 5),
            avx512_vbmi2: bit(ecx7, 6),
            os_avx512: xcr0 & 0xE6 == 0xE6,
            os_amx: xcr0 & (3 << 17) == 3 << 17,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> CpuFeatures {
        CpuFeatures { brand: "not x86_64".into(), ..Default::default() }
    }

    /// AVX-512 with the subsets the fallbacks use, enabled by the OS.
    pub fn has_avx512(&self) -> bool {
        self.avx512f && self.avx512bw && self.avx512vl && self.os_avx512
    }
}

#[cfg(target_arch = "x86_64")]
fn brand_string() -> String {
    let (max_ext, ..) = cpuid(0x8000_0000, 0);
    if max_ext < 0x8000_0004 {
        return "unknown x86_64".into();
    }
    let mut bytes = Vec::with_capacity(48);
    for leaf in 0x8000_0002..=0x8000_0004 {
        let (a, b, c, d) = cpuid(leaf, 0);
        for r in [a, b, c, d] {
            bytes.extend_from_slice(&r.to_le_bytes());
        }
    }
    String::from_utf8_lossy(&bytes).trim_matches(char::from(0)).trim().to_string()
}

/// Why AMX cannot be used in this process, in one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("AMX unavailable: {0}")]
pub struct AmxUnavailable(pub String);

const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
const XFEATURE_XTILEDATA: libc::c_long = 18;

/// Makes AMX usable in this process: checks CPUID and XCR0, then asks the
/// kernel for tile data permission (once; the answer is cached). Every
/// failure is a one-line reason, never an abort.
pub fn amx_ready() -> Result<(), AmxUnavailable> {
    static READY: OnceLock<Result<(), AmxUnavailable>> = OnceLock::new();
    READY.get_or_init(request_amx).clone()
}

fn request_amx() -> Result<(), AmxUnavailable> {
    let f = CpuFeatures::get();
    let fail = |why: &str| Err(AmxUnavailable(why.to_string()));
    if !(f.amx_tile && f.amx_int8 && f.amx_bf16) {
        return fail("the CPU does not report AMX-TILE/INT8/BF16 in CPUID leaf 7 (needs Sapphire Rapids or newer)");
    }
    if !f.os_amx {
        return fail("the OS has not enabled tile state in XCR0 (bits 17/18); needs Linux 5.16 or newer");
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: arch_prctl with these codes only reads/sets a permission mask.
        let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            return Err(AmxUnavailable(format!(
                "the kernel refused arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA): {err} (a too small sigaltstack or a container seccomp policy can cause this)"
            )));
        }
        let mut mask: u64 = 0;
        // SAFETY: ARCH_GET_XCOMP_PERM writes one u64 through the pointer.
        let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &mut mask as *mut u64) };
        if rc != 0 || mask & (1 << XFEATURE_XTILEDATA) == 0 {
            return fail("arch_prctl reported success but the permission mask lacks XTILEDATA");
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    fail("tile permission is only requested on Linux")
}
