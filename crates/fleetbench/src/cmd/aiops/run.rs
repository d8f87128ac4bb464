//! `fleetbench aiops run`: every backend over every episode, scored and
//! stored. Investigate mode (the default) is in `investigate.rs`; triage
//! mode (one prompt per episode) is here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use fleetbench_aiops::backends::parse_backends_arg;
use fleetbench_aiops::investigate::bench::DEFAULT_BUDGET;
use fleetbench_aiops::leaderboard::{render_scenario_table, render_table};
use fleetbench_aiops::{parse_rate, render_costs, run_arena, ArenaConfig, Telemetry};
use fleetbench_core::parse_duration;
use fleetbench_load::interrupt::Interrupt;
use fleetbench_report::export::JsonDoc;
use fleetbench_report::{render, Format};
use indicatif::{MultiProgress, ProgressDrawTarget};

use super::bars::Bars;
use super::investigate;
use crate::context::Context;
use crate::outln;
use crate::output::{emit, write_file, EXIT_INTERRUPTED};

/// The fleet size of a triage episode unless `--gpus` says otherwise.
const TRIAGE_GPUS: usize = 64;

#[derive(clap::Args, Debug)]
pub(super) struct RunArgs {
    /// A backends.toml file (built-in and HTTP backends), or a comma list of built-ins
    /// (investigate: rules,oracle,always-healthy,random; triage: rules,always-healthy,random).
    #[arg(long, default_value = "rules,always-healthy,random")]
    pub(super) backends: String,
    #[arg(long, default_value_t = 300)]
    pub(super) episodes: usize,
    #[arg(long, default_value_t = 7)]
    pub(super) seed: u64,
    /// investigate (from an alert, through tools; the default) or triage (one prompt per episode).
    #[arg(long, default_value = "investigate")]
    pub(super) mode: String,
    /// Write the leaderboard JSON here.
    #[arg(long)]
    pub(super) json_out: Option<PathBuf>,
    /// Write every answer beside its truth and score (JSONL) here.
    #[arg(long)]
    pub(super) answers_out: Option<PathBuf>,
    /// Per-request timeout for HTTP backends, seconds.
    #[arg(long, default_value_t = 300)]
    pub(super) timeout: u64,
    /// Price sheet for backends that name an entry with `price = "NAME"`
    /// (default: the built-in, dated examples; `fleetbench cost presets`).
    #[arg(long, value_name = "PATH")]
    pub(super) prices: Option<PathBuf>,
    /// Investigate mode's PromQL: embedded (the default), prometheus (each episode
    /// backfilled into a real Prometheus: seconds per episode) or auto (prometheus
    /// when `prometheus` and `promtool` are installed).
    #[arg(long, value_name = "ENGINE", default_value = "embedded")]
    pub(super) promql: fleetbench_aiops::investigate::PromqlChoice,
    #[command(flatten)]
    pub(super) budget: BudgetArgs,
    // Investigate mode: the HTTP backends' requests.
    #[command(flatten)]
    pub(super) metrics: crate::args::MetricsArgs,
    #[command(flatten)]
    triage: TriageArgs,
    #[command(flatten)]
    pub(super) dashboard: crate::args::DashboardArgs,
}

/// What one investigation may spend (investigate mode); past any of these
/// the episode is unanswered.
#[derive(clap::Args, Debug)]
pub(super) struct BudgetArgs {
    /// Tool calls per episode (the submission included).
    #[arg(long, default_value_t = DEFAULT_BUDGET.tool_calls, help_heading = "Investigate")]
    pub(super) budget_tool_calls: u32,
    /// Tokens per episode, input plus output of every turn as the server counts them.
    #[arg(long, default_value_t = DEFAULT_BUDGET.tokens, help_heading = "Investigate")]
    pub(super) budget_tokens: u64,
    /// Wall time per episode, from its first request (e.g. 10m, 90s).
    #[arg(long, value_name = "DUR", default_value = "10m", value_parser = parse_duration, help_heading = "Investigate")]
    pub(super) deadline: Duration,
}

/// Options of triage mode only.
#[derive(clap::Args, Debug)]
struct TriageArgs {
    /// Fleet size of each episode (triage; investigate-mode fleets vary per episode). Default 64.
    #[arg(long, help_heading = "Triage")]
    gpus: Option<usize>,
    /// Episode stream rate for pacing HTTP requests and cost per day, e.g. 2/s or 30/min (triage).
    #[arg(long, help_heading = "Triage")]
    rate: Option<String>,
    /// Build windows from a Prometheus API instead of the generator: prometheus=http://host:9090 (triage)
    #[arg(long, help_heading = "Triage")]
    telemetry: Option<String>,
    /// With --telemetry: read the fleet/wall time map from this exporter (http://host:9400).
    #[arg(long, help_heading = "Triage")]
    timemap_from: Option<String>,
}

impl TriageArgs {
    /// The first triage-only option given, if any.
    fn given(&self) -> Option<&'static str> {
        [
            (self.gpus.is_some(), "--gpus"),
            (self.rate.is_some(), "--rate"),
            (self.telemetry.is_some(), "--telemetry"),
            (self.timemap_from.is_some(), "--timemap-from"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

pub(super) async fn run(a: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if investigate::mode(&a.mode)? {
        if let Some(flag) = a.triage.given() {
            anyhow::bail!("{flag} is a triage-mode option: add --mode triage (investigate mode is the default)");
        }
        return investigate::run(&a, ctx).await;
    }
    if a.metrics.metrics_listen.is_some() {
        anyhow::bail!("--metrics-listen serves investigate mode's requests; triage runs show theirs with --dashboard");
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
    let t = &a.triage;
    Ok(ArenaConfig {
        backends: parse_backends_arg(&a.backends)?,
        episodes: a.episodes,
        seed: a.seed,
        gpus: t.gpus.unwrap_or(TRIAGE_GPUS),
        rate_per_s: t.rate.as_deref().map(parse_rate).transpose()?,
        telemetry: t.telemetry.as_deref().map(|x| Telemetry::parse(x, t.timemap_from.clone())).transpose()?,
        timeout: Duration::from_secs(a.timeout),
        prices: a.prices.clone(),
        answers_out: a.answers_out.clone(),
    })
}
