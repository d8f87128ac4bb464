//! What a report is drawn from: runs with their figures and records, and the
//! JSON artifacts other commands store beside a run. This file is the
//! contract for those artifacts; every field not marked required may be left
//! out, and unknown fields are ignored.
//!
//! | kind | name | JSON shape |
//! |---|---|---|
//! | `sweep_level` | any, sorted by name (`c0004`) | `{"concurrency": 4, "label": "c=4"?, "metrics": <RunMetrics>}`; a bare `<RunMetrics>` object with a `concurrency` key is accepted too |
//! | `server_metrics` | any | `{"samples": [{"t_s": 1.0, "kv_cache_usage_pct": 41.5?, "queue_depth": 3?, "running": 8?}]}` (time from run start, seconds) |
//! | `cost` | backend name | `{"backend": "vllm-h100", "usd_per_million_output_tokens": 0.42, "usd_total": 1.2?, "usd_per_request": 0.001?, "price_inputs": "text"?}` |
//! | `energy` | backend name | `{"backend": "vllm-h100", "energy_per_output_token_j": 0.31, "ci95": {"lo": 0.29, "hi": 0.33}?, "idle_power_w": 85?, "meter": "nvml"?, "past_the_meter": {"supply": "grid-us", "pue": 1.3, "per_million_tokens": {"it_kwh", "facility_kwh", "delivered_kwh", "fuel_kwh", "heat_kwh", "co2_kg"}}?}` |
//! | `arena_backend` | backend name | `{"backend": "b", "model": "m"?, "score": 71.2, "ci95": {"lo": 65, "hi": 77}?, "episodes": 40?, "failed": 1?, "scenarios": {"xid79_fallen_off_bus": 80.0, ...}?}` (scores 0–100) |
//! | `cost_plan` | any | the batch-job planner's `Plan`: `{"sheet": "...", "job": {...}?, "rows": [{"name", "kind", "total_usd", "wall_hours"?, "multiplier"?, "bound"?, "price_inputs"?}], "skipped": [{"name", "why"}]?}` |
//! | `answer` | any | `{"backend": "b", "scenario": "s", "text": "model answer", "score": 50?}`: sample answers shown (escaped) under the arena |

use std::collections::BTreeMap;

use fleetbench_core::stats::Interval;
use fleetbench_core::{RequestRecord, RunMeta, RunMetrics, Slo};
/// The arena's typed records, read here as they are written.
pub use fleetbench_store::records::arena::{is_arena_run, Answer as ArenaAnswer, ArenaBackend};
use fleetbench_store::Artifact as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Artifact kinds the report reads (see the module comment for shapes).
pub const KIND_SWEEP_LEVEL: &str = "sweep_level";
pub const KIND_SERVER_METRICS: &str = "server_metrics";
pub const KIND_COST: &str = "cost";
pub const KIND_ENERGY: &str = "energy";
pub const KIND_ARENA_BACKEND: &str = ArenaBackend::KIND;
pub const KIND_COST_PLAN: &str = "cost_plan";
pub const KIND_ANSWER: &str = ArenaAnswer::KIND;

/// One point of the throughput–concurrency picture: a run, or a level of a
/// sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// `run 3` or `run 3 c=8`.
    pub label: String,
    /// Concurrency (target; else the measured maximum in flight).
    pub concurrency: Option<f64>,
    pub metrics: RunMetrics,
    /// 95 % interval of aggregate output tok/s.
    pub output_ci: Option<Interval>,
}

/// A sample of server-side state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSample {
    pub t_s: f64,
    #[serde(default)]
    pub kv_cache_usage_pct: Option<f64>,
    #[serde(default)]
    pub queue_depth: Option<f64>,
    #[serde(default)]
    pub running: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostFigure {
    pub backend: String,
    pub usd_per_million_output_tokens: f64,
    #[serde(default)]
    pub usd_total: Option<f64>,
    #[serde(default)]
    pub usd_per_request: Option<f64>,
    #[serde(default)]
    pub price_inputs: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyFigure {
    pub backend: String,
    pub energy_per_output_token_j: f64,
    #[serde(default)]
    pub ci95: Option<Interval>,
    #[serde(default)]
    pub idle_power_w: Option<f64>,
    #[serde(default)]
    pub meter: Option<String>,
    /// The same energy carried past the facility meter (ECONOMICS.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub past_the_meter: Option<PastTheMeter>,
}

/// Energy past the meter, per million output tokens, with its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastTheMeter {
    pub supply: String,
    pub pue: f64,
    pub per_million_tokens: PerMillion,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerMillion {
    pub it_kwh: f64,
    pub facility_kwh: f64,
    pub delivered_kwh: f64,
    pub fuel_kwh: f64,
    pub heat_kwh: f64,
    pub co2_kg: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    pub name: String,
    #[serde(default)]
    pub kind: Option<String>,
    pub total_usd: f64,
    #[serde(default)]
    pub wall_hours: Option<f64>,
    #[serde(default)]
    pub multiplier: Option<f64>,
    #[serde(default)]
    pub bound: Option<Value>,
    #[serde(default)]
    pub price_inputs: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSkip {
    pub name: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostPlan {
    #[serde(default)]
    pub sheet: Option<String>,
    #[serde(default)]
    pub job: Option<Value>,
    pub rows: Vec<PlanRow>,
    #[serde(default)]
    pub skipped: Vec<PlanSkip>,
}

/// Everything the report knows about one stored run.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRun {
    pub meta: RunMeta,
    /// The stored summary, else figures computed from the records so far.
    pub metrics: RunMetrics,
    /// Pooled inter-token gaps in ms, from the records.
    pub itl_ms: Vec<f64>,
    /// Sweep levels; empty for a plain run.
    pub levels: Vec<Level>,
    pub server: Vec<ServerSample>,
    pub cost: Vec<CostFigure>,
    pub energy: Vec<EnergyFigure>,
    pub arena: Vec<ArenaBackend>,
    pub plans: Vec<CostPlan>,
    pub answers: Vec<ArenaAnswer>,
    /// Artifacts that did not match their documented shape (kind/name: why).
    pub skipped_artifacts: Vec<String>,
}

/// The concurrency a run was asked for: `config.concurrency`, else
/// `config.max_concurrency`.
pub fn configured_concurrency(meta: &RunMeta) -> Option<f64> {
    ["concurrency", "max_concurrency"].iter().find_map(|k| meta.config.get(*k).and_then(Value::as_f64))
}

/// The hardware a run was measured on, where its config says so.
pub fn hardware(meta: &RunMeta) -> Option<String> {
    ["hardware", "gpu", "gpus"].iter().find_map(|k| match meta.config.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(v @ (Value::Number(_) | Value::Array(_) | Value::Object(_))) => Some(v.to_string()),
        _ => None,
    })
}

/// 95 % interval of aggregate output tok/s: the stored one when present,
/// else a bootstrap over the per-request output lengths with the duration
/// held fixed.
pub fn output_throughput_ci(m: &RunMetrics) -> Option<Interval> {
    if let Some(ci) = m.ci("output_throughput") {
        return Some(ci);
    }
    if m.duration <= 0.0 || m.output_lens.len() < 2 {
        return None;
    }
    let lens: Vec<f64> = m.output_lens.iter().map(|x| *x as f64).collect();
    let d = m.duration;
    fleetbench_core::stats::bootstrap_ci(
        &lens,
        |s| s.iter().sum::<f64>() / d,
        fleetbench_core::stats::resamples_for(lens.len()),
        fleetbench_core::stats::BOOTSTRAP_SEED,
    )
}

impl ReportRun {
    /// Builds a run's report data from its stored pieces. `artifacts` maps a
    /// kind to its (name, value) list.
    pub fn assemble(
        meta: RunMeta,
        summary: Option<&Value>,
        records: &[RequestRecord],
        artifacts: &BTreeMap<String, Vec<(String, Value)>>,
    ) -> ReportRun {
        let concurrency = configured_concurrency(&meta);
        let computed = || RunMetrics::compute(records, &Slo::default(), concurrency.map(|c| c as u32));
        let metrics = match summary.and_then(|s| serde_json::from_value::<RunMetrics>(s.clone()).ok()) {
            // Stored summaries leave out the per-request arrays (the request
            // rows hold them); take those from the records.
            Some(mut m) if m.output_lens.is_empty() && !records.is_empty() => {
                let c = computed();
                m.ttfts = c.ttfts;
                m.itls = c.itls;
                m.latencies = c.latencies;
                m.input_lens = c.input_lens;
                m.output_lens = c.output_lens;
                m.errors = c.errors;
                m
            }
            Some(m) => m,
            None => computed(),
        };
        let mut itl_ms: Vec<f64> =
            records.iter().filter(|r| !r.warmup && r.ok()).flat_map(|r| r.itl.iter().map(|g| g * 1000.0)).collect();
        if itl_ms.is_empty() {
            itl_ms = metrics.itls.iter().flatten().map(|g| g * 1000.0).collect();
        }
        let mut skipped = Vec::new();
        let take = |kind: &str| -> Vec<(String, Value)> { artifacts.get(kind).cloned().unwrap_or_default() };

        let mut levels = Vec::new();
        for (name, v) in take(KIND_SWEEP_LEVEL) {
            match parse_level(&meta, &name, &v) {
                Some(l) => levels.push(l),
                None => skipped.push(format!("{KIND_SWEEP_LEVEL}/{name}: needs concurrency and metrics")),
            }
        }
        levels.sort_by(|a, b| a.concurrency.unwrap_or(0.0).total_cmp(&b.concurrency.unwrap_or(0.0)));

        let mut server = Vec::new();
        for (name, v) in take(KIND_SERVER_METRICS) {
            match v.get("samples").cloned().map(serde_json::from_value::<Vec<ServerSample>>) {
                Some(Ok(s)) => server.extend(s),
                _ => skipped.push(format!("{KIND_SERVER_METRICS}/{name}: needs samples[]")),
            }
        }
        server.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));

        let cost = parse_all::<CostFigure>(&take(KIND_COST), KIND_COST, &mut skipped);
        let energy = parse_all::<EnergyFigure>(&take(KIND_ENERGY), KIND_ENERGY, &mut skipped);
        let arena = parse_all::<ArenaBackend>(&take(KIND_ARENA_BACKEND), KIND_ARENA_BACKEND, &mut skipped);
        let plans = parse_all::<CostPlan>(&take(KIND_COST_PLAN), KIND_COST_PLAN, &mut skipped);
        let answers = parse_all::<ArenaAnswer>(&take(KIND_ANSWER), KIND_ANSWER, &mut skipped);

        ReportRun {
            meta,
            metrics,
            itl_ms,
            levels,
            server,
            cost,
            energy,
            arena,
            plans,
            answers,
            skipped_artifacts: skipped,
        }
    }

    /// The points this run adds to the concurrency picture: its sweep levels,
    /// else itself; none when it sent no requests, or for an arena run
    /// (its figures are the leaderboard; the HTTP requests it stores mix
    /// several backends).
    pub fn points(&self) -> Vec<Level> {
        if !self.levels.is_empty() {
            return self.levels.clone();
        }
        if self.metrics.sent == 0 || is_arena_run(&self.meta.config) {
            return Vec::new();
        }
        let concurrency = configured_concurrency(&self.meta).or_else(|| {
            (self.metrics.max_concurrent_requests > 0).then_some(self.metrics.max_concurrent_requests as f64)
        });
        vec![Level {
            label: format!("run {}", self.meta.id),
            concurrency,
            output_ci: output_throughput_ci(&self.metrics),
            metrics: self.metrics.clone(),
        }]
    }

    /// The name a run's curve goes by: model @ backend URL.
    pub fn series_name(&self) -> String {
        format!("{} @ {}", self.meta.model, self.meta.backend_url)
    }
}

fn parse_level(meta: &RunMeta, name: &str, v: &Value) -> Option<Level> {
    let concurrency = v.get("concurrency").and_then(Value::as_f64)?;
    let metrics: RunMetrics = match v.get("metrics") {
        Some(m) => serde_json::from_value(m.clone()).ok()?,
        None => serde_json::from_value(v.clone()).ok()?,
    };
    let label = v
        .get("label")
        .and_then(Value::as_str)
        .map(|l| format!("run {} {l}", meta.id))
        .unwrap_or_else(|| format!("run {} c={}", meta.id, crate::svg::fmt_num(concurrency)));
    let _ = name;
    Some(Level { label, concurrency: Some(concurrency), output_ci: output_throughput_ci(&metrics), metrics })
}

fn parse_all<T: serde::de::DeserializeOwned>(
    items: &[(String, Value)],
    kind: &str,
    skipped: &mut Vec<String>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (name, v) in items {
        match serde_json::from_value::<T>(v.clone()) {
            Ok(x) => out.push(x),
            Err(e) => skipped.push(format!("{kind}/{name}: {e}")),
        }
    }
    out
}

/// The knee of a throughput curve: the point farthest above the straight
/// line from the first to the last point, both axes scaled to [0, 1]
/// (Kneedle). `None` with fewer than three points or when the curve is
/// close to straight (no point more than 0.05 above the chord).
pub fn knee(points: &[(f64, f64)]) -> Option<usize> {
    if points.len() < 3 {
        return None;
    }
    let (x0, x1) = (points[0].0, points[points.len() - 1].0);
    let ymin = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let ymax = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if x1 <= x0 || ymax <= ymin {
        return None;
    }
    let norm = |p: &(f64, f64)| ((p.0 - x0) / (x1 - x0), (p.1 - ymin) / (ymax - ymin));
    let (a, b) = (norm(&points[0]), norm(&points[points.len() - 1]));
    let mut best = None;
    let mut best_d = 0.05;
    for (i, p) in points.iter().enumerate().take(points.len() - 1).skip(1) {
        let (x, y) = norm(p);
        let chord = a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0);
        let d = y - chord;
        if d > best_d {
            best_d = d;
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knee_is_where_the_curve_bends() {
        let pts = [(1.0, 100.0), (2.0, 190.0), (4.0, 350.0), (8.0, 420.0), (16.0, 440.0), (32.0, 445.0)];
        assert_eq!(knee(&pts), Some(3));
        let straight = [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)];
        assert_eq!(knee(&straight), None);
        assert_eq!(knee(&pts[..2]), None);
    }
}
