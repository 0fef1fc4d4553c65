//! Families 4 and 5 (random data): K-split sensitivity (one TDP over 16
//! pairs vs two over 8 vs four over 4) and random data in every `Bf16Dist`
//! for TDPBF16PS and VDPBF16PS.

use rand::rngs::StdRng;
use tilejit::kernels::encoder::TdpOp;
use tilejit_verify::{fill_bf16, strategies::fill_f32, Bf16Dist};

use crate::avx512::{run_vdp, vdp, VdpLane};
use crate::report::{Family, Kind, Report};
use crate::routine::{bytes16, TdpRoutine};

/// `calls` calls with 16 random rows and columns of `dist` and random C
/// (`fill_f32`), all 256 outputs checked.
fn run_random_bf16(fam: &mut Family, r: &TdpRoutine, dist: Bf16Dist, calls: usize, rng: &mut StdRng) {
    let lanes = r.k_bytes() / 2;
    let label = format!("random {dist:?}");
    for _ in 0..calls {
        let mut data = vec![0u16; 32 * lanes];
        fill_bf16(dist, rng, &mut data);
        let vecs: Vec<Vec<u8>> = data.chunks(lanes).map(bytes16).collect();
        let rows: [&[u8]; 16] = std::array::from_fn(|m| vecs[m].as_slice());
        let cols: [&[u8]; 16] = std::array::from_fn(|n| vecs[16 + n].as_slice());
        let mut cf = [0f32; 256];
        fill_f32(dist, rng, &mut cf);
        let c = cf.map(f32::to_bits);
        r.check(fam, &rows, &cols, &c, &|_, _| label.clone());
    }
}

/// TDPBF16PS K-split sensitivity: the three chunkings must each match the
/// oracle and must differ from each other somewhere, or a wrong chunking
/// would go unnoticed.
pub fn k_split(report: &mut Report, rng: &mut StdRng) {
    let routines = [(16, 1), (8, 2), (4, 4)].map(|(p, t)| TdpRoutine::new(TdpOp::Bf16ps, p, t));
    for dist in [Bf16Dist::Normal, Bf16Dist::Cancellation, Bf16Dist::WideExponent] {
        let mut fams: Vec<Family> = routines
            .iter()
            .map(|r| Family::new(format!("TDPBF16PS K-split {dist:?}, {} pairs x {} TDP", r.pairs, r.tdps), Kind::F32))
            .collect();
        let (mut total, mut differ_8x2, mut differ_4x4) = (0u64, 0u64, 0u64);
        for call in 0..100 {
            let mut data = vec![0u16; 32 * 32];
            fill_bf16(dist, rng, &mut data);
            let vecs: Vec<Vec<u8>> = data.chunks(32).map(bytes16).collect();
            let rows: [&[u8]; 16] = std::array::from_fn(|m| vecs[m].as_slice());
            let cols: [&[u8]; 16] = std::array::from_fn(|n| vecs[16 + n].as_slice());
            let mut cf = [0f32; 256];
            if call % 2 == 1 {
                fill_f32(dist, rng, &mut cf);
            }
            let c = cf.map(f32::to_bits);
            let label = format!("K-split {dist:?}");
            let hw: Vec<[u32; 256]> = routines
                .iter()
                .zip(&mut fams)
                .map(|(r, f)| r.check(f, &rows, &cols, &c, &|_, _| label.clone()))
                .collect();
            for ((one, two), four) in hw[0].iter().zip(&hw[1]).zip(&hw[2]) {
                total += 1;
                differ_8x2 += u64::from(one != two);
                differ_4x4 += u64::from(one != four);
            }
        }
        eprintln!(
            "[TDPBF16PS K-split {dist:?}] one TDP over 16 pairs vs two over 8: {differ_8x2} of {total} outputs differ ({:.1} %); vs four over 4: {differ_4x4} ({:.1} %)",
            100.0 * differ_8x2 as f64 / total as f64,
            100.0 * differ_4x4 as f64 / total as f64
        );
        assert!(
            differ_8x2 > 0 && differ_4x4 > 0,
            "K-split {dist:?}: the chunkings never differed, so this test would not notice a wrong chunking"
        );
        for f in fams {
            report.add(f);
        }
    }
}

/// TDPBF16PS on random data of every distribution, five chunkings.
pub fn tdpbf16ps(report: &mut Report, rng: &mut StdRng) {
    let routines = [(16, 1), (8, 1), (5, 1), (1, 1), (8, 2)].map(|(p, t)| TdpRoutine::new(TdpOp::Bf16ps, p, t));
    for dist in Bf16Dist::ALL {
        let mut fam =
            Family::new(format!("TDPBF16PS random {dist:?} (16x1, 8x1, 5x1, 1x1, 8x2 pairs x TDPs)"), Kind::F32);
        for r in &routines {
            run_random_bf16(&mut fam, r, dist, 160, rng);
        }
        report.add(fam);
    }
}

/// VDPBF16PS on random data of every distribution.
pub fn vdpbf16ps(report: &mut Report, rng: &mut StdRng) {
    for dist in Bf16Dist::ALL {
        let n = 65_536;
        let mut ab = vec![0u16; 4 * n];
        fill_bf16(dist, rng, &mut ab);
        let mut acc = vec![0f32; n];
        fill_f32(dist, rng, &mut acc);
        let lanes: Vec<VdpLane> =
            (0..n).map(|i| vdp(acc[i].to_bits(), [ab[4 * i], ab[4 * i + 1]], [ab[4 * i + 2], ab[4 * i + 3]])).collect();
        let mut fam = Family::new(format!("VDPBF16PS random {dist:?}"), Kind::F32);
        run_vdp(&mut fam, &lanes, &format!("random {dist:?}"));
        report.add(fam);
    }
}
