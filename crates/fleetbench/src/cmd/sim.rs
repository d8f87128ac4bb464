//! `fleetbench sim`: placeholder until its issue lands.

use std::process::ExitCode;

use crate::context::Context;

#[derive(clap::Args, Debug)]
pub struct SimArgs {}

pub async fn run(_args: SimArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
