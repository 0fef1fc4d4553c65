//! The emulator's own checks, each shown to fire on small generated
//! functions: instructions outside the subset, accesses outside the
//! registered regions (past an output, into an input, nowhere), the
//! calling convention at the return, the hardware's tile rules, and the
//! step budget. Runs on any x86-64 (nothing executes natively).

use dynasmrt::{dynasm, DynasmApi, DynasmLabelApi};
use tilejit::kernels::encoder::{self as enc, Gpr, Mem, TdpOp, Tmm};
use tilejit::kernels::jit::{CodeBuilder, JitCode};
use tilejit::kernels::tile_config::TileConfig;
use tilejit_verify::emu::{Code, EmuError, Emulator, Region};

fn build(body: impl FnOnce(&mut CodeBuilder)) -> JitCode {
    let mut cb = CodeBuilder::new().unwrap();
    let entry = cb.offset();
    body(&mut cb);
    cb.finish(entry).unwrap()
}

/// Runs `code(args)` with `regions` and the code's pinned data.
fn run(
    code: &JitCode,
    args: u64,
    regions: Vec<Region>,
    max_steps: u64,
) -> Result<tilejit_verify::emu::Report, EmuError> {
    let mut emu = Emulator::new();
    emu.max_steps = max_steps;
    for r in regions {
        emu.allow(r);
    }
    for (start, len) in code.pinned_data() {
        emu.allow(Region { name: "pinned".into(), start, len: len as u64, access: tilejit_verify::emu::Access::Read });
    }
    let at = Code { bytes: code.bytes(), base: code.base_address(), entry: code.entry_ptr() as u64 };
    // SAFETY: every region is a live buffer of this test, valid for its access.
    unsafe { emu.call(at, args) }
}

#[test]
fn an_instruction_outside_the_subset_is_named_with_its_offset() {
    let code = build(|cb| dynasm!(cb.ops ; .arch x64 ; nop ; cpuid ; ret));
    match run(&code, 0, vec![], 100) {
        Err(EmuError::Unsupported { offset, mnemonic, disasm }) => {
            assert_eq!((offset, mnemonic.as_str(), disasm.as_str()), (1, "Cpuid", "cpuid"));
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn a_store_one_byte_past_an_output_is_refused_with_the_nearest_region() {
    let mut out = [0u8; 16];
    let code = build(|cb| dynasm!(cb.ops ; .arch x64 ; mov BYTE [rdi + 15], 1 ; mov BYTE [rdi + 16], 1 ; ret));
    let err = run(&code, out.as_mut_ptr() as u64, vec![Region::write("C", &mut out)], 100).unwrap_err();
    let EmuError::Access { offset, addr, size, write, ref nearest, .. } = err else { panic!("{err:?}") };
    assert_eq!((offset, addr, size, write), (4, out.as_ptr() as u64 + 16, 1, true), "{err}");
    assert!(nearest.starts_with("C [") && nearest.contains("1 bytes away"), "{err}");
    assert_eq!(out[15], 1, "the access inside the region happened");
}

#[test]
fn writes_to_inputs_and_reads_of_unregistered_memory_are_refused() {
    let input = [7u8; 8];
    let code = build(|cb| dynasm!(cb.ops ; .arch x64 ; mov BYTE [rdi], 1 ; ret));
    let err = run(&code, input.as_ptr() as u64, vec![Region::read("A", &input)], 100).unwrap_err();
    assert!(matches!(err, EmuError::Access { write: true, ref nearest, .. } if nearest.contains("read-only")), "{err}");
    let code = build(|cb| dynasm!(cb.ops ; .arch x64 ; mov rax, [rdi] ; ret));
    let err = run(&code, 0x1000, vec![], 100).unwrap_err();
    assert!(matches!(err, EmuError::Access { addr: 0x1000, size: 8, write: false, .. }), "{err}");
}

#[test]
fn the_calling_convention_is_checked_at_the_return() {
    let clobber = build(|cb| dynasm!(cb.ops ; .arch x64 ; xor ebx, ebx ; ret));
    let err = run(&clobber, 0, vec![], 100).unwrap_err();
    assert!(matches!(err, EmuError::Abi { ref what } if what.contains("RBX")), "{err}");
    let unbalanced = build(|cb| dynasm!(cb.ops ; .arch x64 ; push rax ; push rax ; pop rax ; ret));
    let err = run(&unbalanced, 0, vec![], 100).unwrap_err();
    assert!(matches!(err, EmuError::Abi { .. } | EmuError::Decode { .. } | EmuError::Access { .. }), "{err}");
    let mxcsr = 0x9FC0u32; // DAZ | FTZ, all exceptions masked
    let keeps_ftz = build(|cb| {
        let at = cb.pin(mxcsr) as i64;
        dynasm!(cb.ops ; .arch x64 ; mov rax, QWORD at ; ldmxcsr [rax] ; ret);
    });
    let err = run(&keeps_ftz, 0, vec![], 100).unwrap_err();
    assert!(matches!(err, EmuError::Abi { ref what } if what.contains("MXCSR")), "{err}");
}

fn config(tiles: &[(u8, u8, u16)]) -> TileConfig {
    let mut c = TileConfig::new();
    for &(t, rows, colsb) in tiles {
        c.set(Tmm::new(t).unwrap(), rows, colsb).unwrap();
    }
    c
}

#[test]
fn tiles_left_configured_and_bad_tdp_shapes_are_caught() {
    let no_release = build(|cb| {
        cb.load_tile_config(config(&[(0, 16, 64)]), Gpr::RAX);
        dynasm!(cb.ops ; .arch x64 ; ret);
    });
    let err = run(&no_release, 0, vec![], 100).unwrap_err();
    assert!(matches!(err, EmuError::Abi { ref what } if what.contains("TILERELEASE")), "{err}");
    // C 16 x 64 bytes, A 16 x 64, B 8 x 64: B must have K = 64 / 4 = 16 rows.
    let bad_shape = build(|cb| {
        cb.load_tile_config(config(&[(0, 16, 64), (1, 16, 64), (2, 8, 64)]), Gpr::RAX);
        cb.emit(enc::tdp(TdpOp::Bssd, Tmm::new(0).unwrap(), Tmm::new(1).unwrap(), Tmm::new(2).unwrap()).unwrap());
        cb.emit(enc::tilerelease());
        dynasm!(cb.ops ; .arch x64 ; ret);
    });
    let err = run(&bad_shape, 0, vec![], 100).unwrap_err();
    assert!(matches!(err, EmuError::Fault { ref reason, .. } if reason.contains("do not fit")), "{err}");
    // An unconfigured tile.
    let unconfigured = build(|cb| {
        cb.load_tile_config(config(&[(0, 16, 64)]), Gpr::RAX);
        cb.emit(enc::tilezero(Tmm::new(3).unwrap()));
        cb.emit(enc::tilerelease());
        dynasm!(cb.ops ; .arch x64 ; ret);
    });
    let err = run(&unconfigured, 0, vec![], 100).unwrap_err();
    assert!(matches!(err, EmuError::Fault { ref reason, .. } if reason.contains("tmm3")), "{err}");
}

#[test]
fn ldtilecfg_applies_the_hardware_checks() {
    for (patch, what) in [((0usize, 2u8), "palette 2"), ((48, 17), "17 rows"), ((3, 1), "reserved")] {
        let mut image = *config(&[(0, 16, 64)]).as_bytes();
        image[patch.0] = patch.1;
        let code = build(|cb| {
            let at = cb.pin(image) as i64;
            dynasm!(cb.ops ; .arch x64 ; mov rax, QWORD at);
            cb.emit(enc::ldtilecfg(Mem::base(Gpr::RAX)));
            cb.emit(enc::tilerelease());
            dynasm!(cb.ops ; .arch x64 ; ret);
        });
        let err = run(&code, 0, vec![], 100).unwrap_err();
        assert!(matches!(err, EmuError::Fault { ref reason, .. } if reason.contains(what)), "{what}: {err}");
    }
}

#[test]
fn a_loop_that_does_not_end_hits_the_step_budget() {
    let code = build(|cb| dynasm!(cb.ops ; .arch x64 ; ->top: ; jmp ->top));
    assert_eq!(run(&code, 0, vec![], 1000).unwrap_err(), EmuError::StepLimit { steps: 1000 });
}

#[test]
fn a_clean_call_reports_what_it_executed_and_touched() {
    let mut out = [0u32; 4];
    let code = build(
        |cb| dynasm!(cb.ops ; .arch x64 ; push rbx ; mov ebx, 3 ; ->again: ; mov DWORD [rdi + rbx * 4], ebx ; dec ebx ; jns ->again ; pop rbx ; ret),
    );
    let report = run(&code, out.as_mut_ptr() as u64, vec![Region::write("C", &mut out)], 1000).unwrap();
    assert_eq!(out, [0, 1, 2, 3]);
    assert_eq!(report.by_mnemonic["mov"], 5);
    assert_eq!(report.by_mnemonic["jns"], 4);
    assert_eq!(report.touched["C"], (0, 16));
    assert_eq!(report.touched["stack"], (16, 8), "the pop of rbx and ret read, the push wrote");
}

/// One emulator serves many kernels: a decoded instruction is reused only
/// while the bytes at its address are the same, so other code placed at
/// the same address (a freed buffer reused) is decoded afresh.
#[test]
fn new_code_at_an_old_address_is_decoded_afresh() {
    let assemble = |value: i32| {
        let mut cb = CodeBuilder::new().unwrap();
        dynasm!(cb.ops ; .arch x64 ; mov DWORD [rdi], value ; ret);
        cb.finish_bytes().unwrap()
    };
    let (one, two) = (assemble(1), assemble(2));
    assert_eq!(one.len(), two.len());
    let mut out = [0i32; 1];
    let mut emu = Emulator::new();
    emu.allow(Region::write("out", &mut out));
    for (bytes, want) in [(&one, 1), (&two, 2), (&one, 1)] {
        let code = Code { bytes, base: 0x40_0000, entry: 0x40_0000 };
        // SAFETY: the only region is `out`, live for the call.
        unsafe { emu.call(code, out.as_mut_ptr() as u64) }.unwrap();
        // SAFETY: reading back the value the emulated call wrote.
        assert_eq!(unsafe { std::ptr::read_volatile(out.as_ptr()) }, want);
    }
}
