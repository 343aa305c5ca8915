//! Gemma 3 decoder (text part) on quantized GGUF weights.
//!
//! Our own module instead of candle-transformers' `quantized_gemma3`, which
//! (0.11.1) uses SiLU where Gemma needs GELU (tanh approximation), builds a
//! 131072-row RoPE table per layer, dequantizes the 262k-row embedding to f32,
//! fails on chunked prefill after cached tokens, ignores the sliding window
//! while decoding step by step, and cannot clear its cache. Here:
//! - the feed-forward gate is GELU (tanh), as `gelu_pytorch_tanh` in transformers;
//! - two shared RoPE tables (local and global base), grown only as far as used;
//! - local layers attend to the last `sliding_window` positions in prefill and
//!   decoding alike, and their caches drop what no later query can see;
//! - q/k RMS norms per head, pre- and post-norms around attention and MLP,
//!   embeddings scaled by sqrt(hidden);
//! - logits come from the quantized embedding (tied head) directly.
//!
//! GGUF stores Gemma's norm weights with the `1 +` already folded in (as
//! llama.cpp's converter writes them), so plain RMS norm applies.

use super::causal_lm::{CausalLm, Hparams, TensorSource};
use super::llm_blocks::{
    attention_mask, dense_vector, gated_ffn, grouped_attention, last_logits, project_qkv, rms_norm,
    KvCache, RopeTable,
};
use super::qlinear::{GateAct, QLinear};
use super::qweight::QEmbedding;
use candle_core::{Device, Module, Result, Tensor};

/// Every `DEFAULT_SLIDING_WINDOW_PATTERN`-th layer is global, the rest local
/// (llama.cpp hard-codes the same for Gemma 3).
pub const DEFAULT_SLIDING_WINDOW_PATTERN: usize = 6;

/// Hyper-parameters read from GGUF metadata (`gemma3.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    pub n_layer: usize,
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rms_eps: f32,
    pub sliding_window: usize,
    pub sliding_window_pattern: usize,
    pub rope_theta_global: f32,
    pub rope_theta_local: f32,
    /// Linear position scaling of the global layers (larger Gemma 3 models).
    pub rope_scale_global: f32,
    pub context_len: usize,
}

impl Gemma3Config {
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
    pub fn from_metadata(md: &Hparams) -> Result<Self> {
        let head_dim = md.usize("attention.key_length")?;
        let value_dim = md.usize_or("attention.value_length", head_dim)?;
        if value_dim != head_dim {
            candle_core::bail!(
                "gemma3: key length {head_dim} differs from value length {value_dim}"
            )
        }
        let pattern = md.usize_or(
            "attention.sliding_window_type",
            DEFAULT_SLIDING_WINDOW_PATTERN,
        )?;
        Ok(Self {
            n_layer: md.usize("block_count")?,
            hidden: md.usize("embedding_length")?,
            n_head: md.usize("attention.head_count")?,
            n_kv_head: md.usize("attention.head_count_kv")?,
            head_dim,
            rms_eps: md.f32("attention.layer_norm_rms_epsilon")?,
            sliding_window: md.usize("attention.sliding_window")?.max(1),
            sliding_window_pattern: pattern.max(1),
            rope_theta_global: md.f32_or("rope.freq_base", 1_000_000.)?,
            rope_theta_local: md.f32_or("rope.local_freq_base", 10_000.)?,
            rope_scale_global: md.f32_or("rope.scaling.factor", 1.)?.max(f32::MIN_POSITIVE),
            context_len: md.usize_or("context_length", 32_768)?,
        })
    }

    pub fn is_local(&self, layer: usize) -> bool {
        !(layer + 1).is_multiple_of(self.sliding_window_pattern)
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: QLinear,
    wk: QLinear,
    wv: QLinear,
    wo: QLinear,
    q_norm: Tensor,
    k_norm: Tensor,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: QLinear,
    up: QLinear,
    down: QLinear,
    post_ffn_norm: Tensor,
    local: bool,
    cache: KvCache,
}

/// A quantized Gemma 3 model with its KV caches.
pub struct QuantizedGemma3 {
    cfg: Gemma3Config,
    embed: QEmbedding,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QLinear,
    rope_local: RopeTable,
    rope_global: RopeTable,
    device: Device,
}

fn qmatmul(src: &mut dyn TensorSource, name: &str) -> Result<QLinear> {
    src.weight(name)?.linear()
}

impl QuantizedGemma3 {
    pub fn new(cfg: Gemma3Config, src: &mut dyn TensorSource, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let embed_w = src.weight("token_embd.weight")?;
        let embed = QEmbedding::new(&embed_w)?;
        let output = if src.contains("output.weight") {
            src.weight("output.weight")?.head()?
        } else {
            embed_w.head()?
        };
        let norm = dense_vector(src.tensor("output_norm.weight")?, device)?;
        let half = cfg.head_dim / 2;
        let global_factors = vec![cfg.rope_scale_global; half];
        let rope_global = RopeTable::new(
            cfg.head_dim,
            cfg.rope_theta_global,
            Some(&global_factors),
            cfg.context_len,
            device,
        )?;
        let rope_local = RopeTable::new(
            cfg.head_dim,
            cfg.rope_theta_local,
            None,
            cfg.context_len,
            device,
        )?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            let mut vec = |n: &str| dense_vector(src.tensor(&format!("{p}.{n}.weight"))?, device);
            let attn_norm = vec("attn_norm")?;
            let q_norm = vec("attn_q_norm")?;
            let k_norm = vec("attn_k_norm")?;
            let post_attn_norm = vec("post_attention_norm")?;
            let ffn_norm = vec("ffn_norm")?;
            let post_ffn_norm = vec("post_ffw_norm")?;
            let local = cfg.is_local(i);
            layers.push(Layer {
                attn_norm,
                wq: qmatmul(src, &format!("{p}.attn_q.weight"))?,
                wk: qmatmul(src, &format!("{p}.attn_k.weight"))?,
                wv: qmatmul(src, &format!("{p}.attn_v.weight"))?,
                wo: qmatmul(src, &format!("{p}.attn_output.weight"))?,
                q_norm,
                k_norm,
                post_attn_norm,
                ffn_norm,
                gate: qmatmul(src, &format!("{p}.ffn_gate.weight"))?,
                up: qmatmul(src, &format!("{p}.ffn_up.weight"))?,
                down: qmatmul(src, &format!("{p}.ffn_down.weight"))?,
                post_ffn_norm,
                local,
                cache: KvCache::new(local.then_some(cfg.sliding_window)),
            });
        }
        Ok(Self {
            cfg,
            embed,
            layers,
            norm,
            output,
            rope_local,
            rope_global,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &Gemma3Config {
        &self.cfg
    }
}

impl CausalLm for QuantizedGemma3 {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        let seq = tokens.len();
        if seq == 0 {
            candle_core::bail!("forward needs at least one token")
        }
        let (cos_l, sin_l) = self.rope_local.get(pos, seq)?;
        let (cos_g, sin_g) = self.rope_global.get(pos, seq)?;
        let mut x = (self.embed.lookup(tokens, &self.device)? * (self.cfg.hidden as f64).sqrt())?;
        let (n_head, n_kv, hd) = (self.cfg.n_head, self.cfg.n_kv_head, self.cfg.head_dim);
        let scale = 1.0 / (hd as f64).sqrt();
        let eps = self.cfg.rms_eps;
        let window = self.cfg.sliding_window;
        // One mask per kind of layer; all layers of a kind see the same keys.
        let mut masks: [Option<Option<Tensor>>; 2] = [None, None];
        for layer in self.layers.iter_mut() {
            let h = rms_norm(&x, &layer.attn_norm, eps)?;
            let [q, k, v] = project_qkv(
                [&layer.wq, &layer.wk, &layer.wv],
                &h,
                seq,
                [n_head, n_kv],
                hd,
            )?;
            let q = rms_norm(&q, &layer.q_norm, eps)?;
            let k = rms_norm(&k, &layer.k_norm, eps)?;
            let (cos, sin) = if layer.local {
                (&cos_l, &sin_l)
            } else {
                (&cos_g, &sin_g)
            };
            let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
            let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
            let view = layer.cache.append(&k, &v, pos)?;
            let slot = &mut masks[usize::from(layer.local)];
            if slot.is_none() {
                let w = layer.local.then_some(window);
                let kv_len = view.k.dim(2)?;
                *slot = Some(attention_mask(
                    pos,
                    seq,
                    view.first_pos,
                    kv_len,
                    w,
                    &self.device,
                )?);
            }
            let m = slot.as_ref().and_then(|m| m.as_ref());
            let att = grouped_attention(&q, &view.k, &view.v, m, scale)?;
            let att = rms_norm(&layer.wo.forward(&att)?, &layer.post_attn_norm, eps)?;
            x = (x + att)?;
            let h = rms_norm(&x, &layer.ffn_norm, eps)?;
            let act = gated_ffn(&layer.gate, &layer.up, &h, GateAct::GeluTanh)?;
            let ff = rms_norm(&layer.down.forward(&act)?, &layer.post_ffn_norm, eps)?;
            x = (x + ff)?;
        }
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
