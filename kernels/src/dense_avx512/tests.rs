//! Register plans and spec validation (no AVX-512 needed), and the int8
//! column bias.

use super::*;
use crate::spec::SpecError;

fn spec(kind: Avx512Kind, m: u8, n: u8) -> DenseAvx512Spec {
    DenseAvx512Spec::new(kind, m, n, CInit::Load)
}

#[test]
fn even_shuffle_moves_the_low_bf16_up() {
    let c = Constants::new();
    assert_eq!(c.even_shuffle[..8], [0x80, 0x80, 0, 1, 0x80, 0x80, 4, 5]);
    assert_eq!(c.even_shuffle[16..20], [0x80, 0x80, 0, 1]);
    assert_eq!(c.even_shuffle[60..], [0x80, 0x80, 12, 13]);
}

#[test]
fn register_budget_is_checked() {
    let kinds = [
        Avx512Kind::Int8(Int8Sign::SS),
        Avx512Kind::Int8(Int8Sign::SU),
        Avx512Kind::Int8(Int8Sign::US),
        Avx512Kind::Int8(Int8Sign::UU),
        Avx512Kind::Bf16Dot,
        Avx512Kind::Bf16Chains,
    ];
    for kind in kinds {
        // Decode shapes that must always fit.
        for (m, n) in [(1, 8), (2, 4), (4, 2), (8, 1), (16, 1)] {
            let s = spec(kind, m, n);
            assert_eq!(s.validate(), Ok(()), "{}", s.name());
            assert!(zmm_needed(&s) <= 32);
        }
        let too_big = spec(kind, 16, 8);
        assert!(matches!(too_big.validate(), Err(SpecError::Registers { needed, .. }) if needed > 32));
    }
    // Every valid spec's plan builds (ZmmAlloc would panic past 32).
    for kind in kinds {
        for m in 1..=16 {
            for n in 1..=8 {
                let s = spec(kind, m, n);
                if s.validate().is_ok() {
                    let body = Body::new(&s);
                    let mut all: Vec<u8> = (0..m as usize)
                        .flat_map(|i| (0..n as usize).map(move |j| (i, j)))
                        .map(|(i, j)| body.acc(i, j).number())
                        .collect();
                    all.sort_unstable();
                    all.dedup();
                    assert_eq!(all.len(), m as usize * n as usize, "accumulators must be distinct");
                }
            }
        }
    }
}

#[test]
fn ranges_are_typed_errors() {
    let ok = spec(Avx512Kind::Bf16Dot, 1, 1);
    assert_eq!(DenseAvx512Spec { m_rows: 0, ..ok }.validate(), Err(SpecError::Rows(0)));
    assert_eq!(DenseAvx512Spec { m_rows: 17, ..ok }.validate(), Err(SpecError::Rows(17)));
    assert_eq!(DenseAvx512Spec { n_panels: 0, ..ok }.validate(), Err(SpecError::Panels(0)));
    assert_eq!(DenseAvx512Spec { n_panels: 9, ..ok }.validate(), Err(SpecError::Panels(9)));
    assert_eq!(DenseAvx512Spec { k_groups_per_tdp: 17, ..ok }.validate(), Err(SpecError::KGroups(17)));
    assert_eq!(DenseAvx512Spec { k_groups_per_tdp: 0, ..ok }.validate(), Err(SpecError::KGroups(0)));
    assert!(matches!(DenseAvx512Spec { last_panel_cols: 0, ..ok }.validate(), Err(SpecError::Tail { value: 0, .. })));
    assert!(matches!(DenseAvx512Spec { last_panel_cols: 17, ..ok }.validate(), Err(SpecError::Tail { .. })));
    assert_eq!(
        DenseAvx512Spec { prefetch_lines: 33, ..ok }.validate(),
        Err(SpecError::PrefetchDistance { lines: 33, max: 32 })
    );
    assert!(DenseAvx512Kernel::generate(DenseAvx512Spec { m_rows: 0, ..ok }).is_err());
}

#[test]
fn every_valid_spec_generates() {
    // Code generation needs no AVX-512; only running does.
    for kind in
        [Avx512Kind::Int8(Int8Sign::SS), Avx512Kind::Int8(Int8Sign::SU), Avx512Kind::Bf16Dot, Avx512Kind::Bf16Chains]
    {
        for m in [1, 3, 4, 5, 9, 16] {
            for n in 1..=8 {
                for (kg, cols, pf) in [(16, 16, 8), (1, 1, 0), (5, 9, 32)] {
                    let s = DenseAvx512Spec {
                        k_groups_per_tdp: kg,
                        last_panel_cols: cols,
                        prefetch_lines: pf,
                        ..spec(kind, m, n)
                    };
                    if s.validate().is_ok() {
                        let k = DenseAvx512Kernel::generate(s).unwrap();
                        assert!(!k.code().is_empty());
                    }
                }
            }
        }
    }
}

#[test]
fn col_bias_corrects_the_shift() {
    let b: Vec<u8> = vec![0x80, 0xFF, 1, 0x7F, 0x80, 3];
    let p = PackedB::pack_int8(&b, 3, 2, 2, crate::pack::BLayout::default()).unwrap();
    // Column 0: 0x80, 1, 0x80 -> s8 sum -255, u8 sum 257.
    assert_eq!(int8_col_bias(Int8Sign::SS, &p).unwrap()[0], -128 * -255);
    assert_eq!(int8_col_bias(Int8Sign::UU, &p).unwrap()[0], 128 * 257);
    assert!(int8_col_bias(Int8Sign::US, &p).is_none());
    assert!(int8_col_bias(Int8Sign::SU, &p).is_none());
}
