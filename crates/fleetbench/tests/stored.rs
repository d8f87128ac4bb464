//! Stored runs read back as they were measured: `runs show --json` on a
//! sweep level gives the figures the sweep itself printed, and a database
//! written before records were typed still opens, lists, shows, exports and
//! reports with the same figures.

mod common;

use common::{output, tempdir, text};

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleetbench_testkit::{self as testkit, Script};
use serde_json::Value;

fn bin(db: &Path) -> Command {
    let mut c = common::quiet_bin();
    c.arg("--db").arg(db);
    c
}

async fn show_json(db: &Path, id: i64) -> Value {
    let mut c = bin(db);
    c.args(["runs", "show", &id.to_string(), "--json"]);
    let o = output(c).await;
    assert!(o.status.success(), "runs show {id} --json: {}", text(&o));
    serde_json::from_slice(&o.stdout).expect("runs show --json prints JSON")
}

/// The figures a sweep level and a stored run share, compared exactly.
const FIGURES: [&str; 14] = [
    "sent",
    "completed",
    "failed",
    "output_throughput",
    "request_throughput",
    "mean_tok_s",
    "mean_task_tok_s",
    "median_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "p99_itl_ms",
    "max_concurrent_requests",
    "steady_state",
    "ci95",
];

fn assert_same_figures(level: &Value, stored: &Value, what: &str) {
    for k in FIGURES {
        assert_eq!(level.get(k), stored.get(k), "{what}: {k} differs between the sweep and runs show");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_on_a_sweep_level_gives_the_sweeps_figures() {
    let s = testkit::start(Script {
        ttft: Duration::from_millis(10),
        itl: Duration::from_millis(2),
        tokens: 12,
        ..Default::default()
    })
    .await;
    let dir = tempdir("stored", "levels");
    let db = dir.join("r.db");
    for (levels, flag) in [("1,3", "--concurrency"), ("20,40.5", "--rate")] {
        let mut c = bin(&db);
        c.args(["sweep", "--url", &s.base_url(), "--model", "m", flag, levels, "--per-level-requests", "9"])
            .args(["--slo-ttft", "500", "--no-server-metrics", "--json-out"])
            .arg(dir.join("sweep.json"));
        let o = output(c).await;
        assert!(o.status.success(), "{}", text(&o));
        let doc: Value =
            serde_json::from_slice(&std::fs::read(dir.join("sweep.json")).expect("json-out")).expect("sweep JSON");
        let levels = doc["levels"].as_array().expect("levels");
        assert_eq!(levels.len(), 2);
        for l in levels {
            let id = l["run_ids"][0].as_i64().expect("run id");
            let stored = show_json(&db, id).await;
            assert_same_figures(l, &stored, &format!("{flag} level run {id}"));
            if flag == "--concurrency" {
                assert!(!stored["steady_state"].is_null(), "closed-loop levels keep their steady-state window");
                assert!(stored["slo_attainment_pct"].as_f64().is_some(), "the level's SLO is applied");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_first_schema_still_reads() {
    let dir = tempdir("stored", "schema1");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let db = dir.join("old.db");
    std::fs::copy(fixtures.join("results-schema1.db"), &db).expect("copy the fixture");

    let mut c = bin(&db);
    c.args(["runs", "list", "--limit", "100"]);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 16, "a header and 15 runs:\n{}", text(&o));

    // Sweep levels were stored with float concurrency: the figures must be
    // what that version's sweep printed, steady-state window included.
    let printed: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("results-schema1-sweep.json")).expect("fixture"))
            .expect("fixture JSON");
    for l in printed["levels"].as_array().expect("levels") {
        let id = l["run_ids"][0].as_i64().expect("run id");
        let stored = show_json(&db, id).await;
        assert_same_figures(l, &stored, &format!("old sweep level run {id}"));
        assert_eq!(stored["usd_per_million_output_tokens"], l["usd_per_million_output_tokens"], "run {id}");
    }

    // The priced run exports its cost keys; the arena run shows its leaderboard.
    let mut c = bin(&db);
    c.args(["runs", "export", "15", "--json"]);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let run: Value = serde_json::from_slice(&o.stdout).expect("export JSON");
    assert!(run["usd_per_million_output_tokens"].as_f64().is_some_and(|x| x > 0.0), "{run}");
    assert_eq!(run["price"]["backend"], "rented-1x-h100-sxm");
    let mut c = bin(&db);
    c.args(["runs", "show", "10"]);
    let o = output(c).await;
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rules"), "{}", text(&o));

    // The report reads every record kind of the old database, skipping none.
    let mut c = bin(&db);
    c.arg("report").args((1..=15).map(|i| i.to_string())).arg("--out").arg(dir.join("report"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("report/report.json")).expect("report.json")).expect("JSON");
    assert_eq!(report["skipped_artifacts"], serde_json::json!([]), "records the report could not read");
    let body = report.to_string();
    for key in ["\"cost\"", "\"energy\"", "\"arena\""] {
        assert!(body.contains(key), "report.json lacks {key}");
    }
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    let dir = tempdir("stored", "pipe");
    let db = dir.join("old.db");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(fixtures.join("results-schema1.db"), &db).expect("copy the fixture");
    for args in [&["runs", "list"][..], &["runs", "show", "12"], &["cost", "presets"], &["sim", "list", "gpus"]] {
        let mut c = bin(&db);
        c.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("spawn fleetbench");
        // The reader goes away before anything is written (`| head -0`).
        drop(child.stdout.take());
        let o = child.wait_with_output().expect("wait");
        assert_eq!(o.status.code(), Some(0), "{args:?} into a closed pipe: {}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stderr.is_empty(), "{args:?} complained: {}", String::from_utf8_lossy(&o.stderr));
    }
}
