//! `tilejit calibrate`: the measurement behind the ISA dispatch. For each
//! element type and each M it times the AVX-512 and the AMX path on the
//! same N x K weights (cycled from DRAM, as in decode) and reports the
//! smallest M from which AMX wins: the crossover `gemm::dispatch` uses.

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
    for elem in [ElemType::Int8(Int8Sign::US), ElemType::Bf16] {
        println!("\n{:<6} {:>4} {:>10} {:>10} {:>8}", elem.name(), "M", "avx512", "amx", "faster");
        let copies = ((512 << 20) / (n * k * elem.elem_bytes())).max(1);
        let mut crossover = None;
        for m in MS {
            let time = |isa| -> Result<f64, Box<dyn std::error::Error>> {
                let o = GemmOptions { isa: Some(isa), threads: opts.threads, ..GemmOptions::default() };
                let bytes_per_s = gemv_weight_bandwidth(elem, m, n, k, copies, &o, 3)?;
                let bytes_per_call = (n.div_ceil(16) * 16 * k * elem.elem_bytes()) as f64;
                Ok(bytes_per_call / bytes_per_s * 1e6)
            };
            let (avx, amx) = (time(Isa::Avx512)?, time(Isa::Amx)?);
            let faster = if amx < avx { "amx" } else { "avx512" };
            if amx < avx && crossover.is_none() {
                crossover = Some(m);
            }
            println!("{:<6} {m:>4} {avx:>10.1} {amx:>10.1} {faster:>8}", "");
        }
        match crossover {
            Some(m) => println!("crossover {}: AMX from M = {m}", elem.name()),
            None => println!("crossover {}: AVX-512 faster for every M measured", elem.name()),
        }
    }
    quantized(opts)
}

/// The same comparison for `gemm_quant` (GGUF weights): AVX-512 decode
/// kernel against the AMX per-block kernel.
fn quantized(opts: &CalibrateOptions) -> Result<(), Box<dyn std::error::Error>> {
    let (n, k) = (opts.n, opts.k);
    for format in WeightFormat::ALL {
        println!("\n{:<6} {:>4} {:>10} {:>10} {:>8}", format.name(), "M", "avx512", "amx", "faster");
        let copies = ((512 << 20) / (n * k / 32 * format.gguf_block_bytes())).max(1);
        let mut crossover = None;
        for m in MS {
            let mut fx = QuantCallFixture::new(format, m, n, k, copies)?;
            let mut time = |isa| -> Result<f64, Box<dyn std::error::Error>> {
                let o = GemmOptions { isa: Some(isa), threads: opts.threads, ..GemmOptions::default() };
                Ok(fx.seconds_per_call(&o, 3)? * 1e6)
            };
            let (avx, amx) = (time(Isa::Avx512)?, time(Isa::Amx)?);
            let faster = if amx < avx { "amx" } else { "avx512" };
            if amx < avx && crossover.is_none() {
                crossover = Some(m);
            }
            println!("{:<6} {m:>4} {avx:>10.1} {amx:>10.1} {faster:>8}", "");
        }
        match crossover {
            Some(m) => println!("crossover {}: AMX from M = {m}", format.name()),
            None => println!("crossover {}: AVX-512 faster for every M measured", format.name()),
        }
    }
    Ok(())
}
