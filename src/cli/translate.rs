//! `tolk translate`.
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct TranslateArgs {
    #[command(flatten)]
    pub runtime: super::RuntimeArgs,
}

pub fn run(_args: TranslateArgs) -> Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
