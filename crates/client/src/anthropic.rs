//! The Anthropic Messages wire format: request body and stream events
//! reduced to the same [`Chunk`] the OpenAI path produces.

use fleetbench_core::RequestSpec;
use serde_json::{json, Value};

use crate::openai::{error_text, Chunk, Usage};
use crate::tools::ToolDelta;

/// `anthropic-version` header value sent with every request.
pub const API_VERSION: &str = "2023-06-01";

/// Default `max_tokens` (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// The JSON body of a Messages request; system messages move to `system`.
pub fn request_body(model: &str, spec: &RequestSpec, stream: bool) -> Value {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    if let fleetbench_core::Prompt::Native(ms) = &spec.prompt {
        let mut rest = ms.as_slice();
        if let Some((first, tail)) = rest.split_first() {
            if let (Some("system"), Some(text)) =
                (first.get("role").and_then(Value::as_str), first.get("content").and_then(Value::as_str))
            {
                system.push(text.to_string());
                rest = tail;
            }
        }
        messages.extend(rest.iter().cloned());
    } else {
        for m in spec.prompt.as_messages() {
            if m.role == "system" {
                system.push(m.content);
            } else {
                messages.push(json!({ "role": m.role, "content": m.content }));
            }
        }
    }
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": spec.sampling.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "stream": stream,
    });
    let o = body.as_object_mut().expect("body is an object");
    if !system.is_empty() {
        o.insert("system".into(), json!(system.join("\n\n")));
    }
    if let Some(t) = spec.sampling.temperature {
        o.insert("temperature".into(), json!(t));
    }
    body
}

/// Parses one stream event (`event:` name and `data:` payload).
pub fn parse_event(event: Option<&str>, data: &str) -> Result<Option<Chunk<'static>>, serde_json::Error> {
    let v: Value = serde_json::from_str(data)?;
    let kind = event
        .map(str::to_string)
        .or_else(|| v.get("type").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let mut c = Chunk::default();
    match kind.as_str() {
        "message_start" => {
            let u = &v["message"]["usage"];
            c.usage = Some(Usage {
                prompt_tokens: u.get("input_tokens").and_then(Value::as_u64),
                completion_tokens: None,
                reasoning_tokens: None,
            });
        }
        "content_block_start" => {
            let b = &v["content_block"];
            if b.get("type").and_then(Value::as_str) != Some("tool_use") {
                return Ok(None);
            }
            c.has_token = true;
            c.tool_deltas.push(ToolDelta {
                index: block_index(&v),
                id: b.get("id").and_then(Value::as_str).map(str::to_string),
                name: b.get("name").and_then(Value::as_str).map(str::to_string),
                arguments: String::new(),
            });
        }
        "content_block_delta" => {
            let d = &v["delta"];
            let str_of = |k: &str| d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            if let Some(t) = str_of("text") {
                c.answer = true;
                c.text.to_mut().push_str(t);
            } else if str_of("thinking").is_some() {
                c.reasoning = true;
            } else if let Some(j) = str_of("partial_json") {
                c.tool_deltas.push(ToolDelta {
                    index: block_index(&v),
                    arguments: j.to_string(),
                    ..Default::default()
                });
            }
            c.has_token = c.answer || c.reasoning || !c.tool_deltas.is_empty();
        }
        "message_delta" => {
            c.finish_reason = v["delta"].get("stop_reason").and_then(Value::as_str).map(str::to_string);
            c.usage = Some(Usage {
                prompt_tokens: v["usage"].get("input_tokens").and_then(Value::as_u64),
                completion_tokens: v["usage"].get("output_tokens").and_then(Value::as_u64),
                reasoning_tokens: None,
            });
        }
        "message_stop" => c.done = true,
        "error" => c.error = Some(error_text(v.get("error").unwrap_or(&v))),
        _ => return Ok(None), // ping, content_block_stop
    }
    Ok(Some(c))
}

fn block_index(v: &Value) -> usize {
    v.get("index").and_then(Value::as_u64).map_or(0, |i| i as usize)
}

/// Parses a whole non-streamed Messages response.
pub fn parse_body(body: &str) -> Result<Chunk<'static>, serde_json::Error> {
    let v: Value = serde_json::from_str(body)?;
    let mut c = Chunk::default();
    if v.get("type").and_then(Value::as_str) == Some("error") {
        c.error = Some(error_text(v.get("error").unwrap_or(&v)));
        return Ok(c);
    }
    if let Some(blocks) = v.get("content").and_then(Value::as_array) {
        for (index, b) in blocks.iter().enumerate() {
            match b.get("type").and_then(Value::as_str) {
                Some("thinking") => c.reasoning = true,
                Some("tool_use") => c.tool_deltas.push(ToolDelta {
                    index,
                    id: b.get("id").and_then(Value::as_str).map(str::to_string),
                    name: b.get("name").and_then(Value::as_str).map(str::to_string),
                    arguments: b.get("input").map(Value::to_string).unwrap_or_default(),
                }),
                _ => {
                    if let Some(t) = b.get("text").and_then(Value::as_str) {
                        c.text.to_mut().push_str(t);
                    }
                }
            }
        }
    }
    c.answer = !c.text.is_empty();
    c.has_token = c.answer || c.reasoning || !c.tool_deltas.is_empty();
    c.finish_reason = v.get("stop_reason").and_then(Value::as_str).map(str::to_string);
    c.usage = Some(Usage {
        prompt_tokens: v["usage"].get("input_tokens").and_then(Value::as_u64),
        completion_tokens: v["usage"].get("output_tokens").and_then(Value::as_u64),
        reasoning_tokens: None,
    });
    c.done = true;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_events_reduce_to_chunks() {
        let start = parse_event(
            Some("message_start"),
            r#"{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(start.usage.unwrap().prompt_tokens, Some(25));
        assert!(!start.has_token);
        let d =
            parse_event(None, r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#)
                .unwrap()
                .unwrap();
        assert!(d.has_token);
        assert_eq!(d.text, "Hi");
        let t =
            parse_event(None, r#"{"type":"content_block_delta","delta":{"type":"thinking_delta","thinking":"hmm"}}"#)
                .unwrap()
                .unwrap();
        assert!(t.has_token && t.text.is_empty());
        let md = parse_event(
            Some("message_delta"),
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(md.usage.unwrap().completion_tokens, Some(15));
        assert_eq!(md.finish_reason.as_deref(), Some("end_turn"));
        assert!(parse_event(Some("message_stop"), r#"{"type":"message_stop"}"#).unwrap().unwrap().done);
        assert!(parse_event(Some("ping"), r#"{"type":"ping"}"#).unwrap().is_none());
        let e = parse_event(
            Some("error"),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.error.as_deref(), Some("Overloaded"));
    }

    #[test]
    fn tool_use_blocks_and_thinking_are_told_apart() {
        let start = parse_event(
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"lookup","input":{}}}"#,
        )
        .unwrap()
        .unwrap();
        assert!(start.has_token && !start.answer);
        assert_eq!(start.tool_deltas[0].index, 1);
        assert_eq!(start.tool_deltas[0].name.as_deref(), Some("lookup"));
        let text_start =
            parse_event(None, r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#);
        assert!(text_start.unwrap().is_none());
        let piece = parse_event(
            None,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"q\": "}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(piece.tool_deltas[0].arguments, r#"{"q": "#);
        assert_eq!(piece.tool_deltas[0].index, 1);
        let think =
            parse_event(None, r#"{"type":"content_block_delta","delta":{"type":"thinking_delta","thinking":"hmm"}}"#)
                .unwrap()
                .unwrap();
        assert!(think.reasoning && !think.answer);
        let body = parse_body(
            r#"{"type":"message","content":[{"type":"thinking","thinking":"x","signature":"s"},{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_2","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":9}}"#,
        )
        .unwrap();
        assert!(body.reasoning && body.answer);
        assert_eq!(body.text, "Let me look.");
        assert_eq!(body.tool_deltas[0].arguments, r#"{"a":1}"#);
        assert_eq!(body.tool_deltas[0].id.as_deref(), Some("toolu_2"));
    }

    #[test]
    fn native_messages_keep_their_blocks_and_lose_a_leading_system() {
        let spec = RequestSpec {
            id: "x".into(),
            prompt: fleetbench_core::Prompt::Native(vec![
                json!({"role": "system", "content": "you are on call"}),
                json!({"role": "user", "content": "go"}),
                json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}),
                json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}),
            ]),
            sampling: Default::default(),
            expected_input_tokens: None,
            label: None,
            context: Default::default(),
        };
        let b = request_body("claude", &spec, true);
        assert_eq!(b["system"], json!("you are on call"));
        assert_eq!(b["messages"].as_array().unwrap().len(), 3);
        assert_eq!(b["messages"][2]["content"][0]["tool_use_id"], json!("t"));
    }

    #[test]
    fn system_messages_move_to_system() {
        let spec = RequestSpec {
            id: "x".into(),
            prompt: fleetbench_core::Prompt::Messages(vec![
                fleetbench_core::ChatMessage { role: "system".into(), content: "be brief".into() },
                fleetbench_core::ChatMessage { role: "user".into(), content: "hi".into() },
            ]),
            sampling: Default::default(),
            expected_input_tokens: None,
            label: None,
            context: Default::default(),
        };
        let b = request_body("claude", &spec, true);
        assert_eq!(b["system"], json!("be brief"));
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
        assert_eq!(b["max_tokens"], json!(DEFAULT_MAX_TOKENS));
    }
}
