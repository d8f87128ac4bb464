//! Validation under load: rows that describe a real serving run (deployment,
//! engine settings, workload and arrivals in the language of
//! `fleetbench run`, measured mean TTFT, TPOT and end-to-end latency), each
//! replayed through the discrete-event engine and compared. `sim validate`
//! takes these files as well as the single-number rows of
//! [`crate::calibration`]; [`validate_path`] tells them apart by header.

use std::path::Path;

use fleetbench_core::SamplingParams;
use fleetbench_workload::{Arrival, ArrivalSpec, Schedule, Traffic, WorkloadSpec};
use serde::Serialize;

use crate::calibration::{self, ValidationReport};
use crate::catalog::Catalog;
use crate::perf::{Deployment, DeploymentSpec, EngineKnobs};
use crate::replay::{replay, ReplayPlan};
use crate::SimError;

/// The columns an under-load file must have (extra columns are ignored).
pub const COLUMNS: [&str; 17] = [
    "id",
    "gpu",
    "gpu_count",
    "model",
    "quant",
    "engine",
    "max_num_batched_tokens",
    "max_num_seqs",
    "gpu_memory_utilization",
    "cpu_offload",
    "prefix_caching",
    "workload",
    "arrivals",
    "measured_ttft_mean_ms",
    "measured_tpot_mean_ms",
    "measured_e2e_mean_ms",
    "source",
];

/// The header that marks an under-load file.
const MARKER: &str = "measured_ttft_mean_ms";

/// One run, as written in the file, with its line for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadRow {
    /// Position among the data rows, from 0 (every fourth is held out of fits).
    pub index: usize,
    /// Line in the file (1 is the header).
    pub line: u64,
    columns: Vec<(String, String)>,
}

impl LoadRow {
    /// A column's text, trimmed ("" when absent).
    pub fn get(&self, key: &str) -> &str {
        self.columns.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim()).unwrap_or("")
    }
    pub fn id(&self) -> &str {
        self.get("id")
    }
}

/// Whether a CSV text is an under-load file (its header names the measured TTFT).
pub fn is_under_load(text: &str) -> bool {
    text.lines().next().is_some_and(|h| h.split(',').any(|c| c.trim() == MARKER))
}

/// Reads under-load rows from text; `origin` names the file in errors.
pub fn parse_rows(text: &str, origin: &str) -> Result<Vec<LoadRow>, SimError> {
    let err = |message: String| SimError::Calibration { path: origin.to_string(), message };
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| err(format!("line 1: cannot read the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let missing: Vec<&str> = COLUMNS.iter().copied().filter(|c| !headers.iter().any(|h| h == c)).collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "line 1: missing column(s) {}; an under-load file needs {}",
            missing.join(", "),
            COLUMNS.join(", ")
        )));
    }
    let mut rows = Vec::new();
    for (index, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(format!("data row {}: {e}", index + 1)))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(index as u64 + 2);
        let columns =
            headers.iter().enumerate().map(|(i, h)| (h.clone(), rec.get(i).unwrap_or("").to_string())).collect();
        rows.push(LoadRow { index, line, columns });
    }
    Ok(rows)
}

/// The errors of one row, or why it was skipped (the `--json` contract).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowResult {
    pub id: String,
    pub ttft_err_pct: Option<f64>,
    pub tpot_err_pct: Option<f64>,
    pub e2e_err_pct: Option<f64>,
    /// `None` when the row was replayed; else why not.
    pub skipped: Option<String>,
    /// Measured and predicted means (text output and tests; not in JSON).
    #[serde(skip)]
    pub figures: Option<Figures>,
}

/// Measured and predicted means of one row, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub measured: [Option<f64>; 3],
    pub predicted: [Option<f64>; 3],
    pub requests: u64,
}

/// Median absolute errors per metric, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Medians {
    pub ttft: Option<f64>,
    pub tpot: Option<f64>,
    pub e2e: Option<f64>,
}

/// What `sim validate --json` prints for an under-load file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub rows: Vec<RowResult>,
    pub median_abs_err_pct: Medians,
    pub covered: usize,
    pub total: usize,
}

/// What went wrong with a row: a value the file states wrongly (an error,
/// reported with its line and column) or a deployment the simulator cannot
/// place (a skip, with its reason).
enum RowError {
    Bad(String),
    Skip(String),
}

struct Cells<'a> {
    row: &'a LoadRow,
    headers: &'a [String],
}

impl Cells<'_> {
    fn at(&self, key: &str, why: impl std::fmt::Display) -> RowError {
        let col = self.headers.iter().position(|h| h == key).map(|i| i + 1).unwrap_or(0);
        RowError::Bad(format!("line {}, column {col} ({key}): {why}", self.row.line))
    }
    fn opt<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, RowError> {
        let v = self.row.get(key);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<T>().map(Some).map_err(|_| self.at(key, format!("'{v}' is not {what}")))
    }
    fn positive(&self, key: &str) -> Result<Option<f64>, RowError> {
        match self.opt::<f64>(key, "a number")? {
            Some(x) if !(x.is_finite() && x > 0.0) => Err(self.at(key, format!("{x} is not a positive number"))),
            x => Ok(x),
        }
    }
    fn flag(&self, key: &str) -> Result<bool, RowError> {
        match self.row.get(key).to_ascii_lowercase().as_str() {
            "" | "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            other => Err(self.at(key, format!("'{other}' is not true or false"))),
        }
    }
}

/// Reads a file of either kind and validates every row.
pub fn validate_path(catalog: &Catalog, path: &Path) -> Result<Validation, SimError> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::Calibration {
        path: path.display().to_string(),
        message: format!("cannot read: {e}"),
    })?;
    let origin = path.display().to_string();
    if is_under_load(&text) {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Validation::UnderLoad(validate_text(catalog, &text, &origin, &base)?))
    } else {
        let rows = calibration::parse_rows(&text, &origin)?;
        Ok(Validation::Published(calibration::validate(catalog, &rows)))
    }
}

/// Validates an under-load file's text; relative trace and config paths
/// are taken from `base` (the file's directory).
pub fn validate_text(catalog: &Catalog, text: &str, origin: &str, base: &Path) -> Result<LoadReport, SimError> {
    let rows = parse_rows(text, origin)?;
    let headers: Vec<String> = text.lines().next().unwrap_or("").split(',').map(|h| h.trim().to_string()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let cells = Cells { row, headers: &headers };
        match run_row(catalog, &cells, base) {
            Ok(r) => out.push(r),
            Err(RowError::Skip(reason)) => out.push(RowResult {
                id: row.id().to_string(),
                ttft_err_pct: None,
                tpot_err_pct: None,
                e2e_err_pct: None,
                skipped: Some(reason),
                figures: None,
            }),
            Err(RowError::Bad(message)) => return Err(SimError::Calibration { path: origin.to_string(), message }),
        }
    }
    Ok(report(out))
}

/// Builds the report from row results: medians over the rows that have each error.
pub fn report(rows: Vec<RowResult>) -> LoadReport {
    let median = |f: fn(&RowResult) -> Option<f64>| {
        let v: Vec<f64> = rows.iter().filter_map(f).map(f64::abs).collect();
        fleetbench_core::stats::percentile(&v, 50.0)
    };
    let median_abs_err_pct =
        Medians { ttft: median(|r| r.ttft_err_pct), tpot: median(|r| r.tpot_err_pct), e2e: median(|r| r.e2e_err_pct) };
    let covered = rows.iter().filter(|r| r.skipped.is_none()).count();
    LoadReport { total: rows.len(), covered, median_abs_err_pct, rows }
}

fn run_row(catalog: &Catalog, c: &Cells, base: &Path) -> Result<RowResult, RowError> {
    let row = c.row;
    if row.id().is_empty() {
        return Err(c.at("id", "empty"));
    }
    let count = c.opt::<u32>("gpu_count", "a whole number of GPUs")?.unwrap_or(1);
    if count == 0 {
        return Err(c.at("gpu_count", "must be at least 1"));
    }
    let knobs = EngineKnobs {
        max_num_batched_tokens: c.opt("max_num_batched_tokens", "a whole number of tokens")?,
        gpu_memory_utilization: c.positive("gpu_memory_utilization")?,
        block_size: c.opt("block_size", "a whole number of tokens")?,
        prefix_caching: c.flag("prefix_caching")?,
        cpu_offload_gb: c.opt::<f64>("cpu_offload", "a number of GB")?.unwrap_or(0.0),
        pipeline_parallel: c.opt("pipeline_parallel", "a whole number of stages")?,
    };
    if knobs.gpu_memory_utilization.is_some_and(|u| u > 1.0) {
        return Err(c.at("gpu_memory_utilization", "is a share of memory, at most 1"));
    }
    for (key, v) in [
        ("max_num_batched_tokens", knobs.max_num_batched_tokens),
        ("block_size", knobs.block_size),
        ("pipeline_parallel", knobs.pipeline_parallel),
    ] {
        if v == Some(0) {
            return Err(c.at(key, "must be at least 1"));
        }
    }
    if !(knobs.cpu_offload_gb.is_finite() && knobs.cpu_offload_gb >= 0.0) {
        return Err(c.at("cpu_offload", "must be a non-negative number of GB"));
    }
    let model = row.get("model");
    let model = if model.to_ascii_lowercase().ends_with(".json") && Path::new(model).is_relative() {
        base.join(model).display().to_string()
    } else {
        model.to_string()
    };
    let spec = DeploymentSpec {
        gpu: row.get("gpu").to_string(),
        count,
        interconnect: Some(row.get("interconnect")).filter(|s| !s.is_empty()).map(String::from),
        model,
        quant: row.get("quant").to_string(),
        engine: row.get("engine").to_string(),
        max_num_seqs: c.opt("max_num_seqs", "a whole number of sequences")?,
        parallelism: None,
        knobs,
    };
    // An empty weight format is `auto`: 16-bit weights in the catalog.
    let quant_text = if spec.quant.trim().is_empty() { "auto" } else { spec.quant.as_str() };
    let quant = catalog
        .quant_from_text(quant_text)
        .ok_or_else(|| RowError::Skip(format!("weight format '{}' is not recognised", spec.quant)))?;
    let deployment = Deployment::resolve_with_quant(catalog, &spec, quant).map_err(|e| match e {
        // What is left invalid is the split of the GPUs into stages.
        SimError::Invalid(m) => c.at("gpu_count", m),
        other => RowError::Skip(other.to_string()),
    })?;
    let measured = [
        c.positive("measured_ttft_mean_ms")?,
        c.positive("measured_tpot_mean_ms")?,
        c.positive("measured_e2e_mean_ms")?,
    ];
    c.positive("measured_ttft_p99_ms")?;
    c.positive("measured_e2e_p99_ms")?;
    // The tokens the run really generated (answers that stop at the end of
    // sequence are shorter than `max_tokens`): a synthetic or shared-prefix
    // replay asks for that many, and a multi-turn history carries answers of
    // that length. Other workloads keep their own sizes.
    let output_mean = c.positive("measured_output_tokens_mean")?.map(|m| m.round().clamp(1.0, u32::MAX as f64) as u32);
    let seed = c.opt::<u64>("seed", "a whole number")?.unwrap_or(0);
    let workload_text = row.get("workload");
    let mut workload = WorkloadSpec::parse(if workload_text.is_empty() { "synthetic" } else { workload_text })
        .map_err(|e| c.at("workload", e))?;
    if let Some(n) = output_mean {
        match &mut workload {
            WorkloadSpec::Synthetic { output, .. } => *output = n,
            WorkloadSpec::SharedPrefix(spec) => spec.output = n,
            _ => {}
        }
    }
    let arrivals = match row.get("arrivals") {
        "" => None,
        a => Some(match ArrivalSpec::parse(a).map_err(|e| c.at("arrivals", e))? {
            ArrivalSpec::Trace { path, format } if path.is_relative() => {
                ArrivalSpec::Trace { path: base.join(path), format }
            }
            other => other,
        }),
    };
    let concurrency = c.opt::<u32>("concurrency", "a whole number of clients")?;
    // The measured means may be of one stage of the arrivals (a published
    // rate ladder reports each stage on its own).
    let stage = c.opt::<usize>("measured_stage", "a stage number, from 1")?;
    if stage == Some(0) {
        return Err(c.at("measured_stage", "stages are numbered from 1"));
    }
    if stage.is_some() && arrivals.is_none() {
        return Err(c.at("measured_stage", "names a stage of the arrivals, and the row has none"));
    }
    let requests = c.opt::<u64>("requests", "a whole number of requests")?;
    let schedule = match (&arrivals, concurrency) {
        (Some(_), Some(_)) => {
            return Err(c.at("concurrency", "give either arrivals or a closed-loop concurrency, not both"))
        }
        (None, None) => {
            return Err(c.at("arrivals", "empty: give arrivals (constant:8/s*600s, ...) or a concurrency column"))
        }
        (None, Some(0)) => return Err(c.at("concurrency", "must be at least 1")),
        (None, Some(n)) if requests.is_none() => {
            return Err(c.at("requests", format!("a closed loop of {n} clients needs the number of requests it sent")))
        }
        (None, Some(n)) => Schedule::Closed { concurrency: n },
        (Some(_), None) => Schedule::Open { rate: 1.0, arrival: Arrival::Poisson, max_concurrency: None },
    };
    let traffic = Traffic::resolve(&workload, !workload_text.is_empty(), arrivals.as_ref(), seed)
        .map_err(|e| c.at(if arrivals.is_some() { "arrivals" } else { "workload" }, e))?;
    let plan = ReplayPlan {
        schedule,
        arrivals: traffic.arrivals,
        requests,
        duration_s: None,
        warmup: 0,
        sampling: SamplingParams::default(),
        seed,
        prefix_caching: deployment.prefix_caching,
    };
    let r = replay(deployment, &plan, traffic.workload.as_ref());
    if r.overall.requests == 0 {
        return Err(RowError::Skip("the replay completed no request".into()));
    }
    let o = match stage {
        None => &r.overall,
        Some(k) => {
            let s = r.stages.get(k - 1).ok_or_else(|| {
                c.at("measured_stage", format!("is {k}, and the arrivals have {} stages", r.stages.len()))
            })?;
            if s.requests == 0 {
                return Err(RowError::Skip(format!("the replay completed no request in stage {k}")));
            }
            s
        }
    };
    let predicted = [o.ttft_ms.mean, o.tpot_ms.mean, o.e2el_ms.mean];
    let err = |i: usize| match (predicted[i], measured[i]) {
        (Some(p), Some(m)) => Some((p - m) / m * 100.0),
        _ => None,
    };
    Ok(RowResult {
        id: row.id().to_string(),
        ttft_err_pct: err(0),
        tpot_err_pct: err(1),
        e2e_err_pct: err(2),
        skipped: None,
        figures: Some(Figures { measured, predicted, requests: o.requests }),
    })
}

/// A validation of either kind of file.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Validation {
    Published(ValidationReport),
    UnderLoad(LoadReport),
}

impl Validation {
    pub fn to_text(&self) -> String {
        match self {
            Validation::Published(r) => r.to_text(),
            Validation::UnderLoad(r) => r.to_text(),
        }
    }
}

impl LoadReport {
    /// Median absolute errors over the fitted rows (index not 3 mod 4) and
    /// the held-out ones.
    pub fn split_medians(&self) -> (Medians, Medians) {
        let part = |held: bool| {
            report(self.rows.iter().enumerate().filter(|(i, _)| (i % 4 == 3) == held).map(|(_, r)| r.clone()).collect())
                .median_abs_err_pct
        };
        (part(false), part(true))
    }

    /// One line per row (measured and predicted means, errors; or why it was
    /// skipped), then the medians overall, fitted and held out.
    pub fn to_text(&self) -> String {
        use fleetbench_core::table::{Align, Table};
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        let pct = |v: Option<f64>| v.map(|v| format!("{v:+.1}%")).unwrap_or_else(|| "-".into());
        let mut t = Table::new([
            "id",
            "requests",
            "TTFT meas",
            "pred",
            "err",
            "TPOT meas",
            "pred",
            "err",
            "E2E meas",
            "pred",
            "err",
        ])
        .all_right()
        .align(0, Align::Left);
        let mut skipped = Vec::new();
        for r in &self.rows {
            match (&r.skipped, r.figures) {
                (Some(why), _) => skipped.push(format!("  {}: {why}", r.id)),
                (None, Some(f)) => {
                    let errs = [r.ttft_err_pct, r.tpot_err_pct, r.e2e_err_pct];
                    let mut cells = vec![r.id.clone(), f.requests.to_string()];
                    for ((m, p), e) in f.measured.iter().zip(f.predicted).zip(errs) {
                        cells.extend([ms(*m), ms(p), pct(e)]);
                    }
                    t.push(cells);
                }
                (None, None) => {}
            }
        }
        let m = |x: Medians| {
            let p = |v: Option<f64>| v.map(|v| format!("{v:.1} %")).unwrap_or_else(|| "n/a".into());
            format!("TTFT {}, TPOT {}, E2E {}", p(x.ttft), p(x.tpot), p(x.e2e))
        };
        let (fit, held) = self.split_medians();
        let mut out = t.text();
        if !skipped.is_empty() {
            out.push_str("skipped:\n");
            out.push_str(&skipped.join("\n"));
            out.push('\n');
        }
        out.push_str(&format!(
            "{} of {} rows covered; median abs error {}\n  rows fitted on (index not 3 mod 4): {}\n  held out (every fourth): {}\n",
            self.covered,
            self.total,
            m(self.median_abs_err_pct),
            m(fit),
            m(held)
        ));
        out
    }
}
