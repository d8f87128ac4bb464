//! The database schema and its migrations, keyed by SQLite's
//! `user_version`.

use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;

/// Schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

const V1: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tool_version  TEXT NOT NULL,
    command_line  TEXT NOT NULL,
    host          TEXT NOT NULL,
    backend_url   TEXT NOT NULL,
    model         TEXT NOT NULL,
    api           TEXT NOT NULL,
    workload      TEXT NOT NULL,
    schedule      TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    status        TEXT NOT NULL,
    config_json   TEXT NOT NULL,
    pid           INTEGER,
    run_group     TEXT,
    summary_json  TEXT
);
CREATE INDEX IF NOT EXISTS runs_group ON runs(run_group);
CREATE TABLE IF NOT EXISTS requests (
    run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL,
    request_id      TEXT NOT NULL,
    agent           INTEGER,
    warmup          INTEGER NOT NULL,
    label           TEXT,
    t_sched         REAL NOT NULL,
    t_send          REAL NOT NULL,
    t_first_byte    REAL,
    t_first_token   REAL,
    t_last_token    REAL,
    t_end           REAL NOT NULL,
    input_tokens    INTEGER,
    output_tokens   INTEGER NOT NULL,
    reasoning_tokens INTEGER,
    token_source    TEXT NOT NULL,
    event_tokens    INTEGER NOT NULL,
    token_events    INTEGER NOT NULL,
    finish_reason   TEXT,
    http_status     INTEGER,
    retries         INTEGER NOT NULL,
    error_kind      TEXT,
    error_status    INTEGER,
    error_message   TEXT,
    itl_json        TEXT NOT NULL,
    server_timings_json TEXT,
    output_text     TEXT,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    json    TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, name)
);
";

/// Version 2: each request's workload context (shared-prefix group,
/// conversation, turn, context tokens) as JSON; NULL when it has none, as in
/// every row written before.
const V2: &str = "ALTER TABLE requests ADD COLUMN context_json TEXT;";

/// Version 3: what a request's stream held beyond answer text (the first
/// answer and tool-call instants, the tool calls) as JSON; NULL when it held
/// only answer text, as in every row written before.
const V3: &str = "ALTER TABLE requests ADD COLUMN stream_json TEXT;";

pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let e = |source| StoreError::Sqlite { path: path.to_path_buf(), source };
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(e)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(e)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(e)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(e)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found: version, known: SCHEMA_VERSION });
    }
    if version < 1 {
        conn.execute_batch(V1).map_err(e)?;
        conn.pragma_update(None, "user_version", 1).map_err(e)?;
    }
    if version < 2 {
        conn.execute_batch(&format!("BEGIN; {V2} PRAGMA user_version = 2; COMMIT;")).map_err(e)?;
    }
    if version < 3 {
        conn.execute_batch(&format!("BEGIN; {V3} PRAGMA user_version = 3; COMMIT;")).map_err(e)?;
    }
    Ok(())
}
