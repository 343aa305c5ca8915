//! The engines behind the commands, each behind a small trait, and the
//! document-level drivers that feed them.
//!
//! - [`Translator`]: sentences in, translated sentences out ([`translate`]).
//! - [`Summarizer`]: an article in, a short English summary out ([`summarize`]).

pub mod summarize;
pub mod translate;

pub use summarize::{Summarizer, SummaryLength, SummaryRequest};
pub use translate::Translator;
