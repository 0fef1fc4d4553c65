//! The AVX-512 path: any M over the decode-shaped kernels of
//! `tilejit_kernels::dense_avx512`, which read the same packed B as AMX.
//!
//! A is widened (bf16 -> f32 for the chains, exact) or copied into rows
//! zero padded to whole K steps once per call; then for each K block (the
//! packed B's), each thread walks its range of N blocks for every group of
//! up to 16 rows. Every output lives in a register for one kernel call, so
//! B is read once per row group and K block. Threads take units of a few
//! panels over the whole K (never a split of K), handed out dynamically.

use std::sync::Arc;

use tilejit_kernels::dense_avx512::{int8_col_bias, DenseAvx512Args, DenseAvx512Kernel};
use tilejit_kernels::dense_avx512::{Avx512Kind, DenseAvx512Spec};
use tilejit_kernels::jit::GenerateError;
use tilejit_kernels::pack::AlignedBytes;
use tilejit_kernels::spec::CInit;

use tilejit_verify::emu::Region;

use super::{GemmError, GemmOptions, Problem};
use crate::emulate::Executor;
use crate::isa::{Isa, Unsupported};
use tilejit_kernels::cache::KernelCache;

/// Rows of C per kernel call at most (the kernels take 1..=16).
const MAX_ROWS: usize = 16;
/// Widest block tried; the register budget may allow fewer panels.
const MAX_PANELS: u8 = 8;
/// Work units per thread when several threads share a call.
const UNITS_PER_THREAD: usize = 4;

fn kernel(spec: DenseAvx512Spec) -> Result<Arc<DenseAvx512Kernel>, GenerateError> {
    static CACHE: KernelCache<DenseAvx512Spec, DenseAvx512Kernel> = KernelCache::new();
    CACHE.get(spec, DenseAvx512Kernel::generate)
}

/// The widest full-panel spec whose accumulators fit the registers for `rows` rows.
fn block_spec(kind: Avx512Kind, rows: usize, kg: u8, c_init: CInit) -> DenseAvx512Spec {
    (1..=MAX_PANELS)
        .rev()
        .map(|panels| DenseAvx512Spec {
            k_groups_per_tdp: kg,
            ..DenseAvx512Spec::new(kind, rows as u8, panels, c_init)
        })
        .find(|s| s.validate().is_ok())
        .expect("one panel of 16 rows fits every kind (checked by the kernel crate's tests)")
}

pub(super) fn run(p: &Problem, opts: &GemmOptions, kind: Avx512Kind, exec: &Executor) -> Result<(), GemmError> {
    if !exec.emulated() {
        crate::cpu::require(kind.features()).map_err(|missing| GemmError::Unsupported {
            isa: Isa::Avx512,
            reason: Unsupported::MissingFeatures { isa: Isa::Avx512, kernels: kind.name(), missing },
        })?;
    }
    let Problem { m, a, lda, b, accumulate, .. } = *p;
    let (n, k) = (b.n(), b.k());
    let kg = b.k_groups_per_tdp();
    let k_steps = b.k_steps();
    let k_block_steps = b.layout().k_block_steps;
    let probe = DenseAvx512Spec { k_groups_per_tdp: kg, ..DenseAvx512Spec::new(kind, 1, 1, CInit::Zero) };
    // A rows padded to whole K steps, in the form the kind reads.
    let a_step = probe.a_step_bytes();
    let a_row = k_steps * a_step;
    let mut a_prep = AlignedBytes::zeroed(m * a_row);
    let esize = p.elem.elem_bytes();
    for (i, dst) in a_prep.as_mut_slice().chunks_exact_mut(a_row).enumerate() {
        let src = &a[i * lda * esize..(i * lda + k) * esize];
        match kind {
            Avx512Kind::Bf16Chains => {
                for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(2)) {
                    d.copy_from_slice(&(u32::from(u16::from_le_bytes([s[0], s[1]])) << 16).to_le_bytes());
                }
            }
            Avx512Kind::Int8(_) | Avx512Kind::Bf16Dot => dst[..src.len()].copy_from_slice(src),
        }
    }
    let bias = match kind {
        Avx512Kind::Int8(sign) => int8_col_bias(sign, b),
        _ => None,
    };
    let threads = opts.threads.min(b.panels()).max(1);
    let key = ShapeKey { kind, m, n, kg, k_steps, k_block_steps, accumulate, threads };
    let schedule = work_units(key)?;
    let inputs = Inputs { p, exec, a_prep: &a_prep, a_row, bias: bias.as_deref() };
    crate::threads::run_units(
        threads,
        schedule.units.len(),
        || (),
        |_, u| {
            for c in &schedule.units[u] {
                inputs.run(&schedule.kernels[c.kernel], c)?;
            }
            Ok(())
        },
    )
}

/// Everything a schedule depends on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ShapeKey {
    kind: Avx512Kind,
    m: usize,
    n: usize,
    kg: u8,
    k_steps: usize,
    k_block_steps: usize,
    accumulate: bool,
    threads: usize,
}

/// The kernel calls of one GEMM shape, grouped into work units, with their
/// kernels resolved: built once per shape and kept, so a call does no
/// planning and the workers take no lock (a decode GEMV on 16 threads is
/// over in ~150 us).
struct WorkUnits {
    units: Vec<Vec<KernelCall>>,
    kernels: Vec<Arc<DenseAvx512Kernel>>,
}

fn work_units(key: ShapeKey) -> Result<Arc<WorkUnits>, GemmError> {
    static CACHE: KernelCache<ShapeKey, WorkUnits> = KernelCache::new();
    CACHE.get(key, build_work_units)
}

fn build_work_units(key: ShapeKey) -> Result<WorkUnits, GemmError> {
    let panels = key.n.div_ceil(16);
    // Work units of a few panels over the whole K, handed out dynamically:
    // a thread that starts late must not hold up the call. Each unit's K
    // blocks run in order on one thread (C is reloaded between them), so
    // the bits do not depend on the split.
    let unit_panels = if key.threads == 1 { panels } else { panels.div_ceil(key.threads * UNITS_PER_THREAD).max(1) };
    let mut specs: Vec<DenseAvx512Spec> = Vec::new();
    let mut kernels = Vec::new();
    let mut units = Vec::new();
    for u in 0..panels.div_ceil(unit_panels) {
        let range = (u * unit_panels, ((u + 1) * unit_panels).min(panels));
        let mut calls = plan(key, range, panels);
        for c in &mut calls {
            c.kernel = match specs.iter().position(|s| *s == c.spec) {
                Some(i) => i,
                None => {
                    specs.push(c.spec);
                    kernels.push(kernel(c.spec)?);
                    specs.len() - 1
                }
            };
        }
        units.push(calls);
    }
    Ok(WorkUnits { units, kernels })
}

/// One kernel call: `blocks` blocks of `spec` starting at `panel`, rows
/// `row0..row0 + spec.m_rows`, K steps `s0..s0 + steps` (K block `kb`).
struct KernelCall {
    spec: DenseAvx512Spec,
    /// Index into `WorkUnits::kernels`.
    kernel: usize,
    kb: usize,
    s0: usize,
    steps: usize,
    row0: usize,
    panel: usize,
    blocks: usize,
}

/// The calls that cover panels `p0..p1` of C for all rows and K blocks:
/// blocks of the widest spec that fits the registers, then one narrower
/// block for the rest, which also carries the N tail (masked).
fn plan(key: ShapeKey, (p0, p1): (usize, usize), panels: usize) -> Vec<KernelCall> {
    let ShapeKey { kind, m, n, kg, k_steps, k_block_steps, accumulate, .. } = key;
    let mut calls = Vec::new();
    for (kb, s0) in (0..k_steps).step_by(k_block_steps).enumerate() {
        let steps = k_block_steps.min(k_steps - s0);
        let c_init = if kb == 0 && !accumulate { CInit::Zero } else { CInit::Load };
        for row0 in (0..m).step_by(MAX_ROWS) {
            let full = block_spec(kind, MAX_ROWS.min(m - row0), kg, c_init);
            let width = full.n_panels as usize;
            let tail = p1 == panels && !n.is_multiple_of(16);
            let whole_end = if tail { p1 - 1 } else { p1 };
            let plain = whole_end.saturating_sub(p0) / width;
            if plain > 0 {
                calls.push(KernelCall { spec: full, kernel: 0, kb, s0, steps, row0, panel: p0, blocks: plain });
            }
            let panel = p0 + plain * width;
            if panel < p1 {
                let last_panel_cols = if tail { (n % 16) as u8 } else { 16 };
                let spec = DenseAvx512Spec { n_panels: (p1 - panel) as u8, last_panel_cols, ..full };
                calls.push(KernelCall { spec, kernel: 0, kb, s0, steps, row0, panel, blocks: 1 });
            }
        }
    }
    calls
}

/// What every call of one GEMM shares.
struct Inputs<'a> {
    p: &'a Problem<'a>,
    exec: &'a Executor,
    a_prep: &'a AlignedBytes,
    a_row: usize,
    bias: Option<&'a [i32]>,
}

impl Inputs<'_> {
    fn run(&self, kernel: &DenseAvx512Kernel, call: &KernelCall) -> Result<(), GemmError> {
        let KernelCall { spec, kb, s0, steps, row0, panel, blocks, .. } = *call;
        let (p, b) = (self.p, self.p.b);
        let args = DenseAvx512Args {
            a: self.a_prep.as_slice()[row0 * self.a_row + s0 * spec.a_step_bytes()..].as_ptr(),
            lda: self.a_row,
            b: b.as_bytes()[b.tile_offset(s0, panel)..].as_ptr(),
            b_panel_stride: b.block_panel_stride(s0),
            // SAFETY (pointer arithmetic): row0 < m and panel * 16 < n, so the
            // offset lies inside the C that Problem::new checked.
            c: unsafe { p.c.0.add((row0 * p.ldc + panel * 16) * 4) },
            ldc: p.ldc * 4,
            k_steps: steps,
            n_blocks: blocks,
            // The correction belongs to the whole K: pass it with the first K block only.
            col_bias: match self.bias {
                Some(v) if kb == 0 => v[panel * 16..].as_ptr(),
                _ => std::ptr::null(),
            },
        };
        // SAFETY: AVX-512 (and the kind's VNNI/BF16) was checked before
        // planning. The kernel reads spec.m_rows rows of `steps` whole K steps
        // from a_prep (rows hold all k_steps), the packed B panels panel..
        // inside this K block, the bias columns of those panels, and
        // reads/writes spec.m_rows rows of the blocks' columns of C (masked at
        // the N tail) inside the checked C. Only this thread writes these panels.
        let own = || {
            let mut own = vec![Region::read("A (prepared)", self.a_prep.as_slice())];
            own.extend(self.bias.map(|bias| Region::read("column bias", bias)));
            own
        };
        unsafe { self.exec.run(kernel.jit_code(), &args, own)? };
        Ok(())
    }
}
