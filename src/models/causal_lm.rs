//! What every decoder-only language model offers the generation loop, and
//! how model code receives its weights without doing I/O itself.

use super::qweight::QWeight;
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::QTensor;
use candle_core::{Result, Tensor};
use std::collections::HashMap;

/// A decoder-only language model with a KV cache.
pub trait CausalLm: Send {
    /// Runs `tokens`, which sit at positions `pos..pos + tokens.len()`, and
    /// returns the logits of the last one as an f32 tensor of shape `[vocab]`.
    ///
    /// The cache must hold exactly positions `0..pos` (feed a prompt in
    /// chunks by calling this repeatedly); `pos == 0` starts over.
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor>;
    /// Forgets every cached position, so the next call starts at 0.
    fn clear_kv_cache(&mut self);
    /// The most positions the model can attend over.
    fn context_len(&self) -> usize;
}

/// Hands tensors to model code by their GGUF name. The pipeline implements it
/// over a file; model code only asks for names.
pub trait TensorSource {
    /// The tensor called `name`, on the model's device.
    fn tensor(&mut self, name: &str) -> Result<QTensor>;
    /// Whether the file has a tensor called `name` (for optional weights).
    fn contains(&self, name: &str) -> bool;
    /// The weight matrix called `name`. Sources over a memory-mapped file
    /// hand out the mapped blocks (no copy) where tolk's kernels take them.
    fn weight(&mut self, name: &str) -> Result<QWeight> {
        Ok(QWeight::from_qtensor(self.tensor(name)?))
    }
}

/// Typed reads of GGUF metadata for one architecture (`<arch>.<key>`).
pub struct Hparams<'a> {
    metadata: &'a HashMap<String, Value>,
    arch: &'a str,
}

impl<'a> Hparams<'a> {
    pub fn new(metadata: &'a HashMap<String, Value>, arch: &'a str) -> Self {
        Self { metadata, arch }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(&format!("{}.{key}", self.arch))
    }

    /// A required unsigned integer, accepting any integer width the writer chose.
    pub fn usize(&self, key: &str) -> Result<usize> {
        match self.get(key) {
            None => candle_core::bail!("GGUF metadata lacks {}.{key}", self.arch),
            Some(v) => value_to_usize(v).ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "GGUF metadata {}.{key} is not a non-negative integer",
                    self.arch
                ))
            }),
        }
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() {
            self.usize(key)
        } else {
            Ok(default)
        }
    }

    pub fn f32_or(&self, key: &str, default: f32) -> Result<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::F32(v)) => Ok(*v),
            Some(Value::F64(v)) => Ok(*v as f32),
            Some(_) => candle_core::bail!("GGUF metadata {}.{key} is not a float", self.arch),
        }
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        if self.get(key).is_none() {
            candle_core::bail!("GGUF metadata lacks {}.{key}", self.arch)
        }
        self.f32_or(key, 0.0)
    }
}

fn value_to_usize(v: &Value) -> Option<usize> {
    let n: i128 = match v {
        Value::U8(x) => *x as i128,
        Value::I8(x) => *x as i128,
        Value::U16(x) => *x as i128,
        Value::I16(x) => *x as i128,
        Value::U32(x) => *x as i128,
        Value::I32(x) => *x as i128,
        Value::U64(x) => *x as i128,
        Value::I64(x) => *x as i128,
        _ => return None,
    };
    usize::try_from(n).ok()
}
