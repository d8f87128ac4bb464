//! `fleetbench sweep` against a scripted server that serves at most K
//! requests at once and queues the rest (reporting the queue on /metrics
//! with vLLM's names): the cliff finder must find K and explain it.

mod common;

use common::{output, quiet_bin, tempdir, text};

use std::time::Duration;

use fleetbench_testkit::{self as testkit, Script};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_sweep_finds_the_capacity_and_explains_the_queue() {
    let k = 4u32;
    let script = Script {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(5),
        tokens: 20,
        capacity: Some(k),
        ..Default::default()
    };
    // Scripted saturation: K requests of 20 tokens every 20 + 19×5 ms.
    let saturation = k as f64 * 20.0 / 0.115;
    let s = testkit::start(script).await;
    let dir = tempdir("sweep", "auto");
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args([
        "sweep",
        "--url",
        &s.base_url(),
        "--model",
        "m",
        "--concurrency",
        "auto",
        "--max-level",
        "32",
        "--metrics-interval",
        "50ms",
    ]);
    c.arg("--json-out").arg(dir.join("sweep.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("sweep.json")).unwrap()).unwrap();
    let knee = &doc["knee"];
    let at = knee["concurrency"].as_f64().unwrap();
    assert!((at - k as f64).abs() <= 1.0, "knee {at}, want {k} ± 1\n{}", text(&o));
    let sat = knee["saturation_output_throughput"].as_f64().unwrap();
    assert!((sat - saturation).abs() / saturation < 0.05, "saturation {sat:.1} vs scripted {saturation:.1}");
    let reason = knee["reason"].as_str().unwrap();
    assert!(reason.contains("requests queue on the server"), "{reason}");
    // Every level kept exactly its concurrency in flight.
    let levels = doc["levels"].as_array().unwrap();
    assert!(levels.len() >= 4);
    for l in levels {
        assert_eq!(l["max_concurrent_requests"].as_f64(), l["concurrency"].as_f64(), "{l}");
        assert_eq!(l["failed"], 0);
    }
    // Levels beyond K queue: TTFT grows and the server reported waiting.
    let beyond = levels.iter().find(|l| l["concurrency"].as_f64().unwrap() >= 2.0 * k as f64).unwrap();
    assert!(beyond["server"]["max_waiting"].as_f64().unwrap() >= 1.0);
    let at_one = &levels[0];
    assert!(beyond["median_ttft_ms"].as_f64().unwrap() > 2.0 * at_one["median_ttft_ms"].as_f64().unwrap());
    assert!(text(&o).contains("knee: 4 agents"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_levels_rates_and_repeats() {
    let s = testkit::start(Script {
        ttft: Duration::from_millis(10),
        itl: Duration::from_millis(2),
        tokens: 5,
        ..Default::default()
    })
    .await;
    let dir = tempdir("sweep", "fixed");
    let sheet = dir.join("prices.toml");
    std::fs::write(
        &sheet,
        "[[backend]]\nname = \"api\"\nkind = \"api\"\nusd_per_m_input = 1.0\nusd_per_m_output = 10.0\n",
    )
    .unwrap();
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args([
        "sweep",
        "--url",
        &s.base_url(),
        "--model",
        "m",
        "--concurrency",
        "1,3",
        "--repeat",
        "2",
        "--per-level-requests",
        "6",
        "--no-server-metrics",
    ]);
    c.arg("--json-out").arg(dir.join("s.json")).arg("--md-out").arg(dir.join("s.md"));
    c.args(["--price", "api", "--prices"]).arg(&sheet);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("s.json")).unwrap()).unwrap();
    let levels = doc["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    assert_eq!(levels[1]["concurrency"], 3.0);
    assert_eq!(levels[1]["repeats"], 2);
    assert_eq!(levels[1]["run_ids"].as_array().unwrap().len(), 2);
    assert!(levels[1]["output_throughput_ci95_across_repeats"].is_array());
    // Every level is priced from its own tokens: (in × $1 + out × $10) / out per million.
    for l in levels {
        let (i, o) = (l["total_input_tokens"].as_f64().unwrap(), l["total_output_tokens"].as_f64().unwrap());
        let want = (i + 10.0 * o) / o;
        let got = l["usd_per_million_output_tokens"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9 * want, "{got} vs {want}");
    }
    assert_eq!(doc["sweep"]["run_ids"].as_array().unwrap().len(), 4);
    let md = std::fs::read_to_string(dir.join("s.md")).unwrap();
    assert!(md.starts_with("| concurrency |"), "{md}");

    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args([
        "sweep",
        "--url",
        &s.base_url(),
        "--model",
        "m",
        "--rate",
        "5,10",
        "--per-level-requests",
        "5",
    ]);
    c.arg("--json-out").arg(dir.join("rate.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&std::fs::read(dir.join("rate.json")).unwrap()).unwrap();
    assert_eq!(doc["levels"][1]["rate"], 10.0);
    assert!(doc["knee"]["rate"].is_number());

    for bad in [["--concurrency", "1,x"], ["--concurrency", "0"], ["--rate", "-"]] {
        let mut c = quiet_bin();
        c.args(["sweep", "--url", &s.base_url(), "--model", "m"]).args(bad);
        let o = output(c).await;
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", text(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_llm_bench_csv_round_trips_through_import() {
    let s = testkit::start(Script {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(1),
        tokens: 30,
        ..Default::default()
    })
    .await;
    let dir = tempdir("sweep", "llb");
    let db = dir.join("r.db");
    let csv = dir.join("llb.csv");
    let mut c = quiet_bin();
    c.arg("--db").arg(&db).args([
        "sweep",
        "--url",
        &s.base_url(),
        "--model",
        "m",
        "--preset",
        "local-llm-bench",
        "--concurrency",
        "1,2",
        "--no-server-metrics",
    ]);
    c.arg("--csv-out").arg(&csv);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let original = std::fs::read_to_string(&csv).unwrap();
    assert!(original.starts_with(
        "concurrency,run,task,label,task_type,completion_tokens,wall_seconds,tok_per_sec,finish_reason,run_wall_seconds,run_aggregate_tokens,run_effective_tok_per_sec"
    ));
    // Two measured runs per level, 2×C tasks each: 2×2 + 2×4 rows.
    assert_eq!(original.lines().count(), 1 + 4 + 8, "{original}");
    // The series' task ids and task types (algo_a, testing, system_design, ...).
    assert!(original.contains(",algo_") && original.contains(",algorithm/") && original.contains(",testing,"));

    let db2 = dir.join("imported.db");
    let mut c = quiet_bin();
    c.arg("--db").arg(&db2).args(["import", "local-llm-bench"]).arg(&csv);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("as 4 runs"), "{}", text(&o));

    // Rebuild the CSV from what was stored: identical to the original.
    let store = fleetbench_store::Store::open(&db2).unwrap();
    let mut rows = Vec::new();
    for run in store.list_runs(100).unwrap().into_iter().rev() {
        let records = store.records(run.meta.id).unwrap();
        let cfg = &run.meta.config;
        rows.extend(fleetbench_report::local_llm_bench::rows(&fleetbench_report::local_llm_bench::BenchRun {
            concurrency: cfg["concurrency"].as_u64().unwrap() as u32,
            run: cfg["run"].as_u64().unwrap() as u32,
            run_wall_seconds: cfg["run_wall_seconds"].as_f64().unwrap(),
            records: &records,
        }));
    }
    let mut again = Vec::new();
    fleetbench_report::local_llm_bench::write(&mut again, &rows).unwrap();
    assert_eq!(String::from_utf8(again).unwrap(), original);

    let mut c = quiet_bin();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "concurrency,run\n1,1\n").unwrap();
    c.arg("--db").arg(&db2).args(["import", "local-llm-bench"]).arg(&bad);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("lacks the column"), "{}", text(&o));
}
