const LPAD: usize = 32;
fn main() {
    use tilejit::kernels::spec::*;
    use tilejit::gemm::*;
    use tilejit::kernels::pack::PackedB;
    let env = |v: &str, d: usize| std::env::var(v).map(|x| x.parse().unwrap()).unwrap_or(d);
    let (m, n, k) = (env("TM", 512), env("TN", 512), env("TK", 4096));
    for elem in [ElemType::Int8(Int8Sign::SS), ElemType::Bf16] {
        let peak = tilejit::bench::tmul_peak_ops(elem).unwrap();
        for kbs in [8usize, 16, 32] {
            for pf in [false, true] { let blocking = Blocking::B2X2;
                let opts = GemmOptions { blocking, prefetch: pf, schedule: if std::env::var_os("SEQ").is_some() { Schedule::LoadThenCompute } else { Schedule::Pipelined }, ..Default::default() };
                let t = match elem {
                    ElemType::Bf16 => {
                        let mut ab = tilejit::kernels::pack::AlignedBytes::zeroed(m*(k+LPAD)*2); ab.typed_mut::<u16>().fill(0x3f80); let a = ab.typed::<u16>();
                        let b = PackedB::pack_bf16(&vec![0x3f80u16; k * n], k, n, n, tilejit::kernels::pack::BLayout { k_groups_per_tdp: 16, k_block_steps: kbs }).unwrap();
                        let mut cb = tilejit::kernels::pack::AlignedBytes::zeroed(m*n*4); let c = cb.typed_mut::<f32>();
                        tilejit::bench::median_time(5, || gemm_bf16(m, a, k+LPAD, &b, c, n, false, &opts).unwrap())
                    }
                    _ => {
                        let mut ab = tilejit::kernels::pack::AlignedBytes::zeroed(m*(k+LPAD*2)); ab.typed_mut::<u8>().fill(1); let a = ab.typed::<u8>();
                        let b = PackedB::pack_int8(&vec![1u8; k * n], k, n, n, tilejit::kernels::pack::BLayout { k_groups_per_tdp: 16, k_block_steps: kbs }).unwrap();
                        let mut cb = tilejit::kernels::pack::AlignedBytes::zeroed(m*n*4); let c = cb.typed_mut::<i32>();
                        tilejit::bench::median_time(5, || gemm_int8(Int8Sign::SS, m, a, k+LPAD*2, &b, c, n, false, &opts).unwrap())
                    }
                };
                let ops = 2.0 * (m * n * k) as f64 / t.as_secs_f64();
                println!("{:?} kbs={kbs} {blocking} pf={pf}: {:.1} Gops, peak {:.1} Gops, {:.1}%", elem, ops / 1e9, peak / 1e9, 100.0 * ops / peak);
            }
        }
    }
}
