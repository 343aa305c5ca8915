//! The last step of a batch run: stage every output of the finished files
//! (in parallel), then per file append its result line and manifest line
//! (synced) and rename the outputs into place (see [`super::outputs`] for
//! why in that order).

use super::manifest::{OutputFile, Record, ResultRecord, Status};
use super::outputs::{stage, Staged};
use super::parallel::parallel_map;
use super::read::stamp_of;
use super::report::{FileOutcome, Outcome};
use super::run::{failure, word_count, Finished, OutputKind, Runner};
use anyhow::Result;
use std::time::Instant;

impl Runner<'_, '_> {
    /// Stages every output (in parallel), then per file: result line,
    /// manifest line (synced), rename into place.
    pub(super) fn write(&mut self, finished: Vec<Finished>) -> Result<()> {
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
        record.sentences = p.unit_count() as u64;
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
                sentences: f.sentences.clone(),
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
                return self.record_unfinished(failure(&rel, format!("{err:#}"), None, None));
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
