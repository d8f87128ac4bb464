//! `run --repeat N` and `run --model a,b` against scripted servers whose
//! timing is known exactly: N stored runs, each with its own prompts, and
//! the spread of the headline figures between them; requests spread over
//! two models by weight, with each model's figures.

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
    let dir = tempdir("repeat-mix", "run");
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
    // A bootstrap mean of equal values may differ from them in the last bit.
    let eps = 1e-9 * max;
    assert!(ci[0] <= mean && mean <= ci[1] && ci[0] >= min - eps && ci[1] <= max + eps, "{thr}");

    // Each run sends its own prompts (seeds 1, 1001, 2001): 24 requests, 24 distinct bodies.
    let bodies = s.counters.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 24);
    assert_eq!(bodies.iter().collect::<BTreeSet<_>>().len(), 24);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_mix_spreads_the_requests_and_reports_each_model() {
    // Model "slow" answers its first token after 120 ms, "fast" after 20 ms.
    let script = Script {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(5),
        tokens: 4,
        record_bodies: true,
        model_ttft: vec![("slow".into(), Duration::from_millis(120))],
        ..Default::default()
    };
    let s = testkit::start(script).await;
    let dir = tempdir("repeat-mix", "mix");
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args(["run", "--url", &s.base_url(), "--model", "fast,slow:3,1"]);
    c.args(["-c", "4", "-n", "80", "--json-out"]).arg(dir.join("mix.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("model slow:"), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("mix.json")).unwrap()).unwrap();
    let m = &doc["models"];
    let sent = |k: &str| m[k]["sent"].as_u64().unwrap();
    assert_eq!(sent("fast") + sent("slow"), 80);
    // Weighted 3:1: about 60 and 20 (seeded, so the same every time).
    assert!((45..=75).contains(&sent("fast")), "{m}");
    // What the server got agrees with the per-model counts.
    let bodies = s.counters.bodies.lock().unwrap().clone();
    let to_slow = bodies.iter().filter(|b| b.contains("\"model\":\"slow\"")).count() as u64;
    assert_eq!(to_slow, sent("slow"));
    let ttft = |k: &str| m[k]["median_ttft_ms"].as_f64().unwrap();
    assert!((20.0..60.0).contains(&ttft("fast")), "{m}");
    assert!((120.0..170.0).contains(&ttft("slow")), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}
