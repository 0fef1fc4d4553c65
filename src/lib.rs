//! tilejit: JIT-generated Intel AMX and AVX-512 kernels, each proven bit for
//! bit against a scalar model of the hardware's arithmetic.
//!
//! - [`cpu`]: CPUID/XCR0 detection and the AMX permission request.
//! - [`isa`]: which path runs, with the `TILEJIT_ISA` override.
//! - [`gemm`]: the dense GEMM driver (blocking, tails, threads, kernel cache).
#[cfg(feature = "cli")]
pub mod bench;
pub mod cpu;
pub mod emulate;
pub mod gemm;
pub mod gguf;
pub mod gpu;
pub mod isa;
pub mod model;
pub mod sparse;
pub mod text;
pub mod threads;

pub use tilejit_kernels as kernels;
