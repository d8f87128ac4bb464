//! The workload and arrival language through the binary: `fleetbench run`
//! and `fleetbench sim replay` accept the same strings and reject the same
//! mistakes with the same words; a run stores what each request was; replay
//! prints per-stage figures and its JSON.

use std::path::PathBuf;
use std::time::Duration;

use fleetbench_testkit::{self as testkit, Script};

mod common;

use common::{bin, output, tempdir, text};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../workload/tests/fixtures").join(name).display().to_string()
}

/// Argument sets both commands must accept.
fn good_sets(dir: &std::path::Path) -> Vec<Vec<String>> {
    let file = dir.join("prompts.jsonl");
    std::fs::write(
        &file,
        "{\"prompt\":\"hello\",\"max_tokens\":4}\n{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n",
    )
    .unwrap();
    let sets: Vec<Vec<String>> = vec![
        vec![
            "--workload".into(),
            "shared-prefix:groups=2,users=2,system=40,question=8,output=4,multi-turn".into(),
            "-c".into(),
            "2".into(),
            "-n".into(),
            "8".into(),
        ],
        vec!["--arrivals".into(), "constant:32/s*250ms,64/s*125ms".into()],
        vec!["--arrivals".into(), "gamma:100/s*100ms,cv=2".into(), "--max-concurrency".into(), "3".into()],
        vec![
            "--rate".into(),
            "50".into(),
            "--arrival".into(),
            "gamma".into(),
            "--burstiness".into(),
            "0.5".into(),
            "-n".into(),
            "6".into(),
        ],
        vec!["--arrivals".into(), format!("trace:{}", fixture("trace.jsonl"))],
        vec!["--arrivals".into(), format!("trace:mooncake:{}", fixture("mooncake.jsonl"))],
        vec![
            "--workload".into(),
            "coding-swarm".into(),
            "-c".into(),
            "2".into(),
            "-n".into(),
            "4".into(),
            "--max-tokens".into(),
            "8".into(),
        ],
        vec![
            "--workload".into(),
            format!("file:{}", file.display()),
            "-n".into(),
            "3".into(),
            "--seed".into(),
            "9".into(),
        ],
        vec![
            "--workload".into(),
            "synthetic:in=64,out=8,spread=0.2".into(),
            "-n".into(),
            "5".into(),
            "--warmup".into(),
            "1".into(),
        ],
        vec!["--workload".into(), "synthetic:in=64,out=8,prompts=2".into(), "-n".into(), "4".into()],
    ];
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_replay_accept_the_same_workload_and_arrival_arguments() {
    let s = testkit::start(Script {
        ttft: Duration::from_millis(2),
        itl: Duration::from_millis(1),
        tokens: 4,
        ..Default::default()
    })
    .await;
    let dir = tempdir("workload", "same");
    let db = dir.join("results.db");
    for (i, set) in good_sets(&dir).into_iter().enumerate() {
        let mut c = bin();
        c.arg("--quiet").arg("--db").arg(&db).args(["run", "--url", &s.base_url(), "--model", "m"]).args(&set);
        let o = output(c).await;
        assert!(o.status.success(), "run {set:?}: {}", text(&o));
        let mut c = bin();
        c.args(["sim", "replay", "--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--quant", "fp8"]).args(&set);
        let o = output(c).await;
        assert!(o.status.success(), "replay {set:?}: {}", text(&o));
        assert!(text(&o).contains("overall"), "{}", text(&o));
        // The staged set (gaps exact in binary): 8 + 8 requests.
        if i == 1 {
            let mut c = bin();
            c.arg("--db").arg(&db).args(["runs", "export", &(i + 1).to_string(), "--csv"]);
            let o = output(c).await;
            assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 17, "{}", text(&o));
        }
    }
    // The multi-turn run stored each request's group, conversation and turn.
    let mut c = bin();
    c.arg("--db").arg(&db).args(["runs", "export", "1", "--csv"]);
    let o = output(c).await;
    let csv = String::from_utf8_lossy(&o.stdout).into_owned();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|c| *c == n).unwrap();
    let turns: Vec<String> = csv.lines().skip(1).map(|l| l.split(',').nth(col("turn")).unwrap().to_string()).collect();
    assert_eq!(turns.iter().filter(|t| *t == "1").count(), 4, "{csv}");
    // Users come round in a seeded order; each row's conversation lies in
    // its group, and a first turn carries only the system prompt.
    for line in csv.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let (group, conversation) = (cells[col("prefix_group")], cells[col("conversation")]);
        assert!(conversation.starts_with(group) && conversation[group.len()..].starts_with('u'), "{line}");
        if cells[col("turn")] == "0" {
            assert_eq!(cells[col("context_tokens")], "40", "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_commands_reject_malformed_input_with_the_same_words() {
    let dir = tempdir("workload", "bad");
    let bad_trace = dir.join("bad.jsonl");
    std::fs::write(
        &bad_trace,
        "{\"timestamp\":0,\"input_tokens\":5,\"output_tokens\":2}\n{\"timestamp\":1,\"input_tokens\":\"x\"}\n",
    )
    .unwrap();
    let sets: Vec<(Vec<String>, &str)> = vec![
        (vec!["--arrivals".into(), "poisson:8/s,9/s*10s".into()], "only the last stage"),
        (vec!["--arrivals".into(), "gamma:8/s".into()], "cv="),
        (vec!["--workload".into(), "shared-prefix:groups=0".into()], "groups= must be at least 1"),
        (vec!["--arrivals".into(), format!("trace:{}", bad_trace.display())], "bad.jsonl:2:"),
        (
            vec![
                "--arrivals".into(),
                format!("trace:{}", fixture("trace.jsonl")),
                "--workload".into(),
                "coding-swarm".into(),
            ],
            "drop --workload",
        ),
    ];
    for (set, says) in sets {
        // Port 9 on loopback: nothing listens, but parsing comes first.
        let mut c = bin();
        c.args(["--quiet", "run", "--url", "http://127.0.0.1:9/v1", "--model", "m"]).args(&set);
        let run = output(c).await;
        let mut c = bin();
        c.args(["sim", "replay"]).args(&set);
        let replay = output(c).await;
        for o in [&run, &replay] {
            assert_eq!(o.status.code(), Some(2), "{set:?}: {}", text(o));
            assert!(text(o).contains(says), "{set:?}: {}", text(o));
        }
    }
}

#[test]
fn replay_prints_per_stage_figures_and_json() {
    let args = [
        "sim",
        "replay",
        "--gpu",
        "h100-sxm",
        "--model",
        "llama-3.1-8b",
        "--quant",
        "fp8",
        "--workload",
        "shared-prefix:groups=4,users=8,system=1000,question=50,output=20",
        "--arrivals",
        "poisson:4/s*30s,12/s*30s",
        "--seed",
        "5",
    ];
    let o = bin().args(args).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    for want in ["poisson:4/s", "poisson:12/s", "overall", "TTFT mean", "prefix hit %", "KV mean %"] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let o = bin().args(args).arg("--json").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let stages = v["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    let n: Vec<u64> = stages.iter().map(|s| s["requests"].as_u64().unwrap()).collect();
    assert!(
        (n[0] as f64 - 120.0).abs() < 4.0 * 120f64.sqrt() && (n[1] as f64 - 360.0).abs() < 4.0 * 360f64.sqrt(),
        "{n:?}"
    );
    assert_eq!(v["overall"]["requests"].as_u64().unwrap(), n[0] + n[1]);
    for key in ["ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"] {
        for p in ["mean", "p50", "p90", "p99"] {
            assert!(v["overall"][key][p].as_f64().is_some(), "{key}.{p}");
        }
    }
    assert!(v["overall"]["prefix_hit_rate"].as_f64().unwrap() > 0.5);
    // Deterministic under --seed.
    let again = bin().args(args).arg("--json").output().unwrap();
    assert_eq!(o.stdout, again.stdout);
}

/// `sim validate` says on standard error how many multi-turn rows it
/// replayed with each turn sent alone (as inference-perf sent them), a row
/// that says `multi_turn_history` `carried` not among them, and how many
/// rows name vLLM without the version that sets its scheduler.
#[test]
fn validate_notes_the_assumptions_it_replays_rows_under() {
    let dir = tempdir("workload", "turns-alone");
    let row = |id: &str, gpu: &str, history: &str| {
        format!(
            "{id},{gpu},1,llama-3.1-8b,fp8,vllm,,,,,,\"shared-prefix:groups=2,users=2,system=200,question=50,output=20,multi-turn\",constant:2/s*10s,30,8,200,own,{history}"
        )
    };
    let csv = dir.join("runs.csv");
    let header = "id,gpu,gpu_count,model,quant,engine,max_num_batched_tokens,max_num_seqs,gpu_memory_utilization,cpu_offload,prefix_caching,workload,arrivals,measured_ttft_mean_ms,measured_tpot_mean_ms,measured_e2e_mean_ms,source,multi_turn_history";
    let unstated = "H100 (variant not stated)";
    let rows = [row("a", unstated, ""), row("b", unstated, "none"), row("c", "h100-sxm", "carried")];
    std::fs::write(&csv, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let o = bin().args(["sim", "validate"]).arg(&csv).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("note: 2 of 3 rows are multi-turn shared-prefix runs, replayed with each turn sent alone"),
        "{err}"
    );
    // They name vLLM without its version, and are told which scheduler
    // they got.
    assert!(err.contains("note: 3 of 3 rows name vLLM without its version"), "{err}");
    // Two name an H100 without its variant, and are told which one they got.
    assert!(
        err.contains("note: 2 of 3 rows: GPU 'H100 (variant not stated)': the variant is not stated; assumed the most common, NVIDIA H100 SXM 80GB"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("3 of 3 rows covered"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
