//! The run driver: `--repeat N` measures the plan N times, each repeat a
//! stored run with a seed of its own, reported to the observers as it is
//! stored, with the spread between them at the end.

mod common;
use common::meta;

use std::time::Duration;

use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RunConfig, RunStatus, SamplingParams, Slo};
use fleetbench_load::live::LiveBus;
use fleetbench_load::measure::MeasureOutcome;
use fleetbench_load::repeated::{measure_repeated, RunError, RunObservers, RunRequest};
use fleetbench_load::shard::ShardJoin;
use fleetbench_load::{RunPlan, Schedule, StopCondition, WorkloadSpec};
use fleetbench_testkit::Script;
use fleetbench_workload::models::ModelMix;
use fleetbench_workload::{Shard, Traffic};

fn request(url: &str, repeat: u32) -> RunRequest {
    RunRequest {
        plan: RunPlan {
            schedule: Schedule::Closed { concurrency: 2 },
            stop: StopCondition { requests: Some(6), duration: None },
            warmup: 0,
            sampling: SamplingParams { max_tokens: Some(4), ..Default::default() },
            seed: 7,
            arrivals: None,
            shard: None,
            ramp: None,
        },
        workload: WorkloadSpec::parse("synthetic:in=64,out=4").unwrap(),
        workload_given: true,
        arrivals: None,
        models: ModelMix::parse("m").unwrap(),
        repeat,
        shard: None,
        meta: meta(url),
        config: RunConfig { concurrency: Some(2), ..RunConfig::default() },
        slo: Slo::default(),
        max_error_rate: None,
        keep_records: true,
        preconnect: false,
    }
}

fn store(name: &str) -> (std::path::PathBuf, fleetbench_store::Store) {
    let dir = std::env::temp_dir().join(format!("fb-repeated-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = fleetbench_store::Store::open(&dir.join("r.db")).unwrap();
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_repeat_is_a_stored_run_with_its_own_seed() {
    let server = fleetbench_testkit::start(Script { tokens: 4, ..Default::default() }).await;
    let (dir, store) = store("three");
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let bus = LiveBus::new();
    let mut seen: Vec<(i64, Option<u64>)> = Vec::new();
    let mut on_measured = |o: &MeasureOutcome| {
        seen.push((o.meta.id, o.meta.config.get("seed").and_then(|s| s.as_u64())));
    };
    let observers = RunObservers { bus: Some(&bus), on_measured: Some(&mut on_measured), ..Default::default() };
    let done = measure_repeated(&request(&server.base_url(), 3), None, &store, &client, observers).await.unwrap();

    assert_eq!(done.runs.len(), 3);
    let ids: Vec<i64> = done.runs.iter().map(|o| o.meta.id).collect();
    assert_eq!(seen, vec![(ids[0], Some(7)), (ids[1], Some(1007)), (ids[2], Some(2007))]);
    for (r, o) in done.runs.iter().enumerate() {
        assert_eq!(o.meta.status, RunStatus::Completed);
        assert_eq!(o.metrics.completed, 6, "repeat {r}");
        assert_eq!(o.meta.config.get("repeat").and_then(|v| v.as_u64()), Some(r as u64));
        assert_eq!(o.meta.config.get("concurrency").and_then(|v| v.as_u64()), Some(2), "the caller's config is kept");
        let stored = store.run(o.meta.id).expect("the repeat is stored");
        assert_eq!(stored.meta.status, RunStatus::Completed);
        assert_eq!(stored.request_count, 6);
    }
    let spread = done.repeats.expect("three repeats have a spread");
    assert_eq!(spread.runs, 3);
    assert_eq!(spread.run_ids, ids);
    assert_eq!(bus.snapshots().len(), 3, "every repeat is a live run on the dashboard");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_has_no_spread_and_no_repeat_index() {
    let server = fleetbench_testkit::start(Script { tokens: 4, ..Default::default() }).await;
    let (dir, store) = store("one");
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let done = measure_repeated(&request(&server.base_url(), 1), None, &store, &client, RunObservers::default())
        .await
        .unwrap();
    assert_eq!(done.runs.len(), 1);
    assert!(done.repeats.is_none());
    assert_eq!(done.runs[0].meta.config.get("repeat"), None);
    assert_eq!(done.runs[0].meta.workload, "synthetic:in=64,out=4");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_the_caller_drew_is_the_first_repeats() {
    let server = fleetbench_testkit::start(Script { tokens: 4, ..Default::default() }).await;
    let (dir, store) = store("first");
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let drawn = Traffic::resolve(&WorkloadSpec::parse("synthetic:in=32,out=4").unwrap(), true, None, 7).unwrap();
    let done = measure_repeated(&request(&server.base_url(), 2), Some(drawn), &store, &client, RunObservers::default())
        .await
        .unwrap();
    let workloads: Vec<&str> = done.runs.iter().map(|o| o.meta.workload.as_str()).collect();
    assert_eq!(workloads, ["synthetic:in=32,out=4", "synthetic:in=64,out=4"], "the second repeat draws its own");
    assert_eq!(store.run(done.runs[0].meta.id).expect("stored").request_count, 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_repeat_is_the_last() {
    let server = fleetbench_testkit::start(Script { tokens: 4, ..Default::default() }).await;
    let (dir, store) = store("stop");
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tx.send(true).unwrap();
    let observers = RunObservers { stop: Some(rx), ..Default::default() };
    let done = measure_repeated(&request(&server.base_url(), 3), None, &store, &client, observers).await.unwrap();
    assert_eq!(done.runs.len(), 1, "no repeat starts after a stop");
    assert_eq!(done.runs[0].meta.status, RunStatus::Interrupted);
    assert!(done.repeats.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_run_is_not_repeated() {
    let server = fleetbench_testkit::start(Script { tokens: 4, ..Default::default() }).await;
    let (dir, store) = store("shard");
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let mut req = request(&server.base_url(), 2);
    req.shard = Some(ShardJoin {
        shard: Shard { index: 0, count: 2 },
        key: "k".into(),
        timeout: Duration::from_secs(1),
        target_concurrency: Some(2),
    });
    let err = measure_repeated(&req, None, &store, &client, RunObservers::default()).await.err().expect("refused");
    assert!(matches!(err, RunError::RepeatedShard), "{err}");
    assert!(store.list_runs(10).unwrap().is_empty(), "nothing was stored");
    let _ = std::fs::remove_dir_all(&dir);
}
