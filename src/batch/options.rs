//! What a batch run is asked to do ([`BatchConfig`], [`Tasks`],
//! [`OutputFormat`]) and with which engines ([`Engines`], each built on
//! first use by a [`Lazy`]).

use super::discover::{DiscoverOptions, Shard};
use crate::io::ReadOptions;
use crate::pipeline::summarize::{Summarizer, SummaryLength};
use crate::pipeline::translate::Translator;
use crate::text::{Format, Lang};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// What to make of each input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tasks {
    pub translate: bool,
    pub summarize: bool,
}

impl Tasks {
    pub(super) fn names(&self) -> Vec<String> {
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
    /// `out/<input>.en.txt` (`.en.html`, `.en.srt`, `.en.vtt` for pages and
    /// subtitles) and `out/<input>.summary.txt`.
    Files,
    /// One JSON line per input in `out/tolk-results.jsonl`.
    Jsonl,
}

impl OutputFormat {
    pub(super) fn name(self) -> &'static str {
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
    /// The language of every input; `None`: detected per file, as `tolk
    /// summarize` does. German inputs are translated; English ones are
    /// copied as their translation and summarized as they are.
    pub source: Option<Lang>,
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

    /// The engine, if it was built already (never builds it).
    pub fn loaded(&mut self) -> Option<&mut T> {
        self.value.as_deref_mut()
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
