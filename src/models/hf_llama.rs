//! transformers' llama `config.json` (SmolLM2, Llama 3.x checkpoints) as a
//! serde [`Config`], turned into the [`LlamaConfig`] of the GGUF model code,
//! and the names and row order of its tensors in that model.
//!
//! The only change to the weights is llama.cpp's converter's: the rows of the
//! query and key projections are permuted, because transformers rotates the
//! two halves of each head (`rotate_half`) while the GGUF model code rotates
//! adjacent pairs.

use super::quantized_llama::LlamaConfig;
use anyhow::{anyhow, bail, Result};
use candle_core::Tensor;
use serde::Deserialize;

/// The `model_type` values of `config.json` this config describes.
pub const MODEL_TYPES: &[&str] = &["llama"];

/// The fields of transformers' `LlamaConfig` that tolk reads; absent ones
/// take transformers' defaults in [`HfLlamaConfig::from_config`].
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub rope_theta: Option<f64>,
    pub rms_norm_eps: Option<f64>,
    pub max_position_embeddings: Option<usize>,
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    pub partial_rotary_factor: Option<f64>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    pub rope_scaling: Option<RopeScaling>,
    /// Present in pre-quantized (GPTQ, AWQ, …) checkpoints, which are refused.
    pub quantization_config: Option<serde_json::Value>,
}

/// `rope_scaling` of config.json.
#[derive(Debug, Clone, Deserialize)]
pub struct RopeScaling {
    pub rope_type: Option<String>,
    /// The older spelling of `rope_type`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<f64>,
}

/// The llama hyper-parameters of a `config.json`, and what the loader must
/// synthesize: tied output head, RoPE frequency factors.
#[derive(Debug, Clone, PartialEq)]
pub struct HfLlamaConfig {
    pub llama: LlamaConfig,
    pub tie_word_embeddings: bool,
    /// Divisors of the RoPE frequencies (Llama 3 / linear scaling), as
    /// llama.cpp stores them in `rope_freqs.weight`.
    pub rope_factors: Option<Vec<f32>>,
}

impl HfLlamaConfig {
    /// Parses a `config.json` value (see [`Self::from_config`]).
    pub fn from_json(config: &serde_json::Value) -> Result<Self> {
        // serde's own message does not name the field: say which one.
        for key in [
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
            "vocab_size",
        ] {
            match config.get(key) {
                None | Some(serde_json::Value::Null) => {}
                Some(v) if v.as_u64().is_some() => {}
                Some(v) => bail!("{key} is not a non-negative integer ({v})"),
            }
        }
        let config: Config = serde::Deserialize::deserialize(config)
            .map_err(|e| anyhow!("not a llama config: {e}"))?;
        Self::from_config(&config)
    }

    /// transformers' defaults for absent fields, refusing what the model
    /// code does not implement.
    pub fn from_config(config: &Config) -> Result<Self> {
        let act = config.hidden_act.as_deref().unwrap_or("silu");
        if act != "silu" {
            bail!("hidden_act '{act}' is not supported (llama models use silu)");
        }
        if config.attention_bias {
            bail!("attention_bias is not supported");
        }
        if config.mlp_bias {
            bail!("mlp_bias is not supported");
        }
        if config.quantization_config.is_some() {
            bail!("pre-quantized safetensors (quantization_config) are not supported; use a GGUF file of the model");
        }
        if let Some(p) = config.partial_rotary_factor {
            if p != 1.0 {
                bail!("partial_rotary_factor {p} is not supported");
            }
        }
        let hidden = config.hidden_size;
        let n_head = config.num_attention_heads;
        if n_head == 0 || (!hidden.is_multiple_of(n_head) && config.head_dim.is_none()) {
            bail!("hidden_size {hidden} is not a multiple of num_attention_heads {n_head}");
        }
        let head_dim = config.head_dim.unwrap_or(hidden / n_head);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            bail!("head_dim {head_dim} must be even");
        }
        let n_kv_head = config.num_key_value_heads.unwrap_or(n_head);
        if n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) {
            bail!(
                "num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_kv_head}"
            );
        }
        let rope_theta = config.rope_theta.unwrap_or(10_000.0);
        let llama = LlamaConfig {
            n_layer: config.num_hidden_layers,
            hidden,
            n_head,
            n_kv_head,
            head_dim,
            rope_dim: head_dim,
            rope_theta: rope_theta as f32,
            rms_eps: config.rms_norm_eps.unwrap_or(1e-6) as f32,
            context_len: config.max_position_embeddings.unwrap_or(2048),
        };
        llama
            .validate()
            .map_err(|e| anyhow!("{}", e.to_string().lines().next().unwrap_or_default()))?;
        let rope_factors = rope_factors(config.rope_scaling.as_ref(), head_dim, rope_theta)?;
        Ok(Self {
            llama,
            tie_word_embeddings: config.tie_word_embeddings,
            rope_factors,
        })
    }
}

/// The RoPE frequency divisors of a `rope_scaling` entry: none for the
/// default, `factor` for linear scaling, the smoothed band of Llama 3.1
/// (computed as transformers' `_compute_llama3_parameters` and llama.cpp's
/// `rope_freqs` do). Other types are refused.
fn rope_factors(
    scaling: Option<&RopeScaling>,
    head_dim: usize,
    theta: f64,
) -> Result<Option<Vec<f32>>> {
    let Some(scaling) = scaling else {
        return Ok(None);
    };
    let kind = scaling
        .rope_type
        .as_deref()
        .or(scaling.kind.as_deref())
        .unwrap_or("default");
    let num = |value: Option<f64>, key: &str| -> Result<f64> {
        value.ok_or_else(|| anyhow!("rope_scaling of type {kind} lacks {key}"))
    };
    let half = head_dim / 2;
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(vec![num(scaling.factor, "factor")? as f32; half])),
        "llama3" => {
            let factor = num(scaling.factor, "factor")?;
            let low = num(scaling.low_freq_factor, "low_freq_factor")?;
            let high = num(scaling.high_freq_factor, "high_freq_factor")?;
            let old_ctx = num(
                scaling.original_max_position_embeddings,
                "original_max_position_embeddings",
            )?;
            if high <= low {
                bail!("rope_scaling: high_freq_factor must exceed low_freq_factor");
            }
            let low_wavelen = old_ctx / low;
            let high_wavelen = old_ctx / high;
            Ok(Some(
                (0..half)
                    .map(|i| {
                        let freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        let f = if wavelen < high_wavelen {
                            1.0
                        } else if wavelen > low_wavelen {
                            factor
                        } else {
                            let smooth = (old_ctx / wavelen - low) / (high - low);
                            1.0 / ((1.0 - smooth) / factor + smooth)
                        };
                        f as f32
                    })
                    .collect(),
            ))
        }
        other => bail!(
            "rope_scaling type '{other}' is not supported (supported: default, linear, llama3)"
        ),
    }
}

/// The transformers name of a GGUF llama tensor name, and how many heads
/// its rows hold when they need the RoPE permutation.
pub fn hf_name(gguf: &str, cfg: &LlamaConfig) -> Option<(String, Option<usize>)> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some((name.to_string(), None));
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (hf, heads) = match part {
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(cfg.n_head)),
        "attn_k.weight" => ("self_attn.k_proj.weight", Some(cfg.n_kv_head)),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}"), heads))
}

/// Reorders the rows of a `(heads * head_dim, in)` projection from the
/// half-split RoPE layout to the interleaved one (llama.cpp's
/// `LlamaModel.permute`): row `r * head_dim/2 + j` of a head becomes row `2j + r`.
pub fn permute_for_interleaved_rope(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    if heads == 0 || rows % (heads * 2) != 0 {
        candle_core::bail!("cannot split {rows} rows into {heads} rotary heads")
    }
    let half = rows / heads / 2;
    w.reshape((heads, 2, half, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use serde_json::{json, Value};

    #[test]
    fn permutation_moves_half_split_pairs_next_to_each_other() {
        // One head of 4 dims, 1 input column: rows [a0, a1, b0, b1] pair
        // (a0, b0) and (a1, b1) in rotate_half; interleaved wants a0 b0 a1 b1.
        let w = Tensor::new(&[[0f32], [1.], [2.], [3.]], &Device::Cpu).unwrap();
        let p = permute_for_interleaved_rope(&w, 1).unwrap();
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0., 2., 1., 3.]
        );
        // Two heads permute independently.
        let w = Tensor::arange(0f32, 8., &Device::Cpu)
            .unwrap()
            .reshape((8, 1))
            .unwrap();
        let p = permute_for_interleaved_rope(&w, 2).unwrap();
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0., 2., 1., 3., 4., 6., 5., 7.]
        );
        assert!(permute_for_interleaved_rope(&w, 3).is_err());
    }

    fn base() -> Value {
        json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
               "num_hidden_layers": 2, "num_key_value_heads": 2})
    }

    #[test]
    fn config_defaults_follow_transformers() {
        let cfg = HfLlamaConfig::from_json(&base()).unwrap();
        assert_eq!(cfg.llama.head_dim, 16);
        assert_eq!(cfg.llama.rope_dim, 16);
        assert_eq!(cfg.llama.n_kv_head, 2);
        assert_eq!(cfg.llama.context_len, 2048);
        assert_eq!(cfg.llama.rms_eps, 1e-6);
        assert!(!cfg.tie_word_embeddings);
        assert_eq!(cfg.rope_factors, None);
    }

    #[test]
    fn llama3_rope_factors_span_one_to_factor() {
        let mut c = base();
        c["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
        let f = HfLlamaConfig::from_json(&c).unwrap().rope_factors.unwrap();
        assert_eq!(f.len(), 8);
        assert_eq!(f[0], 1.0, "the fastest frequency is kept");
        assert_eq!(*f.last().unwrap(), 8.0, "the slowest is divided by factor");
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
        assert!(f.iter().any(|&x| x > 1.0 && x < 8.0), "a smoothed band");
        c["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
        let f = HfLlamaConfig::from_json(&c).unwrap().rope_factors.unwrap();
        assert!(f.iter().all(|&x| x == 2.0));
    }

    #[test]
    fn unsupported_settings_are_refused() {
        for (key, value) in [
            ("rope_scaling", json!({"rope_type": "yarn", "factor": 4.0})),
            ("hidden_act", json!("gelu")),
            ("attention_bias", json!(true)),
            ("quantization_config", json!({"quant_method": "gptq"})),
            ("num_key_value_heads", json!(3)),
            ("hidden_size", json!("64")),
        ] {
            let mut c = base();
            c[key] = value;
            assert!(HfLlamaConfig::from_json(&c).is_err(), "{key}");
        }
        let mut c = base();
        c.as_object_mut().unwrap().remove("num_hidden_layers");
        let err = HfLlamaConfig::from_json(&c).unwrap_err().to_string();
        assert!(err.contains("num_hidden_layers"), "{err}");
    }
}
