//! Measured rows (the `published_calibration.csv` format), their placement
//! in the catalog, and validation of the model against them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::perf::{predict_level, Deployment, DeploymentSpec, Parallelism, StepLoad, Workload};
use crate::SimError;

/// The calibration set shipped with the repository (also embedded).
pub const EMBEDDED_CALIBRATION: &str = include_str!("../../../data/calibration/calibration.csv");

/// Columns a calibration file must have.
pub const REQUIRED_COLUMNS: [&str; 10] = [
    "gpu",
    "gpu_count",
    "interconnect",
    "model",
    "quant",
    "engine",
    "batch_or_concurrency",
    "input_len",
    "output_len",
    "metric",
];

/// One measured row, every column kept as text.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredRow {
    /// Position among the data rows, from 0.
    pub index: usize,
    pub columns: Vec<(String, String)>,
}

impl MeasuredRow {
    pub fn get(&self, key: &str) -> &str {
        self.columns.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
    }
    /// The measured value, when the `value` column parses.
    pub fn value(&self) -> Option<f64> {
        self.get("value").trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)
    }
}

/// A column's name as a header writes it: trimmed, and matched whatever its
/// case (a spreadsheet may write `ID` or `Measured_TTFT_Mean_ms`).
pub(crate) fn header_name(h: &str) -> String {
    h.trim().to_ascii_lowercase()
}

/// Reads rows in the `published_calibration.csv` format from text.
pub fn parse_rows(text: &str, origin: &str) -> Result<Vec<MeasuredRow>, SimError> {
    let err = |message: String| SimError::Calibration { path: origin.to_string(), message };
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers: Vec<String> =
        rdr.headers().map_err(|e| err(format!("cannot read the header line: {e}")))?.iter().map(header_name).collect();
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !headers.iter().any(|h| h == c))
        .chain(if headers.iter().any(|h| h == "value") { None } else { Some("value") })
        .collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "missing column(s) {}; the file must use the columns of published_calibration.csv",
            missing.join(", ")
        )));
    }
    let mut rows = Vec::new();
    for (index, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(format!("data row {}: {e}", index + 1)))?;
        let columns =
            headers.iter().enumerate().map(|(i, h)| (h.clone(), rec.get(i).unwrap_or("").to_string())).collect();
        rows.push(MeasuredRow { index, columns });
    }
    Ok(rows)
}

/// Reads a calibration file from disk.
pub fn read_rows(path: &Path) -> Result<Vec<MeasuredRow>, SimError> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::Calibration {
        path: path.display().to_string(),
        message: format!("cannot read: {e}"),
    })?;
    parse_rows(&text, &path.display().to_string())
}

/// What a row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    DecodeSingleStream,
    Prefill,
    AggregateOutput,
    AggregateOutputPerGpu,
    TtftMs,
    PerTaskTokS,
}

/// A row the model can predict.
#[derive(Debug, Clone)]
pub struct PlacedRow {
    pub deployment: Deployment,
    pub metric: MetricKind,
    pub input: u32,
    pub output: u32,
    /// Sequences in flight; None means "as many as the engine takes".
    pub batch: Option<u32>,
    /// The whole batch starts together and runs to the end (no refill).
    pub static_batch: bool,
}

fn first_int(text: &str) -> Option<u32> {
    let digits: String = text.chars().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Places a row in the catalog, or says why it cannot.
pub fn place(catalog: &Catalog, row: &MeasuredRow) -> Result<PlacedRow, String> {
    let metric = match row.get("metric").trim() {
        "decode_tok_s_single_stream" => MetricKind::DecodeSingleStream,
        "prefill_tok_s" => MetricKind::Prefill,
        "aggregate_output_tok_s" => MetricKind::AggregateOutput,
        "aggregate_output_tok_s_per_gpu" => MetricKind::AggregateOutputPerGpu,
        "ttft_ms" => MetricKind::TtftMs,
        "per_task_tok_s" => MetricKind::PerTaskTokS,
        other => return Err(format!("metric '{other}' is not one the model predicts (per-node figures of multi-node deployments are out of scope)")),
    };
    if row.value().is_none() {
        return Err("the value column is empty or not a positive number".into());
    }
    let notes = row.get("notes").to_ascii_lowercase();
    if notes.contains("speculative decoding") && notes.contains("enabled") {
        return Err("speculative decoding (several tokens per step) is outside the model".into());
    }
    let count = first_int(row.get("gpu_count")).unwrap_or(1).max(1);
    if count > 8 {
        return Err(format!("{count} GPUs across nodes: the model covers one server (up to 8 GPUs)"));
    }
    let gpu = catalog.gpu(row.get("gpu")).ok_or_else(|| format!("GPU '{}' is not in the catalog", row.get("gpu")))?;
    // The model column names a catalog model or a Hugging Face config.json.
    let model_name = row.get("model").trim();
    let model_spec = if model_name.to_ascii_lowercase().ends_with(".json") {
        catalog.resolve_model(model_name, None).map_err(|e| e.to_string())?;
        model_name.to_string()
    } else {
        catalog.model(model_name).ok_or_else(|| format!("model '{model_name}' is not in the catalog"))?.id.clone()
    };
    let mut quant = catalog
        .quant_from_text(row.get("quant"))
        .ok_or_else(|| format!("quantization '{}' is not recognised", row.get("quant")))?;
    if row.get("quant").to_ascii_lowercase().contains("fp16 kv") {
        quant.kv_bits = 16.0;
    }
    let engine = catalog
        .engine(row.get("engine"))
        .ok_or_else(|| format!("engine '{}' is not in the catalog", row.get("engine")))?;
    let link_text = row.get("interconnect").to_ascii_lowercase();
    let parallelism = if link_text.contains("pipeline") || link_text.contains("layer split") {
        Some(Parallelism::Pipeline)
    } else if count > 1 && engine.parallel != "pipeline" {
        Some(Parallelism::Tensor)
    } else {
        None
    };
    let interconnect =
        catalog.interconnect(row.get("interconnect")).filter(|l| l.bandwidth_gbs > 0.0).map(|l| l.id.clone());
    let batch_text = row.get("batch_or_concurrency");
    let batch = if batch_text.to_ascii_lowercase().contains("not stated") {
        return Err("batch or concurrency not stated".into());
    } else {
        first_int(batch_text)
    };
    let input = first_int(row.get("input_len")).unwrap_or(0);
    let output = first_int(row.get("output_len")).unwrap_or(128);
    let spec = DeploymentSpec {
        gpu: gpu.id.clone(),
        count,
        interconnect,
        model: model_spec,
        quant: quant.id.clone(),
        engine: engine.id.clone(),
        max_num_seqs: None,
        parallelism,
        knobs: Default::default(),
    };
    let mut deployment = Deployment::resolve_with_quant(catalog, &spec, quant).map_err(|e| e.to_string())?;
    if let Some(b) = batch {
        // Offline benchmarks set their own batch; let the engine take it.
        deployment.max_num_seqs = deployment.max_num_seqs.max(b);
    }
    let static_batch = row.get("engine").to_ascii_lowercase().contains("static batching");
    Ok(PlacedRow { deployment, metric, input, output, batch, static_batch })
}

/// The model's figure for a placed row, in the row's unit.
pub fn predict_row(p: &PlacedRow) -> f64 {
    let d = &p.deployment;
    match p.metric {
        MetricKind::DecodeSingleStream => {
            let ctx = p.input as f64 + p.output as f64 / 2.0;
            1.0 / d.decode_step(1, ctx).time_s
        }
        MetricKind::Prefill => p.input.max(1) as f64 / d.prefill_time_s(p.input.max(1), 0, 0.0),
        MetricKind::TtftMs => d.prefill_time_s(p.input.max(1), 0, 0.0) * 1000.0,
        MetricKind::AggregateOutput | MetricKind::AggregateOutputPerGpu => {
            let c = p.batch.unwrap_or(d.max_num_seqs);
            // Offline runs are limited by what fits, not by queueing.
            let total = if p.static_batch {
                static_batch_tok_s(d, c, p.input, p.output)
            } else {
                predict_level(d, Workload { input_tokens: p.input, output_tokens: p.output }, c).aggregate_tok_s
            };
            if p.metric == MetricKind::AggregateOutputPerGpu {
                total / d.count as f64
            } else {
                total
            }
        }
        MetricKind::PerTaskTokS => {
            let c = p.batch.unwrap_or(1);
            predict_level(d, Workload { input_tokens: p.input, output_tokens: p.output }, c).per_request_tok_s
        }
    }
}

/// Output tokens per second of a static batch: every sequence is prefilled
/// first, then the batch decodes together until the last token.
pub fn static_batch_tok_s(d: &Deployment, batch: u32, input: u32, output: u32) -> f64 {
    let b = batch.clamp(1, d.kv_seqs((input + output) as f64).max(1));
    // The context phase runs all b prompts together, in chunks of
    // max_batched_tokens; each token attends within its own prompt only
    // (on average to half of it).
    let total = input.max(1).saturating_mul(b);
    let chunk = d.max_batched_tokens.max(1);
    let mut prefill = 0.0;
    let mut done = 0u32;
    while done < total {
        let n = chunk.min(total - done);
        prefill += d
            .step(&StepLoad {
                decode_seqs: 0,
                decode_context_tokens: 0.0,
                prefill_tokens: n,
                prefill_attention_tokens: n as f64 * input.max(1) as f64 / 2.0,
            })
            .time_s;
        done += n;
    }
    let decode: f64 = (0..output.max(1)).map(|j| d.decode_step(b, (input + j) as f64).time_s).sum();
    b as f64 * output.max(1) as f64 / (prefill + decode)
}

/// One row of a validation.
#[derive(Debug, Clone)]
pub struct ValidatedRow {
    pub row: MeasuredRow,
    pub predicted: Option<f64>,
    pub error_pct: Option<f64>,
    pub reason: Option<String>,
}

impl Serialize for ValidatedRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
        for (k, v) in &self.row.columns {
            map.insert(k.as_str(), serde_json::Value::String(v.clone()));
        }
        map.insert("predicted", self.predicted.map(serde_json::Value::from).unwrap_or(serde_json::Value::Null));
        map.insert("error_pct", self.error_pct.map(serde_json::Value::from).unwrap_or(serde_json::Value::Null));
        if let Some(r) = &self.reason {
            map.insert("reason", serde_json::Value::String(r.clone()));
        }
        map.serialize(s)
    }
}

/// The `sim validate --json` contract.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    pub rows: Vec<ValidatedRow>,
    pub median_abs_error_pct: Option<f64>,
    pub worst_abs_error_pct: Option<f64>,
    pub skipped: usize,
}

impl ValidationReport {
    /// One line per row (measured, predicted, error, what it is; or why it
    /// was skipped) and the medians, for the terminal.
    pub fn to_text(&self) -> String {
        use fleetbench_core::table::{Align, Table};
        let mut t = Table::new(["#", "measured", "predicted", "error", "row"])
            .align(0, Align::Right)
            .align(1, Align::Right)
            .align(2, Align::Right)
            .align(3, Align::Right);
        for r in &self.rows {
            let mut what = format!(
                "{} | {} x{} | {} | {} | {}",
                r.row.get("metric"),
                r.row.get("gpu"),
                r.row.get("gpu_count"),
                r.row.get("model"),
                r.row.get("quant"),
                r.row.get("engine")
            );
            let (predicted, error) = match (r.predicted, r.error_pct) {
                (Some(p), Some(e)) => (format!("{p:.1}"), format!("{e:+.1}%")),
                _ => {
                    what.push_str(&format!(" (skipped: {})", r.reason.as_deref().unwrap_or("")));
                    ("-".into(), "-".into())
                }
            };
            t.push([(r.row.index + 1).to_string(), r.row.get("value").to_string(), predicted, error, what]);
        }
        let pct = |v: Option<f64>| v.map(|v| format!("{v:.1} %")).unwrap_or_else(|| "n/a".into());
        format!(
            "{}median abs error {}, worst {}, {} of {} rows skipped\n",
            t.text(),
            pct(self.median_abs_error_pct),
            pct(self.worst_abs_error_pct),
            self.skipped,
            self.rows.len()
        )
    }

    /// Median and worst absolute error over a subset of rows.
    pub fn errors_where(&self, keep: impl Fn(&MeasuredRow) -> bool) -> (Option<f64>, Option<f64>) {
        let errs: Vec<f64> =
            self.rows.iter().filter(|r| keep(&r.row)).filter_map(|r| r.error_pct.map(f64::abs)).collect();
        summarize(&errs)
    }
}

fn summarize(abs_errors: &[f64]) -> (Option<f64>, Option<f64>) {
    let median = fleetbench_core::stats::percentile(abs_errors, 50.0);
    let worst = abs_errors.iter().copied().fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))));
    (median, worst)
}

/// Compares the model with every row.
pub fn validate(catalog: &Catalog, rows: &[MeasuredRow]) -> ValidationReport {
    let mut out = Vec::with_capacity(rows.len());
    let mut skipped = 0;
    for row in rows {
        match place(catalog, row) {
            Ok(p) => {
                let predicted = predict_row(&p);
                let measured = row.value().unwrap_or(f64::NAN);
                let error_pct = (predicted - measured) / measured * 100.0;
                out.push(ValidatedRow {
                    row: row.clone(),
                    predicted: Some(predicted),
                    error_pct: error_pct.is_finite().then_some(error_pct),
                    reason: None,
                });
            }
            Err(reason) => {
                skipped += 1;
                out.push(ValidatedRow { row: row.clone(), predicted: None, error_pct: None, reason: Some(reason) });
            }
        }
    }
    let errs: Vec<f64> = out.iter().filter_map(|r| r.error_pct.map(f64::abs)).collect();
    let (median_abs_error_pct, worst_abs_error_pct) = summarize(&errs);
    ValidationReport { rows: out, median_abs_error_pct, worst_abs_error_pct, skipped }
}

/// Rows held out of the fit: every fourth data row (index 3, 7, 11, ...).
pub fn is_held_out(row: &MeasuredRow) -> bool {
    row.index % 4 == 3
}
