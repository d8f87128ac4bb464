//! The dashboard in a real headless Chromium, against a server bound to
//! every interface with a token (the browser only ever targets 127.0.0.1):
//! 401 without the token; with it, a running run whose numbers change while
//! the browser watches; hostile model text shown as text; a stored run's
//! report opening from the list. Needs Chromium and Node: ignored by a plain
//! `cargo test`, run by `scripts/test.sh` (`--include-ignored`), which
//! installs them through `scripts/ensure-chromium.sh`.
//! Screenshots: artifacts/screenshots/dash-*.png.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetbench_core::{RunMeta, RunStatus};
use fleetbench_dash::{serve, DashConfig, InvestigateFigures, LeaderboardRow, LiveBus, LiveRunInfo, ScenarioRow};
use fleetbench_testkit::RecordBuilder;

const TOKEN: &str = "browser-token-0123456789abcdef";
const HOSTILE_MODEL: &str = "qwen<script>window.__pwned=1</script>";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn ensure_chromium() -> String {
    let out = std::process::Command::new("bash").arg(root().join("scripts/ensure-chromium.sh")).output().unwrap();
    assert!(
        out.status.success(),
        "this test needs headless Chromium, chromedriver and Node's playwright-core, and \
         scripts/ensure-chromium.sh could not provide them (it installs them with apt-get, as root, and npm; \
         scripts/test.sh runs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("/usr/bin/chromium").trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and Node: scripts/test.sh installs them (scripts/ensure-chromium.sh)"]
async fn dashboard_in_a_real_browser() {
    let chromium = tokio::task::spawn_blocking(ensure_chromium).await.unwrap();

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dash-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("results.db");
    let mut store = fleetbench_store::Store::open(&db).unwrap();
    let id = store
        .create_run(&RunMeta {
            id: 0,
            tool_version: "0.1.0".into(),
            command_line: "fleetbench run --concurrency 2".into(),
            host: "h".into(),
            backend_url: "http://127.0.0.1:9/v1".into(),
            model: HOSTILE_MODEL.into(),
            api: "chat".into(),
            workload: "synthetic".into(),
            schedule: "closed loop, concurrency 2".into(),
            started_at: "2026-11-25T10:00:00Z".into(),
            ended_at: None,
            status: RunStatus::Completed,
            config: serde_json::json!({"concurrency": 2}),
            pid: None,
            group: None,
        })
        .unwrap();
    // A few finished requests, so that its report has charts to draw.
    let records: Vec<fleetbench_core::RequestRecord> = (0..8u64)
        .map(|i| {
            let t = 0.3 * i as f64;
            RecordBuilder::ok(i)
                .agent((i % 2) as u32)
                .sent_at(t)
                .first_byte(t + 0.05)
                .first_token(t + 0.06)
                .last_token(t + 0.5)
                .end(t + 0.51)
                .itl(vec![0.11, 0.11, 0.11, 0.11])
                .tokens(5)
                .input_tokens(64)
                .finish("stop")
                .build()
        })
        .collect();
    store.insert_records(id, &records).unwrap();
    drop(store);

    let bus = LiveBus::new();
    let run = bus.start(LiveRunInfo {
        kind: "aiops".into(),
        title: "arena: 2 backends × 40 episodes".into(),
        backend: "http://127.0.0.1:8000/v1".into(),
        model: HOSTILE_MODEL.into(),
        run_id: Some(1),
        total: Some(1000),
    });
    let producer = {
        let run = run.clone();
        tokio::spawn(async move {
            for i in 1..=600u64 {
                run.update(|s| {
                    s.done = i;
                    s.elapsed_s = i as f64 * 0.2;
                    s.output_tok_s = 100.0 + i as f64;
                    s.ttft_p50_ms = Some(80.0 + (i % 7) as f64);
                    s.leaderboard = vec![LeaderboardRow {
                        backend: "vllm <b>h100</b>".into(),
                        score: 50.0 + (i % 10) as f64,
                        ci_lo: Some(40.0),
                        ci_hi: Some(70.0),
                        answered: i,
                        failed: 0,
                        investigate: Some(InvestigateFigures {
                            single_fault_score: 80.0,
                            ttd_p90_s: 41.5,
                            usd_per_incident: Some(0.0123),
                            ..Default::default()
                        }),
                    }];
                    s.floor = Some(LeaderboardRow { backend: "floor".into(), score: 25.1, ..Default::default() });
                    s.scenarios = vec![ScenarioRow {
                        scenario: "xid79_fallen_off_bus".into(),
                        scores: [("vllm <b>h100</b>".to_string(), 75.0)].into_iter().collect(),
                    }];
                    s.last_answer = Some(
                        "Root cause <script>window.__pwned=3</script><img src=x onerror=\"window.__pwned=4\">".into(),
                    );
                });
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let cfg = DashConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        token: Some(TOKEN.into()),
        db: Some(db.into()),
        ..DashConfig::default()
    };
    let h = serve(cfg, bus).await.unwrap();
    let base = format!("http://127.0.0.1:{}", h.local_addr().port());
    let shots = root().join("artifacts/screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let out = tokio::process::Command::new("node")
        .current_dir(root().join("tests/browser"))
        .env("CHROMIUM_PATH", &chromium)
        .env("NO_PROXY", "127.0.0.1")
        .arg("dash.mjs")
        .arg(&base)
        .arg(TOKEN)
        .arg(&shots)
        .output()
        .await
        .expect("node must be installed for the browser tests");
    producer.abort();
    h.shutdown().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["deniedStatus"], 401);
    assert_ne!(v["first"], v["second"], "{v}");
    assert_eq!(v["model"], HOSTILE_MODEL);
    assert_eq!(v["storedModel"], HOSTILE_MODEL);
    assert_eq!(v["pwned"], serde_json::Value::Null);
    assert!(v["charts"].as_u64().unwrap() > 0);
    // Investigate mode's columns and the floor row.
    let head: Vec<&str> = v["leaderboardHead"].as_array().unwrap().iter().filter_map(|h| h.as_str()).collect();
    for col in ["unanswered", "single-fault", "TTD p90 (s)", "$ per incident", "$ per day"] {
        assert!(head.contains(&col), "{col}: {v}");
    }
    let rows: Vec<&str> = v["leaderboardRows"].as_array().unwrap().iter().filter_map(|r| r.as_str()).collect();
    assert_eq!(rows.len(), 2, "{v}");
    assert!(rows[0].contains("41.50") && rows[0].contains("0.0123"), "{v}");
    assert!(rows[1].starts_with("floor") && rows[1].contains("25.10"), "{v}");
    for f in ["dash-401.png", "dash-live.png", "dash-report.png"] {
        assert!(shots.join(f).exists(), "{f} missing");
    }
}

/// A real sweep (the load engine against a scripted server that serves two
/// requests at once, queues the rest and says so on /metrics) publishes to
/// the dashboard; Chromium watches the charts grow while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium and Node: scripts/test.sh installs them (scripts/ensure-chromium.sh)"]
async fn charts_grow_while_a_sweep_runs() {
    use fleetbench_load::sweep::driver::{run_sweep, LevelKind, Levels, SweepConfig, SweepObservers};

    let chromium = tokio::task::spawn_blocking(ensure_chromium).await.unwrap();
    let script = fleetbench_testkit::Script {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(15),
        tokens: 12,
        capacity: Some(2),
        ..Default::default()
    };
    let server = fleetbench_testkit::start(script).await;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dash-charts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = fleetbench_store::Store::open(&dir.join("results.db")).unwrap();
    let client = fleetbench_client::Client::new(fleetbench_client::ClientConfig::new(
        server.base_url(),
        fleetbench_core::ApiKind::Chat,
        HOSTILE_MODEL,
    ))
    .unwrap();
    let meta = RunMeta {
        id: 0,
        tool_version: "0.1.0".into(),
        command_line: "fleetbench sweep".into(),
        host: "h".into(),
        backend_url: server.base_url(),
        model: HOSTILE_MODEL.into(),
        api: "chat".into(),
        workload: String::new(),
        schedule: String::new(),
        started_at: String::new(),
        ended_at: None,
        status: RunStatus::Running,
        config: serde_json::json!({}),
        pid: None,
        group: None,
    };
    let cfg = SweepConfig {
        group: "charts".into(),
        levels: Levels::Fixed(vec![1.0, 2.0, 4.0, 8.0]),
        kind: LevelKind::Concurrency,
        workload: fleetbench_load::WorkloadSpec::Synthetic { input: 32, output: 12, spread: 0.0, prompts: None },
        workload_name: "synthetic:in=32,out=12".into(),
        seed: 1,
        sampling: Default::default(),
        slo: Default::default(),
        per_level_requests: None,
        per_level: Some(Duration::from_secs(3)),
        requests_per_agent: 4,
        min_requests: 8,
        warmup_per_level: Some(0),
        max_level: 8.0,
        budget: Duration::from_secs(600),
        repeat: 1,
        metrics_url: Some(fleetbench_client::prom::metrics_url_for(&server.base_url())),
        metrics_interval: Duration::from_millis(100),
        time_scale: 1.0,
        config: Default::default(),
        shard: None,
    };
    let bus = LiveBus::new();
    let h = serve(DashConfig { listen: "127.0.0.1:0".parse().unwrap(), ..DashConfig::default() }, bus.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", h.local_addr().port());
    let shots = root().join("artifacts/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = tokio::process::Command::new("node")
        .current_dir(root().join("tests/browser"))
        .env("CHROMIUM_PATH", &chromium)
        .env("NO_PROXY", "127.0.0.1")
        .arg("dash-charts.mjs")
        .arg(&base)
        .arg(&shots)
        .kill_on_drop(true)
        .output();
    // Sweeps one after another (on this task: the store is not Sync) until
    // the browser has seen enough.
    let sweeps = async {
        loop {
            let observers = SweepObservers { bus: Some(&bus), ..Default::default() };
            if let Err(e) = run_sweep(&cfg, &store, &client, &meta, observers).await {
                return e;
            }
        }
    };
    let out = tokio::select! {
        out = browser => out.expect("node must be installed for the browser tests"),
        e = sweeps => panic!("the sweep failed: {e}"),
    };
    h.shutdown().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(v["second"]["n"].as_u64() > v["first"]["n"].as_u64(), "{v}");
    assert!(v["curveLater"].as_u64() > v["curveNow"].as_u64(), "{v}");
    assert!(v["withServer"].as_u64().unwrap() > 0, "{v}");
    assert!(v["rendersIn2s"].as_u64().unwrap() <= 10, "{v}");
    assert_eq!(v["model"], HOSTILE_MODEL);
    assert_eq!(v["pwned"], serde_json::Value::Null);
    assert!(shots.join("dash-charts.png").exists());
}
