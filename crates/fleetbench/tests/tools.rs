//! `fleetbench run --tools FILE` against a scripted server that reasons for
//! a known number of tokens and then makes a known tool call.

mod common;

use common::{output, quiet_bin, tempdir, text};

use std::time::Duration;

use fleetbench_testkit::{self as testkit, Script, ScriptedCall};
use serde_json::Value;

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "topology", "description": "What is where.",
  "parameters": {"type": "object", "properties": {"entity": {"type": "string"}}, "required": ["entity"]}}}]"#;

async fn run(args: &str, api: &str, tag: &str) -> (Value, String) {
    // Reasoning leaves at 30, 35, 40 ms; the tool call from 45 ms on.
    let script = Script {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(5),
        tokens: 6,
        reasoning: 3,
        tool_call: Some(ScriptedCall { name: "topology".into(), arguments: args.into() }),
        ..Default::default()
    };
    let s = testkit::start(script).await;
    let dir = tempdir("tools", tag);
    std::fs::write(dir.join("tools.json"), TOOLS).unwrap();
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args(["run", "--url", &s.base_url(), "--model", "m", "--api", api]);
    c.args(["--concurrency", "2", "--requests", "6", "--tools"]).arg(dir.join("tools.json"));
    c.arg("--json-out").arg(dir.join("run.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let body: Value = serde_json::from_slice(&s.counters.last_body.lock().unwrap()).unwrap();
    let name = if api == "anthropic" { &body["tools"][0]["name"] } else { &body["tools"][0]["function"]["name"] };
    assert_eq!(name, "topology", "{body}");
    let doc = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (doc, text(&o))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_tool_call_timing_and_valid_arguments() {
    for api in ["chat", "anthropic"] {
        let (doc, out) = run(r#"{"entity": "node-07"}"#, api, api).await;
        assert_eq!(doc["tool_call_responses"], 6, "{api}");
        assert_eq!(doc["tool_args_json_pct"], 100.0, "{api}");
        assert_eq!(doc["total_reasoning_tokens"], 18, "{api}");
        let (ttft, tool) = (doc["median_ttft_ms"].as_f64().unwrap(), doc["median_tool_ttft_ms"].as_f64().unwrap());
        assert!(ttft >= 30.0 && tool >= 45.0 && tool > ttft, "{api}: ttft {ttft}, tool {tool}");
        // No answer text at all: no time to the first answer token.
        assert!(doc.get("median_answer_ttft_ms").is_none(), "{api}");
        assert!(out.contains("first tool-call token (ms)"), "{out}");
        assert!(out.contains("6 of 6 completed responses called tools; arguments parse as JSON in 100.0 %"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_that_are_not_json_are_counted() {
    let (doc, out) = run(r#"{"entity": node-07"#, "chat", "broken").await;
    assert_eq!(doc["tool_call_responses"], 6);
    assert_eq!(doc["tool_args_json_pct"], 0.0);
    assert!(out.contains("arguments parse as JSON in 0.0 %"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_tools_file_is_a_clear_error() {
    let dir = tempdir("tools", "bad");
    std::fs::write(dir.join("tools.json"), r#"{"name": "x"}"#).unwrap();
    let mut c = quiet_bin();
    c.arg("--db").arg(dir.join("r.db")).args(["run", "--url", "http://127.0.0.1:9/v1", "--model", "m", "--tools"]);
    c.arg(dir.join("tools.json"));
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not an array"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
