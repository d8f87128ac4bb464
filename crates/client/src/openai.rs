//! The OpenAI wire format (chat completions and completions): request
//! bodies, and stream chunks or whole responses reduced to what a request
//! record needs.

use fleetbench_core::{ApiKind, RequestSpec, ServerTimings};
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::tools::ToolDelta;

mod fast;

/// What one stream event (or a whole non-streamed body) says, independent
/// of the API that said it. Its text borrows from the event where it can,
/// so that a token's chunk allocates nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk<'a> {
    /// Carries a non-empty text, reasoning or tool-call delta.
    pub has_token: bool,
    /// The answer text it carries (content or completion text).
    pub text: Cow<'a, str>,
    /// Carries answer text (not only reasoning or a tool call).
    pub answer: bool,
    /// Carries reasoning (`reasoning_content`, `reasoning`, Anthropic thinking).
    pub reasoning: bool,
    /// Pieces of tool calls it carries.
    pub tool_deltas: Vec<ToolDelta>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub timings: Option<ServerTimings>,
    /// An error object sent inside the stream.
    pub error: Option<String>,
    /// End of stream marker (`[DONE]`, Anthropic `message_stop`).
    pub done: bool,
}

/// Token counts as the server reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

// Strings borrow from the event when they have no escapes: one token's
// chunk then allocates nothing but its `choices`.
#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<WireChoice<'a>>,
    usage: Option<WireUsage>,
    error: Option<Value>,
    #[serde(borrow)]
    object: Option<Cow<'a, str>>,
    message: Option<Value>,
    timings: Option<WireTimings>,
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    #[serde(borrow)]
    delta: Option<WireDelta<'a>>,
    #[serde(borrow)]
    message: Option<WireDelta<'a>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning: Option<Cow<'a, str>>,
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    index: Option<usize>,
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    name: Option<String>,
    /// A JSON text as the API defines it; a server that sends the object
    /// itself has it taken as its JSON text.
    #[serde(default, deserialize_with = "text_or_json")]
    arguments: Option<String>,
}

fn text_or_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    completion_tokens_details: Option<WireDetails>,
}

#[derive(Deserialize)]
struct WireDetails {
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireTimings {
    prompt_n: Option<u64>,
    cache_n: Option<u64>,
    prompt_ms: Option<f64>,
    predicted_ms: Option<f64>,
    predicted_per_token_ms: Option<f64>,
}

fn non_empty(s: &Option<Cow<'_, str>>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}

/// Parses one `data:` payload of an OpenAI stream (chat or completions).
pub fn parse_chunk(data: &str) -> Result<Option<Chunk<'_>>, serde_json::Error> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Some(Chunk { done: true, ..Default::default() }));
    }
    if data.is_empty() {
        return Ok(None);
    }
    let mut c = Chunk::default();
    if fast::parse(data, &mut c).is_some() {
        return Ok(Some(c));
    }
    let w: WireChunk = serde_json::from_str(data)?;
    Ok(Some(reduce(w)))
}

/// Parses a whole non-streamed response body.
pub fn parse_body(body: &str) -> Result<Chunk<'_>, serde_json::Error> {
    let w: WireChunk = serde_json::from_str(body)?;
    Ok(reduce(w))
}

fn reduce(w: WireChunk<'_>) -> Chunk<'_> {
    let mut c = Chunk::default();
    if let Some(e) = w.error {
        c.error = Some(error_text(&e));
        return c;
    }
    if w.object.as_deref() == Some("error") {
        c.error = Some(w.message.as_ref().map(error_text).unwrap_or_else(|| "error".into()));
        return c;
    }
    for mut ch in w.choices {
        absorb_choice(&mut c, &mut ch);
    }
    c.usage = w.usage.map(usage_of);
    c.timings = w.timings.map(timings_of);
    c
}

/// Adds one element of `choices` to `c` (the fast path does the same),
/// taking what it keeps.
fn absorb_choice<'a>(c: &mut Chunk<'a>, ch: &mut WireChoice<'a>) {
    if let Some(d) = ch.delta.as_mut().or(ch.message.as_mut()) {
        c.answer |= non_empty(&d.content);
        c.reasoning |= non_empty(&d.reasoning_content) || non_empty(&d.reasoning);
        if let Some(calls) = d.tool_calls.take() {
            for (i, t) in calls.into_iter().enumerate() {
                let (name, arguments) = t.function.map(|f| (f.name, f.arguments)).unwrap_or_default();
                let index = t.index.unwrap_or(i);
                c.tool_deltas.push(ToolDelta { index, id: t.id, name, arguments: arguments.unwrap_or_default() });
            }
        }
        if let Some(t) = d.content.take() {
            append(&mut c.text, t);
        }
    }
    if let Some(t) = ch.text.take() {
        if !t.is_empty() {
            c.answer = true;
            append(&mut c.text, t);
        }
    }
    c.has_token = c.answer || c.reasoning || !c.tool_deltas.is_empty();
    if ch.finish_reason.is_some() {
        c.finish_reason = ch.finish_reason.take();
    }
}

/// `text` followed by `more`, borrowed while only one piece is non-empty.
fn append<'a>(text: &mut Cow<'a, str>, more: Cow<'a, str>) {
    if text.is_empty() {
        *text = more;
    } else if !more.is_empty() {
        text.to_mut().push_str(&more);
    }
}

fn usage_of(u: WireUsage) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens),
    }
}

fn timings_of(t: WireTimings) -> ServerTimings {
    ServerTimings {
        prompt_ms: t.prompt_ms,
        predicted_ms: t.predicted_ms,
        predicted_per_token_ms: t.predicted_per_token_ms,
        prompt_n: t.prompt_n,
        cache_n: t.cache_n,
    }
}

/// A short human text for an error object (its `message` when it has one).
pub fn error_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            o.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| v.to_string())
        }
        _ => v.to_string(),
    }
}

/// The JSON body for an OpenAI request.
pub fn request_body(api: ApiKind, model: &str, spec: &RequestSpec, stream: bool) -> Value {
    let mut body = match (api, &spec.prompt) {
        (ApiKind::Completions, p) => json!({ "model": model, "prompt": p.as_text() }),
        (_, fleetbench_core::Prompt::Native(ms)) => json!({ "model": model, "messages": ms }),
        (_, p) => json!({ "model": model, "messages": p.as_messages() }),
    };
    let o = body.as_object_mut().expect("body is an object");
    o.insert("stream".into(), json!(stream));
    if stream {
        o.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    let s = &spec.sampling;
    if let Some(m) = s.max_tokens {
        o.insert("max_tokens".into(), json!(m));
    }
    if let Some(t) = s.temperature {
        o.insert("temperature".into(), json!(t));
    }
    if let Some(seed) = s.seed {
        o.insert("seed".into(), json!(seed));
    }
    if s.ignore_eos {
        o.insert("ignore_eos".into(), json!(true));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_chunk_is_not_a_token() {
        let c = parse_chunk(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#).unwrap().unwrap();
        assert!(!c.has_token);
        let c = parse_chunk(r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#).unwrap().unwrap();
        assert!(!c.has_token);
    }

    #[test]
    fn content_reasoning_and_tool_calls_are_tokens() {
        for data in [
            r#"{"choices":[{"delta":{"content":"hi"}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#,
            r#"{"choices":[{"delta":{"reasoning":"think"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}"#,
            r#"{"choices":[{"text":"abc","index":0}]}"#,
        ] {
            assert!(parse_chunk(data).unwrap().unwrap().has_token, "{data}");
        }
    }

    #[test]
    fn answer_reasoning_and_tool_pieces_are_told_apart() {
        let c = parse_chunk(r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#).unwrap().unwrap();
        assert!(c.reasoning && !c.answer && c.tool_deltas.is_empty() && c.text.is_empty());
        let c = parse_chunk(r#"{"choices":[{"delta":{"content":"hi"}}]}"#).unwrap().unwrap();
        assert!(c.answer && !c.reasoning);
        let c = parse_chunk(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_9","type":"function","function":{"name":"lookup","arguments":""}}]}}]}"#,
        )
        .unwrap()
        .unwrap();
        assert!(c.has_token && !c.answer);
        assert_eq!(
            c.tool_deltas,
            vec![ToolDelta {
                index: 1,
                id: Some("call_9".into()),
                name: Some("lookup".into()),
                arguments: String::new()
            }]
        );
        // A whole (non-streamed) message with two calls and no indexes.
        let c = parse_body(
            r#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"b","type":"function","function":{"name":"g","arguments":"{\"x\":1}"}}]},"finish_reason":"tool_calls"}]}"#,
        )
        .unwrap();
        assert_eq!(c.tool_deltas.iter().map(|d| d.index).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(c.tool_deltas[1].arguments, r#"{"x":1}"#);
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        // Arguments sent as an object rather than its JSON text.
        let c = parse_chunk(
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":{"x":[1,2]}}}]}}]}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.tool_deltas[0].arguments, r#"{"x":[1,2]}"#);
    }

    #[test]
    fn native_messages_are_sent_as_they_are() {
        let msgs = vec![
            json!({"role": "user", "content": "go"}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
            json!({"role": "tool", "tool_call_id": "a", "content": "42"}),
        ];
        let spec = RequestSpec {
            id: "n".into(),
            prompt: fleetbench_core::Prompt::Native(msgs.clone()),
            sampling: Default::default(),
            expected_input_tokens: None,
            label: None,
            context: Default::default(),
        };
        assert_eq!(request_body(ApiKind::Chat, "m", &spec, true)["messages"], json!(msgs));
    }

    #[test]
    fn usage_only_chunk_carries_counts_not_tokens() {
        let c = parse_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"completion_tokens_details":{"reasoning_tokens":5}},"timings":{"predicted_per_token_ms":9.5,"prompt_n":3,"cache_n":9}}"#,
        )
        .unwrap()
        .unwrap();
        assert!(!c.has_token);
        let u = c.usage.unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.reasoning_tokens), (Some(12), Some(34), Some(5)));
        assert_eq!(c.timings.unwrap().predicted_per_token_ms, Some(9.5));
        assert_eq!((c.timings.unwrap().prompt_n, c.timings.unwrap().cache_n), (Some(3), Some(9)));
    }

    #[test]
    fn errors_in_the_stream_are_recognised() {
        let c = parse_chunk(r#"{"error":{"message":"out of memory","code":500}}"#).unwrap().unwrap();
        assert_eq!(c.error.as_deref(), Some("out of memory"));
        let c = parse_chunk(r#"{"object":"error","message":"bad"}"#).unwrap().unwrap();
        assert_eq!(c.error.as_deref(), Some("bad"));
    }

    #[test]
    fn done_and_garbage() {
        assert!(parse_chunk("[DONE]").unwrap().unwrap().done);
        assert!(parse_chunk("{not json").is_err());
        assert!(parse_chunk("[1,2]").is_err());
    }

    #[test]
    fn request_bodies_ask_for_usage() {
        let spec = RequestSpec {
            id: "r1".into(),
            prompt: fleetbench_core::Prompt::Text("hello".into()),
            sampling: fleetbench_core::SamplingParams {
                max_tokens: Some(16),
                temperature: Some(0.0),
                ignore_eos: true,
                seed: Some(3),
            },
            expected_input_tokens: None,
            label: None,
            context: Default::default(),
        };
        let b = request_body(ApiKind::Chat, "m", &spec, true);
        assert_eq!(b["stream_options"]["include_usage"], json!(true));
        assert_eq!(b["messages"][0]["content"], json!("hello"));
        assert_eq!(b["max_tokens"], json!(16));
        assert_eq!(b["ignore_eos"], json!(true));
        let b = request_body(ApiKind::Completions, "m", &spec, false);
        assert_eq!(b["prompt"], json!("hello"));
        assert!(b.get("stream_options").is_none());
    }
}
