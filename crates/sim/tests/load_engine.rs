//! The simulated server driven by fleetbench's own load engine and client:
//! the TTFT and TPOT fleetbench measures agree with the simulator's schedule.

use std::net::SocketAddr;
use std::sync::Arc;

use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RequestRecord, RunClock, SamplingParams};
use fleetbench_load::{RunPlan, Schedule, StopCondition, SyntheticWorkload};
use fleetbench_sim::server::{start_server, SimServerConfig};
use fleetbench_sim::{Catalog, Deployment, DeploymentSpec};
use tokio::sync::{mpsc, watch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_ttft_and_tpot_match_the_engine_schedule() {
    let catalog = Catalog::embedded().unwrap();
    let d = Deployment::resolve(
        &catalog,
        &DeploymentSpec { model: "qwen2.5-coder-32b".into(), ..DeploymentSpec::default() },
    )
    .unwrap();
    let scale = 4.0;
    let output = 24u32;
    let mut cfg = SimServerConfig::new(d.clone());
    cfg.time_scale = scale;
    let h = start_server(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();

    let client = Client::new(ClientConfig::new(h.base_url(), ApiKind::Chat, "qwen2.5-coder-32b")).unwrap();
    let plan = RunPlan {
        schedule: Schedule::Closed { concurrency: 1 },
        stop: StopCondition { requests: Some(3), duration: None },
        warmup: 0,
        sampling: SamplingParams { max_tokens: Some(output), ..SamplingParams::default() },
        seed: 1,
        arrivals: None,
        shard: None,
        ramp: None,
    };
    let workload = Arc::new(SyntheticWorkload::new(200, output, 0.0, 7));
    let (tx, mut rx) = mpsc::unbounded_channel::<RequestRecord>();
    let (_stop_tx, stop_rx) = watch::channel(false);
    let report = fleetbench_load::run(&plan, &client, workload, RunClock::start(), tx, stop_rx).await;
    assert_eq!(report.finished, 3);
    let mut records = Vec::new();
    while let Ok(r) = rx.try_recv() {
        records.push(r);
    }
    assert_eq!(records.len(), 3);
    for r in &records {
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!(r.output_tokens, output as u64);
        let prompt = r.input_tokens.expect("usage.prompt_tokens") as u32;
        // One request at a time: TTFT is the chunked prefill, TPOT the mean
        // decode step at the average context, both in model seconds.
        let model_ttft = d.prefill_time_s(prompt, 0, 0.0);
        let model_tpot: f64 =
            (1..output).map(|j| d.decode_step(1, (prompt + j) as f64).time_s).sum::<f64>() / (output - 1) as f64;
        let ttft = r.ttft().unwrap() * scale;
        let tpot = r.tpot().unwrap() * scale;
        assert!(ttft >= model_ttft * 0.95 && ttft <= model_ttft * 1.5 + 0.1, "ttft {ttft} vs model {model_ttft}");
        assert!(tpot >= model_tpot * 0.9 && tpot <= model_tpot * 1.5 + 0.01, "tpot {tpot} vs model {model_tpot}");
    }
    h.shutdown().await;
}
