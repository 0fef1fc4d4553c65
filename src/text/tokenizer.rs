//! Byte-level BPE, built from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! This is the tokenizer of GPT-2 and of the models that reuse its scheme
//! (`tokenizer.ggml.model = "gpt2"` in GGUF, `ByteLevel` + `BPE` in Hugging
//! Face `tokenizers`), such as SmolLM2. Encoding a text takes four steps:
//!
//! 1. **Special tokens.** With `special = true`, the texts of the control
//!    tokens (`token_type` 3, e.g. `<|im_start|>`) and user-defined tokens
//!    (type 4) are cut out first, leftmost match first and the longest match
//!    at a position winning (Hugging Face's added-vocabulary matching), and
//!    become their ids. Only the text between them goes on.
//! 2. **Pre-tokenizer.** The text is cut into pieces that BPE never merges
//!    across. `tokenizer.ggml.pre = "smollm"` is llama.cpp's SMOLLM pre-type
//!    (shared there with StarCoder and others): first every Unicode number
//!    character (`\p{N}`) becomes a piece of its own (Hugging Face
//!    `Digits(individual_digits = true)`), then GPT-2's pattern
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//!    splits each piece (Hugging Face `ByteLevel(use_regex = true)`).
//!    `"gpt2"` is llama.cpp's GPT2 pre-type: the pattern alone, no digit
//!    split. Nothing else is accepted: other pre-types use other patterns,
//!    and a guessed one would give ids the model was never trained on.
//! 3. **Bytes to symbols.** Every byte of a piece becomes one character of
//!    GPT-2's `bytes_to_unicode` alphabet (openai/gpt-2 `encoder.py`): the
//!    188 printable Latin-1 bytes stand for themselves, the other 68 bytes
//!    map to U+0100 upwards in byte order (so a space is `Ġ`, U+0120). The
//!    vocabulary is written in this alphabet. A byte whose symbol is not a
//!    token is dropped here, before any merge, as Hugging Face's BPE does
//!    (no unk token, no byte fallback): SmolLM2 has no token for 21 bytes
//!    (0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1, 0xf2,
//!    0xf5..=0xff), so text holding U+0004 or a character of planes 4 to 11
//!    cannot round-trip. Hugging Face gives `"!\u{4}!"` as one `!!`, the
//!    two `!` meeting once the byte is gone. (llama.cpp keeps the symbol
//!    through the merges and looks bytes up only after them, so there the
//!    neighbours never meet; this follows Hugging Face, the fixture's
//!    reference and the model's own tokenizer.)
//! 4. **BPE.** The adjacent pair of symbols whose merge comes first in
//!    `tokenizer.ggml.merges` (the lowest rank) is merged, leftmost first
//!    among equals, until no adjacent pair has a merge; the symbols left are
//!    the tokens. A heap of candidate pairs keeps this `O(n log n)` in the
//!    piece length, so a long piece (a run of punctuation, base64) stays
//!    cheap.
//!
//! Decoding maps a token's characters back through the same alphabet.
//! `tests/tokenizer.rs` compares the ids with Hugging Face `tokenizers`
//! built from the same metadata (`tests/fixtures/tokenizer/`).
//!
//! Nothing is cached between calls or shared between tokenizers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use regex::Regex;

use crate::gguf::{shown_name as shown, Array, Gguf, Value};

/// Values of `tokenizer.ggml.model` this tokenizer implements.
pub const SUPPORTED_MODELS: &[&str] = &["gpt2"];

/// Values of `tokenizer.ggml.pre` this tokenizer implements.
pub const SUPPORTED_PRE: &[&str] = &["smollm", "gpt2"];

/// GPT-2's pre-tokenizer pattern without its last two alternatives'
/// lookahead: `\s+(?!\S)|\s+` is written `\s+`, and [`Tokenizer::split_gpt2`]
/// gives back the last whitespace character of a run that a non-space
/// follows, which is exactly what the backtracking of `\s+(?!\S)` does.
/// The `regex` crate has no lookaround, and this keeps the split linear.
const GPT2_PATTERN_WITHOUT_LOOKAHEAD: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// Control-token texts that end a turn: those of llama.cpp's vocabulary
/// loader's end-of-generation list (besides the eos / eot / eom ids) that
/// plain chat models use.
const END_OF_TURN_TEXTS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<EOT>",
    "_<EOT>",
];

/// The pre-tokenizer (`tokenizer.ggml.pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// llama.cpp's SMOLLM pre-type: each `\p{N}` character alone, then GPT-2's pattern.
    Smollm,
    /// llama.cpp's GPT2 pre-type: GPT-2's pattern only.
    Gpt2,
}

/// A token's `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    fn from_i32(v: i32) -> Option<Self> {
        use TokenType::*;
        Some(match v {
            0 => Undefined,
            1 => Normal,
            2 => Unknown,
            3 => Control,
            4 => UserDefined,
            5 => Unused,
            6 => Byte,
            _ => return None,
        })
    }
}

/// Why a GGUF file's tokenizer metadata cannot be used. Every variant says
/// what was found and what is expected; strings from the file are cut to
/// [`SHOWN_BYTES`](crate::gguf::SHOWN_BYTES) bytes so a hostile file cannot make a huge message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A key the tokenizer cannot do without.
    #[error("GGUF metadata has no `{key}` ({what})")]
    MissingKey { key: &'static str, what: &'static str },
    /// A key holding a value of the wrong type.
    #[error("GGUF metadata `{key}` is {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: String },
    /// `tokenizer.ggml.model` names a tokenizer this module does not implement.
    #[error("tokenizer.ggml.model is {found:?}: only {SUPPORTED_MODELS:?} (byte-level BPE) is supported")]
    UnsupportedModel { found: String },
    /// `tokenizer.ggml.pre` is missing or names another pre-tokenizer.
    #[error(
        "tokenizer.ggml.pre is {found}: only {SUPPORTED_PRE:?} are supported (llama.cpp pre-types SMOLLM and GPT2)"
    )]
    UnsupportedPre { found: String },
    /// A flag this tokenizer cannot honour.
    #[error("`{key}` is {found}, which this tokenizer cannot honour (supported: {supported})")]
    UnsupportedOption { key: &'static str, found: String, supported: &'static str },
    /// `tokenizer.ggml.tokens` has no entries.
    #[error("the vocabulary (tokenizer.ggml.tokens) is empty")]
    EmptyVocab,
    /// More tokens than `u32` ids can number.
    #[error("tokenizer.ggml.tokens has {n_tokens} entries, more than u32 token ids can number")]
    TooManyTokens { n_tokens: usize },
    /// A per-token array whose length is not the number of tokens.
    #[error("`{key}` has {len} entries but tokenizer.ggml.tokens has {n_tokens}: it needs one per token")]
    LengthMismatch { key: &'static str, len: usize, n_tokens: usize },
    /// `<arch>.vocab_size` disagrees with the tokens array.
    #[error("`{key}` is {value} but tokenizer.ggml.tokens has {n_tokens} tokens")]
    VocabSizeMismatch { key: String, value: u64, n_tokens: usize },
    /// A `token_type` value outside llama.cpp's 0..=6.
    #[error("token {id} has token_type {value}; known types are 0 (undefined) to 6 (byte)")]
    BadTokenType { id: usize, value: i32 },
    /// A merge that is not two symbols joined by exactly one space.
    #[error("merge {index} ({merge:?}) is malformed: a merge is two non-empty symbols separated by exactly one space")]
    MalformedMerge { index: usize, merge: String },
    /// A merge naming a symbol, or making one, that is not a token.
    #[error(
        "merge {index} ({merge:?}) needs {symbol:?}, which is not in the vocabulary: both symbols of a \
         merge and their concatenation must be tokens"
    )]
    UnknownMergeSymbol { index: usize, merge: String, symbol: String },
    /// The same pair listed twice: references disagree on which rank counts.
    #[error(
        "merge {index} ({merge:?}) repeats merge {first}: llama.cpp would keep the first rank and Hugging Face \
         the last, so the ids would be ambiguous"
    )]
    DuplicateMerge { index: usize, first: usize, merge: String },
    /// A special-token id key naming no token.
    #[error("`{key}` is {id} but the vocabulary has {n_tokens} tokens (ids 0..{n_tokens})")]
    TokenIdOutOfRange { key: &'static str, id: u64, n_tokens: usize },
}

/// What a metadata value is, for [`TokenizerError::WrongType`].
fn describe(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("an array of {} ({} entries)", a.elem_type().name(), a.len()),
        Value::String(s) => format!("the string {:?}", shown(s)),
        other => format!("a {}", other.value_type().name()),
    }
}

/// GPT-2's `bytes_to_unicode`: byte -> the character that stands for it in
/// the vocabulary. Bytes `!`..=`~`, `¡`..=`¬` and `®`..=`ÿ` (188 printable
/// Latin-1 characters) stand for themselves; the other 68 take U+0100,
/// U+0101, ... in increasing byte order.
pub fn byte_to_symbol() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let code = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        // Every code here is below 0x144: a valid scalar value.
        *slot = char::from_u32(code).unwrap_or('\u{fffd}');
    }
    table
}

/// The inverse of [`byte_to_symbol`] over the 324 code points it uses.
fn symbol_to_byte_table() -> [Option<u8>; 0x144] {
    let mut inverse = [None; 0x144];
    for (b, c) in byte_to_symbol().iter().enumerate() {
        inverse[*c as usize] = Some(b as u8);
    }
    inverse
}

/// A special token's text, for matching in [`Tokenizer::encode`].
#[derive(Clone, Debug)]
struct Special {
    text: Box<[u8]>,
    id: u32,
    ty: TokenType,
}

/// A merge: its rank (its index in `tokenizer.ggml.merges`) and the token it makes.
#[derive(Clone, Copy, Debug)]
struct Merge {
    rank: usize,
    id: u32,
}

/// A text tokenizer loaded from GGUF metadata. See the module docs.
pub struct Tokenizer {
    pre: PreTokenizer,
    pattern: Regex,
    /// Token text -> id. Duplicate texts: the last id wins, as in llama.cpp's
    /// loader (Hugging Face's vocabulary is a map and cannot hold them).
    ids: HashMap<String, u32>,
    /// Every token's bytes, concatenated; token `i` is `bytes[ends[i-1]..ends[i]]`.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    types: Vec<TokenType>,
    /// Each byte's single-symbol token, if the vocabulary has one.
    byte_ids: [Option<u32>; 256],
    /// (left id, right id) -> merge.
    merges: HashMap<(u32, u32), Merge>,
    /// Special-token texts grouped by first byte, longest first within a
    /// group, so the first hit is the longest match.
    specials: Vec<Vec<Special>>,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("pre", &self.pre)
            .field("n_vocab", &self.n_vocab())
            .field("n_merges", &self.merges.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eog", &self.eog)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

/// The string at `key`, if present; another type is an error.
fn opt_str<'g>(g: &'g Gguf, key: &'static str) -> Result<Option<&'g str>, TokenizerError> {
    match g.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(TokenizerError::WrongType { key: key.into(), expected: "a string", found: describe(v) }),
    }
}

/// The bool at `key`, `default` when absent; another type is an error.
fn opt_bool(g: &Gguf, key: &'static str, default: bool) -> Result<bool, TokenizerError> {
    match g.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(TokenizerError::WrongType { key: key.into(), expected: "a bool", found: describe(v) }),
    }
}

/// A token id at `key`, if present: a non-negative integer below `n_tokens`.
fn opt_token_id(g: &Gguf, key: &'static str, n_tokens: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = g.get(key) else { return Ok(None) };
    let Some(id) = v.as_u64() else {
        return Err(TokenizerError::WrongType {
            key: key.into(),
            expected: "a non-negative integer token id",
            found: describe(v),
        });
    };
    match u32::try_from(id) {
        Ok(id32) if (id32 as usize) < n_tokens => Ok(Some(id32)),
        _ => Err(TokenizerError::TokenIdOutOfRange { key, id, n_tokens }),
    }
}

/// Whether `special` token matching applies to a token of type `ty`.
///
/// Control and user-defined texts are matched only when the caller asks
/// (`special = true`), so that user text containing `<|im_start|>` cannot
/// forge a turn. Note: llama.cpp (`tokenizer_st_partition`) and Hugging
/// Face always match user-defined (non-special added) tokens whatever the
/// flag. SmolLM2 has none; this API's contract is that `special = false`
/// treats both kinds as plain text, and this function is the one place to
/// change if user-defined tokens should follow the references instead.
fn matched_as_special(ty: TokenType, special: bool) -> bool {
    special && matches!(ty, TokenType::Control | TokenType::UserDefined)
}

impl Tokenizer {
    /// Builds the tokenizer from the GGUF metadata, checking all of it:
    ///
    /// - `tokenizer.ggml.model` must be `"gpt2"` and `tokenizer.ggml.pre`
    ///   one of [`SUPPORTED_PRE`];
    /// - the tokens must be a non-empty string array (bytes without a token
    ///   are dropped when encoding, see the module docs);
    /// - `token_type` (optional, all normal when absent, as in llama.cpp)
    ///   must be an `i32` array with one known type per token;
    /// - `<general.architecture>.vocab_size`, when present, must equal the
    ///   number of tokens;
    /// - the bos / eos / eot / eom ids, when present, must name tokens;
    /// - `tokenizer.ggml.add_space_prefix`, when present, must be false
    ///   (nothing here would add the space);
    /// - every merge must be two symbols separated by one space whose two
    ///   sides and concatenation are tokens, and no pair may be listed
    ///   twice. Hugging Face's BPE builder refuses a merge out of the
    ///   vocabulary, and all 48,900 merges of SmolLM2 pass; llama.cpp keeps
    ///   such merges and falls back to byte tokens at encode time, which
    ///   would silently give ids that a Hugging Face tokenizer of the same
    ///   file does not. For a repeated pair llama.cpp keeps the first rank
    ///   and Hugging Face the last, so there is no right answer to give.
    ///
    /// Memory is proportional to the arrays the [`Gguf`] already holds.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let model = opt_str(g, "tokenizer.ggml.model")?
            .ok_or(TokenizerError::MissingKey { key: "tokenizer.ggml.model", what: "the tokenizer type" })?;
        if !SUPPORTED_MODELS.contains(&model) {
            return Err(TokenizerError::UnsupportedModel { found: shown(model) });
        }
        let pre = match opt_str(g, "tokenizer.ggml.pre")? {
            Some("smollm") => PreTokenizer::Smollm,
            Some("gpt2") => PreTokenizer::Gpt2,
            Some(other) => return Err(TokenizerError::UnsupportedPre { found: format!("{:?}", shown(other)) }),
            None => {
                return Err(TokenizerError::UnsupportedPre {
                    found: "missing (llama.cpp would guess its \"default\" pre-type)".into(),
                })
            }
        };
        if opt_bool(g, "tokenizer.ggml.add_space_prefix", false)? {
            return Err(TokenizerError::UnsupportedOption {
                key: "tokenizer.ggml.add_space_prefix",
                found: "true".into(),
                supported: "false: a byte-level BPE pre-tokenizer adds no space",
            });
        }

        let tokens = match g.get("tokenizer.ggml.tokens") {
            None => return Err(TokenizerError::MissingKey { key: "tokenizer.ggml.tokens", what: "the vocabulary" }),
            Some(Value::Array(Array::String(t))) => t,
            Some(v) => {
                return Err(TokenizerError::WrongType {
                    key: "tokenizer.ggml.tokens".into(),
                    expected: "an array of strings",
                    found: describe(v),
                })
            }
        };
        let n = tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::TooManyTokens { n_tokens: n });
        }
        if let Some(arch) = opt_str(g, "general.architecture")? {
            let key = format!("{arch}.vocab_size");
            if let Some(v) = g.get(&key) {
                match v.as_u64() {
                    Some(value) if value == n as u64 => {}
                    Some(value) => {
                        return Err(TokenizerError::VocabSizeMismatch { key: shown(&key), value, n_tokens: n })
                    }
                    None => {
                        return Err(TokenizerError::WrongType {
                            key: shown(&key),
                            expected: "a non-negative integer",
                            found: describe(v),
                        })
                    }
                }
            }
        }

        let types = match g.get("tokenizer.ggml.token_type") {
            None => vec![TokenType::Normal; n],
            Some(Value::Array(Array::I32(t))) => {
                if t.len() != n {
                    return Err(TokenizerError::LengthMismatch {
                        key: "tokenizer.ggml.token_type",
                        len: t.len(),
                        n_tokens: n,
                    });
                }
                let mut types = Vec::with_capacity(n);
                for (id, &value) in t.iter().enumerate() {
                    types.push(TokenType::from_i32(value).ok_or(TokenizerError::BadTokenType { id, value })?);
                }
                types
            }
            Some(v) => {
                return Err(TokenizerError::WrongType {
                    key: "tokenizer.ggml.token_type".into(),
                    expected: "an array of i32",
                    found: describe(v),
                })
            }
        };

        let mut ids = HashMap::with_capacity(n);
        for (id, text) in tokens.iter().enumerate() {
            ids.insert(text.clone(), id as u32);
        }

        let to_symbol = byte_to_symbol();
        let mut byte_ids = [None; 256];
        let mut buf = [0u8; 4];
        for (slot, symbol) in byte_ids.iter_mut().zip(to_symbol) {
            *slot = ids.get(&*symbol.encode_utf8(&mut buf)).copied();
        }

        // Token bytes. Control and user-defined tokens are their text (a
        // GGUF converter stores them raw, not in the byte alphabet); others
        // map back through bytes_to_unicode, and one holding a character
        // outside that alphabet is its raw text, as Hugging Face's ByteLevel
        // decoder does.
        let to_byte = symbol_to_byte_table();
        let mut bytes = Vec::with_capacity(tokens.iter().map(String::len).sum());
        let mut ends = Vec::with_capacity(n);
        for (text, ty) in tokens.iter().zip(&types) {
            let raw = matches!(ty, TokenType::Control | TokenType::UserDefined)
                || !text.chars().all(|c| to_byte.get(c as usize).is_some_and(Option::is_some));
            if raw {
                bytes.extend_from_slice(text.as_bytes());
            } else {
                bytes.extend(text.chars().filter_map(|c| to_byte[c as usize]));
            }
            ends.push(bytes.len());
        }

        let merge_list = match g.get("tokenizer.ggml.merges") {
            None => {
                return Err(TokenizerError::MissingKey { key: "tokenizer.ggml.merges", what: "the BPE merge rules" })
            }
            Some(Value::Array(Array::String(m))) => m,
            Some(v) => {
                return Err(TokenizerError::WrongType {
                    key: "tokenizer.ggml.merges".into(),
                    expected: "an array of strings",
                    found: describe(v),
                })
            }
        };
        let mut merges = HashMap::with_capacity(merge_list.len());
        let mut joined = String::new();
        for (index, merge) in merge_list.iter().enumerate() {
            let malformed = || TokenizerError::MalformedMerge { index, merge: shown(merge) };
            let (left, right) = merge.split_once(' ').ok_or_else(malformed)?;
            if left.is_empty() || right.is_empty() || right.contains(' ') {
                return Err(malformed());
            }
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let lookup = |symbol: &str| {
                ids.get(symbol).copied().ok_or_else(|| TokenizerError::UnknownMergeSymbol {
                    index,
                    merge: shown(merge),
                    symbol: shown(symbol),
                })
            };
            let (l, r, id) = (lookup(left)?, lookup(right)?, lookup(&joined)?);
            if let Some(first) = merges.insert((l, r), Merge { rank: index, id }) {
                return Err(TokenizerError::DuplicateMerge { index, first: first.rank, merge: shown(merge) });
            }
        }

        let mut all: Vec<Special> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (text, ty))| matches!(ty, TokenType::Control | TokenType::UserDefined) && !text.is_empty())
            .map(|(id, (text, &ty))| Special { text: text.as_bytes().into(), id: id as u32, ty })
            .collect();
        // Longest first; the same text twice keeps the last id, as `ids` does.
        all.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.text.cmp(&b.text)).then(b.id.cmp(&a.id)));
        all.dedup_by(|later, kept| later.text == kept.text);
        let mut specials: Vec<Vec<Special>> = vec![Vec::new(); 256];
        for s in all {
            specials[usize::from(s.text[0])].push(s);
        }

        let bos = opt_token_id(g, "tokenizer.ggml.bos_token_id", n)?;
        let eos = opt_token_id(g, "tokenizer.ggml.eos_token_id", n)?;
        let eot = opt_token_id(g, "tokenizer.ggml.eot_token_id", n)?;
        let eom = opt_token_id(g, "tokenizer.ggml.eom_token_id", n)?;
        let mut eog: Vec<u32> = [eos, eot, eom].into_iter().flatten().collect();
        for (id, (text, ty)) in tokens.iter().zip(&types).enumerate() {
            if matches!(ty, TokenType::Control | TokenType::UserDefined) && END_OF_TURN_TEXTS.contains(&text.as_str()) {
                eog.push(id as u32);
            }
        }
        eog.sort_unstable();
        eog.dedup();

        let pattern = Regex::new(GPT2_PATTERN_WITHOUT_LOOKAHEAD).expect("the GPT-2 pattern is a valid regex");
        Ok(Tokenizer {
            pre,
            pattern,
            ids,
            bytes,
            ends,
            types,
            byte_ids,
            merges,
            specials,
            bos,
            eos,
            eog,
            add_bos: opt_bool(g, "tokenizer.ggml.add_bos_token", false)?,
            add_eos: opt_bool(g, "tokenizer.ggml.add_eos_token", false)?,
        })
    }

    /// Text to token ids. With `special`, control and user-defined token
    /// texts (e.g. `<|im_start|>`) are single tokens; without, they are
    /// plain text and go through BPE like any other. No BOS is added here
    /// (see [`Tokenizer::add_bos`]).
    pub fn encode(&self, text: &str, special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let bytes = text.as_bytes();
        let (mut segment, mut i) = (0, 0);
        while i < bytes.len() {
            match self.special_at(&bytes[i..], special) {
                Some((len, id)) => {
                    // A match starts at a UTF-8 lead byte (a token's text is
                    // UTF-8) and ends after a whole character: both are
                    // character boundaries.
                    self.encode_ordinary(&text[segment..i], &mut out);
                    out.push(id);
                    i += len;
                    segment = i;
                }
                None => i += 1,
            }
        }
        self.encode_ordinary(&text[segment..], &mut out);
        out
    }

    /// The longest special token that `rest` starts with: (length, id).
    fn special_at(&self, rest: &[u8], special: bool) -> Option<(usize, u32)> {
        self.specials[usize::from(rest[0])]
            .iter()
            .find(|s| matched_as_special(s.ty, special) && rest.starts_with(&s.text))
            .map(|s| (s.text.len(), s.id))
    }

    /// Text without special tokens: pre-tokenizer, then BPE per piece.
    fn encode_ordinary(&self, text: &str, out: &mut Vec<u32>) {
        match self.pre {
            PreTokenizer::Gpt2 => self.split_gpt2(text, out),
            PreTokenizer::Smollm => {
                // Hugging Face Digits(individual_digits) splits at
                // `char::is_numeric`, which is \p{N} (Nd, Nl, No).
                let mut start = 0;
                for (at, c) in text.char_indices() {
                    if c.is_numeric() {
                        self.split_gpt2(&text[start..at], out);
                        self.bpe(&text.as_bytes()[at..at + c.len_utf8()], out);
                        start = at + c.len_utf8();
                    }
                }
                self.split_gpt2(&text[start..], out);
            }
        }
    }

    /// GPT-2's pattern over `text`, each piece through BPE. The pattern is
    /// compiled without `(?!\S)`: when a whitespace run of two or more
    /// characters is followed by a non-space, `\s+(?!\S)` would stop one
    /// character short, leaving the last space to start the next piece
    /// (`" word"`); a run at the end of the text, or a lone whitespace
    /// character, is taken whole (the final `\s+`).
    fn split_gpt2(&self, text: &str, out: &mut Vec<u32>) {
        let mut pos = 0;
        while pos < text.len() {
            // Every character starts a match (letter, number, space or other),
            // so the match is at `pos`; the fallback only keeps this total.
            let Some(m) = self.pattern.find_at(text, pos) else {
                self.bpe(&text.as_bytes()[pos..], out);
                return;
            };
            if m.start() > pos {
                self.bpe(&text.as_bytes()[pos..m.start()], out);
            }
            let mut end = m.end();
            let piece = m.as_str();
            if end < text.len() {
                if let Some(last) = piece.chars().next_back().filter(|c| c.is_whitespace()) {
                    if piece.len() > last.len_utf8() {
                        end -= last.len_utf8();
                    }
                }
            }
            self.bpe(&text.as_bytes()[m.start()..end], out);
            pos = end;
        }
    }

    /// BPE over one piece's bytes: merge the lowest-ranked adjacent pair
    /// (leftmost among equal ranks, as Hugging Face and llama.cpp order
    /// their queues) until none has a merge. Candidates wait in a min-heap
    /// of (rank, left position); one that went stale (a side was merged
    /// since) is recognised by re-looking up the pair now at its position.
    fn bpe(&self, piece: &[u8], out: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        if let [b] = piece {
            out.extend(self.byte_ids[usize::from(*b)]);
            return;
        }
        // (id, prev, next); a merged-away symbol has id u32::MAX. Bytes
        // without a token are left out before merging (module docs).
        let mut syms: Vec<(u32, usize, usize)> = Vec::with_capacity(piece.len());
        for id in piece.iter().filter_map(|&b| self.byte_ids[usize::from(b)]) {
            let i = syms.len();
            syms.push((id, if i == 0 { NONE } else { i - 1 }, i + 1));
        }
        let Some(last) = syms.last_mut() else { return };
        last.2 = NONE;
        let mut heap = BinaryHeap::with_capacity(piece.len());
        for i in 0..syms.len() - 1 {
            if let Some(m) = self.merges.get(&(syms[i].0, syms[i + 1].0)) {
                heap.push(Reverse((m.rank, i)));
            }
        }
        while let Some(Reverse((rank, left))) = heap.pop() {
            let (left_id, prev, right) = syms[left];
            if left_id == u32::MAX || right == NONE {
                continue;
            }
            let Some(m) = self.merges.get(&(left_id, syms[right].0)).filter(|m| m.rank == rank) else {
                continue;
            };
            let after = syms[right].2;
            syms[left] = (m.id, prev, after);
            syms[right].0 = u32::MAX;
            if after != NONE {
                syms[after].1 = left;
                if let Some(m2) = self.merges.get(&(m.id, syms[after].0)) {
                    heap.push(Reverse((m2.rank, left)));
                }
            }
            if prev != NONE {
                if let Some(m2) = self.merges.get(&(syms[prev].0, m.id)) {
                    heap.push(Reverse((m2.rank, prev)));
                }
            }
        }
        let mut i = 0;
        while i != NONE {
            out.push(syms[i].0);
            i = syms[i].2;
        }
    }

    /// The bytes token `id` stands for: a normal token's characters mapped
    /// back through GPT-2's `bytes_to_unicode`, a control or user-defined
    /// token's text. An id outside the vocabulary has no bytes.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i >= self.ends.len() {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// The text of `ids`: their bytes joined, with U+FFFD only where the
    /// joined bytes are not valid UTF-8 (a character cut by the end of
    /// `ids`, or ids that never form one).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut buf = Vec::new();
        for &id in ids {
            buf.extend_from_slice(self.token_bytes(id));
        }
        match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Number of tokens (`tokenizer.ggml.tokens`).
    pub fn n_vocab(&self) -> usize {
        self.ends.len()
    }

    /// `tokenizer.ggml.bos_token_id`.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// `tokenizer.ggml.eos_token_id`.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// `tokenizer.ggml.add_bos_token` (false when absent): whether a prompt
    /// should start with [`Tokenizer::bos`]. [`Tokenizer::encode`] never adds it.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// `tokenizer.ggml.add_eos_token` (false when absent).
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// The pre-tokenizer `tokenizer.ggml.pre` chose.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// Token `id`'s type, `None` outside the vocabulary.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Whether generation stops at `id`: the eos, eot and eom ids, and the
    /// control / user-defined tokens whose text ends a turn in llama.cpp
    /// (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, ...).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The id of the token whose text (as stored in the vocabulary, so in
    /// the byte alphabet for normal tokens: `"Ġthe"`) is `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }
}

/// Turns token bytes into text as tokens arrive. A UTF-8 character may be
/// split across tokens (byte-level BPE merges bytes, not characters), so
/// the bytes of an unfinished character wait until it is complete. Bytes
/// that can never become valid UTF-8 come out as U+FFFD, each maximal
/// invalid run as one, exactly as [`String::from_utf8_lossy`] treats the
/// whole stream: the chunks joined equal `from_utf8_lossy` of all bytes.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes; returns the text they complete (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut done = 0;
        while done < self.pending.len() {
            match std::str::from_utf8(&self.pending[done..]) {
                Ok(s) => {
                    out.push_str(s);
                    done = self.pending.len();
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    // Valid by `valid_up_to`, so this borrows without replacing.
                    out.push_str(&String::from_utf8_lossy(&self.pending[done..done + good]));
                    done += good;
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            done += bad;
                        }
                        // An incomplete character at the end: wait for more.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..done);
        out
    }

    /// The end of the stream: an unfinished character left waiting is U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_unicode_is_gpt2s() {
        let t = byte_to_symbol();
        assert_eq!(t[b'!' as usize], '!');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], '\u{100}');
        assert_eq!(t[0xad], '\u{143}');
        assert_eq!(t[0xff], 'ÿ');
        let mut seen: Vec<char> = t.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        let inverse = symbol_to_byte_table();
        for (b, c) in t.iter().enumerate() {
            assert_eq!(inverse[*c as usize], Some(b as u8));
        }
    }

    #[test]
    fn stream_decoder_waits_for_whole_characters() {
        let mut d = StreamDecoder::new();
        let euro = "€".as_bytes();
        assert_eq!(d.push(&euro[..1]), "");
        assert_eq!(d.push(&euro[1..2]), "");
        assert_eq!(d.push(&[euro[2], b'a']), "€a");
        assert_eq!(d.push(&[0xff, b'b', 0xe2]), "\u{fffd}b");
        assert_eq!(d.finish(), "\u{fffd}");
    }

    #[test]
    fn shown_cuts_long_strings_at_a_char_boundary() {
        let long = "é".repeat(100);
        let s = shown(&long);
        assert!(s.starts_with(&"é".repeat(32)) && s.ends_with("...(+136 bytes)"), "{s}");
    }
}
