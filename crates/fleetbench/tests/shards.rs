//! One run measured by four processes (`--shard I/4 --run-id KEY`) against
//! one local server, on SQLite and on PostgreSQL: the merged run has every
//! shard's requests, its highest concurrency is the sum of the shards', its
//! percentiles are those of the union of the shards' own figures, and its
//! cost is the union's. One sweep measured by two processes: every level
//! has both shards' requests and the percentiles of their union, and both
//! shards agree on the levels the cliff search chose.

mod common;

use common::{output, quiet_bin, tempdir, text};

use std::time::Duration;

use fleetbench_core::stats::percentile;
use fleetbench_sim::fixed::FixedServer;
use serde_json::Value;

const SHARDS: u32 = 4;
const CONCURRENCY: u32 = 8;
const REQUESTS: u64 = 160;

async fn four_shards_make_one_run(db: &str, tag: &str) {
    let server = FixedServer::new(8, Duration::from_millis(4));
    let addr = server.start().expect("start the fixed server");
    let dir = tempdir("shards", tag);
    let key = format!("job-{tag}-{}", std::process::id());
    let shards: Vec<_> = (0..SHARDS)
        .map(|i| {
            let mut c = quiet_bin();
            c.args(["--db", db, "run", "--url", &format!("http://{addr}/v1"), "--model", "m"])
                .args(["--concurrency", &CONCURRENCY.to_string(), "--requests", &REQUESTS.to_string()])
                .args(["--workload", "synthetic:in=16,out=8", "--shard", &format!("{i}/{SHARDS}"), "--run-id", &key])
                .args(["--shard-timeout", "60s", "--price", "rented-1x-h100-sxm", "--json-out"])
                .arg(dir.join(format!("shard{i}.json")));
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            c.spawn().expect("start a shard")
        })
        .collect();
    let mut union_ttft = Vec::new();
    let mut union_e2el = Vec::new();
    let mut sum_max = 0;
    let mut done = Vec::new();
    for child in shards {
        done.push(tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait for a shard")));
    }
    let mut outputs = Vec::new();
    for o in done {
        outputs.push(o.await.expect("join"));
    }
    let failed: Vec<String> = outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.status.success())
        .map(|(i, o)| format!("shard {i}: {}", text(o)))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    for i in 0..SHARDS as usize {
        let doc: Value = serde_json::from_slice(&std::fs::read(dir.join(format!("shard{i}.json"))).expect("json-out"))
            .expect("shard JSON");
        assert_eq!(doc["completed"], REQUESTS / u64::from(SHARDS), "shard {i} did its share");
        sum_max += doc["max_concurrent_requests"].as_u64().expect("max concurrency");
        let ms = |k: &str| {
            doc[k].as_array().expect(k).iter().map(|v| v.as_f64().unwrap_or(0.0) * 1000.0).collect::<Vec<_>>()
        };
        union_ttft.extend(ms("ttfts"));
        union_e2el.extend(ms("latencies"));
    }
    assert_eq!(sum_max, u64::from(CONCURRENCY), "each shard ran its 2 agents");

    let mut c = quiet_bin();
    c.args(["--db", db, "runs", "show", &key, "--json"]);
    let o = output(c).await;
    assert!(o.status.success(), "runs show: {}", text(&o));
    let merged: Value = serde_json::from_slice(&o.stdout).expect("runs show --json");
    assert_eq!(merged["shards"], SHARDS);
    assert_eq!(merged["completed"], REQUESTS, "every shard's requests are in the merged run");
    assert_eq!(merged["max_concurrent_requests"], u64::from(CONCURRENCY), "the shards ran at once");
    let statuses: Vec<&str> =
        merged["shard_status"].as_array().expect("shard_status").iter().filter_map(|s| s["status"].as_str()).collect();
    assert_eq!(statuses, ["completed"; SHARDS as usize]);
    for (key, values) in [("ttft", &union_ttft), ("e2el", &union_e2el)] {
        for (name, p) in [("median", 50.0), ("p90", 90.0), ("p99", 99.0)] {
            let want = percentile(values, p).expect("a percentile");
            let got = merged[format!("{name}_{key}_ms")].as_f64().expect("merged percentile");
            assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "{name} {key}: merged {got}, union {want}");
        }
    }
    assert_eq!(server.max_in_flight(), u64::from(CONCURRENCY), "the server saw all shards' agents at once");
    // The cost is the union's: all shards' requests, at the shards' hourly rate.
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    let usd = f(&merged, "usd_total");
    assert!((f(&merged, "usd_per_request") * REQUESTS as f64 - usd).abs() <= 1e-9 * usd, "{merged}");
    let shard0: Value =
        serde_json::from_slice(&std::fs::read(dir.join("shard0.json")).expect("json-out")).expect("JSON");
    let per_hour = |v: &Value| f(v, "usd_total") / f(v, "duration");
    assert!((per_hour(&merged) - per_hour(&shard0)).abs() <= 1e-9 * per_hour(&shard0), "{merged}");
    // compare and report name the run by its key.
    let mut c = quiet_bin();
    c.args(["--db", db, "compare", &key, &key, "--json"]);
    let o = output(c).await;
    assert!(o.status.success(), "compare: {}", text(&o));
    let cmp: Value = serde_json::from_slice(&o.stdout).expect("compare --json");
    assert_eq!(cmp["a"]["run_id"], merged["run_id"], "{cmp}");
    let mut c = quiet_bin();
    c.args(["--db", db, "report", &key, "--out"]).arg(dir.join("report"));
    let o = output(c).await;
    assert!(o.status.success() && dir.join("report/index.html").exists(), "report: {}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_shards_make_one_run_on_sqlite() {
    let dir = tempdir("shards", "sqlite-db");
    four_shards_make_one_run(&dir.join("results.db").to_string_lossy(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: scripts/test.sh starts a throwaway cluster (FLEETBENCH_TEST_POSTGRES)"]
async fn four_shards_make_one_run_on_postgres() {
    let url = fleetbench_testkit::fresh_postgres_db("shards_cli");
    four_shards_make_one_run(&url, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_alone_gives_up_with_a_clear_error() {
    let server = FixedServer::new(2, Duration::from_millis(1));
    let addr = server.start().expect("start the fixed server");
    let dir = tempdir("shards", "alone");
    let mut c = quiet_bin();
    c.args(["--db", &dir.join("r.db").to_string_lossy(), "run", "--url", &format!("http://{addr}/v1")]).args([
        "--model",
        "m",
        "-c",
        "2",
        "-n",
        "4",
        "--shard",
        "1/2",
        "--run-id",
        "lonely",
        "--shard-timeout",
        "1s",
    ]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("only 1 of 2 shards joined") && t.contains("0/2"), "{t}");
    let mut c = quiet_bin();
    c.args(["--db", &dir.join("r.db").to_string_lossy(), "run", "--url", &format!("http://{addr}/v1")])
        .args(["--model", "m", "-c", "2", "-n", "4", "--shard", "1/2"]);
    let o = output(c).await;
    assert!(text(&o).contains("needs --run-id"), "{}", text(&o));
}

/// `--db postgres://user:PASSWORD@…` works for run, runs list/show and
/// runs copy, and the password is in none of what is printed or stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test.sh starts a throwaway cluster (FLEETBENCH_TEST_POSTGRES)"]
async fn a_postgres_password_is_never_shown_or_stored() {
    let url = fleetbench_testkit::fresh_postgres_db("secrets_cli");
    let password = url.split_once("://").and_then(|(_, r)| r.split_once('@')).and_then(|(u, _)| u.split_once(':'));
    let password = password.map(|(_, p)| p.to_string()).expect("the test cluster's URL has a password");
    let server = FixedServer::new(4, Duration::from_millis(1));
    let addr = server.start().expect("start the fixed server");
    let dir = tempdir("shards", "secrets");
    let mut seen = String::new();
    let run = |args: Vec<String>| {
        let mut c = quiet_bin();
        c.args(&args);
        async move {
            let o = output(c).await;
            assert!(o.status.success(), "{args:?}: {}", text(&o));
            text(&o)
        }
    };
    let u = |s: &str| s.to_string();
    seen += &run(vec![
        u("--db"),
        url.clone(),
        u("run"),
        format!("--url=http://{addr}/v1"),
        u("--model=m"),
        u("-c2"),
        u("-n6"),
    ])
    .await;
    seen += &run(vec![u("--db"), url.clone(), u("runs"), u("list")]).await;
    seen += &run(vec![u("--db"), url.clone(), u("runs"), u("show"), u("1")]).await;
    seen += &run(vec![u("--db"), url.clone(), u("runs"), u("show"), u("1"), u("--json")]).await;
    let copy = dir.join("copy.db").to_string_lossy().into_owned();
    seen += &run(vec![u("runs"), u("copy"), u("--from"), url.clone(), u("--to"), copy.clone()]).await;
    seen += &run(vec![u("--db"), copy.clone(), u("runs"), u("show"), u("1"), u("--json")]).await;
    assert!(seen.contains("\"completed\": 6"), "{seen}");
    assert!(!seen.contains(&password), "the password was printed: {seen}");
    // What the copy stored: the command line and config of the run.
    let mut stored = std::fs::read(&copy).expect("the copied database");
    stored.extend(std::fs::read(format!("{copy}-wal")).unwrap_or_default());
    let stored = String::from_utf8_lossy(&stored);
    assert!(!stored.contains(&password), "the password was stored");
    assert!(stored.contains("--db postgres://127.0.0.1:"), "the command line is stored, credentials removed");
}

/// Two processes measure one auto sweep (`sweep --shard I/2 --run-id KEY`):
/// they agree on every level, each level holds both shards' requests, and
/// its percentiles are those of the union of the stored records.
async fn two_shards_make_one_sweep(db: &str, tag: &str) {
    let server = FixedServer::new(8, Duration::from_millis(4));
    let addr = server.start().expect("start the fixed server");
    let dir = tempdir("sweep-shards", tag);
    let key = format!("sweep-{tag}-{}", std::process::id());
    let shards: Vec<_> = (0..2)
        .map(|i| {
            let mut c = quiet_bin();
            c.args(["--db", db, "sweep", "--url", &format!("http://{addr}/v1"), "--model", "m"])
                .args([
                    "--concurrency",
                    "auto",
                    "--max-level",
                    "8",
                    "--per-level-requests",
                    "48",
                    "--no-server-metrics",
                ])
                .args(["--workload", "synthetic:in=16,out=8", "--shard", &format!("{i}/2"), "--run-id", &key])
                .args(["--shard-timeout", "60s", "--json-out"])
                .arg(dir.join(format!("shard{i}.json")));
            c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            c.spawn().expect("start a shard")
        })
        .collect();
    let mut done = Vec::new();
    for child in shards {
        done.push(tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait for a shard")));
    }
    let mut docs = Vec::new();
    for (i, o) in done.into_iter().enumerate() {
        let o = o.await.expect("join");
        assert!(o.status.success(), "shard {i}: {}", text(&o));
        let doc: Value = serde_json::from_slice(&std::fs::read(dir.join(format!("shard{i}.json"))).expect("json-out"))
            .expect("sweep JSON");
        docs.push(doc);
    }
    let levels = |d: &Value| -> Vec<(f64, u64)> {
        d["levels"]
            .as_array()
            .expect("levels")
            .iter()
            .map(|l| (l["concurrency"].as_f64().unwrap_or(0.0), l["completed"].as_u64().unwrap_or(0)))
            .collect()
    };
    assert_eq!(levels(&docs[0]), levels(&docs[1]), "both shards wrote the same sweep");
    let seen: Vec<f64> = levels(&docs[0]).iter().map(|l| l.0).collect();
    // The search starts at one agent per shard and doubles (then bisects, if
    // the curve flattens) up to --max-level.
    assert_eq!(seen[..2], [2.0, 4.0], "{seen:?}");
    assert!(seen.iter().all(|l| (2.0..=8.0).contains(l) && l.fract() == 0.0), "{seen:?}");
    assert!(levels(&docs[0]).iter().all(|l| l.1 == 48), "every level has all shards' requests");
    assert_eq!(docs[0]["knee"], docs[1]["knee"]);
    let highest = seen.iter().copied().fold(0.0, f64::max);
    assert_eq!(server.max_in_flight() as f64, highest, "the highest level's agents of both shards ran at once");

    let store = fleetbench_store::Store::connect(&fleetbench_store::Db::parse(db, None).expect("db")).expect("store");
    let runs = store.runs_in_group(&key).expect("the sweep's group is its key");
    assert_eq!(runs.len(), seen.len(), "one run per level");
    for level in docs[0]["levels"].as_array().expect("levels") {
        let c = level["concurrency"].as_f64().unwrap_or(0.0);
        let id = store.resolve_run(&format!("{key}/c={c}")).expect("the level's run");
        assert_eq!(store.shards(id).expect("shards").len(), 2);
        let records: Vec<_> = store.records(id).expect("records").into_iter().filter(|r| !r.warmup).collect();
        for i in 0..2u64 {
            assert_eq!(records.iter().filter(|r| r.index % 2 == i).count(), 24, "shard {i} did half of c={c}");
        }
        let ttft: Vec<f64> = records.iter().filter_map(|r| r.ttft()).map(|t| t * 1000.0).collect();
        let e2el: Vec<f64> = records.iter().filter_map(|r| r.e2el()).map(|t| t * 1000.0).collect();
        for (name, values) in [("ttft", &ttft), ("e2el", &e2el)] {
            for (stat, p) in [("median", 50.0), ("p90", 90.0), ("p99", 99.0)] {
                let want = percentile(values, p).expect("a percentile");
                let got = level[format!("{stat}_{name}_ms")].as_f64().expect("level percentile");
                assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "c={c} {stat} {name}: {got} vs {want}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_make_one_sweep_on_sqlite() {
    let dir = tempdir("sweep-shards", "sqlite-db");
    two_shards_make_one_sweep(&dir.join("results.db").to_string_lossy(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test.sh starts a throwaway cluster (FLEETBENCH_TEST_POSTGRES)"]
async fn two_shards_make_one_sweep_on_postgres() {
    let url = fleetbench_testkit::fresh_postgres_db("sweep_shards_cli");
    two_shards_make_one_sweep(&url, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_sweep_refuses_levels_without_an_agent_per_shard() {
    let server = FixedServer::new(2, Duration::from_millis(1));
    let addr = server.start().expect("start the fixed server");
    let dir = tempdir("sweep-shards", "too-few");
    let mut c = quiet_bin();
    c.args(["--db", &dir.join("r.db").to_string_lossy(), "sweep", "--url", &format!("http://{addr}/v1")]).args([
        "--model",
        "m",
        "--concurrency",
        "1,4",
        "--shard",
        "0/2",
        "--run-id",
        "few",
        "--no-server-metrics",
    ]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("level 1 has fewer agents than the sweep has shards (2)"), "{}", text(&o));
    assert_eq!(server.max_in_flight(), 0, "nothing was sent");
}
