//! `tolk models`.
use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the models in the cache.
    List,
}

pub fn run(_cmd: ModelsCommand) -> Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
