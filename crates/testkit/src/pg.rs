//! A fresh PostgreSQL database per test, on the throwaway cluster that
//! `scripts/ensure-postgres.sh start` runs (`scripts/test.sh` exports its URL
//! as `FLEETBENCH_TEST_POSTGRES`).

/// The variable that names the test cluster.
pub const POSTGRES_ENV: &str = "FLEETBENCH_TEST_POSTGRES";

/// The URL of a new, empty database named after `name` on the test cluster
/// (dropped and created again if it exists). Panics with what to do when no
/// cluster is configured: a test that asks for PostgreSQL never passes
/// without one.
pub fn fresh_postgres_db(name: &str) -> String {
    let admin = std::env::var(POSTGRES_ENV).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_ENV} is not set: run scripts/test.sh, or `scripts/ensure-postgres.sh start` and export its URL"
        )
    });
    let db: String = format!("fbt_{name}_{}", std::process::id())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(63)
        .collect();
    // On a thread of its own: the client runs a private tokio runtime, which
    // must not start inside a test's.
    let (url, name) = (admin.clone(), db.clone());
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to the test cluster ({POSTGRES_ENV}): {e}"));
        for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
            client.batch_execute(&sql).unwrap_or_else(|e| panic!("cannot create the test database {name}: {e:?}"));
        }
    })
    .join()
    .unwrap_or_else(|_| panic!("creating the test database {db} failed (see above)"));
    let base = admin.split('?').next().unwrap_or(&admin);
    let (server, _) = base.rsplit_once('/').unwrap_or((base, ""));
    format!("{server}/{db}")
}
