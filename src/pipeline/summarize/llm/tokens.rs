//! The tokenizer the summarizer talks to: rebuilt from GGUF metadata, or a
//! `tokenizer.json` (+ `tokenizer_config.json`) lying next to the model file.

use crate::checkpoint::{read_json, GenerationFile};
use crate::tokenize::gguf::{tokenizer_from_gguf, GgufTokenizer, PromptPart, END_OF_TURN_TOKENS};
use anyhow::{anyhow, Context, Result};
use candle_core::quantized::gguf_file::Value;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::Tokenizer;

/// A tokenizer plus the facts generation needs (BOS, stop ids, chat template).
pub enum PromptTokenizer {
    Gguf(Box<GgufTokenizer>),
    Json(Box<JsonTokenizer>),
}

/// A `tokenizer.json` with the settings of its `tokenizer_config.json`.
pub struct JsonTokenizer {
    /// Encodes user text: special-token strings stay plain text.
    text: Tokenizer,
    /// Encodes template markup: special tokens are recognised.
    trusted: Tokenizer,
    bos_id: Option<u32>,
    stop_ids: Vec<u32>,
    add_bos: bool,
    chat_template: Option<String>,
    bos_token: String,
    eos_token: String,
}

impl PromptTokenizer {
    /// `tokenizer.json` next to `gguf_path` when there is one, else the GGUF metadata.
    pub fn load(gguf_path: &Path, metadata: &HashMap<String, Value>) -> Result<Self> {
        let dir = gguf_path.parent().unwrap_or(Path::new("."));
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return JsonTokenizer::load(&json, metadata).map(|t| Self::Json(Box::new(t)));
        }
        tokenizer_from_gguf(metadata)
            .with_context(|| format!("{}: cannot build the tokenizer", gguf_path.display()))
            .map(|t| Self::Gguf(Box::new(t)))
    }

    /// The `tokenizer.json` (+ `tokenizer_config.json`,
    /// `generation_config.json`) of a transformers checkpoint folder.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if !json.is_file() {
            anyhow::bail!("{} has no tokenizer.json", dir.display());
        }
        JsonTokenizer::load(&json, &HashMap::new()).map(|t| Self::Json(Box::new(t)))
    }

    /// `before` + `text` + `after` as ids, BOS first when the model wants it
    /// and the template did not write it. Only `before`/`after` may contain
    /// special tokens.
    pub fn encode_prompt(&self, before: &str, text: &str, after: &str) -> Result<Vec<u32>> {
        self.encode_prompt_parts(&[
            PromptPart::Trusted(before),
            PromptPart::Text(text),
            PromptPart::Trusted(after),
        ])
    }

    /// As [`Self::encode_prompt`], for any sequence of trusted and text parts.
    pub fn encode_prompt_parts(&self, parts: &[PromptPart<'_>]) -> Result<Vec<u32>> {
        let (mut ids, bos, add_bos) = match self {
            Self::Gguf(t) => (t.encode_prompt(parts)?, t.bos_id, t.add_bos),
            Self::Json(t) => {
                let mut ids = Vec::new();
                for part in parts {
                    ids.extend(match *part {
                        PromptPart::Trusted(s) => t.encode(&t.trusted, s)?,
                        PromptPart::Text(s) => t.encode(&t.text, s)?,
                    });
                }
                (ids, t.bos_id, t.add_bos)
            }
        };
        if let (true, Some(bos)) = (add_bos, bos) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Number of tokens `text` takes as user text.
    pub fn count(&self, text: &str) -> Result<usize> {
        Ok(self.text_ids(text)?.len())
    }

    /// The ids of `text` as user text: special-token strings stay text.
    pub fn text_ids(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Gguf(t) => t.encode_text(text),
            Self::Json(t) => t.encode(&t.text, text),
        }
    }

    /// Text of `ids` without special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Self::Gguf(t) => t.decode(ids, true),
            Self::Json(t) => t
                .text
                .decode(ids, true)
                .map_err(|e| anyhow!("decoding failed: {e}")),
        }
    }

    pub fn is_stop(&self, id: u32) -> bool {
        match self {
            Self::Gguf(t) => t.is_stop(id),
            Self::Json(t) => t.stop_ids.contains(&id),
        }
    }

    pub fn chat_template(&self) -> Option<String> {
        match self {
            Self::Gguf(t) => t.chat_template.clone(),
            Self::Json(t) => t.chat_template.clone(),
        }
    }

    /// The BOS and EOS token strings, for templates that print them.
    pub fn bos_eos_strings(&self) -> (String, String) {
        match self {
            Self::Gguf(t) => {
                let name =
                    |id: Option<u32>| id.and_then(|id| t.id_to_token(id)).unwrap_or_default();
                (name(t.bos_id), name(t.eos_id))
            }
            Self::Json(t) => (t.bos_token.clone(), t.eos_token.clone()),
        }
    }
}

impl JsonTokenizer {
    fn load(path: &Path, metadata: &HashMap<String, Value>) -> Result<Self> {
        let mut text = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: cannot read tokenizer: {e}", path.display()))?;
        let mut trusted = text.clone();
        text.set_encode_special_tokens(true);
        trusted.set_encode_special_tokens(false);
        let config_path = path.with_file_name("tokenizer_config.json");
        let config: serde_json::Value = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            serde_json::Value::Null
        };
        // Special tokens appear as strings or as {"content": ...} objects.
        let token_string = |key: &str| -> Option<String> {
            match config.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                other => other.get("content")?.as_str().map(str::to_string),
            }
        };
        let gguf_id = |key: &str| match metadata.get(key) {
            Some(Value::U32(v)) => Some(*v),
            _ => None,
        };
        let bos_token = token_string("bos_token").unwrap_or_default();
        let eos_token = token_string("eos_token").unwrap_or_default();
        let bos_id = text
            .token_to_id(&bos_token)
            .or_else(|| gguf_id("tokenizer.ggml.bos_token_id"));
        let eos_id = text
            .token_to_id(&eos_token)
            .or_else(|| gguf_id("tokenizer.ggml.eos_token_id"));
        let mut stop_ids: Vec<u32> = eos_id.into_iter().collect();
        for t in END_OF_TURN_TOKENS {
            if let Some(id) = text.token_to_id(t) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        // transformers stops at every EOS id of generation_config.json.
        let generation_path = path.with_file_name("generation_config.json");
        if generation_path.is_file() {
            let generation: GenerationFile = read_json(&generation_path)?;
            for id in generation.eos_ids() {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        // Newer checkpoints keep the template in its own file.
        let template_path = path.with_file_name("chat_template.jinja");
        let chat_template = match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ if template_path.is_file() => Some(
                std::fs::read_to_string(&template_path)
                    .with_context(|| format!("{}: cannot read", template_path.display()))?,
            ),
            _ => match metadata.get("tokenizer.chat_template") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            },
        };
        // Without the flag, the tokenizer's own post-processor tells
        // (Llama 3's adds BOS; SmolLM2's does not).
        let add_bos = match config.get("add_bos_token").and_then(|v| v.as_bool()) {
            Some(flag) => flag,
            None => bos_id.is_some_and(|bos| {
                trusted
                    .encode_fast("a", true)
                    .is_ok_and(|e| e.get_ids().first() == Some(&bos))
            }),
        };
        Ok(Self {
            text,
            trusted,
            bos_id,
            stop_ids,
            add_bos,
            chat_template,
            bos_token,
            eos_token,
        })
    }

    fn encode(&self, tok: &Tokenizer, s: &str) -> Result<Vec<u32>> {
        if s.is_empty() {
            return Ok(Vec::new());
        }
        tok.encode_fast(s, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| anyhow!("tokenizing failed: {e}"))
    }
}
