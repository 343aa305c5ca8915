//! The one loader of transformers checkpoint folders (Marian, T5, llama):
//! the JSON files beside the weights ([`read_json`], [`expect_model_type`],
//! the shared part of `generation_config.json` in [`GenerationFile`]), and
//! the weights as a `VarBuilder` ([`Weights`]), always with one memory
//! policy: tensors are read one at a time into their own buffers, never
//! memory-mapped ([`safetensors`] says why).
//!
//! Model code (`crate::models`) parses `config.json` into its own serde
//! `Config`; this module only finds and reads the files.

pub mod pytorch;
pub mod safetensors;

use crate::generation::EarlyStopping;
use crate::hub::ModelFiles;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Single-file safetensors weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of sharded safetensors weights.
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// PyTorch pickle weights, read only when there are no safetensors.
pub const PYTORCH_WEIGHTS: &str = "pytorch_model.bin";

/// Reads a JSON file into `T`; every error names the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| anyhow!("{} is broken: {e}", path.display()))
}

/// The `model_type` values an engine accepts, and how to name the engine's
/// models when another one is found.
#[derive(Debug, Clone, Copy)]
pub struct ModelType<'a> {
    /// E.g. "a Marian translation model".
    pub what: &'a str,
    pub accepted: &'a [&'a str],
    /// Whether a config.json without `model_type` is refused (older Marian
    /// and T5 checkpoints lack it).
    pub required: bool,
}

/// Checks the `model_type` of a parsed `config.json` of `label` (a repo or
/// folder); `note` is appended to the refusal. Returns the type, if given.
pub fn expect_model_type<'v>(
    config: &'v Value,
    label: &str,
    expected: ModelType,
    note: &str,
) -> Result<Option<&'v str>> {
    match config.get("model_type").and_then(Value::as_str) {
        Some(t) if expected.accepted.contains(&t) => Ok(Some(t)),
        None if !expected.required => Ok(None),
        None => bail!("{label}: config.json has no model_type"),
        Some(other) => bail!(
            "{label} holds a '{other}' model, not {} (supported: {}{note})",
            expected.what,
            expected.accepted.join(", ")
        ),
    }
}

/// `generation_config.json`: the fields tolk's engines read. Each engine
/// decides its own fallbacks (its `config.json`, its own defaults).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenerationFile {
    pub num_beams: Option<usize>,
    pub max_length: Option<usize>,
    pub min_length: Option<usize>,
    pub length_penalty: Option<f32>,
    pub early_stopping: Option<Value>,
    pub no_repeat_ngram_size: Option<usize>,
    pub bad_words_ids: Option<Vec<Vec<u32>>>,
    pub forced_eos_token_id: Option<u32>,
    pub decoder_start_token_id: Option<u32>,
    /// One id or a list of them.
    pub eos_token_id: Option<Value>,
}

impl GenerationFile {
    /// Every end-of-sequence id listed.
    pub fn eos_ids(&self) -> Vec<u32> {
        let as_id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match &self.eos_token_id {
            Some(Value::Array(items)) => items.iter().filter_map(as_id).collect(),
            Some(v) => as_id(v).into_iter().collect(),
            None => Vec::new(),
        }
    }

    /// The first end-of-sequence id (what beam search stops on).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_ids().first().copied()
    }

    /// `early_stopping`: `true`, `"never"`, else transformers' heuristic.
    pub fn early_stopping(&self) -> EarlyStopping {
        match &self.early_stopping {
            Some(Value::Bool(true)) => EarlyStopping::Done,
            Some(Value::String(s)) if s == "never" => EarlyStopping::Never,
            _ => EarlyStopping::Heuristic,
        }
    }
}

/// A checkpoint folder: its files by name, resolved from the Hub or a
/// local folder.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Names the model in errors: the repo (and revision) or the folder.
    label: String,
    root: PathBuf,
    /// Files resolved by name; others are looked up in `root`.
    files: BTreeMap<String, PathBuf>,
}

impl Checkpoint {
    /// The files `crate::hub::resolve_needs` found.
    pub fn from_files(files: &ModelFiles) -> Self {
        Self {
            label: files.source.to_string(),
            root: files.root.clone(),
            files: files.files.clone(),
        }
    }

    /// A local folder.
    pub fn from_dir(dir: &Path) -> Self {
        Self {
            label: dir.display().to_string(),
            root: dir.to_path_buf(),
            files: BTreeMap::new(),
        }
    }

    /// The repo or folder, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The path of `name`, if the checkpoint has it.
    pub fn get(&self, name: &str) -> Option<PathBuf> {
        match self.files.get(name) {
            Some(path) => Some(path.clone()),
            None => Some(self.root.join(name)).filter(|p| p.is_file()),
        }
    }

    /// The path of `name`, or an error naming the checkpoint.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        self.get(name)
            .ok_or_else(|| anyhow!("{} has no {name}", self.label))
    }

    /// `config.json` parsed, after checking its `model_type`.
    pub fn config(&self, expected: ModelType, note: &str) -> Result<Value> {
        let config: Value = read_json(&self.path("config.json")?)?;
        expect_model_type(&config, &self.label, expected, note)?;
        Ok(config)
    }

    /// `generation_config.json`, or all defaults when there is none.
    pub fn generation(&self) -> Result<GenerationFile> {
        match self.get("generation_config.json") {
            Some(path) => read_json(&path),
            None => Ok(GenerationFile::default()),
        }
    }

    /// The weight files: `model.safetensors`, else the shards its index
    /// names, else `pytorch_model.bin`.
    pub fn weights(&self) -> Result<Weights> {
        if let Some(single) = self.get(WEIGHTS_FILE) {
            return Ok(Weights::Safetensors(vec![single]));
        }
        if let Some(index) = self.get(WEIGHTS_INDEX) {
            let names = shard_names(&read_json(&index)?, &index)?;
            let mut paths = Vec::with_capacity(names.len());
            for name in &names {
                match self.get(name) {
                    Some(path) => paths.push(path),
                    None => bail!(
                        "{} lacks {name}, a shard listed in {WEIGHTS_INDEX}",
                        self.label
                    ),
                }
            }
            return Ok(Weights::Safetensors(paths));
        }
        if let Some(pickle) = self.get(PYTORCH_WEIGHTS) {
            return Ok(Weights::Pytorch(pickle));
        }
        bail!(
            "{} has no {WEIGHTS_FILE} or {WEIGHTS_INDEX} (nor {PYTORCH_WEIGHTS})",
            self.label
        )
    }

    /// The weights as a `VarBuilder` of `dtype` on `device`.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        self.weights()?.var_builder(dtype, device)
    }
}

/// Where a checkpoint's weights are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weights {
    /// One file, or the shards of an index.
    Safetensors(Vec<PathBuf>),
    /// A PyTorch pickle.
    Pytorch(PathBuf),
}

impl Weights {
    /// Opens the weights. Safetensors are read tensor by tensor as the model
    /// asks for them (see [`safetensors`]); the pickle by [`pytorch`].
    pub fn var_builder(&self, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
        match self {
            Weights::Safetensors(paths) => {
                let files = paths
                    .iter()
                    .map(|p| safetensors::SafetensorsFile::open(p))
                    .collect::<Result<Vec<_>>>()?;
                Ok(safetensors::Shards::new(files).into_var_builder(dtype, device))
            }
            // Our own reader: both torch layouts (the 2020 opus-mt files
            // are the legacy one), and no pickle code is ever run.
            Weights::Pytorch(path) => {
                Ok(pytorch::PthFile::open(path)?.into_var_builder(dtype, device))
            }
        }
    }
}

/// The shard file names a `model.safetensors.index.json` lists, sorted.
pub fn shard_names(index: &Value, path: &Path) -> Result<Vec<String>> {
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("{}: no weight_map", path.display()))?;
    let mut names = BTreeSet::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| anyhow!("{}: weight_map values must be file names", path.display()))?;
        // Shards lie beside the index: a path elsewhere is not a checkpoint.
        if file.is_empty() || file.contains(['/', '\\']) || file.starts_with('.') {
            bail!("{}: bad shard name '{file}'", path.display());
        }
        names.insert(file.to_string());
    }
    if names.is_empty() {
        bail!("{}: weight_map is empty", path.display());
    }
    Ok(names.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shard_names_are_unique_and_stay_in_the_folder() {
        let p = Path::new("i.json");
        let index = json!({"weight_map": {"a": "m-2.safetensors", "b": "m-1.safetensors", "c": "m-1.safetensors"}});
        assert_eq!(
            shard_names(&index, p).unwrap(),
            ["m-1.safetensors", "m-2.safetensors"]
        );
        for bad in ["../x.safetensors", "/etc/passwd", ""] {
            assert!(shard_names(&json!({"weight_map": {"a": bad}}), p).is_err());
        }
        assert!(shard_names(&json!({}), p).is_err());
    }

    #[test]
    fn model_types_are_checked_against_the_accepted_list() {
        let llama = ModelType {
            what: "a llama checkpoint",
            accepted: &["llama"],
            required: true,
        };
        let err = expect_model_type(&json!({"model_type": "bert"}), "o/m", llama, "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'bert'") && err.contains("supported: llama"),
            "{err}"
        );
        assert!(expect_model_type(&json!({}), "o/m", llama, "").is_err());
        let optional = ModelType {
            required: false,
            ..llama
        };
        assert_eq!(
            expect_model_type(&json!({}), "o/m", optional, "").unwrap(),
            None
        );
        assert_eq!(
            expect_model_type(&json!({"model_type": "llama"}), "o/m", llama, "").unwrap(),
            Some("llama")
        );
    }

    #[test]
    fn generation_file_reads_one_or_many_eos_ids() {
        let one: GenerationFile = serde_json::from_value(json!({"eos_token_id": 2})).unwrap();
        assert_eq!(one.eos_ids(), [2]);
        let many: GenerationFile =
            serde_json::from_value(json!({"eos_token_id": [5, 7], "early_stopping": true}))
                .unwrap();
        assert_eq!(many.eos_id(), Some(5));
        assert_eq!(many.early_stopping(), EarlyStopping::Done);
        assert_eq!(
            GenerationFile::default().early_stopping(),
            EarlyStopping::Heuristic
        );
    }

    #[test]
    fn weights_prefer_safetensors_then_shards_then_the_pickle() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = Checkpoint::from_dir(dir.path());
        let err = ckpt.weights().unwrap_err().to_string();
        assert!(
            err.contains("has no model.safetensors or model.safetensors.index.json"),
            "{err}"
        );
        std::fs::write(dir.path().join(PYTORCH_WEIGHTS), b"x").unwrap();
        assert_eq!(
            ckpt.weights().unwrap(),
            Weights::Pytorch(dir.path().join(PYTORCH_WEIGHTS))
        );
        std::fs::write(
            dir.path().join(WEIGHTS_INDEX),
            br#"{"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("m-1.safetensors"), b"x").unwrap();
        let err = ckpt.weights().unwrap_err().to_string();
        assert!(err.contains("lacks m-2.safetensors"), "{err}");
        std::fs::write(dir.path().join(WEIGHTS_FILE), b"x").unwrap();
        assert_eq!(
            ckpt.weights().unwrap(),
            Weights::Safetensors(vec![dir.path().join(WEIGHTS_FILE)])
        );
    }
}
