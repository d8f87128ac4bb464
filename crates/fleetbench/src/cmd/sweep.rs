//! `fleetbench sweep`: the same backend measured at several concurrency
//! levels (closed loop) or arrival rates (open loop), or searched for its
//! cliff with `auto`; each level is a stored run, the sweep a group of them.
//! Prints one row per level, the knee and why the curve bends.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use fleetbench_client::prom::{metrics_url_for, MetricsSampler, ServerLevelStats};
use fleetbench_client::Client;
use fleetbench_core::stats::{self, Interval};
use fleetbench_core::{parse_duration, RequestRecord, RunClock, RunMetrics};
use fleetbench_load::coding_swarm::CodingSwarm;
use fleetbench_load::sweep::{explain, CliffConfig, CliffFinder, Knee, LevelOutcome};
use fleetbench_load::{RunPlan, Schedule, StopCondition, Workload, WorkloadSpec};
use fleetbench_report::local_llm_bench::{self, BenchRun};
use fleetbench_store::Store;
use serde_json::{json, Value};

use crate::cmd::run::{write_file, ArrivalArg, BackendArgs, SamplingArgs, SloArgs};
use crate::context::Context;
use crate::measure;

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
  fleetbench sweep --url http://127.0.0.1:8000/v1 --model m --preset local-llm-bench --csv-out llb.csv")]
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
    /// Write the sweep as JSON: {"levels": [...], "knee": {...}}.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub json_out: Option<PathBuf>,
    /// Write one CSV row per request of every level (the Local LLM Bench columns with that preset).
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub csv_out: Option<PathBuf>,
    /// Write the level table as Markdown.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub md_out: Option<PathBuf>,
    #[command(flatten)]
    pub instruments: crate::instruments::InstrumentArgs,
    #[command(flatten)]
    pub dashboard: crate::live::DashboardArgs,
}

enum Levels {
    Fixed(Vec<f64>),
    Auto,
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

/// One measured level (one repeat of it).
struct Measured {
    level: f64,
    repeat: u32,
    run_id: i64,
    metrics: RunMetrics,
    server: Option<ServerLevelStats>,
    records: Vec<RequestRecord>,
    /// Cost and energy keys of the level's run (`--price`, `--meter`).
    extra: serde_json::Map<String, Value>,
}

impl Measured {
    fn outcome(&self) -> LevelOutcome {
        LevelOutcome {
            level: self.level,
            output_throughput: self.metrics.output_throughput,
            mean_tok_s: self.metrics.mean_tok_s,
            slo_attainment_pct: self.metrics.slo_attainment_pct,
            error_rate: if self.metrics.sent > 0 { self.metrics.failed as f64 / self.metrics.sent as f64 } else { 0.0 },
            server: self.server.clone(),
        }
    }
}

pub async fn run(mut args: SweepArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if args.preset == Some(Preset::LocalLlmBench) {
        args.sampling.workload = "coding-swarm".into();
        args.sampling.max_tokens.get_or_insert(8192);
        args.sampling.temperature.get_or_insert(0.7);
        if args.concurrency.is_none() && args.rate.is_none() {
            args.concurrency = Some("1,2,4,8".into());
        }
        args.warmup_per_level.get_or_insert(1);
        if args.repeat == 1 {
            args.repeat = 2;
        }
    }
    let rate_mode = args.rate.is_some();
    let levels = match (&args.concurrency, &args.rate) {
        (_, Some(r)) => parse_levels(r, false)?,
        (Some(c), None) => parse_levels(c, true)?,
        (None, None) => bail!("give --concurrency 1,2,4,8 (or auto) or --rate 1,2,4 (or auto)"),
    };
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let spec = WorkloadSpec::parse(&args.sampling.workload)?;
    let client = Client::new(args.backend.client_config()?)?;
    client.probe(args.backend.timeout_connect.unwrap_or(Duration::from_secs(10))).await?;
    let store = Store::open(&ctx.db_path)?;
    let started = Instant::now();
    let group =
        format!("sweep-{}-{}", fleetbench_core::units::rfc3339(std::time::SystemTime::now()), std::process::id());
    let metrics_url = (!args.no_server_metrics)
        .then(|| args.metrics_url.clone().unwrap_or_else(|| metrics_url_for(&client.config().base_url)));
    let unit = if rate_mode { "req/s" } else { "agents" };
    let key = if rate_mode { "rate" } else { "concurrency" };
    let instruments = Arc::new(args.instruments.prepare(ctx.quiet).await?);
    let dashboard = args.dashboard.start(ctx).await?;
    let observers = Observers { instruments: &instruments, bus: dashboard.as_ref().map(|d| d.bus()) };

    let mut measured: Vec<Measured> = Vec::new();
    let mut finder = CliffFinder::new(CliffConfig {
        max_level: args.max_level,
        integer: !rate_mode,
        start: 1.0,
        ..Default::default()
    });
    let mut first_round: Vec<f64> = Vec::new();
    let mut stopped_by_budget = false;
    eprintln!("sweep {group}: {} against {}", spec_name(&args), client.config().base_url);
    'repeats: for repeat in 0..args.repeat {
        let mut index = 0u64;
        loop {
            let level = match (&levels, repeat) {
                (Levels::Fixed(v), _) => match v.get(index as usize) {
                    Some(l) => *l,
                    None => break,
                },
                (Levels::Auto, 0) => match finder.next_level() {
                    Some(l) => l,
                    None => break,
                },
                (Levels::Auto, _) => match first_round.get(index as usize) {
                    Some(l) => *l,
                    None => break,
                },
            };
            if started.elapsed() >= args.budget {
                stopped_by_budget = true;
                finder.stop("the --budget ran out");
                eprintln!("budget of {:?} spent: stopping the sweep", args.budget);
                break 'repeats;
            }
            let m = measure_level(
                &args,
                ctx,
                &store,
                &client,
                &spec,
                &group,
                level,
                index,
                repeat,
                rate_mode,
                metrics_url.as_deref(),
                &observers,
            )
            .await?;
            eprintln!("{}", level_line(&m, key));
            if repeat == 0 {
                first_round.push(level);
                if matches!(levels, Levels::Auto) {
                    finder.record(m.outcome());
                }
            }
            let interrupted = store.run(m.run_id)?.meta.status == fleetbench_core::RunStatus::Interrupted;
            measured.push(m);
            if interrupted {
                break 'repeats;
            }
            index += 1;
        }
        if matches!(levels, Levels::Auto) && repeat == 0 {
            first_round.sort_by(f64::total_cmp);
        }
    }
    if let Some(d) = dashboard {
        d.close().await;
    }
    if measured.is_empty() {
        bail!("no level was measured (is --budget too small?)");
    }

    // One entry per level: repeats pooled.
    let mut level_values: Vec<f64> = measured.iter().map(|m| m.level).collect();
    level_values.sort_by(f64::total_cmp);
    level_values.dedup();
    let base_tok_s = measured.iter().filter(|m| m.level == level_values[0]).filter_map(|m| m.metrics.mean_tok_s).next();
    let mut outcomes = Vec::new();
    let mut level_json = Vec::new();
    for &l in &level_values {
        let reps: Vec<&Measured> = measured.iter().filter(|m| m.level == l).collect();
        let first = reps[0];
        let mut o = first.outcome();
        o.output_throughput = stats::mean(&reps.iter().map(|m| m.metrics.output_throughput).collect::<Vec<_>>())
            .unwrap_or(o.output_throughput);
        outcomes.push(o);
        level_json.push(level_to_json(key, l, &reps, base_tok_s));
    }
    let mut knee_finder =
        CliffFinder::new(CliffConfig { max_level: args.max_level, integer: !rate_mode, ..Default::default() });
    for o in &outcomes {
        knee_finder.record(o.clone());
    }
    let mut knee = knee_finder.knee();
    if let (Levels::Auto, Some(k)) = (&levels, knee.as_mut()) {
        if let Some(f) = finder.knee() {
            k.stop_reason = f.stop_reason;
        }
    }
    if stopped_by_budget {
        if let Some(k) = knee.as_mut() {
            k.stop_reason = "the --budget ran out".into();
        }
    }
    let reason = knee
        .as_ref()
        .map(|k| explain(&outcomes, k, unit, args.max_level))
        .unwrap_or_else(|| "no level completed a request".into());

    let table = level_table(key, &level_json);
    println!("{table}");
    if let Some(k) = &knee {
        println!(
            "knee: {} {unit} (between {} and {}), saturation {:.1} output tok/s{}",
            fmt(k.level),
            fmt(k.band.0),
            fmt(k.band.1),
            k.saturation_output_throughput,
            k.break_level
                .map(|b| format!("; SLOs or per-request speed break at {} {unit}", fmt(b)))
                .unwrap_or_default()
        );
        if !k.stop_reason.is_empty() {
            println!("search: stopped because {}", k.stop_reason);
        }
    }
    println!("why: {reason}");
    println!("stored as runs {} in {} (group {group})", run_ids(&measured), ctx.db_path.display());

    let doc = json!({
        "levels": level_json,
        "knee": knee.as_ref().map(|k| knee_json(key, k, &reason)),
        "sweep": {
            "group": group,
            "repeats": args.repeat,
            "backend": client.config().base_url,
            "model": client.config().model,
            "workload": spec_name(&args),
            "run_ids": measured.iter().map(|m| m.run_id).collect::<Vec<_>>(),
        },
    });
    if let Some(first) = measured.first() {
        store.put_artifact(first.run_id, "sweep", &group, &doc)?;
    }
    if let Some(p) = &args.json_out {
        write_file(p, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    if let Some(p) = &args.md_out {
        write_file(p, format!("{}\n\n{}\n", markdown_table(key, &level_json), reason).as_bytes())?;
    }
    if let Some(p) = &args.csv_out {
        let mut buf = Vec::new();
        if args.preset == Some(Preset::LocalLlmBench) {
            let mut rows = Vec::new();
            let mut ordered: Vec<&Measured> = measured.iter().collect();
            ordered.sort_by(|a, b| a.level.total_cmp(&b.level).then(a.repeat.cmp(&b.repeat)));
            for m in ordered {
                rows.extend(local_llm_bench::rows(&BenchRun {
                    concurrency: m.level as u32,
                    run: m.repeat + 1,
                    run_wall_seconds: m.metrics.duration,
                    records: &m.records,
                }));
            }
            local_llm_bench::write(&mut buf, &rows)?;
        } else {
            let all: Vec<RequestRecord> = measured.iter().flat_map(|m| m.records.iter().cloned()).collect();
            fleetbench_report::write_requests_csv(&mut buf, &all)?;
        }
        write_file(p, &buf)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn spec_name(args: &SweepArgs) -> String {
    args.sampling.workload.clone()
}

fn run_ids(m: &[Measured]) -> String {
    match (m.first(), m.last()) {
        (Some(a), Some(b)) if a.run_id != b.run_id => format!("{}–{}", a.run_id, b.run_id),
        (Some(a), _) => a.run_id.to_string(),
        _ => "-".into(),
    }
}

/// What watches every level: the price and meter, and the dashboard.
struct Observers<'a> {
    instruments: &'a Arc<crate::instruments::Instruments>,
    bus: Option<&'a fleetbench_dash::LiveBus>,
}

#[allow(clippy::too_many_arguments)]
async fn measure_level(
    args: &SweepArgs,
    ctx: &Context,
    store: &Store,
    client: &Client,
    spec: &WorkloadSpec,
    group: &str,
    level: f64,
    index: u64,
    repeat: u32,
    rate_mode: bool,
    metrics_url: Option<&str>,
    observers: &Observers<'_>,
) -> anyhow::Result<Measured> {
    let seed = args.sampling.seed.wrapping_add(index).wrapping_add(1000 * repeat as u64);
    let workload: Arc<dyn Workload> = match spec {
        WorkloadSpec::CodingSwarm => {
            Arc::new(CodingSwarm::builtin(args.sampling.seed)?.for_level(index + 16 * repeat as u64))
        }
        other => Arc::from(other.build(seed)?),
    };
    let schedule = if rate_mode {
        Schedule::Open { rate: level, arrival: args.arrival.arrival(1.0), max_concurrency: None }
    } else {
        Schedule::Closed { concurrency: level as u32 }
    };
    let agents = if rate_mode { 1 } else { level as u64 };
    let requests = match (args.per_level_requests, args.per_level, args.preset) {
        (Some(n), _, _) => Some(n),
        (None, Some(_), _) => None,
        (None, None, Some(Preset::LocalLlmBench)) => Some(2 * agents),
        (None, None, None) => Some((4 * agents).max(8)),
    };
    let warmup = args.warmup_per_level.unwrap_or(if rate_mode { 0 } else { agents });
    let plan = RunPlan {
        schedule,
        stop: StopCondition { requests, duration: args.per_level },
        warmup,
        sampling: args.sampling.sampling(),
        seed,
    };
    let key = if rate_mode { "request_rate" } else { "concurrency" };
    let mut config = json!({
        "sweep": group,
        "level_index": index,
        "repeat": repeat,
        "requests": requests,
        "duration_s": args.per_level.map(|d| d.as_secs_f64()),
        "warmup": warmup,
        "max_tokens": args.sampling.max_tokens,
        "temperature": args.sampling.temperature,
        "slo": args.slo.slo(),
    });
    config[key] = json!(level);
    if !rate_mode {
        config["max_concurrency"] = json!(level);
    }
    let meta = measure::new_meta(client, workload.describe(), schedule.describe(), config, Some(group.to_string()));
    let sampler = metrics_url.map(|u| MetricsSampler::start(u.to_string(), args.metrics_interval, RunClock::start()));
    let live = observers.bus.map(|bus| {
        let label = format!("{}={}", if rate_mode { "rate" } else { "c" }, fmt(level));
        let run = bus.start(fleetbench_dash::LiveRunInfo {
            kind: "sweep".into(),
            title: format!("sweep {group} · {label} · {}", meta.workload),
            backend: meta.backend_url.clone(),
            model: meta.model.clone(),
            run_id: None,
            total: requests,
        });
        run.update(|s| s.level = Some(label));
        run
    });
    let opts = measure::MeasureOptions {
        slo: args.slo.slo(),
        max_error_rate: None,
        quiet: ctx.quiet,
        time_scale: 1.0,
        instruments: Some(observers.instruments.clone()),
        live,
    };
    let outcome = measure::measure(store, &ctx.db_path, meta, &plan, client, workload, &opts).await?;
    let server = match sampler {
        Some(s) => Some(s.finish().await).filter(|s| s.samples > 0),
        None => None,
    };
    let m = Measured {
        level,
        repeat,
        run_id: outcome.meta.id,
        metrics: outcome.metrics,
        server,
        records: outcome.records.into_iter().filter(|r| !r.warmup).collect(),
        extra: outcome.figure_keys,
    };
    store_level_artifacts(store, group, rate_mode, level, m.run_id, &m.metrics, m.server.as_ref())?;
    Ok(m)
}

/// Stores a level's figures (`sweep_level`) and the server's timeline
/// (`server_metrics`) with its run, for reports and the dashboard.
pub fn store_level_artifacts(
    store: &Store,
    group: &str,
    rate_mode: bool,
    level: f64,
    run_id: i64,
    metrics: &RunMetrics,
    server: Option<&ServerLevelStats>,
) -> anyhow::Result<()> {
    // The report's shape (crates/report/src/html/data.rs): the x position
    // is the concurrency; an open-loop level sits at the most it reached.
    let concurrency = if rate_mode { metrics.max_concurrent_requests as f64 } else { level };
    let level_doc = json!({
        "concurrency": concurrency,
        "rate": rate_mode.then_some(level),
        "label": format!("{}={}", if rate_mode { "rate" } else { "c" }, fmt(level)),
        "metrics": measure::summary_json(metrics),
        "server": server.map(|s| {
            let mut s = s.clone();
            s.timeline.clear();
            s
        }),
    });
    store.put_artifact(run_id, "sweep_level", group, &level_doc)?;
    if let Some(server) = server {
        let samples: Vec<Value> = server
            .timeline
            .iter()
            .map(|p| {
                json!({
                    "t_s": p.t,
                    "kv_cache_usage_pct": p.kv_cache_usage.map(|k| k * 100.0),
                    "queue_depth": p.waiting,
                    "running": p.running,
                })
            })
            .collect();
        store.put_artifact(run_id, "server_metrics", group, &json!({ "samples": samples }))?;
    }
    Ok(())
}

fn ci_pair(iv: Option<Interval>) -> Value {
    iv.map(|i| json!([i.lo, i.hi])).unwrap_or(Value::Null)
}

fn level_to_json(key: &str, level: f64, reps: &[&Measured], base_tok_s: Option<f64>) -> Value {
    let first = reps[0];
    let mut v = measure::summary_json(&first.metrics);
    if let Some(o) = v.as_object_mut() {
        o.extend(first.extra.clone());
    }
    v[key] = json!(level);
    v["run_ids"] = json!(reps.iter().map(|m| m.run_id).collect::<Vec<_>>());
    v["contention"] = match (first.metrics.mean_tok_s, base_tok_s) {
        (Some(a), Some(b)) if b > 0.0 => json!(1.0 - a / b),
        _ => Value::Null,
    };
    v["server"] = json!(first.server.as_ref().map(|s| {
        let mut s = s.clone();
        s.timeline.clear();
        s
    }));
    v["server_timeline"] = json!(first.server.as_ref().map(|s| &s.timeline));
    if reps.len() > 1 {
        let thr: Vec<f64> = reps.iter().map(|m| m.metrics.output_throughput).collect();
        let tok: Vec<f64> = reps.iter().filter_map(|m| m.metrics.mean_tok_s).collect();
        v["repeats"] = json!(reps.len());
        v["output_throughput_mean_of_repeats"] = json!(stats::mean(&thr));
        v["output_throughput_ci95_across_repeats"] = ci_pair(stats::mean_ci(&thr));
        v["mean_tok_s_ci95_across_repeats"] = ci_pair(stats::mean_ci(&tok));
    }
    v
}

fn knee_json(key: &str, k: &Knee, reason: &str) -> Value {
    json!({
        key: k.level,
        "band": [k.band.0, k.band.1],
        "saturation_output_throughput": k.saturation_output_throughput,
        "break": k.break_level,
        "reason": reason,
        "stop_reason": k.stop_reason,
    })
}

pub fn fmt(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn num(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

fn with_ci(v: &Value, k: &str, ci_key: &str) -> String {
    let x = match num(v, k) {
        Some(x) => x,
        None => return "-".into(),
    };
    match v.get("ci95").and_then(|c| c.get(ci_key)) {
        Some(c) => match (c.get("lo").and_then(Value::as_f64), c.get("hi").and_then(Value::as_f64)) {
            (Some(lo), Some(hi)) => format!("{x:.1} [{lo:.1}, {hi:.1}]"),
            _ => format!("{x:.1}"),
        },
        None => format!("{x:.1}"),
    }
}

const HEAD: [&str; 12] = [
    "level",
    "out tok/s [95% CI]",
    "per-req tok/s [95% CI]",
    "per-task tok/s",
    "contention",
    "TTFT p50/p99 ms",
    "TPOT p50/p99 ms",
    "goodput req/s",
    "errors",
    "max in flight",
    "server run/wait",
    "KV max",
];

fn level_rows(key: &str, levels: &[Value]) -> Vec<[String; 12]> {
    levels
        .iter()
        .map(|v| {
            let pair = |a: &str, b: &str| match (num(v, a), num(v, b)) {
                (Some(x), Some(y)) => format!("{x:.0}/{y:.0}"),
                _ => "-".into(),
            };
            let server = v.get("server").filter(|s| !s.is_null());
            let srv = |k: &str| server.and_then(|s| num(s, k));
            [
                num(v, key).map(fmt).unwrap_or_default(),
                with_ci(v, "output_throughput", "output_throughput"),
                with_ci(v, "mean_tok_s", "mean_tok_s"),
                num(v, "mean_task_tok_s").map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into()),
                num(v, "contention").map(|c| format!("{:.0} %", c * 100.0)).unwrap_or_else(|| "-".into()),
                pair("median_ttft_ms", "p99_ttft_ms"),
                pair("median_tpot_ms", "p99_tpot_ms"),
                num(v, "request_goodput").map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()),
                num(v, "failed").map(|x| format!("{x:.0}")).unwrap_or_else(|| "0".into()),
                num(v, "max_concurrent_requests").map(|x| format!("{x:.0}")).unwrap_or_default(),
                match (srv("max_running"), srv("max_waiting")) {
                    (Some(r), Some(w)) => format!("{r:.0}/{w:.0}"),
                    (Some(r), None) => format!("{r:.0}/-"),
                    _ => "-".into(),
                },
                srv("max_kv_cache_usage").map(|k| format!("{:.0} %", k * 100.0)).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

fn level_table(key: &str, levels: &[Value]) -> String {
    let rows = level_rows(key, levels);
    let mut head = HEAD.map(String::from);
    head[0] = key.to_string();
    let mut widths = [0usize; HEAD.len()];
    for r in std::iter::once(&head).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(rows.iter()) {
        let cells: Vec<String> =
            r.iter().zip(widths).map(|(c, w)| format!("{}{c}", " ".repeat(w - c.chars().count()))).collect();
        out.push_str(&cells.join("  "));
        out.push('\n');
    }
    out
}

fn markdown_table(key: &str, levels: &[Value]) -> String {
    let mut head = HEAD.map(String::from);
    head[0] = key.to_string();
    let mut s = format!("| {} |\n|{}|\n", head.join(" | "), vec!["---:"; HEAD.len()].join("|"));
    for r in level_rows(key, levels) {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

fn level_line(m: &Measured, key: &str) -> String {
    format!(
        "  {key} {}{}: {:.1} output tok/s, {} per request, {} completed, {} failed",
        fmt(m.level),
        if m.repeat > 0 { format!(" (repeat {})", m.repeat + 1) } else { String::new() },
        m.metrics.output_throughput,
        m.metrics.mean_tok_s.map(|t| format!("{t:.1} tok/s")).unwrap_or_else(|| "-".into()),
        m.metrics.completed,
        m.metrics.failed
    )
}
