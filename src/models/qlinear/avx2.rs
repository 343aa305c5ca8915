//! What tolk's AVX2 kernels share: the weight formats they take, the CPU
//! check, activations quantized to 8 bits per 32 values (after ggml's
//! `quantize_row_q8_1`), and the host-side vector code of decoding (the
//! attention of one new token over the cache, log-sum-exp, the beam top-k
//! skip). The matrix products are in [`super::packed`].

#[cfg(target_arch = "x86_64")]
use super::SharedOut;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Values per quantization block, in every format here.
pub const QK: usize = 32;

/// Values per K-quant super-block (Q4_K, Q5_K, Q6_K).
pub const QK_K: usize = 256;

/// The weight formats with a kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Q4_1,
    Q5_0,
    Q8_0,
    /// 256-value super-blocks of eight 32-value sub-blocks, 6-bit scales and mins.
    Q4K,
    /// Q4K with a fifth bit per value.
    Q5K,
    /// 256-value super-blocks of sixteen 16-value sub-blocks, 8-bit scales, 6-bit values.
    Q6K,
}

impl Format {
    /// Values per block of ggml's layout.
    pub fn block_values(self) -> usize {
        match self {
            Format::Q4_1 | Format::Q5_0 | Format::Q8_0 => QK,
            Format::Q4K | Format::Q5K | Format::Q6K => QK_K,
        }
    }

    /// Bytes of one block (ggml's layout).
    pub fn block_bytes(self) -> usize {
        match self {
            Format::Q4_1 => 20,
            Format::Q5_0 => 22,
            Format::Q8_0 => 34,
            Format::Q4K => 144,
            Format::Q5K => 176,
            Format::Q6K => 210,
        }
    }

    /// Bytes of one weight row of `k` values (`k` a multiple of [`Self::block_values`]).
    pub fn row_bytes(self, k: usize) -> usize {
        k / self.block_values() * self.block_bytes()
    }
}

/// Proof that the CPU has AVX2, FMA and F16C, checked once; the kernels are
/// only reachable through it.
#[derive(Debug, Clone, Copy)]
pub struct Avx2(());

impl Avx2 {
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
            {
                return Some(Self(()));
            }
        }
        None
    }
}

/// Rows of activations quantized to 8 bits per value with one scale per
/// block of 32 (ggml's Q8_0), with each block's sum of quantized values and
/// that sum scaled (ggml's Q8_1, what Q4_1's minimum multiplies).
#[derive(Debug, Clone, Default)]
pub struct Activations {
    rows: usize,
    blocks: usize,
    qs: Vec<i8>,
    scales: Vec<f32>,
    sums: Vec<i32>,
    scaled_sums: Vec<f32>,
}

impl Activations {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Blocks of 32 per row.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// The 32 quantized values of block `b` of `row`.
    ///
    /// # Panics
    /// When the row or block does not exist.
    pub fn qs_at(&self, row: usize, b: usize) -> *const i8 {
        self.qs[(row * self.blocks + b) * QK..][..QK].as_ptr()
    }

    /// Row `row` whole: its quantized values and the scale of each block.
    ///
    /// # Panics
    /// When the row does not exist.
    pub fn row(&self, row: usize) -> (&[i8], &[f32]) {
        let b = self.blocks;
        (
            &self.qs[row * b * QK..][..b * QK],
            &self.scales[row * b..][..b],
        )
    }

    /// Block `b` of `row`: its scale, the sum of its quantized values, and
    /// that sum times the scale (rounded to f16, as ggml's Q8_1).
    pub fn block(&self, row: usize, b: usize) -> (f32, i32, f32) {
        let idx = row * self.blocks + b;
        (self.scales[idx], self.sums[idx], self.scaled_sums[idx])
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// Quantizes `rows` rows of `k` values each (`k` a multiple of 32) as
    /// ggml's AVX2 `quantize_row_q8_1` does: scale = max|x| / 127, stored as
    /// f16, values rounded to nearest-even.
    pub fn quantize(&self, x: &[f32], rows: usize, k: usize) -> Activations {
        assert!(k.is_multiple_of(QK) && x.len() == rows * k);
        let blocks = k / QK;
        let mut a = Activations {
            rows,
            blocks,
            qs: vec![0; rows * k],
            scales: vec![0.0; rows * blocks],
            sums: vec![0; rows * blocks],
            scaled_sums: vec![0.0; rows * blocks],
        };
        let total = rows * blocks;
        let out = BlockOut {
            qs: SharedOut(a.qs.as_mut_ptr()),
            scales: SharedOut(a.scales.as_mut_ptr()),
            sums: SharedOut(a.sums.as_mut_ptr()),
            scaled_sums: SharedOut(a.scaled_sums.as_mut_ptr()),
        };
        // A prompt's rows are quantized on every thread.
        super::for_ranges(total, rows * k * 4, 1, |range| {
            // SAFETY: `self` proves the CPU features; the ranges are
            // disjoint and within `0..total`, so each block is written by
            // one thread, within the buffers.
            unsafe { quantize_blocks(x, range, &out) }
        });
        a
    }
}

/// Where one KV head's cached rows lie in a flat f32 buffer: row `t` is
/// `data[start + t * stride..][..dim]`.
#[derive(Debug, Clone, Copy)]
pub struct CacheRows<'a> {
    pub data: &'a [f32],
    pub start: usize,
    pub stride: usize,
}

impl CacheRows<'_> {
    fn holds(&self, rows: usize, dim: usize) -> bool {
        rows == 0
            || (rows - 1)
                .checked_mul(self.stride)
                .and_then(|o| o.checked_add(self.start + dim))
                .is_some_and(|end| end <= self.data.len())
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// Softmax attention of the query heads sharing one KV head (`queries`:
    /// `heads × dim`, `out` the same) over `rows` cached keys and values.
    /// Each key and value row is read once for all the heads: decoding is
    /// bound by reading the cache, not by arithmetic. `dim` must be a
    /// multiple of 8; `scores` is scratch space of `heads × rows`.
    #[allow(clippy::too_many_arguments)]
    pub fn attend(
        &self,
        queries: &[f32],
        dim: usize,
        keys: CacheRows,
        values: CacheRows,
        rows: usize,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        assert!(dim.is_multiple_of(8) && dim > 0 && queries.len().is_multiple_of(dim));
        let heads = queries.len() / dim;
        assert!(out.len() == queries.len() && scores.len() >= heads * rows);
        assert!(
            keys.holds(rows, dim) && values.holds(rows, dim),
            "cache rows out of bounds"
        );
        // SAFETY: `self` proves the CPU features; the asserts bound every access.
        unsafe { attend_avx2(queries, dim, keys, values, rows, scale, scores, out) }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_avx2(
    queries: &[f32],
    dim: usize,
    keys: CacheRows,
    values: CacheRows,
    rows: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let heads = queries.len() / dim;
    let q = queries.as_ptr();
    let key = |t: usize| keys.data.as_ptr().add(keys.start + t * keys.stride);
    let vscale = _mm256_set1_ps(scale);
    // Scores: one independent chain of FMAs per (head, key) over the
    // dimensions, reduced in `hsum8`, which adds in `hsum`'s order. Four
    // keys at a time meet the heads two by two (eight sums; each key
    // vector loaded once for two heads) while they are in the L1 cache; an
    // odd last head takes eight keys alone.
    let s = scores.as_mut_ptr();
    let pairs = heads / 2;
    let ahead = PREFETCH_BYTES / (4 * dim);
    let mut t = 0;
    while t + 4 <= rows {
        let ks: [*const f32; 4] = std::array::from_fn(|j| key(t + j));
        if t + ahead + 4 <= rows {
            for j in 0..4 {
                prefetch_row(key(t + ahead + j), dim);
            }
        }
        for p in 0..pairs {
            let (q0, q1) = (q.add(2 * p * dim), q.add((2 * p + 1) * dim));
            let mut acc = [_mm256_setzero_ps(); 8];
            for i in (0..dim).step_by(8) {
                let (a, b) = (_mm256_loadu_ps(q0.add(i)), _mm256_loadu_ps(q1.add(i)));
                for (j, k) in ks.iter().enumerate() {
                    let kv = _mm256_loadu_ps(k.add(i));
                    acc[j] = _mm256_fmadd_ps(a, kv, acc[j]);
                    acc[4 + j] = _mm256_fmadd_ps(b, kv, acc[4 + j]);
                }
            }
            let r = _mm256_mul_ps(hsum8(acc), vscale);
            _mm_storeu_ps(s.add(2 * p * rows + t), _mm256_castps256_ps128(r));
            _mm_storeu_ps(s.add((2 * p + 1) * rows + t), _mm256_extractf128_ps::<1>(r));
        }
        t += 4;
    }
    let tail = t;
    if heads % 2 == 1 {
        let (h, qh) = (heads - 1, q.add((heads - 1) * dim));
        let mut t = 0;
        while t + 8 <= rows {
            let ks: [*const f32; 8] = std::array::from_fn(|j| key(t + j));
            let mut acc = [_mm256_setzero_ps(); 8];
            for i in (0..dim).step_by(8) {
                let qv = _mm256_loadu_ps(qh.add(i));
                for (a, k) in acc.iter_mut().zip(ks) {
                    *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k.add(i)), *a);
                }
            }
            _mm256_storeu_ps(s.add(h * rows + t), _mm256_mul_ps(hsum8(acc), vscale));
            t += 8;
        }
        for t in t..rows {
            *s.add(h * rows + t) = dot(qh, key(t), dim) * scale;
        }
    }
    for t in tail..rows {
        for h in 0..2 * pairs {
            *s.add(h * rows + t) = dot(q.add(h * dim), key(t), dim) * scale;
        }
    }
    for h in 0..heads {
        softmax(&mut scores[h * rows..(h + 1) * rows]);
    }
    // Weighted values: 32 output values of two heads (then 64 or 8 of an
    // odd last head) stay in registers over a band of rows, eight
    // independent FMA chains; the same FMAs in the same order as
    // accumulating into `out` row by row. The heads take each band of value
    // rows in turn while it is in the L1 cache, and the next band is asked
    // for meanwhile (the cache is read once a step, from memory: the
    // weights between two layers' attention have flushed it).
    let value = |t: usize| values.data.as_ptr().add(values.start + t * values.stride);
    let o = out.as_mut_ptr();
    const BAND: usize = 16;
    for first in (0..rows).step_by(BAND) {
        let band = first..(first + BAND).min(rows);
        for t in band.end..(band.end + BAND).min(rows) {
            prefetch_row(value(t), dim);
        }
        for p in 0..pairs {
            attend_values_pair(
                [o.add(2 * p * dim), o.add((2 * p + 1) * dim)],
                [
                    scores.as_ptr().add(2 * p * rows),
                    scores.as_ptr().add((2 * p + 1) * rows),
                ],
                dim,
                band.clone(),
                first == 0,
                value,
            );
        }
        for h in 2 * pairs..heads {
            attend_values(
                o.add(h * dim),
                scores.as_ptr().add(h * rows),
                dim,
                band.clone(),
                first == 0,
                value,
            );
        }
    }
}

/// Adds the value rows `band`, weighted by `scores`, to the `dim` outputs at
/// `oh` (which start from zero when `fresh`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn attend_values(
    oh: *mut f32,
    sh: *const f32,
    dim: usize,
    band: std::ops::Range<usize>,
    fresh: bool,
    value: impl Fn(usize) -> *const f32,
) {
    let start = |at: usize| {
        if fresh {
            _mm256_setzero_ps()
        } else {
            _mm256_loadu_ps(oh.add(at))
        }
    };
    let mut i = 0;
    while i + 64 <= dim {
        let mut acc: [__m256; 8] = std::array::from_fn(|c| start(i + 8 * c));
        for t in band.clone() {
            let (p, v) = (_mm256_set1_ps(*sh.add(t)), value(t).add(i));
            for (c, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(p, _mm256_loadu_ps(v.add(8 * c)), *a);
            }
        }
        for (c, a) in acc.into_iter().enumerate() {
            _mm256_storeu_ps(oh.add(i + 8 * c), a);
        }
        i += 64;
    }
    while i < dim {
        let mut acc = start(i);
        for t in band.clone() {
            let p = _mm256_set1_ps(*sh.add(t));
            acc = _mm256_fmadd_ps(p, _mm256_loadu_ps(value(t).add(i)), acc);
        }
        _mm256_storeu_ps(oh.add(i), acc);
        i += 8;
    }
}

/// How far ahead of the keys it multiplies attention asks for keys (and
/// the next band of value rows), into the L2 cache. A decoding step reads
/// the KV cache once, from memory (the weights between two layers'
/// attention flush it): on the 1.5 B (28 layers, ~650 positions), one
/// thread on the Zen 4 EPYC, a layer's attention took 177 µs without
/// software prefetch, 141 µs with 8 KB ahead into L1 (its few miss buffers
/// limit how much is in flight), 95-125 µs with 12-24 KB ahead into L2
/// (runs on this VM vary that much).
const PREFETCH_BYTES: usize = 16 << 10;

/// Asks for the `dim` values at `row` (into L2).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_row(row: *const f32, dim: usize) {
    for i in (0..dim).step_by(16) {
        _mm_prefetch::<_MM_HINT_T2>(row.add(i) as *const i8);
    }
}

/// The dot product of `dim` values at `a` and `b` (a multiple of 8): eight
/// lanes of FMAs, added in `hsum`'s order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot(a: *const f32, b: *const f32, dim: usize) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for i in (0..dim).step_by(8) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), acc);
    }
    hsum(acc)
}

/// Softmax of a row in place: the maximum eight lanes at a time; then
/// libm's `expf` of each value less it, summed in turn (a vector `exp`, a
/// few ulp off, cost the 1.5 B its agreement with llama.cpp: 39 and 11
/// of 128 greedy tokens on `tests/llm_qwen.rs`'s cases against 128 and
/// 83); each value times 1 / sum, eight at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn softmax(s: &mut [f32]) {
    let n = s.len();
    let p = s.as_mut_ptr();
    let full = n / 8 * 8;
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    for t in (0..full).step_by(8) {
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(p.add(t)));
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), vmax);
    let max = s
        .iter()
        .skip(full)
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let mut total = 0f32;
    for v in s.iter_mut() {
        *v = (*v - max).exp();
        total += *v;
    }
    let inv = 1.0 / total;
    let vinv = _mm256_set1_ps(inv);
    let p = s.as_mut_ptr();
    for t in (0..full).step_by(8) {
        _mm256_storeu_ps(p.add(t), _mm256_mul_ps(_mm256_loadu_ps(p.add(t)), vinv));
    }
    for v in &mut s[full..] {
        *v *= inv;
    }
}

/// [`attend_values`] for two heads at once: each value vector loaded once
/// for both; 32 output values of each head in registers (the same FMAs in
/// the same order).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn attend_values_pair(
    oh: [*mut f32; 2],
    sh: [*const f32; 2],
    dim: usize,
    band: std::ops::Range<usize>,
    fresh: bool,
    value: impl Fn(usize) -> *const f32,
) {
    let start = |h: usize, at: usize| {
        if fresh {
            _mm256_setzero_ps()
        } else {
            _mm256_loadu_ps(oh[h].add(at))
        }
    };
    let mut i = 0;
    while i + 32 <= dim {
        let mut acc: [[__m256; 4]; 2] =
            std::array::from_fn(|h| std::array::from_fn(|c| start(h, i + 8 * c)));
        for t in band.clone() {
            let p = [_mm256_set1_ps(*sh[0].add(t)), _mm256_set1_ps(*sh[1].add(t))];
            let v = value(t).add(i);
            let [a0, a1] = &mut acc;
            for (c, (a0, a1)) in a0.iter_mut().zip(a1.iter_mut()).enumerate() {
                let x = _mm256_loadu_ps(v.add(8 * c));
                *a0 = _mm256_fmadd_ps(p[0], x, *a0);
                *a1 = _mm256_fmadd_ps(p[1], x, *a1);
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            for (c, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(oh[h].add(i + 8 * c), *a);
            }
        }
        i += 32;
    }
    while i < dim {
        let mut acc = [start(0, i), start(1, i)];
        for t in band.clone() {
            let x = _mm256_loadu_ps(value(t).add(i));
            acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(*sh[0].add(t)), x, acc[0]);
            acc[1] = _mm256_fmadd_ps(_mm256_set1_ps(*sh[1].add(t)), x, acc[1]);
        }
        _mm256_storeu_ps(oh[0].add(i), acc[0]);
        _mm256_storeu_ps(oh[1].add(i), acc[1]);
        i += 8;
    }
}

/// The sums of eight vectors, one per lane, each added in [`hsum`]'s order
/// (halves, then pairs two apart, then neighbours), so that a score does
/// not depend on whether its key came in a group of eight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn hsum8(x: [__m256; 8]) -> __m256 {
    // w[j]: the four half-sums of key j (low lane) and key j + 4 (high).
    let w: [__m256; 4] = std::array::from_fn(|j| {
        let half = |v: __m256| _mm_add_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
        _mm256_set_m128(half(x[j + 4]), half(x[j]))
    });
    // 4 × 4 transpose within each lane: c[m] holds half-sum m of every key.
    let (t0, t1) = (
        _mm256_unpacklo_ps(w[0], w[1]),
        _mm256_unpackhi_ps(w[0], w[1]),
    );
    let (t2, t3) = (
        _mm256_unpacklo_ps(w[2], w[3]),
        _mm256_unpackhi_ps(w[2], w[3]),
    );
    let c0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let c1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let c2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let c3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    _mm256_add_ps(_mm256_add_ps(c0, c2), _mm256_add_ps(c1, c3))
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// `max` and `ln(Σ exp(x - max))` of a row of logits (the sum in f64),
    /// `None` when every value is -inf: a log-softmax's normalizer, eight
    /// values at a time (libm's scalar `expf` was a fifth of a beam-search
    /// step over 58k-token rows).
    pub fn log_sum_exp(&self, row: &[f32]) -> Option<(f32, f32)> {
        // SAFETY: `self` proves the CPU features.
        unsafe { log_sum_exp_avx2(row) }
    }

    /// The first index `t >= from` of `row` whose log-probability plus
    /// `base`, `((row[t] - max) - log_sum) + base` in that f32 order, is not
    /// below `threshold` (or is NaN); `row.len()` when none is: beam search
    /// skips, eight scores at a time, what cannot enter its top k.
    pub fn next_not_below(
        &self,
        row: &[f32],
        from: usize,
        (max, log_sum, base): (f32, f32, f32),
        threshold: f32,
    ) -> usize {
        // SAFETY: `self` proves the CPU features.
        unsafe { next_not_below_avx2(row, from, (max, log_sum, base), threshold) }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn next_not_below_avx2(
    row: &[f32],
    from: usize,
    (max, log_sum, base): (f32, f32, f32),
    threshold: f32,
) -> usize {
    let value = |s: f32| ((s - max) - log_sum) + base;
    let (vmax, vlog, vbase, vthr) = (
        _mm256_set1_ps(max),
        _mm256_set1_ps(log_sum),
        _mm256_set1_ps(base),
        _mm256_set1_ps(threshold),
    );
    let mut t = from;
    while t + 8 <= row.len() {
        let v = _mm256_loadu_ps(row.as_ptr().add(t));
        let v = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(v, vmax), vlog), vbase);
        let hits = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NLT_UQ>(v, vthr));
        if hits != 0 {
            return t + hits.trailing_zeros() as usize;
        }
        t += 8;
    }
    while t < row.len() && value(row[t]) < threshold {
        t += 1;
    }
    t
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn log_sum_exp_avx2(row: &[f32]) -> Option<(f32, f32)> {
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    for c in chunks.clone() {
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(c.as_ptr()));
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), vmax);
    let max = lanes
        .iter()
        .chain(tail)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return None;
    }
    let shift = _mm256_set1_ps(max);
    let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    for c in chunks {
        let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), shift));
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e)));
    }
    let mut sums = [0f64; 4];
    _mm256_storeu_pd(sums.as_mut_ptr(), _mm256_add_pd(lo, hi));
    let sum = sums.iter().sum::<f64>()
        + tail
            .iter()
            .map(|&x| f64::from((x - max).exp()))
            .sum::<f64>();
    Some((max, sum.ln() as f32))
}

/// `exp(x)` of eight values, Cephes' single-precision polynomial (as in
/// avx_mathfun): within 2 ulp of libm over the range where the result is a
/// normal float; below it (a banned token's -inf among them) a value under
/// 1e-37 instead of 0, which no sum of a row can tell apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn exp_ps(x: __m256) -> __m256 {
    let x = _mm256_min_ps(x, _mm256_set1_ps(88.0));
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.336_55));
    // x = n ln 2 + r, |r| <= ln 2 / 2, n rounded to nearest.
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let p = _mm256_fmadd_ps(
        p,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    // 2^n through the exponent bits.
    let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(p, _mm256_castsi256_ps(pow2))
}

/// `silu(x) = x / (1 + exp(-x))` of eight values, candle's formula with
/// [`exp_ps`] in place of libm's `expf` (within a few ulp of it; large
/// negative inputs give a tiny negative value or -0 where libm gives 0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn silu_ps(x: __m256) -> __m256 {
    let e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

/// `gelu(x)` with tanh of eight values, as `x / (1 + exp(-2z))` with
/// `z = √(2/π)(x + 0.044715x³)`: the same function as candle's
/// `0.5x(1 + tanh z)`, with [`exp_ps`] in place of libm's `tanhf`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn gelu_tanh_ps(x: __m256) -> __m256 {
    // -2√(2/π) (x + 0.044715 x³)
    const MINUS_TWO_SQRT_2_OVER_PI: f32 = -1.595_769_2;
    let cubic = _mm256_fmadd_ps(
        _mm256_mul_ps(_mm256_set1_ps(0.044_715), x),
        _mm256_mul_ps(x, x),
        x,
    );
    let e = exp_ps(_mm256_mul_ps(
        _mm256_set1_ps(MINUS_TWO_SQRT_2_OVER_PI),
        cubic,
    ));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// `out = act(gate) * up`, value by value: the middle of a gated
    /// feed-forward layer in one pass.
    pub fn gated(
        &self,
        act: super::GateAct,
        gate: &[f32],
        up: &[f32],
        out: &mut [std::mem::MaybeUninit<f32>],
    ) {
        assert!(gate.len() == up.len() && out.len() == gate.len());
        // SAFETY: `self` proves the CPU features; the lengths are equal.
        unsafe {
            match act {
                super::GateAct::Silu => gated_avx2::<false>(gate, up, out),
                super::GateAct::GeluTanh => gated_avx2::<true>(gate, up, out),
            }
        }
    }
}

/// # Safety
/// The CPU has AVX2 and FMA; `gate`, `up` and `out` have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gated_avx2<const GELU: bool>(
    gate: &[f32],
    up: &[f32],
    out: &mut [std::mem::MaybeUninit<f32>],
) {
    let act = |g: __m256| if GELU { gelu_tanh_ps(g) } else { silu_ps(g) };
    let n = gate.len();
    let body = n - n % 8;
    for i in (0..body).step_by(8) {
        let g = _mm256_loadu_ps(gate.as_ptr().add(i));
        let u = _mm256_loadu_ps(up.as_ptr().add(i));
        _mm256_storeu_ps(out.as_mut_ptr().add(i).cast(), _mm256_mul_ps(act(g), u));
    }
    if body < n {
        // The tail through a padded register, so it rounds like the body.
        let (mut g, mut u, mut o) = ([0f32; 8], [0f32; 8], [0f32; 8]);
        g[..n - body].copy_from_slice(&gate[body..]);
        u[..n - body].copy_from_slice(&up[body..]);
        _mm256_storeu_ps(
            o.as_mut_ptr(),
            _mm256_mul_ps(
                act(_mm256_loadu_ps(g.as_ptr())),
                _mm256_loadu_ps(u.as_ptr()),
            ),
        );
        for (dst, &v) in out[body..].iter_mut().zip(&o) {
            dst.write(v);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl Avx2 {
    #[allow(clippy::too_many_arguments)]
    pub fn attend(
        &self,
        _: &[f32],
        _: usize,
        _: CacheRows,
        _: CacheRows,
        _: usize,
        _: f32,
        _: &mut [f32],
        _: &mut [f32],
    ) {
        unreachable!("Avx2 is never detected off x86_64")
    }
    pub fn quantize(&self, _x: &[f32], _rows: usize, _k: usize) -> Activations {
        unreachable!("Avx2 is never detected off x86_64")
    }
    pub fn log_sum_exp(&self, _: &[f32]) -> Option<(f32, f32)> {
        unreachable!("Avx2 is never detected off x86_64")
    }
    pub fn next_not_below(&self, _: &[f32], _: usize, _: (f32, f32, f32), _: f32) -> usize {
        unreachable!("Avx2 is never detected off x86_64")
    }
    pub fn gated(
        &self,
        _: super::GateAct,
        _: &[f32],
        _: &[f32],
        _: &mut [std::mem::MaybeUninit<f32>],
    ) {
        unreachable!("Avx2 is never detected off x86_64")
    }
}

/// Where [`quantize_blocks`] writes, shared by the threads.
#[cfg(target_arch = "x86_64")]
struct BlockOut {
    qs: SharedOut<i8>,
    scales: SharedOut<f32>,
    sums: SharedOut<i32>,
    scaled_sums: SharedOut<f32>,
}

/// The body of [`Avx2::quantize`] for blocks `range`, compiled for AVX2 so
/// that the rounding and the max are vector instructions, not libm calls.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `out` holds every block of `range`, and
/// no other thread writes them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_blocks(x: &[f32], range: std::ops::Range<usize>, out: &BlockOut) {
    for b in range {
        let xs = &x[b * QK..][..QK];
        let qs = std::slice::from_raw_parts_mut(out.qs.ptr().add(b * QK), QK);
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        *out.scales.ptr().add(b) = round_to_f16(d);
        *out.sums.ptr().add(b) = sum;
        *out.scaled_sums.ptr().add(b) = round_to_f16(sum as f32 * d);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "f16c")]
unsafe fn round_to_f16(x: f32) -> f32 {
    let half = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x));
    _mm_cvtss_f32(_mm_cvtph_ps(half))
}

/// The sum of the eight lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn hsum(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    let r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::tests::values;
    use super::*;

    /// `attend` in scalar code with the kernel's float order: per key, eight
    /// lanes of FMAs over the dimensions, added as `hsum` adds them; softmax;
    /// then each output value accumulated row after row. The kernel must
    /// give exactly these bits, whether a key came in a group of eight or not.
    fn reference(q: &[f32], dim: usize, k: &[f32], v: &[f32], rows: usize, scale: f32) -> Vec<f32> {
        let heads = q.len() / dim;
        let mut out = vec![0f32; q.len()];
        for h in 0..heads {
            let qh = &q[h * dim..(h + 1) * dim];
            let mut s: Vec<f32> = (0..rows)
                .map(|t| {
                    let mut lane = [0f32; 8];
                    for i in (0..dim).step_by(8) {
                        for (l, acc) in lane.iter_mut().enumerate() {
                            *acc = qh[i + l].mul_add(k[t * dim + i + l], *acc);
                        }
                    }
                    let c: [f32; 4] = std::array::from_fn(|m| lane[m + 4] + lane[m]);
                    ((c[0] + c[2]) + (c[1] + c[3])) * scale
                })
                .collect();
            let max = s.iter().fold(f32::NEG_INFINITY, |m, x| m.max(*x));
            let mut total = 0f32;
            for x in s.iter_mut() {
                *x = (*x - max).exp();
                total += *x;
            }
            let inv = 1.0 / total;
            for x in s.iter_mut() {
                *x *= inv;
            }
            for (i, o) in out[h * dim..(h + 1) * dim].iter_mut().enumerate() {
                for (t, p) in s.iter().enumerate() {
                    *o = p.mul_add(v[t * dim + i], *o);
                }
            }
        }
        out
    }

    #[test]
    fn attend_matches_its_scalar_order_bit_for_bit() {
        let Some(simd) = Avx2::detect() else {
            eprintln!("SKIPPED: no AVX2/FMA/F16C on this CPU");
            return;
        };
        // Keys in fours (head pairs) and eights (an odd last head) with
        // leftovers, past the prefetch distance or not; 32-, 64- and
        // 8-value output chunks; one to six query heads sharing the cache.
        for (heads, dim, rows) in [
            (1, 8, 1),
            (1, 64, 8),
            (3, 64, 17),
            (2, 136, 40),
            (4, 40, 9),
            (6, 128, 61),
            (5, 96, 35),
        ] {
            let q = values(heads * dim, 5);
            let (k, v) = (values(rows * dim, 6), values(rows * dim, 7));
            let cache = |data| CacheRows {
                data,
                start: 0,
                stride: dim,
            };
            let mut scores = vec![0f32; heads * rows];
            let mut out = vec![f32::NAN; heads * dim];
            simd.attend(
                &q,
                dim,
                cache(&k),
                cache(&v),
                rows,
                0.125,
                &mut scores,
                &mut out,
            );
            let want = reference(&q, dim, &k, &v, rows, 0.125);
            for (i, (o, w)) in out.iter().zip(&want).enumerate() {
                assert_eq!(
                    o.to_bits(),
                    w.to_bits(),
                    "heads={heads} dim={dim} rows={rows} at {i}"
                );
            }
        }
    }
}
