//! [`DenseAmxSpec`]: every parameter that changes the dense AMX kernel's
//! code or its result bits (DESIGN.md, "The central contract"). It is the
//! kernel cache key, so it holds inputs only; everything derived (tile
//! palette, register plan, schedule) is computed from it by pure functions.

use crate::spec::{CInit, ElemType, SpecError};

/// How many C tiles a kernel keeps in registers: `m_tiles` x `n_tiles`.
/// At most 4 C tiles, so that at least 4 of the 8 tiles carry operands
/// (docs/AMX.md: 2x2 reached ~100 % of peak from L1, 1x4 ~86 %).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blocking {
    pub m_tiles: u8,
    pub n_tiles: u8,
}

impl Blocking {
    pub const B2X2: Blocking = Blocking { m_tiles: 2, n_tiles: 2 };
    pub const B1X4: Blocking = Blocking { m_tiles: 1, n_tiles: 4 };
    pub const B4X1: Blocking = Blocking { m_tiles: 4, n_tiles: 1 };
    /// Every blocking the generator accepts.
    pub const ALL: [Blocking; 8] = [
        Blocking { m_tiles: 1, n_tiles: 1 },
        Blocking { m_tiles: 1, n_tiles: 2 },
        Blocking { m_tiles: 2, n_tiles: 1 },
        Blocking::B2X2,
        Blocking { m_tiles: 1, n_tiles: 3 },
        Blocking { m_tiles: 3, n_tiles: 1 },
        Blocking::B1X4,
        Blocking::B4X1,
    ];
}

impl std::fmt::Display for Blocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.m_tiles, self.n_tiles)
    }
}

/// Order of tile loads and TDPs inside one K step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Schedule {
    /// Each TDP right after the loads of its operands.
    LoadThenCompute,
    /// Each TDP issued one load after its last operand's load, so a load's
    /// latency hides behind the next load (oneDNN brgemm's order; for 2x2:
    /// LA0 LB0 LB1 T00 LA1 T01 T10 T11, docs/AMX.md).
    Pipelined,
}

/// How B tiles are loaded. B streams through once per block row, so the
/// non-temporal hint (TILELOADDT1) keeps it from evicting the A slice that
/// every N block reuses from L1: +2 % (int8) to +6 % (bf16) of TMUL peak on
/// the 512x512x4096 GEMM here, although a single T1 load is slower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BLoad {
    Temporal,
    NonTemporal,
}

/// A dense AMX GEMM micro-kernel: C block (+)= A block x B panel(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DenseAmxSpec {
    pub elem: ElemType,
    pub blocking: Blocking,
    pub schedule: Schedule,
    /// VNNI groups (dwords) of K per TDP, 1..=16. For bf16 these are the
    /// pairs per instruction, which change the result bits
    /// (docs/NUMERICS.md, "K-split").
    pub k_groups_per_tdp: u8,
    pub c_init: CInit,
    /// Rows in the last tile row of the block (1..=16): the M tail.
    pub last_tile_rows: u8,
    /// Columns in the last tile column of the block (1..=16): the N tail.
    pub last_tile_cols: u8,
    /// Lines (64 bytes) of each of the two prefetch streams (the next A
    /// slice and the next B slice, see `DenseAmxArgs`) brought into L2 per
    /// K step, 0..=4. Without it the first touch of each A slice and B
    /// slice waits on L3 while the TMUL idles (+2-3 % of peak at
    /// 512x512x4096 here, kernels/PERFORMANCE.md).
    pub prefetch_lines: u8,
    pub b_load: BLoad,
}

impl DenseAmxSpec {
    /// The full-block spec with the defaults measured fastest here: 16 x 16
    /// tiles, 16 groups per TDP, LoadThenCompute, prefetch, T1 loads of B.
    pub const fn new(elem: ElemType, blocking: Blocking, c_init: CInit) -> DenseAmxSpec {
        DenseAmxSpec {
            elem,
            blocking,
            schedule: Schedule::LoadThenCompute,
            k_groups_per_tdp: 16,
            c_init,
            last_tile_rows: 16,
            last_tile_cols: 16,
            prefetch_lines: 2,
            b_load: BLoad::NonTemporal,
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        if !Blocking::ALL.contains(&self.blocking) {
            return Err(SpecError::Blocking { m_tiles: self.blocking.m_tiles, n_tiles: self.blocking.n_tiles });
        }
        if !(1..=16).contains(&self.k_groups_per_tdp) {
            return Err(SpecError::KGroups(self.k_groups_per_tdp));
        }
        if self.prefetch_lines > 4 {
            return Err(SpecError::Prefetch(self.prefetch_lines));
        }
        for (what, value) in [("rows", self.last_tile_rows), ("cols", self.last_tile_cols)] {
            if !(1..=16).contains(&value) {
                return Err(SpecError::Tail { what, value });
            }
        }
        Ok(())
    }

    /// Bytes of K consumed per step (one TDP per C tile): A advances by this.
    pub const fn a_step_bytes(&self) -> usize {
        self.k_groups_per_tdp as usize * 4
    }

    /// Bytes of packed B per panel per step (k_groups rows of 64 bytes).
    pub const fn b_step_bytes(&self) -> usize {
        self.k_groups_per_tdp as usize * 64
    }

    /// Elements of K per step.
    pub const fn k_per_step(&self) -> usize {
        self.k_groups_per_tdp as usize * self.elem.elems_per_group()
    }

    /// Rows of C the block covers.
    pub const fn block_rows(&self) -> usize {
        (self.blocking.m_tiles as usize - 1) * 16 + self.last_tile_rows as usize
    }

    /// Columns of C the block covers.
    pub const fn block_cols(&self) -> usize {
        (self.blocking.n_tiles as usize - 1) * 16 + self.last_tile_cols as usize
    }

    /// A short stable name, used in dumps, benches and error messages.
    pub fn name(&self) -> String {
        format!(
            "amx_{}_{}_{}_k{}_{}_r{}c{}_pf{}{}",
            self.elem.name(),
            self.blocking,
            match self.schedule {
                Schedule::LoadThenCompute => "seq",
                Schedule::Pipelined => "pipe",
            },
            self.k_groups_per_tdp,
            match self.c_init {
                CInit::Zero => "zero",
                CInit::Load => "acc",
            },
            self.last_tile_rows,
            self.last_tile_cols,
            self.prefetch_lines,
            match self.b_load {
                BLoad::Temporal => "",
                BLoad::NonTemporal => "_bt1",
            }
        )
    }
}
