//! The investigation loop against a real model: llama.cpp serving
//! SmolLM2-135M with a Jinja chat template that has tool calls (started by
//! `scripts/tiny-server.sh`, which `scripts/test.sh` runs and whose URL it
//! exports as FLEETBENCH_TINY_URL). The model's quality does not matter:
//! the tool calls must travel both ways and an outcome and a transcript
//! must come back. Ignored by a plain `cargo test`; `scripts/test.sh` runs
//! it with `--include-ignored`.

mod common;

use std::time::Duration;

use common::FixedToolset;
use fleetbench_aiops::agent::{investigate, AgentConfig};
use fleetbench_aiops::investigate::tools::ToolFuture;
use fleetbench_aiops::investigate::{Budget, Ended, ToolSpec, Toolset};
use fleetbench_client::ClientConfig;
use fleetbench_core::ApiKind;
use serde_json::Value;

/// The fixed investigation, with a briefing a 135M model can follow: it
/// spells out the first call in the template's own tool-call syntax.
struct Spelled;

impl Toolset for Spelled {
    fn specs(&self) -> Vec<ToolSpec> {
        FixedToolset.specs()
    }
    fn briefing(&self) -> String {
        "Repeat exactly: <tool_call>\n{\"name\": \"kernel_log\", \"arguments\": {\"node\": \"node-03\"}}\n</tool_call>"
            .into()
    }
    fn call<'a>(&'a self, name: &'a str, arguments: &'a Value) -> ToolFuture<'a> {
        FixedToolset.call(name, arguments)
    }
}

#[tokio::test]
#[ignore = "needs the tiny llama.cpp server (FLEETBENCH_TINY_URL): scripts/test.sh starts it"]
async fn a_real_model_investigates_through_tool_calls() {
    let url = match std::env::var("FLEETBENCH_TINY_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "FLEETBENCH_TINY_URL is unset: start the tiny server with \
             `scripts/tiny-server.sh --port 8080 --background` and export the URL it prints"
        ),
    };
    let mut cfg = AgentConfig::new(ClientConfig::new(url, ApiKind::Chat, "smollm2-135m"));
    cfg.max_tokens_per_turn = 96;
    let budget = Budget { tool_calls: 4, tokens: 6_000, deadline: Duration::from_secs(240) };
    let inv = investigate(&cfg, &Spelled, budget).await.expect("the investigation starts");
    assert!(!matches!(inv.ended, Ended::Failed(_)), "{:?}\n{:#?}", inv.ended, inv.transcript);
    // llama.cpp parsed the model's <tool_call> into a tool call, the loop ran
    // it and fed the result back.
    assert!(inv.tool_calls >= 1, "no tool call: {:#?}", inv.transcript);
    let first = inv.transcript.iter().find(|e| e["role"] == "tool").expect("a tool result");
    assert_eq!(first["name"], "kernel_log", "{first}");
    assert_eq!(first["content"], common::KERNEL_LINE);
    assert!(inv.input_tokens > 0 && inv.output_tokens > 0, "{inv:?}");
    assert!(inv.transcript.len() >= 4, "{:#?}", inv.transcript);
}
