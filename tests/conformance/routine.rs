//! The JIT routine for the AMX dot products ([`TdpRoutine`]), built with our
//! encoder, its 64-byte-aligned tile buffers, and the drivers that feed it
//! labelled cases ([`run_cases`]) or every row with every column
//! ([`run_grid`]), checking all 256 outputs against the oracle.

use std::mem::transmute;

use dynasmrt::{dynasm, DynasmApi};
use tilejit::kernels::encoder::{self as enc, Gpr, Mem, Scale, TdpOp, Tmm};
use tilejit::kernels::jit::{CodeBuilder, JitCode};
use tilejit::kernels::tile_config::TileConfig;
use tilejit_verify::{tdpb_dot, tdpbf16ps_bits, Int8Signedness};

use crate::report::Family;

/// Bytes per tile row and the row stride of every tile buffer.
const ROW: usize = 64;
/// One tile buffer: 16 rows of 64 bytes.
const TILE: usize = 16 * ROW;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct TileBuf([u8; TILE]);

/// `tileloadd C; (tileloadd A; tileloadd B; tdp C, A, B) x tdps;
/// tilestored C; tilerelease; ret`, with C 16 x 64 bytes, A 16 x 4*pairs
/// bytes and B pairs x 64 bytes (so K per instruction = `pairs`).
///
/// Calling convention (sysv64): rdi = C tile, rsi = `tdps` A tiles, rdx =
/// `tdps` B tiles, each tile 1 KiB and 64-byte aligned, rows 64 bytes apart
/// (rcx holds the stride).
pub struct TdpRoutine {
    op: TdpOp,
    pub pairs: usize,
    pub tdps: usize,
    code: JitCode,
    _config: Box<TileConfig>,
}

impl TdpRoutine {
    pub fn new(op: TdpOp, pairs: usize, tdps: usize) -> TdpRoutine {
        assert!((1..=16).contains(&pairs) && tdps >= 1);
        let (c, a, b) = (Tmm::TMM0, Tmm::TMM1, Tmm::TMM2);
        let mut config = Box::new(TileConfig::new());
        config.set(c, 16, ROW as u16).unwrap();
        config.set(a, 16, 4 * pairs as u16).unwrap();
        config.set(b, pairs as u8, ROW as u16).unwrap();
        config.check_tdp(op.mnemonic(), c, a, b).unwrap();
        let tile = |base: Gpr, index: usize| {
            Mem::base_disp(base, (index * TILE) as i32).with_index(Gpr::RCX, Scale::S1).unwrap()
        };
        let mut cb = CodeBuilder::new().unwrap();
        let entry = cb.offset();
        dynasm!(cb.ops
            ; .arch x64
            ; mov rax, QWORD &*config as *const TileConfig as i64
            ; mov ecx, ROW as i32
        );
        cb.emit(enc::ldtilecfg(Mem::base(Gpr::RAX)));
        cb.emit(enc::tileloadd(c, tile(Gpr::RDI, 0)).unwrap());
        for j in 0..tdps {
            cb.emit(enc::tileloadd(a, tile(Gpr::RSI, j)).unwrap());
            cb.emit(enc::tileloadd(b, tile(Gpr::RDX, j)).unwrap());
            cb.emit(enc::tdp(op, c, a, b).unwrap());
        }
        cb.emit(enc::tilestored(tile(Gpr::RDI, 0), c).unwrap());
        cb.emit(enc::tilerelease());
        dynasm!(cb.ops ; .arch x64 ; ret);
        let code = cb.finish(entry).unwrap();
        TdpRoutine { op, pairs, tdps, code, _config: config }
    }

    /// Bytes of one A row (= one B column) over all TDPs.
    pub fn k_bytes(&self) -> usize {
        4 * self.pairs * self.tdps
    }

    fn name(&self) -> String {
        format!("{} {} pairs x {} TDP", self.op.mnemonic().to_uppercase(), self.pairs, self.tdps)
    }

    /// Runs the routine. `rows[m]` is A row m and `cols[n]` B column n, both
    /// in lane order (bytes `4k .. 4k+4` are pair k; TDP j takes pairs
    /// `j*pairs ..`); `c` is C row-major. Returns C after the TDPs.
    ///
    /// B is written in VNNI layout: tile row k holds pair k of all 16
    /// columns, column n at bytes `4n .. 4n+4` (for bf16: B[k][2n], B[k][2n+1]).
    fn run(&self, rows: &[&[u8]; 16], cols: &[&[u8]; 16], c: &[u32; 256]) -> [u32; 256] {
        let kb = 4 * self.pairs;
        let mut a = vec![TileBuf([0; TILE]); self.tdps];
        let mut b = vec![TileBuf([0; TILE]); self.tdps];
        for (j, (a_tile, b_tile)) in a.iter_mut().zip(&mut b).enumerate() {
            for (m, row) in rows.iter().enumerate() {
                assert_eq!(row.len(), self.k_bytes());
                a_tile.0[m * ROW..m * ROW + kb].copy_from_slice(&row[j * kb..(j + 1) * kb]);
            }
            for (n, col) in cols.iter().enumerate() {
                assert_eq!(col.len(), self.k_bytes());
                for k in 0..self.pairs {
                    let src = j * kb + 4 * k;
                    b_tile.0[k * ROW + 4 * n..k * ROW + 4 * n + 4].copy_from_slice(&col[src..src + 4]);
                }
            }
        }
        let mut ct = TileBuf([0; TILE]);
        for (i, v) in c.iter().enumerate() {
            ct.0[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        // SAFETY: the routine reads one C tile, `tdps` A and B tiles (1 KiB
        // each, all in bounds) and writes the C tile; AMX permission was
        // granted by amx_ready() in the caller's skip check.
        unsafe {
            let f: extern "sysv64" fn(*mut u8, *const u8, *const u8) = transmute(self.code.entry_ptr());
            f(ct.0.as_mut_ptr(), a.as_ptr().cast(), b.as_ptr().cast());
        }
        std::array::from_fn(|i| u32::from_le_bytes(ct.0[4 * i..4 * i + 4].try_into().unwrap()))
    }

    /// The oracle for one output with this routine's chunking: TDP j is one
    /// `tdpbf16ps_bits` (or `tdpb_dot`) call on pairs `j*pairs ..`, its C
    /// the previous TDP's result.
    fn oracle(&self, c: u32, a: &[u8], b: &[u8]) -> u32 {
        let kb = 4 * self.pairs;
        let mut acc = c;
        for j in 0..self.tdps {
            let (a, b) = (&a[j * kb..(j + 1) * kb], &b[j * kb..(j + 1) * kb]);
            acc = match int8_sign(self.op) {
                None => tdpbf16ps_bits(acc, &lanes16(a), &lanes16(b)),
                Some(sign) => tdpb_dot(sign, acc as i32, a, b) as u32,
            };
        }
        acc
    }

    fn describe(&self, c: u32, a: &[u8], b: &[u8]) -> String {
        let kb = 4 * self.pairs;
        let side = |x: &[u8]| {
            x.chunks(kb)
                .map(|t| match self.op {
                    TdpOp::Bf16ps => lanes16(t).iter().map(|v| format!("{v:04x}")).collect::<Vec<_>>().join(" "),
                    _ => t.iter().map(|v| format!("{v:02x}")).collect::<Vec<_>>().join(" "),
                })
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let c = match self.op {
            TdpOp::Bf16ps => format!("{c:#010x}"),
            _ => format!("{c:#010x} ({})", c as i32),
        };
        format!("C={c} A=[{}] B=[{}]", side(a), side(b))
    }

    /// Runs one call and checks all 256 outputs; returns the hardware's C.
    pub fn check(
        &self,
        fam: &mut Family,
        rows: &[&[u8]; 16],
        cols: &[&[u8]; 16],
        c: &[u32; 256],
        label: &dyn Fn(usize, usize) -> String,
    ) -> [u32; 256] {
        let hw = self.run(rows, cols, c);
        // The diagonal first: with `run_cases` it holds the labelled cases,
        // so those lead the list of shown mismatches.
        let diagonal = (0..16).map(|m| (m, m));
        let others = (0..256).map(|i| (i / 16, i % 16)).filter(|(m, n)| m != n);
        for (m, n) in diagonal.chain(others) {
            let i = m * 16 + n;
            let expected = self.oracle(c[i], rows[m], cols[n]);
            fam.check(expected, hw[i], || {
                format!("{} [{}] (m={m}, n={n}) {}", self.name(), label(m, n), self.describe(c[i], rows[m], cols[n]))
            });
        }
        hw
    }

    /// One output on its own (all rows and columns the same).
    pub fn run_one(&self, c: u32, a: &[u8], b: &[u8]) -> u32 {
        self.run(&[a; 16], &[b; 16], &[c; 256])[0]
    }
}

/// The oracle's signedness of an int8 TDP; `None` for TDPBF16PS.
pub fn int8_sign(op: TdpOp) -> Option<Int8Signedness> {
    match op {
        TdpOp::Bssd => Some(Int8Signedness::SS),
        TdpOp::Bsud => Some(Int8Signedness::SU),
        TdpOp::Busd => Some(Int8Signedness::US),
        TdpOp::Buud => Some(Int8Signedness::UU),
        TdpOp::Bf16ps => None,
    }
}

fn lanes16(bytes: &[u8]) -> Vec<u16> {
    bytes.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]])).collect()
}

/// bf16 lanes as the little-endian bytes of an A row or B column.
pub fn bytes16(lanes: &[u16]) -> Vec<u8> {
    lanes.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// One labelled output: C, the A row and the B column (lane order, all TDPs).
pub struct Case {
    label: String,
    c: u32,
    a: Vec<u8>,
    b: Vec<u8>,
}

pub fn bf16_case(label: impl Into<String>, c: u32, a: &[u16], b: &[u16]) -> Case {
    Case { label: label.into(), c, a: bytes16(a), b: bytes16(b) }
}

/// Runs cases 16 at a time: A row m = case m, B column n = case n, so the
/// diagonal is the labelled cases and the off-diagonal outputs are extra
/// combinations (A of one case with B and some C of others), also checked.
pub fn run_cases(fam: &mut Family, r: &TdpRoutine, cases: &[Case]) {
    for chunk in cases.chunks(16) {
        let at = |i: usize| &chunk[i % chunk.len()];
        let rows: [&[u8]; 16] = std::array::from_fn(|m| at(m).a.as_slice());
        let cols: [&[u8]; 16] = std::array::from_fn(|n| at(n).b.as_slice());
        let c: [u32; 256] = std::array::from_fn(|i| {
            let (m, n) = (i / 16, i % 16);
            if m == n {
                at(m).c
            } else {
                at((m + 5 * n) % 16).c
            }
        });
        let label = |m: usize, n: usize| {
            if m == n {
                at(m).label.clone()
            } else {
                format!("cross: A of '{}', B of '{}'", at(m).label, at(n).label)
            }
        };
        r.check(fam, &rows, &cols, &c, &label);
    }
}

/// Every row with every column, once per C value (C uniform per call).
pub fn run_grid(fam: &mut Family, r: &TdpRoutine, rows: &[Vec<u8>], cols: &[Vec<u8>], cs: &[u32], label: &str) {
    for rc in rows.chunks(16) {
        for cc in cols.chunks(16) {
            let rws: [&[u8]; 16] = std::array::from_fn(|m| rc[m % rc.len()].as_slice());
            let cls: [&[u8]; 16] = std::array::from_fn(|n| cc[n % cc.len()].as_slice());
            for &c in cs {
                r.check(fam, &rws, &cls, &[c; 256], &|_, _| label.to_string());
            }
        }
    }
}
