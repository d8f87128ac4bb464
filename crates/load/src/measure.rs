//! One measured run, as every command that measures does it: store the run,
//! drive the load engine, write each record to the database as it completes,
//! tell the observers (progress, the live bus), stop cleanly when asked,
//! compute the figures, price and meter them, and store the summary.
//!
//! Data flows one way: engine → records → [`RecordWriter`] (on disk at most
//! about 100 ms after each completes) → one pass over the stored records
//! when the run ends ([`streamed_figures`], or [`RunMetrics::compute`] when
//! the records are kept) → the run's summary row and its typed cost and
//! energy records. Nothing grows with the run's length, while it runs or
//! after, unless the records are asked for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fleetbench_client::Client;
use fleetbench_core::metrics::WindowFigures;
use fleetbench_core::streaming::{FigureStream, Limits};
use fleetbench_core::units::rfc3339;
use fleetbench_core::{RequestRecord, RunClock, RunMeta, RunMetrics, RunStatus, Slo};
use fleetbench_econ::instruments::{Instruments, RunFigures};
use fleetbench_econ::records::{CostRecord, EnergyRecord, ShardFiguresRecord};
use fleetbench_store::{RecordWriter, Store, StoreError};
use fleetbench_workload::{RampKind, RampSpec};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::live::{LiveBus, LiveRun, LiveState};
use crate::{RunPlan, Workload};

/// How often a watched run's live figures are refreshed between records.
const LIVE_TICK: Duration = Duration::from_millis(250);

/// Requests in flight, as the live charts show them: the engines count the
/// requests they take (each is sent right after it is taken), the loop that
/// receives the records counts those it received, and what ended but still
/// waits in the channel is added by the caller. Clones share the counts, so
/// several engines (an arena's backends) can feed one figure.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    taken: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
}

impl InFlight {
    /// `workload`, counting every request the engine takes from it.
    pub fn counting(&self, workload: Arc<dyn Workload>) -> Arc<dyn Workload> {
        Arc::new(Counted { inner: workload, taken: self.taken.clone() })
    }

    /// One more record received.
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::SeqCst);
    }

    /// In flight now, given how many ended records still wait in the channel.
    /// Taken is read first: a request counted as taken has either ended
    /// (received or queued) or is out.
    pub fn now(&self, queued: usize) -> u64 {
        let taken = self.taken.load(Ordering::SeqCst);
        taken.saturating_sub(self.received.load(Ordering::SeqCst) + queued as u64)
    }
}

/// The workload as the engine sees it, counting the requests it takes.
struct Counted {
    inner: Arc<dyn Workload>,
    taken: Arc<AtomicU64>,
}

impl Workload for Counted {
    fn request(&self, index: u64, sampling: &fleetbench_core::SamplingParams) -> fleetbench_core::RequestSpec {
        self.taken.fetch_add(1, Ordering::SeqCst);
        self.inner.request(index, sampling)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn distinct_requests(&self) -> Option<u64> {
        self.inner.distinct_requests()
    }
    fn session(&self, index: u64) -> Option<fleetbench_workload::SessionPlan> {
        self.inner.session(index)
    }
    fn turn(
        &self,
        session: &fleetbench_workload::SessionPlan,
        turn: u32,
        history: &[fleetbench_core::ChatMessage],
        history_tokens: u32,
        sampling: &fleetbench_core::SamplingParams,
    ) -> fleetbench_core::RequestSpec {
        self.taken.fetch_add(1, Ordering::SeqCst);
        self.inner.turn(session, turn, history, history_tokens, sampling)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Shard(#[from] crate::shard::ShardError),
    #[error("the load engine stopped unexpectedly: {0}")]
    Engine(String),
}

/// Someone watching a run's progress (the terminal's progress bar).
pub trait Progress: Send + Sync {
    /// The run starts; `total` requests (warm-up included) when known.
    fn start(&self, total: Option<u64>);
    /// One more request completed.
    fn record(&self, ok: u64, failed: u64, output_tok_s: f64);
    /// The run ended.
    fn finish(&self);
}

/// How a run is measured, beyond its plan.
#[derive(Clone, Default)]
pub struct MeasureOptions {
    pub slo: Slo,
    pub max_error_rate: Option<f64>,
    /// The backend runs this many times faster than the hardware it models
    /// (the simulator's `--time-scale`): every instant is multiplied back so
    /// that stored figures are in modelled time. 1 (or 0) for real backends.
    pub time_scale: f64,
    /// Price entry and energy meter (`--price`, `--meter`).
    pub instruments: Option<Arc<Instruments>>,
    /// The dashboard's view of this run (`--dashboard`).
    pub live: Option<LiveRun>,
    pub progress: Option<Arc<dyn Progress>>,
    /// Turns true to stop sending (Ctrl-C): what finished is kept and the
    /// run is marked interrupted.
    pub stop: Option<watch::Receiver<bool>>,
    /// One shard of a run measured by several processes (`--shard`).
    pub shard: Option<crate::shard::ShardJoin>,
    /// Live figures for Prometheus (`--metrics-listen`).
    pub metrics: Option<Arc<crate::exposition::LiveMetrics>>,
    /// Read every record back when the run ends and compute the figures
    /// exactly from them, per-request arrays included (`--json-out`,
    /// `--csv-out`, sweeps, model mixes; shards, ramps and session workloads
    /// always do). Otherwise the figures come from one pass over
    /// the store in bounded memory ([`streamed_figures`]).
    pub keep_records: bool,
    /// Open the connections the run will keep busy (its concurrency, or an
    /// open loop's `max_concurrency`) before its clock starts, as a client
    /// that has been talking to the server has them: the first requests'
    /// time to first token then counts from a request sent on an open
    /// connection, as every later one does, and not from a TCP handshake.
    /// How many answered goes in the run's config as `preconnect`.
    pub preconnect: bool,
}

/// Who watches a command's measured runs besides the store: the same for
/// one run and its repeats ([`crate::repeated`]) and for a sweep's levels
/// ([`crate::sweep::driver`]). `T` is what each measured run is reported as.
pub struct Observers<'a, T> {
    /// Price entry and energy meter (`--price`, `--meter`).
    pub instruments: Option<Arc<Instruments>>,
    /// The dashboard's bus: every measured run appears as a live run.
    pub bus: Option<&'a LiveBus>,
    pub progress: Option<Arc<dyn Progress>>,
    /// Turns true to stop (Ctrl-C): the run in progress keeps what finished
    /// and no other starts.
    pub stop: Option<watch::Receiver<bool>>,
    /// Called once per measured run, as soon as it is stored.
    pub on_measured: Option<&'a mut dyn FnMut(&T)>,
    /// Live figures for Prometheus (`--metrics-listen`).
    pub metrics: Option<Arc<crate::exposition::LiveMetrics>>,
}

impl<T> Default for Observers<'_, T> {
    fn default() -> Self {
        Observers { instruments: None, bus: None, progress: None, stop: None, on_measured: None, metrics: None }
    }
}

impl<T> Observers<'_, T> {
    /// The options of one measured run watched by these observers, shown on
    /// the dashboard as `live`; the rest as [`MeasureOptions::default`].
    pub fn options(&self, live: Option<LiveRun>) -> MeasureOptions {
        MeasureOptions {
            instruments: self.instruments.clone(),
            live,
            progress: self.progress.clone(),
            stop: self.stop.clone(),
            metrics: self.metrics.clone(),
            ..MeasureOptions::default()
        }
    }

    /// Tells the callback, if any.
    pub fn measured(&mut self, what: &T) {
        if let Some(f) = self.on_measured.as_mut() {
            f(what);
        }
    }
}

/// Longest wait for the connections [`MeasureOptions::preconnect`] opens.
const PRECONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections a plan keeps busy at most: a closed loop's agents, an
/// open loop's `max_concurrency` (none when it has no bound).
pub fn preconnections(plan: &RunPlan) -> u32 {
    match plan.schedule {
        fleetbench_workload::Schedule::Closed { concurrency } => concurrency,
        fleetbench_workload::Schedule::Open { max_concurrency, .. } => max_concurrency.unwrap_or(0),
    }
}

/// The cost and energy keys of docs/METRICS.md that a measured run adds to
/// its figures (`--json-out`, `runs export`, sweep levels, the stored
/// summary): flattened beside the [`RunMetrics`] keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FigureKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_million_output_tokens: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_request: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_total: Option<f64>,
    /// The whole price record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<CostRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_output_token_j: Option<f64>,
    /// The whole energy record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<EnergyRecord>,
}

impl FigureKeys {
    pub fn new(cost: Option<CostRecord>, energy: Option<EnergyRecord>) -> FigureKeys {
        FigureKeys {
            usd_per_million_output_tokens: cost.as_ref().and_then(|c| c.figures.usd_per_million_output_tokens),
            usd_per_request: cost.as_ref().and_then(|c| c.figures.usd_per_request),
            usd_total: cost.as_ref().and_then(|c| c.figures.usd_total),
            price: cost,
            energy_per_output_token_j: energy.as_ref().and_then(|e| e.energy_per_output_token_j),
            energy,
        }
    }

    /// The keys of a stored run, read from its cost and energy records.
    pub fn stored(store: &Store, run_id: i64) -> Result<FigureKeys, StoreError> {
        Ok(FigureKeys::new(store.get_first::<CostRecord>(run_id)?, store.get_first::<EnergyRecord>(run_id)?))
    }
}

/// A run's stored summary (the `summary_json` of its row): every figure but
/// the per-request arrays, which the request rows already hold, plus the
/// cost and energy keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub metrics: RunMetrics,
    #[serde(flatten)]
    pub figures: FigureKeys,
}

impl RunSummary {
    pub fn new(metrics: &RunMetrics, figures: FigureKeys) -> RunSummary {
        RunSummary { metrics: without_arrays(metrics), figures }
    }
}

/// The figures without the per-request arrays.
pub fn without_arrays(m: &RunMetrics) -> RunMetrics {
    let mut m = m.clone();
    m.ttfts.clear();
    m.itls.clear();
    m.latencies.clear();
    m.input_lens.clear();
    m.output_lens.clear();
    m.errors.clear();
    m.request_sessions.clear();
    m.request_turns.clear();
    m
}

/// What a measured run produced.
pub struct MeasureOutcome {
    pub meta: RunMeta,
    pub metrics: RunMetrics,
    /// Every record, warm-up included, in index order, when
    /// [`MeasureOptions::keep_records`] asked for them.
    pub records: Option<Vec<RequestRecord>>,
    /// Cost and energy, when the run was priced or metered, with warnings.
    pub figures: RunFigures,
    /// The same under docs/METRICS.md's key names, as stored with the run.
    pub figure_keys: FigureKeys,
}

/// Runs the plan against `client` and stores everything: the run row (its
/// id is assigned here), every record as it completes, the summary, and the
/// cost and energy records.
pub async fn measure(
    store: &Store,
    mut meta: RunMeta,
    plan: &RunPlan,
    client: &Client,
    workload: Arc<dyn Workload>,
    opts: &MeasureOptions,
) -> Result<MeasureOutcome, MeasureError> {
    let scale = if opts.time_scale > 0.0 { opts.time_scale } else { 1.0 };
    if opts.preconnect {
        let wanted = preconnections(plan);
        if wanted > 0 {
            let answered = client.preconnect(wanted as usize, PRECONNECT_TIMEOUT).await;
            if let Some(config) = meta.config.as_object_mut() {
                config.insert("preconnect".into(), serde_json::json!(answered));
            }
        }
    }
    meta.id = match &opts.shard {
        Some(j) => crate::shard::join(store, &meta, j).await?,
        None => store.create_run(&meta)?,
    };
    let has_sessions = workload.session(0).is_some();
    let workload = match &opts.shard {
        Some(j) => j.workload(workload),
        None => workload,
    };
    let workload = match &opts.metrics {
        Some(m) => {
            let (run, shard) = match &opts.shard {
                Some(j) => (j.key.clone(), j.shard.to_string()),
                None => (meta.id.to_string(), "0/1".to_string()),
            };
            m.start_run(&run, &shard);
            m.counting(workload)
        }
        None => workload,
    };
    let writer = match &opts.shard {
        Some(j) => RecordWriter::for_shard(store.db(), meta.id, j.shard.index)?,
        None => RecordWriter::start(store.db(), meta.id)?,
    };
    let clock = RunClock::start();
    let metering = match &opts.instruments {
        Some(i) => Some(i.begin(&clock, scale).await),
        None => None,
    };
    if let Some(live) = &opts.live {
        live.update(|s| {
            s.run_id = Some(meta.id);
            s.total = plan.stop.requests;
            s.in_flight = 0;
            s.time_scale = (scale != 1.0).then_some(scale);
        });
    }
    let in_flight = InFlight::default();
    let workload: Arc<dyn Workload> = match &opts.live {
        Some(_) => in_flight.counting(workload),
        None => workload,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop_rx = opts.stop.clone().unwrap_or_else(|| watch::channel(false).1);
    let engine = {
        let plan = plan.clone();
        let client = client.clone();
        tokio::spawn(async move { crate::run(&plan, &client, workload, clock, tx, stop_rx).await })
    };

    if let Some(p) = &opts.progress {
        p.start(plan.stop.requests.map(|n| n + plan.warmup));
    }
    // Records are not kept here while the run lasts: each goes to the store
    // and is read back at the end, so memory stays flat however long the
    // run (the soak checks it) and the figures come from what is stored.
    let (mut ok, mut failed, mut tokens) = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(LIVE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut rec = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => r,
                None => break,
            },
            _ = tick.tick(), if opts.live.is_some() => {
                if let Some(live) = &opts.live {
                    live.tick(clock.now() * scale, Some(in_flight.now(rx.len())));
                }
                continue;
            }
        };
        in_flight.received();
        if scale != 1.0 {
            rescale(&mut rec, scale);
        }
        if rec.ok() {
            ok += 1;
            tokens += rec.output_tokens;
        } else {
            failed += 1;
        }
        let elapsed = (clock.now() * scale).max(1e-9);
        if let Some(p) = &opts.progress {
            p.record(ok, failed, tokens as f64 / elapsed);
        }
        if let Some(live) = &opts.live {
            live.observe(&rec, elapsed);
        }
        if let Some(m) = &opts.metrics {
            m.observe(&rec);
        }
        if let Some(j) = &opts.shard {
            rec.index = j.shard.global_index(rec.index);
        }
        if !writer.write(rec) {
            break;
        }
    }
    let report = engine.await.map_err(|e| MeasureError::Engine(e.to_string()))?;
    if let Some(p) = &opts.progress {
        p.finish();
    }
    writer.finish()?;

    let target = plan.schedule.target_concurrency();
    // Shards (their own records of the union), ramps (per-window figures)
    // and session workloads (per-session figures) need every record.
    let exact = opts.keep_records || opts.shard.is_some() || plan.ramp.is_some() || has_sessions;
    let (metrics, records, measured) = if exact {
        let mut records = store.records(meta.id)?;
        if let Some(j) = &opts.shard {
            records.retain(|r| j.shard.owns(r.index));
        }
        let spans = fleetbench_core::streaming::Spans::of(&records);
        let mut metrics = RunMetrics::compute(&records, &opts.slo, target);
        if let Some(ramp) = &plan.ramp {
            metrics.windows = ramp_windows(&records, ramp, scale);
        }
        (metrics, Some(records), (spans.start, spans.end))
    } else {
        let spans = store.spans(meta.id)?;
        let measured = (spans.start, spans.end);
        (streamed_figures(store, meta.id, spans, &opts.slo, target)?, None, measured)
    };
    meta.status = if report.interrupted {
        RunStatus::Interrupted
    } else if opts.max_error_rate.is_some_and(|f| metrics.sent > 0 && metrics.error_rate() > f) {
        RunStatus::ErrorRateExceeded
    } else {
        RunStatus::Completed
    };
    meta.ended_at = Some(rfc3339(SystemTime::now()));
    meta.pid = None;
    let figures = match metering {
        Some(m) => m.finish(&meta.model, &metrics, measured).await,
        None => RunFigures::default(),
    };
    match &opts.shard {
        // A shard's cost and energy are its part; the last shard stores the union's.
        Some(j) => {
            let part = ShardFiguresRecord {
                host: meta.host.clone(),
                cost: figures.cost.clone(),
                energy: figures.energy.clone(),
                timeline: figures.timeline.clone(),
            };
            store.put(meta.id, &j.shard.to_string(), &part)?;
        }
        None => {
            if let Some(c) = &figures.cost {
                store.put(meta.id, &c.backend, c)?;
            }
            if let Some(e) = &figures.energy {
                store.put(meta.id, &e.backend, e)?;
            }
            if let Some(t) = &figures.timeline {
                store.put(meta.id, &meta.model, t)?;
            }
        }
    }
    let figure_keys = FigureKeys::new(figures.cost.clone(), figures.energy.clone());
    let summary = serde_json::to_value(RunSummary::new(&metrics, figure_keys.clone()))
        .map_err(|e| StoreError::Corrupt { run: meta.id, why: format!("summary: {e}") })?;
    let ended_at = meta.ended_at.as_deref().unwrap_or("");
    match &opts.shard {
        Some(j) => crate::shard::finish(store, meta.id, j, meta.status, ended_at, opts, &meta.model)?,
        None => store.finish_run(meta.id, meta.status, ended_at, Some(&summary))?,
    }
    if let Some(live) = &opts.live {
        live.finish(match meta.status {
            RunStatus::Interrupted => LiveState::Interrupted,
            RunStatus::ErrorRateExceeded => LiveState::Failed,
            _ => LiveState::Finished,
        });
    }
    Ok(MeasureOutcome { meta, metrics, records, figures, figure_keys })
}

/// The figures of each window of a ramp. The ramp starts with the first
/// arrival (a rate ramp's arrivals include the warm-up) or with the first
/// measured agent (a concurrency ramp starts after the warm-up). The ramp
/// runs on the wall clock; against a backend `time_scale` times faster
/// than the hardware it models, the records are in modelled time, so its
/// windows are `time_scale` times longer and its rates that much lower.
pub fn ramp_windows(records: &[RequestRecord], ramp: &RampSpec, time_scale: f64) -> Vec<WindowFigures> {
    let scale = if time_scale > 0.0 { time_scale } else { 1.0 };
    let from = |warmup_too: bool| {
        records.iter().filter(|r| warmup_too || !r.warmup).map(|r| r.t_sched).fold(f64::INFINITY, f64::min)
    };
    let origin = from(ramp.kind == RampKind::Rate);
    if !origin.is_finite() {
        return Vec::new();
    }
    let level = |l: f64| if ramp.kind == RampKind::Rate { l / scale } else { l };
    let windows: Vec<(f64, f64, f64)> =
        ramp.windows().iter().map(|w| (w.start_s * scale, w.end_s * scale, level(w.level))).collect();
    WindowFigures::compute(records, origin, &windows)
}

/// Run `id`'s figures (its measured `spans` given) from one pass over its
/// stored records in bounded memory ([`Limits::BOUNDED`], about 4 MB at
/// most): exactly [`RunMetrics::compute`]'s up to those sizes; beyond them
/// the percentiles are within 0.05 %
/// ([`HISTOGRAM_RELATIVE_ERROR`](fleetbench_core::streaming::HISTOGRAM_RELATIVE_ERROR))
/// and the intervals come from a reservoir. No per-request arrays.
pub fn streamed_figures(
    store: &Store,
    id: i64,
    spans: fleetbench_core::streaming::Spans,
    slo: &Slo,
    target_concurrency: Option<u32>,
) -> Result<RunMetrics, StoreError> {
    let mut stream = FigureStream::new(spans, slo, target_concurrency, Limits::BOUNDED);
    store.for_each_record(id, |r| stream.add(&r))?;
    Ok(stream.finish(store.max_in_flight(id)?))
}

/// Multiplies every instant and gap of a record by `scale`.
fn rescale(r: &mut RequestRecord, scale: f64) {
    for t in [&mut r.t_sched, &mut r.t_send, &mut r.t_end] {
        *t *= scale;
    }
    let optional = [
        &mut r.t_first_byte,
        &mut r.t_first_token,
        &mut r.t_last_token,
        &mut r.t_first_answer_token,
        &mut r.t_first_tool_token,
    ];
    for t in optional.into_iter().flatten() {
        *t *= scale;
    }
    for g in &mut r.itl {
        *g *= scale;
    }
}

/// A stored run read back: its row, every record, the figures recomputed
/// from the records exactly as [`measure`] computed them (the stored SLOs
/// and target concurrency; so an incomplete run shows what it had), and its
/// cost and energy keys.
pub struct StoredMeasurement {
    pub meta: RunMeta,
    pub metrics: RunMetrics,
    pub records: Vec<RequestRecord>,
    pub figures: FigureKeys,
}

/// Reads run `id` back from the store.
pub fn reload(store: &Store, id: i64) -> Result<StoredMeasurement, StoreError> {
    let run = store.run(id)?;
    let records = store.records(id)?;
    let config = run.meta.run_config();
    let mut metrics = RunMetrics::compute(&records, &config.slo.unwrap_or_default(), config.concurrency);
    if let Some(ramp) = config.ramp.as_deref().and_then(|r| RampSpec::parse(r).ok()) {
        metrics.windows = ramp_windows(&records, &ramp, config.time_scale.unwrap_or(1.0));
    }
    Ok(StoredMeasurement { meta: run.meta, metrics, records, figures: FigureKeys::stored(store, id)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescaling_a_record_scales_every_instant_it_holds() {
        let mut r = RequestRecord {
            t_sched: 1.0,
            t_send: 1.5,
            t_first_byte: Some(2.0),
            t_first_token: Some(2.0),
            t_first_answer_token: Some(2.5),
            t_first_tool_token: Some(3.0),
            t_last_token: Some(4.0),
            t_end: 4.0,
            itl: vec![0.5],
            ..Default::default()
        };
        rescale(&mut r, 20.0);
        assert_eq!((r.t_sched, r.t_send, r.t_end), (20.0, 30.0, 80.0));
        assert_eq!((r.t_first_byte, r.t_first_token, r.t_last_token), (Some(40.0), Some(40.0), Some(80.0)));
        // The answer's and the tool call's first tokens stay after the send.
        assert_eq!((r.t_first_answer_token, r.t_first_tool_token), (Some(50.0), Some(60.0)));
        assert_eq!(r.answer_ttft(), Some(20.0));
        assert_eq!(r.itl, vec![10.0]);
    }
}
