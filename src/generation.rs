//! Greedy and beam-search decoding for encoder-decoder models, matching
//! `transformers`' `generate()` (v4.57) token for token.
//!
//! The search runs on the host over each step's logits; the model behind
//! [`StepModel`] keeps its own caches and is told which rows survive. Each
//! sentence of a batch is searched independently (as in `transformers`,
//! where batch items never interact), and a finished sentence leaves the
//! batch at once, so later steps only pay for sentences still decoding.

mod beam;

use crate::models::qlinear::{for_ranges, SharedOut};
use anyhow::{bail, Result};
use beam::beam_search;
#[cfg(test)]
use beam::{top_k_desc, top_k_row, top_k_stable};
use candle_core::Tensor;

/// When beam search stops, as `generation_config.early_stopping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// Stop when the best running beam can no longer beat the finished ones
    /// (heuristic on the current length). The `transformers` default.
    #[default]
    Heuristic,
    /// Stop as soon as `num_beams` hypotheses are finished.
    Done,
    /// Canonical beam search: only stop when no better hypothesis is possible.
    Never,
}

/// Decoding settings, named as in `generation_config.json`.
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// Maximum length of the target sequence, counting the decoder start token.
    pub max_length: usize,
    pub min_length: usize,
    pub num_beams: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    pub decoder_start_token_id: u32,
    pub eos_token_id: u32,
    /// Forced as the last token when `max_length` is reached.
    pub forced_eos_token_id: Option<u32>,
    /// Token sequences that may never be generated.
    pub bad_words_ids: Vec<Vec<u32>>,
}

/// A finished hypothesis: the generated tokens (without the decoder start
/// token, with the final EOS) and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub tokens: Vec<u32>,
    /// Beam search: the length-normalized sum of log-probabilities.
    /// Greedy: the sum of the chosen tokens' log-probabilities.
    pub score: f32,
    /// Greedy only: log-probability of each chosen token (after the logits
    /// processors), as `transformers` reports through `output_scores`.
    pub token_logprobs: Vec<f32>,
}

/// A decoder that advances every live row by one token.
pub trait StepModel {
    /// Feeds one token per row and returns next-token logits, (rows, vocab)
    /// f32, valid until the next call (which may write into their memory).
    /// They are the search's: it may change them in place, so a model must
    /// not hand out memory it reads again.
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor>;
    /// Keeps rows: new row `i` is old row `rows[i]` (rows may repeat; none
    /// at all when a queued run waits for [`StepModel::admit`]).
    fn select_rows(&mut self, rows: &[u32]) -> Result<()>;
    /// Appends `group` rows for each of `sentences` (indices into the run's
    /// inputs) after the current rows, each at its own first position: a
    /// queued run ([`generate_queued`]) refills the rows that finished
    /// sentences left. Models that decode a fixed batch keep this default.
    fn admit(&mut self, sentences: &[usize], group: usize) -> Result<()> {
        let _ = (sentences, group);
        bail!("internal error: this model decodes a fixed batch and takes no sentences mid-run")
    }
}

/// Where a run's sentences come from: `next..total` wait for rows, at most
/// `width` decode at once; `finished(n)` hears of each step's `n` finished
/// sentences (0 included, so a caller can stop a run between steps by
/// returning an error).
struct Feed<'a> {
    total: usize,
    width: usize,
    next: usize,
    finished: &'a mut dyn FnMut(usize) -> Result<()>,
}

impl Feed<'_> {
    fn pending(&self) -> bool {
        self.next < self.total
    }

    /// Admits waiting sentences into the free rows of a batch of `live`
    /// sentences (`group` rows each) and returns them, in row order.
    fn refill(
        &mut self,
        model: &mut dyn StepModel,
        live: usize,
        group: usize,
    ) -> Result<Vec<usize>> {
        let take = self.width.saturating_sub(live).min(self.total - self.next);
        if take == 0 {
            return Ok(Vec::new());
        }
        let newcomers: Vec<usize> = (self.next..self.next + take).collect();
        model.admit(&newcomers, group)?;
        self.next += take;
        Ok(newcomers)
    }
}

/// Decodes a batch of `batch` sentences whose encoder state the model holds
/// (one row per sentence), greedily or with beam search per `cfg.num_beams`.
pub fn generate(
    model: &mut dyn StepModel,
    batch: usize,
    cfg: &GenerationConfig,
) -> Result<Vec<Hypothesis>> {
    let mut feed = Feed {
        total: batch,
        width: batch,
        next: batch,
        finished: &mut |_| Ok(()),
    };
    run(model, &mut feed, cfg)
}

/// Decodes `total` sentences that the model takes in as rows free up
/// ([`StepModel::admit`], in input order), `width` at a time (per
/// sentence: `num_beams` rows), starting from a model with no rows.
/// Continuous batching: a finished sentence's rows go to the next waiting
/// one at once, so the batch stays full until the queue runs dry, where a
/// fixed batch shrinks to its slowest sentence. Each sentence's search is
/// the one [`generate`] gives it: rows never interact. `finished(n)` is
/// called after every step with the sentences that step finished (often
/// 0); an error from it stops the run.
pub fn generate_queued(
    model: &mut dyn StepModel,
    total: usize,
    width: usize,
    cfg: &GenerationConfig,
    finished: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Vec<Hypothesis>> {
    let mut feed = Feed {
        total,
        width: width.max(1),
        next: 0,
        finished,
    };
    run(model, &mut feed, cfg)
}

fn run(
    model: &mut dyn StepModel,
    feed: &mut Feed,
    cfg: &GenerationConfig,
) -> Result<Vec<Hypothesis>> {
    if cfg.max_length < 2 {
        bail!("max_length must be at least 2 (the start token and one more)");
    }
    if feed.total == 0 {
        return Ok(Vec::new());
    }
    if cfg.num_beams <= 1 {
        greedy(model, feed, cfg)
    } else {
        beam_search(model, feed, cfg)
    }
}

/// The logits processors that `transformers` builds from these settings:
/// bad words, minimum length, and the forced EOS at the last position.
fn process(scores: &mut [f32], generated: &[u32], cur_len: usize, cfg: &GenerationConfig) {
    for token in banned(generated, cur_len, cfg) {
        if let Some(s) = scores.get_mut(token as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
    if let Some(eos) = cfg.forced_eos_token_id {
        if forces_eos(cur_len, cfg) {
            scores.fill(f32::NEG_INFINITY);
            if let Some(s) = scores.get_mut(eos as usize) {
                *s = 0.0;
            }
        }
    }
}

/// The tokens that the bad-words and minimum-length processors ban after
/// `generated` (the forced EOS aside).
fn banned(generated: &[u32], cur_len: usize, cfg: &GenerationConfig) -> Vec<u32> {
    let mut out: Vec<u32> = cfg
        .bad_words_ids
        .iter()
        .filter_map(|bad| bad.split_last())
        .filter(|(_, prefix)| generated.ends_with(prefix))
        .map(|(&last, _)| last)
        .collect();
    if cur_len < cfg.min_length {
        out.push(cfg.eos_token_id);
    }
    out
}

/// The step's logits stay on their device, and only the few numbers each
/// row's search needs come back ([`crate::device::search`]): on a GPU, except
/// at the forced-EOS step, whose scores do not depend on the logits.
/// `forced`: how many of the step's rows are at their forced-EOS position.
fn search_on_device(logits: &Tensor, forced: usize) -> bool {
    #[cfg(test)]
    if DEVICE_SEARCH_ON_CPU.with(|c| c.get()) {
        return forced == 0;
    }
    !logits.device().is_cpu() && forced == 0
}

/// Host logits for a step that [`search_on_device`] leaves to the host: the
/// logits themselves on the CPU, or where any row still needs them; zeros
/// when every row is at its forced EOS (which overwrites every score), so
/// nothing is copied from the device.
fn step_scores(logits: &Tensor, all_forced: bool) -> Result<(Vec<f32>, usize)> {
    if logits.device().is_cpu() || !all_forced {
        return host_logits(logits);
    }
    let (rows, vocab) = logits.dims2()?;
    Ok((vec![0f32; rows * vocab], vocab))
}

/// At this step the forced-EOS processor replaces every score.
fn forces_eos(cur_len: usize, cfg: &GenerationConfig) -> bool {
    cfg.forced_eos_token_id.is_some() && cur_len == cfg.max_length - 1
}

/// `max` and `ln(sum(exp(x - max)))` of a row, the sum taken in f64.
/// `None` when every score is -inf.
fn log_sum_exp(row: &[f32]) -> Option<(f32, f32)> {
    if let Some(kernels) = crate::models::qlinear::kernels() {
        return kernels.log_sum_exp(row);
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return None;
    }
    let sum: f64 = row.iter().map(|&x| f64::from((x - max).exp())).sum();
    Some((max, sum.ln() as f32))
}

fn log_softmax(row: &mut [f32]) {
    if let Some((max, log_sum)) = log_sum_exp(row) {
        for x in row.iter_mut() {
            *x = *x - max - log_sum;
        }
    }
}

/// The step's logits on the host as one row-major buffer: one copy, no
/// per-row allocations (a row is a whole vocabulary, ~58k floats).
/// A (rows, vocab) view of a contiguous (vocab, rows) tensor, which the
/// model may return, is copied out as is and transposed here in cache-sized
/// blocks.
fn host_logits(logits: &Tensor) -> Result<(Vec<f32>, usize)> {
    let (rows, vocab) = logits.dims2()?;
    let transposed = logits.t()?;
    if logits.is_contiguous() || rows == 1 || !transposed.is_contiguous() {
        return Ok((logits.flatten_all()?.to_vec1::<f32>()?, vocab));
    }
    let by_token = transposed.flatten_all()?.to_vec1::<f32>()?;
    Ok((transpose(&by_token, vocab, rows), vocab))
}

/// Row-major (rows, cols) → row-major (cols, rows), in square blocks so that
/// reads and writes both stay in cache.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const BLOCK: usize = 32;
    let mut out = vec![0f32; data.len()];
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                for c in c0..(c0 + BLOCK).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

/// Applies `f` to every row of a step's host scores (its index and the row,
/// which `f` may change), in parallel as [`map_rows`]. A contiguous f32 CPU
/// tensor's rows are changed in place (the step's logits are the search's
/// until the next step, [`StepModel::step`]): no copy of 232 KB per row, nor
/// of the whole step (60 MB at 256 beams of a 58k vocabulary). Other steps
/// are copied to the host once and their rows changed there.
fn map_step_rows<T, F>(logits: &Tensor, all_forced: bool, f: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize, &mut [f32]) -> T + Sync + Send,
{
    if let Some(out) = map_contiguous_rows_mut(logits, &f)? {
        return Ok(out);
    }
    let (mut scores, vocab) = step_scores(logits, all_forced)?;
    Ok(map_rows(&mut scores, vocab, f))
}

/// `f` over the rows of a contiguous f32 CPU step, changed in place through
/// candle's in-place op (the one way to write a tensor's memory); `None` for
/// any other step.
fn map_contiguous_rows_mut<T, F>(logits: &Tensor, f: F) -> Result<Option<Vec<T>>>
where
    T: Send,
    F: Fn(usize, &mut [f32]) -> T + Sync + Send,
{
    use candle_core::{CpuStorage, DType, Layout};
    struct Rows<F, T> {
        f: F,
        vocab: usize,
        out: std::cell::Cell<Option<Vec<T>>>,
    }
    impl<T, F> candle_core::InplaceOp1 for Rows<F, T>
    where
        T: Send,
        F: Fn(usize, &mut [f32]) -> T + Sync + Send,
    {
        fn name(&self) -> &'static str {
            "search-rows"
        }

        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
            let (CpuStorage::F32(data), Some((start, end))) =
                (storage, layout.contiguous_offsets())
            else {
                candle_core::bail!("search-rows: logits are not contiguous f32");
            };
            self.out
                .set(Some(map_rows(&mut data[start..end], self.vocab, &self.f)));
            Ok(())
        }
    }
    if !logits.device().is_cpu() || logits.dtype() != DType::F32 || !logits.is_contiguous() {
        return Ok(None);
    }
    let (_, vocab) = logits.dims2()?;
    let rows = Rows {
        f,
        vocab,
        out: std::cell::Cell::new(None),
    };
    logits.inplace_op1(&rows)?;
    Ok(rows.out.take())
}

/// [`map_step_rows`] for a read-only `f`: a contiguous f32 CPU tensor's rows
/// are handed over in place, with no copy at all.
fn map_step_rows_ref<T, F>(logits: &Tensor, all_forced: bool, f: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize, &[f32]) -> T + Sync + Send,
{
    if let Some(out) = map_contiguous_rows(logits, &f)? {
        return Ok(out);
    }
    let (mut scores, vocab) = step_scores(logits, all_forced)?;
    Ok(map_rows(&mut scores, vocab, |i, row| f(i, row)))
}

/// `f` over the rows of a contiguous f32 CPU step, read in place (in
/// parallel as [`map_rows`]); `None` for any other step.
fn map_contiguous_rows<T, F>(logits: &Tensor, f: F) -> Result<Option<Vec<T>>>
where
    T: Send,
    F: Fn(usize, &[f32]) -> T + Sync + Send,
{
    use candle_core::{CpuStorage, DType, Storage};
    if !logits.device().is_cpu() || logits.dtype() != DType::F32 {
        return Ok(None);
    }
    let (rows, vocab) = logits.dims2()?;
    let (storage, layout) = logits.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
        (&*storage, layout.contiguous_offsets())
    else {
        return Ok(None);
    };
    let data = &data[start..end];
    Ok(Some(each_row(rows, rows * vocab, |i| {
        f(i, &data[i * vocab..(i + 1) * vocab])
    })))
}

/// Applies `f` to every row (its index and scores), in parallel: rows are
/// independent.
fn map_rows<T, F>(data: &mut [f32], vocab: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize, &mut [f32]) -> T + Sync + Send,
{
    let vocab = vocab.max(1);
    let rows = data.len() / vocab;
    let base = SharedOut(data.as_mut_ptr());
    each_row(rows, rows * vocab, |i| {
        // SAFETY: row i is data[i * vocab..(i + 1) * vocab], and each_row
        // hands every i to one thread once.
        let row = unsafe { std::slice::from_raw_parts_mut(base.ptr().add(i * vocab), vocab) };
        f(i, row)
    })
}

/// `f(i)` for `i` in `0..rows` (`work` scores in all), on the threads the
/// products run on (candle's pool, [`for_ranges`]; small steps on this
/// thread alone). Not on rayon's pool: its threads would be a second set on
/// the same cores, where candle's worker spins for its next product.
fn each_row<T: Send>(rows: usize, work: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let mut out: Vec<std::mem::MaybeUninit<T>> = Vec::with_capacity(rows);
    // SAFETY: uninitialized MaybeUninit values are valid.
    unsafe { out.set_len(rows) };
    let slots = SharedOut(out.as_mut_ptr());
    for_ranges(rows, work, 1, |range| {
        for i in range {
            // SAFETY: the ranges split 0..rows without overlap.
            unsafe { slots.ptr().add(i).write(std::mem::MaybeUninit::new(f(i))) };
        }
    });
    // SAFETY: for_ranges covered 0..rows: every slot is written.
    out.into_iter()
        .map(|v| unsafe { v.assume_init() })
        .collect()
}

/// The greedy choice of one row: the processed scores' first maximum (as
/// torch.argmax) and its log-probability, without copying the row. The
/// banned tokens cut the row into runs, each reduced by [`log_sum_exp`] and
/// the runs combined; a forced EOS is the only choice left.
fn greedy_pick(
    scores: &[f32],
    generated: &[u32],
    cur_len: usize,
    cfg: &GenerationConfig,
) -> (usize, f32) {
    if let Some(eos) = cfg.forced_eos_token_id {
        if forces_eos(cur_len, cfg) {
            return match (eos as usize) < scores.len() {
                true => (eos as usize, 0.0),
                false => (0, f32::NEG_INFINITY),
            };
        }
    }
    let mut cuts: Vec<usize> = banned(generated, cur_len, cfg)
        .into_iter()
        .map(|t| t as usize)
        .filter(|&t| t < scores.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    // (start, end, max, log-sum) of every run holding a finite score.
    let mut runs: Vec<(usize, usize, f32, f32)> = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for end in cuts.iter().copied().chain([scores.len()]) {
        if let Some((max, log_sum)) = log_sum_exp(&scores[start..end]) {
            runs.push((start, end, max, log_sum));
        }
        start = end + 1;
    }
    let Some(max) = runs.iter().map(|r| r.2).reduce(f32::max) else {
        return (0, f32::NEG_INFINITY);
    };
    let sum: f64 = runs
        .iter()
        .map(|&(_, _, m, l)| (f64::from(l) + f64::from(m) - f64::from(max)).exp())
        .sum();
    let log_sum = sum.ln() as f32;
    for &(start, end, m, _) in &runs {
        if m == max {
            if let Some(i) = scores[start..end].iter().position(|&v| v == max) {
                let token = start + i;
                return (token, scores[token] - max - log_sum);
            }
        }
    }
    // A NaN somewhere kept the maximum from being found: the old fold.
    let mut processed = scores.to_vec();
    process(&mut processed, generated, cur_len, cfg);
    let (token, _) =
        processed
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &s)| {
                if s > best.1 {
                    (i, s)
                } else {
                    best
                }
            });
    (token, processed[token] - max - log_sum)
}

fn greedy(
    model: &mut dyn StepModel,
    feed: &mut Feed,
    cfg: &GenerationConfig,
) -> Result<Vec<Hypothesis>> {
    let mut hyps = vec![
        Hypothesis {
            tokens: Vec::new(),
            score: 0.0,
            token_logprobs: Vec::new(),
        };
        feed.total
    ];
    // Sentences still decoding, in state-row order; each at its own length
    // (the start token and what it generated), as sentences join mid-run.
    let mut live: Vec<usize> = (0..feed.next).collect();
    let cur_len = |hyp: &Hypothesis| hyp.tokens.len() + 1;
    loop {
        live.extend(feed.refill(model, live.len(), 1)?);
        if live.is_empty() {
            break;
        }
        let last: Vec<u32> = live
            .iter()
            .map(|&i| {
                hyps[i]
                    .tokens
                    .last()
                    .copied()
                    .unwrap_or(cfg.decoder_start_token_id)
            })
            .collect();
        let step = model.step(&last)?;
        let forced = live
            .iter()
            .filter(|&&i| forces_eos(cur_len(&hyps[i]), cfg))
            .count();
        let picks = if search_on_device(&step, forced) {
            let banned: Vec<Vec<u32>> = live
                .iter()
                .map(|&i| banned(&hyps[i].tokens, cur_len(&hyps[i]), cfg))
                .collect();
            crate::device::search::greedy_picks(&step, &banned)?
        } else {
            // (token, log-probability) per row, read in place: the argmax of
            // the processed scores and its log-softmax.
            let (hyps, live) = (&hyps, &live);
            map_step_rows_ref(&step, forced == live.len(), |row, scores| {
                let hyp = &hyps[live[row]];
                greedy_pick(scores, &hyp.tokens, cur_len(hyp), cfg)
            })?
        };
        let mut keep = Vec::with_capacity(live.len());
        for (row, &(token, logprob)) in picks.iter().enumerate() {
            let hyp = &mut hyps[live[row]];
            hyp.tokens.push(token as u32);
            hyp.token_logprobs.push(logprob);
            hyp.score += logprob;
            if token as u32 != cfg.eos_token_id && cur_len(hyp) < cfg.max_length {
                keep.push(row);
            }
        }
        (feed.finished)(live.len() - keep.len())?;
        if keep.len() != live.len() {
            if keep.is_empty() && !feed.pending() {
                break;
            }
            let order = compact(&keep);
            model.select_rows(&order.iter().map(|&r| r as u32).collect::<Vec<_>>())?;
            live = order.iter().map(|&r| live[r]).collect();
        }
    }
    Ok(hyps)
}

/// The kept slots `keep` (ascending) in the order that moves fewest: a
/// kept slot below `keep.len()` stays where it is, and each freed slot
/// there takes one of the kept slots past the end. The model then copies
/// only those, not every row after a finished one.
fn compact(keep: &[usize]) -> Vec<usize> {
    let n = keep.len();
    let mut movers = keep.iter().copied().filter(|&k| k >= n).rev();
    let mut order: Vec<usize> = (0..n).collect();
    let mut kept = keep.iter().copied().take_while(|&k| k < n).peekable();
    for (slot, o) in order.iter_mut().enumerate() {
        if kept.peek() == Some(&slot) {
            kept.next();
        } else {
            *o = movers.next().unwrap_or(slot);
        }
    }
    order
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the device search on the CPU, to compare it
    /// with the host search.
    static DEVICE_SEARCH_ON_CPU: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
mod tests;
