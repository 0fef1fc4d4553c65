//! Writing GGUF version 3 files (docs/FORMATS.md, "GGUF file layout"):
//! header, metadata pairs, tensor infos, then the data section at the
//! alignment, each tensor's bytes at an aligned offset. What this writes,
//! the reader parses back unchanged (tests/quantize.rs).

use std::io::{self, Write};

use super::{Array, GgmlType, Value, DEFAULT_ALIGNMENT};

/// A tensor to write: name, type, GGUF dims (`[k, n]` for n rows of k) and
/// its bytes in that type.
pub struct TensorOut<'a> {
    pub name: &'a str,
    pub ggml_type: GgmlType,
    pub dims: &'a [u64],
    pub data: std::borrow::Cow<'a, [u8]>,
}

fn string(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn value_body(w: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => string(w, s),
        Value::Array(a) => array(w, a),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
    }
}

fn array(w: &mut impl Write, a: &Array) -> io::Result<()> {
    w.write_all(&(a.elem_type() as u32).to_le_bytes())?;
    w.write_all(&(a.len() as u64).to_le_bytes())?;
    for i in 0..a.len() {
        value_body(w, &a.get(i).expect("i < len"))?;
    }
    Ok(())
}

/// Writes a whole GGUF v3 file: `metadata` in order (a `general.alignment`
/// pair, if present, must be a power-of-two u32 and sets the alignment),
/// then `tensors`, their data laid out in order at aligned offsets.
///
/// # Errors
/// An I/O error; a tensor whose byte length does not match its type and
/// dims, or a bad alignment value, is `InvalidInput`.
pub fn write_gguf(w: &mut impl Write, metadata: &[(String, Value)], tensors: &[TensorOut]) -> io::Result<()> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    let alignment = match metadata.iter().find(|(k, _)| k == super::ALIGNMENT_KEY) {
        None => u64::from(DEFAULT_ALIGNMENT),
        Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
        Some((_, v)) => return Err(invalid(format!("general.alignment must be a power-of-two u32, not {v:?}"))),
    };
    w.write_all(b"GGUF")?;
    w.write_all(&3u32.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    let mut written = 24u64;
    let mut counting = Counting { inner: w, n: &mut written };
    for (key, v) in metadata {
        string(&mut counting, key)?;
        counting.write_all(&(v.value_type() as u32).to_le_bytes())?;
        value_body(&mut counting, v)?;
    }
    let mut offset = 0u64;
    let mut offsets = Vec::with_capacity(tensors.len());
    for t in tensors {
        let elems: u64 = t.dims.iter().product();
        let want = elems / t.ggml_type.block_size() * t.ggml_type.type_size();
        if t.dims.is_empty() || t.data.len() as u64 != want || t.dims[0] % t.ggml_type.block_size() != 0 {
            return Err(invalid(format!(
                "tensor {}: {} bytes do not hold {:?} of {}",
                t.name,
                t.data.len(),
                t.dims,
                t.ggml_type.name()
            )));
        }
        string(&mut counting, t.name)?;
        counting.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for d in t.dims {
            counting.write_all(&d.to_le_bytes())?;
        }
        counting.write_all(&t.ggml_type.id().to_le_bytes())?;
        counting.write_all(&offset.to_le_bytes())?;
        offsets.push(offset);
        offset = (offset + t.data.len() as u64).next_multiple_of(alignment);
    }
    let pad = |c: &mut Counting<_>, to: u64| -> io::Result<()> {
        let n = to - *c.n;
        c.write_all(&vec![0u8; n as usize])
    };
    let data_start = counting.n.next_multiple_of(alignment);
    pad(&mut counting, data_start)?;
    for (t, off) in tensors.iter().zip(offsets) {
        pad(&mut counting, data_start + off)?;
        counting.write_all(&t.data)?;
    }
    Ok(())
}

/// A writer that counts the bytes through it (for the padding).
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: &'a mut u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        *self.n += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
