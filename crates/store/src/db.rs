//! Where the results live: a SQLite file or a PostgreSQL database, as named
//! by `--db` (or `FLEETBENCH_DB`). A PostgreSQL password may come in the URL,
//! from `PGPASSWORD` or from a file (`--db-password-file`); it is kept only
//! in the connection settings and never shown: [`Db`]'s `Display` and
//! `Debug` print the URL without it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::StoreError;

/// A results database.
#[derive(Clone)]
pub enum Db {
    /// A SQLite file (created with its directory when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgTarget),
}

/// A PostgreSQL database's connection settings, password included, and the
/// URL it was named by with the password removed (what is shown).
#[derive(Clone)]
pub struct PgTarget {
    pub(crate) config: Box<postgres::Config>,
    shown: String,
}

impl Db {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; anything else is a
    /// SQLite file path. The PostgreSQL password is the URL's, else the first
    /// line of `password_file`, else `PGPASSWORD`.
    pub fn parse(spec: &str, password_file: Option<&Path>) -> Result<Db, StoreError> {
        if !(spec.starts_with("postgres://") || spec.starts_with("postgresql://")) {
            if password_file.is_some() {
                return Err(StoreError::BadUrl {
                    url: spec.to_string(),
                    why: "--db-password-file is for a postgres:// database".into(),
                });
            }
            return Ok(Db::Sqlite(PathBuf::from(spec)));
        }
        let shown = without_password(spec);
        let bad = |why: String| StoreError::BadUrl { url: shown.clone(), why };
        let mut config = postgres::Config::from_str(spec).map_err(|e| bad(e.to_string()))?;
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .map_err(|_| bad("no user name: put one in the URL (postgres://USER@host/db) or set PGUSER".into()))?;
            config.user(&user);
        }
        if config.get_hosts().is_empty() {
            return Err(bad("no host: write postgres://user@HOST:PORT/db".into()));
        }
        if config.get_password().is_none() {
            if let Some(file) = password_file {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| StoreError::PasswordFile { path: file.to_path_buf(), why: e.to_string() })?;
                let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
                if line.is_empty() {
                    return Err(StoreError::PasswordFile { path: file.to_path_buf(), why: "it is empty".into() });
                }
                config.password(line);
            } else if let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
                config.password(p.as_encoded_bytes());
            }
        } else if password_file.is_some() {
            return Err(bad("the URL has a password and --db-password-file gives another; keep one".into()));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("fleetbench");
        Ok(Db::Postgres(PgTarget { config: Box::new(config), shown }))
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Db::Sqlite(p) => Some(p),
            Db::Postgres(_) => None,
        }
    }

    /// Whether the database is there to read (a PostgreSQL server always
    /// counts; connecting tells).
    pub fn exists(&self) -> bool {
        match self {
            Db::Sqlite(p) => p.exists(),
            Db::Postgres(_) => true,
        }
    }
}

impl From<&Path> for Db {
    fn from(p: &Path) -> Db {
        Db::Sqlite(p.to_path_buf())
    }
}

impl From<PathBuf> for Db {
    fn from(p: PathBuf) -> Db {
        Db::Sqlite(p)
    }
}

impl From<&PathBuf> for Db {
    fn from(p: &PathBuf) -> Db {
        Db::Sqlite(p.clone())
    }
}

impl fmt::Display for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Db::Sqlite(p) => write!(f, "{}", p.display()),
            Db::Postgres(t) => f.write_str(&t.shown),
        }
    }
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Db({self})")
    }
}

/// `url` with the password of its user info removed (`user:pw@` becomes
/// `user@`), and `password=` query parameters dropped.
pub fn without_password(url: &str) -> String {
    let Some(i) = url.find("://") else { return url.to_string() };
    let (scheme, rest) = url.split_at(i + 3);
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (info, host) = authority.split_at(at);
            let user = info.split(':').next().unwrap_or("");
            format!("{user}{host}")
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> =
                query.split('&').filter(|kv| !kv.to_ascii_lowercase().starts_with("password=")).collect();
            if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let db = Db::parse("postgres://bench:s3cret@127.0.0.1:5433/results?password=x2&sslmode=disable", None)
            .expect("parses");
        let shown = format!("{db} {db:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("x2"), "{shown}");
        assert!(shown.contains("postgres://bench@127.0.0.1:5433/results?sslmode=disable"), "{shown}");
        let Db::Postgres(t) = db else { panic!("not postgres") };
        assert!(t.config.get_password().is_some());
    }

    #[test]
    fn a_password_file_supplies_the_password() {
        let dir = std::env::temp_dir().join(format!("fb-pwfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("pw");
        std::fs::write(&file, "hunter2\n").expect("write");
        let Db::Postgres(t) = Db::parse("postgres://u@localhost/db", Some(&file)).expect("parses") else {
            panic!("not postgres")
        };
        assert_eq!(t.config.get_password(), Some(&b"hunter2"[..]));
        let e = Db::parse("postgres://u:a@localhost/db", Some(&file)).expect_err("two passwords").to_string();
        assert!(e.contains("keep one") && !e.contains(":a@"), "{e}");
        let e = Db::parse("postgres://u@localhost/db", Some(&dir.join("missing"))).expect_err("no file");
        assert!(e.to_string().contains("missing"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn paths_are_sqlite_and_bad_urls_say_why() {
        assert_eq!(Db::parse("r.db", None).expect("path").sqlite_path(), Some(Path::new("r.db")));
        let e = Db::parse("postgres://u:pw@/db?connect_timeout=abc", None).expect_err("bad").to_string();
        assert!(e.contains("postgres://u@/db") && !e.contains("pw"), "{e}");
    }
}
