//! `tolk batch`: translate and/or summarize every text file in a folder,
//! with the models loaded once, resumably.
//!
//! Exit codes: 0 when every input succeeded (up-to-date inputs count as
//! success), 2 when some inputs failed (each with its reason in the manifest
//! and the final table) or the command line was wrong, 130 when interrupted
//! (Ctrl-C), 1 when the run could not go on at all (no input folder, an
//! unwritable output folder, a model that does not load).

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use super::args::{
    length_parser, DecodingArgs, InputArgs, RuntimeArgs, SummaryModelFlags, TranslationModelArgs,
};
use super::progress;
use crate::batch::{
    merge_manifests, run_batch, BatchConfig, BatchReport, DiscoverOptions, Engines, FileOutcome,
    Lazy, Observer, Outcome, OutputFormat, Shard, Tasks,
};
use crate::engines::{self, Method, SummarySpec};
use crate::pipeline::SummaryLength;
use crate::text::{Format, Lang};

/// Exit code when some inputs failed.
pub const EXIT_SOME_FAILED: u8 = 2;
/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Args)]
#[command(after_help = "\
Outputs: OUT/<input path>.en.txt (.en.html, .en.srt, .en.vtt for pages and \
subtitles) and OUT/<input path>.summary.txt (or one OUT/tolk-results.jsonl with --format jsonl), and OUT/tolk-manifest.jsonl with \
one record per input: its sha256, models, options, status, error and timings.

Exit codes: 0 all inputs succeeded or were up to date; 2 some inputs failed \
(see the table and the manifest); 130 interrupted (run again to resume); \
1 the run could not start (e.g. the model did not load).")]
pub struct BatchArgs {
    /// The folder of articles. Its tree is mirrored under the output folder.
    #[arg(value_name = "DIR", required_unless_present = "merge_manifests")]
    pub input: Option<PathBuf>,

    /// The output folder (created if needed). If it lies inside the input
    /// folder it is not read as input; it may not be the input folder.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,

    /// What to make of each input, comma-separated. German inputs are
    /// translated first for a summary, even when only `summarize` is asked.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "translate")]
    pub tasks: Vec<Task>,

    /// Read only files whose path (relative to DIR) matches this glob; may be
    /// repeated [default: *.txt and *.md, any case].
    #[arg(long, value_name = "GLOB")]
    pub glob: Vec<String>,

    /// Leave out files and folders whose relative path matches this glob
    /// (e.g. 'drafts/**' or 'drafts'); may be repeated.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Walk sub-folders (the default).
    #[arg(long, overrides_with = "no_recursive")]
    pub recursive: bool,

    /// Read only the top level of DIR.
    #[arg(long, overrides_with = "recursive")]
    pub no_recursive: bool,

    /// Also read hidden files and folders (names starting with `.`), which
    /// are skipped by default.
    #[arg(long)]
    pub hidden: bool,

    /// `files`: one `.en.txt` / `.summary.txt` per input; `jsonl`: one JSON
    /// record per input (path, sha256, translation, summary, timings, model
    /// ids) in OUT/tolk-results.jsonl.
    #[arg(long, value_enum, default_value = "files")]
    pub format: BatchFormat,

    /// How inputs are marked up: `plain`, `markdown`, `html` or `subtitles`
    /// [default: by extension: .md, .html/.htm, .srt/.vtt, else plain].
    /// Markdown and HTML keep the markup, subtitles their timings,
    /// translating only the text.
    #[arg(long, value_name = "FORMAT")]
    pub input_format: Option<Format>,

    /// Language of the inputs: de or en [default: detected per file, as
    /// `tolk summarize` does]. German inputs are translated; English ones
    /// are copied as their `.en.txt` and summarized as they are.
    #[arg(long, value_name = "LANG")]
    pub source: Option<Lang>,

    /// Skip inputs already done with the same content, models and options
    /// (the default; the flag only says it explicitly).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,

    /// Redo every input, and overwrite outputs that tolk did not write.
    #[arg(long)]
    pub force: bool,

    /// Process only the I-th of N parts of the inputs (1-based, chosen by a
    /// hash of each relative path): run N of these, on as many machines,
    /// then `tolk batch --merge-manifests -o OUT`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,

    /// Join the shards' manifests in OUT into OUT/tolk-manifest.jsonl (and
    /// their results files into tolk-results.jsonl), then exit.
    #[arg(long)]
    pub merge_manifests: bool,

    /// Threads for reading and writing files (the model uses all cores, or
    /// --threads).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: u32,

    /// Sentences gathered from many files into one length-sorted
    /// translation pass. Larger passes pad less; files are written when
    /// their pass ends.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_units: u32,

    #[command(flatten)]
    pub model: TranslationModelArgs,

    #[command(flatten)]
    pub decoding: DecodingArgs,

    /// How summaries are made (as `tolk summarize --method`): extractive is
    /// instant; llm and t5 load a model once for the whole run.
    #[arg(long, value_enum, value_name = "METHOD", default_value = "extractive")]
    pub summary_method: Method,

    #[command(flatten)]
    pub summary_model: SummaryModelFlags,

    /// Summary length: short, medium or long.
    #[arg(long, value_name = "PRESET", default_value = "short", value_parser = length_parser())]
    pub length: SummaryLength,

    #[command(flatten)]
    pub input_args: InputArgs,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// Test hook: end the process abruptly, without any cleanup, after this
    /// many inputs are done, to simulate a crash.
    #[arg(long, value_name = "N", hide = true)]
    pub fail_after: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Task {
    Translate,
    Summarize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BatchFormat {
    Files,
    Jsonl,
}

/// The summary engine of a batch: the same engines as `tolk summarize`,
/// with its defaults.
fn summary_spec(args: &BatchArgs) -> SummarySpec {
    SummarySpec {
        model: args.summary_model.model(),
        ..SummarySpec::new(args.summary_method)
    }
}

/// Raised by Ctrl-C; a second Ctrl-C exits at once.
static CANCEL: AtomicBool = AtomicBool::new(false);

fn install_interrupt_handler() {
    // An error means a handler exists already (a second run in one process).
    let _ = ctrlc::set_handler(|| {
        if CANCEL.swap(true, Ordering::SeqCst) {
            eprintln!("\ntolk: interrupted again: stopping now; outputs in place are complete");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        eprintln!(
            "\ntolk: interrupted: abandoning the current batch and stopping (Ctrl-C again to stop at once)"
        );
    });
}

pub fn run(args: BatchArgs) -> Result<ExitCode> {
    if args.merge_manifests {
        let report = merge_manifests(&args.output)?;
        eprintln!(
            "tolk: merged {} shard manifest(s): {} records in {}{}",
            report.shards,
            report.records,
            args.output
                .join(crate::batch::manifest::manifest_name(None))
                .display(),
            if report.results > 0 {
                format!(" and {} results in tolk-results.jsonl", report.results)
            } else {
                String::new()
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(input) = args.input.clone() else {
        bail!("the input folder is missing");
    };
    let tasks = Tasks {
        translate: args.tasks.contains(&Task::Translate),
        summarize: args.tasks.contains(&Task::Summarize),
    };
    let rt = args.runtime.runtime();
    let translation = args.model.spec(&args.decoding);
    let summary = summary_spec(&args);
    // Fail on a bad summary choice (and fetch its files) before reading any
    // file; the model itself loads when the first summary is due.
    let located = if tasks.summarize {
        Some(engines::locate_summarizer(&summary, &rt)?)
    } else {
        None
    };
    let config = BatchConfig {
        input_dir: input,
        output_dir: args.output.clone(),
        discover: DiscoverOptions {
            include: args.glob.clone(),
            exclude: args.exclude.clone(),
            recursive: !args.no_recursive,
            hidden: args.hidden,
            skip_dirs: Vec::new(),
        },
        tasks,
        output_format: match args.format {
            BatchFormat::Files => OutputFormat::Files,
            BatchFormat::Jsonl => OutputFormat::Jsonl,
        },
        input_format: args.input_format,
        source: args.source,
        read: args.input_args.read_options(),
        force: args.force,
        shard: args.shard,
        batch_units: args.batch_units as usize,
        jobs: args.jobs as usize,
        summary_length: args.length,
        translation_model: translation.id(&rt),
        summary_model: tasks.summarize.then(|| summary.id()),
        beams: args.decoding.beams.map(|b| b as usize),
        max_length: args.decoding.max_length.map(|m| m as usize),
    };
    let engines = Engines {
        translator: Lazy::new(|| engines::translator(&translation, &rt)),
        summarizer: located.map(|located| {
            let (summary, rt) = (&summary, &rt);
            Lazy::new(move || located.load(summary, rt))
        }),
    };
    install_interrupt_handler();
    let mut observer = CliObserver::new(args.runtime.quiet, args.fail_after);
    let report = run_batch(config, engines, &CANCEL, &mut observer);
    observer.clear();
    let report = report?;
    print_table(&report);
    if report.interrupted {
        eprintln!(
            "tolk: interrupted: {} input(s) done and recorded; run the same command again to continue",
            report.done
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    Ok(if report.failed > 0 {
        ExitCode::from(EXIT_SOME_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Two bars (files, sentences) on a terminal; plain log lines otherwise.
struct CliObserver {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
    total: usize,
    finished: usize,
    done: usize,
    fail_after: Option<usize>,
}

fn styled(bar: ProgressBar, template: &str) -> ProgressBar {
    if let Ok(style) = ProgressStyle::with_template(template) {
        let style = style.progress_chars("=> ").with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        );
        bar.set_style(style);
    }
    bar
}

impl CliObserver {
    fn new(quiet: bool, fail_after: Option<usize>) -> Self {
        let bars = progress::enabled(quiet).then(|| {
            let multi = MultiProgress::new();
            let files = multi.add(styled(
                ProgressBar::new(0),
                "{spinner} files     [{bar:30}] {pos}/{len} ({eta} left) {msg}",
            ));
            let sentences = multi.add(styled(
                ProgressBar::new(0),
                "  sentences [{bar:30}] {pos}/{len} ({rate})",
            ));
            (multi, files, sentences)
        });
        Self {
            bars,
            total: 0,
            finished: 0,
            done: 0,
            fail_after,
        }
    }

    fn line(&self, text: &str) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn clear(&self) {
        if let Some((multi, files, sentences)) = &self.bars {
            files.finish_and_clear();
            sentences.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

impl Observer for CliObserver {
    fn started(&mut self, files: usize) {
        self.total = files;
        match &self.bars {
            Some((_, bar, _)) => bar.set_length(files as u64),
            None => eprintln!("tolk: batch: {files} input(s)"),
        }
    }

    fn loading(&mut self, what: &str) {
        match &self.bars {
            Some((_, bar, _)) => bar.set_message(format!("loading the {what}")),
            None => eprintln!("tolk: loading the {what}"),
        }
    }

    fn sentences_queued(&mut self, count: usize) {
        if let Some((_, _, bar)) = &self.bars {
            bar.inc_length(count as u64);
        }
    }

    fn sentences_done(&mut self, count: usize) {
        if let Some((_, files, bar)) = &self.bars {
            files.set_message("");
            bar.inc(count as u64);
        }
    }

    fn file_finished(&mut self, o: &FileOutcome) {
        self.finished += 1;
        let status = match o.outcome {
            Outcome::Done => "done",
            Outcome::Skipped => "up to date",
            Outcome::Failed => "FAILED",
            Outcome::Ignored => "ignored",
        };
        let reason = o
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        match &self.bars {
            Some((_, bar, _)) => {
                bar.inc(1);
                if matches!(o.outcome, Outcome::Failed | Outcome::Ignored) {
                    self.line(&format!("tolk: {status} {}{reason}", o.rel));
                }
            }
            None => eprintln!(
                "tolk: [{}/{}] {status} {}{reason}",
                self.finished, self.total, o.rel
            ),
        }
        if o.outcome == Outcome::Done {
            self.done += 1;
            if self.fail_after == Some(self.done) {
                self.clear();
                eprintln!(
                    "tolk: --fail-after {}: ending abruptly to simulate a crash",
                    self.done
                );
                // exit() runs no destructors: temporary files stay behind,
                // as after a real crash.
                std::process::exit(3);
            }
        }
    }

    fn warn(&mut self, message: &str) {
        self.line(&format!("tolk: warning: {message}"));
    }
}

impl Drop for CliObserver {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The final table, on stderr (stdout stays empty for scripts).
fn print_table(r: &BatchReport) {
    let secs = r.elapsed.as_secs_f64();
    let per_sec = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
    let mut rows = vec![
        ("files done", r.done.to_string()),
        ("files skipped", format!("{} (up to date)", r.skipped)),
        ("files failed", r.failed.to_string()),
    ];
    if r.ignored > 0 {
        rows.push(("files ignored", r.ignored.to_string()));
    }
    rows.extend([
        ("sentences", r.sentences.to_string()),
        ("words in", r.words_in.to_string()),
        ("words out", r.words_out.to_string()),
        ("time", format!("{secs:.1} s")),
        (
            "throughput",
            format!(
                "{:.2} files/s, {:.0} words/s",
                per_sec(r.done as f64),
                per_sec(r.words_in as f64)
            ),
        ),
        ("manifest", display(&r.manifest)),
    ]);
    if let Some(results) = &r.results {
        rows.push(("results", display(results)));
    }
    eprintln!("tolk batch:");
    for (name, value) in rows {
        eprintln!("  {name:<14} {value}");
    }
    if !r.failures.is_empty() {
        eprintln!("failed:");
        for (path, reason) in &r.failures {
            eprintln!("  {path}: {reason}");
        }
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
