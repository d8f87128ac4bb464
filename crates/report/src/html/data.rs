//! What a report is drawn from: runs with their figures and records, and the
//! typed records other commands store beside a run. Each record's type (and
//! its kind) is declared by the crate that writes it: sweep levels and
//! server timelines in `fleetbench-load` (`sweep::records`), cost and energy
//! in `fleetbench-econ` (`records`), the arena's in `fleetbench-store`
//! (`records::arena`). A record that does not read as its type is skipped
//! and named in the report.

use fleetbench_core::stats::Interval;
use fleetbench_core::{Artifact, RequestRecord, RunMeta, RunMetrics, Slo};
use fleetbench_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use fleetbench_econ::records::{CostRecord, EnergyRecord, PastTheMeter};
pub use fleetbench_load::sweep::records::{KneeDoc, ServerMetricsRecord, ServerSample, SweepLevelRecord, SweepRecord};
/// The arena's typed records, read here as they are written.
pub use fleetbench_store::records::arena::{is_arena_run, Answer as ArenaAnswer, ArenaBackend, ArenaFloor};

/// One point of the throughput–concurrency picture: a run, or a level of a
/// sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// `run 3` or `run 3 c=8`.
    pub label: String,
    /// The stored run the point was measured in.
    pub run_id: i64,
    /// Concurrency (target; else the measured maximum in flight).
    pub concurrency: Option<f64>,
    /// Open loop: the request rate asked for (requests per second).
    pub rate: Option<f64>,
    pub metrics: RunMetrics,
    /// 95 % interval of aggregate output tok/s.
    pub output_ci: Option<Interval>,
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

/// A batch-job plan stored beside a run (`cost_plan`).
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

impl Artifact for CostPlan {
    const KIND: &'static str = "cost_plan";
}

impl CostPlan {
    /// The stored form of the planner's answer.
    pub fn from_plan(plan: &fleetbench_econ::Plan) -> Result<CostPlan, serde_json::Error> {
        serde_json::from_value(serde_json::to_value(plan)?)
    }

    /// Stores `plan` as a run of its own (its row from `meta`, completed at
    /// once) so that `fleetbench report ID` draws it; returns the run's id.
    pub fn store(
        plan: &fleetbench_econ::Plan,
        store: &Store,
        mut meta: RunMeta,
    ) -> Result<i64, fleetbench_store::StoreError> {
        let record = CostPlan::from_plan(plan)
            .map_err(|e| fleetbench_store::StoreError::Corrupt { run: 0, why: format!("the plan: {e}") })?;
        meta.workload = format!(
            "batch job: {} documents × {} input / {} output tokens",
            plan.job.docs, plan.job.input_tokens_per_doc, plan.job.output_tokens_per_doc
        );
        meta.schedule = "batch-job plan".into();
        let id = store.create_run(&meta)?;
        store.put(id, "plan", &record)?;
        let ended = meta.started_at.clone();
        store.finish_run(id, fleetbench_core::RunStatus::Completed, &ended, None)?;
        Ok(id)
    }
}

/// The records of type `A` of a run; those that do not read are named in
/// `skipped`.
fn typed<A: Artifact>(
    store: &Store,
    id: i64,
    skipped: &mut Vec<String>,
) -> Result<Vec<(String, A)>, fleetbench_store::StoreError> {
    let mut out = Vec::new();
    for (name, a) in store.get_each::<A>(id)? {
        match a {
            Ok(a) => out.push((name, a)),
            Err(e) => skipped.push(format!("{}/{name}: {e}", A::KIND)),
        }
    }
    Ok(out)
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
    /// Cost records with `usd_per_million_output_tokens`.
    pub cost: Vec<CostRecord>,
    /// Energy records with `energy_per_output_token_j`.
    pub energy: Vec<EnergyRecord>,
    pub arena: Vec<ArenaBackend>,
    /// Investigate mode: the best constant answer's score.
    pub floor: Option<ArenaFloor>,
    pub plans: Vec<CostPlan>,
    pub answers: Vec<ArenaAnswer>,
    /// The sweeps whose record this run holds (a sweep's first run).
    pub sweeps: Vec<SweepRecord>,
    /// Artifacts that did not match their documented shape (kind/name: why).
    pub skipped_artifacts: Vec<String>,
}

/// The concurrency a run was asked for: its config's concurrency, else its
/// most in flight allowed.
pub fn configured_concurrency(meta: &RunMeta) -> Option<f64> {
    let c = meta.run_config();
    c.concurrency.or(c.max_concurrency).map(f64::from)
}

/// The hardware a run was measured on, where its config says so.
pub fn hardware(meta: &RunMeta) -> Option<String> {
    meta.run_config().hardware
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
    /// Reads a stored run with its records and typed records.
    pub fn load(store: &Store, id: i64) -> Result<ReportRun, fleetbench_store::StoreError> {
        let stored = store.run(id)?;
        let records = store.records(id)?;
        let mut skipped = Vec::new();
        let mut levels = Vec::new();
        for (_, l) in typed::<SweepLevelRecord>(store, id, &mut skipped)? {
            let label = l.label.clone().unwrap_or_else(|| format!("c={}", crate::svg::fmt_num(l.concurrency)));
            levels.push(Level {
                label: format!("run {id} {label}"),
                run_id: id,
                concurrency: Some(l.concurrency),
                rate: l.rate,
                output_ci: output_throughput_ci(&l.metrics),
                metrics: l.metrics,
            });
        }
        let server = typed::<ServerMetricsRecord>(store, id, &mut skipped)?.into_iter().flat_map(|(_, s)| s.samples);
        let mut cost = Vec::new();
        for (name, c) in typed::<CostRecord>(store, id, &mut skipped)? {
            match c.figures.usd_per_million_output_tokens {
                Some(_) => cost.push(c),
                None => skipped.push(format!("{}/{name}: no usd_per_million_output_tokens", CostRecord::KIND)),
            }
        }
        let mut energy = Vec::new();
        for (name, e) in typed::<EnergyRecord>(store, id, &mut skipped)? {
            match e.energy_per_output_token_j {
                Some(_) => energy.push(e),
                None => skipped.push(format!("{}/{name}: no energy_per_output_token_j", EnergyRecord::KIND)),
            }
        }
        let mut run = ReportRun::assemble(stored.meta, stored.summary.as_ref(), &records);
        levels.sort_by(|a, b| a.concurrency.unwrap_or(0.0).total_cmp(&b.concurrency.unwrap_or(0.0)));
        run.levels = levels;
        run.server = server.collect();
        run.server.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        run.cost = cost;
        run.energy = energy;
        run.arena = typed::<ArenaBackend>(store, id, &mut skipped)?.into_iter().map(|(_, a)| a).collect();
        run.floor = typed::<ArenaFloor>(store, id, &mut skipped)?.into_iter().map(|(_, f)| f).next();
        run.plans = typed::<CostPlan>(store, id, &mut skipped)?.into_iter().map(|(_, a)| a).collect();
        run.answers = typed::<ArenaAnswer>(store, id, &mut skipped)?.into_iter().map(|(_, a)| a).collect();
        run.sweeps = typed::<SweepRecord>(store, id, &mut skipped)?.into_iter().map(|(_, a)| a).collect();
        run.skipped_artifacts = skipped;
        Ok(run)
    }

    /// A run's figures from its row and records, before its typed records
    /// are read.
    fn assemble(meta: RunMeta, summary: Option<&Value>, records: &[RequestRecord]) -> ReportRun {
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
        ReportRun {
            meta,
            metrics,
            itl_ms,
            levels: Vec::new(),
            server: Vec::new(),
            cost: Vec::new(),
            energy: Vec::new(),
            arena: Vec::new(),
            floor: None,
            plans: Vec::new(),
            answers: Vec::new(),
            sweeps: Vec::new(),
            skipped_artifacts: Vec::new(),
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
            run_id: self.meta.id,
            concurrency,
            rate: self.meta.run_config().request_rate,
            output_ci: output_throughput_ci(&self.metrics),
            metrics: self.metrics.clone(),
        }]
    }

    /// The name a run's curve goes by: model @ backend URL.
    pub fn series_name(&self) -> String {
        format!("{} @ {}", self.meta.model, self.meta.backend_url)
    }
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
