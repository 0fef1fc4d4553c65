//! What this CPU and OS offer (detection and `TILEJIT_HIDE` live in
//! `tilejit_kernels::cpu`, beside the generators that need the answer), and
//! the once-per-process AMX permission request (docs/AMX.md, "Enabling AMX
//! on Linux").

use std::sync::OnceLock;

pub use tilejit_kernels::cpu::{
    parse_hide, require, Absence, CpuFeatures, Feature, FeatureSet, MissingFeatures, UnknownHideName,
};

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
    // Tile permission needs only AMX-TILE; each kernel family checks its
    // TDP extension (AMX-INT8 / AMX-BF16) itself.
    if let Err(missing) = require(&[Feature::AmxTile]) {
        let hint = match missing.0.first().map(|m| m.1) {
            Some(Absence::NotInCpuid) => " (needs Sapphire Rapids or newer)",
            Some(Absence::NotEnabledByOs) => " (needs Linux 5.16 or newer)",
            _ => "",
        };
        return Err(AmxUnavailable(format!("the AMX kernels need {missing}{hint}")));
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
            return Err(AmxUnavailable("arch_prctl reported success but the permission mask lacks XTILEDATA".into()));
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    Err(AmxUnavailable("tile permission is only requested on Linux".into()))
}
