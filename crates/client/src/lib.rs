//! Talking to backends: one [`Client`] sends a [`RequestSpec`] over the
//! OpenAI chat or completions API or the Anthropic Messages API, streaming
//! or not, and returns a [`RequestRecord`] with every instant docs/METRICS.md
//! asks for. Failures never panic and never escape as errors: each one is
//! classified into an [`ErrorKind`] on the record.

pub mod anthropic;
#[cfg(target_os = "linux")]
mod h1;
pub mod openai;
pub mod prom;
pub mod promapi;
pub mod sse;
pub mod stamps;
pub mod tools;
mod transport;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetbench_core::{
    ApiKind, ErrorKind, RequestError, RequestRecord, RequestSpec, RunClock, ServerTimings, TokenSource,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use crate::openai::{Chunk, Usage};
use crate::sse::{SseDecoder, SseError, SseEvent};
use crate::transport::{error_chain, Body, SendError, Transport};

/// An API key. Its `Debug` never shows the key, so it cannot leak through
/// logs or error chains.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }
    /// Reads the key from an environment variable; `None` when unset or empty.
    pub fn from_env(var: &str) -> Option<ApiKey> {
        std::env::var(var).ok().filter(|k| !k.trim().is_empty()).map(|k| ApiKey(k.trim().to_string()))
    }
    /// Reads the key from a file the user names (first line, trimmed).
    pub fn from_file(path: &std::path::Path) -> std::io::Result<ApiKey> {
        let text = std::fs::read_to_string(path)?;
        Ok(ApiKey(text.lines().next().unwrap_or("").trim().to_string()))
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Per-request time limits; each failing one is its own error kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub first_token: Option<Duration>,
    pub idle: Option<Duration>,
    pub total: Option<Duration>,
}

/// How to reach one backend.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL including the version path, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub api: ApiKind,
    pub model: String,
    pub api_key: Option<ApiKey>,
    pub stream: bool,
    pub timeouts: Timeouts,
    /// Retries allowed on 429, honouring `Retry-After`.
    pub retry_429: u32,
    /// Keep the generated text on the record (the arena needs it).
    pub keep_output_text: bool,
    /// Largest response body accepted.
    pub max_body_bytes: usize,
    /// Largest single stream event accepted.
    pub max_event_bytes: usize,
    /// Tools offered with every request (`tools` in the body).
    pub tools: Option<Arc<tools::Tools>>,
    /// Time each arrival by the kernel's receive stamp where the platform
    /// and connection allow (Linux, plain HTTP, no proxy), so that the
    /// client's own lag stays out of the figures. See
    /// [`Client::kernel_stamps`].
    pub kernel_stamps: bool,
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, api: ApiKind, model: impl Into<String>) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            api,
            model: model.into(),
            api_key: None,
            stream: true,
            timeouts: Timeouts::default(),
            retry_429: 0,
            keep_output_text: false,
            max_body_bytes: 64 << 20,
            max_event_bytes: 4 << 20,
            tools: None,
            kernel_stamps: true,
        }
    }
}

/// Errors building a client or probing a backend (request failures are
/// recorded on the [`RequestRecord`] instead).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid backend URL '{url}': {why} (expected something like http://127.0.0.1:8000/v1)")]
    InvalidUrl { url: String, why: String },
    #[error("could not build the HTTP client: {0}")]
    Build(String),
    #[error("the backend at {url} is unreachable: {why}. Is the server running and listening there?")]
    Unreachable { url: String, why: String },
}

/// Sends requests to one backend. Cheap to clone; share one per backend.
#[derive(Clone, Debug)]
pub struct Client {
    http: Transport,
    /// The API key's headers (marked sensitive), the version header.
    auth: Arc<Vec<(HeaderName, HeaderValue)>>,
    cfg: Arc<ClientConfig>,
    endpoint: String,
    /// What the backend announced in [`TIME_SCALE_HEADER`] when probed.
    time_scale: Arc<std::sync::OnceLock<f64>>,
}

/// The response header by which a backend that runs faster than the
/// hardware it models (`fleetbench sim serve --time-scale 20`) says by how
/// much. See [`Client::time_scale`].
pub const TIME_SCALE_HEADER: &str = "x-fleetbench-time-scale";

/// The time scale in a response's headers: a finite number above zero.
fn announced_time_scale(headers: &HeaderMap) -> Option<f64> {
    let v = headers.get(TIME_SCALE_HEADER)?.to_str().ok()?.trim().parse::<f64>().ok()?;
    (v.is_finite() && v > 0.0).then_some(v)
}

/// Most of a non-2xx body kept for the error message.
const ERROR_BODY_BYTES: usize = 2048;
/// Fresh-connection retries after a server closed a pooled connection
/// before answering.
const MAX_RECONNECTS: u32 = 2;
/// Longest wait, after a stream's last event, for the end of its body, so
/// that its connection goes back to the pool; usually the end is already
/// there or microseconds away.
const BODY_END_WAIT: Duration = Duration::from_millis(50);
/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client, ClientError> {
        let base = cfg.base_url.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base).map_err(|e| ClientError::InvalidUrl {
            url: fleetbench_core::run::redact_url(&base),
            why: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::InvalidUrl {
                url: fleetbench_core::run::redact_url(&base),
                why: "the scheme must be http or https".into(),
            });
        }
        let path = match cfg.api {
            ApiKind::Chat => "/chat/completions",
            ApiKind::Completions => "/completions",
            ApiKind::Anthropic => "/messages",
        };
        let http = Transport::new(&transport::Options {
            connect_timeout: cfg.timeouts.connect,
            kernel_stamps: cfg.kernel_stamps,
            plain_http: url.scheme() == "http",
            loopback: is_loopback(&url),
        })
        .map_err(ClientError::Build)?;
        Ok(Client {
            http,
            auth: Arc::new(auth_headers(cfg.api_key.as_ref(), cfg.api)?),
            endpoint: format!("{base}{path}"),
            cfg: Arc::new(ClientConfig { base_url: base, ..cfg }),
            time_scale: Arc::default(),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The same client (connections, time scale) keeping each answer's text
    /// on its record: a session's sender carries the model's answers into
    /// the next turn's history.
    pub fn keeping_output_text(&self) -> Client {
        Client { cfg: Arc::new(ClientConfig { keep_output_text: true, ..(*self.cfg).clone() }), ..self.clone() }
    }

    /// How many times faster than the hardware it models the backend runs,
    /// as its answer to [`Client::probe`] announced in [`TIME_SCALE_HEADER`]
    /// (`None`: not announced, or not probed yet). Figures measured against
    /// it are in accelerated time unless multiplied back.
    pub fn time_scale(&self) -> Option<f64> {
        self.time_scale.get().copied()
    }

    /// Are arrivals timed by the kernel's receive stamps (Linux, plain
    /// HTTP, no proxy, [`ClientConfig::kernel_stamps`])? Otherwise by when
    /// the client read them.
    pub fn kernel_stamps(&self) -> bool {
        self.http.kernel_stamps()
    }

    /// Checks that something answers HTTP at the base URL (`GET /models`);
    /// any status counts as reachable. Notes the time scale the answer
    /// announces (see [`Client::time_scale`]).
    pub async fn probe(&self, timeout: Duration) -> Result<(), ClientError> {
        let unreachable = |why: String| ClientError::Unreachable {
            url: fleetbench_core::run::redact_url(&self.cfg.base_url),
            why: self.scrub(&why),
        };
        let req = self.request(http::Method::GET, &format!("{}/models", self.cfg.base_url), None)?;
        match tokio::time::timeout(timeout, self.http.send(req)).await {
            Ok(Ok(r)) => {
                if let Some(scale) = announced_time_scale(&r.headers) {
                    let _ = self.time_scale.set(scale);
                }
                Ok(())
            }
            Ok(Err(e)) => Err(unreachable(e.chain)),
            Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
        }
    }

    /// Opens connections to the backend before a run, as a client that has
    /// been talking to the server has them, so that the run's first
    /// requests measure the server and not TCP's handshake: `n` requests
    /// `GET /models` (as [`Client::probe`]) sent together, so that each
    /// starts a connection of its own (connections already idle in the pool
    /// are used first); then their answers are read and the connections
    /// wait, idle, in the pool. Returns how many were answered (over HTTP/2
    /// they share one connection). Best effort: what fails is left out. A
    /// server whose accept queue is shorter than `n` drops the excess SYNs
    /// and TCP retries them a second later, still before the run.
    pub async fn preconnect(&self, n: usize, timeout: Duration) -> usize {
        let url = format!("{}/models", self.cfg.base_url);
        let sends = (0..n).map(|_| async {
            let req = self.request(http::Method::GET, &url, None).ok()?;
            let read = async {
                let mut answer = self.http.send(req).await.ok()?;
                // Reading the answer to its end puts its connection in the pool.
                while let Some(piece) = answer.body.next().await {
                    piece.ok()?;
                }
                Some(())
            };
            tokio::time::timeout(timeout, read).await.ok().flatten()
        });
        futures_util::future::join_all(sends).await.into_iter().flatten().count()
    }

    /// A request with the client's headers (user agent, API key) and the
    /// given body (sent as JSON).
    fn request(
        &self,
        method: http::Method,
        url: &str,
        json: Option<String>,
    ) -> Result<http::Request<Bytes>, ClientError> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(url)
            .header(http::header::USER_AGENT, concat!("fleetbench/", env!("CARGO_PKG_VERSION")))
            .header(http::header::ACCEPT, "*/*");
        for (k, v) in self.auth.iter() {
            b = b.header(k, v);
        }
        if json.is_some() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        b.body(json.map(Bytes::from).unwrap_or_default())
            .map_err(|e| ClientError::InvalidUrl { url: fleetbench_core::run::redact_url(url), why: e.to_string() })
    }

    /// Removes the API key from any text that came back from the server.
    fn scrub(&self, text: &str) -> String {
        match &self.cfg.api_key {
            Some(k) if !k.expose().is_empty() => text.replace(k.expose(), "<redacted>"),
            _ => text.to_string(),
        }
    }

    /// Sends one request and measures it. `t_sched` is when the schedule
    /// wanted it sent, on `clock`.
    pub async fn send(&self, spec: &RequestSpec, clock: &RunClock, t_sched: f64) -> RequestRecord {
        let mut rec =
            RequestRecord { request_id: spec.id.clone(), label: spec.label.clone(), t_sched, ..Default::default() };
        let first_send = clock.now();
        let total_deadline = self.cfg.timeouts.total.map(|d| Instant::from_std(clock.instant_at(first_send)) + d);
        let mut reconnects = 0;
        let mut rate_limited = 0;
        loop {
            let retries = rec.retries;
            rec = RequestRecord {
                request_id: spec.id.clone(),
                label: spec.label.clone(),
                t_sched,
                retries,
                ..Default::default()
            };
            rec.t_send = clock.now();
            let result = self.attempt(spec, clock, &mut rec, total_deadline).await;
            match result {
                Ok(ended) => {
                    rec.t_end = ended;
                    break;
                }
                Err(Failure { error, retry_after, closed_before_response }) => {
                    // Servers close idle keep-alive connections at will; a
                    // request that met such a connection was never read.
                    if closed_before_response && reconnects < MAX_RECONNECTS {
                        reconnects += 1;
                        rec.retries += 1;
                        continue;
                    }
                    if error.kind == ErrorKind::RateLimited && rate_limited < self.cfg.retry_429 {
                        let wait = retry_after.unwrap_or(Duration::from_secs(1)).min(MAX_RETRY_AFTER);
                        let wake = Instant::now() + wait;
                        if total_deadline.is_none_or(|d| wake < d) {
                            tokio::time::sleep_until(wake).await;
                            rate_limited += 1;
                            rec.retries += 1;
                            continue;
                        }
                    }
                    let message = self.scrub(&error.message);
                    rec.error = Some(RequestError { message, ..error });
                    rec.t_end = clock.now();
                    break;
                }
            }
        }
        if !self.cfg.keep_output_text {
            rec.output_text = None;
        }
        rec
    }

    /// One try: the instant the response ended, or why it failed.
    async fn attempt(
        &self,
        spec: &RequestSpec,
        clock: &RunClock,
        rec: &mut RequestRecord,
        total_deadline: Option<Instant>,
    ) -> Result<f64, Failure> {
        // A model mix names each request's model; else the client's own.
        let model = spec.context.model.as_deref().unwrap_or(&self.cfg.model);
        let mut body = match self.cfg.api {
            ApiKind::Anthropic => anthropic::request_body(model, spec, self.cfg.stream),
            api => openai::request_body(api, model, spec, self.cfg.stream),
        };
        if let (Some(t), Some(o)) = (&self.cfg.tools, body.as_object_mut()) {
            o.insert("tools".into(), t.for_api(self.cfg.api).clone());
        }
        // A fleetbench simulator (it announced its time scale) is told the
        // prompt's size as the workload built it, which it would otherwise
        // estimate from the text; it is the size `sim replay` replays.
        if let (Some(_), Some(n), Some(o)) = (self.time_scale(), spec.expected_input_tokens, body.as_object_mut()) {
            if self.cfg.api != ApiKind::Anthropic {
                o.insert("sim_prompt_tokens".into(), n.into());
            }
        }
        let t_send_instant = Instant::from_std(clock.instant_at(rec.t_send));
        let first_token_deadline = self.cfg.timeouts.first_token.map(|d| t_send_instant + d);
        let mut req = self
            .request(http::Method::POST, &self.endpoint, Some(body.to_string()))
            .map_err(|e| Failure::new(ErrorKind::Other, e.to_string()))?;
        let id = HeaderValue::from_str(&spec.id).map_err(|_| {
            Failure::new(ErrorKind::Other, format!("the request id {:?} is not a valid HTTP header value", spec.id))
        })?;
        req.headers_mut().insert(HeaderName::from_static("x-request-id"), id);

        let wait = earliest(first_token_deadline, total_deadline);
        let sent = match wait {
            Some((deadline, which)) => match tokio::time::timeout_at(deadline, self.http.send(req)).await {
                Ok(r) => r,
                Err(_) => return Err(Failure::new(which.kind(), which.message())),
            },
            None => self.http.send(req).await,
        };
        let resp = sent.map_err(|e| Failure::from_send(e, "sending the request"))?;
        let status = resp.status;
        rec.http_status = Some(status.as_u16());
        if !status.is_success() {
            let retry_after = resp
                .headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64);
            let text = read_error_body(resp.body).await;
            let kind = if status.as_u16() == 429 { ErrorKind::RateLimited } else { ErrorKind::HttpStatus };
            return Err(Failure {
                error: RequestError::new(kind, format!("HTTP {status}: {text}")).with_status(status.as_u16()),
                retry_after,
                closed_before_response: false,
            });
        }

        let mut state = StreamState::new(self.cfg.api, self.cfg.keep_output_text);
        let mut body_bytes = 0usize;
        let mut whole = Vec::new();
        let wire = resp.wire.unwrap_or_default();
        // The server's time counts from when the request was written.
        rec.t_send = wire.left(clock.now(), rec.t_send);
        let mut stream = resp.body;
        let mut decoder = SseDecoder::new(self.cfg.max_event_bytes);
        loop {
            let token_deadline = if state.first_token.is_none() {
                first_token_deadline.map(|d| (d, Which::FirstToken))
            } else {
                self.cfg.timeouts.idle.map(|d| (Instant::from_std(clock.instant_at(state.last_token)) + d, Which::Idle))
            };
            let deadline = match (token_deadline, total_deadline) {
                (Some(a), Some(t)) if t <= a.0 => Some((t, Which::Total)),
                (Some(a), _) => Some(a),
                (None, Some(t)) => Some((t, Which::Total)),
                (None, None) => None,
            };
            let next = match deadline {
                Some((d, which)) => match tokio::time::timeout_at(d, stream.next()).await {
                    Ok(n) => n,
                    Err(_) => return Err(Failure::new(which.kind(), which.message())),
                },
                None => stream.next().await,
            };
            // When these bytes arrived: by the kernel's stamp where there
            // is one, never before the event before them.
            let now = wire.arrived(clock.now(), state.last_event(rec.t_send));
            let bytes = match next {
                None => break,
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    state.finish_into(rec);
                    return Err(Failure::new(
                        ErrorKind::TruncatedStream,
                        format!("the connection broke mid-response: {}", error_chain(&*e)),
                    ));
                }
            };
            if rec.t_first_byte.is_none() {
                rec.t_first_byte = Some(now);
            }
            body_bytes += bytes.len();
            if body_bytes > self.cfg.max_body_bytes {
                state.finish_into(rec);
                return Err(Failure::new(
                    ErrorKind::BodyTooLarge,
                    format!("the response exceeded {} bytes", self.cfg.max_body_bytes),
                ));
            }
            if !self.cfg.stream {
                whole.extend_from_slice(bytes);
                continue;
            }
            decoder.push(bytes, &mut |ev: &SseEvent| state.handle(ev, now))?;
            if state.done {
                break;
            }
        }
        let now = wire.arrived(clock.now(), state.last_event(rec.t_send));
        if self.cfg.stream {
            if !state.done {
                decoder.finish(&mut |ev: &SseEvent| state.handle(ev, now))?;
            }
            state.finish_into(rec);
            if !state.done && state.finish_reason.is_none() {
                return Err(Failure::new(
                    ErrorKind::TruncatedStream,
                    "the stream ended before the response was finished (no finish reason, no [DONE])",
                ));
            }
            // The response ended with its last event; the body's own end
            // follows (a chunked body's last chunk). Reading it returns the
            // connection to the pool: dropping a body before its end closes
            // the connection, and the next request would connect anew.
            let _ = tokio::time::timeout(BODY_END_WAIT, async { while let Some(Ok(_)) = stream.next().await {} }).await;
        } else {
            let text = String::from_utf8(whole)
                .map_err(|_| Failure::new(ErrorKind::InvalidUtf8, "the response body is not valid UTF-8"))?;
            let parsed = match self.cfg.api {
                ApiKind::Anthropic => anthropic::parse_body(&text),
                _ => openai::parse_body(&text),
            }
            .map_err(|e| Failure::new(ErrorKind::MalformedStream, format!("the response is not valid JSON: {e}")))?;
            if let Some(err) = parsed.error {
                return Err(Failure::new(ErrorKind::ServerErrorEvent, err));
            }
            state.absorb(parsed, now)?;
            state.finish_into(rec);
        }
        Ok(now)
    }
}

/// A failed attempt: the error and, for 429, how long the server asked us
/// to wait.
struct Failure {
    error: RequestError,
    retry_after: Option<Duration>,
    /// The server closed a (possibly pooled, keep-alive) connection before
    /// any response: sending again on a fresh connection is safe.
    closed_before_response: bool,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure { error: RequestError::new(kind, message), retry_after: None, closed_before_response: false }
    }

    fn from_send(e: SendError, doing: &str) -> Failure {
        let chain = e.chain;
        if e.connect {
            if e.timeout || chain.contains("timed out") {
                return Failure::new(ErrorKind::TimeoutConnect, format!("connecting timed out: {chain}"));
            }
            return Failure::new(ErrorKind::Connect, format!("could not connect: {chain}"));
        }
        if e.timeout {
            return Failure::new(ErrorKind::TimeoutConnect, format!("timed out {doing}: {chain}"));
        }
        if e.malformed {
            return Failure::new(ErrorKind::MalformedStream, format!("the answer is not valid HTTP/1.1: {chain}"));
        }
        Failure {
            closed_before_response: true,
            ..Failure::new(
                ErrorKind::TruncatedStream,
                format!("the server closed the connection before answering ({doing}): {chain}"),
            )
        }
    }
}

impl From<SseError> for Failure {
    fn from(e: SseError) -> Failure {
        match e {
            SseError::InvalidUtf8 => Failure::new(ErrorKind::InvalidUtf8, e.to_string()),
            SseError::EventTooLarge { .. } => Failure::new(ErrorKind::BodyTooLarge, e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    FirstToken,
    Idle,
    Total,
}

impl Which {
    fn kind(self) -> ErrorKind {
        match self {
            Which::FirstToken => ErrorKind::TimeoutFirstToken,
            Which::Idle => ErrorKind::TimeoutIdle,
            Which::Total => ErrorKind::TimeoutTotal,
        }
    }
    fn message(self) -> &'static str {
        match self {
            Which::FirstToken => "no token arrived within --timeout-first-token",
            Which::Idle => "no token arrived within --timeout-idle of the previous one",
            Which::Total => "the request exceeded --timeout-total",
        }
    }
}

fn earliest(first: Option<Instant>, total: Option<Instant>) -> Option<(Instant, Which)> {
    match (first, total) {
        (Some(f), Some(t)) if t <= f => Some((t, Which::Total)),
        (Some(f), _) => Some((f, Which::FirstToken)),
        (None, Some(t)) => Some((t, Which::Total)),
        (None, None) => None,
    }
}

/// Everything learned from the stream so far.
struct StreamState {
    api: ApiKind,
    keep_text: bool,
    first_token: Option<f64>,
    last_token: f64,
    itl: Vec<f64>,
    events: u64,
    text: String,
    finish_reason: Option<String>,
    usage: Usage,
    timings: Option<ServerTimings>,
    done: bool,
    first_answer: Option<f64>,
    first_tool: Option<f64>,
    reasoning_events: u64,
    calls: tools::ToolCalls,
}

impl StreamState {
    fn new(api: ApiKind, keep_text: bool) -> StreamState {
        StreamState {
            api,
            keep_text,
            first_token: None,
            last_token: 0.0,
            itl: Vec::new(),
            events: 0,
            text: String::new(),
            finish_reason: None,
            usage: Usage::default(),
            timings: None,
            done: false,
            first_answer: None,
            first_tool: None,
            reasoning_events: 0,
            calls: tools::ToolCalls::default(),
        }
    }

    /// The instant of the last event so far: the last token, or the send
    /// (`t_send`) before the first.
    fn last_event(&self, t_send: f64) -> f64 {
        if self.first_token.is_some() {
            self.last_token
        } else {
            t_send
        }
    }

    fn handle(&mut self, ev: &SseEvent, now: f64) -> Result<(), Failure> {
        let parsed = match self.api {
            ApiKind::Anthropic => anthropic::parse_event(ev.event.as_deref(), &ev.data),
            _ => {
                if ev.event.as_deref() == Some("error") {
                    return Err(Failure::new(ErrorKind::ServerErrorEvent, ev.data.clone()));
                }
                openai::parse_chunk(&ev.data)
            }
        };
        let chunk = parsed.map_err(|e| {
            let mut sample: String = ev.data.chars().take(80).collect();
            if ev.data.len() > sample.len() {
                sample.push('…');
            }
            Failure::new(ErrorKind::MalformedStream, format!("unparseable stream event ({e}): {sample}"))
        })?;
        if let Some(c) = chunk {
            if let Some(err) = &c.error {
                return Err(Failure::new(ErrorKind::ServerErrorEvent, format!("the server sent an error: {err}")));
            }
            self.absorb(c, now)?;
        }
        Ok(())
    }

    fn absorb(&mut self, mut c: Chunk, now: f64) -> Result<(), Failure> {
        if c.has_token {
            match self.first_token {
                None => self.first_token = Some(now),
                Some(_) => self.itl.push(now - self.last_token),
            }
            self.last_token = now;
            self.events += 1;
            self.absorb_kinds(&mut c, now)?;
        }
        if self.keep_text {
            self.text.push_str(&c.text);
        }
        if c.finish_reason.is_some() {
            self.finish_reason = c.finish_reason;
        }
        if let Some(u) = c.usage {
            self.usage.prompt_tokens = u.prompt_tokens.or(self.usage.prompt_tokens);
            self.usage.completion_tokens = u.completion_tokens.or(self.usage.completion_tokens);
            self.usage.reasoning_tokens = u.reasoning_tokens.or(self.usage.reasoning_tokens);
        }
        if c.timings.is_some() {
            self.timings = c.timings;
        }
        self.done |= c.done;
        Ok(())
    }

    /// Answer, reasoning and tool-call pieces, told apart.
    fn absorb_kinds(&mut self, c: &mut Chunk, now: f64) -> Result<(), Failure> {
        if c.answer && self.first_answer.is_none() {
            self.first_answer = Some(now);
        }
        if c.reasoning {
            self.reasoning_events += 1;
        }
        if !c.tool_deltas.is_empty() {
            self.first_tool.get_or_insert(now);
            for d in c.tool_deltas.drain(..) {
                if !self.calls.push(d) {
                    return Err(Failure::new(
                        ErrorKind::MalformedStream,
                        format!("the response made more than {} tool calls", tools::MAX_CALLS),
                    ));
                }
            }
        }
        Ok(())
    }

    fn finish_into(&mut self, rec: &mut RequestRecord) {
        rec.t_first_token = self.first_token;
        rec.t_last_token = self.first_token.map(|_| self.last_token);
        rec.itl = std::mem::take(&mut self.itl);
        rec.token_events = self.events;
        rec.event_tokens = self.events;
        match self.usage.completion_tokens {
            Some(n) => {
                rec.output_tokens = n;
                rec.token_source = TokenSource::Server;
            }
            None => {
                rec.output_tokens = self.events;
                rec.token_source = TokenSource::Events;
            }
        }
        rec.input_tokens = self.usage.prompt_tokens;
        rec.reasoning_tokens =
            self.usage.reasoning_tokens.or((self.reasoning_events > 0).then_some(self.reasoning_events));
        rec.t_first_answer_token = self.first_answer;
        rec.t_first_tool_token = self.first_tool;
        rec.tool_calls = self.calls.take();
        rec.finish_reason = self.finish_reason.clone();
        rec.server_timings = self.timings;
        if self.keep_text {
            rec.output_text = Some(std::mem::take(&mut self.text));
        }
    }
}

async fn read_error_body(mut stream: Body) -> String {
    let mut buf = Vec::new();
    let read = async {
        while let Some(Ok(b)) = stream.next().await {
            buf.extend_from_slice(b);
            if buf.len() >= ERROR_BODY_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
    buf.truncate(ERROR_BODY_BYTES);
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v.get("error").map(openai::error_text).unwrap_or_else(|| text.to_string()),
        Err(_) => text.to_string(),
    }
}

/// The headers that carry the API key (marked sensitive, so that no log
/// or debug print shows them) and the Anthropic API version.
fn auth_headers(key: Option<&ApiKey>, api: ApiKind) -> Result<Vec<(HeaderName, HeaderValue)>, ClientError> {
    let secret = |text: String| {
        let mut v = HeaderValue::from_str(&text).map_err(|_| {
            ClientError::Build("the API key holds characters an HTTP header cannot carry (a line break?)".into())
        })?;
        v.set_sensitive(true);
        Ok::<_, ClientError>(v)
    };
    let mut headers = Vec::new();
    match (key, api) {
        (Some(k), ApiKind::Anthropic) => {
            headers.push((HeaderName::from_static("x-api-key"), secret(k.expose().to_string())?))
        }
        (Some(k), _) => headers.push((http::header::AUTHORIZATION, secret(format!("Bearer {}", k.expose()))?)),
        (None, _) => {}
    }
    if api == ApiKind::Anthropic {
        headers.push((HeaderName::from_static("anthropic-version"), HeaderValue::from_static(anthropic::API_VERSION)));
    }
    Ok(headers)
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
