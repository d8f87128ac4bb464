//! 100,000 shared-prefix requests replayed through `sim replay`'s driver
//! (workload generation, prefix caching, per-stage figures; no HTTP).
//!
//! Run: `cargo bench -p fleetbench-sim --bench replay`

use fleetbench_core::SamplingParams;
use fleetbench_sim::replay::{replay, ReplayPlan};
use fleetbench_sim::{Catalog, Deployment, DeploymentSpec};
use fleetbench_workload::{ArrivalSpec, Schedule, Traffic, WorkloadSpec};

fn main() {
    divan::main();
}

fn deployment() -> Deployment {
    let c = Catalog::embedded().expect("catalog");
    Deployment::resolve(
        &c,
        &DeploymentSpec {
            gpu: "h100-sxm".into(),
            model: "llama-3.1-8b".into(),
            quant: "fp8".into(),
            engine: "vllm".into(),
            ..DeploymentSpec::default()
        },
    )
    .expect("deployment")
}

/// Replays `requests` requests of `workload` arriving as `arrivals`.
fn bench_replay(bencher: divan::Bencher, workload: &str, arrivals: &str, requests: u64) {
    let d = deployment();
    let workload = WorkloadSpec::parse(workload).expect("workload");
    let arrivals = ArrivalSpec::parse(arrivals).expect("arrivals");
    let traffic = Traffic::resolve(&workload, true, Some(&arrivals), 1).expect("traffic");
    let plan = ReplayPlan {
        schedule: Schedule::Open { rate: 100.0, arrival: fleetbench_workload::Arrival::Poisson, max_concurrency: None },
        arrivals: traffic.arrivals,
        requests: Some(requests),
        duration_s: None,
        warmup: 0,
        sampling: SamplingParams::default(),
        seed: 1,
        prefix_caching: true,
    };
    bencher.counter(divan::counter::ItemsCount::new(requests)).bench(|| {
        let r = replay(d.clone(), &plan, traffic.workload.as_ref());
        assert!(r.overall.requests * 20 > requests * 19, "{}", r.overall.requests);
        divan::black_box(r)
    });
}

/// Two stages of 50,000 requests each, below and near saturation.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn hundred_thousand_requests(bencher: divan::Bencher) {
    bench_replay(
        bencher,
        "shared-prefix:groups=8,users=64,system=400,question=100,output=32",
        "poisson:100/s*500s,200/s*250s",
        100_000,
    );
}

/// The shape of a check run: constant-rate stages of multi-turn
/// conversations, each turn carrying its user's history.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn hundred_thousand_multi_turn(bencher: divan::Bencher) {
    bench_replay(
        bencher,
        "shared-prefix:groups=32,users=16,system=1024,question=128,output=64,multi-turn",
        "constant:50/s*1000s,100/s*500s",
        100_000,
    );
}
