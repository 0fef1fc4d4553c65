//! `tilejit calibrate`: the measurement behind the ISA dispatch. For each
//! element type and each M it times the AVX-512 and the AMX path on the
//! same N x K weights (cycled from DRAM, as in decode) and reports the
//! smallest M from which AMX wins: the crossovers `gemm::dispatch` (dense)
//! and `gemm::quant::amx_from_m` (GGUF formats) use.

use tilejit::bench::{gemv_weight_bandwidth, QuantCallFixture};
use tilejit::gemm::GemmOptions;
use tilejit::isa::{availability, Isa};
use tilejit::kernels::quant_avx512::WeightFormat;
use tilejit::kernels::spec::{ElemType, Int8Sign};

pub struct CalibrateOptions {
    pub n: usize,
    pub k: usize,
    pub threads: usize,
}

const MS: [usize; 9] = [1, 2, 4, 8, 12, 16, 24, 32, 64];

pub fn run(opts: &CalibrateOptions) -> Result<(), Box<dyn std::error::Error>> {
    for isa in [Isa::Avx512, Isa::Amx] {
        if let Err(reason) = availability(isa) {
            return Err(format!("calibration needs both AVX-512 and AMX; {isa}: {reason}").into());
        }
    }
    let (n, k) = (opts.n, opts.k);
    println!("GEMM M x {n} x {k}, weights cycled through 512 MiB, {} thread(s); time per call in us", opts.threads);
    let options = |isa| GemmOptions { isa: Some(isa), threads: opts.threads, ..GemmOptions::default() };
    for elem in [ElemType::Int8(Int8Sign::US), ElemType::Bf16] {
        let copies = ((512 << 20) / (n * k * elem.elem_bytes())).max(1);
        crossover_table(elem.name(), |m, isa| {
            let bytes_per_s = gemv_weight_bandwidth(elem, m, n, k, copies, &options(isa), 3)?;
            let bytes_per_call = (n.div_ceil(16) * 16 * k * elem.elem_bytes()) as f64;
            Ok(bytes_per_call / bytes_per_s * 1e6)
        })?;
    }
    // The same comparison for `gemm_quant` (GGUF weights): the AVX-512
    // decode kernel against the AMX per-block kernel.
    for format in WeightFormat::ALL {
        let copies = ((512 << 20) / (n * k / 32 * format.gguf_block_bytes())).max(1);
        let mut fixture = None;
        crossover_table(format.name(), |m, isa| {
            // One fixture per M, shared by both ISAs.
            if fixture.as_ref().is_none_or(|(fm, _)| *fm != m) {
                fixture = Some((m, QuantCallFixture::new(format, m, n, k, copies)?));
            }
            let (_, fx) = fixture.as_mut().expect("set above");
            Ok(fx.seconds_per_call(&options(isa), 3)? * 1e6)
        })?;
    }
    Ok(())
}

/// Times AVX-512 and AMX for every M of [`MS`] with `time(m, isa)` (us per
/// call), prints the table and the smallest M from which AMX wins.
fn crossover_table(
    label: &str,
    mut time: impl FnMut(usize, Isa) -> Result<f64, Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n{label:<6} {:>4} {:>10} {:>10} {:>8}", "M", "avx512", "amx", "faster");
    let mut crossover = None;
    for m in MS {
        let (avx, amx) = (time(m, Isa::Avx512)?, time(m, Isa::Amx)?);
        let faster = if amx < avx { "amx" } else { "avx512" };
        if amx < avx && crossover.is_none() {
            crossover = Some(m);
        }
        println!("{:<6} {m:>4} {avx:>10.1} {amx:>10.1} {faster:>8}", "");
    }
    match crossover {
        Some(m) => println!("crossover {label}: AMX from M = {m}"),
        None => println!("crossover {label}: AVX-512 faster for every M measured"),
    }
    Ok(())
}
