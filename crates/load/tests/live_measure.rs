//! A measured run as the dashboard sees it: the live series gains points
//! while the run goes on, and its requests-in-flight figure follows the
//! engine (never above the agents of a closed loop).

mod common;
use common::meta;

use std::sync::Arc;
use std::time::Duration;

use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RunMeta, SamplingParams};
use fleetbench_load::live::{LiveBus, LiveRunInfo};
use fleetbench_load::measure::{measure, MeasureOptions};
use fleetbench_load::{RunPlan, Schedule, StopCondition, SyntheticWorkload};
use fleetbench_testkit::Script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_series_grows_and_in_flight_follows_the_agents() {
    let server = fleetbench_testkit::start(Script {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(15),
        tokens: 12,
        capacity: Some(2),
        ..Default::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("fb-live-measure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = fleetbench_store::Store::open(&dir.join("r.db")).unwrap();
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let bus = LiveBus::new();
    for agents in [1u32, 3] {
        let live = bus.start(LiveRunInfo { kind: "run".into(), ..Default::default() });
        let plan = RunPlan {
            schedule: Schedule::Closed { concurrency: agents },
            stop: StopCondition { requests: None, duration: Some(Duration::from_millis(1500)) },
            warmup: 0,
            sampling: SamplingParams { max_tokens: Some(12), ..Default::default() },
            seed: 1,
            arrivals: None,
            shard: None,
            ramp: None,
        };
        let opts = MeasureOptions { live: Some(live.clone()), ..Default::default() };
        let wl = Arc::new(SyntheticWorkload::new(32, 12, 0.0, 1));
        let o = measure(&store, meta(&server.base_url()), &plan, &client, wl, &opts).await.unwrap();
        let s = live.snapshot();
        assert!(s.series.len() >= 3, "{} points in a 1.5 s run", s.series.len());
        assert!(s.series.windows(2).all(|w| w[0].t < w[1].t), "{:?}", s.series);
        let most = s.series.iter().filter_map(|p| p.in_flight).max().unwrap();
        assert!(most <= agents as u64, "{most} in flight with {agents} agents: {:?}", s.series);
        assert!(most >= 1, "{:?}", s.series);
        assert!(s.series.iter().any(|p| p.output_tok_s > 0.0));
        assert_eq!(s.done, o.metrics.completed);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_publishes_its_curve_and_the_server_readings() {
    use fleetbench_load::sweep::driver::{run_sweep, LevelKind, Levels, SweepConfig, SweepObservers};
    let server = fleetbench_testkit::start(Script {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(15),
        tokens: 12,
        capacity: Some(2),
        ..Default::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("fb-live-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = fleetbench_store::Store::open(&dir.join("r.db")).unwrap();
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let cfg = SweepConfig {
        group: "g".into(),
        levels: Levels::Fixed(vec![1.0, 2.0, 4.0]),
        kind: LevelKind::Concurrency,
        workload: fleetbench_load::WorkloadSpec::Synthetic { input: 32, output: 12, spread: 0.0, prompts: None },
        workload_name: "synthetic".into(),
        seed: 1,
        sampling: SamplingParams::default(),
        slo: Default::default(),
        per_level_requests: None,
        per_level: Some(Duration::from_millis(1200)),
        requests_per_agent: 4,
        min_requests: 8,
        warmup_per_level: Some(0),
        max_level: 4.0,
        budget: Duration::from_secs(600),
        repeat: 1,
        metrics_url: Some(fleetbench_client::prom::metrics_url_for(&server.base_url())),
        metrics_interval: Duration::from_millis(100),
        time_scale: 1.0,
        config: Default::default(),
        shard: None,
    };
    let bus = LiveBus::new();
    let _watching = bus.subscribe();
    let o = run_sweep(
        &cfg,
        &store,
        &client,
        &meta(&server.base_url()),
        SweepObservers { bus: Some(&bus), ..Default::default() },
    )
    .await
    .unwrap();
    let snaps = bus.snapshots();
    assert_eq!(snaps.len(), 3);
    for (s, m) in snaps.iter().zip(&o.measured) {
        let curve = s.sweep.as_ref().expect("a sweep level carries the curve");
        assert_eq!(curve.level, m.level);
        assert_eq!(curve.unit, "agents");
        // Each level's curve holds the levels finished before it and itself.
        let levels: Vec<f64> = curve.finished.iter().map(|p| p.level).collect();
        let want: Vec<f64> = o.measured.iter().map(|x| x.level).filter(|l| *l <= m.level).collect();
        assert_eq!(levels, want);
        assert_eq!(curve.finished.last().unwrap().output_tok_s, m.metrics.output_throughput);
        assert!(!s.server.is_empty(), "the sampler's readings reach the live run");
        assert!(s.server.iter().all(|p| p.running.is_some_and(|r| r <= 2.0)));
        let most = s.series.iter().filter_map(|p| p.in_flight).max().unwrap();
        assert!(most <= m.level as u64, "{most} in flight at c={}: {:?}", m.level, s.series);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without the records kept, a run's figures come from the bounded pass
/// over the store; for a run within its limits they are exactly what
/// `runs show` recomputes from every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_figures_equal_the_exact_ones_recomputed_from_the_store() {
    let server = fleetbench_testkit::start(Script {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(2),
        tokens: 6,
        ..Default::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("fb-bounded-measure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = fleetbench_store::Store::open(&dir.join("r.db")).unwrap();
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let plan = RunPlan {
        schedule: Schedule::Closed { concurrency: 4 },
        stop: StopCondition { requests: Some(60), duration: None },
        warmup: 4,
        sampling: SamplingParams { max_tokens: Some(6), ..Default::default() },
        seed: 1,
        arrivals: None,
        ramp: None,
        shard: None,
    };
    let wl = Arc::new(SyntheticWorkload::new(32, 6, 0.0, 1));
    // `runs show` takes the target concurrency (the steady state) from the stored config.
    let meta = RunMeta { config: serde_json::json!({"concurrency": 4}), ..meta(&server.base_url()) };
    let o = measure(&store, meta, &plan, &client, wl, &MeasureOptions::default()).await.unwrap();
    assert!(o.records.is_none());
    let stored = fleetbench_load::measure::reload(&store, o.meta.id).unwrap();
    assert_eq!(stored.records.len(), 64);
    assert_eq!(o.metrics.completed, 60);
    assert!(o.metrics.ci95.contains_key("mean_itl_ms") && o.metrics.steady_state.is_some());
    assert_eq!(o.metrics, fleetbench_load::measure::without_arrays(&stored.metrics));
    let _ = std::fs::remove_dir_all(&dir);
}
