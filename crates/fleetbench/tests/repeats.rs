//! `run --repeat N` against a scripted server whose timing is known
//! exactly: N stored runs, each with its own prompts, and the spread of
//! the headline figures between them.

mod common;

use common::{output, quiet_bin, tempdir, text};

use std::collections::BTreeSet;
use std::time::Duration;

use fleetbench_testkit::{self as testkit, Script};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_runs_and_how_far_they_lie_apart() {
    // 6 tokens: the first after 40 ms, then one every 10 ms (90 ms a request).
    let script = Script {
        ttft: Duration::from_millis(40),
        itl: Duration::from_millis(10),
        tokens: 6,
        record_bodies: true,
        ..Default::default()
    };
    let s = testkit::start(script).await;
    let dir = tempdir("repeats", "run");
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args(["run", "--url", &s.base_url(), "--model", "m", "-c", "2", "-n", "8"]);
    c.args(["--repeat", "3", "--json-out"]).arg(dir.join("r.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("3 runs (") && out.contains("spread %"), "{out}");
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    let r = &doc["repeats"];
    assert_eq!(r["runs"], 3);
    let ids: BTreeSet<i64> = r["run_ids"].as_array().unwrap().iter().filter_map(Value::as_i64).collect();
    assert_eq!(ids.len(), 3, "{r}");
    assert_eq!(doc["run_id"].as_i64(), ids.last().copied(), "the other keys are the last run's");

    let f = &r["figures"];
    let values =
        |k: &str| -> Vec<f64> { f[k]["values"].as_array().unwrap().iter().filter_map(Value::as_f64).collect() };
    for ttft in values("median_ttft_ms") {
        assert!((40.0..70.0).contains(&ttft), "median TTFT {ttft} ms");
    }
    for tpot in values("median_tpot_ms") {
        assert!((8.0..14.0).contains(&tpot), "median TPOT {tpot} ms");
    }
    // Two agents, 6 tokens per 90 ms each: about 133 output tokens per second in every run.
    let thr = &f["output_throughput"];
    let mean = thr["mean"].as_f64().unwrap();
    assert!((80.0..150.0).contains(&mean), "{thr}");
    let v = values("output_throughput");
    let (min, max) = (v.iter().copied().fold(f64::INFINITY, f64::min), v.iter().copied().fold(0.0, f64::max));
    assert_eq!((thr["min"].as_f64(), thr["max"].as_f64()), (Some(min), Some(max)));
    assert!((thr["spread_pct"].as_f64().unwrap() - 100.0 * (max - min) / mean).abs() < 1e-9);
    let ci: Vec<f64> = thr["ci95"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    assert!(ci[0] <= mean && mean <= ci[1] && ci[0] >= min && ci[1] <= max, "{thr}");

    // Each run sends its own prompts (seeds 1, 1001, 2001): 24 requests, 24 distinct bodies.
    let bodies = s.counters.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 24);
    assert_eq!(bodies.iter().collect::<BTreeSet<_>>().len(), 24);
    let _ = std::fs::remove_dir_all(&dir);
}
