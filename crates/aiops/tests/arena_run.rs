//! The arena run end to end against scripted HTTP servers: built-in and
//! HTTP backends in one run, every answer and request record stored, each
//! HTTP backend in its own index range, open-loop pacing at the rate, and
//! a stop that keeps what was scored.

use std::time::Duration;

use fleetbench_aiops::backends::BackendSpec;
use fleetbench_aiops::{run_arena, ArenaConfig, ArenaObserver, ArenaOutcome, BackendProgress};
use fleetbench_core::{RunMeta, RunStatus};
use fleetbench_store::records::arena::{Answer, ArenaBackend};
use fleetbench_store::Store;
use fleetbench_testkit::{start, Script};
use tokio::sync::watch;

fn http(name: &str, url: String, concurrency: usize) -> BackendSpec {
    let mut s = BackendSpec::builtin(name);
    s.builtin = None;
    s.url = Some(url);
    s.model = Some("m".into());
    s.concurrency = concurrency;
    s.price_output_per_mtok = Some(2.0);
    s
}

fn config(backends: Vec<BackendSpec>, episodes: usize, rate_per_s: Option<f64>) -> ArenaConfig {
    ArenaConfig {
        backends,
        episodes,
        seed: 5,
        gpus: 16,
        rate_per_s,
        telemetry: None,
        timeout: Duration::from_secs(30),
        prices: None,
        answers_out: None,
    }
}

fn template() -> RunMeta {
    RunMeta {
        id: 0,
        tool_version: "test".into(),
        command_line: "arena_run test".into(),
        host: "here".into(),
        backend_url: String::new(),
        model: String::new(),
        api: String::new(),
        workload: String::new(),
        schedule: String::new(),
        started_at: "2026-01-01T00:00:00Z".into(),
        ended_at: None,
        status: RunStatus::Running,
        config: serde_json::Value::Null,
        pid: None,
        group: None,
    }
}

fn temp_db(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fleetbench-arena-run-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("r.db")
}

async fn run(cfg: &ArenaConfig, db: &std::path::Path, stop: watch::Receiver<bool>) -> ArenaOutcome {
    run_arena(cfg, &db.into(), template(), None, &(), stop).await.expect("the arena runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backends_go_through_the_engine_and_are_stored() {
    let a = start(Script { ttft: Duration::from_millis(5), itl: Duration::from_millis(1), ..Script::default() }).await;
    let b = start(Script { ttft: Duration::from_millis(5), itl: Duration::from_millis(1), ..Script::default() }).await;
    let cfg =
        config(vec![BackendSpec::builtin("rules"), http("a", a.base_url(), 3), http("b", b.base_url(), 2)], 7, None);
    let db = temp_db("closed");
    let (_tx, stop) = watch::channel(false);
    let o = run(&cfg, &db, stop).await;
    assert_eq!((o.status, o.interrupted, o.answered), (RunStatus::Completed, false, 21));
    assert_eq!(o.boards.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["rules", "a", "b"]);
    assert!(a.counters.max_in_flight.load(std::sync::atomic::Ordering::SeqCst) <= 3);
    assert!(o.costs.contains_key("a") && o.costs.contains_key("b") && !o.costs.contains_key("rules"));

    let store = Store::open(&db).expect("open");
    let stored = store.run(o.run_id).expect("run");
    assert_eq!(stored.meta.status, RunStatus::Completed);
    assert_eq!(stored.meta.command_line, "arena_run test", "the caller's provenance");
    assert_eq!(stored.meta.workload, "aiops-arena: 7 episodes, 16 GPUs, seed 5");
    let answers = store.get_all::<Answer>(o.run_id).expect("answers");
    assert_eq!(answers.len(), 21);
    assert!(answers.iter().all(|(name, a)| *name == a.artifact_name() && a.truth.is_some()));
    let http_answers: Vec<&Answer> = answers.iter().map(|(_, a)| a).filter(|a| a.backend != "rules").collect();
    assert!(http_answers.iter().all(|a| a.e2el_s.is_some() && a.output_tokens == Some(8) && a.error.is_none()));
    let boards = store.get_all::<ArenaBackend>(o.run_id).expect("boards");
    assert_eq!(boards.len(), 3);
    let priced = boards.iter().find(|(n, _)| n == "a").map(|(_, b)| b).expect("a");
    assert_eq!(priced.cost.as_ref().map(|c| c.price_entry.as_str()), Some("a"));

    // Each HTTP backend's records in its own index range, named by episode
    // and labelled by scenario.
    let records = store.records(o.run_id).expect("records");
    assert_eq!(records.len(), 14);
    let idx: Vec<u64> = records.iter().map(|r| r.index).collect();
    assert_eq!(idx, (0..14).collect::<Vec<_>>());
    let rules: Vec<&Answer> = answers.iter().map(|(_, a)| a).filter(|a| a.backend == "rules").collect();
    for (k, r) in records.iter().enumerate() {
        let episode = &rules.iter().map(|a| a.episode_id.clone()).collect::<std::collections::BTreeSet<_>>();
        assert!(episode.contains(&r.request_id), "{}", r.request_id);
        assert!(r.label.is_some() && r.output_text.is_some() && r.ok(), "record {k}");
    }
    assert_eq!(records[0].request_id, records[7].request_id, "backend b starts over at episode 0");
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_paces_arrivals_in_an_open_loop() {
    let s = start(Script { ttft: Duration::from_millis(2), itl: Duration::from_millis(1), ..Script::default() }).await;
    let cfg = config(vec![http("s", s.base_url(), 4)], 5, Some(20.0));
    let db = temp_db("open");
    let (_tx, stop) = watch::channel(false);
    let o = run(&cfg, &db, stop).await;
    assert_eq!(o.status, RunStatus::Completed);
    let mut records = Store::open(&db).expect("open").records(o.run_id).expect("records");
    records.sort_by(|x, y| x.t_sched.total_cmp(&y.t_sched));
    let gaps: Vec<f64> = records.windows(2).map(|w| w[1].t_sched - w[0].t_sched).collect();
    assert_eq!(gaps.len(), 4);
    assert!(gaps.iter().all(|g| (g - 0.05).abs() < 1e-9), "constant arrivals at 20/s: {gaps:?}");
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}

/// Stops the run once its HTTP backend has answered twice.
struct StopAfterTwo(watch::Sender<bool>);

impl ArenaObserver for StopAfterTwo {
    fn progress(&self, _backend: &str, p: &BackendProgress) {
        if p.answered == 2 {
            let _ = self.0.send(true);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_keeps_what_was_scored() {
    let s = start(Script::default()).await;
    let cfg = config(vec![BackendSpec::builtin("rules"), http("s", s.base_url(), 1)], 6, None);
    let db = temp_db("stop");
    let (tx, stop) = watch::channel(false);
    let o =
        run_arena(&cfg, &db.as_path().into(), template(), None, &StopAfterTwo(tx), stop).await.expect("the arena runs");
    assert!(o.interrupted);
    assert_eq!((o.status, o.answered), (RunStatus::Interrupted, 6 + 2), "every built-in answer, two HTTP ones");
    assert_eq!(o.boards[1].episodes, 2);
    let store = Store::open(&db).expect("open");
    assert_eq!(store.run(o.run_id).expect("run").meta.status, RunStatus::Interrupted);
    assert_eq!(store.get_all::<Answer>(o.run_id).expect("answers").len(), 8);
    assert_eq!(store.records(o.run_id).expect("records").len(), 2);
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}
