//! The `tilejit` command line.

mod calibrate;
mod emulate;
mod inspect;
mod run;
mod tour;

use clap::{Parser, Subcommand};
use tilejit::bench::model::BenchModelOptions;

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
    /// Run a GGUF llama model: print where its layers went, then generate,
    /// streaming the text (llama.cpp's flags).
    Run(RunArgs),
    /// Model throughput in the shape of llama-bench: tokens/s (mean and
    /// standard deviation over repetitions, after a warm-up) per --amx
    /// setting, thread count and test (ppN: prompt, tgN: generation).
    BenchModel {
        #[arg(short = 'm', long = "model")]
        model: std::path::PathBuf,
        /// Prompt sizes (comma separated).
        #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_values_t = [128usize, 512])]
        prompts: Vec<usize>,
        /// Generation lengths (comma separated).
        #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_values_t = [64usize])]
        gens: Vec<usize>,
        /// Thread counts (comma separated) [default: the CPUs available].
        #[arg(short = 't', long = "threads", value_delimiter = ',')]
        threads: Vec<usize>,
        /// --amx settings to compare: 0, 1 or 0,1.
        #[arg(long = "amx", value_delimiter = ',', default_values_t = [0u8])]
        amx: Vec<u8>,
        /// GPU layer counts to compare (comma separated, `-ngl 0,15,30`).
        #[arg(long = "n-gpu-layers", visible_alias = "ngl", value_delimiter = ',', default_values_t = [0usize])]
        n_gpu_layers: Vec<usize>,
        /// The GPUs' shares of the GPU layers (comma separated, GPU 0
        /// first), as `run --tensor-split`.
        #[arg(long = "tensor-split", visible_alias = "ts", value_delimiter = ',')]
        tensor_split: Vec<f64>,
        /// Sparsities to compare (comma separated, e.g. 0,0.5): each above 0
        /// prunes the repeating layers as `run --sparse` (BF16 models).
        #[arg(long = "sparse", value_delimiter = ',', default_values_t = [0f64])]
        sparse: Vec<f64>,
        /// Profile one more run per row and add the time per op kind and
        /// per layer to the table and the JSON.
        #[arg(long)]
        profile: bool,
        /// Timed repetitions per row.
        #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
        reps: usize,
        /// Write the results as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
    /// Perplexity of a model on a text, as llama.cpp's llama-perplexity
    /// computes it (non-overlapping windows, second half of each scored).
    Perplexity {
        /// The .gguf model.
        #[arg(short = 'm', long = "model")]
        model: std::path::PathBuf,
        /// The text file.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: std::path::PathBuf,
        /// Window length in tokens.
        #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
        ctx_size: usize,
        /// Threads for the matmuls [default: the CPUs available].
        #[arg(short = 't', long = "threads")]
        threads: Option<usize>,
        /// Pack the repeating layers for AMX (as `run --amx`).
        #[arg(long)]
        amx: bool,
        /// Prune every repeating-layer linear weight to sparsity S (0..1,
        /// magnitude per output row) at load and run the sparse kernels where
        /// they are faster. BF16 models only (`tilejit quantize IN OUT bf16`).
        #[arg(long, value_name = "S")]
        sparse: Option<f64>,
    },
    /// Requantize a model's linear weights and embedding to TYPE (q4_0,
    /// q4_1, q8_0 or bf16) with this crate's quantizers; norms and metadata are
    /// copied (general.file_type updated).
    Quantize {
        /// The source .gguf.
        input: std::path::PathBuf,
        /// The .gguf to write.
        output: std::path::PathBuf,
        /// q4_0, q4_1, q8_0 or bf16.
        #[arg(value_name = "TYPE")]
        ggml_type: String,
    },
    /// Run one GEMM's generated kernels under the emulator (any x86-64, no
    /// AVX-512 or AMX needed), check the bits against the scalar path and
    /// print the instructions executed per mnemonic and the bytes each
    /// buffer saw.
    Emulate {
        /// The kernel family: int8, bf16, bf16-dot, q8_0, q4_0, q4_1,
        /// sparse-bf16 or sparse-int8.
        #[arg(long, default_value = "int8")]
        op: String,
        /// The path whose kernels run: amx or avx512.
        #[arg(long, default_value = "amx")]
        isa: String,
        /// GEMM shape: M N K.
        #[arg(long, num_args = 3, value_names = ["M", "N", "K"], default_values_t = [32, 64, 128])]
        shape: Vec<usize>,
        /// Fraction of zero weights for the sparse families.
        #[arg(long, default_value_t = 0.5)]
        sparsity: f64,
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Check a GGUF model file with the hardened reader and print its
    /// version, metadata and tensor table.
    Inspect {
        /// The .gguf file.
        path: std::path::PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The .gguf model (llama architecture; Q4_0, Q4_1 or Q8_0 linear layers).
    #[arg(short = 'm', long = "model")]
    model: std::path::PathBuf,
    /// The prompt.
    #[arg(short = 'p', long = "prompt")]
    prompt: Option<String>,
    /// Read the prompt from FILE.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    /// Context length (KV cache size) in tokens [default: the training
    /// context, at most 4096].
    #[arg(short = 'c', long = "ctx-size")]
    ctx_size: Option<usize>,
    /// Threads for the matmuls [default: the CPUs available].
    #[arg(short = 't', long = "threads")]
    threads: Option<usize>,
    /// Pack the repeating layers' weights for AMX (only when no layer runs
    /// on a GPU and AMX can run; otherwise one warning and the run goes on).
    #[arg(long)]
    amx: bool,
    /// Repeating layers to put on GPUs (from the last); every layer also
    /// takes the output norm and LM head along. More than the model has
    /// clamps with a message.
    #[arg(long = "n-gpu-layers", visible_alias = "ngl", short_alias = 'g', default_value_t = 0)]
    n_gpu_layers: usize,
    /// With several GPUs: their shares of the GPU layers, comma separated,
    /// GPU 0 first (`--tensor-split 3,1`); without it the layers follow
    /// each GPU's free memory.
    #[arg(long = "tensor-split", visible_alias = "ts", value_delimiter = ',')]
    tensor_split: Vec<f64>,
    /// When the GPU layers cannot be set up (out of GPU memory, a driver or
    /// NVRTC error), warn and run every layer on the CPU instead of stopping.
    #[arg(long = "gpu-fallback")]
    gpu_fallback: bool,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Keep the K most likely tokens (0: all).
    #[arg(long = "top-k", default_value_t = 40)]
    top_k: usize,
    /// Keep the most likely tokens up to probability P.
    #[arg(long = "top-p", default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens below P x the most likely token's probability.
    #[arg(long = "min-p", default_value_t = 0.05)]
    min_p: f32,
    /// Penalise the last 64 tokens (1.0: off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Seed of the sampler [default: from the clock, printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Wrap the prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// The system message for --chat ('' leaves it out; default: the template's).
    #[arg(long)]
    system: Option<String>,
    /// Chat on stdin, one line per turn; an empty line ends.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Print the time per op kind (each linear role, attention, RoPE,
    /// norms, activation quantisation, sampling, copies) and per layer.
    #[arg(long)]
    profile: bool,
    /// Prune every repeating-layer linear weight to sparsity S (0..1,
    /// magnitude per output row) at load and run the sparse kernels where
    /// they are faster. BF16 models only (`tilejit quantize IN OUT bf16`).
    #[arg(long, value_name = "S")]
    sparse: Option<f64>,
}

fn main() -> std::process::ExitCode {
    // A closed pipe (`tilejit inspect x.gguf | head`) should end the program
    // quietly, as it does for other Unix tools, not panic in println!.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // llama.cpp spells the GPU layer count `-ngl N`, a three-letter flag
    // with one dash that no argument parser reads as such: take it as the
    // long flag it stands for.
    let args = std::env::args_os().map(|a| if a == "-ngl" { "--n-gpu-layers".into() } else { a });
    let cli = Cli::parse_from(args);
    let command = cli.command.unwrap_or(Command::Tour { threads: 1, shape: vec![512, 512, 4096] });
    let result = match command {
        Command::Inspect { path } => inspect::run(&path),
        Command::Run(a) => run_command(a),
        Command::BenchModel {
            model,
            prompts,
            gens,
            threads,
            amx,
            n_gpu_layers,
            tensor_split,
            sparse,
            profile,
            reps,
            json,
        } => {
            let opts = BenchModelOptions {
                model,
                prompts,
                gens,
                threads,
                amx: vec![],
                n_gpu_layers,
                tensor_split,
                sparsities: sparse,
                profile,
                reps,
            };
            bench_model_command(opts, amx, json)
        }
        Command::Perplexity { model, file, ctx_size, threads, amx, sparse } => {
            perplexity_command(&model, &file, ctx_size, threads, amx, sparse)
        }
        Command::Quantize { input, output, ggml_type } => quantize_command(&input, &output, &ggml_type),
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
        Command::Emulate { op, isa, shape, sparsity, threads } => match tilejit::isa::parse(&isa) {
            _ if threads == 0 || shape.contains(&0) => {
                Err("--threads and every --shape dimension must be at least 1".into())
            }
            _ if !(0.0..=1.0).contains(&sparsity) => Err(format!("--sparsity {sparsity} is not in 0..=1").into()),
            Ok(Some((isa @ (tilejit::isa::Isa::Amx | tilejit::isa::Isa::Avx512), _))) => {
                emulate::run(&emulate::EmulateOptions {
                    op,
                    isa,
                    m: shape[0],
                    n: shape[1],
                    k: shape[2],
                    sparsity,
                    threads,
                })
            }
            _ => Err(format!("--isa {isa:?}: use amx or avx512").into()),
        },
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

fn run_command(a: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err("-t must be at least 1".into());
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    let sampler = tilejit::text::sampler::SamplerOptions {
        temperature: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: 64,
        seed,
    };
    run::run(&run::RunOptions {
        model: a.model,
        prompt: a.prompt,
        prompt_file: a.file,
        n_predict: a.n_predict,
        n_ctx: a.ctx_size,
        threads,
        amx: a.amx,
        n_gpu_layers: a.n_gpu_layers,
        tensor_split: a.tensor_split,
        gpu_fallback: a.gpu_fallback,
        sampler,
        chat: a.chat,
        system: a.system,
        interactive: a.interactive,
        profile: a.profile,
        sparsity: a.sparse,
    })
}

fn quantize_command(
    input: &std::path::Path,
    output: &std::path::Path,
    ty: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use tilejit::model::quantize::{parse_format, requantize};
    let format = parse_format(ty)?;
    if input == output {
        return Err("the output must be another file than the input (it is memory-mapped while writing)".into());
    }
    let g = tilejit::gguf::Gguf::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let tmp = output.with_extension("gguf.partial");
    let file = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let bar = indicatif::ProgressBar::new(g.tensors().len() as u64);
    let bytes = requantize(&g, format, &mut w, |done, _| bar.set_position(done as u64));
    bar.finish_and_clear();
    let finish = bytes.map_err(|e| e.to_string()).and_then(|b| {
        std::io::Write::flush(&mut w).map_err(|e| e.to_string())?;
        drop(w);
        std::fs::rename(&tmp, output).map_err(|e| format!("{}: {e}", output.display()))?;
        Ok(b)
    });
    match finish {
        Ok(b) => {
            println!(
                "wrote {} ({} tensors, {:.2} MiB of tensor data, {})",
                output.display(),
                g.tensors().len(),
                b as f64 / (1 << 20) as f64,
                format.name()
            );
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.into())
        }
    }
}

fn perplexity_command(
    model: &std::path::Path,
    file: &std::path::Path,
    n_ctx: usize,
    threads: Option<usize>,
    amx: bool,
    sparsity: Option<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    use tilejit::model::{perplexity::perplexity, LoadOptions, Model, PlacementFlags};
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err("-t must be at least 1".into());
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("-f {}: {e}", file.display()))?;
    if !model.is_file() {
        return Err(format!("-m {}: no such file", model.display()).into());
    }
    let placement = PlacementFlags { amx, ..PlacementFlags::default() };
    let opts = LoadOptions { placement, sparsity, ..LoadOptions::default() };
    let m = Model::load(model, opts, |_, _| {})?;
    for w in &m.plan.warnings {
        eprintln!("warning: {w}");
    }
    let tok = tilejit::text::tokenizer::Tokenizer::from_gguf(m.gguf())?;
    let bos = if tok.add_bos() { tok.bos() } else { None };
    let mut tokens: Vec<u32> = bos.into_iter().collect();
    tokens.extend(tok.encode(&text, false));
    eprintln!("{}: {} tokens; windows of {n_ctx}, {threads} thread(s)", file.display(), tokens.len());
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("perplexity [{bar:30}] {pos}/{len} windows, {eta} left")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let t0 = std::time::Instant::now();
    let p = perplexity(&m, &tokens, bos, n_ctx, threads, None, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    println!(
        "PPL = {:.4} +/- {:.4} ({} windows of {n_ctx}, {} tokens scored, {:.1} s)",
        p.ppl,
        p.stderr,
        p.chunks,
        p.scored,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `opts` as parsed, with `--amx` as given (0/1 values) and the thread
/// list not yet defaulted.
fn bench_model_command(
    mut opts: BenchModelOptions,
    amx: Vec<u8>,
    json: Option<std::path::PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    use tilejit::bench::model::{bench_model, table_header};
    if !opts.model.is_file() {
        return Err(format!("-m {}: no such file", opts.model.display()).into());
    }
    if let Some(bad) = amx.iter().find(|&&a| a > 1) {
        return Err(format!("--amx {bad}: use 0, 1 or 0,1").into());
    }
    if opts.threads.is_empty() {
        opts.threads = vec![std::thread::available_parallelism().map_or(1, |n| n.get())];
    }
    opts.amx = amx.into_iter().map(|a| a == 1).collect();
    println!("{}", table_header());
    let report = bench_model(&opts, |r| {
        println!("{}", r.table_row());
        match (&r.bound, &r.bound_missing) {
            (Some(b), _) => eprintln!("  bound ({}): {:.1} tokens/s, {}", b.kind, b.tokens_per_s, b.detail),
            (None, Some(why)) => eprintln!("  no bound: {why}"),
            (None, None) => {}
        }
        if let Some(p) = &r.profile {
            print!("{}", p.table());
        }
    })?;
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, text).map_err(|e| format!("--json {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
