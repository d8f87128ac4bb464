//! `fleetbench compare` on runs against scripted servers: a server twice as
//! slow between tokens is called worse on TPOT with the largest effect size,
//! and a run compared with itself differs in nothing.

use std::process::Command;
use std::time::Duration;

use fleetbench_testkit::{self as testkit, Script};

fn fleetbench(db: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .env_remove("OPENAI_API_KEY")
        .args(["--quiet", "--db"])
        .arg(db)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slower_tokens_are_significantly_worse_and_a_run_equals_itself() {
    let dir = std::env::temp_dir().join(format!("fb-compare-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("results.db");
    for itl in [10, 20] {
        let s = testkit::start(Script {
            ttft: Duration::from_millis(10),
            itl: Duration::from_millis(itl),
            tokens: 8,
            ..Default::default()
        })
        .await;
        let url = s.base_url();
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            fleetbench(&db, &["run", "--url", &url, "--model", "m", "-c", "2", "-n", "16"]);
        })
        .await
        .unwrap();
    }
    let compare = |a: &'static str, b: &'static str| {
        let v: serde_json::Value =
            serde_json::from_str(&fleetbench(&db, &["compare", a, b, "--json"])).expect("compare --json");
        v
    };
    let v = compare("1", "2");
    let tpot = v["figures"].as_array().unwrap().iter().find(|f| f["figure"] == "tpot_ms").unwrap();
    assert_eq!(tpot["significant"], true, "{tpot}");
    assert_eq!(tpot["verdict"], "worse");
    assert_eq!(tpot["effect_size"], 1.0, "every request of B is slower than every request of A");
    assert!(tpot["change_pct"].as_f64().unwrap() > 50.0, "{tpot}");
    let tok_s = v["figures"].as_array().unwrap().iter().find(|f| f["figure"] == "tok_s (per request)").unwrap();
    assert_eq!(tok_s["verdict"], "worse");

    let same = compare("1", "1");
    for f in same["figures"].as_array().unwrap() {
        assert_eq!(f["significant"], false, "{f}");
    }
    assert_eq!(same["throughput_intervals_overlap"], true);
}
