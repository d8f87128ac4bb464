//! Sweeps: the driver that measures a backend level by level
//! ([`driver::run_sweep`]), the cliff finder that chooses the next
//! concurrency (or rate) to measure, the knee, and the one-line explanation
//! of why the curve bends. The finder and [`explain`] are pure logic; the
//! driver measures each level and reports back to them. What a sweep stores
//! is in [`records`]; how several processes measure one sweep, in
//! [`sharded`].

pub mod driver;
pub mod records;
pub mod sharded;

use std::collections::BTreeMap;

use fleetbench_client::prom::ServerLevelStats;
use fleetbench_core::sessions::SessionFigures;
use serde::{Deserialize, Serialize};

/// A session workload across a sweep's levels: how long a session takes as
/// agents are added, and where that time has doubled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionCurve {
    /// The lowest level with completed sessions, and their mean completion time there.
    pub baseline_level: f64,
    pub baseline_completion_s: f64,
    /// The lowest level whose mean session completion time is at least twice
    /// the baseline's; `None`: it never doubled within the levels measured.
    pub doubling_level: Option<f64>,
    /// The most completed sessions per hour at any level, and that level.
    pub peak_sessions_per_hour: f64,
    pub peak_level: f64,
}

impl SessionCurve {
    /// One line: where session completion time doubled, and the peak rate.
    pub fn describe(&self, unit: &str) -> String {
        let doubled = match self.doubling_level {
            Some(l) => format!("doubles by {} {unit}", fmt_level(l)),
            None => "does not double within the levels measured".into(),
        };
        format!(
            "sessions: completion time {:.1} s at {} {unit}, {doubled}; at most {:.0} sessions/hour (at {} {unit})",
            self.baseline_completion_s,
            fmt_level(self.baseline_level),
            self.peak_sessions_per_hour,
            fmt_level(self.peak_level)
        )
    }
}

/// The session curve of `(level, session figures)` pairs, in any order.
pub fn session_curve(points: &[(f64, &SessionFigures)]) -> Option<SessionCurve> {
    let mut timed: Vec<(f64, f64)> =
        points.iter().filter_map(|(l, f)| f.mean_completion_s.filter(|_| f.completed > 0).map(|t| (*l, t))).collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let &(baseline_level, baseline_completion_s) = timed.first()?;
    let doubling_level = timed.iter().find(|(_, t)| *t >= 2.0 * baseline_completion_s).map(|(l, _)| *l);
    let (peak_level, peak) = points
        .iter()
        .map(|(l, f)| (*l, f.sessions_per_hour))
        .fold((baseline_level, 0.0), |best, p| if p.1 > best.1 { p } else { best });
    Some(SessionCurve {
        baseline_level,
        baseline_completion_s,
        doubling_level,
        peak_sessions_per_hour: peak,
        peak_level,
    })
}

/// What the cliff finder needs to know about one measured level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelOutcome {
    /// Concurrency, or arrival rate for open-loop sweeps.
    pub level: f64,
    pub output_throughput: f64,
    /// Mean per-request decode speed.
    pub mean_tok_s: Option<f64>,
    pub slo_attainment_pct: Option<f64>,
    /// Failed / sent.
    pub error_rate: f64,
    pub server: Option<ServerLevelStats>,
}

/// Thresholds of the cliff search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CliffConfig {
    pub start: f64,
    pub max_level: f64,
    /// Doubling stops when throughput gains less than this (0.05 = 5 %).
    pub min_gain_per_doubling: f64,
    /// Doubling stops when SLO attainment falls under this (percent).
    pub min_slo_attainment_pct: f64,
    /// Doubling stops when the error rate rises by more than this.
    pub max_error_rate_rise: f64,
    /// Levels are whole numbers (concurrency) or not (rates).
    pub integer: bool,
}

impl Default for CliffConfig {
    fn default() -> Self {
        CliffConfig {
            start: 1.0,
            max_level: 256.0,
            min_gain_per_doubling: 0.05,
            min_slo_attainment_pct: 90.0,
            max_error_rate_rise: 0.05,
            integer: true,
        }
    }
}

/// The knee of a throughput curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    /// The highest level that still gains throughput: the smallest measured
    /// level within 3 % of the saturation throughput.
    pub level: f64,
    /// The knee lies in (band.0, band.1]: band.0 is the highest measured
    /// level still clearly below saturation.
    pub band: (f64, f64),
    pub saturation_output_throughput: f64,
    /// First level where SLO attainment fell under the floor or per-request
    /// speed halved against the first level.
    pub break_level: Option<f64>,
    /// Why doubling stopped.
    pub stop_reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Doubling { next: f64 },
    Bisect { lo: f64, hi: f64 },
    Done,
}

/// Chooses levels: double from `start` until throughput gains less than 5 %
/// per doubling (or SLOs or errors break, or `max_level`), then bisect to the
/// knee.
#[derive(Debug, Clone)]
pub struct CliffFinder {
    cfg: CliffConfig,
    measured: BTreeMap<u64, LevelOutcome>,
    phase: Phase,
    stop_reason: String,
}

/// Share of the saturation throughput a level must reach to count as
/// saturated: the knee is resolved to the smallest level within 3 % of it.
const SATURATED: f64 = 0.97;

fn key(level: f64) -> u64 {
    (level * 1000.0).round() as u64
}

impl CliffFinder {
    pub fn new(cfg: CliffConfig) -> CliffFinder {
        CliffFinder {
            phase: Phase::Doubling { next: cfg.start },
            cfg,
            measured: BTreeMap::new(),
            stop_reason: String::new(),
        }
    }

    /// The next level to measure, or `None` when the knee is found.
    pub fn next_level(&self) -> Option<f64> {
        match &self.phase {
            Phase::Doubling { next } => Some(*next),
            Phase::Bisect { lo, hi } => Some(self.mid(*lo, *hi)),
            Phase::Done => None,
        }
    }

    fn mid(&self, lo: f64, hi: f64) -> f64 {
        if self.cfg.integer {
            ((lo + hi) / 2.0).floor()
        } else {
            (lo * hi).sqrt()
        }
    }

    fn narrow_enough(&self, lo: f64, hi: f64) -> bool {
        if self.cfg.integer {
            hi - lo <= 1.0
        } else {
            hi / lo <= 1.15
        }
    }

    pub fn levels(&self) -> impl Iterator<Item = &LevelOutcome> {
        self.measured.values()
    }

    fn saturation(&self) -> f64 {
        self.measured.values().map(|m| m.output_throughput).fold(0.0, f64::max)
    }

    /// Records a measured level and moves the search on.
    pub fn record(&mut self, outcome: LevelOutcome) {
        let level = outcome.level;
        let prev = self.measured.range(..key(level)).next_back().map(|(_, v)| v.clone());
        self.measured.insert(key(level), outcome.clone());
        match self.phase.clone() {
            Phase::Doubling { .. } => {
                let stop = match &prev {
                    None => None,
                    Some(p) => {
                        let gain = if p.output_throughput > 0.0 {
                            outcome.output_throughput / p.output_throughput - 1.0
                        } else {
                            f64::INFINITY
                        };
                        if gain < self.cfg.min_gain_per_doubling {
                            Some(format!(
                                "throughput gained {:.1} % from {} to {} (under {:.0} % per doubling)",
                                gain * 100.0,
                                fmt_level(p.level),
                                fmt_level(level),
                                self.cfg.min_gain_per_doubling * 100.0
                            ))
                        } else if outcome.error_rate > p.error_rate + self.cfg.max_error_rate_rise {
                            Some(format!("errors rose to {:.1} % at {}", outcome.error_rate * 100.0, fmt_level(level)))
                        } else {
                            None
                        }
                    }
                };
                let stop = stop.or_else(|| {
                    outcome
                        .slo_attainment_pct
                        .filter(|a| *a < self.cfg.min_slo_attainment_pct)
                        .map(|a| format!("SLO attainment fell to {a:.1} % at {}", fmt_level(level)))
                });
                let next = level * 2.0;
                match stop {
                    Some(reason) => {
                        self.stop_reason = reason;
                        self.start_bisect();
                    }
                    None if next > self.cfg.max_level => {
                        // Still growing: there is no knee to bisect for.
                        self.stop_reason = format!("reached --max-level {}", fmt_level(self.cfg.max_level));
                        self.phase = Phase::Done;
                    }
                    None => self.phase = Phase::Doubling { next },
                }
            }
            Phase::Bisect { .. } => self.start_bisect(),
            Phase::Done => {}
        }
    }

    /// Ends the search early (budget spent); the knee is taken from what was
    /// measured.
    pub fn stop(&mut self, reason: &str) {
        if self.stop_reason.is_empty() {
            self.stop_reason = reason.to_string();
        }
        self.phase = Phase::Done;
    }

    fn bounds(&self) -> Option<(f64, f64)> {
        let s = self.saturation();
        let hi = self.measured.values().find(|m| m.output_throughput >= SATURATED * s)?.level;
        let lo = self.measured.values().filter(|m| m.level < hi).map(|m| m.level).fold(f64::NAN, f64::max);
        Some((if lo.is_nan() { hi } else { lo }, hi))
    }

    fn start_bisect(&mut self) {
        self.phase = match self.bounds() {
            Some((lo, hi)) if lo < hi && !self.narrow_enough(lo, hi) => {
                let mid = self.mid(lo, hi);
                if self.measured.contains_key(&key(mid)) {
                    Phase::Done
                } else {
                    Phase::Bisect { lo, hi }
                }
            }
            _ => Phase::Done,
        };
    }

    /// The knee of what has been measured so far.
    pub fn knee(&self) -> Option<Knee> {
        let (lo, hi) = self.bounds()?;
        let first = self.measured.values().next()?;
        let break_level = self
            .measured
            .values()
            .find(|m| {
                m.slo_attainment_pct.is_some_and(|a| a < self.cfg.min_slo_attainment_pct)
                    || matches!((m.mean_tok_s, first.mean_tok_s), (Some(x), Some(f)) if f > 0.0 && x < 0.5 * f)
            })
            .map(|m| m.level);
        Some(Knee {
            level: hi,
            band: (lo, hi),
            saturation_output_throughput: self.saturation(),
            break_level,
            stop_reason: self.stop_reason.clone(),
        })
    }
}

/// A level as people write it: `4`, `2.50`.
pub fn fmt_level(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// One line that says why the curve bends, from the levels beyond the knee
/// and what the server reported there. `unit` names the level ("agents",
/// "req/s").
pub fn explain(levels: &[LevelOutcome], knee: &Knee, unit: &str, max_level: f64) -> String {
    let k = fmt_level(knee.level);
    let beyond: Vec<&LevelOutcome> = levels.iter().filter(|l| l.level > knee.level).collect();
    if beyond.is_empty() {
        // Nothing measured past the knee: the knee's own server state is
        // the best evidence there is.
        let at =
            levels.iter().find(|l| l.level == knee.level).and_then(|l| l.server.as_ref()).filter(|s| s.samples > 0);
        if let Some(s) = at.filter(|s| s.max_waiting.unwrap_or(0.0) >= 1.0) {
            return format!(
                "at {k} {unit} requests already queue on the server (waiting up to {:.0}, at most {:.0} running): it serves no more at once",
                s.max_waiting.unwrap_or(0.0),
                s.max_running.unwrap_or(0.0)
            );
        }
        return if knee.level >= max_level {
            format!("throughput still grows at {k} {unit}: no cliff up to the highest level measured")
        } else if knee.stop_reason.is_empty() {
            format!("{k} {unit} is the highest level measured: measure higher levels to find where the curve bends")
        } else {
            format!("the search stopped at {k} {unit} ({})", knee.stop_reason)
        };
    }
    let last = beyond[beyond.len() - 1];
    let first = &levels[0];
    let contention = match (last.mean_tok_s, first.mean_tok_s) {
        (Some(a), Some(b)) if b > 0.0 => Some(100.0 * (1.0 - a / b)),
        _ => None,
    };
    let server: Vec<&ServerLevelStats> =
        beyond.iter().filter_map(|l| l.server.as_ref()).filter(|s| s.samples > 0).collect();
    let kv = server
        .iter()
        .filter_map(|s| s.max_kv_cache_usage)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let waiting = server.iter().filter_map(|s| s.max_waiting).fold(0.0, f64::max);
    let running = server.iter().filter_map(|s| s.max_running).fold(0.0, f64::max);
    let preempted: f64 = server.iter().filter_map(|s| s.preemptions).sum();
    let kv_clause = kv.map(|k| format!(" while KV cache is at {:.0} %", k * 100.0)).unwrap_or_default();
    if let Some(line) = prefix_cache_clause(levels, knee.level, &k, unit, &kv_clause, waiting) {
        return line;
    }
    if !server.is_empty() {
        if waiting >= 1.0 {
            return format!(
                "beyond {k} {unit} requests queue on the server (waiting up to {waiting:.0}, at most {running:.0} running){kv_clause}"
            );
        }
        if preempted > 0.0 {
            return format!("beyond {k} {unit} the engine preempts requests ({preempted:.0} preemptions){kv_clause}");
        }
        return format!(
            "beyond {k} {unit} all requests run at once (up to {running:.0}) but each step is slower: the accelerator is saturated{kv_clause}{}",
            contention.map(|c| format!("; per-request speed down {c:.0} %")).unwrap_or_default()
        );
    }
    format!(
        "aggregate throughput stops growing beyond {k} {unit} (saturating at {:.1} tok/s){}; the server exposes no metrics to say why",
        knee.saturation_output_throughput,
        contention.map(|c| format!(" while per-request speed falls {c:.0} %")).unwrap_or_default()
    )
}

/// A prefix cache that held what requests reuse (30 % of prompt tokens or
/// more at some level up to the knee) and beyond the knee lost at least 15
/// points of that: then the cache is what bends the curve, as when agents'
/// session histories no longer fit beside each other and every turn
/// prefills its history again.
fn prefix_cache_clause(
    levels: &[LevelOutcome],
    knee: f64,
    k: &str,
    unit: &str,
    kv_clause: &str,
    waiting: f64,
) -> Option<String> {
    let rate = |l: &LevelOutcome| l.server.as_ref().and_then(|s| s.prefix_cache_hit_rate).map(|r| (l.level, r));
    let best = levels.iter().filter(|l| l.level <= knee).filter_map(rate).max_by(|a, b| a.1.total_cmp(&b.1))?;
    let worst = levels.iter().filter(|l| l.level > knee).filter_map(rate).min_by(|a, b| a.1.total_cmp(&b.1))?;
    if best.1 < 0.3 || best.1 - worst.1 < 0.15 {
        return None;
    }
    let queue = if waiting >= 1.0 {
        format!("; requests queue on the server (waiting up to {waiting:.0})")
    } else {
        String::new()
    };
    Some(format!(
        "beyond {k} {unit} the prefix cache no longer holds what requests reuse: its hit rate falls from {:.0} % (at {}) to {:.0} % (at {}){kv_clause}, so each request prefills again what an earlier one left cached{queue}",
        100.0 * best.1,
        fmt_level(best.0),
        100.0 * worst.1,
        fmt_level(worst.0)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_completion_time_doubles_where_it_first_reaches_twice_the_baseline() {
        let f = |t: Option<f64>, per_hour: f64| SessionFigures {
            completed: t.map_or(0, |_| 3),
            mean_completion_s: t,
            sessions_per_hour: per_hour,
            ..Default::default()
        };
        let (a, b, c, d) = (f(Some(10.0), 360.0), f(Some(14.0), 1000.0), f(Some(21.0), 1300.0), f(Some(40.0), 900.0));
        let curve = session_curve(&[(8.0, &d), (1.0, &a), (2.0, &b), (4.0, &c)]).unwrap();
        assert_eq!((curve.baseline_level, curve.baseline_completion_s), (1.0, 10.0));
        assert_eq!(curve.doubling_level, Some(4.0));
        assert_eq!((curve.peak_level, curve.peak_sessions_per_hour), (4.0, 1300.0));
        assert_eq!(
            curve.describe("agents"),
            "sessions: completion time 10.0 s at 1 agents, doubles by 4 agents; at most 1300 sessions/hour (at 4 agents)"
        );
        let never = session_curve(&[(1.0, &a), (2.0, &b)]).unwrap();
        assert_eq!(never.doubling_level, None);
        // Levels whose sessions never completed do not set the baseline.
        let none = f(None, 0.0);
        assert_eq!(session_curve(&[(1.0, &none), (2.0, &b)]).unwrap().baseline_level, 2.0);
        assert_eq!(session_curve(&[(1.0, &none)]), None);
    }

    /// A server that serves at most `k` at once: throughput grows linearly
    /// to k, then stays flat.
    fn capped(level: f64, k: f64) -> LevelOutcome {
        let per = 100.0;
        LevelOutcome {
            level,
            output_throughput: per * level.min(k),
            mean_tok_s: Some(per * level.min(k) / level),
            slo_attainment_pct: None,
            error_rate: 0.0,
            server: None,
        }
    }

    fn search(k: f64, cfg: CliffConfig) -> (Knee, Vec<f64>) {
        let mut f = CliffFinder::new(cfg);
        let mut seen = Vec::new();
        while let Some(l) = f.next_level() {
            assert!(seen.len() < 40, "runaway search: {seen:?}");
            seen.push(l);
            f.record(capped(l, k));
        }
        (f.knee().unwrap(), seen)
    }

    #[test]
    fn finds_the_capacity_of_a_capped_server() {
        for k in [1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 12.0, 24.0, 31.0] {
            let (knee, seen) = search(k, CliffConfig::default());
            assert_eq!(knee.level, k, "k={k}, measured {seen:?}");
            assert!((knee.saturation_output_throughput - 100.0 * k).abs() < 1e-9);
            assert!(knee.band.1 - knee.band.0 <= 1.0);
            // Doubling then bisection: logarithmic in the capacity.
            assert!(seen.len() <= 2 * (k.log2().ceil() as usize) + 4, "k={k}: {seen:?}");
        }
    }

    #[test]
    fn stops_at_max_level_when_still_growing() {
        let cfg = CliffConfig { max_level: 16.0, ..Default::default() };
        let (knee, seen) = search(1000.0, cfg);
        assert_eq!(seen, vec![1.0, 2.0, 4.0, 8.0, 16.0]);
        assert_eq!(knee.level, 16.0);
        assert!(knee.stop_reason.contains("max-level"));
    }

    #[test]
    fn slo_breaks_stop_the_doubling() {
        let mut f = CliffFinder::new(CliffConfig::default());
        for l in [1.0, 2.0, 4.0] {
            assert_eq!(f.next_level(), Some(l));
            let mut o = capped(l, 100.0);
            o.slo_attainment_pct = Some(if l >= 4.0 { 50.0 } else { 100.0 });
            f.record(o);
        }
        let knee = f.knee().unwrap();
        assert_eq!(knee.break_level, Some(4.0));
        assert!(knee.stop_reason.contains("SLO"));
    }

    #[test]
    fn explanation_names_the_queue() {
        let mut levels: Vec<LevelOutcome> = [1.0, 2.0, 4.0, 8.0].iter().map(|l| capped(*l, 4.0)).collect();
        levels[3].server = Some(ServerLevelStats {
            samples: 5,
            max_waiting: Some(4.0),
            max_running: Some(4.0),
            max_kv_cache_usage: Some(0.97),
            ..Default::default()
        });
        let knee = Knee {
            level: 4.0,
            band: (3.0, 4.0),
            saturation_output_throughput: 400.0,
            break_level: None,
            stop_reason: String::new(),
        };
        let e = explain(&levels, &knee, "agents", 256.0);
        assert_eq!(e, "beyond 4 agents requests queue on the server (waiting up to 4, at most 4 running) while KV cache is at 97 %");
        levels[3].server = None;
        let e = explain(&levels, &knee, "agents", 256.0);
        assert!(e.contains("no metrics") && e.contains("falls 50 %"), "{e}");

        // Agents whose histories the prefix cache held up to the knee and no longer beyond it.
        let with_cache = |rate: f64, waiting: f64| ServerLevelStats {
            samples: 5,
            max_waiting: Some(waiting),
            max_running: Some(4.0),
            max_kv_cache_usage: Some(1.0),
            prefix_cache_hit_rate: Some(rate),
            ..Default::default()
        };
        for (l, rate) in levels.iter_mut().zip([0.75, 0.72, 0.69, 0.25]) {
            l.server = Some(with_cache(rate, if l.level > 4.0 { 3.0 } else { 0.0 }));
        }
        let e = explain(&levels, &knee, "agents", 256.0);
        assert_eq!(
            e,
            "beyond 4 agents the prefix cache no longer holds what requests reuse: its hit rate falls from 75 % (at 1) \
             to 25 % (at 8) while KV cache is at 100 %, so each request prefills again what an earlier one left cached; \
             requests queue on the server (waiting up to 3)"
        );
        // A small drop, or a cache that never held much, is not what bends the curve.
        levels[3].server = Some(with_cache(0.62, 3.0));
        assert!(explain(&levels, &knee, "agents", 256.0).starts_with("beyond 4 agents requests queue"));
        for l in &mut levels {
            l.server = Some(with_cache(0.2, 3.0));
        }
        levels[3].server = Some(with_cache(0.0, 3.0));
        assert!(!explain(&levels, &knee, "agents", 256.0).contains("prefix cache"));
    }
}
