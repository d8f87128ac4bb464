//! Runs in progress as the dashboard (and anything else watching) sees them: a [`LiveBus`] of
//! [`LiveRun`]s, each holding its latest [`LiveSnapshot`] in a
//! `tokio::sync::watch` channel. Producers overwrite the snapshot; readers
//! look at it when they want to, so a run never waits on a browser.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fleetbench_core::RequestRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Seconds of completed requests the rolling figures cover.
pub const ROLLING_WINDOW_S: f64 = 10.0;

/// Most finished runs kept on the bus (newest kept) for late viewers.
const FINISHED_KEPT: usize = 16;

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
    /// Arena only: the latest scored answer (shown as text).
    pub last_answer: Option<String>,
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

    /// Changes the snapshot in place.
    pub fn update(&self, f: impl FnOnce(&mut LiveSnapshot)) {
        self.inner.tx.send_modify(|s| {
            f(s);
            s.live_id = self.inner.id;
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
        let mut w = self.inner.window.lock().unwrap_or_else(|p| p.into_inner());
        w.push(record);
        let watched = self.watched();
        self.update(|s| {
            s.elapsed_s = now;
            if let Some(e) = &record.error {
                s.failed += 1;
                *s.errors.entry(e.label()).or_default() += 1;
                let msg: String = e.message.chars().take(300).collect();
                s.last_error = Some(msg);
            } else {
                s.done += 1;
            }
            // The percentiles are only worth computing for someone.
            if watched {
                w.apply(s, now);
            }
        });
    }

    /// Marks the run as ended; it stays on the bus for late viewers.
    pub fn finish(&self, state: LiveState) {
        self.update(|s| s.state = state);
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

#[derive(Default)]
struct Rolling {
    done: VecDeque<Finished>,
}

impl Rolling {
    fn push(&mut self, r: &RequestRecord) {
        if r.ok() {
            let ms = |x: Option<f64>| x.map(|v| v * 1000.0);
            self.done.push_back(Finished {
                end: r.t_end,
                tokens: r.output_tokens,
                ttft_ms: ms(r.ttft()),
                tpot_ms: ms(r.tpot()),
                e2el_ms: ms(r.e2el()),
                tok_s: r.tok_s(),
            });
        }
    }

    fn apply(&mut self, s: &mut LiveSnapshot, now: f64) {
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
        run.observe(&rec(0, 1.0, true), 1.0);
        let s = run.snapshot();
        assert_eq!(s.done, 1);
        assert_eq!(s.ttft_p50_ms, None, "percentiles are computed only for a viewer");
        let (_roster, _rx) = bus.subscribe();
        run.observe(&rec(1, 2.0, true), 2.0);
        assert!(run.snapshot().ttft_p50_ms.is_some());
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
}
