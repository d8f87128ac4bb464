//! Agent sessions against the real llama.cpp server with SmolLM2-135M
//! (FLEETBENCH_TINY_URL, started by `scripts/test.sh`): the server's prefix
//! cache at work. Turns after the first resend their session's history, so
//! llama.cpp serves most of their prompt from its cache; cold prompts of the
//! same length (synthetic, each opening with its own nonce) cannot be. Both
//! are measured here, one after the other, at concurrency 1.

use std::process::Command;

use serde_json::Value;

mod common;

/// A seed no earlier run on the same server used: llama.cpp keeps what its
/// slots last held, so a prompt sent before would not be cold.
fn fresh_seed() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos as u64 ^ ((std::process::id() as u64) << 32)).to_string()
}

fn run(url: &str, dir: &std::path::Path, name: &str, workload: &str, requests: &str) -> Value {
    let json = dir.join(format!("{name}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["--quiet", "--db"])
        .arg(dir.join("results.db"))
        .args(["run", "--url", url, "--model", "smollm2-135m", "--workload", workload])
        .args(["--concurrency", "1", "--requests", requests, "--temperature", "0", "--ignore-eos"])
        .args(["--timeout-total", "180s", "--seed", &fresh_seed(), "--json-out"])
        .arg(&json)
        .arg("--csv-out")
        .arg(dir.join(format!("{name}.csv")))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    assert!(n > 0);
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[test]
#[ignore = "needs the tiny llama.cpp server (FLEETBENCH_TINY_URL): scripts/test.sh starts it"]
fn later_turns_start_faster_than_cold_prompts_of_the_same_length() {
    let url = common::tiny_url();
    let dir = std::env::temp_dir().join(format!("fb-tiny-sessions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // Three sessions of three turns: 9 requests, every session whole.
    let warm =
        run(&url, &dir, "sessions", "agent-session:turns=3,system=150,tool-output=60..100,output=8,think=0", "9");
    let s = &warm["sessions"];
    assert_eq!((s["started"].as_u64(), s["completed"].as_u64(), s["turns"].as_u64()), (Some(3), Some(3), Some(9)));
    assert_eq!(warm["failed"], 0);
    let turns: Vec<u64> = warm["request_turns"].as_array().unwrap().iter().filter_map(Value::as_u64).collect();
    let ttfts: Vec<f64> = warm["ttfts"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    let lens: Vec<f64> = warm["input_lens"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    assert_eq!((turns.len(), ttfts.len(), lens.len()), (9, 9, 9));
    let later = |v: &[f64]| -> Vec<f64> { v.iter().zip(&turns).filter(|(_, t)| **t > 0).map(|(x, _)| *x).collect() };
    let warm_ttft = median(later(&ttfts));
    let warm_len = median(later(&lens));
    // llama.cpp says how much of each prompt its cache served.
    let cached = s["server_cached_prompt_share"].as_f64().unwrap_or_else(|| panic!("no cache figures: {s}"));
    assert!(cached > 0.2, "cached share {cached}");

    // Cold prompts of the same length, measured now on the same server.
    let cold = run(&url, &dir, "cold", &format!("synthetic:in={},out=8", warm_len.round() as u64), "4");
    let cold_ttft = median(cold["ttfts"].as_array().unwrap().iter().filter_map(Value::as_f64).collect());
    let cold_len = median(cold["input_lens"].as_array().unwrap().iter().filter_map(Value::as_f64).collect());
    assert!(cold_len >= 0.9 * warm_len, "cold prompts of {cold_len} tokens vs later turns of {warm_len}");
    eprintln!(
        "later turns: median TTFT {:.0} ms at {warm_len} prompt tokens ({:.0} % cached); \
         cold prompts: median TTFT {:.0} ms at {cold_len} tokens",
        warm_ttft * 1e3,
        cached * 100.0,
        cold_ttft * 1e3
    );
    assert!(warm_ttft < cold_ttft, "later turns {warm_ttft} s vs cold {cold_ttft} s");

    // The CSV says which session and turn each request was.
    let csv = std::fs::read_to_string(dir.join("sessions.csv")).unwrap();
    let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let row: Vec<&str> = csv.lines().nth(2).unwrap().split(',').collect();
    assert_eq!((row[col("conversation")], row[col("turn")]), ("as-0", "1"));
    assert!(row[col("context_tokens")].parse::<u32>().unwrap() > 150);
    let _ = std::fs::remove_dir_all(&dir);
}
