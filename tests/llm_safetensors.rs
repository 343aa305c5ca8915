//! Transformers checkpoints of the llama family (config.json + safetensors)
//! run by tolk's llama code: logits and greedy tokens match transformers on
//! the tiny random checkpoints of scripts/gen_llama_safetensors_fixture.py
//! (tied bf16 weights in one file; untied f16 shards with Llama 3 RoPE
//! scaling and an explicit head_dim), the tokenizer encodes the chat
//! prompt as transformers does, and broken folders give one clear line.

mod common;

use candle_core::Device;
use serde_json::Value;
use std::path::Path;
use tolk::pipeline::summarize::llm::safetensors::load_checkpoint;
use tolk::pipeline::summarize::llm::tokens::PromptTokenizer;
use tolk::pipeline::summarize::llm::{LlmOptions, LlmSummarizer};

/// Reference logits are f32 from transformers on the same (exactly
/// upcast) weights; the sums run in another order, so allow rounding.
const LOGIT_TOLERANCE: f32 = 2e-3;

fn reference() -> Value {
    let raw = std::fs::read_to_string(common::fixture("llama-tiny-reference.json")).unwrap();
    serde_json::from_str(&raw).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn check_model(name: &str) {
    let reference = reference();
    let cases = reference["models"][name].as_array().unwrap();
    let steps = reference["steps"].as_u64().unwrap() as usize;
    let loaded = load_checkpoint(&common::fixture(name), &common::test_device()).unwrap();
    assert_eq!(loaded.model_type, "llama");
    let mut model = loaded.model;
    for (case_no, case) in cases.iter().enumerate() {
        let prompt = ids(&case["input_ids"]);
        let want_logits = floats(&case["last_logits"]);
        model.clear_kv_cache();
        let logits = model.forward(&prompt, 0).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(logits.len(), want_logits.len());
        let diff = logits
            .iter()
            .zip(&want_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff < LOGIT_TOLERANCE,
            "{name} prompt {case_no}: logits differ by {diff}"
        );
        // Greedy decoding, one token at a time through the KV cache.
        let mut generated = vec![argmax(&logits)];
        while generated.len() < steps {
            let pos = prompt.len() + generated.len() - 1;
            let last = *generated.last().unwrap();
            let next = model
                .forward(&[last], pos)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            generated.push(argmax(&next));
        }
        assert_eq!(
            generated,
            ids(&case["greedy_ids"]),
            "{name} prompt {case_no}: greedy tokens differ"
        );
    }
}

#[test]
fn tied_bf16_checkpoint_matches_transformers() {
    check_model("llama-tiny");
}

#[test]
fn sharded_llama3_checkpoint_matches_transformers() {
    check_model("llama3-tiny");
}

#[test]
fn tokenizer_encodes_prompts_as_transformers_does() {
    let reference = reference();
    let tok = PromptTokenizer::load_dir(&common::fixture("llama-tiny")).unwrap();
    let prompts = reference["prompts"].as_array().unwrap();
    let cases = reference["models"]["llama-tiny"].as_array().unwrap();
    for (prompt, case) in prompts.iter().zip(cases) {
        let prompt = prompt.as_str().unwrap();
        let want = ids(&case["input_ids"]);
        if prompt == reference["chat_prompt"].as_str().unwrap() {
            // Template markup: special tokens are recognised.
            assert_eq!(tok.encode_prompt(prompt, "", "").unwrap(), want);
        } else {
            assert_eq!(tok.encode_prompt("", prompt, "").unwrap(), want);
        }
    }
    // SmolLM2's template, and its stop tokens (<|im_end|>, <|endoftext|>).
    assert!(tok.chat_template().unwrap().contains("<|im_start|>"));
    assert!(tok.is_stop(2) && tok.is_stop(0) && !tok.is_stop(1));
}

#[test]
fn summarizer_loads_a_checkpoint_folder() {
    let s = LlmSummarizer::load_dir(
        &common::fixture("llama3-tiny"),
        &common::test_device(),
        LlmOptions::default(),
    )
    .unwrap();
    assert_eq!(s.architecture(), "llama");
    assert!(s.uses_chat_template());
    assert_eq!(s.context_len(), 512);
}

fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(common::fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn load_error(dir: &Path) -> String {
    let err = LlmSummarizer::load_dir(dir, &Device::Cpu, LlmOptions::default())
        .err()
        .expect("loading must fail");
    let text = format!("{err:#}");
    assert_eq!(text.lines().count(), 1, "not one line: {text}");
    text
}

#[test]
fn broken_folders_give_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();

    let bert = tmp.path().join("bert");
    copy_fixture("llama-tiny", &bert);
    std::fs::write(bert.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    let err = load_error(&bert);
    assert!(
        err.contains("'bert'") && err.contains("supported: llama"),
        "{err}"
    );

    let no_weights = tmp.path().join("no-weights");
    copy_fixture("llama-tiny", &no_weights);
    std::fs::remove_file(no_weights.join("model.safetensors")).unwrap();
    let err = load_error(&no_weights);
    assert!(err.contains("has no model.safetensors"), "{err}");

    let no_shard = tmp.path().join("no-shard");
    copy_fixture("llama3-tiny", &no_shard);
    std::fs::remove_file(no_shard.join("model-00002-of-00003.safetensors")).unwrap();
    let err = load_error(&no_shard);
    assert!(
        err.contains("lacks model-00002-of-00003.safetensors"),
        "{err}"
    );

    let truncated = tmp.path().join("truncated");
    copy_fixture("llama-tiny", &truncated);
    let weights = truncated.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(&truncated);
    assert!(err.contains("model.safetensors"), "{err}");

    let wrong_shape = tmp.path().join("wrong-shape");
    copy_fixture("llama-tiny", &wrong_shape);
    let cfg = std::fs::read_to_string(wrong_shape.join("config.json")).unwrap();
    std::fs::write(
        wrong_shape.join("config.json"),
        cfg.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
    )
    .unwrap();
    let err = load_error(&wrong_shape);
    assert!(err.contains("model.layers.2"), "{err}");

    let no_tokenizer = tmp.path().join("no-tokenizer");
    copy_fixture("llama-tiny", &no_tokenizer);
    std::fs::remove_file(no_tokenizer.join("tokenizer.json")).unwrap();
    let err = load_error(&no_tokenizer);
    assert!(err.contains("no tokenizer.json"), "{err}");
}

/// Newer checkpoints keep the chat template in chat_template.jinja.
#[test]
fn chat_template_file_is_read_when_the_config_has_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("jinja");
    copy_fixture("llama-tiny", &dir);
    let cfg_path = dir.join("tokenizer_config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let without = PromptTokenizer::load_dir(&dir).unwrap();
    assert_eq!(without.chat_template(), None);
    let template = "{% for m in messages %}[{{ m['content'] }}]{% endfor %}";
    std::fs::write(dir.join("chat_template.jinja"), template).unwrap();
    let with = PromptTokenizer::load_dir(&dir).unwrap();
    assert_eq!(with.chat_template().as_deref(), Some(template));
}

/// The same checks on a CUDA GPU (a `--features cuda` build), or a
/// `SKIPPED: no CUDA device` line without one.
#[cfg(feature = "cuda")]
mod on_cuda {
    use super::common::on_cuda;

    #[test]
    fn tied_bf16_checkpoint_matches_transformers() {
        on_cuda(super::tied_bf16_checkpoint_matches_transformers)
    }

    #[test]
    fn sharded_llama3_checkpoint_matches_transformers() {
        on_cuda(super::sharded_llama3_checkpoint_matches_transformers)
    }

    #[test]
    fn summarizer_loads_a_checkpoint_folder() {
        on_cuda(super::summarizer_loads_a_checkpoint_folder)
    }
}
