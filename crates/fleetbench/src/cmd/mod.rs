//! The command-line interface: one module per subcommand.

pub mod aiops;
pub mod compare;
pub mod cost;
pub mod dash;
pub mod demo;
pub mod energy;
pub mod import;
pub mod report;
pub mod run;
pub mod runs;
pub mod selftest;
pub mod sim;
pub mod sweep;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::context::Context;

#[derive(Parser, Debug)]
#[command(
    name = "fleetbench",
    version,
    about = "Measure LLM backends the way operators run them",
    long_about = "fleetbench measures LLM backends the way operators run them: speed under real \
concurrency (TTFT, TPOT, ITL, end-to-end latency, throughput, with 95 % confidence intervals), \
quality on GPU-fleet incident diagnosis, cost per token and per job, and energy.",
    after_help = "Examples:\n  fleetbench demo\n  fleetbench run --url http://127.0.0.1:8000/v1 --model qwen3-coder --concurrency 4 --requests 200\n  fleetbench runs list"
)]
pub struct Cli {
    /// Results database: a SQLite file, or postgres://USER@HOST:PORT/DB shared by a team.
    /// Default: ~/.local/share/fleetbench/results.db
    #[arg(long, global = true, env = "FLEETBENCH_DB", hide_env_values = true, value_name = "PATH|URL")]
    pub db: Option<String>,
    /// The PostgreSQL password, from the first line of this file (else the URL's, else PGPASSWORD).
    #[arg(long, global = true, value_name = "PATH")]
    pub db_password_file: Option<PathBuf>,
    /// No progress bars or live lines.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The whole tool offline: simulated GPUs, real load engine, comparison and report.
    Demo(demo::DemoArgs),
    /// Measure one backend: closed-loop agents or open-loop arrivals, exact TTFT/TPOT/ITL/E2EL.
    Run(run::RunArgs),
    /// Measure a backend at several concurrency levels or rates, or find its cliff with `auto`.
    Sweep(sweep::SweepArgs),
    /// Is run B different from run A? Per-figure significance and effect size.
    Compare(compare::CompareArgs),
    /// Import results published by other tools (the Local LLM Bench CSV).
    Import(import::ImportArgs),
    /// Stored runs: list, show, export.
    Runs(runs::RunsArgs),
    /// Measure fleetbench's own client against an in-process zero-delay server.
    Selftest(selftest::SelftestArgs),
    /// The inference simulator: predict, list catalogs, validate, serve, replay.
    Sim(sim::SimArgs),
    /// The AIOps arena: GPU-fleet incidents diagnosed by LLM backends.
    Aiops(aiops::AiopsArgs),
    /// Cost planning: the batch-job planner.
    Cost(cost::CostArgs),
    /// Energy accounting past the meter.
    Energy(energy::EnergyArgs),
    /// Write a self-contained HTML report (plus Markdown and JSON) of stored runs.
    Report(report::ReportArgs),
    /// The live web dashboard: stored runs, reports, and runs in progress.
    Dash(dash::DashArgs),
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context::new(cli.db.as_deref(), cli.db_password_file.as_deref(), cli.quiet)?;
    match cli.command {
        Command::Demo(a) => demo::run(a, &ctx).await,
        Command::Run(a) => run::run(a, &ctx).await,
        Command::Runs(a) => runs::run(a, &ctx).await,
        Command::Sweep(a) => sweep::run(a, &ctx).await,
        Command::Compare(a) => compare::run(a, &ctx).await,
        Command::Import(a) => import::run(a, &ctx).await,
        Command::Selftest(a) => selftest::run(a, &ctx).await,
        Command::Sim(a) => sim::run(a, &ctx).await,
        Command::Aiops(a) => aiops::run(a, &ctx).await,
        Command::Cost(a) => cost::run(a, &ctx).await,
        Command::Energy(a) => energy::run(a, &ctx).await,
        Command::Report(a) => report::run(a, &ctx).await,
        Command::Dash(a) => dash::run(a, &ctx).await,
    }
}
