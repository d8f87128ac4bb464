//! Runs measured by several processes at once (`--shard I/N --run-id KEY`):
//! every shard writes into one run row, found by its key. Each shard
//! registers a row of its own (host, process, when it registered, status);
//! the shards meet when all N have registered ([`Store::shards`] counts
//! them), and the last one to end settles the run's status. A shard whose
//! process is gone without ending leaves its completed requests, and the run
//! is `incomplete`, naming that shard.

use fleetbench_core::{RunMeta, RunStatus};

use crate::backend::{values, Row};
use crate::heartbeat::{self, Beat};
use crate::{process_alive, this_host, Result, Store, StoreError};

/// One shard of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardInfo {
    /// 0-based.
    pub shard: u32,
    /// How many shards the run has.
    pub shards: u32,
    pub host: String,
    pub pid: Option<u32>,
    /// Unix seconds, from the registering host's clock.
    pub registered_at: f64,
    pub ended_at: Option<String>,
    pub status: RunStatus,
}

impl ShardInfo {
    /// `2/4 on host (pid 123)`, counted from 0 like `--shard`.
    pub fn describe(&self) -> String {
        let pid = self.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        format!("{}/{} on {}{pid}", self.shard, self.shards, self.host)
    }
}

const SHARD_COLUMNS: &str = "shard, shards, host, pid, registered_at, ended_at, status";

impl Store {
    /// Joins shard `shard` of `shards` to the run with key `key`: creates
    /// the run (from `meta`) if no shard has yet, and registers this shard.
    /// Returns the run's id.
    pub fn join_shard(&self, key: &str, meta: &RunMeta, shard: u32, shards: u32) -> Result<i64> {
        let id = match self.run_by_key(key)? {
            Some(id) => id,
            None => {
                let mut row = meta.clone();
                row.pid = None;
                let id = self.create_run(&row)?;
                // Another shard may have created it meanwhile: the unique key
                // decides, and the loser's row goes.
                let n = self.execute(
                    "UPDATE runs SET run_key = ?2 WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM runs WHERE run_key = ?2)",
                    values![id, key],
                );
                match (n, self.run_by_key(key)?) {
                    (Ok(1), _) => id,
                    (_, Some(other)) => {
                        self.execute("DELETE FROM runs WHERE id = ?1", values![id])?;
                        other
                    }
                    (Err(e), None) => return Err(e),
                    (Ok(_), None) => return Err(StoreError::NoSuchKey(key.to_string())),
                }
            }
        };
        let present = self.shards(id)?;
        if let Some(other) = present.iter().find(|s| s.shards != shards) {
            return Err(StoreError::ShardCount { key: key.into(), found: other.shards, asked: shards });
        }
        if let Some(s) = present.iter().find(|s| s.shard == shard) {
            return Err(StoreError::ShardTaken { key: key.into(), shard, by: s.describe() });
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let info = ShardInfo {
            shard,
            shards,
            host: meta.host.clone(),
            pid: meta.pid,
            registered_at: now,
            ended_at: None,
            status: RunStatus::Running,
        };
        match self.put_shard_new(id, &info) {
            Ok(()) => {
                self.beat(Beat { run_id: id, shard: Some(shard) })?;
                Ok(id)
            }
            Err(e) => match self.shards(id)?.into_iter().find(|s| s.shard == shard) {
                Some(s) => Err(StoreError::ShardTaken { key: key.into(), shard, by: s.describe() }),
                None => Err(e),
            },
        }
    }

    fn put_shard_new(&self, run_id: i64, s: &ShardInfo) -> Result<()> {
        self.execute(
            &format!("INSERT INTO shards (run_id, {SHARD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            shard_values(run_id, s),
        )?;
        Ok(())
    }

    /// Stores a shard row as it is (copying runs between stores).
    pub(crate) fn put_shard(&self, run_id: i64, s: &ShardInfo) -> Result<()> {
        self.execute("DELETE FROM shards WHERE run_id = ?1 AND shard = ?2", values![run_id, s.shard])?;
        self.put_shard_new(run_id, s)
    }

    /// The shards registered for a run, in shard order; a running shard
    /// whose process (on this host) is gone shows as `incomplete`.
    pub fn shards(&self, run_id: i64) -> Result<Vec<ShardInfo>> {
        let rows = self.query(
            &format!("SELECT {SHARD_COLUMNS}, heartbeat_at FROM shards WHERE run_id = ?1 ORDER BY shard"),
            values![run_id],
        )?;
        let host = this_host();
        let mut now = None;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let corrupt = |why| StoreError::Corrupt { run: run_id, why };
            let mut s = shard_from_row(row).map_err(corrupt)?;
            let beat = row.opt_f64(7).map_err(corrupt)?;
            let gone = if s.status != RunStatus::Running {
                false
            } else if s.host == host {
                !s.pid.is_some_and(process_alive)
            } else if beat.is_some() {
                let now = match now {
                    Some(t) => t,
                    None => *now.insert(self.db_now()?),
                };
                heartbeat::stale(beat, now)
            } else {
                false
            };
            if gone {
                s.status = RunStatus::Incomplete;
                self.execute(
                    "UPDATE shards SET status = 'incomplete' WHERE run_id = ?1 AND shard = ?2 AND status = 'running'",
                    values![run_id, s.shard],
                )?;
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Marks this shard ended with `status`. Returns true when it was the
    /// last one running: the caller then stores the run's summary over all
    /// shards with [`Store::finish_run`].
    pub fn finish_shard(&self, run_id: i64, shard: u32, status: RunStatus, ended_at: &str) -> Result<bool> {
        // Touching the run row first serialises the shards that end at once,
        // so exactly one of them sees none left running.
        let rows = self
            .conn
            .transaction(
                vec![
                    ("UPDATE runs SET pid = NULL WHERE id = ?1".into(), values![run_id]),
                    (
                        "UPDATE shards SET status = ?3, ended_at = ?4 WHERE run_id = ?1 AND shard = ?2".into(),
                        values![run_id, shard, status.as_str(), ended_at],
                    ),
                ],
                ("SELECT count(*) FROM shards WHERE run_id = ?1 AND status = 'running'".into(), values![run_id]),
            )
            .map_err(|e| self.err(e))?;
        let running =
            rows.first().map(|r| r.i64(0)).transpose().map_err(|why| StoreError::Corrupt { run: run_id, why })?;
        Ok(running == Some(0))
    }

    /// Takes a shard's registration back (it gave up waiting for the
    /// others), so that it can join again.
    pub fn leave_shard(&self, run_id: i64, shard: u32) -> Result<()> {
        self.execute("DELETE FROM shards WHERE run_id = ?1 AND shard = ?2", values![run_id, shard])?;
        Ok(())
    }

    /// The key a sharded run was started with.
    pub fn run_key(&self, run_id: i64) -> Result<Option<String>> {
        let rows = self.query("SELECT run_key FROM runs WHERE id = ?1", values![run_id])?;
        match rows.first() {
            Some(r) => r.opt_text(0).map_err(|why| StoreError::Corrupt { run: run_id, why }),
            None => Err(StoreError::NoSuchRun(run_id)),
        }
    }

    /// The run started with `--run-id key`, if any.
    pub fn run_by_key(&self, key: &str) -> Result<Option<i64>> {
        let rows = self.query("SELECT id FROM runs WHERE run_key = ?1", values![key])?;
        rows.first().map(|r| r.i64(0)).transpose().map_err(|why| StoreError::Corrupt { run: 0, why })
    }

    /// A run named on the command line: a `--run-id` key first, else a
    /// stored id.
    pub fn resolve_run(&self, spec: &str) -> Result<i64> {
        if let Some(id) = self.run_by_key(spec)? {
            return Ok(id);
        }
        match spec.parse::<i64>() {
            Ok(id) => self.run(id).map(|r| r.meta.id),
            Err(_) => Err(StoreError::NoSuchKey(spec.to_string())),
        }
    }
}

fn shard_values(run_id: i64, s: &ShardInfo) -> Vec<crate::backend::Value> {
    values![run_id, s.shard, s.shards, &s.host, s.pid, s.registered_at, s.ended_at.as_deref(), s.status.as_str()]
}

fn shard_from_row(row: &Row) -> std::result::Result<ShardInfo, String> {
    Ok(ShardInfo {
        shard: row.opt_small(0)?.unwrap_or(0),
        shards: row.opt_small(1)?.unwrap_or(0),
        host: row.text(2)?,
        pid: row.opt_small(3)?,
        registered_at: row.f64(4)?,
        ended_at: row.opt_text(5)?,
        status: RunStatus::parse(&row.text(6)?).unwrap_or(RunStatus::Incomplete),
    })
}
