//! What fleetbench's own tests share (never used by the product):
//!
//! - a scripted SSE server: exact timing (role chunk at once, first token
//!   after `ttft`, one token every `itl`, usage, `[DONE]`) and injected
//!   faults; it counts requests in flight on the server side; its first
//!   and last tokens leave on [`precise`] deadlines, not tokio's
//!   millisecond timer;
//! - [`wait_until`] / [`wait_for`]: wait on a condition with a deadline
//!   instead of sleeping a fixed time;
//! - [`RecordBuilder`]: `RequestRecord` fixtures; [`text_request`]: a
//!   `RequestSpec` asking a text;
//! - [`fresh_postgres_db`]: an empty database on the test PostgreSQL cluster.
//! - [`start_agent`]: a scripted agent answering turn by turn with tool
//!   calls or text, keeping every request body.

mod agent;
pub mod lean;
mod pg;
pub mod precise;
mod record;
mod wait;

pub use agent::{start_agent, AgentServer, Turn, COMPLETION_TOKENS, PROMPT_TOKENS};
pub use pg::{fresh_postgres_db, POSTGRES_ENV};
pub use record::{text_request, RecordBuilder};
pub use wait::{listening_on_loopback, wait_for, wait_until, TimedOut};

use axum::serve::ListenerExt as _;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    None,
    /// Status code with a JSON error body.
    Http(u16),
    /// 429 with `Retry-After` for the first `times` requests, then normal.
    RateLimited {
        retry_after_s: u32,
        times: u64,
    },
    /// A chunk that is not JSON.
    Malformed,
    /// Close after `after` tokens with no finish reason and no `[DONE]`.
    Truncated {
        after: u32,
    },
    /// Bytes that are not UTF-8 inside an event.
    InvalidUtf8,
    /// An error object inside the stream after one token.
    ErrorEvent,
    /// One event larger than `bytes`.
    Huge {
        bytes: usize,
    },
    /// Stop sending (but keep the connection) after `after` tokens.
    Stall {
        after: u32,
    },
    /// A hostile server: HTTP 500 whose body echoes the credentials it got.
    EchoAuth,
    /// Every fault in turn, request by request (see [`mixed_fault`]): the
    /// soak's server.
    Mixed,
    /// Every event split in two reads, `\r\n` line endings, keep-alive
    /// comments, reasoning and tool-call deltas, no `[DONE]`.
    Awkward,
}

#[derive(Debug, Clone)]
pub struct Script {
    pub ttft: Duration,
    pub itl: Duration,
    pub tokens: u32,
    pub prompt_tokens: u32,
    pub fault: Fault,
    /// Send the usage chunk.
    pub usage: bool,
    /// Answer Anthropic Messages events instead of OpenAI chunks.
    pub anthropic: bool,
    /// Serve at most this many requests at once; the rest queue (and
    /// `/metrics` reports them as waiting, with vLLM's metric names).
    pub capacity: Option<u32>,
    /// Keep every request body in [`Counters::bodies`].
    pub record_bodies: bool,
    /// Requests whose body names one of these models get its time to first
    /// token instead of `ttft` (a model mix whose models differ).
    pub model_ttft: Vec<(String, Duration)>,
    /// The first this many of `tokens` events are reasoning
    /// (`reasoning_content`; Anthropic thinking deltas).
    pub reasoning: u32,
    /// The events after the reasoning ones make this tool call instead of
    /// answer text: the first names the tool, the rest carry the arguments
    /// in nearly equal pieces (all of them in one when there is no room).
    pub tool_call: Option<ScriptedCall>,
}

/// A tool call a scripted server makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedCall {
    pub name: String,
    pub arguments: String,
}

impl ScriptedCall {
    /// The arguments cut into `n` pieces on char boundaries (at least one).
    fn pieces(&self, n: u32) -> Vec<String> {
        let chars: Vec<char> = self.arguments.chars().collect();
        let n = (n.max(1) as usize).min(chars.len().max(1));
        let per = chars.len().div_ceil(n).max(1);
        let mut out: Vec<String> = chars.chunks(per).map(|c| c.iter().collect()).collect();
        out.resize(n, String::new());
        out
    }
}

impl Default for Script {
    fn default() -> Self {
        Script {
            ttft: Duration::from_millis(50),
            itl: Duration::from_millis(10),
            tokens: 8,
            prompt_tokens: 17,
            fault: Fault::None,
            usage: true,
            anthropic: false,
            capacity: None,
            record_bodies: false,
            model_ttft: Vec::new(),
            reasoning: 0,
            tool_call: None,
        }
    }
}

#[derive(Default)]
pub struct Counters {
    /// Connections accepted.
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub completed: AtomicU64,
    /// (start, end) of every response, seconds since the server started.
    pub intervals: Mutex<Vec<(f64, f64)>>,
    pub auth_headers: Mutex<Vec<String>>,
    /// Every request body, in order of arrival (with `Script::record_bodies`).
    pub bodies: Mutex<Vec<String>>,
    /// Being served now (capacity mode).
    pub running: AtomicU64,
    /// Queued for a free slot (capacity mode).
    pub waiting: AtomicU64,
    /// The body of the latest request.
    pub last_body: Mutex<Bytes>,
}

pub struct ScriptedServer {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    pub started: Instant,
}

impl ScriptedServer {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

struct Shared {
    slots: Option<Arc<tokio::sync::Semaphore>>,
    script: Script,
    counters: Arc<Counters>,
    started: Instant,
}

/// Starts a scripted server on a free loopback port.
pub async fn start(script: Script) -> ScriptedServer {
    start_on(script, 0).await
}

/// Starts a scripted server on loopback port `port` (0: a free one).
pub async fn start_on(script: Script, port: u16) -> ScriptedServer {
    try_start_on(script, port).await.expect("bind a loopback port")
}

/// The listen backlog of the scripted servers (the kernel caps it at
/// `net.core.somaxconn`). A thousand clients connecting at once must not
/// overflow the accept queue: the kernel would drop their SYNs and they
/// would connect a second later, on TCP's retransmission timer.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on loopback port `port` (0: a free one) with
/// [`LISTEN_BACKLOG`] (`TcpListener::bind` asks for only 128).
pub fn listen_on_loopback(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(LISTEN_BACKLOG)
}

/// [`start_on`], returning the error when the port cannot be bound.
pub async fn try_start_on(script: Script, port: u16) -> std::io::Result<ScriptedServer> {
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let shared = Arc::new(Shared {
        slots: script.capacity.map(|c| Arc::new(tokio::sync::Semaphore::new(c as usize))),
        script,
        counters: counters.clone(),
        started,
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(|s, h, b| handle(s, h, b, "chat")))
        .route("/v1/completions", post(|s, h, b| handle(s, h, b, "completions")))
        .route("/v1/messages", post(|s, h, b| handle(s, h, b, "anthropic")))
        .route("/v1/models", axum::routing::get(|| async { "{\"object\":\"list\",\"data\":[]}" }))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(shared);
    let listener = listen_on_loopback(port)?;
    let addr = listener.local_addr()?;
    let accepted = counters.clone();
    tokio::spawn(async move {
        axum::serve(
            listener.tap_io(move |tcp| {
                accepted.connections.fetch_add(1, Ordering::SeqCst);
                let _ = tcp.set_nodelay(true);
            }),
            app,
        )
        .await
        .ok();
    });
    Ok(ScriptedServer { addr, counters, started })
}

struct InFlight {
    counters: Arc<Counters>,
    start: f64,
    started: Instant,
    completed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.completed {
            self.counters.completed.fetch_add(1, Ordering::SeqCst);
        }
        let end = self.started.elapsed().as_secs_f64();
        self.counters.intervals.lock().unwrap().push((self.start, end));
    }
}

async fn handle(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes, kind: &'static str) -> Response {
    // The request has been read: the time to first token counts from here,
    // however long the task that streams the answer waits to run.
    let read_at = tokio::time::Instant::now();
    let c = &s.counters;
    if s.script.record_bodies {
        c.bodies.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
    }
    let n = c.requests.fetch_add(1, Ordering::SeqCst);
    *c.last_body.lock().unwrap() = body.clone();
    if let Some(a) = headers.get("authorization").or_else(|| headers.get("x-api-key")) {
        c.auth_headers.lock().unwrap().push(a.to_str().unwrap_or("").to_string());
    }
    let mut script = s.script.clone();
    if !script.model_ttft.is_empty() {
        let model = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string));
        if let Some(t) = script.model_ttft.iter().find(|(m, _)| Some(m) == model.as_ref()).map(|(_, t)| *t) {
            script.ttft = t;
        }
    }
    if script.fault == Fault::Mixed {
        script.fault = mixed_fault(n);
    }
    if script.fault == Fault::EchoAuth {
        let auth = headers
            .get("authorization")
            .or_else(|| headers.get("x-api-key"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{{\"error\":{{\"message\":\"bad key {auth}\"}}}}"))
            .into_response();
    }
    match script.fault {
        Fault::Http(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            return (status, "{\"error\":{\"message\":\"scripted failure\"}}").into_response();
        }
        Fault::RateLimited { retry_after_s, times } if n < times => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_s.to_string())],
                "{\"error\":{\"message\":\"slow down\"}}",
            )
                .into_response();
        }
        _ => {}
    }
    let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    c.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let mut guard = InFlight {
        counters: c.clone(),
        start: s.started.elapsed().as_secs_f64(),
        started: s.started,
        completed: false,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let slots = s.slots.clone();
    let counters = s.counters.clone();
    tokio::spawn(async move {
        // A queued request's time to first token counts from its slot.
        let (_permit, start) = match slots {
            Some(sem) => {
                counters.waiting.fetch_add(1, Ordering::SeqCst);
                let p = sem.acquire_owned().await.ok();
                counters.waiting.fetch_sub(1, Ordering::SeqCst);
                (p, tokio::time::Instant::now())
            }
            None => (None, read_at),
        };
        counters.running.fetch_add(1, Ordering::SeqCst);
        let ok = produce(&script, kind, &tx, start).await;
        counters.running.fetch_sub(1, Ordering::SeqCst);
        guard.completed = ok;
        if let Fault::Stall { .. } = script.fault {
            // Hold the connection open without sending anything.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        drop(guard);
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    Response::builder().header("content-type", "text/event-stream").body(body).unwrap()
}

/// The fault request `n` of a [`Fault::Mixed`] server gets: of every 25
/// requests, one each of HTTP 500, 429 with `Retry-After: 1`, a malformed
/// chunk, a stream closed after two tokens without `[DONE]`, invalid UTF-8,
/// an error event, a stall after two tokens, and an awkward but valid
/// stream (split events, CRLF, keep-alives, no `[DONE]`); the rest are clean.
pub fn mixed_fault(n: u64) -> Fault {
    match n % 25 {
        0 => Fault::Http(500),
        1 => Fault::RateLimited { retry_after_s: 1, times: u64::MAX },
        2 => Fault::Malformed,
        3 => Fault::Truncated { after: 2 },
        4 => Fault::InvalidUtf8,
        5 => Fault::ErrorEvent,
        6 => Fault::Stall { after: 2 },
        7 => Fault::Awkward,
        _ => Fault::None,
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> String {
    let c = &s.counters;
    let running = c.running.load(Ordering::SeqCst);
    let waiting = c.waiting.load(Ordering::SeqCst);
    let kv = match s.script.capacity {
        Some(cap) => running as f64 / cap as f64,
        None => 0.0,
    };
    format!(
        "# HELP vllm:num_requests_running Requests in the running batch.\n# TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{model_name=\"m\"}} {running}\n\
         # TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{model_name=\"m\"}} {waiting}\n\
         # TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{{model_name=\"m\"}} {kv}\n\
         # TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total{{model_name=\"m\"}} 0\n"
    )
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Waits until token `i` of `tokens` is due. The first and the last token
/// leave within microseconds of their deadline ([`precise`]), so the time
/// to first token, the end-to-end latency and the mean gap between tokens
/// are exact; the tokens between keep tokio's timer (a millisecond grid,
/// each up to about 1.3 ms late): waking each of 100,000 tokens a second
/// precisely would cost the server's one core more than its writes do.
async fn wait_for_token(at: tokio::time::Instant, i: u32, tokens: u32) {
    if i == 0 || i + 1 == tokens {
        precise::sleep_until(at).await
    } else {
        tokio::time::sleep_until(at).await
    }
}

/// Streams the scripted answer; token `i` leaves at `start + ttft + i × itl`.
async fn produce(
    script: &Script,
    kind: &str,
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
    start: tokio::time::Instant,
) -> bool {
    let send = |b: Vec<u8>| async move { tx.send(Ok(Bytes::from(b))).await.is_ok() };
    let awkward = script.fault == Fault::Awkward;
    let eol = if awkward { "\r\n" } else { "\n" };
    let event = |data: String| -> Vec<u8> { format!("data: {data}{eol}{eol}").into_bytes() };
    let anthropic = script.anthropic || kind == "anthropic";
    if anthropic {
        let ev = |name: &str, data: String| format!("event: {name}\ndata: {data}\n\n").into_bytes();
        send(ev(
            "message_start",
            format!(
                "{{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":{},\"output_tokens\":1}}}}}}",
                script.prompt_tokens
            ),
        ))
        .await;
        send(ev("ping", "{\"type\":\"ping\"}".into())).await;
        let pieces = script.tool_call.as_ref().map(|c| c.pieces(script.tokens.saturating_sub(script.reasoning + 1)));
        for i in 0..script.tokens {
            wait_for_token(start + script.ttft + script.itl * i, i, script.tokens).await;
            // Thinking is block 0; the answer or tool call the block after it.
            let block = u32::from(i >= script.reasoning && script.reasoning > 0);
            let delta = |d: String| {
                ev(
                    "content_block_delta",
                    format!("{{\"type\":\"content_block_delta\",\"index\":{block},\"delta\":{d}}}"),
                )
            };
            let data = match (&script.tool_call, &pieces) {
                _ if i < script.reasoning => delta(format!("{{\"type\":\"thinking_delta\",\"thinking\":\"r{i} \"}}")),
                (Some(call), _) if i == script.reasoning => ev(
                    "content_block_start",
                    format!("{{\"type\":\"content_block_start\",\"index\":{block},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"toolu_0\",\"name\":{},\"input\":{{}}}}}}", json_string(&call.name)),
                ),
                (Some(_), Some(p)) => match p.get((i - script.reasoning - 1) as usize) {
                    Some(piece) => delta(format!("{{\"type\":\"input_json_delta\",\"partial_json\":{}}}", json_string(piece))),
                    None => continue,
                },
                _ => delta(format!("{{\"type\":\"text_delta\",\"text\":\"t{i} \"}}")),
            };
            send(data).await;
            if let (Some(call), true) =
                (&script.tool_call, i == script.reasoning && script.tokens == script.reasoning + 1)
            {
                // No event left for the arguments: they follow the block start at once.
                send(delta(format!(
                    "{{\"type\":\"input_json_delta\",\"partial_json\":{}}}",
                    json_string(&call.arguments)
                )))
                .await;
            }
        }
        let stop = if script.tool_call.is_some() { "tool_use" } else { "end_turn" };
        send(ev("message_delta", format!("{{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{stop}\"}},\"usage\":{{\"output_tokens\":{}}}}}", script.tokens))).await;
        return send(ev("message_stop", "{\"type\":\"message_stop\"}".into())).await;
    }
    let chunk = |delta: String| -> String {
        if kind == "completions" {
            format!("{{\"object\":\"text_completion\",\"choices\":[{{\"index\":0,\"text\":{delta},\"finish_reason\":null}}]}}")
        } else {
            format!("{{\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{delta}}},\"finish_reason\":null}}]}}")
        }
    };
    if kind == "chat" {
        send(event("{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}".into())).await;
    }
    if awkward {
        send(format!(": keep-alive{eol}{eol}").into_bytes()).await;
    }
    // Absolute deadlines: token i leaves at ttft + i × itl, without drift.
    let pieces = script.tool_call.as_ref().map(|c| c.pieces(script.tokens.saturating_sub(script.reasoning + 1)));
    for i in 0..script.tokens {
        wait_for_token(start + script.ttft + script.itl * i, i, script.tokens).await;
        match (&script.fault, i) {
            (Fault::Truncated { after }, i) if i == *after => return false,
            (Fault::Stall { after }, i) if i == *after => return false,
            (Fault::Malformed, 1) => {
                send(b"data: {\"choices\": [ this is not json\n\n".to_vec()).await;
                continue;
            }
            (Fault::InvalidUtf8, 1) => {
                send(b"data: {\"choices\":[{\"delta\":{\"content\":\"\xff\xfe\"}}]}\n\n".to_vec()).await;
                continue;
            }
            (Fault::ErrorEvent, 1) => {
                send(event("{\"error\":{\"message\":\"CUDA out of memory\",\"code\":500}}".into())).await;
                return false;
            }
            (Fault::Huge { bytes }, 1) => {
                let big = "x".repeat(*bytes);
                send(event(chunk(format!("\"{big}\"")))).await;
                continue;
            }
            _ => {}
        }
        let delta = |d: String| format!("{{\"choices\":[{{\"index\":0,\"delta\":{d}}}]}}");
        let data = if kind == "chat" && i < script.reasoning {
            delta(format!("{{\"reasoning_content\":\"r{i} \"}}"))
        } else if let (true, Some(call), Some(p)) = (kind == "chat", &script.tool_call, &pieces) {
            let head = if i == script.reasoning {
                // With no event left for the arguments, the first carries them.
                let all = if script.tokens == script.reasoning + 1 { call.arguments.as_str() } else { "" };
                let (name, all) = (json_string(&call.name), json_string(all));
                format!("\"id\":\"call_0\",\"type\":\"function\",\"function\":{{\"name\":{name},\"arguments\":{all}}}")
            } else {
                let piece = p.get((i - script.reasoning - 1) as usize).map(String::as_str).unwrap_or("");
                format!("\"function\":{{\"arguments\":{}}}", json_string(piece))
            };
            delta(format!("{{\"tool_calls\":[{{\"index\":0,{head}}}]}}"))
        } else if awkward && kind == "chat" && i % 3 == 1 {
            "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"}}]}".to_string()
        } else if awkward && kind == "chat" && i % 3 == 2 {
            "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}".to_string()
        } else {
            chunk(format!("\"t{i} \""))
        };
        let bytes = event(data);
        if awkward {
            let mid = bytes.len() / 2;
            send(bytes[..mid].to_vec()).await;
            tokio::task::yield_now().await;
            send(bytes[mid..].to_vec()).await;
        } else {
            send(bytes).await;
        }
    }
    let finish = if kind == "completions" {
        "{\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}".to_string()
    } else {
        let why = if script.tool_call.is_some() { "tool_calls" } else { "length" };
        format!("{{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"{why}\"}}]}}")
    };
    send(event(finish)).await;
    if script.usage {
        send(event(format!(
            "{{\"choices\":[],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}}}}}",
            script.prompt_tokens,
            script.tokens,
            script.prompt_tokens + script.tokens
        )))
        .await;
    }
    if awkward {
        return true; // no [DONE]
    }
    send(b"data: [DONE]\n\n".to_vec()).await
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
