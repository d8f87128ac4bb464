//! The conversation in each API's own shape: the tools offered, the
//! assistant's turn with its tool calls, and the tool results fed back
//! (OpenAI `role: tool` messages with `tool_call_id`; Anthropic `tool_result`
//! blocks in one user message).

use fleetbench_core::{ApiKind, ToolCall};
use serde_json::{json, Map, Value};

use crate::investigate::ToolSpec;

/// The specs as an OpenAI tools array (the client converts it for Anthropic).
pub fn tools_array(specs: &[ToolSpec]) -> Value {
    specs
        .iter()
        .map(|s| {
            json!({
                "type": "function",
                "function": {"name": s.name, "description": s.description, "parameters": s.parameters},
            })
        })
        .collect()
}

/// The opening messages: the system prompt and the briefing.
pub fn opening(system: &str, briefing: &str) -> Vec<Value> {
    vec![json!({"role": "system", "content": system}), json!({"role": "user", "content": briefing})]
}

/// The assistant's turn as the API wants it back in the history. `calls`
/// carry the arguments to show: the model's own when they parsed, `{}` when
/// they did not (servers that apply chat templates refuse a history with
/// arguments that are not JSON; the tool result says what was wrong).
pub fn assistant(api: ApiKind, text: &str, calls: &[(&ToolCall, Map<String, Value>)]) -> Value {
    // Neither API takes an assistant turn with nothing in it.
    let text = if text.is_empty() && calls.is_empty() { "(no answer)" } else { text };
    match api {
        ApiKind::Anthropic => {
            let mut blocks = Vec::new();
            if !text.is_empty() {
                blocks.push(json!({"type": "text", "text": text}));
            }
            for (c, args) in calls {
                blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": args}));
            }
            json!({"role": "assistant", "content": blocks})
        }
        _ => {
            let mut m =
                json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
            if !calls.is_empty() {
                m["tool_calls"] = calls
                    .iter()
                    .map(|(c, args)| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": Value::Object(args.clone()).to_string()},
                        })
                    })
                    .collect();
            }
            m
        }
    }
}

/// One tool's result, answering the call `id`.
pub struct ToolResult {
    pub id: String,
    pub text: String,
    pub is_error: bool,
}

/// The messages that feed the results of one turn's calls back.
pub fn results(api: ApiKind, results: Vec<ToolResult>) -> Vec<Value> {
    match api {
        ApiKind::Anthropic => {
            let blocks: Vec<Value> = results
                .into_iter()
                .map(|r| json!({"type": "tool_result", "tool_use_id": r.id, "content": r.text, "is_error": r.is_error}))
                .collect();
            vec![json!({"role": "user", "content": blocks})]
        }
        _ => results.into_iter().map(|r| json!({"role": "tool", "tool_call_id": r.id, "content": r.text})).collect(),
    }
}

/// A plain user message (the reminder to call a tool).
pub fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}
