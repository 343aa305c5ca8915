//! `tolk summarize`: a short English summary of a German or English article.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

use super::args::{
    DecodingArgs, InputArgs, RuntimeArgs, SummaryArgs, SummaryModelArgs, TranslationForSummaryArgs,
};
use super::output::{summarize_text, translate_with_progress, write_output};
use crate::engines;
use crate::text::document::reading_text;
use crate::text::{detect_language, Format, Lang};

#[derive(Debug, Args)]
pub struct SummarizeArgs {
    /// The article (German or English): a file, or `-` for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub input: PathBuf,

    /// Write the summary to this file (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// How the input is marked up: `html` (only the page's main text is
    /// summarized, not its navigation), `subtitles` (SRT/WebVTT: the cues'
    /// words), `plain` or `markdown` [default: by extension: .html/.htm,
    /// .srt/.vtt, .md, else plain; standard input is plain].
    #[arg(long, value_name = "FORMAT")]
    pub input_format: Option<Format>,

    #[command(flatten)]
    pub summary: SummaryArgs,

    #[command(flatten)]
    pub model: SummaryModelArgs,

    #[command(flatten, next_help_heading = "Translation of German articles")]
    pub translation: TranslationForSummaryArgs,

    #[command(flatten, next_help_heading = "Translation of German articles")]
    pub decoding: DecodingArgs,

    #[command(flatten)]
    pub input_args: InputArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

pub fn run(args: SummarizeArgs) -> Result<ExitCode> {
    let length = args.summary.length()?;
    let text = crate::io::read_text(&args.input, args.input_args.read_options())?;
    if text.trim().is_empty() {
        write_output(args.output.as_deref(), "")?;
        return Ok(ExitCode::SUCCESS);
    }
    // A web page: its article, not its navigation; subtitles: their words.
    let input_format = args
        .input_format
        .unwrap_or_else(|| Format::from_path(&args.input));
    let text = reading_text(&text, input_format);
    if text.trim().is_empty() {
        write_output(args.output.as_deref(), "")?;
        return Ok(ExitCode::SUCCESS);
    }
    let lang = args
        .summary
        .source
        .unwrap_or_else(|| detect_language(&text));
    let rt = args.runtime.runtime();
    let spec = args.summary.spec(args.model.model());
    let mut summarizer = engines::summarizer(&spec, &rt)?;
    let (article, lang) = if spec.translates_first(lang) {
        // What is left of a page or subtitles is plain paragraphs.
        let format = match input_format {
            Format::Html | Format::Subtitles => Format::Plain,
            f => f,
        };
        let translation = args.translation.spec(&args.decoding);
        let mut translator = engines::translator(&translation, &rt)?;
        let english =
            translate_with_progress(translator.as_mut(), &text, format, args.runtime.quiet)?;
        (english, Lang::En)
    } else {
        (text, lang)
    };
    let stream = args.summary.stream && args.output.is_none();
    let summary = summarize_text(summarizer.as_mut(), &article, lang, length, stream)?;
    if stream {
        // Already printed piece by piece; end the line.
        println!();
    } else {
        write_output(args.output.as_deref(), &summary)?;
    }
    Ok(ExitCode::SUCCESS)
}
