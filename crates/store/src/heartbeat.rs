//! Heartbeats of running runs. A run (or a shard of one) started on this
//! host is known dead when its process is gone; one started on another host
//! sharing a PostgreSQL store cannot be checked that way, so its writer
//! thread stamps the run's row (or its shard's) every [`HEARTBEAT_EVERY`]
//! with the database's own clock, and a run whose stamp is older than
//! [`STALE_AFTER`] on that same clock shows as `incomplete`. Hosts' clocks
//! play no part.

use std::time::Duration;

use crate::backend::values;
use crate::{Result, Store, StoreError};

/// How often a running run's writer stamps its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// How old a heartbeat may be, in seconds, before its run counts as dead:
/// six missed beats.
pub const STALE_AFTER: f64 = 60.0;

/// Whose heartbeat a writer stamps: a run's, or one shard's of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Beat {
    pub(crate) run_id: i64,
    pub(crate) shard: Option<u32>,
}

impl Store {
    /// The database's clock, in seconds since the Unix epoch, as SQL.
    fn now_sql(&self) -> &'static str {
        if self.is_postgres() {
            "CAST(extract(epoch FROM clock_timestamp()) AS DOUBLE PRECISION)"
        } else {
            "((julianday('now') - 2440587.5) * 86400.0)"
        }
    }

    /// The database's clock now, in seconds since the Unix epoch.
    pub(crate) fn db_now(&self) -> Result<f64> {
        let rows = self.query(&format!("SELECT {}", self.now_sql()), vec![])?;
        rows.first()
            .map(|r| r.f64(0))
            .transpose()
            .map_err(|why| StoreError::Corrupt { run: 0, why })?
            .ok_or_else(|| StoreError::Corrupt { run: 0, why: "the database did not say what time it is".into() })
    }

    /// Stamps the heartbeat of shard `shard` of run `run_id` (a shard does
    /// while it waits for the others; its writer does while it runs).
    pub fn beat_shard(&self, run_id: i64, shard: u32) -> Result<()> {
        self.beat(Beat { run_id, shard: Some(shard) })
    }

    /// Stamps a run's heartbeat (or one shard's) with the database's clock.
    pub(crate) fn beat(&self, beat: Beat) -> Result<()> {
        match beat.shard {
            None => self.execute(
                &format!("UPDATE runs SET heartbeat_at = {} WHERE id = ?1", self.now_sql()),
                values![beat.run_id],
            )?,
            Some(shard) => self.execute(
                &format!("UPDATE shards SET heartbeat_at = {} WHERE run_id = ?1 AND shard = ?2", self.now_sql()),
                values![beat.run_id, shard],
            )?,
        };
        Ok(())
    }
}

/// Whether a heartbeat stamped at `at` is stale at `now` (both on the
/// database's clock). A run that never beat (written before heartbeats, or
/// by a build without them) is never called stale.
pub(crate) fn stale(at: Option<f64>, now: f64) -> bool {
    at.is_some_and(|at| now - at > STALE_AFTER)
}

#[cfg(test)]
mod tests {
    use fleetbench_core::{RunMeta, RunStatus};

    use super::*;
    use crate::Db;

    fn meta(host: &str) -> RunMeta {
        RunMeta {
            id: 0,
            tool_version: "0.1.0".into(),
            command_line: "fleetbench run".into(),
            host: host.into(),
            backend_url: "http://x/v1".into(),
            model: "m".into(),
            api: "chat".into(),
            workload: "synthetic:in=1,out=1".into(),
            schedule: "closed loop, concurrency 1".into(),
            started_at: "2026-12-01T00:00:00Z".into(),
            ended_at: None,
            status: RunStatus::Running,
            config: serde_json::json!({}),
            pid: Some(std::process::id()),
            group: None,
        }
    }

    fn sqlite(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("fb-heartbeat-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Store::open(&dir.join("results.db")).expect("a SQLite store")
    }

    fn postgres(name: &str) -> Store {
        let url = fleetbench_testkit::fresh_postgres_db(name);
        Store::connect(&Db::parse(&url, None).expect("the test cluster's URL")).expect("a PostgreSQL store")
    }

    /// Moves a heartbeat `secs` into the past, as if the process had stopped
    /// beating then.
    fn age(store: &Store, table: &str, run_id: i64, secs: f64) {
        let sql = format!(
            "UPDATE {table} SET heartbeat_at = heartbeat_at - ?2 WHERE {} = ?1",
            if table == "runs" { "id" } else { "run_id" }
        );
        assert_eq!(store.execute(&sql, values![run_id, secs]).expect("age the heartbeat"), 1);
    }

    fn run_beat(store: &Store, run_id: i64) -> Option<f64> {
        let rows = store.query("SELECT heartbeat_at FROM runs WHERE id = ?1", values![run_id]).expect("query");
        rows[0].opt_f64(0).expect("a number or NULL")
    }

    #[test]
    fn a_new_run_is_stamped_with_the_database_clock() {
        let store = sqlite("stamp");
        let id = store.create_run(&meta("here")).expect("create");
        let stamped = run_beat(&store, id).expect("a running run has a heartbeat");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
        assert!((stamped - now).abs() < 5.0, "stamped {stamped}, now {now}");
        let mut done = meta("here");
        done.status = RunStatus::Completed;
        let finished = store.create_run(&done).expect("create");
        assert_eq!(run_beat(&store, finished), None, "a finished run (copied, say) has none");
    }

    fn shard_on_another_host(store: Store) {
        let id = store.join_shard("k", &meta("elsewhere"), 0, 2).expect("join");
        let status = |s: &Store, id: i64| s.shards(id).expect("shards")[0].status;
        assert_eq!(status(&store, id), RunStatus::Running, "a fresh heartbeat");
        age(&store, "shards", id, STALE_AFTER - 5.0);
        assert_eq!(status(&store, id), RunStatus::Running, "a heartbeat not yet stale");
        age(&store, "shards", id, 10.0);
        assert_eq!(status(&store, id), RunStatus::Incomplete, "a stale heartbeat on another host");
        // A shard of a build without heartbeats is never called dead.
        let id = store.join_shard("k2", &meta("elsewhere"), 0, 2).expect("join");
        store.execute("UPDATE shards SET heartbeat_at = NULL WHERE run_id = ?1", values![id]).expect("clear");
        assert_eq!(status(&store, id), RunStatus::Running);
    }

    #[test]
    fn a_shard_on_another_host_is_dead_once_its_heartbeat_is_stale_on_sqlite() {
        shard_on_another_host(sqlite("shard"));
    }

    #[test]
    #[ignore = "needs PostgreSQL: scripts/test.sh starts a throwaway cluster (FLEETBENCH_TEST_POSTGRES)"]
    fn a_shard_on_another_host_is_dead_once_its_heartbeat_is_stale_on_postgres() {
        shard_on_another_host(postgres("heartbeat_shard"));
    }

    /// On PostgreSQL a run from another host is settled by its heartbeat; a
    /// run of this host by its process (SQLite runs are always this host's).
    #[test]
    #[ignore = "needs PostgreSQL: scripts/test.sh starts a throwaway cluster (FLEETBENCH_TEST_POSTGRES)"]
    fn a_run_on_another_host_is_dead_once_its_heartbeat_is_stale_on_postgres() {
        let store = postgres("heartbeat_run");
        let id = store.create_run(&meta("elsewhere")).expect("create");
        assert_eq!(store.run(id).expect("run").meta.status, RunStatus::Running);
        store.beat(Beat { run_id: id, shard: None }).expect("beat");
        age(&store, "runs", id, STALE_AFTER + 1.0);
        assert_eq!(store.run(id).expect("run").meta.status, RunStatus::Incomplete);
        assert_eq!(store.run(id).expect("run").meta.status, RunStatus::Incomplete, "and it was marked so");
    }
}
