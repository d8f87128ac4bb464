//! Telemetry generation speed: samples per second of the streaming
//! generator (state stepping alone, and with Prometheus text rendering).

use divan::counter::ItemsCount;
use divan::Bencher;
use fleetbench_aiops::output::{write_telemetry, TelemetryFormat};
use fleetbench_aiops::telemetry::Frame;
use fleetbench_aiops::time::TIMELINE_EPOCH;
use fleetbench_aiops::{plan_schedule, Fleet};

fn main() {
    divan::main();
}

const STEPS: u64 = 40;

#[divan::bench(args = [64, 512])]
fn step_only(bencher: Bencher, gpus: usize) {
    let fleet = Fleet::build(gpus, 7).expect("fleet");
    let eps = plan_schedule(&fleet, 4, 7);
    let per_step = Frame::before(&fleet, TIMELINE_EPOCH).series() as u64;
    bencher.counter(ItemsCount::new(per_step * STEPS)).bench_local(|| {
        let mut f = Frame::before(&fleet, TIMELINE_EPOCH);
        for _ in 0..STEPS {
            f.advance(&fleet, &eps);
        }
        divan::black_box(f.t)
    });
}

#[divan::bench(args = [64, 512])]
fn prometheus_text(bencher: Bencher, gpus: usize) {
    let fleet = Fleet::build(gpus, 7).expect("fleet");
    let eps = plan_schedule(&fleet, 4, 7);
    let per_step = Frame::before(&fleet, TIMELINE_EPOCH).series() as u64;
    bencher.counter(ItemsCount::new(per_step * STEPS)).bench_local(|| {
        let mut sink = std::io::sink();
        write_telemetry(&fleet, &eps, STEPS, TelemetryFormat::Prometheus, &mut sink).expect("write")
    });
}
