//! A transformers checkpoint folder of the llama family (`config.json`,
//! safetensors weights, one file or sharded) read into the same model code
//! the GGUF files use: the weights become dense f32 matrices handed to
//! [`QuantizedLlama`] under their GGUF names ([`crate::models::hf_llama`]).

use crate::checkpoint::{Checkpoint, ModelType};
use crate::models::causal_lm::{CausalLm, TensorSource};
use crate::models::hf_llama::{self, hf_name, permute_for_interleaved_rope, HfLlamaConfig};
use crate::models::quantized_llama::QuantizedLlama;
use anyhow::{anyhow, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;

/// The `model_type` values of `config.json` tolk can run from safetensors.
pub const SUPPORTED_MODEL_TYPES: &[&str] = hf_llama::MODEL_TYPES;

/// What the llm summarizer accepts as a checkpoint.
pub const LLAMA_CHECKPOINT: ModelType<'static> = ModelType {
    what: "a llama-family checkpoint",
    accepted: SUPPORTED_MODEL_TYPES,
    required: true,
};

/// The note added when a checkpoint's `model_type` is refused.
pub fn gguf_note() -> String {
    format!(
        "; GGUF files of {} also work",
        super::SUPPORTED_ARCHITECTURES.join(", ")
    )
}

/// A checkpoint folder loaded as a model.
pub struct LoadedCheckpoint {
    pub model: Box<dyn CausalLm>,
    /// The `model_type` of config.json.
    pub model_type: String,
}

/// Tensors of a transformers llama checkpoint, handed out under GGUF names
/// as dense f32.
struct CheckpointSource<'a> {
    weights: VarBuilder<'static>,
    cfg: &'a HfLlamaConfig,
    device: &'a Device,
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
        if !self.weights.contains_tensor(&hf) {
            return Err(candle_core::Error::Msg(format!(
                "the checkpoint lacks tensor {hf}"
            )));
        }
        let mut t = self.weights.get_unchecked_dtype(&hf, DType::F32)?;
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
            _ => hf_name(name, &self.cfg.llama)
                .is_some_and(|(hf, _)| self.weights.contains_tensor(&hf)),
        }
    }
}

/// Loads the checkpoint in `dir` (config.json + safetensors weights) onto `device`.
pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<LoadedCheckpoint> {
    let checkpoint = Checkpoint::from_dir(dir);
    let config_path = checkpoint.path("config.json")?;
    let config = checkpoint.config(LLAMA_CHECKPOINT, &gguf_note())?;
    let model_type = config
        .get("model_type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    let cfg =
        HfLlamaConfig::from_json(&config).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
    // Read on the CPU, permuted there, then moved to the device.
    let weights = checkpoint.var_builder(DType::F32, &Device::Cpu)?;
    let mut src = CheckpointSource {
        weights,
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
