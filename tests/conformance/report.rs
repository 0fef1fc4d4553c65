//! Gathering and reporting mismatches: a [`Family`] compares every output
//! by its bits and keeps the first few mismatches (inputs in hex, expected
//! and actual bits); a [`Report`] collects the families of one test and
//! panics at the end if any had a mismatch.

use tilejit_verify::bf16::bf16_to_f32;

/// How many mismatches a family shows in full.
const SHOW_FIRST: usize = 6;

/// How a family's output bits are shown.
#[derive(Clone, Copy)]
pub enum Kind {
    F32,
    I32,
    Bf16,
}

fn show(kind: Kind, bits: u32) -> String {
    match kind {
        Kind::F32 => format!("{bits:#010x} ({:e})", f32::from_bits(bits)),
        Kind::I32 => format!("{bits:#010x} ({})", bits as i32),
        Kind::Bf16 => format!("{bits:#06x} ({:e})", bf16_to_f32(bits as u16)),
    }
}

/// One family of outputs: counts everything, keeps the first mismatches.
pub struct Family {
    name: String,
    kind: Kind,
    outputs: u64,
    mismatches: u64,
    first: Vec<String>,
}

impl Family {
    pub fn new(name: impl Into<String>, kind: Kind) -> Family {
        Family { name: name.into(), kind, outputs: 0, mismatches: 0, first: Vec::new() }
    }

    pub fn check(&mut self, expected: u32, actual: u32, inputs: impl FnOnce() -> String) {
        self.outputs += 1;
        if expected != actual {
            self.mismatches += 1;
            if self.first.len() < SHOW_FIRST {
                self.first.push(format!(
                    "  {}\n    expected {}, actual {}",
                    inputs(),
                    show(self.kind, expected),
                    show(self.kind, actual)
                ));
            }
        }
    }
}

/// The families of one test; panics at the end if any had a mismatch.
#[derive(Default)]
pub struct Report {
    failed: Vec<String>,
}

impl Report {
    pub fn add(&mut self, f: Family) {
        assert!(f.outputs > 0, "family {} compared nothing", f.name);
        eprintln!("[{}] {} outputs compared bit for bit, {} mismatches", f.name, f.outputs, f.mismatches);
        if f.mismatches > 0 {
            self.failed.push(format!(
                "{}: {} of {} outputs differ from the oracle; first {}:\n{}",
                f.name,
                f.mismatches,
                f.outputs,
                f.first.len(),
                f.first.join("\n")
            ));
        }
    }

    pub fn finish(self) {
        if !self.failed.is_empty() {
            panic!("hardware disagrees with the oracle\n{}", self.failed.join("\n"));
        }
    }
}
