//! `--metrics-listen` under a real Prometheus, and the Grafana dashboard in
//! deploy/grafana/fleetbench.json: Prometheus scrapes a running
//! `fleetbench run`, the simulator it measures (`fleetbench sim serve`,
//! whose /metrics carries vLLM's metric names) and the arena's DCGM-shaped
//! exporter (`fleetbench aiops exporter`); then every query of every panel
//! goes through Prometheus' HTTP API and must return data.

mod common;

use common::{bin, tempdir, text};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetbench_client::promapi::PromApi;
use serde_json::Value;

/// A child process, killed when the test ends (passing or not).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn prometheus_binary() -> PathBuf {
    let out =
        Command::new("bash").arg(repo().join("scripts/ensure-prometheus.sh")).output().expect("ensure-prometheus");
    assert!(
        out.status.success(),
        "this test needs Prometheus; scripts/ensure-prometheus.sh (run by scripts/test.sh) could not provide it: {}",
        text(&out)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

async fn wait_for_metrics(addr: &str) {
    fleetbench_testkit::wait_until(Duration::from_secs(30), Duration::from_millis(100), async || {
        common::http_get(addr, "/metrics").await.is_ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{addr}/metrics never answered: {e}"));
}

/// Every panel's queries, with Grafana's variables given values: all runs,
/// and a rate window that fits the test's 200 ms scrapes.
fn panel_queries() -> Vec<(String, String)> {
    let doc: Value =
        serde_json::from_slice(&std::fs::read(repo().join("deploy/grafana/fleetbench.json")).expect("the dashboard"))
            .expect("the dashboard is JSON");
    let panels = doc["panels"].as_array().expect("panels");
    let mut out = Vec::new();
    for p in panels {
        let title = p["title"].as_str().expect("a panel title").to_string();
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr").replace("$run", ".+").replace("$__rate_interval", "5s");
            out.push((title.clone(), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: scripts/test.sh installs it (scripts/ensure-prometheus.sh)"]
async fn every_grafana_panel_has_data_from_a_real_prometheus() {
    let queries = panel_queries();
    assert!(queries.iter().any(|(_, q)| q.contains("fleetbench_ttft_seconds_bucket")));
    let prometheus = prometheus_binary();
    let dir = tempdir("grafana", "prom");

    let sim_port = free_port();
    let _sim = Guard(
        bin()
            .args(["sim", "serve", "--gpu", "rtx3090", "--model", "qwen2.5-coder-32b", "--quant", "awq4"])
            .args(["--port", &sim_port.to_string(), "--time-scale", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fleetbench sim serve"),
    );
    let exporter = format!("127.0.0.1:{}", free_port());
    let _exporter = Guard(
        bin()
            .args(["aiops", "exporter", "--gpus", "16", "--listen", &exporter])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fleetbench aiops exporter"),
    );
    let sim = format!("127.0.0.1:{sim_port}");
    wait_for_metrics(&sim).await;
    wait_for_metrics(&exporter).await;

    let metrics = format!("127.0.0.1:{}", free_port());
    let _run = Guard(
        bin()
            .arg("--quiet")
            .arg("--db")
            .arg(dir.join("r.db"))
            .args(["run", "--url", &format!("http://{sim}/v1"), "--model", "qwen2.5-coder-32b"])
            .args(["--concurrency", "4", "--duration", "120s", "--max-tokens", "32", "--metrics-listen", &metrics])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fleetbench run"),
    );
    wait_for_metrics(&metrics).await;

    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    let config = format!(
        "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
         scrape_configs:\n  - job_name: fleetbench\n    static_configs:\n      - targets: ['{metrics}']\n\
         \x20 - job_name: vllm\n    static_configs:\n      - targets: ['{sim}']\n\
         \x20 - job_name: dcgm\n    static_configs:\n      - targets: ['{exporter}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let prom_port = free_port();
    let _prom = Guard(
        Command::new(prometheus)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let api = PromApi::new(&format!("http://127.0.0.1:{prom_port}"), Duration::from_secs(5)).expect("the API client");

    let mut empty = Vec::new();
    for (title, expr) in &queries {
        let mut last = String::new();
        let got = fleetbench_testkit::wait_for(Duration::from_secs(60), Duration::from_millis(250), async || match api
            .query(expr, None)
            .await
        {
            Ok(v) if v.iter().any(|s| s.value.1.parse::<f64>().is_ok_and(f64::is_finite)) => Some(v.len()),
            Ok(v) => {
                last = format!("{} series, none finite", v.len());
                None
            }
            Err(e) => {
                last = e.to_string();
                None
            }
        })
        .await;
        if got.is_err() {
            empty.push(format!("{title}: {expr} ({last})"));
        }
    }
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
