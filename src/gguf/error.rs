//! The one error type of the GGUF reader: every variant says what is wrong
//! and where (a byte offset into the file, a key or a tensor name). Keys
//! and names in errors are cut to `SHOWN_BYTES` (64) bytes, the cut marked
//! with how many bytes were left out, and escaped once when displayed, so a
//! message stays short whatever the file holds.

/// Why a GGUF file was rejected. Offsets are absolute byte positions in the
/// file unless a field says otherwise.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// Opening or mapping the file failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The first four bytes are not `GGUF`.
    #[error("bad magic {found:02x?} at offset 0: not a GGUF file (expected 47 47 55 46, \"GGUF\")")]
    BadMagic { found: [u8; 4] },
    /// Only versions 2 and 3 are read (a big-endian file shows up here too).
    #[error("unsupported GGUF version {0} (this reader handles 2 and 3, little endian)")]
    UnsupportedVersion(u32),
    /// A field or payload runs past the end of the file.
    #[error("truncated: {what} at offset {offset} needs {need} bytes, {have} left in the file")]
    Truncated { what: String, offset: u64, need: u64, have: u64 },
    /// Keeping the file's metadata would take more heap than allowed.
    #[error(
        "{what}: the metadata would need {need} bytes of memory, over the limit of {limit} \
         (GgufLimits::max_metadata_bytes; raise it if the file is trusted)"
    )]
    OverLimit { what: String, need: u64, limit: u64 },
    /// A count (or nesting depth) larger than the rest of the file could hold.
    #[error("too many: {what} declares {count}, at most {limit} fit in the rest of the file")]
    TooMany { what: String, count: u64, limit: u64 },
    /// A string that is not valid UTF-8.
    #[error("invalid UTF-8 in {what} at offset {offset}")]
    BadUtf8 { what: String, offset: u64 },
    /// A bool value that is neither 0 nor 1.
    #[error("bad bool byte {byte:#04x} in {what} at offset {offset} (must be 0 or 1)")]
    BadBool { what: String, offset: u64, byte: u8 },
    /// The same metadata key twice.
    #[error("duplicate metadata key {key:?} at offset {offset}")]
    DuplicateKey { key: String, offset: u64 },
    /// The same tensor name twice.
    #[error("duplicate tensor name {name:?} at offset {offset}")]
    DuplicateTensor { name: String, offset: u64 },
    /// A metadata value type id outside 0..=12.
    #[error("unknown value type {type_id} in {what} at offset {offset}")]
    UnknownValueType { what: String, type_id: u32, offset: u64 },
    /// A well-known key holds a value of the wrong type.
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: &'static str },
    /// A ggml type id this reader does not know (no block size for it).
    #[error("tensor {name:?}: unknown ggml type id {type_id}")]
    UnknownTensorType { name: String, type_id: u32 },
    /// Dimensions the format does not allow.
    #[error("tensor {name:?}: bad dimensions: {why}")]
    BadDims { name: String, why: String },
    /// The element count or byte size does not fit in 63 bits.
    #[error("tensor {name:?}: element count or byte size overflows")]
    SizeOverflow { name: String },
    /// Tensor bytes `[offset, offset + size)` (relative to the data section)
    /// are not inside the data section.
    #[error(
        "tensor {name:?}: bytes at data offset {offset} + size {size} run past the data section ({data_len} bytes)"
    )]
    BadOffset { name: String, offset: u64, size: u64, data_len: u64 },
    /// `general.alignment` is zero or not a power of two.
    #[error("general.alignment = {0} is not a power of two >= 1")]
    BadAlignment(u64),
    /// A tensor offset that is not a multiple of the alignment.
    #[error("tensor {name:?}: data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned { name: String, offset: u64, alignment: u32 },
}
