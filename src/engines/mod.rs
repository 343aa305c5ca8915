//! Engines built from plain options: the one place that turns "which model,
//! from where, run how" into a ready [`Translator`] or [`Summarizer`].
//! `tolk translate`, `summarize`, `batch` and `models pull` all come here;
//! the CLI only maps its flags to these structs.
//!
//! Building is two steps, so that callers can check a choice (and download
//! its files) early and load the model only when it is needed:
//! [`locate_translator`] / [`locate_summarizer`] find the files (the choice
//! of files is [`files`]'), [`Located::load`] reads them onto the device.

pub mod files;

use crate::device::DeviceChoice;
use crate::hub::{self, HubOptions, ModelFiles, ModelSource};
use crate::pipeline::summarize::extractive::{self, ExtractiveSummarizer};
use crate::pipeline::summarize::llm::{LlmOptions, LlmSummarizer, SamplingOptions};
use crate::pipeline::summarize::t5::{T5Options, T5Summarizer};
use crate::pipeline::translate::{MarianTranslator, Quantize, TranslateOptions};
use crate::pipeline::{Summarizer, Translator};
use crate::text::Lang;
use anyhow::{bail, Result};
use candle_core::Device;
use files::LlmLocation;
use std::path::PathBuf;

/// Where and how models run, and how they are fetched.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub device: DeviceChoice,
    /// CPU threads for the math; `None`: all cores (or `RAYON_NUM_THREADS`).
    pub threads: Option<usize>,
    pub hub: HubOptions,
    /// Git revision of Hub models.
    pub revision: String,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Cpu,
            threads: None,
            hub: HubOptions::default(),
            revision: hub::DEFAULT_REVISION.to_string(),
        }
    }
}

impl Runtime {
    /// A Hub model at this revision.
    pub fn hub_source(&self, repo: &str) -> ModelSource {
        ModelSource::hub(repo, self.revision.clone())
    }

    /// Sets the thread count and opens the device.
    pub fn open_device(&self) -> Result<Device> {
        crate::device::set_threads(self.threads);
        crate::device::open(self.device)
    }
}

/// The translation model and how it decodes.
#[derive(Debug, Clone)]
pub struct TranslationSpec {
    /// Hub repository of a Marian model.
    pub repo: String,
    /// A local folder instead of the Hub.
    pub dir: Option<PathBuf>,
    pub options: TranslateOptions,
}

impl Default for TranslationSpec {
    fn default() -> Self {
        Self {
            repo: hub::DEFAULT_TRANSLATION_MODEL.to_string(),
            dir: None,
            options: TranslateOptions::default(),
        }
    }
}

impl TranslationSpec {
    pub fn source(&self, rt: &Runtime) -> ModelSource {
        match &self.dir {
            Some(dir) => ModelSource::Dir(dir.clone()),
            None => rt.hub_source(&self.repo),
        }
    }

    /// Names the model and its weight format before loading it (for batch
    /// job keys): the repo and revision, or the resolved folder, so `./m`
    /// and `/abs/m` are one model; `--quantize q8` translates differently,
    /// so it counts.
    pub fn id(&self, rt: &Runtime) -> String {
        let model = match self.source(rt) {
            ModelSource::Dir(dir) => dir.canonicalize().unwrap_or(dir).display().to_string(),
            hub => hub.to_string(),
        };
        match self.options.quantize {
            Quantize::None => model,
            q => format!("{model} (--quantize {q})"),
        }
    }
}

/// Finds (downloading on first use) the translation model's files.
pub fn locate_translator(spec: &TranslationSpec, rt: &Runtime) -> Result<ModelFiles> {
    let files = hub::resolve_needs(&spec.source(rt), hub::MARIAN_FILES, &rt.hub)?;
    hub::announce(&files);
    Ok(files)
}

/// Finds and loads the Marian translator (the concrete type, for tools that
/// reach below the [`Translator`] trait, such as the benchmark).
pub fn marian(spec: &TranslationSpec, rt: &Runtime) -> Result<MarianTranslator> {
    let files = locate_translator(spec, rt)?;
    let device = rt.open_device()?;
    MarianTranslator::load(&files, &device, &spec.options)
        .map_err(|e| explain_load_error(e, &files, &device))
}

/// Finds and loads the translator.
pub fn translator(spec: &TranslationSpec, rt: &Runtime) -> Result<Box<dyn Translator>> {
    Ok(Box::new(marian(spec, rt)?))
}

/// The summarization engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Llm,
    T5,
    Extractive,
}

/// Which summarization model: at most one of the three.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryModel {
    /// A Hub repository.
    pub repo: Option<String>,
    /// A local .gguf file (llm only).
    pub file: Option<PathBuf>,
    /// A local folder laid out like a Hub repo.
    pub dir: Option<PathBuf>,
}

impl SummaryModel {
    fn is_given(&self) -> bool {
        self.repo.is_some() || self.file.is_some() || self.dir.is_some()
    }
}

/// The summarization engine and its knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarySpec {
    pub method: Method,
    pub model: SummaryModel,
    /// Sampling of the llm engine (greedy by default).
    pub sampling: SamplingOptions,
    /// For German articles and the llm method: read the German directly
    /// instead of its translation.
    pub direct: bool,
}

impl SummarySpec {
    /// The defaults of `tolk summarize --method`.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            model: SummaryModel::default(),
            sampling: SamplingOptions::default(),
            direct: false,
        }
    }

    /// Whether an article in `lang` goes through the translator before the
    /// summarizer: German always does, unless an llm is asked to read it
    /// (`--direct`). The one policy of `summarize`, `translate --summary`
    /// and `batch`.
    pub fn translates_first(&self, lang: Lang) -> bool {
        lang == Lang::De && !(self.direct && self.method == Method::Llm)
    }

    /// A name for the engine, known before loading it (for batch job keys).
    pub fn id(&self) -> String {
        let m = &self.model;
        let source = match (&m.file, &m.dir, &m.repo) {
            (Some(file), _, _) => file.display().to_string(),
            (_, Some(dir), _) => dir.display().to_string(),
            (_, _, Some(repo)) => repo.clone(),
            _ => match self.method {
                Method::Llm => format!(
                    "{}/{}",
                    hub::DEFAULT_SUMMARY_MODEL,
                    hub::DEFAULT_SUMMARY_FILE
                ),
                Method::T5 => hub::DEFAULT_T5_MODEL.to_string(),
                Method::Extractive => String::new(),
            },
        };
        match self.method {
            Method::Extractive => extractive::MODEL_ID.to_string(),
            Method::Llm => format!("llm:{source}"),
            Method::T5 => format!("t5:{source}"),
        }
    }
}

/// A summarization engine whose files are found, not yet loaded.
#[derive(Debug, Clone)]
pub enum Located {
    Extractive,
    Llm(LlmLocation),
    T5(ModelFiles),
}

/// Checks the choice and finds (downloading on first use) the model files.
pub fn locate_summarizer(spec: &SummarySpec, rt: &Runtime) -> Result<Located> {
    let m = &spec.model;
    match spec.method {
        Method::Extractive => {
            if m.is_given() {
                bail!("the extractive method uses no model: drop --model/--model-file/--model-dir");
            }
            Ok(Located::Extractive)
        }
        Method::Llm => Ok(Located::Llm(match (&m.file, &m.dir, &m.repo) {
            (Some(file), _, _) => {
                if !file.is_file() {
                    bail!("--model-file {}: no such file", file.display());
                }
                LlmLocation::Gguf(file.clone())
            }
            (_, Some(dir), _) => files::llm_in_dir(dir)?,
            (_, _, Some(repo)) => files::llm_in_repo(&rt.hub_source(repo), &rt.hub)?,
            _ => files::gguf_in_repo(
                &rt.hub_source(hub::DEFAULT_SUMMARY_MODEL),
                hub::DEFAULT_SUMMARY_FILE,
                &rt.hub,
            )?,
        })),
        Method::T5 => {
            let source = match (&m.file, &m.dir, &m.repo) {
                (Some(_), _, _) => bail!("--model-file is for GGUF models (--method llm); give a T5 folder with --model-dir"),
                (_, Some(dir), _) => ModelSource::Dir(dir.clone()),
                (_, _, Some(repo)) => rt.hub_source(repo),
                _ => rt.hub_source(hub::DEFAULT_T5_MODEL),
            };
            let files = hub::resolve_needs(&source, hub::T5_FILES, &rt.hub)?;
            hub::announce(&files);
            Ok(Located::T5(files))
        }
    }
}

impl Located {
    /// Loads the engine onto the runtime's device.
    pub fn load(&self, spec: &SummarySpec, rt: &Runtime) -> Result<Box<dyn Summarizer>> {
        match self {
            Located::Extractive => Ok(Box::new(ExtractiveSummarizer::new())),
            Located::Llm(location) => {
                let device = rt.open_device()?;
                let opts = LlmOptions {
                    sampling: spec.sampling.clone(),
                    ..LlmOptions::default()
                };
                let (label, weights) = match location {
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
                    LlmLocation::Gguf(path) => LlmSummarizer::load(path, &device, opts),
                    LlmLocation::Checkpoint { dir, repo } => {
                        LlmSummarizer::load_dir(dir, &device, opts).map(|s| match repo {
                            Some(repo) => s.with_model_id(repo),
                            None => s,
                        })
                    }
                }
                .map_err(|e| crate::device::explain_load_error(e, &label, weights, &device))?;
                Ok(Box::new(summarizer))
            }
            Located::T5(files) => {
                let device = rt.open_device()?;
                let summarizer = T5Summarizer::load(files, &device, T5Options::default())
                    .map_err(|e| explain_load_error(e, files, &device))?;
                Ok(Box::new(summarizer))
            }
        }
    }
}

/// [`crate::device::explain_load_error`] for a model whose files are `files`:
/// an out-of-memory error on a GPU names the model and its weights' size.
fn explain_load_error(err: anyhow::Error, files: &ModelFiles, device: &Device) -> anyhow::Error {
    let weights = crate::device::weights_size(files.files.values().map(|p| p.as_path()));
    crate::device::explain_load_error(err, &files.source.to_string(), weights, device)
}

/// Finds and loads the summarization engine.
pub fn summarizer(spec: &SummarySpec, rt: &Runtime) -> Result<Box<dyn Summarizer>> {
    locate_summarizer(spec, rt)?.load(spec, rt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_llm_reading_german_directly_skips_the_translator() {
        let mut spec = SummarySpec::new(Method::Llm);
        assert!(spec.translates_first(Lang::De));
        assert!(!spec.translates_first(Lang::En));
        spec.direct = true;
        assert!(!spec.translates_first(Lang::De));
        spec.method = Method::T5;
        assert!(spec.translates_first(Lang::De), "t5 cannot read German");
    }

    #[test]
    fn summary_ids_name_the_model_before_it_loads() {
        let mut spec = SummarySpec::new(Method::Llm);
        assert_eq!(
            spec.id(),
            format!(
                "llm:{}/{}",
                hub::DEFAULT_SUMMARY_MODEL,
                hub::DEFAULT_SUMMARY_FILE
            )
        );
        spec.model.repo = Some("o/m".into());
        assert_eq!(spec.id(), "llm:o/m");
        spec.model.file = Some("m.gguf".into());
        assert_eq!(spec.id(), "llm:m.gguf");
        assert_eq!(
            SummarySpec::new(Method::Extractive).id(),
            extractive::MODEL_ID
        );
    }

    #[test]
    fn choices_that_cannot_work_are_refused_before_any_download() {
        let rt = Runtime {
            hub: HubOptions {
                offline: true,
                ..HubOptions::default()
            },
            ..Runtime::default()
        };
        let mut spec = SummarySpec::new(Method::Extractive);
        spec.model.repo = Some("o/m".into());
        let err = locate_summarizer(&spec, &rt).unwrap_err().to_string();
        assert!(err.contains("uses no model"), "{err}");
        let mut spec = SummarySpec::new(Method::T5);
        spec.model.file = Some("m.gguf".into());
        let err = locate_summarizer(&spec, &rt).unwrap_err().to_string();
        assert!(err.contains("--model-file is for GGUF"), "{err}");
        let mut spec = SummarySpec::new(Method::Llm);
        spec.model.file = Some("/nonexistent/m.gguf".into());
        let err = locate_summarizer(&spec, &rt).unwrap_err().to_string();
        assert!(err.contains("no such file"), "{err}");
    }

    #[test]
    fn translation_ids_count_the_weight_format() {
        let rt = Runtime::default();
        let mut spec = TranslationSpec::default();
        assert_eq!(spec.id(&rt), hub::DEFAULT_TRANSLATION_MODEL);
        spec.options.quantize = Quantize::Q8;
        assert!(spec.id(&rt).ends_with(" (--quantize q8)"));
    }
}
