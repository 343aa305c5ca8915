//! Translation benchmark workload for tolk, the Rust side of `bench/run.sh`.
//!
//! Loads the benchmark model (`bench/make_model.py`), then decodes the
//! sentences of `inputs.json` through the path `tolk translate` runs
//! ([`translate_units`]: longest first, `--batch-size` at a time), every
//! output forced to exactly `--new-tokens` tokens so that all engines do
//! the same work ("forced"). The "lengths" workload forces each sentence to
//! its own length (`target_lengths` of inputs.json, 10-70 tokens): tolk's
//! queued search (continuous batching: a finished sentence's rows go to the
//! next at once, as `translate_units` runs it) and, as "lengths-fixed", the
//! same search batch after batch, each batch decoding to its slowest
//! sentence. Both run the Marian model and `tolk::generation` directly,
//! with the per-sentence EOS written into each step's logits (the one
//! thing the user path has no switch for). Prints one JSON object on
//! stdout, in the format of `bench/peers.py`. Not a test: it asserts
//! nothing about time.
//!
//! Usage: cargo run --release --example bench_translate -- --model-dir target/bench-model --threads 2

use anyhow::{Context, Result};
use clap::Parser;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Instant;
mod common;

use candle_core::{CpuStorage, Layout, Tensor};
use common::peak_rss_mb;
use tolk::generation::{self, StepModel};
use tolk::hub::{resolve_needs, HubOptions, ModelSource, MARIAN_FILES};
use tolk::models::marian::DecoderState;
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
    /// forced, lengths (also run as lengths-fixed), as bench/peers.py.
    #[arg(long, default_value = "forced,lengths", value_delimiter = ',')]
    workloads: Vec<String>,
    /// Batch sizes of the lengths workload (refilling rows needs several).
    #[arg(long, default_value = "16,64", value_delimiter = ',')]
    lengths_batch_sizes: Vec<usize>,
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
    #[serde(default)]
    target_lengths: Vec<usize>,
}

/// Marian decoding for the "lengths" workload: sentences of `inputs` taken
/// in as the search admits them (or all at once), each row's logits telling
/// EOS apart until its sentence's target length and forcing it there.
struct Targeted<'a> {
    translator: &'a MarianTranslator,
    inputs: &'a [Vec<u32>],
    targets: &'a [usize],
    eos: u32,
    state: Option<DecoderState>,
    /// (sentence, tokens generated) of each row.
    rows: Vec<(usize, usize)>,
}

/// Writes the per-row EOS rule into a step's logits, in place (any layout).
struct ForceEos<'a> {
    rows: &'a [(usize, usize)],
    targets: &'a [usize],
    eos: usize,
}

impl candle_core::InplaceOp1 for ForceEos<'_> {
    fn name(&self) -> &'static str {
        "force-eos"
    }
    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("force-eos: f32 logits only");
        };
        let (vocab, st, start) = (layout.dims()[1], layout.stride(), layout.start_offset());
        for (r, &(sentence, done)) in self.rows.iter().enumerate() {
            let at = |v: usize| start + r * st[0] + v * st[1];
            if done + 1 < self.targets[sentence] {
                data[at(self.eos)] = f32::NEG_INFINITY;
            } else {
                for v in 0..vocab {
                    data[at(v)] = f32::NEG_INFINITY;
                }
                data[at(self.eos)] = 0.0;
            }
        }
        Ok(())
    }
}

impl StepModel for Targeted<'_> {
    fn step(&mut self, tokens: &[u32]) -> Result<Tensor> {
        let state = self.state.as_mut().context("no rows")?;
        let logits = self.translator.model().decode_step(state, tokens)?;
        logits.inplace_op1(&ForceEos {
            rows: &self.rows,
            targets: self.targets,
            eos: self.eos as usize,
        })?;
        for row in self.rows.iter_mut() {
            row.1 += 1;
        }
        Ok(logits)
    }
    fn select_rows(&mut self, rows: &[u32]) -> Result<()> {
        self.rows = rows.iter().map(|&r| self.rows[r as usize]).collect();
        match rows.is_empty() {
            true => self.state = None,
            false => self.state.as_mut().context("no rows")?.select_rows(rows)?,
        }
        Ok(())
    }
    fn admit(&mut self, sentences: &[usize], group: usize) -> Result<()> {
        let fresh = self.translator.encode_ids(self.inputs, sentences)?;
        for &s in sentences {
            self.rows.extend(std::iter::repeat_n((s, 0), group));
        }
        Ok(DecoderState::admit_into(&mut self.state, fresh, group)?)
    }
}

/// The "lengths" workload: sentences longest first, as `translate_units`
/// orders them; queued (`fixed`: false) or batch after batch. Returns the
/// output lengths.
fn run_lengths(
    t: &MarianTranslator,
    inputs: &[Vec<u32>],
    targets: &[usize],
    batch_size: usize,
    beams: usize,
    fixed: bool,
) -> Result<Vec<usize>> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
    let inputs: Vec<Vec<u32>> = order.iter().map(|&i| inputs[i].clone()).collect();
    let targets: Vec<usize> = order.iter().map(|&i| targets[i]).collect();
    let mut cfg = t.generation_config().clone();
    cfg.num_beams = beams;
    cfg.min_length = 0;
    cfg.max_length = targets.iter().copied().max().unwrap_or(1) + 1;
    let mut stepper = Targeted {
        translator: t,
        inputs: &inputs,
        targets: &targets,
        eos: cfg.eos_token_id,
        state: None,
        rows: Vec::new(),
    };
    let hyps =
        if fixed {
            let mut hyps = Vec::new();
            for start in (0..inputs.len()).step_by(batch_size) {
                let batch: Vec<usize> = (start..(start + batch_size).min(inputs.len())).collect();
                stepper.state = Some(t.encode_ids(&inputs, &batch)?);
                stepper.rows = batch.iter().map(|&s| (s, 0)).collect();
                hyps.extend(generation::generate(&mut stepper, batch.len(), &cfg)?);
            }
            hyps
        } else {
            generation::generate_queued(&mut stepper, inputs.len(), batch_size, &cfg, &mut |_| {
                Ok(())
            })?
        };
    for (h, &want) in hyps.iter().zip(&targets) {
        anyhow::ensure!(
            h.tokens.len() == want,
            "an output of {} tokens, not {want}",
            h.tokens.len()
        );
    }
    Ok(hyps.iter().map(|h| h.tokens.len()).collect())
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
    let rows: Vec<Vec<u32>> = inputs.ids.iter().take(args.sentences).cloned().collect();
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
    for workload in &args.workloads {
        let (sizes, modes): (&[usize], &[&str]) = match workload.as_str() {
            "forced" => (&args.batch_sizes, &["forced"]),
            "lengths" if inputs.target_lengths.len() >= rows.len() => {
                (&args.lengths_batch_sizes, &["lengths", "lengths-fixed"])
            }
            "lengths" => {
                eprintln!("bench_translate: inputs.json has no target_lengths (rerun bench/make_model.py); skipped");
                continue;
            }
            other => anyhow::bail!("unknown workload {other:?}"),
        };
        for &mode in modes {
            for &beams in &args.beams {
                for &bs in sizes {
                    translator.set_batch_size(bs);
                    // Warm-up, as for the peers.
                    set(&mut translator, beams, 2, true);
                    run(&mut translator, first)?;
                    set(&mut translator, beams, args.new_tokens, true);
                    let (t0, cpu0) = (Instant::now(), cpu_seconds());
                    let lengths = match mode {
                        "forced" => run(&mut translator, &all)?,
                        _ => run_lengths(
                            &translator,
                            &rows,
                            &inputs.target_lengths,
                            bs,
                            beams,
                            mode == "lengths-fixed",
                        )?,
                    };
                    let seconds = t0.elapsed().as_secs_f64();
                    let cpu = cpu_seconds() - cpu0;
                    runs.push(serde_json::json!({
                        "workload": mode, "beams": beams, "batch_size": bs,
                        "seconds": seconds, "cpu_seconds": cpu,
                        "sentences": rows.len(), "tokens": lengths.iter().sum::<usize>(),
                        "min_tokens": lengths.iter().min(), "max_tokens": lengths.iter().max(),
                    }));
                }
            }
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
