//! One exporter for every output format: a command's result implements
//! [`Export`] (its JSON document, its CSV rows, its Markdown), and
//! [`render`] turns it into the bytes of `--json-out`, `--csv-out`,
//! `--md-out` or a `--json` on standard output. `run`, `sweep`, `aiops run`,
//! `sim`, `cost` and `runs export` all write through it, so a format is
//! written the same way everywhere.

use std::io::Write;

use fleetbench_core::table::{Align, Table};
use fleetbench_core::{RequestRecord, RunMeta, RunMetrics};
use fleetbench_load::measure::FigureKeys;
use fleetbench_load::sweep::driver::MeasuredLevel;
use fleetbench_load::sweep::records::{LevelSummary, SweepDoc};
use serde::Serialize;
use serde_json::Value;

use crate::local_llm_bench::{self, BenchRun};
use crate::ReportError;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Markdown,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Csv => "CSV",
            Format::Markdown => "Markdown",
        }
    }
}

/// A result that can be written in the output formats.
pub trait Export {
    /// What it is, for error messages (`a sweep`).
    fn what(&self) -> &'static str;
    /// The JSON document.
    fn json(&self) -> Result<Value, ReportError>;
    /// CSV rows; not every result has a tabular form.
    fn csv(&self, _out: &mut dyn Write) -> Result<(), ReportError> {
        Err(ReportError::Unsupported { what: self.what(), format: Format::Csv.as_str() })
    }
    /// A Markdown section fit for a blog post.
    fn markdown(&self) -> Result<String, ReportError> {
        Err(ReportError::Unsupported { what: self.what(), format: Format::Markdown.as_str() })
    }
}

/// The bytes of `doc` in `format` (JSON pretty-printed, with a final newline).
pub fn render(doc: &dyn Export, format: Format) -> Result<Vec<u8>, ReportError> {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&doc.json()?).map_err(ReportError::Json)?;
            s.push('\n');
            Ok(s.into_bytes())
        }
        Format::Csv => {
            let mut buf = Vec::new();
            doc.csv(&mut buf)?;
            Ok(buf)
        }
        Format::Markdown => Ok(doc.markdown()?.into_bytes()),
    }
}

/// Any serialisable document, JSON only (a prediction, a leaderboard, a
/// comparison).
pub struct JsonDoc<'a, T: Serialize>(pub &'static str, pub &'a T);

impl<T: Serialize> Export for JsonDoc<'_, T> {
    fn what(&self) -> &'static str {
        self.0
    }
    fn json(&self) -> Result<Value, ReportError> {
        serde_json::to_value(self.1).map_err(ReportError::Json)
    }
}

/// One measured run: `run --json-out`, `runs export`, `runs show --json`.
pub struct RunExport<'a> {
    pub meta: &'a RunMeta,
    pub metrics: &'a RunMetrics,
    pub records: &'a [RequestRecord],
    pub figures: &'a FigureKeys,
    /// `run --repeat N`: the spread between the runs.
    pub repeats: Option<&'a fleetbench_core::repeats::RepeatFigures>,
}

impl Export for RunExport<'_> {
    fn what(&self) -> &'static str {
        "a run"
    }
    fn json(&self) -> Result<Value, ReportError> {
        let mut v = crate::run_json(self.meta, self.metrics);
        if let (Some(o), Value::Object(f)) =
            (v.as_object_mut(), serde_json::to_value(self.figures).map_err(ReportError::Json)?)
        {
            o.extend(f);
        }
        if let (Some(o), Some(r)) = (v.as_object_mut(), self.repeats) {
            o.insert("repeats".into(), serde_json::to_value(r).map_err(ReportError::Json)?);
        }
        Ok(v)
    }
    fn csv(&self, out: &mut dyn Write) -> Result<(), ReportError> {
        crate::write_requests_csv(out, self.records)
    }
    fn markdown(&self) -> Result<String, ReportError> {
        Ok(crate::markdown_summary(self.meta, self.metrics))
    }
}

/// A sweep: `sweep --json-out/--csv-out/--md-out`.
pub struct SweepExport<'a> {
    pub doc: &'a SweepDoc,
    /// Every level and repeat, for the CSV.
    pub measured: &'a [MeasuredLevel],
    /// CSV in the Local LLM Bench columns instead of one row per request.
    pub local_llm_bench: bool,
}

impl Export for SweepExport<'_> {
    fn what(&self) -> &'static str {
        "a sweep"
    }
    fn json(&self) -> Result<Value, ReportError> {
        serde_json::to_value(self.doc).map_err(ReportError::Json)
    }
    fn csv(&self, out: &mut dyn Write) -> Result<(), ReportError> {
        if self.local_llm_bench {
            let mut ordered: Vec<&MeasuredLevel> = self.measured.iter().collect();
            ordered.sort_by(|a, b| a.level.total_cmp(&b.level).then(a.repeat.cmp(&b.repeat)));
            let rows: Vec<_> = ordered
                .into_iter()
                .flat_map(|m| {
                    local_llm_bench::rows(&BenchRun {
                        concurrency: m.level as u32,
                        run: m.repeat + 1,
                        run_wall_seconds: m.metrics.duration,
                        records: &m.records,
                    })
                })
                .collect();
            local_llm_bench::write(out, &rows)
        } else {
            let all: Vec<RequestRecord> = self.measured.iter().flat_map(|m| m.records.iter().cloned()).collect();
            crate::write_requests_csv(out, &all)
        }
    }
    fn markdown(&self) -> Result<String, ReportError> {
        let reason = self.doc.knee.as_ref().map(|k| k.reason.as_str()).unwrap_or("no level completed a request");
        Ok(format!("{}\n{reason}\n", sweep_table(self.doc).markdown()))
    }
}

/// The batch-job plan: `cost plan --json/--md`.
impl Export for fleetbench_econ::Plan {
    fn what(&self) -> &'static str {
        "a batch-job plan"
    }
    fn json(&self) -> Result<Value, ReportError> {
        Ok(self.to_json())
    }
    fn markdown(&self) -> Result<String, ReportError> {
        Ok(self.to_markdown())
    }
}

/// One row per level: throughput and per-request speed with their
/// intervals, contention, latency percentiles, goodput, errors, and the
/// server's own figures. The terminal prints its text form, `--md-out` its
/// Markdown.
pub fn sweep_table(doc: &SweepDoc) -> Table {
    let key = if doc.levels.first().is_some_and(|l| l.rate.is_some()) { "rate" } else { "concurrency" };
    let mut t = Table::new([
        key,
        "out tok/s [95% CI]",
        "per-req tok/s [95% CI]",
        "per-task tok/s",
        "contention",
        "TTFT p50/p99 ms",
        "TPOT p50/p99 ms",
        "goodput req/s",
        "errors",
        "max in flight",
        "server run/wait",
        "KV max",
    ])
    .all_right()
    .align(0, Align::Right);
    for l in &doc.levels {
        t.push(level_row(l));
    }
    t
}

fn level_row(l: &LevelSummary) -> Vec<String> {
    let m = &l.metrics;
    let with_ci = |x: f64, key: &str| match m.ci(key) {
        Some(c) => format!("{x:.1} [{:.1}, {:.1}]", c.lo, c.hi),
        None => format!("{x:.1}"),
    };
    let pair = |a: &str, b: &str| match (m.ms(a), m.ms(b)) {
        (Some(x), Some(y)) => format!("{x:.0}/{y:.0}"),
        _ => "-".into(),
    };
    let dash = || "-".to_string();
    let server = l.server.as_ref();
    vec![
        fleetbench_load::sweep::fmt_level(l.level()),
        with_ci(m.output_throughput, "output_throughput"),
        m.mean_tok_s.map(|x| with_ci(x, "mean_tok_s")).unwrap_or_else(dash),
        m.mean_task_tok_s.map(|x| format!("{x:.1}")).unwrap_or_else(dash),
        l.contention.map(|c| format!("{:.0} %", c * 100.0)).unwrap_or_else(dash),
        pair("median_ttft_ms", "p99_ttft_ms"),
        pair("median_tpot_ms", "p99_tpot_ms"),
        m.request_goodput.map(|x| format!("{x:.2}")).unwrap_or_else(dash),
        m.failed.to_string(),
        m.max_concurrent_requests.to_string(),
        match (server.and_then(|s| s.max_running), server.and_then(|s| s.max_waiting)) {
            (Some(r), Some(w)) => format!("{r:.0}/{w:.0}"),
            (Some(r), None) => format!("{r:.0}/-"),
            _ => dash(),
        },
        server.and_then(|s| s.max_kv_cache_usage).map(|k| format!("{:.0} %", k * 100.0)).unwrap_or_else(dash),
    ]
}
