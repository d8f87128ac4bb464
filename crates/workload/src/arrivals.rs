//! `--arrivals`: when open-loop requests arrive.
//!
//! - `constant:8/s*600s,20/s*600s`, `poisson:...`, `gamma:...,cv=2`,
//!   `even:...`: stages run one after the other, each at its own rate for
//!   its own duration; the last stage may leave its duration out and run
//!   until the run's stop condition. A `constant` stage is inference-perf's
//!   constant load: ⌊rate × duration⌋ requests at random (exponential) gaps
//!   scaled so that they fill the stage, the last at its end; `even` spaces
//!   them exactly 1/rate apart (GuideLLM's constant rate). An open-ended
//!   stage has nothing to fill, so `constant` is evenly spaced there too.
//!   Rates are `N/s`, `N/m`, `N/h` or `Nrps` (a bare number is per second);
//!   durations are `600s`, `10m`, `1h`, `500ms`. Gamma gaps have
//!   coefficient of variation `cv` (shape 1/cv²; cv=1 is Poisson).
//! - `trace:FILE` or `trace:FORMAT:FILE`: the instants (and sizes) of a trace
//!   (see [`crate::trace`]).
//!
//! Each stage is its own seeded process starting at the stage's start with
//! an arrival, so a single stage is exactly the old `--rate R --arrival A`.

use std::path::PathBuf;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1};

use crate::schedule::{Arrival, ArrivalTimes};
use crate::text::mix;
use crate::trace::{Trace, TraceFormat};
use crate::workload::WorkloadError;

/// One stage: a rate for a while (`None`: until the run stops).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub rate: f64,
    pub duration_s: Option<f64>,
}

/// A parsed `--arrivals` value.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrivalSpec {
    /// `drain`: each stage after the first starts when the requests of the
    /// one before have all ended, if that is later than its time (stages
    /// written in `--arrivals`, as inference-perf runs its stages); a rate
    /// ramp's steps follow each other without a pause.
    Stages {
        process: Arrival,
        stages: Vec<Stage>,
        drain: bool,
        /// `constant` stages with a duration jitter as inference-perf's do
        /// (see the module docs); `false` is `even:`.
        jitter: bool,
    },
    Trace {
        path: PathBuf,
        format: TraceFormat,
    },
}

impl ArrivalSpec {
    /// One open-ended stage: what `--rate R --arrival A` means.
    pub fn single(rate: f64, process: Arrival) -> ArrivalSpec {
        ArrivalSpec::Stages { process, stages: vec![Stage { rate, duration_s: None }], drain: true, jitter: true }
    }

    pub fn parse(s: &str) -> Result<ArrivalSpec, WorkloadError> {
        let bad = |why: String| WorkloadError::Arrivals { spec: s.to_string(), why };
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            bad("expected constant:RATE*DUR,..., poisson:..., gamma:...,cv=C, even:... or trace:[FORMAT:]FILE".into())
        })?;
        let kind = kind.trim().to_ascii_lowercase();
        let kind = kind.as_str();
        if kind == "trace" {
            let (format, path) = match rest.split_once(':') {
                Some((f, p)) if TraceFormat::parse(f).is_some() => (TraceFormat::parse(f), p),
                _ => (None, rest),
            };
            if path.is_empty() {
                return Err(bad("trace: needs a file".into()));
            }
            let path = PathBuf::from(path);
            let format = format.unwrap_or(TraceFormat::Auto);
            return Ok(ArrivalSpec::Trace { path, format });
        }
        let mut cv = None;
        let mut stages = Vec::new();
        // A stage's duration, after `*` or `duration=`: more than 0s.
        let duration = |d: &str| match fleetbench_core::parse_duration(d) {
            Ok(d) if d.as_secs_f64() > 0.0 => Ok(d.as_secs_f64()),
            Ok(_) => Err(bad("a stage lasts more than 0s".into())),
            Err(e) => Err(bad(e.to_string())),
        };
        // Stages are separated by commas (or semicolons, as a CSV cell may
        // write them to keep clear of the file's own commas); a stage may
        // also be inference-perf's keys, `rate=R` then `duration=D`.
        for part in rest.split([',', ';']).map(str::trim).filter(|p| !p.is_empty()) {
            let part: String = part.chars().filter(|c| !c.is_whitespace()).collect();
            let part = part.as_str();
            let key = |k: &str| part.split_once('=').filter(|(name, _)| name.eq_ignore_ascii_case(k)).map(|(_, v)| v);
            if let Some(d) = key("duration") {
                let Some(last) = stages.last_mut().filter(|st: &&mut Stage| st.duration_s.is_none()) else {
                    return Err(bad(format!("'{part}' needs a rate=R stage before it")));
                };
                last.duration_s = Some(duration(d)?);
                continue;
            }
            let part = key("rate").unwrap_or(part);
            if let Some(v) = part.strip_prefix("cv=") {
                let c: f64 = v.parse().map_err(|_| bad(format!("cv= takes a number, not '{v}'")))?;
                if !(c.is_finite() && c > 0.0) {
                    return Err(bad("cv must be positive".into()));
                }
                cv = Some(c);
                continue;
            }
            if stages.last().is_some_and(|st: &Stage| st.duration_s.is_none()) {
                return Err(bad("only the last stage may leave out its duration (RATE*DUR)".into()));
            }
            let (rate, dur) = match part.split_once('*') {
                Some((r, d)) => (r, Some(d)),
                None => (part, None),
            };
            let rate = parse_rate(rate).map_err(bad)?;
            let duration_s = dur.map(duration).transpose()?;
            stages.push(Stage { rate, duration_s });
        }
        if stages.is_empty() {
            return Err(bad("give at least one stage, e.g. poisson:8/s*60s".into()));
        }
        let process = match (kind, cv) {
            ("constant" | "even", None) => Arrival::Constant,
            ("poisson", None) => Arrival::Poisson,
            ("gamma", Some(c)) => Arrival::Gamma { burstiness: 1.0 / (c * c) },
            ("gamma", None) => return Err(bad("gamma needs cv=C (the gaps' coefficient of variation)".into())),
            ("constant" | "even" | "poisson", Some(_)) => return Err(bad("cv= applies to gamma only".into())),
            (other, _) => {
                return Err(bad(format!("unknown process '{other}' (constant, poisson, gamma, even, trace)")))
            }
        };
        Ok(ArrivalSpec::Stages { process, stages, drain: true, jitter: kind != "even" })
    }

    /// The rate of the first stage (none for a trace).
    pub fn first_rate(&self) -> Option<f64> {
        match self {
            ArrivalSpec::Stages { stages, .. } => stages.first().map(|s| s.rate),
            ArrivalSpec::Trace { .. } => None,
        }
    }

    /// The instants, seeded (a trace is read here).
    pub fn plan(&self, seed: u64) -> Result<ArrivalPlan, WorkloadError> {
        Ok(match self {
            ArrivalSpec::Stages { process, stages, drain, jitter } => {
                ArrivalPlan::Stages { process: *process, stages: stages.clone(), seed, drain: *drain, jitter: *jitter }
            }
            ArrivalSpec::Trace { path, format } => ArrivalPlan::Trace(Arc::new(Trace::load(path, *format)?)),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            ArrivalSpec::Stages { process, stages, jitter, .. } => describe_stages(*process, *jitter, stages),
            ArrivalSpec::Trace { path, format } => format!("trace:{}:{}", format.as_str(), path.display()),
        }
    }
}

fn describe_stages(process: Arrival, jitter: bool, stages: &[Stage]) -> String {
    let (name, cv) = match process {
        Arrival::Constant if jitter => ("constant", None),
        Arrival::Constant => ("even", None),
        Arrival::Poisson => ("poisson", None),
        Arrival::Gamma { burstiness } => ("gamma", Some(1.0 / burstiness.sqrt())),
    };
    let mut parts: Vec<String> = stages
        .iter()
        .map(|s| match s.duration_s {
            Some(d) => format!("{}/s*{}s", s.rate, d),
            None => format!("{}/s", s.rate),
        })
        .collect();
    if let Some(c) = cv {
        parts.push(format!("cv={}", (c * 1e6).round() / 1e6));
    }
    format!("{name}:{}", parts.join(","))
}

/// `8/s`, `30/m`, `100/h`, `8rps` or `8`, in requests per second.
fn parse_rate(s: &str) -> Result<f64, String> {
    let (n, per) = match s.split_once('/') {
        Some((n, u)) => {
            let per = match u.trim() {
                "s" | "sec" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                other => return Err(format!("rate unit '/{other}': use /s, /m or /h")),
            };
            (n, per)
        }
        // "8rps", "8qps": requests (queries) per second, as benchmarks write it.
        None => (s.trim().strip_suffix("rps").or_else(|| s.trim().strip_suffix("qps")).unwrap_or(s), 1.0),
    };
    let n: f64 = n.trim().parse().map_err(|_| format!("'{s}' is not a rate like 8/s"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("rate '{s}' must be positive"));
    }
    Ok(n / per)
}

/// The instants of a `constant` stage as inference-perf's constant load
/// makes them: ⌊rate × duration⌋ exponential gaps, seeded, scaled so that
/// they sum to the stage's duration (the last request at its end). Two
/// passes over the same draws, so no stage is held in memory.
fn filled_stage(rate: f64, duration_s: f64, seed: u64) -> impl Iterator<Item = f64> + Send {
    let n = (rate * duration_s).floor() as u64;
    let draws = move || {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(move |_| -> f64 { Exp1.sample(&mut rng) })
    };
    let total: f64 = draws().sum();
    let scale = if total > 0.0 { duration_s / total } else { 0.0 };
    draws().scan(0.0, move |acc, gap| {
        *acc += gap * scale;
        Some(acc.min(duration_s))
    })
}

/// Arrival instants ready to iterate: seeded stages or a loaded trace.
#[derive(Debug, Clone)]
pub enum ArrivalPlan {
    /// `drain`: as [`ArrivalSpec::Stages`]; the sender applies it
    /// ([`ArrivalPlan::drains`]), the instants are the stages' own times.
    Stages {
        process: Arrival,
        stages: Vec<Stage>,
        seed: u64,
        drain: bool,
        jitter: bool,
    },
    Trace(Arc<Trace>),
}

impl ArrivalPlan {
    /// Whether a stage waits for the requests of the stage before it to end
    /// (stages of `--arrivals`; not a rate ramp's steps, not a trace).
    pub fn drains(&self) -> bool {
        matches!(self, ArrivalPlan::Stages { stages, drain: true, .. } if stages.len() > 1)
    }

    /// One open-ended stage at `rate`: what `--rate R --arrival A` means.
    pub fn single(rate: f64, process: Arrival, seed: u64) -> ArrivalPlan {
        ArrivalPlan::Stages { process, stages: vec![Stage { rate, duration_s: None }], seed, drain: true, jitter: true }
    }
}

/// One arrival: seconds from the start and the stage it belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Instant {
    pub t: f64,
    pub stage: u32,
}

impl ArrivalPlan {
    /// The instants in order; finite when every stage has a duration or the
    /// plan is a trace.
    pub fn instants(&self) -> Box<dyn Iterator<Item = Instant> + Send> {
        match self {
            ArrivalPlan::Stages { process, stages, seed, jitter, .. } => {
                let (process, seed, jitter) = (*process, *seed, *jitter);
                let mut start = 0.0;
                let mut parts: Vec<Box<dyn Iterator<Item = Instant> + Send>> = Vec::new();
                for (k, st) in stages.iter().enumerate() {
                    // Stage 0 keeps the plain seed: one stage is the old --rate.
                    let s = if k == 0 { seed } else { mix(seed, k as u64) };
                    let t0 = start;
                    // Seconds from the stage's start.
                    let times: Box<dyn Iterator<Item = f64> + Send> = match st.duration_s {
                        Some(d) if jitter && process == Arrival::Constant => Box::new(filled_stage(st.rate, d, s)),
                        Some(d) => {
                            Box::new(ArrivalTimes::new(st.rate, process, s).take_while(move |t| t0 + t < t0 + d))
                        }
                        None => Box::new(ArrivalTimes::new(st.rate, process, s)),
                    };
                    let stage = k as u32;
                    parts.push(Box::new(times.map(move |t| Instant { t: t0 + t, stage })));
                    match st.duration_s {
                        Some(d) => start = t0 + d,
                        None => break,
                    }
                }
                Box::new(parts.into_iter().flatten())
            }
            ArrivalPlan::Trace(trace) => {
                let trace = trace.clone();
                Box::new((0..trace.entries.len()).map(move |i| Instant { t: trace.entries[i].timestamp, stage: 0 }))
            }
        }
    }

    /// About how many requests the instants send before they end, or
    /// before `until` seconds (an upper bound where stages wait for the one
    /// before to drain; the mean for random gaps); `None` when they never
    /// end and nothing stops them.
    pub fn planned_requests(&self, until: Option<f64>) -> Option<f64> {
        match self {
            ArrivalPlan::Trace(trace) => Some(trace.entries.len() as f64),
            ArrivalPlan::Stages { stages, .. } => {
                let (mut start, mut total) = (0.0f64, 0.0f64);
                for st in stages {
                    let end = match (st.duration_s, until) {
                        (Some(d), Some(u)) => (start + d).min(u),
                        (Some(d), None) => start + d,
                        (None, Some(u)) => u,
                        (None, None) => return None,
                    };
                    total += st.rate * (end - start).max(0.0);
                    start += st.duration_s.unwrap_or(0.0);
                }
                Some(total)
            }
        }
    }

    /// Whether the instants run out by themselves (every stage has a
    /// duration, or a trace).
    pub fn is_finite(&self) -> bool {
        match self {
            ArrivalPlan::Stages { stages, .. } => stages.iter().all(|s| s.duration_s.is_some()),
            ArrivalPlan::Trace(_) => true,
        }
    }

    /// Each stage's name, start and end (`None`: open-ended), seconds.
    pub fn stages(&self) -> Vec<(String, f64, Option<f64>)> {
        match self {
            ArrivalPlan::Stages { process, stages, jitter, .. } => {
                let mut start = 0.0;
                stages
                    .iter()
                    .map(|st| {
                        let name = describe_stages(
                            *process,
                            *jitter,
                            std::slice::from_ref(&Stage { duration_s: None, ..*st }),
                        );
                        let end = st.duration_s.map(|d| start + d);
                        let out = (name, start, end);
                        start = end.unwrap_or(start);
                        out
                    })
                    .collect()
            }
            ArrivalPlan::Trace(t) => {
                vec![(format!("trace {}", t.source), 0.0, t.entries.last().map(|e| e.timestamp))]
            }
        }
    }

    /// The first stage's rate, for run metadata (a trace: its mean rate).
    pub fn nominal_rate(&self) -> f64 {
        match self {
            ArrivalPlan::Stages { stages, .. } => stages.first().map(|s| s.rate).unwrap_or(1.0),
            ArrivalPlan::Trace(t) => {
                let span = t.entries.last().map(|e| e.timestamp).unwrap_or(0.0);
                if span > 0.0 {
                    t.entries.len() as f64 / span
                } else {
                    t.entries.len() as f64
                }
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ArrivalPlan::Stages { process, stages, jitter, .. } => describe_stages(*process, *jitter, stages),
            ArrivalPlan::Trace(t) => format!("trace {} ({} requests)", t.source, t.entries.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(s: &str) -> (Arrival, Vec<Stage>) {
        match ArrivalSpec::parse(s).unwrap() {
            ArrivalSpec::Stages { process, stages, .. } => (process, stages),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn grammar_parses_stages_rates_and_cv() {
        let (p, st) = stages("constant:8/s*600s,20/s*10m");
        assert_eq!(p, Arrival::Constant);
        assert_eq!(
            st,
            vec![Stage { rate: 8.0, duration_s: Some(600.0) }, Stage { rate: 20.0, duration_s: Some(600.0) }]
        );
        // How other tools and CSV cells write the same stages.
        assert_eq!(stages("Constant: 8rps*600s; 20qps*10m"), stages("constant:8/s*600s,20/s*10m"));
        // inference-perf's stage keys, and spaces inside a stage.
        assert_eq!(stages("constant:rate=8,duration=600,Rate=20;Duration=10m"), stages("constant:8/s*600s,20/s*10m"));
        assert_eq!(stages("constant:8 /s * 600 s, 20/s*600s"), stages("constant:8/s*600s,20/s*10m"));
        let (p, st) = stages("gamma:120/m*30s,4,cv=2");
        assert_eq!(p, Arrival::Gamma { burstiness: 0.25 });
        assert_eq!(st[0].rate, 2.0);
        assert_eq!(st[1], Stage { rate: 4.0, duration_s: None });
        assert!(matches!(
            ArrivalSpec::parse("trace:mooncake:x.jsonl").unwrap(),
            ArrivalSpec::Trace { format: TraceFormat::Mooncake, .. }
        ));
        assert!(matches!(
            ArrivalSpec::parse("trace:data/x.csv").unwrap(),
            ArrivalSpec::Trace { format: TraceFormat::Auto, .. }
        ));
        for bad in [
            "poisson",
            "poisson:",
            "poisson:8/s,9/s*10s",
            "poisson:-1/s",
            "poisson:8/d",
            "poisson:8/s*0s",
            "poisson:8,cv=2",
            "gamma:8",
            "burst:8",
            "trace:",
            "constant:duration=600",
            "constant:rate=8,rate=20,duration=600",
            "constant:8/s*60s,duration=600",
        ] {
            let e = ArrivalSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--arrivals"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_stage_is_the_old_rate_flag() {
        let plan = ArrivalSpec::single(3.0, Arrival::Poisson).plan(5).unwrap();
        let a: Vec<f64> = plan.instants().take(40).map(|i| i.t).collect();
        let b: Vec<f64> = ArrivalTimes::new(3.0, Arrival::Poisson, 5).take(40).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn stages_give_their_counts() {
        // Constant: exactly rate × duration per stage.
        let plan = ArrivalSpec::parse("constant:8/s*60s,20/s*30s").unwrap().plan(1).unwrap();
        let mut n = [0u32; 2];
        plan.instants().for_each(|i| n[i.stage as usize] += 1);
        assert_eq!(n, [480, 600]);
        // Poisson: within four standard deviations (sqrt of the mean), seeded.
        for seed in [1, 2, 3] {
            let plan = ArrivalSpec::parse("poisson:8/s*600s,20/s*600s").unwrap().plan(seed).unwrap();
            let mut n = [0f64; 2];
            let mut last = 0.0;
            for i in plan.instants() {
                assert!(i.t >= last);
                last = i.t;
                n[i.stage as usize] += 1.0;
                let (lo, hi) = if i.stage == 0 { (0.0, 600.0) } else { (600.0, 1200.0) };
                assert!(i.t >= lo && i.t < hi, "{i:?}");
            }
            for (got, want) in n.iter().zip([4800.0f64, 12000.0]) {
                assert!((got - want).abs() < 4.0 * want.sqrt(), "seed {seed}: {got} vs {want}");
            }
            let again: Vec<Instant> =
                ArrivalSpec::parse("poisson:8/s*600s,20/s*600s").unwrap().plan(seed).unwrap().instants().collect();
            assert_eq!(again.len() as f64, n[0] + n[1]);
        }
        let names = ArrivalSpec::parse("gamma:8/s*60s,2/s,cv=2").unwrap().plan(0).unwrap().stages();
        assert_eq!(names[1].1, 60.0);
        assert_eq!(names[1].2, None);
        assert!(names[0].0.starts_with("gamma:8/s"), "{}", names[0].0);
    }

    /// A `constant` stage is inference-perf's constant load: ⌊rate ×
    /// duration⌋ requests at random gaps that fill the stage, the last at its
    /// end, the gaps as irregular as a Poisson process's (coefficient of
    /// variation near 1), the same for a seed; `even` spaces them 1/rate
    /// apart; an open-ended `constant` stage is evenly spaced.
    #[test]
    fn constant_stages_jitter_as_inference_perf_and_even_stages_do_not() {
        let instants = |spec: &str, seed: u64| -> Vec<Instant> {
            ArrivalSpec::parse(spec).unwrap().plan(seed).unwrap().instants().collect()
        };
        let cv = |t: &[f64]| {
            let g: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
            let m = g.iter().sum::<f64>() / g.len() as f64;
            (g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / g.len() as f64).sqrt() / m
        };
        let jit = instants("constant:8/s*600s,0.7/s*10s", 3);
        let first: Vec<f64> = jit.iter().filter(|i| i.stage == 0).map(|i| i.t).collect();
        assert_eq!(first.len(), 4800);
        assert_eq!(jit.iter().filter(|i| i.stage == 1).count(), 7, "int(0.7 x 10) as inference-perf counts");
        assert!(first[0] > 0.0 && (first[4799] - 600.0).abs() < 1e-9, "{} .. {}", first[0], first[4799]);
        assert!(first.windows(2).all(|w| w[0] <= w[1]));
        assert!(jit.iter().filter(|i| i.stage == 1).all(|i| i.t > 600.0 && i.t <= 610.0 + 1e-9));
        let c = cv(&first);
        assert!((0.9..1.1).contains(&c), "cv {c}");
        assert_eq!(jit, instants("constant:8/s*600s,0.7/s*10s", 3));
        assert_ne!(jit, instants("constant:8/s*600s,0.7/s*10s", 4));
        let even: Vec<f64> = instants("even:8/s*600s", 3).iter().map(|i| i.t).collect();
        assert_eq!(even.len(), 4800);
        assert!(cv(&even) < 1e-9 && even[1] == 0.125);
        let open: Vec<f64> =
            ArrivalSpec::parse("constant:8/s").unwrap().plan(3).unwrap().instants().take(100).map(|i| i.t).collect();
        assert!(cv(&open) < 1e-9);
        // Each names itself as written.
        for spec in ["constant:8/s*600s", "even:8/s*600s"] {
            assert_eq!(ArrivalSpec::parse(spec).unwrap().describe(), spec);
        }
    }
}
