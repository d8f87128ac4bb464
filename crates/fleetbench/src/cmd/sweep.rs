//! `fleetbench sweep`: the same backend measured at several concurrency
//! levels (closed loop) or arrival rates (open loop), or searched for its
//! cliff with `auto`. Parses the levels and hands them to
//! `fleetbench_load::sweep::driver::run_sweep`; prints one row per level,
//! the knee and why the curve bends.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use fleetbench_client::prom::metrics_url_for;
use fleetbench_client::Client;
use fleetbench_core::{parse_duration, RunConfig};
use fleetbench_load::sweep::driver::{run_sweep, LevelKind, Levels, MeasuredLevel, SweepConfig};
use fleetbench_load::sweep::fmt_level;
use fleetbench_load::WorkloadSpec;
use fleetbench_report::export::{sweep_table, SweepExport};
use fleetbench_store::Store;

use crate::args::{
    ArrivalArg, BackendArgs, DashboardArgs, InstrumentArgs, MetricsArgs, OutputArgs, SamplingArgs, ShardArgs, SloArgs,
};
use crate::context::Context;
use crate::live::Watch;
use crate::output::{emit, notes};
use crate::{outln, provenance};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum Preset {
    /// The Local LLM Bench protocol with true closed-loop concurrency:
    /// coding-swarm tasks, max_tokens 8192, temperature 0.7, one warm-up and
    /// two measured runs per level, levels 1, 2, 4, 8.
    LocalLlmBench,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  # fixed levels, 30 s each, with SLOs for goodput
  fleetbench sweep --url http://127.0.0.1:8000/v1 --model m --concurrency 1,2,4,8,16 \\
      --per-level 30s --slo-ttft 1000 --slo-tpot 100 --json-out sweep.json

  # find the cliff: double from 1 until throughput gains < 5 % per doubling, then bisect
  fleetbench sweep --url http://127.0.0.1:8000/v1 --model m --concurrency auto --budget 10m

  # open-loop rates, three interleaved repeats for intervals across repeats
  fleetbench sweep --url http://127.0.0.1:8000/v1 --model m --rate 1,2,4,8 --repeat 3

  # the Local LLM Bench protocol, with its CSV columns
  fleetbench sweep --url http://127.0.0.1:8000/v1 --model m --preset local-llm-bench --csv-out llb.csv

  # shard 1 of 4 of one sweep (levels are totals; each level is the run bench-9/c=16 etc.)
  fleetbench sweep --url http://10.0.0.5:8000/v1 --model m --concurrency 4,16,64 \\
      --shard 1/4 --run-id bench-9 --db postgres://bench@db.example:5432/results")]
pub struct SweepArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Closed-loop levels: a list like 1,2,4,8 or `auto` to search for the knee.
    #[arg(long, short = 'c', help_heading = "Levels", conflicts_with = "rate")]
    pub concurrency: Option<String>,
    /// Open-loop levels: arrival rates (req/s) like 1,2,4 or `auto`.
    #[arg(long, help_heading = "Levels")]
    pub rate: Option<String>,
    #[arg(long, value_enum, default_value = "poisson", help_heading = "Levels")]
    pub arrival: ArrivalArg,
    /// Measure each level for this long (e.g. 60s).
    #[arg(long, value_parser = parse_duration, help_heading = "Levels", conflicts_with = "per_level_requests")]
    pub per_level: Option<Duration>,
    /// Measure each level for this many requests (default: 4 per agent, at least 8).
    #[arg(long, help_heading = "Levels")]
    pub per_level_requests: Option<u64>,
    /// Warm-up requests before each level (default: one per agent).
    #[arg(long, help_heading = "Levels")]
    pub warmup_per_level: Option<u64>,
    /// Highest level the auto search may try.
    #[arg(long, default_value_t = 256.0, help_heading = "Levels")]
    pub max_level: f64,
    /// Stop the sweep (or the auto search) once it has run this long.
    #[arg(long, value_parser = parse_duration, default_value = "10m", help_heading = "Levels")]
    pub budget: Duration,
    /// Run the whole sweep K times, interleaved, for intervals across repeats.
    #[arg(long, default_value_t = 1, help_heading = "Levels")]
    pub repeat: u32,
    /// A published protocol.
    #[arg(long, value_enum, help_heading = "Levels")]
    pub preset: Option<Preset>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub slo: SloArgs,
    /// The backend's Prometheus metrics (default: the base URL with /v1 replaced by /metrics).
    #[arg(long, value_name = "URL", help_heading = "Server metrics")]
    pub metrics_url: Option<String>,
    /// Do not sample the backend's /metrics.
    #[arg(long, help_heading = "Server metrics")]
    pub no_server_metrics: bool,
    /// How often to sample /metrics during a level.
    #[arg(long, value_parser = parse_duration, default_value = "1s", help_heading = "Server metrics")]
    pub metrics_interval: Duration,
    /// --json-out: {"levels": [...], "knee": {...}, "sweep": {...}}; --csv-out: one row per
    /// request of every level (the Local LLM Bench columns with that preset); --md-out: the level table.
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub instruments: InstrumentArgs,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub sharding: ShardArgs,
}

fn parse_levels(s: &str, integer: bool) -> anyhow::Result<Levels> {
    if s.trim() == "auto" {
        return Ok(Levels::Auto);
    }
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let x: f64 =
            part.parse().with_context(|| format!("'{part}' is not a number (give a list like 1,2,4,8 or auto)"))?;
        if !(x.is_finite() && x > 0.0) || (integer && x.fract() != 0.0) {
            bail!("level '{part}' must be a positive {}", if integer { "whole number" } else { "number" });
        }
        v.push(x);
    }
    if v.is_empty() {
        bail!("give at least one level, like 1,2,4,8, or auto");
    }
    Ok(Levels::Fixed(v))
}

impl SweepArgs {
    /// The preset's settings, where the user did not say otherwise.
    fn apply_preset(&mut self) {
        if self.preset == Some(Preset::LocalLlmBench) {
            self.sampling.workload = "coding-swarm".into();
            self.sampling.max_tokens.get_or_insert(8192);
            self.sampling.temperature.get_or_insert(0.7);
            if self.concurrency.is_none() && self.rate.is_none() {
                self.concurrency = Some("1,2,4,8".into());
            }
            self.warmup_per_level.get_or_insert(1);
            if self.repeat == 1 {
                self.repeat = 2;
            }
        }
    }

    fn config(&self, base_url: &str) -> anyhow::Result<SweepConfig> {
        let (levels, kind) = match (&self.concurrency, &self.rate) {
            (_, Some(r)) => (parse_levels(r, false)?, LevelKind::Rate(self.arrival.arrival(1.0))),
            (Some(c), None) => (parse_levels(c, true)?, LevelKind::Concurrency),
            (None, None) => bail!("give --concurrency 1,2,4,8 (or auto) or --rate 1,2,4 (or auto)"),
        };
        if self.repeat == 0 {
            bail!("--repeat must be at least 1");
        }
        let llb = self.preset == Some(Preset::LocalLlmBench);
        let now = fleetbench_core::units::rfc3339(std::time::SystemTime::now());
        let shard = self.sharding.sweep()?;
        Ok(SweepConfig {
            // All shards of a sweep share its group: the --run-id.
            group: shard.as_ref().map_or_else(|| format!("sweep-{now}-{}", std::process::id()), |s| s.key.clone()),
            levels,
            kind,
            workload: WorkloadSpec::parse(&self.sampling.workload)?,
            workload_name: self.sampling.workload.clone(),
            seed: self.sampling.seed,
            sampling: self.sampling.sampling(),
            slo: self.slo.slo(),
            per_level_requests: self.per_level_requests,
            per_level: self.per_level,
            requests_per_agent: if llb { 2 } else { 4 },
            min_requests: if llb { 0 } else { 8 },
            warmup_per_level: self.warmup_per_level,
            max_level: self.max_level,
            budget: self.budget,
            repeat: self.repeat,
            metrics_url: (!self.no_server_metrics)
                .then(|| self.metrics_url.clone().unwrap_or_else(|| metrics_url_for(base_url))),
            metrics_interval: self.metrics_interval,
            time_scale: 1.0,
            config: RunConfig::default(),
            shard,
        })
    }
}

pub async fn run(mut args: SweepArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    args.apply_preset();
    if args.backend.model_mix()?.is_mix() {
        bail!("a model mix (--model a,b,...) works in `run`; sweep one model at a time");
    }
    let client = Client::new(args.backend.client_config()?)?;
    let mut cfg = args.config(&client.config().base_url)?;
    client.probe(args.backend.probe_timeout()).await?;
    // A simulator that runs faster than the hardware it models says so;
    // its figures are then multiplied back into modelled time.
    cfg.time_scale = client.time_scale().unwrap_or(1.0);
    let store = Store::connect(&ctx.db)?;
    let mut watch = Watch::start(&args.instruments, &args.dashboard, &args.metrics, ctx).await?;
    eprintln!("sweep {}: {} against {}", cfg.group, cfg.workload_name, provenance::client_meta(&client).backend_url);
    let key = cfg.kind.key();
    let mut print_level = |m: &MeasuredLevel| eprintln!("{}", level_line(m, key));
    let observers = watch.observers(ctx.quiet, &mut print_level);
    let outcome = run_sweep(&cfg, &store, &client, &provenance::client_meta(&client), observers).await;
    watch.close_dashboard().await;
    let o = outcome?;
    if o.stopped_by_budget {
        eprintln!(
            "budget of {} spent: the sweep stopped there",
            fleetbench_core::units::format_seconds(cfg.budget.as_secs_f64())
        );
    }
    for m in &o.measured {
        notes("warning", &m.warnings);
    }
    emit(&sweep_table(&o.doc).text());
    let unit = cfg.kind.unit();
    if let Some(k) = &o.knee {
        outln!(
            "knee: {} {unit} (between {} and {}), saturation {:.1} output tok/s{}",
            fmt_level(k.level),
            fmt_level(k.band.0),
            fmt_level(k.band.1),
            k.saturation_output_throughput,
            k.break_level
                .map(|b| format!("; SLOs or per-request speed break at {} {unit}", fmt_level(b)))
                .unwrap_or_default()
        );
        if !k.stop_reason.is_empty() {
            outln!("search: stopped because {}", k.stop_reason);
        }
    }
    outln!("why: {}", o.reason);
    if let Some(s) = &o.doc.sessions {
        outln!("{}", s.describe(unit));
    }
    if let Some(note) = fleetbench_report::time_scale_note(Some(o.doc.time_scale)) {
        outln!("{note}");
    }
    outln!("stored as runs {} in {} (group {})", run_ids(&o.measured), ctx.db, cfg.group);
    args.output.write(&SweepExport {
        doc: &o.doc,
        measured: &o.measured,
        local_llm_bench: args.preset == Some(Preset::LocalLlmBench),
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_ids(m: &[MeasuredLevel]) -> String {
    match (m.first(), m.last()) {
        (Some(a), Some(b)) if a.run_id != b.run_id => format!("{}–{}", a.run_id, b.run_id),
        (Some(a), _) => a.run_id.to_string(),
        _ => "-".into(),
    }
}

fn level_line(m: &MeasuredLevel, key: &str) -> String {
    format!(
        "  {key} {}{}: {:.1} output tok/s, {} per request, {} completed, {} failed",
        fmt_level(m.level),
        if m.repeat > 0 { format!(" (repeat {})", m.repeat + 1) } else { String::new() },
        m.metrics.output_throughput,
        m.metrics.mean_tok_s.map(|t| format!("{t:.1} tok/s")).unwrap_or_else(|| "-".into()),
        m.metrics.completed,
        m.metrics.failed
    )
}
