//! The two databases behind one small interface: SQLite (a file, WAL) and
//! PostgreSQL (a server shared by many hosts). Statements are written once,
//! in SQLite's `?N` placeholder style, and translated for PostgreSQL;
//! values go in and rows come out as [`Value`]s, so that reading a run or a
//! record is the same code whatever the database.

use std::sync::mpsc;
use std::thread::JoinHandle;

use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// One SQL value, as both databases store fleetbench's columns: integers
/// (`BIGINT`), floats (`DOUBLE PRECISION`), text and NULL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Value {
        Value::Int(v.into())
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// A list of values for one statement.
macro_rules! values {
    ($($v:expr),* $(,)?) => { vec![$($crate::backend::Value::from($v)),*] };
}
pub(crate) use values;

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::FLOAT8 => (*v as f64).to_sql(ty, out),
            Value::Int(v) => v.to_sql(ty, out),
            Value::Real(v) => v.to_sql(ty, out),
            Value::Text(v) => v.as_str().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::INT4, Type::FLOAT8, Type::TEXT, Type::VARCHAR].contains(ty)
    }

    to_sql_checked!();
}

/// One row of a result.
#[derive(Debug, Clone)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, String> {
        self.0.get(i).ok_or_else(|| format!("column {i} missing"))
    }

    pub(crate) fn opt_i64(&self, i: usize) -> Result<Option<i64>, String> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            v => Err(format!("column {i}: expected an integer, found {v:?}")),
        }
    }
    pub(crate) fn i64(&self, i: usize) -> Result<i64, String> {
        self.opt_i64(i)?.ok_or_else(|| format!("column {i}: NULL where an integer belongs"))
    }
    pub(crate) fn opt_u64(&self, i: usize) -> Result<Option<u64>, String> {
        self.opt_i64(i)?.map(|v| u64::try_from(v).map_err(|_| format!("column {i}: negative count {v}"))).transpose()
    }
    pub(crate) fn u64(&self, i: usize) -> Result<u64, String> {
        self.opt_u64(i)?.ok_or_else(|| format!("column {i}: NULL where a count belongs"))
    }
    pub(crate) fn opt_small<T: TryFrom<i64>>(&self, i: usize) -> Result<Option<T>, String> {
        self.opt_i64(i)?.map(|v| T::try_from(v).map_err(|_| format!("column {i}: {v} out of range"))).transpose()
    }
    pub(crate) fn opt_f64(&self, i: usize) -> Result<Option<f64>, String> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Real(v) => Ok(Some(*v)),
            Value::Int(v) => Ok(Some(*v as f64)),
            v => Err(format!("column {i}: expected a number, found {v:?}")),
        }
    }
    pub(crate) fn f64(&self, i: usize) -> Result<f64, String> {
        self.opt_f64(i)?.ok_or_else(|| format!("column {i}: NULL where a number belongs"))
    }
    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, String> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            v => Err(format!("column {i}: expected text, found {v:?}")),
        }
    }
    pub(crate) fn text(&self, i: usize) -> Result<String, String> {
        self.opt_text(i)?.ok_or_else(|| format!("column {i}: NULL where text belongs"))
    }
}

/// What went wrong in the database: the driver's message (never a
/// password: neither driver puts one in its errors).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(String),
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        DbError::Postgres(postgres_message(&e))
    }
}

/// A PostgreSQL error with the server's own message where there is one.
fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            // The driver's own text is the kind ("error connecting to
            // server"); the cause (refused, timed out, bad password) is in
            // its sources.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text = format!("{text}: {s_text}");
                }
                source = s.source();
            }
            text
        }
    }
}

/// An open connection to either database.
pub(crate) enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

impl Conn {
    /// Runs one statement; returns the rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: Vec<Value>) -> Result<u64, DbError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute(sql, rusqlite::params_from_iter(params.iter()))? as u64),
            Conn::Postgres(c) => {
                let sql = pg_sql(sql);
                c.call(move |cl| cl.execute(&sql, &refs(&params)))?.map_err(DbError::from)
            }
        }
    }

    /// Runs one query and returns its rows.
    pub(crate) fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let width = st.column_count();
                let rows = st.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    (0..width).map(|i| r.get_ref(i).map(sqlite_value)).collect::<rusqlite::Result<Vec<_>>>()
                })?;
                Ok(rows.map(|r| r.map(Row)).collect::<rusqlite::Result<Vec<_>>>()?)
            }
            Conn::Postgres(c) => {
                let sql = pg_sql(sql);
                let rows = c.call(move |cl| cl.query(&sql, &refs(&params)))??;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// Runs `sql` once per parameter list, all in one transaction.
    pub(crate) fn execute_many(&mut self, sql: &str, rows: Vec<Vec<Value>>) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(c) => {
                let tx = c.transaction()?;
                {
                    let mut st = tx.prepare_cached(sql)?;
                    for p in &rows {
                        st.execute(rusqlite::params_from_iter(p.iter()))?;
                    }
                }
                Ok(tx.commit()?)
            }
            Conn::Postgres(c) => {
                let sql = pg_sql(sql);
                c.call(move |cl| -> Result<(), postgres::Error> {
                    let mut tx = cl.transaction()?;
                    let st = tx.prepare(&sql)?;
                    for p in &rows {
                        tx.execute(&st, &refs(p))?;
                    }
                    tx.commit()
                })?
                .map_err(DbError::from)
            }
        }
    }

    /// Runs `statements`, then `query`, in one transaction (SQLite's
    /// taken for writing from the start), and returns the query's rows.
    pub(crate) fn transaction(
        &self,
        statements: Vec<(String, Vec<Value>)>,
        query: (String, Vec<Value>),
    ) -> Result<Vec<Row>, DbError> {
        match self {
            Conn::Sqlite(c) => {
                let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
                for (sql, p) in &statements {
                    tx.execute(sql, rusqlite::params_from_iter(p.iter()))?;
                }
                let rows = {
                    let mut st = tx.prepare(&query.0)?;
                    let width = st.column_count();
                    let rows = st.query_map(rusqlite::params_from_iter(query.1.iter()), |r| {
                        (0..width).map(|i| r.get_ref(i).map(sqlite_value)).collect::<rusqlite::Result<Vec<_>>>()
                    })?;
                    rows.map(|r| r.map(Row)).collect::<rusqlite::Result<Vec<_>>>()?
                };
                tx.commit()?;
                Ok(rows)
            }
            Conn::Postgres(c) => {
                let rows = c.call(move |cl| -> Result<Vec<postgres::Row>, postgres::Error> {
                    let mut tx = cl.transaction()?;
                    for (sql, p) in &statements {
                        tx.execute(&pg_sql(sql), &refs(p))?;
                    }
                    let rows = tx.query(&pg_sql(&query.0), &refs(&query.1))?;
                    tx.commit()?;
                    Ok(rows)
                })??;
                rows.iter().map(pg_row).collect()
            }
        }
    }
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

/// `?N` placeholders as PostgreSQL's `$N`.
pub(crate) fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

fn pg_row(row: &postgres::Row) -> Result<Row, DbError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into()))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)?.map(Value::Real)
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into()))
        } else {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

type Job = Box<dyn FnOnce(&mut postgres::Client) + Send>;

/// A PostgreSQL connection on a thread of its own. The `postgres` client
/// drives its socket with a private tokio runtime, which must not be
/// entered from inside fleetbench's runtime; on this thread it never is,
/// so a [`crate::Store`] works the same from async and plain code.
pub(crate) struct PgConn {
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl PgConn {
    pub(crate) fn connect(config: postgres::Config) -> Result<PgConn, DbError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("fleetbench-pg".into())
            .spawn(move || match config.connect(postgres::NoTls) {
                Ok(mut client) => {
                    let _ = ready_tx.send(Ok(()));
                    for job in rx {
                        job(&mut client);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(DbError::from(e)));
                }
            })
            .map_err(|e| DbError::Postgres(format!("cannot start the connection thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(PgConn { tx: Some(tx), handle: Some(handle) }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DbError::Postgres("the connection thread ended before connecting".into())),
        }
    }

    /// Runs `f` with the client on the connection's thread and waits for
    /// its answer.
    pub(crate) fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> R + Send + 'static,
    ) -> Result<R, DbError> {
        let (rtx, rrx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |c| {
            let _ = rtx.send(f(c));
        });
        let lost = || DbError::Postgres("the connection to PostgreSQL was lost".into());
        self.tx.as_ref().ok_or_else(lost)?.send(job).map_err(|_| lost())?;
        rrx.recv().map_err(|_| lost())
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_translate() {
        assert_eq!(pg_sql("SELECT a FROM t WHERE x = ?1 AND y = ?12"), "SELECT a FROM t WHERE x = $1 AND y = $12");
        assert_eq!(pg_sql("SELECT '?' "), "SELECT '?' ");
    }
}
