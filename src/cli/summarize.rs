//! `tolk summarize`.
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SummarizeArgs {
    #[command(flatten)]
    pub runtime: super::RuntimeArgs,
}

pub fn run(_args: SummarizeArgs) -> Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
