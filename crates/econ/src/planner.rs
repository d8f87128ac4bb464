//! The batch-job planner: what a job of N documents costs on each backend
//! of a price sheet, how long it takes, and how the options rank.

use fleetbench_core::table::{Align, Table};
use std::collections::BTreeMap;

use serde::Serialize;

use crate::price::{multipliers_vs_cheapest, PriceEntry, PriceError, PriceModel, Throughput};

/// A batch job: documents and their mean token counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BatchJob {
    pub docs: u64,
    pub input_tokens_per_doc: f64,
    /// Of the input tokens, how many per document an API serves from cache.
    pub cached_input_tokens_per_doc: f64,
    pub output_tokens_per_doc: f64,
    /// Price API backends through their batch API (their `batch_discount`).
    pub batch_api: bool,
}

impl BatchJob {
    fn validate(&self) -> Result<(), PriceError> {
        let bad = |message: String| PriceError::Cost { backend: "(job)".into(), message };
        if self.docs == 0 {
            return Err(bad("--docs must be at least 1".into()));
        }
        for (name, v) in [
            ("--input-tokens", self.input_tokens_per_doc),
            ("--cached-input-tokens", self.cached_input_tokens_per_doc),
            ("--output-tokens", self.output_tokens_per_doc),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(format!("{name} must be a finite number of at least 0, not {v}")));
            }
        }
        if self.cached_input_tokens_per_doc > self.input_tokens_per_doc {
            return Err(bad(
                "--cached-input-tokens cannot exceed --input-tokens (cached tokens are part of the input)".into(),
            ));
        }
        if self.output_tokens_per_doc == 0.0 && self.input_tokens_per_doc == 0.0 {
            return Err(bad("a job needs some tokens: give --input-tokens or --output-tokens above 0".into()));
        }
        Ok(())
    }

    pub fn total_input_tokens(&self) -> f64 {
        self.docs as f64 * self.input_tokens_per_doc
    }

    pub fn total_output_tokens(&self) -> f64 {
        self.docs as f64 * self.output_tokens_per_doc
    }
}

/// What limits a backend's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WallBound {
    /// A self-hosted machine's throughput.
    Throughput,
    /// The API's requests-per-minute limit.
    RequestsPerMinute,
    /// The API's tokens-per-minute limit.
    TokensPerMinute,
    /// An API with no rate limit in the sheet: the wall clock is unknown.
    Unbounded,
}

impl WallBound {
    pub fn describe(self) -> &'static str {
        match self {
            WallBound::Throughput => "throughput",
            WallBound::RequestsPerMinute => "requests/min limit",
            WallBound::TokensPerMinute => "tokens/min limit",
            WallBound::Unbounded => "no rate limit given",
        }
    }
}

/// Where a self-hosted throughput came from, for the inputs column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThroughputInput {
    pub throughput: Throughput,
    /// `sheet`, `run 42`, `simulated: ...`.
    pub source: String,
}

/// One ranked row of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanRow {
    pub name: String,
    pub kind: &'static str,
    pub total_usd: f64,
    /// `None` when an API has no rate limit in the sheet.
    pub wall_hours: Option<f64>,
    pub multiplier: f64,
    pub bound: WallBound,
    /// The price inputs in words (`$6.36/GPU-h x 1 GPU at 1515 output tok/s (sheet)`).
    pub price_inputs: String,
}

/// A backend the planner could not price, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedBackend {
    pub name: String,
    pub why: String,
}

/// The planner's answer, cheapest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub job: BatchJob,
    pub sheet: String,
    pub rows: Vec<PlanRow>,
    pub skipped: Vec<SkippedBackend>,
}

/// Prices `job` on every entry. `throughputs` gives measured or simulated
/// throughputs by backend name; they win over a sheet's. Self-hosted entries
/// with no throughput are skipped with a reason; the plan fails only when no
/// entry can be priced.
pub fn plan_batch_job(
    job: &BatchJob,
    entries: &[PriceEntry],
    sheet_origin: &str,
    throughputs: &BTreeMap<String, ThroughputInput>,
) -> Result<Plan, PriceError> {
    job.validate()?;
    let docs = job.docs as f64;
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        match &entry.model {
            PriceModel::Api(a) => {
                let per_doc = entry
                    .api_usd_for_tokens(
                        job.input_tokens_per_doc,
                        job.cached_input_tokens_per_doc,
                        job.output_tokens_per_doc,
                        job.batch_api,
                    )
                    .unwrap_or(0.0);
                let rpm_minutes = a.requests_per_minute.map(|rpm| docs / rpm);
                let tpm_minutes =
                    a.tokens_per_minute.map(|tpm| docs * (job.input_tokens_per_doc + job.output_tokens_per_doc) / tpm);
                let (wall_hours, bound) = match (rpm_minutes, tpm_minutes) {
                    (None, None) => (None, WallBound::Unbounded),
                    (Some(r), None) => (Some(r / 60.0), WallBound::RequestsPerMinute),
                    (None, Some(t)) => (Some(t / 60.0), WallBound::TokensPerMinute),
                    (Some(r), Some(t)) if r >= t => (Some(r / 60.0), WallBound::RequestsPerMinute),
                    (Some(_), Some(t)) => (Some(t / 60.0), WallBound::TokensPerMinute),
                };
                let mut inputs = format!("${}/M in, ${}/M out", a.usd_per_m_input, a.usd_per_m_output);
                if job.cached_input_tokens_per_doc > 0.0 {
                    let cached = a.usd_per_m_cached_input.unwrap_or(a.usd_per_m_input);
                    inputs.push_str(&format!(", ${cached}/M cached in"));
                }
                if job.batch_api && a.batch_discount > 0.0 {
                    inputs.push_str(&format!(", batch -{:.0}%", a.batch_discount * 100.0));
                }
                if let Some(r) = a.requests_per_minute {
                    inputs.push_str(&format!(", {} req/min", group_thousands(r)));
                }
                if let Some(t) = a.tokens_per_minute {
                    inputs.push_str(&format!(", {} tok/min", group_thousands(t)));
                }
                rows.push(PlanRow {
                    name: entry.name.clone(),
                    kind: "api",
                    total_usd: per_doc * docs,
                    wall_hours,
                    multiplier: f64::NAN,
                    bound,
                    price_inputs: inputs,
                });
            }
            PriceModel::Rented(_) | PriceModel::Owned(_) => {
                let tp = throughputs.get(&entry.name).cloned().or_else(|| {
                    entry.sheet_throughput().map(|throughput| ThroughputInput { throughput, source: "sheet".into() })
                });
                let Some(tp) = tp else {
                    skipped.push(SkippedBackend {
                        name: entry.name.clone(),
                        why: "no throughput: add docs_per_hour or output_tokens_per_s to the sheet, or measure one with a run".into(),
                    });
                    continue;
                };
                let hours = tp.throughput.hours_for(docs, job.output_tokens_per_doc);
                if !hours.is_finite() {
                    skipped.push(SkippedBackend {
                        name: entry.name.clone(),
                        why: "the job has 0 output tokens per document, so a tokens-per-second throughput gives no wall time; give docs_per_hour instead".into(),
                    });
                    continue;
                }
                let per_hour = entry.usd_per_hour(None).unwrap_or(0.0);
                let inputs = match &entry.model {
                    PriceModel::Rented(r) => format!(
                        "${}/GPU-h x {} GPU at {} ({})",
                        r.usd_per_gpu_hour,
                        r.gpus,
                        tp.throughput.describe(),
                        tp.source
                    ),
                    PriceModel::Owned(o) => format!(
                        "${} over {} y at {:.0}% use + {} W x PUE {} x ${}/kWh = ${:.2}/h at {} ({})",
                        group_thousands(o.purchase_usd),
                        o.years,
                        o.utilisation * 100.0,
                        o.power_w,
                        o.pue,
                        o.usd_per_kwh,
                        per_hour,
                        tp.throughput.describe(),
                        tp.source
                    ),
                    PriceModel::Api(_) => String::new(),
                };
                rows.push(PlanRow {
                    name: entry.name.clone(),
                    kind: entry.kind().as_str(),
                    total_usd: per_hour * hours,
                    wall_hours: Some(hours),
                    multiplier: f64::NAN,
                    bound: WallBound::Throughput,
                    price_inputs: inputs,
                });
            }
        }
    }
    if rows.is_empty() {
        let why: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.name, s.why)).collect();
        return Err(PriceError::Cost {
            backend: "(all)".into(),
            message: format!("no backend could be priced; {}", why.join("; ")),
        });
    }
    let totals: Vec<f64> = rows.iter().map(|r| r.total_usd).collect();
    for (row, m) in rows.iter_mut().zip(multipliers_vs_cheapest(&totals)) {
        row.multiplier = m;
    }
    rows.sort_by(|a, b| a.total_usd.total_cmp(&b.total_usd).then_with(|| a.name.cmp(&b.name)));
    Ok(Plan { job: *job, sheet: sheet_origin.to_string(), rows, skipped })
}

impl Plan {
    /// The `cost plan --json` contract:
    /// `{"backends": [{"name","total_usd","wall_hours","multiplier", ...}], "inputs": {...}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let backends: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "kind": r.kind,
                    "total_usd": r.total_usd,
                    "wall_hours": r.wall_hours,
                    "multiplier": finite_or_null(r.multiplier),
                    "wall_bound": r.bound,
                    "price_inputs": r.price_inputs,
                })
            })
            .collect();
        serde_json::json!({
            "backends": backends,
            "inputs": {
                "docs": self.job.docs,
                "input_tokens_per_doc": self.job.input_tokens_per_doc,
                "cached_input_tokens_per_doc": self.job.cached_input_tokens_per_doc,
                "output_tokens_per_doc": self.job.output_tokens_per_doc,
                "total_input_tokens": self.job.total_input_tokens(),
                "total_output_tokens": self.job.total_output_tokens(),
                "batch_api": self.job.batch_api,
                "price_sheet": self.sheet,
            },
            "skipped": self.skipped,
        })
    }

    fn table_rows(&self) -> Vec<[String; 7]> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                [
                    (i + 1).to_string(),
                    r.name.clone(),
                    format_usd(r.total_usd),
                    r.wall_hours.map(format_wall_hours).unwrap_or_else(|| "unknown".into()),
                    format_multiplier(r.multiplier),
                    r.bound.describe().to_string(),
                    r.price_inputs.clone(),
                ]
            })
            .collect()
    }

    fn inputs_lines(&self) -> Vec<String> {
        let j = &self.job;
        let mut v = vec![
            format!("documents: {}", group_thousands(j.docs as f64)),
            format!(
                "tokens per document: {} input ({} of them cached), {} output",
                j.input_tokens_per_doc, j.cached_input_tokens_per_doc, j.output_tokens_per_doc
            ),
            format!(
                "tokens in the job: {} input, {} output",
                group_thousands(j.total_input_tokens()),
                group_thousands(j.total_output_tokens())
            ),
            format!("API pricing: {}", if j.batch_api { "batch API" } else { "standard (no batch discount)" }),
            format!("price sheet: {}", self.sheet),
            "wall clock: self-hosted = job tokens / throughput; API = the slower of requests/min and (input+output) tokens/min limits".into(),
        ];
        for s in &self.skipped {
            v.push(format!("skipped {}: {}", s.name, s.why));
        }
        v
    }

    /// A plain-text table for the terminal, inputs first.
    pub fn to_text(&self) -> String {
        let header = ["#", "backend", "total", "wall clock", "x cheapest", "bound by", "price inputs"];
        // Numbers right-aligned, words left-aligned.
        let mut t = Table::new(header);
        for i in [0, 2, 3, 4] {
            t = t.align(i, Align::Right);
        }
        for r in self.table_rows() {
            t.push(r);
        }
        let mut out = String::from("Inputs\n");
        for l in self.inputs_lines() {
            out.push_str(&format!("  {l}\n"));
        }
        out.push('\n');
        out.push_str(&t.text());
        out
    }

    /// A Markdown section for reports: inputs beside the ranked table.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from("### Batch job plan\n\n**Inputs**\n\n");
        for l in self.inputs_lines() {
            out.push_str(&format!("- {l}\n"));
        }
        out.push_str("\n| # | backend | total | wall clock | x cheapest | bound by | price inputs |\n");
        out.push_str("|---:|---|---:|---:|---:|---|---|\n");
        for r in self.table_rows() {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    }
}

fn finite_or_null(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        serde_json::Value::Null
    }
}

/// `$0.42`, `$9.15`, `$70`, `$20,419`.
pub fn format_usd(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() < 10.0 {
        format!("${v:.2}")
    } else {
        format!("${}", group_thousands(v))
    }
}

/// `45 min`, `11.0 h`, `144 days`.
pub fn format_wall_hours(h: f64) -> String {
    if !h.is_finite() {
        "-".into()
    } else if h < 1.0 {
        format!("{:.0} min", h * 60.0)
    } else if h < 72.0 {
        format!("{h:.1} h")
    } else {
        format!("{:.0} days", h / 24.0)
    }
}

/// `1.0x`, `21.4x`, `292x`.
pub fn format_multiplier(m: f64) -> String {
    if !m.is_finite() {
        "-".into()
    } else if m < 100.0 {
        format!("{m:.1}x")
    } else {
        format!("{m:.0}x")
    }
}

/// Rounds to a whole number and groups thousands: `20,419`.
pub fn group_thousands(v: f64) -> String {
    let rounded = v.round();
    let negative = rounded < 0.0;
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if negative {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::{PriceSheet, CONTEXTUAL_RETRIEVAL_EXAMPLE_TOML};

    fn job() -> BatchJob {
        BatchJob {
            docs: 1_000_000,
            input_tokens_per_doc: 3500.0,
            cached_input_tokens_per_doc: 0.0,
            output_tokens_per_doc: 60.0,
            batch_api: false,
        }
    }

    #[test]
    fn reproduces_the_published_comparison() {
        let sheet = PriceSheet::from_toml_str(CONTEXTUAL_RETRIEVAL_EXAMPLE_TOML, "example").unwrap();
        let plan = plan_batch_job(&job(), &sheet.backends, &sheet.origin, &BTreeMap::new()).unwrap();
        let first = &plan.rows[0];
        assert_eq!(first.name, "rented-b200");
        assert_eq!(format_usd(first.total_usd), "$70");
        assert_eq!(first.wall_hours.unwrap().round(), 11.0);
        assert_eq!(format_multiplier(first.multiplier), "1.0x");
        // The cheapest API is 2x; the dearest is $20,419, 292x, 144 days.
        let second = &plan.rows[1];
        assert_eq!(second.kind, "api");
        assert_eq!(format_multiplier(second.multiplier), "2.0x");
        let last = plan.rows.last().unwrap();
        assert_eq!(format_usd(last.total_usd), "$20,419");
        assert!((last.total_usd - 20419.0).abs() < 1e-6, "{}", last.total_usd);
        assert_eq!(format_multiplier(last.multiplier), "292x");
        assert_eq!(format_wall_hours(last.wall_hours.unwrap()), "144 days");
        assert_eq!(last.bound, WallBound::TokensPerMinute);
        // Every API lies between 2x and 292x, ranked by cost.
        for w in plan.rows.windows(2) {
            assert!(w[0].total_usd <= w[1].total_usd);
        }
        assert!(plan.rows[1..].iter().all(|r| r.multiplier >= 2.0 && r.multiplier < 292.5));
        assert_eq!(plan.rows.len(), 7);
        // The inputs are shown beside the outputs.
        let text = plan.to_text();
        assert!(text.contains("documents: 1,000,000"), "{text}");
        assert!(text.contains("3,500,000,000 input"), "{text}");
        assert!(text.contains("$6.36/GPU-h x 1 GPU at 1515 output tok/s (sheet)"), "{text}");
        let md = plan.to_markdown();
        assert!(md.contains("| 1 | rented-b200 | $70 | 11.0 h | 1.0x |"), "{md}");
        let json = plan.to_json();
        assert_eq!(json["backends"][0]["name"], "rented-b200");
        assert_eq!(json["inputs"]["docs"], 1_000_000);
        for key in ["name", "total_usd", "wall_hours", "multiplier"] {
            assert!(json["backends"][6].get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn api_wall_clock_is_bound_by_the_slower_rate_limit() {
        let text = r#"
            [[backend]]
            name = "rpm-bound"
            kind = "api"
            usd_per_m_input = 1
            usd_per_m_output = 2
            requests_per_minute = 100
            tokens_per_minute = 10000000
            [[backend]]
            name = "tpm-bound"
            kind = "api"
            usd_per_m_input = 1
            usd_per_m_output = 2
            requests_per_minute = 100000
            tokens_per_minute = 100000
            [[backend]]
            name = "no-limits"
            kind = "api"
            usd_per_m_input = 1
            usd_per_m_output = 2
        "#;
        let sheet = PriceSheet::from_toml_str(text, "t").unwrap();
        let j = BatchJob {
            docs: 60_000,
            input_tokens_per_doc: 900.0,
            cached_input_tokens_per_doc: 0.0,
            output_tokens_per_doc: 100.0,
            batch_api: false,
        };
        let plan = plan_batch_job(&j, &sheet.backends, "t", &BTreeMap::new()).unwrap();
        let get = |n: &str| plan.rows.iter().find(|r| r.name == n).unwrap();
        // 60,000 requests at 100/min = 600 min = 10 h (tokens: 6e7 / 1e7 = 6 min).
        assert_eq!(get("rpm-bound").bound, WallBound::RequestsPerMinute);
        assert!((get("rpm-bound").wall_hours.unwrap() - 10.0).abs() < 1e-9);
        // 6e7 tokens at 100,000/min = 600 min = 10 h (requests: 0.6 min).
        assert_eq!(get("tpm-bound").bound, WallBound::TokensPerMinute);
        assert!((get("tpm-bound").wall_hours.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(get("no-limits").wall_hours, None);
        assert_eq!(get("no-limits").bound, WallBound::Unbounded);
        // Cost: 60,000 × (900 × 1 + 100 × 2) / 1e6 = $66 each.
        assert!(plan.rows.iter().all(|r| (r.total_usd - 66.0).abs() < 1e-9));
        let json = plan.to_json();
        let row = json["backends"].as_array().unwrap().iter().find(|b| b["name"] == "no-limits").unwrap().clone();
        assert!(row["wall_hours"].is_null(), "{row}");
    }

    #[test]
    fn measured_throughput_wins_over_the_sheet_and_missing_ones_are_skipped() {
        let text = r#"
            [[backend]]
            name = "gpu"
            kind = "rented"
            usd_per_gpu_hour = 2
            gpus = 4
            docs_per_hour = 1000
            [[backend]]
            name = "gpu-unknown"
            kind = "rented"
            usd_per_gpu_hour = 2
        "#;
        let sheet = PriceSheet::from_toml_str(text, "t").unwrap();
        let j = BatchJob {
            docs: 10_000,
            input_tokens_per_doc: 100.0,
            cached_input_tokens_per_doc: 0.0,
            output_tokens_per_doc: 50.0,
            batch_api: false,
        };
        let plan = plan_batch_job(&j, &sheet.backends, "t", &BTreeMap::new()).unwrap();
        // 10 h × $8/h = $80.
        assert!((plan.rows[0].total_usd - 80.0).abs() < 1e-9);
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(plan.skipped[0].name, "gpu-unknown");
        let mut measured = BTreeMap::new();
        // 500,000 output tokens at 250 tok/s = 2000 s.
        measured.insert(
            "gpu".to_string(),
            ThroughputInput { throughput: Throughput::OutputTokensPerS(250.0), source: "run 7".into() },
        );
        let plan = plan_batch_job(&j, &sheet.backends, "t", &measured).unwrap();
        assert!((plan.rows[0].wall_hours.unwrap() - 2000.0 / 3600.0).abs() < 1e-12);
        assert!(plan.rows[0].price_inputs.contains("run 7"));
    }

    #[test]
    fn bad_jobs_are_refused_with_the_flag_to_fix() {
        let sheet = PriceSheet::from_toml_str(CONTEXTUAL_RETRIEVAL_EXAMPLE_TOML, "example").unwrap();
        let mut j = job();
        j.docs = 0;
        let e = plan_batch_job(&j, &sheet.backends, "x", &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("--docs"), "{e}");
        let mut j = job();
        j.cached_input_tokens_per_doc = 5000.0;
        let e = plan_batch_job(&j, &sheet.backends, "x", &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("--cached-input-tokens"), "{e}");
    }

    #[test]
    fn formats() {
        assert_eq!(group_thousands(20419.4), "20,419");
        assert_eq!(group_thousands(999.0), "999");
        assert_eq!(group_thousands(1_000_000.0), "1,000,000");
        assert_eq!(format_usd(9.154), "$9.15");
        assert_eq!(format_wall_hours(0.5), "30 min");
        assert_eq!(format_wall_hours(143.7 * 24.0), "144 days");
    }
}
