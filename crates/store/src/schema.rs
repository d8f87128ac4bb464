//! The database schema and its migrations. SQLite keeps the version in
//! its `user_version`; PostgreSQL in the one-row table `fleetbench_schema`,
//! migrated under an advisory lock so that many processes opening the same
//! database at once migrate it once. Both get the same tables, columns and
//! steps; PostgreSQL spells SQLite's types as `BIGINT`, `DOUBLE PRECISION`
//! and `BIGSERIAL`.

use crate::backend::{Conn, DbError};
use crate::StoreError;

/// Schema version this build writes.
pub const SCHEMA_VERSION: i64 = 5;

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

/// Version 3: the shards of a run measured by several processes
/// (`--shard I/N --run-id KEY`): the run's key, and one row per shard that
/// registered, with its host, process and status.
const V3: &str = "
ALTER TABLE runs ADD COLUMN run_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS runs_key ON runs(run_key);
CREATE TABLE IF NOT EXISTS shards (
    run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    shard         INTEGER NOT NULL,
    shards        INTEGER NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER,
    registered_at REAL NOT NULL,
    ended_at      TEXT,
    status        TEXT NOT NULL,
    PRIMARY KEY (run_id, shard)
);
";

/// Version 4: what a request's stream held beyond answer text (the first
/// answer and tool-call instants, the tool calls) as JSON; NULL when it held
/// only answer text, as in every row written before.
const V4: &str = "ALTER TABLE requests ADD COLUMN stream_json TEXT;";

/// Version 5: the last heartbeat of a running run and of each shard, in
/// seconds on the database's own clock, so that a run whose process died on
/// another host (where its pid cannot be checked) shows as incomplete once
/// its heartbeat is stale; NULL in every row written before.
const V5: &str = "
ALTER TABLE runs ADD COLUMN heartbeat_at REAL;
ALTER TABLE shards ADD COLUMN heartbeat_at REAL;
";

/// Every step, in order: version it brings the database to, its SQL.
const STEPS: [(i64, &str); 5] = [(1, V1), (2, V2), (3, V3), (4, V4), (5, V5)];

/// SQLite's DDL in PostgreSQL's types.
fn pg_ddl(sql: &str) -> String {
    sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
        .replace("REAL", "DOUBLE PRECISION")
}

/// Brings the database to [`SCHEMA_VERSION`]; `shown` names it in errors.
pub(crate) fn migrate(conn: &mut Conn, shown: &str) -> Result<(), StoreError> {
    let too_new = match conn {
        Conn::Sqlite(c) => migrate_sqlite(c).map_err(|e| StoreError::db(shown, e.into()))?,
        Conn::Postgres(c) => {
            c.call(migrate_postgres).and_then(|r| r.map_err(DbError::from)).map_err(|e| StoreError::db(shown, e))?
        }
    };
    match too_new {
        Some(found) => Err(StoreError::TooNew { db: shown.to_string(), found, known: SCHEMA_VERSION }),
        None => Ok(()),
    }
}

/// Migrates a SQLite database; the version found when it is newer than
/// this build's.
fn migrate_sqlite(conn: &rusqlite::Connection) -> rusqlite::Result<Option<i64>> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    use_wal(conn)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Taken for writing before the version is read: processes opening a
    // new database at once migrate it once.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Ok(Some(version));
    }
    for (to, sql) in STEPS {
        if version < to {
            tx.execute_batch(&format!("{sql} PRAGMA user_version = {to};"))?;
        }
    }
    tx.commit()?;
    Ok(None)
}

/// How long a SQLite connection waits for another process's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Puts the database in WAL mode. Switching a new file to WAL needs it
/// alone, and SQLite answers "database is locked" at once, without waiting
/// in the busy handler, when another process is opening it at the same
/// moment (the shards of one run do): so this waits and tries again, for as
/// long as the busy timeout.
fn use_wal(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    let start = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(e) if is_busy(&e) && start.elapsed() < BUSY_TIMEOUT => {}
            done => return done,
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Migrates a PostgreSQL database in one transaction under an advisory
/// lock; the version found when it is newer than this build's.
fn migrate_postgres(cl: &mut postgres::Client) -> Result<Option<i64>, postgres::Error> {
    let mut tx = cl.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock(7215398841)", &[])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS fleetbench_schema (version BIGINT NOT NULL)")?;
    let version: i64 = match tx.query_opt("SELECT version FROM fleetbench_schema", &[])? {
        Some(row) => row.try_get(0)?,
        None => {
            tx.execute("INSERT INTO fleetbench_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if version > SCHEMA_VERSION {
        return Ok(Some(version));
    }
    for (to, sql) in STEPS {
        if version < to {
            tx.batch_execute(&pg_ddl(sql))?;
        }
    }
    tx.execute("UPDATE fleetbench_schema SET version = $1", &[&SCHEMA_VERSION])?;
    tx.commit()?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_ddl_has_postgres_types() {
        let ddl = pg_ddl(V1);
        assert!(ddl.contains("id            BIGSERIAL PRIMARY KEY"), "{ddl}");
        assert!(ddl.contains("t_sched         DOUBLE PRECISION NOT NULL"), "{ddl}");
        assert!(!ddl.contains("INTEGER") && !ddl.contains(" REAL"), "{ddl}");
    }
}
