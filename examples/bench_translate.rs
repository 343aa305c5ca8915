//! Translation benchmark workload for tolk, the Rust side of `bench/run.sh`.
//!
//! Loads the benchmark model (`bench/make_model.py`), then decodes the
//! sentences of `inputs.json` through the path `tolk translate` runs
//! ([`translate_units`]: longest first, in batches of `--batch-size`), with
//! every output forced to exactly `--new-tokens` tokens so that all engines
//! do the same work. Prints one JSON object on stdout, in the
//! format of `bench/peers.py`. Not a test: it asserts nothing about time.
//!
//! Usage: cargo run --release --example bench_translate -- --model-dir target/bench-model --threads 2

use anyhow::{Context, Result};
use clap::Parser;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Instant;
mod common;

use common::peak_rss_mb;
use tolk::hub::{resolve_needs, HubOptions, ModelSource, MARIAN_FILES};
use tolk::pipeline::translate::{
    translate_units, MarianTranslator, Quantize, TranslateOptions, Unit,
};

#[derive(Parser)]
struct Args {
    /// Output folder of bench/make_model.py.
    #[arg(long)]
    model_dir: PathBuf,
    #[arg(long)]
    threads: usize,
    #[arg(long, default_value = "none")]
    quantize: Quantize,
    #[arg(long, default_value_t = 40)]
    new_tokens: usize,
    #[arg(long, default_value_t = 64)]
    sentences: usize,
    #[arg(long, default_value = "1,16", value_delimiter = ',')]
    batch_sizes: Vec<usize>,
    #[arg(long, default_value = "1,4", value_delimiter = ',')]
    beams: Vec<usize>,
    /// Instead of timing: compare `--quantize q8` with f32 (greedy and beam
    /// 4 token agreement) on this model folder, e.g. tests/fixtures/marian-tiny,
    /// with the inputs of `--agreement-inputs` (a parity reference file).
    #[arg(long, requires = "agreement_inputs")]
    agreement_model: Option<PathBuf>,
    #[arg(long)]
    agreement_inputs: Option<PathBuf>,
    /// Only labels the result: bench/run.sh evicts the weights from the
    /// page cache before starting a cold run.
    #[arg(long)]
    cold: bool,
    /// Where the model runs: cpu (default) or cuda (bench/gpu.sh).
    #[arg(long, default_value = "cpu")]
    device: tolk::device::DeviceChoice,
}

#[derive(Deserialize)]
struct Inputs {
    ids: Vec<Vec<u32>>,
}

#[derive(Deserialize)]
struct Reference {
    cases: Vec<ReferenceCase>,
}

#[derive(Deserialize)]
struct ReferenceCase {
    input_ids: Vec<u32>,
}

fn load(dir: &std::path::Path, quantize: Quantize) -> Result<MarianTranslator> {
    load_on(dir, quantize, &candle_core::Device::Cpu)
}

fn load_on(
    dir: &std::path::Path,
    quantize: Quantize,
    device: &candle_core::Device,
) -> Result<MarianTranslator> {
    let files = resolve_needs(
        &ModelSource::Dir(dir.to_path_buf()),
        MARIAN_FILES,
        &HubOptions::default(),
    )?;
    let opts = TranslateOptions {
        quantize,
        ..Default::default()
    };
    MarianTranslator::load(&files, device, &opts)
}

/// Share of output positions where q8 chose the same token as f32 (a
/// length difference counts as disagreement), and of identical outputs.
fn agreement(
    dir: &std::path::Path,
    inputs: &[Vec<u32>],
    beams: usize,
    max_length: Option<usize>,
) -> Result<serde_json::Value> {
    let mut outputs = Vec::new();
    for quantize in [Quantize::None, Quantize::Q8] {
        let mut t = load(dir, quantize)?;
        t.generation_config_mut().num_beams = beams;
        if let Some(max) = max_length {
            t.generation_config_mut().max_length = max;
        }
        let mut hyps = Vec::new();
        for row in inputs {
            hyps.push(t.generate_ids(std::slice::from_ref(row))?.remove(0).tokens);
        }
        outputs.push(hyps);
    }
    let (mut same, mut total, mut identical) = (0, 0, 0);
    for (a, b) in outputs[0].iter().zip(&outputs[1]) {
        same += a.iter().zip(b).take_while(|(x, y)| x == y).count();
        total += a.len().max(b.len());
        identical += usize::from(a == b);
    }
    Ok(serde_json::json!({
        "beams": beams, "sentences": inputs.len(),
        "token_agreement": same as f64 / total.max(1) as f64,
        "identical_outputs": identical as f64 / inputs.len().max(1) as f64,
    }))
}

/// CPU time of this process, all threads, in seconds (`/proc/self/stat`
/// utime + stime, in the 100 Hz ticks Linux reports): on a busy machine it
/// shows the work done where wall time shows the wait too.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesized command name; utime and stime are 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let args = Args::parse();
    tolk::device::set_threads(Some(args.threads));
    let inputs: Inputs = serde_json::from_str(
        &std::fs::read_to_string(args.model_dir.join("inputs.json"))
            .context("run bench/make_model.py first")?,
    )?;
    let rows: Vec<Vec<u32>> = inputs.ids.into_iter().take(args.sentences).collect();
    if let (Some(dir), Some(file)) = (&args.agreement_model, &args.agreement_inputs) {
        let reference: Reference = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        let fixture: Vec<Vec<u32>> = reference.cases.into_iter().map(|c| c.input_ids).collect();
        let bench_dir = args.model_dir.join("marian");
        let rows = &rows[..rows.len().min(16)];
        println!(
            "{}",
            serde_json::json!({
                "fixture_greedy": agreement(dir, &fixture, 1, None)?,
                "fixture_beam4": agreement(dir, &fixture, 4, None)?,
                "bench_model_greedy": agreement(&bench_dir, rows, 1, Some(41))?,
            })
        );
        return Ok(());
    }
    let model_dir = args.model_dir.join("marian");

    let t0 = Instant::now();
    let device = tolk::device::open(args.device)?;
    let mut translator = load_on(&model_dir, args.quantize, &device)?;
    let load_s = t0.elapsed().as_secs_f64();

    let set = |t: &mut MarianTranslator, beams: usize, new_tokens: usize, forced: bool| {
        let g = t.generation_config_mut();
        g.num_beams = beams;
        g.max_length = new_tokens + 1;
        g.min_length = if forced { new_tokens + 1 } else { 0 };
    };

    // The inputs are token ids already: units without text.
    let units: Vec<Unit> = rows.iter().map(|ids| Unit::from_ids(ids.clone())).collect();
    let all: Vec<&Unit> = units.iter().collect();
    let first = &all[..1];
    let run = |t: &mut MarianTranslator, units: &[&Unit]| -> Result<Vec<usize>> {
        translate_units(t, units, &mut |_, _| {})?;
        Ok(t.take_output_lengths())
    };

    // Time to first token: one sentence, one new token (after a warm-up).
    set(&mut translator, 1, 1, false);
    run(&mut translator, first)?;
    let mut reps = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        run(&mut translator, first)?;
        reps.push(t0.elapsed().as_secs_f64());
    }
    reps.sort_by(f64::total_cmp);
    let ttft_s = reps[reps.len() / 2];

    let mut runs = Vec::new();
    for &beams in &args.beams {
        for &bs in &args.batch_sizes {
            translator.set_batch_size(bs);
            // Warm-up, as for the peers.
            set(&mut translator, beams, 2, true);
            run(&mut translator, first)?;
            set(&mut translator, beams, args.new_tokens, true);
            let (t0, cpu0) = (Instant::now(), cpu_seconds());
            let lengths = run(&mut translator, &all)?;
            let seconds = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu0;
            runs.push(serde_json::json!({
                "beams": beams, "batch_size": bs, "seconds": seconds, "cpu_seconds": cpu,
                "sentences": rows.len(), "tokens": lengths.iter().sum::<usize>(),
                "min_tokens": lengths.iter().min(), "max_tokens": lengths.iter().max(),
            }));
        }
    }
    let engine = match args.quantize {
        Quantize::None => "tolk",
        Quantize::Q8 => "tolk-q8",
        Quantize::F16 => "tolk-f16",
    };
    println!(
        "{}",
        serde_json::json!({
            "engine": engine, "device": args.device.to_string(), "threads": args.threads, "load_s": load_s, "cold": args.cold,
            "ttft_s": ttft_s, "peak_rss_mb": peak_rss_mb(), "runs": runs,
        })
    );
    Ok(())
}
