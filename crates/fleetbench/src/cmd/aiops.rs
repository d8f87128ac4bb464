//! `fleetbench aiops`: placeholder until its issue lands.

use std::process::ExitCode;

use crate::context::Context;

#[derive(clap::Args, Debug)]
pub struct AiopsArgs {}

pub async fn run(_args: AiopsArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
