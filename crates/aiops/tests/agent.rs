//! The investigation loop against a scripted agent over HTTP: known tool
//! calls in a known order reach a known submission; budgets cut it off;
//! malformed calls are answered and counted; OpenAI and Anthropic shapes.

mod common;

use std::time::Duration;

use common::{diagnosis, FixedToolset, KERNEL_LINE, XID_SERIES};
use fleetbench_aiops::agent::{investigate, AgentConfig, AgentError, REMINDER};
use fleetbench_aiops::investigate::{Budget, Ended};
use fleetbench_client::ClientConfig;
use fleetbench_core::ApiKind;
use fleetbench_testkit::{start_agent, AgentServer, Turn, COMPLETION_TOKENS, PROMPT_TOKENS};
use serde_json::Value;

const BUDGET: Budget = Budget { tool_calls: 10, tokens: 10_000, deadline: Duration::from_secs(60) };

/// The known investigation: a query, then the kernel log and the topology
/// at once, then the submission.
fn known() -> Vec<Turn> {
    vec![
        Turn::call("promql_query", r#"{"query": "DCGM_FI_DEV_XID_ERRORS > 0"}"#),
        Turn::Calls(vec![
            ("kernel_log".into(), r#"{"node": "node-03"}"#.into()),
            ("topology".into(), r#"{"entity": "node-03"}"#.into()),
        ]),
        Turn::call("submit_diagnosis", &diagnosis().to_string()),
    ]
}

fn config(server: &AgentServer, api: ApiKind) -> AgentConfig {
    AgentConfig::new(ClientConfig::new(server.base_url(), api, "scripted"))
}

fn bodies(server: &AgentServer) -> Vec<Value> {
    server.bodies.lock().unwrap().iter().map(|b| serde_json::from_slice(b).unwrap()).collect()
}

#[tokio::test]
async fn openai_agent_reaches_the_known_submission() {
    let server = start_agent(known()).await;
    let inv = investigate(&config(&server, ApiKind::Chat), &FixedToolset, BUDGET).await.unwrap();
    assert_eq!(inv.ended, Ended::Submitted);
    assert_eq!(inv.submitted, Some(diagnosis()));
    assert_eq!((inv.tool_calls, inv.tool_errors), (4, 0));
    assert_eq!((inv.input_tokens, inv.output_tokens), (3 * PROMPT_TOKENS, 3 * COMPLETION_TOKENS));
    assert!(inv.wall_s > 0.0);

    let sent = bodies(&server);
    assert_eq!(sent.len(), 3);
    // Every request offers the six tools and opens with the system prompt and the briefing.
    for b in &sent {
        assert_eq!(b["tools"].as_array().unwrap().len(), 6);
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["messages"][1]["content"], common::BRIEFING);
    }
    // The second request carries the first call and its result.
    let m = sent[1]["messages"].as_array().unwrap();
    assert_eq!(m[2]["tool_calls"][0]["id"], "call_0_0");
    assert_eq!(m[2]["tool_calls"][0]["function"]["name"], "promql_query");
    assert_eq!(m[3]["role"], "tool");
    assert_eq!(m[3]["tool_call_id"], "call_0_0");
    assert_eq!(m[3]["content"], XID_SERIES);
    // The third: both calls of turn two, answered in order.
    let m = sent[2]["messages"].as_array().unwrap();
    assert_eq!(m[4]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!((m[5]["tool_call_id"].as_str(), m[5]["content"].as_str()), (Some("call_1_0"), Some(KERNEL_LINE)));
    assert_eq!(m[6]["tool_call_id"], "call_1_1");

    // The transcript: system, briefing, then each turn and each result.
    let roles: Vec<&str> = inv.transcript.iter().map(|e| e["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "assistant", "tool", "tool", "assistant", "tool"]);
    assert_eq!(inv.transcript[5]["content"], KERNEL_LINE);
}

#[tokio::test]
async fn anthropic_agent_reaches_the_known_submission() {
    let server = start_agent(known()).await;
    let inv = investigate(&config(&server, ApiKind::Anthropic), &FixedToolset, BUDGET).await.unwrap();
    assert_eq!(inv.ended, Ended::Submitted);
    assert_eq!(inv.submitted, Some(diagnosis()));
    assert_eq!(inv.tool_calls, 4);
    let sent = bodies(&server);
    assert_eq!(sent[0]["system"], fleetbench_aiops::agent::SYSTEM_PROMPT);
    assert_eq!(sent[0]["tools"][0]["name"], "promql_query");
    assert!(sent[0]["tools"][0]["input_schema"].is_object());
    let m = sent[2]["messages"].as_array().unwrap();
    // user briefing, assistant tool_use, user tool_result, assistant 2 × tool_use, user 2 × tool_result
    assert_eq!(m[1]["content"][0]["type"], "tool_use");
    assert_eq!(m[1]["content"][0]["input"]["query"], "DCGM_FI_DEV_XID_ERRORS > 0");
    assert_eq!(m[2]["content"][0]["tool_use_id"], "toolu_0_0");
    assert_eq!(m[2]["content"][0]["content"], XID_SERIES);
    let results = m[4]["content"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["tool_use_id"], "toolu_1_1");
}

#[tokio::test]
async fn budgets_cut_the_investigation_off_unanswered() {
    // Three calls allowed: the submission would be the fourth.
    let server = start_agent(known()).await;
    let budget = Budget { tool_calls: 3, ..BUDGET };
    let inv = investigate(&config(&server, ApiKind::Chat), &FixedToolset, budget).await.unwrap();
    assert_eq!((inv.ended, inv.submitted, inv.tool_calls), (Ended::OverToolCalls, None, 3));

    // 110 tokens a turn: the third turn passes 250 even though it submits.
    let server = start_agent(known()).await;
    let budget = Budget { tokens: 250, ..BUDGET };
    let inv = investigate(&config(&server, ApiKind::Anthropic), &FixedToolset, budget).await.unwrap();
    assert_eq!((inv.ended, inv.submitted.is_none()), (Ended::OverTokens, true));
    assert_eq!(inv.input_tokens + inv.output_tokens, 330);
    assert_eq!(inv.tool_calls, 3);

    // No time at all.
    let server = start_agent(known()).await;
    let budget = Budget { deadline: Duration::ZERO, ..BUDGET };
    let inv = investigate(&config(&server, ApiKind::Chat), &FixedToolset, budget).await.unwrap();
    assert_eq!((inv.ended, inv.submitted, inv.tool_calls), (Ended::OverDeadline, None, 0));
}

#[tokio::test]
async fn malformed_calls_are_answered_and_counted() {
    for api in [ApiKind::Chat, ApiKind::Anthropic] {
        let server = start_agent(vec![
            Turn::Calls(vec![
                ("rm -rf /".into(), "{}".into()),
                ("promql_query".into(), r#"{"query": "up"#.into()),
                ("kernel_log".into(), "{}".into()),
            ]),
            Turn::call("submit_diagnosis", &diagnosis().to_string()),
        ])
        .await;
        let inv = investigate(&config(&server, api), &FixedToolset, BUDGET).await.unwrap();
        assert_eq!(inv.ended, Ended::Submitted, "{api}");
        assert_eq!((inv.tool_calls, inv.tool_errors), (4, 3), "{api}");
        let errors: Vec<&str> =
            inv.transcript.iter().filter(|e| e["error"] == true).map(|e| e["content"].as_str().unwrap()).collect();
        assert!(errors[0].starts_with("error: unknown tool 'rm -rf /'; the tools are: promql_query"), "{errors:?}");
        assert!(errors[1].contains("not a JSON object"), "{errors:?}");
        assert_eq!(errors[2], "error: node is required");
        // The history sent back holds `{}` for the broken arguments, never the broken text.
        let second = &bodies(&server)[1];
        let shown = match api {
            ApiKind::Anthropic => second["messages"][1]["content"][1]["input"].clone(),
            _ => second["messages"][2]["tool_calls"][1]["function"]["arguments"].clone(),
        };
        assert!(shown == serde_json::json!({}) || shown == "{}", "{api}: {shown}");
    }
}

#[tokio::test]
async fn an_agent_that_only_talks_is_reminded_once_then_ends_unanswered() {
    for (api, first) in [(ApiKind::Chat, "Probably a thermal issue."), (ApiKind::Anthropic, "")] {
        let server = start_agent(vec![Turn::Text(first.into()), Turn::Text("Yes, thermal.".into())]).await;
        let inv = investigate(&config(&server, api), &FixedToolset, BUDGET).await.unwrap();
        assert_eq!((inv.ended, inv.submitted, inv.tool_calls), (Ended::NoSubmission, None, 0));
        let sent = bodies(&server);
        assert_eq!(sent.len(), 2);
        // The answer goes back as it was; an empty one as a placeholder neither API refuses.
        let back = &sent[1]["messages"].as_array().unwrap()[sent[1]["messages"].as_array().unwrap().len() - 2];
        let text =
            back["content"].as_str().map(str::to_string).unwrap_or_else(|| back["content"][0]["text"].to_string());
        assert!(text.contains(if first.is_empty() { "(no answer)" } else { first }), "{api}: {back}");
        assert!(inv.transcript.iter().any(|e| e["content"] == REMINDER));
    }
}

#[tokio::test]
async fn a_failing_backend_ends_the_investigation_as_failed() {
    let server = fleetbench_testkit::start(fleetbench_testkit::Script {
        fault: fleetbench_testkit::Fault::Http(503),
        ..Default::default()
    })
    .await;
    let cfg = AgentConfig::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m"));
    let inv = investigate(&cfg, &FixedToolset, BUDGET).await.unwrap();
    assert!(matches!(&inv.ended, Ended::Failed(why) if why.contains("http_503")), "{:?}", inv.ended);
    let cfg = AgentConfig::new(ClientConfig::new(server.base_url(), ApiKind::Completions, "m"));
    assert!(matches!(investigate(&cfg, &FixedToolset, BUDGET).await, Err(AgentError::Api)));
}

#[tokio::test]
async fn every_turn_is_counted_in_the_live_figures() {
    let server = start_agent(known()).await;
    let metrics = fleetbench_load::exposition::LiveMetrics::new();
    metrics.start_run("7", "0/1");
    let mut cfg = config(&server, ApiKind::Chat);
    cfg.metrics = Some(metrics.clone());
    let inv = investigate(&cfg, &FixedToolset, BUDGET).await.unwrap();
    assert_eq!(inv.ended, Ended::Submitted);
    let text = metrics.render();
    let labels = r#"{run="7",shard="0/1"}"#;
    assert!(text.contains(&format!("fleetbench_requests_completed_total{labels} 3")), "{text}");
    assert!(text.contains(&format!("fleetbench_requests_in_flight{labels} 0")), "{text}");
    assert!(text.contains(&format!("fleetbench_output_tokens_total{labels} {}", 3 * COMPLETION_TOKENS)), "{text}");

    // A request cut off by the deadline (a server whose first token takes 5 s) is no longer in flight.
    let slow =
        fleetbench_testkit::start(fleetbench_testkit::Script { ttft: Duration::from_secs(5), ..Default::default() })
            .await;
    let metrics = fleetbench_load::exposition::LiveMetrics::new();
    let mut cfg = AgentConfig::new(ClientConfig::new(slow.base_url(), ApiKind::Chat, "m"));
    cfg.metrics = Some(metrics.clone());
    let budget = Budget { deadline: Duration::from_millis(200), ..BUDGET };
    let inv = investigate(&cfg, &FixedToolset, budget).await.unwrap();
    assert_eq!(inv.ended, Ended::OverDeadline);
    let text = metrics.render();
    assert!(text.contains(r#"fleetbench_requests_in_flight{run="",shard=""} 0"#), "{text}");
    assert!(text.contains(r#"fleetbench_requests_completed_total{run="",shard=""} 1"#), "{text}");
}
