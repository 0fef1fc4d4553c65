//! Which instruction set runs the kernels, with the `TILEJIT_ISA`
//! environment override (`scalar`, `avx512` or `amx`).

use crate::cpu::{amx_ready, CpuFeatures};

/// An instruction-set path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx512,
    Amx,
}

impl Isa {
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx512 => "avx512",
            Isa::Amx => "amx",
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an ISA was not chosen or cannot be forced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IsaError {
    #[error("TILEJIT_ISA={0:?} is not an ISA: use scalar, avx512 or amx")]
    UnknownName(String),
    #[error("TILEJIT_ISA={isa} forces an ISA this machine cannot run: {reason}")]
    Unavailable { isa: Isa, reason: String },
}

/// Whether `isa` can run here, and if not, why (one line).
pub fn availability(isa: Isa) -> Result<(), String> {
    match isa {
        Isa::Scalar => Ok(()),
        Isa::Avx512 if CpuFeatures::get().has_avx512() => Ok(()),
        Isa::Avx512 => Err("the CPU or OS does not enable AVX-512 F/BW/VL".into()),
        Isa::Amx => amx_ready().map_err(|e| e.0),
    }
}

/// Parses an ISA name as `TILEJIT_ISA` accepts it; empty means "not forced".
pub fn parse(name: &str) -> Result<Option<Isa>, IsaError> {
    match name.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "scalar" => Ok(Some(Isa::Scalar)),
        "avx512" | "avx-512" => Ok(Some(Isa::Avx512)),
        "amx" => Ok(Some(Isa::Amx)),
        _ => Err(IsaError::UnknownName(name.to_string())),
    }
}

/// The ISA forced by `TILEJIT_ISA`, if any; an error if the name is
/// unknown or the forced ISA cannot run here.
pub fn forced() -> Result<Option<Isa>, IsaError> {
    let Some(name) = std::env::var_os("TILEJIT_ISA") else { return Ok(None) };
    let Some(isa) = parse(&name.to_string_lossy())? else { return Ok(None) };
    availability(isa).map_err(|reason| IsaError::Unavailable { isa, reason })?;
    Ok(Some(isa))
}

/// The best available ISA, unless `TILEJIT_ISA` forces one.
pub fn select() -> Result<Isa, IsaError> {
    if let Some(isa) = forced()? {
        return Ok(isa);
    }
    Ok([Isa::Amx, Isa::Avx512].into_iter().find(|&i| availability(i).is_ok()).unwrap_or(Isa::Scalar))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_bad_names_are_typed_errors() {
        assert_eq!(parse("AMX").unwrap(), Some(Isa::Amx));
        assert_eq!(parse(" avx512 ").unwrap(), Some(Isa::Avx512));
        assert_eq!(parse("avx-512").unwrap(), Some(Isa::Avx512));
        assert_eq!(parse("scalar").unwrap(), Some(Isa::Scalar));
        assert_eq!(parse("").unwrap(), None);
        let err = parse("sse2").unwrap_err();
        assert_eq!(err, IsaError::UnknownName("sse2".into()));
        assert!(err.to_string().contains("use scalar, avx512 or amx"), "{err}");
    }

    #[test]
    fn scalar_is_always_available_and_amx_answers_with_a_reason() {
        assert_eq!(availability(Isa::Scalar), Ok(()));
        match availability(Isa::Amx) {
            Ok(()) => eprintln!("amx available here"),
            Err(reason) => assert!(!reason.is_empty() && !reason.contains('\n'), "one-line reason: {reason:?}"),
        }
    }
}
