//! The load engine: drives one client through a plan. Closed loop keeps
//! exactly N requests in flight with no batch barriers; open loop sends on
//! the schedule's clock so that client lag shows up as `client_queue_time`.
//! Every record goes to the sink the moment its request ends. Session
//! workloads are sent session by session (`session.rs`). A request of a
//! conversation (a multi-turn `shared-prefix` user, a trace's
//! `conversation_id`) waits until the conversation's previous request has ended, as
//! a user waits for an answer before asking again ([`Turns`]); the wait is
//! client queue time, and TTFT runs from the send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetbench_client::Client;
use fleetbench_core::{RequestRecord, RequestSpec, RunClock, SamplingParams};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use fleetbench_workload::arrivals::Instant;
use fleetbench_workload::{ArrivalPlan, RampKind, RampSpec, Schedule, Shard, Workload};

/// When to stop issuing new requests (requests in flight then finish).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StopCondition {
    /// Measured requests (warm-up not included).
    pub requests: Option<u64>,
    /// Wall time from the first send, warm-up included.
    pub duration: Option<Duration>,
}

/// Everything the engine needs to know about a run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub schedule: Schedule,
    pub stop: StopCondition,
    /// The first `warmup` requests issued are flagged and excluded from
    /// every figure.
    pub warmup: u64,
    pub sampling: SamplingParams,
    /// Seeds arrival times.
    pub seed: u64,
    /// Open loop: the arrival instants (stages or a trace) that replace the
    /// schedule's single rate; the run also stops when they run out.
    pub arrivals: Option<ArrivalPlan>,
    /// One shard of a run measured by several processes: an open loop sends
    /// only this shard's arrivals of the whole process (the rest of the
    /// split is made by [`crate::shard::shard_plan`]).
    pub shard: Option<Shard>,
    /// `--ramp`: a closed loop's agents join over time (a rate ramp comes
    /// as `arrivals`); the run's figures are cut into the ramp's windows.
    pub ramp: Option<RampSpec>,
}

/// What the engine did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineReport {
    /// Requests whose record was delivered to the sink.
    pub finished: u64,
    /// The stop signal ended the run early.
    pub interrupted: bool,
    /// Run-clock instants of the first send and of the last request's end.
    pub started: f64,
    pub ended: f64,
}

/// Runs the plan. Records go to `sink` as requests end; `stop` set to true
/// stops issuing and abandons requests in flight (they are not recorded).
pub async fn run(
    plan: &RunPlan,
    client: &Client,
    workload: Arc<dyn Workload>,
    clock: RunClock,
    sink: mpsc::UnboundedSender<RequestRecord>,
    mut stop: watch::Receiver<bool>,
) -> EngineReport {
    let started = clock.now();
    let budget = plan.stop.requests.map(|n| n + plan.warmup);
    let deadline = plan.stop.duration.map(|d| started + d.as_secs_f64());
    let finished = Arc::new(AtomicU64::new(0));
    let sessions = workload.session(0).is_some();
    let work = async {
        if sessions {
            let senders = crate::session::Senders::new(
                client,
                &workload,
                clock,
                &sink,
                &finished,
                &plan.sampling,
                deadline,
                plan.warmup,
            );
            return match plan.schedule {
                Schedule::Closed { concurrency } => {
                    crate::session::closed_loop(senders, concurrency, plan.stop.requests, &agent_starts(plan)).await
                }
                Schedule::Open { rate, arrival, max_concurrency } => {
                    let arrivals = match &plan.arrivals {
                        Some(a) => a.instants(),
                        None => ArrivalPlan::single(rate, arrival, plan.seed).instants(),
                    };
                    let stages = StageClock::new(plan);
                    crate::session::open_loop(senders, arrivals, stages, max_concurrency, plan.stop.requests).await
                }
            };
        }
        match plan.schedule {
            Schedule::Closed { concurrency } => {
                closed_loop(plan, concurrency, client, &workload, clock, &sink, budget, deadline, &finished).await
            }
            Schedule::Open { rate, arrival, max_concurrency } => {
                let arrivals = match &plan.arrivals {
                    Some(a) => a.instants(),
                    None => ArrivalPlan::single(rate, arrival, plan.seed).instants(),
                };
                let arrivals: Box<dyn Iterator<Item = Instant> + Send> = match plan.shard {
                    Some(shard) => {
                        let (process, seed) = crate::shard::thinning(plan);
                        Box::new(
                            arrivals.zip(0u64..).filter(move |(_, k)| shard.takes(*k, process, seed)).map(|(a, _)| a),
                        )
                    }
                    None => arrivals,
                };
                open_loop(plan, arrivals, max_concurrency, client, &workload, clock, &sink, budget, deadline, &finished)
                    .await
            }
        }
    };
    let interrupted = if *stop.borrow() {
        true
    } else {
        tokio::select! {
            _ = work => false,
            _ = wait_for_stop(&mut stop) => true,
        }
    };
    EngineReport { finished: finished.load(Ordering::SeqCst), interrupted, started, ended: clock.now() }
}

async fn wait_for_stop(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            // Sender gone: nobody can stop us any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Closed loop. Warm-up requests run first, at the same concurrency, and
/// all of them end before the first measured one is sent, so the measured
/// window never shares the server with warm-up work; from then on there is
/// no barrier.
#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    plan: &RunPlan,
    concurrency: u32,
    client: &Client,
    workload: &Arc<dyn Workload>,
    clock: RunClock,
    sink: &mpsc::UnboundedSender<RequestRecord>,
    budget: Option<u64>,
    deadline: Option<f64>,
    finished: &Arc<AtomicU64>,
) {
    let next = Arc::new(AtomicU64::new(0));
    if plan.warmup > 0 {
        let warm = Phase { next: next.clone(), end: Some(plan.warmup), starts: Vec::new() };
        agents(plan, concurrency, client, workload, clock, sink, warm, deadline, finished).await;
    }
    let measured = Phase { next, end: budget, starts: agent_starts(plan) };
    agents(plan, concurrency, client, workload, clock, sink, measured, deadline, finished).await;
}

/// A concurrency ramp's agent start offsets (seconds from the measured
/// phase's start); empty: every agent starts at once.
pub(crate) fn agent_starts(plan: &RunPlan) -> Vec<f64> {
    plan.ramp.filter(|r| r.kind == RampKind::Concurrency).map(|r| r.agent_starts()).unwrap_or_default()
}

/// Request indexes one phase of a closed loop hands out, and when each
/// agent joins it.
struct Phase {
    next: Arc<AtomicU64>,
    end: Option<u64>,
    starts: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
async fn agents(
    plan: &RunPlan,
    concurrency: u32,
    client: &Client,
    workload: &Arc<dyn Workload>,
    clock: RunClock,
    sink: &mpsc::UnboundedSender<RequestRecord>,
    phase: Phase,
    deadline: Option<f64>,
    finished: &Arc<AtomicU64>,
) {
    let mut agents = JoinSet::new();
    let t0 = clock.now();
    let end = phase.end;
    let turns = Turns::default();
    for agent in 0..concurrency {
        let turns = turns.clone();
        let next = phase.next.clone();
        let client = client.clone();
        let workload = workload.clone();
        let sink = sink.clone();
        let finished = finished.clone();
        let sampling = plan.sampling.clone();
        let warmup = plan.warmup;
        let start = phase.starts.get(agent as usize).copied().unwrap_or(0.0);
        agents.spawn(async move {
            let mut t_sched = t0 + start;
            if start > 0.0 {
                tokio::time::sleep_until(clock.instant_at(t_sched).into()).await;
            }
            loop {
                if deadline.is_some_and(|d| clock.now() >= d) {
                    break;
                }
                let index = next.fetch_add(1, Ordering::SeqCst);
                if end.is_some_and(|b| index >= b) {
                    next.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
                let spec = workload.request(index, &sampling);
                let (previous, done) = turns.take(&spec);
                if let Some(previous) = previous {
                    let _ = previous.await;
                }
                let mut rec = client.send(&spec, &clock, t_sched).await;
                Turns::ended(done);
                rec.index = index;
                rec.agent = Some(agent);
                rec.context = spec.context;
                rec.warmup = index < warmup;
                t_sched = rec.t_end;
                finished.fetch_add(1, Ordering::SeqCst);
                if sink.send(rec).is_err() {
                    break;
                }
            }
        });
    }
    while agents.join_next().await.is_some() {}
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    plan: &RunPlan,
    arrivals: Box<dyn Iterator<Item = Instant> + Send>,
    max_concurrency: Option<u32>,
    client: &Client,
    workload: &Arc<dyn Workload>,
    clock: RunClock,
    sink: &mpsc::UnboundedSender<RequestRecord>,
    budget: Option<u64>,
    deadline: Option<f64>,
    finished: &Arc<AtomicU64>,
) {
    let gate = max_concurrency.map(|m| Arc::new(Semaphore::new(m.max(1) as usize)));
    let turns = Turns::default();
    let mut stages = StageClock::new(plan);
    let mut tasks = JoinSet::new();
    let t0 = clock.now();
    for (index, arrival) in (0u64..).zip(arrivals) {
        if budget.is_some_and(|b| index >= b) {
            break;
        }
        if stages.opens_stage(&arrival) {
            // Every request of the stage before ends first.
            while tasks.join_next().await.is_some() {}
            stages.begin(&arrival, t0, clock.now());
        }
        let t_sched = stages.at(t0, &arrival);
        if deadline.is_some_and(|d| t_sched >= d) {
            break;
        }
        pace_until(clock.instant_at(t_sched)).await;
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        let spec = workload.request(index, &plan.sampling);
        // A turn whose conversation has a request in flight waits for it
        // in its own task, then for a client slot: it holds no slot meanwhile
        // and does not hold back the arrivals after it.
        let (previous, done) = turns.take(&spec);
        let permit = match (&gate, &previous) {
            (Some(g), None) => match g.clone().acquire_owned().await {
                Ok(p) => Some(p),
                Err(_) => break,
            },
            _ => None,
        };
        let gate = gate.clone();
        let client = client.clone();
        let sink = sink.clone();
        let finished = finished.clone();
        let warmup = plan.warmup;
        tasks.spawn(async move {
            let mut permit = permit;
            if let Some(previous) = previous {
                let _ = previous.await;
                if let Some(g) = gate {
                    permit = g.acquire_owned().await.ok();
                }
            }
            let mut rec = client.send(&spec, &clock, t_sched).await;
            Turns::ended(done);
            drop(permit);
            rec.index = index;
            rec.context = spec.context;
            rec.warmup = index < warmup;
            finished.fetch_add(1, Ordering::SeqCst);
            let _ = sink.send(rec);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// The order of each conversation's requests: a request takes its place
/// behind the conversation's last one and may be sent when that one has
/// ended ([`Turns::ended`]; or was abandoned: its signal dropped).
/// Requests without a conversation never wait.
#[derive(Clone, Default)]
pub(crate) struct Turns(Arc<Mutex<HashMap<String, oneshot::Receiver<()>>>>);

impl Turns {
    /// (the end of the conversation's request before this one, still to
    /// come; the signal of this one's end, for [`Turns::ended`]).
    pub(crate) fn take(&self, spec: &RequestSpec) -> (Option<oneshot::Receiver<()>>, Option<oneshot::Sender<()>>) {
        let Some(conversation) = spec.context.conversation.as_deref() else { return (None, None) };
        let (done, ended) = oneshot::channel();
        let previous = match self.0.lock() {
            Ok(mut last) => last.insert(conversation.to_string(), ended),
            Err(_) => None,
        };
        // One that has already ended (sent its signal) is nothing to wait for.
        let previous = previous.filter(|p| p.is_empty());
        (previous, Some(done))
    }

    /// This request has ended: the conversation's next one may go.
    pub(crate) fn ended(done: Option<oneshot::Sender<()>>) {
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}

/// How long before an arrival tokio's timer hands over to a blocking sleep.
const PACE_HANDOVER: Duration = Duration::from_millis(2);

/// Waits until `at`, an open loop's next arrival, to within the OS's sleep
/// precision (tens of microseconds). tokio's timer fires on whole
/// milliseconds, so it would send every request up to a millisecond late
/// (a millisecond of client queue time on an idle client, ten of modelled
/// time against a simulator ten times faster than its hardware): it waits
/// for all but the last two milliseconds, and a blocking sleep on tokio's
/// blocking pool for the rest.
pub(crate) async fn pace_until(at: std::time::Instant) {
    if let Some(coarse) = at.checked_sub(PACE_HANDOVER) {
        if coarse > std::time::Instant::now() {
            tokio::time::sleep_until(coarse.into()).await;
        }
    }
    if at > std::time::Instant::now() {
        let fine = tokio::task::spawn_blocking(move || {
            let left = at.saturating_duration_since(std::time::Instant::now());
            std::thread::sleep(left);
        });
        if fine.await.is_err() {
            // No blocking pool (the runtime is shutting down): the timer.
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// When an open loop sends each arrival: at its own time, except that
/// stages that drain ([`ArrivalPlan::drains`]) start no earlier than the
/// end of the stage before's last request, shifting the stage's arrivals
/// (and every later stage's) by the wait. A stage that waited opens when
/// the stage before drained, and its first request comes its first gap
/// later, as inference-perf starts a stage's timer.
pub(crate) struct StageClock {
    drains: bool,
    /// Each stage's own start, seconds from the start of the run.
    opens: Vec<f64>,
    stage: u32,
    shift: f64,
}

impl StageClock {
    pub(crate) fn new(plan: &RunPlan) -> StageClock {
        let (drains, opens) = match &plan.arrivals {
            Some(a) => (a.drains(), a.stages().into_iter().map(|(_, start, _)| start).collect()),
            None => (false, Vec::new()),
        };
        StageClock { drains, opens, stage: 0, shift: 0.0 }
    }

    /// `arrival` opens a stage that waits for the requests before it.
    pub(crate) fn opens_stage(&self, arrival: &Instant) -> bool {
        self.drains && arrival.stage != self.stage
    }

    /// The stage of `arrival` begins; `now` is when the stage before drained.
    pub(crate) fn begin(&mut self, arrival: &Instant, t0: f64, now: f64) {
        let opens = self.opens.get(arrival.stage as usize).copied().unwrap_or(arrival.t);
        self.shift = self.shift.max(now - (t0 + opens));
        self.stage = arrival.stage;
    }

    /// The run-clock instant to send `arrival` at.
    pub(crate) fn at(&self, t0: f64, arrival: &Instant) -> f64 {
        t0 + arrival.t + self.shift
    }
}
