//! The `--json FILE` report of `tilejit bench`.
//!
//! ```json
//! {"machine": {"cpu": str, "threads": int, "amx": bool, ...},
//!  "bounds": {"int8_peak_gops": num, "bf16_peak_gflops": num, "read_gbs": num, "threads": int, ...},
//!  "results": [{"name": str, "op": str, "dtype": str, "isa": str, "m": int, "n": int, "k": int,
//!               "sparsity": num, "threads": int, "median_ns": num, "throughput": num, "unit": str,
//!               "pct_of_bound": num, ...}]}
//! ```
//!
//! The fields above are the stable schema (`tests/bench_json.rs` checks
//! every name and type): fields may be added, never renamed. Added so far:
//! `machine.avx512`; `bounds.by_threads` (the same four fields for 1 thread
//! and for the suite's thread count; the top-level bound fields are those
//! of the suite's thread count); `mode` ("quick" or "full") and
//! `tilejit_version` at the top; per result `bound` (what `pct_of_bound`
//! compares with: "int8_peak", "bf16_peak", "read", "reference", "none"),
//! `samples`, and for cases with a reference routine `reference` ("kernel",
//! "dense"), `reference_ns` and, for "dense", `speedup_vs_dense`.
//!
//! A bound this machine could not measure (no AMX: the TMUL peaks) is
//! written as 0, and so is `pct_of_bound` of a case without a bound (JIT
//! compile time) or whose bound is missing; JSON has no NaN.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::suite::{BenchResult, BoundSet, Bounds};

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub machine: Machine,
    pub bounds: BoundsJson,
    pub results: Vec<ResultJson>,
    /// "quick" or "full".
    pub mode: String,
    pub tilejit_version: String,
}

/// The machine the report was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPUID brand string.
    pub cpu: String,
    /// Hardware threads available to the process.
    pub threads: usize,
    /// AMX usable by this process (CPU, OS and permission).
    pub amx: bool,
    pub avx512: bool,
}

impl Machine {
    /// This machine.
    pub fn detect() -> Machine {
        Machine {
            cpu: crate::cpu::CpuFeatures::get().brand.clone(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            amx: crate::isa::availability(crate::isa::Isa::Amx).is_ok(),
            avx512: crate::isa::availability(crate::isa::Isa::Avx512).is_ok(),
        }
    }
}

/// The bounds of one thread count, in GOP/s (2 per multiply-add) and GB/s.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundsAt {
    pub int8_peak_gops: f64,
    pub bf16_peak_gflops: f64,
    pub read_gbs: f64,
    pub threads: usize,
}

impl From<&BoundSet> for BoundsAt {
    fn from(s: &BoundSet) -> BoundsAt {
        let giga = |x: Option<f64>| x.map_or(0.0, |x| x / 1e9);
        BoundsAt {
            int8_peak_gops: giga(s.int8_ops),
            bf16_peak_gflops: giga(s.bf16_ops),
            read_gbs: giga(s.read_bytes),
            threads: s.threads,
        }
    }
}

/// The bounds of the suite's thread count, and every measured set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundsJson {
    #[serde(flatten)]
    pub widest: BoundsAt,
    pub by_threads: Vec<BoundsAt>,
}

/// One row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultJson {
    pub name: String,
    pub op: String,
    pub dtype: String,
    pub isa: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub sparsity: f64,
    pub threads: usize,
    pub median_ns: f64,
    pub throughput: f64,
    pub unit: String,
    pub pct_of_bound: f64,
    pub bound: String,
    pub samples: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_ns: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speedup_vs_dense: Option<f64>,
}

impl From<&BenchResult> for ResultJson {
    fn from(r: &BenchResult) -> ResultJson {
        let i = &r.info;
        ResultJson {
            name: i.name.clone(),
            op: i.op.clone(),
            dtype: i.dtype.clone(),
            isa: i.isa.name().into(),
            m: i.m,
            n: i.n,
            k: i.k,
            sparsity: i.sparsity,
            threads: i.threads,
            median_ns: r.median.as_secs_f64() * 1e9,
            throughput: r.throughput,
            unit: r.unit.into(),
            pct_of_bound: r.pct_of_bound.unwrap_or(0.0),
            bound: i.bound.name().into(),
            samples: r.samples,
            reference: i.reference.map(|x| x.name().into()),
            reference_ns: r.reference.map(|d| d.as_secs_f64() * 1e9),
            speedup_vs_dense: r.speedup_vs_dense(),
        }
    }
}

impl Report {
    pub fn new(machine: Machine, bounds: &Bounds, results: &[BenchResult], quick: bool) -> Report {
        Report {
            machine,
            bounds: BoundsJson {
                widest: bounds.widest().into(),
                by_threads: bounds.sets.iter().map(BoundsAt::from).collect(),
            },
            results: results.iter().map(ResultJson::from).collect(),
            mode: if quick { "quick" } else { "full" }.into(),
            tilejit_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report has no map with non-string keys")
    }

    /// Writes [`Report::to_json`] and a newline to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json() + "\n")
    }
}
