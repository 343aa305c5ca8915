//! What a batch run reports: each input's [`Outcome`] as it finishes (to
//! an [`Observer`], for bars or log lines), and the totals ([`BatchReport`]).

use std::path::PathBuf;
use std::time::Duration;

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
    pub(super) fn count(&mut self, o: &FileOutcome) {
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
