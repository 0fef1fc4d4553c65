//! `tilejit inspect MODEL.gguf`: the header of a GGUF file, checked by the
//! hardened reader (`tilejit::gguf`): version, alignment, metadata (long
//! arrays and strings summarized), the tensor table and totals.

use std::collections::BTreeMap;
use std::path::Path;

use tilejit::gguf::{Array, Gguf, Value};

/// Array elements shown before "...".
const SHOW_ELEMS: usize = 8;
/// Characters of a string shown before "...".
const SHOW_CHARS: usize = 80;

pub fn run(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let g = Gguf::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("== {}", path.display());
    println!(
        "GGUF version {}, alignment {}, {} bytes, data section at offset {}",
        g.version(),
        g.alignment(),
        g.as_bytes().len(),
        g.data_offset()
    );

    println!("== metadata ({} keys)", g.metadata().len());
    for (key, value) in g.metadata() {
        println!("{key} = {}", show_value(value));
    }

    println!("== tensors ({})", g.tensors().len());
    let width = g.tensors().iter().map(|t| t.name().len()).max().unwrap_or(4).max(4);
    println!("{:<width$}  {:<7}  {:<24}  {:>12}", "name", "type", "shape", "bytes");
    let mut by_type: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    let (mut elements, mut bytes) = (0u128, 0u128);
    for t in g.tensors() {
        let shape = t.dims().iter().map(u64::to_string).collect::<Vec<_>>().join(" x ");
        println!("{:<width$}  {:<7}  {:<24}  {:>12}", t.name(), t.ggml_type().name(), shape, t.byte_size());
        let entry = by_type.entry(t.ggml_type().name()).or_default();
        entry.0 += 1;
        entry.1 += t.byte_size();
        elements += u128::from(t.n_elements());
        bytes += u128::from(t.byte_size());
    }
    println!("== totals");
    println!("{} tensors, {elements} elements, {bytes} bytes of tensor data", g.tensors().len());
    for (ty, (count, size)) in by_type {
        println!("{ty:<7} {count:>5} tensors  {size:>12} bytes");
    }
    Ok(())
}

fn show_str(s: &str) -> String {
    match s.char_indices().nth(SHOW_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}... ({} chars)", &s[..cut], s.chars().count()),
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => show_str(s),
        Value::Array(a) => show_array(a),
        Value::U8(x) => format!("{x} (u8)"),
        Value::I8(x) => format!("{x} (i8)"),
        Value::U16(x) => format!("{x} (u16)"),
        Value::I16(x) => format!("{x} (i16)"),
        Value::U32(x) => format!("{x} (u32)"),
        Value::I32(x) => format!("{x} (i32)"),
        Value::F32(x) => format!("{x} (f32)"),
        Value::Bool(x) => format!("{x}"),
        Value::U64(x) => format!("{x} (u64)"),
        Value::I64(x) => format!("{x} (i64)"),
        Value::F64(x) => format!("{x} (f64)"),
    }
}

/// `[u32; 3] [1, 2, 3]`, or the first few elements and "..." for long arrays.
fn show_array(a: &Array) -> String {
    let shown: Vec<String> = (0..a.len().min(SHOW_ELEMS))
        .filter_map(|i| a.get(i))
        .map(|v| match v {
            Value::String(s) => show_str(&s),
            Value::Array(inner) => show_array(&inner),
            other => show_value(&other).split(' ').next().unwrap_or_default().to_owned(),
        })
        .collect();
    let more = if a.len() > SHOW_ELEMS { ", ..." } else { "" };
    format!("[{}; {}] [{}{more}]", a.elem_type().name(), a.len(), shown.join(", "))
}
