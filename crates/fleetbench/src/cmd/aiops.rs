//! `fleetbench aiops`: the AIOps arena. Generate fleet telemetry, serve it
//! live, run backends as operators over episodes (`run.rs`, investigate mode
//! in `investigate.rs`), serve episodes to any agent over MCP (`mcp.rs`),
//! score answers, print the diagnosis schema. The library does the work;
//! these modules wire and print.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use fleetbench_aiops::exporter::{router, LiveFleet};
use fleetbench_aiops::leaderboard::{render_scenario_table, render_table, score_report};
use fleetbench_aiops::output::{generate, score_answers, TelemetryFormat};
use fleetbench_aiops::{json_schema, leaderboard, prompt};

use crate::context::Context;
use crate::outln;
use crate::output::emit;

mod bars;
mod investigate;
mod mcp;
mod run;

#[derive(clap::Args, Debug)]
#[command(about = "The AIOps arena: GPU-fleet incidents diagnosed by LLM backends, scored against ground truth")]
pub struct AiopsArgs {
    #[command(subcommand)]
    command: AiopsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AiopsCommand {
    /// Write a seeded fleet's telemetry, kernel log and episodes (with truth) to a directory.
    Generate(GenerateArgs),
    /// Score answers produced elsewhere against episodes.jsonl.
    Score(ScoreArgs),
    /// Print the JSON Schema of a diagnosis.
    Schema,
    /// Serve the live simulated fleet at /metrics for Prometheus to scrape.
    Exporter(ExporterArgs),
    /// Run every backend over every episode (investigate mode: from an alert, through tools;
    /// or triage) and print the leaderboard.
    Run(Box<run::RunArgs>),
    /// Serve investigate-mode episodes to any agent as an MCP server; its diagnoses are scored and stored.
    Mcp(mcp::McpArgs),
    /// Print the operator prompt of one episode.
    Prompt(PromptArgs),
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    #[arg(long, default_value_t = 512)]
    gpus: usize,
    #[arg(long, default_value_t = 6.0)]
    hours: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// prometheus (text with timestamps), openmetrics, or jsonl.
    #[arg(long, default_value = "prometheus")]
    format: String,
    /// triage (telemetry files) or investigate (alerts.jsonl beside episodes.jsonl).
    #[arg(long, default_value = "triage")]
    mode: String,
    /// Investigate mode: how many episodes to write.
    #[arg(long, default_value_t = 300)]
    episodes: usize,
}

#[derive(clap::Args, Debug)]
struct ScoreArgs {
    #[arg(long)]
    episodes: PathBuf,
    /// JSONL: {"episode_id": ..., "answer": "<raw text>"} per line.
    #[arg(long)]
    answers: PathBuf,
    /// Print the full JSON report instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ExporterArgs {
    #[arg(long, default_value_t = 64)]
    gpus: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: String,
    /// Fleet seconds per wall-clock second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Hours of scheduled episodes.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
}

#[derive(clap::Args, Debug)]
struct PromptArgs {
    #[arg(long, default_value_t = 64)]
    gpus: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Episode index in the run's schedule.
    #[arg(long, default_value_t = 0)]
    episode: usize,
    /// triage (the prompt) or investigate (the briefing and the tools offered).
    #[arg(long, default_value = "triage")]
    mode: String,
}

pub async fn run(args: AiopsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        AiopsCommand::Generate(a) => cmd_generate(a),
        AiopsCommand::Score(a) => cmd_score(a),
        AiopsCommand::Schema => {
            outln!("{}", serde_json::to_string_pretty(&json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        AiopsCommand::Exporter(a) => cmd_exporter(a).await,
        AiopsCommand::Run(a) => run::run(*a, ctx).await,
        AiopsCommand::Mcp(a) => mcp::run(a, ctx).await,
        AiopsCommand::Prompt(a) if investigate::mode(&a.mode)? => investigate::briefing(a.seed, a.episode),
        AiopsCommand::Prompt(a) => {
            let (ep, p) = prompt::episode_prompt(a.gpus, a.seed, a.episode)?;
            outln!("{p}");
            let (id, sc, chars, tokens) = (&ep.id, ep.scenario.id(), p.len(), prompt::approx_tokens(&p));
            eprintln!("episode {id} scenario {sc} prompt {chars} chars (~{tokens} tokens)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cmd_generate(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    if investigate::mode(&a.mode)? {
        return investigate::generate(a.episodes, a.seed, &a.out);
    }
    let format = TelemetryFormat::parse(&a.format)
        .ok_or_else(|| anyhow!("unknown --format '{}' (prometheus, openmetrics or jsonl)", a.format))?;
    outln!("{}", generate(a.gpus, a.hours, a.seed, format, &a.out)?);
    Ok(ExitCode::SUCCESS)
}

fn cmd_score(a: ScoreArgs) -> anyhow::Result<ExitCode> {
    let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    if let Some(code) = investigate::score(&read(&a.episodes)?, &read(&a.answers)?, a.json)? {
        return Ok(code);
    }
    let (results, missing) = score_answers(&read(&a.episodes)?, &read(&a.answers)?)
        .with_context(|| format!("scoring {} against {}", a.answers.display(), a.episodes.display()))?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&score_report(&results))?);
        return Ok(ExitCode::SUCCESS);
    }
    let lb = [leaderboard("answers", &results, None, None)];
    emit(&format!("{}\n{}", render_table(&lb), render_scenario_table(&lb)));
    if missing > 0 {
        outln!("{missing} episodes had no answer (scored as unparseable)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn cmd_exporter(a: ExporterArgs) -> anyhow::Result<ExitCode> {
    let live = Arc::new(LiveFleet::new(a.gpus, a.seed, a.hours, a.speed)?);
    let listener = tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("binding {}", a.listen))?;
    let (gpus, addr) = (live.fleet.gpu_count(), listener.local_addr()?);
    eprintln!(
        "serving {gpus} GPUs (seed {}) at http://{addr}/metrics, {}x real time; /episodes has the schedule with truth, /timemap the time map",
        a.seed, a.speed
    );
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, router(live)).with_graceful_shutdown(ctrl_c).await?;
    Ok(ExitCode::SUCCESS)
}
