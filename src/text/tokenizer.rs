//! Byte-level BPE from the GGUF metadata (being written).
