//! The headline of a report: one row per backend (curve) with the figures
//! an operator decides on, and one sentence that says them in words.

use serde::Serialize;

use super::series::Curve;
use super::Report;
use crate::svg::fmt_num;

/// The headline figures of one backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Headline {
    pub backend: String,
    pub model: String,
    /// `concurrency` or `rate`.
    pub x: &'static str,
    /// Per-request output tok/s at the lowest level measured.
    pub single_stream_tok_s: Option<f64>,
    /// The level that figure was measured at.
    pub single_stream_at: Option<f64>,
    pub peak_output_throughput: Option<f64>,
    pub peak_at: Option<f64>,
    pub knee: Option<f64>,
    /// Why the curve bends.
    pub why: String,
    pub p50_ttft_ms_at_knee: Option<f64>,
    pub p50_tpot_ms_at_knee: Option<f64>,
    pub usd_per_million_output_tokens: Option<f64>,
    pub energy_per_output_token_j: Option<f64>,
    /// Mean arena diagnosis score (0–100) of an arena backend serving the
    /// same model, where the report holds one.
    pub arena_score: Option<f64>,
    pub sentence: String,
}

/// One headline row per curve, in curve order.
pub fn rows(report: &Report, curves: &[Curve]) -> Vec<Headline> {
    curves.iter().map(|c| row(report, c)).collect()
}

fn row(report: &Report, c: &Curve) -> Headline {
    let first = c.points.first();
    let peak = c.peak();
    let knee = c.knee_point();
    let runs: Vec<_> = report.runs.iter().filter(|r| c.run_ids.contains(&r.meta.id)).collect();
    // Cost and energy: the record stored with the knee's run first (the
    // demo prices the knee), else any of the curve's runs.
    let knee_run = knee.map(|k| k.run_id);
    let ordered = runs.iter().filter(|r| Some(r.meta.id) == knee_run).chain(runs.iter());
    let usd = ordered.clone().flat_map(|r| r.cost.iter()).find_map(|x| x.figures.usd_per_million_output_tokens);
    let joules = ordered.flat_map(|r| r.energy.iter()).find_map(|e| e.energy_per_output_token_j);
    let arena_score = report
        .runs
        .iter()
        .flat_map(|r| r.arena.iter())
        .filter(|a| a.model.as_deref() == Some(c.model.as_str()))
        .map(|a| a.score)
        .reduce(f64::max);
    let mut h = Headline {
        backend: c.name.clone(),
        model: c.model.clone(),
        x: c.axis.key(),
        single_stream_tok_s: first.and_then(|p| p.metrics.mean_tok_s),
        single_stream_at: first.map(|p| c.x(p)),
        peak_output_throughput: peak.map(|p| p.metrics.output_throughput),
        peak_at: peak.map(|p| c.x(p)),
        knee: knee.map(|p| c.x(p)),
        why: c.explanation(),
        p50_ttft_ms_at_knee: knee.and_then(|p| p.metrics.ms("p50_ttft_ms")),
        p50_tpot_ms_at_knee: knee.and_then(|p| p.metrics.ms("p50_tpot_ms")),
        usd_per_million_output_tokens: usd,
        energy_per_output_token_j: joules,
        arena_score,
        sentence: String::new(),
    };
    h.sentence = sentence(c, &h);
    h
}

fn sentence(c: &Curve, h: &Headline) -> String {
    let mut s = c.name.clone();
    if let (Some(v), Some(at)) = (h.single_stream_tok_s, h.single_stream_at) {
        s.push_str(&format!(" streams {} tok/s to one request at {}", fmt_num(v), c.axis.fmt(at)));
    }
    if let (Some(v), Some(at)) = (h.peak_output_throughput, h.peak_at) {
        s.push_str(&format!(" and peaks at {} tok/s in all at {}", fmt_num(v), c.axis.fmt(at)));
    }
    match c.knee_text() {
        Some(k) => s.push_str(&format!("; the knee is at {k}: {}", c.explanation())),
        None => s.push_str(&format!("; {}", c.explanation())),
    }
    let mut extra = Vec::new();
    if let Some(u) = h.usd_per_million_output_tokens {
        extra.push(format!("${} per million output tokens", fmt_num(u)));
    }
    if let Some(j) = h.energy_per_output_token_j {
        extra.push(format!("{} J per output token", fmt_num(j)));
    }
    if !extra.is_empty() {
        s.push_str(&format!(" ({})", extra.join(", ")));
    }
    s.push('.');
    s
}
