//! Family 1: the swamping / ordering matrix, +M and -M at every ordered pair
//! of positions: every pair of lanes of TDPBF16PS, every pair of the three
//! summands of a VDPBF16PS lane.

use tilejit::kernels::encoder::TdpOp;

use crate::avx512::{run_vdp, vdp, VdpLane};
use crate::report::{Family, Kind, Report};
use crate::routine::{bf16_case, run_cases, Case, TdpRoutine};
use crate::values::{NEG_ONE, ONE, ZERO};

/// Swamping magnitudes M (bf16): 2^8, 2^12, 2^24, 1.5*2^24, 2^25.
const SWAMP_M: [u16; 5] = [0x4380, 0x4580, 0x4B80, 0x4BC0, 0x4C00];
/// C values for the swamping cases.
const SWAMP_C: [u32; 11] = [
    0x0000_0000,
    0x8000_0000,
    0x3F80_0000,
    0xBF80_0000,
    0x4040_0000, // +0, -0, 1, -1, 3
    0x4B80_0000,
    0xCB80_0000,
    0x4B80_0001,
    0x3DCC_CCCD,
    0xCC00_0000, // 2^24, -2^24, 2^24+2, 0.1, -2^25
    0x4380_0000, // 256
];

/// A row: +M at lane i, -M at lane j (i != j, every ordered pair), the
/// other lanes 1.0 or small (0.125 .. 0.25); B column uniform in
/// {1, 0.5, 2, -1} so the two products still cancel exactly.
fn swamping_cases(lanes: usize) -> Vec<Case> {
    const B_SCALE: [u16; 4] = [ONE, 0x3F00, 0x4000, NEG_ONE];
    let mut cases = Vec::new();
    let mut idx = 0;
    for &m in &SWAMP_M {
        for small in [false, true] {
            for i in 0..lanes {
                for j in 0..lanes {
                    if i == j {
                        continue;
                    }
                    let mut a: Vec<u16> =
                        (0..lanes).map(|l| if small { 0x3E00 | ((l as u16 * 5) & 0x7F) } else { ONE }).collect();
                    a[i] = m;
                    a[j] = m | 0x8000;
                    let b = vec![B_SCALE[idx % 4]; lanes];
                    let c = SWAMP_C[(idx / 4) % SWAMP_C.len()];
                    let rest = if small { "small" } else { "1.0" };
                    cases.push(bf16_case(format!("+M={m:#06x} at lane {i}, -M at lane {j}, rest {rest}"), c, &a, &b));
                    idx += 1;
                }
            }
        }
    }
    cases
}

/// VDPBF16PS: three summands (acc, high product, low product); +M and -M
/// at every ordered pair of them, the third a "rest" value.
fn vdp_swamping_lanes() -> Vec<VdpLane> {
    const REST: [u16; 5] = [ONE, NEG_ONE, 0x3E20, 0x4040, ZERO];
    let mut lanes = Vec::new();
    for &m in &SWAMP_M {
        for &rest in &REST {
            for s in [ONE, 0x3F00] {
                for p in 0..3 {
                    for q in 0..3 {
                        if p == q {
                            continue;
                        }
                        let mut v = [rest; 3]; // acc, high, low
                        v[p] = m;
                        v[q] = m | 0x8000;
                        lanes.push(vdp(u32::from(v[0]) << 16, [v[2], v[1]], [s, s]));
                    }
                }
            }
        }
        // Full-f32 accumulators against +-M products in both orders.
        for &c in &SWAMP_C {
            for s in [ONE, 0x3F00] {
                lanes.push(vdp(c, [m | 0x8000, m], [s, s]));
                lanes.push(vdp(c, [m, m | 0x8000], [s, s]));
                lanes.push(vdp(c, [ONE, m], [s, s]));
                lanes.push(vdp(c, [m, ONE], [s, s]));
            }
        }
    }
    lanes
}

/// TDPBF16PS over 16 pairs in one TDP, in two TDPs of 8, and over 5 pairs.
pub fn tdpbf16ps(report: &mut Report) {
    for (pairs, tdps) in [(16, 1), (8, 2), (5, 1)] {
        let r = TdpRoutine::new(TdpOp::Bf16ps, pairs, tdps);
        let mut fam = Family::new(format!("TDPBF16PS swamping, {pairs} pairs x {tdps} TDP"), Kind::F32);
        run_cases(&mut fam, &r, &swamping_cases(2 * pairs * tdps));
        report.add(fam);
    }
}

pub fn vdpbf16ps(report: &mut Report) {
    let mut fam = Family::new("VDPBF16PS swamping", Kind::F32);
    run_vdp(&mut fam, &vdp_swamping_lanes(), "swamping");
    report.add(fam);
}
