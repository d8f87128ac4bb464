//! Runs in progress as the dashboard (and anything else watching) sees them: a [`LiveBus`] of
//! [`LiveRun`]s, each holding its latest [`LiveSnapshot`] in a
//! `tokio::sync::watch` channel. Producers overwrite the snapshot; readers
//! look at it when they want to, so a run never waits on a browser.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetbench_core::RequestRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Seconds of completed requests the rolling figures cover.
pub const ROLLING_WINDOW_S: f64 = 10.0;

/// Most finished runs kept on the bus (newest kept) for late viewers.
const FINISHED_KEPT: usize = 16;

/// Most points a chart's series holds. When a series is full every other
/// point goes and the spacing between points doubles, so a long run keeps
/// its whole history at a coarser grain and a snapshot stays small.
pub const SERIES_POINTS: usize = 240;

/// Least wall-clock time between two points of [`LiveSnapshot::series`]
/// at the start of a run (it doubles each time the series is thinned).
pub const POINT_EVERY: Duration = Duration::from_millis(250);

/// One instant of a run as its charts draw it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LivePoint {
    /// Seconds on the run's clock (modelled time on a time-scaled backend).
    pub t: f64,
    /// Aggregate output tok/s over the last [`ROLLING_WINDOW_S`] seconds.
    pub output_tok_s: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    /// Requests out at that instant, when the producer knows (see
    /// [`LiveRun::tick`]).
    pub in_flight: Option<u64>,
    /// Failed requests per second since the previous point.
    pub errors_per_s: f64,
}

/// One reading of the server's `/metrics` as the charts draw it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ServerPoint {
    /// Seconds on the run's clock.
    pub t: f64,
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    /// KV-cache use, 0–100 %.
    pub kv_cache_pct: Option<f64>,
}

/// A finished level of a sweep: the sweep's curve so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct CurvePoint {
    pub level: f64,
    /// The level's aggregate output tok/s (its `output_throughput`).
    pub output_tok_s: f64,
}

/// Where a sweep's level stands on the sweep's curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SweepCurve {
    /// `agents` or `req/s`.
    pub unit: String,
    /// This level.
    pub level: f64,
    /// The levels of the same sweep finished so far (this one too, once it
    /// is finished), in level order, repeats averaged.
    pub finished: Vec<CurvePoint>,
}

/// Where a live run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    #[default]
    Running,
    Finished,
    Failed,
    Interrupted,
}

/// One backend's line in the arena leaderboard (score 0–100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LeaderboardRow {
    pub backend: String,
    pub score: f64,
    pub ci_lo: Option<f64>,
    pub ci_hi: Option<f64>,
    pub answered: u64,
    pub failed: u64,
    /// Investigate mode's further figures; absent in triage mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub investigate: Option<InvestigateFigures>,
}

/// One backend's investigate-mode figures beside its score: the subsets,
/// the error rates (shares, 0 to 1), the medians per episode and the cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InvestigateFigures {
    pub single_fault_score: f64,
    pub beyond_runbook_score: f64,
    pub false_positive_rate: f64,
    pub over_remediation_rate: f64,
    pub unanswered_rate: f64,
    pub ttd_p50_s: f64,
    pub ttd_p90_s: f64,
    pub tool_calls_p50: f64,
    pub tokens_p50: f64,
    pub usd_per_incident: Option<f64>,
    pub usd_per_day: Option<f64>,
}

/// One scenario's scores across backends (backend -> mean score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ScenarioRow {
    pub scenario: String,
    pub scores: BTreeMap<String, f64>,
}

/// What a browser sees of a run in progress. Every text field may hold
/// model or server text; the page inserts it as text, never as markup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LiveSnapshot {
    /// Bus-assigned id (set by the bus).
    pub live_id: u64,
    /// The stored run's id, once it has one (links to its report).
    pub run_id: Option<i64>,
    /// `run`, `sweep` or `aiops`.
    pub kind: String,
    pub title: String,
    pub backend: String,
    pub model: String,
    pub state: LiveState,
    pub elapsed_s: f64,
    /// Requests (or episodes) finished, of `total` when known.
    pub done: u64,
    pub total: Option<u64>,
    pub failed: u64,
    pub in_flight: u64,
    /// The sweep level now measured (`c=8`).
    pub level: Option<String>,
    /// Aggregate output tok/s over the last [`ROLLING_WINDOW_S`] seconds.
    pub output_tok_s: f64,
    /// Mean per-request decode tok/s over the window.
    pub per_request_tok_s: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub tpot_p50_ms: Option<f64>,
    pub e2el_p50_ms: Option<f64>,
    /// Failed requests by error label, whole run.
    pub errors: BTreeMap<String, u64>,
    pub last_error: Option<String>,
    /// Arena only: best first.
    pub leaderboard: Vec<LeaderboardRow>,
    pub scenarios: Vec<ScenarioRow>,
    /// Investigate mode only: the best constant answer's score (the floor
    /// every backend must beat), as a row named `floor`.
    #[serde(default)]
    pub floor: Option<LeaderboardRow>,
    /// Arena only: the latest scored answer (shown as text).
    pub last_answer: Option<String>,
    /// The run over time, oldest first, at most [`SERIES_POINTS`].
    #[serde(default)]
    pub series: Vec<LivePoint>,
    /// The server's `/metrics` over time, when they are sampled.
    #[serde(default)]
    pub server: Vec<ServerPoint>,
    /// Sweeps only: the curve of aggregate tok/s against level.
    #[serde(default)]
    pub sweep: Option<SweepCurve>,
    /// Above 1: the backend runs this many times faster than the hardware
    /// it models, and every figure here is in modelled time.
    #[serde(default)]
    pub time_scale: Option<f64>,
}

/// What a producer says about a run when it starts.
#[derive(Debug, Clone, Default)]
pub struct LiveRunInfo {
    pub kind: String,
    pub title: String,
    pub backend: String,
    pub model: String,
    pub run_id: Option<i64>,
    pub total: Option<u64>,
}

struct Slot {
    id: u64,
    tx: watch::Sender<LiveSnapshot>,
}

struct BusInner {
    next_id: AtomicU64,
    slots: Mutex<Vec<Slot>>,
    /// Bumped when a run joins or leaves the bus.
    roster: watch::Sender<u64>,
}

/// The set of runs in progress, shared by producers and the dashboard.
/// Cheap to clone; all clones are the same bus.
#[derive(Clone)]
pub struct LiveBus {
    inner: Arc<BusInner>,
}

impl std::fmt::Debug for LiveBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveBus").field("runs", &self.len()).finish()
    }
}

impl Default for LiveBus {
    fn default() -> Self {
        LiveBus::new()
    }
}

impl LiveBus {
    pub fn new() -> LiveBus {
        LiveBus {
            inner: Arc::new(BusInner {
                next_id: AtomicU64::new(1),
                slots: Mutex::new(Vec::new()),
                roster: watch::channel(0).0,
            }),
        }
    }

    /// Registers a run and returns the handle its producer publishes with.
    pub fn start(&self, info: LiveRunInfo) -> LiveRun {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let first = LiveSnapshot {
            live_id: id,
            run_id: info.run_id,
            kind: info.kind,
            title: info.title,
            backend: info.backend,
            model: info.model,
            total: info.total,
            ..Default::default()
        };
        let (tx, _) = watch::channel(first);
        {
            let mut slots = self.lock();
            slots.push(Slot { id, tx: tx.clone() });
            prune_finished(&mut slots);
        }
        self.inner.roster.send_modify(|v| *v += 1);
        LiveRun { inner: Arc::new(RunInner { id, tx, window: Mutex::new(Rolling::default()), bus: self.clone() }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of runs on the bus (running and recently finished).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest snapshot of every run, in start order.
    pub fn snapshots(&self) -> Vec<LiveSnapshot> {
        self.lock().iter().map(|s| s.tx.borrow().clone()).collect()
    }

    /// Removes a run from the bus.
    pub fn remove(&self, live_id: u64) {
        self.lock().retain(|s| s.id != live_id);
        self.inner.roster.send_modify(|v| *v += 1);
    }

    /// A reader's view: receivers for every run plus the roster.
    pub fn subscribe(&self) -> (watch::Receiver<u64>, Vec<watch::Receiver<LiveSnapshot>>) {
        let mut roster = self.inner.roster.subscribe();
        roster.borrow_and_update();
        let runs = self.lock().iter().map(|s| s.tx.subscribe()).collect();
        (roster, runs)
    }
}

fn prune_finished(slots: &mut Vec<Slot>) {
    let finished: Vec<u64> = slots.iter().filter(|s| s.tx.borrow().state != LiveState::Running).map(|s| s.id).collect();
    if finished.len() > FINISHED_KEPT {
        let drop: Vec<u64> = finished[..finished.len() - FINISHED_KEPT].to_vec();
        slots.retain(|s| !drop.contains(&s.id));
    }
}

struct RunInner {
    id: u64,
    tx: watch::Sender<LiveSnapshot>,
    window: Mutex<Rolling>,
    bus: LiveBus,
}

/// A producer's handle on one live run. Cheap to clone; clones publish to
/// the same run.
#[derive(Clone)]
pub struct LiveRun {
    inner: Arc<RunInner>,
}

impl std::fmt::Debug for LiveRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRun").field("live_id", &self.inner.id).finish()
    }
}

impl LiveRun {
    /// The bus-assigned id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Whether any browser is streaming updates now. Producers may skip
    /// building costly snapshots when not.
    pub fn watched(&self) -> bool {
        self.inner.tx.receiver_count() > 0
    }

    /// Replaces the snapshot (its `live_id` is kept).
    pub fn publish(&self, mut snapshot: LiveSnapshot) {
        snapshot.live_id = self.inner.id;
        self.inner.tx.send_replace(snapshot);
    }

    /// Changes the snapshot in place; adds a point to its series when one
    /// is due (see [`POINT_EVERY`]).
    pub fn update(&self, f: impl FnOnce(&mut LiveSnapshot)) {
        let mut w = self.window();
        self.inner.tx.send_modify(|s| {
            f(s);
            s.live_id = self.inner.id;
            if w.point_due() {
                let now = s.elapsed_s;
                w.apply(s, now);
                w.add_point(s);
            }
        });
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Rolling> {
        self.inner.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The run's clock says `now` and `in_flight` requests are out (when
    /// known): the rolling figures follow (they fall when nothing
    /// finishes) and a point is added when one is due. Producers call it a
    /// few times a second.
    pub fn tick(&self, now: f64, in_flight: Option<u64>) {
        let mut w = self.window();
        self.inner.tx.send_modify(|s| {
            s.elapsed_s = now;
            if let Some(n) = in_flight {
                s.in_flight = n;
            }
            w.in_flight_known |= in_flight.is_some();
            w.apply(s, now);
            if w.point_due() {
                w.add_point(s);
            }
        });
    }

    /// Adds a reading of the server's `/metrics` (its `t` on the run's
    /// clock) to [`LiveSnapshot::server`].
    pub fn server_sample(&self, point: ServerPoint) {
        let mut w = self.window();
        // Once thinned, only every `stride`-th reading is kept, so the
        // spacing stays even along the series.
        w.server_readings += 1;
        if !(w.server_readings - 1).is_multiple_of(w.server_stride) {
            return;
        }
        self.inner.tx.send_modify(|s| {
            if push_bounded(&mut s.server, point) {
                w.server_stride *= 2;
            }
        });
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> LiveSnapshot {
        self.inner.tx.borrow().clone()
    }

    /// Counts a finished request and refreshes the rolling figures. `now`
    /// and the record's instants are seconds on the run's clock.
    pub fn observe(&self, record: &RequestRecord, now: f64) {
        if record.warmup {
            return;
        }
        let mut w = self.window();
        w.push(record);
        let watched = self.watched();
        let due = w.point_due();
        self.inner.tx.send_modify(|s| {
            s.live_id = self.inner.id;
            s.elapsed_s = now;
            if let Some(e) = &record.error {
                s.failed += 1;
                *s.errors.entry(e.label()).or_default() += 1;
                let msg: String = e.message.chars().take(300).collect();
                s.last_error = Some(msg);
            } else {
                s.done += 1;
            }
            // The percentiles are only worth computing for someone, or
            // for the charts.
            if watched || due {
                w.apply(s, now);
            }
            if due {
                w.add_point(s);
            }
        });
    }

    /// Adds a finished request's timing (tokens, TTFT, TPOT) to the rolling
    /// figures without counting it: for producers that count requests
    /// themselves (the arena counts answers) and keep their own clock. The
    /// request counts as ended at the snapshot's `elapsed_s`.
    pub fn observe_timing(&self, record: &RequestRecord) {
        if record.warmup {
            return;
        }
        let mut w = self.window();
        let watched = self.watched();
        let due = w.point_due();
        self.inner.tx.send_modify(|s| {
            let now = s.elapsed_s;
            w.push_at(record, now);
            if watched || due {
                w.apply(s, now);
            }
            if due {
                w.add_point(s);
            }
        });
    }

    /// Marks the run as ended; it stays on the bus for late viewers. The
    /// series ends with a point at the end.
    pub fn finish(&self, state: LiveState) {
        {
            let mut w = self.window();
            self.inner.tx.send_modify(|s| {
                s.state = state;
                let now = s.elapsed_s;
                w.apply(s, now);
                w.add_point(s);
            });
        }
        let mut slots = self.inner.bus.lock();
        prune_finished(&mut slots);
    }
}

/// One completed request as the rolling window keeps it.
struct Finished {
    end: f64,
    tokens: u64,
    ttft_ms: Option<f64>,
    tpot_ms: Option<f64>,
    e2el_ms: Option<f64>,
    tok_s: Option<f64>,
}

/// Appends `p`, thinning the series to every other point when full.
fn push_bounded<T>(v: &mut Vec<T>, p: T) -> bool {
    let thinned = v.len() >= SERIES_POINTS;
    if thinned {
        let mut i = 0;
        v.retain(|_| {
            i += 1;
            i % 2 == 1
        });
    }
    v.push(p);
    thinned
}

struct Rolling {
    done: VecDeque<Finished>,
    /// When the series got its latest point, and the spacing it keeps.
    last_point: Option<Instant>,
    every: Duration,
    /// Failed requests when the latest point was added.
    failed_at_last: u64,
    /// A record has been pushed.
    seen: bool,
    /// Server readings offered, and how many of them make one point.
    server_readings: u64,
    server_stride: u64,
    /// The producer reports requests in flight (through `tick`).
    in_flight_known: bool,
}

impl Default for Rolling {
    fn default() -> Self {
        Rolling {
            done: VecDeque::new(),
            last_point: None,
            every: POINT_EVERY,
            failed_at_last: 0,
            seen: false,
            server_readings: 0,
            server_stride: 1,
            in_flight_known: false,
        }
    }
}

impl Rolling {
    fn point_due(&self) -> bool {
        self.last_point.is_none_or(|t| t.elapsed() >= self.every)
    }

    /// Adds the snapshot's figures now as a point of its series.
    fn add_point(&mut self, s: &mut LiveSnapshot) {
        self.last_point = Some(Instant::now());
        let t = s.elapsed_s;
        if let Some(last) = s.series.last_mut().filter(|p| t <= p.t) {
            // The run's clock has not moved since: refresh that point.
            last.output_tok_s = s.output_tok_s;
            last.ttft_p50_ms = s.ttft_p50_ms;
            last.ttft_p99_ms = s.ttft_p99_ms;
            last.in_flight = self.in_flight_known.then_some(s.in_flight);
            return;
        }
        let since = s.series.last().map_or(0.0, |p| p.t);
        let errors_per_s =
            if t > since { s.failed.saturating_sub(self.failed_at_last) as f64 / (t - since) } else { 0.0 };
        self.failed_at_last = s.failed;
        let point = LivePoint {
            t,
            output_tok_s: s.output_tok_s,
            ttft_p50_ms: s.ttft_p50_ms,
            ttft_p99_ms: s.ttft_p99_ms,
            in_flight: self.in_flight_known.then_some(s.in_flight),
            errors_per_s,
        };
        if push_bounded(&mut s.series, point) {
            self.every *= 2;
        }
    }

    fn push(&mut self, r: &RequestRecord) {
        self.push_at(r, r.t_end);
    }

    /// Keeps `r` as ending at `end` on the window's clock.
    fn push_at(&mut self, r: &RequestRecord, end: f64) {
        self.seen = true;
        if r.ok() {
            let ms = |x: Option<f64>| x.map(|v| v * 1000.0);
            self.done.push_back(Finished {
                end,
                tokens: r.output_tokens,
                ttft_ms: ms(r.ttft()),
                tpot_ms: ms(r.tpot()),
                e2el_ms: ms(r.e2el()),
                tok_s: r.tok_s(),
            });
        }
    }

    /// Sets the rolling figures from the window, once it has seen a
    /// record (producers without records set their own figures).
    fn apply(&mut self, s: &mut LiveSnapshot, now: f64) {
        if !self.seen {
            return;
        }
        while self.done.front().is_some_and(|d| d.end < now - ROLLING_WINDOW_S) {
            self.done.pop_front();
        }
        let span = ROLLING_WINDOW_S.min(now.max(1e-3));
        s.output_tok_s = self.done.iter().map(|d| d.tokens as f64).sum::<f64>() / span;
        let col = |f: fn(&Finished) -> Option<f64>| -> Vec<f64> { self.done.iter().filter_map(f).collect() };
        let ttft = col(|d| d.ttft_ms);
        let tpot = col(|d| d.tpot_ms);
        let e2el = col(|d| d.e2el_ms);
        let tok_s = col(|d| d.tok_s);
        use fleetbench_core::stats::{mean, percentile};
        s.ttft_p50_ms = percentile(&ttft, 50.0);
        s.ttft_p99_ms = percentile(&ttft, 99.0);
        s.tpot_p50_ms = percentile(&tpot, 50.0);
        s.e2el_p50_ms = percentile(&e2el, 50.0);
        s.per_request_tok_s = mean(&tok_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench_core::{ErrorKind, RequestError};
    use fleetbench_testkit::RecordBuilder;

    fn rec(i: u64, end: f64, ok: bool) -> RequestRecord {
        let r = RecordBuilder::bare(i).send(end - 1.0).end(end);
        if ok {
            r.first_token(end - 0.9).last_token(end).output_tokens(10).build()
        } else {
            r.error(RequestError::new(ErrorKind::Other, "<b>boom</b>")).build()
        }
    }

    #[test]
    fn publishing_without_viewers_keeps_the_latest_snapshot() {
        let bus = LiveBus::new();
        let run = bus.start(LiveRunInfo { kind: "run".into(), title: "t".into(), ..Default::default() });
        assert!(!run.watched());
        run.update(|s| s.done = 3);
        run.update(|s| s.done = 4);
        assert_eq!(bus.snapshots()[0].done, 4);
        let (_roster, rx) = bus.subscribe();
        assert!(run.watched());
        assert_eq!(rx[0].borrow().done, 4);
    }

    #[test]
    fn observe_counts_and_rolls_when_watched() {
        let bus = LiveBus::new();
        let run = bus.start(LiveRunInfo::default());
        let (_r, _rx) = bus.subscribe();
        run.observe(&rec(0, 1.0, true), 1.0);
        run.observe(&rec(1, 2.0, true), 2.0);
        run.observe(&rec(2, 2.5, false), 2.5);
        let s = run.snapshot();
        assert_eq!((s.done, s.failed), (2, 1));
        assert_eq!(s.errors.get("other"), Some(&1));
        assert_eq!(s.last_error.as_deref(), Some("<b>boom</b>"));
        assert!((s.output_tok_s - 20.0 / 2.5).abs() < 1e-9, "{}", s.output_tok_s);
        assert!((s.ttft_p50_ms.unwrap() - 100.0).abs() < 1e-6);
        // Outside the window the rate falls back to zero.
        run.observe(&rec(3, 30.0, false), 30.0);
        assert_eq!(run.snapshot().output_tok_s, 0.0);
    }

    #[test]
    fn unwatched_runs_count_but_skip_the_percentiles() {
        let bus = LiveBus::new();
        let run = bus.start(LiveRunInfo::default());
        let slow = |i: u64, end: f64| {
            RecordBuilder::bare(i)
                .send(end - 1.0)
                .first_token(end - 0.5)
                .last_token(end)
                .end(end)
                .output_tokens(10)
                .build()
        };
        // The first record makes the series' first point, with figures.
        run.observe(&rec(0, 1.0, true), 1.0);
        assert!((run.snapshot().ttft_p50_ms.unwrap() - 100.0).abs() < 1e-6);
        // Until the next point is due, nobody watching means no percentiles.
        run.observe(&slow(1, 1.5), 1.5);
        run.observe(&slow(2, 1.6), 1.6);
        let s = run.snapshot();
        assert_eq!(s.done, 3);
        assert!((s.ttft_p50_ms.unwrap() - 100.0).abs() < 1e-6, "percentiles are computed only for a viewer");
        let (_roster, _rx) = bus.subscribe();
        run.observe(&slow(3, 2.0), 2.0);
        assert!((run.snapshot().ttft_p50_ms.unwrap() - 500.0).abs() < 1e-6);
    }

    #[test]
    fn finished_runs_are_pruned_oldest_first() {
        let bus = LiveBus::new();
        let runs: Vec<LiveRun> = (0..FINISHED_KEPT + 3).map(|_| bus.start(LiveRunInfo::default())).collect();
        for r in &runs {
            r.finish(LiveState::Finished);
        }
        assert_eq!(bus.len(), FINISHED_KEPT);
        assert_eq!(bus.snapshots()[0].live_id, runs[3].id());
    }

    #[test]
    fn a_series_stays_bounded_and_keeps_its_ends() {
        let mut v = Vec::new();
        let mut thinned = 0;
        for i in 0..1000u32 {
            thinned += u32::from(push_bounded(&mut v, i));
            assert!(v.len() <= SERIES_POINTS + 1);
        }
        assert!(thinned >= 3, "{thinned}");
        assert_eq!((v[0], *v.last().unwrap()), (0, 999));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn points_carry_rates_in_flight_and_errors() {
        let bus = LiveBus::new();
        let run = bus.start(LiveRunInfo::default());
        run.observe(&rec(0, 1.0, false), 1.0);
        let s = run.snapshot();
        assert_eq!(s.series.len(), 1, "the first record makes the first point");
        assert_eq!((s.series[0].t, s.series[0].errors_per_s), (1.0, 1.0));
        // Within POINT_EVERY no new point: the rest only counts.
        run.observe(&rec(1, 1.5, true), 1.5);
        assert_eq!(run.snapshot().series.len(), 1);
        std::thread::sleep(POINT_EVERY + Duration::from_millis(20));
        run.tick(2.0, Some(3));
        let s = run.snapshot();
        assert_eq!(s.series.len(), 2);
        let p = s.series[1];
        assert_eq!((p.t, p.in_flight, p.errors_per_s), (2.0, Some(3), 0.0));
        assert_eq!(s.series[0].in_flight, None, "not known before the first tick");
        assert!((p.output_tok_s - 10.0 / 2.0).abs() < 1e-9, "{p:?}");
        assert!(p.ttft_p50_ms.is_some());
        run.finish(LiveState::Finished);
        assert_eq!(run.snapshot().series.len(), 2, "the same instant refreshes the last point");
    }

    #[test]
    fn figures_a_producer_sets_itself_are_kept() {
        let bus = LiveBus::new();
        let run = bus.start(LiveRunInfo::default());
        run.update(|s| {
            s.elapsed_s = 3.0;
            s.output_tok_s = 42.0;
            s.failed = 6;
        });
        let s = run.snapshot();
        assert_eq!(s.output_tok_s, 42.0);
        assert_eq!(s.series.len(), 1);
        assert_eq!((s.series[0].output_tok_s, s.series[0].errors_per_s), (42.0, 2.0));
    }

    #[test]
    fn server_readings_stay_bounded_and_evenly_spaced() {
        let bus = LiveBus::new();
        let run = bus.start(LiveRunInfo::default());
        for i in 0..2000u32 {
            run.server_sample(ServerPoint { t: i as f64, running: Some(1.0), ..Default::default() });
        }
        let s = run.snapshot().server;
        assert!(s.len() <= SERIES_POINTS && s.len() > SERIES_POINTS / 4, "{}", s.len());
        let gaps: Vec<f64> = s.windows(2).map(|w| w[1].t - w[0].t).collect();
        assert!(gaps.iter().all(|g| *g == gaps[0]), "uneven spacing: {gaps:?}");
        assert_eq!(s[0].t, 0.0);
    }

    #[test]
    fn timings_alone_feed_the_figures_but_not_the_counts() {
        let bus = LiveBus::new();
        let run = bus.start(LiveRunInfo::default());
        run.update(|s| {
            s.elapsed_s = 5.0;
            s.done = 1;
        });
        let (_roster, _rx) = bus.subscribe();
        // Another clock entirely: the request counts as ending at 5 s.
        run.observe_timing(&rec(0, 1000.0, true));
        let s = run.snapshot();
        assert_eq!(s.done, 1);
        assert!((s.output_tok_s - 10.0 / 5.0).abs() < 1e-9, "{}", s.output_tok_s);
        assert!((s.ttft_p50_ms.unwrap() - 100.0).abs() < 1e-6);
        assert_eq!(s.series.last().map(|p| p.in_flight), Some(None));
    }
}
