//! The paragraph/Markdown segmenter, the German sentence splitter, the
//! chunker and the document driver, with their invariants:
//! - the segments concatenate to the input (every byte in exactly one
//!   segment or gap, in order), none is empty, neighbours differ in kind,
//!   prose never starts or ends with whitespace;
//! - no sentence is empty or has edge whitespace, and the sentences joined
//!   with spaces give the paragraph with its whitespace normalized;
//! - chunks lose nothing and keep the order;
//! - translating with the identity puts every sentence back in place and
//!   leaves the Markdown skeleton (fences, code, links: every kept segment)
//!   unchanged, byte for byte and in place.
//!
//! Not checked here: that *re-reading* the translated document finds the
//! same skeleton. A translation joins a hard-wrapped paragraph into one
//! line, and the line-based reading of table rows and HTML blocks can then
//! differ (fuzzing found such documents; README "Reliability"). The
//! property tests check the re-reading on their generated documents.
//!
//! Input: one byte of options (bit 0: Markdown; the rest: a token budget),
//! then the document (invalid UTF-8 replaced, as `--lossy` does).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolk::text::{self, Format};

#[path = "../../tests/support/text_invariants.rs"]
#[allow(dead_code)]
mod invariants;

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let input = String::from_utf8_lossy(rest);
    let format = if options & 1 == 0 {
        Format::Plain
    } else {
        Format::Markdown
    };
    let budget = usize::from(options >> 1) % 16 + 1;
    invariants::check_document_in_place(&input, format, budget);
    let _ = text::sentences_in(&input);
});
