//! What happened to one request: its instants on the run's monotonic clock,
//! its token counts and where they came from, and its error if it failed.

use serde::{Deserialize, Serialize};

/// Where a request's token counts came from (docs/METRICS.md, "output_tokens").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// `usage` reported by the server.
    Server,
    /// Counted with a tokenizer configured on the client.
    Tokenizer,
    /// Counted as token-bearing stream events (a lower bound when servers
    /// pack several tokens into one event).
    #[default]
    Events,
}

impl TokenSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Server => "server",
            TokenSource::Tokenizer => "tokenizer",
            TokenSource::Events => "events",
        }
    }
}

/// Why a request failed. Each kind is counted apart in every summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP/TLS connection could not be made (refused, reset, DNS).
    Connect,
    /// Connecting took longer than `--timeout-connect`.
    TimeoutConnect,
    /// No token arrived within `--timeout-first-token` of sending.
    TimeoutFirstToken,
    /// The gap between two tokens exceeded `--timeout-idle`.
    TimeoutIdle,
    /// The whole request exceeded `--timeout-total`.
    TimeoutTotal,
    /// The server answered 429 (after any retries allowed).
    RateLimited,
    /// The server answered another non-2xx status.
    HttpStatus,
    /// A stream event or body that is not the JSON the API defines.
    MalformedStream,
    /// The stream ended before the response was finished.
    TruncatedStream,
    /// The body was not valid UTF-8.
    InvalidUtf8,
    /// The server sent an error object inside the stream.
    ServerErrorEvent,
    /// The body or one event exceeded the client's size limit.
    BodyTooLarge,
    /// Anything else (a bug in fleetbench if it ever shows up).
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::Connect,
        ErrorKind::TimeoutConnect,
        ErrorKind::TimeoutFirstToken,
        ErrorKind::TimeoutIdle,
        ErrorKind::TimeoutTotal,
        ErrorKind::RateLimited,
        ErrorKind::HttpStatus,
        ErrorKind::MalformedStream,
        ErrorKind::TruncatedStream,
        ErrorKind::InvalidUtf8,
        ErrorKind::ServerErrorEvent,
        ErrorKind::BodyTooLarge,
        ErrorKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::TimeoutConnect => "timeout_connect",
            ErrorKind::TimeoutFirstToken => "timeout_first_token",
            ErrorKind::TimeoutIdle => "timeout_idle",
            ErrorKind::TimeoutTotal => "timeout_total",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::MalformedStream => "malformed_stream",
            ErrorKind::TruncatedStream => "truncated_stream",
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::ServerErrorEvent => "server_error_event",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request's error: its kind, the HTTP status when there was one,
/// and a short message (server text is truncated and never contains secrets,
/// because fleetbench never sends them back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestError {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub message: String,
}

impl RequestError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        if message.len() > 300 {
            let mut cut = 300;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        RequestError { kind, status: None, message }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The label errors are counted under: the kind, with the status for
    /// HTTP errors (`http_503`).
    pub fn label(&self) -> String {
        match (self.kind, self.status) {
            (ErrorKind::HttpStatus, Some(s)) => format!("http_{s}"),
            (k, _) => k.as_str().to_string(),
        }
    }
}

/// Timings a server reports about itself (llama.cpp's `timings` object),
/// kept so that fleetbench's own figures can be checked against them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ServerTimings {
    pub prompt_ms: Option<f64>,
    pub predicted_ms: Option<f64>,
    pub predicted_per_token_ms: Option<f64>,
    /// Prompt tokens the server processed for this request (`prompt_n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_n: Option<u64>,
    /// Prompt tokens it served from its prefix cache instead (`cache_n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_n: Option<u64>,
}

/// Everything measured about one request. Instants are seconds since the
/// run's epoch on one monotonic clock (docs/METRICS.md, "Clock and events").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RequestRecord {
    /// Order in which the request was issued, from 0, warm-up included.
    pub index: u64,
    /// The workload's id for the request.
    pub request_id: String,
    /// Closed-loop agent that sent it, if any.
    pub agent: Option<u32>,
    /// Warm-up requests are stored but excluded from every figure.
    pub warmup: bool,
    pub label: Option<String>,
    pub t_sched: f64,
    pub t_send: f64,
    pub t_first_byte: Option<f64>,
    pub t_first_token: Option<f64>,
    pub t_last_token: Option<f64>,
    /// When the client was done with the request (stream closed or error).
    pub t_end: f64,
    /// Gaps between consecutive token-bearing events, seconds.
    pub itl: Vec<f64>,
    /// Token-bearing events seen.
    pub token_events: u64,
    pub input_tokens: Option<u64>,
    pub output_tokens: u64,
    pub reasoning_tokens: Option<u64>,
    pub token_source: TokenSource,
    /// Output tokens counted from events, kept to flag disagreement with the
    /// server's count.
    pub event_tokens: u64,
    pub finish_reason: Option<String>,
    pub http_status: Option<u16>,
    pub retries: u32,
    pub server_timings: Option<ServerTimings>,
    pub error: Option<RequestError>,
    /// The workload's shared-prefix and conversation context of the request.
    #[serde(default, skip_serializing_if = "crate::request::RequestContext::is_empty")]
    pub context: crate::request::RequestContext,
    /// The generated text, kept only when the caller asked for it (the
    /// AIOps arena needs answers; speed runs do not).
    pub output_text: Option<String>,
    /// The first event carrying answer text (not reasoning, not a tool
    /// call). Equal to `t_first_token` for a model that neither reasons nor
    /// calls tools.
    #[serde(default)]
    pub t_first_answer_token: Option<f64>,
    /// The first event carrying a tool-call delta (name or arguments).
    #[serde(default)]
    pub t_first_tool_token: Option<f64>,
    /// The complete tool calls the response made, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// One tool call a response made, assembled from its streamed pieces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ToolCall {
    /// The call's id as the server gave it (`call_…`, `toolu_…`); empty when
    /// the server gave none.
    pub id: String,
    pub name: String,
    /// The arguments exactly as sent: a JSON text when the model behaved.
    pub arguments: String,
}

impl ToolCall {
    /// The arguments parsed as a JSON object; `None` when they are not one
    /// (empty arguments count as `{}`).
    pub fn arguments_object(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        if self.arguments.trim().is_empty() {
            return Some(serde_json::Map::new());
        }
        match serde_json::from_str(&self.arguments) {
            Ok(serde_json::Value::Object(o)) => Some(o),
            _ => None,
        }
    }
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// `t_send - t_sched` (docs/METRICS.md: never hidden).
    pub fn client_queue_time(&self) -> f64 {
        (self.t_send - self.t_sched).max(0.0)
    }

    /// TTFT, seconds.
    pub fn ttft(&self) -> Option<f64> {
        self.t_first_token.map(|t| t - self.t_send)
    }

    /// E2EL, seconds: to the last token.
    pub fn e2el(&self) -> Option<f64> {
        self.t_last_token.map(|t| t - self.t_send)
    }

    /// TPOT, seconds; only when more than one token was produced.
    pub fn tpot(&self) -> Option<f64> {
        match (self.ttft(), self.e2el()) {
            (Some(ttft), Some(e2el)) if self.output_tokens > 1 => Some((e2el - ttft) / (self.output_tokens - 1) as f64),
            _ => None,
        }
    }

    /// Per-request decode speed: output tokens / E2EL.
    pub fn tok_s(&self) -> Option<f64> {
        self.e2el().filter(|e| *e > 0.0).map(|e| self.output_tokens as f64 / e)
    }

    /// Local LLM Bench's per-task speed: output tokens / whole HTTP wall
    /// time (prefill and network included).
    pub fn task_tok_s(&self) -> Option<f64> {
        let wall = self.t_end - self.t_send;
        (self.ok() && wall > 0.0).then(|| self.output_tokens as f64 / wall)
    }

    /// Time to the first answer token, seconds (`t_first_answer_token −
    /// t_send`): what a reader of a reasoning model waits for.
    pub fn answer_ttft(&self) -> Option<f64> {
        self.t_first_answer_token.map(|t| t - self.t_send)
    }

    /// Time to the first tool-call token, seconds.
    pub fn tool_ttft(&self) -> Option<f64> {
        self.t_first_tool_token.map(|t| t - self.t_send)
    }

    /// Whether the stream held anything but answer text (reasoning or tool
    /// calls), so that TTFT and the time to the first answer token differ.
    pub fn beyond_answer(&self) -> bool {
        self.t_first_tool_token.is_some() || self.t_first_answer_token != self.t_first_token
    }

    /// Absolute instants of every token-bearing event, rebuilt from the first
    /// token and the ITL gaps.
    pub fn token_instants(&self) -> Vec<f64> {
        let Some(first) = self.t_first_token else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(self.itl.len() + 1);
        let mut t = first;
        out.push(t);
        for gap in &self.itl {
            t += gap;
            out.push(t);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_times_follow_metrics_md() {
        let r = RequestRecord {
            t_sched: 0.9,
            t_send: 1.0,
            t_first_token: Some(1.2),
            t_last_token: Some(2.2),
            t_end: 2.25,
            output_tokens: 11,
            ..Default::default()
        };
        assert!((r.client_queue_time() - 0.1).abs() < 1e-12);
        assert!((r.ttft().unwrap() - 0.2).abs() < 1e-12);
        assert!((r.e2el().unwrap() - 1.2).abs() < 1e-12);
        assert!((r.tpot().unwrap() - 0.1).abs() < 1e-12);
        assert!((r.tok_s().unwrap() - 11.0 / 1.2).abs() < 1e-9);
        assert!((r.task_tok_s().unwrap() - 11.0 / 1.25).abs() < 1e-9);
    }

    #[test]
    fn tool_arguments_parse_as_objects_or_not() {
        let call = |a: &str| ToolCall { id: "c".into(), name: "f".into(), arguments: a.into() };
        assert_eq!(call(r#"{"q":"up"}"#).arguments_object().unwrap()["q"], "up");
        assert!(call("").arguments_object().unwrap().is_empty());
        assert!(call(r#"{"q":"#).arguments_object().is_none());
        assert!(call("[1]").arguments_object().is_none());
        let r = RequestRecord {
            t_send: 1.0,
            t_first_token: Some(1.5),
            t_first_answer_token: Some(3.0),
            ..Default::default()
        };
        assert!((r.answer_ttft().unwrap() - 2.0).abs() < 1e-12);
        assert!(r.beyond_answer());
        let plain = RequestRecord { t_first_token: Some(1.5), t_first_answer_token: Some(1.5), ..Default::default() };
        assert!(!plain.beyond_answer());
    }

    #[test]
    fn one_token_has_no_tpot() {
        let r = RequestRecord {
            t_send: 0.0,
            t_first_token: Some(0.1),
            t_last_token: Some(0.1),
            output_tokens: 1,
            ..Default::default()
        };
        assert_eq!(r.tpot(), None);
    }

    #[test]
    fn error_labels_carry_http_status() {
        let e = RequestError::new(ErrorKind::HttpStatus, "x").with_status(503);
        assert_eq!(e.label(), "http_503");
        assert_eq!(RequestError::new(ErrorKind::Connect, "x").label(), "connect");
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let e = RequestError::new(ErrorKind::Other, "é".repeat(400));
        assert!(e.message.len() <= 304);
        assert!(e.message.ends_with('…'));
    }
}
