//! `fleetbench dash`: placeholder until its issue lands.

use std::process::ExitCode;

use crate::context::Context;

#[derive(clap::Args, Debug)]
pub struct DashArgs {}

pub async fn run(_args: DashArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
