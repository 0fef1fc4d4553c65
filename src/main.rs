//! The `tilejit` command line.

mod calibrate;
mod inspect;
mod tour;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tilejit",
    version,
    about = "JIT-generated Intel AMX kernels, proven bit-exact against a scalar reference"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Detect the CPU, JIT the dense kernels, verify them against the
    /// reference and print their throughput next to the TMUL peak (default).
    Tour {
        /// Threads for the GEMMs.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// GEMM shape of the throughput table: M N K.
        #[arg(long, num_args = 3, value_names = ["M", "N", "K"], default_values_t = [512, 512, 4096])]
        shape: Vec<usize>,
    },
    /// Time AVX-512 against AMX for M = 1..64 on N x K weights: the
    /// measurement behind the ISA dispatch (src/gemm/dispatch.rs).
    Calibrate {
        #[arg(long, default_value_t = 4096)]
        n: usize,
        #[arg(long, default_value_t = 4096)]
        k: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Measure the machine's bounds (TMUL peak, streaming read; 1 thread and
    /// --threads), then run the kernel suite and print one row per case with
    /// its percent of the relevant bound.
    Bench {
        /// Threads for the cases (bounds are reported for 1 and for this many).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// The quick suite: smaller shape lists and shorter timing.
        #[arg(long)]
        quick: bool,
        /// Run only the cases whose name contains SUBSTRING (case-insensitive;
        /// repeat for several).
        #[arg(long, value_name = "SUBSTRING")]
        filter: Vec<String>,
        /// Write the results as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
        /// Draw the sparse-over-dense speedup against sparsity as SVG to FILE
        /// (nothing is written, and the reason printed, without sparse results).
        #[arg(long, value_name = "FILE")]
        plot: Option<std::path::PathBuf>,
    },
    /// Check a GGUF model file with the hardened reader and print its
    /// version, metadata and tensor table.
    Inspect {
        /// The .gguf file.
        path: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    // A closed pipe (`tilejit inspect x.gguf | head`) should end the program
    // quietly, as it does for other Unix tools, not panic in println!.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Tour { threads: 1, shape: vec![512, 512, 4096] });
    let result = match command {
        Command::Inspect { path } => inspect::run(&path),
        Command::Bench { threads, quick, filter, json, plot } => {
            if threads == 0 {
                Err("--threads must be at least 1".into())
            } else {
                let opts = tilejit::bench::cli::BenchOptions { threads, quick, filters: filter, json, plot };
                tilejit::bench::cli::run(&opts)
            }
        }
        Command::Calibrate { n, k, threads } => {
            if n == 0 || k == 0 || threads == 0 {
                Err("--n, --k and --threads must be at least 1".into())
            } else {
                calibrate::run(&calibrate::CalibrateOptions { n, k, threads })
            }
        }
        Command::Tour { threads, shape } => {
            if threads == 0 || shape.contains(&0) {
                Err("--threads and every --shape dimension must be at least 1".into())
            } else {
                tour::run(&tour::TourOptions { threads, m: shape[0], n: shape[1], k: shape[2] })
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tilejit: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
