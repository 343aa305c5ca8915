//! Qwen2 and Qwen3 GGUF models, run by candle-transformers' own quantized
//! modules behind tolk's [`CausalLm`] trait.

use super::causal_lm::CausalLm;
use candle_core::{DType, Device, Result, Tensor};
use candle_transformers::models::{quantized_qwen2, quantized_qwen3};

/// Which of candle's modules holds the weights.
pub enum QwenWeights {
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
}

/// A Qwen2/Qwen3 model; candle keeps the KV cache inside the weights.
pub struct CandleQwen {
    weights: QwenWeights,
    context_len: usize,
    device: Device,
}

impl CandleQwen {
    pub fn new(weights: QwenWeights, context_len: usize, device: &Device) -> Self {
        Self {
            weights,
            context_len,
            device: device.clone(),
        }
    }
}

impl CausalLm for CandleQwen {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        if tokens.is_empty() {
            candle_core::bail!("forward needs at least one token")
        }
        if pos + tokens.len() > self.context_len {
            candle_core::bail!(
                "position {} is past the model's context of {} tokens",
                pos + tokens.len() - 1,
                self.context_len
            )
        }
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = match &mut self.weights {
            QwenWeights::Qwen2(m) => m.forward(&ids, pos)?,
            QwenWeights::Qwen3(m) => m.forward(&ids, pos)?,
        };
        // (1, vocab) or (1, 1, vocab) depending on the module.
        logits.flatten_all()?.to_dtype(DType::F32)
    }

    fn clear_kv_cache(&mut self) {
        match &mut self.weights {
            QwenWeights::Qwen2(m) => m.clear_kv_cache(),
            QwenWeights::Qwen3(m) => m.clear_kv_cache(),
        }
    }

    fn context_len(&self) -> usize {
        self.context_len
    }
}
