//! The results database round-trips runs, records and artifacts, and tells
//! runs abandoned by a dead process apart as `incomplete`.

use fleetbench_core::{ErrorKind, RequestError, RequestRecord, RunMeta, RunStatus, ServerTimings, TokenSource};
use fleetbench_store::{RecordWriter, Store, StoreError};
use fleetbench_testkit::RecordBuilder;

fn meta(pid: Option<u32>) -> RunMeta {
    RunMeta {
        id: 0,
        tool_version: "0.1.0".into(),
        command_line: "fleetbench run --url http://x/v1".into(),
        host: "h".into(),
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

#[test]
fn runs_and_records_round_trip() {
    let path = tmp("rt");
    let mut s = Store::open(&path).unwrap();
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
    assert_eq!(run.summary.unwrap()["completed"], 1);
    assert_eq!(run.request_count, 2);
    assert_eq!(s.list_runs(10).unwrap().len(), 1);
    assert_eq!(s.runs_in_group("g1").unwrap().len(), 1);
    s.put_artifact(id, "level", "c=1", &serde_json::json!({"x": 1})).unwrap();
    assert_eq!(s.artifacts(id, "level").unwrap()[0].1["x"], 1);
    assert!(matches!(s.run(999), Err(StoreError::NoSuchRun(999))));
}

#[test]
fn spans_and_concurrency_come_from_the_database_as_from_the_records() {
    let path = tmp("spans");
    let mut s = Store::open(&path).unwrap();
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

#[test]
fn a_run_whose_process_died_is_incomplete() {
    let path = tmp("dead");
    let s = Store::open(&path).unwrap();
    // A pid that cannot exist.
    let id = s.create_run(&meta(Some(i32::MAX as u32 - 1))).unwrap();
    assert_eq!(s.run(id).unwrap().meta.status, RunStatus::Incomplete);
}

#[test]
fn the_writer_commits_in_the_background() {
    let path = tmp("writer");
    let s = Store::open(&path).unwrap();
    let id = s.create_run(&meta(None)).unwrap();
    let w = RecordWriter::start(&path, id).unwrap();
    for i in 0..2500 {
        assert!(w.write(record(i)));
    }
    assert_eq!(w.finish().unwrap(), 2500);
    assert_eq!(s.records(id).unwrap().len(), 2500);
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
fn workload_context_round_trips_and_old_rows_have_none() {
    let path = tmp("ctx");
    let mut s = Store::open(&path).unwrap();
    let id = s.create_run(&meta(None)).unwrap();
    let mut r = record(0);
    r.context = fleetbench_core::RequestContext {
        prefix_group: Some("g2".into()),
        prefix_tokens: Some(1024),
        conversation: Some("g2u5".into()),
        turn: Some(3),
        context_tokens: Some(1800),
    };
    s.insert_records(id, &[r.clone(), record(1)]).unwrap();
    let back = s.records(id).unwrap();
    assert_eq!(back[0].context, r.context);
    assert!(back[1].context.is_empty());
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
        // Back to what version 1 wrote: the requests table without context_json.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("ALTER TABLE requests DROP COLUMN context_json; PRAGMA user_version = 1;").unwrap();
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
    assert_eq!(v, 2);
}
