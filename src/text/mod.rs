//! Text in and out of the model: the tokenizer the GGUF file describes,
//! the chat template, and the sampler.

pub mod chat;
pub mod sampler;
pub mod tokenizer;
