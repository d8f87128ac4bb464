//! One million requests through the discrete-event engine (no HTTP).
//!
//! Run: `cargo bench -p fleetbench-sim --bench engine`

use fleetbench_sim::engine::{simulate_offline, EngineRequest};
use fleetbench_sim::perf::predict_level;
use fleetbench_sim::{Catalog, Deployment, DeploymentSpec, Workload};

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

/// Open-loop arrivals at 90 % of the predicted saturation throughput;
/// prompts of 100..300 tokens, outputs of 16..48 tokens.
fn arrivals(d: &Deployment, n: u64) -> impl Iterator<Item = (f64, EngineRequest)> {
    let w = Workload { input_tokens: 200, output_tokens: 32 };
    let level = predict_level(d, w, d.max_num_seqs);
    let rate = 0.9 * level.aggregate_tok_s / 32.0;
    (0..n).map(move |id| {
        let jitter = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as u32;
        let req = EngineRequest { id, prompt_tokens: 100 + jitter % 201, output_tokens: 16 + jitter % 33 };
        (id as f64 / rate, req)
    })
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn one_million_requests(bencher: divan::Bencher) {
    let d = deployment();
    bencher.counter(divan::counter::ItemsCount::new(1_000_000usize)).bench(|| {
        let mut done = 0u64;
        let s = simulate_offline(d.clone(), arrivals(&d, 1_000_000), |_| done += 1);
        assert_eq!(done, 1_000_000);
        divan::black_box(s)
    });
}
