//! A server with exact timing: every chat request streams `tokens` tokens,
//! all at once (zero delay, to measure a client's throughput) or one every
//! `itl` (to measure the latency a client adds to each token). It records
//! the instant each token is handed to the HTTP layer, so the client's
//! added latency is the client's timestamp minus that instant. It runs on
//! its own thread and runtime, so the client under test has its own.
//! `fleetbench selftest` measures fleetbench's client against it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::Router;

/// What the fixed server does and what it saw.
#[derive(Debug, Default)]
pub struct FixedServer {
    tokens: u32,
    itl: Duration,
    /// Send instants of every token, by request id (paced mode only).
    sent: Mutex<HashMap<String, Vec<Instant>>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

impl FixedServer {
    pub fn new(tokens: u32, itl: Duration) -> Arc<FixedServer> {
        Arc::new(FixedServer { tokens, itl, ..Default::default() })
    }

    /// Starts serving on a loopback port on a thread of its own.
    pub fn start(self: &Arc<Self>) -> std::io::Result<SocketAddr> {
        self.start_with(|| ()).map(|(addr, ())| addr)
    }

    /// As [`FixedServer::start`], first running `setup` on the server's
    /// thread (to pin it or set its priority) and returning what it gave.
    pub fn start_with<T: Send + 'static>(
        self: &Arc<Self>,
        setup: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<(SocketAddr, T)> {
        let socket = crate::server::bound_socket(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = socket.local_addr()?;
        let state = self.clone();
        let (set_up, was_set_up) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("fixed-server".into()).spawn(move || {
            let _ = set_up.send(setup());
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let Ok(listener) = socket.listen(crate::server::LISTEN_BACKLOG) else { return };
                let app = Router::new()
                    .route("/v1/models", get(|| async { "{\"data\":[]}" }))
                    .route("/v1/chat/completions", post(stream_tokens))
                    .with_state(state);
                let nodelay = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                let _ = axum::serve(nodelay, app).await;
            });
        })?;
        let setup = was_set_up.recv().map_err(|_| std::io::Error::other("the server thread ended at its start"))?;
        Ok((addr, setup))
    }

    /// The most requests it had in flight at once.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// The instants it handed each token of request `id` to HTTP.
    pub fn token_instants(&self, id: &str) -> Option<Vec<Instant>> {
        self.sent.lock().ok().and_then(|m| m.get(id).cloned())
    }
}

const ROLE: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const TOKEN: &[u8] =
    b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tok\"},\"finish_reason\":null}]}\n\n";

async fn stream_tokens(State(s): State<Arc<FixedServer>>, headers: HeaderMap) -> Response {
    let id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let body = if s.itl.is_zero() {
        let mut b = Vec::with_capacity(ROLE.len() + TOKEN.len() * s.tokens as usize + 200);
        b.extend_from_slice(ROLE);
        for _ in 0..s.tokens {
            b.extend_from_slice(TOKEN);
        }
        b.extend_from_slice(&tail(s.tokens));
        s.in_flight.fetch_sub(1, Ordering::SeqCst);
        Body::from(b)
    } else {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(4);
        let (tokens, itl) = (s.tokens, s.itl);
        let phase = itl.mul_f64(phase_of(&id));
        tokio::spawn(async move {
            let _ = tx.send(Ok(Bytes::from_static(ROLE))).await;
            // Streams start at staggered phases, as independent requests do;
            // servers that decode in lock-step batches are a different test.
            let mut next = tokio::time::Instant::now() + phase;
            for _ in 0..tokens {
                next += itl;
                tokio::time::sleep_until(next).await;
                if tx.send(Ok(Bytes::from_static(TOKEN))).await.is_err() {
                    break;
                }
            }
            let _ = tx.send(Ok(Bytes::from(tail(tokens)))).await;
        });
        // The instant a token is handed to the HTTP layer for writing: what
        // happens after it (the write, the kernel, the client) is what the
        // client adds.
        let mut instants = Vec::with_capacity(tokens as usize);
        let mut id = Some(id);
        let state = s.clone();
        let stream = futures_util::stream::poll_fn(move |cx| {
            let polled = rx.poll_recv(cx);
            match &polled {
                std::task::Poll::Ready(Some(Ok(chunk))) if chunk.as_ref() == TOKEN => instants.push(Instant::now()),
                std::task::Poll::Ready(None) => {
                    if let (Some(id), Ok(mut m)) = (id.take(), state.sent.lock()) {
                        m.insert(id, std::mem::take(&mut instants));
                    }
                    state.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                _ => {}
            }
            polled
        });
        Body::from_stream(stream)
    };
    Response::builder().header("content-type", "text/event-stream").body(body).unwrap_or_default()
}

/// A fraction in [0, 1) from a request id (FNV-1a), to spread stream phases.
fn phase_of(id: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn tail(tokens: u32) -> Vec<u8> {
    format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"length\"}}]}}\n\ndata: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":32,\"completion_tokens\":{tokens},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
        tokens + 32
    )
    .into_bytes()
}
