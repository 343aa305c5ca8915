//! `tolk batch`.
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub runtime: super::RuntimeArgs,
}

pub fn run(_args: BatchArgs) -> Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
