//! Translation: the [`Translator`] trait and the document driver.
use anyhow::Result;

/// An engine that translates independent sentences.
pub trait Translator {
    /// Names the model (repo id or folder), for logs and manifests.
    fn model_id(&self) -> String;
    /// Translates sentences; output `i` is the translation of input `i`.
    /// Implementations batch internally and may reorder work, never results.
    fn translate_batch(&mut self, sentences: &[&str]) -> Result<Vec<String>>;
    /// How many model tokens `text` takes (to split over-long sentences first).
    fn token_count(&self, text: &str) -> Result<usize>;
    /// The longest input, in tokens, the model accepts.
    fn max_input_tokens(&self) -> usize;
}
