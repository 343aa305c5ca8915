//! Beam search, as `GenerationMixin._beam_search` (transformers v4.57)
//! runs it per batch item, over a fixed batch or a queue ([`super::Feed`]).

use super::{
    banned, compact, forces_eos, log_softmax, log_sum_exp, map_step_rows, process,
    search_on_device, EarlyStopping, Feed, GenerationConfig, Hypothesis, StepModel,
};
use anyhow::Result;

/// Beam search state of one sentence, mirroring the tensors of
/// `GenerationMixin._beam_search` for one batch item.
struct BeamItem {
    running: Vec<Vec<u32>>,
    running_scores: Vec<f32>,
    /// The best `num_beams` finished hypotheses: (tokens, score, is_finished).
    finished: Vec<(Vec<u32>, f32, bool)>,
    improvable: bool,
    /// The running beams' length, the start token included.
    cur_len: usize,
}

impl BeamItem {
    fn new(nb: usize) -> Self {
        Self {
            running: vec![Vec::new(); nb],
            // Only the first beam starts live, so the first step does not
            // pick the same token in every beam.
            running_scores: (0..nb)
                .map(|b| if b == 0 { 0.0 } else { NEG_BIG })
                .collect(),
            finished: vec![(Vec::new(), NEG_BIG, false); nb],
            improvable: true,
            cur_len: 1,
        }
    }
}

/// `transformers` marks impossible continuations by adding this, in f32.
const NEG_BIG: f32 = -1.0e9;

/// The `k` best of `values` in descending order, ties in input order: the
/// same list as a stable descending sort cut to `k`, in one pass that only
/// touches the (small) list of winners.
pub(super) fn top_k_stable(
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
pub(super) fn top_k_row(
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

pub(super) fn top_k_desc(values: &[(f32, usize, u32)], k: usize) -> Vec<(f32, usize, u32)> {
    let mut v = values.to_vec();
    // Stable sort: among equal scores the earlier candidate wins.
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    v.truncate(k);
    v
}

pub(super) fn beam_search(
    model: &mut dyn StepModel,
    feed: &mut Feed,
    cfg: &GenerationConfig,
) -> Result<Vec<Hypothesis>> {
    let nb = cfg.num_beams;
    let k = 2 * nb;
    let lp = cfg.length_penalty;
    // Sentences the model already holds start with `nb` copies of their
    // encoder state; newcomers are admitted with `nb` rows each.
    if feed.next > 0 {
        let expand: Vec<u32> = (0..feed.next as u32)
            .flat_map(|i| std::iter::repeat_n(i, nb))
            .collect();
        model.select_rows(&expand)?;
    }
    let mut items: Vec<BeamItem> = (0..feed.total).map(|_| BeamItem::new(nb)).collect();
    let mut live: Vec<usize> = (0..feed.next).collect();
    loop {
        live.extend(feed.refill(model, live.len(), nb)?);
        if live.is_empty() {
            break;
        }
        let last: Vec<u32> = live
            .iter()
            .flat_map(|&i| {
                items[i]
                    .running
                    .iter()
                    .map(|seq| seq.last().copied().unwrap_or(cfg.decoder_start_token_id))
            })
            .collect();
        let step = model.step(&last)?;
        let forced = live
            .iter()
            .filter(|&&i| forces_eos(items[i].cur_len, cfg))
            .count();
        let mut row_best = if search_on_device(&step, forced) {
            let rows = live.len() * nb;
            let item = |row: usize| &items[live[row / nb]];
            let banned: Vec<Vec<u32>> = (0..rows)
                .map(|row| {
                    let item = item(row);
                    banned(&item.running[row % nb], item.cur_len, cfg)
                })
                .collect();
            let base: Vec<f32> = (0..rows)
                .map(|row| item(row).running_scores[row % nb])
                .collect();
            crate::device::search::beam_candidates(&step, &banned, &base, nb, k)?
        } else {
            // Per beam row: log-softmax, the processors, then the best `k`
            // continuations; rows in parallel.
            let (items, live) = (&items, &live);
            map_step_rows(&step, forced == live.len(), |row, scores| {
                let (item, beam) = (&items[live[row / nb]], row % nb);
                let (base, cur_len) = (item.running_scores[beam], item.cur_len);
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
        // Slots of the sentences that go on, and the beams each continues.
        let mut still_live: Vec<usize> = Vec::with_capacity(live.len());
        let mut source_rows: Vec<Vec<usize>> = Vec::with_capacity(live.len());
        for (slot, &item_idx) in live.iter().enumerate() {
            let item = &mut items[item_idx];
            let cur_len = item.cur_len;
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
            item.cur_len += 1;
            if item.improvable && !done_by_count && !no_continuation {
                still_live.push(slot);
                source_rows.push(source_beams);
            }
        }
        (feed.finished)(live.len() - still_live.len())?;
        if still_live.is_empty() && !feed.pending() {
            break;
        }
        // Surviving sentences (finished ones' slots taken by the last
        // ones, see `compact`), each row from the beam it continues.
        let order = compact(&still_live);
        let mut next_rows: Vec<u32> = Vec::with_capacity(order.len() * nb);
        for &slot in &order {
            let at = still_live.binary_search(&slot).unwrap_or(0);
            next_rows.extend(source_rows[at].iter().map(|&b| (slot * nb + b) as u32));
        }
        live = order.iter().map(|&slot| live[slot]).collect();
        model.select_rows(&next_rows)?;
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
