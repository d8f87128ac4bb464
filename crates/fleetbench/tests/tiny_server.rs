//! fleetbench against a real inference server with a real model: llama.cpp
//! (xllamacpp) serving SmolLM2-135M, started by `scripts/test.sh` through
//! `scripts/tiny-server.sh`, which sets FLEETBENCH_TINY_URL. Ignored by a
//! plain `cargo test`; run with `--include-ignored` (as `scripts/test.sh`
//! does) and without that variable, it fails saying how to start the server.

use std::process::Command;

use fleetbench_core::TokenSource;

mod common;

use common::tiny_url;

fn metric(url: &str, name: &str) -> f64 {
    let base = url.trim_end_matches("/v1");
    let body = http_get(&format!("{base}/metrics"));
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}

fn http_get(url: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys,urllib.request;print(urllib.request.urlopen(sys.argv[1],timeout=10).read().decode())",
            url,
        ])
        .output()
        .expect("python3");
    assert!(out.status.success(), "GET {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the tiny llama.cpp server (FLEETBENCH_TINY_URL): scripts/test.sh starts it"]
fn real_llama_cpp_server_gives_sane_figures() {
    let url = tiny_url();
    let dir = std::env::temp_dir().join(format!("fb-tiny-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("results.db");
    for (api, concurrency, requests) in [("chat", 1, 3), ("chat", 4, 8), ("completions", 1, 3), ("completions", 4, 8)] {
        let predicted_before = metric(&url, "llamacpp:tokens_predicted_total");
        let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
            .args(["--quiet", "--db"])
            .arg(&db)
            .args(["run", "--url", &url, "--model", "smollm2-135m", "--api", api])
            .args(["--concurrency", &concurrency.to_string(), "--requests", &requests.to_string()])
            .args(["--warmup", "1", "--workload", "synthetic:in=96,out=48", "--ignore-eos", "--temperature", "0"])
            .args(["--timeout-total", "120s"])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{api} c={concurrency}: {text}");
        let predicted = metric(&url, "llamacpp:tokens_predicted_total") - predicted_before;

        let store = fleetbench_store::Store::open(&db).unwrap();
        let id = store.latest_run_id().unwrap().unwrap();
        let records = store.records(id).unwrap();
        assert_eq!(records.len(), requests + 1, "{text}");
        let mut ours_tpot = Vec::new();
        let mut server_tpot = Vec::new();
        for r in &records {
            assert!(r.ok(), "{api} c={concurrency}: {:?}", r.error);
            assert_eq!(r.token_source, TokenSource::Server, "usage must come from the server");
            assert!(r.output_tokens > 1);
            // llama.cpp streams one token per event: our count of events
            // equals the server's usage.
            assert_eq!(r.token_events, r.output_tokens, "{api} c={concurrency}");
            assert!(r.ttft().unwrap() > 0.0);
            assert!(r.input_tokens.unwrap() > 50);
            ours_tpot.push(r.tpot().unwrap() * 1000.0);
            server_tpot.push(r.server_timings.and_then(|t| t.predicted_per_token_ms).expect("llama.cpp timings"));
        }
        // Every token we counted is one the server says it predicted.
        let ours: u64 = records.iter().map(|r| r.output_tokens).sum();
        assert_eq!(ours as f64, predicted, "{api} c={concurrency}: usage vs llamacpp:tokens_predicted_total");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (a, b) = (mean(&ours_tpot), mean(&server_tpot));
        assert!((a - b).abs() / b < 0.25, "{api} c={concurrency}: TPOT {a:.2} ms vs server {b:.2} ms");
        let run = store.run(id).unwrap();
        let m = run.summary.unwrap();
        assert_eq!(m["max_concurrent_requests"].as_u64(), Some(concurrency as u64), "{api}");
    }
}
