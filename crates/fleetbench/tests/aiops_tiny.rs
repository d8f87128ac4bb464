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

/// Investigate mode against the real model: two episodes with small
/// budgets. The tiny model's score does not matter; its turns must reach
/// the model and come back, and each episode's transcript and score must be
/// stored.
#[test]
#[ignore = "needs the tiny llama.cpp server (FLEETBENCH_TINY_URL): scripts/test.sh starts it"]
fn tiny_model_investigates_through_the_binary() {
    use fleetbench_store::records::arena::{Answer, ArenaBackend};

    let url = common::tiny_url();
    let dir = std::env::temp_dir().join(format!("fleetbench-aiops-tiny-inv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let toml = dir.join("backends.toml");
    std::fs::write(
        &toml,
        format!("[[backend]]\nname = \"tiny\"\nurl = \"{url}\"\nmodel = \"tiny\"\napi = \"chat\"\nconcurrency = 2\nmax_tokens = 96\n"),
    )
    .expect("backends.toml");
    let (db, json) = (dir.join("results.db"), dir.join("inv.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("--db")
        .arg(&db)
        .args(["--quiet", "aiops", "run", "--mode", "investigate", "--episodes", "2", "--seed", "7"])
        .args(["--budget-tool-calls", "3", "--budget-tokens", "12000", "--deadline", "240s", "--timeout", "240"])
        .arg("--backends")
        .arg(&toml)
        .arg("--json-out")
        .arg(&json)
        .output()
        .expect("run fleetbench");
    assert!(out.status.success(), "aiops run failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json-out")).expect("json");
    let tiny = &v["backends"][0];
    assert_eq!((tiny["name"].as_str(), tiny["n"].as_u64()), (Some("tiny"), Some(2)), "{tiny}");
    assert!(tiny["tokens_p50"].as_f64().is_some_and(|t| t > 0.0), "the model was asked and answered: {tiny}");
    let store = fleetbench_store::Store::open(&db).expect("db");
    let run_id = v["run_id"].as_i64().expect("run_id");
    let answers: Vec<Answer> = store.get_all::<Answer>(run_id).expect("answers").into_iter().map(|(_, a)| a).collect();
    assert_eq!(answers.len(), 2);
    for a in &answers {
        assert!(a.score.is_some_and(|s| (-10.0..=100.0).contains(&s)), "{a:?}");
        assert!(a.ended.is_some() && a.input_tokens.is_some_and(|t| t > 0), "{a:?}");
        // The opening, then at least one assistant turn from the model.
        assert!(a.transcript.iter().any(|e| e["role"] == "assistant"), "{:#?}", a.transcript);
    }
    let boards = store.get_all::<ArenaBackend>(run_id).expect("boards");
    assert_eq!(boards.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
