//! Decoding reductions that run where the logits are.
//!
//! The searches in [`crate::generation`] and the LLM sampler work on the host
//! over each step's logits. On a GPU, copying a whole step's logits back
//! (rows × vocabulary floats: 64 sentences × 4 beams × 58k tokens is 60 MB
//! for Marian) would cost more than the step itself, so there the logits are
//! reduced on the device to the few numbers a search needs: per row the
//! best tokens, their scores and the log-softmax normalizer. Banned tokens
//! (bad words, minimum length, n-gram blocking) are set on the device from
//! a short list per row.
//!
//! These are plain candle ops, so they also run on the CPU, where the tests
//! check them against the host searches; tolk uses them only on a GPU.
//! Ties between equal scores may break differently from the host search on
//! a GPU (candle's CUDA argmax does not always prefer the lower token).

use candle_core::{DType, Result, Tensor};

/// A copy of `logits` (rows, vocab) with the tokens in `banned[row]` set to
/// -inf in each row; `logits` itself if nothing is banned. Tokens past the
/// vocabulary are ignored.
pub fn ban_tokens(logits: &Tensor, banned: &[Vec<u32>]) -> Result<Tensor> {
    let (rows, vocab) = logits.dims2()?;
    if banned.len() != rows {
        candle_core::bail!("ban_tokens: {} ban lists for {rows} rows", banned.len())
    }
    let width = banned.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        return Ok(logits.clone());
    }
    set_values(
        logits,
        &banned
            .iter()
            .map(|row| row.iter().map(|&t| (t, f32::NEG_INFINITY)).collect())
            .collect::<Vec<_>>(),
        vocab,
    )
}

/// A copy of `logits` (rows, vocab) with `values[row]`'s `(token, value)`
/// pairs written into each row.
fn set_values(logits: &Tensor, values: &[Vec<(u32, f32)>], vocab: usize) -> Result<Tensor> {
    let rows = values.len();
    let width = values.iter().map(Vec::len).max().unwrap_or(0).max(1);
    // candle's scatter skips the index u32::MAX: it pads the short rows.
    let mut idx = vec![u32::MAX; rows * width];
    let mut src = vec![0f32; rows * width];
    for (r, row) in values.iter().enumerate() {
        for (j, &(token, value)) in row
            .iter()
            .filter(|(t, _)| (*t as usize) < vocab)
            .enumerate()
        {
            idx[r * width + j] = token;
            src[r * width + j] = value;
        }
    }
    let device = logits.device();
    let idx = Tensor::from_vec(idx, (rows, width), device)?;
    let src = Tensor::from_vec(src, (rows, width), device)?.to_dtype(logits.dtype())?;
    // A fresh buffer: scatter_set writes in place, and `logits` may share
    // its storage with the caller's tensor.
    let out = if logits.is_contiguous() {
        logits.copy()?
    } else {
        logits.contiguous()?
    };
    out.scatter_set(&idx, &src, 1)?;
    Ok(out)
}

/// Per row of `scores` (rows, vocab): the `k` best tokens, best first, and
/// their scores, as (rows, k) u32 and f32 tensors on the same device; `k`
/// is capped at the vocabulary. -inf scores come last; on the CPU, equal
/// scores go in token order.
pub fn top_k(scores: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let (rows, vocab) = scores.dims2()?;
    let k = k.min(vocab).max(1);
    let device = scores.device();
    // A token once taken is set to -inf; banned tokens (-inf) are lifted to
    // the lowest finite value first, so that they still rank above taken
    // ones and no token is picked twice.
    let work = scores.to_dtype(DType::F32)?.maximum(f32::MIN)?;
    let taken = Tensor::full(f32::NEG_INFINITY, (rows, 1), device)?;
    let mut ids = Vec::with_capacity(k);
    let mut values = Vec::with_capacity(k);
    for i in 0..k {
        let best = work.argmax_keepdim(1)?;
        values.push(work.gather(&best, 1)?);
        if i + 1 < k {
            work.scatter_set(&best, &taken, 1)?;
        }
        ids.push(best);
    }
    let values = Tensor::cat(&values, 1)?;
    // Back to -inf for the banned tokens.
    let lifted = values.le(f32::MIN)?;
    let values = lifted.where_cond(
        &Tensor::full(f32::NEG_INFINITY, (rows, k), device)?,
        &values,
    )?;
    Ok((Tensor::cat(&ids, 1)?, values))
}

/// Per row: the maximum and `ln(sum(exp(x - max)))`, as a (rows, 2) f32
/// tensor: the log-softmax of a score `s` is `s - max - log_sum`.
pub fn log_softmax_norm(logits: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(1)?;
    let log_sum = logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()?;
    Tensor::cat(&[max, log_sum], 1)
}

/// Greedy decoding, one step: per row, the best token after banning
/// `banned[row]`, and its log-probability under the log-softmax of the
/// processed scores, as the host search computes them. One copy to the
/// host of four numbers per row.
pub fn greedy_picks(logits: &Tensor, banned: &[Vec<u32>]) -> Result<Vec<(usize, f32)>> {
    let scores = ban_tokens(&logits.to_dtype(DType::F32)?.contiguous()?, banned)?;
    let (tokens, values) = top_k(&scores, 1)?;
    let table = Tensor::cat(
        &[
            tokens.to_dtype(DType::F32)?,
            values,
            log_softmax_norm(&scores)?,
        ],
        1,
    )?
    .to_vec2::<f32>()?;
    Ok(table
        .into_iter()
        .map(|r| {
            let (token, score) = (r[0] as usize, r[1]);
            // Every score -inf: the host search reports the score itself.
            let logprob = if r[2] == f32::NEG_INFINITY {
                score
            } else {
                score - r[2] - r[3]
            };
            (token, logprob)
        })
        .collect())
}

/// Beam search, one step: per row, the `k` best continuations as
/// `(log-softmax score + base[row], row % beams, token)`, best first, the
/// log-softmax taken over the unprocessed row and `banned[row]` then set to
/// -inf, in the host search's f32 arithmetic. One copy to the host of `2k`
/// numbers per row.
pub fn beam_candidates(
    logits: &Tensor,
    banned: &[Vec<u32>],
    base: &[f32],
    beams: usize,
    k: usize,
) -> Result<Vec<Vec<(f32, usize, u32)>>> {
    // Packed once (Marian hands over a transposed view); reductions then
    // read rows in order.
    let logits = logits.to_dtype(DType::F32)?.contiguous()?;
    let rows = logits.dim(0)?;
    let norm = log_softmax_norm(&logits)?;
    let base = Tensor::from_slice(base, (rows, 1), logits.device())?;
    let scores = ban_tokens(&logits, banned)?
        .broadcast_sub(&norm.narrow(1, 0, 1)?)?
        .broadcast_sub(&norm.narrow(1, 1, 1)?)?
        .broadcast_add(&base)?;
    let (tokens, values) = top_k(&scores, k)?;
    let k = tokens.dim(1)?;
    let table = Tensor::cat(&[tokens.to_dtype(DType::F32)?, values], 1)?.to_vec2::<f32>()?;
    Ok(table
        .into_iter()
        .enumerate()
        .map(|(row, r)| {
            (0..k)
                .map(|j| (r[k + j], row % beams.max(1), r[j] as u32))
                .collect()
        })
        .collect())
}

/// The token an LLM picks greedily from `logits` (vocab,) after the host
/// adjusts a few scores: `adjust` gets `(token, score)` for each of
/// `tokens` (read from the device) and returns their new scores. Copies
/// `tokens.len() + 1` numbers to the host, not the vocabulary.
pub fn argmax_adjusted(
    logits: &Tensor,
    tokens: &[u32],
    adjust: impl Fn(u32, f32) -> f32,
) -> Result<u32> {
    let row = logits.to_dtype(DType::F32)?.flatten_all()?.unsqueeze(0)?;
    let vocab = row.dim(1)?;
    let tokens: Vec<u32> = tokens
        .iter()
        .copied()
        .filter(|&t| (t as usize) < vocab)
        .collect();
    let row = if tokens.is_empty() {
        row
    } else {
        let idx = Tensor::new(tokens.as_slice(), row.device())?.unsqueeze(0)?;
        let current = row.gather(&idx, 1)?.flatten_all()?.to_vec1::<f32>()?;
        let new: Vec<(u32, f32)> = tokens
            .iter()
            .zip(current)
            .map(|(&t, s)| (t, adjust(t, s)))
            .collect();
        set_values(&row, &[new], vocab)?
    };
    let (best, _) = top_k(&row, 1)?;
    Ok(best.flatten_all()?.to_vec1::<u32>()?[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits() -> Tensor {
        Tensor::new(
            &[
                [0.5f32, 2.0, -1.0, 2.0, 0.0],
                [1.0, f32::NEG_INFINITY, 3.0, -2.0, 0.25],
            ],
            &Device::Cpu,
        )
        .unwrap()
    }

    #[test]
    fn ban_tokens_sets_minus_infinity_and_leaves_the_input_alone() {
        let l = logits();
        let banned = ban_tokens(&l, &[vec![1, 9], vec![]]).unwrap();
        let rows: Vec<Vec<f32>> = banned.to_vec2().unwrap();
        assert_eq!(rows[0], vec![0.5, f32::NEG_INFINITY, -1.0, 2.0, 0.0]);
        assert_eq!(rows[1][2], 3.0);
        assert_eq!(l.to_vec2::<f32>().unwrap()[0][1], 2.0, "input changed");
    }

    #[test]
    fn top_k_orders_ties_by_token_and_puts_minus_infinity_last() {
        let (ids, values) = top_k(&logits(), 5).unwrap();
        let ids: Vec<Vec<u32>> = ids.to_vec2().unwrap();
        let values: Vec<Vec<f32>> = values.to_vec2().unwrap();
        assert_eq!(ids, vec![vec![1, 3, 0, 4, 2], vec![2, 0, 4, 3, 1]]);
        assert_eq!(values[1][4], f32::NEG_INFINITY);
        assert_eq!(values[0][..2], [2.0, 2.0]);
        // k past the vocabulary is capped.
        assert_eq!(top_k(&logits(), 9).unwrap().0.dims(), &[2, 5]);
    }

    #[test]
    fn greedy_picks_match_a_host_log_softmax() {
        let picks = greedy_picks(&logits(), &[vec![1], vec![]]).unwrap();
        assert_eq!(picks[0].0, 3);
        assert_eq!(picks[1].0, 2);
        let row = [0.5f64, -1.0, 2.0, 0.0];
        let log_sum = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        assert!((f64::from(picks[0].1) - (2.0 - log_sum)).abs() < 1e-5);
    }

    #[test]
    fn argmax_adjusted_sees_the_adjusted_scores() {
        let row = Tensor::new(&[0.5f32, 2.0, -1.0, 1.5], &Device::Cpu).unwrap();
        assert_eq!(argmax_adjusted(&row, &[], |_, s| s).unwrap(), 1);
        assert_eq!(argmax_adjusted(&row, &[1, 7], |_, s| s / 2.0).unwrap(), 3);
        let banned = argmax_adjusted(&row, &[1, 3], |_, _| f32::NEG_INFINITY).unwrap();
        assert_eq!(banned, 0);
    }
}
