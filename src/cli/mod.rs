//! The command line: flag definitions (each documented where it is defined,
//! so `--help` teaches) and dispatch to the library.

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

pub mod batch;
pub mod models;
pub mod progress;
pub mod summarize;
pub mod translate;

use crate::device::DeviceChoice;

/// Translate German text into English and summarize articles, with open
/// models that run locally on CPU or GPU.
///
/// Models come from the Hugging Face Hub and are cached in the usual HF cache
/// (HF_HOME / HF_HUB_CACHE); `--model-dir` uses a local folder instead.
#[derive(Debug, Parser)]
#[command(name = "tolk", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Translate German text into English.
    Translate(translate::TranslateArgs),
    /// Write a short English summary of a German or English article.
    Summarize(summarize::SummarizeArgs),
    /// Translate and/or summarize every text file in a folder.
    Batch(batch::BatchArgs),
    /// Download, list and verify models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
}

/// Flags shared by every command that runs a model.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Where to run the model: auto (a GPU if this build has one, else CPU),
    /// cpu, cuda (needs a build with `--features cuda`) or metal (`--features metal`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE", global = true)]
    pub device: DeviceChoice,

    /// CPU threads for the math [default: all cores]. `RAYON_NUM_THREADS`, when set, wins.
    #[arg(long, value_name = "N", global = true)]
    pub threads: Option<usize>,

    /// Never touch the network: use only models already in the cache or in
    /// `--model-dir`. Also on when HF_HUB_OFFLINE=1.
    #[arg(long, global = true)]
    pub offline: bool,

    /// Git revision (branch, tag or commit) of Hub models.
    #[arg(long, default_value = "main", value_name = "REV", global = true)]
    pub revision: String,

    /// Do not draw progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

impl RuntimeArgs {
    /// Offline if asked for on the command line or through HF_HUB_OFFLINE.
    pub fn is_offline(&self) -> bool {
        self.offline || crate::hub::offline_from_env()
    }
}

/// Flags for reading input text.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Replace invalid UTF-8 bytes with U+FFFD instead of failing.
    #[arg(long)]
    pub lossy: bool,

    /// Refuse inputs larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::io::DEFAULT_MAX_BYTES)]
    pub max_bytes: u64,
}

impl InputArgs {
    pub fn read_options(&self) -> crate::io::ReadOptions {
        crate::io::ReadOptions {
            lossy: self.lossy,
            max_bytes: self.max_bytes,
        }
    }
}

/// Parses the command line, runs the command and maps errors to one line on
/// stderr and a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let result = match cli.command {
        Command::Translate(args) => translate::run(args),
        Command::Summarize(args) => summarize::run(args),
        Command::Batch(args) => batch::run(args),
        Command::Models(cmd) => models::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) if crate::device::is_out_of_memory(&err) => {
            eprintln!(
                "tolk: error: out of GPU memory: {} (try a smaller --batch-size or --beams, a smaller model, or --device cpu)",
                one_line(&err)
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("tolk: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// Prints help and version as clap does; a usage mistake becomes one line
/// (exit code 2, as clap uses) instead of clap's multi-line report.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) || err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = err.print();
        return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("tolk: error: {first} (see --help)");
    ExitCode::from(2)
}

/// Joins an error and its causes into one line, skipping causes that the
/// message already contains.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line.replace('\n', " ")
}
