//! Batch mode (`tolk batch`): translate and summarize a whole folder in one
//! run, with the models loaded once, resumably and without ever leaving a
//! partial output.
//!
//! - [`discover`]: which files are inputs (globs, hidden files, symlinks,
//!   the output folder) and which shard each belongs to.
//! - [`manifest`]: the append-only, synced record of every input's outcome,
//!   and the JSONL results file.
//! - [`outputs`]: output names, never overwriting a file tolk did not write,
//!   and writing through synced temporary files.
//! - [`lock`]: one run per output folder (or shard) at a time.
//! - [`options`]: what a run is asked to do, and its engines, built on first use.
//! - [`report`]: each input's outcome, the observer that shows it, the totals.
//! - [`read`]: reading one input (bytes, hash, text).
//! - [`parallel`]: a small thread pool for file work.
//! - [`run`](mod@run): the runner that batches sentences from many files
//!   together for the model; `write`: its last step, outputs and records.

pub mod discover;
pub mod lock;
pub mod manifest;
pub mod options;
pub mod outputs;
pub mod parallel;
pub mod read;
pub mod report;
pub mod run;
mod write;

pub use discover::{DiscoverOptions, Shard};
pub use manifest::{merge_manifests, MergeReport};
pub use options::{BatchConfig, Engines, Lazy, OutputFormat, Tasks};
pub use report::{BatchReport, FileOutcome, Observer, Outcome, Silent};
pub use run::run_batch;

#[cfg(test)]
mod tests;
