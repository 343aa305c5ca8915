//! Llama-architecture decoder on quantized GGUF weights (SmolLM2, Llama 3.x,
//! Mistral-style dense models).
//!
//! Written after candle-transformers' `quantized_llama`, with what tolk needs
//! on top: the context comes from `llama.context_length` (not a fixed 4096),
//! the KV cache grows in place, RoPE tables cover only the positions used,
//! Llama 3 frequency factors (`rope_freqs.weight`) are honoured, and the
//! embedding stays quantized (rows are dequantized on lookup; a tied output
//! head multiplies with the same quantized blocks).

use super::causal_lm::{CausalLm, Hparams, TensorSource};
use super::llm_blocks::{
    attention_mask, dense_vector, gated_ffn, grouped_attention, last_logits, project_qkv, rms_norm,
    KvCache, RopeTable,
};
use super::qlinear::{GateAct, QLinear};
use super::qweight::QEmbedding;
use candle_core::{Device, Module, Result, Tensor};

/// Hyper-parameters read from GGUF metadata (`llama.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub context_len: usize,
}

impl LlamaConfig {
    /// Refuses sizes no real model has (zero, or far too large), before
    /// anything is allocated from them (the rotary table has
    /// `context_len × rope_dim` entries).
    pub fn validate(&self) -> Result<()> {
        super::limits::check_decoder(
            self.n_layer,
            self.hidden,
            self.n_head,
            self.n_kv_head,
            self.head_dim,
            self.context_len,
            self.rope_dim,
        )
    }

    pub fn from_metadata(md: &Hparams) -> Result<Self> {
        let experts = md.usize_or("expert_count", 0)?;
        if experts > 1 {
            candle_core::bail!(
                "mixture-of-experts llama models ({experts} experts) are not supported"
            )
        }
        let n_head = md.usize("attention.head_count")?;
        let hidden = md.usize("embedding_length")?;
        if n_head == 0 || hidden % n_head != 0 {
            candle_core::bail!(
                "llama: embedding_length {hidden} is not a multiple of head_count {n_head}"
            )
        }
        let head_dim = md.usize_or("attention.key_length", hidden / n_head)?;
        Ok(Self {
            n_layer: md.usize("block_count")?,
            hidden,
            n_head,
            n_kv_head: md.usize_or("attention.head_count_kv", n_head)?,
            head_dim,
            rope_dim: md.usize_or("rope.dimension_count", head_dim)?,
            rope_theta: md.f32_or("rope.freq_base", 10_000.)?,
            rms_eps: md.f32_or("attention.layer_norm_rms_epsilon", 1e-5)?,
            // Older files lack it; 4096 was the llama default before the key existed.
            context_len: md.usize_or("context_length", 4096)?,
        })
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: QLinear,
    wk: QLinear,
    wv: QLinear,
    wo: QLinear,
    ffn_norm: Tensor,
    gate: QLinear,
    up: QLinear,
    down: QLinear,
    cache: KvCache,
}

/// A quantized Llama model with its KV cache.
pub struct QuantizedLlama {
    cfg: LlamaConfig,
    embed: QEmbedding,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QLinear,
    rope: RopeTable,
    device: Device,
}

fn qmatmul(src: &mut dyn TensorSource, name: &str) -> Result<QLinear> {
    src.weight(name)?.linear()
}

impl QuantizedLlama {
    /// Builds the model from the tensors `src` hands out (GGUF names).
    pub fn new(cfg: LlamaConfig, src: &mut dyn TensorSource, device: &Device) -> Result<Self> {
        cfg.validate()?;
        if cfg.rope_dim > cfg.head_dim || !cfg.rope_dim.is_multiple_of(2) {
            candle_core::bail!(
                "llama: rope dimension {} does not fit head dimension {}",
                cfg.rope_dim,
                cfg.head_dim
            )
        }
        let embed_w = src.weight("token_embd.weight")?;
        let embed = QEmbedding::new(&embed_w)?;
        let output = if src.contains("output.weight") {
            src.weight("output.weight")?.head()?
        } else {
            // Tied head: multiply with the embedding's own quantized blocks.
            embed_w.head()?
        };
        let norm = dense_vector(src.tensor("output_norm.weight")?, device)?;
        let freq_factors = if src.contains("rope_freqs.weight") {
            Some(dense_vector(src.tensor("rope_freqs.weight")?, device)?.to_vec1::<f32>()?)
        } else {
            None
        };
        let rope = RopeTable::new(
            cfg.rope_dim,
            cfg.rope_theta,
            freq_factors.as_deref(),
            cfg.context_len,
            device,
        )?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            layers.push(Layer {
                attn_norm: dense_vector(src.tensor(&format!("{p}.attn_norm.weight"))?, device)?,
                wq: qmatmul(src, &format!("{p}.attn_q.weight"))?,
                wk: qmatmul(src, &format!("{p}.attn_k.weight"))?,
                wv: qmatmul(src, &format!("{p}.attn_v.weight"))?,
                wo: qmatmul(src, &format!("{p}.attn_output.weight"))?,
                ffn_norm: dense_vector(src.tensor(&format!("{p}.ffn_norm.weight"))?, device)?,
                gate: qmatmul(src, &format!("{p}.ffn_gate.weight"))?,
                up: qmatmul(src, &format!("{p}.ffn_up.weight"))?,
                down: qmatmul(src, &format!("{p}.ffn_down.weight"))?,
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

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Rotates the first `rope_dim` features of each head (GGUF llama weights
    /// are permuted for the interleaved convention).
    fn rotate(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        if self.cfg.rope_dim == self.cfg.head_dim {
            return candle_nn::rotary_emb::rope_i(&x, cos, sin);
        }
        let rot = x.narrow(3, 0, self.cfg.rope_dim)?.contiguous()?;
        let pass = x.narrow(3, self.cfg.rope_dim, self.cfg.head_dim - self.cfg.rope_dim)?;
        Tensor::cat(&[&candle_nn::rotary_emb::rope_i(&rot, cos, sin)?, &pass], 3)
    }
}

impl CausalLm for QuantizedLlama {
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
        for li in 0..self.layers.len() {
            let layer = &self.layers[li];
            let h = rms_norm(&x, &layer.attn_norm, eps)?;
            let [q, k, v] = project_qkv(
                [&layer.wq, &layer.wk, &layer.wv],
                &h,
                seq,
                [n_head, n_kv],
                hd,
            )?;
            let q = self.rotate(&q, &cos, &sin)?;
            let k = self.rotate(&k, &cos, &sin)?;
            let layer = &mut self.layers[li];
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
