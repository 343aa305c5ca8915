//! tolk's own qwen2 module on the real Qwen2.5-Coder 1.5B Q4_K_M file
//! against llama.cpp (scripts/gen_qwen_reference_llamacpp.py): the same
//! prompt ids, greedy continuations compared token by token.
//!
//! Opt-in: the 1.1 GB model is fetched only with
//! `TOLK_FETCH_LARGE=1 scripts/fetch-test-models.sh`, and a run takes about
//! a minute on two cores in the release profile:
//!
//!     cargo test --release --test llm_qwen -- --ignored --nocapture

mod common;

use candle_core::Device;
use serde::Deserialize;
use tolk::models::causal_lm::CausalLm;
use tolk::pipeline::summarize::llm::loader::{load_causal_lm, LoadOptions};
use tolk::pipeline::summarize::llm::tokens::PromptTokenizer;

const QWEN_1_5B: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    input_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
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

/// Greedy decoding of `n` tokens after `prompt` (prompt in one call).
fn greedy(model: &mut dyn CausalLm, prompt: &[u32], n: usize) -> Vec<u32> {
    model.clear_kv_cache();
    let mut logits: Vec<f32> = model.forward(prompt, 0).unwrap().to_vec1().unwrap();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = argmax(&logits);
        out.push(next);
        if out.len() < n {
            let pos = prompt.len() + out.len() - 1;
            logits = model.forward(&[next], pos).unwrap().to_vec1().unwrap();
        }
    }
    out
}

#[test]
#[ignore = "needs the 1.1 GB Qwen2.5-Coder 1.5B (TOLK_FETCH_LARGE=1 scripts/fetch-test-models.sh); run with --release -- --ignored"]
fn qwen2_5_1_5b_tracks_llama_cpp() {
    let Some(path) = common::test_model(QWEN_1_5B) else {
        return;
    };
    let fixture =
        common::fixture("llm-reference/qwen2.5-coder-1.5b-instruct-q4_k_m.llama-cpp.json");
    let Ok(json) = std::fs::read_to_string(&fixture) else {
        eprintln!(
            "SKIPPED: {} not recorded yet (scripts/gen_qwen_reference_llamacpp.py)",
            fixture.display()
        );
        return;
    };
    let reference: Reference = serde_json::from_str(&json).unwrap();
    let loaded = load_causal_lm(&path, &Device::Cpu, LoadOptions::default()).unwrap();
    assert_eq!(loaded.architecture, "qwen2");
    // tolk's GGUF tokenizer reads the prompt as llama.cpp does.
    let tokenizer = PromptTokenizer::load(&path, &loaded.metadata).unwrap();
    let mut model = loaded.model;
    for (i, case) in reference.cases.iter().enumerate() {
        let ids = tokenizer.encode_prompt(&case.text, "", "").unwrap();
        assert_eq!(
            ids, case.input_ids,
            "case {i}: prompt ids differ from llama.cpp's"
        );
        let ours = greedy(model.as_mut(), &case.input_ids, case.greedy_ids.len());
        let prefix = ours
            .iter()
            .zip(&case.greedy_ids)
            .take_while(|(a, b)| a == b)
            .count();
        let same = ours
            .iter()
            .zip(&case.greedy_ids)
            .filter(|(a, b)| a == b)
            .count();
        let n = case.greedy_ids.len();
        eprintln!(
            "qwen2.5 1.5B case {i}: first {prefix}/{n} greedy tokens identical to llama.cpp ({same}/{n} positions equal)\n  ours:  {:?}\n  llama: {:?}",
            tokenizer.decode(&ours).unwrap(),
            tokenizer.decode(&case.greedy_ids).unwrap()
        );
        assert!(
            prefix >= 8,
            "case {i}: only the first {prefix} tokens agree with llama.cpp"
        );
    }
}
