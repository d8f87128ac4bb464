//! The load engine against scripted servers: metric truth, concurrency held,
//! and every malformed-stream case and error kind counted with the run
//! finishing.

use std::sync::Arc;
use std::time::Duration;

use fleetbench_client::{Client, ClientConfig, Timeouts};
use fleetbench_core::{ApiKind, ErrorKind, RequestRecord, RunClock, RunMetrics, SamplingParams, Slo, TokenSource};
use fleetbench_load::{run, Arrival, RunPlan, Schedule, StopCondition, SyntheticWorkload};
use fleetbench_testkit as common;
use fleetbench_testkit::{Fault, Script};
use tokio::sync::{mpsc, watch};

async fn drive(client: &Client, schedule: Schedule, requests: u64, warmup: u64) -> Vec<RequestRecord> {
    let plan = RunPlan {
        schedule,
        stop: StopCondition { requests: Some(requests), duration: None },
        warmup,
        sampling: SamplingParams { max_tokens: Some(16), ..Default::default() },
        seed: 1,
        arrivals: None,
        shard: None,
        ramp: None,
    };
    run_to_end(client, &plan, Arc::new(SyntheticWorkload::new(64, 16, 0.0, 3))).await
}

/// Runs `plan` to its end: every record, by index, each one delivered.
async fn run_to_end(
    client: &Client,
    plan: &RunPlan,
    workload: Arc<dyn fleetbench_load::Workload>,
) -> Vec<RequestRecord> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_stop_tx, stop_rx) = watch::channel(false);
    let report = run(plan, client, workload, RunClock::start(), tx, stop_rx).await;
    let mut out = Vec::new();
    while let Ok(r) = rx.try_recv() {
        out.push(r);
    }
    assert_eq!(report.finished, out.len() as u64);
    assert!(!report.interrupted);
    out.sort_by_key(|r| r.index);
    out
}

/// An open loop at `rate` per second (constant gaps) stopping after
/// `requests`, or when `arrivals` end.
fn open_plan(rate: f64, requests: Option<u64>, arrivals: Option<fleetbench_workload::ArrivalPlan>) -> RunPlan {
    RunPlan {
        schedule: Schedule::Open { rate, arrival: Arrival::Constant, max_concurrency: None },
        stop: StopCondition { requests, duration: None },
        warmup: 0,
        sampling: SamplingParams::default(),
        seed: 1,
        arrivals,
        shard: None,
        ramp: None,
    }
}

fn client(url: &str, api: ApiKind) -> Client {
    Client::new(ClientConfig::new(url, api, "test-model")).unwrap()
}

fn closed(n: u32) -> Schedule {
    Schedule::Closed { concurrency: n }
}

fn assert_timing(recs: &[RequestRecord], ttft: f64, itl: f64, tokens: u64) {
    // Scheduler jitter on a loaded 2-core machine: allow a few ms per gap.
    let tol = 0.015;
    for r in recs {
        assert!(r.ok(), "{:?}", r.error);
        assert_eq!(r.output_tokens, tokens);
        assert_eq!(r.token_source, TokenSource::Server);
        assert_eq!(r.token_events, tokens);
        assert_eq!(r.input_tokens, Some(17));
        let t = r.ttft().unwrap();
        assert!((t - ttft).abs() < tol, "ttft {t} vs {ttft}");
        let tpot = r.tpot().unwrap();
        assert!((tpot - itl).abs() < 0.004, "tpot {tpot} vs {itl}");
        assert_eq!(r.itl.len() as u64, tokens - 1);
        let mean_itl = r.itl.iter().sum::<f64>() / r.itl.len() as f64;
        assert!((mean_itl - itl).abs() < 0.004, "itl {mean_itl}");
        let e2el = r.e2el().unwrap();
        let want = ttft + itl * (tokens - 1) as f64;
        assert!((e2el - want).abs() < tol + 0.01, "e2el {e2el} vs {want}");
        assert!(r.t_first_byte.unwrap() <= r.t_first_token.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_closed_loop_metrics_match_the_script() {
    let s = common::start(Script {
        ttft: Duration::from_millis(80),
        itl: Duration::from_millis(20),
        tokens: 10,
        ..Default::default()
    })
    .await;
    let recs = drive(&client(&s.base_url(), ApiKind::Chat), closed(2), 6, 2).await;
    assert_eq!(recs.len(), 8);
    assert_eq!(recs.iter().filter(|r| r.warmup).count(), 2);
    assert_timing(&recs, 0.080, 0.020, 10);
    let m = RunMetrics::compute(&recs, &Slo::default(), Some(2));
    assert_eq!((m.completed, m.failed, m.sent), (6, 0, 6));
    assert_eq!(m.total_output_tokens, 60);
    assert!((m.ms("mean_ttft_ms").unwrap() - 80.0).abs() < 15.0);
    assert!((m.ms("mean_tpot_ms").unwrap() - 20.0).abs() < 4.0);
    assert!((m.ms("median_itl_ms").unwrap() - 20.0).abs() < 4.0);
    assert_eq!(m.max_concurrent_requests, 2);
    assert!(m.ci("mean_ttft_ms").unwrap().contains(m.ms("mean_ttft_ms").unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_open_loop_metrics_match_the_script() {
    let s = common::start(Script {
        ttft: Duration::from_millis(60),
        itl: Duration::from_millis(15),
        tokens: 6,
        ..Default::default()
    })
    .await;
    let c = client(&s.base_url(), ApiKind::Completions);
    let schedule = Schedule::Open { rate: 20.0, arrival: Arrival::Poisson, max_concurrency: None };
    let recs = drive(&c, schedule, 10, 0).await;
    assert_eq!(recs.len(), 10);
    assert_timing(&recs, 0.060, 0.015, 6);
    // Open loop: sends follow the schedule, so queue time stays small.
    for r in &recs {
        assert!(r.client_queue_time() < 0.05, "{}", r.client_queue_time());
        assert!(r.agent.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_stream_is_measured() {
    let s = common::start(Script {
        ttft: Duration::from_millis(50),
        itl: Duration::from_millis(10),
        tokens: 5,
        ..Default::default()
    })
    .await;
    let recs = drive(&client(&s.base_url(), ApiKind::Anthropic), closed(1), 2, 0).await;
    assert_timing(&recs, 0.050, 0.010, 5);
    assert_eq!(recs[0].finish_reason.as_deref(), Some("end_turn"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_keeps_exactly_n_in_flight() {
    let s = common::start(Script {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(5),
        tokens: 10,
        ..Default::default()
    })
    .await;
    let n = 4;
    let recs = drive(&client(&s.base_url(), ApiKind::Chat), closed(n), 40, 0).await;
    assert_eq!(recs.len(), 40);
    let c = &s.counters;
    assert_eq!(c.max_in_flight.load(std::sync::atomic::Ordering::SeqCst), n as u64);
    // Server-side: from the moment all N are running until the first agent
    // runs out of work, N requests are in flight nearly all the time (the
    // only gaps are an agent's turnaround between two requests).
    let mut iv = c.intervals.lock().unwrap().clone();
    iv.sort_by(|a, b| a.0.total_cmp(&b.0));
    let start = iv[n as usize - 1].0;
    let end = iv.iter().rev().take(n as usize).map(|x| x.0).fold(f64::INFINITY, f64::min);
    let steps = 2000;
    let mut at_n = 0;
    for k in 0..steps {
        let t = start + (end - start) * (k as f64 + 0.5) / steps as f64;
        let count = iv.iter().filter(|(a, b)| *a <= t && t < *b).count();
        assert!(count <= n as usize, "{count} in flight at {t}");
        if count == n as usize {
            at_n += 1;
        }
    }
    assert!(at_n as f64 / steps as f64 > 0.9, "only {at_n}/{steps} samples had {n} in flight");
    let m = RunMetrics::compute(&recs, &Slo::default(), Some(n));
    assert_eq!(m.max_concurrent_requests, n as u64);
    assert!(m.steady_state.is_some());
}

async fn one_fault(fault: Fault, timeouts: Timeouts, api: ApiKind) -> (RunMetrics, Vec<RequestRecord>) {
    let s = common::start(Script {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(5),
        tokens: 4,
        fault,
        ..Default::default()
    })
    .await;
    let mut cfg = ClientConfig::new(s.base_url(), api, "m");
    cfg.timeouts = timeouts;
    cfg.max_event_bytes = 64 * 1024;
    let recs = drive(&Client::new(cfg).unwrap(), closed(1), 3, 0).await;
    let m = RunMetrics::compute(&recs, &Slo::default(), Some(1));
    assert_eq!(m.completed + m.failed, m.sent);
    assert_eq!(m.sent, 3);
    (m, recs)
}

fn only_error(recs: &[RequestRecord], kind: ErrorKind) {
    for r in recs {
        let e = r.error.as_ref().unwrap_or_else(|| panic!("expected {kind}, request succeeded"));
        assert_eq!(e.kind, kind, "{}", e.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_kind_is_classified_and_counted() {
    let none = Timeouts::default();
    let (m, r) = one_fault(Fault::Http(503), none, ApiKind::Chat).await;
    only_error(&r, ErrorKind::HttpStatus);
    assert_eq!(m.errors_by_kind.get("http_503"), Some(&3));
    assert!(r[0].error.as_ref().unwrap().message.contains("scripted failure"));

    let (m, r) = one_fault(Fault::RateLimited { retry_after_s: 1, times: 100 }, none, ApiKind::Chat).await;
    only_error(&r, ErrorKind::RateLimited);
    assert_eq!(m.errors_by_kind.get("rate_limited"), Some(&3));

    let (_, r) = one_fault(Fault::Malformed, none, ApiKind::Chat).await;
    only_error(&r, ErrorKind::MalformedStream);

    let (_, r) = one_fault(Fault::Truncated { after: 2 }, none, ApiKind::Chat).await;
    only_error(&r, ErrorKind::TruncatedStream);
    assert_eq!(r[0].token_events, 2, "tokens before the cut are kept");

    let (_, r) = one_fault(Fault::InvalidUtf8, none, ApiKind::Chat).await;
    only_error(&r, ErrorKind::InvalidUtf8);

    let (_, r) = one_fault(Fault::ErrorEvent, none, ApiKind::Chat).await;
    only_error(&r, ErrorKind::ServerErrorEvent);
    assert!(r[0].error.as_ref().unwrap().message.contains("CUDA out of memory"));

    let (_, r) = one_fault(Fault::Huge { bytes: 200_000 }, none, ApiKind::Chat).await;
    only_error(&r, ErrorKind::BodyTooLarge);

    let idle = Timeouts { idle: Some(Duration::from_millis(200)), ..Default::default() };
    let (_, r) = one_fault(Fault::Stall { after: 2 }, idle, ApiKind::Chat).await;
    only_error(&r, ErrorKind::TimeoutIdle);

    let total = Timeouts { total: Some(Duration::from_millis(150)), ..Default::default() };
    let (_, r) = one_fault(Fault::Stall { after: 2 }, total, ApiKind::Chat).await;
    only_error(&r, ErrorKind::TimeoutTotal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_token_timeout_fires() {
    let s = common::start(Script { ttft: Duration::from_secs(3), ..Default::default() }).await;
    let mut cfg = ClientConfig::new(s.base_url(), ApiKind::Chat, "m");
    cfg.timeouts.first_token = Some(Duration::from_millis(200));
    let recs = drive(&Client::new(cfg).unwrap(), closed(2), 2, 0).await;
    only_error(&recs, ErrorKind::TimeoutFirstToken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_but_valid_streams_are_decoded() {
    // Split events, CRLF, keep-alive comments, reasoning and tool-call
    // deltas, a usage-only last chunk and no [DONE]: all fine.
    let s = common::start(Script { tokens: 9, fault: Fault::Awkward, ..Default::default() }).await;
    let recs = drive(&client(&s.base_url(), ApiKind::Chat), closed(2), 4, 0).await;
    for r in &recs {
        assert!(r.ok(), "{:?}", r.error);
        assert_eq!(r.token_events, 9);
        assert_eq!(r.output_tokens, 9);
        assert_eq!(r.finish_reason.as_deref(), Some("length"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_usage_falls_back_to_counting_events() {
    let s = common::start(Script { tokens: 7, usage: false, ..Default::default() }).await;
    let recs = drive(&client(&s.base_url(), ApiKind::Chat), closed(1), 2, 0).await;
    for r in &recs {
        assert_eq!(r.token_source, TokenSource::Events);
        assert_eq!(r.output_tokens, 7);
        assert_eq!(r.input_tokens, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_429_honours_retry_after() {
    let s =
        common::start(Script { fault: Fault::RateLimited { retry_after_s: 1, times: 1 }, ..Default::default() }).await;
    let mut cfg = ClientConfig::new(s.base_url(), ApiKind::Chat, "m");
    cfg.retry_429 = 3;
    let recs = drive(&Client::new(cfg).unwrap(), closed(1), 1, 0).await;
    let r = &recs[0];
    assert!(r.ok(), "{:?}", r.error);
    assert_eq!(r.retries, 1);
    // The retry waited for Retry-After before sending again.
    assert!(r.client_queue_time() >= 0.99, "{}", r.client_queue_time());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_and_connect_timeout() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(&format!("http://127.0.0.1:{port}/v1"), ApiKind::Chat);
    let recs = drive(&c, closed(1), 2, 0).await;
    only_error(&recs, ErrorKind::Connect);
    assert!(c.probe(Duration::from_secs(1)).await.is_err());

    // A listener with a full accept queue that never accepts: the kernel
    // drops further SYNs, so connecting hangs until our timeout.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(addr)).await
        {
            fillers.push(s);
        }
    }
    let mut cfg = ClientConfig::new(format!("http://{addr}/v1"), ApiKind::Chat, "m");
    cfg.timeouts.connect = Some(Duration::from_millis(200));
    let recs = drive(&Client::new(cfg).unwrap(), closed(1), 1, 0).await;
    only_error(&recs, ErrorKind::TimeoutConnect);
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_signal_interrupts_a_run() {
    let s = common::start(Script {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(20),
        tokens: 5,
        ..Default::default()
    })
    .await;
    let c = client(&s.base_url(), ApiKind::Chat);
    let plan = RunPlan {
        schedule: closed(2),
        stop: StopCondition::default(),
        warmup: 0,
        sampling: SamplingParams::default(),
        seed: 1,
        arrivals: None,
        shard: None,
        ramp: None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let wl = Arc::new(SyntheticWorkload::new(16, 5, 0.0, 1));
    let h = tokio::spawn(async move { run(&plan, &c, wl, RunClock::start(), tx, stop_rx).await });
    // Stop once the run is under way: two requests have finished.
    let mut n = 0;
    common::wait_until(Duration::from_secs(30), Duration::from_millis(10), async || {
        while rx.try_recv().is_ok() {
            n += 1;
        }
        n >= 2
    })
    .await
    .expect("two requests finished before the stop");
    stop_tx.send(true).unwrap();
    let report = h.await.unwrap();
    assert!(report.interrupted);
    while rx.try_recv().is_ok() {
        n += 1;
    }
    assert_eq!(report.finished, n);
}

/// Open loop of a shared-prefix workload at 100 requests/s, each request
/// lasting about 70 ms, from two users: (the server's most requests at
/// once, the records by index).
async fn two_users_at_100_per_s(workload: &str) -> (u64, Vec<RequestRecord>) {
    let s = common::start(Script {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(10),
        tokens: 5,
        ..Default::default()
    })
    .await;
    let wl = fleetbench_load::WorkloadSpec::parse(workload).unwrap().build(1).unwrap().into();
    let recs = run_to_end(&client(&s.base_url(), ApiKind::Chat), &open_plan(100.0, Some(12), None), wl).await;
    (s.counters.max_in_flight.load(std::sync::atomic::Ordering::SeqCst), recs)
}

/// A multi-turn user asks again only once the last answer has ended: its
/// turns never overlap, the wait is client queue time, and TTFT runs from
/// the send. Single-turn requests of the same users do overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_sends_its_next_turn_after_the_last_ends() {
    let spec = "shared-prefix:groups=1,users=2,system=20,question=5,output=5";
    let (most, recs) = two_users_at_100_per_s(&format!("{spec},multi-turn")).await;
    assert_eq!(recs.len(), 12);
    assert!(recs.iter().all(|r| r.ok()), "{:?}", recs.iter().map(|r| &r.error).collect::<Vec<_>>());
    assert!(most <= 2, "the server had {most} requests at once from two users");
    for user in [0, 1] {
        let turns: Vec<&RequestRecord> = recs.iter().filter(|r| r.index % 2 == user).collect();
        for w in turns.windows(2) {
            assert!(
                w[1].t_send >= w[0].t_end,
                "turn {} sent at {} before {} ended at {}",
                w[1].index,
                w[1].t_send,
                w[0].index,
                w[0].t_end
            );
        }
    }
    let waited = recs.iter().filter(|r| r.t_send - r.t_sched > 0.02).count();
    assert!(waited >= 8, "only {waited} turns waited for their user's last answer");
    // The same users asking single questions do not wait for each other.
    let (most, recs) = two_users_at_100_per_s(spec).await;
    assert_eq!(recs.len(), 12);
    assert!(most > 2, "single-turn requests were held back: at most {most} at once");
}

/// A server whose every request takes just over 200 ms: longer than the
/// short stages of the tests below, so each stage has to wait for the one
/// before.
fn outlasting_a_stage() -> Script {
    Script { ttft: Duration::from_millis(200), itl: Duration::from_millis(5), tokens: 2, ..Default::default() }
}

/// Stages of `--arrivals` drain: the second stage's first request goes
/// once the first stage's request has ended (200 ms in, well after the
/// second stage's own time of 50 ms), its arrivals keeping their spacing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_starts_when_the_stage_before_has_drained() {
    let s = common::start(outlasting_a_stage()).await;
    let arrivals = fleetbench_load::ArrivalSpec::parse("even:20/s*50ms,20/s*100ms").unwrap().plan(1).unwrap();
    let plan = open_plan(20.0, None, Some(arrivals));
    let wl = Arc::new(SyntheticWorkload::new(16, 2, 0.0, 3));
    let recs = run_to_end(&client(&s.base_url(), ApiKind::Chat), &plan, wl).await;
    assert_eq!(recs.len(), 3, "one arrival in the first stage, two in the second");
    assert!(recs.iter().all(|r| r.ok()));
    assert!(
        recs[1].t_sched >= recs[0].t_end,
        "stage 2 sent at {} before stage 1 ended at {}",
        recs[1].t_sched,
        recs[0].t_end
    );
    assert!((recs[2].t_sched - recs[1].t_sched - 0.05).abs() < 1e-9, "{} then {}", recs[1].t_sched, recs[2].t_sched);
}

/// A `constant` stage that waited for the stage before opens when that
/// stage drained, and its first request comes its own first gap later, as
/// inference-perf starts a stage's timer; `sim replay` sends it the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_waited_sends_its_first_request_one_gap_after_it_opens() {
    let s = common::start(outlasting_a_stage()).await;
    let arrivals = fleetbench_load::ArrivalSpec::parse("constant:20/s*50ms,40/s*100ms").unwrap().plan(1).unwrap();
    let nominal: Vec<f64> = arrivals.instants().map(|i| i.t).collect();
    assert_eq!(nominal.len(), 5, "{nominal:?}");
    let first_gap = nominal[1] - 0.05;
    assert!(first_gap > 0.0, "{nominal:?}");
    let plan = open_plan(20.0, None, Some(arrivals));
    let wl = Arc::new(SyntheticWorkload::new(16, 2, 0.0, 3));
    let mut recs = run_to_end(&client(&s.base_url(), ApiKind::Chat), &plan, wl).await;
    recs.sort_by(|a, b| a.t_sched.total_cmp(&b.t_sched));
    assert_eq!(recs.len(), 5);
    assert!(
        recs[1].t_sched >= recs[0].t_end + first_gap - 1e-9,
        "stage 2's first request at {}, stage 1 ended at {} and the gap is {first_gap}",
        recs[1].t_sched,
        recs[0].t_end
    );
    for i in 2..5 {
        let kept = (recs[i].t_sched - recs[1].t_sched) - (nominal[i] - nominal[1]);
        assert!(kept.abs() < 1e-9, "arrival {i} moved by {kept} s against the first of its stage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_never_sends_before_its_arrival() {
    // 5 ms apart: each arrival is paced by tokio's timer to 2 ms before it,
    // then by a blocking sleep (tokio's timer alone would send each one up
    // to a millisecond late, on its next whole-millisecond tick).
    let server = common::start(Script { tokens: 2, ..Default::default() }).await;
    let c = client(&server.base_url(), ApiKind::Chat);
    let recs = run_to_end(&c, &open_plan(200.0, Some(40), None), Arc::new(SyntheticWorkload::new(16, 2, 0.0, 1))).await;
    assert_eq!(recs.len(), 40);
    let mut late: Vec<f64> = recs.iter().map(|r| (r.t_send - r.t_sched) * 1e3).collect();
    assert!(late.iter().all(|l| *l >= 0.0), "a request went before its arrival: {late:?}");
    late.sort_by(f64::total_cmp);
    println!("send lateness: median {:.3} ms, max {:.3} ms", late[late.len() / 2], late[late.len() - 1]);
    // The schedule is the plan's: constant gaps of 5 ms from the first.
    for w in recs.windows(2) {
        assert!(((w[1].t_sched - w[0].t_sched) - 0.005).abs() < 1e-9, "{} then {}", w[0].t_sched, w[1].t_sched);
    }
}
