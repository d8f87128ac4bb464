//! A run measured by several processes at once, on one host or many
//! (`--shard I/N --run-id KEY`). Each process is one [`Shard`]: it takes its
//! share of the plan ([`shard_plan`]), joins the run stored under KEY and
//! waits at a barrier in the store until all N have joined ([`join`]); all
//! then start together at an instant they agree on, so that their run
//! clocks (and every stored instant) share one origin, up to the hosts'
//! clock offset. Records go into the one run under indexes that interleave
//! ([`Shard::global_index`]); the last shard to end stores the summary of
//! the union ([`finish`]), and `runs show`, `report` and `compare` read the
//! union as one run.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetbench_core::{RunMeta, RunMetrics, RunStatus, SamplingParams, Slo};
use fleetbench_store::{ShardInfo, Store, StoreError};
use fleetbench_workload::{Arrival, ArrivalPlan, Schedule, Shard, Workload};

use crate::measure::RunSummary;
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
    loop {
        let present = store.shards(id)?;
        if present.len() as u32 >= j.shard.count {
            let last = present.iter().map(|s| s.registered_at).fold(0.0, f64::max);
            let start = last + START_DELAY.as_secs_f64();
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
/// status (the worst of its shards') and the summary of all shards'
/// records, and returns that summary's figures.
pub fn finish(
    store: &Store,
    run_id: i64,
    j: &ShardJoin,
    status: RunStatus,
    ended_at: &str,
    slo: &Slo,
) -> Result<Option<RunMetrics>, ShardError> {
    if !store.finish_shard(run_id, j.shard.index, status, ended_at)? {
        return Ok(None);
    }
    let shards = store.shards(run_id)?;
    let worst = shards.iter().map(|s| s.status).find(|s| *s != RunStatus::Completed).unwrap_or(RunStatus::Completed);
    let records = store.records(run_id)?;
    let metrics = RunMetrics::compute(&records, slo, j.target_concurrency);
    let summary = serde_json::to_value(RunSummary::new(&metrics, Default::default()))
        .map_err(|e| StoreError::Corrupt { run: run_id, why: format!("summary: {e}") })?;
    store.finish_run(run_id, worst, ended_at, Some(&summary))?;
    Ok(Some(metrics))
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
