//! A real Prometheus scrapes the in-process exporter; the arena then builds
//! a window through `/api/v1/query_range` and every value must match the
//! generator. Needs the `prometheus` binary: ignored by a plain `cargo test`,
//! run by `scripts/test.sh` (`--include-ignored`), which installs it through
//! `scripts/ensure-prometheus.sh`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fleetbench_aiops::episode::STEP_S;
use fleetbench_aiops::exporter::{router, LiveFleet};
use fleetbench_aiops::prometheus::PrometheusSource;
use fleetbench_aiops::telemetry::{written_value, Frame, GPU_METRICS, PORT_METRICS, REPLICA_METRICS};
use fleetbench_aiops::time::TIMELINE_EPOCH;
use fleetbench_aiops::window::Entity;
use fleetbench_testkit::wait_until;

struct KillOnDrop(Child, PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn prometheus_binary() -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ensure-prometheus.sh");
    let out = Command::new("bash").arg(&script).output().expect("run scripts/ensure-prometheus.sh");
    assert!(
        out.status.success(),
        "this test needs a Prometheus server binary, and scripts/ensure-prometheus.sh could not provide one \
         (it installs the Debian package `prometheus` with apt-get, as root; scripts/test.sh runs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
    assert!(!path.is_empty(), "ensure-prometheus.sh printed no path");
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: scripts/test.sh installs it (scripts/ensure-prometheus.sh)"]
async fn prometheus_scrapes_the_exporter_and_windows_round_trip() {
    let bin = prometheus_binary();

    // The exporter: 16 GPUs, one 15 s step per wall second.
    let live = Arc::new(LiveFleet::new(16, 7, 2.0, 15.0).expect("fleet"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind exporter");
    let exporter_addr = listener.local_addr().expect("addr");
    let app = router(live.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // A real Prometheus with a generated config on a free loopback port.
    let dir = std::env::temp_dir().join(format!("fleetbench-prom-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(dir.join("data")).expect("temp dir");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: fleet\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n    static_configs:\n      - targets: ['{exporter_addr}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let port = free_port();
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _guard = KillOnDrop(child, dir.clone());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(60), Duration::from_millis(250), async || {
        http.get(format!("{base}/-/ready")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await
    .unwrap_or_else(|e| panic!("Prometheus did not become ready at {base}: {e}"));

    // Let it scrape about a dozen steps (one step per wall second).
    let t_ready = live.timemap.fleet_at(fleetbench_aiops::exporter::unix_now());
    let want_end = (t_ready as i64 + 12 * STEP_S) / STEP_S * STEP_S;
    wait_until(Duration::from_secs(60), Duration::from_millis(250), async || {
        live.timemap.fleet_at(fleetbench_aiops::exporter::unix_now()) >= (want_end + 2 * STEP_S) as f64
    })
    .await
    .expect("the fleet clock reached 14 steps past Prometheus being ready");
    let start = want_end - 8 * STEP_S;
    let end = want_end;

    let source = PrometheusSource::new(&base, Some(live.timemap)).expect("source");
    let w = source.fetch_window(&live.fleet, "live", start, end, Vec::new()).await.expect("query_range");

    // Every entity and metric name came back, colons included.
    let gpus = w.series.keys().filter(|e| matches!(e, Entity::Gpu { .. })).count();
    assert_eq!(gpus, 16, "all GPUs present");
    let names: std::collections::BTreeSet<&str> =
        w.series.values().flat_map(|m| m.keys().map(String::as_str)).collect();
    for def in GPU_METRICS.iter().chain(PORT_METRICS.iter()) {
        assert!(names.contains(def.name), "{} missing from Prometheus", def.name);
    }
    let serving = live.fleet.nodes.iter().any(|n| n.profile.is_serving());
    if serving {
        for def in REPLICA_METRICS.iter() {
            assert!(names.contains(def.name), "{} missing from Prometheus", def.name);
        }
    }

    // Values equal the generator's at the same fleet step (±2 steps of
    // scrape alignment).
    let mut frames: BTreeMap<i64, Frame> = BTreeMap::new();
    let mut f = Frame::before(&live.fleet, TIMELINE_EPOCH);
    while f.t < end + 3 * STEP_S {
        f.advance(&live.fleet, &live.episodes);
        frames.insert(f.t, f.clone());
    }
    let value_at = |frame: &Frame, e: &Entity, metric: &str| -> Option<f64> {
        let node = live.fleet.node_by_name(e.node())?;
        match e {
            Entity::Gpu { gpu, .. } => {
                let m = GPU_METRICS.iter().position(|d| d.name == metric)?;
                let i = node * 8 + *gpu as usize;
                Some(written_value(frame.gpus[i][m], GPU_METRICS[m].kind))
            }
            Entity::Port { device, .. } => {
                let m = PORT_METRICS.iter().position(|d| d.name == metric)?;
                let p: usize = device.strip_prefix("mlx5_")?.parse().ok()?;
                Some(written_value(frame.ports[node * 2 + p][m], PORT_METRICS[m].kind))
            }
            Entity::Replica { .. } => {
                let m = REPLICA_METRICS.iter().position(|d| d.name == metric)?;
                Some(written_value(frame.replicas[node].as_ref()?[m], REPLICA_METRICS[m].kind))
            }
        }
    };
    let (mut checked, mut matched) = (0usize, 0usize);
    for (e, by_metric) in &w.series {
        for (metric, points) in by_metric {
            for &(t, v) in points {
                checked += 1;
                let ok = (-2..=2).any(|d| {
                    frames.get(&(t + d * STEP_S)).and_then(|fr| value_at(fr, e, metric)).is_some_and(|x| x == v)
                });
                if ok {
                    matched += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "too few points came back: {checked}");
    assert_eq!(matched, checked, "every value read from Prometheus must equal the generator's");
}
