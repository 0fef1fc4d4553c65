//! tilejit-verify: the oracle that every tilejit kernel is checked against,
//! bit for bit.
//!
//! # The oracle rule
//!
//! This crate depends on nothing else of the project, and nothing here is
//! shared with the kernels it judges: a bug in shared code would be
//! reproduced on both sides of the comparison and never be seen. It models
//! each instruction's arithmetic on its own, in the plainest way (one output
//! element at a time, on bit patterns, with every rounding explicit), from
//! the measured facts in `docs/NUMERICS.md`. Speed is not a goal.
//!
//! # What each module models
//!
//! - [`bf16`]: exact bf16 -> f32 widening, and f32 -> bf16 narrowing as
//!   VCVTNEPS2BF16 does it (docs/NUMERICS.md, "VCVTNEPS2BF16"), the one
//!   conversion every path must use.
//! - [`fp`]: the single FP32 steps inside the bf16 dot products: DAZ, a
//!   fused multiply-add or an add with one rounding to nearest even, FTZ
//!   decided after rounding with unbounded exponent, overflow to infinity,
//!   NaN selection (docs/NUMERICS.md, "TDPBF16PS" rules 2-7 and the
//!   reference recipe).
//! - [`amx`]: TDPBF16PS for one output element (two chains from +0, then
//!   even + odd, then C + t) and the four int8 TDPB*D variants.
//! - [`avx512`]: VDPBF16PS (odd pair first, one accumulator) and VPDPBUSD
//!   for one dword lane (docs/NUMERICS.md, "VDPBF16PS").
//! - [`gemm`]: reference GEMMs built from those models, with the K chunking
//!   (pairs per TDP) as a parameter because the bits depend on it
//!   (docs/NUMERICS.md, "Consequences").
//! - [`quant`]: GGUF-style block rows (Q4_0, Q4_1, Q8_0, Q8_1, F16, BF16,
//!   F32): decoders, the llama.cpp reference quantizers (with a defined
//!   answer for NaN/inf blocks), and THE quantized dot product: per block,
//!   an exact integer sum, then fma(isum, dw * da, acc) (plus the Q4_1 min
//!   term), from +0 in IEEE f32 (docs/NUMERICS.md, "Quantized (GGUF-style)
//!   dot products"; docs/FORMATS.md, "Block formats").
//! - [`report`]: bit-level comparison and readable first-mismatch reports.
//! - [`paths`]: the one line a test prints when it executes or skips a path.
//! - [`strategies`]: rand fills in the distributions the conformance tests
//!   need (normal, wide exponent, subnormal, specials, cancellation,
//!   overflow, small integers) and proptest strategies biased to specials.
//!
//! # Interpretations where docs/NUMERICS.md is silent
//!
//! - An invalid operation (inf*0, inf-inf) creates the default NaN
//!   0xFFC00000 only when the step that meets it has no NaN operand; a NaN
//!   operand (including the chain accumulator) wins over it. See
//!   [`fp::fma_step`].
//! - VDPBF16PS's NaN priority list ("src1 low, src2 low, src1 high, src2
//!   high, then the accumulator") is read with low = even element and
//!   high = odd element of the dword; it then follows from the two chained
//!   steps with no extra rule. See [`avx512::vdpbf16ps_bits`].
//! - Zero padding of K is bit-neutral except in one corner the model
//!   predicts (a -0 result can become +0). See [`gemm::gemm_bf16_amx`].

pub mod amx;
pub mod avx512;
pub mod bf16;
pub mod emu;
pub mod fp;
pub mod gemm;
pub mod paths;
pub mod quant;
pub mod report;
pub mod strategies;

pub use amx::{tdpb_dot, tdpbf16ps, tdpbf16ps_bits, Int8Signedness};
pub use avx512::{vdpbf16ps, vdpbf16ps_bits, vpdpbusd};
pub use bf16::{bf16_to_f32, f32_to_bf16};
pub use gemm::{gemm_bf16_amx, gemm_bf16_vdpbf16ps, gemm_i8};
pub use quant::{
    decode_row, gemm_quant, quantize_row_q4_0, quantize_row_q4_1, quantize_row_q8_0, quantize_row_q8_0_weights,
    quantize_row_q8_1, BlockType, QuantError,
};
pub use report::{first_mismatch_f32, first_mismatch_i32, Mismatch};
#[cfg(any(test, feature = "proptest"))]
pub use strategies::any_bf16;
pub use strategies::{fill_bf16, fill_i8, Bf16Dist};
