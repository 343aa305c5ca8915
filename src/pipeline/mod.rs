//! The engines behind the commands, each behind a small trait, and the
//! document-level drivers that feed them.
//!
//! - [`Translator`]: sentences in, translated sentences out ([`translate`]).
//! - [`Summarizer`]: an article in, a short English summary out ([`summarize`]).
//! - [`llm_translate`]: the LLM engine behind [`Translator`].

pub mod llm_translate;
pub mod summarize;
pub mod translate;
pub mod weights;

pub use summarize::{Summarizer, SummaryLength, SummaryRequest};
pub use translate::Translator;
