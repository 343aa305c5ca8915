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

/// Upper bounds on the sizes a `config.json` may declare: far above any real
/// checkpoint, low enough that a broken or hostile file gets a one-line
/// error before anything is allocated (an allocation of terabytes aborts the
/// process; it cannot be caught).
pub mod limits {
    /// Vocabulary rows (the largest real ones are ~260k).
    pub const VOCAB: usize = 1 << 22;
    /// Hidden width (d_model, hidden_size; real: ≤ 16384).
    pub const WIDTH: usize = 1 << 16;
    /// Feed-forward width (real: ≤ 65536).
    pub const FFN: usize = 1 << 18;
    /// Layers of a stack.
    pub const LAYERS: usize = 1024;
    /// Positions a model may declare (real: ≤ 1M for long-context llamas).
    pub const POSITIONS: usize = 1 << 20;
    /// Elements of a position or rotary table built at load time (1 GiB of f32).
    pub const TABLE: usize = 1 << 28;

    /// `value` within `1..=max`, else the one-line error for `key`.
    pub fn check(key: &str, value: usize, max: usize) -> candle_core::Result<()> {
        if value == 0 || value > max {
            candle_core::bail!("{key} = {value} is out of range (1..={max})")
        }
        Ok(())
    }

    /// `heads` attention heads that split `width` evenly.
    pub fn check_heads(
        key: &str,
        heads: usize,
        width_key: &str,
        width: usize,
    ) -> candle_core::Result<()> {
        check(key, heads, width)?;
        if !width.is_multiple_of(heads) {
            candle_core::bail!("{width_key} = {width} is not divisible by {key} = {heads}")
        }
        Ok(())
    }

    /// The sizes every decoder-only GGUF family (llama, qwen, gemma-3)
    /// reads from its metadata, checked before anything is allocated from
    /// them: the layers, and a rotary table of `context_len × rotary_dim`.
    pub fn check_decoder(
        n_layer: usize,
        hidden: usize,
        n_head: usize,
        n_kv_head: usize,
        head_dim: usize,
        context_len: usize,
        rotary_dim: usize,
    ) -> candle_core::Result<()> {
        check("num_hidden_layers", n_layer, LAYERS)?;
        check("hidden_size", hidden, WIDTH)?;
        check("num_attention_heads", n_head, WIDTH)?;
        check_heads(
            "num_key_value_heads",
            n_kv_head,
            "num_attention_heads",
            n_head,
        )?;
        check("head_dim", head_dim, WIDTH)?;
        check("max_position_embeddings", context_len, POSITIONS)?;
        check_table("rotary", context_len, rotary_dim)
    }

    /// A table of `rows × width` elements built at load time.
    pub fn check_table(what: &str, rows: usize, width: usize) -> candle_core::Result<()> {
        if rows.checked_mul(width).is_none_or(|n| n > TABLE) {
            candle_core::bail!("the {what} table of {rows} × {width} would not fit in memory (at most {TABLE} elements)")
        }
        Ok(())
    }
}
