//! Plain-text structure: paragraphs, sentences, chunks, and language.
//!
//! - [`lang`]: parsing `--source de|en` and guessing an article's language.
//! - [`segment`](mod@segment): cutting a document into prose to translate and markup to
//!   keep verbatim, losslessly.
//! - [`markdown`]: the Markdown scanner behind `segment`.
//! - [`sentences`]: German-aware sentence splitting.
//! - [`chunk`]: fitting sentences into a model's token budget.
//! - [`document`]: any supported format as paragraphs to translate and back.
//! - [`html`]: HTML pages, translated in their DOM; [`readable`]: an HTML
//!   page's main text (for summaries).
//! - [`subtitles`]: SRT and WebVTT.
//! - [`protect`]: URLs, e-mail addresses, code, paths, numbers with units
//!   and emoji kept byte for byte through translation.

pub mod chunk;
pub mod document;
pub mod html;
pub mod lang;
pub mod markdown;
pub mod protect;
pub mod readable;
pub mod segment;
pub mod sentence_words;
pub mod sentences;
pub mod subtitles;

pub use chunk::{chunk_sentences, split_long};
pub use lang::{detect_language, ParseLangError};
pub use segment::{segment, Format, Segment};
pub use sentences::{sentences_in, split_sentences};

/// The languages tolk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    De,
    En,
}

/// Collapses every run of whitespace (line breaks included) into one space
/// and trims the ends: the form that sentence splitting and chunking compare
/// text in.
pub fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
