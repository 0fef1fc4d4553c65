//! The `tilejit bench --json` schema: every promised field, by name and
//! JSON type, on a synthetic result set and on one real (fast) case; and
//! the `--plot` chart on synthetic sparse results and without any.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tilejit::bench::cases::{JitCompile, JitKernel};
use tilejit::bench::json::{Machine, Report};
use tilejit::bench::plot::{write_speedup_svg, PlotOutcome};
use tilejit::bench::suite::{
    run_case, BenchResult, Bound, BoundSet, Bounds, CaseInfo, Reference, SuiteConfig, Timing, Work,
};
use tilejit::isa::Isa;
use tilejit::kernels::dense_amx::{Blocking, DenseAmxSpec};
use tilejit::kernels::spec::{CInit, ElemType};

/// JSON types of the schema.
#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    Int,
    Num,
    Bool,
}

fn check(obj: &Value, fields: &[(&str, Ty)], what: &str) {
    let map = obj.as_object().unwrap_or_else(|| panic!("{what} is not an object: {obj}"));
    for &(name, ty) in fields {
        let v = map.get(name).unwrap_or_else(|| panic!("{what} has no field {name:?}: {obj}"));
        let ok = match ty {
            Ty::Str => v.is_string(),
            // Integers are written without a fraction, as unsigned.
            Ty::Int => v.is_u64(),
            Ty::Num => v.as_f64().is_some_and(f64::is_finite),
            Ty::Bool => v.is_boolean(),
        };
        assert!(ok, "{what}.{name} should be {ty:?}, is {v}");
    }
}

const MACHINE: [(&str, Ty); 3] = [("cpu", Ty::Str), ("threads", Ty::Int), ("amx", Ty::Bool)];
const BOUNDS: [(&str, Ty); 4] =
    [("int8_peak_gops", Ty::Num), ("bf16_peak_gflops", Ty::Num), ("read_gbs", Ty::Num), ("threads", Ty::Int)];
const RESULT: [(&str, Ty); 13] = [
    ("name", Ty::Str),
    ("op", Ty::Str),
    ("dtype", Ty::Str),
    ("isa", Ty::Str),
    ("m", Ty::Int),
    ("n", Ty::Int),
    ("k", Ty::Int),
    ("sparsity", Ty::Num),
    ("threads", Ty::Int),
    ("median_ns", Ty::Num),
    ("throughput", Ty::Num),
    ("unit", Ty::Str),
    ("pct_of_bound", Ty::Num),
];

/// Checks the whole document against the schema; returns it parsed.
fn check_schema(json: &str) -> Value {
    let doc: Value = serde_json::from_str(json).expect("valid JSON");
    check(&doc, &[], "document");
    check(&doc["machine"], &MACHINE, "machine");
    check(&doc["bounds"], &BOUNDS, "bounds");
    let results = doc["results"].as_array().expect("results is an array");
    for (i, r) in results.iter().enumerate() {
        check(r, &RESULT, &format!("results[{i}]"));
    }
    doc
}

fn bounds() -> Bounds {
    Bounds {
        sets: vec![
            BoundSet { threads: 1, int8_ops: Some(7.0e12), bf16_ops: Some(3.5e12), read_bytes: Some(17.0e9) },
            BoundSet { threads: 2, int8_ops: Some(7.2e12), bf16_ops: None, read_bytes: Some(20.0e9) },
        ],
    }
}

fn result(info: CaseInfo, work: Work, median_us: u64, reference_us: Option<u64>) -> BenchResult {
    let timing = Timing {
        median: Duration::from_micros(median_us),
        reference: reference_us.map(Duration::from_micros),
        samples: 5,
    };
    BenchResult::new(info, work, timing, &bounds())
}

fn synthetic() -> Vec<BenchResult> {
    let gemm = CaseInfo::dense(
        "gemm/u8s8/amx/512x512x4096".into(),
        "gemm",
        "u8s8",
        Isa::Amx,
        (512, 512, 4096),
        2,
        Bound::TmulInt8,
    );
    let gemv = CaseInfo::dense(
        "gemv/bf16/avx512/1x4096x4096".into(),
        "gemv",
        "bf16",
        Isa::Avx512,
        (1, 4096, 4096),
        1,
        Bound::Read,
    );
    let bf16_2t =
        CaseInfo::dense("gemm/bf16/avx512/8x8x8".into(), "gemm", "bf16", Isa::Avx512, (8, 8, 8), 2, Bound::TmulBf16);
    let jit = CaseInfo::dense("jit/bf16/amx/2x2".into(), "jit", "bf16", Isa::Amx, (32, 32, 32), 1, Bound::None);
    let mut sparse = CaseInfo::dense(
        "sparse_gemm/bf16/amx/s0.75/128x4096x4096".into(),
        "sparse_gemm",
        "bf16",
        Isa::Amx,
        (128, 4096, 4096),
        1,
        Bound::TmulBf16,
    );
    sparse.sparsity = 0.75;
    sparse.reference = Some(Reference::Dense);
    vec![
        result(gemm, Work::Ops(2.0 * 512.0 * 512.0 * 4096.0), 800, None),
        result(gemv, Work::Bytes(32.0 * 1024.0 * 1024.0), 2000, None),
        result(bf16_2t, Work::Ops(1024.0), 1, None),
        result(jit, Work::Kernels(1.0), 9, None),
        result(sparse, Work::Ops(2.0 * 128.0 * 4096.0 * 4096.0), 1000, Some(2500)),
    ]
}

fn machine() -> Machine {
    Machine { cpu: "Test CPU".into(), threads: 2, amx: true, avx512: true }
}

#[test]
fn synthetic_report_has_every_field_with_its_type() {
    let results = synthetic();
    let report = Report::new(machine(), &bounds(), &results, true);
    let doc = check_schema(&report.to_json());
    // Values, not only types.
    assert_eq!(doc["machine"]["cpu"], "Test CPU");
    assert_eq!(doc["machine"]["amx"], true);
    assert_eq!(doc["bounds"]["threads"], 2, "the top-level bounds are the suite's thread count");
    assert!((doc["bounds"]["int8_peak_gops"].as_f64().unwrap() - 7200.0).abs() < 1e-6);
    assert_eq!(doc["bounds"]["bf16_peak_gflops"], 0.0, "an unmeasured bound is written as 0");
    let by_threads = doc["bounds"]["by_threads"].as_array().unwrap();
    assert_eq!(by_threads.len(), 2);
    for b in by_threads {
        check(b, &BOUNDS, "bounds.by_threads[]");
    }
    let r = &doc["results"];
    assert_eq!(r.as_array().unwrap().len(), results.len());
    assert_eq!(r[0]["name"], "gemm/u8s8/amx/512x512x4096");
    assert_eq!((r[0]["m"].as_u64(), r[0]["n"].as_u64(), r[0]["k"].as_u64()), (Some(512), Some(512), Some(4096)));
    assert_eq!(r[0]["unit"], "GOP/s");
    assert!((r[0]["median_ns"].as_f64().unwrap() - 800_000.0).abs() < 1e-6);
    let gops = 2.0 * 512.0 * 512.0 * 4096.0 / 800e-6 / 1e9;
    assert!((r[0]["throughput"].as_f64().unwrap() - gops).abs() < 1e-6);
    assert!((r[0]["pct_of_bound"].as_f64().unwrap() - 100.0 * gops / 7200.0).abs() < 1e-9, "2 threads: 2-thread peak");
    assert_eq!(r[1]["unit"], "GB/s");
    assert_eq!(r[1]["isa"], "avx512");
    assert_eq!(r[2]["pct_of_bound"], 0.0, "a missing bound gives 0");
    assert_eq!((r[3]["unit"].as_str(), r[3]["bound"].as_str()), (Some("kernel/s"), Some("none")));
    assert_eq!(r[3]["pct_of_bound"], 0.0);
    assert_eq!(r[4]["sparsity"], 0.75);
    assert_eq!(r[4]["reference"], "dense");
    assert!((r[4]["speedup_vs_dense"].as_f64().unwrap() - 2.5).abs() < 1e-12);
    assert!(r[0].get("reference").is_none(), "absent, not null, without a reference");
    // Reads back into the same report.
    let back: Report = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tilejit-bench-json-{}-{name}", std::process::id()))
}

#[test]
fn a_real_jit_case_runs_and_its_file_has_the_schema() {
    let plan = SuiteConfig { quick: true, threads: 1 };
    let spec = DenseAmxSpec::new(ElemType::Bf16, Blocking::B2X2, CInit::Load);
    let mut case = JitCompile::new(JitKernel::DenseAmx(spec));
    let r = run_case(&mut case, &plan, &bounds()).expect("kernel generation needs no AMX at run time");
    assert!(r.median > Duration::ZERO && r.throughput > 0.0 && r.samples >= 3);
    let path = temp_path("real.json");
    Report::new(machine(), &bounds(), &[r], true).write(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let doc = check_schema(&text);
    assert_eq!(doc["results"][0]["op"], "jit");
    assert_eq!(doc["mode"], "quick");
}

#[test]
fn plot_draws_sparse_results_and_writes_nothing_without_them() {
    let path = temp_path("speedup.svg");
    let outcome = write_speedup_svg(&synthetic(), &path).unwrap();
    assert_eq!(outcome, PlotOutcome::Written { lines: 1 });
    let svg = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(svg.contains("bf16 M=128") && svg.contains("ideal, bf16"), "labels missing");

    let dense_only: Vec<BenchResult> = synthetic().into_iter().filter(|r| r.info.sparsity == 0.0).collect();
    let path = temp_path("none.svg");
    match write_speedup_svg(&dense_only, &path).unwrap() {
        PlotOutcome::NothingToDraw(why) => assert!(why.contains("no sparse result"), "{why}"),
        other => panic!("expected nothing to draw, got {other:?}"),
    }
    assert!(!path.exists(), "no file without sparse results");
}
