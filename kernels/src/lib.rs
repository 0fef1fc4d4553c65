//! tilejit-kernels: code generation only.
//!
//! - [`cpu`]: which extensions this machine runs (CPUID, XCR0,
//!   `TILEJIT_HIDE`); each kernel family lists the ones it emits.
//! - [`encoder`]: the bytes of AMX and EVEX instructions, validated.
//! - [`tile_config`]: the LDTILECFG image and the TDP shape rules.
//! - [`spec`]: `DenseAmxSpec`, everything that changes code or bits.
//! - [`dense_amx`]: the staged generator (plan -> schedule -> code).
//! - [`dense_avx512`]: AVX-512 kernels for decode shapes (int8 VPDPBUSD,
//!   bf16 two-chain FMA emulation of AMX, native VDPBF16PS).
//! - [`quant_avx512`]: the VPDPBUSD decode kernel for GGUF Q8_0 / Q4_0 x
//!   Q8_0 and Q4_1 x Q8_1, bit-identical to the quantized oracle.
//! - [`quant_amx`]: AMX prefill kernels for the same formats (one TDP per
//!   32-wide block, the per-block f32 epilogue in zmm registers).
//! - [`quant_format`]: the GGUF block formats both quantized families read.
//! - [`pack`]: B into the VNNI tile layout the kernels read.
//! - [`peak`]: the register-resident TDP loop that measures TMUL peak.
//! - [`jit`]: executable buffers and dumps.
/// Byte offset of `field` in the `#[repr(C)]` argument struct `Args`, as
/// the `i32` displacement a generated load takes (`[args + offset]`).
#[macro_export]
macro_rules! arg_offset {
    ($args:ty, $field:ident) => {
        ::std::mem::offset_of!($args, $field) as i32
    };
}

pub mod cache;
pub mod codegen;
pub mod cpu;
pub mod dense_amx;
pub mod dense_avx512;
pub mod encoder;
pub mod jit;
pub mod pack;
pub mod peak;
pub mod quant_amx;
pub mod quant_avx512;
pub mod quant_format;
pub mod spec;
pub mod tile_config;
