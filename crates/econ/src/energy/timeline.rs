//! The energy timeline of a run and what it yields: energy between two
//! instants (counter difference or trapezoid over power), idle baseline, J/token.

use serde::{Deserialize, Serialize};

use super::{MeterKind, Provenance};

/// One reading, `at_s` seconds after the run's clock origin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnergySample {
    pub at_s: f64,
    /// Instantaneous (or meter-averaged) power, watts, summed over devices.
    pub power_w: Option<f64>,
    /// Energy counted since the meter started, joules, wraps and resets
    /// already unfolded, summed over devices.
    pub energy_j: Option<f64>,
}

/// Every reading of one meter over a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyTimeline {
    pub meter: MeterKind,
    /// The meter in words (`NVML, 8 GPUs`).
    pub description: String,
    pub provenance: Provenance,
    pub interval_s: f64,
    pub samples: Vec<EnergySample>,
    /// Reads that failed (their instants are gaps in the timeline).
    pub failed_reads: u64,
    pub last_error: Option<String>,
}

/// How an energy figure was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationMethod {
    /// Difference of the meter's energy counter.
    Counter,
    /// Trapezoid rule over power samples.
    PowerTrapezoid,
}

/// Energy over a window, with how much of the window rests on
/// interpolation or lies outside the samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnergyEstimate {
    pub joules: f64,
    pub method: IntegrationMethod,
    /// Seconds of the window inside the sampled span.
    pub covered_s: f64,
    /// Of those, seconds bridged across a gap longer than `max_gap_s`
    /// (a linear guess between the samples either side).
    pub bridged_s: f64,
    /// Seconds of the window before the first or after the last sample (not
    /// counted in `joules`).
    pub uncovered_s: f64,
}

impl EnergyTimeline {
    pub fn new(meter: MeterKind, description: String, provenance: Provenance, interval_s: f64) -> Self {
        EnergyTimeline {
            meter,
            description,
            provenance,
            interval_s,
            samples: Vec::new(),
            failed_reads: 0,
            last_error: None,
        }
    }

    /// A gap is a spacing of more than `max_gap_s` between usable samples;
    /// by default 2.5 sampling intervals (one missed read is tolerated).
    pub fn default_max_gap_s(&self) -> f64 {
        2.5 * self.interval_s
    }

    /// Energy between `t0` and `t1` (seconds on the run clock). Uses the
    /// energy counter when samples carry one across the window, else the
    /// trapezoid rule over power. `None` when nothing usable overlaps.
    pub fn energy_between(&self, t0: f64, t1: f64, max_gap_s: f64) -> Option<EnergyEstimate> {
        if !greater(t1, t0) {
            return None;
        }
        let counter: Vec<(f64, f64)> = self.samples.iter().filter_map(|s| s.energy_j.map(|e| (s.at_s, e))).collect();
        if counter.len() >= 2 {
            if let Some(est) = integrate(&counter, t0, t1, max_gap_s, Mode::Counter) {
                return Some(est);
            }
        }
        let power: Vec<(f64, f64)> = self.samples.iter().filter_map(|s| s.power_w.map(|p| (s.at_s, p))).collect();
        integrate(&power, t0, t1, max_gap_s, Mode::Trapezoid)
    }

    /// Mean power between `t0` and `t1`, watts (e.g. the idle baseline).
    pub fn mean_power_w(&self, t0: f64, t1: f64) -> Option<f64> {
        let e = self.energy_between(t0, t1, self.default_max_gap_s())?;
        (e.covered_s > 0.0).then(|| e.joules / e.covered_s)
    }

    /// First and last sample instants.
    pub fn span(&self) -> Option<(f64, f64)> {
        Some((self.samples.first()?.at_s, self.samples.last()?.at_s))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Counter,
    Trapezoid,
}

/// `points` are (time, value) sorted by time; value is cumulative energy
/// (Counter) or power (Trapezoid).
fn integrate(points: &[(f64, f64)], t0: f64, t1: f64, max_gap_s: f64, mode: Mode) -> Option<EnergyEstimate> {
    let first = points.first()?.0;
    let last = points.last()?.0;
    let a = t0.max(first);
    let b = t1.min(last);
    let window = t1 - t0;
    if points.len() < 2 || !greater(b, a) {
        return None;
    }
    let mut joules = 0.0;
    let mut bridged = 0.0;
    for pair in points.windows(2) {
        let (ta, va) = pair[0];
        let (tb, vb) = pair[1];
        let dt = tb - ta;
        if !greater(dt, 0.0) {
            continue;
        }
        let lo = ta.max(a);
        let hi = tb.min(b);
        if !greater(hi, lo) {
            continue;
        }
        let at = |t: f64| va + (vb - va) * (t - ta) / dt;
        joules += match mode {
            Mode::Counter => at(hi) - at(lo),
            Mode::Trapezoid => 0.5 * (at(lo) + at(hi)) * (hi - lo),
        };
        if dt > max_gap_s {
            bridged += hi - lo;
        }
    }
    let covered = b - a;
    Some(EnergyEstimate {
        joules,
        method: match mode {
            Mode::Counter => IntegrationMethod::Counter,
            Mode::Trapezoid => IntegrationMethod::PowerTrapezoid,
        },
        covered_s: covered,
        bridged_s: bridged,
        uncovered_s: (window - covered).max(0.0),
    })
}

/// `a > b`, false when either is NaN.
fn greater(a: f64, b: f64) -> bool {
    a.partial_cmp(&b) == Some(std::cmp::Ordering::Greater)
}

/// Unfolds a raw monotonic counter into a running total across wraps and
/// resets. Integer arithmetic, so a 64-bit millijoule counter stays exact.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterUnwrap {
    wrap: CounterWrap,
    last: Option<u64>,
    total: u64,
}

/// What a counter does when it overflows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CounterWrap {
    /// Counts modulo this range: after `range - 1` comes 0 (RAPL:
    /// `max_energy_range_uj`; a 64-bit counter such as NVML's: 2^64).
    Modulo(u128),
    /// Never wraps; a smaller reading means the counter restarted from 0
    /// (a driver reload, an exporter restart).
    ResetOnDecrease,
}

impl CounterUnwrap {
    pub fn new(wrap: CounterWrap) -> Self {
        CounterUnwrap { wrap, last: None, total: 0 }
    }

    /// Feeds one raw reading; returns the total counted since the first.
    pub fn push(&mut self, raw: u64) -> u64 {
        if let Some(last) = self.last {
            let delta = if raw >= last {
                raw - last
            } else {
                match self.wrap {
                    // A reading at or above the declared range: not a wrap
                    // we understand, so count it as a restart.
                    CounterWrap::Modulo(range) if range <= u128::from(last) => raw,
                    CounterWrap::Modulo(range) => {
                        let d = u128::from(raw) + range - u128::from(last);
                        u64::try_from(d).unwrap_or(u64::MAX)
                    }
                    CounterWrap::ResetOnDecrease => raw,
                }
            };
            self.total = self.total.saturating_add(delta);
        }
        self.last = Some(raw);
        self.total
    }
}

/// Energy of one window of a run, idle subtracted and reported apart.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowEnergy {
    pub start_s: f64,
    pub end_s: f64,
    pub joules: f64,
    /// Idle power × window length (0 when no baseline was measured).
    pub idle_joules: f64,
    pub net_joules: f64,
    pub output_tokens: u64,
    /// All the energy per output token.
    pub j_per_token: f64,
    /// Idle subtracted: `energy_per_output_token_j` of docs/METRICS.md.
    pub net_j_per_token: f64,
    pub estimate: EnergyEstimate,
}

/// A window of the run and the output tokens finished in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenWindow {
    pub start_s: f64,
    pub end_s: f64,
    pub output_tokens: u64,
}

impl TokenWindow {
    /// The steady-state window of a run's metrics (run-clock seconds, so the
    /// sampler must have been started with the run clock's epoch as origin).
    pub fn from_steady_state(ss: &fleetbench_core::metrics::SteadyState) -> TokenWindow {
        TokenWindow { start_s: ss.start, end_s: ss.end, output_tokens: ss.output_tokens.round().max(0.0) as u64 }
    }
}

/// The energy block of a run report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReport {
    pub meter: MeterKind,
    pub description: String,
    pub provenance: Provenance,
    pub idle_power_w: Option<f64>,
    pub whole_run: Option<WindowEnergy>,
    pub steady_state: Option<WindowEnergy>,
    /// `steady_state.net_j_per_token`, else the whole run's.
    pub energy_per_output_token_j: Option<f64>,
}

/// J/token over the whole run and the steady-state window, idle power
/// (measured before the run) subtracted and reported apart.
pub fn energy_report(
    timeline: &EnergyTimeline,
    idle_power_w: Option<f64>,
    whole_run: TokenWindow,
    steady_state: Option<TokenWindow>,
) -> EnergyReport {
    let per_window = |w: TokenWindow| -> Option<WindowEnergy> {
        let est = timeline.energy_between(w.start_s, w.end_s, timeline.default_max_gap_s())?;
        let idle = idle_power_w.unwrap_or(0.0) * est.covered_s;
        let net = est.joules - idle;
        let per = |j: f64| {
            if w.output_tokens > 0 {
                j / w.output_tokens as f64
            } else {
                f64::NAN
            }
        };
        Some(WindowEnergy {
            start_s: w.start_s,
            end_s: w.end_s,
            joules: est.joules,
            idle_joules: idle,
            net_joules: net,
            output_tokens: w.output_tokens,
            j_per_token: per(est.joules),
            net_j_per_token: per(net),
            estimate: est,
        })
    };
    let whole = per_window(whole_run);
    let steady = steady_state.and_then(per_window);
    let headline = steady.or(whole).map(|w| w.net_j_per_token).filter(|v| v.is_finite());
    EnergyReport {
        meter: timeline.meter,
        description: timeline.description.clone(),
        provenance: timeline.provenance,
        idle_power_w,
        whole_run: whole,
        steady_state: steady,
        energy_per_output_token_j: headline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(samples: Vec<EnergySample>) -> EnergyTimeline {
        let mut t = EnergyTimeline::new(MeterKind::Modelled, "test".into(), Provenance::Modelled, 1.0);
        t.samples = samples;
        t
    }

    fn p(at_s: f64, w: f64) -> EnergySample {
        EnergySample { at_s, power_w: Some(w), energy_j: None }
    }

    #[test]
    fn trapezoid_over_a_ramp_is_exact() {
        // Power ramps 100 → 300 W over 0..4 s: area = 4 × 200 = 800 J.
        let t = timeline((0..=4).map(|i| p(i as f64, 100.0 + 50.0 * i as f64)).collect());
        let e = t.energy_between(0.0, 4.0, 2.5).unwrap();
        assert!((e.joules - 800.0).abs() < 1e-9);
        assert_eq!(e.method, IntegrationMethod::PowerTrapezoid);
        assert_eq!(e.bridged_s, 0.0);
        // A window inside the samples is clipped by interpolation:
        // 1.5..2.5 s: power 175 → 225, mean 200, 1 s = 200 J.
        let e = t.energy_between(1.5, 2.5, 2.5).unwrap();
        assert!((e.joules - 200.0).abs() < 1e-9);
        assert!((t.mean_power_w(0.0, 4.0).unwrap() - 200.0).abs() < 1e-9);
    }

    #[test]
    fn gaps_are_bridged_and_reported() {
        // 100 W at 0, 1, 2 s; the meter misses 3..6; 100 W again at 7, 8.
        // Square pulse of power 500 W at 3 would be lost; linear bridge is 100 W.
        let mut s: Vec<_> = [0.0, 1.0, 2.0, 7.0, 8.0].iter().map(|&t| p(t, 100.0)).collect();
        s.push(EnergySample { at_s: 4.0, power_w: None, energy_j: None }); // a failed read
        s.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let t = timeline(s);
        let e = t.energy_between(0.0, 8.0, 2.5).unwrap();
        assert!((e.joules - 800.0).abs() < 1e-9);
        assert!((e.bridged_s - 5.0).abs() < 1e-9, "{e:?}");
        // A window reaching past the samples counts only the covered part.
        let e = t.energy_between(-2.0, 8.0, 2.5).unwrap();
        assert!((e.uncovered_s - 2.0).abs() < 1e-9 && (e.covered_s - 8.0).abs() < 1e-9);
        assert!(t.energy_between(9.0, 10.0, 2.5).is_none());
    }

    #[test]
    fn counters_win_over_power_and_wraps_unfold() {
        // A 64-bit millijoule counter that wraps between the 2nd and 3rd read.
        let mut u = CounterUnwrap::new(CounterWrap::Modulo(1 << 64));
        // MAX - 1000 → MAX is 1000 mJ, → 0 one more, → 2999 another 2999.
        let raws = [u64::MAX - 5_000, u64::MAX - 1_000, 2_999, 12_999];
        let totals: Vec<u64> = raws.iter().map(|&r| u.push(r)).collect();
        assert_eq!(totals, vec![0, 4_000, 8_000, 18_000]);
        // As a timeline (mJ → J), with a misleading power reading beside it.
        let samples = totals
            .iter()
            .enumerate()
            .map(|(i, &mj)| EnergySample { at_s: i as f64, power_w: Some(1.0), energy_j: Some(mj as f64 / 1000.0) })
            .collect();
        let t = timeline(samples);
        let e = t.energy_between(0.0, 3.0, 2.5).unwrap();
        assert_eq!(e.method, IntegrationMethod::Counter);
        assert!((e.joules - 18.0).abs() < 1e-9);
        // Half way between samples, linear within the counter: 6 J at 1.5 s, 13 J at 2.5 s.
        let e = t.energy_between(1.5, 2.5, 2.5).unwrap();
        assert!((e.joules - 7.0).abs() < 1e-9);
    }

    #[test]
    fn rapl_style_wrap_and_resets() {
        let mut u = CounterUnwrap::new(CounterWrap::Modulo(262_143_328_850));
        u.push(262_143_000_000);
        assert_eq!(u.push(1_000_000), 328_850 + 1_000_000);
        let mut r = CounterUnwrap::new(CounterWrap::ResetOnDecrease);
        r.push(500);
        r.push(900);
        assert_eq!(r.push(100), 500); // restarted from 0: 400 + 100
    }

    #[test]
    fn report_subtracts_idle_and_prefers_steady_state() {
        // 50 W idle; the run draws 250 W for 10 s and 1000 tokens, of which
        // the steady window 2..8 s holds 800.
        let t = timeline((0..=10).map(|i| p(i as f64, 250.0)).collect());
        let r = energy_report(
            &t,
            Some(50.0),
            TokenWindow { start_s: 0.0, end_s: 10.0, output_tokens: 1000 },
            Some(TokenWindow { start_s: 2.0, end_s: 8.0, output_tokens: 800 }),
        );
        let whole = r.whole_run.unwrap();
        assert!((whole.joules - 2500.0).abs() < 1e-9);
        assert!((whole.idle_joules - 500.0).abs() < 1e-9);
        assert!((whole.j_per_token - 2.5).abs() < 1e-9);
        assert!((whole.net_j_per_token - 2.0).abs() < 1e-9);
        let steady = r.steady_state.unwrap();
        assert!((steady.net_j_per_token - 1.5).abs() < 1e-9); // (1500 − 300) / 800
        assert_eq!(r.energy_per_output_token_j, Some(steady.net_j_per_token));
        assert_eq!(r.provenance, Provenance::Modelled);
    }
}
