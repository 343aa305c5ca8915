//! The batch driver: read inputs in parallel, gather the sentences of many
//! files into one length-sorted translation pass, then summarize, write
//! and record each file.

use super::discover::{check_input_folder, discover, DiscoverOptions, InputFile, Shard};
use super::manifest::{
    manifest_files, manifest_name, read_jsonl, results_name, rewrite_lines, valid_results,
    JobOptions, JsonlContents, JsonlLog, ManifestIndex, Models, OutputFile, Record, ResultRecord,
    Status, Timings, RESULTS_STEM,
};
use super::outputs::{
    check_target, holds, lock_output, sha256_hex, stage, summary_path, sweep_temps, temp_prefix,
    translation_path, Staged,
};
use crate::io::{decode_text, InputError, ReadOptions};
use crate::pipeline::summarize::{Summarizer, SummaryLength, SummaryRequest};
use crate::pipeline::translate::{report_warnings, translate_units, PreparedDocument, Translator};
use crate::text::{Format, Lang};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// What to make of each input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tasks {
    pub translate: bool,
    pub summarize: bool,
}

impl Tasks {
    fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.translate {
            names.push("translate".to_string());
        }
        if self.summarize {
            names.push("summarize".to_string());
        }
        names
    }
}

/// Where the results go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `out/<input>.en.txt` and `out/<input>.summary.txt`.
    Files,
    /// One JSON line per input in `out/tolk-results.jsonl`.
    Jsonl,
}

impl OutputFormat {
    fn name(self) -> &'static str {
        match self {
            OutputFormat::Files => "files",
            OutputFormat::Jsonl => "jsonl",
        }
    }
}

/// Everything a batch run needs besides its engines.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub input_dir: PathBuf,
    pub output_dir: PathBuf,
    /// Globs, excludes, recursion, hidden files (the output folder is added
    /// to `skip_dirs` by the run).
    pub discover: DiscoverOptions,
    pub tasks: Tasks,
    pub output_format: OutputFormat,
    /// `None`: Markdown for `.md`/`.markdown`, else plain.
    pub input_format: Option<Format>,
    pub read: ReadOptions,
    /// Redo inputs that are up to date, and overwrite outputs tolk did not write.
    pub force: bool,
    pub shard: Option<Shard>,
    /// Sentences gathered from many files before a translation pass.
    pub batch_units: usize,
    /// Threads for reading and writing files.
    pub jobs: usize,
    pub summary_length: SummaryLength,
    /// The translation model's id, for job keys (known before loading it).
    pub translation_model: String,
    /// The summary engine's id, when summarizing.
    pub summary_model: Option<String>,
    pub beams: Option<usize>,
    pub max_length: Option<usize>,
}

/// An engine built on first use, so that a run with nothing left to do
/// never loads (or downloads) a model.
pub struct Lazy<'a, T: ?Sized> {
    make: Option<Box<dyn FnOnce() -> Result<Box<T>> + 'a>>,
    value: Option<Box<T>>,
}

impl<'a, T: ?Sized> Lazy<'a, T> {
    pub fn new(make: impl FnOnce() -> Result<Box<T>> + 'a) -> Self {
        Self {
            make: Some(Box::new(make)),
            value: None,
        }
    }

    pub fn ready(value: Box<T>) -> Self {
        Self {
            make: None,
            value: Some(value),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.value.is_some()
    }

    pub fn get(&mut self) -> Result<&mut T> {
        if self.value.is_none() {
            let make = self
                .make
                .take()
                .context("internal error: the engine failed to load before")?;
            self.value = Some(make()?);
        }
        Ok(self.value.as_deref_mut().expect("set just above"))
    }
}

/// The engines of a run.
pub struct Engines<'a> {
    pub translator: Lazy<'a, dyn Translator + 'a>,
    /// Present when summarizing.
    pub summarizer: Option<Lazy<'a, dyn Summarizer + 'a>>,
}

/// What became of one input in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Up to date: done before with the same content and options.
    Skipped,
    Failed,
    Ignored,
}

/// Reported to the [`Observer`] after each input.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub rel: String,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub sentences: u64,
    pub words_in: u64,
    pub words_out: u64,
}

/// Progress and messages, for bars or log lines.
pub trait Observer {
    /// The inputs of this run (after sharding) are known.
    fn started(&mut self, _files: usize) {}
    /// A model is about to be loaded.
    fn loading(&mut self, _what: &str) {}
    /// Sentences were queued for translation (the total grows as files are read).
    fn sentences_queued(&mut self, _count: usize) {}
    /// Sentences were translated.
    fn sentences_done(&mut self, _count: usize) {}
    fn file_finished(&mut self, _outcome: &FileOutcome) {}
    fn warn(&mut self, _message: &str) {}
}

/// Observes nothing.
pub struct Silent;
impl Observer for Silent {}

/// The totals of a run.
#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    /// Inputs of this run (after sharding), ignored ones included.
    pub total: usize,
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    pub ignored: usize,
    /// Over the inputs done in this run.
    pub words_in: u64,
    pub words_out: u64,
    pub sentences: u64,
    pub elapsed: Duration,
    /// `(input, reason)` for each failed input.
    pub failures: Vec<(String, String)>,
    /// Stopped early by the cancel flag (Ctrl-C): the files in the batch
    /// being translated were abandoned and are not recorded.
    pub interrupted: bool,
    pub manifest: PathBuf,
    /// The results file, with `--format jsonl`.
    pub results: Option<PathBuf>,
}

impl BatchReport {
    fn count(&mut self, o: &FileOutcome) {
        match o.outcome {
            Outcome::Done => {
                self.done += 1;
                self.words_in += o.words_in;
                self.words_out += o.words_out;
                self.sentences += o.sentences;
            }
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => {
                self.failed += 1;
                self.failures
                    .push((o.rel.clone(), o.error.clone().unwrap_or_default()));
            }
            Outcome::Ignored => self.ignored += 1,
        }
    }
}

/// The error a translation returns when the cancel flag is set.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Passes calls through until the cancel flag is set, then refuses the next
/// batch, so Ctrl-C abandons a translation pass within one model batch.
struct Cancellable<'a> {
    inner: &'a mut dyn Translator,
    cancel: &'a AtomicBool,
}

impl Translator for Cancellable<'_> {
    fn model_id(&self) -> String {
        self.inner.model_id()
    }
    fn translate_batch(&mut self, sentences: &[&str]) -> Result<Vec<String>> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Interrupted.into());
        }
        self.inner.translate_batch(sentences)
    }
    fn token_count(&self, text: &str) -> Result<usize> {
        self.inner.token_count(text)
    }
    fn max_input_tokens(&self) -> usize {
        self.inner.max_input_tokens()
    }
    fn take_warnings(&mut self) -> Vec<String> {
        self.inner.take_warnings()
    }
    fn in_document_order(&self) -> bool {
        self.inner.in_document_order()
    }
}

/// Runs `f` over `items` on `jobs` threads; results keep the input order.
fn parallel_map<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let jobs = jobs.clamp(1, items.len().max(1));
    if jobs == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= items.len() {
                    break;
                }
                let r = f(&items[i]);
                if let Ok(mut results) = results.lock() {
                    results[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.expect("every item is mapped"))
        .collect()
}

/// An input read into memory.
struct Loaded {
    file: InputFile,
    bytes: u64,
    sha256: String,
    text: String,
    stamp: Option<(u64, SystemTime)>,
    read_ms: u64,
}

/// Why an input could not be read (its hash, when the bytes were read).
struct ReadFailure {
    reason: String,
    sha256: Option<String>,
    bytes: Option<u64>,
}

fn stamp_of(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// The message of an input error without its leading path (the manifest
/// and the summary name the input already).
fn without_path(err: InputError, rel: &str) -> String {
    let text = err.to_string();
    text.strip_prefix(&format!("{rel}: "))
        .map(str::to_string)
        .unwrap_or(text)
}

fn load(file: &InputFile, opts: ReadOptions) -> Result<Loaded, ReadFailure> {
    let start = Instant::now();
    let fail = |reason: String| ReadFailure {
        reason,
        sha256: None,
        bytes: None,
    };
    let meta = std::fs::metadata(&file.path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail("vanished before it could be read".into()),
        _ => fail(format!("cannot read: {e}")),
    })?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let too_large = |size: u64| {
        fail(without_path(
            InputError::TooLarge {
                path: file.rel.clone(),
                size,
                limit: opts.max_bytes,
            },
            &file.rel,
        ))
    };
    if meta.len() > opts.max_bytes {
        return Err(too_large(meta.len()));
    }
    let stamp = stamp_of(&file.path);
    let bytes = std::fs::read(&file.path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > opts.max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    let sha256 = sha256_hex(&bytes);
    let size = bytes.len() as u64;
    let text = decode_text(bytes, &file.rel, opts.lossy).map_err(|e| ReadFailure {
        reason: without_path(e, &file.rel),
        sha256: Some(sha256.clone()),
        bytes: Some(size),
    })?;
    Ok(Loaded {
        file: file.clone(),
        bytes: size,
        sha256,
        text,
        stamp,
        read_ms: start.elapsed().as_millis() as u64,
    })
}

/// sha256 of the content hash and the options: equal keys, equal outputs.
pub fn job_key(content_sha256: &str, options: &JobOptions) -> String {
    let options = serde_json::to_string(options).unwrap_or_default();
    sha256_hex(format!("{content_sha256}\n{options}").as_bytes())
}

fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[derive(Debug, Clone, Copy)]
enum OutputKind {
    Translation,
    Summary,
}

/// A file waiting for its translation.
struct Pending {
    loaded: Loaded,
    key: String,
    options: JobOptions,
    doc: PreparedDocument,
    words_in: u64,
}

/// A file translated (and summarized), ready to write.
struct Finished {
    pending: Pending,
    translation: String,
    summary: Option<String>,
    timings: Timings,
}

struct Runner<'e, 'o> {
    config: BatchConfig,
    engines: Engines<'e>,
    observer: &'o mut dyn Observer,
    cancel: &'o AtomicBool,
    index: ManifestIndex,
    manifest: JsonlLog,
    results: Option<JsonlLog>,
    /// `(input, key)` pairs the results files hold (jsonl format).
    results_done: HashSet<(String, String)>,
    temp_prefix: String,
    report: BatchReport,
    models: Models,
}

/// Runs a batch. Returns an error only for what stops the whole run (no
/// input folder, an unwritable output folder or manifest, a model that
/// does not load); a bad input fails alone and is counted in the report.
pub fn run_batch(
    config: BatchConfig,
    engines: Engines<'_>,
    cancel: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<BatchReport> {
    let started = Instant::now();
    let out_dir = &config.output_dir;
    check_input_folder(&config.input_dir)?;
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create the output folder", out_dir.display()))?;
    let input_canon = config
        .input_dir
        .canonicalize()
        .with_context(|| format!("{}: cannot resolve", config.input_dir.display()))?;
    let output_canon = out_dir
        .canonicalize()
        .with_context(|| format!("{}: cannot resolve", out_dir.display()))?;
    if input_canon == output_canon {
        bail!(
            "the output folder {} is the input folder; choose another (e.g. {}-en)",
            out_dir.display(),
            config.input_dir.display()
        );
    }
    let shard = config.shard;
    let _lock = lock_output(out_dir, shard.as_ref())?;

    let prefix = temp_prefix(shard.as_ref());
    let swept = sweep_temps(out_dir, &prefix)?;
    if swept > 0 {
        observer.warn(&format!(
            "removed {swept} temporary file(s) left by an interrupted run"
        ));
    }
    let mut warnings = Vec::new();
    let index = ManifestIndex::load(out_dir, config.force, &mut warnings)?;
    for w in &warnings {
        observer.warn(w);
    }
    let manifest_path = out_dir.join(manifest_name(shard.as_ref()));
    let manifest = JsonlLog::open(&manifest_path)?;

    let (results, results_done) = match config.output_format {
        OutputFormat::Files => (None, HashSet::new()),
        OutputFormat::Jsonl => {
            let (log, done) = open_results(out_dir, shard.as_ref(), &index, config.force)?;
            (Some(log), done)
        }
    };

    let mut discover_opts = config.discover.clone();
    discover_opts.skip_dirs.push(output_canon);
    let found = discover(&config.input_dir, &discover_opts)?;
    let in_shard = |rel: &str| shard.is_none_or(|s| s.contains(rel));
    let files: Vec<InputFile> = found
        .files
        .into_iter()
        .filter(|f| in_shard(&f.rel))
        .collect();
    let problems: Vec<_> = found
        .problems
        .into_iter()
        .filter(|p| in_shard(&p.rel))
        .collect();

    let mut runner = Runner {
        report: BatchReport {
            total: files.len() + problems.len(),
            manifest: manifest_path,
            results: results.as_ref().map(|r| r.path().to_path_buf()),
            ..Default::default()
        },
        config,
        engines,
        observer,
        cancel,
        index,
        manifest,
        results,
        results_done,
        temp_prefix: prefix,
        models: Models::default(),
    };
    runner.observer.started(runner.report.total);
    for problem in problems {
        let status = if problem.is_failure {
            Status::Failed
        } else {
            Status::Ignored
        };
        let mut record = Record::new(&problem.rel, status);
        record.error = Some(problem.reason);
        runner.record_unfinished(record)?;
    }
    runner.process(files)?;
    let mut report = runner.report;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Opens this run's results file, first dropping lines no manifest record
/// vouches for (appended just before a crash); returns it with the
/// `(input, key)` pairs that all results files in the folder hold.
fn open_results(
    out_dir: &Path,
    shard: Option<&Shard>,
    index: &ManifestIndex,
    force: bool,
) -> Result<(JsonlLog, HashSet<(String, String)>)> {
    let own = out_dir.join(results_name(shard));
    if own.exists() {
        let contents: JsonlContents<ResultRecord> = read_jsonl(&own)?;
        let total = contents.entries.len() + contents.broken_lines.len();
        if contents.entries.is_empty() && total > 0 && !force {
            bail!(
                "{} exists and was not written by tolk; move it away or use --force",
                own.display()
            );
        }
        let kept = valid_results(contents.entries, index);
        if kept.len() != total {
            let lines: Vec<String> = kept.into_iter().map(|(line, _)| line).collect();
            rewrite_lines(&own, &lines)?;
        }
    }
    let mut done = HashSet::new();
    for path in manifest_files(out_dir, RESULTS_STEM)? {
        let contents: JsonlContents<ResultRecord> = read_jsonl(&path)?;
        for (_, r) in contents.entries {
            done.insert((r.path, r.key));
        }
    }
    Ok((JsonlLog::open(&own)?, done))
}

impl Runner<'_, '_> {
    fn process(&mut self, files: Vec<InputFile>) -> Result<()> {
        let group = (self.config.jobs * 4).max(16);
        let mut pending: Vec<Pending> = Vec::new();
        let mut pending_units = 0;
        for chunk in files.chunks(group) {
            if self.cancelled() {
                return Ok(());
            }
            let read = self.config.read;
            let loaded = parallel_map(chunk, self.config.jobs, |f| load(f, read));
            for (file, result) in chunk.iter().zip(loaded) {
                if let Some(p) = self.prepare(file, result)? {
                    pending_units += p.doc.unit_count();
                    pending.push(p);
                }
                if pending_units >= self.config.batch_units {
                    self.flush(std::mem::take(&mut pending))?;
                    pending_units = 0;
                    if self.report.interrupted {
                        return Ok(());
                    }
                }
            }
        }
        if !pending.is_empty() {
            self.flush(pending)?;
        }
        Ok(())
    }

    fn cancelled(&mut self) -> bool {
        if self.cancel.load(Ordering::SeqCst) {
            self.report.interrupted = true;
        }
        self.report.interrupted
    }

    fn options_for(&self, rel: &str) -> (JobOptions, Format) {
        let format = self
            .config
            .input_format
            .unwrap_or_else(|| Format::from_path(Path::new(rel)));
        let options = JobOptions {
            tasks: self.config.tasks.names(),
            output_format: self.config.output_format.name().to_string(),
            input_format: match format {
                Format::Plain => "plain",
                Format::Markdown => "markdown",
            }
            .to_string(),
            translation_model: self.config.translation_model.clone(),
            beams: self.config.beams,
            max_length: self.config.max_length,
            lossy: self.config.read.lossy,
            summary_model: self
                .config
                .tasks
                .summarize
                .then(|| self.config.summary_model.clone())
                .flatten(),
            summary_length: self
                .config
                .tasks
                .summarize
                .then(|| format!("{:?}", self.config.summary_length)),
        };
        (options, format)
    }

    /// The outputs an input gets in the files format.
    fn output_paths(&self, rel: &str) -> Vec<(String, OutputKind)> {
        let mut out = Vec::new();
        if self.config.output_format == OutputFormat::Files {
            if self.config.tasks.translate {
                out.push((translation_path(rel), OutputKind::Translation));
            }
            if self.config.tasks.summarize {
                out.push((summary_path(rel), OutputKind::Summary));
            }
        }
        out
    }

    fn up_to_date(&self, rel: &str, key: &str) -> bool {
        let Some(record) = self.index.latest(rel) else {
            return false;
        };
        if record.status != Status::Done || record.key.as_deref() != Some(key) {
            return false;
        }
        match self.config.output_format {
            OutputFormat::Files => {
                let wanted = self.output_paths(rel);
                wanted.iter().all(|(p, _)| {
                    record
                        .outputs
                        .iter()
                        .any(|o| &o.path == p && holds(&self.config.output_dir, p, &o.sha256))
                })
            }
            OutputFormat::Jsonl => self
                .results_done
                .contains(&(rel.to_string(), key.to_string())),
        }
    }

    /// Decides what to do with a read input: skip it, fail it, or cut it
    /// into sentences for the next translation pass.
    fn prepare(
        &mut self,
        file: &InputFile,
        read: Result<Loaded, ReadFailure>,
    ) -> Result<Option<Pending>> {
        let loaded = match read {
            Ok(loaded) => loaded,
            Err(failure) => {
                let mut record = Record::new(&file.rel, Status::Failed);
                record.error = Some(failure.reason);
                record.sha256 = failure.sha256;
                record.bytes = failure.bytes;
                self.record_unfinished(record)?;
                return Ok(None);
            }
        };
        let rel = loaded.file.rel.clone();
        let (options, format) = self.options_for(&rel);
        let key = job_key(&loaded.sha256, &options);
        let fail = |reason: String| {
            let mut record = Record::new(&rel, Status::Failed);
            record.error = Some(reason);
            record.sha256 = Some(loaded.sha256.clone());
            record.bytes = Some(loaded.bytes);
            record.key = Some(key.clone());
            record.options = Some(options.clone());
            record
        };
        if !self.config.force && self.up_to_date(&rel, &key) {
            let outcome = FileOutcome {
                rel: rel.clone(),
                outcome: Outcome::Skipped,
                error: None,
                sentences: 0,
                words_in: 0,
                words_out: 0,
            };
            self.report.count(&outcome);
            self.observer.file_finished(&outcome);
            return Ok(None);
        }
        if loaded.text.trim().is_empty() {
            let record = fail("empty file: nothing to translate".into());
            self.record_unfinished(record)?;
            return Ok(None);
        }
        for (out, _) in self.output_paths(&rel) {
            if let Err(reason) = check_target(
                &self.config.output_dir,
                &out,
                &self.index,
                self.config.force,
            ) {
                let record = fail(reason);
                self.record_unfinished(record)?;
                return Ok(None);
            }
        }
        if !self.engines.translator.is_loaded() {
            self.observer.loading("translation model");
        }
        let translator = self.engines.translator.get()?;
        let max_tokens = translator.max_input_tokens();
        let doc = {
            let t: &dyn Translator = translator;
            let count = |s: &str| t.token_count(s).unwrap_or(usize::MAX);
            PreparedDocument::new(&loaded.text, format, max_tokens, &count)
        };
        for w in &doc.warnings {
            self.observer.warn(&format!("{rel}: {w}"));
        }
        self.observer.sentences_queued(doc.unit_count());
        Ok(Some(Pending {
            words_in: word_count(&loaded.text),
            loaded,
            key,
            options,
            doc,
        }))
    }

    /// Appends a record of an input that produced no outputs and reports it.
    fn record_unfinished(&mut self, mut record: Record) -> Result<()> {
        record.shard = self.config.shard.map(|s| s.to_string());
        self.manifest.append(&record)?;
        let outcome = FileOutcome {
            rel: record.path.clone(),
            outcome: match record.status {
                Status::Ignored => Outcome::Ignored,
                _ => Outcome::Failed,
            },
            error: record.error.clone(),
            sentences: 0,
            words_in: 0,
            words_out: 0,
        };
        self.index.note(record);
        self.report.count(&outcome);
        self.observer.file_finished(&outcome);
        Ok(())
    }

    /// Translates the sentences of all pending files in one pass, then
    /// summarizes, writes and records each file.
    fn flush(&mut self, pending: Vec<Pending>) -> Result<()> {
        if pending.is_empty() || self.cancelled() {
            return Ok(());
        }
        let start = Instant::now();
        let units: Vec<&str> = pending.iter().flat_map(|p| p.doc.units()).collect();
        let total_units = units.len().max(1);
        let translated = self.translate(&units);
        drop(units);
        let translated = match translated {
            Ok(all) => {
                let mut all = all.into_iter();
                pending
                    .into_iter()
                    .map(|p| {
                        let mine: Vec<String> = all.by_ref().take(p.doc.unit_count()).collect();
                        (p, Ok(mine))
                    })
                    .collect::<Vec<_>>()
            }
            Err(err) if err.is::<Interrupted>() => {
                self.report.interrupted = true;
                return Ok(());
            }
            Err(err) => {
                // One file's sentence may break a whole pass; find it by
                // translating the files one by one, so only it fails.
                self.observer.warn(&format!(
                    "a translation pass failed ({err:#}); retrying its files one by one"
                ));
                let mut each = Vec::new();
                for p in pending {
                    let units: Vec<&str> = p.doc.units().collect();
                    let result = self.translate(&units);
                    if matches!(&result, Err(e) if e.is::<Interrupted>()) {
                        self.report.interrupted = true;
                        return Ok(());
                    }
                    each.push((p, result));
                }
                each
            }
        };
        let pass_ms = start.elapsed().as_millis() as u64;
        let mut warnings = Vec::new();
        if let Ok(translator) = self.engines.translator.get() {
            if self.models.translation.is_none() {
                self.models.translation = Some(translator.model_id());
            }
            warnings = translator.take_warnings();
        }
        let observer = &mut *self.observer;
        report_warnings(warnings, &mut |w| observer.warn(w));

        let mut finished = Vec::new();
        for (p, result) in translated {
            let translations = match result {
                Ok(t) => t,
                Err(err) => {
                    let reason = format!("translation failed: {err:#}");
                    self.fail_pending(&p, reason)?;
                    continue;
                }
            };
            let translation = match p.doc.assemble(&translations) {
                Ok(t) => t,
                Err(err) => {
                    self.fail_pending(&p, err.to_string())?;
                    continue;
                }
            };
            let timings = Timings {
                read_ms: p.loaded.read_ms,
                translate_ms: pass_ms * p.doc.unit_count() as u64 / total_units as u64,
                ..Default::default()
            };
            let mut done = Finished {
                pending: p,
                translation,
                summary: None,
                timings,
            };
            if self.config.tasks.summarize {
                match self.summarize(&done.translation) {
                    Ok((summary, ms)) => {
                        done.summary = Some(summary);
                        done.timings.summarize_ms = ms;
                    }
                    Err(err) => {
                        let reason = format!("summary failed: {err:#}");
                        self.fail_pending(&done.pending, reason)?;
                        continue;
                    }
                }
            }
            finished.push(done);
        }
        self.write(finished)
    }

    fn translate(&mut self, units: &[&str]) -> Result<Vec<String>> {
        let translator = self.engines.translator.get()?;
        let mut wrapped = Cancellable {
            inner: translator,
            cancel: self.cancel,
        };
        let observer = &mut *self.observer;
        let mut reported = 0;
        translate_units(&mut wrapped, units, &mut |done, _| {
            if done > reported {
                observer.sentences_done(done - reported);
                reported = done;
            }
        })
    }

    fn summarize(&mut self, english: &str) -> Result<(String, u64)> {
        let start = Instant::now();
        let Some(lazy) = self.engines.summarizer.as_mut() else {
            bail!("internal error: summaries asked for without a summary engine");
        };
        if !lazy.is_loaded() {
            self.observer.loading("summary engine");
        }
        let summarizer = lazy.get()?;
        if self.models.summary.is_none() {
            self.models.summary = Some(summarizer.model_id());
        }
        let request = SummaryRequest {
            text: english,
            lang: Lang::En,
            length: self.config.summary_length,
        };
        let summary = summarizer.summarize(&request, &mut |_| {})?;
        Ok((summary, start.elapsed().as_millis() as u64))
    }

    fn fail_pending(&mut self, p: &Pending, reason: String) -> Result<()> {
        let mut record = Record::new(&p.loaded.file.rel, Status::Failed);
        record.error = Some(reason);
        record.sha256 = Some(p.loaded.sha256.clone());
        record.bytes = Some(p.loaded.bytes);
        record.key = Some(p.key.clone());
        record.options = Some(p.options.clone());
        self.record_unfinished(record)
    }

    /// Stages every output (in parallel), then per file: result line,
    /// manifest line (synced), rename into place.
    fn write(&mut self, finished: Vec<Finished>) -> Result<()> {
        let out_dir = self.config.output_dir.clone();
        let prefix = self.temp_prefix.clone();
        let paths: Vec<Vec<(String, OutputKind)>> = finished
            .iter()
            .map(|f| self.output_paths(&f.pending.loaded.file.rel))
            .collect();
        let staged: Vec<(Result<Vec<Staged>>, u64)> = parallel_map(
            &finished.iter().zip(&paths).collect::<Vec<_>>(),
            self.config.jobs,
            |(f, paths)| {
                let start = Instant::now();
                let staged = paths
                    .iter()
                    .map(|(rel, kind)| {
                        let text = match kind {
                            OutputKind::Translation => f.translation.as_str(),
                            OutputKind::Summary => f.summary.as_deref().unwrap_or_default(),
                        };
                        stage(&out_dir, rel, with_newline(text).as_bytes(), &prefix)
                    })
                    .collect::<Result<Vec<_>>>();
                (staged, start.elapsed().as_millis() as u64)
            },
        );
        for (mut f, (staged, write_ms)) in finished.into_iter().zip(staged) {
            let staged = match staged {
                Ok(staged) => staged,
                Err(err) => {
                    self.fail_pending(&f.pending, format!("{err:#}"))?;
                    continue;
                }
            };
            f.timings.write_ms = write_ms;
            self.commit(f, staged)?;
        }
        Ok(())
    }

    fn commit(&mut self, f: Finished, staged: Vec<Staged>) -> Result<()> {
        let p = &f.pending;
        let rel = p.loaded.file.rel.clone();
        let words_out =
            word_count(&f.translation) + f.summary.as_deref().map(word_count).unwrap_or(0);
        let changed = p.loaded.stamp.is_none() || stamp_of(&p.loaded.file.path) != p.loaded.stamp;
        if changed {
            self.observer.warn(&format!(
                "{rel} changed while it was processed: its outputs match the content read first (sha256 {}); --resume will redo it",
                &p.loaded.sha256[..12]
            ));
        }
        let mut record = Record::new(&rel, Status::Done);
        record.sha256 = Some(p.loaded.sha256.clone());
        record.bytes = Some(p.loaded.bytes);
        record.key = Some(p.key.clone());
        record.options = Some(p.options.clone());
        record.models = self.models.clone();
        if !self.config.tasks.summarize {
            record.models.summary = None;
        }
        record.outputs = staged
            .iter()
            .map(|s| OutputFile {
                path: s.rel.clone(),
                sha256: s.sha256.clone(),
            })
            .collect();
        record.sentences = p.doc.unit_count() as u64;
        record.words_in = p.words_in;
        record.words_out = words_out;
        record.timings = f.timings.clone();
        record.changed_during_run = changed;
        record.shard = self.config.shard.map(|s| s.to_string());

        if let Some(results) = self.results.as_mut() {
            let line = ResultRecord {
                path: rel.clone(),
                sha256: p.loaded.sha256.clone(),
                key: p.key.clone(),
                translation: self.config.tasks.translate.then(|| f.translation.clone()),
                summary: f.summary.clone(),
                models: record.models.clone(),
                timings: record.timings.clone(),
                words_in: record.words_in,
                words_out: record.words_out,
            };
            results.append(&line)?;
            self.results_done.insert((rel.clone(), p.key.clone()));
        }
        self.manifest.append(&record)?;
        let outcome = FileOutcome {
            rel: rel.clone(),
            outcome: Outcome::Done,
            error: None,
            sentences: record.sentences,
            words_in: record.words_in,
            words_out: record.words_out,
        };
        self.index.note(record);
        for s in staged {
            if let Err(err) = s.commit() {
                // The manifest says done but the file is not there: record
                // the failure so the summary shows it; --resume redoes it.
                let mut failed = Record::new(&rel, Status::Failed);
                failed.error = Some(format!("{err:#}"));
                return self.record_unfinished(failed);
            }
        }
        self.report.count(&outcome);
        self.observer.file_finished(&outcome);
        Ok(())
    }
}

/// Text files end with a newline.
fn with_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}
