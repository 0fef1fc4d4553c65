//! tilejit-kernels: code generation only.
pub mod encoder;
