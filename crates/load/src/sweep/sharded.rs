//! A sweep measured by several processes at once (`sweep --shard I/N
//! --run-id KEY`) is one sweep. Every shard runs the same levels; each level
//! is one sharded run under the key `KEY/c=4` (`KEY/c=4/r2` for a second
//! repeat), whose shards take their share of the level's agents, requests
//! or arrivals, meet at its start (the barrier of [`crate::shard::join`])
//! and again at its end ([`crate::shard::wait_for_all`]). Then every shard
//! reads the level's union from the store ([`level_union`]) and goes on
//! from it, so all shards agree without talking to each other: the cliff
//! search picks the same next level, the `--budget` runs out at the same
//! level (it is counted on the shards' common clock, from the first level's
//! common start to the last request's end in the level just measured), a
//! shard interrupted or lost stops them all after that level, and every
//! shard prints and writes the same levels, figures and knee (the server's
//! `/metrics` are each shard's own readings of the one server). Shard 0
//! stores the sweep's records (each level's `SweepLevelRecord` and server
//! timeline, and the `SweepRecord`), once.

use std::time::Duration;

use fleetbench_core::{RunMetrics, RunStatus};
use fleetbench_store::Store;
use fleetbench_workload::Shard;

use crate::measure::{FigureKeys, MeasureError, MeasureOptions};
use crate::shard::{common_start, union, wait_for_all, ShardJoin};

/// This process's part in a sharded sweep.
#[derive(Debug, Clone)]
pub struct SweepShard {
    pub shard: Shard,
    /// `--run-id`: the same on every shard; also the sweep's group.
    pub key: String,
    /// Longest wait for the other shards, at each level's start and end.
    pub timeout: Duration,
}

impl SweepShard {
    /// How this shard joins the level labelled `label` (`c=4`), repeat
    /// `repeat` (from 0).
    pub fn level(&self, label: &str, repeat: u32, target_concurrency: Option<u32>) -> ShardJoin {
        let key = match repeat {
            0 => format!("{}/{label}", self.key),
            r => format!("{}/{label}/r{}", self.key, r + 1),
        };
        ShardJoin { shard: self.shard, key, timeout: self.timeout, target_concurrency }
    }

    /// Whether this shard stores the sweep's records (shard 0 does).
    pub fn stores(&self) -> bool {
        self.shard.index == 0
    }
}

/// One level's union, as every shard reads it once all have ended it.
pub(super) struct LevelUnion {
    pub metrics: RunMetrics,
    /// The measured records of all shards (warm-up left out).
    pub records: Vec<fleetbench_core::RequestRecord>,
    pub figures: FigureKeys,
    pub warnings: Vec<String>,
    /// A shard was interrupted or lost: the sweep ends after this level.
    pub stopped: bool,
    /// The level's common start and its last request's end, Unix seconds.
    pub span: (f64, f64),
}

/// Waits for every shard of the level's run `run_id`, then reads its union.
/// `scale` is the backend's time scale (stored instants are modelled time).
pub(super) async fn level_union(
    store: &Store,
    run_id: i64,
    j: &ShardJoin,
    opts: &MeasureOptions,
    backend: &str,
    scale: f64,
) -> Result<LevelUnion, MeasureError> {
    wait_for_all(store, run_id, j).await?;
    let u = union(store, run_id, j, &opts.slo, opts.instruments.as_deref(), backend)?;
    let start = common_start(store, run_id)?;
    let end = start + u.records.iter().map(|r| r.t_end).fold(0.0, f64::max) / scale;
    Ok(LevelUnion {
        metrics: u.metrics,
        records: u.records.into_iter().filter(|r| !r.warmup).collect(),
        figures: FigureKeys::new(u.figures.cost, u.figures.energy),
        warnings: u.figures.warnings,
        stopped: matches!(u.status, RunStatus::Interrupted | RunStatus::Incomplete),
        span: (start, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_repeats_have_keys_of_their_own() {
        let s =
            SweepShard { shard: Shard { index: 1, count: 2 }, key: "job-7".into(), timeout: Duration::from_secs(5) };
        assert_eq!(s.level("c=4", 0, Some(4)).key, "job-7/c=4");
        assert_eq!(s.level("rate=2.50", 1, None).key, "job-7/rate=2.50/r2");
        assert!(!s.stores());
        assert_eq!(s.level("c=4", 0, Some(4)).target_concurrency, Some(4));
    }
}
