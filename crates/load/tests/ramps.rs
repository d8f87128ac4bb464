//! Ramps against a scripted server whose timing is known exactly: agents
//! join a closed loop step by step, arrivals rise step by step, and each
//! window's figures show the load it had.

use std::sync::Arc;
use std::time::Duration;

use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RequestRecord, RunClock, SamplingParams};
use fleetbench_load::measure::ramp_windows;
use fleetbench_load::{run, Arrival, RunPlan, Schedule, StopCondition, SyntheticWorkload};
use fleetbench_testkit::Script;
use fleetbench_workload::RampSpec;
use tokio::sync::{mpsc, watch};

async fn drive(url: &str, plan: RunPlan) -> Vec<RequestRecord> {
    let client = Client::new(ClientConfig::new(url, ApiKind::Chat, "test-model")).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_stop_tx, stop_rx) = watch::channel(false);
    let workload = Arc::new(SyntheticWorkload::new(32, 4, 0.0, 1));
    run(&plan, &client, workload, RunClock::start(), tx, stop_rx).await;
    let mut out = Vec::new();
    while let Ok(r) = rx.try_recv() {
        out.push(r);
    }
    out.sort_by_key(|r| r.index);
    out
}

fn script() -> Script {
    // 4 tokens: the first after 30 ms, then one every 5 ms (45 ms a request).
    Script { ttft: Duration::from_millis(30), itl: Duration::from_millis(5), tokens: 4, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_ramp_adds_agents_step_by_step() {
    let s = fleetbench_testkit::start(script()).await;
    let ramp = RampSpec::parse("concurrency:1..4/1.2s,steps=4").unwrap();
    let plan = RunPlan {
        schedule: Schedule::Closed { concurrency: 4 },
        stop: StopCondition { requests: None, duration: Some(Duration::from_secs_f64(1.2)) },
        warmup: 2,
        sampling: SamplingParams::default(),
        seed: 1,
        arrivals: None,
        ramp: Some(ramp),
        shard: None,
    };
    let recs = drive(&s.base_url(), plan).await;
    assert!(recs.iter().all(|r| r.ok()));
    let measured: Vec<&RequestRecord> = recs.iter().filter(|r| !r.warmup).collect();
    let origin = measured.iter().map(|r| r.t_sched).fold(f64::INFINITY, f64::min);
    // Agent k joins 0.3 s × k after the measured phase starts.
    for agent in 0..4u32 {
        let first = measured.iter().filter(|r| r.agent == Some(agent)).map(|r| r.t_sched).fold(f64::INFINITY, f64::min);
        assert!((first - origin - 0.3 * agent as f64).abs() < 1e-6, "agent {agent} joins at {}", first - origin);
    }
    let w = ramp_windows(&recs, &ramp, 1.0);
    assert_eq!(w.iter().map(|w| w.level).collect::<Vec<_>>(), [1.0, 2.0, 3.0, 4.0]);
    for (k, win) in w.iter().enumerate() {
        // The server answers everyone at once: exactly the step's agents are in flight.
        assert_eq!(win.max_concurrent_requests, k as u64 + 1, "window {k}: {win:?}");
        let ttft = win.median_ttft_ms.unwrap();
        assert!((30.0..45.0).contains(&ttft), "window {k}: TTFT {ttft} ms");
    }
    // Output throughput follows the agents: about 4 tokens per 45 ms per agent.
    let per_agent = 4.0 / 0.045;
    for (k, win) in w.iter().enumerate() {
        let want = per_agent * (k + 1) as f64;
        assert!(win.output_throughput > 0.7 * want && win.output_throughput < 1.15 * want, "window {k}: {win:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_ramp_raises_the_arrivals_step_by_step() {
    let s = fleetbench_testkit::start(script()).await;
    let ramp = RampSpec::parse("rate:20..80/2s,steps=4").unwrap();
    let plan = RunPlan {
        schedule: Schedule::Open { rate: 20.0, arrival: Arrival::Constant, max_concurrency: None },
        stop: StopCondition::default(),
        warmup: 0,
        sampling: SamplingParams::default(),
        seed: 1,
        arrivals: Some(ramp.arrivals(Arrival::Constant).plan(1).unwrap()),
        ramp: Some(ramp),
        shard: None,
    };
    let recs = drive(&s.base_url(), plan).await;
    // 0.5 s at 20, 40, 60 and 80 per second: 10, 20, 30 and 40 arrivals, and the run ends with the ramp.
    assert_eq!(recs.len(), 100);
    let w = ramp_windows(&recs, &ramp, 1.0);
    assert_eq!(w.iter().map(|w| w.requests).collect::<Vec<_>>(), [10, 20, 30, 40]);
    assert_eq!(w.iter().map(|w| w.level).collect::<Vec<_>>(), [20.0, 40.0, 60.0, 80.0]);
    for (k, win) in w.iter().enumerate() {
        assert_eq!(win.failed, 0);
        // A request lasts 45 ms: at 20 k per second, about 0.9 k in flight (a few more when
        // a loaded machine delays some answers).
        let bound = (0.045 * 20.0 * (k + 1) as f64).ceil() as u64 + 3;
        assert!(win.max_concurrent_requests >= 1 && win.max_concurrent_requests <= bound, "window {k}: {win:?}");
    }
    assert!(w[3].request_throughput > 3.0 * w[0].request_throughput, "{w:?}");
    assert!(w[3].max_concurrent_requests >= w[0].max_concurrent_requests, "{w:?}");
}
