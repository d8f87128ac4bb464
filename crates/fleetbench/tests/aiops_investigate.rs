//! `fleetbench aiops ... --mode investigate` driven as a user would:
//! generate alerts beside the truth, run the built-in investigators with
//! `--json-out`, score answers produced elsewhere, and refuse bad input.

mod common;

use common::{quiet_bin as bin, run_ok};
use std::path::PathBuf;

use fleetbench_aiops::investigate::score::truth_submission;
use fleetbench_aiops::investigate::world::World;

fn temp_dir(tag: &str) -> PathBuf {
    common::tempdir("investigate", tag)
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
            .args(["--episodes", "40", "--seed", "7", "--promql", "embedded", "--json-out"])
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
        vec!["aiops", "run", "--mode", "investigate", "--promql", "thanos", "--episodes", "2"],
        vec!["aiops", "run", "--mode", "triage", "--metrics-listen", "127.0.0.1:0", "--episodes", "2"],
        vec!["aiops", "run", "--gpus", "16", "--episodes", "2"],
    ] {
        let out = bin().args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && err.len() > 10, "{err}");
    }
    // --promql prometheus without the binaries says what is missing and what to do.
    let out = bin()
        .args(["aiops", "run", "--mode", "investigate", "--promql", "prometheus", "--episodes", "2"])
        .env("FLEETBENCH_PROMETHEUS_BIN", "/nonexistent/prometheus")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`prometheus` is not installed") && err.contains("--promql embedded"), "{err}");
}

/// A scripted agent over HTTP investigates two episodes through the
/// binary: tool calls then the truth on the first (100), a known wrong
/// answer on the second (the score the library gives it); both land in the
/// JSON output and the store with their transcripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_http_agent_follows_a_known_investigation() {
    use fleetbench_aiops::investigate::bench::score_investigation;
    use fleetbench_aiops::investigate::{Ended, Investigation};
    use fleetbench_store::records::arena::{Answer, ArenaBackend};
    use fleetbench_testkit::{start_agent, Turn};

    let (first, second) = (World::generate(7, 0), World::generate(7, 1));
    let wrong = serde_json::json!({"detected": true, "root_cause": "power.psu_brake", "action": "DRAIN_RACK"});
    let node = &first.topo.nodes[0].name;
    let agent = start_agent(vec![
        Turn::call("topology", r#"{"entity": "fleet"}"#),
        Turn::Calls(vec![
            ("kernel_log".into(), format!(r#"{{"node": "{node}", "grep": "Xid"}}"#)),
            ("promql_query".into(), r#"{"query": "max by (Hostname) (DCGM_FI_DEV_GPU_TEMP)"}"#.into()),
        ]),
        Turn::call("submit_diagnosis", &truth_submission(&first).to_string()),
        Turn::call("submit_diagnosis", &wrong.to_string()),
    ])
    .await;
    let expected_second = score_investigation(
        &second,
        &Investigation {
            submitted: Some(wrong.clone()),
            transcript: Vec::new(),
            tool_calls: 1,
            tool_errors: 0,
            input_tokens: 0,
            output_tokens: 0,
            wall_s: 0.0,
            ended: Ended::Submitted,
        },
    )
    .score
    .total;
    assert!(expected_second < 100.0, "the wrong answer must cost points: {expected_second}");

    let dir = temp_dir("scripted");
    let toml = dir.join("backends.toml");
    std::fs::write(
        &toml,
        format!(
            "[[backend]]\nname = \"scripted\"\nurl = \"{}\"\nmodel = \"m\"\napi = \"chat\"\nconcurrency = 1\n\
             price_input_per_mtok = 1.0\nprice_output_per_mtok = 2.0\n\n[[backend]]\nname = \"oracle-rules\"\nbuiltin = \"rules\"\n",
            agent.base_url()
        ),
    )
    .expect("toml");
    let (db, json) = (dir.join("r.db"), dir.join("out.json"));
    let mut cmd = bin();
    cmd.arg("--db").arg(&db).args(["aiops", "run", "--episodes", "2", "--seed", "7", "--backends"]).arg(&toml);
    cmd.args(["--budget-tool-calls", "8", "--budget-tokens", "5000", "--deadline", "60s", "--json-out"]).arg(&json);
    cmd.args(["--metrics-listen", "127.0.0.1:0"]);
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("live figures at http://127.0.0.1:"), "{stderr}");

    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json-out")).expect("json");
    assert_eq!(v["mode"], "investigate", "investigate is the default mode");
    let b = &v["backends"][0];
    assert_eq!(b["name"], "scripted");
    let mean = b["mean_score"].as_f64().expect("mean_score");
    assert!((mean - (100.0 + expected_second) / 2.0).abs() < 1e-9, "{b}");
    // Calls: 4 then 1; tokens: 3 turns then 1, 110 each (the testkit's counts).
    assert_eq!((b["tool_calls_p50"].as_f64(), b["tokens_p50"].as_f64()), (Some(2.5), Some(220.0)), "{b}");
    let usd = (3.0 * 100.0 + 3.0 * 10.0 * 2.0 + 100.0 + 10.0 * 2.0) / 2.0 / 1e6;
    assert!(b["usd_per_incident"].as_f64().is_some_and(|u| (u - usd).abs() < 1e-12), "{b}");
    assert!(b["usd_per_day"].as_f64().is_some_and(|u| u > 0.0));
    assert_eq!(v["backends"][1]["name"], "oracle-rules");

    // The store: each outcome with its score items, calls, tokens, time and transcript.
    let store = fleetbench_store::Store::open(&db).expect("db");
    let run_id = v["run_id"].as_i64().expect("run_id");
    let answers: Vec<Answer> = store
        .get_all::<Answer>(run_id)
        .expect("answers")
        .into_iter()
        .filter(|(name, _)| name.starts_with("scripted/"))
        .map(|(_, a)| a)
        .collect();
    assert_eq!(answers.len(), 2);
    let a0 = answers.iter().find(|a| a.episode_id == first.id).expect("the first episode");
    assert_eq!((a0.score, a0.tool_calls, a0.input_tokens), (Some(100.0), Some(4), Some(300)));
    assert_eq!(a0.items["localization"], 25.0);
    assert!(a0.wall_s.is_some_and(|w| w > 0.0) && a0.ended.as_ref().is_some_and(|e| e["kind"] == "submitted"));
    let tool_names: Vec<&str> =
        a0.transcript.iter().filter(|e| e["role"] == "tool").filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(tool_names, ["topology", "kernel_log", "promql_query", "submit_diagnosis"]);
    let a1 = answers.iter().find(|a| a.episode_id == second.id).expect("the second episode");
    assert_eq!(a1.score, Some(expected_second));
    assert_eq!(a1.parsed.as_ref(), Some(&wrong));
    let boards = store.get_all::<ArenaBackend>(run_id).expect("boards");
    let row = boards.iter().find(|(n, _)| n == "scripted").map(|(_, b)| b).expect("the leaderboard row");
    assert!((row.score - mean).abs() < 1e-9 && row.episodes == Some(2));
    assert_eq!(store.run(run_id).expect("run").meta.config["mode"], "investigate");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fleetbench report` on a stored investigate run: the investigate
/// leaderboard (every column, one row per backend, the floor) and the
/// per-scenario scores, with model text escaped and no transcript shown.
#[test]
fn the_report_shows_the_investigate_leaderboard_and_escapes_model_text() {
    use fleetbench_store::records::arena::Answer;
    let dir = temp_dir("report");
    let db = dir.join("r.db");
    let out = run_ok(
        bin()
            .arg("--db")
            .arg(&db)
            .args(["aiops", "run", "--mode", "investigate", "--backends", "rules,oracle", "--episodes", "6"])
            .args(["--seed", "7"]),
    );
    let run_id: i64 = out
        .split("stored as run ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run id in {out}"));
    // A hostile submission and transcript, as a model could send them.
    let hostile = Answer {
        backend: "rules".into(),
        episode_id: "evil".into(),
        text: "<script>alert('answer')</script>".into(),
        score: Some(-50.0),
        transcript: vec![serde_json::json!({"role": "assistant", "content": "<img src=x onerror=transcript()>"})],
        ..Default::default()
    };
    let store = fleetbench_store::Store::open(&db).expect("db");
    store.put(run_id, &hostile.artifact_name(), &hostile).expect("stored");
    drop(store);

    let rep = dir.join("report");
    run_ok(bin().arg("--db").arg(&db).args(["report", &run_id.to_string(), "--out"]).arg(&rep));
    let html = std::fs::read_to_string(rep.join("index.html")).expect("index.html");
    let start = html.find("<table class=\"investigate\">").expect("the investigate leaderboard");
    let table = &html[start..start + html[start..].find("</table>").expect("table end")];
    for col in ["score [95% CI]", "single-fault", "beyond runbook", "false positives", "over-remediation"] {
        assert!(table.contains(&format!("<th>{col}</th>")), "{col}: {table}");
    }
    for col in ["TTD p50 (s)", "TTD p90 (s)", "tool calls p50", "tokens p50", "$ per incident", "$ per day"] {
        assert!(table.contains(&format!("<th>{col}</th>")), "{col}: {table}");
    }
    // The oracle ranks first with 100; rules follows; then the floor.
    let oracle = table.find("<tr><td>oracle</td><td class=\"num\">100 [").expect("oracle at 100");
    let rules = table.find("<tr><td>rules</td>").expect("rules row");
    let floor = table.find("<tr class=\"floor\"><td>floor</td>").expect("floor row");
    assert!(oracle < rules && rules < floor, "{table}");
    assert!(table.contains("the best constant answer"), "{table}");
    assert!(html.contains("<table class=\"scenarios\">"), "per-scenario scores");
    // Model text is escaped; transcripts are not rendered at all.
    assert!(!html.contains("<script>alert"), "unescaped answer");
    assert!(html.contains("&lt;script&gt;alert("), "the hostile answer is shown escaped");
    assert!(!html.contains("onerror=transcript"), "a transcript was rendered");
    let md = std::fs::read_to_string(rep.join("report.md")).expect("report.md");
    assert!(md.contains(&format!("### Investigate mode: run {run_id}")), "{md}");
    assert!(md.contains("| oracle | 100 [") && md.contains("| floor | "), "{md}");
    assert!(!md.contains("<script>"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
