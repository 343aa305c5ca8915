//! `tolk translate`: German text in, English text out.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::summarize::{
    build_summarizer, llm_options, load_llm, summarize_text, Method, SummaryArgs, SummaryModelArgs,
    SummaryModelFlags,
};
use super::{progress, InputArgs, RuntimeArgs};
use crate::hub::{self, ModelSource};
use crate::pipeline::llm_translate::{
    LlmTranslateOptions, LlmTranslator, SharedLlm, SharedSummarizer,
};
use crate::pipeline::summarize::llm::LlmOptions;
use crate::pipeline::translate::{
    translate_document, MarianTranslator, Quantize, TranslateOptions, Translator,
};
use crate::pipeline::Summarizer;
use crate::text::Format;

/// The GGUF repo `--engine llm` uses without `--model`/`--model-file`/`--model-dir`
/// (its Q4_K_M file): a multilingual instruct model that translates German well.
pub const DEFAULT_LLM_TRANSLATION_MODEL: &str = "Qwen/Qwen2.5-1.5B-Instruct-GGUF";

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

/// How sentences are decoded (shared by `translate` and `batch`).
#[derive(Debug, Clone, Args)]
pub struct DecodingArgs {
    /// Beam width for decoding: 1 is greedy (fastest), more is slower and
    /// usually a little better [default: the model's generation_config, 4 to 6
    /// for opus-mt]. The llm engine always decodes greedily.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub beams: Option<u32>,

    /// Longest translation of one sentence, in tokens [default: the model's
    /// max_length, 512 for opus-mt; 512 for --engine llm, which also cuts
    /// back any translation over 3 times its source's length].
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u32).range(2..))]
    pub max_length: Option<u32>,

    /// Sentences decoded together (marian). Larger batches are faster per
    /// sentence on GPUs and many-core CPUs, and use more memory.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: u32,

    /// Weight format: `none` keeps the model's f32 weights (results identical
    /// to `transformers`); `q8` quantizes the linear layers to 8 bits at load
    /// time: faster at small batches and smaller, with slightly different
    /// translations.
    #[arg(long, value_name = "none|q8", default_value = "none")]
    pub quantize: Quantize,

    /// With --engine llm: neighbouring sentences translated together in one
    /// prompt (context helps the model); 1 translates each sentence alone.
    /// An answer without exactly one line per sentence is redone sentence
    /// by sentence.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub sentences_per_prompt: u32,
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

    /// The settings of the llm engine; Marian-only flags are refused.
    pub fn llm_options(&self) -> Result<LlmTranslateOptions> {
        if self.beams.is_some_and(|b| b > 1) {
            bail!("--beams is for --engine marian: the llm engine decodes greedily");
        }
        if self.quantize != Quantize::None {
            bail!("--quantize is for --engine marian: GGUF models are quantized already");
        }
        Ok(LlmTranslateOptions {
            sentences_per_prompt: self.sentences_per_prompt as usize,
            max_length: self.max_length.map(|m| m as usize),
        })
    }
}

/// The translation engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Engine {
    /// A Marian (opus-mt) model: small, fast, faithful.
    #[default]
    Marian,
    /// An instruction-tuned LLM (GGUF: llama, qwen2, qwen3, gemma3; or a
    /// llama safetensors checkpoint).
    Llm,
}

/// Which translation model to use.
#[derive(Debug, Clone, Args)]
pub struct TranslationModelArgs {
    /// Translation engine: `marian` (opus-mt: small, fast, faithful) or `llm`
    /// (an instruction-tuned LLM such as Qwen 2.5, which translates a few
    /// neighbouring sentences per prompt; see --sentences-per-prompt).
    #[arg(long, value_enum, default_value_t = Engine::Marian)]
    pub engine: Engine,

    /// Hub repository of the translation model: a Marian (opus-mt) model, or
    /// with --engine llm a GGUF repo (its Q4_K_M file is used when it has
    /// several) or a llama safetensors checkpoint; downloaded into the HF
    /// cache on first use unless --offline [default: Helsinki-NLP/opus-mt-de-en;
    /// with --engine llm: Qwen/Qwen2.5-1.5B-Instruct-GGUF].
    #[arg(long, value_name = "REPO")]
    pub model: Option<String>,

    /// Use the model files in this local folder instead of the Hub; never
    /// touches the network. Marian: laid out like a Hub repo (config.json,
    /// model.safetensors, source.spm, target.spm, vocab.json); llm: one .gguf
    /// file, or a llama checkpoint (config.json, model.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR", conflicts_with = "model")]
    pub model_dir: Option<PathBuf>,

    /// With --engine llm: a local .gguf file; never touches the network.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "model_dir"])]
    pub model_file: Option<PathBuf>,
}

impl TranslationModelArgs {
    /// Where the Marian model is.
    pub fn source(&self, runtime: &RuntimeArgs) -> ModelSource {
        match &self.model_dir {
            Some(dir) => ModelSource::Dir(dir.clone()),
            None => runtime.hub_source(
                self.model
                    .as_deref()
                    .unwrap_or(hub::DEFAULT_TRANSLATION_MODEL),
            ),
        }
    }

    /// The llm engine's model, in the summarizer's terms.
    fn llm_model(&self) -> SummaryModelArgs {
        SummaryModelArgs {
            model: match (&self.model, &self.model_file, &self.model_dir) {
                (None, None, None) => Some(DEFAULT_LLM_TRANSLATION_MODEL.to_string()),
                _ => self.model.clone(),
            },
            model_file: self.model_file.clone(),
            model_dir: self.model_dir.clone(),
        }
    }

    /// Names the model for manifests, before loading it: the repo (with
    /// its revision) or the resolved file or folder.
    pub fn id(&self, runtime: &RuntimeArgs) -> String {
        let canonical = |p: &Path| {
            p.canonicalize()
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        };
        match self.engine {
            Engine::Marian => match self.source(runtime) {
                ModelSource::Dir(dir) => canonical(&dir),
                hub => hub.to_string(),
            },
            Engine::Llm => {
                let m = self.llm_model();
                let source = match (&m.model_file, &m.model_dir, &m.model) {
                    (Some(file), _, _) => canonical(file),
                    (_, Some(dir), _) => canonical(dir),
                    (_, _, Some(repo)) => runtime.hub_source(repo).to_string(),
                    _ => String::new(),
                };
                format!("llm:{source}")
            }
        }
    }
}

/// Whether a summary can reuse the llm that translates: both are llms and
/// no other summary model is named.
pub fn summary_reuses_llm(
    engine: Engine,
    method: Method,
    summary_model: &SummaryModelFlags,
) -> bool {
    engine == Engine::Llm
        && method == Method::Llm
        && summary_model.summary_model.is_none()
        && summary_model.summary_model_file.is_none()
        && summary_model.summary_model_dir.is_none()
}

/// Resolves, downloads if needed, and loads the translation model of the
/// chosen engine.
pub fn load_translator(
    model: &TranslationModelArgs,
    runtime: &RuntimeArgs,
    opts: &TranslateOptions,
    llm: &LlmTranslateOptions,
) -> Result<Box<dyn Translator>> {
    match model.engine {
        Engine::Marian => {
            if model.model_file.is_some() {
                bail!("--model-file is for --engine llm (a GGUF file); give a Marian model with --model or --model-dir");
            }
            crate::device::set_threads(runtime.threads);
            let device = crate::device::open(runtime.device)?;
            let files = hub::resolve_needs(
                &model.source(runtime),
                hub::MARIAN_FILES,
                &runtime.hub_options(),
            )?;
            Ok(Box::new(MarianTranslator::load(&files, &device, opts)?))
        }
        Engine::Llm => Ok(Box::new(LlmTranslator::shared(
            load_translation_llm(model, runtime, LlmOptions::default())?,
            llm.clone(),
        ))),
    }
}

/// Loads the llm of `--engine llm`; `opts` are the summary settings when
/// the same model also summarizes.
pub fn load_translation_llm(
    model: &TranslationModelArgs,
    runtime: &RuntimeArgs,
    opts: LlmOptions,
) -> Result<SharedLlm> {
    let llm = load_llm(&model.llm_model(), runtime, opts)?;
    Ok(std::sync::Arc::new(std::sync::Mutex::new(llm)))
}

pub fn run(args: TranslateArgs) -> Result<ExitCode> {
    let text = crate::io::read_text(&args.input, args.input_args.read_options())?;
    let format = args
        .format
        .unwrap_or_else(|| Format::from_path(&args.input));
    let llm_opts = match args.model.engine {
        Engine::Llm => args.decoding.llm_options()?,
        Engine::Marian => LlmTranslateOptions::default(),
    };
    let reuse = args.summary
        && summary_reuses_llm(
            args.model.engine,
            args.summary_args.method,
            &args.summary_model,
        );
    let mut shared: Option<SharedLlm> = None;
    let translation = if text.trim().is_empty() {
        // Nothing to translate: no need to load (or download) a model.
        String::new()
    } else if reuse {
        let llm =
            load_translation_llm(&args.model, &args.runtime, llm_options(&args.summary_args))?;
        shared = Some(llm.clone());
        let mut translator = LlmTranslator::shared(llm, llm_opts);
        translate_with_progress(&mut translator, &text, format, args.runtime.quiet)?
    } else {
        let opts = args.decoding.options();
        let mut translator = load_translator(&args.model, &args.runtime, &opts, &llm_opts)?;
        translate_with_progress(&mut *translator, &text, format, args.runtime.quiet)?
    };
    if !args.summary {
        write_output(args.output.as_deref(), &translation)?;
        return Ok(ExitCode::SUCCESS);
    }
    let length = args.summary_args.length()?;
    let summary = if translation.trim().is_empty() {
        String::new()
    } else {
        let mut summarizer: Box<dyn Summarizer> = match shared {
            Some(llm) => Box::new(SharedSummarizer(llm)),
            None => build_summarizer(
                &args.summary_args,
                &(&args.summary_model).into(),
                &args.runtime,
            )?,
        };
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
