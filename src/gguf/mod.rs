//! A hardened reader for GGUF model files (versions 2 and 3, little endian).
//!
//! The layout is described in `docs/FORMATS.md`. Every count, length,
//! dimension and offset in the file is treated as hostile: each is checked
//! against the bytes that remain *before* anything is allocated, nothing is
//! reserved from a count, and every kept byte is charged to a budget
//! ([`GgufLimits`]): the peak heap of a parse is at most `3 x min(limit,
//! 8 x file size) + 64 KiB` (the accounting: `parse.rs`, "Memory"). Every
//! tensor's bytes are proven to lie inside the data section at parse time. What is rejected (each with a [`GgufError`] that names the
//! field, key or tensor and the byte offset):
//!
//! - a bad magic, versions other than 2 and 3, any read past the end;
//! - counts that the rest of the file could not hold (`TooMany`): metadata
//!   pairs (13 bytes at least each), tensor infos (32), array elements (their
//!   fixed size; 8 for strings, 12 for nested arrays);
//! - arrays nested deeper than [`MAX_ARRAY_DEPTH`], unknown value types, bool
//!   bytes other than 0 and 1, strings that are not UTF-8, duplicate keys,
//!   a `general.alignment` that is not a `u32` power of two;
//! - tensors with a duplicate name, 0 or more than [`MAX_DIMS`] dimensions,
//!   a dimension of 0 (a zero-element tensor has no bytes to point at; no
//!   real model has one, so it is rejected rather than special-cased), an
//!   unknown ggml type, `dims[0]` not a multiple of the block size, an
//!   element count or byte size that overflows 63 bits, an offset that is
//!   not a multiple of the alignment, or bytes past the data section.
//!
//! Tensors may overlap or leave gaps: the data is only ever read, so neither
//! can cause an out-of-bounds access, and both are left to the caller.
//!
//! ```no_run
//! let g = tilejit::gguf::Gguf::open("model.gguf")?;
//! let arch = g.get_str("general.architecture").unwrap_or("?");
//! for t in g.tensors() {
//!     println!("{arch} {} {:?} {:?} {}", t.name(), t.ggml_type(), t.dims(), g.tensor_data(t).len());
//! }
//! # Ok::<(), tilejit::gguf::GgufError>(())
//! ```

mod error;
mod parse;
mod write;

pub use error::GgufError;
pub use parse::{
    shown as shown_name, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_KEPT_PER_FILE_BYTE, SHOWN_BYTES,
};
pub use write::{write_gguf, TensorOut};

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The metadata key that sets the data alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// The 13 metadata value types, with their GGUF ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

/// (type, name, fewest bytes one value takes in a file: a string is at
/// least its 8-byte length, an array its 4-byte type and 8-byte count).
const VALUE_TYPES: [(ValueType, &str, u64); 13] = {
    use ValueType::*;
    [
        (U8, "u8", 1),
        (I8, "i8", 1),
        (U16, "u16", 2),
        (I16, "i16", 2),
        (U32, "u32", 4),
        (I32, "i32", 4),
        (F32, "f32", 4),
        (Bool, "bool", 1),
        (String, "string", 8),
        (Array, "array", 12),
        (U64, "u64", 8),
        (I64, "i64", 8),
        (F64, "f64", 8),
    ]
};

impl ValueType {
    /// The type with GGUF id `id`, if there is one.
    pub fn from_id(id: u32) -> Option<Self> {
        VALUE_TYPES.get(usize::try_from(id).ok()?).map(|r| r.0)
    }

    pub fn name(self) -> &'static str {
        VALUE_TYPES[self as usize].1
    }

    pub(crate) fn min_size(self) -> u64 {
        VALUE_TYPES[self as usize].2
    }
}

/// One match arm per value type: `type_of_value`, `type_of_array`, `len`
/// and `get` (an [`Array`] element as a [`Value`]).
macro_rules! per_variant {
    ($mode:ident $e:expr $(, $arg:expr)?) => {
        per_variant!(@$mode $e $(, $arg)?; U8 I8 U16 I16 U32 I32 F32 Bool String Array U64 I64 F64)
    };
    (@type_of_value $e:expr; $($v:ident)*) => { match $e { $(Value::$v(_) => ValueType::$v,)* } };
    (@type_of_array $e:expr; $($v:ident)*) => { match $e { $(Array::$v(_) => ValueType::$v,)* } };
    (@len $e:expr; $($v:ident)*) => { match $e { $(Array::$v(a) => a.len(),)* } };
    (@get $e:expr, $i:expr; $($v:ident)*) => { match $e { $(Array::$v(a) => Value::$v(a.get($i)?.clone()),)* } };
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        per_variant!(type_of_value self)
    }

    /// Any integer type holding a value >= 0, widened (writers differ in
    /// which integer type they use for counts such as `block_count`).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// A metadata array: one element type, stored unboxed (an array of `n` u8
/// takes `n` bytes here, as in the file). Arrays of arrays may mix element
/// types between the inner arrays.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Array {
    pub fn elem_type(&self) -> ValueType {
        per_variant!(type_of_array self)
    }

    pub fn len(&self) -> usize {
        per_variant!(len self)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a [`Value`] (a copy; a nested array is cloned).
    pub fn get(&self, i: usize) -> Option<Value> {
        Some(per_variant!(get self, i))
    }
}

/// ggml tensor types with their ids, block sizes (weights per block) and
/// block sizes in bytes. Ids missing here (4, 5, 31-33, 36-38: removed from
/// ggml) are [`GgufError::UnknownTensorType`].
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// (type, name, weights per block, bytes per block), as in ggml's type traits.
const GGML_TYPES: [(GgmlType, &str, u64, u64); 32] = {
    use GgmlType::*;
    [
        (F32, "F32", 1, 4),
        (F16, "F16", 1, 2),
        (Q4_0, "Q4_0", 32, 18),
        (Q4_1, "Q4_1", 32, 20),
        (Q5_0, "Q5_0", 32, 22),
        (Q5_1, "Q5_1", 32, 24),
        (Q8_0, "Q8_0", 32, 34),
        (Q8_1, "Q8_1", 32, 36),
        (Q2_K, "Q2_K", 256, 84),
        (Q3_K, "Q3_K", 256, 110),
        (Q4_K, "Q4_K", 256, 144),
        (Q5_K, "Q5_K", 256, 176),
        (Q6_K, "Q6_K", 256, 210),
        (Q8_K, "Q8_K", 256, 292),
        (IQ2_XXS, "IQ2_XXS", 256, 66),
        (IQ2_XS, "IQ2_XS", 256, 74),
        (IQ3_XXS, "IQ3_XXS", 256, 98),
        (IQ1_S, "IQ1_S", 256, 50),
        (IQ4_NL, "IQ4_NL", 32, 18),
        (IQ3_S, "IQ3_S", 256, 110),
        (IQ2_S, "IQ2_S", 256, 82),
        (IQ4_XS, "IQ4_XS", 256, 136),
        (I8, "I8", 1, 1),
        (I16, "I16", 1, 2),
        (I32, "I32", 1, 4),
        (I64, "I64", 1, 8),
        (F64, "F64", 1, 8),
        (IQ1_M, "IQ1_M", 256, 56),
        (BF16, "BF16", 1, 2),
        (TQ1_0, "TQ1_0", 256, 54),
        (TQ2_0, "TQ2_0", 256, 66),
        (MXFP4, "MXFP4", 32, 17),
    ]
};

/// GGUF's name for a block format and the names the other layers use: the
/// quantized kernels' [`WeightFormat`](crate::kernels::quant_format::WeightFormat)
/// (what they read) and the oracle's [`BlockType`](tilejit_verify::quant::BlockType)
/// (what it decodes). The conversions are the one mapping between them;
/// the error is the GGUF type that has no counterpart.
impl TryFrom<GgmlType> for crate::kernels::quant_format::WeightFormat {
    type Error = GgmlType;
    fn try_from(t: GgmlType) -> Result<Self, GgmlType> {
        use crate::kernels::quant_format::WeightFormat as W;
        match t {
            GgmlType::Q4_0 => Ok(W::Q4_0),
            GgmlType::Q4_1 => Ok(W::Q4_1),
            GgmlType::Q8_0 => Ok(W::Q8_0),
            other => Err(other),
        }
    }
}

impl From<crate::kernels::quant_format::WeightFormat> for GgmlType {
    fn from(f: crate::kernels::quant_format::WeightFormat) -> GgmlType {
        use crate::kernels::quant_format::WeightFormat as W;
        match f {
            W::Q4_0 => GgmlType::Q4_0,
            W::Q4_1 => GgmlType::Q4_1,
            W::Q8_0 => GgmlType::Q8_0,
        }
    }
}

impl TryFrom<GgmlType> for tilejit_verify::quant::BlockType {
    type Error = GgmlType;
    fn try_from(t: GgmlType) -> Result<Self, GgmlType> {
        use tilejit_verify::quant::BlockType as B;
        match t {
            GgmlType::Q4_0 => Ok(B::Q4_0),
            GgmlType::Q4_1 => Ok(B::Q4_1),
            GgmlType::Q8_0 => Ok(B::Q8_0),
            GgmlType::Q8_1 => Ok(B::Q8_1),
            GgmlType::F16 => Ok(B::F16),
            GgmlType::BF16 => Ok(B::Bf16),
            GgmlType::F32 => Ok(B::F32),
            other => Err(other),
        }
    }
}

impl From<tilejit_verify::quant::BlockType> for GgmlType {
    fn from(b: tilejit_verify::quant::BlockType) -> GgmlType {
        use tilejit_verify::quant::BlockType as B;
        match b {
            B::Q4_0 => GgmlType::Q4_0,
            B::Q4_1 => GgmlType::Q4_1,
            B::Q8_0 => GgmlType::Q8_0,
            B::Q8_1 => GgmlType::Q8_1,
            B::F16 => GgmlType::F16,
            B::Bf16 => GgmlType::BF16,
            B::F32 => GgmlType::F32,
        }
    }
}

impl GgmlType {
    fn row(self) -> &'static (GgmlType, &'static str, u64, u64) {
        // Every variant has a row (tests/gguf.rs: `ggml_type_table_round_trips`).
        GGML_TYPES.iter().find(|r| r.0 == self).expect("GGML_TYPES lists every GgmlType")
    }

    /// The type with ggml id `id`, if this reader knows it.
    pub fn from_id(id: u32) -> Option<Self> {
        GGML_TYPES.iter().find(|r| r.0 as u32 == id).map(|r| r.0)
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// Weights per block (1 for the plain types).
    pub fn block_size(self) -> u64 {
        self.row().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.row().3
    }
}

/// One tensor's header entry. Fields are private so that what
/// [`Gguf::tensor_data`] relies on (offset and size inside the data
/// section) cannot be changed after the parse proved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    name: String,
    ggml_type: GgmlType,
    n_dims: u8,
    dims: [u64; MAX_DIMS],
    offset: u64,
    byte_size: u64,
    n_elements: u64,
    file_id: u64,
}

impl TensorInfo {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Dimensions, innermost (contiguous) first: a linear weight is `[K, N]`.
    pub fn dims(&self) -> &[u64] {
        &self.dims[..usize::from(self.n_dims)]
    }

    /// Offset of the first byte, relative to the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn byte_size(&self) -> u64 {
        self.byte_size
    }

    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Shared(Arc<[u8]>),
}

/// A parsed GGUF file: metadata, tensor table and the file's bytes.
pub struct Gguf {
    bytes: Bytes,
    version: u32,
    alignment: u32,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    keys: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    names: HashMap<String, usize>,
    id: u64,
}

/// How much heap a parse may keep for the file's metadata and tensor table
/// (tensor data is never copied: it stays in the mapping). The reader's
/// peak heap is at most `3 x min(max_metadata_bytes, 8 x file size) + 64
/// KiB` (the accounting: `parse.rs`, "Memory"); a file that needs more is
/// [`GgufError::OverLimit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgufLimits {
    pub max_metadata_bytes: u64,
}

impl GgufLimits {
    /// 256 MiB: about 5x what the largest tokenizer vocabularies in
    /// circulation (256k tokens plus merges) need.
    pub const DEFAULT_MAX_METADATA_BYTES: u64 = 256 << 20;
}

impl Default for GgufLimits {
    fn default() -> Self {
        GgufLimits { max_metadata_bytes: Self::DEFAULT_MAX_METADATA_BYTES }
    }
}

/// Tags every parse so that a [`TensorInfo`] cannot index another file.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Gguf {
    /// Memory-maps `path` and parses it. The mapping is read-only; as with
    /// any mapped file, another process truncating or rewriting the file
    /// while it is open is outside what this reader can defend against.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        Self::open_with(path, GgufLimits::default())
    }

    /// [`Gguf::open`] with explicit memory limits.
    pub fn open_with(path: impl AsRef<Path>, limits: GgufLimits) -> Result<Self, GgufError> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the map is read-only and only read through `&[u8]`; the
        // file is not modified by this process (see the doc comment for
        // other processes).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Self::from_bytes(Bytes::Mapped(map), limits)
    }

    /// Parses a file held in memory (`&[u8]` is copied, `Vec<u8>` and
    /// `Arc<[u8]>` are taken as they are).
    pub fn parse(bytes: impl Into<Arc<[u8]>>) -> Result<Self, GgufError> {
        Self::parse_with(bytes, GgufLimits::default())
    }

    /// [`Gguf::parse`] with explicit memory limits.
    pub fn parse_with(bytes: impl Into<Arc<[u8]>>, limits: GgufLimits) -> Result<Self, GgufError> {
        Self::from_bytes(Bytes::Shared(bytes.into()), limits)
    }

    fn from_bytes(bytes: Bytes, limits: GgufLimits) -> Result<Self, GgufError> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let buf: &[u8] = match &bytes {
            Bytes::Mapped(m) => m,
            Bytes::Shared(s) => s,
        };
        let p = parse::parse(buf, id, limits)?;
        Ok(Self {
            bytes,
            version: p.version,
            alignment: p.alignment,
            data_offset: p.data_offset,
            metadata: p.metadata,
            keys: p.keys,
            tensors: p.tensors,
            names: p.names,
            id,
        })
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Shared(s) => s,
        }
    }

    /// Tells the OS that `info`'s bytes will not be read again, so their
    /// pages leave this process's resident set (a weight repacked into
    /// another layout no longer occupies memory twice). Only whole pages
    /// inside the tensor are released; reading them later is still correct
    /// (they come back from the file). No effect on a file held in memory.
    pub fn release_pages(&self, info: &TensorInfo) {
        let Bytes::Mapped(map) = &self.bytes else { return };
        let page = 4096usize;
        let start = (self.data_offset + info.offset) as usize;
        let (first, end) = (start.next_multiple_of(page), (start + info.byte_size as usize) / page * page);
        if end > first {
            // SAFETY: the map is read-only and never written, so dropping
            // its pages loses nothing: a later read refaults the file's
            // bytes, and slices handed out stay valid. The range is inside
            // the map (the tensor was checked to lie in the file).
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, end - first) };
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// `general.alignment`, or [`DEFAULT_ALIGNMENT`].
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Metadata pairs in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    pub fn get_array(&self, key: &str) -> Option<&Array> {
        self.get(key)?.as_array()
    }

    /// Any non-negative integer value, widened (see [`Value::as_u64`]).
    pub fn get_uint(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.names.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of `info`, whose bounds the parse proved.
    ///
    /// # Panics
    /// If `info` comes from another [`Gguf`].
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        assert_eq!(info.file_id, self.id, "TensorInfo {:?} belongs to another Gguf", info.name);
        // In range by construction: offset + byte_size <= data section length.
        let start = (self.data_offset + info.offset) as usize;
        &self.as_bytes()[start..start + info.byte_size as usize]
    }
}

macro_rules! typed_getters {
    ($($fn:ident -> $t:ty : $variant:ident),* $(,)?) => {
        impl Gguf {
            $(
                #[doc = concat!("The value of `key` if it is a `", stringify!($variant), "` (no conversion).")]
                pub fn $fn(&self, key: &str) -> Option<$t> {
                    match self.get(key)? {
                        Value::$variant(v) => Some(*v),
                        _ => None,
                    }
                }
            )*
        }
    };
}

typed_getters!(
    get_u8 -> u8: U8, get_i8 -> i8: I8, get_u16 -> u16: U16, get_i16 -> i16: I16,
    get_u32 -> u32: U32, get_i32 -> i32: I32, get_f32 -> f32: F32, get_bool -> bool: Bool,
    get_u64 -> u64: U64, get_i64 -> i64: I64, get_f64 -> f64: F64,
);
