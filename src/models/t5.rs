//! T5 and Flan-T5 (encoder-decoder with relative attention), written for
//! batched, cached decoding.
//!
//! candle-transformers 0.11.1 ships a T5 module, but it falls short for a
//! summarizer, so this one is our own:
//! - its relative position buckets are always bidirectional; T5's decoder
//!   needs unidirectional ones (all 32 buckets for the past, 16 exact), so
//!   from a distance of 8 tokens on every decoder step used the wrong
//!   position bias;
//! - with tied embeddings it multiplies the decoder output by √d_model where
//!   `transformers` multiplies by 1/√d_model: the argmax survives, but the
//!   log-probabilities (and so beam search) are wrong;
//! - it has no padding mask (no batching of inputs of different lengths), it
//!   recomputes cross-attention keys/values at every step, and its caches
//!   live inside the model and cannot follow beam re-ranking.
//!
//! Here the model holds only weights; everything one decoding run carries
//! lives in a [`DecoderState`] that the caller owns. Layout and numerics
//! follow `transformers`' `T5ForConditionalGeneration` (v4.57): pre-norm
//! blocks with T5's RMS layer norm, unscaled attention, relative position
//! bias computed by the first block of each stack and shared by the others,
//! plain or gated feed-forward, and an output projection that is either the
//! shared embedding (scaled by 1/√d_model) or its own `lm_head`.

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

/// `config.json` of a T5 model, with the defaults of `transformers.T5Config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_decoder_layers: Option<usize>,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f64,
    /// `relu`, `gated-gelu` (Flan-T5), or `[gated-]<activation>`.
    pub feed_forward_proj: String,
    pub tie_word_embeddings: bool,
    pub is_encoder_decoder: bool,
    pub pad_token_id: u32,
    pub eos_token_id: u32,
    pub decoder_start_token_id: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model_type: None,
            vocab_size: 32128,
            d_model: 512,
            d_kv: 64,
            d_ff: 2048,
            num_layers: 6,
            num_decoder_layers: None,
            num_heads: 8,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: "relu".into(),
            tie_word_embeddings: true,
            is_encoder_decoder: true,
            pad_token_id: 0,
            eos_token_id: 1,
            decoder_start_token_id: None,
        }
    }
}

impl Config {
    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// The token the decoder starts from (T5: the pad token).
    pub fn decoder_start(&self) -> u32 {
        self.decoder_start_token_id.unwrap_or(self.pad_token_id)
    }
    /// Refuses sizes no real model has (zero, or far too large), before
    /// anything is allocated from them.
    pub fn validate(&self) -> Result<()> {
        use super::limits::{self, check};
        check("vocab_size", self.vocab_size, limits::VOCAB)?;
        check("d_model", self.d_model, limits::WIDTH)?;
        check("d_kv", self.d_kv, limits::WIDTH)?;
        check("d_ff", self.d_ff, limits::FFN)?;
        check("num_layers", self.num_layers, limits::LAYERS)?;
        check("num_decoder_layers", self.decoder_layers(), limits::LAYERS)?;
        check("num_heads", self.num_heads, limits::WIDTH)?;
        check(
            "num_heads × d_kv",
            self.num_heads.saturating_mul(self.d_kv),
            limits::WIDTH,
        )?;
        check(
            "relative_attention_num_buckets",
            self.relative_attention_num_buckets,
            limits::POSITIONS,
        )?;
        check(
            "relative_attention_max_distance",
            self.relative_attention_max_distance,
            limits::POSITIONS,
        )
    }
}

/// Feed-forward activations by their `transformers` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activation {
    Relu,
    GeluErf,
    GeluTanh,
    Silu,
}

impl Activation {
    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Relu => xs.relu(),
            Self::GeluErf => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Silu => candle_nn::ops::silu(xs),
        }
    }
}

/// Reads `feed_forward_proj` as `T5Config` does: `[gated-]<activation>`,
/// where `gated-gelu` means the tanh approximation (`gelu_new`).
fn parse_feed_forward(proj: &str) -> Result<(Activation, bool)> {
    let (gated, name) = match proj.split_once('-') {
        Some(("gated", name)) => (true, name),
        Some(_) => candle_core::bail!(
            "config.json: feed_forward_proj '{proj}' is not of the form [gated-]<activation>"
        ),
        None => (false, proj),
    };
    let name = if proj == "gated-gelu" {
        "gelu_new"
    } else {
        name
    };
    let act = match name {
        "relu" => Activation::Relu,
        "gelu" => Activation::GeluErf,
        "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Activation::GeluTanh,
        "silu" | "swish" => Activation::Silu,
        other => {
            candle_core::bail!("config.json: unsupported activation '{other}' in feed_forward_proj")
        }
    };
    Ok((act, gated))
}

/// The bucket of a relative position (`key - query`), as
/// `T5Attention._relative_position_bucket`: exact buckets for small
/// distances, logarithmic ones up to `max_distance`. The encoder is
/// bidirectional (half the buckets for each direction); the decoder only
/// looks back.
///
/// The logarithm is taken in f32 and truncated, as torch does, so that
/// distances on a bucket boundary land in the same bucket.
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> u32 {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0;
    let distance = if bidirectional {
        num_buckets /= 2;
        if relative_position > 0 {
            bucket += num_buckets;
        }
        relative_position.abs()
    } else {
        (-relative_position).max(0)
    };
    let max_exact = num_buckets / 2;
    if distance < max_exact {
        return (bucket + distance) as u32;
    }
    let log_ratio = (distance as f32 / max_exact as f32).ln();
    let log_range = (max_distance as f64 / max_exact as f64).ln() as f32;
    let large = max_exact + (log_ratio / log_range * (num_buckets - max_exact) as f32) as i64;
    (bucket + large.min(num_buckets - 1)) as u32
}

/// T5's layer norm: no mean subtraction, no bias, computed in f32.
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dtype = xs.dtype();
        let xs = xs.to_dtype(DType::F32)?;
        let variance = xs.sqr()?.mean_keepdim(D::Minus1)?;
        let xs = xs.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        xs.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    num_heads: usize,
    d_kv: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let inner = cfg.num_heads * cfg.d_kv;
        let d = cfg.d_model;
        Ok(Self {
            q: candle_nn::linear_no_bias(d, inner, vb.pp("q"))?,
            k: candle_nn::linear_no_bias(d, inner, vb.pp("k"))?,
            v: candle_nn::linear_no_bias(d, inner, vb.pp("v"))?,
            o: candle_nn::linear_no_bias(inner, d, vb.pp("o"))?,
            num_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
        })
    }

    /// (b, t, heads·d_kv) → (b, heads, t, d_kv)
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        xs.reshape((b, t, self.num_heads, self.d_kv))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn project_kv(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split_heads(&self.k.forward(xs)?)?,
            self.split_heads(&self.v.forward(xs)?)?,
        ))
    }

    /// Attends `xs` (b, t, d) to keys/values (b, heads, s, d_kv). `bias` is
    /// added to the scores (position bias and/or padding mask), broadcast to
    /// (b, heads, t, s). T5 does not scale the scores by 1/√d_kv: that is
    /// folded into its initialization.
    fn attend(&self, xs: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let q = self.split_heads(&self.q.forward(xs)?)?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match bias {
            Some(bias) => scores.broadcast_add(bias)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        probs
            .matmul(v)?
            .transpose(1, 2)?
            .reshape((b, t, self.num_heads * self.d_kv))?
            .apply(&self.o)
    }
}

#[derive(Debug, Clone)]
struct FeedForward {
    /// `wi` (plain) or `wi_0` (gated: the activated half).
    wi: Linear,
    /// `wi_1`: the linear half of a gated unit.
    wi_gate: Option<Linear>,
    wo: Linear,
    act: Activation,
}

impl FeedForward {
    fn new(cfg: &Config, act: Activation, gated: bool, vb: VarBuilder) -> Result<Self> {
        let (d, ff) = (cfg.d_model, cfg.d_ff);
        let (wi, wi_gate) = if gated {
            (
                candle_nn::linear_no_bias(d, ff, vb.pp("wi_0"))?,
                Some(candle_nn::linear_no_bias(d, ff, vb.pp("wi_1"))?),
            )
        } else {
            (candle_nn::linear_no_bias(d, ff, vb.pp("wi"))?, None)
        };
        Ok(Self {
            wi,
            wi_gate,
            wo: candle_nn::linear_no_bias(ff, d, vb.pp("wo"))?,
            act,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let hidden = self.act.apply(&self.wi.forward(xs)?)?;
        let hidden = match &self.wi_gate {
            Some(gate) => (hidden * gate.forward(xs)?)?,
            None => hidden,
        };
        self.wo.forward(&hidden)
    }
}

#[derive(Debug, Clone)]
struct EncoderBlock {
    attn_norm: LayerNorm,
    attn: Attention,
    ff_norm: LayerNorm,
    ff: FeedForward,
}

impl EncoderBlock {
    fn new(cfg: &Config, act: Activation, gated: bool, vb: VarBuilder) -> Result<Self> {
        let (d, eps) = (cfg.d_model, cfg.layer_norm_epsilon);
        Ok(Self {
            attn_norm: LayerNorm::new(d, eps, vb.pp("layer.0.layer_norm"))?,
            attn: Attention::new(cfg, vb.pp("layer.0.SelfAttention"))?,
            ff_norm: LayerNorm::new(d, eps, vb.pp("layer.1.layer_norm"))?,
            ff: FeedForward::new(cfg, act, gated, vb.pp("layer.1.DenseReluDense"))?,
        })
    }

    fn forward(&self, xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let h = self.attn_norm.forward(xs)?;
        let (k, v) = self.attn.project_kv(&h)?;
        let xs = (xs + self.attn.attend(&h, &k, &v, Some(bias))?)?;
        &xs + self.ff.forward(&self.ff_norm.forward(&xs)?)?
    }
}

#[derive(Debug, Clone)]
struct DecoderBlock {
    self_norm: LayerNorm,
    self_attn: Attention,
    cross_norm: LayerNorm,
    cross_attn: Attention,
    ff_norm: LayerNorm,
    ff: FeedForward,
}

impl DecoderBlock {
    fn new(cfg: &Config, act: Activation, gated: bool, vb: VarBuilder) -> Result<Self> {
        let (d, eps) = (cfg.d_model, cfg.layer_norm_epsilon);
        Ok(Self {
            self_norm: LayerNorm::new(d, eps, vb.pp("layer.0.layer_norm"))?,
            self_attn: Attention::new(cfg, vb.pp("layer.0.SelfAttention"))?,
            cross_norm: LayerNorm::new(d, eps, vb.pp("layer.1.layer_norm"))?,
            cross_attn: Attention::new(cfg, vb.pp("layer.1.EncDecAttention"))?,
            ff_norm: LayerNorm::new(d, eps, vb.pp("layer.2.layer_norm"))?,
            ff: FeedForward::new(cfg, act, gated, vb.pp("layer.2.DenseReluDense"))?,
        })
    }
}

/// Per-layer decoder cache: self-attention keys/values grown step by step,
/// cross-attention keys/values computed once from the encoder output.
#[derive(Debug, Clone)]
struct LayerCache {
    self_kv: Option<(Tensor, Tensor)>,
    cross_k: Tensor,
    cross_v: Tensor,
}

/// Everything one decoding run carries between steps, one row per hypothesis.
#[derive(Debug, Clone)]
pub struct DecoderState {
    layers: Vec<LayerCache>,
    /// (rows, 1, 1, src_len): 0 for real input tokens, large negative for padding.
    cross_mask: Tensor,
    /// Number of target positions already decoded.
    pub position: usize,
}

impl DecoderState {
    pub fn rows(&self) -> Result<usize> {
        self.cross_mask.dim(0)
    }

    /// Keeps (and duplicates) rows: row `i` of the new state is row
    /// `rows[i]` of the old one (beam re-ranking, finished inputs leaving).
    pub fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        let idx = Tensor::new(rows, self.cross_mask.device())?;
        for layer in self.layers.iter_mut() {
            if let Some((k, v)) = &layer.self_kv {
                layer.self_kv = Some((k.index_select(&idx, 0)?, v.index_select(&idx, 0)?));
            }
            layer.cross_k = layer.cross_k.index_select(&idx, 0)?;
            layer.cross_v = layer.cross_v.index_select(&idx, 0)?;
        }
        self.cross_mask = self.cross_mask.index_select(&idx, 0)?;
        Ok(())
    }
}

/// A large negative number for masked attention scores: finite, so a
/// softmax over a row can never produce NaN.
const MASKED: f32 = -1e9;

/// T5 for conditional generation: shared embedding, encoder, decoder and
/// the output projection.
#[derive(Debug, Clone)]
pub struct T5Model {
    cfg: Config,
    shared: Embedding,
    encoder: Vec<EncoderBlock>,
    encoder_position_bias: Embedding,
    encoder_norm: LayerNorm,
    decoder: Vec<DecoderBlock>,
    decoder_position_bias: Embedding,
    decoder_norm: LayerNorm,
    lm_head: Linear,
    /// 1/√d_model when the output projection is the shared embedding.
    output_scale: f64,
    device: Device,
}

impl T5Model {
    /// Builds the model from `transformers`-named weights
    /// (`shared.weight`, `encoder.block.0.layer.0.SelfAttention.q.weight`, ...).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (act, gated) = parse_feed_forward(&cfg.feed_forward_proj)?;
        if cfg.d_model == 0 || cfg.num_heads == 0 || cfg.d_kv == 0 {
            candle_core::bail!("config.json: d_model, num_heads and d_kv must be positive");
        }
        if cfg.relative_attention_num_buckets < 4 {
            candle_core::bail!("config.json: relative_attention_num_buckets must be at least 4");
        }
        let d = cfg.d_model;
        // Some exports keep the table only under the stacks' names.
        let shared_name = ["shared", "encoder.embed_tokens", "decoder.embed_tokens"]
            .into_iter()
            .find(|name| vb.contains_tensor(&format!("{name}.weight")))
            .unwrap_or("shared");
        let shared = candle_nn::embedding(cfg.vocab_size, d, vb.pp(shared_name))?;
        let buckets = cfg.relative_attention_num_buckets;
        let encoder = (0..cfg.num_layers)
            .map(|i| EncoderBlock::new(cfg, act, gated, vb.pp(format!("encoder.block.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let decoder = (0..cfg.decoder_layers())
            .map(|i| DecoderBlock::new(cfg, act, gated, vb.pp(format!("decoder.block.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let encoder_position_bias = candle_nn::embedding(
            buckets,
            cfg.num_heads,
            vb.pp("encoder.block.0.layer.0.SelfAttention.relative_attention_bias"),
        )?;
        let decoder_position_bias = candle_nn::embedding(
            buckets,
            cfg.num_heads,
            vb.pp("decoder.block.0.layer.0.SelfAttention.relative_attention_bias"),
        )?;
        let (lm_head, output_scale) = if cfg.tie_word_embeddings {
            (
                Linear::new(shared.embeddings().clone(), None),
                (d as f64).powf(-0.5),
            )
        } else {
            (
                candle_nn::linear_no_bias(d, cfg.vocab_size, vb.pp("lm_head"))?,
                1.0,
            )
        };
        Ok(Self {
            cfg: cfg.clone(),
            encoder_norm: LayerNorm::new(
                d,
                cfg.layer_norm_epsilon,
                vb.pp("encoder.final_layer_norm"),
            )?,
            decoder_norm: LayerNorm::new(
                d,
                cfg.layer_norm_epsilon,
                vb.pp("decoder.final_layer_norm"),
            )?,
            shared,
            encoder,
            encoder_position_bias,
            decoder,
            decoder_position_bias,
            lm_head,
            output_scale,
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Position bias (1, heads, queries, keys) for the given buckets.
    fn position_bias(
        &self,
        table: &Embedding,
        buckets: Vec<u32>,
        queries: usize,
        keys: usize,
    ) -> Result<Tensor> {
        let ids = Tensor::from_vec(buckets, (queries, keys), &self.device)?;
        table.forward(&ids)?.permute((2, 0, 1))?.unsqueeze(0)
    }

    /// Encodes a right-padded batch and returns the decoder state for it.
    ///
    /// `input_ids`: (batch, src_len) u32; `lengths[i]`: real tokens of row i
    /// (the rest is padding, masked out of every attention).
    pub fn encode(&self, input_ids: &Tensor, lengths: &[usize]) -> Result<DecoderState> {
        let (batch, src_len) = input_ids.dims2()?;
        if lengths.len() != batch || src_len == 0 {
            candle_core::bail!(
                "encode: {} lengths for a batch of {batch} rows of {src_len} tokens",
                lengths.len()
            );
        }
        let mut mask = vec![0f32; batch * src_len];
        for (row, &len) in lengths.iter().enumerate() {
            for m in &mut mask[row * src_len + len.min(src_len)..(row + 1) * src_len] {
                *m = MASKED;
            }
        }
        let mask = Tensor::from_vec(mask, (batch, 1, 1, src_len), &self.device)?;
        let (num_buckets, max_distance) = (
            self.cfg.relative_attention_num_buckets,
            self.cfg.relative_attention_max_distance,
        );
        let buckets = (0..src_len as i64)
            .flat_map(|q| {
                (0..src_len as i64)
                    .map(move |k| relative_position_bucket(k - q, true, num_buckets, max_distance))
            })
            .collect();
        let bias = self
            .position_bias(&self.encoder_position_bias, buckets, src_len, src_len)?
            .broadcast_add(&mask)?;
        let mut xs = self.shared.forward(input_ids)?;
        for block in &self.encoder {
            xs = block.forward(&xs, &bias)?;
        }
        let xs = self.encoder_norm.forward(&xs)?;
        let layers = self
            .decoder
            .iter()
            .map(|block| {
                let (cross_k, cross_v) = block.cross_attn.project_kv(&xs)?;
                Ok(LayerCache {
                    self_kv: None,
                    cross_k,
                    cross_v,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState {
            layers,
            cross_mask: mask,
            position: 0,
        })
    }

    /// Runs the decoder on one new token per row and returns the next-token
    /// logits, (rows, vocab_size) in f32.
    pub fn decode_step(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        let rows = state.rows()?;
        if tokens.len() != rows {
            candle_core::bail!("decode_step: {} tokens for {rows} rows", tokens.len());
        }
        let position = state.position as i64;
        let ids = Tensor::from_slice(tokens, (rows, 1), &self.device)?;
        // The new position looks back at every earlier one (and itself), so
        // no causal mask is needed when decoding one position at a time.
        let buckets = (0..=position)
            .map(|k| {
                relative_position_bucket(
                    k - position,
                    false,
                    self.cfg.relative_attention_num_buckets,
                    self.cfg.relative_attention_max_distance,
                )
            })
            .collect();
        let self_bias =
            self.position_bias(&self.decoder_position_bias, buckets, 1, state.position + 1)?;
        let mut xs = self.shared.forward(&ids)?;
        for (block, cache) in self.decoder.iter().zip(state.layers.iter_mut()) {
            let h = block.self_norm.forward(&xs)?;
            let (k, v) = block.self_attn.project_kv(&h)?;
            let (k, v) = match &cache.self_kv {
                Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
                None => (k, v),
            };
            let attn = block.self_attn.attend(&h, &k, &v, Some(&self_bias))?;
            cache.self_kv = Some((k, v));
            xs = (xs + attn)?;
            let h = block.cross_norm.forward(&xs)?;
            let cross = block.cross_attn.attend(
                &h,
                &cache.cross_k,
                &cache.cross_v,
                Some(&state.cross_mask),
            )?;
            xs = (xs + cross)?;
            xs = (&xs + block.ff.forward(&block.ff_norm.forward(&xs)?)?)?;
        }
        state.position += 1;
        let xs = (self.decoder_norm.forward(&xs)? * self.output_scale)?;
        self.lm_head
            .forward(&xs.i((.., 0, ..))?)?
            .to_dtype(DType::F32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_forward_names_follow_t5_config() {
        assert_eq!(
            parse_feed_forward("gated-gelu").unwrap(),
            (Activation::GeluTanh, true)
        );
        assert_eq!(
            parse_feed_forward("relu").unwrap(),
            (Activation::Relu, false)
        );
        assert_eq!(
            parse_feed_forward("gated-silu").unwrap(),
            (Activation::Silu, true)
        );
        assert_eq!(
            parse_feed_forward("gelu").unwrap(),
            (Activation::GeluErf, false)
        );
        assert!(parse_feed_forward("mystery").is_err());
        assert!(parse_feed_forward("fancy-relu").is_err());
    }

    #[test]
    fn decoder_buckets_only_look_back() {
        // Unidirectional: 16 exact buckets for distances 0..16, nothing for the future.
        assert_eq!(relative_position_bucket(-5, false, 32, 128), 5);
        assert_eq!(relative_position_bucket(-15, false, 32, 128), 15);
        assert_eq!(relative_position_bucket(3, false, 32, 128), 0);
        // Bidirectional: 8 exact buckets each way, the future offset by 16.
        assert_eq!(relative_position_bucket(-5, true, 32, 128), 5);
        assert_eq!(relative_position_bucket(5, true, 32, 128), 21);
        assert!(relative_position_bucket(-15, true, 32, 128) < 16);
        assert_eq!(relative_position_bucket(-10_000, true, 32, 128), 15);
        assert_eq!(relative_position_bucket(-10_000, false, 32, 128), 31);
    }

    #[test]
    fn configs_get_t5_defaults() {
        let cfg: Config = serde_json::from_str(r#"{"d_model": 64, "num_layers": 3}"#).unwrap();
        assert_eq!(cfg.decoder_layers(), 3);
        assert_eq!(cfg.decoder_start(), 0);
        assert_eq!(cfg.eos_token_id, 1);
        assert!(cfg.tie_word_embeddings);
    }
}
