//! Settings every subcommand shares: where the results database lives and
//! how chatty the terminal output should be.

use std::path::PathBuf;

/// Global options resolved once in `main`.
#[derive(Debug, Clone)]
pub struct Context {
    /// The results database (SQLite file).
    pub db_path: PathBuf,
    /// Suppress progress bars (also off when stderr is not a terminal).
    pub quiet: bool,
}

impl Context {
    pub fn new(db: Option<PathBuf>, quiet: bool) -> Context {
        let db_path = db.unwrap_or_else(default_db_path);
        Context { db_path, quiet }
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
