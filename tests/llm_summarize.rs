//! The GGUF language-model engine against reference runs and its own contract.
//! Tests that need the real models skip visibly when they are missing
//! (fetch them with scripts/fetch-test-models.sh).

mod common;

use candle_core::Device;
use serde::Deserialize;
use tolk::models::causal_lm::CausalLm;
use tolk::pipeline::summarize::llm::loader::{load_causal_lm, LoadOptions};

const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

#[derive(Deserialize)]
struct Reference {
    cases: Vec<RefCase>,
}

#[derive(Deserialize)]
struct RefCase {
    input_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    top5_ids: Vec<u32>,
    top5_logits: Vec<f32>,
}

fn reference(model: &str) -> Reference {
    let stem = model.trim_end_matches(".gguf");
    let path = format!(
        "{}/tests/fixtures/llm-reference/{stem}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy continuation of `prompt`: the prompt in one call, then one token per step.
fn greedy(model: &mut dyn CausalLm, prompt: &[u32], n: usize) -> (Vec<f32>, Vec<u32>) {
    model.clear_kv_cache();
    let first: Vec<f32> = model.forward(prompt, 0).unwrap().to_vec1().unwrap();
    let mut out = vec![argmax(&first)];
    while out.len() < n {
        let pos = prompt.len() + out.len() - 1;
        let logits: Vec<f32> = model
            .forward(&out[out.len() - 1..], pos)
            .unwrap()
            .to_vec1()
            .unwrap();
        out.push(argmax(&logits));
    }
    (first, out)
}

fn agreement(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn load(path: &std::path::Path, dequantize: bool) -> Box<dyn CausalLm> {
    let opts = LoadOptions {
        dequantize,
        ..LoadOptions::default()
    };
    load_causal_lm(path, &Device::Cpu, opts).unwrap().model
}

/// With every weight dequantized to f32 the model does the same arithmetic as
/// transformers (fp32), so the whole greedy continuation and the logits must
/// match: this checks the architecture code itself.
fn exact_parity(model_name: &str, cases: &[usize]) {
    let Some(path) = common::test_model(model_name) else {
        return;
    };
    let mut model = load(&path, true);
    let reference = reference(model_name);
    for &i in cases {
        let case = &reference.cases[i];
        let (first, ids) = greedy(model.as_mut(), &case.input_ids, case.greedy_ids.len());
        assert_eq!(
            ids, case.greedy_ids,
            "{model_name} case {i}: greedy continuation differs"
        );
        for (&id, &want) in case.top5_ids.iter().zip(&case.top5_logits) {
            let got = first[id as usize];
            assert!(
                (got - want).abs() < 2e-3,
                "{model_name} case {i}: logit of {id} is {got}, reference {want}"
            );
        }
    }
}

/// With quantized matmuls (activations are quantized to 8 bits too) logits
/// move by a few tenths, so only the first step's top-1 and the first
/// `min_agree` greedy tokens are required to match.
fn quantized_parity(model_name: &str, min_agree: usize) {
    let Some(path) = common::test_model(model_name) else {
        return;
    };
    let mut model = load(&path, false);
    let reference = reference(model_name);
    let mut report = Vec::new();
    for (i, case) in reference.cases.iter().enumerate() {
        let (first, ids) = greedy(model.as_mut(), &case.input_ids, case.greedy_ids.len());
        let agree = agreement(&ids, &case.greedy_ids);
        eprintln!(
            "{model_name} case {i}: {agree}/{} greedy tokens agree with transformers",
            ids.len()
        );
        report.push((
            i,
            argmax(&first),
            case.top5_ids[0],
            agree,
            ids,
            case.greedy_ids.clone(),
        ));
    }
    for (i, top1, want, agree, ids, want_ids) in report {
        assert_eq!(
            top1, want,
            "{model_name} case {i}: first-step top-1 differs"
        );
        assert!(
            agree >= min_agree,
            "{model_name} case {i}: only {agree} tokens agree\nours {ids:?}\nref  {want_ids:?}"
        );
    }
}

#[test]
fn smollm2_dequantized_matches_transformers_exactly() {
    exact_parity(SMOLLM2, &[0, 1]);
}

#[test]
fn gemma3_dequantized_matches_transformers_exactly() {
    // Case 1 is 1152 tokens long: local layers must apply the 512-token window.
    exact_parity(GEMMA3, &[0, 1]);
}

#[test]
fn smollm2_quantized_agrees_with_transformers() {
    quantized_parity(SMOLLM2, 8);
}

#[test]
fn gemma3_quantized_agrees_with_transformers() {
    quantized_parity(GEMMA3, 8);
}

// ---------------------------------------------------------------------------
// The summarizer end to end.

use tolk::pipeline::summarize::llm::{LlmOptions, LlmSummarizer};
use tolk::pipeline::summarize::{Summarizer, SummaryLength, SummaryRequest};
use tolk::text::Lang;

fn sample_article() -> String {
    std::fs::read_to_string(format!(
        "{}/samples/de_article.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn probe_summary() {
    let Some(path) = common::test_model(SMOLLM2) else {
        return;
    };
    let t0 = std::time::Instant::now();
    let mut s = LlmSummarizer::load(
        &path,
        &Device::Cpu,
        LlmOptions {
            max_new_tokens: Some(60),
            ..LlmOptions::default()
        },
    )
    .unwrap();
    eprintln!("load {:?}", t0.elapsed());
    let article = sample_article();
    let req = SummaryRequest {
        text: &article,
        lang: Lang::De,
        length: SummaryLength::Sentences(3),
    };
    let mut streamed = String::new();
    let out = s
        .summarize(&req, &mut |p| {
            streamed.push_str(p);
            eprint!("{p}");
        })
        .unwrap();
    eprintln!("\n---\n{out:?}\n{:?}", s.last_stats());
    eprintln!(
        "prefill {:.1} tok/s gen {:.1} tok/s",
        s.last_stats().prefill_tokens_per_sec(),
        s.last_stats().generation_tokens_per_sec()
    );
    assert_eq!(streamed, out);
}
