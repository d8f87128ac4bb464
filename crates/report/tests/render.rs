//! Output contracts: JSON keys, CSV columns and the Markdown table are
//! pinned so that scripts depending on them cannot drift silently.

use fleetbench_core::{RequestRecord, RunMeta, RunMetrics, RunStatus, Slo, TokenSource};
use fleetbench_report::{csv_out::COLUMNS, markdown_summary, run_json, terminal_summary, write_requests_csv};
use fleetbench_testkit::RecordBuilder;

fn records() -> Vec<RequestRecord> {
    (0..20)
        .map(|i| {
            let t = i as f64 * 0.5;
            RecordBuilder::ok(i)
                .agent((i % 2) as u32)
                .sent_at(t)
                .first_byte(t + 0.05)
                .first_token(t + 0.1)
                .last_token(t + 0.1 + 0.02 * 9.0)
                .end(t + 0.29)
                .itl(vec![0.02; 9])
                .tokens(10)
                .input_tokens(50)
                .token_source(TokenSource::Server)
                .finish("length")
                .build()
        })
        .collect()
}

fn meta() -> RunMeta {
    RunMeta {
        id: 7,
        tool_version: "0.1.0".into(),
        command_line: "fleetbench run --url http://127.0.0.1:8000/v1 --model m".into(),
        host: "host".into(),
        backend_url: "http://127.0.0.1:8000/v1".into(),
        model: "m|<b>".into(),
        api: "chat".into(),
        workload: "synthetic:in=50,out=10".into(),
        schedule: "closed loop, concurrency 2".into(),
        started_at: "2026-11-25T10:00:00Z".into(),
        ended_at: Some("2026-11-25T10:00:10Z".into()),
        status: RunStatus::Completed,
        config: serde_json::json!({"max_concurrency": 2}),
        pid: None,
        group: None,
    }
}

#[test]
fn json_has_the_vllm_keys_and_metadata() {
    let m = RunMetrics::compute(&records(), &Slo::default(), Some(2));
    let v = run_json(&meta(), &m);
    for key in [
        "date",
        "backend",
        "model_id",
        "num_prompts",
        "completed",
        "failed",
        "total_input_tokens",
        "total_output_tokens",
        "duration",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "std_ttft_ms",
        "p99_ttft_ms",
        "mean_tpot_ms",
        "p90_tpot_ms",
        "mean_itl_ms",
        "p95_itl_ms",
        "mean_e2el_ms",
        "p99_e2el_ms",
        "max_concurrent_requests",
        "ttfts",
        "itls",
        "latencies",
        "input_lens",
        "output_lens",
        "errors",
        "ci95",
        "max_concurrency",
        "command",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["completed"], 20);
    assert_eq!(v["max_concurrency"], 2);
    assert!((v["mean_ttft_ms"].as_f64().unwrap() - 100.0).abs() < 1e-6);
    assert_eq!(v["ttfts"].as_array().unwrap().len(), 20);
}

#[test]
fn csv_has_one_row_per_request_with_pinned_columns() {
    let mut out = Vec::new();
    write_requests_csv(&mut out, &records()).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first.len(), COLUMNS.len());
    let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
    assert_eq!(first[col("ttft_ms")], "100.000");
    assert_eq!(first[col("tpot_ms")], "20.000");
    assert_eq!(first[col("token_source")], "server");
    assert_eq!(first[col("prefix_group")], "");
    assert_eq!(text.lines().count(), 21);
    // A request of a shared-prefix conversation says where it sat.
    let mut r = records().remove(0);
    r.context.prefix_group = Some("g3".into());
    r.context.conversation = Some("g3u1".into());
    r.context.turn = Some(2);
    r.context.context_tokens = Some(900);
    let mut out = Vec::new();
    write_requests_csv(&mut out, &[r]).unwrap();
    let text = String::from_utf8(out).unwrap();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    let got: Vec<&str> =
        ["prefix_group", "conversation", "turn", "context_tokens"].iter().map(|c| row[col(c)]).collect();
    assert_eq!(got, ["g3", "g3u1", "2", "900"]);
}

#[test]
fn summaries_show_intervals_and_escape_names() {
    let m = RunMetrics::compute(&records(), &Slo::default(), Some(2));
    let md = markdown_summary(&meta(), &m);
    assert!(md.contains("| TTFT (ms) | 100.00 [100.00, 100.00] |"), "{md}");
    assert!(md.contains("m\\|&lt;b&gt;"), "model name must be escaped: {md}");
    assert!(md.contains("| output tok/s |"));
    let t = terminal_summary(&meta(), &m);
    assert!(t.contains("20 sent, 20 completed, 0 failed"));
    assert!(t.contains("TTFT (ms)"));
    assert!(t.contains("max concurrency 1"), "{t}");
}
