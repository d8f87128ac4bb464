//! The JSON outputs are a contract, written down as JSON Schemas in
//! `docs/schemas/`: `run --json-out` (run.json), `sweep --json-out`
//! (sweep.json) and `aiops run --json-out` (arena-run.json). Each output is
//! produced here for real, by the binary against a scripted loopback
//! server (or the arena's built-in operators), and must validate against
//! its committed schema; a key added, renamed or retyped on either side
//! fails with the validation errors.

mod common;

use common::{output, quiet_bin, tempdir, text};

use std::path::Path;
use std::time::Duration;

use fleetbench_testkit::{self as testkit, Script};
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The committed schema `docs/schemas/<name>`, itself checked against the
/// draft 2020-12 meta-schema.
fn validator(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas").join(name);
    let schema = read_json(&path);
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("{} is not a valid JSON Schema: {e} at {}", path.display(), e.instance_path());
    }
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("compiling {}: {e}", path.display()))
}

/// Every way `doc` breaks the schema, one per line, with where.
fn violations(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| format!("{} (at {}, schema {})", e, e.instance_path(), e.schema_path())).collect()
}

fn assert_valid(name: &str, v: &jsonschema::Validator, doc: &Value) {
    let errors = violations(v, doc);
    assert!(
        errors.is_empty(),
        "the output no longer matches docs/schemas/{name}; change the code or the schema (and say so):\n{}",
        errors.join("\n")
    );
}

/// The schema is closed where it says so: an unknown key or a missing
/// required one is a violation.
fn assert_drift_fails(name: &str, v: &jsonschema::Validator, doc: &Value, required: &str) {
    let mut extra = doc.clone();
    extra["a_key_nobody_documented"] = Value::Bool(true);
    assert!(!violations(v, &extra).is_empty(), "{name} accepts an undocumented top-level key");
    let mut missing = doc.clone();
    missing.as_object_mut().expect("an object").remove(required);
    assert!(!violations(v, &missing).is_empty(), "{name} accepts a document without {required}");
}

fn fast_script() -> Script {
    Script { ttft: Duration::from_millis(10), itl: Duration::from_millis(2), tokens: 8, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_json_out_matches_its_schema() {
    use std::os::unix::fs::PermissionsExt;
    let s = testkit::start(fast_script()).await;
    let dir = tempdir("schemas", "run");
    let v = validator("run.json");

    // A closed loop with a price and a (stand-in) meter: every optional
    // cost and energy key is there.
    let smi = dir.join("bin/nvidia-smi");
    std::fs::create_dir_all(dir.join("bin")).expect("bin dir");
    std::fs::write(&smi, "#!/bin/sh\nprintf '0, 300.00\\n'\n").expect("stand-in nvidia-smi");
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sheet = dir.join("prices.toml");
    std::fs::write(&sheet, "[[backend]]\nname = \"box\"\nkind = \"rented\"\nusd_per_gpu_hour = 3.6\ngpus = 1\n")
        .expect("price sheet");
    let path = format!("{}:{}", dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut c = quiet_bin();
    c.env("PATH", path).arg("--db").arg(dir.join("r.db")).args(["run", "--url", &s.base_url(), "--model", "m"]);
    c.args(["--concurrency", "2", "--requests", "10", "--warmup", "1", "--slo-ttft", "1000"]);
    c.args(["--meter", "nvidia-smi", "--meter-interval", "20ms", "--idle", "0s", "--price", "box", "--prices"]);
    c.arg(&sheet).arg("--json-out").arg(dir.join("closed.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let closed = read_json(&dir.join("closed.json"));
    for key in ["usd_total", "price", "energy_per_output_token_j", "energy", "p99_ttft_ms"] {
        assert!(closed.get(key).is_some(), "the closed-loop run lacks {key}, which this test means to check");
    }
    assert_valid("run.json", &v, &closed);
    assert_drift_fails("run.json", &v, &closed, "output_throughput");

    // An open loop without extras: the rate keys, no cost or energy.
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args(["run", "--url", &s.base_url(), "--model", "m", "--api", "completions"]);
    c.args(["--rate", "200", "--burstiness", "0.5", "--requests", "8"]).arg("--json-out").arg(dir.join("open.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let open = read_json(&dir.join("open.json"));
    assert!(open.get("request_rate").is_some() && open.get("usd_total").is_none(), "{open}");
    assert_valid("run.json", &v, &open);

    // Tools offered, a reasoning model calling one: the tool keys.
    let s = testkit::start(Script {
        reasoning: 2,
        tool_call: Some(testkit::ScriptedCall { name: "f".into(), arguments: "{}".into() }),
        ..fast_script()
    })
    .await;
    let tools = dir.join("tools.json");
    std::fs::write(&tools, r#"[{"type": "function", "function": {"name": "f"}}]"#).expect("tools file");
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args(["run", "--url", &s.base_url(), "--model", "m", "--requests", "4"]);
    c.arg("--tools").arg(&tools).arg("--json-out").arg(dir.join("tools-run.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let with_tools = read_json(&dir.join("tools-run.json"));
    for key in ["tool_call_responses", "tool_args_json_pct", "p99_tool_ttft_ms"] {
        assert!(with_tools.get(key).is_some(), "the run with tools lacks {key}");
    }
    assert_valid("run.json", &v, &with_tools);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_json_out_matches_its_schema() {
    // A server that queues beyond two requests and says so on /metrics, so
    // the levels carry the server's figures.
    let s = testkit::start(Script { capacity: Some(2), ..fast_script() }).await;
    let dir = tempdir("schemas", "sweep");
    let v = validator("sweep.json");

    // Fixed concurrency levels, repeated: the keys of pooled repeats.
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args(["sweep", "--url", &s.base_url(), "--model", "m"]);
    c.args(["--concurrency", "1,2,4", "--per-level-requests", "8", "--repeat", "2", "--metrics-interval", "20ms"]);
    c.arg("--json-out").arg(dir.join("closed.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let closed = read_json(&dir.join("closed.json"));
    let first = &closed["levels"][0];
    assert!(first["repeats"] == 2 && first["server"].is_object(), "levels lack what this test means to check: {first}");
    assert_valid("sweep.json", &v, &closed);
    assert_drift_fails("sweep.json", &v, &closed, "knee");

    // Request-rate levels without server metrics.
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args(["sweep", "--url", &s.base_url(), "--model", "m"]);
    c.args(["--rate", "50,100", "--per-level-requests", "8", "--no-server-metrics"]);
    c.arg("--json-out").arg(dir.join("rate.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let rate = read_json(&dir.join("rate.json"));
    assert!(rate["levels"][0].get("rate").is_some(), "{rate}");
    assert_valid("sweep.json", &v, &rate);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arena_run_json_out_matches_its_schema() {
    let dir = tempdir("schemas", "arena");
    let v = validator("arena-run.json");
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db"));
    c.args([
        "aiops",
        "run",
        "--mode",
        "triage",
        "--backends",
        "rules,always-healthy,random",
        "--episodes",
        "10",
        "--seed",
        "5",
    ]);
    c.arg("--json-out").arg(dir.join("arena.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let doc = read_json(&dir.join("arena.json"));
    assert_eq!(doc["backends"].as_array().map(Vec::len), Some(3), "{doc}");
    assert_valid("arena-run.json", &v, &doc);
    assert_drift_fails("arena-run.json", &v, &doc, "backends");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_validate_under_load_json_matches_its_schema() {
    let v = validator("sim-validate-under-load.json");
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/calibration/under-load.csv");
    let mut c = quiet_bin();
    c.args(["sim", "validate"]).arg(&csv).arg("--json");
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON: {e}\n{}", text(&o)));
    let rows = doc["rows"].as_array().map(Vec::len).unwrap_or(0);
    assert!(rows > 0 && doc["total"] == rows, "{doc}");
    assert_valid("sim-validate-under-load.json", &v, &doc);
    assert_drift_fails("sim-validate-under-load.json", &v, &doc, "covered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ramp_and_repeat_outputs_match_their_schemas() {
    let s = testkit::start(fast_script()).await;
    let dir = tempdir("schemas", "sessions");
    let (run_v, sweep_v) = (validator("run.json"), validator("sweep.json"));
    let agents = "agent-session:turns=2..3,system=50,tool-output=10..20,output=4,think=0";
    let base = |c: &mut std::process::Command| {
        c.arg("--db").arg(dir.join("r.db"));
    };

    // Agent sessions, measured twice: `sessions`, the per-request session arrays and `repeats`.
    let mut c = quiet_bin();
    base(&mut c);
    c.args(["run", "--url", &s.base_url(), "--model", "m", "--workload", agents, "-c", "2", "-n", "9"]);
    c.args(["--repeat", "2", "--json-out"]).arg(dir.join("sessions.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let doc = read_json(&dir.join("sessions.json"));
    for key in ["sessions", "request_sessions", "request_turns", "repeats"] {
        assert!(doc.get(key).is_some(), "the session run lacks {key}: {doc}");
    }
    assert_valid("run.json", &run_v, &doc);

    // A ramp: `windows`.
    let mut c = quiet_bin();
    base(&mut c);
    c.args(["run", "--url", &s.base_url(), "--model", "m", "--ramp", "concurrency:1..3/0.6s,steps=3"]);
    c.arg("--json-out").arg(dir.join("ramp.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let doc = read_json(&dir.join("ramp.json"));
    assert_eq!(doc["windows"].as_array().map(Vec::len), Some(3), "{doc}");
    assert_valid("run.json", &run_v, &doc);

    // A sweep of agent sessions: `sessions` per level and across levels.
    let mut c = quiet_bin();
    base(&mut c);
    c.args(["sweep", "--url", &s.base_url(), "--model", "m", "--workload", agents, "--concurrency", "1,2"]);
    c.args(["--per-level-requests", "6", "--no-server-metrics", "--json-out"]).arg(dir.join("sweep.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let doc = read_json(&dir.join("sweep.json"));
    assert!(doc["sessions"].is_object() && doc["levels"][0]["sessions"].is_object(), "{doc}");
    assert_valid("sweep.json", &sweep_v, &doc);
    let _ = std::fs::remove_dir_all(&dir);
}
