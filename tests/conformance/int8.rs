//! Family 5 (int8): the four int8 TDPs (TDPBSSD, TDPBSUD, TDPBUSD,
//! TDPBUUD) and VPDPBUSD on random data and extremes, which must wrap
//! around modulo 2^32 exactly as the oracle does.

use rand::{rngs::StdRng, Rng};
use tilejit::kernels::encoder::TdpOp;
use tilejit_verify::{fill_i8, vpdpbusd, Int8Signedness};

use crate::avx512::hw_vpdpbusd;
use crate::report::{Family, Kind, Report};
use crate::routine::{int8_sign, TdpRoutine};

/// C values that make int8 accumulation wrap.
fn int8_c(rng: &mut StdRng) -> u32 {
    (match rng.random_range(0..4) {
        0 => rng.random::<i32>(),
        1 => i32::MAX - rng.random_range(0..1 << 22),
        2 => i32::MIN + rng.random_range(0..1 << 22),
        _ => rng.random_range(-1000..=1000),
    }) as u32
}

/// Exact (i64) value of the int8 dot product, to count wrapped outputs.
fn int8_exact(sign: Int8Signedness, c: u32, a: &[u8], b: &[u8]) -> i64 {
    let v = |x: u8, s: bool| if s { i64::from(x as i8) } else { i64::from(x) };
    i64::from(c as i32) + a.iter().zip(b).map(|(&x, &y)| v(x, sign.a_signed()) * v(y, sign.b_signed())).sum::<i64>()
}

/// One int8 TDP over four chunkings: random data and extremes, counting
/// the outputs that wrapped (there must be some).
pub fn tdp_wraparound(report: &mut Report, op: TdpOp, rng: &mut StdRng) {
    let sign = int8_sign(op).unwrap();
    let mut fam =
        Family::new(format!("{} random + extremes (16x1, 5x1, 1x1, 8x2)", op.mnemonic().to_uppercase()), Kind::I32);
    let mut wrapped = 0u64;
    for (pairs, tdps) in [(16, 1), (5, 1), (1, 1), (8, 2)] {
        let r = TdpRoutine::new(op, pairs, tdps);
        let kb = r.k_bytes();
        let mut count_wraps = |rows: &[&[u8]; 16], cols: &[&[u8]; 16], c: &[u32; 256], hw: &[u32; 256]| {
            for i in 0..256 {
                let exact = int8_exact(sign, c[i], rows[i / 16], cols[i % 16]);
                wrapped += u64::from(exact != i64::from(hw[i] as i32));
            }
        };
        for _ in 0..30 {
            let mut data = vec![0u8; 32 * kb];
            fill_i8(rng, &mut data);
            let rows: [&[u8]; 16] = std::array::from_fn(|m| &data[m * kb..(m + 1) * kb]);
            let cols: [&[u8]; 16] = std::array::from_fn(|n| &data[(16 + n) * kb..(17 + n) * kb]);
            let c: [u32; 256] = std::array::from_fn(|_| int8_c(rng));
            let hw = r.check(&mut fam, &rows, &cols, &c, &|_, _| "random".into());
            count_wraps(&rows, &cols, &c, &hw);
        }
        // Extremes: uniform and alternating 127/128/255/1/0 vectors, C at
        // the ends of the i32 range.
        let pattern = |x: u8, y: u8| (0..kb).map(|i| if i % 2 == 0 { x } else { y }).collect::<Vec<u8>>();
        let mut vecs: Vec<Vec<u8>> =
            [(0x7F, 0x7F), (0x80, 0x80), (0xFF, 0xFF), (0x01, 0x01), (0, 0), (0x80, 0x7F), (0xFF, 0x01), (0x81, 0x80)]
                .iter()
                .map(|&(x, y)| pattern(x, y))
                .collect();
        for _ in 0..8 {
            let mut v = vec![0u8; kb];
            fill_i8(rng, &mut v);
            vecs.push(v);
        }
        let cs = [i32::MAX, i32::MAX - 1, i32::MIN, i32::MIN + 1, 0, -1, i32::MAX - 100_000, i32::MIN + 100_000];
        let rows: [&[u8]; 16] = std::array::from_fn(|m| vecs[m].as_slice());
        for &c in &cs {
            let c = [c as u32; 256];
            let hw = r.check(&mut fam, &rows, &rows, &c, &|_, _| "extremes".into());
            count_wraps(&rows, &rows, &c, &hw);
        }
    }
    eprintln!("[{}] {wrapped} outputs wrapped modulo 2^32", op.mnemonic().to_uppercase());
    assert!(wrapped > 0, "{}: no output wrapped; the wrap-around is not tested", op.mnemonic());
    report.add(fam);
}

/// VPDPBUSD on random data and extremes, counting the lanes that wrapped
/// (there must be some). Caller has checked AVX512_VNNI.
pub fn vpdpbusd_wraparound(report: &mut Report, rng: &mut StdRng) {
    let mut fam = Family::new("VPDPBUSD random + extremes", Kind::I32);
    let mut wrapped = 0u64;
    let mut run = |fam: &mut Family, acc: [i32; 16], a: [u8; 64], b: [u8; 64]| {
        // SAFETY: features_or_skip checked avx512f/bw/vnni.
        let hw = unsafe { hw_vpdpbusd(acc, a, b) };
        for i in 0..16 {
            let (la, lb): ([u8; 4], [u8; 4]) =
                (a[4 * i..4 * i + 4].try_into().unwrap(), b[4 * i..4 * i + 4].try_into().unwrap());
            let expected = vpdpbusd(acc[i], la, lb);
            wrapped += u64::from(int8_exact(Int8Signedness::US, acc[i] as u32, &la, &lb) != i64::from(hw[i]));
            fam.check(expected as u32, hw[i] as u32, || {
                format!("VPDPBUSD acc={:#010x} ({}) src1(u8)={la:02x?} src2(s8)={lb:02x?}", acc[i], acc[i])
            });
        }
    };
    for _ in 0..8192 {
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        fill_i8(rng, &mut a);
        fill_i8(rng, &mut b);
        let acc = std::array::from_fn(|_| int8_c(rng) as i32);
        run(&mut fam, acc, a, b);
    }
    let ext = [0u8, 1, 127, 128, 129, 255];
    let accs = [i32::MAX, i32::MAX - 1, i32::MIN, i32::MIN + 1, 0, -1, i32::MAX - 200_000, i32::MIN + 200_000];
    for &x in &ext {
        for &y in &ext {
            for chunk in accs.chunks(8) {
                let acc = std::array::from_fn(|i| chunk[i % 8]);
                run(&mut fam, acc, [x; 64], [y; 64]);
            }
        }
    }
    eprintln!("[VPDPBUSD] {wrapped} lanes wrapped modulo 2^32");
    assert!(wrapped > 0, "VPDPBUSD: no lane wrapped; the wrap-around is not tested");
    report.add(fam);
}
