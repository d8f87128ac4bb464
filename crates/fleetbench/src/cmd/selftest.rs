//! `fleetbench selftest`: measures fleetbench's own client and load engine
//! against an in-process SSE server, so you know the tool is never the
//! bottleneck. The server runs on its own thread and runtime; the client on
//! one single-threaded runtime, whose CPU time is measured.

use axum::serve::ListenerExt as _;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::stats::percentile;
use fleetbench_core::{parse_duration, ApiKind, RunClock, RunMetrics, SamplingParams, Slo};
use fleetbench_load::{RunPlan, Schedule, StopCondition, SyntheticWorkload};
use serde::Serialize;

use crate::context::Context;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  # throughput: 5,000 streams against a zero-delay server
  fleetbench selftest --streams 5000 --tokens 200 --duration 10s
  # added latency: 1,000 streams, server sends a token every 20 ms
  fleetbench selftest --streams 1000 --itl 20ms --duration 10s")]
pub struct SelftestArgs {
    /// Concurrent streams (closed-loop agents).
    #[arg(long, default_value_t = 1000)]
    pub streams: u32,
    /// Tokens per response.
    #[arg(long, default_value_t = 200)]
    pub tokens: u32,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Gap between tokens on the server: 0 for zero-delay (throughput),
    /// more to measure the latency the client adds to each token.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub itl: Duration,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct SelftestReport {
    pub streams: u32,
    pub tokens_per_response: u32,
    pub server_itl_ms: f64,
    pub wall_s: f64,
    pub completed: u64,
    pub failed: u64,
    pub streamed_tokens: u64,
    pub tokens_per_s: f64,
    pub max_streams_in_flight: u64,
    pub server_max_in_flight: u64,
    pub client_cpu_s: f64,
    pub client_cpu_s_per_1000_tokens: f64,
    pub client_cpu_utilisation: f64,
    pub added_latency_p50_ms: Option<f64>,
    pub added_latency_p90_ms: Option<f64>,
    pub added_latency_p99_ms: Option<f64>,
    pub added_latency_max_ms: Option<f64>,
}

#[derive(Default)]
struct ServerState {
    tokens: u32,
    itl: Duration,
    /// Send instants of every token, by request id (latency mode only).
    sent: Mutex<HashMap<String, Vec<Instant>>>,
    in_flight: std::sync::atomic::AtomicU64,
    max_in_flight: std::sync::atomic::AtomicU64,
}

pub async fn run(args: SelftestArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.streams > 0 && args.tokens > 0, "--streams and --tokens must be at least 1");
    let state = Arc::new(ServerState { tokens: args.tokens, itl: args.itl, ..Default::default() });
    let addr = start_server(state.clone())?;
    if !args.json {
        eprintln!(
            "selftest: {} streams × {} tokens for {:?} against {addr} (server ITL {:?})",
            args.streams, args.tokens, args.duration, args.itl
        );
    }
    let streams = args.streams;
    let duration = args.duration;
    let url = format!("http://{addr}/v1");
    let client_thread = std::thread::Builder::new()
        .name("selftest-client".into())
        .spawn(move || -> anyhow::Result<_> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let cpu0 = thread_cpu_seconds();
            let wall0 = Instant::now();
            let out = rt.block_on(drive(url, streams, duration))?;
            Ok((out, thread_cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64()))
        })
        .context("starting the client thread")?;
    let joined = tokio::task::spawn_blocking(move || client_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))?;
    let ((records, clock), cpu, wall) = joined?;

    let metrics = RunMetrics::compute(&records, &Slo::default(), Some(streams));
    let tokens: u64 = records.iter().map(|r| r.token_events).sum();
    let mut added = Vec::new();
    if !args.itl.is_zero() {
        let sent = state.sent.lock().map_err(|_| anyhow::anyhow!("server state poisoned"))?;
        for r in &records {
            if let Some(server) = sent.get(&r.request_id) {
                for (c, s) in r.token_instants().iter().zip(server) {
                    let client_at = clock.epoch() + Duration::from_secs_f64(*c);
                    added.push(client_at.saturating_duration_since(*s).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    let report = SelftestReport {
        streams,
        tokens_per_response: args.tokens,
        server_itl_ms: args.itl.as_secs_f64() * 1000.0,
        wall_s: wall,
        completed: metrics.completed,
        failed: metrics.failed,
        streamed_tokens: tokens,
        tokens_per_s: tokens as f64 / wall,
        max_streams_in_flight: metrics.max_concurrent_requests,
        server_max_in_flight: state.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        client_cpu_s: cpu,
        client_cpu_s_per_1000_tokens: if tokens > 0 { cpu / tokens as f64 * 1000.0 } else { 0.0 },
        client_cpu_utilisation: cpu / wall,
        added_latency_p50_ms: percentile(&added, 50.0),
        added_latency_p90_ms: percentile(&added, 90.0),
        added_latency_p99_ms: percentile(&added, 99.0),
        added_latency_max_ms: percentile(&added, 100.0),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &SelftestReport) {
    if r.server_itl_ms > 0.0 {
        println!("streams in flight      {} (server saw {})", r.max_streams_in_flight, r.server_max_in_flight);
    } else {
        println!("streams in flight      {}", r.max_streams_in_flight);
    }
    println!("requests               {} completed, {} failed in {:.1} s", r.completed, r.failed, r.wall_s);
    println!("streamed tokens        {} = {:.0} tokens/s on one client thread", r.streamed_tokens, r.tokens_per_s);
    println!(
        "client CPU             {:.2} s ({:.0} % of one core), {:.4} s per 1,000 tokens",
        r.client_cpu_s,
        r.client_cpu_utilisation * 100.0,
        r.client_cpu_s_per_1000_tokens
    );
    if let (Some(p50), Some(p90), Some(p99), Some(max)) =
        (r.added_latency_p50_ms, r.added_latency_p90_ms, r.added_latency_p99_ms, r.added_latency_max_ms)
    {
        println!(
            "added latency / token  p50 {p50:.3} ms, p90 {p90:.3} ms, p99 {p99:.3} ms, max {max:.1} ms \
             (server hands the token to HTTP -> client timestamp)"
        );
    }
}

async fn drive(
    url: String,
    streams: u32,
    duration: Duration,
) -> anyhow::Result<(Vec<fleetbench_core::RequestRecord>, RunClock)> {
    let client = Client::new(ClientConfig::new(url, ApiKind::Chat, "selftest"))?;
    let plan = RunPlan {
        schedule: Schedule::Closed { concurrency: streams },
        stop: StopCondition { requests: None, duration: Some(duration) },
        warmup: 0,
        sampling: SamplingParams::default(),
        seed: 1,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let clock = RunClock::start();
    let wl = Arc::new(SyntheticWorkload::new(32, 16, 0.0, 1));
    let collect = async {
        let mut v = Vec::new();
        while let Some(r) = rx.recv().await {
            v.push(r);
        }
        v
    };
    let (_, records) = tokio::join!(fleetbench_load::run(&plan, &client, wl, clock, tx, stop_rx), collect);
    Ok((records, clock))
}

fn start_server(state: Arc<ServerState>) -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the selftest server")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("selftest-server".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(_) => return,
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = Router::new()
                    .route("/v1/models", get(|| async { "{\"data\":[]}" }))
                    .route("/v1/chat/completions", post(stream_tokens))
                    .with_state(state);
                let _ = axum::serve(
                    listener.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    }),
                    app,
                )
                .await;
            });
        })
        .context("starting the server thread")?;
    Ok(addr)
}

const ROLE: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const TOKEN: &[u8] =
    b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tok\"},\"finish_reason\":null}]}\n\n";

async fn stream_tokens(State(s): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    use std::sync::atomic::Ordering;
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
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::convert::Infallible>>(4);
        let tokens = s.tokens;
        let itl = s.itl;
        let id_for_phase = id.clone();
        tokio::spawn(async move {
            let _ = tx.send(Ok(bytes::Bytes::from_static(ROLE))).await;
            // Streams start at staggered phases, as independent requests do;
            // servers that decode in lock-step batches are a different test.
            let phase = itl.mul_f64(phase_of(&id_for_phase));
            let mut next = tokio::time::Instant::now() + phase;
            for _ in 0..tokens {
                next += itl;
                tokio::time::sleep_until(next).await;
                if tx.send(Ok(bytes::Bytes::from_static(TOKEN))).await.is_err() {
                    break;
                }
            }
            let _ = tx.send(Ok(bytes::Bytes::from(tail(tokens)))).await;
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

/// CPU time of the calling thread, seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the struct we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
