//! The simulated OpenAI-compatible server: HTTP in front of the
//! discrete-event engine, streaming each token at the instant the engine
//! schedules it (virtual time divided by the time scale), with vLLM metrics.

use axum::serve::ListenerExt as _;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{EngineEvent, EngineRequest, PrefixKey, ServingEngine};
use crate::perf::Deployment;
use crate::prompt_index::PromptIndex;
use crate::SimError;

/// Answers a prompt with a given text (the AIOps arena uses it); `None`
/// falls back to filler words.
pub type Responder = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Settings of one simulated server.
#[derive(Clone)]
pub struct SimServerConfig {
    pub deployment: Deployment,
    /// Model name served in `/v1/models` and responses.
    pub served_model_name: String,
    /// Virtual seconds per wall-clock second: 10 runs ten times faster
    /// than the modelled hardware. Timings in `/metrics` are virtual
    /// (model) seconds; clients measure wall time, i.e. virtual / scale.
    pub time_scale: f64,
    /// Seeds the output lengths (when a request gives no max_tokens) and
    /// the filler words.
    pub seed: u64,
    /// Output length range used when a request sets no max_tokens.
    pub default_output_tokens: (u32, u32),
    pub responder: Option<Responder>,
}

impl std::fmt::Debug for SimServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimServerConfig")
            .field("served_model_name", &self.served_model_name)
            .field("gpu", &self.deployment.gpu.id)
            .field("model", &self.deployment.model.id)
            .field("time_scale", &self.time_scale)
            .field("seed", &self.seed)
            .field("responder", &self.responder.is_some())
            .finish()
    }
}

impl SimServerConfig {
    /// A config for a deployment named against the built-in catalog, e.g.
    /// `DeploymentSpec { gpu: "h100-sxm".into(), model: "llama-3.1-8b".into(), .. }`.
    pub fn from_spec(spec: &crate::DeploymentSpec) -> Result<SimServerConfig, SimError> {
        let catalog = crate::Catalog::embedded()?;
        Ok(SimServerConfig::new(Deployment::resolve(&catalog, spec)?))
    }

    pub fn new(deployment: Deployment) -> SimServerConfig {
        SimServerConfig {
            served_model_name: deployment.model.id.clone(),
            deployment,
            time_scale: 1.0,
            seed: 0,
            default_output_tokens: (64, 512),
            responder: None,
        }
    }
}

/// Engine state as `/metrics` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStats {
    pub num_requests_running: usize,
    pub num_requests_waiting: usize,
    pub kv_cache_usage: f64,
    pub preemptions_total: u64,
    pub prompt_tokens_total: u64,
    pub generation_tokens_total: u64,
    pub requests_finished_total: u64,
    /// Prompt tokens looked up in the prefix cache, and those it held.
    pub prefix_queries_total: u64,
    pub prefix_hits_total: u64,
    /// Most requests waiting at once since start.
    pub max_waiting: usize,
}

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }
    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] =
    &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];

#[derive(Debug)]
struct Metrics {
    stats: ServerStats,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
}

/// What the engine tells a request's handler.
#[derive(Debug, Clone, Copy)]
enum TokenMsg {
    /// Token `index` is ready at virtual time `t`.
    Token {
        index: u32,
    },
    Done,
}

enum Submission {
    /// A request that arrived at `arrival` (model seconds), which reaches
    /// the engine core `frontend_s` later (the API server's share, as `sim
    /// replay` has it).
    New { req: EngineRequest, prefix: PrefixKey, arrival: f64, frontend_s: f64, tx: mpsc::UnboundedSender<TokenMsg> },
    /// The client went away: drop the request, as vLLM aborts it.
    Abort(u64),
}

/// Aborts the request in the engine unless it finished.
struct AbortOnDrop {
    id: u64,
    submit: std_mpsc::Sender<Submission>,
    finished: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.submit.send(Submission::Abort(self.id));
        }
    }
}

struct AppState {
    cfg: SimServerConfig,
    submit: std_mpsc::Sender<Submission>,
    next_id: AtomicU64,
    metrics: Arc<Mutex<Metrics>>,
    prompts: Mutex<PromptIndex>,
    answers: AnswerLog,
    /// The instant model time counts from.
    epoch: Instant,
}

/// A running simulated server.
pub struct SimServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    /// The engine's own thread, and the flag that ends it.
    engine: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Mutex<Metrics>>,
}

impl SimServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://ADDR/v1`, what an OpenAI client takes as base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    /// The engine's counters and gauges now.
    pub fn stats(&self) -> ServerStats {
        self.metrics.lock().map(|m| m.stats.clone()).unwrap_or_default()
    }
    /// Stops accepting connections, ends the engine and waits for both.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        self.stop.store(true, Ordering::Relaxed);
        if let Some(engine) = self.engine.take() {
            let _ = tokio::task::spawn_blocking(move || engine.join()).await;
        }
    }
}

impl Drop for SimServerHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The listen backlog of the simulated servers (the kernel caps it at
/// `net.core.somaxconn`): a thousand clients connecting at once must not
/// overflow the accept queue, or the kernel drops their SYNs and they connect
/// a second later on TCP's retransmission timer (`bind` asks for only 128).
pub(crate) const LISTEN_BACKLOG: u32 = 4096;

/// A socket bound to `addr`, ready to listen with [`LISTEN_BACKLOG`].
pub(crate) fn bound_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Binds `addr` (port 0 picks a free port) and serves the OpenAI API from a
/// simulated deployment until the handle is shut down or dropped. Must be
/// called inside a tokio runtime.
pub async fn start_server(cfg: SimServerConfig, addr: SocketAddr) -> Result<SimServerHandle, SimError> {
    if !(cfg.time_scale.is_finite() && cfg.time_scale > 0.0) {
        return Err(SimError::Invalid(format!("time scale must be a positive number, got {}", cfg.time_scale)));
    }
    let listener = bound_socket(addr)
        .and_then(|s| s.listen(LISTEN_BACKLOG))
        .map_err(|e| SimError::Server(format!("cannot listen on {addr}: {e}; pick another --port or --host")))?;
    let local = listener.local_addr().map_err(|e| SimError::Server(e.to_string()))?;
    let metrics = Arc::new(Mutex::new(Metrics {
        stats: ServerStats::default(),
        ttft: Histogram::new(TTFT_BUCKETS),
        itl: Histogram::new(ITL_BUCKETS),
        e2e: Histogram::new(TTFT_BUCKETS),
    }));
    let (submit, rx) = std_mpsc::channel();
    // Model time runs from here, for the engine and for the handlers that
    // stamp each request's arrival.
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // The engine keeps its own thread: it releases each step's tokens at
    // their instant to within the OS's sleep precision (tens of µs), where
    // tokio's timer rounds every wake-up to the next millisecond, which a
    // time scale of 10 would turn into 10 ms steps of model time.
    let engine = {
        let (eng, metrics, stop) = (ServingEngine::new(cfg.deployment.clone()), metrics.clone(), stop.clone());
        let scale = cfg.time_scale;
        std::thread::Builder::new()
            .name("sim-engine".into())
            .spawn(move || run_engine(eng, (epoch, scale), rx, &metrics, &stop))
            .map_err(|e| SimError::Server(format!("cannot start the engine's thread: {e}")))?
    };
    let state = Arc::new(AppState {
        cfg,
        submit,
        next_id: AtomicU64::new(0),
        metrics: metrics.clone(),
        prompts: Mutex::default(),
        answers: AnswerLog::default(),
        epoch,
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/metrics", get(metrics_text))
        .layer(axum::middleware::map_response_with_state(state.clone(), announce_time_scale))
        .with_state(state);
    let (tx, rx_shutdown) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            }),
            app,
        )
        .with_graceful_shutdown(async move {
            let _ = rx_shutdown.await;
        })
        .await;
    });
    Ok(SimServerHandle { addr: local, shutdown: Some(tx), server, engine: Some(engine), stop, metrics })
}

struct Open {
    tx: mpsc::UnboundedSender<TokenMsg>,
    arrival: f64,
    last: f64,
}

/// The longest the engine sleeps without looking at its stop flag.
const ENGINE_POLL: Duration = Duration::from_millis(20);

fn run_engine(
    mut eng: ServingEngine,
    (epoch, scale): (Instant, f64),
    rx: std_mpsc::Receiver<Submission>,
    metrics: &Mutex<Metrics>,
    stop: &AtomicBool,
) {
    let wall = |model_s: f64| epoch + Duration::from_secs_f64(model_s / scale);
    let mut open: HashMap<u64, Open> = HashMap::new();
    let mut frontend = Frontend::default();
    let mut events: Vec<EngineEvent> = Vec::new();
    let mut closed = false;
    while !stop.load(Ordering::Relaxed) {
        // Take every request that has arrived.
        while !closed {
            match rx.try_recv() {
                Ok(sub) => frontend.receive(&mut eng, &mut open, sub),
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => closed = true,
            }
        }
        // Requests through the API server reach the engine core: between
        // steps at the engine's clock, or when idle at the wall clock.
        let now = if eng.has_work() { eng.now() } else { epoch.elapsed().as_secs_f64() * scale };
        frontend.release(&mut eng, now);
        if !eng.has_work() {
            publish(&eng, metrics);
            let next = frontend.next_due();
            if closed && next.is_none() {
                return;
            }
            // Idle: wait for a request, or for the next one's due time.
            let wait = next.map_or(ENGINE_POLL, |due| wall(due).saturating_duration_since(Instant::now()));
            let received = match closed {
                true => {
                    std::thread::sleep(wait.min(ENGINE_POLL));
                    None
                }
                false => match rx.recv_timeout(wait.min(ENGINE_POLL)) {
                    Ok(sub) => Some(sub),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                        closed = true;
                        None
                    }
                },
            };
            match (received, next) {
                (Some(sub), _) => frontend.receive(&mut eng, &mut open, sub),
                // Due now in model time: the engine starts from the due
                // time, not from the late wake-up.
                (None, Some(due)) if Instant::now() >= wall(due) => frontend.release(&mut eng, due),
                (None, _) => {}
            }
            continue;
        }
        // Steps chain on the engine's own clock: a late wake-up must not
        // stretch model time, so the engine only jumps to the wall clock
        // when it was idle.
        events.clear();
        let Some(step) = eng.step(&mut |e| events.push(e)) else {
            continue;
        };
        publish(&eng, metrics);
        let end = wall(step.end);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(left.min(ENGINE_POLL));
        }
        let mut m = metrics.lock().ok();
        for ev in &events {
            match *ev {
                EngineEvent::Token { id, index, t } => {
                    if let Some(o) = open.get_mut(&id) {
                        if let Some(m) = m.as_mut() {
                            if index == 0 {
                                m.ttft.observe(t - o.arrival);
                            } else {
                                m.itl.observe(t - o.last);
                            }
                        }
                        o.last = t;
                        // A closed connection just means nobody listens.
                        let _ = o.tx.send(TokenMsg::Token { index });
                    }
                }
                EngineEvent::Finished { id, t } => {
                    if let Some(o) = open.remove(&id) {
                        if let Some(m) = m.as_mut() {
                            m.e2e.observe(t - o.arrival);
                        }
                        let _ = o.tx.send(TokenMsg::Done);
                    }
                }
                EngineEvent::Preempted { .. } => {}
            }
        }
    }
}

/// Requests on their way through the API server to the engine core, by the
/// model time they reach it.
#[derive(Default)]
struct Frontend {
    pending: std::collections::BTreeMap<(u64, u64), (EngineRequest, PrefixKey)>,
}

impl Frontend {
    fn receive(&mut self, eng: &mut ServingEngine, open: &mut HashMap<u64, Open>, sub: Submission) {
        match sub {
            Submission::New { req, prefix, arrival, frontend_s, tx } => {
                // Time is counted from the request's arrival at the server,
                // as vLLM's own histograms count it; an idle engine's clock
                // may not go back to it.
                let arrival = if eng.has_work() { arrival } else { arrival.max(eng.now()) };
                open.insert(req.id, Open { tx, arrival, last: arrival });
                let due = arrival + frontend_s.max(0.0);
                self.pending.insert(((due * 1e9) as u64, req.id), (req, prefix));
            }
            Submission::Abort(id) => {
                open.remove(&id);
                let before = self.pending.len();
                self.pending.retain(|k, _| k.1 != id);
                if self.pending.len() == before {
                    eng.abort(id);
                }
            }
        }
    }

    /// Hands the engine every request due by `now` (model seconds).
    fn release(&mut self, eng: &mut ServingEngine, now: f64) {
        while let Some(entry) = self.pending.first_entry() {
            let due = entry.key().0 as f64 * 1e-9;
            if due > now {
                break;
            }
            let (req, prefix) = entry.remove();
            if !eng.has_work() {
                eng.advance_to(due);
            }
            eng.submit_with_prefix(req, prefix);
        }
    }

    fn next_due(&self) -> Option<f64> {
        self.pending.keys().next().map(|k| k.0 as f64 * 1e-9)
    }
}

fn publish(eng: &ServingEngine, metrics: &Mutex<Metrics>) {
    if let Ok(mut m) = metrics.lock() {
        let c = eng.counters();
        let s = &mut m.stats;
        s.num_requests_running = eng.num_running();
        s.num_requests_waiting = eng.num_waiting();
        s.max_waiting = s.max_waiting.max(eng.num_waiting());
        s.kv_cache_usage = eng.kv_usage().min(1.0);
        s.preemptions_total = c.preemptions;
        s.prompt_tokens_total = c.prompt_tokens;
        s.generation_tokens_total = c.generation_tokens;
        s.requests_finished_total = c.finished;
        s.prefix_queries_total = c.prefix_query_tokens;
        s.prefix_hits_total = c.prefix_hit_tokens;
    }
}

fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": "invalid_request_error", "code": status.as_u16()}});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

const FILLER: &[&str] = &[
    "the", "node", "gpu", "memory", "queue", "token", "batch", "latency", "kernel", "cache", "model", "request",
    "server", "stream", "cluster", "rack", "power", "fabric", "link", "shard", "layer", "step", "tensor", "block",
];

/// The pieces of text a request will receive, one per token.
fn plan_output(state: &AppState, id: u64, prompt: &str, max_tokens: Option<u32>) -> (Vec<String>, bool) {
    if let Some(responder) = &state.cfg.responder {
        if let Some(text) = responder(prompt) {
            let mut pieces = token_pieces(&text);
            if pieces.is_empty() {
                pieces.push(String::new());
            }
            let limit = max_tokens.map(|m| m.max(1) as usize).unwrap_or(usize::MAX);
            let truncated = pieces.len() > limit;
            pieces.truncate(limit);
            return (pieces, truncated);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(state.cfg.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let n = match max_tokens {
        Some(m) => m.max(1),
        None => {
            let (lo, hi) = state.cfg.default_output_tokens;
            rng.random_range(lo.max(1)..=hi.max(lo.max(1)))
        }
    };
    let pieces = (0..n).map(|_| format!(" {}", FILLER[rng.random_range(0..FILLER.len())])).collect();
    (pieces, true)
}

fn estimate_tokens(text: &str) -> u32 {
    (text.chars().count().div_ceil(4)).max(1).min(u32::MAX as usize) as u32
}

fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

struct Parsed {
    prompt: String,
    prompt_tokens: u32,
    prefix: PrefixKey,
    max_tokens: Option<u32>,
    stream: bool,
    include_usage: bool,
    model: String,
}

fn parse_request(state: &AppState, body: &[u8], chat: bool) -> Result<Parsed, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let mut messages = None;
    let prompt = if chat {
        let msgs = v
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| "'messages' must be an array of {role, content} objects".to_string())?;
        let texts: Vec<String> = msgs.iter().map(|m| content_text(m.get("content").unwrap_or(&Value::Null))).collect();
        let prompt = texts.join("\n");
        messages = Some((msgs, texts));
        prompt
    } else {
        match v.get("prompt") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
            _ => return Err("'prompt' must be a string".to_string()),
        }
    };
    // Extension: a client that knows its prompt length may state it.
    let estimated = estimate_tokens(&prompt);
    let prompt_tokens = v
        .get("sim_prompt_tokens")
        .and_then(Value::as_u64)
        .map(|n| n.clamp(1, u32::MAX as u64) as u32)
        .unwrap_or(estimated);
    let max_tokens = v
        .get("max_completion_tokens")
        .or_else(|| v.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|n| n.clamp(1, u32::MAX as u64) as u32);
    if !state.cfg.deployment.model.fits_context(prompt_tokens, max_tokens.unwrap_or(1)) {
        let limit = state.cfg.deployment.model.max_context;
        return Err(format!(
            "this model's maximum context length is {limit} tokens; the request has {prompt_tokens} prompt tokens and asks for {} more; shorten the prompt or lower max_tokens",
            max_tokens.unwrap_or(1)
        ));
    }
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage =
        v.get("stream_options").and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| state.cfg.served_model_name.clone());
    // A chat is keyed by its messages (sized in proportion when the client
    // stated the prompt's size); a completion's prompt is plain text, found
    // in the cache by its content.
    let per_estimated = f64::from(prompt_tokens) / f64::from(estimated);
    let prefix =
        match messages.and_then(|(msgs, texts)| conversation_prefix(msgs, &texts, per_estimated, &state.answers)) {
            Some(p) => p,
            None => state.prompts.lock().unwrap_or_else(|e| e.into_inner()).key(&prompt, prompt_tokens),
        };
    Ok(Parsed { prompt, prompt_tokens, prefix, max_tokens, stream, include_usage, model })
}

/// The prefix-cache key of a chat, from its messages: the system message
/// (if it opens the chat) as a shared prefix, and the conversation named by
/// its first user message, whose history is every message before the last
/// (the whole prompt of a chat's first turn, so that its second turn finds
/// it). A chat template puts an earlier answer back as the tokens the server
/// generated, so the answer is found when it is the text the server last
/// generated for the conversation (`answers`); a client that sends back
/// other text (a stand-in) has the history found up to the prompt before
/// it, and its answers are not kept. `None` for a chat of a system message
/// alone. Sizes are estimated from the text, times `per_estimated` (the
/// stated prompt size over the estimated one).
fn conversation_prefix(msgs: &[Value], texts: &[String], per_estimated: f64, answers: &AnswerLog) -> Option<PrefixKey> {
    use fleetbench_workload::text::hash_str;
    let role = |i: usize| msgs.get(i).and_then(|m| m.get("role")).and_then(Value::as_str);
    let system = role(0) == Some("system");
    let first = usize::from(system);
    if texts.len() <= first {
        return None;
    }
    let tokens = |t: &[String]| (f64::from(estimate_tokens(&t.join("\n"))) * per_estimated).round() as u32;
    let group = system.then(|| (hash_str(&texts[0]), tokens(&texts[..1])));
    let name = hash_str(&texts[..=first].join("\n")) ^ 0xC0;
    let n = texts.len();
    let (history, drop_answer) = match n.checked_sub(2).filter(|&a| a > first && role(a) == Some("assistant")) {
        Some(a) if !answers.generated(name, &texts[a]) => (&texts[..a], true),
        _ if n > first + 1 => (&texts[..n - 1], false),
        _ => (texts, false),
    };
    Some(PrefixKey { group, conversation: Some((name, tokens(history))), drop_answer })
}

/// The text the server last generated for each chat conversation, as a
/// hash, to tell the answer a client sends back from a stand-in.
#[derive(Default)]
struct AnswerLog(Mutex<HashMap<u64, u64>>);

impl AnswerLog {
    /// Forgets everything past this many conversations.
    const MAX: usize = 1 << 20;

    fn record(&self, conversation: u64, text: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= Self::MAX {
            m.clear();
        }
        m.insert(conversation, fleetbench_workload::text::hash_str(text.trim()));
    }

    fn generated(&self, conversation: u64, text: &str) -> bool {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&conversation) == Some(&fleetbench_workload::text::hash_str(text.trim()))
    }
}

async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    serve(state, body, true).await
}

async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    serve(state, body, false).await
}

async fn serve(state: Arc<AppState>, body: Bytes, chat: bool) -> Response {
    let p = match parse_request(&state, &body, chat) {
        Ok(p) => p,
        Err(msg) => return error_response(StatusCode::BAD_REQUEST, msg),
    };
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let (pieces, hit_limit) = plan_output(&state, id, &p.prompt, p.max_tokens);
    if let (true, Some((conversation, _))) = (chat, p.prefix.conversation) {
        state.answers.record(conversation, &pieces.concat());
    }
    let finish_reason = if hit_limit { "length" } else { "stop" };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let req = EngineRequest { id, prompt_tokens: p.prompt_tokens, output_tokens: pieces.len() as u32 };
    let frontend_s = state.cfg.deployment.engine.frontend_latency_s(p.prompt_tokens);
    let arrival = state.epoch.elapsed().as_secs_f64() * state.cfg.time_scale;
    if state.submit.send(Submission::New { req, prefix: p.prefix, arrival, frontend_s, tx }).is_err() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "the simulated engine has stopped");
    }
    let mut guard = AbortOnDrop { id, submit: state.submit.clone(), finished: false };
    let rid = if chat { format!("chatcmpl-sim-{id}") } else { format!("cmpl-sim-{id}") };
    let created = unix_now();
    let usage = json!({
        "prompt_tokens": p.prompt_tokens,
        "completion_tokens": pieces.len(),
        "total_tokens": p.prompt_tokens as usize + pieces.len(),
    });
    let object = if chat { "chat.completion.chunk" } else { "text_completion" };
    if !p.stream {
        while let Some(msg) = rx.recv().await {
            if let TokenMsg::Done = msg {
                guard.finished = true;
                break;
            }
        }
        let text: String = pieces.concat();
        let body = if chat {
            json!({
                "id": rid, "object": "chat.completion", "created": created, "model": p.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
                "usage": usage,
            })
        } else {
            json!({
                "id": rid, "object": "text_completion", "created": created, "model": p.model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason}],
                "usage": usage,
            })
        };
        return ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    }
    let n = pieces.len();
    let shape = ChunkShape::of(&state.cfg.deployment.engine.id);
    let model = p.model.clone();
    let include_usage = p.include_usage;
    let chunk = move |delta: Delta<'_>, finish: Option<&str>| -> Bytes {
        let choice = if chat {
            let delta = match delta {
                Delta::Role => json!({"role": "assistant", "content": shape.role_content()}),
                Delta::Content(text) => json!({"content": text}),
                Delta::Empty => json!({}),
            };
            let mut c = json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish});
            if shape == ChunkShape::Sglang {
                c["matched_stop"] = Value::Null;
            }
            c
        } else {
            let text = match delta {
                Delta::Content(text) => text,
                _ => "",
            };
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
        };
        let mut v = json!({"id": rid, "object": object, "created": created, "model": model, "choices": [choice]});
        if shape == ChunkShape::Sglang {
            v["usage"] = Value::Null;
        }
        Bytes::from(format!("data: {v}\n\n"))
    };
    let usage_chunk = {
        let v = json!({"id": format!("{}-usage", if chat { "chatcmpl-sim" } else { "cmpl-sim" }), "object": object, "created": created, "model": p.model, "choices": [], "usage": usage});
        Bytes::from(format!("data: {v}\n\n"))
    };
    let (body_tx, body_rx) = mpsc::unbounded_channel::<Result<Bytes, Infallible>>();
    tokio::spawn(async move {
        // Own the whole guard here: a hang-up ends this task and aborts.
        let mut guard = guard;
        let mut first = true;
        while let Some(msg) = rx.recv().await {
            match msg {
                TokenMsg::Token { index } => {
                    // The role chunk goes out with the first token, as the
                    // real engines send it: a client timing its first chunk
                    // then measures the prefill, not the connection.
                    if chat && first && body_tx.send(Ok(chunk(Delta::Role, None))).is_err() {
                        return;
                    }
                    first = false;
                    let i = index as usize;
                    let last = i + 1 >= n;
                    let text = pieces.get(i).map(String::as_str).unwrap_or("");
                    let finish = (last && !shape.separate_finish()).then_some(finish_reason);
                    if body_tx.send(Ok(chunk(Delta::Content(text), finish))).is_err() {
                        return;
                    }
                    if last
                        && shape.separate_finish()
                        && body_tx.send(Ok(chunk(Delta::Empty, Some(finish_reason)))).is_err()
                    {
                        return;
                    }
                }
                TokenMsg::Done => {
                    guard.finished = true;
                    break;
                }
            }
        }
        if include_usage {
            let _ = body_tx.send(Ok(usage_chunk));
        }
        let _ = body_tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    });
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error_response(StatusCode::INTERNAL_SERVER_ERROR, "could not build the stream"))
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let body = json!({
        "object": "list",
        "data": [{
            "id": state.cfg.served_model_name,
            "object": "model",
            "created": unix_now(),
            "owned_by": "fleetbench-sim",
            "max_model_len": state.cfg.deployment.model.max_context,
        }],
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The response header that tells clients the server's time scale (see
/// [`SimServerConfig::time_scale`]): its figures, measured on the wall
/// clock, are this many times faster than the hardware it models.
pub const TIME_SCALE_HEADER: &str = "x-fleetbench-time-scale";

/// Puts [`TIME_SCALE_HEADER`] on every response.
async fn announce_time_scale(State(state): State<Arc<AppState>>, mut r: Response) -> Response {
    if let Ok(v) = header::HeaderValue::from_str(&state.cfg.time_scale.to_string()) {
        r.headers_mut().insert(TIME_SCALE_HEADER, v);
    }
    r
}

/// A label value in the text exposition format: backslash, quote and line
/// feed escaped.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    use std::fmt::Write;
    let labels = format!("model_name=\"{}\"", label_value(&state.cfg.served_model_name));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP fleetbench:time_scale Model seconds per wall-clock second: latencies measured by a client are this many times shorter than on the modelled hardware.\n# TYPE fleetbench:time_scale gauge\nfleetbench:time_scale {}",
        state.cfg.time_scale
    );
    if let Ok(m) = state.metrics.lock() {
        let s = &m.stats;
        let gauges: [(&str, &str, f64); 3] = [
            ("vllm:num_requests_running", "Requests in the running batch.", s.num_requests_running as f64),
            ("vllm:num_requests_waiting", "Requests waiting to be scheduled.", s.num_requests_waiting as f64),
            ("vllm:kv_cache_usage_perc", "KV-cache usage, 1 = full.", s.kv_cache_usage),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {v}");
        }
        let counters: [(&str, &str, u64); 6] = [
            ("vllm:num_preemptions_total", "Requests preempted (KV cache full) since start.", s.preemptions_total),
            ("vllm:prompt_tokens_total", "Prompt tokens prefilled since start.", s.prompt_tokens_total),
            ("vllm:generation_tokens_total", "Tokens generated since start.", s.generation_tokens_total),
            ("vllm:request_success_total", "Requests finished since start.", s.requests_finished_total),
            ("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.", s.prefix_queries_total),
            ("vllm:prefix_cache_hits_total", "Prompt tokens the prefix cache held.", s.prefix_hits_total),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{labels}}} {v}");
        }
        let histograms = [
            ("vllm:time_to_first_token_seconds", "Time to first token in model seconds.", &m.ttft),
            ("vllm:inter_token_latency_seconds", "Time between two tokens of a request in model seconds.", &m.itl),
            ("vllm:e2e_request_latency_seconds", "Time from arrival to last token in model seconds.", &m.e2e),
        ];
        for (name, help, h) in histograms {
            let _ = writeln!(out, "# HELP {name} {help}");
            h.render(name, &labels, &mut out);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// One streamed chunk's delta.
#[derive(Clone, Copy)]
enum Delta<'a> {
    Role,
    Content(&'a str),
    Empty,
}

/// Whose chunk shapes the stream copies: vLLM's (also TensorRT-LLM's
/// `trtllm-serve` and ExLlamaV2's OpenAI front ends), SGLang's (extra
/// `matched_stop` and `usage: null` keys) or llama.cpp's server (role chunk
/// with `content: null`, finish reason in a chunk of its own with an empty
/// delta). Every engine sends the role chunk with the first token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ChunkShape {
    Vllm,
    Sglang,
    LlamaCpp,
}

impl ChunkShape {
    fn of(engine_id: &str) -> ChunkShape {
        match engine_id {
            "sglang" => ChunkShape::Sglang,
            "llamacpp" => ChunkShape::LlamaCpp,
            _ => ChunkShape::Vllm,
        }
    }
    fn role_content(self) -> Value {
        match self {
            ChunkShape::LlamaCpp => Value::Null,
            _ => Value::String(String::new()),
        }
    }
    fn separate_finish(self) -> bool {
        self == ChunkShape::LlamaCpp
    }
}

/// Cuts a scripted answer into token-sized pieces the way a BPE tokenizer
/// roughly does for English and JSON: a piece ends after whitespace or at
/// four characters, so compact JSON costs about as many tokens as it would
/// from a real model.
fn token_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if c.is_whitespace() || cur.chars().count() >= 4 {
            pieces.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        pieces.push(cur);
    }
    pieces
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_are_cut_into_token_sized_pieces() {
        let text = "{\"label\": \"ok\"} done";
        let p = super::token_pieces(text);
        assert_eq!(p.concat(), text);
        assert_eq!(p, ["{\"la", "bel\"", ": ", "\"ok\"", "} ", "done"]);
    }
}
