//! Model code per family. Tensors in, tensors out: no file or network I/O here
//! (loading a folder is the job of the pipeline, as in candle-transformers).

pub mod marian;
pub mod t5;
