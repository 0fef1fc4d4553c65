//! The byte-level reader. A [`Cursor`] hands out bytes only after checking
//! that they exist; every count is bounded by the bytes left, and nothing
//! is reserved from a count: containers grow as their items are read.
//!
//! # Memory
//!
//! Everything the parse keeps on the heap is charged to a budget before it
//! is allocated ([`GgufLimits::max_metadata_bytes`], default 256 MiB): per
//! metadata pair `size_of::<(String, Value)>() + HASH_ENTRY_BYTES` plus its
//! key twice (the pair and the lookup table), per string its bytes plus
//! `size_of::<String>()` in an array, per array element its in-memory size,
//! per tensor `size_of::<TensorInfo>() + HASH_ENTRY_BYTES` plus its name
//! twice. Each charge is at most [`MAX_KEPT_PER_FILE_BYTE`] times the file
//! bytes the item occupies (a 13-byte pair with an empty key is the worst),
//! so the kept bytes are at most `min(limit, 8 x file size)`. Vectors and
//! tables grow by doubling, so while one grows its old and new buffers
//! coexist: the peak heap of a parse is at most `3 x kept + 64 KiB`
//! (error messages included: names in them are cut to [`SHOWN_BYTES`]).
//! A file that would need more than the limit is a typed
//! [`GgufError::OverLimit`], never an allocation failure.

use std::collections::HashMap;
use std::mem::size_of;

use super::{Array, GgmlType, GgufError, GgufLimits, TensorInfo, Value, ValueType, ALIGNMENT_KEY};

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
/// Bytes one lookup-table entry takes, generously: a `(String, usize)`
/// bucket, its control byte, and the 1/8 a hashbrown table keeps free.
const HASH_ENTRY_BYTES: u64 = 40;
/// Most heap bytes charged per byte of file (see the module docs; checked
/// by a test against the item sizes of this build).
pub const MAX_KEPT_PER_FILE_BYTE: u64 = 8;
/// Names, keys and strings in error messages are cut to this many bytes
/// (at a character boundary) and the cut is marked with the full length.
pub const SHOWN_BYTES: usize = 64;

/// `s` as error messages show it: whole when short, else its first
/// [`SHOWN_BYTES`] and how many bytes were left out. Escaping happens once,
/// when the message is displayed.
pub fn shown(s: &str) -> String {
    if s.len() <= SHOWN_BYTES {
        return s.to_owned();
    }
    let mut cut = SHOWN_BYTES;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...(+{} bytes)", &s[..cut], s.len() - cut)
}

/// The item being read, for error messages; rendered only when an error is
/// returned (a key or name is borrowed from the file, never copied).
#[derive(Clone, Copy)]
enum Ctx<'a> {
    Header,
    Pair(usize),
    Key(&'a str),
    TensorInfo(usize),
    Tensor(&'a str),
}

impl std::fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ctx::Header => f.write_str("the header"),
            Ctx::Pair(i) => write!(f, "metadata pair #{i}"),
            Ctx::Key(k) => write!(f, "metadata key {:?}", shown(k)),
            Ctx::TensorInfo(i) => write!(f, "tensor info #{i}"),
            Ctx::Tensor(n) => write!(f, "tensor {:?}", shown(n)),
        }
    }
}

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
    ctx: Ctx<'a>,
    /// Heap bytes charged so far, and the most allowed.
    kept: u64,
    limit: u64,
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

    /// Charges `bytes` of heap to the budget before they are allocated.
    fn charge(&mut self, bytes: u64, field: &str) -> Result<()> {
        let kept = self.kept.saturating_add(bytes);
        if kept > self.limit {
            return Err(GgufError::OverLimit { what: self.what(field), need: kept, limit: self.limit });
        }
        self.kept = kept;
        Ok(())
    }

    /// [`Cursor::charge`] for `n` values of `T`.
    fn charge_each<T>(&mut self, n: usize, field: &str) -> Result<()> {
        self.charge((n as u64).saturating_mul(size_of::<T>() as u64), field)
    }

    /// `count` items of at least `min_each` bytes each must fit in what is
    /// left, or the count is an error. Nothing is reserved from it.
    fn bound(&self, count: u64, min_each: u64, field: &str) -> Result<usize> {
        let limit = self.remaining() / min_each;
        if count > limit {
            return Err(GgufError::TooMany { what: self.what(field), count, limit });
        }
        Ok(count as usize)
    }

    /// A string borrowed from the file (length-prefixed UTF-8).
    fn str(&mut self, field: &str) -> Result<&'a str> {
        let len = self.u64(field)?;
        let start = self.offset();
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|_| GgufError::BadUtf8 { what: self.what(field), offset: start })
    }

    /// A string the parse keeps: its bytes are charged, then copied.
    fn string(&mut self, field: &str) -> Result<String> {
        let s = self.str(field)?;
        self.charge(s.len() as u64, field)?;
        Ok(s.to_owned())
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

    /// `n` fixed-size little-endian elements; `n` was bounded by the
    /// caller, the bytes are read before the vector is made.
    fn elems<const N: usize, T>(&mut self, n: usize, field: &str, f: fn([u8; N]) -> T) -> Result<Vec<T>> {
        let bytes = self.take((n * N) as u64, field)?;
        self.charge_each::<T>(n, field)?;
        Ok(bytes.chunks_exact(N).map(|c| f(c.try_into().expect("chunks_exact gives N bytes"))).collect())
    }

    /// `n` items read one at a time, each charged `size_of::<T>()` as it
    /// is pushed: the vector grows with what the file really holds.
    fn items<T>(&mut self, n: usize, field: &str, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for _ in 0..n {
            self.charge_each::<T>(1, field)?;
            out.push(item(self)?);
        }
        Ok(out)
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
            ValueType::U8 => Array::U8(self.elems(n, field, |[b]| b)?),
            ValueType::I8 => Array::I8(self.elems(n, field, |[b]| b as i8)?),
            ValueType::U16 => Array::U16(self.elems(n, field, u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(self.elems(n, field, i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(self.elems(n, field, u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(self.elems(n, field, i32::from_le_bytes)?),
            ValueType::F32 => Array::F32(self.elems(n, field, f32::from_le_bytes)?),
            ValueType::U64 => Array::U64(self.elems(n, field, u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(self.elems(n, field, i64::from_le_bytes)?),
            ValueType::F64 => Array::F64(self.elems(n, field, f64::from_le_bytes)?),
            ValueType::Bool => Array::Bool(self.items(n, field, |c| c.bool(field))?),
            ValueType::String => Array::String(self.items(n, field, |c| c.string(field))?),
            ValueType::Array => Array::Array(self.items(n, field, |c| c.array(depth + 1))?),
        })
    }
}

/// Parses and validates a whole file; `file_id` tags the tensor infos.
pub(crate) fn parse(buf: &[u8], file_id: u64, limits: GgufLimits) -> Result<Parsed> {
    let mut c = Cursor { buf, pos: 0, ctx: Ctx::Header, kept: 0, limit: limits.max_metadata_bytes };
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

    let mut metadata = Vec::new();
    let mut keys = HashMap::new();
    for i in 0..n_kv {
        c.ctx = Ctx::Pair(i);
        let offset = c.offset();
        let key = c.str("key")?;
        if keys.contains_key(key) {
            return Err(GgufError::DuplicateKey { key: shown(key), offset });
        }
        c.ctx = Ctx::Key(key);
        // The pair, its lookup entry, and the key twice (pair and table).
        let pair = size_of::<(String, Value)>() as u64 + HASH_ENTRY_BYTES;
        c.charge(pair.saturating_add(2 * key.len() as u64), "metadata pair")?;
        let ty = c.value_type("value type")?;
        let value = c.value(ty)?;
        keys.insert(key.to_owned(), i);
        metadata.push((key.to_owned(), value));
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

    let mut tensors = Vec::new();
    let mut names = HashMap::new();
    for i in 0..n_tensors {
        c.ctx = Ctx::TensorInfo(i);
        let offset = c.offset();
        let name_str = c.str("name")?;
        if names.contains_key(name_str) {
            return Err(GgufError::DuplicateTensor { name: shown(name_str), offset });
        }
        c.ctx = Ctx::Tensor(name_str);
        let info = size_of::<TensorInfo>() as u64 + HASH_ENTRY_BYTES;
        c.charge(info.saturating_add(2 * name_str.len() as u64), "tensor info")?;
        let n_dims = c.u32("dimension count")?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            let why = format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)");
            return Err(GgufError::BadDims { name: shown(name_str), why });
        }
        let mut dims = [1u64; MAX_DIMS];
        for d in &mut dims[..n_dims as usize] {
            *d = c.u64("dimension")?;
        }
        let type_id = c.u32("ggml type")?;
        let offset = c.u64("data offset")?;
        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownTensorType { name: shown(name_str), type_id });
        };
        let (n_elements, byte_size) = tensor_size(name_str, ggml_type, &dims[..n_dims as usize])?;
        if !offset.is_multiple_of(alignment.into()) {
            return Err(GgufError::Misaligned { name: shown(name_str), offset, alignment });
        }
        names.insert(name_str.to_owned(), i);
        let (name, n_dims) = (name_str.to_owned(), n_dims as u8);
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
            let (name, offset, size) = (shown(&t.name), t.offset, t.byte_size);
            return Err(GgufError::BadOffset { name, offset, size, data_len });
        }
    }
    Ok(Parsed { version, alignment, data_offset, metadata, keys, tensors, names })
}

/// (element count, byte size) of a tensor: `dims[0] / block_size *
/// type_size * dims[1] * ...`, every step checked, both at most `i64::MAX`
/// (ggml counts in `int64_t`).
fn tensor_size(name: &str, ty: GgmlType, dims: &[u64]) -> Result<(u64, u64)> {
    let bad = |why: String| GgufError::BadDims { name: shown(name), why };
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
        _ => Err(GgufError::SizeOverflow { name: shown(name) }),
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

    /// The module docs promise at most MAX_KEPT_PER_FILE_BYTE heap bytes
    /// charged per file byte; check it against this build's item sizes for
    /// the smallest encoding of every item kind (a longer key, name or
    /// string adds at most 2 bytes charged per byte).
    #[test]
    fn every_item_is_charged_at_most_8_bytes_per_file_byte() {
        let r = MAX_KEPT_PER_FILE_BYTE as usize;
        let pair = size_of::<(String, Value)>() + HASH_ENTRY_BYTES as usize;
        assert!(pair <= r * MIN_KV_BYTES as usize, "metadata pair charges {pair}");
        let tensor = size_of::<TensorInfo>() + HASH_ENTRY_BYTES as usize;
        assert!(tensor <= r * MIN_TENSOR_INFO_BYTES as usize, "tensor info charges {tensor}");
        // Array elements: a string is an 8-byte length, an array a 4-byte
        // type and an 8-byte count; the fixed-size ones their own bytes.
        assert!(size_of::<String>() <= r * 8);
        assert!(size_of::<Array>() <= r * 12, "{}", size_of::<Array>());
        assert!(size_of::<bool>() <= r && size_of::<f64>() <= r * 8);
    }

    #[test]
    fn shown_cuts_long_names_at_a_character_boundary() {
        assert_eq!(shown("blk.0.attn_q.weight"), "blk.0.attn_q.weight");
        let long = "é".repeat(100);
        let s = shown(&long);
        assert!(s.starts_with(&"é".repeat(32)) && s.ends_with("...(+136 bytes)"), "{s}");
    }

    #[test]
    fn charges_over_the_limit_are_typed_errors() {
        let buf = [0u8; 8];
        let mut c = Cursor { buf: &buf, pos: 0, ctx: Ctx::Key("k"), kept: 0, limit: 100 };
        assert!(c.charge(60, "x").is_ok());
        let e = c.charge(41, "y").unwrap_err();
        assert!(matches!(e, GgufError::OverLimit { need: 101, limit: 100, .. }), "{e}");
        assert!(e.to_string().starts_with("y of metadata key \"k\""), "{e}");
        assert!(matches!(c.charge(u64::MAX, "z"), Err(GgufError::OverLimit { need: u64::MAX, .. })));
    }

    #[test]
    fn counts_are_bounded_by_the_bytes_left() {
        let buf = [0u8; 100];
        let c = Cursor { buf: &buf, pos: 20, ctx: Ctx::Header, kept: 0, limit: u64::MAX };
        assert_eq!(c.bound(10, 8, "x").ok(), Some(10));
        assert!(matches!(c.bound(11, 8, "x"), Err(GgufError::TooMany { count: 11, limit: 10, .. })));
        assert!(matches!(c.bound(u64::MAX, 1, "x"), Err(GgufError::TooMany { limit: 80, .. })));
    }
}
