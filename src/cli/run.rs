//! `tilejit run`: load a GGUF llama model, place its layers (printing the
//! plan the way llama.cpp users read it), and generate, streaming tokens as
//! they come; `-i` is a chat loop on stdin. Logs go to stderr, the text to
//! stdout, so `tilejit run ... > out.txt` keeps only the text.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tilejit::model::{LoadOptions, Model, PlacementFlags, Session};
use tilejit::text::chat::{ChatTemplate, SystemPrompt};
use tilejit::text::sampler::{Sampler, SamplerOptions};
use tilejit::text::tokenizer::{StreamDecoder, Tokenizer};

/// Everything `run` was asked for (flags checked by clap and `main`).
pub struct RunOptions {
    pub model: PathBuf,
    pub prompt: Option<String>,
    pub prompt_file: Option<PathBuf>,
    pub n_predict: usize,
    pub n_ctx: Option<usize>,
    pub threads: usize,
    pub amx: bool,
    pub n_gpu_layers: usize,
    /// `--tensor-split`: the GPUs' shares of the GPU layers.
    pub tensor_split: Vec<f64>,
    /// `--gpu-fallback`.
    pub gpu_fallback: bool,
    pub sampler: SamplerOptions,
    pub chat: bool,
    pub system: Option<String>,
    pub interactive: bool,
    /// Print where the time went (`--profile`).
    pub profile: bool,
    /// `--sparse S` (BF16 models).
    pub sparsity: Option<f64>,
}

type Error = Box<dyn std::error::Error>;

pub fn run(o: &RunOptions) -> Result<(), Error> {
    if o.prompt.is_some() && o.prompt_file.is_some() {
        return Err("give the prompt with -p or -f, not both".into());
    }
    let prompt = match (&o.prompt, &o.prompt_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(f)) => Some(std::fs::read_to_string(f).map_err(|e| format!("-f {}: {e}", f.display()))?),
        (None, None) => None,
    };
    if prompt.is_none() && !o.interactive {
        return Err("nothing to do: give a prompt with -p or -f, or -i for a chat on stdin".into());
    }
    if !o.model.is_file() {
        return Err(format!("-m {}: no such file", o.model.display()).into());
    }

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} tensors")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(o.model.display().to_string());
    let t0 = Instant::now();
    let placement = PlacementFlags { amx: o.amx, n_gpu_layers: o.n_gpu_layers, tensor_split: o.tensor_split.clone() };
    let opts = LoadOptions { placement, sparsity: o.sparsity, gpu_fallback: o.gpu_fallback, ..LoadOptions::default() };
    let model = Model::load(&o.model, opts, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let cfg = &model.config;
    eprintln!(
        "model: {} layers, {} embd, {} heads ({} KV), vocab {}; loaded in {:.2} s",
        cfg.n_layers,
        cfg.n_embd,
        cfg.n_head,
        cfg.n_head_kv,
        cfg.n_vocab,
        t0.elapsed().as_secs_f64()
    );
    for w in &model.plan.warnings {
        eprintln!("warning: {w}");
    }
    eprint!("{}", model.plan);
    let file_bytes: u64 = model.gguf().tensors().iter().map(|t| t.byte_size()).sum();
    eprintln!(
        "packed weights {:.2} MiB = {:.2} x the file's {:.2} MiB of tensors (the packed tensors' mapped pages released)",
        model.packed_bytes() as f64 / (1 << 20) as f64,
        model.packed_bytes() as f64 / file_bytes as f64,
        file_bytes as f64 / (1 << 20) as f64
    );
    let tokenizer = Tokenizer::from_gguf(model.gguf())?;
    let template = if o.chat || o.interactive { Some(ChatTemplate::from_gguf(model.gguf())?) } else { None };
    let system = match &o.system {
        None => SystemPrompt::Template,
        Some(s) if s.is_empty() => SystemPrompt::Omit,
        Some(s) => SystemPrompt::Text(s.clone()),
    };
    let n_ctx = o.n_ctx.unwrap_or(cfg.n_ctx_train.min(4096));
    let mut session = Session::new(&model, n_ctx, o.threads)?;
    if o.profile {
        session = session.with_profile();
    }
    let mut sampler = Sampler::new(o.sampler)?;
    eprintln!("context {n_ctx}, {} thread(s), seed {}", o.threads, o.sampler.seed);
    let mut stats = Stats::default();

    if let Some(p) = prompt {
        let text = match &template {
            Some(t) => t.first_turn(&system, &p),
            None => p,
        };
        generate(&mut session, &tokenizer, &mut sampler, &text, o.n_predict, &mut stats)?;
        println!();
    }
    if o.interactive {
        let t = template.as_ref().expect("made for -i");
        let stdin = std::io::stdin();
        let mut first = session.position() == 0;
        loop {
            eprint!("\n> ");
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
            let text = if first {
                t.first_turn(&system, line.trim_end())
            } else {
                t.end_of_reply() + &t.next_turn(line.trim_end())
            };
            first = false;
            generate(&mut session, &tokenizer, &mut sampler, &text, o.n_predict, &mut stats)?;
            println!();
        }
    }
    stats.print();
    if let Some(p) = session.profile() {
        eprint!("\n== profile (wall time per op kind, all tokens)\n{}", p.table());
    }
    Ok(())
}

#[derive(Default)]
struct Stats {
    prompt_tokens: usize,
    prompt_time: Duration,
    gen_tokens: usize,
    gen_time: Duration,
}

impl Stats {
    fn print(&self) {
        let rate = |n: usize, t: Duration| if t.is_zero() { 0.0 } else { n as f64 / t.as_secs_f64() };
        eprintln!(
            "\nprompt: {} tokens in {:.2} s, {:.1} tokens/s | generation: {} tokens in {:.2} s, {:.1} tokens/s",
            self.prompt_tokens,
            self.prompt_time.as_secs_f64(),
            rate(self.prompt_tokens, self.prompt_time),
            self.gen_tokens,
            self.gen_time.as_secs_f64(),
            rate(self.gen_tokens, self.gen_time)
        );
        if let Some(bytes) = peak_rss() {
            eprintln!("peak resident memory {:.1} MiB", bytes as f64 / (1 << 20) as f64);
        }
    }
}

/// The process's peak resident set (`VmHWM` of /proc/self/status; `None`
/// where there is no procfs).
pub(crate) fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Runs `text` as one prompt batch, then samples up to `n` tokens,
/// streaming their text; stops at an end-of-generation token or a full
/// context (with a message).
fn generate(
    session: &mut Session,
    tokenizer: &Tokenizer,
    sampler: &mut Sampler,
    text: &str,
    n: usize,
    stats: &mut Stats,
) -> Result<(), Error> {
    let mut tokens = Vec::new();
    if session.position() == 0 && tokenizer.add_bos() {
        tokens.extend(tokenizer.bos());
    }
    tokens.extend(tokenizer.encode(text, true));
    if tokens.is_empty() {
        return Err("the prompt is empty".into());
    }
    let room = session.n_ctx() - session.position();
    if tokens.len() >= room {
        return Err(format!(
            "the prompt is {} tokens and the context has room for {room} more (of -c {}); raise -c or shorten it",
            tokens.len(),
            session.n_ctx()
        )
        .into());
    }
    let t = Instant::now();
    let mut logits = session.forward(&tokens)?;
    stats.prompt_time += t.elapsed();
    stats.prompt_tokens += tokens.len();
    sampler.accept(&tokens);
    let mut out = StreamDecoder::new();
    let stdout = std::io::stdout();
    let t = Instant::now();
    for _ in 0..n {
        let ts = Instant::now();
        let next = sampler.sample(&logits);
        if let Some(p) = session.profile() {
            p.add("sampling", None, ts);
        }
        if tokenizer.is_end_of_generation(next) {
            break;
        }
        let piece = out.push(tokenizer.token_bytes(next));
        let mut lock = stdout.lock();
        lock.write_all(piece.as_bytes())?;
        lock.flush()?;
        stats.gen_tokens += 1;
        if session.position() == session.n_ctx() {
            eprintln!("\n(context full at {} tokens; raise -c for longer output)", session.n_ctx());
            break;
        }
        logits = session.forward(&[next])?;
    }
    stats.gen_time += t.elapsed();
    print!("{}", out.finish());
    Ok(())
}
