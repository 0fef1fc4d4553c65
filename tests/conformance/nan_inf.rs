//! Family 3: the NaN/inf matrix (which NaN wins at each stage, sNaN
//! quieting, inf*0, inf-inf) on TDPBF16PS and VDPBF16PS, with printed
//! probes for the oracle's interpretation "inf*0 creates the default NaN
//! only when the step has no NaN operand".

use tilejit::kernels::encoder::TdpOp;
use tilejit_verify::fp::DEFAULT_NAN;
use tilejit_verify::{tdpbf16ps_bits, vdpbf16ps_bits};

use crate::avx512::{run_vdp, vdp, VdpLane};
use crate::report::{Family, Kind, Report};
use crate::routine::{bf16_case, bytes16, run_cases, run_grid, Case, TdpRoutine};
use crate::values::{BF16_MAX, INF, NEG_INF, NEG_ONE, NEG_ZERO, ONE, SUB, ZERO};

/// bf16 NaNs with distinct payloads, so the winner is visible.
const SNAN_A: u16 = 0x7F81; // +sNaN, payload 0x01 -> 0x7FC10000
const QNAN_B: u16 = 0xFFC2; // -qNaN, payload 0x42 -> 0xFFC20000
const SNAN_C: u16 = 0xFFA3; // -sNaN, payload 0x23 -> 0xFFE30000
const QNAN_D: u16 = 0x7FE4; // +qNaN, payload 0x64 -> 0x7FE40000

/// f32 C values: NaNs whose payload only an f32 can hold, infinities.
const C_SNAN: u32 = 0x7F80_0005; // -> 0x7FC00005
const C_QNAN: u32 = 0xFFC0_1234;
const C_INF: u32 = 0x7F80_0000;
const C_NEG_INF: u32 = 0xFF80_0000;
const C_ONE: u32 = 0x3F80_0000;

/// One value placed on the background of a case: (in A?, lane, value); in
/// B otherwise.
type Placement = (bool, usize, u16);
/// A named group of placements: one thing a chain meets (a NaN, an
/// infinity, inf*0), placed at the lanes it names.
type Event<'a> = (&'a str, &'a [Placement]);

/// Positional NaN/inf cases over 32 lanes (16 pairs; the 8 x 2 routine
/// splits them over two TDPs). `bg` is the (A, B) background; `sets` puts
/// (in A?, lane, value) on top of it.
fn nan_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    const C_BG: [u32; 4] = [0x0000_0000, C_ONE, 0x8000_0000, 0x4020_0000];
    for (bg_name, bg) in [("bg A=1,B=1", (ONE, ONE)), ("bg A=0,B=1", (ZERO, ONE))] {
        let mut push = |label: String, c: Option<u32>, sets: &[Placement]| {
            let (mut a, mut b) = (vec![bg.0; 32], vec![bg.1; 32]);
            for &(in_a, lane, v) in sets {
                if in_a {
                    a[lane] = v;
                } else {
                    b[lane] = v;
                }
            }
            let c = c.unwrap_or(C_BG[cases.len() % C_BG.len()]);
            cases.push(bf16_case(format!("{label}; {bg_name}"), c, &a, &b));
        };
        // (a) A's NaN vs B's NaN in one product, every lane.
        for l in 0..32 {
            for (x, y) in [(SNAN_A, QNAN_B), (QNAN_B, SNAN_A), (SNAN_C, QNAN_D), (QNAN_D, SNAN_C)] {
                push(format!("A NaN {x:04x} vs B NaN {y:04x} at lane {l}"), None, &[(true, l, x), (false, l, y)]);
            }
        }
        // (b) a later NaN product vs the earlier NaN accumulator, same chain.
        for e in 0..2 {
            for k1 in 0..16 {
                for k2 in k1 + 1..16 {
                    for (s1, s2) in [(true, true), (true, false), (false, true), (false, false)] {
                        for (n1, n2) in [(SNAN_A, QNAN_B), (QNAN_B, SNAN_A)] {
                            push(
                                format!("chain {e}: NaN {n1:04x} at pair {k1} (in A: {s1}) then NaN {n2:04x} at pair {k2} (in A: {s2})"),
                                None,
                                &[(s1, 2 * k1 + e, n1), (s2, 2 * k2 + e, n2)],
                            );
                        }
                    }
                }
            }
        }
        // (c) even chain NaN vs odd chain NaN, all pair positions.
        for k1 in 0..16 {
            for k2 in 0..16 {
                for (ne, no) in [(SNAN_A, QNAN_B), (QNAN_B, SNAN_A)] {
                    push(
                        format!("even NaN {ne:04x} at pair {k1} vs odd NaN {no:04x} at pair {k2}"),
                        None,
                        &[(k1 % 2 == 0, 2 * k1, ne), (k2 % 2 == 1, 2 * k2 + 1, no)],
                    );
                }
            }
        }
        // (d) C (NaN or inf) vs what the chains produce.
        for c in [C_SNAN, C_QNAN, C_INF, C_NEG_INF] {
            for l in 0..32 {
                let producers: [Event<'_>; 5] = [
                    ("NaN in A", &[(true, l, SNAN_A)]),
                    ("NaN in B", &[(false, l, QNAN_B)]),
                    ("inf*0", &[(true, l, INF), (false, l, ZERO)]),
                    ("+inf product", &[(true, l, INF), (false, l, ONE)]),
                    ("-inf product", &[(true, l, NEG_INF), (false, l, ONE)]),
                ];
                for (what, sets) in producers {
                    push(format!("C {c:#010x} vs {what} at lane {l}"), Some(c), sets);
                }
            }
        }
        // (e) NaN vs inf*0 in the same chain, either order (the oracle's
        // interpretation: inf*0 makes the default NaN only without a NaN
        // operand).
        for e in 0..2 {
            for k1 in 0..16 {
                for k2 in 0..16 {
                    if k1 == k2 {
                        continue;
                    }
                    let invalid: [[Placement; 2]; 2] = [
                        [(true, 2 * k2 + e, INF), (false, 2 * k2 + e, ZERO)],
                        [(true, 2 * k2 + e, ZERO), (false, 2 * k2 + e, NEG_INF)],
                    ];
                    for inv in invalid {
                        for nan in [(true, 2 * k1 + e, SNAN_A), (false, 2 * k1 + e, QNAN_B)] {
                            push(
                                format!(
                                    "chain {e}: NaN {:04x} at pair {k1}, inf*0 ({:04x}*{:04x}) at pair {k2}",
                                    nan.2, inv[0].2, inv[1].2
                                ),
                                None,
                                &[nan, inv[0], inv[1]],
                            );
                        }
                    }
                }
            }
        }
        // (f) inf*0 in one chain, NaN in the other.
        for k1 in 0..16 {
            for k2 in 0..16 {
                push(
                    format!("even inf*0 at pair {k1}, odd NaN at pair {k2}"),
                    None,
                    &[(true, 2 * k1, INF), (false, 2 * k1, ZERO), (true, 2 * k2 + 1, SNAN_C)],
                );
                push(
                    format!("even NaN at pair {k1}, odd inf*0 at pair {k2}"),
                    None,
                    &[(false, 2 * k1, QNAN_D), (true, 2 * k2 + 1, ZERO), (false, 2 * k2 + 1, INF)],
                );
            }
        }
        // (g) inf - inf within a chain and between the chains.
        for e in 0..2 {
            for k1 in 0..16 {
                for k2 in 0..16 {
                    if k1 != k2 {
                        push(
                            format!("chain {e}: +inf at pair {k1}, -inf at pair {k2}"),
                            None,
                            &[(true, 2 * k1 + e, INF), (true, 2 * k2 + e, NEG_INF)],
                        );
                    }
                }
            }
        }
        for k1 in 0..16 {
            for k2 in 0..16 {
                push(
                    format!("even +inf at pair {k1}, odd -inf at pair {k2}"),
                    None,
                    &[(true, 2 * k1, INF), (false, 2 * k2 + 1, NEG_INF)],
                );
                push(
                    format!("even -inf at pair {k1}, odd +inf at pair {k2}"),
                    None,
                    &[(false, 2 * k1, NEG_INF), (true, 2 * k2 + 1, INF)],
                );
            }
        }
        // Three events in one chain, every order: +inf, -inf, inf*0, NaN in A, NaN in B.
        let events: [Event<'_>; 5] = [
            ("+inf", &[(true, 0, INF), (false, 0, ONE)]),
            ("-inf", &[(true, 0, NEG_INF), (false, 0, ONE)]),
            ("inf*0", &[(true, 0, INF), (false, 0, ZERO)]),
            ("NaN in A", &[(true, 0, SNAN_C), (false, 0, ONE)]),
            ("NaN in B", &[(true, 0, ONE), (false, 0, QNAN_D)]),
        ];
        for e in 0..2 {
            for x in 0..5 {
                for y in 0..5 {
                    for z in 0..5 {
                        if x == y || y == z || x == z {
                            continue;
                        }
                        let mut sets = Vec::new();
                        for (ev, k) in [(x, 1), (y, 6), (z, 14)] {
                            sets.extend(events[ev].1.iter().map(|&(in_a, _, v)| (in_a, 2 * k + e, v)));
                        }
                        let label =
                            format!("chain {e}: {}, {}, {} at pairs 1, 6, 14", events[x].0, events[y].0, events[z].0);
                        push(label, None, &sets);
                    }
                }
            }
        }
        // (h) NaN times 0, inf, subnormal, -0 (quieting, sign kept).
        for l in 0..32 {
            for other in [ZERO, INF, SUB, NEG_ZERO] {
                push(
                    format!("A NaN {SNAN_C:04x} * {other:04x} at lane {l}"),
                    None,
                    &[(true, l, SNAN_C), (false, l, other)],
                );
                push(
                    format!("{other:04x} * B NaN {SNAN_A:04x} at lane {l}"),
                    None,
                    &[(true, l, other), (false, l, SNAN_A)],
                );
            }
        }
    }
    cases
}

/// Every combination of per-lane values over `lanes` lanes (lane-specific
/// NaNs, so the winner's payload tells which lane it came from).
fn all_vectors(lanes: usize, values: &dyn Fn(usize) -> Vec<u16>) -> Vec<Vec<u8>> {
    let per_lane: Vec<Vec<u16>> = (0..lanes).map(values).collect();
    let mut out: Vec<Vec<u16>> = vec![Vec::new()];
    for vals in &per_lane {
        out = out.iter().flat_map(|p| vals.iter().map(move |&v| [p.as_slice(), &[v]].concat())).collect();
    }
    out.iter().map(|v| bytes16(v)).collect()
}

/// TDPBF16PS: printed probes, the positional cases over one TDP and two,
/// and exhaustive small grids.
pub fn tdpbf16ps(report: &mut Report) {
    let r16 = TdpRoutine::new(TdpOp::Bf16ps, 16, 1);
    // Probes for the rules, printed so the report shows what the
    // hardware did; each is also checked against the oracle below.
    let probe = |name: &str, c: u32, sets: &[Placement], other_reading: u32| {
        let (mut a, mut b) = ([ZERO; 32], [ZERO; 32]);
        for &(in_a, l, v) in sets {
            if in_a {
                a[l] = v
            } else {
                b[l] = v
            }
        }
        let hw = r16.run_one(c, &bytes16(&a), &bytes16(&b));
        let model = tdpbf16ps_bits(c, &a, &b);
        eprintln!(
            "probe TDPBF16PS {name}: hardware {hw:#010x}, oracle {model:#010x}, other reading {other_reading:#010x}"
        );
        bf16_case(format!("probe: {name}"), c, &a, &b)
    };
    let probes = vec![
        probe("A NaN vs B NaN in one product", 0, &[(true, 0, SNAN_A), (false, 0, QNAN_B)], 0xFFC2_0000),
        probe(
            "NaN acc (pair 0) then inf*0 (pair 1), same chain",
            0,
            &[(true, 0, SNAN_A), (false, 0, ONE), (true, 2, INF)],
            DEFAULT_NAN,
        ),
        probe(
            "inf*0 (pair 0) then NaN (pair 1), same chain",
            0,
            &[(true, 0, INF), (true, 2, SNAN_A), (false, 2, ONE)],
            DEFAULT_NAN,
        ),
        probe(
            "NaN (pair 0) then later NaN (pair 1), same chain",
            0,
            &[(true, 0, SNAN_A), (false, 0, ONE), (false, 2, QNAN_B)],
            0x7FC1_0000,
        ),
        probe("even inf*0 vs odd NaN", 0, &[(true, 0, INF), (true, 1, QNAN_B)], 0xFFC2_0000),
        probe("even NaN vs odd NaN", 0, &[(true, 0, QNAN_B), (true, 1, SNAN_A)], 0x7FC1_0000),
        probe("C qNaN vs chain NaN", C_QNAN, &[(true, 0, SNAN_A)], 0x7FC1_0000),
        probe("C sNaN quieted", C_SNAN, &[(true, 0, ONE), (false, 0, ONE)], C_SNAN),
        probe("C +inf vs t -inf", C_INF, &[(true, 0, NEG_INF), (false, 0, ONE)], C_INF),
        probe("C NaN vs chain inf*0", C_QNAN, &[(true, 0, INF)], DEFAULT_NAN),
    ];
    let mut fam = Family::new("TDPBF16PS NaN/inf probes", Kind::F32);
    run_cases(&mut fam, &r16, &probes);
    report.add(fam);

    let cases = nan_cases();
    for (pairs, tdps) in [(16, 1), (8, 2)] {
        let r = TdpRoutine::new(TdpOp::Bf16ps, pairs, tdps);
        let mut fam = Family::new(format!("TDPBF16PS NaN/inf positional, {pairs} pairs x {tdps} TDP"), Kind::F32);
        run_cases(&mut fam, &r, &cases);
        report.add(fam);
    }

    // Exhaustive over 2 pairs (4 lanes): A lanes in {1, 0, +inf, NaN},
    // B lanes in {1, 0, -inf, NaN}, lane-specific NaNs (sNaN/qNaN
    // alternating), every row with every column, 5 C values; as one
    // TDP of 2 pairs and as two TDPs of 1 pair.
    let a_vals =
        |l: usize| vec![ONE, ZERO, INF, if l.is_multiple_of(2) { 0x7F81 + l as u16 } else { 0x7FC1 + l as u16 }];
    let b_vals =
        |l: usize| vec![ONE, ZERO, NEG_INF, if l.is_multiple_of(2) { 0xFFD1 + l as u16 } else { 0xFF91 + l as u16 }];
    let rows = all_vectors(4, &a_vals);
    let cols = all_vectors(4, &b_vals);
    let cs = [C_ONE, C_INF, C_NEG_INF, C_SNAN, C_QNAN];
    for (pairs, tdps) in [(2, 1), (1, 2)] {
        let r = TdpRoutine::new(TdpOp::Bf16ps, pairs, tdps);
        let mut fam =
            Family::new(format!("TDPBF16PS NaN/inf exhaustive 4 lanes, {pairs} pairs x {tdps} TDP"), Kind::F32);
        run_grid(&mut fam, &r, &rows, &cols, &cs, "exhaustive {1,0,inf,NaN}^4 x {1,0,-inf,NaN}^4");
        report.add(fam);
    }
    // Exhaustive over 1 pair with a richer value set.
    let rich = |nan_s: u16, nan_q: u16| vec![ONE, NEG_ONE, ZERO, NEG_ZERO, INF, NEG_INF, nan_s, nan_q, SUB, BF16_MAX];
    let rows = all_vectors(2, &|l| rich(0x7F81 + l as u16, 0xFFC3 + l as u16));
    let cols = all_vectors(2, &|l| rich(0xFF85 + l as u16, 0x7FC7 + l as u16));
    let cs = [0, 0x8000_0000, C_ONE, C_INF, C_NEG_INF, C_SNAN, C_QNAN, 0x0000_0001, 0x7F7F_FFFF];
    let r = TdpRoutine::new(TdpOp::Bf16ps, 1, 1);
    let mut fam = Family::new("TDPBF16PS NaN/inf exhaustive 1 pair", Kind::F32);
    run_grid(&mut fam, &r, &rows, &cols, &cs, "exhaustive 1 pair, 10 values per lane");
    report.add(fam);
}

/// VDPBF16PS: every slot over 8 values, and printed probes.
pub fn vdpbf16ps(report: &mut Report) {
    // Every slot (acc, src1 lo, src2 lo, src1 hi, src2 hi) over 8 values,
    // slot-specific NaN payloads.
    let slot = |s: u16| [ONE, ZERO, INF, NEG_INF, 0x7F81 + s, 0xFFC5 + s, SUB, NEG_ONE];
    let accs = [C_ONE, 0, C_INF, C_NEG_INF, C_SNAN, C_QNAN, 0x0000_0001, 0x8000_0000];
    let mut lanes = Vec::new();
    for &acc in &accs {
        for a_lo in slot(0) {
            for b_lo in slot(1) {
                for a_hi in slot(2) {
                    for b_hi in slot(3) {
                        lanes.push(vdp(acc, [a_lo, a_hi], [b_lo, b_hi]));
                    }
                }
            }
        }
    }
    let probes = [
        ("acc NaN, inf*0 in the high pair", vdp(C_SNAN, [ONE, INF], [ONE, ZERO]), DEFAULT_NAN),
        ("acc NaN, inf*0 in the low pair", vdp(C_SNAN, [INF, ONE], [ZERO, ONE]), DEFAULT_NAN),
        ("NaN in the high pair, inf*0 in the low pair", vdp(0, [INF, SNAN_A], [ZERO, ONE]), DEFAULT_NAN),
        ("inf*0 in the high pair, NaN in the low pair", vdp(0, [SNAN_A, INF], [ONE, ZERO]), DEFAULT_NAN),
        ("src1 NaN vs src2 NaN in the low pair", vdp(0, [SNAN_A, ONE], [QNAN_B, ONE]), 0xFFC2_0000),
        ("low pair NaN vs high pair NaN", vdp(0, [QNAN_B, SNAN_A], [ONE, ONE]), 0x7FC1_0000),
    ];
    let mut fam = Family::new("VDPBF16PS NaN/inf probes", Kind::F32);
    let probe_lanes: Vec<VdpLane> = probes.iter().map(|p| p.1).collect();
    let hw = run_vdp(&mut fam, &probe_lanes, "probe");
    for ((name, l, other), hw) in probes.iter().zip(hw) {
        let model = vdpbf16ps_bits(l.acc, l.a, l.b);
        eprintln!("probe VDPBF16PS {name}: hardware {hw:#010x}, oracle {model:#010x}, other reading {other:#010x}");
    }
    report.add(fam);
    let mut fam = Family::new("VDPBF16PS NaN/inf exhaustive", Kind::F32);
    run_vdp(&mut fam, &lanes, "exhaustive 8^5");
    report.add(fam);
}
