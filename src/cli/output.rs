//! What `translate` and `summarize` share when they run: translating with a
//! progress bar, summarizing (streamed or not), warnings on stderr, and
//! writing the result.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

use super::progress;
use crate::pipeline::translate::{
    report_warnings, translate_aligned, translate_document, Translator,
};
use crate::pipeline::{Summarizer, SummaryLength, SummaryRequest};
use crate::text::document::AlignedSentence;
use crate::text::{Format, Lang};

/// Translates a document with a progress bar over its sentences and
/// warnings on stderr.
pub fn translate_with_progress(
    translator: &mut dyn Translator,
    text: &str,
    format: Format,
    quiet: bool,
) -> Result<String> {
    with_sentence_bar(quiet, |progress, warn| {
        translate_document(translator, text, format, progress, warn)
    })
}

/// As [`translate_with_progress`], one record per sentence (for
/// `--format jsonl|tsv`).
pub fn translate_aligned_with_progress(
    translator: &mut dyn Translator,
    text: &str,
    format: Format,
    quiet: bool,
) -> Result<Vec<AlignedSentence>> {
    with_sentence_bar(quiet, |progress, warn| {
        translate_aligned(translator, text, format, progress, warn)
    })
}

/// Runs `job` under a "translating" bar over sentences, its warnings on stderr.
fn with_sentence_bar<T>(
    quiet: bool,
    job: impl FnOnce(&mut dyn FnMut(usize, usize), &mut dyn FnMut(&str)) -> Result<T>,
) -> Result<T> {
    let bar = progress::bar(quiet, "sentences");
    bar.set_message("translating");
    let out = job(
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        &mut |w| progress::warn(&bar, w),
    );
    bar.finish_and_clear();
    out
}

/// Runs one summary; with `stream`, prints pieces to stdout as they arrive.
/// The engine's warnings go to stderr.
pub fn summarize_text(
    summarizer: &mut dyn Summarizer,
    text: &str,
    lang: Lang,
    length: SummaryLength,
    stream: bool,
) -> Result<String> {
    let req = SummaryRequest { text, lang, length };
    let mut stdout = std::io::stdout();
    let mut on_text = |piece: &str| {
        if stream {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    };
    let summary = summarizer.summarize(&req, &mut on_text);
    report_warnings(summarizer.take_warnings(), &mut |w| {
        eprintln!("tolk: warning: {w}")
    });
    summary
}

/// Writes to a file atomically, or to stdout (ending with a newline).
pub fn write_output(path: Option<&Path>, text: &str) -> Result<()> {
    match path {
        Some(path) => crate::io::write_atomic(path, text.as_bytes()),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            if !text.is_empty() && !text.ends_with('\n') {
                stdout.write_all(b"\n")?;
            }
            stdout.flush().context("cannot write to standard output")
        }
    }
}
