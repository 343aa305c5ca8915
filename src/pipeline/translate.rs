//! Translation: the [`Translator`] trait, the Marian engine behind it, and
//! the document driver that splits text into sentences and puts the
//! translations back where the sentences were.

use crate::generation::{self, EarlyStopping, GenerationConfig, Hypothesis, StepModel};
use crate::hub::ModelFiles;
use crate::models::marian::{Config, DecoderState, MarianModel};
use crate::pipeline::weights::SafetensorsFile;
use crate::text::{self, Format, Segment};
use crate::tokenize::marian::MarianTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use std::path::Path;

/// An engine that translates independent sentences.
pub trait Translator {
    /// Names the model (repo id or folder), for logs and manifests.
    fn model_id(&self) -> String;
    /// Translates sentences; output `i` is the translation of input `i`.
    /// Implementations batch internally and may reorder work, never results.
    fn translate_batch(&mut self, sentences: &[&str]) -> Result<Vec<String>>;
    /// How many model tokens `text` takes (to split over-long sentences first).
    fn token_count(&self, text: &str) -> Result<usize>;
    /// The longest input, in tokens, the model accepts.
    fn max_input_tokens(&self) -> usize;
    /// Warnings gathered since the last call (e.g. an output cut at the
    /// maximum length), for the caller to show.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
}

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

/// `generation_config.json`, the fields decoding uses.
#[derive(Debug, Default, Deserialize)]
struct GenerationFile {
    num_beams: Option<usize>,
    max_length: Option<usize>,
    min_length: Option<usize>,
    length_penalty: Option<f32>,
    early_stopping: Option<serde_json::Value>,
    bad_words_ids: Option<Vec<Vec<u32>>>,
    forced_eos_token_id: Option<u32>,
    decoder_start_token_id: Option<u32>,
    eos_token_id: Option<serde_json::Value>,
}

/// Reads a JSON file into `T`, with the file name in every error.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("{name} in {} is broken: {e}", parent_name(path)))
}

fn parent_name(path: &Path) -> String {
    path.parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The Marian model, its tokenizer and decoding settings.
pub struct MarianTranslator {
    model: MarianModel,
    tokenizer: MarianTokenizer,
    generation: GenerationConfig,
    batch_size: usize,
    model_id: String,
    warnings: Vec<String>,
}

impl MarianTranslator {
    /// Loads a Marian model from resolved files (see [`crate::hub::MARIAN_FILES`]).
    pub fn load(files: &ModelFiles, device: &Device, opts: &TranslateOptions) -> Result<Self> {
        let config_path = files.path("config.json")?;
        let raw: serde_json::Value = read_json(config_path)?;
        match raw.get("model_type").and_then(|v| v.as_str()) {
            Some("marian") | None => {}
            Some(other) => bail!(
                "{} holds a '{other}' model, not a Marian translation model (model_type must be 'marian')",
                files.source
            ),
        }
        let cfg: Config = serde_json::from_value(raw).map_err(|e| {
            anyhow!(
                "config.json in {} is not a Marian config: {e}",
                files.source
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

        let vb = if let Some(path) = files.get("model.safetensors") {
            // Read tensor by tensor, not memory-mapped: candle copies
            // mapped weights anyway, and the map would double the peak
            // memory (see pipeline::weights).
            SafetensorsFile::open(path)?.into_var_builder(opts.quantize.dtype(), device)
        } else if let Some(path) = files.get("pytorch_model.bin") {
            VarBuilder::from_pth(path, opts.quantize.dtype(), device).with_context(|| {
                format!("{} is not a readable PyTorch checkpoint", path.display())
            })?
        } else {
            bail!(
                "{} has no weights (model.safetensors or pytorch_model.bin)",
                files.source
            );
        };
        let model =
            MarianModel::new_quantized(&cfg, vb, opts.quantize.ggml_dtype()).map_err(|e| {
                anyhow!(
                    "the weights of {} do not fit a Marian model: {e}",
                    files.source
                )
            })?;

        let gen_file: GenerationFile = match files.get("generation_config.json") {
            Some(path) => read_json(path)?,
            None => GenerationFile::default(),
        };
        let generation = generation_config(&cfg, &gen_file, opts)?;
        Ok(Self {
            model,
            tokenizer,
            generation,
            batch_size: opts.batch_size.unwrap_or(16).max(1),
            model_id: files.source.to_string(),
            warnings: Vec::new(),
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
    let eos = match &file.eos_token_id {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|v| v as u32).unwrap_or(cfg.eos_token_id)
        }
        Some(serde_json::Value::Array(a)) => a
            .first()
            .and_then(|v| v.as_u64())
            .map(|v| v as u32)
            .unwrap_or(cfg.eos_token_id),
        _ => cfg.eos_token_id,
    };
    let early_stopping = match &file.early_stopping {
        Some(serde_json::Value::Bool(true)) => EarlyStopping::Done,
        Some(serde_json::Value::String(s)) if s == "never" => EarlyStopping::Never,
        _ => EarlyStopping::Heuristic,
    };
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

    fn translate_batch(&mut self, sentences: &[&str]) -> Result<Vec<String>> {
        let encoded = sentences
            .iter()
            .map(|s| self.tokenizer.encode(s))
            .collect::<Result<Vec<_>>>()?;
        // Longest first, so each batch holds sentences of similar length and
        // pads little.
        let mut order: Vec<usize> = (0..sentences.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        let mut out = vec![String::new(); sentences.len()];
        for chunk in order.chunks(self.batch_size) {
            let inputs: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].clone()).collect();
            let hyps = self.generate_ids(&inputs)?;
            for (&i, hyp) in chunk.iter().zip(hyps) {
                if hyp.tokens.len() + 1 >= self.generation.max_length && hyp.tokens.len() > 1 {
                    self.warnings.push(format!(
                        "the translation of a sentence reached the maximum length of {} tokens and may be cut short (raise --max-length): {:?}",
                        self.generation.max_length,
                        preview(sentences[i])
                    ));
                }
                out[i] = self.tokenizer.decode(&hyp.tokens);
            }
        }
        Ok(out)
    }

    fn token_count(&self, text: &str) -> Result<usize> {
        self.tokenizer.token_count(text)
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
/// sentences (over-long ones split at safe points), translated one by one and
/// joined with spaces.
#[derive(Debug, Clone)]
pub struct PreparedDocument {
    segments: Vec<Segment>,
    /// For each `Segment::Text`, its units.
    units: Vec<Vec<String>>,
    /// Notes for the user, e.g. about split sentences.
    pub warnings: Vec<String>,
}

impl PreparedDocument {
    /// Cuts `text` into units of at most `max_tokens` tokens by `count_tokens`.
    pub fn new(
        text: &str,
        format: Format,
        max_tokens: usize,
        count_tokens: &dyn Fn(&str) -> usize,
    ) -> Self {
        let segments = text::segment(text, format);
        let mut units = Vec::new();
        let mut warnings = Vec::new();
        for seg in &segments {
            if let Segment::Text(prose) = seg {
                let mut seg_units = Vec::new();
                for sentence in text::split_sentences(prose) {
                    let tokens = count_tokens(&sentence);
                    if tokens > max_tokens {
                        let parts = text::split_long(&sentence, max_tokens, count_tokens);
                        warnings.push(format!(
                            "a sentence of {tokens} tokens is longer than the model's limit of {max_tokens}; translated in {} parts: {:?}",
                            parts.len(),
                            preview(&sentence)
                        ));
                        seg_units.extend(parts);
                    } else {
                        seg_units.push(sentence);
                    }
                }
                units.push(seg_units);
            }
        }
        Self {
            segments,
            units,
            warnings,
        }
    }

    /// All units in document order.
    pub fn units(&self) -> impl Iterator<Item = &str> {
        self.units.iter().flatten().map(String::as_str)
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
    let max_tokens = translator.max_input_tokens();
    let doc = {
        let t: &dyn Translator = translator;
        let count = |s: &str| t.token_count(s).unwrap_or(usize::MAX);
        PreparedDocument::new(text, format, max_tokens, &count)
    };
    for w in &doc.warnings {
        warn(w);
    }
    let units: Vec<&str> = doc.units().collect();
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

/// Translates many independent units with progress, in length-sorted
/// chunks so that batches pad little, returning results in input order.
pub fn translate_units(
    translator: &mut dyn Translator,
    units: &[&str],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<String>> {
    const CHUNK: usize = 64;
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(units[i].len()));
    let mut out = vec![String::new(); units.len()];
    let mut done = 0;
    progress(0, units.len());
    for chunk in order.chunks(CHUNK) {
        let batch: Vec<&str> = chunk.iter().map(|&i| units[i]).collect();
        let translated = translator.translate_batch(&batch)?;
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
        fn translate_batch(&mut self, s: &[&str]) -> Result<Vec<String>> {
            Ok(s.iter().map(|x| x.to_uppercase()).collect())
        }
        fn token_count(&self, text: &str) -> Result<usize> {
            Ok(text.split_whitespace().count())
        }
        fn max_input_tokens(&self) -> usize {
            8
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
}
