//! tilejit-kernels: code generation only.
//!
//! - [`encoder`]: the bytes of AMX and EVEX instructions, validated.
//! - [`tile_config`]: the LDTILECFG image and the TDP shape rules.
//! - [`spec`]: `DenseAmxSpec`, everything that changes code or bits.
//! - [`dense_amx`]: the staged generator (plan -> schedule -> code).
//! - [`pack`]: B into the VNNI tile layout the kernels read.
//! - [`peak`]: the register-resident TDP loop that measures TMUL peak.
//! - [`jit`]: executable buffers and dumps.
pub mod dense_amx;
pub mod encoder;
pub mod jit;
pub mod pack;
pub mod peak;
pub mod spec;
pub mod tile_config;
