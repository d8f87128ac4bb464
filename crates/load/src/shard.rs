//! A run measured by several processes at once, on one host or many
//! (`--shard I/N --run-id KEY`). Each process is one [`Shard`]: it takes its
//! share of the plan ([`shard_plan`]), joins the run stored under KEY and
//! waits at a barrier in the store until all N have joined ([`join`]); all
//! then start together at an instant they agree on, so that their run
//! clocks (and every stored instant) share one origin, up to the hosts'
//! clock offset. Records go into the one run under indexes that interleave
//! ([`Shard::global_index`]); each shard stores its own cost and energy as a
//! part ([`ShardFiguresRecord`]), the last shard to end stores the summary,
//! cost and energy of the union ([`finish`], [`union`]), and `runs show`,
//! `report` and `compare` read the union as one run. A sharded sweep has
//! every shard wait for the others at the end of each level
//! ([`wait_for_all`]) and read the level's union.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetbench_core::{RequestRecord, RunMeta, RunMetrics, RunStatus, SamplingParams, Slo};
use fleetbench_econ::instruments::{Instruments, RunFigures};
use fleetbench_econ::records::ShardFiguresRecord;
use fleetbench_store::{ShardInfo, Store, StoreError};
use fleetbench_workload::{Arrival, ArrivalPlan, Schedule, Shard, Workload};

use crate::measure::{FigureKeys, MeasureOptions, RunSummary};
use crate::RunPlan;

/// How long after the last shard joined they all start: time for every
/// shard to see the barrier open (it polls the store every [`POLL`]).
const START_DELAY: Duration = Duration::from_millis(1500);
/// How often a waiting shard looks at the store.
const POLL: Duration = Duration::from_millis(200);

/// One shard's part in a run: which shard, the run's key, how long to wait
/// for the others, and what the whole run targets.
#[derive(Debug, Clone)]
pub struct ShardJoin {
    pub shard: Shard,
    /// `--run-id`: the same for every shard of the run.
    pub key: String,
    /// Longest wait for the other shards at the start.
    pub timeout: Duration,
    /// The whole run's concurrency (closed loop), for the union's figures.
    pub target_concurrency: Option<u32>,
}

impl ShardJoin {
    /// The workload as this shard asks it: its requests are numbered as in
    /// the whole run, so no two shards send the same request.
    pub fn workload(&self, inner: Arc<dyn Workload>) -> Arc<dyn Workload> {
        Arc::new(ShardWorkload { inner, shard: self.shard })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("--shard {shard}: the closed loop's {total} agents cannot be shared by {count} shards (each needs one at least); lower the shard count or raise --concurrency")]
    TooFewAgents { shard: Shard, total: u32, count: u32 },
    #[error("run {key:?}: only {present} of {count} shards joined within {waited:?} ({joined}); start the missing shards {missing} with the same --run-id, or raise --shard-timeout")]
    Timeout { key: String, present: usize, count: u32, waited: Duration, joined: String, missing: String },
    #[error("run {key:?}: shards {running} had not ended {waited:?} after this one; the sweep cannot go on without them (raise --shard-timeout if they are merely slow)")]
    EndTimeout { key: String, waited: Duration, running: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `plan` as shard `shard` runs it: its share of the agents, requests and
/// warm-up of a closed loop; of an open loop, the number of the whole
/// process's arrivals that are its own (the engine keeps only those), and
/// its share of `--max-concurrency`.
pub fn shard_plan(plan: &RunPlan, shard: Shard) -> Result<RunPlan, ShardError> {
    let mut out = plan.clone();
    out.shard = Some(shard);
    match plan.schedule {
        Schedule::Closed { concurrency } => {
            let mine = shard.share(concurrency.into());
            if mine == 0 {
                return Err(ShardError::TooFewAgents { shard, total: concurrency, count: shard.count });
            }
            out.schedule = Schedule::Closed { concurrency: mine as u32 };
            out.stop.requests = plan.stop.requests.map(|n| shard.share(n));
            out.warmup = shard.share(plan.warmup);
        }
        Schedule::Open { rate, arrival, max_concurrency } => {
            let (process, seed) = thinning(plan);
            let warm = shard.count_of(plan.warmup, process, seed);
            out.warmup = warm;
            out.stop.requests = plan.stop.requests.map(|n| shard.count_of(n + plan.warmup, process, seed) - warm);
            let max_concurrency = max_concurrency.map(|m| shard.share(m.into()).max(1) as u32);
            out.schedule = Schedule::Open { rate, arrival, max_concurrency };
        }
    }
    Ok(out)
}

/// The arrival process an open loop thins and the seed of its draws.
pub(crate) fn thinning(plan: &RunPlan) -> (Option<Arrival>, u64) {
    match (&plan.arrivals, plan.schedule) {
        (Some(ArrivalPlan::Stages { process, seed, .. }), _) => (Some(*process), *seed),
        (Some(ArrivalPlan::Trace(_)), _) => (None, plan.seed),
        (None, Schedule::Open { arrival, .. }) => (Some(arrival), plan.seed),
        (None, Schedule::Closed { .. }) => (None, plan.seed),
    }
}

/// Joins the run, waits until every shard has, then until the common start;
/// returns the run's id. A shard that gives up leaves the run again.
pub async fn join(store: &Store, meta: &RunMeta, j: &ShardJoin) -> Result<i64, ShardError> {
    let id = store.join_shard(&j.key, meta, j.shard.index, j.shard.count)?;
    let waiting_since = tokio::time::Instant::now();
    let mut beaten = waiting_since;
    loop {
        if beaten.elapsed() >= fleetbench_store::HEARTBEAT_EVERY {
            store.beat_shard(id, j.shard.index)?;
            beaten = tokio::time::Instant::now();
        }
        let present = store.shards(id)?;
        if present.len() as u32 >= j.shard.count {
            let start = common_start(store, id)?;
            let wait = (start - unix_now()).clamp(0.0, START_DELAY.as_secs_f64());
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            return Ok(id);
        }
        if waiting_since.elapsed() >= j.timeout {
            store.leave_shard(id, j.shard.index)?;
            let missing: Vec<String> = (0..j.shard.count)
                .filter(|i| !present.iter().any(|s| s.shard == *i))
                .map(|i| format!("{i}/{}", j.shard.count))
                .collect();
            return Err(ShardError::Timeout {
                key: j.key.clone(),
                present: present.len(),
                count: j.shard.count,
                waited: j.timeout,
                joined: present.iter().map(ShardInfo::describe).collect::<Vec<_>>().join(", "),
                missing: missing.join(", "),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Ends this shard with `status`. The last shard to end stores the run's
/// status (the worst of its shards'), the summary of all shards' records,
/// and the union's cost and energy from every shard's part (priced with
/// the options' instruments).
pub fn finish(
    store: &Store,
    run_id: i64,
    j: &ShardJoin,
    status: RunStatus,
    ended_at: &str,
    opts: &MeasureOptions,
    backend: &str,
) -> Result<(), ShardError> {
    if !store.finish_shard(run_id, j.shard.index, status, ended_at)? {
        return Ok(());
    }
    let u = union(store, run_id, j, &opts.slo, opts.instruments.as_deref(), backend)?;
    if let Some(c) = &u.figures.cost {
        store.put(run_id, &c.backend, c)?;
    }
    if let Some(e) = &u.figures.energy {
        store.put(run_id, &e.backend, e)?;
    }
    let keys = FigureKeys::new(u.figures.cost.clone(), u.figures.energy.clone());
    let summary = serde_json::to_value(RunSummary::new(&u.metrics, keys))
        .map_err(|e| StoreError::Corrupt { run: run_id, why: format!("summary: {e}") })?;
    store.finish_run(run_id, u.status, ended_at, Some(&summary))?;
    Ok(())
}

/// The union of a run's shards as stored: every shard's records, the
/// figures over all of them, and the cost and energy from every shard's
/// part. Every shard that reads it once all have ended gets the same.
pub struct Union {
    /// The worst of the shards' statuses.
    pub status: RunStatus,
    pub metrics: RunMetrics,
    /// Every record of every shard, warm-up included, in index order.
    pub records: Vec<RequestRecord>,
    pub figures: RunFigures,
}

/// Reads the union of run `run_id`'s shards from the store.
pub fn union(
    store: &Store,
    run_id: i64,
    j: &ShardJoin,
    slo: &Slo,
    instruments: Option<&Instruments>,
    backend: &str,
) -> Result<Union, ShardError> {
    let shards = store.shards(run_id)?;
    let status = shards.iter().map(|s| s.status).find(|s| *s != RunStatus::Completed).unwrap_or(RunStatus::Completed);
    let records = store.records(run_id)?;
    let metrics = RunMetrics::compute(&records, slo, j.target_concurrency);
    let parts: Vec<ShardFiguresRecord> =
        store.get_all::<ShardFiguresRecord>(run_id)?.into_iter().map(|(_, p)| p).collect();
    let figures = match instruments {
        Some(i) => i.union_figures(backend, &metrics, &records, &parts),
        None => RunFigures::default(),
    };
    Ok(Union { status, metrics, records, figures })
}

/// Waits until every shard of run `run_id` has ended (each shard waits
/// after its own part, so that all read the same union); gives up after the
/// shard timeout, naming the shards still running.
pub async fn wait_for_all(store: &Store, run_id: i64, j: &ShardJoin) -> Result<(), ShardError> {
    let since = tokio::time::Instant::now();
    loop {
        let running: Vec<ShardInfo> =
            store.shards(run_id)?.into_iter().filter(|s| s.status == RunStatus::Running).collect();
        if running.is_empty() {
            return Ok(());
        }
        if since.elapsed() >= j.timeout {
            return Err(ShardError::EndTimeout {
                key: j.key.clone(),
                waited: j.timeout,
                running: running.iter().map(ShardInfo::describe).collect::<Vec<_>>().join(", "),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The instant (Unix seconds) the shards of run `run_id` started at: the
/// same for every shard, since all read it from the store.
pub fn common_start(store: &Store, run_id: i64) -> Result<f64, ShardError> {
    let last = store.shards(run_id)?.iter().map(|s| s.registered_at).fold(0.0, f64::max);
    Ok(last + START_DELAY.as_secs_f64())
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// A workload whose request `i` is the whole run's request
/// `shard.global_index(i)`.
struct ShardWorkload {
    inner: Arc<dyn Workload>,
    shard: Shard,
}

impl Workload for ShardWorkload {
    fn request(&self, index: u64, sampling: &SamplingParams) -> fleetbench_core::RequestSpec {
        self.inner.request(self.shard.global_index(index), sampling)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn distinct_requests(&self) -> Option<u64> {
        self.inner.distinct_requests()
    }
    /// Session workloads: the shard's session `i` is the whole run's
    /// session `shard.global_index(i)`, so no two shards play one session.
    fn session(&self, index: u64) -> Option<fleetbench_workload::SessionPlan> {
        self.inner.session(self.shard.global_index(index))
    }
    fn turn(
        &self,
        session: &fleetbench_workload::SessionPlan,
        turn: u32,
        history: &[fleetbench_core::ChatMessage],
        history_tokens: u32,
        sampling: &SamplingParams,
    ) -> fleetbench_core::RequestSpec {
        self.inner.turn(session, turn, history, history_tokens, sampling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StopCondition;

    fn plan(schedule: Schedule, requests: u64, warmup: u64) -> RunPlan {
        RunPlan {
            schedule,
            stop: StopCondition { requests: Some(requests), duration: None },
            warmup,
            sampling: SamplingParams::default(),
            seed: 3,
            arrivals: None,
            shard: None,
            ramp: None,
        }
    }

    #[test]
    fn closed_loops_split_agents_requests_and_warmup() {
        let whole = plan(Schedule::Closed { concurrency: 10 }, 103, 5);
        let parts: Vec<RunPlan> = (0..4).map(|i| shard_plan(&whole, Shard { index: i, count: 4 }).unwrap()).collect();
        let sum = |f: &dyn Fn(&RunPlan) -> u64| parts.iter().map(f).sum::<u64>();
        assert_eq!(sum(&|p| p.schedule.target_concurrency().unwrap_or(0).into()), 10);
        assert_eq!(sum(&|p| p.stop.requests.unwrap_or(0)), 103);
        assert_eq!(sum(&|p| p.warmup), 5);
        let e = shard_plan(&plan(Schedule::Closed { concurrency: 2 }, 10, 0), Shard { index: 3, count: 4 });
        assert!(e.unwrap_err().to_string().contains("cannot be shared"));
    }

    #[test]
    fn a_shard_plays_its_own_sessions() {
        let spec =
            fleetbench_workload::WorkloadSpec::parse("agent-session:turns=2..4,system=60,tool-output=10..20,output=4")
                .expect("a session workload");
        let whole: Arc<dyn Workload> = Arc::from(spec.build(5).expect("built"));
        let j = ShardJoin {
            shard: Shard { index: 1, count: 2 },
            key: "k".into(),
            timeout: Duration::from_secs(1),
            target_concurrency: None,
        };
        let mine = j.workload(whole.clone());
        for i in 0..4 {
            assert_eq!(mine.session(i), whole.session(2 * i + 1), "session {i}");
        }
        assert_ne!(mine.session(0), whole.session(0));
    }

    #[test]
    fn open_loops_count_their_own_arrivals() {
        for arrival in [Arrival::Poisson, Arrival::Constant] {
            let whole = plan(Schedule::Open { rate: 20.0, arrival, max_concurrency: Some(6) }, 1000, 40);
            let parts: Vec<RunPlan> =
                (0..3).map(|i| shard_plan(&whole, Shard { index: i, count: 3 }).unwrap()).collect();
            assert_eq!(parts.iter().map(|p| p.stop.requests.unwrap_or(0)).sum::<u64>(), 1000);
            assert_eq!(parts.iter().map(|p| p.warmup).sum::<u64>(), 40);
            assert!(parts.iter().all(|p| matches!(p.schedule, Schedule::Open { max_concurrency: Some(2), .. })));
        }
    }
}
