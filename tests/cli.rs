//! The `tilejit` binary: the tour runs end to end and bad input gets a
//! clear error and a non-zero exit status, never a panic.

use std::process::Command;
use tilejit_verify::paths::report_path;

fn tilejit(args: &[&str], isa: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tilejit"));
    cmd.args(args);
    match isa {
        Some(v) => cmd.env("TILEJIT_ISA", v),
        None => cmd.env_remove("TILEJIT_ISA"),
    };
    let out = cmd.output().expect("run tilejit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The tour JITs every kernel (no AMX needed), verifies every element type
/// on every path its "Paths" section says runs, and names the others.
#[test]
fn tour_verifies_every_kernel_on_every_path_or_says_why_not() {
    let (ok, out, err) = tilejit(&["tour", "--shape", "64", "64", "256"], None);
    assert!(ok, "tour failed: {out}\n{err}");
    assert!(out.contains("== CPU") && out.contains("ISA: "), "{out}");
    for kernel in ["amx_s8s8_2x2", "amx_bf16_2x2", "avx512_u8s8_m4", "avx512_bf16chains_m4", "avx512_bf16dot_m4"] {
        assert!(out.contains(kernel), "the JIT section lacks {kernel}:\n{out}");
    }
    for path in ["amx", "avx512", "scalar"] {
        let runs = out.contains(&format!("\n{path:<7} runs"));
        let skipped = out.lines().find(|l| l.starts_with(&format!("{path:<7} SKIPPED: ")));
        assert!(runs ^ skipped.is_some(), "{path}: the Paths section must say runs or SKIPPED:\n{out}");
        report_path(
            "tour",
            path,
            skipped.map_or(Ok(()), |l| Err(l[7..].trim().trim_start_matches("SKIPPED: ").to_string())),
        );
        if !runs {
            continue;
        }
        for elem in ["s8s8", "s8u8", "u8s8", "u8u8", "bf16"] {
            let line = out.lines().find(|l| l.starts_with(&format!("{path:<7}{elem:<6} "))).unwrap_or_else(|| {
                panic!("no verify line for {path} {elem}:\n{out}");
            });
            assert!(line.contains("bit-exact on") || line.contains("SKIPPED: "), "{line}");
            assert!(path != "scalar" || line.contains("bit-exact on"), "the scalar path always runs: {line}");
        }
    }
    if out.contains("\namx     runs") {
        assert!(out.contains("tmul peak s8s8") && out.contains("amx gemm bf16"), "{out}");
    }
}

#[test]
fn unknown_isa_name_is_a_clear_error() {
    let (ok, _, err) = tilejit(&["tour"], Some("sse9"));
    assert!(!ok);
    assert!(err.contains("TILEJIT_ISA=\"sse9\" is not an ISA: use scalar, avx512 or amx"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn forcing_scalar_runs_only_the_scalar_path() {
    let (ok, out, err) = tilejit(&["tour", "--shape", "64", "64", "256"], Some("scalar"));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("ISA: scalar (forced by TILEJIT_ISA)"), "{out}");
    assert!(out.contains("scalar bf16   bit-exact on"), "{out}");
    for other in ["amx    ", "avx512 "] {
        assert!(out.contains(&format!("{other} SKIPPED: TILEJIT_ISA=scalar forces another path")), "{out}");
        assert!(!out.lines().any(|l| l.starts_with(other) && l.contains("bit-exact")), "{other} ran:\n{out}");
    }
}

#[test]
fn bad_arguments_are_rejected() {
    let (ok, _, err) = tilejit(&["tour", "--threads", "0"], None);
    assert!(!ok && err.contains("at least 1"), "{err}");
    let (ok, _, err) = tilejit(&["tour", "--shape", "1", "2"], None);
    assert!(!ok && !err.contains("panicked"), "{err}");
}

#[test]
fn bench_quick_writes_the_json_file_and_says_why_there_is_no_plot() {
    let dir = std::env::temp_dir().join(format!("tilejit-cli-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, plot) = (dir.join("bench.json"), dir.join("speedup.svg"));
    let args = [
        "bench",
        "--quick",
        "--filter",
        "jit/bf16",
        "--json",
        json.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ];
    let (ok, out, err) = tilejit(&args, None);
    assert!(ok, "bench failed: {out}\n{err}");
    assert!(out.contains("== Bounds") && out.contains("jit/bf16/amx/2x2"), "{out}");
    assert!(!out.contains("gemm/"), "--filter ran other cases:\n{out}");
    let text = std::fs::read_to_string(&json).expect("the JSON file was written");
    for field in ["\"machine\"", "\"bounds\"", "\"results\"", "\"pct_of_bound\"", "\"median_ns\""] {
        assert!(text.contains(field), "{field} missing:\n{text}");
    }
    // No sparse case exists (yet): nothing to draw, and the reason is printed.
    if !plot.exists() {
        assert!(err.contains("no plot written"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_rejects_bad_arguments() {
    let (ok, _, err) = tilejit(&["bench", "--threads", "0"], None);
    assert!(!ok && err.contains("at least 1"), "{err}");
    let (ok, _, err) = tilejit(&["bench", "--quick", "--filter", "no-such-case"], None);
    assert!(!ok && err.contains("no case matches"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
