//! Reading a transformers checkpoint folder (`config.json`, safetensors
//! weights, one file or sharded) into the same model code the GGUF files use.
//!
//! Only the llama family (`model_type: "llama"`: SmolLM2, Llama 3.x, …) is
//! supported. Its weights become dense f32 matrices handed to
//! [`QuantizedLlama`] under their GGUF names, with the one change llama.cpp's
//! converter also makes: the rows of the query and key projections are
//! permuted, because transformers rotates the two halves of each head
//! (`rotate_half`) while the GGUF model code rotates adjacent pairs.

use crate::checkpoint::pytorch::PthFile;
use crate::models::causal_lm::{CausalLm, TensorSource};
use crate::models::quantized_llama::{LlamaConfig, QuantizedLlama};
use crate::pipeline::weights::SafetensorsFile;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::var_builder::SimpleBackend;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The `model_type` values of `config.json` tolk can run from safetensors.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama"];

/// The single-file weights, and the index of sharded ones.
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// A PyTorch checkpoint, read by tolk's own reader (no pickle code runs).
pub const PYTORCH_WEIGHTS: &str = "pytorch_model.bin";

/// A checkpoint folder loaded as a model.
pub struct LoadedCheckpoint {
    pub model: Box<dyn CausalLm>,
    /// The `model_type` of config.json.
    pub model_type: String,
}

/// The `model_type` of a parsed `config.json`, refused with the supported
/// list unless tolk runs it from safetensors.
pub fn check_model_type(config: &Value, path: &Path) -> Result<String> {
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{}: no model_type", path.display()))?;
    if !SUPPORTED_MODEL_TYPES.contains(&model_type) {
        bail!(
            "{}: model_type '{model_type}' is not supported for safetensors llm models (supported: {}; GGUF files of {} also work)",
            path.display(),
            SUPPORTED_MODEL_TYPES.join(", "),
            super::SUPPORTED_ARCHITECTURES.join(", ")
        );
    }
    Ok(model_type.to_string())
}

/// Reads and parses a JSON file, one error line if it cannot.
pub fn read_json(path: &Path) -> Result<Value> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&raw).map_err(|e| anyhow!("{}: not valid JSON ({e})", path.display()))
}

/// The shard file names a `model.safetensors.index.json` lists, sorted.
pub fn shard_names(index: &Value, path: &Path) -> Result<Vec<String>> {
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("{}: no weight_map", path.display()))?;
    let mut names = BTreeSet::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| anyhow!("{}: weight_map values must be file names", path.display()))?;
        // Shards lie beside the index: a path elsewhere is not a checkpoint.
        if file.is_empty() || file.contains(['/', '\\']) || file.starts_with('.') {
            bail!("{}: bad shard name '{file}'", path.display());
        }
        names.insert(file.to_string());
    }
    if names.is_empty() {
        bail!("{}: weight_map is empty", path.display());
    }
    Ok(names.into_iter().collect())
}

/// The weight files of the checkpoint in `dir`: `model.safetensors`, else
/// the shards its index names, else `pytorch_model.bin`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(WEIGHTS_INDEX);
    if !index.is_file() {
        let pickle = dir.join(PYTORCH_WEIGHTS);
        if pickle.is_file() {
            return Ok(vec![pickle]);
        }
        bail!(
            "{} has no {WEIGHTS_FILE}, {WEIGHTS_INDEX} or {PYTORCH_WEIGHTS}",
            dir.display()
        );
    }
    let names = shard_names(&read_json(&index)?, &index)?;
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        bail!(
            "{} lacks {}, a shard listed in {WEIGHTS_INDEX}",
            dir.display(),
            missing.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    Ok(paths)
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

fn usize_field(config: &Value, key: &str) -> Result<Option<usize>> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| anyhow!("{key} is not a non-negative integer")),
    }
}

fn f64_field(config: &Value, key: &str) -> Result<Option<f64>> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| anyhow!("{key} is not a number")),
    }
}

fn required(config: &Value, key: &str) -> Result<usize> {
    usize_field(config, key)?.ok_or_else(|| anyhow!("config.json lacks {key}"))
}

impl HfLlamaConfig {
    /// Reads transformers' `LlamaConfig` fields (with its defaults), refusing
    /// what the model code does not implement.
    pub fn from_json(config: &Value) -> Result<Self> {
        let act = config
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("silu");
        if act != "silu" {
            bail!("hidden_act '{act}' is not supported (llama models use silu)");
        }
        for flag in ["attention_bias", "mlp_bias"] {
            if config.get(flag).and_then(Value::as_bool) == Some(true) {
                bail!("{flag} is not supported");
            }
        }
        if config.get("quantization_config").is_some() {
            bail!("pre-quantized safetensors (quantization_config) are not supported; use a GGUF file of the model");
        }
        if let Some(p) = f64_field(config, "partial_rotary_factor")? {
            if p != 1.0 {
                bail!("partial_rotary_factor {p} is not supported");
            }
        }
        let hidden = required(config, "hidden_size")?;
        let n_head = required(config, "num_attention_heads")?;
        if n_head == 0 || (hidden % n_head != 0 && usize_field(config, "head_dim")?.is_none()) {
            bail!("hidden_size {hidden} is not a multiple of num_attention_heads {n_head}");
        }
        let head_dim = usize_field(config, "head_dim")?.unwrap_or(hidden / n_head);
        if head_dim == 0 || head_dim % 2 != 0 {
            bail!("head_dim {head_dim} must be even");
        }
        let n_kv_head = usize_field(config, "num_key_value_heads")?.unwrap_or(n_head);
        if n_kv_head == 0 || n_head % n_kv_head != 0 {
            bail!(
                "num_attention_heads {n_head} is not a multiple of num_key_value_heads {n_kv_head}"
            );
        }
        let rope_theta = f64_field(config, "rope_theta")?.unwrap_or(10_000.0);
        let context_len = usize_field(config, "max_position_embeddings")?.unwrap_or(2048);
        let llama = LlamaConfig {
            n_layer: required(config, "num_hidden_layers")?,
            hidden,
            n_head,
            n_kv_head,
            head_dim,
            rope_dim: head_dim,
            rope_theta: rope_theta as f32,
            rms_eps: f64_field(config, "rms_norm_eps")?.unwrap_or(1e-6) as f32,
            context_len,
        };
        llama
            .validate()
            .map_err(|e| anyhow!("{}", e.to_string().lines().next().unwrap_or_default()))?;
        let rope_factors = rope_factors(config.get("rope_scaling"), head_dim, rope_theta)?;
        Ok(Self {
            llama,
            tie_word_embeddings: config
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            rope_factors,
        })
    }
}

/// The RoPE frequency divisors of a `rope_scaling` entry: none for the
/// default, `factor` for linear scaling, the smoothed band of Llama 3.1
/// (computed as transformers' `_compute_llama3_parameters` and llama.cpp's
/// `rope_freqs` do). Other types are refused.
fn rope_factors(scaling: Option<&Value>, head_dim: usize, theta: f64) -> Result<Option<Vec<f32>>> {
    let Some(scaling) = scaling.filter(|s| !s.is_null()) else {
        return Ok(None);
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |key: &str| -> Result<f64> {
        scaling
            .get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| anyhow!("rope_scaling of type {kind} lacks {key}"))
    };
    let half = head_dim / 2;
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(vec![num("factor")? as f32; half])),
        "llama3" => {
            let factor = num("factor")?;
            let low = num("low_freq_factor")?;
            let high = num("high_freq_factor")?;
            let old_ctx = num("original_max_position_embeddings")?;
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
fn hf_name(gguf: &str, cfg: &LlamaConfig) -> Option<(String, Option<usize>)> {
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

/// Tensors of a transformers llama checkpoint, handed out under GGUF names
/// as dense f32.
struct CheckpointSource<'a> {
    files: Vec<Box<dyn SimpleBackend>>,
    cfg: &'a HfLlamaConfig,
    device: &'a Device,
}

impl CheckpointSource<'_> {
    fn file_with(&self, name: &str) -> Option<&dyn SimpleBackend> {
        self.files
            .iter()
            .map(|f| f.as_ref())
            .find(|f| f.contains_tensor(name))
    }
}

impl TensorSource for CheckpointSource<'_> {
    fn tensor(&mut self, name: &str) -> candle_core::Result<QTensor> {
        if name == "rope_freqs.weight" {
            let factors = self.cfg.rope_factors.as_deref().unwrap_or_default();
            let t = Tensor::new(factors, self.device)?;
            return QTensor::quantize(&t, GgmlDType::F32);
        }
        let (hf, heads) = hf_name(name, &self.cfg.llama).ok_or_else(|| {
            candle_core::Error::Msg(format!("no transformers name for tensor {name}"))
        })?;
        let file = self
            .file_with(&hf)
            .ok_or_else(|| candle_core::Error::Msg(format!("the checkpoint lacks tensor {hf}")))?;
        let mut t = file.get_unchecked(&hf, DType::F32, &Device::Cpu)?;
        if let Some(heads) = heads {
            t = permute_for_interleaved_rope(&t, heads)?;
        }
        QTensor::quantize(&t.to_device(self.device)?, GgmlDType::F32)
    }

    fn contains(&self, name: &str) -> bool {
        match name {
            "rope_freqs.weight" => self.cfg.rope_factors.is_some(),
            // A tied head reuses the embedding even when a copy is stored.
            "output.weight" if self.cfg.tie_word_embeddings => false,
            _ => {
                hf_name(name, &self.cfg.llama).is_some_and(|(hf, _)| self.file_with(&hf).is_some())
            }
        }
    }
}

/// Loads the checkpoint in `dir` (config.json + safetensors weights) onto `device`.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<LoadedCheckpoint> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        bail!("{} has no config.json", dir.display());
    }
    let config = read_json(&config_path)?;
    let model_type = check_model_type(&config, &config_path)?;
    let cfg =
        HfLlamaConfig::from_json(&config).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
    let files = weight_files(dir)?
        .iter()
        .map(|p| -> Result<Box<dyn SimpleBackend>> {
            if p.extension().is_some_and(|e| e == "bin") {
                Ok(Box::new(PthFile::open(p)?))
            } else {
                Ok(Box::new(SafetensorsFile::open(p)?))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let mut src = CheckpointSource {
        files,
        cfg: &cfg,
        device,
    };
    let model = QuantizedLlama::new(cfg.llama.clone(), &mut src, device).map_err(|e| {
        let text = e.to_string();
        anyhow!(
            "{}: {}",
            dir.display(),
            text.lines().next().unwrap_or_default().trim()
        )
    })?;
    Ok(LoadedCheckpoint {
        model: Box::new(model),
        model_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn model_types_other_than_llama_name_the_supported_ones() {
        let err = check_model_type(&json!({"model_type": "bert"}), Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'bert'") && err.contains("supported: llama"),
            "{err}"
        );
        assert_eq!(
            check_model_type(&base(), Path::new("c.json")).unwrap(),
            "llama"
        );
    }

    #[test]
    fn shard_names_are_unique_and_stay_in_the_folder() {
        let p = Path::new("i.json");
        let index = json!({"weight_map": {"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-1.safetensors"}});
        assert_eq!(
            shard_names(&index, p).unwrap(),
            ["m-1.safetensors", "m-2.safetensors"]
        );
        for bad in ["../x.safetensors", "/etc/passwd", ""] {
            assert!(shard_names(&json!({"weight_map": {"a": bad}}), p).is_err());
        }
        assert!(shard_names(&json!({}), p).is_err());
    }
}
