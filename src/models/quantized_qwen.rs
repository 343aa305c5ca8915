//! Qwen 2 / 2.5 and Qwen 3 decoders on quantized GGUF weights, in tolk's own
//! module family (replacing candle-transformers' `quantized_qwen2/3`).
//!
//! Both are Llama-shaped (RMS norms, SwiGLU, grouped-query attention) with:
//! - rotary embeddings on the two halves of each head (GPT-NeoX style; GGUF
//!   qwen weights are not permuted for the interleaved convention, unlike llama),
//! - qwen2: biases on the q, k and v projections,
//! - qwen3: a per-head RMS norm on queries and keys before the rotation, and a
//!   head dimension of its own (`attention.key_length`, not hidden / heads).
//!
//! What tolk adds over candle's modules is shared with the other decoders
//! ([`super::llm_blocks`]): a KV cache grown in place, RoPE tables only for
//! the positions used, decoding attention in plain loops, tolk's own
//! quantized kernels ([`QLinear`]), a quantized embedding whose rows are
//! dequantized on lookup, and a tied output head that multiplies with the
//! embedding's own blocks (no second copy).

use super::causal_lm::{CausalLm, Hparams, TensorSource};
use super::llm_blocks::{
    attention_mask, dense_vector, gated_ffn, grouped_attention, last_logits, rms_norm, KvCache,
    RopeTable,
};
use super::qlinear::{GateAct, QLinear};
use super::qweight::QEmbedding;
use candle_core::{Device, Module, Result, Tensor};

/// Which Qwen generation the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QwenVariant {
    /// `qwen2` (Qwen 2 and 2.5): q/k/v biases.
    Qwen2,
    /// `qwen3`: q/k RMS norms.
    Qwen3,
}

impl QwenVariant {
    /// The GGUF `general.architecture` name.
    pub fn arch(self) -> &'static str {
        match self {
            QwenVariant::Qwen2 => "qwen2",
            QwenVariant::Qwen3 => "qwen3",
        }
    }
}

/// Hyper-parameters read from GGUF metadata (`qwen2.*` / `qwen3.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct QwenConfig {
    pub variant: QwenVariant,
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub context_len: usize,
}

impl QwenConfig {
    /// Refuses sizes no real model has (zero, or far too large), before
    /// anything is allocated from them (the layers, the rotary tables of
    /// `context_len × head_dim` entries): the metadata is the file's word.
    pub fn validate(&self) -> Result<()> {
        super::limits::check_decoder(
            self.n_layer,
            self.hidden,
            self.n_head,
            self.n_kv_head,
            self.head_dim,
            self.context_len,
            self.head_dim,
        )
    }
    pub fn from_metadata(md: &Hparams, variant: QwenVariant) -> Result<Self> {
        let arch = variant.arch();
        let experts = md.usize_or("expert_count", 0)?;
        if experts > 1 {
            candle_core::bail!(
                "mixture-of-experts {arch} models ({experts} experts) are not supported"
            )
        }
        let n_head = md.usize("attention.head_count")?;
        let hidden = md.usize("embedding_length")?;
        if n_head == 0 {
            candle_core::bail!("{arch}: head_count is 0")
        }
        let head_dim = match md.usize_or("attention.key_length", 0)? {
            0 if hidden % n_head != 0 => candle_core::bail!(
                "{arch}: embedding_length {hidden} is not a multiple of head_count {n_head}"
            ),
            0 => hidden / n_head,
            d => d,
        };
        let n_kv_head = md.usize_or("attention.head_count_kv", n_head)?;
        if n_kv_head == 0 || n_head % n_kv_head != 0 {
            candle_core::bail!("{arch}: {n_head} query heads cannot share {n_kv_head} KV heads")
        }
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            candle_core::bail!("{arch}: head dimension {head_dim} is not even")
        }
        Ok(Self {
            variant,
            n_layer: md.usize("block_count")?,
            hidden,
            n_head,
            n_kv_head,
            head_dim,
            rope_theta: md.f32_or("rope.freq_base", 10_000.)?,
            rms_eps: md.f32_or("attention.layer_norm_rms_epsilon", 1e-6)?,
            context_len: md.usize("context_length")?,
        })
    }
}

/// A projection with an optional bias (qwen2's q/k/v).
struct Proj {
    w: QLinear,
    b: Option<Tensor>,
}

impl Proj {
    /// `y` (this projection's product) plus the bias.
    fn biased(&self, y: Tensor) -> Result<Tensor> {
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Proj,
    wk: Proj,
    wv: Proj,
    /// qwen3: RMS norm weights `[head_dim]` for queries and keys.
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    wo: QLinear,
    ffn_norm: Tensor,
    gate: QLinear,
    up: QLinear,
    down: QLinear,
    cache: KvCache,
}

/// A quantized Qwen 2/3 model with its KV cache.
pub struct QuantizedQwen {
    cfg: QwenConfig,
    embed: QEmbedding,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QLinear,
    rope: RopeTable,
    device: Device,
}

fn linear(src: &mut dyn TensorSource, name: &str) -> Result<QLinear> {
    src.weight(name)?.linear()
}

impl QuantizedQwen {
    /// Builds the model from the tensors `src` hands out (GGUF names).
    pub fn new(cfg: QwenConfig, src: &mut dyn TensorSource, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let embed_w = src.weight("token_embd.weight")?;
        let embed = QEmbedding::new(&embed_w)?;
        let output = if src.contains("output.weight") {
            src.weight("output.weight")?.head()?
        } else {
            // Tied head: multiply with the embedding's own quantized blocks.
            embed_w.head()?
        };
        let norm = dense_vector(src.tensor("output_norm.weight")?, device)?;
        let rope = RopeTable::new(cfg.head_dim, cfg.rope_theta, None, cfg.context_len, device)?;
        let qwen2 = cfg.variant == QwenVariant::Qwen2;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            let mut vector = |name: &str| -> Result<Tensor> {
                dense_vector(src.tensor(&format!("{p}.{name}"))?, device)
            };
            let attn_norm = vector("attn_norm.weight")?;
            let ffn_norm = vector("ffn_norm.weight")?;
            let (q_norm, k_norm) = if qwen2 {
                (None, None)
            } else {
                (
                    Some(vector("attn_q_norm.weight")?),
                    Some(vector("attn_k_norm.weight")?),
                )
            };
            let mut proj = |name: &str| -> Result<Proj> {
                let w = linear(src, &format!("{p}.{name}.weight"))?;
                let bias = format!("{p}.{name}.bias");
                // qwen2 files always carry them; read them wherever present.
                let b = if src.contains(&bias) {
                    Some(dense_vector(src.tensor(&bias)?, device)?)
                } else if qwen2 {
                    candle_core::bail!("qwen2: missing tensor {bias}")
                } else {
                    None
                };
                Ok(Proj { w, b })
            };
            let (wq, wk, wv) = (proj("attn_q")?, proj("attn_k")?, proj("attn_v")?);
            layers.push(Layer {
                attn_norm,
                wq,
                wk,
                wv,
                q_norm,
                k_norm,
                wo: linear(src, &format!("{p}.attn_output.weight"))?,
                ffn_norm,
                gate: linear(src, &format!("{p}.ffn_gate.weight"))?,
                up: linear(src, &format!("{p}.ffn_up.weight"))?,
                down: linear(src, &format!("{p}.ffn_down.weight"))?,
                cache: KvCache::new(None),
            });
        }
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            output,
            rope,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &QwenConfig {
        &self.cfg
    }
}

/// `(1, seq, heads * hd)` → `(1, heads, seq, hd)`, RMS-normed per head when
/// `norm` is given, then rotated on the halves of each head.
#[allow(clippy::too_many_arguments)]
fn heads(
    x: Tensor,
    seq: usize,
    n: usize,
    hd: usize,
    norm: Option<&Tensor>,
    eps: f32,
    cos: &Tensor,
    sin: &Tensor,
) -> Result<Tensor> {
    let x = x.reshape((1, seq, n, hd))?;
    let x = match norm {
        Some(w) => rms_norm(&x, w, eps)?,
        None => x,
    };
    let x = x.transpose(1, 2)?.contiguous()?;
    candle_nn::rotary_emb::rope(&x, cos, sin)
}

impl CausalLm for QuantizedQwen {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        let seq = tokens.len();
        if seq == 0 {
            candle_core::bail!("forward needs at least one token")
        }
        let (cos, sin) = self.rope.get(pos, seq)?;
        let mut x = self.embed.lookup(tokens, &self.device)?; // (1, seq, hidden)
        let (n_head, n_kv, hd) = (self.cfg.n_head, self.cfg.n_kv_head, self.cfg.head_dim);
        let scale = 1.0 / (hd as f64).sqrt();
        let eps = self.cfg.rms_eps;
        let mut mask: Option<Option<Tensor>> = None;
        for layer in &mut self.layers {
            let h = rms_norm(&x, &layer.attn_norm, eps)?;
            let [q, k, v] = QLinear::forward_all([&layer.wq.w, &layer.wk.w, &layer.wv.w], &h)?;
            let q = heads(
                layer.wq.biased(q)?,
                seq,
                n_head,
                hd,
                layer.q_norm.as_ref(),
                eps,
                &cos,
                &sin,
            )?;
            let k = heads(
                layer.wk.biased(k)?,
                seq,
                n_kv,
                hd,
                layer.k_norm.as_ref(),
                eps,
                &cos,
                &sin,
            )?;
            let v = layer
                .wv
                .biased(v)?
                .reshape((1, seq, n_kv, hd))?
                .transpose(1, 2)?;
            let view = layer.cache.append(&k, &v, pos)?;
            if mask.is_none() {
                let kv_len = view.k.dim(2)?;
                mask = Some(attention_mask(
                    pos,
                    seq,
                    view.first_pos,
                    kv_len,
                    None,
                    &self.device,
                )?);
            }
            let m = mask.as_ref().and_then(|m| m.as_ref());
            let att = grouped_attention(&q, &view.k, &view.v, m, scale)?;
            x = (x + layer.wo.forward(&att)?)?;
            let h = rms_norm(&x, &layer.ffn_norm, eps)?;
            let act = gated_ffn(&layer.gate, &layer.up, &h, GateAct::Silu)?;
            x = (x + layer.down.forward(&act)?)?;
        }
        // Only the last position's logits are needed: skip the head for the rest.
        let last = x.narrow(1, seq - 1, 1)?;
        let last = rms_norm(&last, &self.norm, eps)?;
        last_logits(&self.output.forward(&last)?)
    }

    fn clear_kv_cache(&mut self) {
        for l in &mut self.layers {
            l.cache.reset();
        }
    }

    fn context_len(&self) -> usize {
        self.cfg.context_len
    }
}
