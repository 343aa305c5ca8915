//! Holding a generated summary to its requested length.
//!
//! Models treat "in 2 sentences" as a suggestion, and a token budget cuts
//! words in half. [`LengthLimit`] watches the answer as it grows, counting
//! sentences with tolk's own splitter ([`crate::text::sentences`]):
//!
//! - generation stops once the answer holds every sentence it may keep and
//!   the next sentence has begun ([`LengthLimit::progress`]);
//! - the answer ends after the last whole sentence within the limit, and a
//!   sentence still unfinished when the token budget ran out is dropped; an
//!   answer the model ended by itself is kept as written, up to the limit
//!   ([`LengthLimit::finish`]).
//!
//! With [`SummaryLength::Words`], whole sentences are kept while their words
//! add up to at most the limit; a first sentence longer than the limit on
//! its own is kept whole (a summary is never cut inside a sentence).

use crate::pipeline::summarize::SummaryLength;
use crate::text::sentences::{ends_sentence, sentence_spans};
use std::ops::Range;

/// The requested length of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthLimit {
    length: SummaryLength,
}

/// How far the growing answer has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the answer that will be kept whatever comes next (safe to stream).
    pub settled: usize,
    /// Nothing more can be kept: stop generating.
    pub done: bool,
}

impl LengthLimit {
    pub fn new(length: SummaryLength) -> Self {
        Self { length }
    }

    pub fn length(&self) -> SummaryLength {
        self.length
    }

    /// Whole sentences among `spans` (first `complete` of them finished) to keep.
    fn keep(&self, text: &str, spans: &[Range<usize>], complete: usize) -> usize {
        match self.length {
            SummaryLength::Sentences(n) => complete.min(n.max(1)),
            SummaryLength::Words(n) => {
                let mut words = 0;
                let mut keep = 0;
                for span in &spans[..complete] {
                    words += text[span.clone()].split_whitespace().count();
                    if words > n && keep > 0 {
                        break;
                    }
                    keep += 1;
                    if words >= n {
                        break;
                    }
                }
                keep
            }
        }
    }

    /// Reads the answer so far.
    pub fn progress(&self, text: &str) -> Progress {
        let spans = sentence_spans(text);
        // A sentence is confirmed once the next one has begun with a whole
        // word (a half-written word could still undo the boundary).
        let confirmed = match spans.len() {
            0 | 1 => 0,
            n if text[spans[n - 1].start..].contains(char::is_whitespace) => n - 1,
            n => n - 2,
        };
        let keep = self.keep(text, &spans, confirmed);
        let settled = if keep == 0 { 0 } else { spans[keep - 1].end };
        let done = match self.length {
            SummaryLength::Sentences(n) => confirmed >= n.max(1),
            SummaryLength::Words(n) => {
                // Past the limit with a sentence in hand: whatever follows
                // cannot be kept.
                keep > 0 && text.split_whitespace().count() > n
            }
        };
        Progress { settled, done }
    }

    /// The part of the final answer `text` to keep (a prefix). `model_stopped`:
    /// the model ended the answer itself (a stop token or stop string), so
    /// its last sentence counts as finished even without a final period.
    pub fn finish<'t>(&self, text: &'t str, model_stopped: bool) -> &'t str {
        let spans = sentence_spans(text);
        let complete = match spans.last() {
            None => 0,
            Some(last) if model_stopped || ends_sentence(&text[last.clone()]) => spans.len(),
            Some(_) => spans.len() - 1,
        };
        let keep = self.keep(text, &spans, complete);
        if keep == 0 {
            ""
        } else {
            &text[..spans[keep - 1].end]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentences(n: usize) -> LengthLimit {
        LengthLimit::new(SummaryLength::Sentences(n))
    }

    #[test]
    fn stops_once_the_sentence_after_the_last_has_begun() {
        let l = sentences(2);
        let p = l.progress("One is here. Two is there.");
        assert!(!p.done);
        assert_eq!(p.settled, "One is here.".len());
        // "Th" could still become a word that undoes the boundary.
        assert!(!l.progress("One is here. Two is there. Th").done);
        let text = "One is here. Two is there. Three ";
        let p = l.progress(text);
        assert!(p.done);
        assert_eq!(&text[..p.settled], "One is here. Two is there.");
        assert_eq!(l.finish(text, false), "One is here. Two is there.");
    }

    #[test]
    fn an_unfinished_sentence_is_dropped_when_the_budget_ends() {
        let l = sentences(3);
        assert_eq!(
            l.finish("A man fell. He was admitted to hospit", false),
            "A man fell."
        );
        assert_eq!(l.finish("He was admitted to hospit", false), "");
        assert_eq!(
            l.finish("A man fell. He was admitted.", false),
            "A man fell. He was admitted."
        );
    }

    #[test]
    fn what_the_model_ended_itself_is_kept() {
        let l = sentences(3);
        assert_eq!(l.finish("A man fell and", true), "A man fell and");
        assert_eq!(l.finish("One. Two.", true), "One. Two.");
        assert_eq!(sentences(1).finish("One. Two. Three", true), "One.");
    }

    #[test]
    fn words_keep_whole_sentences_within_the_limit() {
        let l = LengthLimit::new(SummaryLength::Words(6));
        let text = "The cat sat down. The dog barked loudly at night. More";
        assert_eq!(l.finish(text, false), "The cat sat down.");
        let p = l.progress(text);
        assert!(p.done);
        assert_eq!(&text[..p.settled], "The cat sat down.");
        // A first sentence longer than the limit is kept whole, not cut.
        let long = "This single sentence has many more words than six. Next one";
        assert_eq!(
            l.finish(long, false),
            "This single sentence has many more words than six."
        );
        assert!(!l.progress("This single sentence has many more words").done);
    }

    #[test]
    fn sentence_structure_and_line_breaks_survive() {
        let l = sentences(2);
        let text = "Summary of events.\n\nThe mayor\nresigned. Elections follow.";
        assert_eq!(
            l.finish(text, true),
            "Summary of events.\n\nThe mayor\nresigned."
        );
    }
}
