//! Is run B different from run A? For each per-request figure, a
//! Mann-Whitney U test on the two samples with its effect size; for the
//! output throughput, whether the two 95 % intervals overlap. Used by
//! `fleetbench compare` (see docs/METRICS.md, "Comparing runs").

use serde::Serialize;

use crate::outcome::RequestRecord;
use crate::stats::{self, mann_whitney};
use crate::RunMetrics;

type Extract = fn(&RequestRecord) -> Option<f64>;

/// The per-request figures compared: name, extractor, higher is better.
const FIGURES: [(&str, Extract, bool); 6] = [
    ("ttft_ms", |r| r.ttft().map(|x| x * 1000.0), false),
    ("tpot_ms", |r| r.tpot().map(|x| x * 1000.0), false),
    ("itl_ms (per-request mean)", |r| stats::mean(&r.itl).map(|x| x * 1000.0), false),
    ("e2el_ms", |r| r.e2el().map(|x| x * 1000.0), false),
    ("tok_s (per request)", |r| r.tok_s(), true),
    ("task_tok_s", |r| r.task_tok_s(), true),
];

/// One figure of A and B side by side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FigureComparison {
    pub figure: &'static str,
    pub median_a: f64,
    pub median_b: f64,
    /// `100 × (median_b / median_a − 1)`.
    pub change_pct: f64,
    pub p_value: f64,
    /// P(B > A) for a random pair of requests (0.5 = no difference).
    pub effect_size: f64,
    pub significant: bool,
    /// `better`, `worse` or `no significant difference`.
    pub verdict: &'static str,
    pub n_a: usize,
    pub n_b: usize,
}

/// A run's throughput with its interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    pub value: f64,
    pub ci95: Option<[f64; 2]>,
}

impl Throughput {
    pub fn of(m: &RunMetrics) -> Throughput {
        Throughput { value: m.output_throughput, ci95: m.ci("output_throughput").map(|i| [i.lo, i.hi]) }
    }
}

/// The verdicts on every figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub throughput_a: Throughput,
    pub throughput_b: Throughput,
    /// Whether the two throughput intervals overlap; `None` without intervals.
    pub throughput_intervals_overlap: Option<bool>,
    pub figures: Vec<FigureComparison>,
}

/// Compares run B with run A at significance level `alpha`. Only measured
/// (not warm-up), successful requests with a finite value count; a figure
/// neither run has is left out.
pub fn compare(
    a: &[RequestRecord],
    a_metrics: &RunMetrics,
    b: &[RequestRecord],
    b_metrics: &RunMetrics,
    alpha: f64,
) -> Comparison {
    let pick = |rs: &[RequestRecord], f: Extract| -> Vec<f64> {
        rs.iter().filter(|r| r.ok() && !r.warmup).filter_map(f).filter(|x| x.is_finite()).collect()
    };
    let mut figures = Vec::new();
    for (figure, f, higher_better) in FIGURES {
        let (xa, xb) = (pick(a, f), pick(b, f));
        let (Some(median_a), Some(median_b)) = (stats::percentile(&xa, 50.0), stats::percentile(&xb, 50.0)) else {
            continue;
        };
        let (p_value, effect_size) = mann_whitney(&xb, &xa).unwrap_or((1.0, 0.5));
        let change_pct = if median_a != 0.0 { 100.0 * (median_b / median_a - 1.0) } else { 0.0 };
        let significant = p_value < alpha;
        let better = if (median_b > median_a) == higher_better { "better" } else { "worse" };
        figures.push(FigureComparison {
            figure,
            median_a,
            median_b,
            change_pct,
            p_value,
            effect_size,
            significant,
            verdict: if significant { better } else { "no significant difference" },
            n_a: xa.len(),
            n_b: xb.len(),
        });
    }
    let throughput_intervals_overlap = match (a_metrics.ci("output_throughput"), b_metrics.ci("output_throughput")) {
        (Some(x), Some(y)) => Some(x.lo <= y.hi && y.lo <= x.hi),
        _ => None,
    };
    Comparison {
        throughput_a: Throughput::of(a_metrics),
        throughput_b: Throughput::of(b_metrics),
        throughput_intervals_overlap,
        figures,
    }
}
