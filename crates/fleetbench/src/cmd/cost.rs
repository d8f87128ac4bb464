//! `fleetbench cost`: placeholder until its issue lands.

use std::process::ExitCode;

use crate::context::Context;

#[derive(clap::Args, Debug)]
pub struct CostArgs {}

pub async fn run(_args: CostArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
