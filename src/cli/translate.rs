//! `tolk translate`: German text in, English text out.

use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::{
    DecodingArgs, InputArgs, RuntimeArgs, SummaryArgs, SummaryModelFlags, TranslationModelArgs,
};
use super::output::{
    summarize_text, translate_aligned_with_progress, translate_with_progress, write_output,
};
use crate::engines;
use crate::text::document::{format_aligned, reading_text, OutputFormat};
use crate::text::{Format, Lang};

#[derive(Debug, Args)]
pub struct TranslateArgs {
    /// The German text to translate: a file, or `-` for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub input: PathBuf,

    /// Write the translation to this file instead of standard output. It is
    /// written to a temporary file first and renamed, so a failed run never
    /// leaves a partial file.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub model: TranslationModelArgs,

    #[command(flatten)]
    pub decoding: DecodingArgs,

    /// How the input is marked up: `plain` (paragraphs separated by blank
    /// lines), `markdown` (markup and code kept, prose translated), `html`
    /// (the page's DOM kept, its text and alt/title/placeholder/meta
    /// description translated) or `subtitles` (SRT/WebVTT: cue numbers and
    /// timings kept) [default: by extension: .md, .html/.htm, .srt/.vtt,
    /// else plain].
    #[arg(long, value_name = "FORMAT")]
    pub input_format: Option<Format>,

    /// What to write: `text` (the translated document), `jsonl` (one JSON
    /// object per sentence: paragraph, sentence, source, translation,
    /// score, hit_max_length, split) or `tsv` (the same fields, a header
    /// line first; tabs and newlines escaped as `\t` and `\n`).
    #[arg(
        long,
        value_name = "text|jsonl|tsv",
        default_value = "text",
        conflicts_with = "summary"
    )]
    pub format: OutputFormat,

    #[command(flatten)]
    pub input_args: InputArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Also summarize the translation: printed after it, or, with -o, written
    /// beside it as <name>.summary.txt. The summary flags below apply. With
    /// --engine llm, --method llm and no --summary-model* flag, the
    /// translation model writes the summary too (loaded once).
    #[arg(long)]
    pub summary: bool,

    #[command(flatten, next_help_heading = "Summary (with --summary)")]
    pub summary_args: SummaryArgs,

    #[command(flatten, next_help_heading = "Summary (with --summary)")]
    pub summary_model: SummaryModelFlags,
}

pub fn run(args: TranslateArgs) -> Result<ExitCode> {
    let text = crate::io::read_text(&args.input, args.input_args.read_options())?;
    let format = args
        .input_format
        .unwrap_or_else(|| Format::from_path(&args.input));
    let rt = args.runtime.runtime();
    let spec = args.model.spec(&args.decoding);
    if args.format != OutputFormat::Text {
        let records = if text.trim().is_empty() {
            Vec::new()
        } else {
            let mut translator = engines::translator(&spec, &rt)?;
            translate_aligned_with_progress(translator.as_mut(), &text, format, args.runtime.quiet)?
        };
        write_output(
            args.output.as_deref(),
            &format_aligned(&records, args.format),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    spec.check()?;
    // Nothing to translate: no need to load (or download) a model.
    let empty = text.trim().is_empty();
    if !args.summary {
        let translation = if empty {
            String::new()
        } else {
            let mut translator = engines::translator(&spec, &rt)?;
            translate_with_progress(translator.as_mut(), &text, format, args.runtime.quiet)?
        };
        write_output(args.output.as_deref(), &translation)?;
        return Ok(ExitCode::SUCCESS);
    }
    let length = args.summary_args.length()?;
    let (translation, summary) = if empty {
        (String::new(), String::new())
    } else {
        let summary_spec = args.summary_args.spec(args.summary_model.model());
        // With --engine llm and --method llm, one loaded model does both.
        let (mut translator, mut summarizer) =
            engines::translator_and_summarizer(&spec, &summary_spec, &rt)?;
        let translation =
            translate_with_progress(translator.as_mut(), &text, format, args.runtime.quiet)?;
        let summary = if translation.trim().is_empty() {
            String::new()
        } else {
            // A page's article, subtitles' words: what a reader would summarize.
            let reading = reading_text(&translation, format);
            summarize_text(summarizer.as_mut(), &reading, Lang::En, length, false)?
        };
        (translation, summary)
    };
    match &args.output {
        Some(path) => {
            write_output(Some(path), &translation)?;
            write_output(Some(&summary_path(path)), &summary)?;
        }
        None => write_output(
            None,
            &format!("{}\n\nSummary:\n{summary}", translation.trim_end()),
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `out/article.en.txt` → `out/article.en.summary.txt`.
pub fn summary_path(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!("{stem}.summary.txt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lies_beside_the_translation() {
        assert_eq!(
            summary_path(Path::new("out/article.en.txt")),
            Path::new("out/article.en.summary.txt")
        );
        assert_eq!(summary_path(Path::new("t")), Path::new("t.summary.txt"));
    }
}
