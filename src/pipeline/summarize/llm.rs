//! Summaries written by a GGUF language model.

pub mod loader;
