//! `TILEJIT_DUMP` with the `disasm` feature: the text a kernel dump holds
//! is the disassembly of its bytes (generation needs no AVX-512, so this
//! runs on every x86-64).

use tilejit::kernels::jit::disassemble;
use tilejit::kernels::quant_avx512::{QuantAvx512Kernel, QuantAvx512Spec, WeightFormat};

#[test]
fn a_kernel_disassembles_to_its_instructions() {
    let kernel = QuantAvx512Kernel::generate(QuantAvx512Spec::new(WeightFormat::Q4_0, 2)).unwrap();
    let text = disassemble(kernel.code());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 20, "{text}");
    assert!(lines[0].trim_start().starts_with("0:"), "{}", lines[0]);
    for mnemonic in ["vpdpbusd", "vpandd", "vfmadd231ps", "ret"] {
        assert!(text.contains(mnemonic), "{mnemonic} missing from\n{text}");
    }
    // Code up to the last `ret`; constants the kernel reads follow it.
    let code_end = lines.iter().rposition(|l| l.ends_with(" ret")).expect("a ret");
    assert!(!lines[..code_end].iter().any(|l| l.contains("(bad)")), "undecodable code:\n{text}");
}
