//! `fleetbench runs copy --from A --to B`: runs move between stores (a
//! laptop's SQLite file into the team's PostgreSQL, or back) with their
//! records, artifacts and shards. Each run gets a new id in the target;
//! artifacts that name runs (`run_id`, `run_ids`, as sweep records do) are
//! rewritten to the new ids, so a copied sweep still reads as one.

use std::collections::HashMap;

use crate::backend::values;
use crate::{Result, Store, StoreError};

/// What a copy did: each run's id in the source and in the target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyReport {
    pub runs: Vec<(i64, i64)>,
    pub records: u64,
    pub artifacts: u64,
}

/// Records are copied in batches of this many.
const BATCH: usize = 2000;

impl Store {
    /// Copies the runs `ids` (every run when empty), oldest first, into
    /// `to`.
    pub fn copy_runs(&self, to: &mut Store, ids: &[i64]) -> Result<CopyReport> {
        let mut runs = match ids {
            [] => self.list_runs(usize::MAX >> 1)?,
            ids => ids.iter().map(|&id| self.run(id)).collect::<Result<Vec<_>>>()?,
        };
        runs.sort_by_key(|r| r.meta.id);
        let mut report = CopyReport::default();
        let mut map = HashMap::new();
        for run in &runs {
            let new = to.create_run(&run.meta)?;
            to.execute(
                "UPDATE runs SET status = ?2, ended_at = ?3, summary_json = ?4, pid = NULL, run_key = ?5 WHERE id = ?1",
                values![
                    new,
                    run.meta.status.as_str(),
                    run.meta.ended_at.as_deref(),
                    run.summary.as_ref().map(|s| s.to_string()),
                    self.run_key(run.meta.id)?
                ],
            )?;
            map.insert(run.meta.id, new);
            report.runs.push((run.meta.id, new));
        }
        for &(old, new) in &report.runs {
            let records = self.records(old)?;
            for chunk in records.chunks(BATCH) {
                to.insert_records(new, chunk)?;
            }
            report.records += records.len() as u64;
            for row in self.query("SELECT kind, name, json FROM artifacts WHERE run_id = ?1", values![old])? {
                let corrupt = |why: String| StoreError::Corrupt { run: old, why };
                let (kind, name, json) =
                    (row.text(0).map_err(corrupt)?, row.text(1).map_err(corrupt)?, row.text(2).map_err(corrupt)?);
                let mut value: serde_json::Value = serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt { run: old, why: format!("artifact {kind}/{name}: {e}") })?;
                renumber(&mut value, &map);
                to.put_artifact(new, &kind, &name, &value)?;
                report.artifacts += 1;
            }
            for s in self.shards(old)? {
                to.put_shard(new, &s)?;
            }
        }
        Ok(report)
    }
}

/// Replaces run ids under `run_id` and `run_ids` keys by their new ids.
fn renumber(v: &mut serde_json::Value, map: &HashMap<i64, i64>) {
    let swap = |x: &mut serde_json::Value| {
        if let Some(new) = x.as_i64().and_then(|id| map.get(&id)) {
            *x = (*new).into();
        }
    };
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match (k.as_str(), x) {
                    ("run_id", x) => swap(x),
                    ("run_ids", serde_json::Value::Array(a)) => a.iter_mut().for_each(swap),
                    (_, x) => renumber(x, map),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| renumber(x, map)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_in_artifacts_follow_the_copy() {
        let map = HashMap::from([(3, 10), (4, 11)]);
        let mut v = serde_json::json!({"run_ids": [3, 4, 9], "levels": [{"run_id": 4, "x": 3}], "n": 3});
        renumber(&mut v, &map);
        assert_eq!(v, serde_json::json!({"run_ids": [10, 11, 9], "levels": [{"run_id": 11, "x": 3}], "n": 3}));
    }
}
