//! Summarization engines behind one [`Summarizer`] trait.

pub mod extractive;
pub mod t5;

use crate::text::Lang;
use anyhow::Result;

/// How long a summary should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryLength {
    /// At most this many sentences (the llm engine holds it; see `llm::length`).
    Sentences(usize),
    /// At most this many words, in whole sentences.
    Words(usize),
}

impl SummaryLength {
    /// The `--length short|medium|long` presets.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "short" => Some(Self::Sentences(2)),
            "medium" => Some(Self::Sentences(4)),
            "long" => Some(Self::Sentences(7)),
            _ => None,
        }
    }
}

/// One summarization job.
#[derive(Debug, Clone)]
pub struct SummaryRequest<'a> {
    /// The article, German or English.
    pub text: &'a str,
    /// The article's language (detected or given with `--source`).
    pub lang: Lang,
    pub length: SummaryLength,
}

/// An engine that writes a short English summary of an article.
pub trait Summarizer {
    /// Names the model (repo id, file or method), for logs and manifests.
    fn model_id(&self) -> String;
    /// Summarizes `req.text`. Engines that generate text incrementally pass
    /// each new piece to `on_text` as it arrives (for `--stream`); the return
    /// value is always the whole summary.
    fn summarize(&mut self, req: &SummaryRequest, on_text: &mut dyn FnMut(&str)) -> Result<String>;
    /// Notes gathered since the last call (e.g. that an article was
    /// summarized in parts), for the caller to show.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
}
pub mod llm;
