//! Greedy and beam-search decoding for encoder-decoder models, matching
//! `transformers`' `generate()` (v4.57) token for token.
//!
//! The search runs on the host over each step's logits; the model behind
//! [`StepModel`] keeps its own caches and is told which rows survive. Each
//! sentence of a batch is searched independently (as in `transformers`,
//! where batch items never interact), and a finished sentence leaves the
//! batch at once, so later steps only pay for sentences still decoding.

use crate::models::qlinear::{for_ranges, SharedOut};
use anyhow::{bail, Result};
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
    /// Keeps rows: new row `i` is old row `rows[i]` (rows may repeat).
    fn select_rows(&mut self, rows: &[u32]) -> Result<()>;
}

/// Decodes a batch of `batch` sentences whose encoder state the model holds
/// (one row per sentence), greedily or with beam search per `cfg.num_beams`.
pub fn generate(
    model: &mut dyn StepModel,
    batch: usize,
    cfg: &GenerationConfig,
) -> Result<Vec<Hypothesis>> {
    if cfg.max_length < 2 {
        bail!("max_length must be at least 2 (the start token and one more)");
    }
    if batch == 0 {
        return Ok(Vec::new());
    }
    if cfg.num_beams <= 1 {
        greedy(model, batch, cfg)
    } else {
        beam_search(model, batch, cfg)
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
fn search_on_device(logits: &Tensor, cur_len: usize, cfg: &GenerationConfig) -> bool {
    #[cfg(test)]
    if DEVICE_SEARCH_ON_CPU.with(|c| c.get()) {
        return !forces_eos(cur_len, cfg);
    }
    !logits.device().is_cpu() && !forces_eos(cur_len, cfg)
}

/// Host logits for a step that [`search_on_device`] leaves to the host: the
/// logits themselves on the CPU; zeros elsewhere (the forced-EOS step
/// overwrites every score), so nothing is copied from the device.
fn step_scores(logits: &Tensor) -> Result<(Vec<f32>, usize)> {
    if logits.device().is_cpu() {
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
fn map_step_rows<T, F>(logits: &Tensor, f: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize, &mut [f32]) -> T + Sync + Send,
{
    if let Some(out) = map_contiguous_rows_mut(logits, &f)? {
        return Ok(out);
    }
    let (mut scores, vocab) = step_scores(logits)?;
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
fn map_step_rows_ref<T, F>(logits: &Tensor, f: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(usize, &[f32]) -> T + Sync + Send,
{
    if let Some(out) = map_contiguous_rows(logits, &f)? {
        return Ok(out);
    }
    let (mut scores, vocab) = step_scores(logits)?;
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
    batch: usize,
    cfg: &GenerationConfig,
) -> Result<Vec<Hypothesis>> {
    let mut hyps = vec![
        Hypothesis {
            tokens: Vec::new(),
            score: 0.0,
            token_logprobs: Vec::new(),
        };
        batch
    ];
    // Sentences still decoding, in state-row order.
    let mut live: Vec<usize> = (0..batch).collect();
    let mut last = vec![cfg.decoder_start_token_id; batch];
    let mut cur_len = 1;
    while !live.is_empty() {
        let step = model.step(&last)?;
        let picks = if search_on_device(&step, cur_len, cfg) {
            let banned: Vec<Vec<u32>> = live
                .iter()
                .map(|&i| banned(&hyps[i].tokens, cur_len, cfg))
                .collect();
            crate::device::search::greedy_picks(&step, &banned)?
        } else {
            // (token, log-probability) per row, read in place: the argmax of
            // the processed scores and its log-softmax.
            let (hyps, live) = (&hyps, &live);
            map_step_rows_ref(&step, |row, scores| {
                greedy_pick(scores, &hyps[live[row]].tokens, cur_len, cfg)
            })?
        };
        let mut keep = Vec::with_capacity(live.len());
        for (row, &(token, logprob)) in picks.iter().enumerate() {
            let hyp = &mut hyps[live[row]];
            hyp.tokens.push(token as u32);
            hyp.token_logprobs.push(logprob);
            hyp.score += logprob;
            if token as u32 != cfg.eos_token_id && cur_len + 1 < cfg.max_length {
                keep.push(row);
            }
        }
        cur_len += 1;
        if keep.len() != live.len() {
            if keep.is_empty() {
                break;
            }
            model.select_rows(&keep.iter().map(|&r| r as u32).collect::<Vec<_>>())?;
            live = keep.iter().map(|&r| live[r]).collect();
        }
        last = live
            .iter()
            .map(|&i| *hyps[i].tokens.last().unwrap_or(&0))
            .collect();
    }
    Ok(hyps)
}

/// Beam search state of one sentence, mirroring the tensors of
/// `GenerationMixin._beam_search` for one batch item.
struct BeamItem {
    running: Vec<Vec<u32>>,
    running_scores: Vec<f32>,
    /// The best `num_beams` finished hypotheses: (tokens, score, is_finished).
    finished: Vec<(Vec<u32>, f32, bool)>,
    improvable: bool,
}

/// `transformers` marks impossible continuations by adding this, in f32.
const NEG_BIG: f32 = -1.0e9;

/// The `k` best of `values` in descending order, ties in input order: the
/// same list as a stable descending sort cut to `k`, in one pass that only
/// touches the (small) list of winners.
fn top_k_stable(
    values: impl Iterator<Item = (f32, usize, u32)>,
    k: usize,
) -> Vec<(f32, usize, u32)> {
    let mut best: Vec<(f32, usize, u32)> = Vec::with_capacity(k + 1);
    for v in values {
        insert_stable(&mut best, v, k);
    }
    best
}

/// One step of [`top_k_stable`]: `v` joins `best` (at most `k`, descending)
/// after every kept value that is not smaller, so earlier inputs win ties.
fn insert_stable(best: &mut Vec<(f32, usize, u32)>, v: (f32, usize, u32), k: usize) {
    use std::cmp::Ordering::{Greater, Less};
    if k == 0 || (best.len() == k && v.0.total_cmp(&best[k - 1].0) != Greater) {
        return;
    }
    let at = best
        .iter()
        .position(|b| b.0.total_cmp(&v.0) == Less)
        .unwrap_or(best.len());
    best.insert(at, v);
    best.truncate(k);
}

/// [`top_k_stable`] of `(((s - max) - log_sum) + base, beam, t)` over the
/// scores `s` of a row: the same values in the same order, with the vector
/// kernel skipping, eight at a time, scores that cannot enter the top `k`
/// (most of a 58k row once `k` are kept).
fn top_k_row(
    scores: &[f32],
    norm: (f32, f32),
    base: f32,
    beam: usize,
    k: usize,
) -> Vec<(f32, usize, u32)> {
    let (max, log_sum) = norm;
    let value = |s: f32| (s - max - log_sum) + base;
    let Some(kernels) = crate::models::qlinear::kernels() else {
        let values = scores.iter().enumerate();
        return top_k_stable(values.map(|(t, &s)| (value(s), beam, t as u32)), k);
    };
    let mut best: Vec<(f32, usize, u32)> = Vec::with_capacity(k + 1);
    let mut t = 0;
    while t < scores.len() && k > 0 {
        if best.len() == k {
            t = kernels.next_not_below(scores, t, (max, log_sum, base), best[k - 1].0);
            if t >= scores.len() {
                break;
            }
        }
        insert_stable(&mut best, (value(scores[t]), beam, t as u32), k);
        t += 1;
    }
    best
}

fn top_k_desc(values: &[(f32, usize, u32)], k: usize) -> Vec<(f32, usize, u32)> {
    let mut v = values.to_vec();
    // Stable sort: among equal scores the earlier candidate wins.
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    v.truncate(k);
    v
}

fn beam_search(
    model: &mut dyn StepModel,
    batch: usize,
    cfg: &GenerationConfig,
) -> Result<Vec<Hypothesis>> {
    let nb = cfg.num_beams;
    let k = 2 * nb;
    let lp = cfg.length_penalty;
    // Every sentence starts with `nb` copies of its encoder state.
    let expand: Vec<u32> = (0..batch as u32)
        .flat_map(|i| std::iter::repeat_n(i, nb))
        .collect();
    model.select_rows(&expand)?;
    let mut items: Vec<BeamItem> = (0..batch)
        .map(|_| BeamItem {
            running: vec![Vec::new(); nb],
            // Only the first beam starts live, so the first step does not
            // pick the same token in every beam.
            running_scores: (0..nb)
                .map(|b| if b == 0 { 0.0 } else { NEG_BIG })
                .collect(),
            finished: vec![(Vec::new(), NEG_BIG, false); nb],
            improvable: true,
        })
        .collect();
    let mut live: Vec<usize> = (0..batch).collect();
    let mut last = vec![cfg.decoder_start_token_id; batch * nb];
    let mut cur_len = 1usize;
    while !live.is_empty() {
        let step = model.step(&last)?;
        let mut row_best = if search_on_device(&step, cur_len, cfg) {
            let rows = live.len() * nb;
            let item = |row: usize| &items[live[row / nb]];
            let banned: Vec<Vec<u32>> = (0..rows)
                .map(|row| banned(&item(row).running[row % nb], cur_len, cfg))
                .collect();
            let base: Vec<f32> = (0..rows)
                .map(|row| item(row).running_scores[row % nb])
                .collect();
            crate::device::search::beam_candidates(&step, &banned, &base, nb, k)?
        } else {
            // Per beam row: log-softmax, the processors, then the best `k`
            // continuations; rows in parallel.
            let (items, live) = (&items, &live);
            map_step_rows(&step, |row, scores| {
                let (item, beam) = (&items[live[row / nb]], row % nb);
                let base = item.running_scores[beam];
                let candidates = |scores: &[f32]| {
                    top_k_stable(
                        scores
                            .iter()
                            .enumerate()
                            .map(|(t, &s)| (s + base, beam, t as u32)),
                        k,
                    )
                };
                if forces_eos(cur_len, cfg) {
                    // The processors overwrite every score at this step.
                    log_softmax(scores);
                    process(scores, &item.running[beam], cur_len, cfg);
                    return candidates(scores);
                }
                // log_softmax, then the processors, as `transformers` orders
                // them; the processors only ban tokens (-inf either way), so
                // they can go first and log_softmax can be applied on the fly
                // in the top-k pass, with the same f32 arithmetic.
                let norm = log_sum_exp(scores);
                process(scores, &item.running[beam], cur_len, cfg);
                match norm {
                    Some(norm) => top_k_row(scores, norm, base, beam, k),
                    None => candidates(scores),
                }
            })?
        };
        let mut next_rows: Vec<u32> = Vec::with_capacity(live.len() * nb);
        let mut still_live = Vec::with_capacity(live.len());
        for (slot, &item_idx) in live.iter().enumerate() {
            let item = &mut items[item_idx];
            // Candidates (accumulated score, source beam, token), best first.
            let mut candidates = Vec::with_capacity(nb * k);
            for beam in 0..nb {
                candidates.append(&mut row_best[slot * nb + beam]);
            }
            let top = top_k_desc(&candidates, k);
            let hits: Vec<bool> = top
                .iter()
                .map(|&(_, _, t)| t == cfg.eos_token_id || cur_len + 1 >= cfg.max_length)
                .collect();

            // Next running beams: the best candidates that did not finish.
            let running_candidates: Vec<(f32, usize, u32)> = top
                .iter()
                .zip(&hits)
                .enumerate()
                .map(|(i, (&(s, _, _), &hit))| (if hit { s + NEG_BIG } else { s }, i, 0))
                .collect();
            let chosen = top_k_desc(&running_candidates, nb);

            // Finished hypotheses: merge the old ones with the new ones.
            let all_finished = item.finished.iter().all(|f| f.2);
            let norm = ((cur_len) as f64).powf(f64::from(lp)) as f32;
            let mut merged: Vec<(f32, usize, u32)> = item
                .finished
                .iter()
                .enumerate()
                .map(|(i, f)| (f.1, i, 0))
                .collect();
            for (i, (&(score, _, _), &hit)) in top.iter().zip(&hits).enumerate() {
                let just_finished = hit && i < nb;
                let mut value = score / norm;
                if all_finished && cfg.early_stopping == EarlyStopping::Done {
                    value += NEG_BIG;
                }
                if !item.improvable {
                    value += NEG_BIG;
                }
                if !just_finished {
                    value += NEG_BIG;
                }
                merged.push((value, nb + i, 0));
            }
            let best = top_k_desc(&merged, nb);
            let new_finished: Vec<(Vec<u32>, f32, bool)> = best
                .iter()
                .map(|&(value, idx, _)| {
                    if idx < nb {
                        let f = &item.finished[idx];
                        (f.0.clone(), value, f.2)
                    } else {
                        let i = idx - nb;
                        let (_, beam, token) = top[i];
                        let mut seq = item.running[beam].clone();
                        seq.push(token);
                        (seq, value, hits[i] && i < nb)
                    }
                })
                .collect();

            let new_running: Vec<Vec<u32>> = chosen
                .iter()
                .map(|&(_, i, _)| {
                    let (_, beam, token) = top[i];
                    let mut seq = item.running[beam].clone();
                    seq.push(token);
                    seq
                })
                .collect();
            let source_beams: Vec<usize> = chosen.iter().map(|&(_, i, _)| top[i].1).collect();
            item.running_scores = chosen.iter().map(|&(s, _, _)| s).collect();
            item.running = new_running;
            item.finished = new_finished;

            // Can a running beam still beat the worst finished one?
            let hyp_len = if cfg.early_stopping == EarlyStopping::Never && lp > 0.0 {
                cfg.max_length - 1
            } else {
                cur_len
            };
            let best_possible =
                item.running_scores[0] / (hyp_len as f64).powf(f64::from(lp)) as f32;
            let min_finished = item
                .finished
                .iter()
                .map(|f| f.1)
                .fold(f32::INFINITY, f32::min);
            let improvable = item
                .finished
                .iter()
                .any(|f| best_possible > if f.2 { min_finished } else { NEG_BIG });
            item.improvable &= improvable;

            let done_by_count =
                cfg.early_stopping == EarlyStopping::Done && item.finished.iter().all(|f| f.2);
            let no_continuation = hits.iter().all(|&h| h);
            if item.improvable && !done_by_count && !no_continuation {
                still_live.push(item_idx);
                next_rows.extend(source_beams.iter().map(|&b| (slot * nb + b) as u32));
            }
        }
        cur_len += 1;
        live = still_live;
        if live.is_empty() {
            break;
        }
        model.select_rows(&next_rows)?;
        last = live
            .iter()
            .flat_map(|&i| items[i].running.iter().map(|seq| *seq.last().unwrap_or(&0)))
            .collect();
    }
    Ok(items
        .into_iter()
        .map(|item| {
            let (tokens, score, _) = item.finished.into_iter().next().unwrap_or_default();
            Hypothesis {
                tokens,
                score,
                token_logprobs: Vec::new(),
            }
        })
        .collect())
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the device search on the CPU, to compare it
    /// with the host search.
    static DEVICE_SEARCH_ON_CPU: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
mod tests;
