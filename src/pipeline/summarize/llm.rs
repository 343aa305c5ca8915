//! Summaries written by a language model: GGUF files (Llama, Gemma 3,
//! Qwen 2/3) or transformers safetensors checkpoints of the llama family.
//!
//! [`LlmSummarizer::load`] reads one `.gguf` file: the model ([`loader`]),
//! its tokenizer (GGUF metadata, or a `tokenizer.json` beside the file) and
//! its chat template. [`LlmSummarizer::load_dir`] reads a checkpoint folder
//! ([`safetensors`]) with its `tokenizer.json` and `tokenizer_config.json`. [`Summarizer::summarize`] asks for an English summary in
//! the model's own chat format ([`prompt`]); an article too long for the
//! context is summarized in parts whose summaries are then combined
//! (map-reduce, repeated until it fits), never silently truncated.

pub mod generate;
mod gguf_header;
pub mod length;
pub mod loader;
pub mod prompt;
pub mod safetensors;
pub mod tokens;

pub use generate::{GenerationStats, SamplingOptions};
pub use loader::{LoadOptions, Requantize, SUPPORTED_ARCHITECTURES};

use super::{Summarizer, SummaryLength, SummaryRequest};
use crate::models::causal_lm::CausalLm;
use crate::text::{self, Lang};
use crate::tokenize::gguf::PromptPart;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use generate::{generate, generate_limited, Generation};
use length::LengthLimit;
use prompt::{PromptFormat, Task, UserTurn};
use std::path::Path;
use tokens::PromptTokenizer;

/// Deepest nesting of combine rounds before giving up (each round shrinks
/// the text several-fold, so real inputs need two or three).
const MAX_COMBINE_ROUNDS: usize = 8;

/// Knobs of the LLM summarizer; `Default` is greedy with a mild repetition guard.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmOptions {
    pub sampling: SamplingOptions,
    /// Most new tokens per model pass; `None` derives it from the requested length.
    pub max_new_tokens: Option<usize>,
    /// Use fewer context positions than the model allows (memory, or tests of
    /// the map-reduce path); never more.
    pub context_limit: Option<usize>,
    /// Prompt tokens per prefill call.
    pub prefill_chunk: usize,
    pub load: LoadOptions,
}

impl Default for LlmOptions {
    fn default() -> Self {
        Self {
            sampling: SamplingOptions::default(),
            max_new_tokens: None,
            context_limit: None,
            prefill_chunk: 256,
            load: LoadOptions::default(),
        }
    }
}

/// The token budget for a summary of `length`: generous, since generation
/// stops as soon as the length is reached ([`length`]); the budget only
/// guards against a sentence that never ends. A summarizer uses at most a
/// quarter of its model's context for it (the rest is for the article).
pub fn default_max_new_tokens(length: SummaryLength) -> usize {
    match length {
        SummaryLength::Sentences(n) => 64 * n.max(1) + 64,
        SummaryLength::Words(n) => 3 * n.max(1) + 64,
    }
}

/// The name a model is reported by when it comes from a file or folder.
fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The model in `gguf_path` on `device` and its tokenizer, the tokenizer
/// built first: building it from a 262k-token vocabulary passes through
/// about 100 MB of strings, which are given back to the system before the
/// weights come in, so they do not add to the peak of the load.
pub fn load_with_tokenizer(
    gguf_path: &Path,
    device: &Device,
    opts: loader::LoadOptions,
) -> Result<(loader::LoadedModel, PromptTokenizer)> {
    let (content, reader) = loader::read_header(gguf_path)?;
    let tokenizer = PromptTokenizer::load(gguf_path, &content.metadata)?;
    crate::device::trim_heap();
    let mut loaded = loader::load_from_header(gguf_path, content, reader, device, opts)?;
    // The tokenizer has what it needs of the metadata (tens of MB for a
    // large vocabulary).
    loaded.metadata = std::collections::HashMap::new();
    Ok((loaded, tokenizer))
}

/// A language model that writes English summaries.
pub struct LlmSummarizer {
    model: Box<dyn CausalLm>,
    tokenizer: PromptTokenizer,
    format: PromptFormat,
    opts: LlmOptions,
    model_id: String,
    architecture: String,
    stats: GenerationStats,
}

impl LlmSummarizer {
    /// Loads the model in `gguf_path` onto `device`.
    pub fn load(gguf_path: &Path, device: &Device, opts: LlmOptions) -> Result<Self> {
        let (loaded, tokenizer) = load_with_tokenizer(gguf_path, device, opts.load)?;
        Ok(Self::assemble(
            loaded.model,
            tokenizer,
            opts,
            file_label(gguf_path),
            loaded.architecture,
        ))
    }

    /// Loads a transformers checkpoint folder (`config.json`, safetensors
    /// weights, `tokenizer.json`, `tokenizer_config.json`) onto `device`.
    /// Weights are multiplied as dense f32 ([`LoadOptions`] do not apply).
    pub fn load_dir(dir: &Path, device: &Device, opts: LlmOptions) -> Result<Self> {
        let loaded = safetensors::load_checkpoint(dir, device)?;
        let tokenizer = PromptTokenizer::load_dir(dir)?;
        Ok(Self::assemble(
            loaded.model,
            tokenizer,
            opts,
            file_label(dir),
            loaded.model_type,
        ))
    }

    /// A summarizer over a model and tokenizer built elsewhere (tests
    /// drive it with scripted models), named `model_id`.
    pub fn from_parts(
        model: Box<dyn CausalLm>,
        tokenizer: PromptTokenizer,
        opts: LlmOptions,
        model_id: impl Into<String>,
    ) -> Self {
        Self::assemble(model, tokenizer, opts, model_id.into(), "custom".into())
    }

    fn assemble(
        model: Box<dyn CausalLm>,
        tokenizer: PromptTokenizer,
        opts: LlmOptions,
        model_id: String,
        architecture: String,
    ) -> Self {
        let (bos, eos) = tokenizer.bos_eos_strings();
        let format = PromptFormat::new(tokenizer.chat_template(), bos, eos);
        Self {
            model,
            tokenizer,
            format,
            opts,
            model_id,
            architecture,
            stats: GenerationStats::default(),
        }
    }

    /// How many tokens `text` takes as user text.
    pub fn token_count(&self, text: &str) -> Result<usize> {
        self.tokenizer.count(text)
    }

    /// The ids of `text` as user text (special-token strings stay text).
    pub fn text_ids(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.text_ids(text)
    }

    /// The prompt ids of one [`UserTurn`], with the stop strings of the format.
    pub fn turn_ids(&self, turn: &UserTurn) -> Result<(Vec<u32>, Vec<String>)> {
        let parts = self.format.render_turn(turn)?;
        let mut stops = parts.stop_strings;
        let ids = match turn.echo {
            None => self
                .tokenizer
                .encode_prompt(&parts.before, turn.text, &parts.after)?,
            Some((lead, cue)) => {
                stops.push("\n".to_string());
                let after = format!("{}{lead}", parts.after);
                self.tokenizer.encode_prompt_parts(&[
                    PromptPart::Trusted(&parts.before),
                    PromptPart::Text(turn.text),
                    PromptPart::Trusted(&after),
                    PromptPart::Text(turn.text),
                    PromptPart::Trusted(cue),
                ])?
            }
        };
        Ok((ids, stops))
    }

    /// Answers one [`UserTurn`] with at most `max_new` tokens, decoded by
    /// `sampling` (not the summarizer's own settings). The prompt plus
    /// `max_new` must fit [`Self::context_len`].
    pub fn complete(
        &mut self,
        turn: &UserTurn,
        max_new: usize,
        sampling: &SamplingOptions,
    ) -> Result<Generation> {
        let (ids, stops) = self.turn_ids(turn)?;
        if ids.len() + max_new > self.context_len() {
            bail!(
                "a prompt of {} tokens and {max_new} new tokens does not fit the context of {}",
                ids.len(),
                self.context_len()
            );
        }
        let out = generate(
            self.model.as_mut(),
            &self.tokenizer,
            &ids,
            max_new,
            &stops,
            sampling,
            self.opts.prefill_chunk,
            &mut |_| {},
        )?;
        self.stats.add(&out.stats);
        Ok(out)
    }

    /// Names the model by `id` (a Hub repo) instead of its file or folder name.
    pub fn with_model_id(mut self, id: impl Into<String>) -> Self {
        self.model_id = id.into();
        self
    }

    /// Token counts and speeds of the last [`Summarizer::summarize`] call.
    pub fn last_stats(&self) -> GenerationStats {
        self.stats
    }

    /// The GGUF `general.architecture` (llama, gemma3, qwen2, qwen3), or the
    /// `model_type` of a checkpoint's config.json.
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// Whether prompts use the model's chat template (else the plain fallback).
    pub fn uses_chat_template(&self) -> bool {
        self.format.has_chat_template()
    }

    /// Context positions in use: the model's, or the smaller configured limit.
    pub fn context_len(&self) -> usize {
        let model = self.model.context_len();
        self.opts.context_limit.map_or(model, |l| l.min(model))
    }

    /// The prompt ids of a one-pass summary of `req` (what the model reads
    /// when the article fits the context), for inspection and `--verbose`.
    pub fn prompt_ids(&self, req: &SummaryRequest) -> Result<Vec<u32>> {
        let task = Task::Summarize {
            lang: req.lang,
            length: req.length,
        };
        Ok(self.prompt(task, req.text.trim())?.0)
    }

    fn max_new(&self, length: SummaryLength) -> usize {
        self.opts
            .max_new_tokens
            .unwrap_or_else(|| default_max_new_tokens(length).min((self.context_len() / 4).max(1)))
    }

    /// Prompt ids for `task` over `text`, with the stop strings of the format.
    fn prompt(&self, task: Task, text: &str) -> Result<(Vec<u32>, Vec<String>)> {
        let parts = self.format.render(task)?;
        let ids = self
            .tokenizer
            .encode_prompt(&parts.before, text, &parts.after)?;
        Ok((ids, parts.stop_strings))
    }

    /// One model pass, its answer held to `length`; streams to `on_text`.
    fn run(
        &mut self,
        task: Task,
        text: &str,
        length: SummaryLength,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String> {
        let max_new = self.max_new(length);
        let (ids, stops) = self.prompt(task, text)?;
        let budget = self.context_len();
        if ids.len() + max_new > budget {
            bail!(
                "internal: prompt of {} tokens does not fit the context of {budget}",
                ids.len()
            );
        }
        let limit = LengthLimit::new(length);
        let out = generate_limited(
            self.model.as_mut(),
            &self.tokenizer,
            &ids,
            max_new,
            &stops,
            &self.opts.sampling,
            self.opts.prefill_chunk,
            Some(&limit),
            on_text,
        )?;
        self.stats.add(&out.stats);
        if out.text.is_empty() && out.stats.hit_token_limit && out.stats.generated_tokens > 0 {
            bail!(
                "the model wrote no complete sentence within its budget of {max_new} tokens \
                 (ask for a shorter summary or try another model)"
            );
        }
        Ok(out.text)
    }

    /// Most text tokens a prompt for `task` can carry next to `max_new` new tokens.
    fn text_budget(&self, task: Task, max_new: usize) -> Result<usize> {
        let (overhead, _) = self.prompt(task, "")?;
        // A few tokens of slack: tokenizing text next to markup can merge differently.
        let room = self
            .context_len()
            .saturating_sub(overhead.len() + max_new + 8);
        if room < 32 {
            bail!(
                "the context of {} tokens leaves no room for text next to a {}-token prompt and {max_new} new tokens; \
                 raise the context limit or lower the summary length",
                self.context_len(),
                overhead.len()
            );
        }
        Ok(room)
    }

    fn count_tokens(&self, text: &str) -> usize {
        // A failed encoding counts as one token per byte: never an underestimate.
        self.tokenizer.count(text).unwrap_or(text.len())
    }

    fn summarize_article(
        &mut self,
        text: &str,
        lang: Lang,
        length: SummaryLength,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String> {
        let max_new = self.max_new(length);
        let whole = Task::Summarize { lang, length };
        let (ids, _) = self.prompt(whole, text)?;
        if ids.len() + max_new <= self.context_len() {
            return self.run(whole, text, length, on_text);
        }
        // Map: summarize parts that fit, each on its own.
        let part_task = Task::SummarizePart { lang, length };
        let budget = self.text_budget(part_task, max_new)?;
        let sentences = text::sentences_in(text);
        let parts = text::chunk_sentences(&sentences, budget, &|s| self.count_tokens(s));
        let mut partials = Vec::with_capacity(parts.len());
        for part in &parts {
            let summary = self.run(part_task, part, length, &mut |_| {})?;
            if !summary.is_empty() {
                partials.push(summary);
            }
        }
        // Reduce: combine the partial summaries, in rounds while they do not fit.
        self.combine(partials, length, 0, on_text)
    }

    fn combine(
        &mut self,
        partials: Vec<String>,
        length: SummaryLength,
        round: usize,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String> {
        if partials.is_empty() {
            bail!("the model wrote no summary for any part of the text");
        }
        let max_new = self.max_new(length);
        let task = Task::Combine { length };
        let joined = partials.join("\n\n");
        let (ids, _) = self.prompt(task, &joined)?;
        if ids.len() + max_new <= self.context_len() {
            return self.run(task, &joined, length, on_text);
        }
        if round >= MAX_COMBINE_ROUNDS {
            bail!("the partial summaries still do not fit the context after {round} rounds of combining");
        }
        let budget = self.text_budget(task, max_new)?;
        let groups = text::chunk_sentences(&partials, budget, &|s| self.count_tokens(s));
        if groups.len() >= partials.len() {
            // Each summary fills a prompt on its own: combining cannot shrink them.
            bail!(
                "partial summaries are too long for the context of {} tokens; lower the summary length",
                self.context_len()
            );
        }
        let mut next = Vec::with_capacity(groups.len());
        for group in &groups {
            let summary = self.run(task, group, length, &mut |_| {})?;
            if !summary.is_empty() {
                next.push(summary);
            }
        }
        self.combine(next, length, round + 1, on_text)
    }
}

impl Summarizer for LlmSummarizer {
    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    /// Streams only the final pass (for a long text, the combining one).
    fn summarize(&mut self, req: &SummaryRequest, on_text: &mut dyn FnMut(&str)) -> Result<String> {
        self.stats = GenerationStats::default();
        let text = req.text.trim();
        if text.is_empty() {
            bail!("nothing to summarize: the text is empty");
        }
        let summary = self
            .summarize_article(text, req.lang, req.length, on_text)
            .with_context(|| format!("summarizing with {}", self.model_id))?;
        if summary.is_empty() {
            bail!(
                "{} wrote an empty summary (try another model)",
                self.model_id
            );
        }
        Ok(summary)
    }
}
