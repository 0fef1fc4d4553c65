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

/// The ISA forced by `TILEJIT_ISA`, if any.
pub fn forced() -> Result<Option<Isa>, IsaError> {
    let Ok(name) = std::env::var("TILEJIT_ISA") else { return Ok(None) };
    let isa = match name.trim().to_ascii_lowercase().as_str() {
        "" => return Ok(None),
        "scalar" => Isa::Scalar,
        "avx512" | "avx-512" => Isa::Avx512,
        "amx" => Isa::Amx,
        _ => return Err(IsaError::UnknownName(name)),
    };
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
