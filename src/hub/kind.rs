//! Which engine of tolk a model's files are for, and which files each needs.

use serde::Serialize;

/// A file a model needs, as asked of [`super::resolve_needs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Must exist.
    Required(&'a str),
    /// Returned when present; its absence is not an error.
    Optional(&'a str),
    /// The first of these that exists (e.g. safetensors before pytorch_model.bin);
    /// only one is fetched, and none existing is an error.
    FirstOf(&'a [&'a str]),
}

impl<'a> Need<'a> {
    /// The file names this need can be met by.
    pub fn names(&self) -> Vec<&'a str> {
        match *self {
            Need::Required(name) | Need::Optional(name) => vec![name],
            Need::FirstOf(names) => names.to_vec(),
        }
    }

    pub fn is_optional(&self) -> bool {
        matches!(self, Need::Optional(_))
    }

    /// How to name it in an error: `a`, or `a or b` for alternatives.
    pub fn describe(&self) -> String {
        self.names().join(" or ")
    }
}

/// Weights of transformers checkpoints: safetensors first, the pickle only as
/// a fallback (read by tolk's own reader). On `main` of a PyTorch-only repo
/// the safetensors come from the Hub's conversion PR when it has one.
pub const WEIGHTS: &[&str] = &["model.safetensors", "pytorch_model.bin"];

/// The files of a Marian (opus-mt) model that the translator reads.
pub const MARIAN_FILES: &[Need<'static>] = &[
    Need::Required("config.json"),
    Need::FirstOf(WEIGHTS),
    Need::Required("source.spm"),
    Need::Required("target.spm"),
    Need::Required("vocab.json"),
    Need::Optional("tokenizer_config.json"),
    Need::Optional("generation_config.json"),
];

/// The files of a T5-style summarization model.
pub const T5_FILES: &[Need<'static>] = &[
    Need::Required("config.json"),
    Need::FirstOf(WEIGHTS),
    Need::FirstOf(&["tokenizer.json", "spiece.model"]),
    Need::Optional("tokenizer_config.json"),
    Need::Optional("generation_config.json"),
    Need::Optional("special_tokens_map.json"),
];

/// The files of a transformers causal-LM checkpoint (llama family) for the
/// llm summarizer. Sharded weights: the index first, then the shards it names.
pub const LLM_SAFETENSORS_FILES: &[Need<'static>] = &[
    Need::Required("config.json"),
    Need::FirstOf(&[
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
    ]),
    Need::Required("tokenizer.json"),
    Need::Optional("tokenizer_config.json"),
    Need::Optional("generation_config.json"),
    Need::Optional("chat_template.jinja"),
];

/// The kind of model a repository holds, judged from its file names and `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Marian / opus-mt translation model.
    Marian,
    /// GGUF (quantized LLM) used for summaries.
    Gguf,
    /// T5-style encoder-decoder used for summaries.
    T5,
    /// A transformers checkpoint of the llama family (config.json,
    /// safetensors, tokenizer.json) for the llm summarizer.
    #[serde(rename = "llama")]
    LlamaCheckpoint,
    Unknown,
}

impl ModelKind {
    /// Judges from file names and the `model_type` of config.json (when known).
    pub fn detect(files: &[&str], model_type: Option<&str>) -> Self {
        match model_type {
            Some("marian") => return ModelKind::Marian,
            Some("t5" | "mt5") => return ModelKind::T5,
            _ => {}
        }
        let has = |name: &str| files.contains(&name);
        let weights = has("model.safetensors") || has("model.safetensors.index.json");
        if files.iter().any(|file| file.ends_with(".gguf")) {
            ModelKind::Gguf
        } else if has("source.spm") && has("target.spm") {
            ModelKind::Marian
        } else if has("spiece.model") {
            ModelKind::T5
        } else if has("config.json")
            && has("tokenizer.json")
            && weights
            && model_type.is_none_or(|t| t == "llama")
        {
            // Without a model_type (a Hub listing), the loader checks it.
            ModelKind::LlamaCheckpoint
        } else {
            ModelKind::Unknown
        }
    }

    /// The tolk task it serves.
    pub fn task(self) -> &'static str {
        match self {
            ModelKind::Marian => "translation",
            ModelKind::Gguf | ModelKind::T5 | ModelKind::LlamaCheckpoint => "summarization",
            ModelKind::Unknown => "unknown",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Marian => "marian",
            ModelKind::Gguf => "gguf",
            ModelKind::T5 => "t5",
            ModelKind::LlamaCheckpoint => "llama",
            ModelKind::Unknown => "unknown",
        }
    }

    /// The fixed file set of this kind (GGUF repos have none: the file is
    /// chosen by name; a checkpoint's shards come from its index: see
    /// `crate::engines::files`).
    pub fn files(self) -> Option<&'static [Need<'static>]> {
        match self {
            ModelKind::Marian => Some(MARIAN_FILES),
            ModelKind::T5 => Some(T5_FILES),
            ModelKind::LlamaCheckpoint => Some(LLM_SAFETENSORS_FILES),
            ModelKind::Gguf | ModelKind::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_apart_by_files_and_config() {
        assert_eq!(
            ModelKind::detect(&["config.json", "source.spm", "target.spm"], None),
            ModelKind::Marian
        );
        assert_eq!(
            ModelKind::detect(&["README.md", "smollm2-360m-instruct-q8_0.gguf"], None),
            ModelKind::Gguf
        );
        assert_eq!(
            ModelKind::detect(&["config.json", "spiece.model"], None),
            ModelKind::T5
        );
        assert_eq!(
            ModelKind::detect(&["config.json", "tokenizer.json"], Some("t5")),
            ModelKind::T5
        );
        assert_eq!(
            ModelKind::detect(&["config.json"], Some("bert")),
            ModelKind::Unknown
        );
        let llama = ["config.json", "tokenizer.json", "model.safetensors"];
        assert_eq!(ModelKind::detect(&llama, None), ModelKind::LlamaCheckpoint);
        assert_eq!(
            ModelKind::detect(&llama, Some("llama")),
            ModelKind::LlamaCheckpoint
        );
        assert_eq!(ModelKind::detect(&llama, Some("bert")), ModelKind::Unknown);
        assert_eq!(ModelKind::LlamaCheckpoint.task(), "summarization");
        assert_eq!(ModelKind::Marian.task(), "translation");
        assert_eq!(ModelKind::Gguf.task(), "summarization");
    }
}
