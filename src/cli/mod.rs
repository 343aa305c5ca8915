//! The command line: flag definitions (each documented where it is defined,
//! so `--help` teaches; the groups several commands share are in [`args`])
//! and dispatch to the library. Commands only map flags to the library's
//! option structs; engines are built by [`crate::engines`].

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod args;
pub mod batch;
pub mod models;
pub mod output;
pub mod progress;
pub mod summarize;
pub mod translate;

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
/// message already contains and any backtrace a cause carries (candle
/// appends one to its errors when RUST_BACKTRACE is set).
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = without_backtrace(&err.to_string());
    for cause in err.chain().skip(1) {
        let cause = without_backtrace(&cause.to_string());
        if !cause.is_empty() && !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

/// The lines of `message` before a backtrace starts (`stack backtrace:`, or
/// frames printed as `   0: symbol`), joined with spaces.
fn without_backtrace(message: &str) -> String {
    let is_frame = |line: &str| {
        let trimmed = line.trim_start();
        let indented = trimmed.len() < line.len();
        let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
        line.trim() == "stack backtrace:"
            || (indented && digits > 0 && trimmed[digits..].starts_with(": "))
    };
    message
        .lines()
        .take_while(|line| !is_frame(line))
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn backtraces_are_cut_from_error_lines() {
        let candle = "shape mismatch for w, expected: [2], got: [3]\n   0: candle_core::error::Error::bt\n             at src/error.rs:1:2\n   1: main";
        let err = anyhow::anyhow!("{candle}").context("the weights of m do not fit");
        assert_eq!(
            one_line(&err),
            "the weights of m do not fit: shape mismatch for w, expected: [2], got: [3]"
        );
        let wrapped = anyhow::anyhow!("loading failed: {candle}");
        assert_eq!(
            one_line(&wrapped),
            "loading failed: shape mismatch for w, expected: [2], got: [3]"
        );
        assert_eq!(without_backtrace("a\nb"), "a b");
        assert_eq!(without_backtrace("x\nstack backtrace:\n  0: f"), "x");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn errors_and_their_causes_make_one_line() {
        let err = anyhow::anyhow!("inner\ncause").context("outer");
        assert_eq!(one_line(&err), "outer: inner cause");
        let err = anyhow::anyhow!("same").context("same: more");
        assert_eq!(one_line(&err), "same: more");
    }
}
