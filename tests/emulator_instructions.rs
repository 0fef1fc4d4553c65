//! The instruction-level check of the emulator against the CPU: each
//! AVX-512 row of the subset (and, on an AMX machine, each TDP) runs with
//! random operands, special values and random masks (none, merge, zero),
//! natively and emulated, and every result bit must agree. Under both
//! MXCSR modes the kernels use (the default, and DAZ | FTZ).

mod common;

use dynasmrt::{dynasm, DynasmApi};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tilejit::kernels::encoder::{self as enc, kmovq_k_mem, EvexOp, Gpr, KReg, Mask, Mem, Scale, TdpOp, Tmm, Zmm};
use tilejit::kernels::jit::{CodeBuilder, Frame, JitCode};
use tilejit::kernels::tile_config::TileConfig;
use tilejit_verify::emu::{Access, Code, Emulator, Region};

/// Where the generated function finds its buffers (rdi points here).
#[repr(C)]
struct Args {
    input: *const u8,
    output: *mut u8,
}

const IN_BYTES: usize = 4096;
const OUT_BYTES: usize = 1024;
const MXCSR_DEFAULT: u32 = 0x1F80;
const MXCSR_DAZ_FTZ: u32 = 0x9FC0;

/// Runs `code` natively (if `native`) and emulated on `input`; returns both outputs.
fn both(code: &JitCode, input: &[u8], native: bool) -> (Option<Vec<u8>>, Vec<u8>) {
    let mut out_native = vec![0xA5u8; OUT_BYTES];
    let native_out = native.then(|| {
        let args = Args { input: input.as_ptr(), output: out_native.as_mut_ptr() };
        // SAFETY: the code reads `input` and writes `output` within their
        // sizes, restores what the ABI requires, and the CPU has its
        // extensions (`native` is only set when it does).
        unsafe { code.call(&args) };
        out_native.clone()
    });
    let mut out_emu = vec![0xA5u8; OUT_BYTES];
    let args = Args { input: input.as_ptr(), output: out_emu.as_mut_ptr() };
    let mut emu = Emulator::new();
    emu.allow(Region::read("input", input));
    emu.allow(Region {
        name: "output".into(),
        start: args.output as u64,
        len: OUT_BYTES as u64,
        access: Access::ReadWrite,
    });
    emu.allow(Region::read_value("args", &args));
    for (start, len) in code.pinned_data() {
        emu.allow(Region { name: "pinned".into(), start, len: len as u64, access: Access::Read });
    }
    let at = Code { bytes: code.bytes(), base: code.base_address(), entry: code.entry_ptr() as u64 };
    // SAFETY: the regions are this function's live buffers.
    unsafe { emu.call(at, &args as *const Args as u64) }.unwrap_or_else(|e| panic!("emulation failed: {e}"));
    (native_out, out_emu)
}

/// Random bytes with f32 specials (NaNs, infinities, zeros, subnormals,
/// FTZ corners) and bf16 specials sprinkled in as dwords.
fn operand_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    const SPECIALS: [u32; 14] = [
        0x0000_0000,
        0x8000_0000,
        0x7F80_0000,
        0xFF80_0000,
        0x7FC0_0001,
        0xFFA0_0002,
        0x7F81_0000,
        0x0000_0001,
        0x807F_FFFF,
        0x0080_0000,
        0x7F7F_FFFF,
        0x3F80_3F80,
        0xFFC1_7FC1,
        0x0001_8001,
    ];
    let mut v: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    for d in v.chunks_exact_mut(4) {
        match rng.random_range(0..8) {
            0 => d.copy_from_slice(&SPECIALS[rng.random_range(0..SPECIALS.len())].to_le_bytes()),
            1 => {
                // An ordinary float of moderate size (random bytes are mostly huge or tiny).
                let x: f32 = rng.random_range(-4.0..4.0);
                d.copy_from_slice(&x.to_bits().to_le_bytes());
            }
            _ => {}
        }
    }
    v
}

/// One AVX-512 row under test: how to emit it with dst zmm0, sources
/// zmm1/zmm2 (or memory at [r8 + 64] for the memory forms) and mask k1.
#[derive(Clone, Copy)]
enum Form {
    Rvm(EvexOp),
    Rm(EvexOp),
    /// A memory source (expand, broadcast, f16 conversion).
    RmMem(EvexOp),
}

fn function(form: Form, mask: Mask, mxcsr: u32) -> JitCode {
    let mut cb = CodeBuilder::new().unwrap();
    let entry = cb.offset();
    let frame = Frame { saved: &[], locals: 8, mxcsr_slot: Some(0), tiles: false };
    cb.enter(&frame);
    let (input, output) = (Gpr::R8, Gpr::R9);
    let mxcsr_at = cb.pin(mxcsr) as i64;
    dynasm!(cb.ops
        ; .arch x64
        ; mov r8, [rdi]
        ; mov r9, [rdi + 8]
        ; mov rax, QWORD mxcsr_at
        ; ldmxcsr [rax]
    );
    let z = |n| Zmm::new(n).unwrap();
    for (reg, at) in [(0, 0), (1, 64), (2, 128)] {
        cb.emit(EvexOp::VMOVUPS_LOAD.rm_mem(z(reg), Mem::base_disp(input, at), Mask::NONE).unwrap());
    }
    cb.emit(kmovq_k_mem(KReg::new(1).unwrap(), Mem::base_disp(input, 192)));
    let inst = match form {
        Form::Rvm(op) => op.rvm(z(0), z(1), z(2), mask),
        Form::Rm(op) => op.rm(z(0), z(1), mask),
        Form::RmMem(op) => op.rm_mem(z(0), Mem::base_disp(input, 256), mask),
    };
    cb.emit(inst.unwrap());
    cb.emit(EvexOp::VMOVUPS_STORE.mr_mem(Mem::base(output), z(0), Mask::NONE).unwrap());
    cb.leave(&frame);
    cb.finish(entry).unwrap()
}

#[test]
fn every_avx512_row_matches_the_cpu() {
    use common::{features_or_skip, AVX512_BF16, AVX512_VNNI};
    use tilejit::cpu::Feature;
    let vbmi2 = &[Feature::Avx512F, Feature::Avx512Bw, Feature::Avx512Vbmi2];
    let rows: Vec<(&str, Form, &[Feature])> = vec![
        ("vpdpbusd", Form::Rvm(EvexOp::VPDPBUSD), AVX512_VNNI),
        ("vdpbf16ps", Form::Rvm(EvexOp::VDPBF16PS), AVX512_BF16),
        ("vfmadd231ps", Form::Rvm(EvexOp::VFMADD231PS), AVX512_VNNI),
        ("vaddps", Form::Rvm(EvexOp::VADDPS), AVX512_VNNI),
        ("vmulps", Form::Rvm(EvexOp::VMULPS), AVX512_VNNI),
        ("vpaddd", Form::Rvm(EvexOp::VPADDD), AVX512_VNNI),
        ("vpsubd", Form::Rvm(EvexOp::VPSUBD), AVX512_VNNI),
        ("vpxord", Form::Rvm(EvexOp::VPXORD), AVX512_VNNI),
        ("vpandd", Form::Rvm(EvexOp::VPANDD), AVX512_VNNI),
        ("vpshufb", Form::Rvm(EvexOp::VPSHUFB), AVX512_VNNI),
        ("vpsubb", Form::Rvm(EvexOp::VPSUBB), AVX512_VNNI),
        ("vpsrlvd", Form::Rvm(EvexOp::VPSRLVD), AVX512_VNNI),
        ("vpsllvd", Form::Rvm(EvexOp::VPSLLVD), AVX512_VNNI),
        ("vcvtdq2ps", Form::Rm(EvexOp::VCVTDQ2PS), AVX512_VNNI),
        ("vmovdqu32 load", Form::RmMem(EvexOp::VMOVDQU32_LOAD), AVX512_VNNI),
        ("vpexpandb", Form::RmMem(EvexOp::VPEXPANDB), vbmi2),
        ("vpexpandw", Form::RmMem(EvexOp::VPEXPANDW), vbmi2),
        ("vpbroadcastd", Form::RmMem(EvexOp::VPBROADCASTD), AVX512_VNNI),
        ("vbroadcastss", Form::RmMem(EvexOp::VBROADCASTSS), AVX512_VNNI),
        ("vcvtph2ps", Form::RmMem(EvexOp::VCVTPH2PS), AVX512_VNNI),
    ];
    let mut rng = StdRng::seed_from_u64(21);
    let k1 = KReg::new(1).unwrap();
    let mut checked = 0;
    for (name, form, needs) in rows {
        if !features_or_skip(&format!("emulator vs CPU: {name}"), needs) {
            continue;
        }
        for mxcsr in [MXCSR_DEFAULT, MXCSR_DAZ_FTZ] {
            for mask in [Mask::NONE, Mask::merge(k1), Mask::zero(k1)] {
                let code = function(form, mask, mxcsr);
                for case in 0..300 {
                    let input = operand_bytes(&mut rng, IN_BYTES);
                    let (native, emulated) = both(&code, &input, true);
                    let native = native.expect("runs natively");
                    if let Some(i) = native[..64].iter().zip(&emulated[..64]).position(|(a, b)| a != b) {
                        let dword = |v: &[u8]| u32::from_le_bytes(v[i & !3..(i & !3) + 4].try_into().unwrap());
                        panic!(
                            "{name}, MXCSR {mxcsr:#x}, {mask:?}, case {case}: byte {i}: CPU {:#010x}, emulator {:#010x}",
                            dword(&native),
                            dword(&emulated)
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    println!("{checked} instruction executions compared bit for bit");
}

#[test]
fn every_tdp_matches_the_cpu() {
    use common::{features_or_skip, AMX_BF16, AMX_INT8};
    let mut rng = StdRng::seed_from_u64(22);
    let mut checked = 0;
    for (op, needs) in [
        (TdpOp::Bssd, AMX_INT8),
        (TdpOp::Bsud, AMX_INT8),
        (TdpOp::Busd, AMX_INT8),
        (TdpOp::Buud, AMX_INT8),
        (TdpOp::Bf16ps, AMX_BF16),
    ] {
        if !features_or_skip(&format!("emulator vs CPU: {op:?}"), needs) {
            continue;
        }
        for &(m, n_bytes, k_bytes) in &[(16usize, 64u16, 64u16), (5, 12, 36), (1, 4, 4), (16, 64, 8)] {
            let mut config = TileConfig::new();
            config.set(Tmm::new(0).unwrap(), m as u8, n_bytes).unwrap();
            config.set(Tmm::new(1).unwrap(), m as u8, k_bytes).unwrap();
            config.set(Tmm::new(2).unwrap(), (k_bytes / 4) as u8, n_bytes).unwrap();
            let mut cb = CodeBuilder::new().unwrap();
            let entry = cb.offset();
            let frame = Frame { saved: &[], locals: 0, mxcsr_slot: None, tiles: true };
            cb.enter(&frame);
            cb.load_tile_config(config, Gpr::RAX);
            dynasm!(cb.ops ; .arch x64 ; mov r8, [rdi] ; mov r9, [rdi + 8] ; mov rcx, 64);
            let rows = |t: u8| Mem::base_disp(Gpr::R8, i32::from(t) * 1024).with_index(Gpr::RCX, Scale::S1).unwrap();
            for t in 0..3u8 {
                cb.emit(enc::tileloadd(Tmm::new(t).unwrap(), rows(t)).unwrap());
            }
            cb.emit(enc::tdp(op, Tmm::new(0).unwrap(), Tmm::new(1).unwrap(), Tmm::new(2).unwrap()).unwrap());
            let out = Mem::base(Gpr::R9).with_index(Gpr::RCX, Scale::S1).unwrap();
            cb.emit(enc::tilestored(out, Tmm::new(0).unwrap()).unwrap());
            cb.leave(&frame);
            let code = cb.finish(entry).unwrap();
            for case in 0..200 {
                let input = operand_bytes(&mut rng, IN_BYTES);
                let (native, emulated) = both(&code, &input, true);
                let native = native.expect("runs natively");
                assert!(native == emulated, "{op:?} {m}x{n_bytes}x{k_bytes} case {case}: CPU and emulator differ");
                checked += 1;
            }
        }
    }
    println!("{checked} TDP executions compared bit for bit");
}
