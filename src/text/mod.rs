//! Plain-text structure: paragraphs, sentences, chunks, and language.

/// The languages tolk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    De,
    En,
}
