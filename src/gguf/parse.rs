//! The byte-level reader. A [`Cursor`] hands out bytes only after checking
//! that they exist, and every count is bounded by the bytes left before a
//! collection of that size is allocated.

use std::collections::HashMap;

use super::{Array, GgmlType, GgufError, TensorInfo, Value, ValueType, ALIGNMENT_KEY};

/// Most dimensions a tensor may have.
pub const MAX_DIMS: usize = 4;
/// Deepest array nesting: an array whose elements are arrays is depth 2.
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u32 = 32;

/// Fewest bytes of one metadata pair: key length, value type, a 1-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Fewest bytes of one tensor info: name length, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

type Result<T> = std::result::Result<T, GgufError>;

/// What a successful parse found; `Gguf` wraps it with the file's bytes.
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u32,
    pub data_offset: u64,
    pub metadata: Vec<(String, Value)>,
    pub keys: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub names: HashMap<String, usize>,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// The item being read, for error messages ("metadata key \"x\"").
    ctx: String,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn what(&self, field: &str) -> String {
        format!("{field} of {}", self.ctx)
    }

    /// The next `n` bytes, or `Truncated` if the file has fewer left.
    fn take(&mut self, n: u64, field: &str) -> Result<&'a [u8]> {
        let have = self.remaining();
        if n > have {
            return Err(GgufError::Truncated { what: self.what(field), offset: self.offset(), need: n, have });
        }
        let bytes = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N as u64, field)?);
        Ok(out)
    }

    fn u32(&mut self, field: &str) -> Result<u32> {
        self.fixed(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: &str) -> Result<u64> {
        self.fixed(field).map(u64::from_le_bytes)
    }

    /// `count` items of at least `min_each` bytes each must fit in what is
    /// left; only then may a collection of `count` items be allocated.
    fn bound(&self, count: u64, min_each: u64, field: &str) -> Result<usize> {
        let limit = self.remaining() / min_each;
        if count > limit {
            return Err(GgufError::TooMany { what: self.what(field), count, limit });
        }
        Ok(count as usize)
    }

    fn string(&mut self, field: &str) -> Result<String> {
        let len = self.u64(&format!("length of {field}"))?;
        let start = self.offset();
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::BadUtf8 { what: self.what(field), offset: start }),
        }
    }

    fn bool(&mut self, field: &str) -> Result<bool> {
        let offset = self.offset();
        match self.fixed::<1>(field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(GgufError::BadBool { what: self.what(field), offset, byte }),
        }
    }

    fn value_type(&mut self, field: &str) -> Result<ValueType> {
        let offset = self.offset();
        let type_id = self.u32(field)?;
        ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            what: self.what(field),
            type_id,
            offset,
        })
    }

    fn value(&mut self, ty: ValueType) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.fixed::<1>("u8 value")?[0]),
            ValueType::I8 => Value::I8(self.fixed::<1>("i8 value")?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.fixed("u16 value")?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.fixed("i16 value")?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.fixed("u32 value")?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.fixed("i32 value")?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.fixed("f32 value")?)),
            ValueType::Bool => Value::Bool(self.bool("bool value")?),
            ValueType::String => Value::String(self.string("string value")?),
            ValueType::Array => Value::Array(self.array(1)?),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.fixed("u64 value")?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.fixed("i64 value")?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.fixed("f64 value")?)),
        })
    }

    /// `n` fixed-size little-endian elements; `n` was bounded by the caller.
    fn elems<const N: usize, T>(&mut self, n: usize, field: &str, f: fn([u8; N]) -> T) -> Result<Vec<T>> {
        let bytes = self.take((n * N) as u64, field)?;
        Ok(bytes.chunks_exact(N).map(|c| f(c.try_into().expect("chunks_exact gives N bytes"))).collect())
    }

    /// An array value (element type, count, elements) at nesting `depth`.
    fn array(&mut self, depth: u32) -> Result<Array> {
        if depth > MAX_ARRAY_DEPTH {
            let what = format!("array nesting depth at offset {} in {}", self.offset(), self.ctx);
            return Err(GgufError::TooMany { what, count: depth.into(), limit: MAX_ARRAY_DEPTH.into() });
        }
        let elem = self.value_type("array element type")?;
        let count = self.u64("array length")?;
        let field = format!("{} array elements", elem.name());
        let n = self.bound(count, elem.min_size(), &field)?;
        let field = field.as_str();
        Ok(match elem {
            ValueType::U8 => Array::U8(self.take(n as u64, field)?.to_vec()),
            ValueType::I8 => Array::I8(self.take(n as u64, field)?.iter().map(|&b| b as i8).collect()),
            ValueType::U16 => Array::U16(self.elems(n, field, u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(self.elems(n, field, i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(self.elems(n, field, u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(self.elems(n, field, i32::from_le_bytes)?),
            ValueType::F32 => Array::F32(self.elems(n, field, f32::from_le_bytes)?),
            ValueType::U64 => Array::U64(self.elems(n, field, u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(self.elems(n, field, i64::from_le_bytes)?),
            ValueType::F64 => Array::F64(self.elems(n, field, f64::from_le_bytes)?),
            ValueType::Bool => Array::Bool((0..n).map(|_| self.bool(field)).collect::<Result<_>>()?),
            ValueType::String => Array::String((0..n).map(|_| self.string(field)).collect::<Result<_>>()?),
            ValueType::Array => Array::Array((0..n).map(|_| self.array(depth + 1)).collect::<Result<_>>()?),
        })
    }
}

/// Parses and validates a whole file; `file_id` tags the tensor infos.
pub(crate) fn parse(buf: &[u8], file_id: u64) -> Result<Parsed> {
    let mut c = Cursor { buf, pos: 0, ctx: "the header".into() };
    let magic = c.fixed::<4>("magic")?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    let n_kv = c.bound(n_kv, MIN_KV_BYTES, "metadata pair count")?;
    let n_tensors = c.bound(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor info count")?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut keys = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        c.ctx = format!("metadata pair #{i}");
        let offset = c.offset();
        let key = c.string("key")?;
        if keys.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key, offset });
        }
        c.ctx = format!("metadata key {key:?}");
        let ty = c.value_type("value type")?;
        let value = c.value(ty)?;
        keys.insert(key.clone(), i);
        metadata.push((key, value));
    }

    let alignment = match keys.get(ALIGNMENT_KEY).map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => *a,
        Some(Value::U32(a)) => return Err(GgufError::BadAlignment((*a).into())),
        Some(v) => {
            let found = v.value_type().name();
            return Err(GgufError::WrongType { key: ALIGNMENT_KEY.into(), expected: "u32", found });
        }
    };

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut names = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        c.ctx = format!("tensor info #{i}");
        let offset = c.offset();
        let name = c.string("name")?;
        if names.contains_key(&name) {
            return Err(GgufError::DuplicateTensor { name, offset });
        }
        c.ctx = format!("tensor {name:?}");
        let n_dims = c.u32("dimension count")?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(GgufError::BadDims { name, why: format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)") });
        }
        let mut dims = [1u64; MAX_DIMS];
        for d in &mut dims[..n_dims as usize] {
            *d = c.u64("dimension")?;
        }
        let type_id = c.u32("ggml type")?;
        let offset = c.u64("data offset")?;
        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownTensorType { name, type_id });
        };
        let (n_elements, byte_size) = tensor_size(&name, ggml_type, &dims[..n_dims as usize])?;
        if !offset.is_multiple_of(alignment.into()) {
            return Err(GgufError::Misaligned { name, offset, alignment });
        }
        names.insert(name.clone(), i);
        let n_dims = n_dims as u8;
        tensors.push(TensorInfo { name, ggml_type, n_dims, dims, offset, byte_size, n_elements, file_id });
    }

    // The data section starts at the next multiple of the alignment. A file
    // without tensors may end before that padding.
    let info_end = c.offset();
    let file_len = buf.len() as u64;
    let data_offset = info_end.next_multiple_of(alignment.into());
    if data_offset > file_len && !tensors.is_empty() {
        let what = "padding before the data section".into();
        return Err(GgufError::Truncated { what, offset: info_end, need: data_offset - info_end, have: c.remaining() });
    }
    let data_offset = data_offset.min(file_len);
    let data_len = file_len - data_offset;
    for t in &tensors {
        if t.offset.checked_add(t.byte_size).is_none_or(|end| end > data_len) {
            let (name, offset, size) = (t.name.clone(), t.offset, t.byte_size);
            return Err(GgufError::BadOffset { name, offset, size, data_len });
        }
    }
    Ok(Parsed { version, alignment, data_offset, metadata, keys, tensors, names })
}

/// (element count, byte size) of a tensor: `dims[0] / block_size *
/// type_size * dims[1] * ...`, every step checked, both at most `i64::MAX`
/// (ggml counts in `int64_t`).
fn tensor_size(name: &str, ty: GgmlType, dims: &[u64]) -> Result<(u64, u64)> {
    let bad = |why: String| GgufError::BadDims { name: name.into(), why };
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(bad(format!("dims[{i}] is 0 (every dimension must be at least 1)")));
    }
    let block = ty.block_size();
    if !dims[0].is_multiple_of(block) {
        return Err(bad(format!("dims[0] = {} is not a multiple of the {} block size {block}", dims[0], ty.name())));
    }
    let fits = |n: &u64| *n <= i64::MAX as u64;
    let product = |first: u64, rest: &[u64]| rest.iter().try_fold(first, |acc, &d| acc.checked_mul(d)).filter(fits);
    let n_elements = product(1, dims);
    let byte_size = (dims[0] / block).checked_mul(ty.type_size()).and_then(|row| product(row, &dims[1..]));
    match (n_elements, byte_size) {
        (Some(n), Some(size)) => Ok((n, size)),
        _ => Err(GgufError::SizeOverflow { name: name.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_size_checks_every_step() {
        assert_eq!(tensor_size("t", GgmlType::Q4_1, &[576, 1536]).ok(), Some((576 * 1536, 18 * 20 * 1536)));
        assert_eq!(tensor_size("t", GgmlType::Q6_K, &[512, 2]).ok(), Some((1024, 2 * 2 * 210)));
        assert!(matches!(tensor_size("t", GgmlType::Q8_0, &[48]), Err(GgufError::BadDims { .. })));
        assert!(matches!(tensor_size("t", GgmlType::F32, &[2, 0]), Err(GgufError::BadDims { .. })));
        let big = (i64::MAX as u64) / 4 + 1;
        assert!(matches!(tensor_size("t", GgmlType::F32, &[big]), Err(GgufError::SizeOverflow { .. })));
        assert!(tensor_size("t", GgmlType::I8, &[i64::MAX as u64]).is_ok());
    }

    #[test]
    fn counts_are_bounded_by_the_bytes_left() {
        let buf = [0u8; 100];
        let c = Cursor { buf: &buf, pos: 20, ctx: "test".into() };
        assert_eq!(c.bound(10, 8, "x").ok(), Some(10));
        assert!(matches!(c.bound(11, 8, "x"), Err(GgufError::TooMany { count: 11, limit: 10, .. })));
        assert!(matches!(c.bound(u64::MAX, 1, "x"), Err(GgufError::TooMany { limit: 80, .. })));
    }
}
