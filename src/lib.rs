//! tolk: German→English translation and English summaries with open models,
//! run locally on candle.
//!
//! The library holds all logic; `main.rs` only calls [`cli::run`].
//! Layout, one module per concern:
//! - [`hub`]: finding model files (Hugging Face cache, download, local folders)
//! - [`checkpoint`]: reading weight files (PyTorch pickles without running code)
//! - [`tokenize`]: tokenizers built from SentencePiece models, `vocab.json`, GGUF metadata
//! - [`checkpoint`]: reading transformers checkpoint folders (config, weights)
//! - [`models`]: model code per family; no I/O, tensors in, tensors out
//! - [`pipeline`]: the `Translator` and `Summarizer` engines and their document-level drivers
//! - [`text`]: paragraphs, sentence splitting, chunking, language detection
//! - [`io`]: reading input text safely and writing output atomically
//! - [`engines`]: building the engines from plain options, and choosing a model's files
//! - [`device`]: `--device` and `--threads`
//! - [`batch`]: `tolk batch`, whole folders resumably
//! - [`cli`]: the command line

pub mod batch;
pub mod checkpoint;
pub mod cli;
pub mod device;
pub mod engines;
pub mod generation;
pub mod hub;
pub mod io;
pub mod models;
pub mod pipeline;
pub mod text;
pub mod tokenize;
