//! A sweep through the binary against `fleetbench sim serve --time-scale 20`
//! (a child process on a free loopback port): the server announces its time
//! scale, the sweep reports its figures in modelled time, says so, and
//! stores the scale with every level's run.

mod common;

use common::{bin, output, quiet_bin, tempdir, text};

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The simulator child, killed when the test ends (passing or not).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

const MODEL: [&str; 6] = ["--gpu", "rtx3090", "--model", "qwen2.5-coder-32b", "--quant", "awq4"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_against_a_time_scaled_simulator_reports_modelled_time() {
    let port = free_port();
    let child = bin()
        .args(["sim", "serve"])
        .args(MODEL)
        .args(["--port", &port.to_string(), "--time-scale", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fleetbench sim serve");
    let _server = Server(child);
    let addr = format!("127.0.0.1:{port}");
    fleetbench_testkit::wait_until(Duration::from_secs(30), Duration::from_millis(50), async || {
        common::http_get(&addr, "/health").await.is_ok()
    })
    .await
    .expect("the simulator answers /health");

    let dir = tempdir("time-scale", "sweep");
    let db = dir.join("r.db");
    let mut c = bin();
    c.arg("--quiet").arg("--db").arg(&db).args([
        "sweep",
        "--url",
        &format!("http://{addr}/v1"),
        "--model",
        "qwen2.5-coder-32b",
        "--concurrency",
        "1,4",
        "--workload",
        "synthetic:in=200,out=64",
        "--max-tokens",
        "64",
        "--ignore-eos",
        "--per-level-requests",
        "8",
        "--metrics-interval",
        "100ms",
    ]);
    c.arg("--json-out").arg(dir.join("sweep.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("figures in modelled time: the server runs 20× faster than the hardware it models"),
        "the sweep does not say its figures are in modelled time:\n{}",
        text(&o)
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(doc["time_scale"], 20.0, "{doc}");

    // What the performance model predicts for the same deployment.
    let mut p = quiet_bin();
    p.args(["sim", "predict"]).args(MODEL).args(["--concurrency", "1,4", "--input", "200", "--output", "64", "--json"]);
    let po = output(p).await;
    assert!(po.status.success(), "{}", text(&po));
    let predicted: Value = serde_json::from_slice(&po.stdout).unwrap();
    for (level, want) in doc["levels"].as_array().unwrap().iter().zip(predicted["levels"].as_array().unwrap()) {
        assert_eq!(level["concurrency"].as_f64(), want["concurrency"].as_f64());
        let got = level["output_throughput"].as_f64().unwrap();
        let model = want["aggregate_tok_s"].as_f64().unwrap();
        // Generous: the sweep's window includes ramp-up and tail. In wall
        // time it would be 20 times the model's figure.
        assert!(
            (got / model - 1.0).abs() < 0.35,
            "c={}: {got:.1} tok/s measured in modelled time, {model:.1} predicted\n{}",
            level["concurrency"],
            text(&o)
        );
        let per_request = level["mean_tok_s"].as_f64().unwrap();
        let model = want["per_request_tok_s"].as_f64().unwrap();
        assert!((per_request / model - 1.0).abs() < 0.35, "per request {per_request:.1} vs {model:.1}");
    }

    // Every level's run stores the scale, and reads back with it.
    let first = doc["sweep"]["run_ids"][0].as_i64().unwrap();
    let mut show = quiet_bin();
    show.arg("--db").arg(&db).args(["runs", "show", &first.to_string(), "--json"]);
    let so = output(show).await;
    assert!(so.status.success(), "{}", text(&so));
    let stored: Value = serde_json::from_slice(&so.stdout).unwrap();
    assert_eq!(stored["time_scale"], 20.0);
    assert_eq!(stored["config"]["time_scale"], 20.0);
    assert_eq!(stored["output_throughput"], doc["levels"][0]["output_throughput"]);
}
