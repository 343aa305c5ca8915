//! The batch manifest (`tolk-manifest.jsonl`) and the JSONL results file
//! (`tolk-results.jsonl`): append-only logs of JSON lines, each line synced
//! to disk before the run moves on, so a crash loses at most the line being
//! written.
//!
//! The manifest is the run's memory: the latest record of an input says
//! whether it is done with the current content and options (`--resume`),
//! and every output path a record lists, with its sha256, is an output tolk
//! wrote (anything else in the output folder is the user's and is never
//! overwritten without `--force`). Sharded runs write
//! `tolk-manifest.shard-I-of-N.jsonl` each, so shards never write the same
//! file; all manifests in the folder are read, and [`merge_manifests`]
//! joins the shards' files into one.

use super::discover::Shard;
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const MANIFEST_STEM: &str = "tolk-manifest";
pub const RESULTS_STEM: &str = "tolk-results";

/// `tolk-manifest.jsonl`, or `tolk-manifest.shard-I-of-N.jsonl` for a shard.
pub fn manifest_name(shard: Option<&Shard>) -> String {
    log_name(MANIFEST_STEM, shard)
}

/// `tolk-results.jsonl`, or `tolk-results.shard-I-of-N.jsonl` for a shard.
pub fn results_name(shard: Option<&Shard>) -> String {
    log_name(RESULTS_STEM, shard)
}

fn log_name(stem: &str, shard: Option<&Shard>) -> String {
    match shard {
        Some(s) => format!("{stem}.{}.jsonl", s.tag()),
        None => format!("{stem}.jsonl"),
    }
}

/// What became of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every requested output was written.
    Done,
    /// The input could not be processed; `error` says why.
    Failed,
    /// Deliberately not processed (symlink loop, FIFO); `error` says why.
    Ignored,
}

/// Everything that decides an input's outputs, besides its content. A
/// change in any field makes `--resume` redo the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOptions {
    /// `translate`, `summarize`, in that order.
    pub tasks: Vec<String>,
    /// `files` or `jsonl`.
    pub output_format: String,
    /// `plain` or `markdown` (as read for this input).
    pub input_format: String,
    /// The translation model (repo id, or the canonical folder).
    pub translation_model: String,
    pub beams: Option<usize>,
    pub max_length: Option<usize>,
    pub lossy: bool,
    /// The summary engine, when summarizing.
    pub summary_model: Option<String>,
    /// The summary length, e.g. `Sentences(2)`, when summarizing.
    pub summary_length: Option<String>,
    /// The language given with `--source` (absent: detected per file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One written output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the output folder, `/`-separated.
    pub path: String,
    pub sha256: String,
}

/// Where an input's time went, in milliseconds. Translation runs for many
/// files at once; each file is charged the batch's time in proportion to
/// its share of the batch's sentences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub read_ms: u64,
    pub translate_ms: u64,
    pub summarize_ms: u64,
    pub write_ms: u64,
}

/// The model ids the engines reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Models {
    pub translation: Option<String>,
    pub summary: Option<String>,
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The input, relative to the input folder, `/`-separated.
    pub path: String,
    pub status: Status,
    /// Why it failed or was ignored.
    #[serde(default)]
    pub error: Option<String>,
    /// sha256 of the input's bytes as read (absent when it could not be read).
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub bytes: Option<u64>,
    /// sha256 of the content hash and [`JobOptions`]: equal keys, equal outputs.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub options: Option<JobOptions>,
    #[serde(default)]
    pub models: Models,
    #[serde(default)]
    pub outputs: Vec<OutputFile>,
    #[serde(default)]
    pub sentences: u64,
    #[serde(default)]
    pub words_in: u64,
    #[serde(default)]
    pub words_out: u64,
    #[serde(default)]
    pub timings: Timings,
    /// The input's size or modification time changed while it was being
    /// processed: the outputs match the content that was read (`sha256`).
    #[serde(default)]
    pub changed_during_run: bool,
    /// `I/N` when written by a shard.
    #[serde(default)]
    pub shard: Option<String>,
    /// Milliseconds since the Unix epoch when the record was written.
    #[serde(default)]
    pub finished_unix_ms: u64,
    #[serde(default)]
    pub tolk_version: String,
}

impl Record {
    /// A record with only the identifying fields set.
    pub fn new(path: &str, status: Status) -> Self {
        Self {
            path: path.to_string(),
            status,
            error: None,
            sha256: None,
            bytes: None,
            key: None,
            options: None,
            models: Models::default(),
            outputs: Vec::new(),
            sentences: 0,
            words_in: 0,
            words_out: 0,
            timings: Timings::default(),
            changed_during_run: false,
            shard: None,
            finished_unix_ms: now_unix_ms(),
            tolk_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// One line of the JSONL results file (`--format jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub path: String,
    pub sha256: String,
    pub key: String,
    #[serde(default)]
    pub translation: Option<String>,
    /// The translation sentence by sentence (as `tolk translate --format jsonl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentences: Option<Vec<crate::text::document::AlignedSentence>>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub models: Models,
    #[serde(default)]
    pub timings: Timings,
    #[serde(default)]
    pub words_in: u64,
    #[serde(default)]
    pub words_out: u64,
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The complete lines of a JSONL file that parse as `T`, with their raw
/// text; line numbers of lines that do not parse (garbage, invalid UTF-8)
/// are returned apart. A last line without its newline is the remains of an
/// interrupted append: it is dropped and `torn_tail` says so.
pub struct JsonlContents<T> {
    pub entries: Vec<(String, T)>,
    pub broken_lines: Vec<usize>,
    /// The file ends in an incomplete line (a crash or a full disk during an append).
    pub torn_tail: bool,
}

pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<JsonlContents<T>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("{}: cannot read", path.display()))?;
    // Bytes, not text: a crash can cut a line inside a multi-byte character,
    // and one bad line must not make the whole file unreadable.
    let mut out = JsonlContents {
        entries: Vec::new(),
        broken_lines: Vec::new(),
        torn_tail: bytes.last().is_some_and(|&b| b != b'\n'),
    };
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return Ok(out);
    };
    let complete = &bytes[..end];
    for (i, line) in complete.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = std::str::from_utf8(line)
            .ok()
            .and_then(|text| Some((text, serde_json::from_str::<T>(text).ok()?)));
        match parsed {
            Some((text, value)) => out.entries.push((text.to_string(), value)),
            None => out.broken_lines.push(i + 1),
        }
    }
    Ok(out)
}

/// An append-only JSONL file whose every line is synced before `append`
/// returns.
pub struct JsonlLog {
    file: File,
    path: PathBuf,
}

impl JsonlLog {
    /// Opens (or creates) `path` for appending. A partial last line left by
    /// a crash is cut off first, so the next line starts on a line of its own.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("{}: cannot open for appending", path.display()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if keep < bytes.len() {
            file.set_len(keep as u64)
                .and_then(|_| file.sync_all())
                .with_context(|| format!("{}: cannot cut a partial line", path.display()))?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one value as a line and syncs the file.
    pub fn append<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_all())
            .with_context(|| format!("{}: cannot append", self.path.display()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What all manifests in an output folder say.
#[derive(Debug, Default)]
pub struct ManifestIndex {
    latest: HashMap<String, (u64, usize, Record)>,
    /// Output path → every sha256 tolk recorded for it.
    written: HashMap<String, HashSet<String>>,
    order: usize,
}

/// The manifest files in `dir`: the main one first, then shards by index.
pub fn manifest_files(dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    let mut shards: Vec<((u32, u32), PathBuf)> = Vec::new();
    let mut main = None;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == format!("{stem}.jsonl") {
            main = Some(entry.path());
        } else if let Some(tag) = name
            .strip_prefix(&format!("{stem}.shard-"))
            .and_then(|rest| rest.strip_suffix(".jsonl"))
        {
            if let Some((i, n)) = tag.split_once("-of-") {
                if let (Ok(i), Ok(n)) = (i.parse(), n.parse()) {
                    shards.push(((n, i), entry.path()));
                }
            }
        }
    }
    shards.sort();
    Ok(main
        .into_iter()
        .chain(shards.into_iter().map(|(_, p)| p))
        .collect())
}

impl ManifestIndex {
    /// Reads every manifest in `dir`. Broken lines are skipped with a
    /// warning (what they vouched for is then treated as unknown); a file in
    /// which no line is a manifest record is refused unless `force`, since
    /// tolk would be appending to somebody else's file.
    pub fn load(dir: &Path, force: bool, warnings: &mut Vec<String>) -> Result<Self> {
        let mut index = Self::default();
        for path in manifest_files(dir, MANIFEST_STEM)? {
            let contents: JsonlContents<Record> = read_jsonl(&path)?;
            if contents.entries.is_empty() && !contents.broken_lines.is_empty() && !force {
                bail!(
                    "{} is not a tolk manifest (no line is a manifest record); move it away or use --force",
                    path.display()
                );
            }
            if !contents.broken_lines.is_empty() {
                warnings.push(format!(
                    "{}: ignoring {} broken line(s) (first: line {})",
                    path.display(),
                    contents.broken_lines.len(),
                    contents.broken_lines[0]
                ));
            }
            if contents.torn_tail {
                warnings.push(format!(
                    "{}: ignoring an incomplete last line (an interrupted write)",
                    path.display()
                ));
            }
            for (_, record) in contents.entries {
                index.note(record);
            }
        }
        Ok(index)
    }

    /// Takes a record into account (as if it had been read from a manifest).
    pub fn note(&mut self, record: Record) {
        for out in &record.outputs {
            self.written
                .entry(out.path.clone())
                .or_default()
                .insert(out.sha256.clone());
        }
        self.order += 1;
        let rank = (record.finished_unix_ms, self.order);
        match self.latest.get(&record.path) {
            Some((t, o, _)) if (*t, *o) > rank => {}
            _ => {
                self.latest
                    .insert(record.path.clone(), (rank.0, rank.1, record));
            }
        }
    }

    /// The most recent record of an input.
    pub fn latest(&self, rel: &str) -> Option<&Record> {
        self.latest.get(rel).map(|(_, _, r)| r)
    }

    /// True when tolk recorded writing exactly this content at `out_rel`.
    pub fn wrote(&self, out_rel: &str, sha256: &str) -> bool {
        self.written
            .get(out_rel)
            .is_some_and(|hashes| hashes.contains(sha256))
    }

    /// True when some manifest lists `out_rel` as an output.
    pub fn knows_output(&self, out_rel: &str) -> bool {
        self.written.contains_key(out_rel)
    }

    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.latest.values().map(|(_, _, r)| r)
    }
}

/// Keeps, per input, the last result whose key is the key of that input's
/// latest `done` record: results appended just before a crash, with no
/// manifest record to vouch for them, are dropped.
pub fn valid_results(
    results: Vec<(String, ResultRecord)>,
    index: &ManifestIndex,
) -> Vec<(String, ResultRecord)> {
    let mut last: HashMap<String, usize> = HashMap::new();
    let valid: Vec<(String, ResultRecord)> = results
        .into_iter()
        .filter(|(_, r)| {
            index.latest(&r.path).is_some_and(|m| {
                m.status == Status::Done && m.key.as_deref() == Some(r.key.as_str())
            })
        })
        .collect();
    for (i, (_, r)) in valid.iter().enumerate() {
        last.insert(r.path.clone(), i);
    }
    valid
        .into_iter()
        .enumerate()
        .filter(|(i, (_, r))| last.get(&r.path) == Some(i))
        .map(|(_, entry)| entry)
        .collect()
}

/// Writes lines (each without its newline) to `path` atomically.
pub fn rewrite_lines(path: &Path, lines: &[String]) -> Result<()> {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    crate::io::write_atomic(path, text.as_bytes())
}

/// What [`merge_manifests`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// Shard manifests joined (and removed).
    pub shards: usize,
    /// Records in the joined manifest.
    pub records: usize,
    /// Records in the joined results file (0 when there is none).
    pub results: usize,
}

/// Joins `tolk-manifest.shard-*.jsonl` into `tolk-manifest.jsonl` (and the
/// shards' results files into `tolk-results.jsonl`), then removes the shard
/// files. The joined files are written atomically before anything is
/// removed, and records already present are not repeated, so running it
/// twice, or after a crash, is harmless.
pub fn merge_manifests(dir: &Path) -> Result<MergeReport> {
    // Merging under a running shard would miss its later records.
    let _main_lock = super::lock::lock_output(dir, None)?;
    let shard_locks = super::lock::shard_lock_files(dir)?;
    let mut held = Vec::new();
    for path in &shard_locks {
        held.push(super::lock::lock_file(path, || {
            format!(
                "a shard is still running in {} ({} is locked); merge when all shards are done",
                dir.display(),
                path.display()
            )
        })?);
    }
    let manifests = manifest_files(dir, MANIFEST_STEM)?;
    let main_path = dir.join(manifest_name(None));
    let shard_manifests: Vec<&PathBuf> = manifests.iter().filter(|p| **p != main_path).collect();
    if shard_manifests.is_empty() {
        bail!(
            "{}: no shard manifests ({MANIFEST_STEM}.shard-I-of-N.jsonl) to merge",
            dir.display()
        );
    }
    let mut lines: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut index = ManifestIndex::default();
    for path in &manifests {
        let contents: JsonlContents<Record> = read_jsonl(path)?;
        for (line, record) in contents.entries {
            if seen.insert(line.clone()) {
                lines.push(line);
                index.note(record);
            }
        }
    }
    rewrite_lines(&main_path, &lines)?;

    let result_files = manifest_files(dir, RESULTS_STEM)?;
    let results_main = dir.join(results_name(None));
    let mut result_count = 0;
    if !result_files.is_empty() {
        let mut all = Vec::new();
        for path in &result_files {
            let contents: JsonlContents<ResultRecord> = read_jsonl(path)?;
            all.extend(contents.entries);
        }
        let kept = valid_results(all, &index);
        result_count = kept.len();
        let kept_lines: Vec<String> = kept.into_iter().map(|(line, _)| line).collect();
        rewrite_lines(&results_main, &kept_lines)?;
    }
    for path in shard_manifests
        .iter()
        .copied()
        .chain(result_files.iter().filter(|p| **p != results_main))
        .chain(&shard_locks)
    {
        std::fs::remove_file(path)
            .with_context(|| format!("{}: cannot remove after merging", path.display()))?;
    }
    Ok(MergeReport {
        shards: shard_manifests.len(),
        records: lines.len(),
        results: result_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(path: &str, key: &str, out: &str, sha: &str, t: u64) -> Record {
        let mut r = Record::new(path, Status::Done);
        r.key = Some(key.into());
        r.outputs = vec![OutputFile {
            path: out.into(),
            sha256: sha.into(),
        }];
        r.finished_unix_ms = t;
        r
    }

    #[test]
    fn appends_survive_a_partial_line_and_the_latest_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(manifest_name(None));
        let mut log = JsonlLog::open(&path).unwrap();
        log.append(&done("a.txt", "k1", "a.txt.en.txt", "h1", 1))
            .unwrap();
        drop(log);
        // A crash in the middle of the next append.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"path":"a.txt","sta"#).unwrap();
        drop(f);
        let mut log = JsonlLog::open(&path).unwrap();
        log.append(&done("a.txt", "k2", "a.txt.en.txt", "h2", 2))
            .unwrap();
        let contents: JsonlContents<Record> = read_jsonl(&path).unwrap();
        assert_eq!(contents.entries.len(), 2);
        assert!(contents.broken_lines.is_empty());

        let mut warnings = Vec::new();
        let index = ManifestIndex::load(dir.path(), false, &mut warnings).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(index.latest("a.txt").unwrap().key.as_deref(), Some("k2"));
        assert!(index.wrote("a.txt.en.txt", "h1") && index.wrote("a.txt.en.txt", "h2"));
        assert!(!index.wrote("a.txt.en.txt", "h3"));
    }

    #[test]
    fn a_foreign_file_is_refused_and_broken_lines_warned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(manifest_name(None));
        std::fs::write(&path, "hello\nworld\n").unwrap();
        let err = ManifestIndex::load(dir.path(), false, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("not a tolk manifest"), "{err}");

        let mut log = JsonlLog::open(&path).unwrap();
        log.append(&done("a.txt", "k", "a.txt.en.txt", "h", 1))
            .unwrap();
        let mut warnings = Vec::new();
        let index = ManifestIndex::load(dir.path(), false, &mut warnings).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(index.latest("a.txt").is_some());
    }

    #[test]
    fn merging_joins_shards_once_and_drops_unvouched_results() {
        let dir = tempfile::tempdir().unwrap();
        let s1 = Shard { index: 1, count: 2 };
        let s2 = Shard { index: 2, count: 2 };
        let mut m1 = JsonlLog::open(&dir.path().join(manifest_name(Some(&s1)))).unwrap();
        let mut m2 = JsonlLog::open(&dir.path().join(manifest_name(Some(&s2)))).unwrap();
        m1.append(&done("a.txt", "ka", "a.txt.en.txt", "ha", 1))
            .unwrap();
        m2.append(&done("b.txt", "kb", "b.txt.en.txt", "hb", 2))
            .unwrap();
        let result = |path: &str, key: &str| ResultRecord {
            path: path.into(),
            sha256: "s".into(),
            key: key.into(),
            translation: Some(format!("{path} in English")),
            sentences: None,
            summary: None,
            models: Models::default(),
            timings: Timings::default(),
            words_in: 1,
            words_out: 3,
        };
        let mut r1 = JsonlLog::open(&dir.path().join(results_name(Some(&s1)))).unwrap();
        r1.append(&result("a.txt", "ka")).unwrap();
        // Appended just before a crash: no manifest record vouches for it.
        r1.append(&result("c.txt", "kc")).unwrap();
        let mut r2 = JsonlLog::open(&dir.path().join(results_name(Some(&s2)))).unwrap();
        r2.append(&result("b.txt", "kb")).unwrap();

        let running = crate::batch::lock::lock_output(dir.path(), Some(&s1)).unwrap();
        let err = merge_manifests(dir.path()).unwrap_err();
        assert!(err.to_string().contains("still running"), "{err}");
        drop(running);

        let report = merge_manifests(dir.path()).unwrap();
        assert_eq!(
            report,
            MergeReport {
                shards: 2,
                records: 2,
                results: 2
            }
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}"); // and the lock file
        let index = ManifestIndex::load(dir.path(), false, &mut Vec::new()).unwrap();
        assert!(index.latest("a.txt").is_some() && index.latest("b.txt").is_some());
        let results: JsonlContents<ResultRecord> =
            read_jsonl(&dir.path().join(results_name(None))).unwrap();
        let paths: Vec<&str> = results
            .entries
            .iter()
            .map(|(_, r)| r.path.as_str())
            .collect();
        assert_eq!(paths, ["a.txt", "b.txt"]);
        // Nothing left to merge.
        assert!(merge_manifests(dir.path()).is_err());
    }
}
