//! fleetbench measuring itself: the real client and load engine on one
//! single-threaded runtime against a server with exact timing, with the
//! client thread's CPU time. `fleetbench selftest` wires it to
//! `fleetbench_sim::fixed`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetbench_client::{Client, ClientConfig, ClientError};
use fleetbench_core::stats::percentile;
use fleetbench_core::{ApiKind, RequestRecord, RunClock, RunMetrics, SamplingParams, Slo};
use serde::Serialize;

use crate::{RunPlan, Schedule, StopCondition, SyntheticWorkload};

#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    #[error("starting the client's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// What the selftest measured.
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
    /// Resident memory of the process when the selftest started, when the
    /// client's run ended and at its peak, MB (Linux; absent elsewhere).
    pub rss_start_mb: Option<f64>,
    pub rss_end_mb: Option<f64>,
    pub rss_peak_mb: Option<f64>,
}

/// The resident memory of this process, MB: now (`VmRSS`) and its peak
/// (`VmHWM`), from /proc/self/status; `None` where there is none.
pub fn resident_mb() -> (Option<f64>, Option<f64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return (None, None) };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the client side of a selftest saw.
pub struct ClientRun {
    pub records: Vec<RequestRecord>,
    pub clock: RunClock,
    /// CPU seconds of the client thread.
    pub cpu_s: f64,
    pub wall_s: f64,
    /// Resident memory (MB) when the client started and when its run ended.
    pub rss_start_mb: Option<f64>,
    pub rss_end_mb: Option<f64>,
}

/// Drives `streams` closed-loop agents against `url` for `duration` on one
/// single-threaded runtime on its own thread, measuring that thread's CPU.
pub fn drive(
    url: String,
    streams: u32,
    duration: Duration,
) -> std::io::Result<std::thread::JoinHandle<Result<ClientRun, SelftestError>>> {
    std::thread::Builder::new().name("selftest-client".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let rss_start_mb = resident_mb().0;
        let cpu0 = thread_cpu_seconds();
        let wall0 = Instant::now();
        let (records, clock) = rt.block_on(closed_loop(url, streams, duration))?;
        let (cpu_s, wall_s) = (thread_cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
        Ok(ClientRun { records, clock, cpu_s, wall_s, rss_start_mb, rss_end_mb: resident_mb().0 })
    })
}

async fn closed_loop(
    url: String,
    streams: u32,
    duration: Duration,
) -> Result<(Vec<RequestRecord>, RunClock), ClientError> {
    let client = Client::new(ClientConfig::new(url, ApiKind::Chat, "selftest"))?;
    let plan = RunPlan {
        schedule: Schedule::Closed { concurrency: streams },
        stop: StopCondition { requests: None, duration: Some(duration) },
        warmup: 0,
        sampling: SamplingParams::default(),
        seed: 1,
        arrivals: None,
        shard: None,
        ramp: None,
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
    let (_, records) = tokio::join!(crate::run(&plan, &client, wl, clock, tx, stop_rx), collect);
    Ok((records, clock))
}

/// The report of a client run against a server that sent `tokens` tokens
/// per response `itl` apart; `server_instants` gives the instants the server
/// handed each token of a request to HTTP (paced mode).
pub fn report(
    run: &ClientRun,
    streams: u32,
    tokens: u32,
    itl: Duration,
    server_max_in_flight: u64,
    server_instants: impl Fn(&str) -> Option<Vec<Instant>>,
) -> SelftestReport {
    let metrics = RunMetrics::compute(&run.records, &Slo::default(), Some(streams));
    let streamed: u64 = run.records.iter().map(|r| r.token_events).sum();
    let mut added = Vec::new();
    if !itl.is_zero() {
        for r in &run.records {
            if let Some(server) = server_instants(&r.request_id) {
                for (c, s) in r.token_instants().iter().zip(&server) {
                    let client_at = run.clock.epoch() + Duration::from_secs_f64(*c);
                    added.push(client_at.saturating_duration_since(*s).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    let (cpu, wall) = (run.cpu_s, run.wall_s);
    SelftestReport {
        streams,
        tokens_per_response: tokens,
        server_itl_ms: itl.as_secs_f64() * 1000.0,
        wall_s: wall,
        completed: metrics.completed,
        failed: metrics.failed,
        streamed_tokens: streamed,
        tokens_per_s: streamed as f64 / wall,
        max_streams_in_flight: metrics.max_concurrent_requests,
        server_max_in_flight,
        client_cpu_s: cpu,
        client_cpu_s_per_1000_tokens: if streamed > 0 { cpu / streamed as f64 * 1000.0 } else { 0.0 },
        client_cpu_utilisation: cpu / wall,
        added_latency_p50_ms: percentile(&added, 50.0),
        added_latency_p90_ms: percentile(&added, 90.0),
        added_latency_p99_ms: percentile(&added, 99.0),
        added_latency_max_ms: percentile(&added, 100.0),
        rss_start_mb: run.rss_start_mb,
        rss_end_mb: run.rss_end_mb,
        rss_peak_mb: resident_mb().1,
    }
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
