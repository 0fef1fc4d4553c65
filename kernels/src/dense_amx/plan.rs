//! The pure stages between a spec and its code: which tile holds what
//! (palette), and in which order one K step loads operands and issues TDPs
//! (schedule). Both are checked here, on any machine, without AMX.

use super::{DenseAmxSpec, Schedule};
use crate::encoder::Tmm;
use crate::tile_config::{TileConfig, TileConfigError};

/// One action of a K step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Load A's tile row `i` into its operand tile.
    LoadA(usize),
    /// Load B's tile column `j` into its operand tile.
    LoadB(usize),
    /// `C[i][j] += A[i] x B[j]`.
    Tdp(usize, usize),
}

/// The tile palette of a kernel: which tile holds each C tile and each A/B
/// operand, and the matching LDTILECFG image.
#[derive(Clone, Debug)]
pub struct TilePlan {
    pub c: Vec<Vec<Tmm>>,
    pub a: Vec<Tmm>,
    pub b: Vec<Tmm>,
    pub config: TileConfig,
    pub steps: Vec<Step>,
}

/// Assigns `count` operands to `regs` tiles. With enough tiles each operand
/// gets its own; otherwise the last operand (the only one that can be a
/// tail with a smaller shape) keeps a dedicated tile and the others rotate
/// through the rest, so that a tile never holds two shapes.
fn assign(count: usize, regs: &[Tmm]) -> Vec<Tmm> {
    if count <= regs.len() {
        return regs[..count].to_vec();
    }
    let (rotating, last) = regs.split_at(regs.len() - 1);
    (0..count).map(|i| if i + 1 == count { last[0] } else { rotating[i % rotating.len()] }).collect()
}

impl TilePlan {
    pub fn new(spec: &DenseAmxSpec) -> Result<TilePlan, TileConfigError> {
        let (mt, nt) = (spec.blocking.m_tiles as usize, spec.blocking.n_tiles as usize);
        let all: Vec<Tmm> = Tmm::all().collect();
        let c: Vec<Vec<Tmm>> = (0..mt).map(|i| all[i * nt..(i + 1) * nt].to_vec()).collect();
        let free = &all[mt * nt..];
        // The dimension with one tile gets one dedicated operand tile; the
        // other dimension takes what is left (rotating if it must).
        let (a, b) = if mt <= nt {
            (assign(mt, &free[..mt]), assign(nt, &free[mt..]))
        } else {
            (assign(mt, &free[nt..]), assign(nt, &free[..nt]))
        };

        let rows = |i: usize| if i + 1 == mt { spec.last_tile_rows } else { 16 };
        let colsb = |j: usize| if j + 1 == nt { spec.last_tile_cols as u16 * 4 } else { 64 };
        let k_bytes = spec.a_step_bytes() as u16;
        let mut config = TileConfig::new();
        for (i, row) in c.iter().enumerate() {
            for (j, &tile) in row.iter().enumerate() {
                config.set(tile, rows(i), colsb(j))?;
            }
        }
        for (i, &t) in a.iter().enumerate() {
            config.set(t, rows(i), k_bytes)?;
        }
        for (j, &t) in b.iter().enumerate() {
            config.set(t, spec.k_groups_per_tdp, colsb(j))?;
        }
        // A rotating tile must hold one shape only: recheck every operand
        // against the final config.
        for (i, &t) in a.iter().enumerate() {
            debug_assert_eq!(config.shape(t)?, (rows(i), k_bytes));
        }
        for (j, &t) in b.iter().enumerate() {
            debug_assert_eq!(config.shape(t)?, (spec.k_groups_per_tdp, colsb(j)));
        }
        let steps = schedule(spec.schedule, mt, nt);
        let plan = TilePlan { c, a, b, config, steps };
        plan.check(spec)?;
        Ok(plan)
    }

    /// Verifies the schedule: every TDP has legal shapes and reads the
    /// operand its tile holds at that moment (a rotated tile is not
    /// overwritten before the TDPs that need its old value).
    fn check(&self, spec: &DenseAmxSpec) -> Result<(), TileConfigError> {
        let mnemonic = spec.elem.tdp_op().mnemonic();
        let mut holds: Vec<Option<Step>> = vec![None; 8];
        let mut done = vec![vec![false; self.b.len()]; self.a.len()];
        for &step in &self.steps {
            match step {
                Step::LoadA(i) => holds[self.a[i].number() as usize] = Some(step),
                Step::LoadB(j) => holds[self.b[j].number() as usize] = Some(step),
                Step::Tdp(i, j) => {
                    let (c, a, b) = (self.c[i][j], self.a[i], self.b[j]);
                    self.config.check_tdp(mnemonic, c, a, b)?;
                    let stale = holds[a.number() as usize] != Some(Step::LoadA(i))
                        || holds[b.number() as usize] != Some(Step::LoadB(j));
                    if stale {
                        return Err(TileConfigError::TdpShape {
                            mnemonic,
                            dst: c,
                            a,
                            b,
                            rule: "operand tile overwritten before use (schedule bug)",
                        });
                    }
                    done[i][j] = true;
                }
            }
        }
        assert!(done.iter().flatten().all(|&d| d), "schedule misses a TDP");
        Ok(())
    }
}

/// The order of one K step. TDPs go row by row; each TDP needs the loads of
/// operands not loaded yet.
pub fn schedule(kind: Schedule, mt: usize, nt: usize) -> Vec<Step> {
    let mut loaded_a = vec![false; mt];
    let mut loaded_b = vec![false; nt];
    // (loads this TDP triggers, the TDP)
    let mut groups = Vec::new();
    for (i, a_loaded) in loaded_a.iter_mut().enumerate() {
        for (j, b_loaded) in loaded_b.iter_mut().enumerate() {
            let mut loads = Vec::new();
            if !std::mem::replace(a_loaded, true) {
                loads.push(Step::LoadA(i));
            }
            if !std::mem::replace(b_loaded, true) {
                loads.push(Step::LoadB(j));
            }
            groups.push((loads, Step::Tdp(i, j)));
        }
    }
    let mut out = Vec::new();
    match kind {
        Schedule::LoadThenCompute => {
            for (loads, tdp) in groups {
                out.extend(loads);
                out.push(tdp);
            }
        }
        Schedule::Pipelined => {
            // A TDP is held back until one more load has been issued.
            let mut pending: Vec<Step> = Vec::new();
            for (loads, tdp) in groups {
                for load in loads {
                    out.push(load);
                    if let Some(p) = pending.first().copied() {
                        // Issue the TDPs whose operands were complete before this load.
                        out.push(p);
                        pending.remove(0);
                    }
                }
                pending.push(tdp);
            }
            out.extend(pending);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense_amx::Blocking;
    use crate::spec::{CInit, ElemType, Int8Sign};
    use Step::*;

    #[test]
    fn pipelined_2x2_is_the_measured_order() {
        // docs/AMX.md: LA0 LB0 LB1 T00 LA1 T01 T10 T11 reached ~100 % of peak.
        assert_eq!(
            schedule(Schedule::Pipelined, 2, 2),
            vec![LoadA(0), LoadB(0), LoadB(1), Tdp(0, 0), LoadA(1), Tdp(0, 1), Tdp(1, 0), Tdp(1, 1)]
        );
    }

    #[test]
    fn every_blocking_tail_and_schedule_plans_legally() {
        for blocking in Blocking::ALL {
            for schedule in [Schedule::LoadThenCompute, Schedule::Pipelined] {
                for (rows, cols) in [(16, 16), (1, 16), (16, 1), (7, 13)] {
                    for elem in [ElemType::Bf16, ElemType::Int8(Int8Sign::SU)] {
                        let spec = DenseAmxSpec {
                            schedule,
                            last_tile_rows: rows,
                            last_tile_cols: cols,
                            k_groups_per_tdp: 5,
                            ..DenseAmxSpec::new(elem, blocking, CInit::Zero)
                        };
                        TilePlan::new(&spec).unwrap_or_else(|e| panic!("{}: {e}", spec.name()));
                    }
                }
            }
        }
    }

    #[test]
    fn rotation_keeps_the_tail_operand_in_its_own_tile() {
        let spec = DenseAmxSpec { last_tile_cols: 3, ..DenseAmxSpec::new(ElemType::Bf16, Blocking::B1X4, CInit::Zero) };
        let plan = TilePlan::new(&spec).unwrap();
        assert_eq!(plan.b.len(), 4);
        assert!(!plan.b[..3].contains(&plan.b[3]), "tail panel shares a tile: {:?}", plan.b);
    }
}
