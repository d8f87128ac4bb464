//! Persistence: one database holding every run, every request and named
//! JSON artifacts (sweep levels, arena answers, energy timelines): a SQLite
//! file (WAL) on one machine, or a PostgreSQL database that many hosts and
//! processes write at once ([`Db`]). Records are written as they complete by
//! a [`RecordWriter`] at most about 100 ms behind, so a killed run loses only
//! the requests in flight.

mod answers;
mod backend;
mod copy;
mod db;
mod heartbeat;
pub mod records;
mod schema;
mod shards;
mod writer;

use std::path::{Path, PathBuf};

use fleetbench_core::streaming::Spans;
use fleetbench_core::{ErrorKind, RequestError, RequestRecord, RunMeta, RunStatus, ServerTimings, TokenSource};

pub use answers::AnswerWriter;
pub use backend::DbError;
use backend::{values, Conn, PgConn, Row, Value};
pub use copy::CopyReport;
pub use db::{without_password, Db, PgTarget};
pub use heartbeat::{HEARTBEAT_EVERY, STALE_AFTER};
pub use records::Artifact;
pub use schema::SCHEMA_VERSION;
pub use shards::ShardInfo;
pub use writer::RecordWriter;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the directory for the results database {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("results database {db}: {source}")]
    Database {
        db: String,
        #[source]
        source: DbError,
    },
    #[error("results database {url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("database password file {path}: {why}")]
    PasswordFile { path: PathBuf, why: String },
    #[error("results database {db} was written by a newer fleetbench (schema {found}, this one knows {known}); upgrade fleetbench or use --db with another database")]
    TooNew { db: String, found: i64, known: i64 },
    #[error("no run with id {0} in the results database (see `fleetbench runs list`)")]
    NoSuchRun(i64),
    #[error("no run with id or key {0:?} in the results database (see `fleetbench runs list`)")]
    NoSuchKey(String),
    #[error("run {key:?} has {found} shards but this one was started with {asked}: give every shard the same /N")]
    ShardCount { key: String, found: u32, asked: u32 },
    #[error("shard {shard} of run {key:?} is already registered by {by}; give each process its own --shard")]
    ShardTaken { key: String, shard: u32, by: String },
    #[error("cannot start the database writer thread: {0}")]
    Thread(String),
    #[error("stored data for run {run} is corrupt: {why}")]
    Corrupt { run: i64, why: String },
}

impl StoreError {
    pub(crate) fn db(shown: &str, source: DbError) -> StoreError {
        StoreError::Database { db: shown.to_string(), source }
    }
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
    /// Its shards, when several processes measured it (`--shard`).
    pub shards: Vec<ShardInfo>,
}

/// An open results database.
pub struct Store {
    conn: Conn,
    db: Db,
    /// The database as shown in messages (no password).
    shown: String,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        Store::connect(&Db::Sqlite(path.to_path_buf()))
    }

    /// Opens the database `db`: a SQLite file (created with its directory if
    /// needed) or a PostgreSQL database (its tables created if needed), and
    /// migrates it to this build's schema.
    pub fn connect(db: &Db) -> Result<Store> {
        let shown = db.to_string();
        let conn = match db {
            Db::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
                }
                Conn::Sqlite(rusqlite::Connection::open(path).map_err(|e| StoreError::db(&shown, e.into()))?)
            }
            Db::Postgres(t) => {
                Conn::Postgres(PgConn::connect((*t.config).clone()).map_err(|e| StoreError::db(&shown, e))?)
            }
        };
        let mut store = Store { conn, db: db.clone(), shown };
        schema::migrate(&mut store.conn, &store.shown)?;
        Ok(store)
    }

    /// Where this store lives.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Whether it is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, Conn::Postgres(_))
    }

    fn err(&self, source: DbError) -> StoreError {
        StoreError::db(&self.shown, source)
    }

    fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64> {
        self.conn.execute(sql, params).map_err(|e| self.err(e))
    }

    fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>> {
        self.conn.query(sql, params).map_err(|e| self.err(e))
    }

    fn runs_where(&self, clause: &str, params: Vec<Value>) -> Result<Vec<StoredRun>> {
        let rows = self.query(&format!("{RUN_SELECT} {clause}"), params)?;
        rows.iter()
            .map(|r| {
                let run = run_from_row(r)?;
                let beat = r.opt_f64(17).map_err(|why| StoreError::Corrupt { run: run.meta.id, why })?;
                self.settle(run, beat)
            })
            .collect()
    }

    /// Stores a new run and returns its id.
    pub fn create_run(&self, meta: &RunMeta) -> Result<i64> {
        let rows = self.query(
            "INSERT INTO runs (tool_version, command_line, host, backend_url, model, api, workload, schedule,
                               started_at, ended_at, status, config_json, pid, run_group)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) RETURNING id",
            meta_values(meta),
        )?;
        let id = rows
            .first()
            .ok_or_else(|| self.err(DbError::Postgres("INSERT returned no id".into())))?
            .i64(0)
            .map_err(|why| StoreError::Corrupt { run: 0, why })?;
        if meta.status == RunStatus::Running {
            self.beat(heartbeat::Beat { run_id: id, shard: None })?;
        }
        Ok(id)
    }

    /// Writes records of a run in one transaction (existing indexes are
    /// replaced).
    pub fn insert_records(&mut self, run_id: i64, records: &[RequestRecord]) -> Result<()> {
        let rows = records.iter().map(|r| record_values(run_id, r)).collect();
        let sql = upsert("requests", REQUEST_COLUMNS, &["run_id", "idx"]);
        let shown = self.shown.clone();
        self.conn.execute_many(&sql, rows).map_err(|e| StoreError::db(&shown, e))
    }

    /// Marks a run finished and stores its summary.
    pub fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        ended_at: &str,
        summary: Option<&serde_json::Value>,
    ) -> Result<()> {
        let n = self.execute(
            "UPDATE runs SET status = ?2, ended_at = ?3, summary_json = ?4, pid = NULL WHERE id = ?1",
            values![run_id, status.as_str(), ended_at, summary.map(|s| s.to_string())],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchRun(run_id));
        }
        Ok(())
    }

    /// Runs, newest first. Runs left `running` by a dead process show as
    /// `incomplete` (and are marked so).
    pub fn list_runs(&self, limit: usize) -> Result<Vec<StoredRun>> {
        self.runs_where("ORDER BY r.id DESC LIMIT ?1", values![limit as u64])
    }

    /// One run by id.
    pub fn run(&self, id: i64) -> Result<StoredRun> {
        self.runs_where("WHERE r.id = ?1", values![id])?.into_iter().next().ok_or(StoreError::NoSuchRun(id))
    }

    /// The most recent run id, if any.
    pub fn latest_run_id(&self) -> Result<Option<i64>> {
        let rows = self.query("SELECT max(id) FROM runs", vec![])?;
        match rows.first() {
            Some(r) => r.opt_i64(0).map_err(|why| StoreError::Corrupt { run: 0, why }),
            None => Ok(None),
        }
    }

    /// Runs of one group (a sweep or a demo), in id order.
    pub fn runs_in_group(&self, group: &str) -> Result<Vec<StoredRun>> {
        self.runs_where("WHERE r.run_group = ?1 ORDER BY r.id", values![group])
    }

    /// A run left `running` by a process of this host that is gone is
    /// `incomplete` (and marked so). On PostgreSQL, where runs come from
    /// many hosts, another host's process cannot be checked: its run is
    /// `incomplete` once its heartbeat (`heartbeat`, on the database's clock)
    /// is stale. A sharded run is running while one of its shards is, and
    /// `incomplete` once none is but one did not complete.
    fn settle(&self, mut r: StoredRun, heartbeat: Option<f64>) -> Result<StoredRun> {
        r.shards = self.shards(r.meta.id)?;
        let gone = if r.shards.is_empty() {
            let checkable = !self.is_postgres() || r.meta.host == this_host();
            if r.meta.status != RunStatus::Running {
                false
            } else if checkable {
                !r.meta.pid.is_some_and(process_alive)
            } else {
                heartbeat.is_some() && heartbeat::stale(heartbeat, self.db_now()?)
            }
        } else {
            r.shards.iter().all(|s| s.status != RunStatus::Running)
        };
        if r.meta.status == RunStatus::Running && gone {
            r.meta.status = RunStatus::Incomplete;
            self.execute(
                "UPDATE runs SET status = 'incomplete', pid = NULL WHERE id = ?1 AND status = 'running'",
                values![r.meta.id],
            )?;
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
    /// time, reading pages of [`RECORD_PAGE`] rows: memory does not grow
    /// with the run.
    pub fn for_each_record(&self, run_id: i64, mut f: impl FnMut(RequestRecord)) -> Result<()> {
        let sql = format!(
            "SELECT {} FROM requests WHERE run_id = ?1 AND idx > ?2 ORDER BY idx LIMIT {RECORD_PAGE}",
            &REQUEST_COLUMNS[1..].join(", ")
        );
        let mut after = -1i64;
        loop {
            let rows = self.query(&sql, values![run_id, after])?;
            let n = rows.len();
            for row in &rows {
                let r = record_from_row(row).map_err(|why| StoreError::Corrupt { run: run_id, why })?;
                after = r.index as i64;
                f(r);
            }
            if n < RECORD_PAGE {
                return Ok(());
            }
        }
    }

    /// When a run's measured (not warm-up) requests start and end, and each
    /// agent's first send and last end, in one query.
    pub fn spans(&self, run_id: i64) -> Result<Spans> {
        let rows = self.query(
            "SELECT agent, COUNT(*), MIN(t_send), MAX(t_end) FROM requests
             WHERE run_id = ?1 AND warmup = 0 GROUP BY agent ORDER BY agent",
            values![run_id],
        )?;
        let corrupt = |why| StoreError::Corrupt { run: run_id, why };
        let mut spans = Spans { start: f64::INFINITY, end: f64::NEG_INFINITY, agents: Some(Vec::new()), sent: 0 };
        for row in &rows {
            let agent: Option<u32> = row.opt_small(0).map_err(corrupt)?;
            let n = row.i64(1).map_err(corrupt)?;
            let (first, last) = (row.f64(2).map_err(corrupt)?, row.f64(3).map_err(corrupt)?);
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
    /// overlap it), counted by the database with a running sum: one row
    /// comes back however long the run.
    pub fn max_in_flight(&self, run_id: i64) -> Result<u64> {
        let rows = self.query(
            "SELECT MAX(n) FROM (
                SELECT SUM(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS n FROM (
                    SELECT t_send AS t, 1 AS d FROM requests WHERE run_id = ?1 AND warmup = 0
                    UNION ALL
                    SELECT CASE WHEN t_end > t_send THEN t_end ELSE t_send END, -1
                      FROM requests WHERE run_id = ?1 AND warmup = 0) AS edges) AS running",
            values![run_id],
        )?;
        let max = match rows.first() {
            Some(row) => row.opt_f64(0).map_err(|why| StoreError::Corrupt { run: run_id, why })?.unwrap_or(0.0),
            None => 0.0,
        };
        Ok(max.max(0.0) as u64)
    }

    /// Stores a named JSON artifact of a run (a sweep level, an arena
    /// answer, an energy timeline...).
    pub fn put_artifact(&self, run_id: i64, kind: &str, name: &str, value: &serde_json::Value) -> Result<()> {
        self.execute(
            &upsert("artifacts", ARTIFACT_COLUMNS, &ARTIFACT_COLUMNS[..3]),
            values![run_id, kind, name, value.to_string()],
        )?;
        Ok(())
    }

    /// Artifacts of one kind for a run, as (name, value), in name order.
    pub fn artifacts(&self, run_id: i64, kind: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let rows = self.query(
            "SELECT name, json FROM artifacts WHERE run_id = ?1 AND kind = ?2 ORDER BY name",
            values![run_id, kind],
        )?;
        rows.iter()
            .map(|r| {
                let corrupt = |why: String| StoreError::Corrupt { run: run_id, why };
                let (n, j) = (r.text(0).map_err(corrupt)?, r.text(1).map_err(corrupt)?);
                serde_json::from_str(&j)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| StoreError::Corrupt { run: run_id, why: format!("artifact {kind}/{n}: {e}") })
            })
            .collect()
    }
}

/// `INSERT INTO table (columns) VALUES (?1, …) ON CONFLICT (key) DO UPDATE`
/// the other columns: replaces a row of the same key, in both databases.
pub(crate) fn upsert(table: &str, columns: &[&str], key: &[&str]) -> String {
    let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    let set: Vec<String> = columns.iter().filter(|c| !key.contains(c)).map(|c| format!("{c} = excluded.{c}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
        columns.join(", "),
        marks.join(", "),
        key.join(", "),
        set.join(", ")
    )
}

pub(crate) const ARTIFACT_COLUMNS: &[&str] = &["run_id", "kind", "name", "json"];

/// The columns of a request row, in the order [`record_values`] fills them.
/// Rows read at a time when a run's records are streamed.
const RECORD_PAGE: usize = 5_000;

const REQUEST_COLUMNS: &[&str] = &[
    "run_id",
    "idx",
    "request_id",
    "agent",
    "warmup",
    "label",
    "t_sched",
    "t_send",
    "t_first_byte",
    "t_first_token",
    "t_last_token",
    "t_end",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "token_source",
    "event_tokens",
    "token_events",
    "finish_reason",
    "http_status",
    "retries",
    "error_kind",
    "error_status",
    "error_message",
    "itl_json",
    "server_timings_json",
    "output_text",
    "context_json",
    "stream_json",
];

fn record_values(run_id: i64, r: &RequestRecord) -> Vec<Value> {
    let itl = serde_json::to_string(&r.itl).unwrap_or_else(|_| "[]".into());
    let timings = r.server_timings.map(|t| serde_json::to_string(&t).unwrap_or_default());
    let context = (!r.context.is_empty()).then(|| serde_json::to_string(&r.context).unwrap_or_default());
    let stream = StreamExtras::of(r).map(|x| serde_json::to_string(&x).unwrap_or_default());
    values![
        run_id,
        r.index,
        &r.request_id,
        r.agent,
        r.warmup,
        r.label.as_deref(),
        r.t_sched,
        r.t_send,
        r.t_first_byte,
        r.t_first_token,
        r.t_last_token,
        r.t_end,
        r.input_tokens,
        r.output_tokens,
        r.reasoning_tokens,
        r.token_source.as_str(),
        r.event_tokens,
        r.token_events,
        r.finish_reason.as_deref(),
        r.http_status,
        r.retries,
        r.error.as_ref().map(|e| e.kind.as_str()),
        r.error.as_ref().and_then(|e| e.status),
        r.error.as_ref().map(|e| e.message.as_str()),
        itl,
        timings,
        r.output_text.as_deref(),
        context,
        stream,
    ]
}

fn meta_values(meta: &RunMeta) -> Vec<Value> {
    values![
        &meta.tool_version,
        &meta.command_line,
        &meta.host,
        &meta.backend_url,
        &meta.model,
        &meta.api,
        &meta.workload,
        &meta.schedule,
        &meta.started_at,
        meta.ended_at.as_deref(),
        meta.status.as_str(),
        meta.config.to_string(),
        meta.pid,
        meta.group.as_deref(),
    ]
}

const RUN_SELECT: &str = "SELECT r.id, r.tool_version, r.command_line, r.host, r.backend_url, r.model, r.api,
    r.workload, r.schedule, r.started_at, r.ended_at, r.status, r.config_json, r.pid, r.run_group, r.summary_json,
    (SELECT count(*) FROM requests q WHERE q.run_id = r.id), r.heartbeat_at
    FROM runs r";

fn run_from_row(row: &Row) -> Result<StoredRun> {
    let id = row.i64(0).map_err(|why| StoreError::Corrupt { run: 0, why })?;
    let corrupt = |why: String| StoreError::Corrupt { run: id, why };
    let status = row.text(11).map_err(corrupt)?;
    let config = row.text(12).map_err(corrupt)?;
    let summary = row.opt_text(15).map_err(corrupt)?;
    let meta = (|| -> std::result::Result<RunMeta, String> {
        Ok(RunMeta {
            id,
            tool_version: row.text(1)?,
            command_line: row.text(2)?,
            host: row.text(3)?,
            backend_url: row.text(4)?,
            model: row.text(5)?,
            api: row.text(6)?,
            workload: row.text(7)?,
            schedule: row.text(8)?,
            started_at: row.text(9)?,
            ended_at: row.opt_text(10)?,
            status: RunStatus::parse(&status).unwrap_or(RunStatus::Incomplete),
            config: serde_json::from_str(&config).unwrap_or(serde_json::Value::Null),
            pid: row.opt_small(13)?,
            group: row.opt_text(14)?,
        })
    })()
    .map_err(corrupt)?;
    Ok(StoredRun {
        meta,
        summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
        request_count: row.u64(16).map_err(corrupt)?,
        shards: Vec::new(),
    })
}

/// A request row (the columns of [`REQUEST_COLUMNS`] after `run_id`).
fn record_from_row(row: &Row) -> std::result::Result<RequestRecord, String> {
    let idx = row.u64(0)?;
    let at = |e: String| format!("request {idx}: {e}");
    let itl: Vec<f64> = serde_json::from_str(&row.text(23)?).map_err(|e| at(format!("ITL list: {e}")))?;
    let server_timings: Option<ServerTimings> = row.opt_text(24)?.and_then(|t| serde_json::from_str(&t).ok());
    let error = row.opt_text(20)?.map(|k| RequestError {
        kind: ErrorKind::parse(&k).unwrap_or(ErrorKind::Other),
        status: row.opt_small(21).ok().flatten(),
        message: row.opt_text(22).ok().flatten().unwrap_or_default(),
    });
    let context = match row.opt_text(26)? {
        None => Default::default(),
        Some(c) => serde_json::from_str(&c).map_err(|e| at(format!("workload context: {e}")))?,
    };
    let stream: StreamExtras = match row.opt_text(27)? {
        // Only answer text: the first answer token was the first token.
        None => StreamExtras { t_first_answer_token: row.opt_f64(8)?, ..Default::default() },
        Some(x) => serde_json::from_str(&x).map_err(|e| at(format!("tool calls and first answer token: {e}")))?,
    };
    Ok(RequestRecord {
        index: idx,
        request_id: row.text(1)?,
        agent: row.opt_small(2)?,
        warmup: row.i64(3)? != 0,
        label: row.opt_text(4)?,
        t_sched: row.f64(5)?,
        t_send: row.f64(6)?,
        t_first_byte: row.opt_f64(7)?,
        t_first_token: row.opt_f64(8)?,
        t_last_token: row.opt_f64(9)?,
        t_end: row.f64(10)?,
        input_tokens: row.opt_u64(11)?,
        output_tokens: row.u64(12)?,
        reasoning_tokens: row.opt_u64(13)?,
        token_source: match row.text(14)?.as_str() {
            "server" => TokenSource::Server,
            "tokenizer" => TokenSource::Tokenizer,
            _ => TokenSource::Events,
        },
        event_tokens: row.u64(15)?,
        token_events: row.u64(16)?,
        finish_reason: row.opt_text(17)?,
        http_status: row.opt_small(18)?,
        retries: row.opt_small(19)?.unwrap_or(0),
        server_timings,
        error,
        itl,
        output_text: row.opt_text(25)?,
        context,
        t_first_answer_token: stream.t_first_answer_token,
        t_first_tool_token: stream.t_first_tool_token,
        tool_calls: stream.tool_calls,
    })
}

/// This machine's name, as runs record it.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// What a stream held beyond answer text, stored as one JSON column.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct StreamExtras {
    t_first_answer_token: Option<f64>,
    t_first_tool_token: Option<f64>,
    #[serde(default)]
    tool_calls: Vec<fleetbench_core::ToolCall>,
}

impl StreamExtras {
    /// `None` for a stream of answer text alone (the column stays NULL).
    fn of(r: &RequestRecord) -> Option<StreamExtras> {
        (r.beyond_answer() || !r.tool_calls.is_empty()).then(|| StreamExtras {
            t_first_answer_token: r.t_first_answer_token,
            t_first_tool_token: r.t_first_tool_token,
            tool_calls: r.tool_calls.clone(),
        })
    }
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
