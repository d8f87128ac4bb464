//! Persistence: one SQLite database (WAL) holding every run, every request
//! and named JSON artifacts (sweep levels, arena answers, energy timelines).
//! Records are written as they complete by a [`RecordWriter`] at most about
//! 100 ms behind, so a killed run loses only the requests in flight.

mod answers;
pub mod records;
mod schema;
mod writer;

use std::path::{Path, PathBuf};

use fleetbench_core::streaming::Spans;
use fleetbench_core::{ErrorKind, RequestError, RequestRecord, RunMeta, RunStatus, ServerTimings, TokenSource};
use rusqlite::{params, Connection, OptionalExtension, Row};

pub use answers::AnswerWriter;
pub use records::Artifact;
pub use writer::RecordWriter;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the directory for the results database {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("results database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("results database {path} was written by a newer fleetbench (schema {found}, this one knows {known}); upgrade fleetbench or use --db with another file")]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("no run with id {0} in the results database (see `fleetbench runs list`)")]
    NoSuchRun(i64),
    #[error("stored data for run {run} is corrupt: {why}")]
    Corrupt { run: i64, why: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A stored run: its metadata and the summary written when it ended.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub meta: RunMeta,
    /// The run's figures as JSON (a `RunMetrics`), absent while running.
    pub summary: Option<serde_json::Value>,
    /// Requests stored for it.
    pub request_count: u64,
}

/// An open results database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite { path: path.to_path_buf(), source })?;
        let store = Store { conn, path: path.to_path_buf() };
        schema::migrate(&store.conn, path)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Stores a new run and returns its id.
    pub fn create_run(&self, meta: &RunMeta) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (tool_version, command_line, host, backend_url, model, api, workload, schedule,
                                   started_at, ended_at, status, config_json, pid, run_group)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    meta.tool_version,
                    meta.command_line,
                    meta.host,
                    meta.backend_url,
                    meta.model,
                    meta.api,
                    meta.workload,
                    meta.schedule,
                    meta.started_at,
                    meta.ended_at,
                    meta.status.as_str(),
                    meta.config.to_string(),
                    meta.pid,
                    meta.group,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Writes records of a run in one transaction (existing indexes are
    /// replaced).
    pub fn insert_records(&mut self, run_id: i64, records: &[RequestRecord]) -> Result<()> {
        let path = self.path.clone();
        let e = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO requests (run_id, idx, request_id, agent, warmup, label, t_sched, t_send,
                        t_first_byte, t_first_token, t_last_token, t_end, input_tokens, output_tokens,
                        reasoning_tokens, token_source, event_tokens, token_events, finish_reason, http_status,
                        retries, error_kind, error_status, error_message, itl_json, server_timings_json, output_text,
                        context_json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                        ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
                )
                .map_err(e)?;
            for r in records {
                let itl = serde_json::to_string(&r.itl).unwrap_or_else(|_| "[]".into());
                let timings = r.server_timings.map(|t| serde_json::to_string(&t).unwrap_or_default());
                let context = (!r.context.is_empty()).then(|| serde_json::to_string(&r.context).unwrap_or_default());
                st.execute(params![
                    run_id,
                    r.index as i64,
                    r.request_id,
                    r.agent,
                    r.warmup,
                    r.label,
                    r.t_sched,
                    r.t_send,
                    r.t_first_byte,
                    r.t_first_token,
                    r.t_last_token,
                    r.t_end,
                    r.input_tokens.map(|v| v as i64),
                    r.output_tokens as i64,
                    r.reasoning_tokens.map(|v| v as i64),
                    r.token_source.as_str(),
                    r.event_tokens as i64,
                    r.token_events as i64,
                    r.finish_reason,
                    r.http_status,
                    r.retries,
                    r.error.as_ref().map(|e| e.kind.as_str()),
                    r.error.as_ref().and_then(|e| e.status),
                    r.error.as_ref().map(|e| e.message.as_str()),
                    itl,
                    timings,
                    r.output_text,
                    context,
                ])
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Marks a run finished and stores its summary.
    pub fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        ended_at: &str,
        summary: Option<&serde_json::Value>,
    ) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE runs SET status = ?2, ended_at = ?3, summary_json = ?4, pid = NULL WHERE id = ?1",
                params![run_id, status.as_str(), ended_at, summary.map(|s| s.to_string())],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(run_id));
        }
        Ok(())
    }

    /// Runs, newest first. Runs left `running` by a dead process show as
    /// `incomplete` (and are marked so).
    pub fn list_runs(&self, limit: usize) -> Result<Vec<StoredRun>> {
        let mut st =
            self.conn.prepare(&format!("{RUN_SELECT} ORDER BY r.id DESC LIMIT ?1")).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![limit as i64], run_from_row)
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(|r| self.settle(r)).collect()
    }

    /// One run by id.
    pub fn run(&self, id: i64) -> Result<StoredRun> {
        let r = self
            .conn
            .query_row(&format!("{RUN_SELECT} WHERE r.id = ?1"), params![id], run_from_row)
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or(StoreError::NoSuchRun(id))?;
        self.settle(r)
    }

    /// The most recent run id, if any.
    pub fn latest_run_id(&self) -> Result<Option<i64>> {
        self.conn.query_row("SELECT max(id) FROM runs", [], |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// Runs of one group (a sweep or a demo), in id order.
    pub fn runs_in_group(&self, group: &str) -> Result<Vec<StoredRun>> {
        let mut st = self
            .conn
            .prepare(&format!("{RUN_SELECT} WHERE r.run_group = ?1 ORDER BY r.id"))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![group], run_from_row)
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter().map(|r| self.settle(r)).collect()
    }

    fn settle(&self, mut r: StoredRun) -> Result<StoredRun> {
        if r.meta.status == RunStatus::Running && !r.meta.pid.is_some_and(process_alive) {
            r.meta.status = RunStatus::Incomplete;
            self.conn
                .execute(
                    "UPDATE runs SET status = 'incomplete', pid = NULL WHERE id = ?1 AND status = 'running'",
                    params![r.meta.id],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(r)
    }

    /// Every stored request of a run, in issue order.
    pub fn records(&self, run_id: i64) -> Result<Vec<RequestRecord>> {
        let mut all = Vec::new();
        self.for_each_record(run_id, |r| all.push(r))?;
        Ok(all)
    }

    /// Hands every stored request of a run to `f`, in issue order, one at a
    /// time: memory does not grow with the run.
    pub fn for_each_record(&self, run_id: i64, mut f: impl FnMut(RequestRecord)) -> Result<()> {
        let mut st = self
            .conn
            .prepare(
                "SELECT idx, request_id, agent, warmup, label, t_sched, t_send, t_first_byte, t_first_token,
                        t_last_token, t_end, input_tokens, output_tokens, reasoning_tokens, token_source,
                        event_tokens, token_events, finish_reason, http_status, retries, error_kind, error_status,
                        error_message, itl_json, server_timings_json, output_text, context_json
                 FROM requests WHERE run_id = ?1 ORDER BY idx",
            )
            .map_err(|e| self.err(e))?;
        let rows = st.query_map(params![run_id], record_from_row).map_err(|e| self.err(e))?;
        for row in rows {
            f(row.map_err(|e| self.err(e))?.map_err(|why| StoreError::Corrupt { run: run_id, why })?);
        }
        Ok(())
    }

    /// When a run's measured (not warm-up) requests start and end, and each
    /// agent's first send and last end, in one query.
    pub fn spans(&self, run_id: i64) -> Result<Spans> {
        let mut st = self
            .conn
            .prepare(
                "SELECT agent, COUNT(*), MIN(t_send), MAX(t_end) FROM requests
                 WHERE run_id = ?1 AND warmup = 0 GROUP BY agent ORDER BY agent",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![run_id], |row| {
                Ok((row.get::<_, Option<u32>>(0)?, row.get::<_, i64>(1)?, row.get::<_, f64>(2)?, row.get::<_, f64>(3)?))
            })
            .map_err(|e| self.err(e))?;
        let mut spans = Spans { start: f64::INFINITY, end: f64::NEG_INFINITY, agents: Some(Vec::new()), sent: 0 };
        for row in rows {
            let (agent, n, first, last) = row.map_err(|e| self.err(e))?;
            spans.sent += n.max(0) as u64;
            spans.start = spans.start.min(first);
            spans.end = spans.end.max(last);
            match (agent, spans.agents.as_mut()) {
                (Some(_), Some(agents)) => agents.push((first, last)),
                _ => spans.agents = None,
            }
        }
        Ok(spans)
    }

    /// The most measured requests of a run in flight at once (from their
    /// send and end instants; one that ends when another starts does not
    /// overlap it), sorted by the database: memory does not grow with the
    /// run.
    pub fn max_in_flight(&self, run_id: i64) -> Result<u64> {
        let mut st = self
            .conn
            .prepare(
                "SELECT t, d FROM (
                    SELECT t_send AS t, 1 AS d FROM requests WHERE run_id = ?1 AND warmup = 0
                    UNION ALL
                    SELECT MAX(t_end, t_send), -1 FROM requests WHERE run_id = ?1 AND warmup = 0)
                 ORDER BY t, d",
            )
            .map_err(|e| self.err(e))?;
        let rows = st.query_map(params![run_id], |row| row.get::<_, i64>(1)).map_err(|e| self.err(e))?;
        let (mut now, mut max) = (0i64, 0i64);
        for d in rows {
            now += d.map_err(|e| self.err(e))?;
            max = max.max(now);
        }
        Ok(max as u64)
    }

    /// Stores a named JSON artifact of a run (a sweep level, an arena
    /// answer, an energy timeline...).
    pub fn put_artifact(&self, run_id: i64, kind: &str, name: &str, value: &serde_json::Value) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO artifacts (run_id, kind, name, json) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, kind, name, value.to_string()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Artifacts of one kind for a run, as (name, value), in name order.
    pub fn artifacts(&self, run_id: i64, kind: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let mut st = self
            .conn
            .prepare("SELECT name, json FROM artifacts WHERE run_id = ?1 AND kind = ?2 ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![run_id, kind], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(n, j)| {
                serde_json::from_str(&j)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| StoreError::Corrupt { run: run_id, why: format!("artifact {kind}/{n}: {e}") })
            })
            .collect()
    }
}

const RUN_SELECT: &str = "SELECT r.id, r.tool_version, r.command_line, r.host, r.backend_url, r.model, r.api,
    r.workload, r.schedule, r.started_at, r.ended_at, r.status, r.config_json, r.pid, r.run_group, r.summary_json,
    (SELECT count(*) FROM requests q WHERE q.run_id = r.id)
    FROM runs r";

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<StoredRun> {
    let status: String = row.get(11)?;
    let config: String = row.get(12)?;
    let summary: Option<String> = row.get(15)?;
    Ok(StoredRun {
        meta: RunMeta {
            id: row.get(0)?,
            tool_version: row.get(1)?,
            command_line: row.get(2)?,
            host: row.get(3)?,
            backend_url: row.get(4)?,
            model: row.get(5)?,
            api: row.get(6)?,
            workload: row.get(7)?,
            schedule: row.get(8)?,
            started_at: row.get(9)?,
            ended_at: row.get(10)?,
            status: RunStatus::parse(&status).unwrap_or(RunStatus::Incomplete),
            config: serde_json::from_str(&config).unwrap_or(serde_json::Value::Null),
            pid: row.get(13)?,
            group: row.get(14)?,
        },
        summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
        request_count: row.get::<_, i64>(16)? as u64,
    })
}

type RecordResult = std::result::Result<RequestRecord, String>;

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<RecordResult> {
    let idx: i64 = row.get(0)?;
    let itl_json: String = row.get(23)?;
    let itl: Vec<f64> = match serde_json::from_str(&itl_json) {
        Ok(v) => v,
        Err(e) => return Ok(Err(format!("request {idx}: ITL list: {e}"))),
    };
    let timings: Option<String> = row.get(24)?;
    let server_timings: Option<ServerTimings> = timings.and_then(|t| serde_json::from_str(&t).ok());
    let source: String = row.get(14)?;
    let error_kind: Option<String> = row.get(20)?;
    let error = error_kind.map(|k| RequestError {
        kind: ErrorKind::parse(&k).unwrap_or(ErrorKind::Other),
        status: row.get::<_, Option<u16>>(21).ok().flatten(),
        message: row.get::<_, Option<String>>(22).ok().flatten().unwrap_or_default(),
    });
    let context = match row.get::<_, Option<String>>(26)? {
        None => Default::default(),
        Some(c) => match serde_json::from_str(&c) {
            Ok(v) => v,
            Err(e) => return Ok(Err(format!("request {idx}: workload context: {e}"))),
        },
    };
    Ok(Ok(RequestRecord {
        index: idx as u64,
        request_id: row.get(1)?,
        agent: row.get(2)?,
        warmup: row.get(3)?,
        label: row.get(4)?,
        t_sched: row.get(5)?,
        t_send: row.get(6)?,
        t_first_byte: row.get(7)?,
        t_first_token: row.get(8)?,
        t_last_token: row.get(9)?,
        t_end: row.get(10)?,
        input_tokens: row.get::<_, Option<i64>>(11)?.map(|v| v as u64),
        output_tokens: row.get::<_, i64>(12)? as u64,
        reasoning_tokens: row.get::<_, Option<i64>>(13)?.map(|v| v as u64),
        token_source: match source.as_str() {
            "server" => TokenSource::Server,
            "tokenizer" => TokenSource::Tokenizer,
            _ => TokenSource::Events,
        },
        event_tokens: row.get::<_, i64>(15)? as u64,
        token_events: row.get::<_, i64>(16)? as u64,
        finish_reason: row.get(17)?,
        http_status: row.get(18)?,
        retries: row.get(19)?,
        server_timings,
        error,
        itl,
        output_text: row.get(25)?,
        context,
    }))
}

/// Whether a process with this id is alive on this host.
fn process_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
