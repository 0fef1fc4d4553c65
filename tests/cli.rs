//! The `tilejit` binary: the tour runs end to end and bad input gets a
//! clear error and a non-zero exit status, never a panic.

use std::process::Command;

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

#[test]
fn tour_verifies_every_kernel_or_says_why_not() {
    let (ok, out, err) = tilejit(&["tour", "--shape", "64", "64", "256"], None);
    assert!(ok, "tour failed: {out}\n{err}");
    assert!(out.contains("== CPU") && out.contains("ISA: "), "{out}");
    if out.contains("AMX unavailable") {
        eprintln!("SKIPPED tour AMX sections: {}", out.lines().find(|l| l.contains("AMX unavailable")).unwrap());
        return;
    }
    for elem in ["s8s8", "s8u8", "u8s8", "u8u8", "bf16"] {
        assert!(out.contains(&format!("{elem:<6} bit-exact on")), "no verify line for {elem}:\n{out}");
    }
    assert!(out.contains("gemm bf16") && out.contains("tmul peak s8s8"), "{out}");
}

#[test]
fn unknown_isa_name_is_a_clear_error() {
    let (ok, _, err) = tilejit(&["tour"], Some("sse9"));
    assert!(!ok);
    assert!(err.contains("TILEJIT_ISA=\"sse9\" is not an ISA: use scalar, avx512 or amx"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn forcing_scalar_does_not_run_amx() {
    let (ok, out, err) = tilejit(&["tour"], Some("scalar"));
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("ISA: scalar (forced by TILEJIT_ISA)"), "{out}");
    assert!(!out.contains("bit-exact on"), "AMX kernels ran although scalar was forced:\n{out}");
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
