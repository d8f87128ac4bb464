//! `run --repeat N`: the same run measured N times. For each headline
//! figure, how far the runs lie apart (docs/METRICS.md, "Repeats").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::RunMetrics;
use crate::stats;

/// The headline figures compared across runs, by their `--json-out` keys.
pub const REPEAT_KEYS: [&str; 7] = [
    "output_throughput",
    "request_throughput",
    "mean_tok_s",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "median_e2el_ms",
];

/// One figure across the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Each run's value, in run order.
    pub values: Vec<f64>,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Population standard deviation across runs.
    pub std: f64,
    /// `(max − min) / mean`, percent.
    pub spread_pct: f64,
    /// 95 % bootstrap interval of the mean across runs (two runs or more).
    pub ci95: Option<[f64; 2]>,
}

/// What `--json-out` carries under `repeats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepeatFigures {
    pub runs: usize,
    pub run_ids: Vec<i64>,
    /// By key of [`REPEAT_KEYS`]; a figure no run has is left out.
    pub figures: BTreeMap<String, Spread>,
}

fn value(m: &RunMetrics, key: &str) -> Option<f64> {
    match key {
        "output_throughput" => Some(m.output_throughput),
        "request_throughput" => Some(m.request_throughput),
        "mean_tok_s" => m.mean_tok_s,
        k => m.ms(k),
    }
}

impl RepeatFigures {
    /// The spread of each headline figure over `runs` (id, figures).
    pub fn compute(runs: &[(i64, &RunMetrics)]) -> RepeatFigures {
        let mut figures = BTreeMap::new();
        for key in REPEAT_KEYS {
            let values: Vec<f64> = runs.iter().filter_map(|(_, m)| value(m, key)).collect();
            if values.len() != runs.len() || values.is_empty() {
                continue;
            }
            let mean = stats::mean(&values).unwrap_or(0.0);
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let spread_pct = if mean != 0.0 { 100.0 * (max - min) / mean } else { 0.0 };
            let ci95 = if values.len() >= 2 { stats::mean_ci(&values).map(|i| [i.lo, i.hi]) } else { None };
            let std = stats::std_dev(&values).unwrap_or(0.0);
            figures.insert(key.to_string(), Spread { values, mean, min, max, std, spread_pct, ci95 });
        }
        RepeatFigures { runs: runs.len(), run_ids: runs.iter().map(|(id, _)| *id).collect(), figures }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_three_runs() {
        let run = |thr: f64, ttft: f64| {
            let mut m = RunMetrics { output_throughput: thr, request_throughput: thr / 10.0, ..Default::default() };
            m.latency_ms.insert("median_ttft_ms".into(), ttft);
            m
        };
        let (a, b, c) = (run(100.0, 50.0), run(110.0, 40.0), run(90.0, 60.0));
        let r = RepeatFigures::compute(&[(1, &a), (2, &b), (3, &c)]);
        assert_eq!((r.runs, r.run_ids.clone()), (3, vec![1, 2, 3]));
        let t = &r.figures["output_throughput"];
        assert_eq!((t.mean, t.min, t.max), (100.0, 90.0, 110.0));
        assert!((t.spread_pct - 20.0).abs() < 1e-9);
        assert!((t.std - (200.0f64 / 3.0).sqrt()).abs() < 1e-9);
        let [lo, hi] = t.ci95.unwrap();
        assert!(lo >= 90.0 && hi <= 110.0 && lo <= 100.0 && hi >= 100.0, "{lo} {hi}");
        assert_eq!(r.figures["median_ttft_ms"].values, [50.0, 40.0, 60.0]);
        // Figures the runs lack are left out; one run has no interval.
        assert!(!r.figures.contains_key("p99_ttft_ms"));
        assert_eq!(RepeatFigures::compute(&[(1, &a)]).figures["output_throughput"].ci95, None);
    }
}
