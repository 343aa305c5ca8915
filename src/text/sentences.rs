//! Sentence splitting placeholder.
pub fn split_sentences(paragraph: &str) -> Vec<String> { vec![paragraph.to_string()] }
pub fn sentences_in(text: &str) -> Vec<String> { vec![text.to_string()] }
