//! `--ramp`: load that grows during one run, so that the run draws its own
//! curve. `rate:10..100/60s` raises the arrival rate from 10 to 100 requests
//! per second over 60 s; `concurrency:1..64/120s` adds closed-loop agents
//! from 1 to 64 over 120 s. Linear by default; `,steps=N` makes N equal steps
//! from the first value to the last. The run is cut into windows (each step,
//! or ten equal windows of a linear ramp) whose figures are reported apart.
//!
//! A linear rate ramp is a sequence of one-second stages (at most 600) at
//! the ramp's rate in the middle of each: the arrival process of
//! `--arrivals` with a rate that changes every second.

use fleetbench_core::parse_duration;

use crate::arrivals::{ArrivalSpec, Stage};
use crate::schedule::Arrival;

/// Windows a linear ramp is cut into for its figures.
pub const LINEAR_WINDOWS: u32 = 10;

/// What grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampKind {
    Rate,
    Concurrency,
}

/// A parsed `--ramp` value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RampSpec {
    pub kind: RampKind,
    pub from: f64,
    pub to: f64,
    pub over_s: f64,
    /// Equal steps instead of a linear rise.
    pub steps: Option<u32>,
}

/// One window of a ramp: seconds from the ramp's start, and the load in it
/// (the rate or the agents at the window's middle; a step's own value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RampWindow {
    pub start_s: f64,
    pub end_s: f64,
    pub level: f64,
}

impl RampSpec {
    pub fn parse(s: &str) -> Result<RampSpec, String> {
        let (kind, rest) =
            s.split_once(':').ok_or("expected rate:FROM..TO/DURATION or concurrency:FROM..TO/DURATION")?;
        let kind = match kind.trim() {
            "rate" => RampKind::Rate,
            "concurrency" => RampKind::Concurrency,
            other => return Err(format!("unknown ramp '{other}' (rate or concurrency)")),
        };
        let mut parts = rest.split(',').map(str::trim);
        let body = parts.next().unwrap_or("");
        let (range, over) = body.split_once('/').ok_or("give the ramp's length after a slash: 1..64/120s")?;
        let (a, b) = range.split_once("..").ok_or("give the range as FROM..TO, e.g. 10..100")?;
        let num = |v: &str| -> Result<f64, String> {
            let n: f64 = v.trim().parse().map_err(|_| format!("'{v}' is not a number"))?;
            if n.is_finite() && n > 0.0 {
                Ok(n)
            } else {
                Err(format!("'{v}' must be above 0"))
            }
        };
        let (from, to) = (num(a)?, num(b)?);
        let over_s = parse_duration(over).map_err(|e| e.to_string())?.as_secs_f64();
        if over_s <= 0.0 {
            return Err("the ramp must last more than 0s".into());
        }
        if kind == RampKind::Concurrency && (from.fract() != 0.0 || to.fract() != 0.0) {
            return Err("a concurrency ramp runs whole agents: FROM and TO are whole numbers".into());
        }
        if to < from {
            return Err("the ramp goes up: TO is at least FROM".into());
        }
        let mut steps = None;
        for p in parts.filter(|p| !p.is_empty()) {
            let v = p.strip_prefix("steps=").ok_or_else(|| format!("'{p}': the only option is steps=N"))?;
            let n: u32 = v.parse().map_err(|_| format!("steps= takes a whole number, not '{v}'"))?;
            if n < 2 {
                return Err("steps= is at least 2".into());
            }
            steps = Some(n);
        }
        Ok(RampSpec { kind, from, to, over_s, steps })
    }

    /// The load at `t` seconds into a linear ramp.
    fn at(&self, t: f64) -> f64 {
        self.from + (self.to - self.from) * (t / self.over_s).clamp(0.0, 1.0)
    }

    /// The windows the ramp's figures are reported in.
    pub fn windows(&self) -> Vec<RampWindow> {
        match self.steps {
            Some(n) => {
                let width = self.over_s / n as f64;
                (0..n)
                    .map(|k| RampWindow {
                        start_s: k as f64 * width,
                        end_s: (k + 1) as f64 * width,
                        level: self.step_level(k, n),
                    })
                    .collect()
            }
            None => {
                let width = self.over_s / LINEAR_WINDOWS as f64;
                (0..LINEAR_WINDOWS)
                    .map(|k| {
                        let (start_s, end_s) = (k as f64 * width, (k + 1) as f64 * width);
                        let level = self.at((start_s + end_s) / 2.0);
                        let level = if self.kind == RampKind::Concurrency { level.round() } else { level };
                        RampWindow { start_s, end_s, level }
                    })
                    .collect()
            }
        }
    }

    fn step_level(&self, k: u32, n: u32) -> f64 {
        let v = self.from + (self.to - self.from) * k as f64 / (n - 1) as f64;
        if self.kind == RampKind::Concurrency {
            v.round()
        } else {
            v
        }
    }

    /// A rate ramp as `--arrivals` stages of `process`.
    pub fn arrivals(&self, process: Arrival) -> ArrivalSpec {
        let stages = match self.steps {
            Some(n) => {
                let d = self.over_s / n as f64;
                (0..n).map(|k| Stage { rate: self.step_level(k, n), duration_s: Some(d) }).collect()
            }
            None => {
                let pieces = (self.over_s.ceil() as u32).clamp(1, 600);
                let d = self.over_s / pieces as f64;
                (0..pieces).map(|k| Stage { rate: self.at((k as f64 + 0.5) * d), duration_s: Some(d) }).collect()
            }
        };
        // The steps of a ramp follow each other: the load rises without a pause.
        ArrivalSpec::Stages { process, stages, drain: false, jitter: false }
    }

    /// A concurrency ramp: when each agent starts, seconds from the ramp's
    /// start (`to` agents; the first `from` at once).
    pub fn agent_starts(&self) -> Vec<f64> {
        let (from, to) = (self.from as u32, self.to as u32);
        (0..to)
            .map(|i| {
                let agent = (i + 1) as f64;
                if i < from {
                    return 0.0;
                }
                match self.steps {
                    // The first step whose level reaches this agent.
                    Some(n) => (0..n)
                        .find(|&k| self.step_level(k, n) >= agent)
                        .map(|k| k as f64 * self.over_s / n as f64)
                        .unwrap_or(0.0),
                    // Linear: when the ramp passes this agent's number.
                    None if to > from => (agent - self.from) / (self.to - self.from) * self.over_s,
                    None => 0.0,
                }
            })
            .collect()
    }

    pub fn describe(&self) -> String {
        let kind = match self.kind {
            RampKind::Rate => "rate",
            RampKind::Concurrency => "concurrency",
        };
        let steps = self.steps.map(|n| format!(",steps={n}")).unwrap_or_default();
        format!("{kind}:{}..{}/{}s{steps}", self.from, self.to, self.over_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_parses_and_rejects() {
        let r = RampSpec::parse("rate:10..100/60s").unwrap();
        assert_eq!(r, RampSpec { kind: RampKind::Rate, from: 10.0, to: 100.0, over_s: 60.0, steps: None });
        let c = RampSpec::parse("concurrency:1..64/2m,steps=4").unwrap();
        assert_eq!((c.kind, c.over_s, c.steps), (RampKind::Concurrency, 120.0, Some(4)));
        assert_eq!(RampSpec::parse(&c.describe()).unwrap(), c);
        for (bad, says) in [
            ("speed:1..2/1s", "unknown ramp"),
            ("rate:10..100", "slash"),
            ("rate:10/60s", "FROM..TO"),
            ("rate:0..5/1s", "above 0"),
            ("rate:9..5/1s", "goes up"),
            ("concurrency:1.5..4/10s", "whole"),
            ("rate:1..5/10s,steps=1", "at least 2"),
            ("rate:1..5/10s,linear", "steps=N"),
            ("rate:1..5/soon", "soon"),
        ] {
            let e = RampSpec::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn steps_and_linear_ramps_have_their_windows_and_stages() {
        let s = RampSpec::parse("rate:10..40/20s,steps=4").unwrap();
        let w: Vec<(f64, f64, f64)> = s.windows().iter().map(|w| (w.start_s, w.end_s, w.level)).collect();
        assert_eq!(w, [(0.0, 5.0, 10.0), (5.0, 10.0, 20.0), (10.0, 15.0, 30.0), (15.0, 20.0, 40.0)]);
        let ArrivalSpec::Stages { stages, .. } = s.arrivals(Arrival::Constant) else { panic!() };
        assert_eq!(stages.iter().map(|s| s.rate).collect::<Vec<_>>(), [10.0, 20.0, 30.0, 40.0]);

        let l = RampSpec::parse("rate:10..100/60s").unwrap();
        let ArrivalSpec::Stages { stages, .. } = l.arrivals(Arrival::Poisson) else { panic!() };
        assert_eq!(stages.len(), 60);
        assert!((stages[0].rate - 10.75).abs() < 1e-9 && (stages[59].rate - 99.25).abs() < 1e-9);
        let w = l.windows();
        assert_eq!(w.len(), 10);
        assert!((w[0].level - 14.5).abs() < 1e-9 && (w[9].end_s - 60.0).abs() < 1e-9);
        // Constant arrivals of a linear ramp: as many as the area under the rate.
        let plan = l.arrivals(Arrival::Constant).plan(1).unwrap();
        let n = plan.instants().count() as f64;
        assert!((n - 55.0 * 60.0).abs() < 60.0, "{n}");
    }

    #[test]
    fn agents_join_as_the_ramp_rises() {
        let c = RampSpec::parse("concurrency:2..6/40s").unwrap();
        assert_eq!(c.agent_starts(), [0.0, 0.0, 10.0, 20.0, 30.0, 40.0]);
        let s = RampSpec::parse("concurrency:1..7/30s,steps=3").unwrap();
        // Steps of 1, 4 and 7 agents, 10 s each.
        assert_eq!(s.agent_starts(), [0.0, 10.0, 10.0, 10.0, 20.0, 20.0, 20.0]);
        assert_eq!(s.windows().iter().map(|w| w.level).collect::<Vec<_>>(), [1.0, 4.0, 7.0]);
    }
}
