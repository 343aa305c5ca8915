//! MarianMT (the Helsinki-NLP opus-mt models), written for batched,
//! cached decoding.
//!
//! candle-transformers 0.11.1 ships a Marian module, but it falls short for a
//! translator (see shared known-facts): its encoder keeps a KV cache that
//! leaks between calls, it has no padding mask (so no batching of sentences of
//! different lengths), it recomputes cross-attention keys/values at every
//! step, and its `Config` has no defaults for older `config.json` files. This
//! module fixes all four by construction: the model holds only weights, and
//! all per-call state lives in a [`DecoderState`] that the caller owns.
//!
//! Layout and numerics follow `transformers`' `MarianMTModel` (post-norm
//! blocks, scaled embeddings, non-interleaved sinusoidal positions, tied
//! output projection plus `final_logits_bias`).

use super::qlinear::{Epilogue, QLinear};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// `config.json` of a Marian model. Every field has the default of
/// `transformers.MarianConfig`, so old opus-mt configs that lack some load.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub decoder_vocab_size: Option<usize>,
    pub max_position_embeddings: usize,
    pub encoder_layers: usize,
    pub encoder_ffn_dim: usize,
    pub encoder_attention_heads: usize,
    pub decoder_layers: usize,
    pub decoder_ffn_dim: usize,
    pub decoder_attention_heads: usize,
    pub activation_function: String,
    pub d_model: usize,
    pub scale_embedding: bool,
    pub pad_token_id: u32,
    pub eos_token_id: u32,
    pub decoder_start_token_id: u32,
    pub forced_eos_token_id: Option<u32>,
    pub share_encoder_decoder_embeddings: bool,
    pub tie_word_embeddings: bool,
    // Generation defaults that older checkpoints keep in config.json.
    pub num_beams: Option<usize>,
    pub max_length: Option<usize>,
    pub bad_words_ids: Option<Vec<Vec<u32>>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model_type: None,
            vocab_size: 58101,
            decoder_vocab_size: None,
            max_position_embeddings: 1024,
            encoder_layers: 12,
            encoder_ffn_dim: 4096,
            encoder_attention_heads: 16,
            decoder_layers: 12,
            decoder_ffn_dim: 4096,
            decoder_attention_heads: 16,
            activation_function: "gelu".into(),
            d_model: 1024,
            scale_embedding: false,
            pad_token_id: 58100,
            eos_token_id: 0,
            decoder_start_token_id: 58100,
            forced_eos_token_id: Some(0),
            share_encoder_decoder_embeddings: true,
            tie_word_embeddings: true,
            num_beams: None,
            max_length: None,
            bad_words_ids: None,
        }
    }
}

impl Config {
    pub fn target_vocab_size(&self) -> usize {
        self.decoder_vocab_size.unwrap_or(self.vocab_size)
    }

    /// Refuses sizes no real model has (zero, or far too large), before
    /// anything is allocated from them.
    pub fn validate(&self) -> Result<()> {
        use super::limits::{self, check, check_heads};
        check("vocab_size", self.vocab_size, limits::VOCAB)?;
        if let Some(n) = self.decoder_vocab_size {
            check("decoder_vocab_size", n, limits::VOCAB)?;
        }
        check("d_model", self.d_model, limits::WIDTH)?;
        check("encoder_layers", self.encoder_layers, limits::LAYERS)?;
        check("decoder_layers", self.decoder_layers, limits::LAYERS)?;
        check("encoder_ffn_dim", self.encoder_ffn_dim, limits::FFN)?;
        check("decoder_ffn_dim", self.decoder_ffn_dim, limits::FFN)?;
        check_heads(
            "encoder_attention_heads",
            self.encoder_attention_heads,
            "d_model",
            self.d_model,
        )?;
        check_heads(
            "decoder_attention_heads",
            self.decoder_attention_heads,
            "d_model",
            self.d_model,
        )?;
        check(
            "max_position_embeddings",
            self.max_position_embeddings,
            limits::POSITIONS,
        )?;
        limits::check_table("position", self.max_position_embeddings, self.d_model)
    }
}

/// Feed-forward activations by their `transformers` names.
#[derive(Debug, Clone, Copy)]
enum Activation {
    Silu,
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "swish" | "silu" => Self::Silu,
            "gelu" => Self::GeluErf,
            "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Self::GeluTanh,
            "relu" => Self::Relu,
            other => candle_core::bail!("unsupported activation_function '{other}' in config.json"),
        })
    }

    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Silu => candle_nn::ops::silu(xs),
            Self::GeluErf => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Relu => xs.relu(),
        }
    }
}

/// A linear layer: candle's dense one, or a [`QLinear`]: on a CPU with
/// AVX2, weights packed for tolk's own GEMMs (f32, or int8 per feature with
/// `--quantize q8`, a quarter of the bytes), elsewhere quantized for
/// candle's matmul.
#[derive(Debug, Clone)]
enum Proj {
    Dense(Linear),
    Packed {
        weight: QLinear,
        bias: Option<Tensor>,
    },
}

impl Proj {
    fn new(dense: Linear, quantize: Option<GgmlDType>) -> Result<Self> {
        if quantize.is_none() {
            // f32 on a CPU with AVX2/FMA: tolk's GEMM on weights packed
            // once (candle's packs them again at every product).
            if let Some(weight) = QLinear::f32(dense.weight(), dense.bias())? {
                return Ok(Self::Packed { weight, bias: None });
            }
        }
        if quantize == Some(GgmlDType::Q8_0) {
            // 8 bits on a CPU with AVX2: per-feature int8 and tolk's GEMM,
            // which adds the bias itself.
            if let Some(weight) = QLinear::int8(dense.weight(), dense.bias())? {
                return Ok(Self::Packed { weight, bias: None });
            }
        }
        Ok(match quantize {
            None => Self::Dense(dense),
            Some(dtype) => Self::Packed {
                weight: QLinear::from_qtensor(QTensor::quantize(dense.weight(), dtype)?)?,
                bias: dense.bias().cloned(),
            },
        })
    }

    fn load(dim_in: usize, dim_out: usize, vb: VarBuilder, q: Option<GgmlDType>) -> Result<Self> {
        Self::new(linear(dim_in, dim_out, vb)?, q)
    }
}

/// Up to this many input rows, a dense layer computes x·Wᵀ as (W·xᵀ)ᵀ.
/// candle's CPU gemm packs the weight operand differently in the two
/// orientations; with the few rows of a decoding step (one per hypothesis)
/// the transposed one ran 1.5-3.7× faster (the 58101-row output projection
/// at 16 rows: 108 → 43 ms, one AVX2 core), and no faster for the hundreds
/// of rows of an encoder batch.
const TRANSPOSED_MAX_ROWS: usize = 128;

fn dense_forward(linear: &Linear, xs: &Tensor) -> Result<Tensor> {
    let dims = xs.dims();
    let k = dims.last().copied().unwrap_or(0);
    let rows = xs.elem_count() / k.max(1);
    if rows > TRANSPOSED_MAX_ROWS || dims.len() < 2 {
        return linear.forward(xs);
    }
    let w = linear.weight();
    let ys = w.matmul(&xs.reshape((rows, k))?.t()?)?.t()?;
    let ys = match linear.bias() {
        Some(bias) => ys.broadcast_add(bias)?,
        None => ys.contiguous()?,
    };
    let mut out_dims = dims[..dims.len() - 1].to_vec();
    out_dims.push(w.dim(0)?);
    ys.reshape(out_dims)
}

impl Proj {
    /// The layer's output with `then` applied: fused into tolk's GEMMs
    /// (bias included), a tensor op after the others.
    fn forward_then(&self, xs: &Tensor, then: Epilogue) -> Result<Tensor> {
        match self {
            Self::Dense(linear) => then.apply(dense_forward(linear, xs)?),
            Self::Packed { weight, bias: None } => weight.forward_then(&xs.contiguous()?, then),
            Self::Packed {
                weight,
                bias: Some(bias),
            } => then.apply(weight.forward(&xs.contiguous()?)?.broadcast_add(bias)?),
        }
    }
}

impl Module for Proj {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_then(xs, Epilogue::None)
    }
}

/// Sinusoidal position table as `MarianSinusoidalPositionalEmbedding` builds
/// it: sines in the first half of each row, cosines in the second, computed
/// in f64 and rounded once, as numpy does there.
fn sinusoidal_table(n_pos: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim.div_ceil(2);
    let mut data = vec![0f32; n_pos * dim];
    for pos in 0..n_pos {
        let row = &mut data[pos * dim..(pos + 1) * dim];
        for j in 0..dim {
            let angle = pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
            if j % 2 == 0 {
                row[j / 2] = angle.sin() as f32;
            } else {
                row[half + j / 2] = angle.cos() as f32;
            }
        }
    }
    Tensor::from_vec(data, (n_pos, dim), device)
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Proj,
    k_proj: Proj,
    v_proj: Proj,
    out_proj: Proj,
    num_heads: usize,
    head_dim: usize,
    scaling: f64,
}

impl Attention {
    fn new(dim: usize, num_heads: usize, vb: VarBuilder, q: Option<GgmlDType>) -> Result<Self> {
        let head_dim = dim / num_heads;
        Ok(Self {
            q_proj: Proj::load(dim, dim, vb.pp("q_proj"), q)?,
            k_proj: Proj::load(dim, dim, vb.pp("k_proj"), q)?,
            v_proj: Proj::load(dim, dim, vb.pp("v_proj"), q)?,
            out_proj: Proj::load(dim, dim, vb.pp("out_proj"), q)?,
            num_heads,
            head_dim,
            scaling: (head_dim as f64).powf(-0.5),
        })
    }

    /// (b, t, dim) → (b, heads, t, head_dim)
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        xs.reshape((b, t, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn project_kv(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split_heads(&self.k_proj.forward(xs)?)?,
            self.split_heads(&self.v_proj.forward(xs)?)?,
        ))
    }

    /// Scaled queries of `xs` (b, t, dim), as (b, heads, t, head_dim).
    fn query(&self, xs: &Tensor) -> Result<Tensor> {
        self.split_heads(&(self.q_proj.forward(xs)? * self.scaling)?)
    }

    /// softmax(q kᵀ + mask) v for q (b, heads, t, head_dim) and keys/values
    /// (b, heads, s, head_dim); `mask` (b, 1, 1|t, s) is added to the scores.
    fn weigh(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        candle_nn::ops::softmax_last_dim(&scores)?.matmul(v)
    }

    /// (b, heads, t, head_dim) → output projection of (b, t, dim).
    fn output(&self, ctx: &Tensor) -> Result<Tensor> {
        let (b, _, t, _) = ctx.dims4()?;
        ctx.transpose(1, 2)?
            .reshape((b, t, self.num_heads * self.head_dim))?
            .apply(&self.out_proj)
    }

    /// Attends `xs` (b, t, dim) to keys/values (b, heads, s, head_dim).
    fn attend(&self, xs: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.output(&Self::weigh(&self.query(xs)?, k, v, mask)?)
    }

    /// One new position per row, `xs` (rows, 1, dim), attending keys/values
    /// (kv_rows, heads, capacity, head_dim) where row `r` reads kv row
    /// `r / group` and its first `lens[r / group]` positions: the CPU kernel
    /// of the LLM decoders ([`super::qlinear::Avx2::attend`]) run per kv row
    /// and head, one pass over the cache for the group's queries, in place
    /// of candle's seven tensor ops and its GEMM set-up per tiny product.
    /// `None` where it does not apply (no AVX2, not f32 on the CPU, a strided
    /// cache, an empty row): the caller takes the tensor path.
    fn attend_step_cpu(
        &self,
        xs: &Tensor,
        k: &Tensor,
        v: &Tensor,
        group: usize,
        lens: &[usize],
    ) -> Result<Option<Tensor>> {
        let Some(simd) = super::qlinear::kernels() else {
            return Ok(None);
        };
        if !xs.device().is_cpu() || [xs, k, v].iter().any(|t| t.dtype() != DType::F32) {
            return Ok(None);
        }
        let (rows, t, dim) = xs.dims3()?;
        let (kv_rows, heads, capacity, d) = k.dims4()?;
        if t != 1
            || v.dims4()? != (kv_rows, heads, capacity, d)
            || heads * d != dim
            || group == 0
            || kv_rows * group != rows
            || lens.len() != kv_rows
            || lens.iter().any(|&n| n == 0 || n > capacity)
            || !d.is_multiple_of(8)
        {
            return Ok(None);
        }
        let query: Vec<f32> = self.q_proj.forward(xs)?.flatten_all()?.to_vec1()?;
        let mut out = vec![0f32; rows * dim];
        let out_ptr = super::qlinear::SharedOut(out.as_mut_ptr());
        let longest = lens.iter().copied().max().unwrap_or(0);
        let work = rows * dim * longest * 2;
        let scale = self.scaling as f32;
        let done = super::llm_blocks::with_cpu_caches(k, v, |keys, values| {
            super::qlinear::for_ranges(kv_rows * heads, work, 1, |range| {
                let mut qs = vec![0f32; group * d];
                let mut os = vec![0f32; group * d];
                let mut scores = vec![0f32; group * longest];
                for item in range {
                    let (g, h) = (item / heads, item % heads);
                    for (j, qd) in qs.chunks_exact_mut(d).enumerate() {
                        let at = (g * group + j) * dim + h * d;
                        qd.copy_from_slice(&query[at..at + d]);
                    }
                    simd.attend(
                        &qs,
                        d,
                        keys.rows(g, h),
                        values.rows(g, h),
                        lens[g],
                        scale,
                        &mut scores,
                        &mut os,
                    );
                    for (j, od) in os.chunks_exact(d).enumerate() {
                        // SAFETY: (kv row, head) items are disjoint across the
                        // ranges, so each writes its own head of its own rows,
                        // all within `out` (rows × dim).
                        unsafe {
                            let at = (g * group + j) * dim + h * d;
                            std::ptr::copy_nonoverlapping(od.as_ptr(), out_ptr.ptr().add(at), d);
                        }
                    }
                }
            });
        })?;
        if done.is_none() {
            return Ok(None);
        }
        Tensor::from_vec(out, (rows, 1, dim), xs.device())?
            .apply(&self.out_proj)
            .map(Some)
    }

    /// Attends one position per row, `xs` (rows, 1, dim), where each run of
    /// `group` consecutive rows shares its keys/values (groups, heads, s,
    /// head_dim) and mask (groups, 1, 1, s): the beams of one sentence. The
    /// group's queries go through one matmul instead of one per row, and
    /// the keys/values are stored once per sentence, not once per beam.
    fn attend_grouped(
        &self,
        xs: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Tensor,
        group: usize,
    ) -> Result<Tensor> {
        let (rows, _, dim) = xs.dims3()?;
        if group == 1 {
            return self.attend(xs, k, v, Some(mask));
        }
        let groups = rows / group;
        // (rows, 1, dim) is laid out as (groups, group, heads, head_dim).
        let q = (self.q_proj.forward(xs)? * self.scaling)?
            .reshape((groups, group, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        Self::weigh(&q, k, v, Some(mask))?
            .transpose(1, 2)?
            .reshape((rows, 1, dim))?
            .apply(&self.out_proj)
    }
}

#[derive(Debug, Clone)]
struct FeedForward {
    fc1: Proj,
    fc2: Proj,
    activation: Activation,
}

impl FeedForward {
    fn new(
        dim: usize,
        ffn: usize,
        activation: Activation,
        vb: &VarBuilder,
        q: Option<GgmlDType>,
    ) -> Result<Self> {
        Ok(Self {
            fc1: Proj::load(dim, ffn, vb.pp("fc1"), q)?,
            fc2: Proj::load(ffn, dim, vb.pp("fc2"), q)?,
            activation,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let hidden = match self.activation {
            // Swish (opus-mt's) on the way out of fc1's kernel.
            Activation::Silu => self.fc1.forward_then(xs, Epilogue::Silu)?,
            other => other.apply(&self.fc1.forward(xs)?)?,
        };
        hidden.apply(&self.fc2)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    ffn: FeedForward,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    fn new(
        cfg: &Config,
        activation: Activation,
        vb: VarBuilder,
        q: Option<GgmlDType>,
    ) -> Result<Self> {
        let d = cfg.d_model;
        let heads = cfg.encoder_attention_heads;
        Ok(Self {
            self_attn: Attention::new(d, heads, vb.pp("self_attn"), q)?,
            self_attn_layer_norm: layer_norm(d, 1e-5, vb.pp("self_attn_layer_norm"))?,
            ffn: FeedForward::new(d, cfg.encoder_ffn_dim, activation, &vb, q)?,
            final_layer_norm: layer_norm(d, 1e-5, vb.pp("final_layer_norm"))?,
        })
    }

    fn forward(&self, xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (k, v) = self.self_attn.project_kv(xs)?;
        let attn = self.self_attn.attend(xs, &k, &v, Some(mask))?;
        let xs = (attn + xs)?.apply(&self.self_attn_layer_norm)?;
        (self.ffn.forward(&xs)? + xs)?.apply(&self.final_layer_norm)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    encoder_attn: Attention,
    encoder_attn_layer_norm: LayerNorm,
    ffn: FeedForward,
    final_layer_norm: LayerNorm,
}

impl DecoderLayer {
    fn new(
        cfg: &Config,
        activation: Activation,
        vb: VarBuilder,
        q: Option<GgmlDType>,
    ) -> Result<Self> {
        let d = cfg.d_model;
        let heads = cfg.decoder_attention_heads;
        Ok(Self {
            self_attn: Attention::new(d, heads, vb.pp("self_attn"), q)?,
            self_attn_layer_norm: layer_norm(d, 1e-5, vb.pp("self_attn_layer_norm"))?,
            encoder_attn: Attention::new(d, heads, vb.pp("encoder_attn"), q)?,
            encoder_attn_layer_norm: layer_norm(d, 1e-5, vb.pp("encoder_attn_layer_norm"))?,
            ffn: FeedForward::new(d, cfg.decoder_ffn_dim, activation, &vb, q)?,
            final_layer_norm: layer_norm(d, 1e-5, vb.pp("final_layer_norm"))?,
        })
    }
}

/// Per-layer decoder cache: self-attention keys/values written in place
/// step by step, cross-attention keys/values computed once from the
/// encoder output. The buffers may hold more rows (groups) than are in use
/// (finished sentences leave spare rows, which newcomers take); the first
/// `DecoderState::rows()` (groups) are the live ones.
#[derive(Debug)]
struct LayerCache {
    /// (rows, heads, capacity, head_dim); row `r` has its first
    /// `positions[r]` positions filled. Written in place with `slice_set`,
    /// so never shared with another state.
    self_k: Tensor,
    self_v: Tensor,
    /// (groups, heads, src_len, head_dim): one entry per group of rows.
    cross_k: Tensor,
    cross_v: Tensor,
}

/// Everything one decoding run carries between steps, one row per hypothesis.
///
/// Rows come in groups of `group` consecutive rows decoding the same source
/// sentence (the beams of a sentence; 1 for greedy). Cross-attention
/// keys/values and the source mask are stored once per group, so beam
/// re-ranking never copies them; only the self-attention cache is per row.
/// Rows that keep their place are never copied: re-ranking, dropping and
/// admitting sentences move only the rows that change place.
/// Not `Clone`: the caches are updated in place.
#[derive(Debug)]
pub struct DecoderState {
    layers: Vec<LayerCache>,
    /// (groups, 1, 1, src_len): 0 for real source tokens, large negative for padding.
    cross_mask: Tensor,
    /// Rows per group.
    group: usize,
    /// Source sentence (an id unique in this state) of each live group.
    group_source: Vec<u32>,
    /// Positions the self-attention buffers hold before they must grow.
    capacity: usize,
    /// Target positions each row has decoded: rows that join a queued run
    /// ([`DecoderState::append`]) start at 0 beside rows well into theirs.
    positions: Vec<usize>,
    /// The next id for `group_source`.
    next_source: u32,
    /// The last step's logits, whose memory the next step writes again
    /// (see [`QLinear::forward_reusing`]).
    logits: Option<Tensor>,
}

/// The self-attention cache grows by this many positions when full. Beam
/// re-ranking copies the rows that change place, whole, so spare room is
/// kept small; growing copies every row, but only once per this many steps.
const CAPACITY_STEP: usize = 16;

/// Row indices `0..n`, each `times` over in a row: `n` rows expanded to
/// `times` rows each.
fn repeat_each(n: usize, times: usize) -> Vec<u32> {
    (0..n as u32)
        .flat_map(|i| std::iter::repeat_n(i, times))
        .collect()
}

/// The first `n` entries (dimension 0) of a buffer that may hold more.
fn live(t: &Tensor, n: usize) -> Result<Tensor> {
    if t.dim(0)? == n {
        Ok(t.clone())
    } else {
        t.narrow(0, 0, n)
    }
}

/// Makes entry `i` of `buf` (dimension 0) entry `from[i]`, for every `i`
/// in `0..from.len()`, in place where `buf` holds that many entries: only
/// the entries that change place are gathered (all before any is
/// overwritten) and written back, only their first `filled` positions
/// (dimension 2) where given. A buffer too small is replaced by a gathered
/// copy.
fn select_in_place(buf: &mut Tensor, from: &[u32], filled: Option<usize>) -> Result<()> {
    if from.len() > buf.dim(0)? {
        let idx = Tensor::new(from, buf.device())?;
        *buf = buf.index_select(&idx, 0)?;
        return Ok(());
    }
    let moved: Vec<(usize, u32)> = from
        .iter()
        .enumerate()
        .filter(|&(i, &r)| i != r as usize)
        .map(|(i, &r)| (i, r))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    let filled = match filled {
        Some(0) => return Ok(()),
        Some(n) if n < buf.dim(2)? => Some(n),
        _ => None,
    };
    if let Some(n) = filled {
        // Each moved entry's filled prefix, gathered before any is written.
        let picked = moved
            .iter()
            .map(|&(_, r)| buf.narrow(0, r as usize, 1)?.narrow(2, 0, n)?.contiguous())
            .collect::<Result<Vec<_>>>()?;
        for (&(i, _), part) in moved.iter().zip(&picked) {
            buf.narrow(0, i, 1)?.slice_set(part, 2, 0)?;
        }
        return Ok(());
    }
    let sources: Vec<u32> = moved.iter().map(|&(_, r)| r).collect();
    let picked = buf.index_select(&Tensor::new(sources.as_slice(), buf.device())?, 0)?;
    // Runs of consecutive destinations from consecutive picks: one write each.
    let mut j = 0;
    while j < moved.len() {
        let mut n = 1;
        while j + n < moved.len() && moved[j + n].0 == moved[j].0 + n {
            n += 1;
        }
        buf.narrow(0, moved[j].0, n)?
            .slice_set(&picked.narrow(0, j, n)?, 0, 0)?;
        j += n;
    }
    Ok(())
}

/// Writes `src` at entries `at..` (dimension 0) of `buf`, or returns the
/// two joined where `buf` is too small (its first `at` entries kept).
fn put_rows(buf: &mut Tensor, at: usize, src: &Tensor) -> Result<()> {
    let n = src.dim(0)?;
    if at + n <= buf.dim(0)? {
        buf.narrow(0, at, n)?.slice_set(&src.contiguous()?, 0, 0)
    } else {
        *buf = Tensor::cat(&[&live(buf, at)?, src], 0)?;
        Ok(())
    }
}

impl DecoderState {
    pub fn rows(&self) -> Result<usize> {
        Ok(self.group * self.group_source.len())
    }

    fn groups(&self) -> usize {
        self.group_source.len()
    }

    /// The live groups' source mask.
    fn mask(&self) -> Result<Tensor> {
        live(&self.cross_mask, self.groups())
    }

    /// Keeps (and duplicates) rows: row `i` of the new state is row
    /// `rows[i]` of the old one. Used for beam re-ranking and to drop
    /// finished sentences from a batch; rows that keep their index are not
    /// copied, so a finished sentence is best replaced by the last one.
    pub fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        let old_rows = self.rows()?;
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= old_rows) {
            candle_core::bail!("select_rows: row {bad} of {old_rows}");
        }
        // A row's cache is filled up to its position: rows that move copy that much.
        let filled = rows
            .iter()
            .enumerate()
            .filter(|&(i, &r)| i != r as usize)
            .map(|(_, &r)| self.positions[r as usize])
            .max();
        for layer in self.layers.iter_mut() {
            select_in_place(&mut layer.self_k, rows, filled)?;
            select_in_place(&mut layer.self_v, rows, filled)?;
        }
        self.positions = rows.iter().map(|&r| self.positions[r as usize]).collect();
        // Cross-attention: regroup the new rows by source sentence.
        let sources: Vec<u32> = rows
            .iter()
            .map(|&r| self.group_source[r as usize / self.group])
            .collect();
        let run = sources
            .iter()
            .take_while(|&&s| Some(&s) == sources.first())
            .count();
        let group = if run > 0
            && sources.len().is_multiple_of(run)
            && sources.chunks(run).all(|c| c.iter().all(|&s| s == c[0]))
        {
            run
        } else {
            1
        };
        let group_source: Vec<u32> = sources.iter().step_by(group.max(1)).copied().collect();
        if group_source != self.group_source {
            let old_group = |source: u32| {
                self.group_source
                    .iter()
                    .position(|&s| s == source)
                    .unwrap_or(0) as u32
            };
            let picks: Vec<u32> = group_source.iter().map(|&s| old_group(s)).collect();
            for layer in self.layers.iter_mut() {
                select_in_place(&mut layer.cross_k, &picks, None)?;
                select_in_place(&mut layer.cross_v, &picks, None)?;
            }
            select_in_place(&mut self.cross_mask, &picks, None)?;
        }
        self.group = group.max(1);
        self.group_source = group_source;
        Ok(())
    }

    /// The real source tokens of each group when the mask is a run of
    /// zeros followed by padding only (how `encode` builds it), else `None`.
    fn source_lengths(&self) -> Result<Option<Vec<usize>>> {
        if self.cross_mask.dtype() != DType::F32 || !self.cross_mask.device().is_cpu() {
            return Ok(None);
        }
        let src_len = self.cross_mask.dim(3)?;
        let mask: Vec<f32> = self.mask()?.flatten_all()?.to_vec1()?;
        let mut lens = Vec::with_capacity(self.group_source.len());
        for row in mask.chunks_exact(src_len.max(1)) {
            let len = row.iter().take_while(|&&m| m == 0.0).count();
            if row[len..].iter().any(|&m| m != MASKED) {
                return Ok(None);
            }
            lens.push(len);
        }
        Ok(Some(lens))
    }

    /// The furthest position any row has decoded.
    fn longest(&self) -> usize {
        self.positions.iter().copied().max().unwrap_or(0)
    }

    /// Makes room for one more position in the self-attention buffers.
    fn reserve_position(&mut self, max_positions: usize) -> Result<()> {
        let longest = self.longest();
        if longest < self.capacity {
            return Ok(());
        }
        let capacity = (self.capacity + CAPACITY_STEP).min(max_positions.max(1));
        if capacity <= longest {
            candle_core::bail!("decoder cache is full at {longest} positions");
        }
        let rows = self.rows()?;
        for layer in self.layers.iter_mut() {
            for buf in [&mut layer.self_k, &mut layer.self_v] {
                let (_, heads, _, head_dim) = buf.dims4()?;
                let grown =
                    Tensor::zeros((rows, heads, capacity, head_dim), buf.dtype(), buf.device())?;
                grown.slice_set(&live(buf, rows)?.narrow(2, 0, longest)?.contiguous()?, 2, 0)?;
                *buf = grown;
            }
        }
        self.capacity = capacity;
        Ok(())
    }

    /// One cross-attention entry per row (group 1), so that states of
    /// different group sizes can be joined.
    fn ungroup(&mut self) -> Result<()> {
        if self.group == 1 {
            return Ok(());
        }
        let per_row: Vec<u32> = (0..self.rows()? as u32)
            .map(|r| r / self.group as u32)
            .collect();
        let idx = Tensor::new(per_row.as_slice(), self.cross_mask.device())?;
        for layer in self.layers.iter_mut() {
            layer.cross_k = layer.cross_k.index_select(&idx, 0)?;
            layer.cross_v = layer.cross_v.index_select(&idx, 0)?;
        }
        self.cross_mask = self.cross_mask.index_select(&idx, 0)?;
        self.group_source = per_row
            .iter()
            .map(|&g| self.group_source[g as usize])
            .collect();
        self.group = 1;
        Ok(())
    }

    /// Takes the sentences of `fresh` (a fresh state from
    /// [`MarianModel::encode`]) into `slot`, `group` rows each: appended to
    /// the state there, or as the state, its rows repeated `group` times.
    pub fn admit_into(
        slot: &mut Option<DecoderState>,
        mut fresh: DecoderState,
        group: usize,
    ) -> Result<()> {
        match slot.as_mut() {
            Some(state) => state.append(fresh, group),
            None => {
                if group > 1 {
                    fresh.select_rows(&repeat_each(fresh.rows()?, group))?;
                }
                *slot = Some(fresh);
                Ok(())
            }
        }
    }

    /// Appends the sentences of `other` (a fresh state from
    /// [`MarianModel::encode`]), `group` rows each, after this state's rows:
    /// a queued run takes in new sentences as others finish. They go into
    /// the rows finished sentences left where there are enough (nothing is
    /// copied but the newcomers' cross-attention entries), start at
    /// position 0, and their sources are padded (and masked) to this
    /// state's source length, or this state's to theirs where longer.
    pub fn append(&mut self, mut other: DecoderState, group: usize) -> Result<()> {
        if other.group != 1 || other.positions.iter().any(|&p| p != 0) {
            candle_core::bail!("append: the newcomers must be a fresh encoder state");
        }
        if other.layers.len() != self.layers.len() {
            candle_core::bail!("append: states of different models");
        }
        let group = group.max(1);
        let rows = self.rows()?;
        let new_rows = other.rows()? * group;
        if self.group != group {
            // Mixed group sizes: one cross-attention entry per row on both sides.
            self.ungroup()?;
            if group > 1 {
                other.select_rows(&repeat_each(other.rows()?, group))?;
                other.ungroup()?;
            }
        }
        let groups = self.groups();
        let src_len = self.cross_mask.dim(3)?.max(other.cross_mask.dim(3)?);
        if self.cross_mask.dim(3)? < src_len {
            for layer in self.layers.iter_mut() {
                layer.cross_k = pad_to(&live(&layer.cross_k, groups)?, 2, src_len, 0.0)?;
                layer.cross_v = pad_to(&live(&layer.cross_v, groups)?, 2, src_len, 0.0)?;
            }
            self.cross_mask = pad_to(&self.mask()?, 3, src_len, MASKED)?;
        }
        for (mine, theirs) in self.layers.iter_mut().zip(&other.layers) {
            // The newcomers' self-attention rows: spare rows where there
            // are enough (whatever they hold is never read: a row reads its
            // own filled prefix), else zeros after the live rows.
            for buf in [&mut mine.self_k, &mut mine.self_v] {
                if rows + new_rows > buf.dim(0)? {
                    let (_, heads, capacity, head_dim) = buf.dims4()?;
                    let fresh = Tensor::zeros(
                        (new_rows, heads, capacity, head_dim),
                        buf.dtype(),
                        buf.device(),
                    )?;
                    *buf = Tensor::cat(&[&live(buf, rows)?, &fresh], 0)?;
                }
            }
            put_rows(
                &mut mine.cross_k,
                groups,
                &pad_to(&theirs.cross_k, 2, src_len, 0.0)?,
            )?;
            put_rows(
                &mut mine.cross_v,
                groups,
                &pad_to(&theirs.cross_v, 2, src_len, 0.0)?,
            )?;
        }
        put_rows(
            &mut self.cross_mask,
            groups,
            &pad_to(&other.cross_mask, 3, src_len, MASKED)?,
        )?;
        let base = self.next_source;
        self.group_source
            .extend(other.group_source.iter().map(|&s| base + s));
        self.next_source = base + other.next_source;
        self.positions.extend(std::iter::repeat_n(0, new_rows));
        Ok(())
    }
}

/// `t` with dimension `dim` padded to `len` with `value`.
fn pad_to(t: &Tensor, dim: usize, len: usize, value: f32) -> Result<Tensor> {
    let have = t.dim(dim)?;
    if have >= len {
        return Ok(t.clone());
    }
    let mut shape = t.dims().to_vec();
    shape[dim] = len - have;
    let pad = Tensor::full(value, shape, t.device())?.to_dtype(t.dtype())?;
    Tensor::cat(&[t, &pad], dim)
}

/// An embedding table: the checkpoint's, or rows of the packed (int8 or
/// f32) output projection it is tied to.
#[derive(Debug, Clone)]
enum Table {
    Dense(Embedding),
    Packed(QLinear),
}

impl Module for Table {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(table) => table.forward(ids),
            Self::Packed(weight) => weight.embed(ids),
        }
    }
}

/// A large negative number for masked attention scores: finite, so a
/// softmax over a row can never produce NaN.
const MASKED: f32 = -1e9;

/// MarianMT: encoder, decoder and the output projection.
#[derive(Debug, Clone)]
pub struct MarianModel {
    cfg: Config,
    encoder_embed: Table,
    decoder_embed: Table,
    positions: Tensor,
    encoder_layers: Vec<EncoderLayer>,
    decoder_layers: Vec<DecoderLayer>,
    lm_head: Proj,
    embed_scale: f64,
}

impl MarianModel {
    /// Builds the model from `transformers`-named weights
    /// (`model.encoder.layers.0.self_attn.q_proj.weight`, ...).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Self::new_quantized(cfg, vb, None)
    }

    /// Like [`MarianModel::new`], with every linear layer (the output
    /// projection included) quantized to `quantize` as it is loaded; the
    /// embeddings, norms and biases stay in the loader's dtype.
    pub fn new_quantized(
        cfg: &Config,
        vb: VarBuilder,
        quantize: Option<GgmlDType>,
    ) -> Result<Self> {
        let q = quantize;
        let activation = Activation::parse(&cfg.activation_function)?;
        cfg.validate()?;
        let d = cfg.d_model;
        let root = if vb.contains_tensor("model.shared.weight") {
            vb.pp("model")
        } else {
            vb.clone()
        };
        let shared = candle_nn::embedding(cfg.vocab_size, d, root.pp("shared"))?;
        let encoder_embed = if root.contains_tensor("encoder.embed_tokens.weight")
            && !cfg.share_encoder_decoder_embeddings
        {
            candle_nn::embedding(cfg.vocab_size, d, root.pp("encoder.embed_tokens"))?
        } else {
            shared.clone()
        };
        let target_vocab = cfg.target_vocab_size();
        let decoder_embed = if root.contains_tensor("decoder.embed_tokens.weight")
            && !cfg.share_encoder_decoder_embeddings
        {
            candle_nn::embedding(target_vocab, d, root.pp("decoder.embed_tokens"))?
        } else {
            shared.clone()
        };
        // `final_logits_bias` is the output projection's bias: one pass over
        // the logits (the int8 kernel adds it as it writes them).
        let final_logits_bias = if vb.contains_tensor("final_logits_bias") {
            vb.get((1, target_vocab), "final_logits_bias")?
        } else {
            Tensor::zeros((1, target_vocab), vb.dtype(), vb.device())?
        }
        .reshape(target_vocab)?;
        let lm_head_weight = if vb.contains_tensor("lm_head.weight") && !cfg.tie_word_embeddings {
            vb.get((target_vocab, d), "lm_head.weight")?
        } else {
            decoder_embed.embeddings().clone()
        };
        let shared_id = shared.embeddings().id();
        let tied = lm_head_weight.id() == shared_id
            && decoder_embed.embeddings().id() == shared_id
            && encoder_embed.embeddings().id() == shared_id;
        let lm_head = Proj::new(Linear::new(lm_head_weight, Some(final_logits_bias)), q)?;
        // One vocabulary table for everything, and the output projection
        // holds it packed: look the embeddings up there too and drop the
        // checkpoint's table (119 MB of opus-mt's 300).
        // (Dropped before the layers load, so the table and the packed copy
        // are not both in memory while they do.)
        let (encoder_embed, decoder_embed) = match &lm_head {
            Proj::Packed { weight, .. } if tied && weight.can_embed() => {
                drop((encoder_embed, decoder_embed));
                (Table::Packed(weight.clone()), Table::Packed(weight.clone()))
            }
            _ => (Table::Dense(encoder_embed), Table::Dense(decoder_embed)),
        };
        drop(shared);
        let positions = if root.contains_tensor("encoder.embed_positions.weight") {
            root.get(
                (cfg.max_position_embeddings, d),
                "encoder.embed_positions.weight",
            )?
        } else {
            sinusoidal_table(cfg.max_position_embeddings, d, vb.device())?.to_dtype(vb.dtype())?
        };
        let encoder_layers = (0..cfg.encoder_layers)
            .map(|i| EncoderLayer::new(cfg, activation, root.pp(format!("encoder.layers.{i}")), q))
            .collect::<Result<Vec<_>>>()?;
        let decoder_layers = (0..cfg.decoder_layers)
            .map(|i| DecoderLayer::new(cfg, activation, root.pp(format!("decoder.layers.{i}")), q))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            encoder_embed,
            decoder_embed,
            positions,
            encoder_layers,
            decoder_layers,
            lm_head,
            embed_scale: if cfg.scale_embedding {
                (d as f64).sqrt()
            } else {
                1.0
            },
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        self.positions.device()
    }

    /// Longest sequence (source or target) the position table covers.
    pub fn max_positions(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn embed(&self, table: &Table, ids: &Tensor, start: usize) -> Result<Tensor> {
        let t = ids.dim(1)?;
        if start + t > self.max_positions() {
            candle_core::bail!(
                "sequence of {} tokens exceeds the model's {} positions",
                start + t,
                self.max_positions()
            );
        }
        let xs = (table.forward(ids)? * self.embed_scale)?;
        xs.broadcast_add(&self.positions.narrow(0, start, t)?.unsqueeze(0)?)
    }

    /// Embeds one token per row, `ids` (rows, 1), each at its own position.
    fn embed_at(&self, table: &Table, ids: &Tensor, positions: &[usize]) -> Result<Tensor> {
        if let Some(&bad) = positions.iter().find(|&&p| p >= self.max_positions()) {
            candle_core::bail!(
                "sequence of {} tokens exceeds the model's {} positions",
                bad + 1,
                self.max_positions()
            );
        }
        let at: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let at = Tensor::new(at.as_slice(), ids.device())?;
        let xs = (table.forward(ids)? * self.embed_scale)?;
        xs.broadcast_add(&self.positions.index_select(&at, 0)?.unsqueeze(1)?)
    }

    /// Encodes a right-padded batch and returns the decoder state for it.
    ///
    /// `input_ids`: (batch, src_len) u32; `lengths[i]`: real tokens of row i
    /// (the rest is padding, masked out of every attention).
    pub fn encode(&self, input_ids: &Tensor, lengths: &[usize]) -> Result<DecoderState> {
        let (batch, src_len) = input_ids.dims2()?;
        let mut mask = vec![0f32; batch * src_len];
        for (row, &len) in lengths.iter().enumerate() {
            for m in &mut mask[row * src_len + len.min(src_len)..(row + 1) * src_len] {
                *m = MASKED;
            }
        }
        let dtype = self.positions.dtype();
        let mask =
            Tensor::from_vec(mask, (batch, 1, 1, src_len), input_ids.device())?.to_dtype(dtype)?;
        let mut xs = self.embed(&self.encoder_embed, input_ids, 0)?;
        for layer in &self.encoder_layers {
            xs = layer.forward(&xs, &mask)?;
        }
        let capacity = CAPACITY_STEP.min(self.max_positions());
        let layers = self
            .decoder_layers
            .iter()
            .map(|layer| {
                let (cross_k, cross_v) = layer.encoder_attn.project_kv(&xs)?;
                let attn = &layer.self_attn;
                let empty = || {
                    Tensor::zeros(
                        (batch, attn.num_heads, capacity, attn.head_dim),
                        xs.dtype(),
                        xs.device(),
                    )
                };
                Ok(LayerCache {
                    self_k: empty()?,
                    self_v: empty()?,
                    cross_k,
                    cross_v,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState {
            layers,
            cross_mask: mask,
            group: 1,
            group_source: (0..batch as u32).collect(),
            capacity,
            positions: vec![0; batch],
            next_source: batch as u32,
            logits: None,
        })
    }

    /// Runs the decoder on one new token per row and returns the next-token
    /// logits, (rows, target_vocab) in f32; possibly a transposed view of a
    /// contiguous (target_vocab, rows) tensor. The next step may write its
    /// logits into the same memory: read them before stepping again.
    pub fn decode_step(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        if tokens.len() != state.rows()? {
            candle_core::bail!("{} tokens for {} decoder rows", tokens.len(), state.rows()?);
        }
        state.reserve_position(self.max_positions())?;
        let ids = Tensor::from_slice(tokens, (tokens.len(), 1), self.device())?;
        let positions = &state.positions;
        // Runs of consecutive rows at the same position: one run when the
        // rows started together, more in a queued run.
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        for (row, &pos) in positions.iter().enumerate() {
            match runs.last_mut() {
                Some((_, len, p)) if *p == pos => *len += 1,
                _ => runs.push((row, 1, pos)),
            }
        }
        let mut xs = match runs.as_slice() {
            [(_, _, pos)] => self.embed(&self.decoder_embed, &ids, *pos)?,
            _ => self.embed_at(&self.decoder_embed, &ids, positions)?,
        };
        let self_lens: Vec<usize> = positions.iter().map(|&p| p + 1).collect();
        let longest = self_lens.iter().copied().max().unwrap_or(1);
        // The tensor path's mask of each row's filled prefix, where rows
        // differ: made on that path's first use (the CPU kernel reads each
        // row's length instead).
        let mut self_mask: Option<Tensor> = None;
        let prefix_mask = |dtype: DType| -> Result<Tensor> {
            let mut mask = vec![0f32; positions.len() * longest];
            for (row, &len) in self_lens.iter().enumerate() {
                mask[row * longest + len..(row + 1) * longest].fill(MASKED);
            }
            Tensor::from_vec(mask, (positions.len(), 1, 1, longest), self.device())?.to_dtype(dtype)
        };
        let cross_lens = state.source_lengths()?;
        let (rows, groups, cross_mask) = (positions.len(), state.groups(), state.mask()?);
        for (layer, cache) in self.decoder_layers.iter().zip(state.layers.iter()) {
            let (self_k, self_v) = (live(&cache.self_k, rows)?, live(&cache.self_v, rows)?);
            let (cross_k, cross_v) = (live(&cache.cross_k, groups)?, live(&cache.cross_v, groups)?);
            // Self-attention over each row's previous target positions. The
            // new key/value go into the cache in place; attention reads each
            // row's filled prefix.
            let (k, v) = layer.self_attn.project_kv(&xs)?;
            for &(row, len, pos) in &runs {
                if len == rows {
                    self_k.slice_set(&k, 2, pos)?;
                    self_v.slice_set(&v, 2, pos)?;
                } else {
                    let at = |t: &Tensor| t.narrow(0, row, len);
                    at(&self_k)?.slice_set(&at(&k)?, 2, pos)?;
                    at(&self_v)?.slice_set(&at(&v)?, 2, pos)?;
                }
            }
            let attn = match layer
                .self_attn
                .attend_step_cpu(&xs, &self_k, &self_v, 1, &self_lens)?
            {
                Some(attn) => attn,
                None => {
                    let k = self_k.narrow(2, 0, longest)?;
                    let v = self_v.narrow(2, 0, longest)?;
                    if runs.len() > 1 && self_mask.is_none() {
                        self_mask = Some(prefix_mask(xs.dtype())?);
                    }
                    layer.self_attn.attend(&xs, &k, &v, self_mask.as_ref())?
                }
            };
            xs = (attn + &xs)?.apply(&layer.self_attn_layer_norm)?;
            let fast = match &cross_lens {
                Some(lens) => layer.encoder_attn.attend_step_cpu(
                    &xs,
                    &cross_k,
                    &cross_v,
                    state.group,
                    lens,
                )?,
                None => None,
            };
            let cross = match fast {
                Some(cross) => cross,
                None => layer.encoder_attn.attend_grouped(
                    &xs,
                    &cross_k,
                    &cross_v,
                    &cross_mask,
                    state.group,
                )?,
            };
            xs = (cross + &xs)?.apply(&layer.encoder_attn_layer_norm)?;
            xs = (layer.ffn.forward(&xs)? + &xs)?.apply(&layer.final_layer_norm)?;
        }
        for pos in state.positions.iter_mut() {
            *pos += 1;
        }
        let xs = xs.i((.., 0, ..))?;
        match &self.lm_head {
            Proj::Dense(linear) if xs.dim(0)? <= TRANSPOSED_MAX_ROWS => {
                // (vocab, rows), returned as a transposed view: turning
                // 58101 × rows floats around is left to whoever reads them
                // (the host, in blocks), not to a strided copy here.
                let mut logits_t = linear.weight().matmul(&xs.t()?)?;
                if let Some(bias) = linear.bias() {
                    logits_t = logits_t.broadcast_add(&bias.unsqueeze(1)?)?;
                }
                logits_t.to_dtype(DType::F32)?.t()
            }
            Proj::Packed { weight, bias: None } => {
                weight.forward_reusing(&xs.contiguous()?, Epilogue::None, &mut state.logits)
            }
            lm_head => lm_head.forward(&xs)?.to_dtype(DType::F32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoids_match_the_transformers_layout() {
        let t = sinusoidal_table(4, 6, &Device::Cpu).unwrap();
        let rows: Vec<Vec<f32>> = t.to_vec2().unwrap();
        // Position 0: sin(0)=0 in the first half, cos(0)=1 in the second.
        assert_eq!(rows[0], vec![0., 0., 0., 1., 1., 1.]);
        // Position 3, pair 1 (exponent 2/6): sin in column 1, cos in column 4.
        let angle = 3f64 / 10000f64.powf(2.0 / 6.0);
        assert!((rows[3][1] - angle.sin() as f32).abs() < 1e-7);
        assert!((rows[3][4] - angle.cos() as f32).abs() < 1e-7);
    }

    #[test]
    fn old_configs_get_transformers_defaults() {
        let cfg: Config = serde_json::from_str(r#"{"d_model": 512, "vocab_size": 100}"#).unwrap();
        assert_eq!(cfg.d_model, 512);
        assert_eq!(cfg.encoder_layers, 12);
        assert_eq!(cfg.target_vocab_size(), 100);
        assert!(Activation::parse(&cfg.activation_function).is_ok());
        assert!(Activation::parse("mystery").is_err());
    }
}
