//! The tokenizer rebuilt from GGUF metadata (`tokenize::gguf`), from
//! structured metadata (a vocabulary, token types, merges, special ids) so
//! that the fuzzer spends its time inside the converter rather than on the
//! file format (the `gguf` target covers that). It must never panic, every
//! id it produces must be in the vocabulary, and decoding any ids is safe.
#![no_main]

use arbitrary::Arbitrary;
use candle_core::quantized::gguf_file::Value;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use tolk::tokenize::gguf::{tokenizer_from_gguf, PromptPart};

#[derive(Debug, Arbitrary)]
struct Input {
    model: u8,
    tokens: Vec<String>,
    types: Option<Vec<i8>>,
    merges: Option<Vec<String>>,
    pre: Option<u8>,
    bos: Option<i64>,
    eos: Option<i64>,
    unk: Option<i64>,
    eot: Option<i64>,
    add_bos: Option<bool>,
    add_space_prefix: Option<bool>,
    text: String,
    trusted: String,
    ids: Vec<u32>,
}

const PRES: &[&str] = &[
    "default",
    "gpt2",
    "smollm",
    "llama-bpe",
    "qwen2",
    "llama3",
    "nonsense",
];
const BASE: &[&str] = &[
    "<unk>",
    "<s>",
    "</s>",
    "<|im_start|>",
    "<|im_end|>",
    "<end_of_turn>",
    "▁",
    " ",
    "  ",
    "\n\n",
    "<0x41>",
    "<0xC3>",
    "<0xA4>",
    "Ġ",
    "a",
    "b",
    "ab",
    "Ġa",
    "▁a",
    "ä",
];

fuzz_target!(|input: Input| {
    let mut m: HashMap<String, Value> = HashMap::new();
    let model = match input.model % 3 {
        0 => "gpt2",
        1 => "llama",
        _ => "bert",
    };
    m.insert("tokenizer.ggml.model".into(), Value::String(model.into()));
    // Real vocabularies start with the special pieces; the fuzzer adds to them.
    let tokens: Vec<String> = BASE
        .iter()
        .map(|s| s.to_string())
        .chain(input.tokens.into_iter().take(2000))
        .collect();
    let vocab = tokens.len();
    m.insert(
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.into_iter().map(Value::String).collect()),
    );
    if let Some(types) = input.types {
        let mut types: Vec<Value> = types
            .into_iter()
            .map(|t| Value::I32(i32::from(t)))
            .collect();
        // Mostly the right length, so the converter gets past the check.
        if types.len() % 8 != 0 {
            types.resize(vocab, Value::I32(1));
        }
        m.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    }
    if let Some(merges) = input.merges {
        m.insert(
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.into_iter().take(4000).map(Value::String).collect()),
        );
    }
    if let Some(pre) = input.pre {
        m.insert(
            "tokenizer.ggml.pre".into(),
            Value::String(PRES[usize::from(pre) % PRES.len()].into()),
        );
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", input.bos),
        ("tokenizer.ggml.eos_token_id", input.eos),
        ("tokenizer.ggml.unknown_token_id", input.unk),
        ("tokenizer.ggml.eot_token_id", input.eot),
    ] {
        if let Some(id) = id {
            m.insert(key.into(), Value::I64(id));
        }
    }
    if let Some(b) = input.add_bos {
        m.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(b));
    }
    if let Some(b) = input.add_space_prefix {
        m.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(b));
    }
    let Ok(tok) = tokenizer_from_gguf(&m) else {
        return;
    };
    let size = vocab;
    for ids in [
        tok.encode_text(&input.text),
        tok.encode_trusted(&input.trusted),
        tok.encode_prompt(&[
            PromptPart::Trusted(&input.trusted),
            PromptPart::Text(&input.text),
            PromptPart::Trusted(&input.trusted),
        ]),
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            ids.iter().all(|&id| (id as usize) < size),
            "id outside the vocabulary"
        );
        let _ = tok.decode(&ids, true);
        let _ = tok.decode(&ids, false);
    }
    let _ = tok.decode(&input.ids, false);
    assert!(tok.stop_ids.iter().all(|&id| (id as usize) < size));
});
