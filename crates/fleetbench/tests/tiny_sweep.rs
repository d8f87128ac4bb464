//! Sweeps against the real llama.cpp server with SmolLM2-135M (started by
//! `scripts/test.sh` with FLEETBENCH_TINY_SLOTS slots; see tiny_server.rs for
//! how the URL arrives). A separate test binary, so that no other test loads
//! the server while it is swept.
//!
//! On a 2-core CI machine the CPU saturates before the slots fill, so the
//! knee sits at or below the slot count; what must hold on any machine is
//! that the search ends by itself with a knee inside its band, that the
//! server never runs more than its slots, and that beyond them the queue
//! shows in the server's own metrics and in the explanation.

use std::process::Command;

use serde_json::Value;

mod common;

/// The tiny server and its slot count (FLEETBENCH_TINY_SLOTS, default 4).
fn tiny() -> (String, u32) {
    let url = common::tiny_url();
    let slots = std::env::var("FLEETBENCH_TINY_SLOTS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    (url, slots)
}

fn sweep(url: &str, db: &std::path::Path, json: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["--quiet", "--db"])
        .arg(db)
        .args(["sweep", "--url", url, "--model", "smollm2-135m", "--workload", "synthetic:in=48,out=32"])
        .args(["--ignore-eos", "--temperature", "0", "--per-level-requests", "8", "--metrics-interval", "200ms"])
        .args(["--timeout-total", "120s", "--budget", "5m"])
        .args(extra)
        .arg("--json-out")
        .arg(json)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

#[test]
#[ignore = "needs the tiny llama.cpp server (FLEETBENCH_TINY_URL): scripts/test.sh starts it"]
fn auto_sweep_on_a_real_server_finds_a_knee_and_sees_the_queue() {
    let (url, slots) = tiny();
    let dir = std::env::temp_dir().join(format!("fb-tiny-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("results.db");

    let max = 2 * slots;
    let text = sweep(&url, &db, &dir.join("auto.json"), &["--concurrency", "auto", "--max-level", &max.to_string()]);
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("auto.json")).unwrap()).unwrap();
    let knee = &doc["knee"];
    let k = knee["concurrency"].as_f64().unwrap_or_else(|| panic!("no knee: {text}"));
    let band = knee["band"].as_array().unwrap();
    let (lo, hi) = (band[0].as_f64().unwrap(), band[1].as_f64().unwrap());
    assert!(lo <= k && k <= hi && hi <= max as f64, "knee {k} band [{lo}, {hi}]: {text}");
    assert!(knee["saturation_output_throughput"].as_f64().unwrap() > 0.0);
    assert!(!knee["reason"].as_str().unwrap().is_empty());
    for l in doc["levels"].as_array().unwrap() {
        assert_eq!(l["failed"], 0, "{l}");
        // llama.cpp's /metrics was sampled at every level, and it never
        // runs more requests than it has slots.
        let running = l["server"]["max_running"].as_f64().unwrap_or_else(|| panic!("no server metrics: {l}"));
        assert!(running <= slots as f64, "{running} running with {slots} slots");
    }

    // Twice the slots: half the agents wait, and the server says so.
    let text = sweep(&url, &db, &dir.join("over.json"), &["--concurrency", &max.to_string()]);
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("over.json")).unwrap()).unwrap();
    let level = &doc["levels"][0];
    assert_eq!(level["max_concurrent_requests"], max, "the client keeps {max} in flight: {text}");
    assert!(level["server"]["max_waiting"].as_f64().unwrap() >= 1.0, "{level}");
    assert!(level["server"]["max_running"].as_f64().unwrap() <= slots as f64, "{level}");
    assert!(text.contains("queue"), "the explanation names the queue: {text}");
}
