//! `tolk summarize`: a short English summary of a German or English article.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::translate::{
    load_translator, translate_with_progress, write_output, TranslationModelArgs,
};
use super::{InputArgs, RuntimeArgs};
use crate::pipeline::summarize::extractive::ExtractiveSummarizer;
use crate::pipeline::summarize::llm::{LlmOptions, LlmSummarizer, SamplingOptions};
use crate::pipeline::summarize::t5::{T5Options, T5Summarizer};
use crate::pipeline::translate::TranslateOptions;
use crate::pipeline::{Summarizer, SummaryLength, SummaryRequest};
use crate::text::{detect_language, Format, Lang};

#[derive(Debug, Args)]
pub struct SummarizeArgs {
    /// The article (German or English): a file, or `-` for standard input.
    #[arg(value_name = "FILE", default_value = "-")]
    pub input: PathBuf,

    /// Write the summary to this file (atomically) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub summary: SummaryArgs,

    #[command(flatten)]
    pub model: SummaryModelArgs,

    #[command(flatten)]
    pub translation: TranslationForSummaryArgs,

    #[command(flatten)]
    pub input_args: InputArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// How summaries are made; shared by `summarize`, `translate --summary` and `batch`.
#[derive(Debug, Clone, Args)]
pub struct SummaryArgs {
    /// Summarization engine: `llm` (an instruction-tuned model: GGUF, or a
    /// llama-family safetensors checkpoint; best quality), `t5` (a T5/Flan-T5 seq2seq model), or `extractive` (picks
    /// the article's most central sentences; no neural model, instant).
    #[arg(long, value_enum, default_value_t = Method::Llm)]
    pub method: Method,

    /// Summary length preset: short (about 2 sentences), medium (4) or long (7).
    #[arg(long, value_name = "PRESET", default_value = "short", value_parser = ["short", "medium", "long"])]
    pub length: String,

    /// Exact number of sentences (overrides --length).
    #[arg(long, value_name = "N", conflicts_with = "max_words")]
    pub sentences: Option<usize>,

    /// At most about this many words (overrides --length).
    #[arg(long, value_name = "N")]
    pub max_words: Option<usize>,

    /// Language of the article: de or en [default: detected from its words].
    #[arg(long, value_name = "LANG")]
    pub source: Option<Lang>,

    /// For German articles: translate with the translation model first, then
    /// summarize the English text. The default for every method: measured on
    /// the sample, SmolLM2 summarizes the English translation faithfully but
    /// misreads the German original (see README).
    #[arg(long, conflicts_with = "direct")]
    pub via_translation: bool,

    /// For German articles and --method llm: let the model read the German
    /// article directly and answer in English (one model, no translation;
    /// for multilingual models such as Qwen 2.5 or Gemma 3).
    #[arg(long)]
    pub direct: bool,

    /// Print the summary as it is generated (llm and t5).
    #[arg(long)]
    pub stream: bool,

    /// Sampling temperature for llm; 0 (the default) is greedy and deterministic.
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    pub temperature: f64,

    /// Nucleus sampling for llm: keep the smallest set of tokens whose
    /// probabilities add up to P (only with --temperature > 0).
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,

    /// Random seed for sampling (only with --temperature > 0).
    #[arg(long, value_name = "N", default_value_t = 299792458)]
    pub seed: u64,
}

/// Which summarization model to use (for `tolk summarize`).
#[derive(Debug, Clone, Args)]
pub struct SummaryModelArgs {
    /// Hub repository of the summarization model. For llm: a GGUF repo (e.g.
    /// Qwen/Qwen2.5-1.5B-Instruct-GGUF; llama, gemma3, qwen2, qwen3), or a
    /// safetensors checkpoint of the llama family (e.g.
    /// HuggingFaceTB/SmolLM2-360M-Instruct; dense f32, slower than a
    /// quantized GGUF). For t5: a T5 repo (e.g. google/flan-t5-base)
    /// [default: see `tolk models list`].
    #[arg(long, value_name = "REPO")]
    pub model: Option<String>,

    /// A local .gguf file for llm; never touches the network.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "model_dir"])]
    pub model_file: Option<PathBuf>,

    /// A local folder laid out like a Hub repo (t5: config.json,
    /// model.safetensors, tokenizer.json; llm: one .gguf file, or a llama
    /// checkpoint: config.json, model.safetensors or its index and shards,
    /// tokenizer.json, tokenizer_config.json).
    #[arg(long, value_name = "DIR", conflicts_with = "model")]
    pub model_dir: Option<PathBuf>,
}

/// The same choice, spelled for commands whose `--model` is the translator.
#[derive(Debug, Clone, Args)]
pub struct SummaryModelFlags {
    /// Hub repository of the summarization model (see `tolk summarize --help`).
    #[arg(long, value_name = "REPO")]
    pub summary_model: Option<String>,

    /// A local .gguf file for the llm summarizer.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["summary_model", "summary_model_dir"])]
    pub summary_model_file: Option<PathBuf>,

    /// A local folder holding the summarization model.
    #[arg(long, value_name = "DIR", conflicts_with = "summary_model")]
    pub summary_model_dir: Option<PathBuf>,
}

impl From<&SummaryModelFlags> for SummaryModelArgs {
    fn from(f: &SummaryModelFlags) -> Self {
        Self {
            model: f.summary_model.clone(),
            model_file: f.summary_model_file.clone(),
            model_dir: f.summary_model_dir.clone(),
        }
    }
}

/// The translator that runs before engines that need English input.
#[derive(Debug, Clone, Args)]
pub struct TranslationForSummaryArgs {
    /// Hub repository of the Marian model used to translate German articles first.
    #[arg(long, value_name = "REPO", default_value = crate::hub::DEFAULT_TRANSLATION_MODEL)]
    pub translation_model: String,

    /// A local folder holding that translation model; never touches the network.
    #[arg(long, value_name = "DIR")]
    pub translation_model_dir: Option<PathBuf>,
}

impl From<&TranslationForSummaryArgs> for TranslationModelArgs {
    fn from(t: &TranslationForSummaryArgs) -> Self {
        Self {
            model: t.translation_model.clone(),
            model_dir: t.translation_model_dir.clone(),
        }
    }
}

/// The summarization engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    Llm,
    T5,
    Extractive,
}

impl SummaryArgs {
    /// The defaults of `tolk summarize` with another method.
    pub fn for_method(method: Method) -> Self {
        Self {
            method,
            length: "short".into(),
            sentences: None,
            max_words: None,
            source: None,
            via_translation: false,
            direct: false,
            stream: false,
            temperature: 0.0,
            top_p: None,
            seed: 299_792_458,
        }
    }

    /// The requested length; `--sentences 0` / `--max-words 0` are errors.
    pub fn length(&self) -> Result<SummaryLength> {
        match (self.sentences, self.max_words) {
            (Some(0), _) => bail!("--sentences must be at least 1"),
            (_, Some(0)) => bail!("--max-words must be at least 1"),
            (Some(n), _) => Ok(SummaryLength::Sentences(n)),
            (_, Some(n)) => Ok(SummaryLength::Words(n)),
            _ => Ok(SummaryLength::preset(&self.length).unwrap_or(SummaryLength::Sentences(2))),
        }
    }

    /// Whether a German article goes through the translator before the
    /// summarizer: always, unless an llm is asked to read German (`--direct`).
    pub fn translates_first(&self, lang: Lang) -> bool {
        lang == Lang::De && !(self.direct && self.method == Method::Llm)
    }
}

/// Builds the summarization engine the flags ask for.
pub fn build_summarizer(
    args: &SummaryArgs,
    model: &SummaryModelArgs,
    runtime: &RuntimeArgs,
) -> Result<Box<dyn Summarizer>> {
    match args.method {
        Method::Extractive => {
            if model.model.is_some() || model.model_file.is_some() || model.model_dir.is_some() {
                bail!("the extractive method uses no model: drop --model/--model-file/--model-dir");
            }
            Ok(Box::new(ExtractiveSummarizer::new()))
        }
        Method::Llm => {
            let location = resolve_llm(model, runtime)?;
            crate::device::set_threads(runtime.threads);
            let device = crate::device::open(runtime.device)?;
            let opts = LlmOptions {
                sampling: SamplingOptions {
                    temperature: args.temperature,
                    top_p: args.top_p,
                    seed: args.seed,
                    ..SamplingOptions::default()
                },
                ..LlmOptions::default()
            };
            let (label, weights) = match &location {
                LlmLocation::Gguf(path) => (
                    path.display().to_string(),
                    crate::device::weights_size([path.as_path()]),
                ),
                LlmLocation::Checkpoint { dir, repo } => (
                    repo.clone().unwrap_or_else(|| dir.display().to_string()),
                    crate::device::weights_size_in(dir),
                ),
            };
            let summarizer = match location {
                LlmLocation::Gguf(path) => LlmSummarizer::load(&path, &device, opts),
                LlmLocation::Checkpoint { dir, repo: None } => {
                    LlmSummarizer::load_dir(&dir, &device, opts)
                }
                LlmLocation::Checkpoint {
                    dir,
                    repo: Some(repo),
                } => LlmSummarizer::load_dir(&dir, &device, opts).map(|s| s.with_model_id(repo)),
            }
            .map_err(|e| crate::device::explain_load_error(e, &label, weights, &device))?;
            Ok(Box::new(summarizer))
        }
        Method::T5 => {
            let source = match (&model.model_dir, &model.model, &model.model_file) {
                (_, _, Some(_)) => bail!("--model-file is for GGUF models (--method llm); give a T5 folder with --model-dir"),
                (Some(dir), _, _) => crate::hub::ModelSource::Dir(dir.clone()),
                (None, Some(repo), _) => runtime.hub_source(repo),
                (None, None, _) => runtime.hub_source(crate::hub::DEFAULT_T5_MODEL),
            };
            let files =
                crate::hub::resolve_needs(&source, crate::hub::T5_FILES, &runtime.hub_options())?;
            crate::device::set_threads(runtime.threads);
            let device = crate::device::open(runtime.device)?;
            let summarizer =
                T5Summarizer::load(&files, &device, T5Options::default()).map_err(|e| {
                    let weights =
                        crate::device::weights_size(files.files.values().map(|p| p.as_path()));
                    crate::device::explain_load_error(
                        e,
                        &files.source.to_string(),
                        weights,
                        &device,
                    )
                })?;
            Ok(Box::new(summarizer))
        }
    }
}

/// A name that identifies the summarizer the flags ask for, known before
/// loading it (for batch manifests).
pub fn summarizer_id(args: &SummaryArgs, model: &SummaryModelArgs) -> String {
    let source = match (&model.model_file, &model.model_dir, &model.model) {
        (Some(file), _, _) => file.display().to_string(),
        (_, Some(dir), _) => dir.display().to_string(),
        (_, _, Some(repo)) => repo.clone(),
        _ => match args.method {
            Method::Llm => format!(
                "{}/{}",
                crate::hub::DEFAULT_SUMMARY_MODEL,
                crate::hub::DEFAULT_SUMMARY_FILE
            ),
            Method::T5 => crate::hub::DEFAULT_T5_MODEL.to_string(),
            Method::Extractive => String::new(),
        },
    };
    match args.method {
        Method::Extractive => crate::pipeline::summarize::extractive::MODEL_ID.to_string(),
        Method::Llm => format!("llm:{source}"),
        Method::T5 => format!("t5:{source}"),
    }
}

/// Where the llm summarizer's model is.
enum LlmLocation {
    /// One GGUF file.
    Gguf(PathBuf),
    /// A transformers checkpoint folder (config.json, safetensors, tokenizer.json);
    /// `repo` names it when it came from the Hub.
    Checkpoint { dir: PathBuf, repo: Option<String> },
}

/// Finds the model of an llm summarizer: `--model-file`, the single `.gguf`
/// in `--model-dir` (else its checkpoint), or a Hub repo's GGUF file (else
/// its checkpoint), downloaded on first use.
fn resolve_llm(model: &SummaryModelArgs, runtime: &RuntimeArgs) -> Result<LlmLocation> {
    if let Some(file) = &model.model_file {
        if !file.is_file() {
            bail!("--model-file {}: no such file", file.display());
        }
        return Ok(LlmLocation::Gguf(file.clone()));
    }
    if let Some(dir) = &model.model_dir {
        let names = dir_entries(dir)?;
        let ggufs = gguf_names(names.clone());
        return match ggufs.as_slice() {
            [one] => Ok(LlmLocation::Gguf(dir.join(one))),
            [] if names.iter().any(|n| n == "config.json") => Ok(LlmLocation::Checkpoint {
                dir: dir.clone(),
                repo: None,
            }),
            [] => bail!(
                "{} holds no .gguf file and no config.json of a safetensors checkpoint",
                dir.display()
            ),
            many => bail!(
                "{} holds several .gguf files ({}); pick one with --model-file",
                dir.display(),
                many.join(", ")
            ),
        };
    }
    let opts = runtime.hub_options();
    let (repo, file) = match &model.model {
        None => (
            crate::hub::DEFAULT_SUMMARY_MODEL.to_string(),
            crate::hub::DEFAULT_SUMMARY_FILE.to_string(),
        ),
        Some(repo) => {
            // Which file: what is cached, else what the Hub lists.
            let cached = crate::hub::snapshot_dir(repo, &runtime.revision)
                .map(|dir| crate::hub::cached_files(&dir))
                .unwrap_or_default();
            let names = if cached.is_empty() && !opts.offline {
                crate::hub::list_remote_files(repo, &runtime.revision, &opts)?
            } else {
                cached
            };
            let ggufs = gguf_names(names.clone());
            if ggufs.is_empty() && names.iter().any(|n| n == "config.json") {
                return fetch_checkpoint(repo, runtime, &opts);
            }
            (repo.clone(), pick_gguf(repo, &ggufs)?)
        }
    };
    let files = crate::hub::resolve(&runtime.hub_source(&repo), &[file.as_str()], &[], &opts)?;
    Ok(LlmLocation::Gguf(files.path(&file)?.to_path_buf()))
}

/// Downloads (or finds cached) the files of a safetensors checkpoint repo,
/// checking its model_type before fetching any weights.
fn fetch_checkpoint(
    repo: &str,
    runtime: &RuntimeArgs,
    opts: &crate::hub::HubOptions,
) -> Result<LlmLocation> {
    use crate::pipeline::summarize::llm::safetensors::{
        check_model_type, read_json, shard_names, WEIGHTS_INDEX,
    };
    let source = runtime.hub_source(repo);
    let config = crate::hub::resolve(&source, &["config.json"], &[], opts)?;
    let config_path = config.path("config.json")?;
    check_model_type(&read_json(config_path)?, config_path)?;
    let files = crate::hub::resolve_needs(&source, crate::hub::LLM_SAFETENSORS_FILES, opts)?;
    if let Some(index) = files.get(WEIGHTS_INDEX) {
        let shards = shard_names(&read_json(index)?, index)?;
        let shards: Vec<&str> = shards.iter().map(String::as_str).collect();
        crate::hub::resolve(&source, &shards, &[], opts)?;
    }
    Ok(LlmLocation::Checkpoint {
        dir: files.root,
        repo: Some(repo.to_string()),
    })
}

fn dir_entries(dir: &std::path::Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("--model-dir {}: {e}", dir.display()))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

fn gguf_names(names: Vec<String>) -> Vec<String> {
    let mut ggufs: Vec<String> = names
        .into_iter()
        .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    ggufs.sort();
    ggufs
}

/// One GGUF of a repo: the only one, else the Q4_K_M quantization (the
/// usual quality/speed balance), else the user must choose.
fn pick_gguf(repo: &str, names: &[String]) -> Result<String> {
    if let [one] = names {
        return Ok(one.clone());
    }
    if let Some(q4) = names
        .iter()
        .find(|n| n.to_ascii_lowercase().contains("q4_k_m"))
    {
        return Ok(q4.clone());
    }
    if names.is_empty() {
        bail!("{repo} has no .gguf file and no config.json (the llm method reads GGUF files and safetensors checkpoints of llama models; for T5 models use --method t5)");
    }
    bail!(
        "{repo} has several .gguf files ({}); download one with `tolk models pull {repo} --files NAME` and pass it with --model-file",
        names.join(", ")
    )
}

pub fn run(args: SummarizeArgs) -> Result<ExitCode> {
    let length = args.summary.length()?;
    let text = crate::io::read_text(&args.input, args.input_args.read_options())?;
    if text.trim().is_empty() {
        write_output(args.output.as_deref(), "")?;
        return Ok(ExitCode::SUCCESS);
    }
    let lang = args
        .summary
        .source
        .unwrap_or_else(|| detect_language(&text));
    let mut summarizer = build_summarizer(&args.summary, &args.model, &args.runtime)?;
    let (article, lang) = if args.summary.translates_first(lang) {
        let format = Format::from_path(&args.input);
        let english =
            translate_for_summary(&(&args.translation).into(), &args.runtime, &text, format)?;
        (english, Lang::En)
    } else {
        (text, lang)
    };
    let summary = summarize_text(
        summarizer.as_mut(),
        &article,
        lang,
        length,
        args.summary.stream && args.output.is_none(),
    )?;
    if args.summary.stream && args.output.is_none() {
        // Already printed piece by piece; end the line.
        println!();
    } else {
        write_output(args.output.as_deref(), &summary)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Translates a German article for an engine that summarizes English.
pub fn translate_for_summary(
    model: &TranslationModelArgs,
    runtime: &RuntimeArgs,
    text: &str,
    format: Format,
) -> Result<String> {
    let mut translator = load_translator(model, runtime, &TranslateOptions::default())?;
    translate_with_progress(&mut translator, text, format, runtime.quiet)
}

/// Runs one summary; with `stream`, prints pieces to stdout as they arrive.
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
    summarizer.summarize(&req, &mut on_text)
}
