//! Invariants of the text pipeline (segmenter, sentence splitter, chunker,
//! document driver), shared by the property tests (`tests/text_properties.rs`)
//! and the `text` fuzz target (`fuzz/fuzz_targets/text.rs`). Each check
//! panics with the offending input when an invariant breaks.

use anyhow::Result;
use tolk::pipeline::translate::{translate_document, Translator, Unit};
use tolk::text::{self, normalize_whitespace, Format, Segment};

/// Checks the segments of `input`: lossless, non-empty, alternating, prose
/// without edge whitespace.
pub fn check_segments(input: &str, format: Format) -> Vec<Segment> {
    let segments = text::segment(input, format);
    let joined: String = segments.iter().map(Segment::as_str).collect();
    assert_eq!(joined, input, "segments do not reassemble the input");
    for pair in segments.windows(2) {
        assert_ne!(
            pair[0].is_text(),
            pair[1].is_text(),
            "neighbours of one kind in {input:?}: {segments:?}"
        );
    }
    for s in &segments {
        assert!(!s.as_str().is_empty(), "empty segment for {input:?}");
        if let Segment::Text(t) = s {
            assert_eq!(t.trim(), t, "prose with edge whitespace in {input:?}");
        }
    }
    segments
}

/// Checks the sentences of one paragraph: none empty, none with edge or
/// doubled whitespace, and together they are the paragraph, normalized.
pub fn check_sentences(paragraph: &str) -> Vec<String> {
    let sentences = text::split_sentences(paragraph);
    for s in &sentences {
        assert!(!s.is_empty(), "empty sentence in {paragraph:?}");
        assert_eq!(
            s.trim(),
            s,
            "sentence with edge whitespace in {paragraph:?}"
        );
        assert_eq!(
            &normalize_whitespace(s),
            s,
            "unnormalized sentence in {paragraph:?}"
        );
    }
    assert_eq!(
        sentences.join(" "),
        normalize_whitespace(paragraph),
        "sentences lose or reorder text of {paragraph:?}"
    );
    sentences
}

/// Words as tokens: a budget never cuts inside a word.
pub fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Checks the chunks of `sentences` under a budget of `max` words.
pub fn check_chunks(sentences: &[String], max: usize) {
    let chunks = text::chunk_sentences(sentences, max, &words);
    let expected = normalize_whitespace(&sentences.join(" "));
    assert_eq!(chunks.join(" "), expected, "chunks lose or reorder text");
    for c in &chunks {
        assert!(!c.is_empty(), "empty chunk");
        assert!(words(c) <= max, "chunk over budget: {c:?} (max {max})");
    }
}

/// Translates each sentence into itself.
pub struct Identity {
    pub max_tokens: usize,
}

impl Translator for Identity {
    fn model_id(&self) -> String {
        "identity".into()
    }
    /// One token per word.
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(vec![0; words(text)])
    }
    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
        Ok(units.iter().map(|u| u.text.clone()).collect())
    }
    fn max_input_tokens(&self) -> usize {
        self.max_tokens
    }
    fn batch_size(&self) -> usize {
        4
    }
}

/// The document's skeleton: the markup it keeps that carries content —
/// code spans and fences, link and image destinations, autolinks, HTML —
/// token by token, in order. Block markers (list, quote and heading
/// markers, task boxes, table pipes and delimiter rows, rules) are left
/// out: a translation joins a hard-wrapped paragraph into one line, and a
/// paragraph line holding only such a marker (a bare `+`, `* `, a pipe
/// before a delimiter row) may then be read as a list item or table row
/// (a known limit of the line-based reading, README "Reliability"); the
/// content the markers frame is still checked.
pub fn skeleton(input: &str, format: Format) -> Vec<String> {
    text::segment(input, format)
        .into_iter()
        .filter(|s| !s.is_text())
        .flat_map(|s| {
            s.as_str()
                .split(|c: char| c.is_whitespace() || c == '|')
                .filter(|t| !t.is_empty() && !is_block_marker(t))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn is_block_marker(t: &str) -> bool {
    let all = |f: fn(char) -> bool| t.chars().all(f);
    let numbered = t.len() > 1
        && t.ends_with(['.', ')'])
        && t[..t.len() - 1].chars().all(|c| c.is_ascii_digit());
    matches!(t, "[" | "]" | "[x]" | "[X]")
        || numbered
        || all(|c| c == '>')
        || all(|c| c == '#')
        || all(|c| c == '=')
        || all(|c| matches!(c, '-' | ':'))
        || all(|c| matches!(c, '*' | '+' | '_'))
}

/// Every invariant, on one document, with a budget of `budget` words per
/// translation unit.
pub fn check_document(input: &str, format: Format, budget: usize) {
    let out = check_document_in_place(input, format, budget);
    check_skeleton(input, &out, format);
}

/// Every sentence put back in place by an identity translation; returns the
/// output.
pub fn check_document_in_place(input: &str, format: Format, budget: usize) -> String {
    let segments = check_segments(input, format);
    let mut expected = String::new();
    for seg in &segments {
        match seg {
            Segment::Keep(k) => expected.push_str(k),
            Segment::Text(p) => {
                let sentences = check_sentences(p);
                check_chunks(&sentences, budget);
                expected.push_str(&sentences.join(" "));
            }
        }
    }
    let out = translate_document(
        &mut Identity { max_tokens: budget },
        input,
        format,
        &mut |_, _| {},
        &mut |_| {},
    )
    .expect("the identity translation cannot fail");
    assert_eq!(
        out, expected,
        "the identity translation does not put every sentence back in place"
    );
    out
}

/// The Markdown skeleton (fences, code, links, HTML) of the output is the input's.
pub fn check_skeleton(input: &str, out: &str, format: Format) {
    assert_eq!(
        skeleton(out, format),
        skeleton(input, format),
        "the identity translation changes the skeleton of {input:?}"
    );
}
