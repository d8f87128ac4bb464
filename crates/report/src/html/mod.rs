//! The multi-run report: one self-contained `index.html` (inline CSS and SVG,
//! no scripts, no network), `report.md` and `report.json`, drawn from stored
//! runs and the typed records [`data`] reads.

pub mod charts;
pub mod data;
pub mod headline;
mod investigate;
mod markdown;
mod page;
pub mod series;

use std::path::{Path, PathBuf};

use fleetbench_core::stats::Interval;
use fleetbench_store::{Store, StoreError};
use serde_json::{json, Value};

pub use data::{knee, Level, ReportRun};
pub use series::{Axis, Curve};

#[derive(Debug, thiserror::Error)]
pub enum HtmlReportError {
    #[error("no run ids given: name at least one (see `fleetbench runs list`)")]
    NoRuns,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the report to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The runs of one report, in the order asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub runs: Vec<ReportRun>,
}

/// Where [`write_report`] put the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    pub dir: PathBuf,
    pub index_html: PathBuf,
    pub markdown: PathBuf,
    pub json: PathBuf,
}

impl Report {
    /// Reads runs, records and artifacts from the store.
    pub fn load(store: &Store, run_ids: &[i64]) -> Result<Report, HtmlReportError> {
        if run_ids.is_empty() {
            return Err(HtmlReportError::NoRuns);
        }
        let runs = run_ids.iter().map(|id| ReportRun::load(store, *id)).collect::<Result<Vec<_>, _>>()?;
        Ok(Report { runs })
    }

    /// The curves of the report: one per backend (and sweep), see
    /// [`series`].
    pub fn curves(&self) -> Vec<Curve> {
        series::curves(&self.runs)
    }

    /// One headline row per curve: the figures an operator decides on.
    pub fn headline(&self) -> Vec<headline::Headline> {
        headline::rows(self, &self.curves())
    }

    /// Every point (run or sweep level) in report order.
    pub fn levels(&self) -> Vec<Level> {
        self.runs.iter().flat_map(|r| r.points()).collect()
    }

    /// The self-contained HTML page.
    pub fn html(&self) -> String {
        page::render(self)
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        markdown::render(self)
    }

    /// The JSON report: each run's `--json-out` document plus the derived
    /// tables the charts are drawn from.
    pub fn json(&self) -> Value {
        let tool = self.runs.first().map(|r| format!("fleetbench {}", r.meta.tool_version)).unwrap_or_default();
        let ci = |c: Option<Interval>| c.map(|c| json!({"lo": c.lo, "hi": c.hi}));
        let curves: Vec<Value> = self.curves().iter().map(|c| curve_json(c, &ci)).collect();
        let headline: Vec<Value> =
            self.headline().iter().map(|h| serde_json::to_value(h).unwrap_or(Value::Null)).collect();
        let per_run = |f: &dyn Fn(&ReportRun) -> Option<Value>| -> Vec<Value> {
            self.runs.iter().filter_map(|r| f(r).map(|v| json!({"run_id": r.meta.id, "items": v}))).collect()
        };
        let nonempty = |v: Value| match &v {
            Value::Array(a) if a.is_empty() => None,
            _ => Some(v),
        };
        json!({
            "tool": tool,
            "runs": self.runs.iter().map(|r| crate::run_json(&r.meta, &r.metrics)).collect::<Vec<_>>(),
            "headline": headline,
            "throughput_vs_concurrency": curves,
            "server_metrics": per_run(&|r| nonempty(serde_json::to_value(&r.server).unwrap_or(Value::Null))),
            "cost": per_run(&|r| nonempty(serde_json::to_value(&r.cost).unwrap_or(Value::Null))),
            "energy": per_run(&|r| nonempty(serde_json::to_value(&r.energy).unwrap_or(Value::Null))),
            "arena": per_run(&|r| nonempty(serde_json::to_value(&r.arena).unwrap_or(Value::Null))),
            "cost_plans": per_run(&|r| nonempty(serde_json::to_value(&r.plans).unwrap_or(Value::Null))),
            "skipped_artifacts": self.runs.iter().flat_map(|r| r.skipped_artifacts.clone()).collect::<Vec<_>>(),
        })
    }
}

/// One curve of `throughput_vs_concurrency` (docs/schemas/report.json).
fn curve_json(c: &Curve, ci: &dyn Fn(Option<Interval>) -> Option<Value>) -> Value {
    let knee = c.knee_point();
    json!({
        "series": c.name,
        "backend": c.backend,
        "model": c.model,
        "hardware": c.hardware,
        "workload": c.workload,
        "x": c.axis.key(),
        "group": c.group,
        "run_ids": c.run_ids,
        "knee_concurrency": knee.filter(|_| c.axis == Axis::Concurrency).map(|p| c.x(p)),
        "knee_rate": knee.filter(|_| c.axis == Axis::Rate).map(|p| c.x(p)),
        "knee_band": c.sweep_knee.as_ref().map(|k| k.band),
        "saturation_output_throughput": c.saturation(),
        "explanation": c.explanation(),
        "points": c.points.iter().map(|p| json!({
            "label": p.label,
            "run_id": p.run_id,
            "concurrency": p.concurrency,
            "rate": p.rate,
            "output_throughput": p.metrics.output_throughput,
            "output_throughput_ci95": ci(p.output_ci),
            "mean_tok_s": p.metrics.mean_tok_s,
            "mean_tok_s_ci95": ci(p.metrics.ci("mean_tok_s")),
            "p50_ttft_ms": p.metrics.ms("p50_ttft_ms"),
            "p99_ttft_ms": p.metrics.ms("p99_ttft_ms"),
            "p50_tpot_ms": p.metrics.ms("p50_tpot_ms"),
            "p99_tpot_ms": p.metrics.ms("p99_tpot_ms"),
            "completed": p.metrics.completed,
            "failed": p.metrics.failed,
        })).collect::<Vec<_>>(),
    })
}

/// Writes `index.html`, `report.md` (with its charts as SVG files beside
/// it) and `report.json` for `run_ids` into
/// `out_dir` (created if needed). This is what `fleetbench report` and the
/// end of `fleetbench demo` call.
pub fn write_report(store: &Store, run_ids: &[i64], out_dir: &Path) -> Result<ReportFiles, HtmlReportError> {
    let report = Report::load(store, run_ids)?;
    write_files(&report, out_dir)
}

/// Writes an already loaded report's three files into `out_dir`.
pub fn write_files(report: &Report, out_dir: &Path) -> Result<ReportFiles, HtmlReportError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HtmlReportError::Write { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(werr(out_dir))?;
    let files = ReportFiles {
        dir: out_dir.to_path_buf(),
        index_html: out_dir.join("index.html"),
        markdown: out_dir.join("report.md"),
        json: out_dir.join("report.json"),
    };
    std::fs::write(&files.index_html, report.html()).map_err(werr(&files.index_html))?;
    // The pictures report.md embeds, as SVG files beside it.
    for c in charts::all(report, &report.curves()) {
        let path = out_dir.join(c.file_name());
        std::fs::write(&path, crate::svg::standalone(&c.svg)).map_err(werr(&path))?;
    }
    std::fs::write(&files.markdown, report.markdown()).map_err(werr(&files.markdown))?;
    let mut json = serde_json::to_string_pretty(&report.json()).unwrap_or_else(|_| "{}".into());
    json.push('\n');
    std::fs::write(&files.json, json).map_err(werr(&files.json))?;
    Ok(files)
}
