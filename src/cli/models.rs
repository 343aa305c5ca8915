//! `tolk models`: download, list, verify and locate models in the HF cache.

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use indicatif::HumanBytes;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::engines::files::{fetch_checkpoint, pull_plan, PullPlan};
use crate::hub::{self, HubOptions, ModelSource, Need};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download a model's files into the Hugging Face cache.
    ///
    /// Without --files, downloads what tolk needs for the kind of model the
    /// repository holds (Marian: config, weights, source/target.spm, vocab;
    /// T5: config, weights, tokenizer; GGUF: its single .gguf file, or of
    /// several the Q4_K_M one, as `tolk summarize` picks; a llama
    /// safetensors checkpoint: config, weights (or index and the shards it
    /// names), tokenizer.json and its config).
    Pull(PullArgs),
    /// List the models in the cache, and whether tolk's default models are there.
    List(ListArgs),
    /// Check a cached model: every file resolves, LFS files match their sha256,
    /// JSON files parse. Exits non-zero when anything fails.
    Verify(VerifyArgs),
    /// Print the cache folder of a model (usable with --model-dir).
    Path(PathArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Hub repository, owner/name (e.g. Helsinki-NLP/opus-mt-de-en).
    #[arg(value_name = "REPO")]
    pub repo: String,

    /// Git revision (branch, tag or commit) to download.
    #[arg(long, default_value = hub::DEFAULT_REVISION, value_name = "REV")]
    pub revision: String,

    /// Download exactly these files (comma-separated) instead of the default
    /// set; needed for GGUF repositories that hold several .gguf files.
    #[arg(long, value_delimiter = ',', value_name = "FILE,...")]
    pub files: Vec<String>,

    /// Do not download: only check that the files are already in the cache.
    /// Also on when HF_HUB_OFFLINE=1.
    #[arg(long)]
    pub offline: bool,

    /// Do not draw progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON (cache folder, models with snapshots and files, default models) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Hub repository, owner/name, as it is in the cache.
    #[arg(value_name = "REPO")]
    pub repo: String,

    /// Git revision (branch, tag or commit) to check.
    #[arg(long, default_value = hub::DEFAULT_REVISION, value_name = "REV")]
    pub revision: String,
}

#[derive(Debug, Args)]
pub struct PathArgs {
    /// Hub repository, owner/name, as it is in the cache.
    #[arg(value_name = "REPO")]
    pub repo: String,

    /// Git revision (branch, tag or commit).
    #[arg(long, default_value = hub::DEFAULT_REVISION, value_name = "REV")]
    pub revision: String,
}

pub fn run(cmd: ModelsCommand) -> Result<ExitCode> {
    match cmd {
        ModelsCommand::Pull(args) => pull(args),
        ModelsCommand::List(args) => list(args),
        ModelsCommand::Verify(args) => verify(args),
        ModelsCommand::Path(args) => path(args),
    }
}

/// Writes to stdout; a closed pipe (`tolk models list | head`) is not an error.
fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!("cannot write to stdout: {err}"))
        }
        _ => Ok(()),
    }
}

fn pull(args: PullArgs) -> Result<ExitCode> {
    hub::validate_repo_id(&args.repo)?;
    let opts = HubOptions {
        offline: args.offline || hub::offline_from_env(),
        progress: !args.quiet,
        ..HubOptions::default()
    };
    let source = ModelSource::hub(&args.repo, &args.revision);
    let requested: Vec<String> = args
        .files
        .iter()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect();
    let listing = if !requested.is_empty() {
        requested.clone()
    } else if opts.offline {
        match hub::snapshot_dir(&args.repo, &args.revision) {
            Some(snapshot) => hub::cached_files(&snapshot),
            None => bail!(
                "model {} is not in the cache ({}) and offline mode is on: pulling needs the network (drop --offline / unset HF_HUB_OFFLINE)",
                source,
                hub::cache_dir().display()
            ),
        }
    } else {
        hub::list_remote_files(&args.repo, &args.revision, &opts)?
    };
    let files = if requested.is_empty() {
        match pull_plan(&args.repo, &listing)? {
            PullPlan::Needs(needs) => hub::resolve_needs(&source, needs, &opts)?,
            PullPlan::Gguf(file) => hub::resolve(&source, &[file.as_str()], &[], &opts)?,
            PullPlan::Checkpoint => fetch_checkpoint(&source, &opts)?,
        }
    } else {
        let needs: Vec<Need> = listing.iter().map(|name| Need::Required(name)).collect();
        hub::resolve_needs(&source, &needs, &opts)?
    };
    hub::announce(&files);
    let mut out = String::new();
    writeln!(out, "{source}: {}", files.root.display())?;
    let width = files.files.keys().map(String::len).max().unwrap_or(0);
    for (name, path) in &files.files {
        let size = std::fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
        writeln!(out, "  {name:<width$}  {}", HumanBytes(size))?;
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Whether a default model's files are all in the cache.
fn is_cached(cache: &Path, default: &hub::DefaultModel) -> bool {
    let opts = HubOptions {
        offline: true,
        progress: false,
        cache_dir: Some(cache.to_path_buf()),
        endpoint: None,
    };
    let source = ModelSource::hub(default.repo, hub::DEFAULT_REVISION);
    hub::resolve_needs(&source, default.files, &opts).is_ok()
}

fn list(args: ListArgs) -> Result<ExitCode> {
    let cache = hub::cache_dir();
    let models = hub::list_cached_in(&cache)?;
    let defaults: Vec<(&hub::DefaultModel, bool)> = hub::DEFAULT_MODELS
        .iter()
        .map(|default| (default, is_cached(&cache, default)))
        .collect();
    if args.json {
        let models: Vec<serde_json::Value> = models
            .iter()
            .map(|model| {
                let mut value = serde_json::to_value(model)?;
                value["task"] = model.task().into();
                value["revisions"] = model.revisions().into();
                Ok(value)
            })
            .collect::<Result<_, serde_json::Error>>()?;
        let defaults: Vec<serde_json::Value> = defaults
            .iter()
            .map(|(default, cached)| {
                serde_json::json!({"task": default.task, "repo": default.repo, "cached": cached})
            })
            .collect();
        let doc = serde_json::json!({"cache": cache, "models": models, "defaults": defaults});
        emit(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    if models.is_empty() {
        writeln!(out, "No models in the cache ({}).", cache.display())?;
    } else {
        writeln!(out, "Cache: {}", cache.display())?;
        let rows: Vec<[String; 4]> = models
            .iter()
            .map(|model| {
                [
                    model.repo.clone(),
                    model.revisions().join(","),
                    HumanBytes(model.size_on_disk).to_string(),
                    format!("{} ({})", model.task(), model.kind.name()),
                ]
            })
            .collect();
        let header = ["REPO", "REVISIONS", "SIZE", "TASK"].map(str::to_string);
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:>w2$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )?;
        }
    }
    writeln!(out, "\nDefault models:")?;
    for (default, cached) in defaults {
        let state = if cached {
            "cached".to_string()
        } else {
            format!("not cached (run `{}`)", pull_command(default))
        };
        writeln!(out, "  {:<14} {}  {state}", default.task, default.repo)?;
    }
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let report = hub::verify_cached(&args.repo, &args.revision)?;
    let mut out = String::new();
    let width = report.files.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for file in &report.files {
        match &file.problem {
            None => {
                let checks: Vec<&str> =
                    [(file.sha256_checked, "sha256"), (file.json_checked, "json")]
                        .iter()
                        .filter(|(done, _)| *done)
                        .map(|(_, what)| *what)
                        .collect();
                let checks = if checks.is_empty() {
                    "present".to_string()
                } else {
                    checks.join(", ")
                };
                writeln!(out, "ok      {:<width$}  {checks}", file.name)?;
            }
            Some(problem) => writeln!(out, "FAILED  {:<width$}  {problem}", file.name)?,
        }
    }
    let failed = report.files.iter().filter(|f| !f.is_ok()).count();
    let commit: String = report.commit.chars().take(12).collect();
    if report.files.is_empty() {
        writeln!(
            out,
            "{} (commit {commit}): the snapshot has no files",
            args.repo
        )?;
    } else {
        writeln!(
            out,
            "{} (revision {}, commit {commit}): {} files, {}",
            args.repo,
            report.revision,
            report.files.len(),
            if failed == 0 {
                "all ok".to_string()
            } else {
                format!("{failed} failed")
            }
        )?;
    }
    emit(&out)?;
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn path(args: PathArgs) -> Result<ExitCode> {
    hub::validate_repo_id(&args.repo)?;
    match hub::snapshot_dir(&args.repo, &args.revision) {
        Some(snapshot) => {
            if let Some((pr, weights)) = hub::cached_conversion(&args.repo, &args.revision) {
                eprintln!(
                    "tolk: its weights are {} ({pr}, the Hub's conversion of pytorch_model.bin); --model-dir on this folder finds them",
                    weights.display()
                );
            }
            emit(&format!("{}\n", snapshot.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "model {} is not in the cache ({}): run `tolk models pull {}`",
            ModelSource::hub(&args.repo, &args.revision),
            hub::cache_dir().display(),
            args.repo
        ),
    }
}

/// The `tolk models pull` command that fetches a default model; GGUF repos
/// hold several quantizations, so the file is named.
fn pull_command(default: &hub::DefaultModel) -> String {
    let single_files: Vec<&str> = default
        .files
        .iter()
        .filter_map(|need| match need {
            Need::Required(name) if name.ends_with(".gguf") => Some(*name),
            _ => None,
        })
        .collect();
    if single_files.is_empty() {
        format!("tolk models pull {}", default.repo)
    } else {
        format!(
            "tolk models pull {} --files {}",
            default.repo,
            single_files.join(",")
        )
    }
}
