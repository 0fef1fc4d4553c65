//! What this CPU and OS offer (detection and `TILEJIT_HIDE` live in
//! `tilejit_kernels::cpu`, beside the generators that need the answer), and
//! the once-per-process AMX permission request (docs/AMX.md, "Enabling AMX
//! on Linux").

use std::sync::OnceLock;

pub use tilejit_kernels::cpu::{
    parse_hide, require, Absence, CpuFeatures, Feature, FeatureSet, MissingFeatures, UnknownHideName,
};

/// Why AMX cannot be used in this process (a fact about the machine, the
/// OS or `TILEJIT_HIDE`, never about the caller's input).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmxUnavailable {
    /// CPUID or XCR0 lacks AMX-TILE (or `TILEJIT_HIDE` hides it).
    #[error("AMX unavailable: the AMX kernels need {missing}{}", hint(.missing))]
    Missing { missing: MissingFeatures },
    /// `arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)` failed with `errno`.
    #[error(
        "AMX unavailable: the kernel refused arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA): {} (a too small sigaltstack or a container seccomp policy can cause this)",
        std::io::Error::from_raw_os_error(*.errno)
    )]
    PermissionRefused { errno: i32 },
    /// The request succeeded but the permission mask does not show it.
    #[error("AMX unavailable: arch_prctl reported success but the permission mask lacks XTILEDATA")]
    PermissionNotGranted,
    /// Tile data permission is a Linux request; other systems are not supported.
    #[error("AMX unavailable: tile permission is only requested on Linux")]
    NotLinux,
}

/// What to do about a missing AMX-TILE, by why it is missing.
fn hint(missing: &MissingFeatures) -> &'static str {
    match missing.0.first().map(|m| m.1) {
        Some(Absence::NotInCpuid) => " (needs Sapphire Rapids or newer)",
        Some(Absence::NotEnabledByOs) => " (needs Linux 5.16 or newer)",
        _ => "",
    }
}

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
    require(&[Feature::AmxTile]).map_err(|missing| AmxUnavailable::Missing { missing })?;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: arch_prctl with these codes only reads/sets a permission mask.
        let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
        if rc != 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Err(AmxUnavailable::PermissionRefused { errno });
        }
        let mut mask: u64 = 0;
        // SAFETY: ARCH_GET_XCOMP_PERM writes one u64 through the pointer.
        let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &mut mask as *mut u64) };
        if rc != 0 || mask & (1 << XFEATURE_XTILEDATA) == 0 {
            return Err(AmxUnavailable::PermissionNotGranted);
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    Err(AmxUnavailable::NotLinux)
}
