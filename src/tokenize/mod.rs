//! Tokenizers built from the files models ship: SentencePiece models and
//! `vocab.json` (Marian), `tokenizer.json`, and GGUF metadata.

pub mod gguf;
pub mod marian;
pub mod spm;
pub mod t5;
