//! The sweep driver: measures one backend level by level (fixed levels, or
//! the cliff search with `auto`), each level a stored run of the sweep's
//! group, repeats interleaved, within a time budget; then pools repeats,
//! finds the knee, explains it and stores the sweep. `fleetbench sweep` and
//! the demo both call [`run_sweep`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fleetbench_client::prom::{MetricsSampler, ServerLevelStats};
use fleetbench_client::Client;
use fleetbench_core::run::redact_url;
use fleetbench_core::stats;
use fleetbench_core::units::rfc3339;
use fleetbench_core::{RequestRecord, RunClock, RunConfig, RunMeta, RunMetrics, RunStatus, SamplingParams, Slo};
use fleetbench_store::{Store, StoreError};

use super::records::{
    KneeDoc, LevelSummary, ServerMetricsRecord, ServerSample, SweepDoc, SweepInfo, SweepLevelRecord, SweepRecord,
};
use super::sharded::{level_union, SweepShard};
use super::{explain, fmt_level, CliffConfig, CliffFinder, Knee, LevelOutcome};
use crate::coding_swarm::CodingSwarm;
use crate::live::{CurvePoint, LiveRunInfo, ServerPoint, SweepCurve};
use crate::measure::{measure, without_arrays, FigureKeys, MeasureError, MeasureOptions, Observers};
use crate::{Arrival, RunPlan, Schedule, StopCondition, Workload, WorkloadError, WorkloadSpec};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Measure(#[from] MeasureError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("no level was measured (is the budget too small?)")]
    NothingMeasured,
    #[error("level {level} has fewer agents than the sweep has shards ({shards}): each shard needs one at least; start the levels at {shards} or use fewer shards")]
    LevelBelowShards { level: String, shards: u32 },
}

/// Which levels to measure.
#[derive(Debug, Clone, PartialEq)]
pub enum Levels {
    Fixed(Vec<f64>),
    /// Double from 1 until the curve flattens, then bisect to the knee.
    Auto,
}

/// What a level is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LevelKind {
    /// Closed loop: this many agents.
    Concurrency,
    /// Open loop: this many requests per second, arriving so.
    Rate(Arrival),
}

impl LevelKind {
    /// The level's name in JSON (`concurrency`, `rate`).
    pub fn key(self) -> &'static str {
        match self {
            LevelKind::Concurrency => "concurrency",
            LevelKind::Rate(_) => "rate",
        }
    }

    /// The level's unit in sentences (`agents`, `req/s`).
    pub fn unit(self) -> &'static str {
        match self {
            LevelKind::Concurrency => "agents",
            LevelKind::Rate(_) => "req/s",
        }
    }

    /// `c=4`, `rate=2.50`.
    pub fn label(self, level: f64) -> String {
        match self {
            LevelKind::Concurrency => format!("c={}", fmt_level(level)),
            LevelKind::Rate(_) => format!("rate={}", fmt_level(level)),
        }
    }
}

/// Everything a sweep needs to know.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// The group every level's run belongs to.
    pub group: String,
    pub levels: Levels,
    pub kind: LevelKind,
    pub workload: WorkloadSpec,
    /// The workload as the user wrote it, for the record.
    pub workload_name: String,
    /// Level `i` of repeat `r` draws its prompts with seed `seed + i + 1000 r`.
    pub seed: u64,
    pub sampling: SamplingParams,
    pub slo: Slo,
    /// Measured requests per level; else `per_level` time; else
    /// `requests_per_agent` per agent, at least `min_requests`.
    pub per_level_requests: Option<u64>,
    pub per_level: Option<Duration>,
    pub requests_per_agent: u64,
    pub min_requests: u64,
    /// Warm-up requests before each level (default: one per agent in
    /// closed loop, none in open loop).
    pub warmup_per_level: Option<u64>,
    pub max_level: f64,
    pub budget: Duration,
    pub repeat: u32,
    /// The server's Prometheus `/metrics`, sampled during every level.
    pub metrics_url: Option<String>,
    pub metrics_interval: Duration,
    /// The backend's time scale (the simulator); figures are stored in
    /// modelled time.
    pub time_scale: f64,
    /// Settings recorded in every level's run config beside the sweep's own
    /// (the hardware of a simulated setup, say).
    pub config: RunConfig,
    /// One shard of a sweep measured by several processes (`--shard`).
    pub shard: Option<SweepShard>,
}

/// Who watches a sweep besides the store: each level (each repeat of it)
/// is a measured run, reported as a [`MeasuredLevel`].
pub type SweepObservers<'a> = Observers<'a, MeasuredLevel>;

/// One measured level (one repeat of it).
#[derive(Debug, Clone)]
pub struct MeasuredLevel {
    pub level: f64,
    pub repeat: u32,
    pub run_id: i64,
    pub metrics: RunMetrics,
    pub server: Option<ServerLevelStats>,
    /// Measured records (warm-up left out).
    pub records: Vec<RequestRecord>,
    /// Cost and energy of the level's run.
    pub figures: FigureKeys,
    /// What went wrong pricing or metering the level, without losing it.
    pub warnings: Vec<String>,
    pub interrupted: bool,
    /// A sharded level: its common start and its last request's end (Unix
    /// seconds), the same for every shard.
    pub span: Option<(f64, f64)>,
}

impl MeasuredLevel {
    fn outcome(&self) -> LevelOutcome {
        LevelOutcome {
            level: self.level,
            output_throughput: self.metrics.output_throughput,
            mean_tok_s: self.metrics.mean_tok_s,
            slo_attainment_pct: self.metrics.slo_attainment_pct,
            error_rate: self.metrics.error_rate(),
            server: self.server.clone(),
        }
    }
}

/// What a sweep found.
#[derive(Debug, Clone)]
pub struct SweepOutcome {
    /// Every level and repeat, in the order measured.
    pub measured: Vec<MeasuredLevel>,
    /// One outcome per level, repeats pooled, in level order.
    pub outcomes: Vec<LevelOutcome>,
    pub knee: Option<Knee>,
    /// Why the curve bends, in one line.
    pub reason: String,
    /// The `--json-out` document.
    pub doc: SweepDoc,
    pub stopped_by_budget: bool,
    pub interrupted: bool,
}

/// Measures the sweep and stores it: every level's run with its
/// [`SweepLevelRecord`] and [`ServerMetricsRecord`], and the
/// [`SweepRecord`] with the first run. `meta` is the template of every
/// level's run row (provenance and backend filled by the caller).
pub async fn run_sweep(
    cfg: &SweepConfig,
    store: &Store,
    client: &Client,
    meta: &RunMeta,
    mut observers: SweepObservers<'_>,
) -> Result<SweepOutcome, SweepError> {
    let started = Instant::now();
    let integer = cfg.kind == LevelKind::Concurrency;
    // Each shard needs an agent at every closed-loop level.
    let lowest = match (&cfg.shard, integer) {
        (Some(s), true) => f64::from(s.shard.count),
        _ => 1.0,
    };
    if let (Levels::Fixed(v), Some(s)) = (&cfg.levels, &cfg.shard) {
        if let Some(l) = v.iter().find(|l| **l < lowest) {
            return Err(SweepError::LevelBelowShards { level: fmt_level(*l), shards: s.shard.count });
        }
    }
    let mut finder =
        CliffFinder::new(CliffConfig { max_level: cfg.max_level, integer, start: lowest, ..Default::default() });
    // A sharded sweep counts its budget on the shards' common clock.
    let mut common: Option<(f64, f64)> = None;
    let mut measured: Vec<MeasuredLevel> = Vec::new();
    let mut first_round: Vec<f64> = Vec::new();
    let (mut stopped_by_budget, mut interrupted) = (false, false);
    'repeats: for repeat in 0..cfg.repeat.max(1) {
        let mut index = 0u64;
        loop {
            let next = match (&cfg.levels, repeat) {
                (Levels::Fixed(v), _) => v.get(index as usize).copied(),
                (Levels::Auto, 0) => finder.next_level(),
                (Levels::Auto, _) => first_round.get(index as usize).copied(),
            };
            let Some(level) = next else { break };
            let spent = match (common, &cfg.shard) {
                (Some((start, end)), _) => end - start >= cfg.budget.as_secs_f64(),
                // Shards measure the first level whatever their clocks say.
                (None, Some(_)) => false,
                (None, None) => started.elapsed() >= cfg.budget,
            };
            if spent {
                stopped_by_budget = true;
                finder.stop("the --budget ran out");
                break 'repeats;
            }
            let curve = curve_so_far(&measured);
            let m = measure_level(cfg, store, client, meta, &observers, level, index, repeat, curve).await?;
            observers.measured(&m);
            if let Some((start, end)) = m.span {
                common = Some((common.map_or(start, |c| c.0), end));
            }
            if repeat == 0 {
                first_round.push(level);
                if cfg.levels == Levels::Auto {
                    finder.record(m.outcome());
                }
            }
            interrupted = m.interrupted;
            measured.push(m);
            if interrupted {
                break 'repeats;
            }
            index += 1;
        }
        if cfg.levels == Levels::Auto && repeat == 0 {
            first_round.sort_by(f64::total_cmp);
        }
    }
    if measured.is_empty() {
        return Err(SweepError::NothingMeasured);
    }
    let (outcomes, levels) = pool(cfg.kind, &measured);
    let mut knee_finder = CliffFinder::new(CliffConfig { max_level: cfg.max_level, integer, ..Default::default() });
    for o in &outcomes {
        knee_finder.record(o.clone());
    }
    let mut knee = knee_finder.knee();
    if let (Levels::Auto, Some(k)) = (&cfg.levels, knee.as_mut()) {
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
        .map(|k| explain(&outcomes, k, cfg.kind.unit(), cfg.max_level))
        .unwrap_or_else(|| "no level completed a request".into());
    let knee_doc = knee.as_ref().map(|k| KneeDoc {
        concurrency: (cfg.kind == LevelKind::Concurrency).then_some(k.level),
        rate: (cfg.kind != LevelKind::Concurrency).then_some(k.level),
        band: [k.band.0, k.band.1],
        saturation_output_throughput: k.saturation_output_throughput,
        break_level: k.break_level,
        reason: reason.clone(),
        stop_reason: k.stop_reason.clone(),
    });
    let info = SweepInfo {
        group: cfg.group.clone(),
        repeats: cfg.repeat,
        backend: redact_url(&client.config().base_url),
        model: client.config().model.clone(),
        workload: cfg.workload_name.clone(),
        run_ids: measured.iter().map(|m| m.run_id).collect(),
    };
    let record = SweepRecord { knee: knee_doc.clone(), sweep: info.clone() };
    if cfg.shard.as_ref().is_none_or(SweepShard::stores) {
        store.put(measured[0].run_id, &cfg.group, &record)?;
    }
    let per_level: Vec<(f64, &fleetbench_core::sessions::SessionFigures)> =
        levels.iter().filter_map(|l| l.metrics.sessions.as_ref().map(|f| (l.level(), f))).collect();
    let sessions = super::session_curve(&per_level);
    let doc = SweepDoc { levels, knee: knee_doc, sweep: info, sessions, time_scale: modelled(cfg.time_scale) };
    Ok(SweepOutcome { measured, outcomes, knee, reason, doc, stopped_by_budget, interrupted })
}

/// One outcome and one summary per level, repeats pooled.
fn pool(kind: LevelKind, measured: &[MeasuredLevel]) -> (Vec<LevelOutcome>, Vec<LevelSummary>) {
    let mut values: Vec<f64> = measured.iter().map(|m| m.level).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let base_tok_s = measured.iter().filter(|m| m.level == values[0]).find_map(|m| m.metrics.mean_tok_s);
    let mut outcomes = Vec::new();
    let mut levels = Vec::new();
    for &l in &values {
        let reps: Vec<&MeasuredLevel> = measured.iter().filter(|m| m.level == l).collect();
        let first = reps[0];
        let thr: Vec<f64> = reps.iter().map(|m| m.metrics.output_throughput).collect();
        let mut o = first.outcome();
        o.output_throughput = stats::mean(&thr).unwrap_or(o.output_throughput);
        outcomes.push(o);
        let pair = |iv: Option<stats::Interval>| iv.map(|i| [i.lo, i.hi]);
        let tok: Vec<f64> = reps.iter().filter_map(|m| m.metrics.mean_tok_s).collect();
        let several = reps.len() > 1;
        levels.push(LevelSummary {
            concurrency: (kind == LevelKind::Concurrency).then_some(l),
            rate: (kind != LevelKind::Concurrency).then_some(l),
            metrics: without_arrays(&first.metrics),
            figures: first.figures.clone(),
            run_ids: reps.iter().map(|m| m.run_id).collect(),
            contention: match (first.metrics.mean_tok_s, base_tok_s) {
                (Some(a), Some(b)) if b > 0.0 => Some(1.0 - a / b),
                _ => None,
            },
            server: first.server.clone().map(|mut s| {
                s.timeline.clear();
                s
            }),
            server_timeline: first.server.as_ref().map(|s| s.timeline.clone()),
            repeats: several.then_some(reps.len()),
            output_throughput_mean_of_repeats: if several { stats::mean(&thr) } else { None },
            output_throughput_ci95_across_repeats: several.then(|| pair(stats::mean_ci(&thr))),
            mean_tok_s_ci95_across_repeats: several.then(|| pair(stats::mean_ci(&tok))),
        });
    }
    (outcomes, levels)
}

/// The sweep's curve so far for the dashboard: each finished level's
/// aggregate tok/s, repeats averaged, in level order.
fn curve_so_far(measured: &[MeasuredLevel]) -> Vec<CurvePoint> {
    let mut levels: Vec<f64> = measured.iter().map(|m| m.level).collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    levels
        .into_iter()
        .map(|level| {
            let thr: Vec<f64> =
                measured.iter().filter(|m| m.level == level).map(|m| m.metrics.output_throughput).collect();
            CurvePoint { level, output_tok_s: stats::mean(&thr).unwrap_or(0.0) }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn measure_level(
    cfg: &SweepConfig,
    store: &Store,
    client: &Client,
    template: &RunMeta,
    observers: &SweepObservers<'_>,
    level: f64,
    index: u64,
    repeat: u32,
    curve: Vec<CurvePoint>,
) -> Result<MeasuredLevel, SweepError> {
    let seed = cfg.seed.wrapping_add(index).wrapping_add(1000 * repeat as u64);
    let workload: Arc<dyn Workload> = match &cfg.workload {
        WorkloadSpec::CodingSwarm => Arc::new(CodingSwarm::builtin(cfg.seed)?.for_level(index + 16 * repeat as u64)),
        other => Arc::from(other.build(seed)?),
    };
    let (schedule, agents) = match cfg.kind {
        LevelKind::Rate(arrival) => (Schedule::Open { rate: level, arrival, max_concurrency: None }, 1),
        LevelKind::Concurrency => (Schedule::Closed { concurrency: level as u32 }, level as u64),
    };
    let requests = match (cfg.per_level_requests, cfg.per_level) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some((cfg.requests_per_agent * agents).max(cfg.min_requests)),
    };
    let closed = cfg.kind == LevelKind::Concurrency;
    let warmup = cfg.warmup_per_level.unwrap_or(if closed { agents } else { 0 });
    let plan = RunPlan {
        schedule,
        stop: StopCondition { requests, duration: cfg.per_level },
        warmup,
        sampling: cfg.sampling.clone(),
        seed,
        arrivals: None,
        shard: None,
        ramp: None,
    };
    let label = cfg.kind.label(level);
    let join = cfg.shard.as_ref().map(|s| s.level(&label, repeat, closed.then_some(level as u32)));
    let plan = match &join {
        Some(j) => crate::shard::shard_plan(&plan, j.shard).map_err(MeasureError::from)?,
        None => plan,
    };
    let config = RunConfig {
        sweep: Some(cfg.group.clone()),
        level_index: Some(index),
        repeat: Some(repeat),
        requests,
        duration_s: cfg.per_level.map(|d| d.as_secs_f64()),
        warmup: Some(warmup),
        max_tokens: cfg.sampling.max_tokens,
        temperature: cfg.sampling.temperature,
        slo: Some(cfg.slo),
        concurrency: closed.then_some(level as u32),
        max_concurrency: closed.then_some(level as u32),
        request_rate: (!closed).then_some(level),
        time_scale: (modelled(cfg.time_scale) != 1.0).then_some(modelled(cfg.time_scale)),
        ..cfg.config.clone()
    };
    let mut meta = template.clone();
    meta.workload = workload.describe();
    meta.schedule = schedule.describe();
    meta.config = serde_json::to_value(&config).unwrap_or_default();
    meta.group = Some(cfg.group.clone());
    meta.started_at = rfc3339(SystemTime::now());
    let live = observers.bus.map(|bus| {
        let run = bus.start(LiveRunInfo {
            kind: "sweep".into(),
            title: format!("sweep {} · {label} · {}", cfg.group, meta.workload),
            backend: meta.backend_url.clone(),
            model: meta.model.clone(),
            run_id: None,
            total: requests,
        });
        run.update(|s| {
            s.level = Some(label.clone());
            s.sweep = Some(SweepCurve { unit: cfg.kind.unit().into(), level, finished: curve });
        });
        run
    });
    let scale = modelled(cfg.time_scale);
    let sampled_from = SystemTime::now();
    let sampler = cfg.metrics_url.as_ref().map(|u| {
        let live = live.clone();
        // Each reading goes to the dashboard as it comes, in modelled time.
        MetricsSampler::start_observed(u.clone(), cfg.metrics_interval, RunClock::start(), move |p| {
            if let Some(live) = &live {
                live.server_sample(ServerPoint {
                    t: p.t * scale,
                    running: p.running,
                    waiting: p.waiting,
                    kv_cache_pct: p.kv_cache_usage.map(|k| k * 100.0),
                });
            }
        })
    });
    let finished_live = live.clone();
    let opts = MeasureOptions {
        slo: cfg.slo,
        time_scale: cfg.time_scale,
        shard: join.clone(),
        keep_records: true,
        // A closed-loop level's warm-up (one request per agent by default)
        // opens its connections before the measured requests.
        preconnect: false,
        ..observers.options(live)
    };
    let backend = meta.model.clone();
    let outcome = measure(store, meta, &plan, client, workload, &opts).await?;
    let run_id = outcome.meta.id;
    // A shard goes on from the level's union, as every shard does.
    let (metrics, records, figures, mut warnings, interrupted, span) = match &join {
        Some(j) => {
            let u = level_union(store, run_id, j, &opts, &backend, scale).await?;
            (u.metrics, u.records, u.figures, u.warnings, u.stopped, Some(u.span))
        }
        None => {
            let records = outcome.records.unwrap_or_default().into_iter().filter(|r| !r.warmup).collect();
            let interrupted = outcome.meta.status == RunStatus::Interrupted;
            (outcome.metrics, records, outcome.figure_keys, Vec::new(), interrupted, None)
        }
    };
    warnings.extend(outcome.figures.warnings);
    let server = match sampler {
        Some(s) => {
            // The sampler's clock is the wall's and started before a shard
            // waited for the others; the records' started at the level's
            // common start and are in modelled time. A shard's readings
            // from before that start are not the level's.
            let waited = span.map_or(0.0, |(start, _)| {
                start - sampled_from.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(start)
            });
            let mut timeline = s.finish().await.timeline;
            timeline.iter_mut().for_each(|p| p.t = (p.t - waited) * scale);
            timeline.retain(|p| p.t >= 0.0);
            Some(ServerLevelStats::from_timeline(timeline)).filter(|s| s.samples > 0)
        }
        None => None,
    };
    let m = MeasuredLevel { level, repeat, run_id, interrupted, metrics, server, records, figures, warnings, span };
    if let Some(live) = finished_live {
        // The finished level joins its own curve.
        live.update(|s| {
            if let Some(c) = s.sweep.as_mut() {
                c.finished.retain(|p| p.level != level);
                c.finished.push(CurvePoint { level, output_tok_s: m.metrics.output_throughput });
                c.finished.sort_by(|a, b| a.level.total_cmp(&b.level));
            }
        });
    }
    if cfg.shard.as_ref().is_none_or(SweepShard::stores) {
        store_level(store, cfg, &m, &label)?;
    }
    Ok(m)
}

/// The time scale figures are multiplied by: 1 unless above zero.
fn modelled(scale: f64) -> f64 {
    if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    }
}

/// Stores a level's figures and the server's timeline with its run.
fn store_level(store: &Store, cfg: &SweepConfig, m: &MeasuredLevel, label: &str) -> Result<(), StoreError> {
    let closed = cfg.kind == LevelKind::Concurrency;
    let record = SweepLevelRecord {
        concurrency: if closed { m.level } else { m.metrics.max_concurrent_requests as f64 },
        rate: (!closed).then_some(m.level),
        label: Some(label.to_string()),
        metrics: without_arrays(&m.metrics),
        server: m.server.clone().map(|mut s| {
            s.timeline.clear();
            s
        }),
    };
    store.put(m.run_id, &cfg.group, &record)?;
    if let Some(server) = &m.server {
        let samples = server.timeline.iter().map(ServerSample::from).collect();
        store.put(m.run_id, &cfg.group, &ServerMetricsRecord { samples })?;
    }
    Ok(())
}
