//! `fleetbench energy`: placeholder until its issue lands.

use std::process::ExitCode;

use crate::context::Context;

#[derive(clap::Args, Debug)]
pub struct EnergyArgs {}

pub async fn run(_args: EnergyArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
