//! Model code per family. Tensors in, tensors out: no file or network I/O here
//! (loading a folder is the job of the pipeline, as in candle-transformers).

pub mod causal_lm;
pub mod hf_llama;
pub mod llm_blocks;
pub mod marian;
pub mod qlinear;
pub mod quantized_gemma3;
pub mod quantized_llama;
pub mod quantized_qwen;
pub mod qweight;
pub mod t5;
