//! `tilejit tour`: the main job in a few seconds. Detect the CPU, JIT the
//! dense kernels, prove them against the oracle on random data, and print
//! their throughput next to the TMUL peak measured in the same run.

use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::bench::{
    jit_compile_time, jit_compile_time_avx512, measure_gemm, tmul_peak_ops, GemvFixture, PrefillStrategy,
    QuantGemvFixture, QuantPrefillFixture, ReadProbe,
};
use tilejit::cpu::{amx_ready, Absence, CpuFeatures, Feature};
use tilejit::gemm::{dispatch, gemm_bf16, gemm_int8, oracle_sign, GemmError, GemmOptions};
use tilejit::isa::{self, Isa};
use tilejit::kernels::dense_amx::{Blocking, DenseAmxSpec};
use tilejit::kernels::dense_avx512::{Avx512Kind, DenseAvx512Spec};
use tilejit::kernels::pack::{BLayout, PackedB};
use tilejit::kernels::quant_avx512::WeightFormat;
use tilejit::kernels::spec::{CInit, ElemType, Int8Sign};
use tilejit_verify::{fill_bf16, fill_i8, first_mismatch_f32, first_mismatch_i32, gemm_bf16_amx, gemm_i8, Bf16Dist};

/// Every dense element type, in table order.
const ELEMS: [ElemType; 5] = [
    ElemType::Int8(Int8Sign::SS),
    ElemType::Int8(Int8Sign::SU),
    ElemType::Int8(Int8Sign::US),
    ElemType::Int8(Int8Sign::UU),
    ElemType::Bf16,
];

pub struct TourOptions {
    pub threads: usize,
    /// GEMM shape for the throughput table.
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

pub fn run(opts: &TourOptions) -> Result<(), Box<dyn std::error::Error>> {
    let f = CpuFeatures::get();
    println!("== CPU");
    println!("{}", f.brand);
    let state = |x: Feature| match f.absence(x) {
        None => "yes",
        Some(Absence::Hidden) => "hidden",
        Some(Absence::NotEnabledByOs) => "no (OS)",
        Some(Absence::NotInCpuid) => "no",
    };
    let line: Vec<String> = Feature::ALL.iter().map(|&x| format!("{} {}", x.name(), state(x))).collect();
    println!("{}", line.join(" | "));
    if !f.hidden.is_empty() {
        println!("TILEJIT_HIDE hides: {}", f.hidden);
    }
    let chosen = isa::select()?;
    let forced = isa::forced()?;
    println!("ISA: {chosen}{}", if forced.is_some() { " (forced by TILEJIT_ISA)" } else { "" });

    // The paths this run shows: the forced one, else every one the
    // machine can run; the others are named with the reason.
    let mut paths = Vec::new();
    println!("\n== Paths");
    for candidate in [Isa::Amx, Isa::Avx512, Isa::Scalar] {
        let status = match (forced, isa::availability(candidate)) {
            (Some(only), _) if only != candidate => Err(format!("TILEJIT_ISA={only} forces another path")),
            (_, status) => status.map_err(|e| e.to_string()),
        };
        match status {
            Ok(()) => {
                println!("{:<7} runs", candidate.name());
                paths.push(candidate);
            }
            Err(why) => println!("{:<7} SKIPPED: {why}", candidate.name()),
        }
    }

    jit_section()?;
    verify_section(&paths, opts)?;
    throughput_section(&paths, opts)?;
    if !paths.contains(&Isa::Avx512) {
        let why = isa::availability(Isa::Avx512).map_or_else(|e| e.to_string(), |()| "not selected".into());
        println!("\n== Decode and quantized decode: SKIPPED (the read probe and decode kernels are AVX-512: {why})");
        return Ok(());
    }
    let gemm_opts = GemmOptions { threads: opts.threads, ..GemmOptions::default() };
    decode_table(opts, &gemm_opts)?;
    match amx_ready() {
        Ok(()) if paths.contains(&Isa::Amx) => prefill_table(opts)?,
        Ok(()) => println!("\n== Quantized prefill: SKIPPED (TILEJIT_ISA forces another path; it compares AMX)"),
        Err(e) => println!("\n== Quantized prefill: SKIPPED (it compares AMX with AVX-512: {e})"),
    }
    Ok(())
}

/// Code generation needs no AMX or AVX-512 (the bytes are only written),
/// so this section, and `TILEJIT_DUMP`, work on any x86-64.
fn jit_section() -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== JIT (median of 20 fresh generations, no cache; runs on any x86-64)");
    println!("{:<44} {:>10} {:>8}", "kernel", "compile", "bytes");
    for elem in ELEMS {
        let spec = DenseAmxSpec::new(elem, Blocking::B2X2, CInit::Load);
        let (t, size) = jit_compile_time(spec, 20)?;
        println!("{:<44} {:>8.1}us {:>8}", spec.name(), t.as_secs_f64() * 1e6, size);
    }
    for kind in [Avx512Kind::Int8(Int8Sign::US), Avx512Kind::Bf16Chains, Avx512Kind::Bf16Dot] {
        let spec = DenseAvx512Spec::new(kind, 4, 4, CInit::Load);
        let (t, size) = jit_compile_time_avx512(spec, 20)?;
        println!("{:<44} {:>8.1}us {:>8}", spec.name(), t.as_secs_f64() * 1e6, size);
    }
    if let Some(dir) = std::env::var_os("TILEJIT_DUMP") {
        println!("(kernels written to {})", std::path::Path::new(&dir).display());
    }
    Ok(())
}

/// Each element type on each path, against the oracle, bit for bit. A path
/// without the extension one type needs says so on that line.
fn verify_section(paths: &[Isa], opts: &TourOptions) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== Verify: kernel == reference, bit for bit (M=77 N=53 K=301, tails in M, N and K)");
    for &path in paths {
        let gemm_opts = GemmOptions { threads: opts.threads, isa: Some(path), ..GemmOptions::default() };
        for elem in ELEMS {
            let label = format!("{:<7}{:<6}", path.name(), elem.name());
            if let Err(why) = isa::availability_for(path, dispatch::op(elem, false)) {
                println!("{label} SKIPPED: {why}");
                continue;
            }
            match verify_once(elem, 77, 53, 301, &gemm_opts)? {
                (outputs, None) => println!("{label} bit-exact on {outputs} outputs"),
                (_, Some(m)) => {
                    return Err(format!("{path} {}: kernel differs from the reference: {m}", elem.name()).into())
                }
            }
        }
    }
    Ok(())
}

/// GEMM throughput on each path: AMX next to the TMUL peak of the same run,
/// the others at their own shape (the scalar path is the oracle, so it
/// gets a smaller one).
fn throughput_section(paths: &[Isa], opts: &TourOptions) -> Result<(), Box<dyn std::error::Error>> {
    let threads = opts.threads;
    println!("\n== Throughput ({threads} thread{}, B packed, median of 5)", if threads == 1 { "" } else { "s" });
    println!("{:<40} {:>12} {:>12} {:>8}", "case", "median", "Gop/s", "of peak");
    for &path in paths {
        let gemm_opts = GemmOptions { threads, isa: Some(path), ..GemmOptions::default() };
        let (m, n, k) = match path {
            Isa::Scalar => (opts.m.min(16), opts.n.min(128), opts.k.min(512)),
            _ => (opts.m, opts.n, opts.k),
        };
        for elem in [ElemType::Int8(Int8Sign::SS), ElemType::Bf16] {
            let case = format!("{path} gemm {} {m}x{n}x{k}", elem.name());
            if let Err(why) = isa::availability_for(path, dispatch::op(elem, false)) {
                println!("{case:<40} SKIPPED: {why}");
                continue;
            }
            // The bound is one core's TDP rate; with threads it scales per core.
            let peak = match path {
                Isa::Amx => Some(tmul_peak_ops(elem)? * threads as f64),
                _ => None,
            };
            if let Some(peak) = peak {
                println!("{:<40} {:>12} {:>12.0} {:>8}", format!("tmul peak {}", elem.name()), "-", peak / 1e9, "100%");
            }
            let r = measure_gemm(elem, m, n, k, &gemm_opts, 5)?;
            let of_peak = peak.map_or("-".to_string(), |p| format!("{:.1}%", 100.0 * r.ops_per_s / p));
            println!("{case:<40} {:>10.1}us {:>12.1} {:>8}", r.median.as_secs_f64() * 1e6, r.ops_per_s / 1e9, of_peak);
        }
    }
    Ok(())
}

/// GEMV (M = 1) against the streaming-read bandwidth of the same run, with
/// weights cycled through 1 GiB so that they come from DRAM.
fn decode_table(opts: &TourOptions, gemm_opts: &GemmOptions) -> Result<(), Box<dyn std::error::Error>> {
    const SPAN: usize = 1 << 30;
    // The decode shape of the acceptance: one token against a
    // 4096 x 4096 layer.
    let (n, k) = (4096, 4096);
    println!(
        "\n== Decode: GEMV M=1 N={n} K={k}, weights cycled through 1 GiB ({} thread{})",
        opts.threads,
        if opts.threads == 1 { "" } else { "s" }
    );
    // Bound and kernels interleaved, eleven rounds, medians: the machine's
    // bandwidth drifts between runs by more than the margins that matter.
    let elems = [ElemType::Int8(Int8Sign::US), ElemType::Bf16];
    let mut fixtures = elems
        .iter()
        .map(|&e| GemvFixture::new(e, 1, n, k, SPAN / (n * k * e.elem_bytes())))
        .collect::<Result<Vec<_>, _>>()?;
    let probe = ReadProbe::new(SPAN, opts.threads)?;
    let mut bounds = Vec::new();
    let mut gemvs = vec![Vec::new(); elems.len()];
    for _ in 0..11 {
        bounds.push(probe.bandwidth(1));
        for (fixture, out) in fixtures.iter_mut().zip(&mut gemvs) {
            out.push(fixture.bandwidth(gemm_opts, 1)?);
        }
    }
    drop(fixtures);
    let bound = median(&mut bounds);
    println!("{:<24} {:>10.1} GB/s {:>8}", "streaming read", bound / 1e9, "100%");
    for (elem, v) in elems.iter().zip(&mut gemvs) {
        let bw = median(v);
        println!("{:<24} {:>10.1} GB/s {:>7.1}%", format!("gemv {}", elem.name()), bw / 1e9, 100.0 * bw / bound);
    }
    quant_decode_table(opts, &probe)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// GEMV (M = 1) over GGUF block-quantized weights (`gemm_quant_avx512`),
/// each format with its activations (Q8_0, or Q8_1 for Q4_1), against the
/// streaming-read bandwidth measured interleaved with it, per shape.
/// Throughput counts bytes of the GGUF weights (34/18/20 per 32).
fn quant_decode_table(opts: &TourOptions, probe: &ReadProbe) -> Result<(), Box<dyn std::error::Error>> {
    const SPAN: usize = 1 << 30;
    println!(
        "\n== Decode over GGUF block formats: GEMV M=1, weights cycled through >= 1 GiB, GB/s of GGUF bytes ({} thread{})",
        opts.threads,
        if opts.threads == 1 { "" } else { "s" }
    );
    // A 4096 x 4096 projection and a 14336 x 4096 FFN (llama-3-8B) layer.
    for (n, k) in [(4096, 4096), (14336, 4096)] {
        let mut fixtures = WeightFormat::ALL
            .iter()
            .map(|&f| QuantGemvFixture::new(f, n, k, SPAN.div_ceil(n * k / 32 * f.gguf_block_bytes())))
            .collect::<Result<Vec<_>, _>>()?;
        let mut bounds = Vec::new();
        let mut bw = vec![Vec::new(); fixtures.len()];
        for _ in 0..11 {
            bounds.push(probe.bandwidth(1));
            for (fixture, out) in fixtures.iter_mut().zip(&mut bw) {
                out.push(fixture.bandwidth(opts.threads, 1)?);
            }
        }
        let bound = median(&mut bounds);
        println!("{:<28} {:>10.1} GB/s {:>8}", format!("streaming read, {n}x{k}"), bound / 1e9, "100%");
        for (f, v) in WeightFormat::ALL.iter().zip(&mut bw) {
            let x = median(v);
            let name = format!("gemv {} x {}", f.name(), if *f == WeightFormat::Q4_1 { "q8_1" } else { "q8_0" });
            println!("{:<28} {:>10.1} GB/s {:>7.1}%", name, x / 1e9, 100.0 * x / bound);
        }
    }
    Ok(())
}

/// Runs one random GEMM through the driver and the oracle; returns the
/// number of outputs compared and the first mismatch, if any.
fn verify_once(
    elem: ElemType,
    m: usize,
    n: usize,
    k: usize,
    opts: &GemmOptions,
) -> Result<(usize, Option<String>), GemmError> {
    let mut rng = StdRng::seed_from_u64(0x711e);
    match elem {
        ElemType::Int8(sign) => {
            let (mut a, mut b) = (vec![0u8; m * k], vec![0u8; k * n]);
            fill_i8(&mut rng, &mut a);
            fill_i8(&mut rng, &mut b);
            let c0: Vec<i32> = (0..m * n).map(|_| rng.random()).collect();
            let packed = PackedB::pack_int8(&b, k, n, n, BLayout::default())?;
            let mut c = c0.clone();
            gemm_int8(sign, m, &a, k, &packed, &mut c, n, true, opts)?;
            let mut expected = c0;
            gemm_i8(oracle_sign(sign), m, n, k, &a, &b, &mut expected);
            Ok((m * n, first_mismatch_i32(&expected, &c).map(|mm| mm.to_string())))
        }
        ElemType::Bf16 => {
            let (mut a, mut b) = (vec![0u16; m * k], vec![0u16; k * n]);
            fill_bf16(Bf16Dist::Specials, &mut rng, &mut a);
            fill_bf16(Bf16Dist::Normal, &mut rng, &mut b);
            let packed = PackedB::pack_bf16(&b, k, n, n, BLayout::default())?;
            let mut c = vec![0f32; m * n];
            gemm_bf16(m, &a, k, &packed, &mut c, n, false, opts)?;
            let mut expected = vec![0f32; m * n];
            gemm_bf16_amx(m, n, k, &a, &b, &mut expected, packed.k_groups_per_tdp() as usize);
            Ok((m * n, first_mismatch_f32(&expected, &c).map(|mm| mm.to_string())))
        }
    }
}

/// Quantized prefill, M = 128, on SmolLM2's down projection and a 4096
/// layer: every strategy next to the same run's int8 TMUL peak and the
/// AVX-512 kernel (the full table: BENCHMARKS.md).
fn prefill_table(opts: &TourOptions) -> Result<(), Box<dyn std::error::Error>> {
    let threads = opts.threads;
    println!("\n== Quantized prefill ({threads} thread(s), GGUF weights, median of 3)");
    let peak = tmul_peak_ops(ElemType::Int8(Int8Sign::SS))? * threads as f64;
    println!("{:<44} {:>8.0} Gop/s {:>7} {:>9}", "tmul peak int8", peak / 1e9, "100%", "x avx512");
    for (n, k) in [(576, 1536), (4096, 4096)] {
        for format in WeightFormat::ALL {
            let mut fx = QuantPrefillFixture::new(format, 128, n, k)?;
            let avx512 = fx.ops_per_s(PrefillStrategy::Avx512Vnni, threads, 3)?;
            for s in PrefillStrategy::ALL {
                let ops = if s == PrefillStrategy::Avx512Vnni { avx512 } else { fx.ops_per_s(s, threads, 3)? };
                println!(
                    "{:<44} {:>8.0} Gop/s {:>6.1}% {:>8.2}x",
                    format!("{} 128x{n}x{k} {}", format.name(), s.name()),
                    ops / 1e9,
                    100.0 * ops / peak,
                    ops / avx512
                );
            }
        }
    }
    Ok(())
}
