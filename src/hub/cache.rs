//! The Hugging Face cache layout, read without the network.
//!
//! ```text
//! <cache>/models--owner--name/
//!     blobs/<etag>                      file contents (sha256 for LFS files, git sha1 otherwise)
//!     refs/<revision>                   the commit a branch or tag pointed to
//!     snapshots/<commit>/<file>         symlink to ../../blobs/<etag>
//!     .no_exist/<commit>/<file>         empty marker: the Hub said this file does not exist
//! ```

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::kind::ModelKind;

/// The cache folder of one model repository.
#[derive(Debug, Clone)]
pub(crate) struct RepoDir {
    root: PathBuf,
}

/// What the cache knows about one file of a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cached {
    Present(PathBuf),
    /// The Hub told us earlier that the file does not exist at this commit.
    KnownAbsent,
    Unknown,
}

/// `models--owner--name` for `owner/name`, as huggingface_hub names it.
pub(crate) fn repo_folder_name(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// A full git commit hash (40 lowercase hex digits).
pub(crate) fn is_commit_hash(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl RepoDir {
    pub(crate) fn new(cache: &Path, repo: &str) -> Self {
        Self {
            root: cache.join(repo_folder_name(repo)),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn ref_path(&self, revision: &str) -> PathBuf {
        self.root.join("refs").join(revision)
    }

    pub(crate) fn snapshot(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    fn no_exist_marker(&self, commit: &str, file: &str) -> PathBuf {
        self.root.join(".no_exist").join(commit).join(file)
    }

    /// The commit a revision resolves to in the cache: `refs/<revision>`, or
    /// the revision itself when it is a commit hash with a snapshot.
    pub(crate) fn commit_for(&self, revision: &str) -> Option<String> {
        if let Ok(commit) = fs::read_to_string(self.ref_path(revision)) {
            let commit = commit.trim();
            if !commit.is_empty() {
                return Some(commit.to_string());
            }
        }
        (is_commit_hash(revision) && self.snapshot(revision).is_dir()).then(|| revision.to_string())
    }

    /// Looks a file up in the snapshot of `commit`.
    pub(crate) fn lookup(&self, commit: &str, file: &str) -> Cached {
        let path = self.snapshot(commit).join(file);
        // `is_file` follows the symlink, so a dangling link counts as absent.
        if path.is_file() {
            Cached::Present(path)
        } else if self.no_exist_marker(commit, file).exists() {
            Cached::KnownAbsent
        } else {
            Cached::Unknown
        }
    }

    /// The newest cached pull-request revision (`refs/pr/N`) whose snapshot
    /// holds `file`, and the file's path: where a conversion was cached.
    pub(crate) fn cached_pr_with(&self, file: &str) -> Option<(String, PathBuf)> {
        let mut best: Option<(u64, String, PathBuf)> = None;
        for (name, commit) in read_refs(&self.root) {
            let Some(number) = name
                .strip_prefix("refs/pr/")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if let Cached::Present(path) = self.lookup(&commit, file) {
                if best.as_ref().is_none_or(|(b, _, _)| number > *b) {
                    best = Some((number, name, path));
                }
            }
        }
        best.map(|(_, name, path)| (name, path))
    }

    /// The repo folder and commit of a snapshot folder
    /// (`<cache>/models--o--n/snapshots/<commit>`), if `dir` is one.
    pub(crate) fn of_snapshot(dir: &Path) -> Option<(Self, String)> {
        let dir = fs::canonicalize(dir).ok()?;
        let commit = dir.file_name()?.to_str()?.to_string();
        let snapshots = dir.parent()?;
        let root = snapshots.parent()?;
        let is_repo = snapshots.file_name()? == "snapshots"
            && root.file_name()?.to_str()?.starts_with("models--");
        is_repo.then(|| {
            (
                Self {
                    root: root.to_path_buf(),
                },
                commit,
            )
        })
    }

    /// Remembers that the Hub has no `file` at `commit`, so later runs do not ask again.
    pub(crate) fn mark_absent(&self, commit: &str, file: &str) {
        let marker = self.no_exist_marker(commit, file);
        if let Some(parent) = marker.parent() {
            // Best effort: a read-only cache only costs a repeated request.
            let _ = fs::create_dir_all(parent).and_then(|_| fs::write(&marker, b""));
        }
    }
}

/// One snapshot (commit) of a cached model.
#[derive(Debug, Clone, Serialize)]
pub struct CachedSnapshot {
    pub commit: String,
    /// Branches and tags (from `refs/`) that point at this commit.
    pub refs: Vec<String>,
    /// Files, relative to the snapshot folder, `/`-separated.
    pub files: Vec<String>,
}

/// A model repository found in the cache.
#[derive(Debug, Clone, Serialize)]
pub struct CachedModel {
    /// `owner/name`.
    pub repo: String,
    /// Its folder in the cache.
    pub path: PathBuf,
    pub snapshots: Vec<CachedSnapshot>,
    /// Bytes on disk, counting each blob once however many snapshots share it.
    pub size_on_disk: u64,
    /// What the files look like (which engine of tolk can use them).
    pub kind: ModelKind,
}

impl CachedModel {
    /// The revisions to show: ref names, or short commits of snapshots no ref points at.
    pub fn revisions(&self) -> Vec<String> {
        let mut names = Vec::new();
        for snapshot in &self.snapshots {
            if snapshot.refs.is_empty() {
                names.push(snapshot.commit.chars().take(8).collect());
            } else {
                names.extend(snapshot.refs.iter().cloned());
            }
        }
        names
    }

    /// The task tolk would use it for: translation, summarization or unknown.
    pub fn task(&self) -> &'static str {
        self.kind.task()
    }
}

/// Files of a snapshot folder (symlinks and plain files, not folders), relative, sorted.
fn snapshot_entries(snapshot: &Path) -> Vec<(String, PathBuf)> {
    let mut entries: Vec<(String, PathBuf)> = walkdir::WalkDir::new(snapshot)
        .follow_links(false)
        .into_iter()
        .filter_map(|entry| entry.ok())
        .filter(|entry| !entry.file_type().is_dir())
        .filter_map(|entry| {
            let relative = entry.path().strip_prefix(snapshot).ok()?;
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            Some((name, entry.path().to_path_buf()))
        })
        .collect();
    entries.sort();
    entries
}

/// Every `refs/` entry as (ref name, commit); ref names may hold `/` (`refs/pr/1`).
fn read_refs(repo_dir: &Path) -> Vec<(String, String)> {
    let refs = repo_dir.join("refs");
    snapshot_entries(&refs)
        .into_iter()
        .filter_map(|(name, path)| {
            let commit = fs::read_to_string(path).ok()?.trim().to_string();
            (!commit.is_empty()).then_some((name, commit))
        })
        .collect()
}

/// The `model_type` in a config.json, if it parses.
fn config_model_type(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("model_type")?.as_str().map(str::to_string)
}

fn scan_repo(repo: String, path: &Path) -> CachedModel {
    let refs = read_refs(path);
    let mut counted_blobs = HashSet::new();
    let mut size_on_disk = 0;
    let mut snapshots = Vec::new();
    let mut all_files = BTreeSet::new();
    let mut model_type = None;
    let snapshot_root = path.join("snapshots");
    let mut commits: Vec<String> = fs::read_dir(&snapshot_root)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    commits.sort();
    for commit in commits {
        let entries = snapshot_entries(&snapshot_root.join(&commit));
        for (name, file) in &entries {
            // Symlinks share blobs: count each blob once. A plain file (hf-hub
            // falls back to moving the blob where symlinks are not allowed) counts itself.
            let target = fs::canonicalize(file).unwrap_or_else(|_| file.clone());
            if let Ok(meta) = fs::metadata(&target) {
                if counted_blobs.insert(target) {
                    size_on_disk += meta.len();
                }
            }
            if name == "config.json" && model_type.is_none() {
                model_type = config_model_type(file);
            }
            all_files.insert(name.clone());
        }
        let snapshot_refs = refs
            .iter()
            .filter(|(_, target)| *target == commit)
            .map(|(name, _)| name.clone())
            .collect();
        snapshots.push(CachedSnapshot {
            commit,
            refs: snapshot_refs,
            files: entries.into_iter().map(|(name, _)| name).collect(),
        });
    }
    let files: Vec<&str> = all_files.iter().map(String::as_str).collect();
    CachedModel {
        repo,
        path: path.to_path_buf(),
        snapshots,
        size_on_disk,
        kind: ModelKind::detect(&files, model_type.as_deref()),
    }
}

/// All model repositories in the cache folder `cache`, sorted by repo id.
/// A missing cache folder is an empty cache.
pub fn list_cached_in(cache: &Path) -> Result<Vec<CachedModel>> {
    let entries = match fs::read_dir(cache) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read the cache {}", cache.display()))
        }
    };
    let mut models = Vec::new();
    for entry in entries.filter_map(|entry| entry.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(folder) = name.strip_prefix("models--") else {
            continue;
        };
        if !entry.path().is_dir() {
            continue;
        }
        // Repo ids cannot contain "--", so every "--" was a "/".
        models.push(scan_repo(folder.replace("--", "/"), &entry.path()));
    }
    models.sort_by(|a, b| a.repo.cmp(&b.repo));
    Ok(models)
}

/// What `verify` found for one snapshot file.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub name: String,
    /// The content was hashed and matched the sha256 its blob is named by.
    pub sha256_checked: bool,
    /// The file is JSON and parsed.
    pub json_checked: bool,
    /// What is wrong with it; `None` when the file is fine.
    pub problem: Option<String>,
}

impl FileCheck {
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// The result of [`verify_cached_in`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    pub snapshot: PathBuf,
    pub files: Vec<FileCheck>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        !self.files.is_empty() && self.files.iter().all(FileCheck::is_ok)
    }
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

fn check_file(name: String, path: &Path) -> FileCheck {
    let mut check = FileCheck {
        name,
        sha256_checked: false,
        json_checked: false,
        problem: None,
    };
    if let Err(err) = fs::metadata(path) {
        let target = fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        check.problem = Some(if target.is_empty() {
            format!("unreadable: {err}")
        } else {
            format!("dangling symlink to {target} (the blob is missing)")
        });
        return check;
    }
    // LFS files are stored under their sha256; small git files under a git
    // sha1, which is not a plain content hash, so only the former is checked.
    let blob_name = fs::read_link(path).ok().and_then(|target| {
        target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
    });
    if let Some(expected) = blob_name.filter(|name| is_sha256(name)) {
        match sha256_of(path) {
            Ok(actual) if actual.eq_ignore_ascii_case(&expected) => check.sha256_checked = true,
            Ok(actual) => {
                check.problem = Some(format!(
                    "sha256 mismatch: blob is named {expected} but its content hashes to {actual} (corrupt or truncated download)"
                ));
                return check;
            }
            Err(err) => {
                check.problem = Some(format!("cannot read: {err}"));
                return check;
            }
        }
    }
    if check.name.ends_with(".json") {
        match fs::read(path)
            .map_err(|err| err.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|err| err.to_string())
            }) {
            Ok(_) => check.json_checked = true,
            Err(err) => check.problem = Some(format!("not valid JSON: {err}")),
        }
    }
    check
}

/// Checks a cached snapshot: every file resolves (no dangling symlink), blobs
/// named by a sha256 hash to it, JSON files parse.
pub fn verify_cached_in(cache: &Path, repo: &str, revision: &str) -> Result<VerifyReport> {
    let dir = RepoDir::new(cache, repo);
    let not_cached = || {
        anyhow::anyhow!(
            "model {repo} (revision {revision}) is not in the cache ({}): run `tolk models pull {repo}`",
            cache.display()
        )
    };
    let commit = dir.commit_for(revision).ok_or_else(not_cached)?;
    let snapshot = dir.snapshot(&commit);
    if !snapshot.is_dir() {
        return Err(not_cached());
    }
    let mut files: Vec<FileCheck> = snapshot_entries(&snapshot)
        .into_iter()
        .map(|(name, path)| check_file(name, &path))
        .collect();
    // A PyTorch-only main whose weights tolk took from the Hub's
    // conversion PR: check those too.
    let has_weights = files
        .iter()
        .any(|f| f.name == "model.safetensors" || f.name == "pytorch_model.bin");
    if !has_weights && dir.lookup(&commit, "model.safetensors") == Cached::KnownAbsent {
        if let Some((pr, path)) = dir.cached_pr_with("model.safetensors") {
            files.push(check_file(format!("model.safetensors ({pr})"), &path));
        }
    }
    Ok(VerifyReport {
        repo: repo.to_string(),
        revision: revision.to_string(),
        commit,
        snapshot,
        files,
    })
}

/// The snapshot folder a revision resolves to, if it is cached.
pub fn snapshot_dir_in(cache: &Path, repo: &str, revision: &str) -> Option<PathBuf> {
    let dir = RepoDir::new(cache, repo);
    let snapshot = dir.snapshot(&dir.commit_for(revision)?);
    snapshot.is_dir().then_some(snapshot)
}

/// Files of a cached snapshot, for picking a default file set without the network.
pub(crate) fn snapshot_files(snapshot: &Path) -> Vec<String> {
    snapshot_entries(snapshot)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}
