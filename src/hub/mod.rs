//! Finding model files: the Hugging Face cache, downloads, local folders.
//!
//! A model comes either from the Hub ([`ModelSource::Hub`]: looked up in the
//! standard HF cache first, downloaded with hf-hub when missing and allowed)
//! or from a local folder ([`ModelSource::Dir`]: never touches the network).
//! [`resolve`] returns the paths of the files an engine asked for, or one
//! error line that says what is missing and how to get it.

mod cache;
mod conversion;
mod env;
mod kind;
mod remote;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

pub use cache::{
    list_cached_in, snapshot_dir_in, verify_cached_in, CachedModel, CachedSnapshot, FileCheck,
    VerifyReport,
};
pub use env::{
    cache_dir, endpoint, offline_from_env, progress_disabled_by_env, token, DEFAULT_ENDPOINT,
};
pub use kind::{ModelKind, Need, LLM_SAFETENSORS_FILES, MARIAN_FILES, T5_FILES, WEIGHTS};

use cache::{Cached, RepoDir};
use remote::{Failure, Remote};

/// The translation model tolk uses when none is given.
pub const DEFAULT_TRANSLATION_MODEL: &str = "Helsinki-NLP/opus-mt-de-en";

/// A model tolk uses by default, and the files it needs of it.
#[derive(Debug, Clone, Copy)]
pub struct DefaultModel {
    pub task: &'static str,
    pub repo: &'static str,
    pub files: &'static [Need<'static>],
}

/// Every default model; `tolk models list` shows whether each is cached.
pub const DEFAULT_MODELS: &[DefaultModel] = &[
    DefaultModel {
        task: "translation",
        repo: DEFAULT_TRANSLATION_MODEL,
        files: MARIAN_FILES,
    },
    DefaultModel {
        task: "summarization",
        repo: DEFAULT_SUMMARY_MODEL,
        files: &[Need::Required(DEFAULT_SUMMARY_FILE)],
    },
];

/// The summarization model tolk uses when none is given: an
/// instruction-tuned model of the llama family, whose code and tokenizer the
/// tests check against real files (SmolLM2-135M shares its tokenizer).
pub const DEFAULT_SUMMARY_MODEL: &str = "HuggingFaceTB/SmolLM2-1.7B-Instruct-GGUF";
/// The T5 model `--method t5` uses when none is given.
pub const DEFAULT_T5_MODEL: &str = "google/flan-t5-base";
/// The file of [`DEFAULT_SUMMARY_MODEL`] tolk downloads.
pub const DEFAULT_SUMMARY_FILE: &str = "smollm2-1.7b-instruct-q4_k_m.gguf";

/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// A Hub repository (`owner/name`) at a branch, tag or commit.
    Hub { repo: String, revision: String },
    /// A local folder holding the files.
    Dir(PathBuf),
}

impl ModelSource {
    pub fn hub(repo: impl Into<String>, revision: impl Into<String>) -> Self {
        ModelSource::Hub {
            repo: repo.into(),
            revision: revision.into(),
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Hub { repo, revision } if revision == DEFAULT_REVISION => {
                write!(f, "{repo}")
            }
            ModelSource::Hub { repo, revision } => write!(f, "{repo}@{revision}"),
            ModelSource::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// How Hub models are fetched.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Use only the cache; a missing file is an error instead of a download.
    pub offline: bool,
    /// Draw download progress bars on stderr (only when it is a terminal and
    /// HF_HUB_DISABLE_PROGRESS_BARS is not set).
    pub progress: bool,
    /// The cache folder; `None` means [`cache_dir`] (from the environment).
    pub cache_dir: Option<PathBuf>,
    /// The Hub URL; `None` means [`endpoint`] (HF_ENDPOINT or the public Hub).
    pub endpoint: Option<String>,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            offline: false,
            progress: true,
            cache_dir: None,
            endpoint: None,
        }
    }
}

impl HubOptions {
    fn cache(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(cache_dir)
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone().unwrap_or_else(endpoint)
    }
}

/// The files found for a model, by the name they were asked for.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub source: ModelSource,
    /// The folder holding the files (the snapshot folder for Hub models).
    pub root: PathBuf,
    pub files: BTreeMap<String, PathBuf>,
    /// Where files came from when it is not the obvious place (weights from
    /// the Hub's safetensors conversion PR, or the pickle as a fallback):
    /// one line each, for the caller to show once.
    pub notes: Vec<String>,
}

impl ModelFiles {
    /// The path of `name`, if it was found.
    pub fn get(&self, name: &str) -> Option<&Path> {
        self.files.get(name).map(PathBuf::as_path)
    }

    /// The path of `name`, or an error naming the model.
    pub fn path(&self, name: &str) -> Result<&Path> {
        self.get(name)
            .ok_or_else(|| anyhow!("model {} has no file {name}", self.source))
    }
}

/// Checks a Hub repo id the way the Hub does: `owner/name`, letters, digits,
/// `-`, `_`, `.`; no `--` or `..`; at most 96 characters.
/// Says on stderr, once per resolution, what the user should know about
/// where the files came from (e.g. the Hub's safetensors conversion).
pub fn announce(files: &ModelFiles) {
    for note in &files.notes {
        eprintln!("tolk: {note}");
    }
}

pub fn validate_repo_id(repo: &str) -> Result<()> {
    let invalid = |why: &str| {
        anyhow!("`{repo}` is not a valid Hub repo id ({why}); expected owner/name, e.g. {DEFAULT_TRANSLATION_MODEL}")
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() != 2 {
        return Err(invalid("it needs exactly one `/`"));
    }
    if repo.len() > 96 {
        return Err(invalid("longer than 96 characters"));
    }
    for part in parts {
        if part.is_empty() {
            return Err(invalid("empty owner or name"));
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "only letters, digits, `-`, `_` and `.` are allowed",
            ));
        }
        if part.contains("--") || part.contains("..") {
            return Err(invalid("`--` and `..` are not allowed"));
        }
        if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
            return Err(invalid(
                "owner and name cannot start or end with `-` or `.`",
            ));
        }
    }
    Ok(())
}

/// A relative path without `..`: file names and revisions become cache paths.
fn check_relative(what: &str, value: &str) -> Result<()> {
    let path = Path::new(value);
    let ok = !value.is_empty()
        && !value.contains('\\')
        && path
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        bail!("invalid {what} `{value}`: it must be a relative path without `..`")
    }
}

/// Reads a `--model`-style argument: an existing path, or one that starts
/// with `./`, `../`, `/` or `~`, is a folder; `owner/name` is a Hub repo.
pub fn parse_model_arg(arg: &str, revision: &str) -> Result<ModelSource> {
    let arg = arg.trim();
    if arg.is_empty() {
        bail!("empty model name: give a Hub repo id (owner/name) or a folder");
    }
    let looks_like_path = ["./", "../", "/", "~", "."]
        .iter()
        .any(|prefix| arg.starts_with(prefix))
        || arg.contains('\\');
    if looks_like_path || Path::new(arg).exists() {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        return Ok(ModelSource::Dir(env::expand_tilde(arg, home.as_deref())));
    }
    validate_repo_id(arg)
        .map_err(|err| anyhow!("`{arg}` is neither an existing folder nor a Hub repo id: {err}"))?;
    Ok(ModelSource::hub(arg, revision))
}

/// Resolves the files a model needs: each `required` file must exist (else a
/// clear error naming the missing file, the folder or repo, and how to get
/// it); each `optional` one is returned when present.
pub fn resolve(
    source: &ModelSource,
    required: &[&str],
    optional: &[&str],
    opts: &HubOptions,
) -> Result<ModelFiles> {
    let needs: Vec<Need> = required
        .iter()
        .map(|name| Need::Required(name))
        .chain(optional.iter().map(|name| Need::Optional(name)))
        .collect();
    resolve_needs(source, &needs, opts)
}

/// Like [`resolve`], with alternatives ([`Need::FirstOf`]).
pub fn resolve_needs(
    source: &ModelSource,
    needs: &[Need],
    opts: &HubOptions,
) -> Result<ModelFiles> {
    for need in needs {
        for name in need.names() {
            check_relative("file name", name)?;
        }
    }
    match source {
        ModelSource::Dir(dir) => resolve_dir(source, dir, needs),
        ModelSource::Hub { repo, revision } => {
            validate_repo_id(repo)?;
            check_relative("revision", revision)?;
            resolve_hub(source, repo, revision, needs, opts)
        }
    }
}

fn describe_all(needs: &[Need]) -> String {
    needs
        .iter()
        .filter(|need| !need.is_optional())
        .map(Need::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

fn resolve_dir(source: &ModelSource, dir: &Path, needs: &[Need]) -> Result<ModelFiles> {
    let meta = std::fs::metadata(dir).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => anyhow!("model folder {} does not exist", dir.display()),
        _ => anyhow!("cannot read model folder {}: {err}", dir.display()),
    })?;
    if !meta.is_dir() {
        bail!(
            "{} is a file, not a model folder (pass the folder that holds {})",
            dir.display(),
            describe_all(needs)
        );
    }
    let mut files = BTreeMap::new();
    let mut missing = Vec::new();
    let mut notes = Vec::new();
    for need in needs {
        match need
            .names()
            .into_iter()
            .find(|name| dir.join(name).is_file())
        {
            Some(name) => {
                files.insert(name.to_string(), dir.join(name));
            }
            None if need.is_optional() => {}
            None => match snapshot_conversion(dir, need) {
                // A snapshot of a PyTorch-only main (`tolk models path`)
                // whose conversion is cached beside it.
                Some((revision, path)) => {
                    files.insert(conversion::SAFETENSORS.to_string(), path);
                    notes.push(conversion::origin_note(&revision));
                }
                None => missing.push(need.describe()),
            },
        }
    }
    if !missing.is_empty() {
        bail!(
            "model folder {} lacks {}; a complete folder holds {}",
            dir.display(),
            missing.join(", "),
            describe_all(needs)
        );
    }
    Ok(ModelFiles {
        source: source.clone(),
        root: dir.to_path_buf(),
        files,
        notes,
    })
}

/// The cached conversion of the weights of a cache snapshot folder.
fn snapshot_conversion(dir: &Path, need: &Need) -> Option<(String, PathBuf)> {
    if *need != Need::FirstOf(WEIGHTS) {
        return None;
    }
    let (repo_dir, commit) = RepoDir::of_snapshot(dir)?;
    if repo_dir.lookup(&commit, conversion::SAFETENSORS) != Cached::KnownAbsent {
        return None;
    }
    repo_dir.cached_pr_with(conversion::SAFETENSORS)
}

/// Whether the weights of this need may come from the Hub's safetensors
/// conversion: PyTorch-or-safetensors weights, asked of `main` (an explicit
/// other revision is taken as given, as transformers does).
fn converts(need: &Need, revision: &str) -> bool {
    *need == Need::FirstOf(WEIGHTS) && revision == DEFAULT_REVISION
}

/// What the cache says about one need.
enum InCache<'a> {
    Found(&'a str, PathBuf),
    /// The Hub said none of its names exist at this commit.
    Absent,
    Unknown,
}

fn lookup_need<'a>(dir: &RepoDir, commit: &str, need: &Need<'a>) -> InCache<'a> {
    let mut all_absent = true;
    for name in need.names() {
        match dir.lookup(commit, name) {
            Cached::Present(path) => return InCache::Found(name, path),
            Cached::KnownAbsent => {}
            Cached::Unknown => all_absent = false,
        }
    }
    if all_absent {
        InCache::Absent
    } else {
        InCache::Unknown
    }
}

fn pull_command(repo: &str, revision: &str) -> String {
    if revision == DEFAULT_REVISION {
        format!("tolk models pull {repo}")
    } else {
        format!("tolk models pull {repo} --revision {revision}")
    }
}

fn repo_label(repo: &str, revision: &str) -> String {
    if revision == DEFAULT_REVISION {
        repo.to_string()
    } else {
        format!("{repo} (revision {revision})")
    }
}

/// Turns a failed Hub request into one line a user can act on.
fn hub_error(
    failure: &Failure,
    repo: &str,
    revision: &str,
    endpoint: &str,
    file: Option<&str>,
) -> anyhow::Error {
    let what = match file {
        Some(file) => format!("cannot download {file} from {endpoint}/{repo}"),
        None => format!("cannot list the files of {endpoint}/{repo}"),
    };
    match failure {
        Failure::Network(cause) => anyhow!(
            "{what} ({cause}); check the network or HF_ENDPOINT, or use --offline / --model-dir"
        ),
        f if f.is_gated() => anyhow!(
            "model {repo} on {endpoint} is gated or private ({}): accept its terms at {endpoint}/{repo} and set HF_TOKEN (or run `huggingface-cli login`)",
            f.short()
        ),
        f if f.is_repo_unavailable() => anyhow!(
            "model {repo} was not found on {endpoint} ({}): check the repo id; a private model needs HF_TOKEN",
            f.short()
        ),
        f if f.is_revision_missing() => anyhow!(
            "revision {revision} of {repo} was not found on {endpoint} ({})",
            f.short()
        ),
        f if f.is_file_missing() && file.is_some() => anyhow!(
            "{} on {endpoint} has no file {} ({}): check the repo id and revision",
            repo_label(repo, revision),
            file.unwrap_or_default(),
            f.short()
        ),
        other => anyhow!("{what} ({})", other.short()),
    }
}

fn resolve_hub(
    source: &ModelSource,
    repo: &str,
    revision: &str,
    needs: &[Need],
    opts: &HubOptions,
) -> Result<ModelFiles> {
    let cache = opts.cache();
    let dir = RepoDir::new(&cache, repo);
    let cached_commit = dir.commit_for(revision);
    let mut files = BTreeMap::new();
    let mut notes = Vec::new();
    let mut pending = Vec::new();
    for need in needs {
        let state = match &cached_commit {
            Some(commit) => lookup_need(&dir, commit, need),
            None => InCache::Unknown,
        };
        match state {
            InCache::Found(name, path) => {
                files.insert(name.to_string(), path);
            }
            InCache::Absent if need.is_optional() => {}
            _ => {
                // main has no model.safetensors and the Hub's conversion of
                // its pickle is cached: use it, without the network.
                let cached_conversion = cached_commit
                    .as_deref()
                    .filter(|commit| {
                        converts(need, revision)
                            && dir.lookup(commit, conversion::SAFETENSORS) == Cached::KnownAbsent
                    })
                    .and_then(|_| dir.cached_pr_with(conversion::SAFETENSORS));
                match cached_conversion {
                    Some((pr, path)) => {
                        files.insert(conversion::SAFETENSORS.to_string(), path);
                        notes.push(conversion::origin_note(&pr));
                    }
                    None => pending.push(*need),
                }
            }
        }
    }
    let missing_required: Vec<String> = pending
        .iter()
        .filter(|need| !need.is_optional())
        .map(Need::describe)
        .collect();
    if opts.offline {
        if !missing_required.is_empty() {
            let what = match &cached_commit {
                None => format!(
                    "model {} is not in the cache ({})",
                    repo_label(repo, revision),
                    cache.display()
                ),
                Some(_) => format!(
                    "model {} in the cache ({}) lacks {}",
                    repo_label(repo, revision),
                    cache.display(),
                    missing_required.join(", ")
                ),
            };
            bail!(
                "{what} and offline mode is on (--offline or HF_HUB_OFFLINE): run `{}` on a machine with network, or pass --model-dir DIR",
                pull_command(repo, revision)
            );
        }
        pending.clear();
    }
    if !pending.is_empty() {
        download_pending(
            repo,
            revision,
            &pending,
            &dir,
            cached_commit.as_deref(),
            opts,
            &mut files,
            &mut notes,
        )?;
    }
    let root = dir
        .commit_for(revision)
        .map(|commit| dir.snapshot(&commit))
        .unwrap_or_else(|| dir.root().to_path_buf());
    Ok(ModelFiles {
        source: source.clone(),
        root,
        files,
        notes,
    })
}

#[allow(clippy::too_many_arguments)]
fn download_pending<'a>(
    repo: &str,
    revision: &str,
    pending: &[Need<'a>],
    dir: &RepoDir,
    cached_commit: Option<&str>,
    opts: &HubOptions,
    files: &mut BTreeMap<String, PathBuf>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let cache = opts.cache();
    let endpoint = opts.endpoint();
    let progress = opts.progress && !progress_disabled_by_env();
    let remote = Remote::new(&cache, &endpoint, token(), progress).map_err(|failure| {
        anyhow!(
            "cannot set up downloads from {endpoint}: {}",
            failure.short()
        )
    })?;
    // When part of the model is cached, fetch the rest at the same commit so
    // the files match, even if the branch has moved on since.
    let fetch_revision = cached_commit.unwrap_or(revision);
    // hf-hub records the fetched revision under refs/; a ref named after a
    // commit is clutter that huggingface_hub never writes, so drop it after.
    let stray_ref = (cached_commit.is_some() && !dir.ref_path(fetch_revision).exists())
        .then(|| dir.ref_path(fetch_revision));
    // The commit main is at, once the Hub has named it.
    let mut commit = cached_commit.map(str::to_string);
    let result = (|| {
        for need in pending {
            let mut found = false;
            for name in need.names() {
                if name == conversion::PICKLE && converts(need, revision) {
                    // main has no model.safetensors: prefer the Hub's conversion.
                    let at = commit.as_deref().unwrap_or(revision);
                    if let Some(path) = download_conversion(&remote, repo, at, &endpoint, notes) {
                        files.insert(conversion::SAFETENSORS.to_string(), path);
                        found = true;
                        break;
                    }
                }
                match remote.download(repo, fetch_revision, name) {
                    Ok(path) => {
                        files.insert(name.to_string(), path);
                        found = true;
                        break;
                    }
                    Err(failure) if failure.is_file_missing() => {
                        if let Failure::Status {
                            commit: Some(at), ..
                        } = &failure
                        {
                            dir.mark_absent(at, name);
                            commit.get_or_insert_with(|| at.clone());
                        }
                        // A missing first file may mean a wrong repo on a mirror
                        // that sends no error codes: say so only for required files.
                        if !need.is_optional() && need.names().len() == 1 {
                            return Err(hub_error(&failure, repo, revision, &endpoint, Some(name)));
                        }
                    }
                    Err(failure) => {
                        return Err(hub_error(&failure, repo, revision, &endpoint, Some(name)))
                    }
                }
            }
            if !found && !need.is_optional() {
                bail!(
                    "{} on {endpoint} has none of {}: is it the right kind of model?",
                    repo_label(repo, revision),
                    need.names().join(", ")
                );
            }
        }
        Ok(())
    })();
    if let Some(stray) = stray_ref {
        let _ = std::fs::remove_file(stray);
    }
    result
}

/// Downloads `model.safetensors` from the Hub's conversion PR of `repo`, if
/// there is a usable one; says in `notes` where the weights come from.
fn download_conversion(
    remote: &Remote,
    repo: &str,
    main_commit: &str,
    endpoint: &str,
    notes: &mut Vec<String>,
) -> Option<PathBuf> {
    let api = conversion::HubApi::new(endpoint, token());
    let fallback = format!("using {} of main", conversion::PICKLE);
    match conversion::find(&api, repo, main_commit) {
        conversion::Conversion::Found { revision } => {
            match remote.download(repo, &revision, conversion::SAFETENSORS) {
                Ok(path) => {
                    notes.push(conversion::origin_note(&revision));
                    return Some(path);
                }
                Err(failure) => notes.push(format!(
                    "cannot download {} from {revision} ({}); {fallback}",
                    conversion::SAFETENSORS,
                    failure.short()
                )),
            }
        }
        conversion::Conversion::None(Some(reason)) => notes.push(format!("{reason}; {fallback}")),
        conversion::Conversion::None(None) => notes.push(format!(
            "{fallback} (the Hub has no safetensors conversion of {repo})"
        )),
    }
    None
}

/// The files of a Hub repository at a revision, from the Hub's API.
pub fn list_remote_files(repo: &str, revision: &str, opts: &HubOptions) -> Result<Vec<String>> {
    validate_repo_id(repo)?;
    check_relative("revision", revision)?;
    let endpoint = opts.endpoint();
    let remote = Remote::new(&opts.cache(), &endpoint, token(), false).map_err(|failure| {
        anyhow!(
            "cannot set up downloads from {endpoint}: {}",
            failure.short()
        )
    })?;
    remote
        .list_files(repo, revision)
        .map_err(|failure| hub_error(&failure, repo, revision, &endpoint, None))
}

/// All models in the cache ([`cache_dir`]).
pub fn list_cached() -> Result<Vec<CachedModel>> {
    list_cached_in(&cache_dir())
}

/// Checks a cached model: every snapshot file resolves, LFS blobs match their
/// sha256, JSON files parse.
pub fn verify_cached(repo: &str, revision: &str) -> Result<VerifyReport> {
    validate_repo_id(repo)?;
    check_relative("revision", revision)?;
    verify_cached_in(&cache_dir(), repo, revision)
}

/// The cached snapshot folder of a revision, if any.
pub fn snapshot_dir(repo: &str, revision: &str) -> Option<PathBuf> {
    snapshot_dir_in(&cache_dir(), repo, revision)
}

/// Where the weights of a cached PyTorch-only `main` come from when tolk
/// took them from the Hub's conversion: `(refs/pr/N, model.safetensors path)`.
pub fn cached_conversion(repo: &str, revision: &str) -> Option<(String, PathBuf)> {
    if revision != DEFAULT_REVISION {
        return None;
    }
    let dir = RepoDir::new(&cache_dir(), repo);
    let commit = dir.commit_for(revision)?;
    if dir.lookup(&commit, conversion::SAFETENSORS) != Cached::KnownAbsent {
        return None;
    }
    dir.cached_pr_with(conversion::SAFETENSORS)
}

/// The files of a cached snapshot, `/`-separated.
pub fn cached_files(snapshot: &Path) -> Vec<String> {
    cache::snapshot_files(snapshot)
}

// The tests build cache folders with Unix symlinks.
#[cfg(all(test, unix))]
mod tests;
