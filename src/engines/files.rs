//! Which files of a repository or folder an engine needs: the one place
//! that picks a GGUF file, follows a checkpoint's shard index, and prefers
//! safetensors to a pickle ([`crate::hub::kind`] lists the file sets).
//! `tolk summarize`, `translate --summary`, `batch` and `models pull` all
//! decide here.

use crate::checkpoint::{expect_model_type, read_json, shard_names, WEIGHTS_INDEX};
use crate::hub::{self, HubOptions, ModelFiles, ModelKind, ModelSource, Need};
use crate::pipeline::summarize::llm::safetensors::{gguf_note, LLAMA_CHECKPOINT};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The `.gguf` names among `names`, sorted.
pub fn gguf_names<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut ggufs: Vec<String> = names
        .iter()
        .map(|n| n.as_ref())
        .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
        .map(str::to_string)
        .collect();
    ggufs.sort();
    ggufs
}

/// One GGUF of a repo: the only one, else the Q4_K_M quantization (the
/// usual quality/speed balance), else the user must choose.
pub fn pick_gguf(repo: &str, names: &[String]) -> Result<String> {
    if let [one] = names {
        return Ok(one.clone());
    }
    if let Some(q4) = names
        .iter()
        .find(|n| n.to_ascii_lowercase().contains("q4_k_m"))
    {
        return Ok(q4.clone());
    }
    if names.is_empty() {
        bail!("{repo} has no .gguf file and no config.json (the llm method reads GGUF files and safetensors checkpoints of llama models; for T5 models use --method t5)");
    }
    bail!(
        "{repo} holds {} GGUF files ({}); choose one with --files NAME.gguf: `tolk models pull {repo} --files NAME.gguf`, then pass the file to `tolk summarize --model-file`",
        names.len(),
        names.join(", ")
    )
}

/// The file names of a Hub repo: what is cached at `revision`, else (when
/// online) what the Hub lists.
pub fn repo_listing(repo: &str, revision: &str, opts: &HubOptions) -> Result<Vec<String>> {
    let cached = hub::snapshot_dir(repo, revision)
        .map(|dir| hub::cached_files(&dir))
        .unwrap_or_default();
    if cached.is_empty() && !opts.offline {
        hub::list_remote_files(repo, revision, opts)
    } else {
        Ok(cached)
    }
}

/// Finds (downloading on first use) the files of a llama-family checkpoint:
/// its `config.json` first, whose `model_type` is checked before any weights
/// are fetched, then the file set, then the shards its index names. Its
/// notes are the caller's to announce (once).
pub fn fetch_checkpoint(source: &ModelSource, opts: &HubOptions) -> Result<ModelFiles> {
    let config = hub::resolve(source, &["config.json"], &[], opts)?;
    let config: serde_json::Value = read_json(config.path("config.json")?)?;
    expect_model_type(&config, &source.to_string(), LLAMA_CHECKPOINT, &gguf_note())?;
    let mut files = hub::resolve_needs(source, hub::LLM_SAFETENSORS_FILES, opts)?;
    if let Some(index) = files.get(WEIGHTS_INDEX) {
        let shards = shard_names(&read_json(index)?, index)?;
        let shards: Vec<&str> = shards.iter().map(String::as_str).collect();
        let found = hub::resolve(source, &shards, &[], opts)?;
        files.files.extend(found.files);
    }
    Ok(files)
}

/// What `tolk models pull REPO` fetches, judged from the repo's file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullPlan {
    /// The fixed file set of a kind (Marian, T5).
    Needs(&'static [Need<'static>]),
    /// One GGUF file (see [`pick_gguf`]).
    Gguf(String),
    /// A llama checkpoint: see [`fetch_checkpoint`].
    Checkpoint,
}

/// The files tolk needs from a repository, by the kind of model it holds.
pub fn pull_plan(repo: &str, listing: &[String]) -> Result<PullPlan> {
    let names: Vec<&str> = listing.iter().map(String::as_str).collect();
    let kind = ModelKind::detect(&names, None);
    match kind {
        ModelKind::Gguf => Ok(PullPlan::Gguf(pick_gguf(repo, &gguf_names(listing))?)),
        ModelKind::LlamaCheckpoint => Ok(PullPlan::Checkpoint),
        ModelKind::Marian | ModelKind::T5 => Ok(PullPlan::Needs(kind.files().unwrap_or_default())),
        ModelKind::Unknown => bail!(
            "cannot tell which files of {repo} tolk needs (no Marian, T5, llama or GGUF files among its {} files); name them with --files",
            listing.len()
        ),
    }
}

/// Where the llm summarizer's model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmLocation {
    /// One GGUF file.
    Gguf(PathBuf),
    /// A transformers checkpoint folder; `repo` names it when it came from the Hub.
    Checkpoint { dir: PathBuf, repo: Option<String> },
}

/// The llm model in a local folder: its single `.gguf`, else a checkpoint.
pub fn llm_in_dir(dir: &Path) -> Result<LlmLocation> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("--model-dir {}: {e}", dir.display()))?;
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    match gguf_names(&names).as_slice() {
        [one] => Ok(LlmLocation::Gguf(dir.join(one))),
        [] if names.iter().any(|n| n == "config.json") => Ok(LlmLocation::Checkpoint {
            dir: dir.to_path_buf(),
            repo: None,
        }),
        [] => bail!(
            "{} holds no .gguf file and no config.json of a safetensors checkpoint",
            dir.display()
        ),
        many => bail!(
            "{} holds several .gguf files ({}); pick one with --model-file",
            dir.display(),
            many.join(", ")
        ),
    }
}

/// The llm model of a Hub repo: its GGUF file (see [`pick_gguf`]), else
/// its checkpoint, downloaded on first use.
pub fn llm_in_repo(source: &ModelSource, opts: &HubOptions) -> Result<LlmLocation> {
    let ModelSource::Hub { repo, revision } = source else {
        bail!("internal error: llm_in_repo needs a Hub source");
    };
    let names = repo_listing(repo, revision, opts)?;
    let ggufs = gguf_names(&names);
    if ggufs.is_empty() && names.iter().any(|n| n == "config.json") {
        let files = fetch_checkpoint(source, opts)?;
        hub::announce(&files);
        return Ok(LlmLocation::Checkpoint {
            dir: files.root,
            repo: Some(repo.clone()),
        });
    }
    let file = pick_gguf(repo, &ggufs)?;
    gguf_in_repo(source, &file, opts)
}

/// One named GGUF file of a Hub repo, downloaded on first use.
pub fn gguf_in_repo(source: &ModelSource, file: &str, opts: &HubOptions) -> Result<LlmLocation> {
    let files = hub::resolve(source, &[file], &[], opts)?;
    Ok(LlmLocation::Gguf(files.path(file)?.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pull_plans_follow_the_kind_of_repo() {
        let marian = names(&[
            "config.json",
            "source.spm",
            "target.spm",
            "vocab.json",
            "pytorch_model.bin",
        ]);
        assert_eq!(
            pull_plan("o/m", &marian).unwrap(),
            PullPlan::Needs(hub::MARIAN_FILES)
        );
        let one_gguf = names(&["README.md", "m-q8_0.gguf"]);
        assert_eq!(
            pull_plan("o/g", &one_gguf).unwrap(),
            PullPlan::Gguf("m-q8_0.gguf".into())
        );
        let two = names(&["a.gguf", "b.gguf"]);
        let err = pull_plan("o/g", &two).unwrap_err().to_string();
        assert!(
            err.contains("2 GGUF files (a.gguf, b.gguf)") && err.contains("--files"),
            "{err}"
        );
        // Several quantizations: the same pick as `tolk summarize`.
        let quants = names(&["m-q8_0.gguf", "m-q4_k_m.gguf", "m-f16.gguf"]);
        assert_eq!(
            pull_plan("o/g", &quants).unwrap(),
            PullPlan::Gguf("m-q4_k_m.gguf".into())
        );
        let sharded = names(&[
            "config.json",
            "tokenizer.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "README.md",
        ]);
        assert_eq!(pull_plan("o/l", &sharded).unwrap(), PullPlan::Checkpoint);
        let unknown = names(&["config.json"]);
        assert!(pull_plan("o/u", &unknown)
            .unwrap_err()
            .to_string()
            .contains("--files"));
    }

    #[test]
    fn gguf_pick_prefers_the_only_file_then_q4_k_m() {
        assert_eq!(pick_gguf("o/g", &names(&["x.gguf"])).unwrap(), "x.gguf");
        assert_eq!(
            pick_gguf("o/g", &names(&["a-Q4_K_M.gguf", "a-Q8_0.gguf"])).unwrap(),
            "a-Q4_K_M.gguf"
        );
        let err = pick_gguf("o/g", &[]).unwrap_err().to_string();
        assert!(err.contains("no .gguf file"), "{err}");
        let err = pick_gguf("o/g", &names(&["a.gguf", "b.gguf"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tolk models pull o/g --files"), "{err}");
        assert_eq!(
            gguf_names(&["B.GGUF", "a.gguf", "c.txt"]),
            ["B.GGUF", "a.gguf"]
        );
    }

    #[test]
    fn a_folder_holds_one_gguf_or_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let err = llm_in_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("holds no .gguf file"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert_eq!(
            llm_in_dir(dir.path()).unwrap(),
            LlmLocation::Checkpoint {
                dir: dir.path().to_path_buf(),
                repo: None
            }
        );
        std::fs::write(dir.path().join("m.gguf"), "").unwrap();
        assert_eq!(
            llm_in_dir(dir.path()).unwrap(),
            LlmLocation::Gguf(dir.path().join("m.gguf"))
        );
        std::fs::write(dir.path().join("n.gguf"), "").unwrap();
        let err = llm_in_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("several .gguf files"), "{err}");
    }
}
