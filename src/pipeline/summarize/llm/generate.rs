//! The generation loop: chunked prefill, greedy or sampled decoding with a
//! repetition guard, stop tokens and stop strings, and streaming of decoded
//! text that never splits a character or leaks part of a stop string.

use super::length::LengthLimit;
use super::tokens::PromptTokenizer;
use crate::device::on_compute_pool;
use crate::models::causal_lm::CausalLm;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    /// 0 picks the most likely token (greedy, deterministic).
    pub temperature: f64,
    /// Nucleus sampling mass, when sampling.
    pub top_p: Option<f64>,
    pub seed: u64,
    /// Divides positive (multiplies negative) logits of tokens generated in
    /// the last `repeat_last_n` steps; 1.0 turns it off. Only generated tokens
    /// count, so names copied from the article are not penalised.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// Forbid repeating any n-gram of generated tokens of this length.
    pub no_repeat_ngram: Option<usize>,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
            seed: 299_792_458,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            no_repeat_ngram: None,
        }
    }
}

/// Token counts and timings of the model calls behind one summary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_time: Duration,
    pub generation_time: Duration,
    /// Model passes (1, or more when a long text was summarized in parts).
    pub passes: usize,
    /// Whether any pass stopped at the token limit instead of a stop token.
    pub hit_token_limit: bool,
}

impl GenerationStats {
    fn rate(tokens: usize, time: Duration) -> f64 {
        let secs = time.as_secs_f64();
        if secs > 0.0 {
            tokens as f64 / secs
        } else {
            0.0
        }
    }

    /// Prompt tokens processed per second.
    pub fn prefill_tokens_per_sec(&self) -> f64 {
        Self::rate(self.prompt_tokens, self.prefill_time)
    }

    /// New tokens generated per second (after the prompt).
    pub fn generation_tokens_per_sec(&self) -> f64 {
        Self::rate(self.generated_tokens, self.generation_time)
    }

    pub fn add(&mut self, other: &GenerationStats) {
        self.prompt_tokens += other.prompt_tokens;
        self.generated_tokens += other.generated_tokens;
        self.prefill_time += other.prefill_time;
        self.generation_time += other.generation_time;
        self.passes += other.passes;
        self.hit_token_limit |= other.hit_token_limit;
    }
}

/// What one model pass produced.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The answer, up to (not including) a stop string, whitespace-trimmed.
    pub text: String,
    pub stats: GenerationStats,
}

/// Runs `prompt` through `model` and generates up to `max_new` tokens.
///
/// The prompt is fed `prefill_chunk` tokens at a time (bounded memory for the
/// attention scores); `on_text` receives the answer as it grows, in pieces
/// whose concatenation is exactly [`Generation::text`].
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &mut dyn CausalLm,
    tokenizer: &PromptTokenizer,
    prompt: &[u32],
    max_new: usize,
    stop_strings: &[String],
    opts: &SamplingOptions,
    prefill_chunk: usize,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    generate_limited(
        model,
        tokenizer,
        prompt,
        max_new,
        stop_strings,
        opts,
        prefill_chunk,
        None,
        on_text,
    )
}

/// [`generate`] held to a [`LengthLimit`]: generation stops once the limit
/// is reached, the answer ends after its last whole sentence within the
/// limit, and only text that will be kept is streamed (whole sentences).
#[allow(clippy::too_many_arguments)]
pub fn generate_limited(
    model: &mut dyn CausalLm,
    tokenizer: &PromptTokenizer,
    prompt: &[u32],
    max_new: usize,
    stop_strings: &[String],
    opts: &SamplingOptions,
    prefill_chunk: usize,
    limit: Option<&LengthLimit>,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    if prompt.is_empty() {
        bail!("empty prompt");
    }
    if prompt.len() + max_new > model.context_len() {
        bail!(
            "prompt of {} tokens plus {max_new} new tokens exceeds the context of {} tokens",
            prompt.len(),
            model.context_len()
        );
    }
    let mut stats = GenerationStats {
        prompt_tokens: prompt.len(),
        passes: 1,
        ..Default::default()
    };
    model.clear_kv_cache();
    let start = Instant::now();
    let mut logits = None;
    for (i, chunk) in prompt.chunks(prefill_chunk.max(1)).enumerate() {
        let pos = i * prefill_chunk.max(1);
        logits = Some(on_compute_pool(|| model.forward(chunk, pos))?);
    }
    let mut logits = match logits {
        Some(l) => l,
        None => bail!("empty prompt"),
    };
    stats.prefill_time = start.elapsed();

    let start = Instant::now();
    let mut sampler = (opts.temperature > 0.0).then(|| {
        let sampling = match opts.top_p {
            Some(p) => Sampling::TopP {
                p,
                temperature: opts.temperature,
            },
            None => Sampling::All {
                temperature: opts.temperature,
            },
        };
        LogitsProcessor::from_sampling(opts.seed, sampling)
    });
    let mut generated: Vec<u32> = Vec::new();
    let mut stream = TextStream::new(stop_strings, limit);
    let mut stopped = false;
    let mut model_stopped = false;
    while generated.len() < max_new {
        let next = if sampler.is_none() && !logits.device().is_cpu() {
            // Greedy on a GPU: the logits stay there; the guard's few scores
            // are read and written back, and only the chosen token comes out.
            let (recent, banned) = guarded_tokens(&generated, opts);
            let tokens: Vec<u32> = recent.union(&banned).copied().collect();
            crate::device::search::argmax_adjusted(&logits, &tokens, |t, s| {
                if banned.contains(&t) {
                    f32::NEG_INFINITY
                } else {
                    penalize(s, opts.repeat_penalty)
                }
            })?
        } else {
            let mut scores: Vec<f32> = logits.to_vec1()?;
            guard_repetition(&mut scores, &generated, opts);
            match sampler.as_mut() {
                None => argmax(&scores),
                Some(s) => s.sample(&Tensor::from_vec(scores, logits.dims1()?, &Device::Cpu)?)?,
            }
        };
        if tokenizer.is_stop(next) {
            stopped = true;
            model_stopped = true;
            break;
        }
        generated.push(next);
        match stream.update(&tokenizer.decode(&generated)?, on_text) {
            Flow::Continue => {}
            Flow::StopString => {
                stopped = true;
                model_stopped = true;
                break;
            }
            Flow::LengthReached => {
                stopped = true;
                break;
            }
        }
        if generated.len() == max_new {
            break;
        }
        let pos = prompt.len() + generated.len() - 1;
        logits = on_compute_pool(|| model.forward(&[next], pos))?;
    }
    stream.finish(model_stopped, on_text);
    stats.generated_tokens = generated.len();
    stats.generation_time = start.elapsed();
    stats.hit_token_limit = !stopped;
    Ok(Generation {
        text: stream.text,
        stats,
    })
}

/// The index of the largest score (the first on ties).
pub fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}

/// The tokens the repetition guard touches: those the penalty scales
/// (generated in the last `repeat_last_n` steps) and those n-gram blocking
/// bans.
fn guarded_tokens(generated: &[u32], opts: &SamplingOptions) -> (HashSet<u32>, HashSet<u32>) {
    let mut recent = HashSet::new();
    if opts.repeat_penalty != 1.0 && opts.repeat_last_n > 0 {
        let from = generated.len().saturating_sub(opts.repeat_last_n);
        recent.extend(generated[from..].iter().copied());
    }
    let banned = match opts.no_repeat_ngram.filter(|&n| n > 0) {
        Some(n) => banned_by_ngram(generated, n).into_iter().collect(),
        None => HashSet::new(),
    };
    (recent, banned)
}

/// Divides a positive score (multiplies a negative one) by the penalty.
fn penalize(score: f32, penalty: f32) -> f32 {
    if score >= 0.0 {
        score / penalty
    } else {
        score * penalty
    }
}

/// Repetition penalty over recent generated tokens, and n-gram blocking.
fn guard_repetition(scores: &mut [f32], generated: &[u32], opts: &SamplingOptions) {
    let (recent, banned) = guarded_tokens(generated, opts);
    for id in recent {
        if let Some(s) = scores.get_mut(id as usize) {
            *s = penalize(*s, opts.repeat_penalty);
        }
    }
    for id in banned {
        if let Some(s) = scores.get_mut(id as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Tokens that would complete an `n`-gram already present in `generated`.
fn banned_by_ngram(generated: &[u32], n: usize) -> Vec<u32> {
    if generated.len() < n {
        return Vec::new();
    }
    let prefix = &generated[generated.len() - (n - 1)..];
    generated
        .windows(n)
        .filter(|w| &w[..n - 1] == prefix)
        .map(|w| w[n - 1])
        .collect()
}

/// What [`TextStream::update`] tells the generation loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// A stop string appeared: the model ended the answer.
    StopString,
    /// The length limit is reached: nothing more could be kept.
    LengthReached,
}

/// Turns successive decodings of the growing answer into stream pieces.
///
/// Held back until safe: a trailing U+FFFD (a character whose bytes are not
/// all generated yet), trailing whitespace (the answer is trimmed), and any
/// tail that could be the start of a stop string.
struct TextStream<'a> {
    stop_strings: &'a [String],
    limit: Option<&'a LengthLimit>,
    /// Everything passed to `on_text` so far.
    text: String,
    /// The latest safe answer (may run ahead of `text` only by held-back parts
    /// that are later confirmed).
    latest: String,
}

impl<'a> TextStream<'a> {
    fn new(stop_strings: &'a [String], limit: Option<&'a LengthLimit>) -> Self {
        Self {
            stop_strings,
            limit,
            text: String::new(),
            latest: String::new(),
        }
    }

    /// Feeds the decoding of all generated tokens: whether to go on.
    fn update(&mut self, decoded: &str, on_text: &mut dyn FnMut(&str)) -> Flow {
        let answer = decoded.trim_start();
        let stop_at = self
            .stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| answer.find(s.as_str()))
            .min();
        if let Some(at) = stop_at {
            self.latest = answer[..at].trim_end().to_string();
            if self.limit.is_none() {
                self.emit_upto(self.latest.len(), on_text);
            }
            return Flow::StopString;
        }
        self.latest = answer.to_string();
        let mut safe = answer.len();
        // A partial multi-byte character decodes as U+FFFD at the end.
        while answer[..safe].ends_with('\u{FFFD}') {
            safe -= '\u{FFFD}'.len_utf8();
        }
        let head = &answer[..safe];
        let held = self
            .stop_strings
            .iter()
            .filter_map(|s| {
                (1..s.len())
                    .rev()
                    .find(|&k| s.is_char_boundary(k) && head.ends_with(&s[..k]))
            })
            .max()
            .unwrap_or(0);
        let mut safe = answer[..safe - held].trim_end().len();
        if let Some(limit) = self.limit {
            let progress = limit.progress(&self.latest);
            safe = safe.min(progress.settled);
            if progress.done {
                self.latest.truncate(progress.settled);
                self.emit_upto(safe, on_text);
                return Flow::LengthReached;
            }
        }
        self.emit_upto(safe, on_text);
        Flow::Continue
    }

    fn emit_upto(&mut self, end: usize, on_text: &mut dyn FnMut(&str)) {
        // Earlier pieces are never retracted: continue only if the decoding
        // still starts with what was sent (it does except in exotic decoders).
        if end > self.text.len()
            && self.latest.is_char_boundary(end)
            && self.latest.starts_with(self.text.as_str())
        {
            let piece = self.latest[self.text.len()..end].to_string();
            self.text.push_str(&piece);
            on_text(&piece);
        }
    }

    /// Sends what was held back, except trailing whitespace and, under a
    /// length limit, what the limit drops. `model_stopped`: the model ended
    /// the answer (else the token budget or the limit did).
    fn finish(&mut self, model_stopped: bool, on_text: &mut dyn FnMut(&str)) {
        let end = match self.limit {
            Some(limit) => limit.finish(&self.latest, model_stopped).len(),
            None => self.latest.trim_end().len(),
        };
        if end < self.text.len() {
            // Cannot happen: only settled text was streamed. Keep the streamed text.
            return;
        }
        self.latest.truncate(end);
        self.emit_upto(end, on_text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(decodings: &[&str], stops: &[&str]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut stream = TextStream::new(&stops, None);
        let mut pieces = Vec::new();
        let mut stopped = false;
        for d in decodings {
            if stream.update(d, &mut |p| pieces.push(p.to_string())) != Flow::Continue {
                stopped = true;
                break;
            }
        }
        stream.finish(stopped, &mut |p| pieces.push(p.to_string()));
        (pieces, stream.text, stopped)
    }

    #[test]
    fn stream_pieces_add_up_to_the_trimmed_answer() {
        let (pieces, text, stopped) = run(
            &[" The", " The cat", " The cat sat.", " The cat sat.\n"],
            &[],
        );
        assert_eq!(pieces, vec!["The", " cat", " sat."]);
        assert_eq!(text, "The cat sat.");
        assert!(!stopped);
    }

    #[test]
    fn partial_characters_are_held_back() {
        let (pieces, text, _) = run(&["Gr\u{FFFD}", "Grü", "Grüße"], &[]);
        assert_eq!(pieces, vec!["Gr", "ü", "ße"]);
        assert_eq!(text, "Grüße");
    }

    #[test]
    fn stop_strings_end_the_answer_and_never_leak() {
        let (pieces, text, stopped) =
            run(&["One.", "One.\n", "One.\n\n", "One.\n\nTwo"], &["\n\n"]);
        assert!(stopped);
        assert_eq!(text, "One.");
        assert_eq!(pieces.concat(), "One.");
        let (pieces, text, stopped) = run(&["Hi <", "Hi </", "Hi </s> more"], &["</s>"]);
        assert!(stopped);
        assert_eq!(text, "Hi");
        assert_eq!(pieces.concat(), "Hi");
    }

    #[test]
    fn ngram_blocking_bans_completions_of_seen_ngrams() {
        assert_eq!(banned_by_ngram(&[1, 2, 3, 1, 2], 3), vec![3]);
        assert!(banned_by_ngram(&[1, 2], 3).is_empty());
        let mut scores = vec![1.0, 2.0, -1.0, 3.0];
        let opts = SamplingOptions {
            repeat_penalty: 2.0,
            no_repeat_ngram: Some(2),
            ..Default::default()
        };
        guard_repetition(&mut scores, &[2, 3, 2], &opts);
        assert_eq!(scores, vec![1.0, 2.0, -2.0, f32::NEG_INFINITY]);
    }
}
