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
use crate::pipeline::translate::llm::{
    LlmTranslateOptions, LlmTranslator, SharedLlm, SharedSummarizer,
};
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

/// The translation engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Engine {
    /// A Marian (opus-mt) model: small, fast, faithful.
    #[default]
    Marian,
    /// An instruction-tuned LLM (GGUF: llama, qwen2, qwen3, gemma3; or a
    /// llama safetensors checkpoint), a few neighbouring sentences per prompt.
    Llm,
}

/// The translation model and how it decodes.
#[derive(Debug, Clone, Default)]
pub struct TranslationSpec {
    pub engine: Engine,
    /// Hub repository; `None` is the engine's default
    /// ([`hub::DEFAULT_TRANSLATION_MODEL`], or [`DEFAULT_LLM_TRANSLATION_MODEL`]).
    pub repo: Option<String>,
    /// A local folder instead of the Hub.
    pub dir: Option<PathBuf>,
    /// A local .gguf file (llm only).
    pub file: Option<PathBuf>,
    /// Marian's decoding; its `max_length` also bounds the llm's sentences.
    pub options: TranslateOptions,
    /// The llm engine's grouping.
    pub llm: LlmTranslateOptions,
}

/// The GGUF repo `--engine llm` uses when no model is named (its Q4_K_M
/// file): a multilingual instruct model that translates German well.
pub const DEFAULT_LLM_TRANSLATION_MODEL: &str = "Qwen/Qwen2.5-1.5B-Instruct-GGUF";

impl TranslationSpec {
    /// Where the Marian model is.
    pub fn source(&self, rt: &Runtime) -> ModelSource {
        match &self.dir {
            Some(dir) => ModelSource::Dir(dir.clone()),
            None => rt.hub_source(self.repo.as_deref().unwrap_or(match self.engine {
                Engine::Marian => hub::DEFAULT_TRANSLATION_MODEL,
                Engine::Llm => DEFAULT_LLM_TRANSLATION_MODEL,
            })),
        }
    }

    /// Refuses flags the engine does not have, before anything is fetched.
    pub fn check(&self) -> Result<()> {
        match self.engine {
            Engine::Marian if self.file.is_some() => bail!(
                "--model-file is for --engine llm (a GGUF file); give a Marian model with --model or --model-dir"
            ),
            Engine::Llm if self.options.num_beams.is_some_and(|b| b > 1) => {
                bail!("--beams is for --engine marian: the llm engine decodes greedily")
            }
            Engine::Llm if self.options.quantize != Quantize::None => {
                bail!("--quantize is for --engine marian: GGUF models are quantized already")
            }
            _ => Ok(()),
        }
    }

    /// The llm engine's settings, `--max-length` included.
    pub fn llm_options(&self) -> LlmTranslateOptions {
        LlmTranslateOptions {
            max_length: self.options.max_length.or(self.llm.max_length),
            ..self.llm.clone()
        }
    }

    /// Names the model and its weight format before loading it (for batch
    /// job keys): the repo and revision, or the resolved folder or file, so
    /// `./m` and `/abs/m` are one model; `--quantize q8` and the llm's
    /// sentences per prompt translate differently, so they count.
    pub fn id(&self, rt: &Runtime) -> String {
        let canonical = |p: &PathBuf| p.canonicalize().unwrap_or(p.clone()).display().to_string();
        let model = match (&self.file, self.source(rt)) {
            (Some(file), _) => canonical(file),
            (None, ModelSource::Dir(dir)) => canonical(&dir),
            (None, hub) => hub.to_string(),
        };
        match (self.engine, self.options.quantize) {
            (Engine::Llm, _) => format!(
                "llm:{model} (--sentences-per-prompt {})",
                self.llm.sentences_per_prompt
            ),
            (Engine::Marian, Quantize::None) => model,
            (Engine::Marian, q) => format!("{model} (--quantize {q})"),
        }
    }

    /// Finds (downloading on first use) the llm engine's model.
    pub fn locate_llm(&self, rt: &Runtime) -> Result<LlmLocation> {
        match (&self.file, &self.dir) {
            (Some(file), _) => gguf_file(file),
            (_, Some(dir)) => files::llm_in_dir(dir),
            _ => files::llm_in_repo(&self.source(rt), &rt.hub),
        }
    }
}

/// Finds (downloading on first use) the translation model's files.
pub fn locate_translator(spec: &TranslationSpec, rt: &Runtime) -> Result<ModelFiles> {
    spec.check()?;
    if spec.engine == Engine::Llm {
        bail!("internal error: locate_translator is for Marian models");
    }
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

/// Finds and loads the LLM translator; `opts` are the model's own settings
/// (its sampling), for when a summarizer shares it.
pub fn llm_translator(
    spec: &TranslationSpec,
    rt: &Runtime,
    opts: LlmOptions,
) -> Result<LlmTranslator> {
    spec.check()?;
    let location = spec.locate_llm(rt)?;
    Ok(LlmTranslator::new(
        load_llm(&location, opts, rt)?,
        spec.llm_options(),
    ))
}

/// Finds and loads the translator.
pub fn translator(spec: &TranslationSpec, rt: &Runtime) -> Result<Box<dyn Translator>> {
    Ok(match spec.engine {
        Engine::Marian => Box::new(marian(spec, rt)?),
        Engine::Llm => Box::new(llm_translator(spec, rt, LlmOptions::default())?),
    })
}

/// Whether the summaries can come from the LLM that translates: both
/// engines are llms and no other summary model is named. One model is then
/// loaded for both ([`translator_and_summarizer`]).
pub fn shares_model(translation: &TranslationSpec, summary: &SummarySpec) -> bool {
    translation.engine == Engine::Llm && summary.method == Method::Llm && !summary.model.is_given()
}

/// The translator and the summarizer of a run, one model serving both
/// where [`shares_model`] says so.
pub fn translator_and_summarizer(
    translation: &TranslationSpec,
    summary: &SummarySpec,
    rt: &Runtime,
) -> Result<(Box<dyn Translator>, Box<dyn Summarizer>)> {
    if shares_model(translation, summary) {
        let slot = SharedLlmSlot::default();
        return Ok((
            slot.translator(translation, summary, rt)?,
            slot.summarizer(translation, summary, rt)?,
        ));
    }
    Ok((translator(translation, rt)?, summarizer(summary, rt)?))
}

/// The one model of a run where [`shares_model`] holds, loaded on first use
/// by whichever of the translator and the summarizer needs it first (batch
/// runs load engines lazily).
#[derive(Default)]
pub struct SharedLlmSlot(std::cell::OnceCell<SharedLlm>);

impl SharedLlmSlot {
    fn get(
        &self,
        translation: &TranslationSpec,
        summary: &SummarySpec,
        rt: &Runtime,
    ) -> Result<SharedLlm> {
        if let Some(llm) = self.0.get() {
            return Ok(llm.clone());
        }
        let llm = llm_translator(translation, rt, summary.llm_options())?.model();
        Ok(self.0.get_or_init(|| llm).clone())
    }

    /// The translator over the shared model.
    pub fn translator(
        &self,
        translation: &TranslationSpec,
        summary: &SummarySpec,
        rt: &Runtime,
    ) -> Result<Box<dyn Translator>> {
        let llm = self.get(translation, summary, rt)?;
        Ok(Box::new(LlmTranslator::shared(
            llm,
            translation.llm_options(),
        )))
    }

    /// The summarizer over the shared model.
    pub fn summarizer(
        &self,
        translation: &TranslationSpec,
        summary: &SummarySpec,
        rt: &Runtime,
    ) -> Result<Box<dyn Summarizer>> {
        Ok(Box::new(SharedSummarizer(self.get(
            translation,
            summary,
            rt,
        )?)))
    }
}

/// A .gguf file named on the command line.
fn gguf_file(file: &std::path::Path) -> Result<LlmLocation> {
    if !file.is_file() {
        bail!("--model-file {}: no such file", file.display());
    }
    Ok(LlmLocation::Gguf(file.to_path_buf()))
}

/// Loads an LLM onto the runtime's device; running out of GPU memory names
/// the model and its weights' size.
fn load_llm(location: &LlmLocation, opts: LlmOptions, rt: &Runtime) -> Result<LlmSummarizer> {
    let device = rt.open_device()?;
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
    match location {
        LlmLocation::Gguf(path) => LlmSummarizer::load(path, &device, opts),
        LlmLocation::Checkpoint { dir, repo } => {
            LlmSummarizer::load_dir(dir, &device, opts).map(|s| match repo {
                Some(repo) => s.with_model_id(repo),
                None => s,
            })
        }
    }
    .map_err(|e| crate::device::explain_load_error(e, &label, weights, &device))
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

    /// The llm engine's settings.
    pub fn llm_options(&self) -> LlmOptions {
        LlmOptions {
            sampling: self.sampling.clone(),
            ..LlmOptions::default()
        }
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
            (Some(file), _, _) => gguf_file(file)?,
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
            Located::Llm(location) => Ok(Box::new(load_llm(location, spec.llm_options(), rt)?)),
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
    fn the_llm_engine_refuses_marian_flags_and_marian_refuses_gguf_files() {
        let llm = |f: &dyn Fn(&mut TranslationSpec)| {
            let mut spec = TranslationSpec {
                engine: Engine::Llm,
                ..TranslationSpec::default()
            };
            f(&mut spec);
            spec.check().map_err(|e| e.to_string())
        };
        assert!(llm(&|_| {}).is_ok());
        assert!(llm(&|s| s.options.num_beams = Some(1)).is_ok());
        let err = llm(&|s| s.options.num_beams = Some(4)).unwrap_err();
        assert!(err.contains("--beams is for --engine marian"), "{err}");
        let err = llm(&|s| s.options.quantize = Quantize::Q8).unwrap_err();
        assert!(err.contains("--quantize is for --engine marian"), "{err}");
        let marian = TranslationSpec {
            file: Some("m.gguf".into()),
            ..TranslationSpec::default()
        };
        let err = marian.check().unwrap_err().to_string();
        assert!(err.contains("--model-file is for --engine llm"), "{err}");
    }

    #[test]
    fn one_llm_serves_both_only_when_no_other_summary_model_is_named() {
        let llm = TranslationSpec {
            engine: Engine::Llm,
            ..TranslationSpec::default()
        };
        let mut summary = SummarySpec::new(Method::Llm);
        assert!(shares_model(&llm, &summary));
        assert!(!shares_model(&TranslationSpec::default(), &summary));
        assert!(!shares_model(&llm, &SummarySpec::new(Method::Extractive)));
        summary.model.file = Some("other.gguf".into());
        assert!(!shares_model(&llm, &summary));
    }

    #[test]
    fn the_llm_engine_takes_max_length_from_the_decoding_flags() {
        let mut spec = TranslationSpec {
            engine: Engine::Llm,
            ..TranslationSpec::default()
        };
        assert_eq!(spec.llm_options().max_length, None);
        spec.options.max_length = Some(40);
        assert_eq!(spec.llm_options().max_length, Some(40));
    }

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
        let mut llm = TranslationSpec {
            engine: Engine::Llm,
            ..TranslationSpec::default()
        };
        assert_eq!(
            llm.id(&rt),
            format!("llm:{DEFAULT_LLM_TRANSLATION_MODEL} (--sentences-per-prompt 4)")
        );
        llm.llm.sentences_per_prompt = 1;
        assert!(llm.id(&rt).ends_with("(--sentences-per-prompt 1)"));
    }
}
