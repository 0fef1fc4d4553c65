//! Which of the instructions the generators emit this CPU and OS can run,
//! read once from CPUID and XCR0 (docs/AMX.md, "Enabling AMX on Linux"),
//! minus what `TILEJIT_HIDE` hides.
//!
//! It lives here, beside the generators, because each kernel family knows
//! exactly which extensions its code uses (`features()` on the kinds) and
//! checks them with [`require`] before it runs; the dispatcher in `tilejit`
//! asks the same question to pick the next path. One answer for both means
//! that hiding a feature makes the dispatcher fall back *and* the kernels
//! refuse, so a machine with the instructions can play one without them.
//!
//! `TILEJIT_HIDE` is a comma-separated list of feature names as
//! `/proc/cpuinfo` spells them ([`Feature::name`]), or the groups `amx`
//! and `avx512`. It only ever removes features; it is read once per process.

use std::fmt;
use std::sync::OnceLock;

/// An instruction-set extension some generated kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// LDTILECFG, TILELOADD, TILESTORED, TILEZERO, TILERELEASE.
    AmxTile,
    /// TDPBSSD / TDPBSUD / TDPBUSD / TDPBUUD.
    AmxInt8,
    /// TDPBF16PS.
    AmxBf16,
    /// TDPFP16PS (reported only; no kernel uses it yet).
    AmxFp16,
    /// 512-bit FP32 and dword integer arithmetic (VFMADD231PS, VCVTPH2PS, ...).
    Avx512F,
    /// Byte/word vector ops and 64-bit mask moves (KMOVQ, VPSHUFB, VMOVDQU8/16).
    Avx512Bw,
    /// 128/256-bit EVEX forms (reported only; the kernels use 512-bit forms).
    Avx512Vl,
    /// VPDPBUSD.
    Avx512Vnni,
    /// VDPBF16PS and VCVTNEPS2BF16.
    Avx512Bf16,
    /// VPEXPANDB / VPEXPANDW.
    Avx512Vbmi2,
}

impl Feature {
    pub const ALL: [Feature; 10] = [
        Feature::AmxTile,
        Feature::AmxInt8,
        Feature::AmxBf16,
        Feature::AmxFp16,
        Feature::Avx512F,
        Feature::Avx512Bw,
        Feature::Avx512Vl,
        Feature::Avx512Vnni,
        Feature::Avx512Bf16,
        Feature::Avx512Vbmi2,
    ];

    /// The name `/proc/cpuinfo` and `TILEJIT_HIDE` use.
    pub const fn name(self) -> &'static str {
        match self {
            Feature::AmxTile => "amx_tile",
            Feature::AmxInt8 => "amx_int8",
            Feature::AmxBf16 => "amx_bf16",
            Feature::AmxFp16 => "amx_fp16",
            Feature::Avx512F => "avx512f",
            Feature::Avx512Bw => "avx512bw",
            Feature::Avx512Vl => "avx512vl",
            Feature::Avx512Vnni => "avx512_vnni",
            Feature::Avx512Bf16 => "avx512_bf16",
            Feature::Avx512Vbmi2 => "avx512_vbmi2",
        }
    }

    pub const fn is_amx(self) -> bool {
        matches!(self, Feature::AmxTile | Feature::AmxInt8 | Feature::AmxBf16 | Feature::AmxFp16)
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Feature`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FeatureSet(u16);

impl FeatureSet {
    pub const EMPTY: FeatureSet = FeatureSet(0);

    pub fn of(features: &[Feature]) -> FeatureSet {
        FeatureSet(features.iter().fold(0, |acc, f| acc | f.bit()))
    }

    pub const fn contains(self, f: Feature) -> bool {
        self.0 & f.bit() != 0
    }

    pub fn insert(&mut self, f: Feature) {
        self.0 |= f.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Feature> {
        Feature::ALL.into_iter().filter(move |&f| self.contains(f))
    }
}

impl fmt::Display for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Feature::name).collect();
        f.write_str(&names.join(","))
    }
}

/// A `TILEJIT_HIDE` entry that names no feature or group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "TILEJIT_HIDE names {0:?}, which is not a feature: use amx, avx512 or any of amx_tile, amx_int8, amx_bf16, \
     amx_fp16, avx512f, avx512bw, avx512vl, avx512_vnni, avx512_bf16, avx512_vbmi2 (comma separated)"
)]
pub struct UnknownHideName(pub String);

/// Parses a `TILEJIT_HIDE` value: names and the groups `amx` and `avx512`,
/// comma separated, case and surrounding spaces ignored; empty hides nothing.
pub fn parse_hide(value: &str) -> Result<FeatureSet, UnknownHideName> {
    let mut set = FeatureSet::EMPTY;
    for name in value.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()) {
        match name.as_str() {
            "amx" => Feature::ALL.iter().filter(|f| f.is_amx()).for_each(|&f| set.insert(f)),
            "avx512" | "avx-512" => Feature::ALL.iter().filter(|f| !f.is_amx()).for_each(|&f| set.insert(f)),
            _ => match Feature::ALL.into_iter().find(|f| f.name() == name) {
                Some(f) => set.insert(f),
                None => return Err(UnknownHideName(name)),
            },
        }
    }
    Ok(set)
}

/// Why a feature cannot be used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absence {
    /// CPUID does not report it.
    NotInCpuid,
    /// The CPU has it but the OS does not save its register state (XCR0).
    NotEnabledByOs,
    /// Present, but hidden by `TILEJIT_HIDE`.
    Hidden,
}

impl fmt::Display for Absence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Absence::NotInCpuid => "not reported by CPUID",
            Absence::NotEnabledByOs => "state not enabled by the OS in XCR0",
            Absence::Hidden => "hidden by TILEJIT_HIDE",
        })
    }
}

/// Features a kernel needs that this machine cannot give it, each with why;
/// displayed as a list (`avx512_vnni (not reported by CPUID), ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct MissingFeatures(pub Vec<(Feature, Absence)>);

fn describe(missing: &[(Feature, Absence)]) -> String {
    let parts: Vec<_> = missing.iter().map(|(f, why)| format!("{f} ({why})")).collect();
    parts.join(", ")
}

/// What this CPU and OS report, and what `TILEJIT_HIDE` hides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    pub brand: String,
    /// Reported by CPUID.
    pub cpuid: FeatureSet,
    /// XCR0 bits 1-2 and 5-7 (SSE/AVX, opmask, ZMM_Hi256, Hi16_ZMM): the
    /// OS saves AVX-512 state.
    pub os_avx512: bool,
    /// XCR0 bits 17-18 (XTILECFG, XTILEDATA): the OS supports tile state.
    pub os_amx: bool,
    /// Removed by `TILEJIT_HIDE` (empty when it is unset or invalid).
    pub hidden: FeatureSet,
    /// `TILEJIT_HIDE` named something unknown; [`CpuFeatures::hide_error`].
    hide_error: Option<UnknownHideName>,
}

impl CpuFeatures {
    /// Detected once per process (and `TILEJIT_HIDE` read once).
    pub fn get() -> &'static CpuFeatures {
        static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
        FEATURES.get_or_init(|| {
            let hide = std::env::var("TILEJIT_HIDE").unwrap_or_default();
            CpuFeatures::detect().with_hide(parse_hide(&hide))
        })
    }

    /// Applies a parsed `TILEJIT_HIDE`. An invalid value hides everything
    /// but the scalar path, so a typo never tests more than was asked for;
    /// the dispatcher reports it through [`CpuFeatures::hide_error`].
    pub fn with_hide(mut self, hide: Result<FeatureSet, UnknownHideName>) -> CpuFeatures {
        match hide {
            Ok(set) => self.hidden = set,
            Err(e) => {
                self.hidden = FeatureSet::of(&Feature::ALL);
                self.hide_error = Some(e);
            }
        }
        self
    }

    /// The `TILEJIT_HIDE` parse error, if its value named an unknown feature.
    pub fn hide_error(&self) -> Option<&UnknownHideName> {
        self.hide_error.as_ref()
    }

    /// Why `f` cannot be used, or `None` when it can.
    pub fn absence(&self, f: Feature) -> Option<Absence> {
        if !self.cpuid.contains(f) {
            Some(Absence::NotInCpuid)
        } else if !(if f.is_amx() { self.os_amx } else { self.os_avx512 }) {
            Some(Absence::NotEnabledByOs)
        } else if self.hidden.contains(f) {
            Some(Absence::Hidden)
        } else {
            None
        }
    }

    /// Whether `f` is reported, enabled by the OS and not hidden.
    pub fn has(&self, f: Feature) -> bool {
        self.absence(f).is_none()
    }

    /// Ok when every feature of `needs` can be used.
    pub fn require(&self, needs: &[Feature]) -> Result<(), MissingFeatures> {
        let missing: Vec<_> = needs.iter().filter_map(|&f| self.absence(f).map(|why| (f, why))).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(MissingFeatures(missing))
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn detect() -> CpuFeatures {
        use std::arch::x86_64::__cpuid_count;
        let bit = |v: u32, b: u32| v & (1 << b) != 0;
        let max_leaf = __cpuid_count(0, 0).eax;
        let leaf7 = if max_leaf >= 7 { __cpuid_count(7, 0) } else { __cpuid_count(0, 0) };
        let (ebx7, ecx7, edx7) = if max_leaf >= 7 { (leaf7.ebx, leaf7.ecx, leaf7.edx) } else { (0, 0, 0) };
        let eax71 = if max_leaf >= 7 { __cpuid_count(7, 1).eax } else { 0 };
        // CPUID.(7,0) and (7,1) bit positions, SDM Vol. 2A "CPUID".
        let reported = [
            (Feature::AmxTile, bit(edx7, 24)),
            (Feature::AmxInt8, bit(edx7, 25)),
            (Feature::AmxBf16, bit(edx7, 22)),
            (Feature::AmxFp16, bit(eax71, 21)),
            (Feature::Avx512F, bit(ebx7, 16)),
            (Feature::Avx512Bw, bit(ebx7, 30)),
            (Feature::Avx512Vl, bit(ebx7, 31)),
            (Feature::Avx512Vnni, bit(ecx7, 11)),
            (Feature::Avx512Bf16, bit(eax71, 5)),
            (Feature::Avx512Vbmi2, bit(ecx7, 6)),
        ];
        let mut cpuid = FeatureSet::EMPTY;
        reported.iter().filter(|(_, on)| *on).for_each(|&(f, _)| cpuid.insert(f));
        let xcr0 = xcr0();
        CpuFeatures {
            brand: brand_string(),
            cpuid,
            os_avx512: xcr0 & 0xE6 == 0xE6,
            os_amx: xcr0 & (3 << 17) == 3 << 17,
            hidden: FeatureSet::EMPTY,
            hide_error: None,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> CpuFeatures {
        CpuFeatures {
            brand: "not x86_64".into(),
            cpuid: FeatureSet::EMPTY,
            os_avx512: false,
            os_amx: false,
            hidden: FeatureSet::EMPTY,
            hide_error: None,
        }
    }
}

/// [`CpuFeatures::require`] on this machine.
pub fn require(needs: &[Feature]) -> Result<(), MissingFeatures> {
    CpuFeatures::get().require(needs)
}

#[cfg(target_arch = "x86_64")]
fn xcr0() -> u64 {
    if std::arch::x86_64::__cpuid_count(1, 0).ecx & (1 << 27) == 0 {
        return 0; // no OSXSAVE: XGETBV would fault
    }
    // SAFETY: OSXSAVE is set, so XGETBV with ecx = 0 is defined.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

#[cfg(target_arch = "x86_64")]
fn brand_string() -> String {
    use std::arch::x86_64::__cpuid_count;
    if __cpuid_count(0x8000_0000, 0).eax < 0x8000_0004 {
        return "unknown x86_64".into();
    }
    let mut bytes = Vec::with_capacity(48);
    for leaf in 0x8000_0002..=0x8000_0004 {
        let r = __cpuid_count(leaf, 0);
        for word in [r.eax, r.ebx, r.ecx, r.edx] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
    }
    String::from_utf8_lossy(&bytes).trim_matches(char::from(0)).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_present() -> CpuFeatures {
        CpuFeatures {
            brand: "test".into(),
            cpuid: FeatureSet::of(&Feature::ALL),
            os_avx512: true,
            os_amx: true,
            hidden: FeatureSet::EMPTY,
            hide_error: None,
        }
    }

    #[test]
    fn hide_parses_names_and_groups() {
        assert_eq!(parse_hide(""), Ok(FeatureSet::EMPTY));
        assert_eq!(parse_hide(" AVX512_VNNI "), Ok(FeatureSet::of(&[Feature::Avx512Vnni])));
        let amx = parse_hide("amx").unwrap();
        assert!(amx.iter().all(Feature::is_amx) && amx.contains(Feature::AmxTile), "{amx}");
        let both = parse_hide("amx,avx512").unwrap();
        assert_eq!(both, FeatureSet::of(&Feature::ALL));
        let err = parse_hide("amx,avx2").unwrap_err();
        assert_eq!(err, UnknownHideName("avx2".into()));
        assert!(err.to_string().contains("avx512_vnni"), "{err}");
    }

    #[test]
    fn require_names_each_missing_feature_and_why() {
        let f = all_present().with_hide(parse_hide("avx512_vnni"));
        assert_eq!(f.require(&[Feature::Avx512F, Feature::Avx512Bw]), Ok(()));
        let err = f.require(&[Feature::Avx512F, Feature::Avx512Vnni]).unwrap_err();
        assert_eq!(err.0, vec![(Feature::Avx512Vnni, Absence::Hidden)]);
        assert_eq!(err.to_string(), "avx512_vnni (hidden by TILEJIT_HIDE)");

        let mut no_os = all_present();
        no_os.os_amx = false;
        no_os.cpuid = FeatureSet::of(&[Feature::AmxTile]);
        let err = no_os.require(&[Feature::AmxTile, Feature::AmxInt8]).unwrap_err();
        assert_eq!(err.0, vec![(Feature::AmxTile, Absence::NotEnabledByOs), (Feature::AmxInt8, Absence::NotInCpuid)]);
    }

    #[test]
    fn an_unknown_hide_name_hides_everything_and_is_reported() {
        let f = all_present().with_hide(parse_hide("avx512_vnn"));
        assert!(Feature::ALL.iter().all(|&x| !f.has(x)));
        assert_eq!(f.hide_error(), Some(&UnknownHideName("avx512_vnn".into())));
    }
}
