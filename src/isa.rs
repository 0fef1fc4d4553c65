//! Which instruction set runs the kernels, with the `TILEJIT_ISA`
//! environment override (`scalar`, `avx512` or `amx`) and, below it,
//! `TILEJIT_HIDE` (features treated as absent; `tilejit_kernels::cpu`).
//!
//! An ISA is not all-or-nothing: a CPU may have AVX-512 without VNNI
//! (Skylake-SP) or without AVX512_BF16 (Cascade Lake), so whether a path
//! can run is asked per kernel family ([`Op`]), from the extensions that
//! family's generated code executes.

use crate::cpu::{amx_ready, require, AmxUnavailable, CpuFeatures, MissingFeatures};
pub use crate::emulate::Execution;
use tilejit_kernels::dense_avx512::Avx512Kind;
use tilejit_kernels::spec::{ElemType, Int8Sign};
use tilejit_sparse::amx::SparseKind;
use tilejit_sparse::avx512::SparseAvx512Kind;

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
    #[error("TILEJIT_ISA={0:?} is not an ISA: use scalar, avx512, amx, avx512-emu or amx-emu")]
    UnknownName(String),
    #[error("TILEJIT_ISA={isa} forces an ISA this machine cannot run: {reason}")]
    Unavailable { isa: Isa, reason: Unsupported },
    #[error(transparent)]
    BadHide(#[from] crate::cpu::UnknownHideName),
}

/// A family of kernels: what a call needs from the CPU on each ISA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Dense int8 GEMM (TDPB*D semantics), any signedness.
    Int8,
    /// Dense bf16 GEMM with TDPBF16PS semantics.
    Bf16,
    /// Dense bf16 GEMM with VDPBF16PS semantics (`gemm_bf16_dot`).
    Bf16Dot,
    /// Quantized GEMM over GGUF blocks (`gemm_quant`).
    Quant,
    /// Sparse bf16 GEMM.
    SparseBf16,
    /// Sparse int8 GEMM.
    SparseInt8,
}

impl Op {
    pub const fn name(self) -> &'static str {
        match self {
            Op::Int8 => "int8 GEMM",
            Op::Bf16 => "bf16 GEMM",
            Op::Bf16Dot => "bf16 dot GEMM",
            Op::Quant => "quantized GEMM",
            Op::SparseBf16 => "sparse bf16 GEMM",
            Op::SparseInt8 => "sparse int8 GEMM",
        }
    }

    /// The extensions the `isa` kernels of this family execute; `None`
    /// when the family has no kernel on that ISA.
    pub const fn features(self, isa: Isa) -> Option<&'static [crate::cpu::Feature]> {
        match (isa, self) {
            (Isa::Scalar, _) => Some(&[]),
            (Isa::Avx512, Op::Int8) => Some(Avx512Kind::Int8(Int8Sign::SS).features()),
            (Isa::Avx512, Op::Bf16) => Some(Avx512Kind::Bf16Chains.features()),
            (Isa::Avx512, Op::Bf16Dot) => Some(Avx512Kind::Bf16Dot.features()),
            (Isa::Avx512, Op::Quant) => Some(tilejit_kernels::quant_avx512::FEATURES),
            (Isa::Avx512, Op::SparseBf16) => Some(SparseAvx512Kind::Bf16.features()),
            (Isa::Avx512, Op::SparseInt8) => Some(SparseAvx512Kind::Int8.features()),
            (Isa::Amx, Op::Int8) => Some(ElemType::Int8(Int8Sign::SS).amx_features()),
            (Isa::Amx, Op::Bf16) => Some(ElemType::Bf16.amx_features()),
            (Isa::Amx, Op::Bf16Dot) => None,
            (Isa::Amx, Op::Quant) => Some(tilejit_kernels::quant_amx::FEATURES),
            (Isa::Amx, Op::SparseBf16) => Some(SparseKind::Bf16.features()),
            (Isa::Amx, Op::SparseInt8) => Some(SparseKind::Int8.features()),
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a path cannot run on this machine: a fact about the CPU, the OS or
/// `TILEJIT_HIDE`, never about the caller's input (input errors are the
/// callers' own types, e.g. `GemmError::Shape`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unsupported {
    /// The family has no kernel on this ISA (e.g. VDPBF16PS semantics on
    /// AMX, whose TDPBF16PS rounds differently).
    #[error("the {op} has no {isa} kernel")]
    NoKernel { op: Op, isa: Isa },
    /// The kernels execute extensions this machine lacks (each named, with why).
    #[error("the {isa} {kernels} kernels need {missing}")]
    MissingFeatures { isa: Isa, kernels: &'static str, missing: MissingFeatures },
    /// Tile state or permission is missing.
    #[error(transparent)]
    Amx(#[from] AmxUnavailable),
}

/// Whether the `op` kernels can run on `isa` here, and if not, why (each
/// missing extension named, with why it is missing).
pub fn availability_for(isa: Isa, op: Op) -> Result<(), Unsupported> {
    let Some(needs) = op.features(isa) else {
        return Err(Unsupported::NoKernel { op, isa });
    };
    if isa == Isa::Amx {
        amx_ready()?;
    }
    require(needs).map_err(|missing| Unsupported::MissingFeatures { isa, kernels: op.name(), missing })
}

/// Whether some kernel family can run on `isa` here (AMX: tile state and
/// permission; AVX-512: F and BW), and if not, why. A call asks
/// [`availability_for`] its own family.
pub fn availability(isa: Isa) -> Result<(), Unsupported> {
    use crate::cpu::Feature;
    match isa {
        Isa::Scalar => Ok(()),
        Isa::Avx512 => require(&[Feature::Avx512F, Feature::Avx512Bw])
            .map_err(|missing| Unsupported::MissingFeatures { isa, kernels: "GEMM", missing }),
        Isa::Amx => Ok(amx_ready()?),
    }
}

/// Parses an ISA name as `TILEJIT_ISA` accepts it (`amx-emu` and
/// `avx512-emu` run that path's generated code under the emulator); empty
/// means "not forced".
pub fn parse(name: &str) -> Result<Option<(Isa, Execution)>, IsaError> {
    let lower = name.trim().to_ascii_lowercase();
    let (isa, execution) = match lower.strip_suffix("-emu") {
        Some(isa) => (isa, Execution::Emulated),
        None => (lower.as_str(), Execution::Native),
    };
    let isa = match isa {
        "" if execution == Execution::Native => return Ok(None),
        "scalar" if execution == Execution::Native => Isa::Scalar,
        "avx512" | "avx-512" => Isa::Avx512,
        "amx" => Isa::Amx,
        _ => return Err(IsaError::UnknownName(name.to_string())),
    };
    Ok(Some((isa, execution)))
}

fn forced_pair() -> Result<Option<(Isa, Execution)>, IsaError> {
    if let Some(e) = CpuFeatures::get().hide_error() {
        return Err(e.clone().into());
    }
    let Some(name) = std::env::var_os("TILEJIT_ISA") else { return Ok(None) };
    let Some((isa, execution)) = parse(&name.to_string_lossy())? else { return Ok(None) };
    if execution == Execution::Native {
        availability(isa).map_err(|reason| IsaError::Unavailable { isa, reason })?;
    }
    Ok(Some((isa, execution)))
}

/// The ISA forced by `TILEJIT_ISA`, if any; an error if the name is
/// unknown or the forced ISA cannot run here (natively), or if
/// `TILEJIT_HIDE` names an unknown feature.
pub fn forced() -> Result<Option<Isa>, IsaError> {
    Ok(forced_pair()?.map(|(isa, _)| isa))
}

/// Whether `TILEJIT_ISA` asks for emulated execution (`amx-emu`,
/// `avx512-emu`); native otherwise, also when the variable is malformed
/// (then [`forced`] reports it).
pub fn forced_execution() -> Execution {
    forced_pair().ok().flatten().map_or(Execution::Native, |(_, execution)| execution)
}

/// [`availability_for`] for `execution`: emulated, a path runs wherever the
/// family has a kernel for it, whatever this CPU has.
pub fn availability_with(isa: Isa, op: Op, execution: Execution) -> Result<(), Unsupported> {
    match execution {
        Execution::Native => availability_for(isa, op),
        Execution::Emulated if isa == Isa::Scalar || op.features(isa).is_some() => Ok(()),
        Execution::Emulated => Err(Unsupported::NoKernel { op, isa }),
    }
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
        let native = |isa| Some((isa, Execution::Native));
        assert_eq!(parse("AMX").unwrap(), native(Isa::Amx));
        assert_eq!(parse(" avx512 ").unwrap(), native(Isa::Avx512));
        assert_eq!(parse("avx-512").unwrap(), native(Isa::Avx512));
        assert_eq!(parse("scalar").unwrap(), native(Isa::Scalar));
        assert_eq!(parse("amx-emu").unwrap(), Some((Isa::Amx, Execution::Emulated)));
        assert_eq!(parse("AVX512-EMU").unwrap(), Some((Isa::Avx512, Execution::Emulated)));
        assert_eq!(parse("").unwrap(), None);
        for bad in ["sse2", "scalar-emu", "-emu"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err, IsaError::UnknownName(bad.into()));
            assert!(err.to_string().contains("amx-emu"), "{err}");
        }
    }

    #[test]
    fn scalar_is_always_available_and_amx_answers_with_a_reason() {
        assert_eq!(availability(Isa::Scalar), Ok(()));
        match availability(Isa::Amx) {
            Ok(()) => eprintln!("amx available here"),
            Err(reason) => {
                let line = reason.to_string();
                assert!(!line.is_empty() && !line.contains('\n'), "one-line reason: {line:?}")
            }
        }
    }
}
