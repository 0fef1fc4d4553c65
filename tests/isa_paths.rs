//! One table of which kernel families this machine runs on which ISA path
//! (with `TILEJIT_HIDE` applied), and why not, so CI output answers the
//! question directly; and the dispatcher's choice for each family.

use tilejit::gemm::dispatch::by_rows;
use tilejit::isa::{availability, availability_for, Isa, Op};

const OPS: [Op; 6] = [Op::Int8, Op::Bf16, Op::Bf16Dot, Op::Quant, Op::SparseBf16, Op::SparseInt8];

#[test]
fn report_isa_paths() {
    for isa in [Isa::Amx, Isa::Avx512, Isa::Scalar] {
        for op in OPS {
            match availability_for(isa, op) {
                Ok(()) => eprintln!("{:<7} {:<18} runs", isa.name(), op.name()),
                Err(reason) => eprintln!("{:<7} {:<18} SKIPPED ({reason})", isa.name(), op.name()),
            }
        }
    }
    assert_eq!(availability(Isa::Scalar), Ok(()), "the scalar path can always run");
}

/// Whatever the machine (and `TILEJIT_HIDE`) leaves, the dispatcher picks
/// a path that can run the family, for any row count.
#[test]
fn the_dispatcher_only_picks_paths_that_run() {
    for op in OPS {
        for m in [1, 4, 5, 12, 64, 512] {
            let isa = by_rows(m, 8, op);
            assert_eq!(availability_for(isa, op), Ok(()), "{op} at m = {m} dispatched to {isa}");
        }
    }
}
