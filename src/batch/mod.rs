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
//! - [`run`](mod@run): the driver that batches sentences from many files
//!   together for the model.

pub mod discover;
pub mod manifest;
pub mod outputs;
pub mod run;

pub use discover::{DiscoverOptions, Shard};
pub use manifest::{merge_manifests, MergeReport};
pub use run::{
    run_batch, BatchConfig, BatchReport, Engines, FileOutcome, Lazy, Observer, Outcome,
    OutputFormat, Tasks,
};

#[cfg(test)]
mod tests;
