//! Settings every subcommand shares: where the results database lives and
//! how chatty the terminal output should be.

use std::path::{Path, PathBuf};

use fleetbench_store::{Db, StoreError};

/// Global options resolved once in `main`.
#[derive(Debug, Clone)]
pub struct Context {
    /// The results database: a SQLite file or a PostgreSQL URL (its
    /// password never shown).
    pub db: Db,
    /// Suppress progress bars (also off when stderr is not a terminal).
    pub quiet: bool,
}

impl Context {
    /// `--db` (or `FLEETBENCH_DB`), else the default file; a PostgreSQL
    /// password from the URL, `--db-password-file` or `PGPASSWORD`.
    pub fn new(db: Option<&str>, password_file: Option<&Path>, quiet: bool) -> Result<Context, StoreError> {
        let db = match db.filter(|d| !d.is_empty()) {
            Some(spec) => Db::parse(spec, password_file)?,
            None if password_file.is_some() => {
                return Err(StoreError::BadUrl {
                    url: default_db_path().display().to_string(),
                    why: "--db-password-file is for a postgres:// database given with --db".into(),
                })
            }
            None => Db::Sqlite(default_db_path()),
        };
        Ok(Context { db, quiet })
    }
}

/// `$XDG_DATA_HOME/fleetbench/results.db`, else
/// `~/.local/share/fleetbench/results.db`.
pub fn default_db_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("fleetbench").join("results.db")
}
