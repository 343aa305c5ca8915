//! Translation: the [`Translator`] trait, the Marian engine behind it, and
//! the document driver that splits text into sentences and puts the
//! translations back where the sentences were.

use crate::checkpoint::{Checkpoint, GenerationFile, ModelType};
use crate::generation::{self, GenerationConfig, Hypothesis, StepModel};
use crate::hub::ModelFiles;
use crate::models::marian::{Config, DecoderState, MarianModel};
use crate::text::{self, Format, Segment};
use crate::tokenize::marian::MarianTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

/// An engine that translates independent sentences.
///
/// Callers encode each sentence once ([`Translator::encode`]) and hand the
/// encoded units to [`translate_units`], the one batching layer: it sorts
/// them by length and cuts batches of [`Translator::batch_size`], which
/// [`Translator::translate_encoded`] decodes as they come.
pub trait Translator {
    /// Names the model (repo id or folder), for logs and manifests.
    fn model_id(&self) -> String;
    /// The model's input tokens for `text`.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Translates one batch; output `i` is the translation of `units[i]`.
    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>>;
    /// The longest input, in tokens, the model accepts.
    fn max_input_tokens(&self) -> usize;
    /// Units decoded together (`--batch-size`).
    fn batch_size(&self) -> usize;
    /// Warnings gathered since the last call (e.g. an output cut at the
    /// maximum length), for the caller to show.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Translates sentences through the same path as documents: encoded
    /// once, length-sorted, in batches of [`Translator::batch_size`].
    fn translate_batch(&mut self, sentences: &[&str]) -> Result<Vec<String>>
    where
        Self: Sized,
    {
        let units = sentences
            .iter()
            .map(|s| Unit::encode(s, &*self))
            .collect::<Result<Vec<_>>>()?;
        let units: Vec<&Unit> = units.iter().collect();
        translate_units(self, &units, &mut |_, _| {})
    }
}

/// One sentence (or part of an over-long one) to translate, with its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub text: String,
    pub ids: Vec<u32>,
}

impl Unit {
    /// Encodes `text` with the translator's tokenizer.
    pub fn encode(text: &str, translator: &dyn Translator) -> Result<Self> {
        Ok(Self {
            text: text.to_string(),
            ids: translator.encode(text)?,
        })
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
    /// 8-bit blocks (GGML Q8_0) through candle's quantized matmul: about a
    /// quarter of the weight memory traffic, slightly different numbers.
    Q8,
}

impl std::str::FromStr for Quantize {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "f32" => Ok(Self::None),
            "q8" | "q8_0" | "int8" => Ok(Self::Q8),
            other => bail!("unknown quantization '{other}': expected none or q8"),
        }
    }
}

impl std::fmt::Display for Quantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Q8 => "q8",
        })
    }
}

impl Quantize {
    fn ggml_dtype(self) -> Option<GgmlDType> {
        match self {
            Self::None => None,
            Self::Q8 => Some(GgmlDType::Q8_0),
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

        let vb = checkpoint.var_builder(DType::F32, device)?;
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

    /// Decodes one right-padded batch of token-id sequences.
    pub fn generate_ids(&self, inputs: &[Vec<u32>]) -> Result<Vec<Hypothesis>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let src_len = inputs.iter().map(Vec::len).max().unwrap_or(0);
        if src_len > self.max_input_tokens() {
            bail!(
                "input of {src_len} tokens exceeds the model's limit of {}",
                self.max_input_tokens()
            );
        }
        let pad = self.tokenizer.pad_id;
        let mut flat = Vec::with_capacity(inputs.len() * src_len);
        for ids in inputs {
            flat.extend_from_slice(ids);
            flat.extend(std::iter::repeat_n(pad, src_len - ids.len()));
        }
        let device = self.model.device();
        let input = Tensor::from_vec(flat, (inputs.len(), src_len), device)?;
        let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let state = self.model.encode(&input, &lengths)?;
        let mut stepper = MarianStepper {
            model: &self.model,
            state,
        };
        generation::generate(&mut stepper, inputs.len(), &self.generation)
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

struct MarianStepper<'a> {
    model: &'a MarianModel,
    state: DecoderState,
}

impl StepModel for MarianStepper<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        Ok(self.model.decode_step(&mut self.state, tokens)?)
    }

    fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        Ok(self.state.select_rows(rows)?)
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
        let inputs: Vec<Vec<u32>> = units.iter().map(|u| u.ids.clone()).collect();
        let hyps = self.generate_ids(&inputs)?;
        let max_length = self.generation.max_length;
        let mut out = Vec::with_capacity(units.len());
        for (unit, hyp) in units.iter().zip(hyps) {
            if hyp.tokens.len() + 1 >= max_length && hyp.tokens.len() > 1 {
                self.warnings.push(format!(
                    "the translation of a sentence reached the maximum length of {max_length} tokens and may be cut short (raise --max-length): {:?}",
                    preview(&unit.text)
                ));
            }
            self.output_lengths.push(hyp.tokens.len());
            out.push(self.tokenizer.decode(&hyp.tokens));
        }
        Ok(out)
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

fn preview(s: &str) -> String {
    let mut p: String = s.chars().take(60).collect();
    if p.len() < s.len() {
        p.push('…');
    }
    p
}

/// A document cut into translation units, ready to be put back together.
///
/// Markup and blank lines are kept verbatim; each prose segment becomes its
/// sentences (over-long ones split at safe points), each encoded once,
/// translated one by one and joined with spaces.
#[derive(Debug, Clone)]
pub struct PreparedDocument {
    segments: Vec<Segment>,
    /// For each `Segment::Text`, its units.
    units: Vec<Vec<Unit>>,
    /// Notes for the user, e.g. about split sentences.
    pub warnings: Vec<String>,
}

impl PreparedDocument {
    /// Cuts `text` into units of at most the translator's input limit.
    pub fn new(text: &str, format: Format, translator: &dyn Translator) -> Result<Self> {
        let max_tokens = translator.max_input_tokens();
        let segments = text::segment(text, format);
        let mut units = Vec::new();
        let mut warnings = Vec::new();
        for seg in &segments {
            if let Segment::Text(prose) = seg {
                let mut seg_units = Vec::new();
                for sentence in text::split_sentences(prose) {
                    let unit = Unit::encode(&sentence, translator)?;
                    let tokens = unit.ids.len();
                    if tokens <= max_tokens {
                        seg_units.push(unit);
                        continue;
                    }
                    let count = |s: &str| translator.encode(s).map_or(usize::MAX, |ids| ids.len());
                    let parts = text::split_long(&sentence, max_tokens, &count);
                    warnings.push(format!(
                        "a sentence of {tokens} tokens is longer than the model's limit of {max_tokens}; translated in {} parts: {:?}",
                        parts.len(),
                        preview(&sentence)
                    ));
                    for part in parts {
                        seg_units.push(Unit::encode(&part, translator)?);
                    }
                }
                units.push(seg_units);
            }
        }
        Ok(Self {
            segments,
            units,
            warnings,
        })
    }

    /// All units in document order.
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.units.iter().flatten()
    }

    pub fn unit_count(&self) -> usize {
        self.units.iter().map(Vec::len).sum()
    }

    /// Rebuilds the document with `translations` (one per unit, in order).
    pub fn assemble(&self, translations: &[String]) -> Result<String> {
        if translations.len() != self.unit_count() {
            bail!(
                "internal error: {} translations for {} sentences",
                translations.len(),
                self.unit_count()
            );
        }
        let mut out = String::new();
        let mut next = translations.iter();
        let mut units = self.units.iter();
        for seg in &self.segments {
            match seg {
                Segment::Keep(s) => out.push_str(s),
                Segment::Text(_) => {
                    let n = units.next().map(Vec::len).unwrap_or(0);
                    let parts: Vec<&str> = next.by_ref().take(n).map(String::as_str).collect();
                    out.push_str(&parts.join(" "));
                }
            }
        }
        Ok(out)
    }
}

/// Translates a whole document. `progress(done, total)` is called as
/// sentences complete; warnings (split sentences, cut outputs) go to `warn`.
pub fn translate_document(
    translator: &mut dyn Translator,
    text: &str,
    format: Format,
    progress: &mut dyn FnMut(usize, usize),
    warn: &mut dyn FnMut(&str),
) -> Result<String> {
    let doc = PreparedDocument::new(text, format, translator)?;
    for w in &doc.warnings {
        warn(w);
    }
    let units: Vec<&Unit> = doc.units().collect();
    let translations = translate_units(translator, &units, progress)?;
    report_warnings(translator.take_warnings(), warn);
    doc.assemble(&translations)
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
/// many) in batches of [`Translator::batch_size`], longest first so that
/// each batch holds units of similar length and pads little; results come
/// back in input order. `progress(done, total)` follows the batches.
pub fn translate_units(
    translator: &mut dyn Translator,
    units: &[&Unit],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<String>> {
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(units[i].ids.len()));
    let mut out = vec![String::new(); units.len()];
    let mut done = 0;
    progress(0, units.len());
    for chunk in order.chunks(translator.batch_size().max(1)) {
        let batch: Vec<&Unit> = chunk.iter().map(|&i| units[i]).collect();
        let translated = translator.translate_encoded(&batch)?;
        if translated.len() != batch.len() {
            bail!(
                "internal error: {} translations for a batch of {}",
                translated.len(),
                batch.len()
            );
        }
        for (&i, t) in chunk.iter().zip(translated) {
            out[i] = t;
        }
        done += chunk.len();
        progress(done, units.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upper-cases each sentence: enough to check that the driver puts
    /// every translation back in its place.
    struct Upper;
    impl Translator for Upper {
        fn model_id(&self) -> String {
            "upper".into()
        }
        fn encode(&self, text: &str) -> Result<Vec<u32>> {
            Ok(text.split_whitespace().map(|w| w.len() as u32).collect())
        }
        fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
            Ok(units.iter().map(|u| u.text.to_uppercase()).collect())
        }
        fn max_input_tokens(&self) -> usize {
            8
        }
        fn batch_size(&self) -> usize {
            2
        }
    }

    #[test]
    fn document_layout_survives_translation() {
        let text = "Erster Satz. Zweiter Satz!\n\n\nDritter Absatz.\n";
        let out = translate_document(&mut Upper, text, Format::Plain, &mut |_, _| {}, &mut |_| {})
            .unwrap();
        assert_eq!(out, "ERSTER SATZ. ZWEITER SATZ!\n\n\nDRITTER ABSATZ.\n");
    }

    #[test]
    fn long_sentences_are_split_with_a_warning_and_nothing_is_lost() {
        let text = "eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn.";
        let mut warnings = Vec::new();
        let out = translate_document(&mut Upper, text, Format::Plain, &mut |_, _| {}, &mut |w| {
            warnings.push(w.to_string())
        })
        .unwrap();
        assert_eq!(out, text.to_uppercase());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn progress_reaches_the_total() {
        let mut last = (0, 0);
        translate_document(
            &mut Upper,
            "Eins ist gut. Zwei ist besser. Der Rest ist still.",
            Format::Plain,
            &mut |d, t| last = (d, t),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(last, (3, 3));
    }

    /// Records the batches it is given.
    struct Recorder(Vec<Vec<String>>, usize);
    impl Translator for Recorder {
        fn model_id(&self) -> String {
            "recorder".into()
        }
        fn encode(&self, text: &str) -> Result<Vec<u32>> {
            Ok(vec![0; text.split_whitespace().count()])
        }
        fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
            self.0.push(units.iter().map(|u| u.text.clone()).collect());
            Ok(units.iter().map(|u| u.text.clone()).collect())
        }
        fn max_input_tokens(&self) -> usize {
            512
        }
        fn batch_size(&self) -> usize {
            self.1
        }
    }

    #[test]
    fn batches_follow_the_batch_size_at_any_size_longest_first() {
        let sentences: Vec<String> = (1..=100).map(|n| vec!["w"; n].join(" ") + ".").collect();
        let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
        for size in [1, 7, 64, 65, 100, 1000] {
            let mut t = Recorder(Vec::new(), size);
            let out = t.translate_batch(&refs).unwrap();
            assert_eq!(out, sentences, "results in input order");
            let sizes: Vec<usize> = t.0.iter().map(Vec::len).collect();
            assert_eq!(sizes.len(), 100usize.div_ceil(size), "{size}: {sizes:?}");
            assert!(sizes.iter().all(|&n| n <= size), "{size}: {sizes:?}");
            // Longest first: the first batch holds the longest sentence.
            assert_eq!(t.0[0][0], sentences[99]);
        }
    }
}
