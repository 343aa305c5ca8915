//! LLM benchmark workload for tolk, the Rust side of `bench/llm.sh`.
//!
//! Loads a GGUF model as `tolk summarize` does, feeds a prompt of exactly
//! `--prompt-tokens` tokens (the English sample article, repeated if short,
//! encoded by the model's own tokenizer) in the summarizer's prefill chunks,
//! then decodes exactly `--new-tokens` tokens greedily (end-of-text does not
//! stop it), so that every engine does the same work. The prompt ids are
//! written to `--ids-out` for the peer (`bench/llm_peer.py`), which evaluates
//! the very same tokens. Prints one JSON object on stdout. Not a test: it
//! asserts nothing about time.
//!
//! Usage: cargo run --release --example bench_llm -- --model models/downloaded/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2

mod common;

use anyhow::{Context, Result};
use clap::Parser;
use common::peak_rss_mb;
use std::path::PathBuf;
use std::time::Instant;
use tolk::device::on_compute_pool;
use tolk::pipeline::summarize::llm::generate::argmax;
use tolk::pipeline::summarize::llm::load_with_tokenizer;
use tolk::pipeline::summarize::llm::loader::{LoadOptions, Requantize};
use tolk::pipeline::summarize::llm::LlmOptions;

#[derive(Parser)]
struct Args {
    /// The GGUF file.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    threads: usize,
    #[arg(long, default_value_t = 600)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Text the prompt is cut from.
    #[arg(long, default_value = "samples/en_article.txt")]
    text: PathBuf,
    /// Where to write the prompt ids (JSON array) for the peer.
    #[arg(long)]
    ids_out: Option<PathBuf>,
    /// Never requantize Q4_1/Q5_x tensors to Q8_0 (by default, as `tolk
    /// summarize`, only those no SIMD kernel multiplies on this CPU are).
    #[arg(long)]
    native: bool,
    /// Only labels the result: bench/llm.sh evicts the file from the page
    /// cache before a cold run.
    #[arg(long)]
    cold: bool,
    /// Where the model runs: cpu (default) or cuda (bench/gpu.sh).
    #[arg(long, default_value = "cpu")]
    device: tolk::device::DeviceChoice,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tolk::device::set_threads(Some(args.threads));
    let device = tolk::device::open(args.device)?;
    // The token a greedy step picks: on a GPU reduced there, as `tolk
    // summarize` does (one number comes back), on the CPU from the host row.
    let pick = |logits: candle_core::Tensor| -> Result<u32> {
        Ok(if logits.device().is_cpu() {
            argmax(&logits.to_vec1::<f32>()?)
        } else {
            tolk::device::search::argmax_adjusted(&logits, &[], |_, s| s)?
        })
    };
    let load_opts = LoadOptions {
        requantize: if args.native {
            Requantize::Never
        } else {
            Requantize::WhereSlow
        },
        ..LoadOptions::default()
    };

    let t0 = Instant::now();
    // As `tolk summarize` loads: the tokenizer first (see load_with_tokenizer).
    let (mut loaded, tokenizer) = load_with_tokenizer(&args.model, &device, load_opts)?;
    let load_s = t0.elapsed().as_secs_f64();

    let text = std::fs::read_to_string(&args.text)
        .with_context(|| format!("{}: cannot read", args.text.display()))?;
    let one = tokenizer.encode_prompt("", &text, "")?;
    anyhow::ensure!(!one.is_empty(), "{}: no tokens", args.text.display());
    let prompt: Vec<u32> = one
        .iter()
        .copied()
        .cycle()
        .take(args.prompt_tokens)
        .collect();
    if let Some(path) = &args.ids_out {
        std::fs::write(path, serde_json::to_string(&prompt)?)?;
    }

    let chunk = LlmOptions::default().prefill_chunk;
    let model = loaded.model.as_mut();

    // Warm-up on a few tokens, as for the peer (first-call allocations, thread start).
    model.clear_kv_cache();
    on_compute_pool(|| model.forward(&prompt[..8.min(prompt.len())], 0))?;

    model.clear_kv_cache();
    let t0 = Instant::now();
    let mut logits = None;
    for (i, part) in prompt.chunks(chunk).enumerate() {
        logits = Some(on_compute_pool(|| model.forward(part, i * chunk))?);
    }
    // GPU kernels run asynchronously: wait for them before reading the clock.
    device.synchronize()?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let mut next = pick(logits.context("empty prompt")?)?;
    let ttft_s = t0.elapsed().as_secs_f64();

    let mut generated = vec![next];
    let t0 = Instant::now();
    while generated.len() < args.new_tokens {
        let pos = prompt.len() + generated.len() - 1;
        next = pick(on_compute_pool(|| model.forward(&[next], pos))?)?;
        generated.push(next);
    }
    // The first new token came from the prefill; the timed steps made the rest.
    let steps = generated.len() - 1;
    let gen_s = t0.elapsed().as_secs_f64();

    println!(
        "{}",
        serde_json::json!({
            "engine": if args.native { "tolk-native" } else { "tolk" },
            "model": args.model.file_name().map(|n| n.to_string_lossy().into_owned()),
            "device": args.device.to_string(), "threads": args.threads, "cold": args.cold, "load_s": load_s,
            "prompt_tokens": prompt.len(), "prefill_s": prefill_s,
            "prefill_tok_s": prompt.len() as f64 / prefill_s,
            "ttft_s": ttft_s, "gen_tokens": steps, "gen_s": gen_s,
            "gen_tok_s": steps as f64 / gen_s,
            "converted_tensors": loaded.converted,
            "peak_rss_mb": peak_rss_mb(), "generated_ids": generated,
        })
    );
    Ok(())
}
