//! The HTTP side: routes, the token check on every request, security
//! headers, the stored-run list, reports, and the server-sent-event stream
//! of live runs (coalesced per client, clients capped).

use axum::serve::ListenerExt as _;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::{DashConfig, DashError};
use fleetbench_load::live::{LiveBus, LiveSnapshot};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Name of the cookie that carries the token after `?token=`.
pub const TOKEN_COOKIE: &str = "fleetbench_dash_token";

/// Scripts only from this origin (no inline script at all), styles from
/// this origin or inline (the reports carry their CSS inline), no frames,
/// no forms, no other origins.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct AppState {
    bus: LiveBus,
    token: Option<String>,
    db: Option<fleetbench_store::Db>,
    max_clients: usize,
    interval: Duration,
    clients: AtomicUsize,
    shutdown: watch::Receiver<bool>,
    /// Kept here so the server outlives a dropped handle.
    stop: watch::Sender<bool>,
}

type Shared = Arc<AppState>;

/// A running dashboard. Dropping it leaves the server running until the
/// runtime ends; call [`DashHandle::shutdown`] to stop it.
pub struct DashHandle {
    addr: SocketAddr,
    state: Shared,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for DashHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashHandle").field("addr", &self.addr).finish()
    }
}

impl DashHandle {
    /// The address actually bound (the port is real even for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open on this host (an unspecified bind shows as
    /// 127.0.0.1). It never contains the token.
    pub fn url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { self.addr.ip() };
        format!("http://{}/", SocketAddr::new(ip, self.addr.port()))
    }

    /// Stops accepting, ends live streams, and waits for the server.
    pub async fn shutdown(self) -> Result<(), DashError> {
        let _ = self.state.stop.send(true);
        self.wait().await
    }

    /// Waits until the server stops (it only stops on shutdown or error).
    pub async fn wait(self) -> Result<(), DashError> {
        match self.task.await {
            Ok(r) => r.map_err(DashError::Serve),
            Err(e) => Err(DashError::Serve(std::io::Error::other(e.to_string()))),
        }
    }
}

pub(crate) async fn start(cfg: DashConfig, bus: LiveBus) -> Result<DashHandle, DashError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| DashError::Bind { addr: cfg.listen, source })?;
    let addr = listener.local_addr().map_err(|source| DashError::Bind { addr: cfg.listen, source })?;
    let (stop, stop_rx) = watch::channel(false);
    let state = Arc::new(AppState {
        bus,
        token: cfg.token,
        db: cfg.db,
        max_clients: cfg.max_clients.max(1),
        interval: cfg.update_interval,
        clients: AtomicUsize::new(0),
        shutdown: stop_rx.clone(),
        stop,
    });
    let app = router(state.clone());
    let mut rx = stop_rx;
    let task = tokio::spawn(async move {
        axum::serve(
            listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            }),
            app,
        )
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
    });
    Ok(DashHandle { addr, state, task })
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/api/runs", get(api_runs))
        .route("/api/live", get(api_live))
        .route("/api/live/events", get(api_live_events))
        .route("/runs/{id}/report", get(run_report))
        .route("/report", get(multi_report))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Compares without an early exit, so timing does not leak the token.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_tokens(headers: &HeaderMap, query: Option<&str>) -> (Vec<String>, bool) {
    let mut found = Vec::new();
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(t) = v.strip_prefix("Bearer ") {
            found.push(t.trim().to_string());
        }
    }
    for c in headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        for part in c.split(';') {
            if let Some(t) = part.trim().strip_prefix(TOKEN_COOKIE).and_then(|r| r.strip_prefix('=')) {
                found.push(t.to_string());
            }
        }
    }
    let mut from_query = false;
    for pair in query.unwrap_or("").split('&') {
        if let Some(t) = pair.strip_prefix("token=") {
            found.push(percent_decode(t));
            from_query = true;
        }
    }
    (found, from_query)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Every request: the token (when one is set), then security headers on
/// whatever is answered.
async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let mut set_cookie = None;
    if let Some(token) = &st.token {
        let (presented, from_query) = presented_tokens(req.headers(), req.uri().query());
        if !presented.iter().any(|t| same(t, token)) {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"fleetbench\"")],
                "401 unauthorized: this dashboard needs its token (open the URL with ?token=... once, or send Authorization: Bearer ...)\n",
            )
                .into_response();
            security_headers(r.headers_mut());
            return r;
        }
        if from_query {
            set_cookie =
                HeaderValue::from_str(&format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")).ok();
        }
    }
    let mut r = next.run(req).await;
    security_headers(r.headers_mut());
    if let Some(c) = set_cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

#[derive(Deserialize)]
struct RunsQuery {
    limit: Option<usize>,
}

fn error_json(status: StatusCode, msg: String) -> Response {
    (status, Json(json!({ "error": msg }))).into_response()
}

async fn api_runs(State(st): State<Shared>, Query(q): Query<RunsQuery>) -> Response {
    let Some(db) = st.db.clone() else {
        return Json(json!({ "runs": [], "database": null })).into_response();
    };
    let limit = q.limit.unwrap_or(200).clamp(1, 2000);
    let res = tokio::task::spawn_blocking(move || -> Result<Value, String> {
        if !db.exists() {
            return Ok(json!({ "runs": [] }));
        }
        let store = fleetbench_store::Store::connect(&db).map_err(|e| e.to_string())?;
        let runs = store.list_runs(limit).map_err(|e| e.to_string())?;
        Ok(json!({
            "runs": runs.iter().map(|r| {
                let m = &r.meta;
                let tput = r.summary.as_ref().and_then(|s| s.get("output_throughput")).cloned();
                json!({
                    "id": m.id, "model": m.model, "backend_url": m.backend_url, "api": m.api,
                    "workload": m.workload, "schedule": m.schedule, "status": m.status.as_str(),
                    "started_at": m.started_at, "ended_at": m.ended_at, "group": m.group,
                    "requests": r.request_count, "output_throughput": tput,
                })
            }).collect::<Vec<_>>()
        }))
    })
    .await;
    match res {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error_json(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error_json(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn api_live(State(st): State<Shared>) -> Json<Vec<LiveSnapshot>> {
    Json(st.bus.snapshots())
}

async fn render_report(st: &Shared, ids: Vec<i64>) -> Response {
    let Some(db) = st.db.clone() else {
        return (StatusCode::NOT_FOUND, "this dashboard has no results database").into_response();
    };
    let res = tokio::task::spawn_blocking(move || -> Result<String, (StatusCode, String)> {
        let store =
            fleetbench_store::Store::connect(&db).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let report = fleetbench_report::Report::load(&store, &ids).map_err(|e| match e {
            fleetbench_report::HtmlReportError::Store(fleetbench_store::StoreError::NoSuchRun(_))
            | fleetbench_report::HtmlReportError::NoRuns => (StatusCode::NOT_FOUND, e.to_string()),
            e => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })?;
        Ok(report.html())
    })
    .await;
    match res {
        Ok(Ok(html)) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Ok(Err((code, msg))) => (code, msg).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn run_report(State(st): State<Shared>, Path(id): Path<String>) -> Response {
    match id.parse::<i64>() {
        Ok(id) => render_report(&st, vec![id]).await,
        Err(_) => (StatusCode::BAD_REQUEST, "run ids are numbers").into_response(),
    }
}

#[derive(Deserialize)]
struct MultiQuery {
    runs: Option<String>,
}

async fn multi_report(State(st): State<Shared>, Query(q): Query<MultiQuery>) -> Response {
    let ids: Result<Vec<i64>, _> = q
        .runs
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<i64>())
        .collect();
    match ids {
        Ok(ids) if !ids.is_empty() && ids.len() <= 50 => render_report(&st, ids).await,
        _ => (StatusCode::BAD_REQUEST, "give ?runs=1,2,3 (up to 50 run ids)").into_response(),
    }
}

/// Releases a client slot when its stream ends.
struct ClientSlot(Shared);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

struct StreamState {
    slot: ClientSlot,
    roster: watch::Receiver<u64>,
    runs: Vec<watch::Receiver<LiveSnapshot>>,
    /// Each run's snapshot as JSON, redone only when it changed (finished
    /// runs with long series are not serialised again and again).
    json: Vec<String>,
    first: bool,
    next_at: tokio::time::Instant,
    shutdown: watch::Receiver<bool>,
}

async fn api_live_events(State(st): State<Shared>) -> Response {
    let n = st.clients.fetch_add(1, Ordering::SeqCst);
    let slot = ClientSlot(st.clone());
    if n >= st.max_clients {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            "too many dashboard clients are watching; close a tab and retry",
        )
            .into_response();
    }
    let (roster, runs) = st.bus.subscribe();
    let interval = st.interval;
    // Between two sends a client waits a whole interval; meanwhile it looks
    // for changes four times an interval, touching only atomics.
    let look = interval / 4;
    let state = StreamState {
        slot,
        roster,
        json: vec![String::new(); runs.len()],
        runs,
        first: true,
        next_at: tokio::time::Instant::now(),
        shutdown: st.shutdown.clone(),
    };
    let stream = futures_util::stream::unfold(state, move |mut s| async move {
        loop {
            let wake = s.next_at.max(tokio::time::Instant::now());
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = s.shutdown.wait_for(|v| *v) => return None,
            }
            let roster_changed = s.roster.has_changed().unwrap_or(false);
            let changed = s.first || roster_changed || s.runs.iter().any(|r| r.has_changed().unwrap_or(false));
            if !changed {
                s.next_at = tokio::time::Instant::now() + look;
                continue;
            }
            if roster_changed {
                let (roster, runs) = s.slot.0.bus.subscribe();
                s.roster = roster;
                s.json = vec![String::new(); runs.len()];
                s.runs = runs;
            }
            let first = std::mem::replace(&mut s.first, false);
            for (rx, json) in s.runs.iter_mut().zip(s.json.iter_mut()) {
                if first || json.is_empty() || rx.has_changed().unwrap_or(false) {
                    *json = serde_json::to_string(&*rx.borrow_and_update()).unwrap_or_else(|_| "null".into());
                }
            }
            let data = format!("[{}]", s.json.join(","));
            s.next_at = tokio::time::Instant::now() + interval;
            return Some((Ok::<Event, Infallible>(Event::default().event("live").data(data)), s));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_in_header_cookie_and_query() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("x=1; fleetbench_dash_token=def"));
        let (found, from_query) = presented_tokens(&h, Some("a=1&token=g%2Bh+i"));
        assert_eq!(found, vec!["abc", "def", "g+h i"]);
        assert!(from_query);
        let (none, q) = presented_tokens(&HeaderMap::new(), None);
        assert!(none.is_empty() && !q);
    }

    #[test]
    fn comparison_needs_equal_length_and_bytes() {
        assert!(same("token-1", "token-1"));
        assert!(!same("token-1", "token-2"));
        assert!(!same("token", "token-1"));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
