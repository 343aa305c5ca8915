//! Building blocks shared by the quantized decoder models: a KV cache that
//! grows in place, lazily grown RoPE tables, causal (optionally sliding)
//! masks, and grouped-query attention without copying keys per head.

use super::qlinear::avx2::CacheRows;
use super::qlinear::{gated, GateAct, QLinear};
use candle_core::{DType, Device, Result, Tensor};

/// Keys and values of one attention layer, stored as `(1, kv_heads, capacity, head_dim)`
/// buffers that are written in place. Capacity doubles when full, so a long
/// generation costs amortised O(1) copies per token instead of re-concatenating
/// the whole cache at every step.
///
/// With a `window` (sliding-window attention), positions that no future query
/// can see are dropped when the buffer would otherwise have to grow, so a local
/// layer's memory stays bounded by about twice the window.
#[derive(Debug, Clone)]
pub struct KvCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    /// Absolute position of the first stored entry.
    start_pos: usize,
    /// Number of stored entries.
    len: usize,
    window: Option<usize>,
}

/// What a block of queries may attend to, as returned by [`KvCache::append`].
pub struct KvView {
    pub k: Tensor,
    pub v: Tensor,
    /// Absolute position of the first key in `k`.
    pub first_pos: usize,
}

const MIN_CAPACITY: usize = 256;

impl KvCache {
    pub fn new(window: Option<usize>) -> Self {
        Self {
            k: None,
            v: None,
            start_pos: 0,
            len: 0,
            window,
        }
    }

    pub fn reset(&mut self) {
        self.k = None;
        self.v = None;
        self.start_pos = 0;
        self.len = 0;
    }

    /// The position the next appended entry will have.
    pub fn next_pos(&self) -> usize {
        self.start_pos + self.len
    }

    fn capacity(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Stores `k`, `v` (shape `(1, kv_heads, seq, head_dim)`) for positions
    /// `pos..pos + seq` and returns the keys and values the queries at those
    /// positions may attend to (all cached ones, or the window's).
    pub fn append(&mut self, k: &Tensor, v: &Tensor, pos: usize) -> Result<KvView> {
        if pos == 0 {
            self.reset();
        } else if pos < self.next_pos() && pos >= self.start_pos {
            // Rewind (e.g. re-running the last token): forget what follows.
            self.len = pos - self.start_pos;
        } else if pos != self.next_pos() {
            candle_core::bail!(
                "KV cache holds positions {}..{}, cannot continue at {pos}",
                self.start_pos,
                self.next_pos()
            )
        }
        let seq = k.dim(2)?;
        // The earliest key that the first new query (at `pos`) may see.
        let keep_from = match self.window {
            Some(w) => (pos + 1).saturating_sub(w).max(self.start_pos),
            None => self.start_pos,
        };
        let needed = self.len + seq;
        if needed > self.capacity() {
            self.make_room(k, v, keep_from, seq)?;
        }
        let (kb, vb) = match (&self.k, &self.v) {
            (Some(kb), Some(vb)) => (kb, vb),
            _ => candle_core::bail!("KV cache buffer missing after allocation"),
        };
        kb.slice_set(&k.contiguous()?, 2, self.len)?;
        vb.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len += seq;
        let skip = keep_from - self.start_pos;
        let visible = self.len - skip;
        let (mut kv, mut vv) = (kb.narrow(2, skip, visible)?, vb.narrow(2, skip, visible)?);
        if !kv.device().is_cpu() {
            // The CPU matmul reads strided views directly; other back-ends want them packed.
            kv = kv.contiguous()?;
            vv = vv.contiguous()?;
        }
        Ok(KvView {
            k: kv,
            v: vv,
            first_pos: keep_from,
        })
    }

    /// Reallocates the buffers so `seq` more entries fit, dropping entries
    /// before `keep_from` (those outside every future query's window).
    fn make_room(&mut self, k: &Tensor, v: &Tensor, keep_from: usize, seq: usize) -> Result<()> {
        let drop = keep_from - self.start_pos;
        let kept = self.len - drop;
        let new_cap = (2 * (kept + seq)).max(MIN_CAPACITY).max(self.capacity());
        let (b, heads, _, hd) = k.dims4()?;
        let fresh =
            |like: &Tensor| Tensor::zeros((b, heads, new_cap, hd), like.dtype(), like.device());
        let (nk, nv) = (fresh(k)?, fresh(v)?);
        if let (Some(ok), Some(ov)) = (&self.k, &self.v) {
            if kept > 0 {
                nk.slice_set(&ok.narrow(2, drop, kept)?.contiguous()?, 2, 0)?;
                nv.slice_set(&ov.narrow(2, drop, kept)?.contiguous()?, 2, 0)?;
            }
        }
        self.k = Some(nk);
        self.v = Some(nv);
        self.start_pos = keep_from;
        self.len = kept;
        Ok(())
    }
}

/// cos/sin tables for rotary position embeddings, computed only up to the
/// positions actually used (doubling as generation goes on), never beyond
/// the model's context.
#[derive(Debug, Clone)]
pub struct RopeTable {
    inv_freq: Vec<f32>,
    cos: Option<Tensor>,
    sin: Option<Tensor>,
    rows: usize,
    max_rows: usize,
    device: Device,
}

impl RopeTable {
    /// `rot_dim` rotated dimensions, base `theta`; `freq_factors` (Llama 3's
    /// `rope_freqs.weight`) divide the frequencies when given.
    pub fn new(
        rot_dim: usize,
        theta: f32,
        freq_factors: Option<&[f32]>,
        max_rows: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut inv_freq: Vec<f32> = (0..rot_dim)
            .step_by(2)
            .map(|i| 1f32 / theta.powf(i as f32 / rot_dim as f32))
            .collect();
        if let Some(f) = freq_factors {
            if f.len() != inv_freq.len() {
                candle_core::bail!(
                    "rope_freqs has {} factors, expected {}",
                    f.len(),
                    inv_freq.len()
                )
            }
            for (x, f) in inv_freq.iter_mut().zip(f) {
                *x /= *f;
            }
        }
        Ok(Self {
            inv_freq,
            cos: None,
            sin: None,
            rows: 0,
            max_rows,
            device: device.clone(),
        })
    }

    /// `(cos, sin)` of shape `(len, rot_dim / 2)` for positions `pos..pos + len`.
    pub fn get(&mut self, pos: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let end = pos + len;
        if end > self.max_rows {
            candle_core::bail!(
                "position {} is past the model's context of {} tokens",
                end - 1,
                self.max_rows
            )
        }
        if end > self.rows {
            let rows = end
                .next_power_of_two()
                .max(MIN_CAPACITY)
                .min(self.max_rows)
                .max(end);
            let half = self.inv_freq.len();
            let mut angles = Vec::with_capacity(rows * half);
            for p in 0..rows {
                angles.extend(self.inv_freq.iter().map(|f| p as f32 * f));
            }
            let angles = Tensor::from_vec(angles, (rows, half), &self.device)?;
            self.cos = Some(angles.cos()?);
            self.sin = Some(angles.sin()?);
            self.rows = rows;
        }
        match (&self.cos, &self.sin) {
            (Some(c), Some(s)) => Ok((c.narrow(0, pos, len)?, s.narrow(0, pos, len)?)),
            _ => candle_core::bail!("rope table missing"),
        }
    }
}

/// Additive mask `(seq, kv_len)` for queries at `pos..pos + seq` over keys at
/// `first_key..first_key + kv_len`: `-inf` for future keys and, with a
/// `window`, for keys `window` or more positions back (a query sees itself and
/// the `window - 1` keys before it, as in transformers and llama.cpp).
/// `None` when nothing is masked.
pub fn attention_mask(
    pos: usize,
    seq: usize,
    first_key: usize,
    kv_len: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let mut any = false;
    let mut data = Vec::with_capacity(seq * kv_len);
    for i in 0..seq {
        let q = pos + i;
        for j in 0..kv_len {
            let key = first_key + j;
            let hidden = key > q || window.is_some_and(|w| q >= key + w);
            any |= hidden;
            data.push(if hidden { f32::NEG_INFINITY } else { 0.0 });
        }
    }
    if !any {
        return Ok(None);
    }
    Tensor::from_vec(data, (seq, kv_len), device).map(Some)
}

/// Scaled dot-product attention with grouped-query heads.
///
/// `q`: `(1, n_head, seq, d)`; `k`, `v`: `(1, n_kv, kv_len, d)` with
/// `n_head = n_kv * groups`. Query heads that share a KV head are folded into
/// the row dimension, so keys and values are never repeated per head.
/// Returns `(1, seq, n_head * d)`.
pub fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
) -> Result<Tensor> {
    let (b, n_head, seq, d) = q.dims4()?;
    let (_, n_kv, kv_len, _) = k.dims4()?;
    if n_kv == 0 || n_head % n_kv != 0 {
        candle_core::bail!("{n_head} query heads cannot share {n_kv} KV heads")
    }
    let groups = n_head / n_kv;
    if b == 1 && seq == 1 && mask.is_none() {
        if let Some(out) = decode_attention_cpu(q, k, v, scale, groups)? {
            return Ok(out);
        }
    }
    let q = (q.contiguous()? * scale)?.reshape((b, n_kv, groups * seq, d))?;
    let att = q.matmul(&k.t()?)?;
    let att = match mask {
        None => att,
        Some(m) => att
            .reshape((b, n_kv, groups, seq, kv_len))?
            .broadcast_add(m)?
            .reshape((b, n_kv, groups * seq, kv_len))?,
    };
    let att = candle_nn::ops::softmax_last_dim(&att)?;
    let out = att.matmul(v)?; // (b, n_kv, groups * seq, d)
    out.reshape((b, n_head, seq, d))?
        .transpose(1, 2)?
        .reshape((b, seq, n_head * d))
}

/// Attention of one new token over the cache, on the CPU in plain loops.
///
/// Decoding asks for a handful of dot products per head; candle would spend
/// more on dispatching its seven tensor ops (scale, matmul, softmax, matmul,
/// reshapes) and the gemm set-up than on the arithmetic. Returns `None` (use
/// the tensor path) without AVX2, and for anything but f32 tensors in CPU
/// memory with packed rows.
fn decode_attention_cpu(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    groups: usize,
) -> Result<Option<Tensor>> {
    let Some(simd) = super::qlinear::kernels() else {
        return Ok(None);
    };
    if !q.device().is_cpu() || q.dtype() != DType::F32 {
        return Ok(None);
    }
    let (_, n_head, _, d) = q.dims4()?;
    let (_, _, kv_len, _) = k.dims4()?;
    if !d.is_multiple_of(8) {
        return Ok(None);
    }
    let query: Vec<f32> = q.flatten_all()?.to_vec1()?;
    // Work items: a KV head's query heads, in `split` parts where there are
    // fewer KV heads than threads (gemma-3-270m has one), so that every
    // thread takes a share.
    let threads = candle_core::utils::barrier_pool().n_workers() + 1;
    let n_kv = n_head / groups;
    let split = threads.div_ceil(n_kv).min(groups);
    let per = groups.div_ceil(split);
    let work = n_head * kv_len * d * 2;
    let out = with_cpu_caches(k, v, |keys, values| {
        let mut out = vec![0f32; n_head * d];
        let out_at = super::qlinear::SharedOut(out.as_mut_ptr());
        super::qlinear::for_ranges(n_kv * split, work, 1, |items| {
            let mut scores = vec![0f32; per * kv_len];
            for item in items {
                let (g, part) = (item / split, item % split);
                let first = g * groups + part * per;
                let heads = first..(g * groups + groups).min(first + per);
                if heads.is_empty() {
                    continue;
                }
                let span = heads.start * d..heads.end * d;
                // SAFETY: each item writes only its own query heads' outputs.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(out_at.ptr().add(span.start), span.len())
                };
                simd.attend(
                    &query[span],
                    d,
                    keys.rows(0, g),
                    values.rows(0, g),
                    kv_len,
                    scale as f32,
                    &mut scores,
                    out,
                );
            }
        });
        out
    })?;
    out.map(|out| Tensor::from_vec(out, (1, 1, n_head * d), q.device()))
        .transpose()
}

/// A rank-4 f32 cache tensor (rows, heads, positions, head_dim) in CPU
/// memory with packed rows: what the CPU attention kernel reads.
pub struct CpuCache<'a> {
    data: &'a [f32],
    start: usize,
    stride: [usize; 3],
}

impl CpuCache<'_> {
    /// The positions of row `row`, head `head`.
    pub fn rows(&self, row: usize, head: usize) -> CacheRows<'_> {
        CacheRows {
            data: self.data,
            start: self.start + row * self.stride[0] + head * self.stride[1],
            stride: self.stride[2],
        }
    }
}

/// Runs `f` over the data of the key and value caches `k` and `v` when
/// both are rank-4 f32 tensors in CPU memory with packed rows (the last
/// dimension contiguous); `None` (use the tensor path) otherwise.
pub fn with_cpu_caches<R>(
    k: &Tensor,
    v: &Tensor,
    f: impl FnOnce(CpuCache, CpuCache) -> R,
) -> Result<Option<R>> {
    use candle_core::{CpuStorage, Layout, Storage};
    if [k, v]
        .iter()
        .any(|t| t.dtype() != DType::F32 || t.rank() != 4)
    {
        return Ok(None);
    }
    let (k_store, k_layout) = k.storage_and_layout();
    let (v_store, v_layout) = v.storage_and_layout();
    let (Storage::Cpu(k_cpu), Storage::Cpu(v_cpu)) = (&*k_store, &*v_store) else {
        return Ok(None);
    };
    fn cache<'a>(cpu: &'a CpuStorage, layout: &Layout) -> Result<Option<CpuCache<'a>>> {
        let s = layout.stride();
        Ok((s[3] == 1).then_some(CpuCache {
            data: cpu.as_slice::<f32>()?,
            start: layout.start_offset(),
            stride: [s[0], s[1], s[2]],
        }))
    }
    let (Some(keys), Some(values)) = (cache(k_cpu, k_layout)?, cache(v_cpu, v_layout)?) else {
        return Ok(None);
    };
    Ok(Some(f(keys, values)))
}

/// Queries, keys and values `(1, heads, seq, head_dim)` of `h` (one pass
/// of the threads for the three products where the weights allow,
/// [`QLinear::forward_all`]).
pub fn project_qkv(
    [wq, wk, wv]: [&QLinear; 3],
    h: &Tensor,
    seq: usize,
    [n_head, n_kv]: [usize; 2],
    head_dim: usize,
) -> Result<[Tensor; 3]> {
    let [q, k, v] = QLinear::forward_all([wq, wk, wv], h)?;
    let heads = |t: Tensor, n: usize| t.reshape((1, seq, n, head_dim))?.transpose(1, 2);
    Ok([heads(q, n_head)?, heads(k, n_kv)?, heads(v, n_kv)?])
}

/// The gated feed-forward's middle, `act(h Wgᵀ) * (h Wuᵀ)`, the two
/// products in one pass of the threads where the weights allow.
pub fn gated_ffn(gate: &QLinear, up: &QLinear, h: &Tensor, act: GateAct) -> Result<Tensor> {
    let [g, u] = QLinear::forward_all([gate, up], h)?;
    gated(&g, &u, act)
}

/// RMS normalisation over the last dimension (packs the input first, as the
/// fast kernel needs).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps)
}

/// A 1-D weight (norms) as an f32 tensor.
pub fn dense_vector(t: candle_core::quantized::QTensor, device: &Device) -> Result<Tensor> {
    t.dequantize(device)?.to_dtype(DType::F32)?.flatten_all()
}

/// The logits of the last position of `(1, seq, vocab)` as `[vocab]` f32.
pub fn last_logits(logits: &Tensor) -> Result<Tensor> {
    let seq = logits.dim(1)?;
    logits
        .narrow(1, seq - 1, 1)?
        .squeeze(1)?
        .squeeze(0)?
        .to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq_tensor(start: usize, len: usize) -> Tensor {
        // (1, 1, len, 2): entry for position p holds [p, p].
        let data: Vec<f32> = (start..start + len)
            .flat_map(|p| [p as f32, p as f32])
            .collect();
        Tensor::from_vec(data, (1, 1, len, 2), &Device::Cpu).unwrap()
    }

    fn positions(t: &Tensor) -> Vec<f32> {
        t.squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn cache_grows_in_place_and_keeps_every_position() {
        let mut cache = KvCache::new(None);
        let view = cache
            .append(&seq_tensor(0, 300), &seq_tensor(0, 300), 0)
            .unwrap();
        assert_eq!(view.first_pos, 0);
        for p in 300..700 {
            let view = cache
                .append(&seq_tensor(p, 1), &seq_tensor(p, 1), p)
                .unwrap();
            assert_eq!(view.k.dim(2).unwrap(), p + 1);
        }
        let view = cache
            .append(&seq_tensor(700, 1), &seq_tensor(700, 1), 700)
            .unwrap();
        let expected: Vec<f32> = (0..=700).map(|p| p as f32).collect();
        assert_eq!(positions(&view.k), expected);
        assert_eq!(positions(&view.v), expected);
    }

    #[test]
    fn sliding_cache_shows_only_the_window_and_stays_bounded() {
        let w = 8;
        let mut cache = KvCache::new(Some(w));
        cache
            .append(&seq_tensor(0, 5), &seq_tensor(0, 5), 0)
            .unwrap();
        for p in 5..2000 {
            let view = cache
                .append(&seq_tensor(p, 1), &seq_tensor(p, 1), p)
                .unwrap();
            let got = positions(&view.k);
            let first = (p + 1).saturating_sub(w);
            assert_eq!(view.first_pos, first);
            assert_eq!(got, (first..=p).map(|x| x as f32).collect::<Vec<_>>());
        }
        assert!(cache.capacity() <= 2 * MIN_CAPACITY, "{}", cache.capacity());
    }

    #[test]
    fn sliding_cache_with_chunks_keeps_what_the_first_query_needs() {
        let w = 4;
        let mut cache = KvCache::new(Some(w));
        cache
            .append(&seq_tensor(0, 10), &seq_tensor(0, 10), 0)
            .unwrap();
        let view = cache
            .append(&seq_tensor(10, 3), &seq_tensor(10, 3), 10)
            .unwrap();
        // The query at 10 sees 7..=10; later ones are limited by the mask.
        assert_eq!(view.first_pos, 7);
        assert_eq!(positions(&view.k), vec![7., 8., 9., 10., 11., 12.]);
        let mask = attention_mask(10, 3, 7, 6, Some(w), &Device::Cpu)
            .unwrap()
            .unwrap();
        let rows: Vec<Vec<f32>> = mask.to_vec2().unwrap();
        let visible = |r: &Vec<f32>| {
            r.iter()
                .map(|x| u8::from(x.is_finite()))
                .collect::<Vec<_>>()
        };
        assert_eq!(visible(&rows[0]), vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(visible(&rows[1]), vec![0, 1, 1, 1, 1, 0]);
        assert_eq!(visible(&rows[2]), vec![0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn cache_refuses_a_gap_and_rewinds() {
        let mut cache = KvCache::new(None);
        cache
            .append(&seq_tensor(0, 4), &seq_tensor(0, 4), 0)
            .unwrap();
        assert!(cache
            .append(&seq_tensor(9, 1), &seq_tensor(9, 1), 9)
            .is_err());
        let view = cache
            .append(&seq_tensor(2, 1), &seq_tensor(2, 1), 2)
            .unwrap();
        assert_eq!(positions(&view.k), vec![0., 1., 2.]);
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn decoding_attention_over_a_cache_view_matches_the_tensor_path() {
        if crate::models::qlinear::kernels().is_none() {
            eprintln!("SKIPPED: no AVX2 on this CPU, the tensor path is the only path");
            return;
        }
        let dev = Device::Cpu;
        // A cache that has grown and holds a strided view: 3 KV heads, 9 query heads.
        let mut cache = KvCache::new(None);
        let k0 = Tensor::randn(0f32, 1., (1, 3, 40, 16), &dev).unwrap();
        let v0 = Tensor::randn(0f32, 1., (1, 3, 40, 16), &dev).unwrap();
        cache.append(&k0, &v0, 0).unwrap();
        let k1 = Tensor::randn(0f32, 1., (1, 3, 1, 16), &dev).unwrap();
        let v1 = Tensor::randn(0f32, 1., (1, 3, 1, 16), &dev).unwrap();
        let view = cache.append(&k1, &v1, 40).unwrap();
        assert!(!view.k.is_contiguous(), "the test needs a strided view");
        let q = Tensor::randn(0f32, 1., (1, 9, 1, 16), &dev).unwrap();
        let fast = decode_attention_cpu(&q, &view.k, &view.v, 0.25, 3)
            .unwrap()
            .expect("the fast path applies");
        // The tensor path, on packed copies so the fast path cannot run.
        let (kc, vc) = (view.k.contiguous().unwrap(), view.v.contiguous().unwrap());
        let q2 = (q.contiguous().unwrap() * 0.25)
            .unwrap()
            .reshape((1, 3, 3, 16))
            .unwrap();
        let att = candle_nn::ops::softmax_last_dim(&q2.matmul(&kc.t().unwrap()).unwrap()).unwrap();
        let want = att.matmul(&vc).unwrap().reshape((1, 1, 144)).unwrap();
        let diff = max_abs_diff(&fast, &want);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn grouped_attention_matches_repeated_heads() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (1, 4, 3, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 1., (1, 2, 5, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1., (1, 2, 5, 8), &dev).unwrap();
        let mask = attention_mask(2, 3, 0, 5, None, &dev).unwrap();
        let got = grouped_attention(&q, &k, &v, mask.as_ref(), 0.5).unwrap();
        // Naive: repeat each KV head for its two query heads.
        let rep = |t: &Tensor| {
            let parts: Vec<Tensor> = (0..2)
                .flat_map(|h| {
                    let x = t.narrow(1, h, 1).unwrap();
                    [x.clone(), x]
                })
                .collect();
            Tensor::cat(&parts, 1).unwrap()
        };
        let att = (q.matmul(&rep(&k).t().unwrap()).unwrap() * 0.5).unwrap();
        let att = att.broadcast_add(mask.as_ref().unwrap()).unwrap();
        let att = candle_nn::ops::softmax_last_dim(&att).unwrap();
        let want = att
            .matmul(&rep(&v))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((1, 3, 32))
            .unwrap();
        let diff = max_abs_diff(&got, &want);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn rope_table_grows_and_stops_at_the_context() {
        let mut rope = RopeTable::new(4, 10000., None, 1000, &Device::Cpu).unwrap();
        let (c, _) = rope.get(0, 10).unwrap();
        assert_eq!(c.dims(), &[10, 2]);
        assert_eq!(rope.rows, MIN_CAPACITY);
        let (c, s) = rope.get(600, 3).unwrap();
        let c: Vec<Vec<f32>> = c.to_vec2().unwrap();
        let s: Vec<Vec<f32>> = s.to_vec2().unwrap();
        assert!((c[1][0] - 601f32.cos()).abs() < 1e-4);
        assert!((s[1][0] - 601f32.sin()).abs() < 1e-4);
        assert!(rope.rows <= 1000);
        assert!(rope.get(999, 2).is_err());
    }
}
