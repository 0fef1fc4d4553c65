//! Family 2: the FTZ corners (docs/NUMERICS.md rule 5) and random
//! near-underflow data, on TDPBF16PS and VDPBF16PS.

use rand::{rngs::StdRng, Rng};
use tilejit::kernels::encoder::TdpOp;
use tilejit_verify::tdpbf16ps_bits;

use crate::avx512::{run_vdp, vdp, VdpLane};
use crate::report::{Family, Kind, Report};
use crate::routine::{bf16_case, bytes16, run_cases, Case, TdpRoutine};
use crate::values::{bf16_exact, f32_exact, pow2, ZERO};

/// bf16 2^-76: B value of the FTZ cases, so that A = target / 2^-76.
const B_2M76: u16 = 0x1980;
/// C values near the FTZ threshold (incl. f32 subnormals, read as zero).
const FTZ_C: [u32; 10] = [
    0x0000_0000,
    0x8000_0000,
    0x0080_0000,
    0x8080_0000,
    0x0080_0001,
    0x80FF_FFFF,
    0x0000_0001,
    0x807F_FFFF,
    0x3F80_0000,
    0x0100_0000,
];

/// One chain (even or odd) gets, at pairs k0 < k1 < k2: 2^-126, then
/// d*2^-149 (exact: the chain holds 2^-126 + d*2^-149), then v*2^-152,
/// so the FMA's exact result is 2^-126 + (8d + v)*2^-152: every rounding
/// corner around the FTZ threshold, e.g. d = 0, v = -3 (2^-126 - 3*2^-152,
/// must flush) and v = -2 (2^-126 - 2^-151, rounds up to 2^-126, kept).
/// The other chain holds 0 or +-2^-126 / -2^-125 (flushes in even + odd);
/// C comes from [`FTZ_C`]. All mirrored in sign.
fn ftz_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut idx = 0;
    for chain in 0..2 {
        for (k0, k1, k2) in [(0, 1, 2), (5, 9, 15), (13, 14, 15)] {
            for d in 0..4i32 {
                for v in -40..=8i32 {
                    for neg in [false, true] {
                        for other in 0..4 {
                            let s = if neg { -1.0 } else { 1.0 };
                            let mut a = vec![ZERO; 32];
                            a[2 * k0 + chain] = bf16_exact(s * pow2(-50));
                            a[2 * k1 + chain] = bf16_exact(s * f64::from(d) * pow2(-73));
                            a[2 * k2 + chain] = bf16_exact(s * f64::from(v) * pow2(-76));
                            let o = [0.0, pow2(-50), -pow2(-50), -pow2(-49)][other];
                            a[2 * k0 + 1 - chain] = bf16_exact(o);
                            let c = FTZ_C[idx % FTZ_C.len()];
                            idx += 1;
                            let label = format!(
                                "{} chain {}(2^-126 + {d}*2^-149) + {v}*2^-152 at pairs {k0},{k1},{k2}; other chain {o:e}",
                                ["even", "odd"][chain],
                                if neg { "-" } else { "" }
                            );
                            cases.push(bf16_case(label, c, &a, &[B_2M76; 32]));
                        }
                    }
                }
            }
        }
    }
    cases
}

fn near_underflow_bf16(rng: &mut StdRng) -> u16 {
    let sign = if rng.random_bool(0.5) { 0x8000 } else { 0 };
    match rng.random_range(0..100) {
        0..8 => sign,
        8..13 => sign | rng.random_range(1..=0x7F),
        _ => sign | (rng.random_range(60u16..=68) << 7) | rng.random_range(0..=0x7F),
    }
}

fn near_underflow_f32(rng: &mut StdRng) -> u32 {
    let sign = if rng.random_bool(0.5) { 0x8000_0000 } else { 0 };
    sign | (rng.random_range(0u32..=3) << 23) | (rng.random::<u32>() & 0x007F_FFFF)
}

/// A of the two examples of docs/NUMERICS.md rule 5 (even chain: 2^-126,
/// then `v`*2^-152; B is 2^-76 in every lane).
fn doc_a(v: f64) -> [u16; 32] {
    let mut a = [ZERO; 32];
    a[0] = bf16_exact(pow2(-50));
    a[2] = bf16_exact(v * pow2(-76));
    a
}

/// The two examples of docs/NUMERICS.md rule 5, as the oracle computes
/// them (even chain: 2^-126, then -3*2^-152 resp. -2^-151).
pub fn oracle_doc_examples() {
    let b = [B_2M76; 32];
    assert_eq!(tdpbf16ps_bits(0, &doc_a(-3.0), &b), 0x0000_0000, "oracle: 2^-126 - 3*2^-152 -> 0");
    assert_eq!(tdpbf16ps_bits(0, &doc_a(-2.0), &b), 0x0080_0000, "oracle: 2^-126 - 2^-151 -> 2^-126");
}

/// TDPBF16PS: probes of the two examples, the corner cases over one TDP
/// and two, and random near-underflow data.
pub fn tdpbf16ps(report: &mut Report, rng: &mut StdRng) {
    let b = [B_2M76; 32];
    let r16 = TdpRoutine::new(TdpOp::Bf16ps, 16, 1);
    for (v, name) in [(-3.0, "2^-126 - 3*2^-152"), (-2.0, "2^-126 - 2^-151")] {
        let hw = r16.run_one(0, &bytes16(&doc_a(v)), &bytes16(&b));
        eprintln!("probe TDPBF16PS FTZ corner {name}: hardware {hw:#010x}");
    }
    let cases = ftz_cases();
    for (pairs, tdps) in [(16, 1), (8, 2)] {
        let r = TdpRoutine::new(TdpOp::Bf16ps, pairs, tdps);
        let mut fam = Family::new(format!("TDPBF16PS FTZ corners, {pairs} pairs x {tdps} TDP"), Kind::F32);
        run_cases(&mut fam, &r, &cases);
        report.add(fam);
    }
    for (pairs, tdps) in [(16, 1), (5, 1), (8, 2)] {
        let r = TdpRoutine::new(TdpOp::Bf16ps, pairs, tdps);
        let lanes = 2 * pairs * tdps;
        let mut fam = Family::new(format!("TDPBF16PS near-underflow random, {pairs} pairs x {tdps} TDP"), Kind::F32);
        for _ in 0..100 {
            let vecs: Vec<Vec<u8>> =
                (0..32).map(|_| bytes16(&(0..lanes).map(|_| near_underflow_bf16(rng)).collect::<Vec<_>>())).collect();
            let rows: [&[u8]; 16] = std::array::from_fn(|m| vecs[m].as_slice());
            let cols: [&[u8]; 16] = std::array::from_fn(|n| vecs[16 + n].as_slice());
            let c: [u32; 256] = std::array::from_fn(|_| near_underflow_f32(rng));
            r.check(&mut fam, &rows, &cols, &c, &|_, _| "near-underflow".into());
        }
        report.add(fam);
    }
}

/// VDPBF16PS: the corners on both steps, subnormal accumulators, and
/// random near-underflow data.
pub fn vdpbf16ps(report: &mut Report, rng: &mut StdRng) {
    // acc = +-(2^-126 + d*2^-149) (a full f32), high product v_hi*2^-152
    // first, then low product v_lo*2^-152: the corners on both steps.
    let mut lanes = Vec::new();
    for d in 0..5i32 {
        for v_hi in -40..=8i32 {
            for v_lo in [0, -1, 1, -2, -3, 4, -8, 5] {
                for s in [1.0, -1.0] {
                    let acc = f32_exact(s * (pow2(-126) + f64::from(d) * pow2(-149)));
                    let a = [bf16_exact(s * f64::from(v_lo) * pow2(-76)), bf16_exact(s * f64::from(v_hi) * pow2(-76))];
                    lanes.push(vdp(acc, a, [B_2M76; 2]));
                }
            }
        }
    }
    // Subnormal accumulators (read as zero) with products near 2^-126.
    for acc in [0x0000_0001, 0x807F_FFFF, 0x007F_FFFF, 0x8000_0001] {
        for v in -8..=8i32 {
            let p = bf16_exact(f64::from(v) * pow2(-50)); // v * 2^-126 with B = 2^-76
            lanes.push(vdp(acc, [p, ZERO], [B_2M76; 2]));
            lanes.push(vdp(acc, [ZERO, p], [B_2M76; 2]));
        }
    }
    let mut fam = Family::new("VDPBF16PS FTZ corners", Kind::F32);
    run_vdp(&mut fam, &lanes, "FTZ corner");
    report.add(fam);
    let random: Vec<VdpLane> = (0..65_536)
        .map(|_| {
            let mut v = || near_underflow_bf16(rng);
            let (a, b) = ([v(), v()], [v(), v()]);
            vdp(near_underflow_f32(rng), a, b)
        })
        .collect();
    let mut fam = Family::new("VDPBF16PS near-underflow random", Kind::F32);
    run_vdp(&mut fam, &random, "near-underflow");
    report.add(fam);
}
