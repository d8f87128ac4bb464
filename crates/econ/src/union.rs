//! The cost and energy of a run measured by several processes at once
//! (`--shard I/N`). Each shard stores its own part
//! ([`ShardFiguresRecord`]); the union's figures come from all parts:
//!
//! - **Energy**: one meter per distinct thing metered. A Prometheus meter
//!   reads one series wherever it is read from, so shards that read the
//!   same one count it once; a local meter (NVML, nvidia-smi, RAPL) is its
//!   host's, so shards on one host count it once and shards on several
//!   hosts add up. Each distinct meter's timeline (on the run's common
//!   clock) is integrated over the union's windows (the whole run, the
//!   steady state) with its own idle baseline subtracted; the joules add
//!   up, and per output token they are divided by the union's tokens.
//! - **Cost**: the union's usage (all shards' requests and tokens, the
//!   union's duration) priced with the price entry, exactly as one run.

use fleetbench_core::{RequestRecord, RunMetrics};

use crate::energy::timeline::{energy_report, EnergyReport, TokenWindow, WindowEnergy};
use crate::energy::{EnergyTimeline, MeterKind};
use crate::instruments::{whole_window, Instruments, RunFigures};
use crate::records::ShardFiguresRecord;

impl Instruments {
    /// The union's cost and energy from every shard's part; `backend` names
    /// the energy record (as [`crate::instruments::Metering::finish`] does).
    pub fn union_figures(
        &self,
        backend: &str,
        metrics: &RunMetrics,
        records: &[RequestRecord],
        parts: &[ShardFiguresRecord],
    ) -> RunFigures {
        let mut figures = RunFigures::default();
        let meters = distinct_meters(parts);
        if !meters.is_empty() {
            let measured = records.iter().filter(|r| !r.warmup);
            let start = measured.clone().map(|r| r.t_send).fold(f64::INFINITY, f64::min);
            let end = measured.map(|r| r.t_end).fold(f64::NEG_INFINITY, f64::max);
            let whole = whole_window(metrics, (start, end));
            let steady = metrics.steady_state.as_ref().map(TokenWindow::from_steady_state);
            let reports = meters.iter().map(|(t, idle)| energy_report(t, *idle, whole, steady)).collect();
            let samples = meters.iter().map(|(t, _)| t.samples.len() as u64).sum();
            let failed = meters.iter().map(|(t, _)| t.failed_reads).sum();
            let report = sum_reports(reports);
            figures.energy = Some(self.energy_record(backend, report, samples, failed, &mut figures.warnings));
        }
        figures.cost = self.price(metrics, figures.energy.as_ref(), &mut figures.warnings);
        figures
    }
}

/// The timeline and idle power of each distinct meter, first shard first.
fn distinct_meters(parts: &[ShardFiguresRecord]) -> Vec<(&EnergyTimeline, Option<f64>)> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for p in parts {
        let Some(t) = &p.timeline else { continue };
        let at = if t.meter == MeterKind::Prometheus { "" } else { p.host.as_str() };
        let key = (at, t.meter, t.description.as_str());
        if !seen.contains(&key) {
            seen.push(key);
            out.push((t, p.energy.as_ref().and_then(|e| e.idle_power_w)));
        }
    }
    out
}

/// Several meters' reports over the same windows as one: joules add up, per
/// token they are divided by the window's tokens. A window some meter did
/// not cover is left out.
fn sum_reports(reports: Vec<EnergyReport>) -> EnergyReport {
    let mut it = reports.into_iter();
    let Some(mut total) = it.next() else {
        return EnergyReport {
            meter: MeterKind::Modelled,
            description: String::new(),
            provenance: crate::energy::Provenance::Modelled,
            idle_power_w: None,
            whole_run: None,
            steady_state: None,
            energy_per_output_token_j: None,
        };
    };
    for r in it {
        total.description = format!("{} + {}", total.description, r.description);
        total.idle_power_w = match (total.idle_power_w, r.idle_power_w) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        total.whole_run = add(total.whole_run, r.whole_run);
        total.steady_state = add(total.steady_state, r.steady_state);
    }
    total.energy_per_output_token_j =
        total.steady_state.or(total.whole_run).map(|w| w.net_j_per_token).filter(|v| v.is_finite());
    total
}

fn add(a: Option<WindowEnergy>, b: Option<WindowEnergy>) -> Option<WindowEnergy> {
    let (mut a, b) = (a?, b?);
    a.joules += b.joules;
    a.idle_joules += b.idle_joules;
    a.net_joules += b.net_joules;
    let per = |j: f64| if a.output_tokens > 0 { j / a.output_tokens as f64 } else { f64::NAN };
    a.j_per_token = per(a.joules);
    a.net_j_per_token = per(a.net_joules);
    a.estimate.joules += b.estimate.joules;
    a.estimate.covered_s = a.estimate.covered_s.min(b.estimate.covered_s);
    a.estimate.bridged_s = a.estimate.bridged_s.max(b.estimate.bridged_s);
    a.estimate.uncovered_s = a.estimate.uncovered_s.max(b.estimate.uncovered_s);
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::timeline::EnergySample;
    use crate::energy::Provenance;
    use crate::instruments::InstrumentSpec;
    use crate::records::EnergyRecord;

    /// A meter drawing `w` watts, sampled every half second for 10 s.
    fn timeline(meter: MeterKind, description: &str, w: f64) -> EnergyTimeline {
        let mut t = EnergyTimeline::new(meter, description.into(), Provenance::Measured, 0.5);
        t.samples = (0..=20).map(|i| EnergySample { at_s: i as f64 * 0.5, power_w: Some(w), energy_j: None }).collect();
        t
    }

    fn part(host: &str, t: EnergyTimeline, idle: f64) -> ShardFiguresRecord {
        let energy = EnergyRecord { idle_power_w: Some(idle), ..Default::default() };
        ShardFiguresRecord { host: host.into(), cost: None, energy: Some(energy), timeline: Some(t) }
    }

    async fn union(parts: &[ShardFiguresRecord]) -> RunFigures {
        // 1000 output tokens between 1 s and 9 s.
        let records: Vec<RequestRecord> =
            [1.0, 9.0].iter().map(|&t| RequestRecord { t_send: t, t_end: t, ..RequestRecord::default() }).collect();
        let metrics = RunMetrics { total_output_tokens: 1000, completed: 2, duration: 8.0, ..Default::default() };
        let spec = InstrumentSpec { price: Some("rented-1x-h100-sxm".into()), ..InstrumentSpec::default() };
        let inst = Instruments::prepare(&spec).await.expect("instruments").0;
        inst.union_figures("m", &metrics, &records, parts)
    }

    #[tokio::test]
    async fn local_meters_on_two_hosts_add_up_and_one_meter_counts_once() {
        let nvml = |w| timeline(MeterKind::Nvml, "NVML, 1 GPU", w);
        // Two hosts at 300 W and 100 W, 50 W idle each, over 8 s: (250 + 50) × 8 J net.
        let f =
            union(&[part("a", nvml(300.0), 50.0), part("b", nvml(100.0), 50.0), part("b", nvml(100.0), 50.0)]).await;
        let e = f.energy.expect("the union's energy");
        let w = e.whole_run.expect("the whole run");
        assert!((w.joules - 3200.0).abs() < 1e-6, "{w:?}");
        assert!((w.net_joules - 2400.0).abs() < 1e-6, "{w:?}");
        assert!((e.energy_per_output_token_j.expect("J/token") - 2.4).abs() < 1e-9);
        // One Prometheus series read by three shards on three hosts: counted once.
        let prom = || timeline(MeterKind::Prometheus, "prometheus DCGM", 300.0);
        let f = union(&[part("a", prom(), 0.0), part("b", prom(), 0.0), part("c", prom(), 0.0)]).await;
        let w = f.energy.and_then(|e| e.whole_run).expect("the whole run");
        assert!((w.joules - 2400.0).abs() < 1e-6, "{w:?}");
        // The cost is the union's: 8 s of the rented machine, whatever the shards.
        let c = f.cost.expect("priced");
        let per_hour = c.figures.usd_total.expect("total") * 3600.0 / 8.0;
        assert!(per_hour > 0.5 && per_hour < 50.0, "{per_hour}");
        assert!(union(&[]).await.energy.is_none());
    }
}
