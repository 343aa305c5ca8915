//! The batch runner: read inputs in parallel, gather the sentences of many
//! files into one length-sorted translation pass, then summarize, write
//! and record each file.

use super::discover::{check_input_folder, discover, InputFile, Shard};
use super::lock::lock_output;
use super::manifest::{
    manifest_files, manifest_name, read_jsonl, results_name, rewrite_lines, valid_results,
    JobOptions, JsonlContents, JsonlLog, ManifestIndex, Models, Record, ResultRecord, Status,
    Timings, RESULTS_STEM,
};
use super::options::{BatchConfig, Engines, OutputFormat};
use super::outputs::{
    check_target, holds, sha256_hex, summary_path, sweep_temps, temp_prefix, translation_path,
};
use super::parallel::parallel_map;
use super::read::{read_input, Loaded, ReadFailure};
use super::report::{BatchReport, FileOutcome, Observer, Outcome};
use crate::pipeline::summarize::SummaryRequest;
use crate::pipeline::translate::{
    report_warnings, translate_units, PreparedDocument, Translation, Translator, Unit,
};
use crate::text::document::{reading_text, AlignedSentence};
use crate::text::{detect_language, Format, Lang};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The error a translation returns when the cancel flag is set.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Passes calls through until the cancel flag is set, then refuses the next
/// batch, or stops a run between two decoding steps, so Ctrl-C abandons a
/// translation pass within one model step or batch.
struct Cancellable<'a> {
    inner: &'a mut dyn Translator,
    cancel: &'a AtomicBool,
}

impl Translator for Cancellable<'_> {
    fn model_id(&self) -> String {
        self.inner.model_id()
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode(text)
    }
    fn translate_encoded(&mut self, units: &[&Unit]) -> Result<Vec<String>> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Interrupted.into());
        }
        self.inner.translate_encoded(units)
    }
    fn translate_scored(&mut self, units: &[&Unit]) -> Result<Vec<Translation>> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(Interrupted.into());
        }
        self.inner.translate_scored(units)
    }
    fn translate_stream(
        &mut self,
        units: &[&Unit],
        finished: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<Vec<Translation>> {
        let cancel = self.cancel;
        if cancel.load(Ordering::SeqCst) {
            return Err(Interrupted.into());
        }
        // Work already done is kept: a run stops only while units remain.
        let mut done = 0;
        self.inner.translate_stream(units, &mut |n| {
            done += n;
            if done < units.len() && cancel.load(Ordering::SeqCst) {
                return Err(Interrupted.into());
            }
            finished(n)
        })
    }
    fn max_input_tokens(&self) -> usize {
        self.inner.max_input_tokens()
    }
    fn batch_size(&self) -> usize {
        self.inner.batch_size()
    }
    fn take_warnings(&mut self) -> Vec<String> {
        self.inner.take_warnings()
    }
    fn in_document_order(&self) -> bool {
        self.inner.in_document_order()
    }
}

/// The one builder of a failed input's record, with what is known of the
/// input when it failed: its hash and size once read, its job key and
/// options once prepared.
pub(super) fn failure(
    rel: &str,
    reason: String,
    read: Option<(&str, u64)>,
    job: Option<(&str, &JobOptions)>,
) -> Record {
    let mut record = Record::new(rel, Status::Failed);
    record.error = Some(reason);
    if let Some((sha256, bytes)) = read {
        record.sha256 = Some(sha256.to_string());
        record.bytes = Some(bytes);
    }
    if let Some((key, options)) = job {
        record.key = Some(key.to_string());
        record.options = Some(options.clone());
    }
    record
}

/// sha256 of the content hash and the options: equal keys, equal outputs.
pub fn job_key(content_sha256: &str, options: &JobOptions) -> String {
    let options = serde_json::to_string(options).unwrap_or_default();
    sha256_hex(format!("{content_sha256}\n{options}").as_bytes())
}

pub(super) fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[derive(Debug, Clone, Copy)]
pub(super) enum OutputKind {
    Translation,
    Summary,
}

/// A file waiting for its translation.
pub(super) struct Pending {
    pub(super) loaded: Loaded,
    pub(super) key: String,
    pub(super) options: JobOptions,
    /// How it is marked up.
    pub(super) format: Format,
    /// Its sentences, when it is German; English inputs are not translated.
    pub(super) doc: Option<PreparedDocument>,
    pub(super) words_in: u64,
}

impl Pending {
    pub(super) fn unit_count(&self) -> usize {
        self.doc.as_ref().map_or(0, PreparedDocument::unit_count)
    }

    fn units(&self) -> impl Iterator<Item = &Unit> {
        self.doc.iter().flat_map(PreparedDocument::units)
    }

    /// The English text: the translation put back together, or the input
    /// itself when it is English already.
    fn english(&self, translations: &[Translation]) -> Result<String> {
        match &self.doc {
            Some(doc) => {
                let texts: Vec<String> = translations.iter().map(|t| t.text.clone()).collect();
                doc.assemble(&texts)
            }
            None => Ok(self.loaded.text.clone()),
        }
    }

    /// One record per sentence and its translation (`--format jsonl`);
    /// none for an English input.
    fn aligned(&self, translations: &[Translation]) -> Result<Option<Vec<AlignedSentence>>> {
        self.doc
            .as_ref()
            .map(|doc| doc.aligned(translations))
            .transpose()
    }
}

/// A file translated (and summarized), ready to write.
pub(super) struct Finished {
    pub(super) pending: Pending,
    pub(super) translation: String,
    /// The translation sentence by sentence (`--format jsonl`).
    pub(super) sentences: Option<Vec<AlignedSentence>>,
    pub(super) summary: Option<String>,
    pub(super) timings: Timings,
}

pub(super) struct Runner<'e, 'o> {
    pub(super) config: BatchConfig,
    pub(super) engines: Engines<'e>,
    pub(super) observer: &'o mut dyn Observer,
    pub(super) cancel: &'o AtomicBool,
    pub(super) index: ManifestIndex,
    pub(super) manifest: JsonlLog,
    pub(super) results: Option<JsonlLog>,
    /// `(input, key)` pairs the results files hold (jsonl format).
    pub(super) results_done: HashSet<(String, String)>,
    pub(super) temp_prefix: String,
    pub(super) report: BatchReport,
    pub(super) models: Models,
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
        let mut record = failure(&problem.rel, problem.reason, None, None);
        record.status = status;
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
            let loaded = parallel_map(chunk, self.config.jobs, |f| read_input(f, read));
            for (file, result) in chunk.iter().zip(loaded) {
                if let Some(p) = self.prepare(file, result)? {
                    pending_units += p.unit_count();
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
            input_format: format.name().to_string(),
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
            source: self.config.source.map(|lang| lang.code().to_string()),
        };
        (options, format)
    }

    /// The outputs an input gets in the files format.
    pub(super) fn output_paths(&self, rel: &str) -> Vec<(String, OutputKind)> {
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
            Err(ReadFailure {
                reason,
                sha256,
                bytes,
            }) => {
                let read = sha256.as_deref().zip(bytes);
                self.record_unfinished(failure(&file.rel, reason, read, None))?;
                return Ok(None);
            }
        };
        let rel = loaded.file.rel.clone();
        let (options, format) = self.options_for(&rel);
        let key = job_key(&loaded.sha256, &options);
        let fail = |reason: String| {
            failure(
                &rel,
                reason,
                Some((&loaded.sha256, loaded.bytes)),
                Some((&key, &options)),
            )
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
        // The policy of `tolk summarize`: German is translated first,
        // English is read as it is; a page or subtitles are judged by
        // their words, not their markup or timings.
        let lang = self
            .config
            .source
            .unwrap_or_else(|| detect_language(&reading_text(&loaded.text, format)));
        let doc = if lang == Lang::De {
            if !self.engines.translator.is_loaded() {
                self.observer.loading("translation model");
            }
            let translator = self.engines.translator.get()?;
            let doc = match PreparedDocument::new(&loaded.text, format, translator) {
                Ok(doc) => doc,
                Err(err) => {
                    self.record_unfinished(fail(format!("{err:#}")))?;
                    return Ok(None);
                }
            };
            for w in &doc.warnings {
                self.observer.warn(&format!("{rel}: {w}"));
            }
            self.observer.sentences_queued(doc.unit_count());
            Some(doc)
        } else {
            if self.config.tasks.translate {
                self.observer
                    .warn(&format!("{rel}: already English: its .en.txt is a copy"));
            }
            None
        };
        Ok(Some(Pending {
            words_in: word_count(&loaded.text),
            loaded,
            key,
            options,
            format,
            doc,
        }))
    }

    /// Appends a record of an input that produced no outputs and reports it.
    pub(super) fn record_unfinished(&mut self, mut record: Record) -> Result<()> {
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
        let units: Vec<&Unit> = pending.iter().flat_map(Pending::units).collect();
        let total_units = units.len().max(1);
        let translated = self.translate(&units);
        drop(units);
        let translated = match translated {
            Ok(all) => {
                let mut all = all.into_iter();
                pending
                    .into_iter()
                    .map(|p| {
                        let mine: Vec<Translation> = all.by_ref().take(p.unit_count()).collect();
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
                    let units: Vec<&Unit> = p.units().collect();
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
        if let Some(translator) = self.engines.translator.loaded() {
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
            let sentences = match self.config.output_format {
                OutputFormat::Jsonl if self.config.tasks.translate => p.aligned(&translations),
                _ => Ok(None),
            };
            let (translation, sentences) = match (p.english(&translations), sentences) {
                (Ok(t), Ok(s)) => (t, s),
                (Err(err), _) | (_, Err(err)) => {
                    self.fail_pending(&p, err.to_string())?;
                    continue;
                }
            };
            let timings = Timings {
                read_ms: p.loaded.read_ms,
                translate_ms: pass_ms * p.unit_count() as u64 / total_units as u64,
                ..Default::default()
            };
            let mut done = Finished {
                pending: p,
                translation,
                sentences,
                summary: None,
                timings,
            };
            if self.config.tasks.summarize {
                // A page's article, subtitles' words: what a reader reads.
                let reading = reading_text(&done.translation, done.pending.format);
                match self.summarize(&reading) {
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

    fn translate(&mut self, units: &[&Unit]) -> Result<Vec<Translation>> {
        if units.is_empty() {
            // English inputs only: no model needed.
            return Ok(Vec::new());
        }
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
        let summary = summarizer.summarize(&request, &mut |_| {});
        let warnings = summarizer.take_warnings();
        let observer = &mut *self.observer;
        report_warnings(warnings, &mut |w| observer.warn(w));
        Ok((summary?, start.elapsed().as_millis() as u64))
    }

    pub(super) fn fail_pending(&mut self, p: &Pending, reason: String) -> Result<()> {
        let record = failure(
            &p.loaded.file.rel,
            reason,
            Some((&p.loaded.sha256, p.loaded.bytes)),
            Some((&p.key, &p.options)),
        );
        self.record_unfinished(record)
    }
}
