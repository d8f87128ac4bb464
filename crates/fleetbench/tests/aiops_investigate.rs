//! `fleetbench aiops ... --mode investigate` driven as a user would:
//! generate alerts beside the truth, run the built-in investigators with
//! `--json-out`, score answers produced elsewhere, and refuse bad input.

use std::path::PathBuf;
use std::process::Command;

use fleetbench_aiops::investigate::score::truth_submission;
use fleetbench_aiops::investigate::world::World;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleetbench"));
    c.arg("--quiet");
    c
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fleetbench-investigate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run fleetbench");
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn generate_alerts_then_score_answers() {
    let dir = temp_dir("gen");
    let out = run_ok(
        bin()
            .args(["aiops", "generate", "--mode", "investigate", "--episodes", "20", "--seed", "9", "--out"])
            .arg(&dir),
    );
    assert!(out.contains("wrote 20 investigate-mode episodes"), "{out}");
    let alerts = std::fs::read_to_string(dir.join("alerts.jsonl")).expect("alerts.jsonl");
    let episodes = std::fs::read_to_string(dir.join("episodes.jsonl")).expect("episodes.jsonl");
    for line in alerts.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert!(v["episode_id"].is_string() && v["window"]["alert_at"].is_string());
        assert!(v["alert"]["labels"]["severity"].is_string(), "{v}");
        assert!(v.get("truth").is_none());
    }
    let first: serde_json::Value = serde_json::from_str(episodes.lines().next().expect("a line")).expect("json");
    assert!(first["truth"]["faults"].is_array());
    // The truth for half the episodes, nothing for the rest: 50 on average.
    let answers: String = (0..10)
        .map(|i| {
            let w = World::generate(9, i);
            format!("{}\n", serde_json::json!({"episode_id": w.id, "answer": truth_submission(&w), "transcript": []}))
        })
        .collect();
    std::fs::write(dir.join("answers.jsonl"), answers).expect("write");
    let out = run_ok(
        bin()
            .args(["aiops", "score", "--episodes"])
            .arg(dir.join("episodes.jsonl"))
            .arg("--answers")
            .arg(dir.join("answers.jsonl")),
    );
    assert!(out.contains("mean score 50.0"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_builtins_writes_the_leaderboard_json() {
    let dir = temp_dir("run");
    let json = dir.join("inv.json");
    let out = run_ok(
        bin()
            .args(["aiops", "run", "--mode", "investigate", "--backends", "rules,oracle,always-healthy,random"])
            .args(["--episodes", "40", "--seed", "7", "--json-out"])
            .arg(&json)
            .arg("--answers-out")
            .arg(dir.join("outcomes.jsonl")),
    );
    assert!(out.contains("floor") && out.contains("oracle"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json-out")).expect("json");
    let backends = v["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 4);
    for b in backends {
        for key in [
            "name",
            "mean_score",
            "ci95",
            "per_scenario",
            "beyond_runbook_score",
            "single_fault_score",
            "tool_calls_p50",
            "tokens_p50",
            "ttd_p50_s",
            "usd_per_incident",
        ] {
            assert!(b.get(key).is_some(), "{key} missing from {b}");
        }
    }
    assert_eq!(backends[1]["mean_score"], 100.0);
    let schema_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas/arena-investigate.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("schema")).expect("schema json");
    jsonschema::meta::validate(&schema).expect("a valid JSON Schema");
    let validator = jsonschema::draft202012::new(&schema).expect("compiles");
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "--json-out no longer matches docs/schemas/arena-investigate.json:\n{}",
        errors.join("\n")
    );
    let mut drifted = v.clone();
    drifted["backends"][0]["an_undocumented_key"] = serde_json::json!(1);
    assert!(validator.iter_errors(&drifted).next().is_some(), "the schema is closed");
    let lines = std::fs::read_to_string(dir.join("outcomes.jsonl")).expect("answers-out");
    assert_eq!(lines.lines().count(), 4 * 40);
    let one: serde_json::Value = serde_json::from_str(lines.lines().next().expect("a line")).expect("json");
    for key in ["backend", "score", "tool_calls", "tokens", "wall_s", "ended", "transcript"] {
        assert!(one.get(key).is_some(), "{key} missing from an outcome");
    }
    assert!(v["floor"]["mean_score"].as_f64().is_some_and(|f| f <= 30.0), "{}", v["floor"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_modes_and_backends_are_clear_errors() {
    for args in [
        vec!["aiops", "run", "--mode", "interrogate", "--episodes", "2"],
        vec!["aiops", "run", "--mode", "investigate", "--backends", "gpt-oracle", "--episodes", "2"],
        vec!["aiops", "run", "--mode", "investigate", "--episodes", "0"],
    ] {
        let out = bin().args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && err.len() > 10, "{err}");
    }
}
