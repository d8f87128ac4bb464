//! Tool calls and reasoning against a scripted server whose stream and
//! timing are known exactly: the server sends token `i` at `ttft + i × itl`.

use std::sync::Arc;
use std::time::Duration;

use fleetbench_client::tools::Tools;
use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RequestSpec, RunClock, ToolCall};
use fleetbench_testkit::{Script, ScriptedCall};
use serde_json::{json, Value};

const ARGS: &str = r#"{"query":"up{job=\"dcgm\"} == 0","time":"2026-01-01T00:00:00Z"}"#;

fn tools() -> Arc<Tools> {
    Arc::new(
        Tools::from_openai(json!([{
            "type": "function",
            "function": {
                "name": "promql_query",
                "description": "Run an instant PromQL query.",
                "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "time": {"type": "string"}}, "required": ["query"]}
            }
        }]))
        .unwrap(),
    )
}

fn spec() -> RequestSpec {
    fleetbench_testkit::text_request("r0", "Is the exporter up?")
}

fn script(reasoning: u32, call: bool) -> Script {
    Script {
        ttft: Duration::from_millis(40),
        itl: Duration::from_millis(10),
        tokens: 8,
        reasoning,
        tool_call: call.then(|| ScriptedCall { name: "promql_query".into(), arguments: ARGS.into() }),
        ..Default::default()
    }
}

async fn send(api: ApiKind, script: Script) -> (fleetbench_core::RequestRecord, Value) {
    let server = fleetbench_testkit::start(script).await;
    let mut cfg = ClientConfig::new(server.base_url(), api, "m");
    cfg.tools = Some(tools());
    cfg.keep_output_text = true;
    let rec = Client::new(cfg).unwrap().send(&spec(), &RunClock::start(), 0.0).await;
    let body = serde_json::from_slice(&server.counters.last_body.lock().unwrap()).unwrap();
    (rec, body)
}

#[tokio::test]
async fn openai_tool_call_deltas_become_one_call_after_the_reasoning() {
    let (rec, body) = send(ApiKind::Chat, script(3, true)).await;
    assert!(rec.ok(), "{:?}", rec.error);
    assert_eq!(body["tools"][0]["function"]["name"], "promql_query");
    assert_eq!(
        rec.tool_calls,
        vec![ToolCall { id: "call_0".into(), name: "promql_query".into(), arguments: ARGS.into() }]
    );
    assert_eq!(rec.finish_reason.as_deref(), Some("tool_calls"));
    // Three reasoning events, no reasoning count from the server.
    assert_eq!(rec.reasoning_tokens, Some(3));
    assert_eq!(rec.t_first_answer_token, None);
    // The first reasoning token leaves at 40 ms, the tool call at 70 ms.
    let (ttft, tool) = (rec.ttft().unwrap(), rec.tool_ttft().unwrap());
    assert!(ttft >= 0.040 && tool >= 0.070 && tool > ttft, "ttft {ttft}, tool {tool}");
    assert_eq!(rec.output_text.as_deref(), Some(""));
}

#[tokio::test]
async fn anthropic_tool_use_blocks_become_one_call_after_the_thinking() {
    let (rec, body) = send(ApiKind::Anthropic, script(2, true)).await;
    assert!(rec.ok(), "{:?}", rec.error);
    assert_eq!(body["tools"][0]["name"], "promql_query");
    assert_eq!(body["tools"][0]["input_schema"]["required"], json!(["query"]));
    assert_eq!(
        rec.tool_calls,
        vec![ToolCall { id: "toolu_0".into(), name: "promql_query".into(), arguments: ARGS.into() }]
    );
    assert_eq!(rec.finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(rec.reasoning_tokens, Some(2));
    let (ttft, tool) = (rec.ttft().unwrap(), rec.tool_ttft().unwrap());
    assert!(ttft >= 0.040 && tool >= 0.060 && tool > ttft, "ttft {ttft}, tool {tool}");
}

#[tokio::test]
async fn reasoning_is_counted_apart_from_the_answer() {
    for api in [ApiKind::Chat, ApiKind::Anthropic] {
        let (rec, _) = send(api, script(5, false)).await;
        assert!(rec.ok(), "{api}: {:?}", rec.error);
        assert_eq!(rec.reasoning_tokens, Some(5), "{api}");
        assert!(rec.tool_calls.is_empty() && rec.t_first_tool_token.is_none());
        // Reasoning from 40 ms, the answer from 40 + 5 × 10 ms.
        let (ttft, answer) = (rec.ttft().unwrap(), rec.answer_ttft().unwrap());
        assert!(ttft >= 0.040 && answer >= 0.090 && answer > ttft, "{api}: ttft {ttft}, answer {answer}");
        // The kept text is the answer alone.
        assert_eq!(rec.output_text.as_deref(), Some("t5 t6 t7 "), "{api}");
    }
}

#[tokio::test]
async fn a_plain_answer_has_its_answer_token_first() {
    let (rec, _) = send(ApiKind::Chat, script(0, false)).await;
    assert_eq!(rec.t_first_answer_token, rec.t_first_token);
    assert!(!rec.beyond_answer() && rec.reasoning_tokens.is_none());
}
