//! The episodes' tools as a Model Context Protocol server, so that an agent
//! built in any framework can take the exam (`fleetbench aiops mcp`).
//!
//! The server hands out one episode at a time: the current episode's alert
//! is the server's `instructions`, every tool call goes to that episode's
//! [`Toolset`], and `submit_diagnosis` records the investigation through a
//! [`Submissions`] sink and moves on to the next episode, whose alert the
//! reply carries. Tool calls, tool errors, wall time and the transcript of
//! calls are kept per episode as for any other investigator (token counts
//! are the agent's own and stay unknown: 0).
//!
//! Transports: stdio ([`serve_stdio`]) and streamable HTTP at `/mcp`
//! ([`router`], [`check_listen`]). Over HTTP the server listens on loopback
//! unless it has a token, and then every request must carry it as
//! `Authorization: Bearer TOKEN`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::ServerHandler;
use serde_json::{json, Value};

use crate::agent::transcript::{cut, Transcript};
use crate::investigate::{Ended, Investigation, ToolReply, ToolSpec, Toolset};

/// Where the served episodes come from: their ids in serving order, and
/// each one's tools (opened when the episode comes up).
pub trait Episodes: Send + Sync {
    fn ids(&self) -> Vec<String>;
    fn open(&self, episode_id: &str) -> Result<Arc<dyn Toolset>, String>;
}

/// Where finished investigations go (the store, an answers file).
pub trait Submissions: Send + Sync {
    fn submitted(&self, episode_id: &str, investigation: &Investigation) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("there are no episodes to serve")]
    NoEpisodes,
    #[error("opening episode {id}: {why}")]
    Open { id: String, why: String },
    #[error(
        "refusing to listen on {addr} without a token: anyone who can reach it could use the tools. \
Listen on 127.0.0.1, or give a token (--token or FLEETBENCH_MCP_TOKEN)"
    )]
    NeedsToken { addr: std::net::SocketAddr },
    #[error("the MCP session failed: {0}")]
    Session(String),
}

/// The MCP server over a set of episodes. Cheap to clone: clones share the
/// episodes and the current one.
#[derive(Clone)]
pub struct McpServer {
    shared: Arc<Shared>,
}

struct Shared {
    episodes: Arc<dyn Episodes>,
    sink: Arc<dyn Submissions>,
    ids: Vec<String>,
    specs: Vec<ToolSpec>,
    state: Mutex<State>,
}

struct State {
    /// Index of the current episode in `ids` (`ids.len()`: all done).
    at: usize,
    current: Option<Current>,
}

struct Current {
    tools: Arc<dyn Toolset>,
    started: Instant,
    tool_calls: u32,
    tool_errors: u32,
    transcript: Transcript,
}

impl Current {
    fn open(episodes: &dyn Episodes, id: &str) -> Result<Current, McpError> {
        let tools = episodes.open(id).map_err(|why| McpError::Open { id: id.into(), why })?;
        let mut transcript = Transcript::default();
        transcript.push(json!({"role": "user", "content": tools.briefing()}));
        Ok(Current { tools, started: Instant::now(), tool_calls: 0, tool_errors: 0, transcript })
    }
}

impl McpServer {
    /// A server over `episodes`, recording submissions in `sink`. Opens the
    /// first episode (its tools give the specs every episode offers).
    pub fn new(episodes: Arc<dyn Episodes>, sink: Arc<dyn Submissions>) -> Result<McpServer, McpError> {
        let ids = episodes.ids();
        let first = ids.first().ok_or(McpError::NoEpisodes)?;
        let current = Current::open(episodes.as_ref(), first)?;
        let specs = current.tools.specs();
        let state = Mutex::new(State { at: 0, current: Some(current) });
        Ok(McpServer { shared: Arc::new(Shared { episodes, sink, ids, specs, state }) })
    }

    /// The episode being served and its alert; `None` once every episode
    /// was submitted.
    pub fn current(&self) -> Option<(String, String)> {
        let st = self.lock();
        let c = st.current.as_ref()?;
        Some((self.shared.ids[st.at].clone(), c.tools.briefing()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind: go on.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn instructions(&self) -> String {
        let intro = "You are the on-call operator of a GPU fleet. Investigate the alert below with the tools, \
then call submit_diagnosis once; its reply brings the next alert.";
        match self.current() {
            Some((id, briefing)) => format!("{intro}\n\nEpisode {id}.\n{briefing}"),
            None => "Every episode has been submitted: nothing left to investigate.".into(),
        }
    }

    /// Runs one tool call against the current episode.
    pub async fn call(&self, name: &str, arguments: Value) -> (String, bool) {
        let (tools, id) = {
            let st = self.lock();
            match &st.current {
                Some(c) => (c.tools.clone(), self.shared.ids[st.at].clone()),
                None => return ("every episode has been submitted: nothing left to investigate".into(), true),
            }
        };
        let reply = if self.shared.specs.iter().any(|s| s.name == name) {
            tools.call(name, &arguments).await
        } else {
            let names: Vec<&str> = self.shared.specs.iter().map(|s| s.name).collect();
            ToolReply::Error(format!("unknown tool '{}'; the tools are: {}", cut(name, 64), names.join(", ")))
        };
        let mut st = self.lock();
        // The episode may have been submitted meanwhile by another call.
        let still = st.current.is_some() && self.shared.ids[st.at] == id;
        let call = json!({"role": "assistant", "tool_calls": [{"name": name, "arguments": arguments}]});
        match reply {
            ToolReply::Submitted(v) if still => {
                let Some(c) = st.current.as_mut() else {
                    return ("no current episode".into(), true);
                };
                c.tool_calls += 1;
                c.transcript.push(call);
                let inv = Investigation {
                    submitted: Some(v),
                    transcript: c.transcript.clone().into_entries(),
                    tool_calls: c.tool_calls,
                    tool_errors: c.tool_errors,
                    input_tokens: 0,
                    output_tokens: 0,
                    wall_s: c.started.elapsed().as_secs_f64(),
                    ended: Ended::Submitted,
                };
                // Not recorded: the episode stays current, to submit again.
                if let Err(why) = self.shared.sink.submitted(&id, &inv) {
                    return (format!("the diagnosis could not be recorded: {why}"), true);
                }
                st.current = None;
                (self.advance(&mut st, &id), false)
            }
            ToolReply::Submitted(_) => (format!("episode {id} was already submitted"), true),
            ToolReply::Output(text) | ToolReply::Error(text) if !still => (text, true),
            reply => {
                let (text, is_error) = match reply {
                    ToolReply::Error(t) => (format!("error: {t}"), true),
                    ToolReply::Output(t) => (t, false),
                    ToolReply::Submitted(_) => unreachable!("handled above"),
                };
                if let Some(c) = st.current.as_mut() {
                    c.tool_calls += 1;
                    c.tool_errors += u32::from(is_error);
                    c.transcript.push(call);
                    c.transcript.push(json!({"role": "tool", "name": name, "content": text, "error": is_error}));
                }
                (text, is_error)
            }
        }
    }

    /// Moves past episode `id`; the text says what comes next.
    fn advance(&self, st: &mut State, id: &str) -> String {
        let shared = &self.shared;
        loop {
            st.at += 1;
            let Some(next) = shared.ids.get(st.at) else {
                return format!("Diagnosis for episode {id} recorded. That was the last episode.");
            };
            match Current::open(shared.episodes.as_ref(), next) {
                Ok(c) => {
                    let briefing = c.tools.briefing();
                    st.current = Some(c);
                    return format!("Diagnosis for episode {id} recorded. Next, episode {next}.\n{briefing}");
                }
                // An episode that cannot be opened is skipped, not served broken.
                Err(_) => continue,
            }
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("fleetbench-aiops", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.instructions())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, rmcp::ErrorData> {
        let tools = self
            .shared
            .specs
            .iter()
            .map(|s| {
                let schema = match &s.parameters {
                    Value::Object(o) => o.clone(),
                    _ => serde_json::Map::new(),
                };
                Tool::new(s.name, s.description.clone(), Arc::new(schema))
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, rmcp::ErrorData> {
        let args = Value::Object(request.arguments.unwrap_or_default());
        let (text, is_error) = self.call(&request.name, args).await;
        let content = vec![ContentBlock::text(text)];
        Ok(if is_error { CallToolResult::error(content) } else { CallToolResult::success(content) }.into())
    }
}

/// Serves `server` over standard input and output until the client leaves.
pub async fn serve_stdio(server: McpServer) -> Result<(), McpError> {
    use rmcp::ServiceExt as _;
    let running = server.serve(rmcp::transport::io::stdio()).await.map_err(|e| McpError::Session(e.to_string()))?;
    running.waiting().await.map_err(|e| McpError::Session(e.to_string()))?;
    Ok(())
}

/// Serves `server` over streamable HTTP at `/mcp` on `listener` until
/// `shutdown` completes. Refuses a listener off loopback without a token.
pub async fn serve_http(
    server: McpServer,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), McpError> {
    let addr = listener.local_addr().map_err(|e| McpError::Session(e.to_string()))?;
    check_listen(addr, token.as_deref())?;
    axum::serve(listener, router(server, token))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| McpError::Session(e.to_string()))
}

/// Submissions appended to an answers file, one JSON line per episode:
/// `{"episode_id", "answer": <the submitted arguments>, "transcript",
/// "tool_calls", "tool_errors", "wall_s"}`, the format `aiops score
/// --answers` reads. Each line is written and flushed as it comes.
pub struct AnswersFile {
    file: Mutex<std::fs::File>,
}

impl AnswersFile {
    /// Opens `path` for appending (created when missing).
    pub fn append(path: &std::path::Path) -> std::io::Result<AnswersFile> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AnswersFile { file: Mutex::new(file) })
    }
}

impl Submissions for AnswersFile {
    fn submitted(&self, episode_id: &str, inv: &Investigation) -> Result<(), String> {
        use std::io::Write as _;
        let line = json!({
            "episode_id": episode_id,
            "answer": inv.submitted,
            "transcript": inv.transcript,
            "tool_calls": inv.tool_calls,
            "tool_errors": inv.tool_errors,
            "wall_s": inv.wall_s,
        });
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(f, "{line}").and_then(|()| f.flush()).map_err(|e| format!("writing the answers file: {e}"))
    }
}

/// Refuses a listen address off loopback unless a token guards it.
pub fn check_listen(addr: std::net::SocketAddr, token: Option<&str>) -> Result<(), McpError> {
    if addr.ip().is_loopback() || token.is_some_and(|t| !t.is_empty()) {
        Ok(())
    } else {
        Err(McpError::NeedsToken { addr })
    }
}

/// The streamable HTTP endpoint at `/mcp`. With a token, every request
/// must carry `Authorization: Bearer TOKEN` (401 otherwise) and any `Host`
/// is accepted; without one, only loopback `Host` names are.
pub fn router(server: McpServer, token: Option<String>) -> axum::Router {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
    let mut config = StreamableHttpServerConfig::default().with_sse_keep_alive(None);
    if token.is_some() {
        config = config.disable_allowed_hosts();
    }
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config);
    let app = axum::Router::new().nest_service("/mcp", service);
    match token.filter(|t| !t.is_empty()) {
        None => app,
        Some(t) => {
            let want: Arc<str> = format!("Bearer {t}").into();
            app.layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
                let want = want.clone();
                async move {
                    let got = req.headers().get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes());
                    if got.is_some_and(|g| same(g, want.as_bytes())) {
                        next.run(req).await
                    } else {
                        use axum::response::IntoResponse as _;
                        (axum::http::StatusCode::UNAUTHORIZED, "a valid Authorization: Bearer token is required\n")
                            .into_response()
                    }
                }
            }))
        }
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
