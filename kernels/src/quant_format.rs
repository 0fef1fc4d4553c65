//! The GGUF block formats the quantized kernels read (docs/FORMATS.md,
//! "Block formats"; the dot product they define: `tilejit_verify::quant`).
//! Each kernel family adds its own packed-layout sizes in its `pack`
//! module.

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
