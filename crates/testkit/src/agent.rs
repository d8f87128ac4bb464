//! A scripted agent: a server that answers each chat or Messages request
//! with the next turn of a script (tool calls or text), streamed the way
//! OpenAI-compatible servers and the Anthropic API stream them, and keeps
//! every request body so a test can check what was fed back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;

/// One answer of the scripted agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// Tool calls, each `(name, arguments as sent)`.
    Calls(Vec<(String, String)>),
    /// Answer text and no tool call.
    Text(String),
}

impl Turn {
    /// One tool call.
    pub fn call(name: &str, arguments: &str) -> Turn {
        Turn::Calls(vec![(name.into(), arguments.into())])
    }
}

/// Prompt tokens every answer reports.
pub const PROMPT_TOKENS: u64 = 100;
/// Completion tokens every answer reports.
pub const COMPLETION_TOKENS: u64 = 10;

pub struct AgentServer {
    pub addr: SocketAddr,
    /// Every request body, in order.
    pub bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl AgentServer {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

struct Shared {
    turns: Vec<Turn>,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

/// Starts a scripted agent on a free loopback port. Request `k` gets
/// `turns[k]`; past the end it answers the text "nothing more to do".
pub async fn start_agent(turns: Vec<Turn>) -> AgentServer {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::new(Shared { turns, bodies: bodies.clone() });
    let app = Router::new()
        .route("/v1/chat/completions", post(|s, b| answer(s, b, false)))
        .route("/v1/messages", post(|s, b| answer(s, b, true)))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    AgentServer { addr, bodies }
}

async fn answer(State(s): State<Arc<Shared>>, body: Bytes, anthropic: bool) -> Response {
    let k = {
        let mut b = s.bodies.lock().unwrap();
        b.push(body);
        b.len() - 1
    };
    let turn = s.turns.get(k).cloned().unwrap_or_else(|| Turn::Text("nothing more to do".into()));
    let text = if anthropic { anthropic_stream(k, &turn) } else { openai_stream(k, &turn) };
    Response::builder().header("content-type", "text/event-stream").body(Body::from(text)).unwrap()
}

fn openai_stream(k: usize, turn: &Turn) -> String {
    let chunk = |delta: String, finish: &str| {
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
    };
    let mut out = chunk("{\"role\":\"assistant\",\"content\":\"\"}".into(), "null");
    let finish = match turn {
        Turn::Text(t) => {
            out.push_str(&chunk(format!("{{\"content\":{}}}", crate::json_string(t)), "null"));
            "\"stop\""
        }
        Turn::Calls(calls) => {
            for (i, (name, args)) in calls.iter().enumerate() {
                let head = format!(
                    "{{\"tool_calls\":[{{\"index\":{i},\"id\":\"call_{k}_{i}\",\"type\":\"function\",\"function\":{{\"name\":{},\"arguments\":\"\"}}}}]}}",
                    crate::json_string(name)
                );
                out.push_str(&chunk(head, "null"));
                for piece in halves(args) {
                    let d = format!(
                        "{{\"tool_calls\":[{{\"index\":{i},\"function\":{{\"arguments\":{}}}}}]}}",
                        crate::json_string(piece)
                    );
                    out.push_str(&chunk(d, "null"));
                }
            }
            "\"tool_calls\""
        }
    };
    out.push_str(&chunk("{}".into(), finish));
    out.push_str(&format!(
        "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{PROMPT_TOKENS},\"completion_tokens\":{COMPLETION_TOKENS}}}}}\n\n"
    ));
    out.push_str("data: [DONE]\n\n");
    out
}

fn anthropic_stream(k: usize, turn: &Turn) -> String {
    let ev = |name: &str, data: String| format!("event: {name}\ndata: {data}\n\n");
    let mut out = ev(
        "message_start",
        format!("{{\"type\":\"message_start\",\"message\":{{\"usage\":{{\"input_tokens\":{PROMPT_TOKENS},\"output_tokens\":1}}}}}}"),
    );
    let stop = match turn {
        Turn::Text(t) => {
            out.push_str(&ev(
                "content_block_delta",
                format!(
                    "{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}",
                    crate::json_string(t)
                ),
            ));
            "end_turn"
        }
        Turn::Calls(calls) => {
            for (i, (name, args)) in calls.iter().enumerate() {
                out.push_str(&ev(
                    "content_block_start",
                    format!(
                        "{{\"type\":\"content_block_start\",\"index\":{i},\"content_block\":{{\"type\":\"tool_use\",\"id\":\"toolu_{k}_{i}\",\"name\":{},\"input\":{{}}}}}}",
                        crate::json_string(name)
                    ),
                ));
                for piece in halves(args) {
                    out.push_str(&ev(
                        "content_block_delta",
                        format!(
                            "{{\"type\":\"content_block_delta\",\"index\":{i},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{}}}}}",
                            crate::json_string(piece)
                        ),
                    ));
                }
                out.push_str(&ev("content_block_stop", format!("{{\"type\":\"content_block_stop\",\"index\":{i}}}")));
            }
            "tool_use"
        }
    };
    out.push_str(&ev(
        "message_delta",
        format!("{{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{stop}\"}},\"usage\":{{\"output_tokens\":{COMPLETION_TOKENS}}}}}"),
    ));
    out.push_str(&ev("message_stop", "{\"type\":\"message_stop\"}".into()));
    out
}

/// `s` in two pieces split on a char boundary, as a stream would cut it.
fn halves(s: &str) -> [&str; 2] {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid -= 1;
    }
    [&s[..mid], &s[mid..]]
}
