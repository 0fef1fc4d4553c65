//! bf16 values shared by the families, and exact bf16/f32 constructors.

use tilejit_verify::bf16::{bf16_to_f32, f32_to_bf16};

pub const ONE: u16 = 0x3F80;
pub const NEG_ONE: u16 = 0xBF80;
pub const ZERO: u16 = 0x0000;
pub const NEG_ZERO: u16 = 0x8000;
pub const INF: u16 = 0x7F80;
pub const NEG_INF: u16 = 0xFF80;
pub const SUB: u16 = 0x0001; // smallest bf16 subnormal, read as +0 (DAZ)
pub const BF16_MAX: u16 = 0x7F7F;

pub fn pow2(e: i32) -> f64 {
    2f64.powi(e)
}

/// The bf16 whose value is exactly `x` (panics if there is none).
pub fn bf16_exact(x: f64) -> u16 {
    let b = f32_to_bf16(x as f32);
    assert_eq!(f64::from(bf16_to_f32(b)), x, "{x:e} is not a bf16 value");
    b
}

pub fn f32_exact(x: f64) -> u32 {
    let f = x as f32;
    assert_eq!(f64::from(f), x, "{x:e} is not an f32 value");
    f.to_bits()
}
