//! fleetbench measuring itself: the real client and load engine on one
//! single-threaded runtime against a server with exact timing, with the
//! client thread's CPU time. `fleetbench selftest` wires it to
//! `fleetbench_sim::fixed`.
//!
//! What is measured is the client's own work, so the selftest keeps the
//! rest of the machine out of the figure where it can: the client thread
//! and the server thread run on different CPUs ([`Placement`]), at the
//! lowest real-time priority where the OS allows it (a kernel thread or
//! another process then cannot hold the client off its CPU for
//! milliseconds), and paced streams join over one response's duration,
//! so that in the steady state they measure, requests end and restart
//! spread out as independent users' do, not in one wave of all of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetbench_client::{Client, ClientConfig, ClientError};
use fleetbench_core::stats::percentile;
use fleetbench_core::{
    ApiKind, Prompt, RequestContext, RequestRecord, RequestSpec, RunClock, RunMetrics, SamplingParams, Slo,
};
use serde::Serialize;

use fleetbench_workload::{RampKind, RampSpec};

use crate::{RunPlan, Schedule, StopCondition, SyntheticWorkload};

#[derive(Debug, thiserror::Error)]
pub enum SelftestError {
    #[error("starting the client's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("streaming from the simulated server: {0}")]
    Stream(String),
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
    /// Why requests failed: the count of each error label (as a run's
    /// metrics count them), and the first failure's label and message.
    pub errors_by_kind: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub streamed_tokens: u64,
    pub tokens_per_s: f64,
    pub max_streams_in_flight: u64,
    pub server_max_in_flight: u64,
    /// Seconds over which the streams joined (one response's duration for
    /// paced streams; 0: all at once).
    pub streams_joined_over_s: f64,
    /// The client thread ran at real-time priority (`SCHED_FIFO` 1).
    pub realtime: bool,
    /// The CPUs the client and server threads were pinned to, where they
    /// were (Linux, two CPUs or more allowed).
    pub client_cpu: Option<usize>,
    pub server_cpu: Option<usize>,
    /// Token instants are the kernel's receive stamps (the figures a run
    /// reports); false: when the client read them (its own lag included,
    /// `--read-timestamps`, or no stamps on this platform).
    pub kernel_timestamps: bool,
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
    /// How evenly a time-scaled simulated server's tokens reached one
    /// client stream ([`paced_stream`]); `None` where it was not measured.
    pub sim_pacing: Option<SimPacing>,
}

/// One stream from a simulated server running faster than the hardware it
/// models: the gaps between its tokens as the client timed them, multiplied
/// back to model time, against the engine's step. On a machine whose sleeps
/// are precise the gaps sit at the step; a busy or coarse-timed machine
/// sends them in bursts (gaps near 0 and near a timer tick), and a time
/// scale that high is then too high for `sim serve` there.
#[derive(Debug, Clone, Serialize)]
pub struct SimPacing {
    /// What was simulated (GPU, model, weight format).
    pub deployment: String,
    /// Model seconds per wall-clock second.
    pub time_scale: f64,
    /// The engine's decode step for this one stream, model time, ms.
    pub model_step_ms: f64,
    /// Tokens streamed (gaps: one fewer).
    pub tokens: u32,
    /// Gaps between consecutive tokens, model time, ms.
    pub gap_p10_ms: Option<f64>,
    pub gap_p50_ms: Option<f64>,
    pub gap_p90_ms: Option<f64>,
    pub gap_max_ms: Option<f64>,
}

impl SimPacing {
    /// The figures of `gaps_s` (model seconds) from a stream of `tokens`.
    pub fn new(deployment: String, time_scale: f64, model_step_s: f64, tokens: u32, gaps_s: &[f64]) -> SimPacing {
        let ms: Vec<f64> = gaps_s.iter().map(|g| g * 1000.0).collect();
        SimPacing {
            deployment,
            time_scale,
            model_step_ms: model_step_s * 1000.0,
            tokens,
            gap_p10_ms: percentile(&ms, 10.0),
            gap_p50_ms: percentile(&ms, 50.0),
            gap_p90_ms: percentile(&ms, 90.0),
            gap_max_ms: percentile(&ms, 100.0),
        }
    }
}

/// Streams one completion of `tokens` tokens for a prompt of
/// `prompt_tokens` from the backend at `url`; returns the time scale it
/// announced (1 where none) and the gaps between its tokens as the client
/// timed them, multiplied back to model time, seconds.
pub async fn paced_stream(
    url: String,
    prompt_tokens: u32,
    tokens: u32,
    kernel_stamps: bool,
) -> Result<(f64, Vec<f64>), SelftestError> {
    let mut cfg = ClientConfig::new(url, ApiKind::Completions, "selftest");
    cfg.kernel_stamps = kernel_stamps;
    let client = Client::new(cfg)?;
    client.probe(Duration::from_secs(10)).await?;
    let scale = client.time_scale().unwrap_or(1.0);
    let spec = RequestSpec {
        id: "sim-pacing".into(),
        prompt: Prompt::Text("How evenly do the tokens come?".into()),
        sampling: SamplingParams { max_tokens: Some(tokens), ignore_eos: true, ..SamplingParams::default() },
        expected_input_tokens: Some(prompt_tokens),
        label: None,
        context: RequestContext::default(),
    };
    let clock = RunClock::start();
    let rec = client.send(&spec, &clock, 0.0).await;
    if let Some(e) = rec.error {
        return Err(SelftestError::Stream(e.message));
    }
    Ok((scale, rec.itl.iter().map(|g| g * scale).collect()))
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
    /// Where the client thread ran and at which priority.
    pub placed: Placed,
    pub joined_over_s: f64,
    /// The client timed arrivals by the kernel's receive stamps.
    pub kernel_stamps: bool,
}

/// Where the selftest asks its two threads to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Pin the client and server threads to two different CPUs.
    pub pin: bool,
    /// Ask for real-time priority (`SCHED_FIFO` 1) for both threads.
    pub realtime: bool,
}

/// What a thread got of its [`Placement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placed {
    pub cpu: Option<usize>,
    pub realtime: bool,
}

impl Placement {
    /// The two CPUs the threads go to: the first two this process may use.
    fn cpus(&self) -> Option<(usize, usize)> {
        if !self.pin {
            return None;
        }
        let allowed = allowed_cpus();
        match allowed.as_slice() {
            [client, server, ..] => Some((*client, *server)),
            _ => None,
        }
    }

    /// Applies the placement to the calling thread, as the client (`server`
    /// false) or the server; what the OS refuses is left as it was.
    pub fn apply(&self, server: bool) -> Placed {
        let cpu = self.cpus().map(|(c, s)| if server { s } else { c }).filter(|&cpu| pin_current_thread(cpu));
        Placed { cpu, realtime: self.realtime && realtime_current_thread() }
    }
}

/// Drives `streams` closed-loop agents against `url` for `duration` on one
/// single-threaded runtime on its own thread, measuring that thread's CPU.
/// `join_over`: the streams join one by one, evenly, over this long (zero:
/// all at once).
pub fn drive(
    url: String,
    streams: u32,
    duration: Duration,
    join_over: Duration,
    placement: Placement,
    kernel_stamps: bool,
) -> std::io::Result<std::thread::JoinHandle<Result<ClientRun, SelftestError>>> {
    std::thread::Builder::new().name("selftest-client".into()).spawn(move || {
        let placed = placement.apply(false);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let rss_start_mb = resident_mb().0;
        let cpu0 = thread_cpu_seconds();
        let wall0 = Instant::now();
        let mut cfg = ClientConfig::new(url, ApiKind::Chat, "selftest");
        cfg.kernel_stamps = kernel_stamps;
        let client = Client::new(cfg)?;
        let kernel_stamps = client.kernel_stamps();
        let (records, clock) = rt.block_on(closed_loop(client, streams, duration, join_over));
        let (cpu_s, wall_s) = (thread_cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
        Ok(ClientRun {
            records,
            clock,
            cpu_s,
            wall_s,
            rss_start_mb,
            rss_end_mb: resident_mb().0,
            placed,
            joined_over_s: join_over.as_secs_f64(),
            kernel_stamps,
        })
    })
}

async fn closed_loop(
    client: Client,
    streams: u32,
    duration: Duration,
    join_over: Duration,
) -> (Vec<RequestRecord>, RunClock) {
    let ramp = (!join_over.is_zero() && streams > 1).then(|| RampSpec {
        kind: RampKind::Concurrency,
        from: 1.0,
        to: f64::from(streams),
        over_s: join_over.as_secs_f64(),
        steps: None,
    });
    let plan = RunPlan {
        schedule: Schedule::Closed { concurrency: streams },
        stop: StopCondition { requests: None, duration: Some(duration) },
        warmup: 0,
        sampling: SamplingParams::default(),
        seed: 1,
        arrivals: None,
        shard: None,
        ramp,
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
    (records, clock)
}

/// The report of a client run against a server that sent `tokens` tokens
/// per response `itl` apart; `server_instants` gives the instants the server
/// handed each token of a request to HTTP (paced mode).
pub fn report(
    run: &ClientRun,
    streams: u32,
    tokens: u32,
    itl: Duration,
    server: (u64, Placed),
    server_instants: impl Fn(&str) -> Option<Vec<Instant>>,
) -> SelftestReport {
    let (server_max_in_flight, server_placed) = server;
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
        first_error: metrics.errors.iter().find(|e| !e.is_empty()).cloned(),
        errors_by_kind: metrics.errors_by_kind.clone(),
        streamed_tokens: streamed,
        tokens_per_s: streamed as f64 / wall,
        max_streams_in_flight: metrics.max_concurrent_requests,
        server_max_in_flight,
        streams_joined_over_s: run.joined_over_s,
        realtime: run.placed.realtime && server_placed.realtime,
        client_cpu: run.placed.cpu,
        server_cpu: server_placed.cpu,
        kernel_timestamps: run.kernel_stamps,
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
        sim_pacing: None,
    }
}

/// The CPUs this process may run on, in order (Linux; empty elsewhere or
/// when the OS does not say).
fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity fills the set we own.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if r != 0 {
            return Vec::new();
        }
        // SAFETY: CPU_ISSET reads the set we own, for indexes within its size.
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect()
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

/// Pins the calling thread to `cpu`; false where the OS refuses.
fn pin_current_thread(cpu: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is plain data; CPU_SET writes within its size
        // (cpu comes from sched_getaffinity), and pid 0 is this thread.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu, &mut set) };
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        false
    }
}

/// Puts the calling thread at the lowest real-time priority (`SCHED_FIFO`
/// 1); false where the OS refuses (it needs root or `CAP_SYS_NICE`). The
/// kernel's real-time throttling still leaves other tasks 5 % of each CPU.
fn realtime_current_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: pid 0 is the calling thread; param is a valid struct we own.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    false
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
