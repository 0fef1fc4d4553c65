//! The GGUF block formats the quantized kernels read (docs/FORMATS.md,
//! "Block formats"; the dot product they define: `tilejit_verify::quant`).
//! Each kernel family adds its own packed-layout sizes in its `pack`
//! module.

/// Elements per GGUF block.
pub const QK: usize = 32;

/// GGUF weight block formats: 32 weights per block, one f16 scale d (and
/// for Q4_1 an f16 min m).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    Q8_0,
    Q4_0,
    Q4_1,
}

/// GGUF activation block formats (`quantize_row_q8_0` / `quantize_row_q8_1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActivationFormat {
    Q8_0,
    Q8_1,
}

impl WeightFormat {
    pub const ALL: [WeightFormat; 3] = [WeightFormat::Q8_0, WeightFormat::Q4_0, WeightFormat::Q4_1];

    /// Bytes of one GGUF block of 32 weights.
    pub const fn gguf_block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 34,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
        }
    }

    /// The activation format the oracle pairs with these weights.
    pub const fn activations(self) -> ActivationFormat {
        match self {
            Self::Q8_0 | Self::Q4_0 => ActivationFormat::Q8_0,
            Self::Q4_1 => ActivationFormat::Q8_1,
        }
    }

    /// Whether the block carries a min (`acc = fma(m, s, acc)` after each
    /// block's main term).
    pub const fn has_min(self) -> bool {
        matches!(self, Self::Q4_1)
    }

    /// Lower-case GGUF name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
        }
    }
}

impl ActivationFormat {
    /// Bytes of one GGUF block of 32 activations.
    pub const fn gguf_block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 34,
            Self::Q8_1 => 36,
        }
    }
}

/// Why packing or a quantized kernel call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantPackError {
    #[error("n = {n} and k = {k} must both be nonzero")]
    ZeroDim { n: usize, k: usize },
    #[error("k = {k} is not a multiple of the block size 32")]
    KNotBlockMultiple { k: usize },
    #[error("{what}: expected length {expected}, got {actual}")]
    WrongLength { what: &'static str, expected: usize, actual: usize },
    #[error("size computation overflowed")]
    SizeOverflow,
    #[error("m = {m} rows is not supported (1..={max})")]
    BadRows { m: usize, max: usize },
    #[error("invalid kernel spec: {0}")]
    BadSpec(&'static str),
    #[error("no quantized dot product for {weights:?} weights with {activations:?} activations")]
    UnsupportedPair { weights: WeightFormat, activations: ActivationFormat },
    #[error("the kernel was generated for {kernel:?} weights, got {weights:?}")]
    WrongFormat { kernel: WeightFormat, weights: WeightFormat },
    #[error("the quantized AVX-512 kernel needs {0}")]
    MissingIsa(crate::cpu::MissingFeatures),
}

pub(crate) fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), QuantPackError> {
    if expected == actual {
        Ok(())
    } else {
        Err(QuantPackError::WrongLength { what, expected, actual })
    }
}

/// `k / 32` for `rows` rows of `k`, after the shape checks.
pub(crate) fn k_blocks(rows: usize, k: usize) -> Result<usize, QuantPackError> {
    if rows == 0 || k == 0 {
        return Err(QuantPackError::ZeroDim { n: rows, k });
    }
    if !k.is_multiple_of(QK) {
        return Err(QuantPackError::KNotBlockMultiple { k });
    }
    Ok(k / QK)
}

/// The f16 at byte `at`, widened exactly (NaN stays NaN).
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}
