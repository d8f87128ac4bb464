//! The arena end to end against a real model: llama.cpp serving
//! SmolLM2-135M (started by `scripts/tiny-server.sh`, which sets
//! FLEETBENCH_TINY_URL). Its score will be low; the point is that the whole
//! pipeline (prompt, HTTP, parse, score, leaderboard) is real. Ignored by a
//! plain `cargo test`; `scripts/test.sh` runs it with `--include-ignored`.

mod common;

use std::process::Command;

#[test]
#[ignore = "needs the tiny llama.cpp server (FLEETBENCH_TINY_URL): scripts/test.sh starts it"]
fn tiny_model_runs_a_short_arena() {
    let url = common::tiny_url();
    let dir = std::env::temp_dir().join(format!("fleetbench-aiops-tiny-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let toml = dir.join("backends.toml");
    // A 16-GPU fleet keeps the prompt inside a small per-slot context.
    std::fs::write(
        &toml,
        format!("[[backend]]\nname = \"tiny\"\nurl = \"{url}\"\nmodel = \"tiny\"\napi = \"chat\"\nconcurrency = 1\nmax_tokens = 160\n\n[[backend]]\nname = \"rules\"\nbuiltin = \"rules\"\n"),
    )
    .expect("backends.toml");
    let json = dir.join("lb.json");
    let answers = dir.join("answers.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("--db")
        .arg(dir.join("results.db"))
        .args([
            "--quiet",
            "aiops",
            "run",
            "--mode",
            "triage",
            "--gpus",
            "16",
            "--episodes",
            "3",
            "--seed",
            "7",
            "--timeout",
            "240",
            "--backends",
        ])
        .arg(&toml)
        .arg("--json-out")
        .arg(&json)
        .arg("--answers-out")
        .arg(&answers)
        .output()
        .expect("run fleetbench");
    assert!(out.status.success(), "aiops run failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json-out")).expect("json");
    let tiny = &v["backends"][0];
    assert_eq!(tiny["name"], "tiny");
    assert_eq!(tiny["episodes"], 3);
    assert_eq!(tiny["failed_requests"], 0, "every request must reach the model: {tiny}");
    let score = tiny["mean_score"].as_f64().expect("mean_score");
    assert!((-10.0..=100.0).contains(&score));
    assert!(tiny["usage"]["e2el_ms"]["count"] == 3, "latency recorded for each episode");
    assert!(tiny["usage"]["mean_output_tokens"].as_f64().is_some_and(|t| t > 0.0), "the model produced tokens");
    // Each stored answer is the model's real text beside the truth.
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&answers)
        .expect("answers")
        .lines()
        .map(|l| serde_json::from_str(l).expect("answer line"))
        .filter(|r: &serde_json::Value| r["backend"] == "tiny")
        .collect();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert!(r["answer"].as_str().is_some_and(|a| !a.is_empty()), "empty answer: {r}");
        assert!(r["truth"]["root_cause"].is_string());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
