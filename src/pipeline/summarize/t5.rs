//! Abstractive summaries with T5-family models (Flan-T5, T5, mT5):
//! `"summarize: " + article` in, generated summary out.
//!
//! Decoding is greedy by default (beam search when `num_beams` > 1, from
//! [`T5Options`] or `generation_config.json`), through the same
//! `transformers`-parity search as the translator ([`crate::generation`]).
//! Repeated trigrams are banned by default (`no_repeat_ngram_size` 3), as
//! summarization pipelines usually do; 0 switches that off.
//!
//! Long articles: T5 was trained on inputs of at most 512 tokens. An article
//! that does not fit is cut into chunks of whole sentences
//! ([`crate::text::chunk_sentences`]), each chunk is summarized, and the
//! chunk summaries, joined, are summarized again (repeated until they fit),
//! so nothing is silently cut off. Only that last pass is streamed.
//!
//! Language: T5 models summarize in the language of their input, and the
//! common checkpoints are trained on English summaries. This engine
//! summarizes the text it is given, whatever `SummaryRequest::lang` says;
//! for German articles the CLI translates to English first and passes the
//! translation (`lang: En`). Given `lang: De`, it still summarizes, and
//! leaves a warning in [`Summarizer::take_warnings`].

use super::{Summarizer, SummaryLength, SummaryRequest};
use crate::checkpoint::{Checkpoint, GenerationFile, ModelType};
use crate::generation::{self, GenerationConfig, Hypothesis, StepModel};
use crate::hub::ModelFiles;
use crate::models::t5::{Config, DecoderState, T5Model};
use crate::text::{chunk_sentences, normalize_whitespace, sentences_in, split_sentences, Lang};
use crate::tokenize::t5::T5Tokenizer;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};

/// The task prefix T5 checkpoints were trained with.
pub const SUMMARIZE_PREFIX: &str = "summarize: ";
/// The input length T5 models were trained on, in tokens.
pub const DEFAULT_MAX_INPUT_TOKENS: usize = 512;
/// Trigrams never repeat in a summary unless asked otherwise.
pub const DEFAULT_NO_REPEAT_NGRAM_SIZE: usize = 3;
/// The longest summary this engine writes, in tokens.
pub const MAX_SUMMARY_TOKENS: usize = 512;
/// Chunk summaries decoded together in one padded batch.
const DEFAULT_BATCH_SIZE: usize = 4;
/// Map-reduce rounds before giving up on an article that does not shrink.
const MAX_ROUNDS: usize = 8;

/// Called with the tokens generated so far, as they arrive.
pub type TokenCallback<'a> = &'a mut dyn FnMut(&[u32]);

/// Settings a user may override; `None` keeps the default.
#[derive(Debug, Clone, Default)]
pub struct T5Options {
    /// Beam width; `None`: `generation_config.json`, else 1 (greedy).
    pub num_beams: Option<usize>,
    /// Ban repeating n-grams of this size; 0 switches it off.
    /// `None`: [`DEFAULT_NO_REPEAT_NGRAM_SIZE`].
    pub no_repeat_ngram_size: Option<usize>,
    /// Summary length in tokens; `None`: derived from the requested
    /// [`SummaryLength`] ([`max_new_tokens_for`]).
    pub max_new_tokens: Option<usize>,
    /// Longest model input, task prefix and `</s>` included;
    /// `None`: [`DEFAULT_MAX_INPUT_TOKENS`].
    pub max_input_tokens: Option<usize>,
    /// Task prefix; `None`: [`SUMMARIZE_PREFIX`].
    pub prefix: Option<String>,
    /// Chunk summaries decoded together; `None`: 4.
    pub batch_size: Option<usize>,
}

/// How many tokens a summary of `length` may take: about 40 per sentence or
/// 1.5 per word, at most [`MAX_SUMMARY_TOKENS`].
pub fn max_new_tokens_for(length: SummaryLength) -> Result<usize> {
    let tokens = match length {
        SummaryLength::Sentences(0) | SummaryLength::Words(0) => {
            bail!("the summary length must be at least one sentence or word")
        }
        SummaryLength::Sentences(n) => n.saturating_mul(40),
        SummaryLength::Words(n) => n.saturating_mul(3).div_ceil(2),
    };
    Ok(tokens.clamp(8, MAX_SUMMARY_TOKENS))
}

/// The checkpoints this engine reads (older ones lack `model_type`).
const T5: ModelType<'static> = ModelType {
    what: "a T5 model",
    accepted: &["t5", "mt5"],
    required: false,
};

/// A T5 model, its tokenizer and decoding settings.
pub struct T5Summarizer {
    model: T5Model,
    tokenizer: T5Tokenizer,
    /// Decoding settings; `max_length` is set per call.
    generation: GenerationConfig,
    no_repeat_ngram_size: usize,
    max_new_tokens: Option<usize>,
    max_input_tokens: usize,
    prefix: String,
    batch_size: usize,
    model_id: String,
    warnings: Vec<String>,
}

impl T5Summarizer {
    /// Loads a T5 model from resolved files (see [`crate::hub::T5_FILES`]).
    pub fn load(files: &ModelFiles, device: &Device, opts: T5Options) -> Result<Self> {
        let source = files.source.to_string();
        let checkpoint = Checkpoint::from_files(files);
        let raw = checkpoint.config(T5, "")?;
        let cfg: Config = serde_json::from_value(raw)
            .map_err(|e| anyhow!("config.json of {source} is not a T5 config: {e}"))?;
        cfg.validate().map_err(|e| {
            anyhow!(
                "config.json of {source}: {}",
                e.to_string().lines().next().unwrap_or_default()
            )
        })?;
        if !cfg.is_encoder_decoder {
            bail!("{source} is a T5 encoder only (is_encoder_decoder is false): it cannot generate summaries");
        }

        let tokenizer = if let Some(path) = files.get("tokenizer.json") {
            T5Tokenizer::from_tokenizer_json(
                &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
        } else if let Some(path) = files.get("spiece.model") {
            T5Tokenizer::from_spm(
                &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
        } else {
            bail!("{source} has no tokenizer (tokenizer.json or spiece.model)");
        }
        .with_context(|| format!("tokenizer of {source}"))?;

        let vb = checkpoint.var_builder(DType::F32, device)?;
        let model = T5Model::new(&cfg, vb)
            .map_err(|e| anyhow!("the weights of {source} do not fit a T5 model: {e}"))?;

        let file = checkpoint.generation()?;
        let generation = generation_config(&cfg, &file, &opts)?;
        let max_input_tokens = opts.max_input_tokens.unwrap_or(DEFAULT_MAX_INPUT_TOKENS);
        let prefix = opts
            .prefix
            .clone()
            .unwrap_or_else(|| SUMMARIZE_PREFIX.to_string());
        // A chunk needs room next to the prefix and `</s>`.
        let prefix_tokens = tokenizer.token_count(&prefix)?;
        if max_input_tokens < prefix_tokens + 8 {
            bail!("the maximum input of {max_input_tokens} tokens leaves no room for text after the prefix {prefix:?}");
        }
        Ok(Self {
            model,
            tokenizer,
            generation,
            no_repeat_ngram_size: opts
                .no_repeat_ngram_size
                .or(file.no_repeat_ngram_size)
                .unwrap_or(DEFAULT_NO_REPEAT_NGRAM_SIZE),
            max_new_tokens: opts.max_new_tokens,
            max_input_tokens,
            prefix,
            batch_size: opts.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1),
            model_id: source,
            warnings: Vec::new(),
        })
    }

    pub fn tokenizer(&self) -> &T5Tokenizer {
        &self.tokenizer
    }

    pub fn model(&self) -> &T5Model {
        &self.model
    }

    /// Generates up to `max_new_tokens` tokens for each input (token ids
    /// ending with `</s>`), decoded together as one right-padded batch.
    ///
    /// `on_tokens` (greedy, one input only) sees the tokens generated so far
    /// after each step, except the last one, which is in the result.
    pub fn generate_ids(
        &self,
        inputs: &[Vec<u32>],
        max_new_tokens: usize,
        on_tokens: Option<TokenCallback<'_>>,
    ) -> Result<Vec<Hypothesis>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        if inputs.iter().any(Vec::is_empty) {
            bail!("internal error: an empty input has no tokens to encode");
        }
        let src_len = inputs.iter().map(Vec::len).max().unwrap_or(0);
        let pad = self.model.config().pad_token_id;
        let mut flat = Vec::with_capacity(inputs.len() * src_len);
        for ids in inputs {
            flat.extend_from_slice(ids);
            flat.extend(std::iter::repeat_n(pad, src_len - ids.len()));
        }
        let input = Tensor::from_vec(flat, (inputs.len(), src_len), self.model.device())?;
        let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let state = self.model.encode(&input, &lengths)?;
        let mut stepper = T5Stepper {
            model: &self.model,
            state,
            histories: vec![Vec::new(); inputs.len()],
            started: false,
            start_token: self.generation.decoder_start_token_id,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            on_tokens: if inputs.len() == 1 { on_tokens } else { None },
        };
        let cfg = GenerationConfig {
            max_length: max_new_tokens.max(1) + 1,
            ..self.generation.clone()
        };
        generation::generate(&mut stepper, inputs.len(), &cfg)
    }

    /// Text for generated ids, without special tokens, trimmed.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        Ok(self.tokenizer.decode(ids)?.trim().to_string())
    }

    fn input_ids(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(&format!("{}{text}", self.prefix))
    }

    /// Summarizes one input that fits, streaming the text as it is decoded.
    fn summarize_one(
        &self,
        text: &str,
        max_new_tokens: usize,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String> {
        let ids = self.input_ids(text)?;
        let mut stream = TextStream::default();
        let tokenizer = &self.tokenizer;
        let mut on_tokens = |tokens: &[u32]| {
            if let Ok(text) = tokenizer.decode(tokens) {
                stream.update(text.trim_start(), on_text);
            }
        };
        let hyps = self.generate_ids(&[ids], max_new_tokens, Some(&mut on_tokens))?;
        let summary = match hyps.first() {
            Some(hyp) => self.decode(&hyp.tokens)?,
            None => String::new(),
        };
        stream.finish(&summary, on_text);
        Ok(summary)
    }

    /// Summarizes inputs that fit, in batches, without streaming.
    fn summarize_many(&self, texts: &[String], max_new_tokens: usize) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let inputs = batch
                .iter()
                .map(|t| self.input_ids(t))
                .collect::<Result<Vec<_>>>()?;
            for hyp in self.generate_ids(&inputs, max_new_tokens, None)? {
                out.push(self.decode(&hyp.tokens)?);
            }
        }
        Ok(out)
    }

    /// Summarizes `text` in at most `max_new_tokens` tokens, map-reduce when
    /// it does not fit the model's input (see the module documentation).
    /// `on_text` receives the final summary piece by piece; the return value
    /// is the whole summary. Empty text gives an empty summary.
    pub fn summarize_text(
        &mut self,
        text: &str,
        max_new_tokens: usize,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String> {
        let mut current = normalize_whitespace(text);
        if current.is_empty() {
            return Ok(String::new());
        }
        let prefix_tokens = self.tokenizer.token_count(&self.prefix)?;
        // Room for text next to the prefix and `</s>` (both counted in
        // `prefix_tokens`); one token of slack because pieces at the seam
        // of prefix and text need not add up exactly.
        let budget = self
            .max_input_tokens
            .saturating_sub(prefix_tokens + 1)
            .max(1);
        // Chunk summaries must be short enough for their concatenation to
        // shrink from round to round.
        let part_tokens = max_new_tokens.min(budget / 4).max(1);
        let mut sentences = sentences_in(text);
        for round in 1..=MAX_ROUNDS {
            let total = self.tokenizer.token_count(&current)? - 1;
            if total <= budget {
                return self.summarize_one(&current, max_new_tokens, on_text);
            }
            let tokenizer = &self.tokenizer;
            let count = |s: &str| tokenizer.token_count(s).map_or(usize::MAX, |n| n - 1);
            let chunks = chunk_sentences(&sentences, budget, &count);
            if chunks.len() <= 1 {
                // Token counts of a whole and its parts can differ at seams;
                // one chunk means it fits well enough.
                let only = chunks.into_iter().next().unwrap_or(current);
                return self.summarize_one(&only, max_new_tokens, on_text);
            }
            self.warnings.push(format!(
                "the text ({total} tokens) is longer than the model's input of {} tokens: summarized in {} parts (round {round})",
                self.max_input_tokens,
                chunks.len()
            ));
            let parts = self.summarize_many(&chunks, part_tokens)?;
            let joined = normalize_whitespace(
                &parts
                    .iter()
                    .filter(|p| !p.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            if joined.is_empty() {
                return Ok(String::new());
            }
            let joined_tokens = self.tokenizer.token_count(&joined)? - 1;
            if joined_tokens >= total {
                bail!("the text is too long for this model: the summaries of its {} parts ({joined_tokens} tokens) are no shorter than the text ({total} tokens)", chunks.len());
            }
            sentences = split_sentences(&joined);
            current = joined;
        }
        bail!("the text is too long for this model: it still does not fit after {MAX_ROUNDS} rounds of summarizing its parts")
    }
}

impl Summarizer for T5Summarizer {
    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn summarize(&mut self, req: &SummaryRequest, on_text: &mut dyn FnMut(&str)) -> Result<String> {
        let max_new_tokens = match self.max_new_tokens {
            Some(n) => n.max(1),
            None => max_new_tokens_for(req.length)?,
        };
        if req.lang == Lang::De {
            self.warnings.push(
                "T5 models summarize in the language of their input: a German article gets a German (or poor) summary; translate it to English first".to_string(),
            );
        }
        self.summarize_text(req.text, max_new_tokens, on_text)
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

/// Builds decoding settings: user options, then `generation_config.json`,
/// then `config.json`, then `transformers`' defaults.
fn generation_config(
    cfg: &Config,
    file: &GenerationFile,
    opts: &T5Options,
) -> Result<GenerationConfig> {
    let eos = file.eos_id().unwrap_or(cfg.eos_token_id);
    let early_stopping = file.early_stopping();
    let num_beams = opts.num_beams.or(file.num_beams).unwrap_or(1);
    if num_beams == 0 {
        bail!("the number of beams must be at least 1");
    }
    Ok(GenerationConfig {
        max_length: MAX_SUMMARY_TOKENS + 1,
        min_length: file.min_length.unwrap_or(0),
        num_beams,
        length_penalty: file.length_penalty.unwrap_or(1.0),
        early_stopping,
        decoder_start_token_id: file.decoder_start_token_id.unwrap_or(cfg.decoder_start()),
        eos_token_id: eos,
        forced_eos_token_id: file.forced_eos_token_id,
        bad_words_ids: file.bad_words_ids.clone().unwrap_or_default(),
    })
}

/// The decoder behind [`generation::generate`], plus what the search itself
/// does not do: banning repeated n-grams, and reporting tokens as they come.
struct T5Stepper<'m, 'c> {
    model: &'m T5Model,
    state: DecoderState,
    /// Tokens generated so far, per state row.
    histories: Vec<Vec<u32>>,
    /// Whether the first step (fed the start token) has run.
    started: bool,
    start_token: u32,
    no_repeat_ngram_size: usize,
    on_tokens: Option<TokenCallback<'c>>,
}

impl StepModel for T5Stepper<'_, '_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        // Each step is fed the token chosen by the previous one.
        if self.started {
            for (history, &token) in self.histories.iter_mut().zip(tokens) {
                history.push(token);
            }
            if let (Some(on_tokens), [history]) = (self.on_tokens.as_mut(), &self.histories[..]) {
                on_tokens(history);
            }
        }
        self.started = true;
        let logits = self.model.decode_step(&mut self.state, tokens)?;
        if self.no_repeat_ngram_size == 0 {
            return Ok(logits);
        }
        // Set on the logits' own device: no copy to the host and back.
        let banned: Vec<Vec<u32>> = self
            .histories
            .iter()
            .map(|history| {
                banned_ngram_tokens(self.start_token, history, self.no_repeat_ngram_size)
            })
            .collect();
        Ok(crate::device::search::ban_tokens(&logits, &banned)?)
    }

    fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        self.state.select_rows(rows)?;
        self.histories = rows
            .iter()
            .map(|&r| self.histories.get(r as usize).cloned().unwrap_or_default())
            .collect();
        Ok(())
    }
}

/// The tokens that would repeat an n-gram of the sequence (start token +
/// `generated`), as `NoRepeatNGramLogitsProcessor` finds them.
///
/// The ban is applied to the raw logits, so greedy search matches
/// `transformers` exactly; beam search renormalizes after the ban where
/// `transformers` does not, which can change scores slightly.
fn banned_ngram_tokens(start: u32, generated: &[u32], n: usize) -> Vec<u32> {
    let mut seq = Vec::with_capacity(generated.len() + 1);
    seq.push(start);
    seq.extend_from_slice(generated);
    if n == 0 || seq.len() + 1 < n {
        return Vec::new();
    }
    let tail = &seq[seq.len() + 1 - n..];
    seq.windows(n)
        .filter(|w| &w[..n - 1] == tail)
        .map(|w| w[n - 1])
        .collect()
}

/// Turns "the text decoded so far" into increments for `on_text`. The last
/// word is held back until the next one starts, since more pieces may still
/// join it; text already emitted is never taken back.
#[derive(Debug, Default)]
struct TextStream {
    emitted: String,
}

impl TextStream {
    fn update(&mut self, text: &str, on_text: &mut dyn FnMut(&str)) {
        let stable = match text.rfind(char::is_whitespace) {
            Some(i) => &text[..i],
            None => "",
        };
        self.emit(stable, on_text);
    }

    fn finish(&mut self, text: &str, on_text: &mut dyn FnMut(&str)) {
        self.emit(text, on_text);
    }

    fn emit(&mut self, text: &str, on_text: &mut dyn FnMut(&str)) {
        if text.len() > self.emitted.len() && text.starts_with(&self.emitted) {
            on_text(&text[self.emitted.len()..]);
            self.emitted = text.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ngrams_are_banned_as_transformers_does() {
        // Sequence 0 5 6 7 5 6: the bigram (5, 6) was followed by 7.
        assert_eq!(banned_ngram_tokens(0, &[5, 6, 7, 5, 6], 3), vec![7]);
        assert_eq!(
            banned_ngram_tokens(0, &[5, 6, 7, 5, 8], 3),
            Vec::<u32>::new()
        );
        // Bigrams: the start token begins the first one.
        assert!(banned_ngram_tokens(0, &[5], 2).is_empty());
        assert_eq!(banned_ngram_tokens(0, &[5, 5], 2), vec![5]);
        // Unigrams: every token seen so far, the start token included.
        let mut banned = banned_ngram_tokens(0, &[4, 9], 1);
        banned.sort();
        assert_eq!(banned, vec![0, 4, 9]);
        assert!(banned_ngram_tokens(0, &[1, 2, 3], 0).is_empty());
        assert!(banned_ngram_tokens(0, &[], 3).is_empty());
    }

    #[test]
    fn stream_emits_each_piece_once_and_adds_up_to_the_summary() {
        let mut out = Vec::new();
        let mut on_text = |s: &str| out.push(s.to_string());
        let mut stream = TextStream::default();
        for partial in [
            "The",
            "The gov",
            "The govern",
            "The government wants",
            "The government wants to",
        ] {
            stream.update(partial, &mut on_text);
        }
        stream.finish("The government wants to limit.", &mut on_text);
        assert_eq!(out, vec!["The", " government", " wants", " to limit."]);
        assert_eq!(out.concat(), "The government wants to limit.");
    }

    #[test]
    fn summary_lengths_map_to_token_budgets() {
        assert_eq!(max_new_tokens_for(SummaryLength::Sentences(2)).unwrap(), 80);
        assert_eq!(max_new_tokens_for(SummaryLength::Words(100)).unwrap(), 150);
        assert_eq!(max_new_tokens_for(SummaryLength::Words(3)).unwrap(), 8);
        assert_eq!(
            max_new_tokens_for(SummaryLength::Sentences(1000)).unwrap(),
            MAX_SUMMARY_TOKENS
        );
        assert!(max_new_tokens_for(SummaryLength::Sentences(0)).is_err());
    }
}
