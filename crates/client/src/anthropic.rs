//! The Anthropic Messages wire format: request body and stream events
//! reduced to the same [`Chunk`] the OpenAI path produces.

use fleetbench_core::RequestSpec;
use serde_json::{json, Value};

use crate::openai::{error_text, Chunk, Usage};

/// `anthropic-version` header value sent with every request.
pub const API_VERSION: &str = "2023-06-01";

/// Default `max_tokens` (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// The JSON body of a Messages request; system messages move to `system`.
pub fn request_body(model: &str, spec: &RequestSpec, stream: bool) -> Value {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in spec.prompt.as_messages() {
        if m.role == "system" {
            system.push(m.content);
        } else {
            messages.push(json!({ "role": m.role, "content": m.content }));
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
pub fn parse_event(event: Option<&str>, data: &str) -> Result<Option<Chunk>, serde_json::Error> {
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
        "content_block_delta" => {
            let d = &v["delta"];
            let piece = ["text", "thinking", "partial_json"]
                .iter()
                .find_map(|k| d.get(*k).and_then(Value::as_str))
                .unwrap_or("");
            if !piece.is_empty() {
                c.has_token = true;
                if d.get("text").is_some() {
                    c.text.push_str(piece);
                }
            }
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
        _ => return Ok(None), // ping, content_block_start/stop
    }
    Ok(Some(c))
}

/// Parses a whole non-streamed Messages response.
pub fn parse_body(body: &str) -> Result<Chunk, serde_json::Error> {
    let v: Value = serde_json::from_str(body)?;
    let mut c = Chunk::default();
    if v.get("type").and_then(Value::as_str) == Some("error") {
        c.error = Some(error_text(v.get("error").unwrap_or(&v)));
        return Ok(c);
    }
    if let Some(blocks) = v.get("content").and_then(Value::as_array) {
        for b in blocks {
            if let Some(t) = b.get("text").and_then(Value::as_str) {
                c.text.push_str(t);
            }
        }
    }
    c.has_token = !c.text.is_empty();
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
