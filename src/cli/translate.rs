//! `tolk translate`: German text in, English text out.

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::summarize::{build_summarizer, summarize_text, SummaryArgs, SummaryModelFlags};
use super::{progress, InputArgs, RuntimeArgs};
use crate::hub::{self, ModelSource};
use crate::pipeline::translate::{
    translate_document, MarianTranslator, Quantize, TranslateOptions, Translator,
};
use crate::text::Format;

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
    /// lines) or `markdown` (markup and code are kept, prose is translated)
    /// [default: markdown for .md files, else plain].
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<Format>,

    #[command(flatten)]
    pub input_args: InputArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Also summarize the translation: printed after it, or, with -o, written
    /// beside it as <name>.summary.txt. The summary flags below apply.
    #[arg(long)]
    pub summary: bool,

    #[command(flatten, next_help_heading = "Summary (with --summary)")]
    pub summary_args: SummaryArgs,

    #[command(flatten, next_help_heading = "Summary (with --summary)")]
    pub summary_model: SummaryModelFlags,
}

/// How sentences are decoded (shared by `translate` and `batch`).
#[derive(Debug, Clone, Args)]
pub struct DecodingArgs {
    /// Beam width for decoding: 1 is greedy (fastest), more is slower and
    /// usually a little better [default: the model's generation_config, 4 to 6
    /// for opus-mt].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub beams: Option<u32>,

    /// Longest translation of one sentence, in tokens [default: the model's
    /// max_length, 512 for opus-mt].
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u32).range(2..))]
    pub max_length: Option<u32>,

    /// Sentences decoded together. Larger batches are faster per sentence
    /// on GPUs and many-core CPUs, and use more memory.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: u32,

    /// Weight format: `none` keeps the model's f32 weights (results identical
    /// to `transformers`); `q8` quantizes the linear layers to 8 bits at load
    /// time: faster at small batches and smaller, with slightly different
    /// translations; `f16` runs the whole model in half precision (for
    /// `--device cuda`; slow on a CPU), also slightly different.
    #[arg(long, value_name = "none|q8|f16", default_value = "none")]
    pub quantize: Quantize,
}

impl DecodingArgs {
    pub fn options(&self) -> TranslateOptions {
        TranslateOptions {
            num_beams: self.beams.map(|b| b as usize),
            max_length: self.max_length.map(|m| m as usize),
            batch_size: Some(self.batch_size as usize),
            quantize: self.quantize,
        }
    }
}

/// Which translation model to use.
#[derive(Debug, Clone, Args)]
pub struct TranslationModelArgs {
    /// Hub repository of a Marian (opus-mt) model; downloaded into the HF
    /// cache on first use unless --offline.
    #[arg(long, value_name = "REPO", default_value = hub::DEFAULT_TRANSLATION_MODEL)]
    pub model: String,

    /// Use the model files in this local folder (laid out like a Hub repo:
    /// config.json, model.safetensors, source.spm, target.spm, vocab.json)
    /// instead of the Hub; never touches the network.
    #[arg(long, value_name = "DIR", conflicts_with = "model")]
    pub model_dir: Option<PathBuf>,
}

impl TranslationModelArgs {
    pub fn source(&self, runtime: &RuntimeArgs) -> ModelSource {
        match &self.model_dir {
            Some(dir) => ModelSource::Dir(dir.clone()),
            None => runtime.hub_source(&self.model),
        }
    }
}

/// Resolves, downloads if needed, and loads the translation model.
pub fn load_translator(
    model: &TranslationModelArgs,
    runtime: &RuntimeArgs,
    opts: &TranslateOptions,
) -> Result<MarianTranslator> {
    crate::device::set_threads(runtime.threads);
    let device = crate::device::open(runtime.device)?;
    let files = hub::resolve_needs(
        &model.source(runtime),
        hub::MARIAN_FILES,
        &runtime.hub_options(),
    )?;
    MarianTranslator::load(&files, &device, opts).map_err(|e| {
        let weights = crate::device::weights_size(files.files.values().map(|p| p.as_path()));
        crate::device::explain_load_error(e, &files.source.to_string(), weights, &device)
    })
}

pub fn run(args: TranslateArgs) -> Result<ExitCode> {
    let text = crate::io::read_text(&args.input, args.input_args.read_options())?;
    let format = args
        .format
        .unwrap_or_else(|| Format::from_path(&args.input));
    let translation = if text.trim().is_empty() {
        // Nothing to translate: no need to load (or download) a model.
        String::new()
    } else {
        let opts = args.decoding.options();
        let mut translator = load_translator(&args.model, &args.runtime, &opts)?;
        translate_with_progress(&mut translator, &text, format, args.runtime.quiet)?
    };
    if !args.summary {
        write_output(args.output.as_deref(), &translation)?;
        return Ok(ExitCode::SUCCESS);
    }
    let length = args.summary_args.length()?;
    let summary = if translation.trim().is_empty() {
        String::new()
    } else {
        let mut summarizer = build_summarizer(
            &args.summary_args,
            &(&args.summary_model).into(),
            &args.runtime,
        )?;
        summarize_text(
            summarizer.as_mut(),
            &translation,
            crate::text::Lang::En,
            length,
            false,
        )?
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

/// Translates a document with a progress bar over its sentences and
/// warnings on stderr.
pub fn translate_with_progress(
    translator: &mut dyn Translator,
    text: &str,
    format: Format,
    quiet: bool,
) -> Result<String> {
    let bar = progress::bar(quiet, "sentences");
    bar.set_message("translating");
    let out = translate_document(
        translator,
        text,
        format,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        &mut |w| progress::warn(&bar, w),
    );
    bar.finish_and_clear();
    out
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
