//! `tilejit bench`: the machine's bounds, then the kernel suite as a table
//! on stdout (one row per case), a progress bar on stderr (drawn only on a
//! terminal), and optionally the JSON report and the sparse speedup plot.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::json::{Machine, Report};
use super::plot::{write_speedup_svg, PlotOutcome};
use super::suite::{matches, run_case, BenchError, BenchResult, Bounds, Section, SuiteConfig};
use super::{cases, sparse};

/// The command's options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BenchOptions {
    /// Threads for the cases; bounds are measured for 1 and for this many.
    pub threads: usize,
    /// The quick suite: smaller shape lists, shorter timing.
    pub quick: bool,
    /// Run only cases whose name contains one of these (case-insensitive).
    pub filters: Vec<String>,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

/// Time as the table prints it.
fn fmt_time(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    match ns {
        x if x < 1e3 => format!("{x:.0}ns"),
        x if x < 1e6 => format!("{:.2}us", x / 1e3),
        x if x < 1e9 => format!("{:.2}ms", x / 1e6),
        x => format!("{:.2}s", x / 1e9),
    }
}

/// One table row.
fn row(width: usize, r: &BenchResult) -> String {
    let i = &r.info;
    let pct = match r.pct_of_bound {
        Some(p) if p < 1.0 => format!("{p:5.2}% {}", i.bound.name()),
        Some(p) => format!("{p:5.1}% {}", i.bound.name()),
        None => format!("    - {}", i.bound.name()),
    };
    format!(
        "{:<width$} {:<9} {:<5} {:<6} {:>5} {:>6} {:>6} {:>5.2} {:>3} {:>10} {:>10.1} {:<8} {}",
        i.name,
        i.op,
        i.dtype,
        i.isa.name(),
        i.m,
        i.n,
        i.k,
        i.sparsity,
        i.threads,
        fmt_time(r.median),
        r.throughput,
        r.unit,
        pct
    )
}

fn header(width: usize) -> String {
    format!(
        "{:<width$} {:<9} {:<5} {:<6} {:>5} {:>6} {:>6} {:>5} {:>3} {:>10} {:>10} {:<8} {}",
        "kernel", "op", "dtype", "isa", "M", "N", "K", "spars", "thr", "median", "throughput", "unit", "% of bound"
    )
}

fn bounds_table(bounds: &Bounds) -> String {
    let mut out = format!("{:>7} {:>16} {:>16} {:>10}\n", "threads", "int8 peak GOP/s", "bf16 peak GOP/s", "read GB/s");
    let giga = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{:.1}", x / 1e9));
    for s in &bounds.sets {
        out +=
            &format!("{:>7} {:>16} {:>16} {:>10}\n", s.threads, giga(s.int8_ops), giga(s.bf16_ops), giga(s.read_bytes));
    }
    out
}

/// Runs the command.
pub fn run(opts: &BenchOptions) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    // A bad TILEJIT_ISA is one error up front, not one per routed case.
    crate::isa::forced()?;
    let plan = SuiteConfig { quick: opts.quick, threads: opts.threads.max(1) };
    let mut sections = sections(&plan);
    let selected: usize =
        sections.iter().map(|s| s.cases.iter().filter(|c| matches(&c.info().name, &opts.filters)).count()).sum();
    if selected == 0 && !opts.filters.is_empty() {
        let names: Vec<String> = sections.iter().flat_map(|s| s.cases.iter().map(|c| c.info().name)).take(4).collect();
        return Err(
            format!("no case matches --filter {:?}; case names look like {}", opts.filters, names.join(", ")).into()
        );
    }
    let machine = Machine::detect();
    println!("== tilejit bench ({} suite, {} thread(s))", if plan.quick { "quick" } else { "full" }, plan.threads);
    println!(
        "{} | {} hardware threads | AMX {} | AVX-512 {}",
        machine.cpu,
        machine.threads,
        if machine.amx { "yes" } else { "no" },
        if machine.avx512 { "yes" } else { "no" }
    );

    let bound_steps = 3 * if plan.threads > 1 { 2 } else { 1 };
    let pb = ProgressBar::new((bound_steps + selected) as u64);
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    if !pb.is_hidden() {
        pb.enable_steady_tick(Duration::from_millis(250));
    }
    let bounds = Bounds::measure(&plan, |step| {
        pb.set_message(step.to_string());
        pb.inc(1);
    })?;
    pb.suspend(|| {
        println!("\n== Bounds (measured first: register-resident TDP loops on every thread at once; streaming read over 1 GiB)");
        print!("{}", bounds_table(&bounds));
    });

    let width = sections.iter().flat_map(|s| s.cases.iter().map(|c| c.info().name.len())).max().unwrap_or(0).max(24);
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for section in &mut sections {
        let cases = std::mem::take(&mut section.cases);
        if cases.is_empty() {
            // An empty section says so, unless the filter is about something else.
            if matches(section.title, &opts.filters) {
                pb.suspend(|| println!("\n== {}\n{}", section.title, section.empty_note));
            }
            continue;
        }
        let mut cases: Vec<_> = cases.into_iter().filter(|c| matches(&c.info().name, &opts.filters)).collect();
        if cases.is_empty() {
            continue;
        }
        pb.suspend(|| println!("\n== {}\n{}", section.title, header(width)));
        // Each case is dropped after its row: shared fixtures are freed
        // when their last case is gone.
        for mut case in cases.drain(..) {
            let name = case.info().name;
            pb.set_message(name.clone());
            pb.inc(1);
            match run_case(case.as_mut(), &plan, &bounds) {
                Ok(r) => {
                    pb.suspend(|| println!("{}", row(width, &r)));
                    results.push(r);
                }
                Err(skip @ (BenchError::Unavailable(_) | BenchError::NotApplicable(_))) => {
                    pb.suspend(|| println!("{name:<width$} skipped: {skip}"));
                }
                Err(e) => {
                    pb.suspend(|| println!("{name:<width$} FAILED: {e}"));
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
    }
    pb.finish_and_clear();
    println!("\n{} case(s) measured in {:.1} s", results.len(), started.elapsed().as_secs_f64());

    if let Some(path) = &opts.json {
        Report::new(machine, &bounds, &results, plan.quick)
            .write(path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("tilejit bench: wrote {}", path.display());
    }
    if let Some(path) = &opts.plot {
        match write_speedup_svg(&results, path)? {
            PlotOutcome::Written { lines } => eprintln!("tilejit bench: wrote {} ({lines} line(s))", path.display()),
            PlotOutcome::NothingToDraw(why) => {
                eprintln!("tilejit bench: no plot written to {}: {why}", path.display())
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} case(s) failed: {}", failures.len(), failures.join("; ")).into())
    }
}

/// Every section of the suite, in table order; the sparse-vs-dense one
/// takes its cases from [`sparse::sparse_cases`].
pub fn sections(plan: &SuiteConfig) -> Vec<Section> {
    let section = |title, cases| Section { title, cases, empty_note: "" };
    vec![
        section("dense GEMM: AMX, AVX-512 and scalar (vs the TMUL peak of the dtype)", cases::dense_gemm(plan)),
        section("GEMV M=1, weights cycled from DRAM (vs streaming read, bytes of packed weights)", cases::gemv(plan)),
        section("quantized decode M=1, weights cycled from DRAM (vs streaming read, GGUF bytes)", cases::decode(plan)),
        section("quantized prefill, every strategy (vs the int8 TMUL peak)", cases::prefill(plan)),
        section("JIT compile time (fresh generation, no cache)", cases::jit(plan)),
        section("dispatch overhead: a tiny GEMM through the driver (vs the kernel alone)", cases::dispatch(plan)),
        Section {
            title: "sparse vs dense (speedup against sparsity: --plot)",
            cases: sparse::sparse_cases(plan),
            empty_note: "no sparse cases registered yet (tilejit::bench::sparse::sparse_cases is empty)",
        },
    ]
}
