//! `fleetbench aiops`: the AIOps arena. Generate fleet telemetry, serve it
//! live, run backends as operators over episodes, score answers, print the
//! diagnosis schema. The library does the work; this module wires and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use fleetbench_aiops::backends::parse_backends_arg;
use fleetbench_aiops::exporter::{router, LiveFleet};
use fleetbench_aiops::leaderboard::{render_scenario_table, render_table, score_report};
use fleetbench_aiops::output::{generate, score_answers, TelemetryFormat};
use fleetbench_aiops::{json_schema, leaderboard, parse_rate, prompt, render_costs, run_arena, ArenaConfig, Telemetry};
use fleetbench_load::interrupt::Interrupt;
use indicatif::{MultiProgress, ProgressDrawTarget};

use fleetbench_report::export::JsonDoc;
use fleetbench_report::{render, Format};

use crate::context::Context;
use crate::outln;
use crate::output::{emit, write_file, EXIT_INTERRUPTED};

mod bars;
mod investigate;

use bars::Bars;

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
    /// Send every episode to every backend and print the leaderboard.
    Run(RunArgs),
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
struct RunArgs {
    /// A backends.toml file, or a comma list of built-ins (rules,always-healthy,random).
    #[arg(long, default_value = "rules,always-healthy,random")]
    backends: String,
    #[arg(long, default_value_t = 300)]
    episodes: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Fleet size of each episode.
    #[arg(long, default_value_t = 64)]
    gpus: usize,
    /// Episode stream rate for pacing HTTP requests and cost per day, e.g. 2/s or 30/min.
    #[arg(long)]
    rate: Option<String>,
    /// Write the leaderboard JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Write every answer beside its truth and score (JSONL) here.
    #[arg(long)]
    answers_out: Option<PathBuf>,
    /// Build windows from a Prometheus API instead of the generator: prometheus=http://host:9090
    #[arg(long)]
    telemetry: Option<String>,
    /// With --telemetry: read the fleet/wall time map from this exporter (http://host:9400).
    #[arg(long)]
    timemap_from: Option<String>,
    /// Per-request timeout for HTTP backends, seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Price sheet for backends that name an entry with `price = "NAME"`
    /// (default: the built-in, dated examples; `fleetbench cost presets`).
    #[arg(long, value_name = "PATH")]
    prices: Option<PathBuf>,
    /// triage (one prompt per episode) or investigate (tools, from an alert; built-in backends).
    #[arg(long, default_value = "triage")]
    mode: String,
    #[command(flatten)]
    dashboard: crate::args::DashboardArgs,
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
        AiopsCommand::Run(a) => cmd_run(a, ctx).await,
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

async fn cmd_run(a: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if investigate::mode(&a.mode)? {
        return investigate::run(&a.backends, a.episodes, a.seed, a.json_out.as_deref(), a.answers_out.as_deref());
    }
    let cfg = arena_config(&a)?;
    // The dashboard first: a port in use fails the command before anything
    // is stored.
    let dash = a.dashboard.start(ctx).await?;
    // The run row's provenance; the library fills in the rest.
    let meta = crate::provenance::run_meta("", "", "");
    let multi =
        if ctx.quiet { MultiProgress::with_draw_target(ProgressDrawTarget::hidden()) } else { MultiProgress::new() };
    let bars = Bars { multi, quiet: ctx.quiet, bars: Mutex::default() };
    let interrupt = Interrupt::watch(|| eprintln!("\ninterrupted: stopping; answers scored so far are kept"));
    let live = dash.as_ref().map(|d| d.bus());
    let outcome = run_arena(&cfg, &ctx.db, meta, live, &bars, interrupt.receiver()).await;
    drop(interrupt);
    if let Some(d) = dash {
        d.close().await;
    }
    let o = outcome?;
    let costs = render_costs(&o.boards, &o.costs, cfg.rate_per_s);
    emit(&format!("{}\n{}{costs}", render_table(&o.boards), render_scenario_table(&o.boards)));
    outln!(
        "stored as run {} in {} ({} answers); see it with `fleetbench report {}`",
        o.run_id,
        ctx.db,
        o.answered,
        o.run_id
    );
    if let Some(p) = &a.json_out {
        write_file(p, &render(&JsonDoc("an arena run", &o.json_doc(&cfg)), Format::Json)?)?;
    }
    Ok(if o.interrupted { ExitCode::from(EXIT_INTERRUPTED) } else { ExitCode::SUCCESS })
}

/// The arena's configuration from the command line.
fn arena_config(a: &RunArgs) -> anyhow::Result<ArenaConfig> {
    Ok(ArenaConfig {
        backends: parse_backends_arg(&a.backends)?,
        episodes: a.episodes,
        seed: a.seed,
        gpus: a.gpus,
        rate_per_s: a.rate.as_deref().map(parse_rate).transpose()?,
        telemetry: a.telemetry.as_deref().map(|t| Telemetry::parse(t, a.timemap_from.clone())).transpose()?,
        timeout: Duration::from_secs(a.timeout),
        prices: a.prices.clone(),
        answers_out: a.answers_out.clone(),
    })
}
