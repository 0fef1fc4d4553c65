//! Code-generation helpers every generator shares (the kernels crate's and
//! the sparse crate's): registers handed out by role, the prefetch form,
//! the MXCSR image of the bf16 kernels. The instruction encoders are in
//! [`crate::encoder`], assembly and the typed call in [`crate::jit`].

// dynasm! expands register operands with `.into()` even when they are
// already u8; that is the macro's business, not ours.
#![allow(clippy::useless_conversion)]

use dynasmrt::{dynasm, DynasmApi};

use crate::encoder::{Mem, Scale, Zmm};
use crate::jit::CodeBuilder;

/// MXCSR inside the kernels that flush bf16 products: round to nearest
/// even, all exceptions masked, DAZ (bit 6) and FTZ (bit 15), the state
/// TDPBF16PS computes in (docs/NUMERICS.md).
pub const MXCSR_RNE_DAZ_FTZ: u32 = 0x9FC0;

/// `prefetcht0 [mem]` (dynasm! writes it; the address form is ours).
pub fn prefetch(cb: &mut CodeBuilder, mem: Mem) {
    let (b, d) = (mem.base_reg().number(), mem.disp());
    match mem.index_reg() {
        None => dynasm!(cb.ops ; .arch x64 ; prefetcht0 [Rq(b) + d]),
        Some((i, Scale::S1)) => dynasm!(cb.ops ; .arch x64 ; prefetcht0 [Rq(b) + Rq(i.number()) + d]),
        Some((i, Scale::S2)) => dynasm!(cb.ops ; .arch x64 ; prefetcht0 [Rq(b) + Rq(i.number()) * 2 + d]),
        Some((i, Scale::S4)) => dynasm!(cb.ops ; .arch x64 ; prefetcht0 [Rq(b) + Rq(i.number()) * 4 + d]),
        Some((i, Scale::S8)) => dynasm!(cb.ops ; .arch x64 ; prefetcht0 [Rq(b) + Rq(i.number()) * 8 + d]),
    }
}

/// Registers numbered from 0 in order of need, handed out by role.
pub struct ZmmAlloc(u8);

impl ZmmAlloc {
    pub fn new() -> ZmmAlloc {
        ZmmAlloc(0)
    }

    /// The next free register. Plans only exist for validated specs, whose
    /// count `zmm_needed` has checked against the 32 registers.
    pub fn take(&mut self) -> Zmm {
        let z = Zmm::new(self.0).expect("register plan exceeds 32 zmm; validate() should have refused the spec");
        self.0 += 1;
        z
    }

    /// Every register not taken yet.
    pub fn rest(&mut self) -> Vec<Zmm> {
        std::iter::from_fn(|| (self.0 < 32).then(|| self.take())).collect()
    }

    /// `rows` x `cols` registers, row by row.
    pub fn grid(&mut self, rows: usize, cols: usize) -> Vec<Vec<Zmm>> {
        (0..rows).map(|_| (0..cols).map(|_| self.take()).collect()).collect()
    }
}

impl Default for ZmmAlloc {
    fn default() -> Self {
        Self::new()
    }
}
