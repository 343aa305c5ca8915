//! Unit tests of the GGUF tokenizer converter.

use super::*;

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

/// A SentencePiece-style (`llama`) vocabulary small enough to reason about by hand.
/// Scores fall with the id, as in real SentencePiece BPE models.
fn llama_metadata() -> HashMap<String, Value> {
    let vocab: &[(&str, i32)] = &[
        ("<unk>", 2),  // 0
        ("<s>", 3),    // 1
        ("</s>", 3),   // 2
        ("<x>", 3),    // 3: a control token spelled with normal pieces
        ("\n\n", 4),   // 4: user-defined
        ("  ", 4),     // 5: user-defined run of spaces, spelled with spaces as in GGUF
        ("<0xC3>", 6), // 6
        ("<0xA4>", 6), // 7
        ("▁", 1),      // 8
        ("a", 1),      // 9
        ("b", 1),      // 10
        ("c", 1),      // 11
        ("ab", 1),     // 12
        ("bc", 1),     // 13
        ("▁a", 1),     // 14
        ("abc", 1),    // 15
        ("▁ab", 1),    // 16
        ("<", 1),      // 17
        ("x", 1),      // 18
        (">", 1),      // 19
    ];
    let mut m = HashMap::new();
    m.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
    m.insert(
        "tokenizer.ggml.tokens".into(),
        strings(&vocab.iter().map(|(t, _)| *t).collect::<Vec<_>>()),
    );
    m.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(vocab.iter().map(|(_, k)| Value::I32(*k)).collect()),
    );
    m.insert(
        "tokenizer.ggml.scores".into(),
        Value::Array((0..vocab.len()).map(|i| Value::F32(-(i as f32))).collect()),
    );
    m.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(0));
    m.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
    m.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
    m.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false));
    m
}

/// A byte-level (`gpt2`) vocabulary; "Ġ" is the byte-level spelling of a space.
fn gpt2_metadata(pre: &str) -> HashMap<String, Value> {
    let tokens = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "Ġ",
        "a",
        "b",
        "1",
        "2",
        "ab",
        "Ġa",
        "Ġab",
        "12",
    ];
    let mut m = HashMap::new();
    m.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
    m.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
    m.insert("tokenizer.ggml.tokens".into(), strings(&tokens));
    let types = [3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1];
    m.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(types.iter().map(|&k| Value::I32(k)).collect()),
    );
    m.insert(
        "tokenizer.ggml.merges".into(),
        strings(&["a b", "Ġ a", "Ġ ab", "1 2"]),
    );
    m.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
    m.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
    m.insert(
        "tokenizer.chat_template".into(),
        Value::String("{{ messages }}".into()),
    );
    m
}

#[test]
fn sentencepiece_bpe_merges_by_score_not_by_length() {
    let tok = tokenizer_from_gguf(&llama_metadata()).unwrap();
    // "▁abc": "ab" (id 12) merges first, then "abc" (15) beats "▁ab" (16): ["▁", "abc"].
    assert_eq!(tok.encode_text(" abc").unwrap(), vec![8, 15]);
    assert_eq!(tok.encode_text("abc").unwrap(), vec![15]);
    assert_eq!(tok.decode(&[8, 15], false).unwrap(), " abc");
}

#[test]
fn sentencepiece_byte_fallback_and_user_defined_pieces() {
    let tok = tokenizer_from_gguf(&llama_metadata()).unwrap();
    assert_eq!(tok.encode_text("ä").unwrap(), vec![6, 7]);
    assert_eq!(tok.decode(&[6, 7], false).unwrap(), "ä");
    assert_eq!(tok.encode_text("a\n\nb").unwrap(), vec![9, 4, 10]);
    // Two spaces are one user-defined piece, spelled "  " as in GGUF, matched before the
    // spaces become "▁".
    assert_eq!(tok.encode_text("a  b").unwrap(), vec![9, 5, 10]);
    assert_eq!(tok.decode(&[9, 5, 10], false).unwrap(), "a  b");
    assert_eq!(tok.id_to_token(5).as_deref(), Some("  "));
}

#[test]
fn sentencepiece_bos_and_defaults() {
    let mut meta = llama_metadata();
    let tok = tokenizer_from_gguf(&meta).unwrap();
    assert!(
        tok.add_bos,
        "llama tokenizers add BOS unless told otherwise"
    );
    assert_eq!(tok.bos_id, Some(1));
    // The encoders never add BOS themselves: the prompt builder does.
    assert_eq!(tok.encode_text("ab").unwrap(), vec![12]);
    assert_eq!(tok.stop_ids, vec![2]);
    assert_eq!(tok.chat_template, None);

    meta.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(false));
    let tok = tokenizer_from_gguf(&meta).unwrap();
    assert!(!tok.add_bos);
}

#[test]
fn sentencepiece_space_prefix_when_requested() {
    let mut meta = llama_metadata();
    meta.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(true));
    let tok = tokenizer_from_gguf(&meta).unwrap();
    assert_eq!(tok.encode_text("ab").unwrap(), vec![16]);
    assert_eq!(tok.decode(&[16], false).unwrap(), "ab");
}

#[test]
fn special_tokens_only_in_trusted_text() {
    let tok = tokenizer_from_gguf(&llama_metadata()).unwrap();
    assert_eq!(tok.encode_text("<x>").unwrap(), vec![17, 18, 19]);
    assert_eq!(tok.encode_trusted("<x>").unwrap(), vec![3]);
    assert_eq!(tok.encode_trusted("a<x>b").unwrap(), vec![9, 3, 10]);
    let prompt = tok
        .encode_prompt(&[
            PromptPart::Trusted("<x>a"),
            PromptPart::Text("b<x>"),
            PromptPart::Trusted("c<x>"),
        ])
        .unwrap();
    // "a" + "b" join across the part boundary into "ab"; the user's "<x>" stays text.
    assert_eq!(prompt, vec![3, 12, 17, 18, 19, 11, 3]);
    assert_eq!(tok.decode(&prompt, true).unwrap(), "ab<x>c");
}

#[test]
fn byte_level_bpe_without_spurious_prefix_space() {
    let tok = tokenizer_from_gguf(&gpt2_metadata("gpt2")).unwrap();
    assert_eq!(tok.encode_text("ab").unwrap(), vec![8]);
    assert_eq!(tok.encode_text(" ab").unwrap(), vec![10]);
    assert_eq!(tok.decode(&[8, 10], false).unwrap(), "ab ab");
    assert_eq!(tok.encode_text("12").unwrap(), vec![11]);
    assert!(!tok.add_bos, "gpt2 tokenizers add no BOS unless told");
    assert_eq!(tok.stop_ids, vec![2, 0]);
    assert_eq!(tok.chat_template.as_deref(), Some("{{ messages }}"));
}

#[test]
fn smollm_pre_tokenizer_splits_digits() {
    let tok = tokenizer_from_gguf(&gpt2_metadata("smollm")).unwrap();
    assert_eq!(tok.encode_text("12").unwrap(), vec![6, 7]);
    assert_eq!(tok.encode_text(" ab").unwrap(), vec![10]);
}

#[test]
fn byte_level_special_tokens_need_trust() {
    let tok = tokenizer_from_gguf(&gpt2_metadata("gpt2")).unwrap();
    let trusted = tok.encode_trusted("<|im_start|>ab<|im_end|>").unwrap();
    assert_eq!(trusted, vec![1, 8, 2]);
    assert_eq!(tok.decode(&trusted, true).unwrap(), "ab");
    assert_eq!(
        tok.decode(&trusted, false).unwrap(),
        "<|im_start|>ab<|im_end|>"
    );
}

#[test]
fn unsupported_and_broken_metadata_give_clear_errors() {
    let mut meta = gpt2_metadata("gpt2");
    meta.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
    let err = tokenizer_from_gguf(&meta).unwrap_err().to_string();
    assert!(
        err.contains("unsupported GGUF tokenizer model `bert`"),
        "{err}"
    );

    let err = tokenizer_from_gguf(&gpt2_metadata("mystery"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pre-tokenizer `mystery`"), "{err}");

    let err = tokenizer_from_gguf(&HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizer.ggml.model"), "{err}");

    let mut meta = llama_metadata();
    meta.remove("tokenizer.ggml.tokens");
    let err = tokenizer_from_gguf(&meta).unwrap_err().to_string();
    assert!(err.contains("tokenizer.ggml.tokens"), "{err}");

    let mut meta = llama_metadata();
    meta.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(999));
    let err = tokenizer_from_gguf(&meta).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");

    let mut meta = gpt2_metadata("gpt2");
    meta.insert("tokenizer.ggml.merges".into(), strings(&["ab"]));
    let err = tokenizer_from_gguf(&meta).unwrap_err().to_string();
    assert!(err.contains("not `left right`"), "{err}");

    let mut meta = llama_metadata();
    meta.insert("tokenizer.ggml.token_type".into(), Value::Array(vec![]));
    let err = tokenizer_from_gguf(&meta).unwrap_err().to_string();
    assert!(err.contains("token_type"), "{err}");
}

/// Llama 3's family takes a word that is a token whole, though no merge
/// builds it (`ignore_merges`), as llama.cpp and the `tokenizers` crate do;
/// other families merge it from its bytes.
#[test]
fn llama3_family_takes_whole_word_tokens_before_merges() {
    for (pre, whole) in [("llama-bpe", true), ("gpt2", false), ("qwen2", false)] {
        let mut meta = gpt2_metadata(pre);
        let Some(Value::Array(tokens)) = meta.get_mut("tokenizer.ggml.tokens") else {
            unreachable!()
        };
        tokens.push(Value::String("ba".into())); // id 12, no merge makes it
        let Some(Value::Array(types)) = meta.get_mut("tokenizer.ggml.token_type") else {
            unreachable!()
        };
        types.push(Value::I32(1));
        let want: Vec<u32> = if whole { vec![12] } else { vec![5, 4] };
        let tok = tokenizer_from_gguf(&meta).unwrap();
        assert_eq!(tok.encode_text("ba").unwrap(), want, "{pre}");
        // "bab" is no token: merged from its bytes either way.
        assert_eq!(tok.encode_text("bab").unwrap(), vec![5, 8], "{pre}");
        let reference = hf_tokenizer_from_gguf(&meta).unwrap();
        for text in ["ba", "bab"] {
            let ids = reference.encode(text, false).unwrap().get_ids().to_vec();
            assert_eq!(tok.encode_text(text).unwrap(), ids, "{pre}: {text}");
        }
    }
}
