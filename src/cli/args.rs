//! The flag groups several commands share, each defined (and documented)
//! once, and their mapping to the library's plain option structs
//! ([`crate::engines`], [`crate::io::ReadOptions`]). Defaults come from the
//! library's own `Default`s, so clap and the library cannot disagree.

use anyhow::{bail, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;
use std::path::PathBuf;

use crate::device::DeviceChoice;
use crate::engines::{Engine, Method, Runtime, SummaryModel, SummarySpec, TranslationSpec};
use crate::hub::{self, HubOptions};
use crate::pipeline::summarize::llm::SamplingOptions;
use crate::pipeline::translate::llm::LlmTranslateOptions;
use crate::pipeline::translate::{Quantize, TranslateOptions, DEFAULT_BATCH_SIZE};
use crate::pipeline::SummaryLength;
use crate::text::Lang;

/// Flags shared by every command that runs a model.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Where to run the model: auto (a GPU if this build has one, else CPU),
    /// cpu, cuda (needs a build with `--features cuda`) or metal (`--features metal`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE", global = true)]
    pub device: DeviceChoice,

    /// CPU threads for the math [default: all cores]. `RAYON_NUM_THREADS`, when set, wins.
    #[arg(long, value_name = "N", global = true)]
    pub threads: Option<usize>,

    /// Never touch the network: use only models already in the cache or in
    /// `--model-dir`. Also on when HF_HUB_OFFLINE=1.
    #[arg(long, global = true)]
    pub offline: bool,

    /// Git revision (branch, tag or commit) of Hub models.
    #[arg(long, default_value = hub::DEFAULT_REVISION, value_name = "REV", global = true)]
    pub revision: String,

    /// Do not draw progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

impl RuntimeArgs {
    /// Offline if asked for on the command line or through HF_HUB_OFFLINE.
    pub fn is_offline(&self) -> bool {
        self.offline || hub::offline_from_env()
    }

    /// The Hub options these flags ask for (`--offline`, `--quiet`).
    pub fn hub_options(&self) -> HubOptions {
        HubOptions {
            offline: self.is_offline(),
            progress: !self.quiet,
            ..HubOptions::default()
        }
    }

    /// The engines' runtime.
    pub fn runtime(&self) -> Runtime {
        Runtime {
            device: self.device,
            threads: self.threads,
            hub: self.hub_options(),
            revision: self.revision.clone(),
        }
    }
}

/// Flags for reading input text.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Replace invalid UTF-8 bytes with U+FFFD instead of failing.
    #[arg(long)]
    pub lossy: bool,

    /// Refuse inputs larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::io::DEFAULT_MAX_BYTES)]
    pub max_bytes: u64,
}

impl InputArgs {
    pub fn read_options(&self) -> crate::io::ReadOptions {
        crate::io::ReadOptions {
            lossy: self.lossy,
            max_bytes: self.max_bytes,
        }
    }
}

/// How sentences are decoded (`translate`, `batch`, and the translation
/// step of `summarize`).
#[derive(Debug, Clone, Args)]
pub struct DecodingArgs {
    /// Beam width for decoding: 1 is greedy (fastest), more is slower and
    /// usually a little better [default: the model's generation_config, 4 to 6
    /// for opus-mt]. The llm engine always decodes greedily.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub beams: Option<u32>,

    /// Longest translation of one sentence, in tokens [default: the model's
    /// max_length, 512 for opus-mt; 512 for --engine llm, which also cuts
    /// back a translation over 3 times its source's length].
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u32).range(2..))]
    pub max_length: Option<u32>,

    /// Sentences decoded together (marian): when one finishes, the next
    /// waiting sentence takes its place, so this many stay busy until the
    /// last ones. Larger batches are faster per sentence on GPUs and
    /// many-core CPUs, and use more memory.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub batch_size: u32,

    /// Weight format: `none` keeps the model's f32 weights (results identical
    /// to `transformers`); `q8` quantizes the linear layers and the tied
    /// embedding to 8 bits at load time: faster at every batch size on a CPU
    /// and about half the memory, with slightly different translations; `f16` runs the whole model in half precision (for
    /// `--device cuda`; slow on a CPU), also slightly different.
    #[arg(long, value_name = "none|q8|f16", default_value_t = Quantize::None)]
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

/// Which translation model to use (`--model` is the translator's).
#[derive(Debug, Clone, Args)]
pub struct TranslationModelArgs {
    /// Translation engine: `marian` (opus-mt: small, fast, faithful) or `llm`
    /// (an instruction-tuned LLM such as Qwen 2.5, which translates a few
    /// neighbouring sentences per prompt, greedily; see
    /// --sentences-per-prompt).
    #[arg(long, value_enum, value_name = "marian|llm", default_value_t = Engine::Marian)]
    pub engine: Engine,

    /// Hub repository of the translation model, downloaded into the HF cache
    /// on first use unless --offline: a Marian (opus-mt) model, or with
    /// --engine llm a GGUF repo (its Q4_K_M file when it has several) or a
    /// llama safetensors checkpoint [default: Helsinki-NLP/opus-mt-de-en;
    /// with --engine llm: Qwen/Qwen2.5-1.5B-Instruct-GGUF].
    #[arg(long, value_name = "REPO")]
    pub model: Option<String>,

    /// Use the model files in this local folder instead of the Hub; never
    /// touches the network. Marian: laid out like a Hub repo (config.json,
    /// model.safetensors, source.spm, target.spm, vocab.json); llm: one .gguf
    /// file, or a llama checkpoint (config.json, model.safetensors,
    /// tokenizer.json).
    #[arg(long, value_name = "DIR", conflicts_with = "model")]
    pub model_dir: Option<PathBuf>,

    /// With --engine llm: a local .gguf file; never touches the network.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "model_dir"])]
    pub model_file: Option<PathBuf>,

    /// With --engine llm: neighbouring sentences translated together in one
    /// prompt (context helps the model); 1 translates each sentence alone.
    /// An answer without exactly one line per sentence is redone sentence
    /// by sentence.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub sentences_per_prompt: u32,
}

impl TranslationModelArgs {
    pub fn spec(&self, decoding: &DecodingArgs) -> TranslationSpec {
        TranslationSpec {
            engine: self.engine,
            repo: self.model.clone(),
            dir: self.model_dir.clone(),
            file: self.model_file.clone(),
            options: decoding.options(),
            llm: LlmTranslateOptions {
                sentences_per_prompt: self.sentences_per_prompt as usize,
                max_length: None,
            },
        }
    }
}

/// The translator that runs before engines that need English input
/// (`summarize`, whose `--model` is the summarizer's).
#[derive(Debug, Clone, Args)]
pub struct TranslationForSummaryArgs {
    /// Hub repository of the Marian model used to translate German articles first.
    #[arg(long, value_name = "REPO", default_value = hub::DEFAULT_TRANSLATION_MODEL)]
    pub translation_model: String,

    /// A local folder holding that translation model; never touches the network.
    #[arg(long, value_name = "DIR")]
    pub translation_model_dir: Option<PathBuf>,
}

impl TranslationForSummaryArgs {
    pub fn spec(&self, decoding: &DecodingArgs) -> TranslationSpec {
        TranslationSpec {
            repo: Some(self.translation_model.clone()),
            dir: self.translation_model_dir.clone(),
            options: decoding.options(),
            ..TranslationSpec::default()
        }
    }
}

/// `--length short|medium|long`, parsed into a [`SummaryLength`].
pub fn length_parser() -> impl TypedValueParser<Value = SummaryLength> {
    PossibleValuesParser::new(["short", "medium", "long"])
        .map(|name| SummaryLength::preset(&name).unwrap_or(SummaryLength::Sentences(2)))
}

/// How summaries are made; shared by `summarize` and `translate --summary`
/// (`batch` takes `--summary-method` and `--length`).
#[derive(Debug, Clone, Args)]
pub struct SummaryArgs {
    /// Summarization engine: `llm` (an instruction-tuned model: GGUF, or a
    /// llama-family safetensors checkpoint; best quality), `t5` (a T5/Flan-T5 seq2seq model), or `extractive` (picks
    /// the article's most central sentences; no neural model, instant).
    #[arg(long, value_enum, default_value_t = Method::Llm)]
    pub method: Method,

    /// Summary length preset: short (at most 2 sentences), medium (4) or long (7).
    #[arg(long, value_name = "PRESET", default_value = "short", value_parser = length_parser())]
    pub length: SummaryLength,

    /// At most N sentences (overrides --length). An llm summary ends after its
    /// last whole sentence, never inside one.
    #[arg(long, value_name = "N", conflicts_with = "max_words")]
    pub sentences: Option<usize>,

    /// At most N words, in whole sentences (overrides --length); a first
    /// sentence longer than N is kept whole rather than cut.
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
    #[arg(long, value_name = "T", default_value_t = SamplingOptions::default().temperature)]
    pub temperature: f64,

    /// Nucleus sampling for llm: keep the smallest set of tokens whose
    /// probabilities add up to P (only with --temperature > 0).
    #[arg(long, value_name = "P")]
    pub top_p: Option<f64>,

    /// Random seed for sampling (only with --temperature > 0).
    #[arg(long, value_name = "N", default_value_t = SamplingOptions::default().seed)]
    pub seed: u64,
}

impl SummaryArgs {
    /// The requested length; `--sentences 0` / `--max-words 0` are errors.
    pub fn length(&self) -> Result<SummaryLength> {
        resolve_length(self.length, self.sentences, self.max_words)
    }

    /// The engine these flags ask for, with `model`.
    pub fn spec(&self, model: SummaryModel) -> SummarySpec {
        SummarySpec {
            method: self.method,
            model,
            sampling: SamplingOptions {
                temperature: self.temperature,
                top_p: self.top_p,
                seed: self.seed,
                ..SamplingOptions::default()
            },
            direct: self.direct,
        }
    }
}

/// `--sentences` or `--max-words` over the `--length` preset; 0 is an error.
pub fn resolve_length(
    preset: SummaryLength,
    sentences: Option<usize>,
    max_words: Option<usize>,
) -> Result<SummaryLength> {
    match (sentences, max_words) {
        (Some(0), _) => bail!("--sentences must be at least 1"),
        (_, Some(0)) => bail!("--max-words must be at least 1"),
        (Some(n), _) => Ok(SummaryLength::Sentences(n)),
        (_, Some(n)) => Ok(SummaryLength::Words(n)),
        _ => Ok(preset),
    }
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

impl SummaryModelArgs {
    pub fn model(&self) -> SummaryModel {
        SummaryModel {
            repo: self.model.clone(),
            file: self.model_file.clone(),
            dir: self.model_dir.clone(),
        }
    }
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

impl SummaryModelFlags {
    pub fn model(&self) -> SummaryModel {
        SummaryModel {
            repo: self.summary_model.clone(),
            file: self.summary_model_file.clone(),
            dir: self.summary_model_dir.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_counts_override_the_preset_and_zero_is_refused() {
        let short = SummaryLength::Sentences(2);
        assert_eq!(resolve_length(short, None, None).unwrap(), short);
        assert_eq!(
            resolve_length(short, Some(5), None).unwrap(),
            SummaryLength::Sentences(5)
        );
        assert_eq!(
            resolve_length(short, None, Some(30)).unwrap(),
            SummaryLength::Words(30)
        );
        assert!(resolve_length(short, Some(0), None).is_err());
        assert!(resolve_length(short, None, Some(0)).is_err());
    }

    #[test]
    fn decoding_flags_become_translate_options() {
        let args = DecodingArgs {
            beams: Some(2),
            max_length: Some(40),
            batch_size: 8,
            quantize: Quantize::Q8,
        };
        let opts = args.options();
        assert_eq!(opts.num_beams, Some(2));
        assert_eq!(opts.max_length, Some(40));
        assert_eq!(opts.batch_size, Some(8));
        assert_eq!(opts.quantize, Quantize::Q8);
    }
}
