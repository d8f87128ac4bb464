//! The arena's answer writer: each scored [`Answer`] is stored as an
//! `answer` artifact by a writer thread of its own (the one
//! [`RecordWriter`](crate::RecordWriter) uses), committed as soon as the
//! queue is drained, so neither the operators nor the HTTP collectors wait
//! on SQLite.

use std::time::Duration;

use crate::backend::values;
use crate::records::arena::Answer;
use crate::writer::BatchWriter;
use crate::{upsert, Artifact, Db, Store, StoreError, ARTIFACT_COLUMNS};

/// Handle to the answer writer thread of one arena run.
pub struct AnswerWriter {
    inner: BatchWriter<Answer>,
}

impl AnswerWriter {
    /// Opens its own connection to the database `db` and starts the
    /// writer thread for `run_id`, which also stamps the run's heartbeat.
    pub fn start(db: &Db, run_id: i64) -> Result<AnswerWriter, StoreError> {
        let beat = crate::heartbeat::Beat { run_id, shard: None };
        let inner = BatchWriter::start(db, "fleetbench-answers", Duration::ZERO, beat, move |store, batch| {
            store.put_answers(run_id, batch)
        })?;
        Ok(AnswerWriter { inner })
    }

    /// Queues an answer, stored under [`Answer::artifact_name`]; returns
    /// false if the writer has stopped (its error comes from
    /// [`finish`](AnswerWriter::finish)).
    pub fn write(&self, answer: Answer) -> bool {
        self.inner.write(answer)
    }

    /// Stores everything queued and stops; returns how many were written.
    pub fn finish(self) -> Result<u64, StoreError> {
        self.inner.finish()
    }
}

impl Store {
    /// Stores answers in one transaction.
    fn put_answers(&mut self, run_id: i64, answers: &[Answer]) -> Result<(), StoreError> {
        let rows = answers
            .iter()
            .map(|a| {
                let name = a.artifact_name();
                let json = serde_json::to_string(a).map_err(|err| StoreError::Corrupt {
                    run: run_id,
                    why: format!("artifact {}/{name}: {err}", Answer::KIND),
                })?;
                Ok(values![run_id, Answer::KIND, name, json])
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sql = upsert("artifacts", ARTIFACT_COLUMNS, &ARTIFACT_COLUMNS[..3]);
        let shown = self.shown.clone();
        self.conn.execute_many(&sql, rows).map_err(|e| StoreError::db(&shown, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_stored_as_typed_artifacts() {
        let dir = std::env::temp_dir().join(format!("fleetbench-answers-{}", std::process::id()));
        let db = dir.join("r.db");
        let store = Store::open(&db).expect("open");
        let meta = fleetbench_core::RunMeta {
            id: 0,
            tool_version: "t".into(),
            command_line: "c".into(),
            host: "h".into(),
            backend_url: "u".into(),
            model: "m".into(),
            api: "chat".into(),
            workload: "w".into(),
            schedule: "s".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            ended_at: None,
            status: fleetbench_core::RunStatus::Running,
            config: serde_json::json!({}),
            pid: None,
            group: None,
        };
        let run = store.create_run(&meta).expect("run");
        let w = AnswerWriter::start(store.db(), run).expect("writer");
        for (b, e) in [("rules", "e1"), ("rules", "e0"), ("random", "e0")] {
            let a = Answer { backend: b.into(), episode_id: e.into(), text: format!("{b} {e}"), ..Default::default() };
            assert!(w.write(a));
        }
        assert_eq!(w.finish().expect("finish"), 3);
        let got = store.get_all::<Answer>(run).expect("answers");
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["random/e0", "rules/e0", "rules/e1"]);
        assert_eq!(got[2].1.text, "rules e1");
        let raw = store.artifacts(run, "answer").expect("raw");
        assert!(raw[0].1.get("error").is_none() && raw[0].1.get("ttft_s").is_none(), "{}", raw[0].1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
