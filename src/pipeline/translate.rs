//! Translation: the [`Translator`] trait, the Marian engine behind it, the
//! one batching layer ([`translate_units`]), and (in `document.rs`) the
//! document driver that splits text into sentences and puts the
//! translations back where the sentences were.

use crate::checkpoint::{Checkpoint, GenerationFile, ModelType};
use crate::generation::{self, GenerationConfig, Hypothesis, StepModel};
use crate::hub::ModelFiles;
use crate::models::marian::{Config, DecoderState, MarianModel};
use crate::text::protect;
use crate::tokenize::marian::MarianTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

mod document;
pub mod llm;
pub use document::{translate_aligned, translate_document, PreparedDocument};

/// An engine that translates independent sentences.
///
/// Callers encode each sentence once ([`Unit::encode_protected`] for
/// documents, which masks protected spans first) and hand the encoded
/// units to [`translate_units`], the one batching layer: it sorts them by
/// length and hands them to [`Translator::translate_stream`], which decodes
/// [`Translator::batch_size`] at a time (by default batch after batch of
/// [`Translator::translate_scored`]; Marian refills its batch as sentences
/// finish).
pub trait Translator {
    /// Names the model (repo id or folder), for logs and manifests.
    fn model_id(&self) -> String;
    /// The model's input tokens for `text`.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Translates one batch; output `i` is the translation of `units[i]`.
    /// The model sees [`Unit::text`] (protected spans as placeholders).
    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>>;
    /// As [`Translator::translate_encoded`], with the model's confidence;
    /// engines without scores keep this default. Wrappers must forward it.
    fn translate_scored(&mut self, units: &[&Unit]) -> Result<Vec<Translation>> {
        Ok(self
            .translate_encoded(units)?
            .into_iter()
            .map(Translation::plain)
            .collect())
    }
    /// Translates `units` in the order given, [`Translator::batch_size`] at
    /// a time; `finished(n)` hears of `n` more units done (an error from it
    /// stops the run). By default batch after batch of
    /// [`Translator::translate_scored`]; an engine that refills its batch
    /// as sentences finish (Marian) takes them all in one run. Wrappers
    /// must forward it.
    fn translate_stream(
        &mut self,
        units: &[&Unit],
        finished: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<Vec<Translation>> {
        let mut out = Vec::with_capacity(units.len());
        for batch in units.chunks(self.batch_size().max(1)) {
            let translated = self.translate_scored(batch)?;
            if translated.len() != batch.len() {
                bail!(
                    "internal error: {} translations for a batch of {}",
                    translated.len(),
                    batch.len()
                );
            }
            out.extend(translated);
            finished(batch.len())?;
        }
        Ok(out)
    }
    /// The longest input, in tokens, the model accepts.
    fn max_input_tokens(&self) -> usize;
    /// Units decoded together (`--batch-size`).
    fn batch_size(&self) -> usize;
    /// Warnings gathered since the last call (e.g. an output cut at the
    /// maximum length), for the caller to show.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Whether units should arrive in document order rather than sorted by
    /// length: engines that translate neighbours together for context (an
    /// LLM) say yes; batching engines gain from sorting and say no.
    /// Wrappers must forward it.
    fn in_document_order(&self) -> bool {
        false
    }
    /// Translates sentences through the same path as documents: encoded
    /// once, length-sorted, in batches of [`Translator::batch_size`]; but
    /// as they are, nothing masked (the model's own translations, as
    /// `transformers` gives them).
    fn translate_batch(&mut self, sentences: &[&str]) -> Result<Vec<String>>
    where
        Self: Sized,
    {
        let units = sentences
            .iter()
            .map(|s| Unit::encode(s, &*self))
            .collect::<Result<Vec<_>>>()?;
        let units: Vec<&Unit> = units.iter().collect();
        Ok(translate_units(self, &units, &mut |_, _| {})?
            .into_iter()
            .map(|t| t.text)
            .collect())
    }
}

/// One translated sentence with what the model knows about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    pub text: String,
    /// Mean log-probability per generated token (higher is surer), when
    /// the engine reports one.
    pub score: Option<f32>,
    /// The output reached `--max-length` and may be cut short.
    pub hit_max_length: bool,
}

impl Translation {
    /// A translation without a score.
    pub fn plain(text: String) -> Self {
        Self {
            text,
            score: None,
            hit_max_length: false,
        }
    }
}

/// One sentence (or part of an over-long one) to translate, with its tokens.
///
/// URLs, e-mail addresses, code, paths, numbers with units and emoji are
/// masked before the model sees the unit and restored byte for byte after
/// (see [`crate::text::protect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// What the model translates: the sentence with its protected spans
    /// replaced by placeholders (`TOLK0`, `TOLK1`, …).
    pub text: String,
    /// The tokens of `text`.
    pub ids: Vec<u32>,
    /// The sentence as written (what `text` stands for).
    pub source: String,
    /// The original bytes of placeholder `i`.
    pub spans: Vec<String>,
    /// Nothing for a model to translate: only protected spans, digits,
    /// punctuation and spaces. [`translate_units`] gives `source` back
    /// without asking the model.
    pub inert: bool,
}

impl Unit {
    /// Encodes `text` as it is, with the translator's tokenizer: the
    /// model's own translation of it, nothing protected.
    pub fn encode(text: &str, translator: &dyn Translator) -> Result<Self> {
        Ok(Self {
            ids: translator.encode(text)?,
            text: text.to_string(),
            source: text.to_string(),
            spans: Vec::new(),
            inert: false,
        })
    }

    /// Masks `text`'s protected spans and encodes the result with the
    /// translator's tokenizer (what documents are cut into).
    pub fn encode_protected(text: &str, translator: &dyn Translator) -> Result<Self> {
        let masked = protect::mask(text);
        Ok(Self {
            ids: translator.encode(&masked.text)?,
            inert: masked.is_inert(),
            text: masked.text,
            source: text.to_string(),
            spans: masked.spans,
        })
    }

    /// A unit given as token ids alone (benchmarks): no text, nothing
    /// protected, always sent to the model.
    pub fn from_ids(ids: Vec<u32>) -> Self {
        Self {
            text: String::new(),
            ids,
            source: String::new(),
            spans: Vec::new(),
            inert: false,
        }
    }

    /// Puts the protected spans back into the model's `translation`.
    pub fn restore(&self, translation: &str) -> String {
        protect::unmask(&self.text, &self.spans, translation)
    }
}

/// The default of `--batch-size`.
pub const DEFAULT_BATCH_SIZE: usize = 16;

/// Settings a user may override; `None` keeps the model's own defaults
/// (`generation_config.json`, then `config.json`).
#[derive(Debug, Clone, Default)]
pub struct TranslateOptions {
    /// Beam width; 1 is greedy.
    pub num_beams: Option<usize>,
    /// Maximum output length in tokens, counting the start token.
    pub max_length: Option<usize>,
    /// Sentences decoded together in one batch.
    pub batch_size: Option<usize>,
    /// Weight format of the linear layers (`--quantize`).
    pub quantize: Quantize,
}

/// Weight format of the linear layers, chosen at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantize {
    /// The checkpoint's own weights (f32): the exact `transformers` results.
    #[default]
    None,
    /// 8-bit weights: on a CPU with AVX2, int8 per output feature with
    /// tolk's integer GEMM (`models::qlinear::int8`; the tied embedding is
    /// looked up in the same int8 table); elsewhere GGML Q8_0 blocks through
    /// candle's quantized matmul. A quarter of the weight memory, slightly
    /// different numbers.
    Q8,
    /// Every weight and activation in half precision: for GPUs, where it
    /// halves the memory traffic and uses the tensor cores; slow on a CPU.
    F16,
}

impl std::str::FromStr for Quantize {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "f32" => Ok(Self::None),
            "q8" | "q8_0" | "int8" => Ok(Self::Q8),
            "f16" | "fp16" | "half" => Ok(Self::F16),
            other => bail!("unknown quantization '{other}': expected none, q8 or f16"),
        }
    }
}

impl std::fmt::Display for Quantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Q8 => "q8",
            Self::F16 => "f16",
        })
    }
}

impl Quantize {
    fn ggml_dtype(self) -> Option<GgmlDType> {
        match self {
            Self::None | Self::F16 => None,
            Self::Q8 => Some(GgmlDType::Q8_0),
        }
    }

    /// The dtype the weights are loaded in.
    fn dtype(self) -> DType {
        match self {
            Self::F16 => DType::F16,
            Self::None | Self::Q8 => DType::F32,
        }
    }
}

/// The checkpoints the translator reads (older ones lack `model_type`).
const MARIAN: ModelType<'static> = ModelType {
    what: "a Marian translation model",
    accepted: &["marian"],
    required: false,
};

/// The Marian model, its tokenizer and decoding settings.
pub struct MarianTranslator {
    model: MarianModel,
    tokenizer: MarianTokenizer,
    generation: GenerationConfig,
    batch_size: usize,
    model_id: String,
    warnings: Vec<String>,
    /// Token counts of the translations made since the last
    /// [`MarianTranslator::take_output_lengths`].
    output_lengths: Vec<usize>,
}

impl MarianTranslator {
    /// Loads a Marian model from resolved files (see [`crate::hub::MARIAN_FILES`]).
    pub fn load(files: &ModelFiles, device: &Device, opts: &TranslateOptions) -> Result<Self> {
        let checkpoint = Checkpoint::from_files(files);
        let raw = checkpoint.config(MARIAN, "")?;
        let cfg: Config = serde_json::from_value(raw).map_err(|e| {
            anyhow!(
                "config.json in {} is not a Marian config: {e}",
                files.source
            )
        })?;
        cfg.validate().map_err(|e| {
            anyhow!(
                "config.json of {}: {}",
                files.source,
                e.to_string().lines().next().unwrap_or_default()
            )
        })?;

        let tokenizer = match files.get("tokenizer.json") {
            Some(path) => MarianTokenizer::from_tokenizer_json(&std::fs::read(path)?)?,
            None => MarianTokenizer::from_spm(
                &std::fs::read(files.path("source.spm")?)?,
                &std::fs::read(files.path("target.spm")?)?,
                &std::fs::read_to_string(files.path("vocab.json")?)?,
            )
            .with_context(|| format!("tokenizer of {}", files.source))?,
        };

        let vb = checkpoint.var_builder(opts.quantize.dtype(), device)?;
        let model =
            MarianModel::new_quantized(&cfg, vb, opts.quantize.ggml_dtype()).map_err(|e| {
                anyhow!(
                    "the weights of {} do not fit a Marian model: {e}",
                    files.source
                )
            })?;

        let gen_file = checkpoint.generation()?;
        let generation = generation_config(&cfg, &gen_file, opts)?;
        Ok(Self {
            model,
            tokenizer,
            generation,
            batch_size: opts.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1),
            model_id: files.source.to_string(),
            warnings: Vec::new(),
            output_lengths: Vec::new(),
        })
    }

    /// The model, for callers that drive decoding themselves (benchmarks,
    /// with [`MarianTranslator::encode_ids`]).
    pub fn model(&self) -> &MarianModel {
        &self.model
    }

    pub fn tokenizer(&self) -> &MarianTokenizer {
        &self.tokenizer
    }

    pub fn generation_config(&self) -> &GenerationConfig {
        &self.generation
    }

    pub fn generation_config_mut(&mut self) -> &mut GenerationConfig {
        &mut self.generation
    }

    /// Units decoded together from now on (`--batch-size`).
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size.max(1);
    }

    /// The token counts of the translations made since the last call, in
    /// the order they were made (for benchmarks).
    pub fn take_output_lengths(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.output_lengths)
    }

    /// Decodes one batch of token-id sequences.
    pub fn generate_ids(&self, inputs: &[Vec<u32>]) -> Result<Vec<Hypothesis>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<usize> = (0..inputs.len()).collect();
        let mut stepper = MarianStepper {
            translator: self,
            inputs,
            state: Some(self.encode_ids(inputs, &all)?),
        };
        generation::generate(&mut stepper, inputs.len(), &self.generation)
    }

    /// Decodes token-id sequences, [`Translator::batch_size`] of them at a
    /// time, in order; a finished sentence's rows go to the next one at
    /// once (continuous batching, [`generation::generate_queued`]).
    /// `finished(n)` hears of each step's finished sentences; an error from
    /// it stops the run.
    pub fn generate_ids_queued(
        &self,
        inputs: &[Vec<u32>],
        finished: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<Vec<Hypothesis>> {
        // Refused before any sentence decodes, not when its turn comes.
        self.check_input_length(inputs.iter().map(Vec::len).max().unwrap_or(0))?;
        let mut stepper = MarianStepper {
            translator: self,
            inputs,
            state: None,
        };
        generation::generate_queued(
            &mut stepper,
            inputs.len(),
            self.batch_size,
            &self.generation,
            finished,
        )
    }

    fn check_input_length(&self, src_len: usize) -> Result<()> {
        if src_len > self.max_input_tokens() {
            bail!(
                "input of {src_len} tokens exceeds the model's limit of {}",
                self.max_input_tokens()
            );
        }
        Ok(())
    }

    /// Encodes `inputs[i]` for each `i` of `which`, right-padded to the
    /// longest, into a fresh decoder state (one row each).
    pub fn encode_ids(&self, inputs: &[Vec<u32>], which: &[usize]) -> Result<DecoderState> {
        let src_len = which.iter().map(|&i| inputs[i].len()).max().unwrap_or(0);
        self.check_input_length(src_len)?;
        let pad = self.tokenizer.pad_id;
        let mut flat = Vec::with_capacity(which.len() * src_len);
        for &i in which {
            flat.extend_from_slice(&inputs[i]);
            flat.extend(std::iter::repeat_n(pad, src_len - inputs[i].len()));
        }
        let device = self.model.device();
        let input = Tensor::from_vec(flat, (which.len(), src_len), device)?;
        let lengths: Vec<usize> = which.iter().map(|&i| inputs[i].len()).collect();
        Ok(self.model.encode(&input, &lengths)?)
    }

    /// Hypotheses → translations of `units`, with the warnings of outputs
    /// that reached the maximum length.
    fn translations(&mut self, units: &[&Unit], hyps: Vec<Hypothesis>) -> Vec<Translation> {
        let max_length = self.generation.max_length;
        let mut out = Vec::with_capacity(units.len());
        for (unit, hyp) in units.iter().zip(hyps) {
            let hit_max_length = hyp.tokens.len() + 1 >= max_length && hyp.tokens.len() > 1;
            if hit_max_length {
                self.warnings.push(format!(
                    "the translation of a sentence reached the maximum length of {max_length} tokens and may be cut short (raise --max-length): {:?}",
                    preview(&unit.source)
                ));
            }
            self.output_lengths.push(hyp.tokens.len());
            out.push(Translation {
                text: self.tokenizer.decode(&hyp.tokens),
                score: Some(per_token_logprob(&hyp, self.generation.length_penalty)),
                hit_max_length,
            });
        }
        out
    }
}

/// Builds decoding settings: user options, then `generation_config.json`,
/// then the generation fields of `config.json`, then `transformers`' defaults.
fn generation_config(
    cfg: &Config,
    file: &GenerationFile,
    opts: &TranslateOptions,
) -> Result<GenerationConfig> {
    let eos = file.eos_id().unwrap_or(cfg.eos_token_id);
    let early_stopping = file.early_stopping();
    // Outputs can never be longer than the position table.
    let model_max = cfg.max_position_embeddings;
    let max_length = opts
        .max_length
        .or(file.max_length)
        .or(cfg.max_length)
        .unwrap_or(512)
        .min(model_max);
    let num_beams = opts
        .num_beams
        .or(file.num_beams)
        .or(cfg.num_beams)
        .unwrap_or(1);
    if num_beams == 0 {
        bail!("the number of beams must be at least 1");
    }
    Ok(GenerationConfig {
        max_length,
        min_length: file.min_length.unwrap_or(0),
        num_beams,
        length_penalty: file.length_penalty.unwrap_or(1.0),
        early_stopping,
        decoder_start_token_id: file
            .decoder_start_token_id
            .unwrap_or(cfg.decoder_start_token_id),
        eos_token_id: eos,
        forced_eos_token_id: file.forced_eos_token_id.or(cfg.forced_eos_token_id),
        bad_words_ids: file
            .bad_words_ids
            .clone()
            .or_else(|| cfg.bad_words_ids.clone())
            // opus-mt never generates <pad>; older checkpoints say so only in code.
            .unwrap_or_else(|| vec![vec![cfg.pad_token_id]]),
    })
}

/// The model and its decoder state for one run; takes in sentences of
/// `inputs` as a queued run admits them.
struct MarianStepper<'a> {
    translator: &'a MarianTranslator,
    inputs: &'a [Vec<u32>],
    /// `None` while a queued run has no rows.
    state: Option<DecoderState>,
}

impl MarianStepper<'_> {
    fn state(&mut self) -> Result<&mut DecoderState> {
        self.state
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("internal error: decoding with no sentences"))
    }
}

impl StepModel for MarianStepper<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let model = &self.translator.model;
        Ok(model.decode_step(self.state()?, tokens)?)
    }

    fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        if rows.is_empty() {
            self.state = None;
            return Ok(());
        }
        Ok(self.state()?.select_rows(rows)?)
    }

    fn admit(&mut self, sentences: &[usize], group: usize) -> Result<()> {
        let fresh = self.translator.encode_ids(self.inputs, sentences)?;
        Ok(DecoderState::admit_into(&mut self.state, fresh, group)?)
    }
}

impl Translator for MarianTranslator {
    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text)
    }

    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
        Ok(self
            .translate_scored(units)?
            .into_iter()
            .map(|t| t.text)
            .collect())
    }

    fn translate_scored(&mut self, units: &[&Unit]) -> Result<Vec<Translation>> {
        let inputs: Vec<Vec<u32>> = units.iter().map(|u| u.ids.clone()).collect();
        let hyps = self.generate_ids(&inputs)?;
        Ok(self.translations(units, hyps))
    }

    /// All units in one queued run: `batch_size` rows busy until the last
    /// units, where batch after batch would shrink to each batch's slowest.
    fn translate_stream(
        &mut self,
        units: &[&Unit],
        finished: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<Vec<Translation>> {
        let inputs: Vec<Vec<u32>> = units.iter().map(|u| u.ids.clone()).collect();
        let hyps = self.generate_ids_queued(&inputs, finished)?;
        Ok(self.translations(units, hyps))
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn max_input_tokens(&self) -> usize {
        self.model.max_positions()
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

/// Mean log-probability per generated token: greedy decoding reports each
/// token's; beam search a sum normalized by `length ^ length_penalty`.
fn per_token_logprob(hyp: &Hypothesis, length_penalty: f32) -> f32 {
    let n = hyp.tokens.len().max(1) as f32;
    if !hyp.token_logprobs.is_empty() {
        return hyp.token_logprobs.iter().sum::<f32>() / hyp.token_logprobs.len() as f32;
    }
    hyp.score * n.powf(length_penalty) / n
}

pub(crate) fn preview(s: &str) -> String {
    let mut p: String = s.chars().take(60).collect();
    if p.len() < s.len() {
        p.push('…');
    }
    p
}

/// Shows the first few warnings and counts the rest: a broken model can
/// warn for every sentence, and a wall of identical lines helps nobody.
pub fn report_warnings(warnings: Vec<String>, warn: &mut dyn FnMut(&str)) {
    const SHOWN: usize = 3;
    for w in warnings.iter().take(SHOWN) {
        warn(w);
    }
    if warnings.len() > SHOWN {
        warn(&format!(
            "... and {} more warnings like these",
            warnings.len() - SHOWN
        ));
    }
}

/// The one batching layer: translates encoded units (of one document or of
/// many) [`Translator::batch_size`] at a time ([`Translator::translate_stream`]),
/// longest first so that units decoded together are of similar length and
/// pad little; results come back in input order, their protected spans
/// restored (see [`Unit`]). A unit with nothing but protected spans, digits
/// and punctuation is passed through without the model.
/// `progress(done, total)` follows the finished units.
/// Engines that translate neighbours together ([`Translator::in_document_order`])
/// get their units in document order instead of sorted by length.
pub fn translate_units(
    translator: &mut dyn Translator,
    units: &[&Unit],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Translation>> {
    let mut out = vec![Translation::default(); units.len()];
    let mut order: Vec<usize> = Vec::with_capacity(units.len());
    for (i, unit) in units.iter().enumerate() {
        if unit.inert {
            out[i] = Translation::plain(unit.source.clone());
        } else {
            order.push(i);
        }
    }
    if !translator.in_document_order() {
        order.sort_by_key(|&i| std::cmp::Reverse(units[i].ids.len()));
    }
    let mut done = units.len() - order.len();
    progress(done, units.len());
    let queue: Vec<&Unit> = order.iter().map(|&i| units[i]).collect();
    let translated = translator.translate_stream(&queue, &mut |n| {
        if n > 0 {
            done += n;
            progress(done, units.len());
        }
        Ok(())
    })?;
    if translated.len() != queue.len() {
        bail!(
            "internal error: {} translations for {} units",
            translated.len(),
            queue.len()
        );
    }
    for (&i, mut t) in order.iter().zip(translated) {
        t.text = units[i].restore(&t.text);
        out[i] = t;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
