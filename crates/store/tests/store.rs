//! The results database round-trips runs, records and artifacts, and tells
//! runs abandoned by a dead process apart as `incomplete`. Every test of
//! what both databases do runs on SQLite and on PostgreSQL (`on_both!`:
//! `NAME::sqlite`, `NAME::postgres`); the PostgreSQL half needs the test
//! cluster that scripts/test.sh starts.

use std::sync::Arc;

use fleetbench_core::{ErrorKind, RequestError, RequestRecord, RunMeta, RunStatus, ServerTimings, TokenSource};
use fleetbench_store::{this_host, Db, RecordWriter, Store, StoreError};
use fleetbench_testkit::{fresh_postgres_db, RecordBuilder};

/// `NAME::sqlite` and `NAME::postgres` run `fn NAME(db: Db)` on a new,
/// empty database of each kind.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::sqlite_db(stringify!($name)))
            }
            #[test]
            #[ignore = "needs PostgreSQL: scripts/test.sh starts a throwaway cluster (FLEETBENCH_TEST_POSTGRES)"]
            fn postgres() {
                super::$name(super::postgres_db(stringify!($name)))
            }
        }
    )*};
}

on_both!(
    spans_and_concurrency_come_from_the_database_as_from_the_records,
    tool_calls_and_the_first_answer_token_round_trip,
    runs_and_records_round_trip,
    a_run_whose_process_died_is_incomplete,
    the_writer_commits_in_the_background,
    workload_context_round_trips_and_old_rows_have_none,
    many_writers_at_once,
    runs_copy_between_stores_keeps_everything,
    shards_meet_in_one_run,
    a_dead_shard_leaves_the_run_incomplete_naming_it,
    arena_answers_are_stored_as_they_come,
);

fn sqlite_db(name: &str) -> Db {
    Db::Sqlite(tmp(name))
}

fn postgres_db(name: &str) -> Db {
    Db::parse(&fresh_postgres_db(name), None).unwrap()
}

fn meta(pid: Option<u32>) -> RunMeta {
    RunMeta {
        id: 0,
        tool_version: "0.1.0".into(),
        command_line: "fleetbench run --url http://x/v1".into(),
        host: this_host(),
        backend_url: "http://x/v1".into(),
        model: "m".into(),
        api: "chat".into(),
        workload: "synthetic:in=1,out=1".into(),
        schedule: "closed loop, concurrency 1".into(),
        started_at: "2026-11-25T00:00:00Z".into(),
        ended_at: None,
        status: RunStatus::Running,
        config: serde_json::json!({"concurrency": 1}),
        pid,
        group: Some("g1".into()),
    }
}

fn record(i: u64) -> RequestRecord {
    RecordBuilder::ok(i)
        .agent(0)
        .scheduled(0.1 * i as f64)
        .send(0.1 * i as f64 + 0.001)
        .first_byte(0.2)
        .first_token(0.25)
        .last_token(0.5)
        .end(0.51)
        .itl(vec![0.01, 0.02, 0.03])
        .tokens(4)
        .input_tokens(12)
        .token_source(TokenSource::Server)
        .finish("stop")
        .server_timings(ServerTimings { predicted_per_token_ms: Some(9.0), ..Default::default() })
        .build()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fb-store-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d.join("sub").join("results.db")
}

fn runs_and_records_round_trip(db: Db) {
    let mut s = Store::connect(&db).unwrap();
    let id = s.create_run(&meta(Some(std::process::id()))).unwrap();
    let mut failed = record(1);
    failed.error = Some(RequestError::new(ErrorKind::HttpStatus, "nope").with_status(502));
    s.insert_records(id, &[record(0), failed.clone()]).unwrap();
    let back = s.records(id).unwrap();
    assert_eq!(back, vec![record(0), failed]);
    assert_eq!(s.run(id).unwrap().meta.status, RunStatus::Running, "owner alive");
    s.finish_run(id, RunStatus::Completed, "2026-11-25T00:01:00Z", Some(&serde_json::json!({"completed": 1}))).unwrap();
    let run = s.run(id).unwrap();
    assert_eq!(run.meta.status, RunStatus::Completed);
    assert_eq!(run.meta, {
        let mut m = meta(None);
        m.id = id;
        m.status = RunStatus::Completed;
        m.ended_at = Some("2026-11-25T00:01:00Z".into());
        m
    });
    assert_eq!(run.summary.unwrap()["completed"], 1);
    assert_eq!(run.request_count, 2);
    assert_eq!(s.list_runs(10).unwrap().len(), 1);
    assert_eq!(s.latest_run_id().unwrap(), Some(id));
    assert_eq!(s.runs_in_group("g1").unwrap().len(), 1);
    s.put_artifact(id, "level", "c=1", &serde_json::json!({"x": 1})).unwrap();
    s.put_artifact(id, "level", "c=1", &serde_json::json!({"x": 2})).unwrap();
    assert_eq!(s.artifacts(id, "level").unwrap()[0].1["x"], 2, "an artifact of the same name is replaced");
    // Writing a record again replaces it.
    let mut again = record(0);
    again.output_tokens = 99;
    s.insert_records(id, &[again.clone()]).unwrap();
    assert_eq!(s.records(id).unwrap()[0], again);
    assert!(matches!(s.run(999), Err(StoreError::NoSuchRun(999))));
}

fn tool_calls_and_the_first_answer_token_round_trip(db: Db) {
    let mut s = Store::connect(&db).unwrap();
    let id = s.create_run(&meta(Some(std::process::id()))).unwrap();
    let reasoned = RecordBuilder::ok(0).first_token(0.2).first_answer_token(Some(0.4)).build();
    let calling = RecordBuilder::ok(1)
        .first_token(0.3)
        .first_answer_token(None)
        .tool_call(0.35, "promql_query", r#"{"query":"up"}"#)
        .tool_call(0.36, "kernel_log", "{not json")
        .build();
    let plain = record(2);
    s.insert_records(id, &[reasoned.clone(), calling.clone(), plain.clone()]).unwrap();
    let back = s.records(id).unwrap();
    assert_eq!(back, vec![reasoned, calling, plain]);
    assert_eq!(back[1].tool_calls[1].name, "kernel_log");
    assert_eq!(back[2].t_first_answer_token, Some(0.25));
}

fn spans_and_concurrency_come_from_the_database_as_from_the_records(db: Db) {
    let mut s = Store::connect(&db).unwrap();
    let id = s.create_run(&meta(None)).unwrap();
    // Three agents; the first record is warm-up; the third ends as the
    // fourth starts (not overlapping).
    let rec = |i: u64, agent: u32, send: f64, end: f64| {
        RecordBuilder::ok(i).agent(agent).send(send).first_token(send + 0.01).end(end).tokens(1).build()
    };
    let mut records =
        vec![rec(0, 0, 0.0, 9.0), rec(1, 0, 1.0, 2.0), rec(2, 1, 1.5, 3.0), rec(3, 2, 3.0, 4.0), rec(4, 1, 1.8, 2.5)];
    records[0].warmup = true;
    s.insert_records(id, &records).unwrap();
    let spans = s.spans(id).unwrap();
    assert_eq!(spans, fleetbench_core::streaming::Spans::of(&records));
    assert_eq!((spans.sent, spans.start, spans.end), (4, 1.0, 4.0));
    assert_eq!(spans.agents, Some(vec![(1.0, 2.0), (1.5, 3.0), (3.0, 4.0)]));
    let measured = records.iter().filter(|r| !r.warmup).map(|r| (r.t_send, r.t_end));
    assert_eq!(s.max_in_flight(id).unwrap(), fleetbench_core::metrics::max_in_flight(measured));
    assert_eq!(s.max_in_flight(id).unwrap(), 3);
    // A record without an agent (open loop): no agent spans.
    s.insert_records(id, &[RecordBuilder::ok(5).send(5.0).end(6.0).build()]).unwrap();
    assert_eq!(s.spans(id).unwrap().agents, None);
    let mut order = Vec::new();
    s.for_each_record(id, |r| order.push(r.index)).unwrap();
    assert_eq!(order, [0, 1, 2, 3, 4, 5]);
}

fn a_run_whose_process_died_is_incomplete(db: Db) {
    let s = Store::connect(&db).unwrap();
    // A pid that cannot exist.
    let id = s.create_run(&meta(Some(i32::MAX as u32 - 1))).unwrap();
    assert_eq!(s.run(id).unwrap().meta.status, RunStatus::Incomplete);
}

fn the_writer_commits_in_the_background(db: Db) {
    let s = Store::connect(&db).unwrap();
    let id = s.create_run(&meta(None)).unwrap();
    let w = RecordWriter::start(&db, id).unwrap();
    for i in 0..2500 {
        assert!(w.write(record(i)));
    }
    assert_eq!(w.finish().unwrap(), 2500);
    assert_eq!(s.records(id).unwrap().len(), 2500);
}

fn workload_context_round_trips_and_old_rows_have_none(db: Db) {
    let mut s = Store::connect(&db).unwrap();
    let id = s.create_run(&meta(None)).unwrap();
    let mut r = record(0);
    r.context = fleetbench_core::RequestContext {
        prefix_group: Some("g2".into()),
        prefix_tokens: Some(1024),
        conversation: Some("g2u5".into()),
        turn: Some(3),
        context_tokens: Some(1800),
        session_turns: Some(12),
        model: Some("adapter-b".into()),
        stand_in_answers: true,
    };
    s.insert_records(id, &[r.clone(), record(1)]).unwrap();
    let back = s.records(id).unwrap();
    assert_eq!(back[0].context, r.context);
    assert!(back[1].context.is_empty());
}

/// Eight connections write at once: four runs of their own, and four
/// writers sharing one run with disjoint indexes (as shards do).
fn many_writers_at_once(db: Db) {
    let shared = Store::connect(&db).unwrap().create_run(&meta(None)).unwrap();
    let db = Arc::new(db);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let s = Store::connect(&db).unwrap();
                let (run, first) =
                    if t < 4 { (s.create_run(&meta(None)).unwrap(), 0) } else { (shared, (t - 4) * 1000) };
                let w = RecordWriter::start(&db, run).unwrap();
                for i in 0..500 {
                    assert!(w.write(record(first + i)));
                }
                assert_eq!(w.finish().unwrap(), 500);
                run
            })
        })
        .collect();
    let runs: Vec<i64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let s = Store::connect(&db).unwrap();
    for run in &runs[..4] {
        assert_eq!(s.records(*run).unwrap().len(), 500);
    }
    assert_eq!(s.records(shared).unwrap().len(), 2000);
    assert_eq!(s.list_runs(100).unwrap().len(), 5);
}

/// Runs go to the other kind of store and back unchanged, except their ids,
/// which artifacts that name runs follow.
fn runs_copy_between_stores_keeps_everything(db: Db) {
    let mut a = Store::connect(&db).unwrap();
    let other = match &db {
        Db::Sqlite(_) => Db::Postgres(match postgres_db_if_any("copy_other") {
            Some(Db::Postgres(t)) => t,
            _ => return copy_within_kind(a, sqlite_db("copy_other")),
        }),
        Db::Postgres(_) => sqlite_db("copy_other_pg"),
    };
    let first = a.create_run(&meta(None)).unwrap();
    let second = a.create_run(&meta(None)).unwrap();
    a.insert_records(first, &[record(0), record(1)]).unwrap();
    a.insert_records(second, &[record(5)]).unwrap();
    a.finish_run(second, RunStatus::Completed, "2026-11-25T00:02:00Z", Some(&serde_json::json!({"completed": 1})))
        .unwrap();
    a.put_artifact(first, "sweep", "s", &serde_json::json!({"run_ids": [first, second]})).unwrap();
    let mut b = Store::connect(&other).unwrap();
    let report = a.copy_runs(&mut b, &[]).unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.artifacts, 1);
    let (_, new_first) = report.runs[0];
    let (_, new_second) = report.runs[1];
    assert_eq!(b.records(new_first).unwrap(), a.records(first).unwrap());
    assert_eq!(b.run(new_second).unwrap().summary, a.run(second).unwrap().summary);
    assert_eq!(b.run(new_second).unwrap().meta.status, RunStatus::Completed);
    assert_eq!(b.artifacts(new_first, "sweep").unwrap()[0].1["run_ids"], serde_json::json!([new_first, new_second]));
    // And back again.
    let mut c = Store::connect(&sqlite_db(&format!("copy_back_{}", matches!(db, Db::Postgres(_))))).unwrap();
    let back = b.copy_runs(&mut c, &[new_second]).unwrap();
    assert_eq!(c.records(back.runs[0].1).unwrap(), a.records(second).unwrap());
}

/// The SQLite half of the copy test when no PostgreSQL is configured: one
/// SQLite file to another (the PostgreSQL half covers both directions).
fn copy_within_kind(mut a: Store, other: Db) {
    let first = a.create_run(&meta(None)).unwrap();
    a.insert_records(first, &[record(0)]).unwrap();
    let mut b = Store::connect(&other).unwrap();
    let report = a.copy_runs(&mut b, &[first]).unwrap();
    assert_eq!(b.records(report.runs[0].1).unwrap(), a.records(first).unwrap());
}

fn postgres_db_if_any(name: &str) -> Option<Db> {
    std::env::var_os(fleetbench_testkit::POSTGRES_ENV).map(|_| postgres_db(name))
}

/// Four shards register under one key, write disjoint records into one
/// run, and the last to end is told so.
fn shards_meet_in_one_run(db: Db) {
    let mut s = Store::connect(&db).unwrap();
    let mut m = meta(Some(std::process::id()));
    let ids: Vec<i64> = (0..4).map(|i| s.join_shard("job-7", &m, i, 4).unwrap()).collect();
    assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");
    let id = ids[0];
    assert_eq!(s.resolve_run("job-7").unwrap(), id);
    assert_eq!(s.resolve_run(&id.to_string()).unwrap(), id);
    assert!(matches!(s.resolve_run("job-8"), Err(StoreError::NoSuchKey(_))));
    let e = s.join_shard("job-7", &m, 2, 4).unwrap_err().to_string();
    assert!(e.contains("already registered"), "{e}");
    m.pid = None;
    let e = s.join_shard("job-7", &m, 1, 3).unwrap_err().to_string();
    assert!(e.contains("has 4 shards"), "{e}");
    for i in 0..4u32 {
        s.insert_records(id, &[record(u64::from(i)), record(4 + u64::from(i))]).unwrap();
    }
    let ended = "2026-11-25T00:03:00Z";
    let last: Vec<bool> = (0..4).map(|i| s.finish_shard(id, i, RunStatus::Completed, ended).unwrap()).collect();
    assert_eq!(last, [false, false, false, true]);
    let run = s.run(id).unwrap();
    assert_eq!(run.shards.len(), 4);
    assert_eq!(run.request_count, 8);
    assert!(run.shards.iter().all(|sh| sh.status == RunStatus::Completed && sh.shards == 4));
    assert_eq!(s.run_key(id).unwrap().as_deref(), Some("job-7"));
}

fn a_dead_shard_leaves_the_run_incomplete_naming_it(db: Db) {
    let mut s = Store::connect(&db).unwrap();
    let mut m = meta(Some(std::process::id()));
    let id = s.join_shard("job-9", &m, 0, 2).unwrap();
    m.pid = Some(i32::MAX as u32 - 1);
    s.join_shard("job-9", &m, 1, 2).unwrap();
    s.insert_records(id, &[record(0), record(1)]).unwrap();
    assert!(!s.finish_shard(id, 0, RunStatus::Completed, "2026-11-25T00:04:00Z").unwrap(), "shard 1 still counted");
    let run = s.run(id).unwrap();
    assert_eq!(run.meta.status, RunStatus::Incomplete);
    let dead: Vec<String> =
        run.shards.iter().filter(|sh| sh.status != RunStatus::Completed).map(|sh| sh.describe()).collect();
    assert_eq!(dead, [format!("1/2 on {} (pid {})", this_host(), i32::MAX as u32 - 1)]);
    assert_eq!(run.request_count, 2, "the completed requests stay");
}

/// The arena's answer writer (its own thread and connection) stores each
/// answer as a typed artifact; one of the same name replaces the other.
fn arena_answers_are_stored_as_they_come(db: Db) {
    use fleetbench_store::records::arena::Answer;
    use fleetbench_store::AnswerWriter;
    let s = Store::connect(&db).unwrap();
    let run = s.create_run(&meta(None)).unwrap();
    let w = AnswerWriter::start(&db, run).unwrap();
    for (b, e, t) in [("rules", "e1", "first"), ("rules", "e0", "x"), ("random", "e0", "y"), ("rules", "e1", "again")] {
        assert!(w.write(Answer { backend: b.into(), episode_id: e.into(), text: t.into(), ..Default::default() }));
    }
    assert_eq!(w.finish().unwrap(), 4);
    let got = s.get_all::<Answer>(run).unwrap();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["random/e0", "rules/e0", "rules/e1"]);
    assert_eq!(got[2].1.text, "again");
}

/// A wrong password is refused with a message that does not show it, and
/// the right one from a file is taken.
#[test]
#[ignore = "needs PostgreSQL: scripts/test.sh starts a throwaway cluster (FLEETBENCH_TEST_POSTGRES)"]
fn postgres_passwords_stay_secret() {
    let url = fresh_postgres_db("passwords");
    let Db::Postgres(_) = Db::parse(&url, None).unwrap() else { panic!("not postgres") };
    let (head, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.split_once('@').unwrap();
    let (user, password) = userinfo.split_once(':').unwrap();
    let wrong = format!("{head}://{user}:WrongPassw0rd@{host}");
    let e = match Store::connect(&Db::parse(&wrong, None).unwrap()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a wrong password was accepted"),
    };
    assert!(e.contains("password") && !e.contains("WrongPassw0rd") && !e.contains(password), "{e}");
    let dir = tmp("pwfile");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let file = dir.with_file_name("pw");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let db = Db::parse(&format!("{head}://{user}@{host}"), Some(&file)).unwrap();
    let s = Store::connect(&db).unwrap();
    assert!(s.list_runs(1).unwrap().is_empty());
    assert!(!db.to_string().contains(password));
}

#[test]
fn a_corrupt_database_is_a_clear_error() {
    let path = tmp("corrupt");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"this is not a sqlite database, just some text long enough to have a header.....").unwrap();
    let e = match Store::open(&path) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened garbage"),
    };
    assert!(e.contains("results database"), "{e}");
}

#[test]
fn a_schema_1_database_gains_the_context_column() {
    let path = tmp("v1");
    let id = {
        let mut s = Store::open(&path).unwrap();
        let id = s.create_run(&meta(None)).unwrap();
        s.insert_records(id, &[record(0)]).unwrap();
        id
    };
    {
        // Back to what version 1 wrote: the requests table without
        // context_json (nor version 4's stream_json, nor version 5's
        // heartbeats).
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP INDEX runs_key; ALTER TABLE runs DROP COLUMN run_key; DROP TABLE shards;
             ALTER TABLE runs DROP COLUMN heartbeat_at;
             ALTER TABLE requests DROP COLUMN context_json; ALTER TABLE requests DROP COLUMN stream_json;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let mut s = Store::open(&path).unwrap();
    assert!(s.records(id).unwrap()[0].context.is_empty());
    let mut r = record(1);
    r.context.prefix_group = Some("g0".into());
    s.insert_records(id, &[r.clone()]).unwrap();
    assert_eq!(s.records(id).unwrap()[1].context, r.context);
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, fleetbench_store::SCHEMA_VERSION, "migrated to the newest schema");
}

/// Processes that open a database nobody has created yet, all at once (the
/// shards of one run do), each get a working store: the first creates and
/// migrates it, the others wait for it instead of failing as locked. Each
/// process is this test binary again, running only this test as a child.
#[test]
fn many_processes_open_a_new_sqlite_database_at_once() {
    const CHILD: &str = "FLEETBENCH_TEST_OPEN_AT_ONCE";
    if let Ok(spec) = std::env::var(CHILD) {
        // A child: wait for the common start, then open and write.
        let (at, path) = spec.split_once(' ').expect("start and path");
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.parse().expect("start"));
        if let Ok(wait) = at.duration_since(std::time::SystemTime::now()) {
            std::thread::sleep(wait);
        }
        let s = Store::open(std::path::Path::new(path)).unwrap_or_else(|e| panic!("open: {e}"));
        s.create_run(&meta(None)).unwrap_or_else(|e| panic!("write: {e}"));
        return;
    }
    let me = std::env::current_exe().expect("the test binary");
    for round in 0..10 {
        let path = tmp(&format!("opened_at_once_{round}"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
        let at = (now + std::time::Duration::from_millis(300)).as_millis();
        let children: Vec<_> = (0..6)
            .map(|_| {
                std::process::Command::new(&me)
                    .args(["many_processes_open_a_new_sqlite_database_at_once", "--exact", "--nocapture"])
                    .env(CHILD, format!("{at} {}", path.display()))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("start a child")
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().expect("wait for a child");
            let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "round {round}: {said}");
        }
        assert_eq!(Store::open(&path).expect("open").list_runs(100).expect("runs").len(), 6);
    }
}
