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

#[divan::bench(sample_count = 3, sample_size = 1)]
fn hundred_thousand_requests(bencher: divan::Bencher) {
    let d = deployment();
    let workload =
        WorkloadSpec::parse("shared-prefix:groups=8,users=64,system=400,question=100,output=32").expect("workload");
    // Two stages of 50,000 requests each, below and near saturation.
    let arrivals = ArrivalSpec::parse("poisson:100/s*500s,200/s*250s").expect("arrivals");
    let traffic = Traffic::resolve(&workload, true, Some(&arrivals), 1).expect("traffic");
    let plan = ReplayPlan {
        schedule: Schedule::Open { rate: 100.0, arrival: fleetbench_workload::Arrival::Poisson, max_concurrency: None },
        arrivals: traffic.arrivals,
        requests: Some(100_000),
        duration_s: None,
        warmup: 0,
        drain_after_warmup: false,
        sampling: SamplingParams::default(),
        seed: 1,
        prefix_caching: true,
    };
    bencher.counter(divan::counter::ItemsCount::new(100_000usize)).bench(|| {
        let r = replay(d.clone(), &plan, traffic.workload.as_ref());
        assert!(r.overall.requests > 95_000, "{}", r.overall.requests);
        divan::black_box(r)
    });
}
