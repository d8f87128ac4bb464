//! Validation under load: rows that describe a real serving run (deployment,
//! engine settings, workload and arrivals in the language of
//! `fleetbench run`, measured mean TTFT, TPOT and end-to-end latency), each
//! replayed through the discrete-event engine and compared. `sim validate`
//! takes these files as well as the single-number rows of
//! [`crate::calibration`]; [`validate_path`] tells them apart by header.

use std::path::Path;

use fleetbench_core::{parse_switch, SamplingParams};
use fleetbench_workload::{Arrival, ArrivalSpec, Schedule, Traffic, WorkloadSpec};
use serde::Serialize;

use crate::calibration::{self, ValidationReport};
use crate::catalog::Catalog;
use crate::perf::{Deployment, DeploymentSpec, EngineKnobs};
use crate::replay::{replay, replay_after, EarlierRun, ReplayPlan, MAX_REPLAY_REQUESTS};
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
    text.lines().next().is_some_and(|h| h.split(',').any(|c| c.trim().trim_matches('"').eq_ignore_ascii_case(MARKER)))
}

/// Reads under-load rows from text; `origin` names the file in errors.
pub fn parse_rows(text: &str, origin: &str) -> Result<Vec<LoadRow>, SimError> {
    let err = |message: String| SimError::Calibration { path: origin.to_string(), message };
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| err(format!("line 1: cannot read the header: {e}")))?
        .iter()
        .map(calibration::header_name)
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
    // A record's line, counted from its first byte: with CRLF line ends the
    // reader places a record at the '\n' before it, and its own line count
    // is one short.
    let (mut counted_to, mut line) = (0usize, 1u64);
    for (index, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(format!("data row {}: {e}", index + 1)))?;
        let at = rec.position().and_then(|p| usize::try_from(p.byte()).ok()).filter(|b| *b <= text.len());
        let start = at.map(|b| b + text.as_bytes()[b..].iter().take_while(|c| matches!(c, b'\r' | b'\n')).count());
        match start {
            Some(start) if start >= counted_to => {
                line += text.as_bytes()[counted_to..start].iter().filter(|b| **b == b'\n').count() as u64;
                counted_to = start;
            }
            _ => line = index as u64 + 2,
        }
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
    /// Skipped because a cell is malformed (the reason names its line and
    /// column), not because the simulator cannot place the deployment.
    #[serde(skip)]
    pub malformed: bool,
    /// A multi-turn shared-prefix row replayed with each turn sent alone
    /// (no `multi_turn_history` `carried`), as inference-perf sent them.
    #[serde(skip)]
    pub turns_alone: bool,
    /// The row names an engine whose defaults changed between versions
    /// (vLLM's async scheduling and CUDA graph mode) without its version
    /// or both the `async_scheduling` and `cudagraph_mode` cells, so it was
    /// replayed with today's defaults where it says nothing.
    #[serde(skip)]
    pub defaults_assumed: bool,
    /// What placing the deployment assumed, as `sim predict` notes it (a
    /// GPU named without its variant: the most common one).
    #[serde(skip)]
    pub assumptions: Vec<String>,
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

/// How near the replay came to the published runs under load of one
/// engine: the absolute errors of the mean TTFT, TPOT and end-to-end
/// latency that `fleetbench sim validate data/calibration/under-load.csv`
/// reports (docs/SIMULATOR.md, section 7), the middle one and the one nine
/// runs in ten stay within. `sim replay` prints them beside that engine's
/// figures; `tests/calibration.rs` recomputes them from the file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PublishedError {
    /// The engine's catalog id.
    pub engine: &'static str,
    /// Published runs replayed.
    pub runs: usize,
    pub median_abs_err_pct: Medians,
    pub p90_abs_err_pct: Medians,
}

/// vLLM's, from the 133 rows of `data/calibration/under-load.csv`.
pub const VLLM_PUBLISHED_ERROR: PublishedError = PublishedError {
    engine: "vllm",
    runs: 133,
    median_abs_err_pct: Medians { ttft: Some(18.0), tpot: Some(5.5), e2e: Some(4.7) },
    p90_abs_err_pct: Medians { ttft: Some(58.4), tpot: Some(24.2), e2e: Some(33.3) },
};

/// What `sim validate --json` prints for an under-load file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub rows: Vec<RowResult>,
    pub median_abs_err_pct: Medians,
    pub covered: usize,
    pub total: usize,
}

/// What went wrong with a row: a value the file states wrongly (reported
/// with its line and column) or a deployment the simulator cannot place.
/// Either way the row is skipped with the reason and the others are still
/// validated.
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
    /// A cell's text, or `None` where it is empty or says "no value" as
    /// spreadsheets and pandas write it (`NaN`, `None`, `null`, `N/A`, `-`).
    fn value(&self, key: &str) -> Option<&str> {
        let v = self.row.get(key);
        let missing = matches!(v.to_ascii_lowercase().as_str(), "" | "nan" | "none" | "null" | "n/a" | "na" | "-");
        (!missing).then_some(v)
    }
    /// A number; a whole-number column also takes `2048.0`, as pandas writes
    /// a column of whole numbers that has empty cells.
    fn opt<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, RowError> {
        let Some(v) = self.value(key) else { return Ok(None) };
        if let Ok(x) = v.parse::<T>() {
            return Ok(Some(x));
        }
        let bad = || self.at(key, format!("'{v}' is not {what}"));
        let whole = v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0 && x.fract() == 0.0).ok_or_else(bad)?;
        format!("{whole:.0}").parse::<T>().map(Some).map_err(|_| bad())
    }
    fn positive(&self, key: &str) -> Result<Option<f64>, RowError> {
        match self.opt::<f64>(key, "a number")? {
            Some(x) if !(x.is_finite() && x > 0.0) => Err(self.at(key, format!("{x} is not a positive number"))),
            x => Ok(x),
        }
    }
    /// A switch; `None` where empty.
    fn switch(&self, key: &str) -> Result<Option<bool>, RowError> {
        let Some(v) = self.value(key) else { return Ok(None) };
        parse_switch(v).map(Some).ok_or_else(|| self.at(key, format!("'{v}' is not true or false")))
    }
    /// `multi_turn_history`: `carried` (or a true switch) where each turn of
    /// a multi-turn shared-prefix row carried the conversation so far;
    /// empty, `none` or a false switch where it did not.
    fn history_carried(&self, key: &str) -> Result<bool, RowError> {
        let Some(v) = self.value(key) else { return Ok(false) };
        if v.eq_ignore_ascii_case("carried") {
            return Ok(true);
        }
        parse_switch(v).ok_or_else(|| self.at(key, format!("'{v}' is not carried or none")))
    }
    /// The share of device memory: `0.9`, or as a percentage (`90%`, `90`).
    fn memory_share(&self, key: &str) -> Result<Option<f64>, RowError> {
        let Some(v) = self.value(key) else { return Ok(None) };
        let (number, percent) = match v.strip_suffix('%') {
            Some(n) => (n.trim(), true),
            None => (v, false),
        };
        let bad = || self.at(key, format!("'{v}' is not a share of memory (0.9 or 90%)"));
        let x: f64 = number.parse().map_err(|_| bad())?;
        if !(x.is_finite() && x > 0.0) {
            return Err(bad());
        }
        // A share above 1 can only be a percentage.
        let share = if percent || x > 1.0 { x / 100.0 } else { x };
        if share > 1.0 {
            return Err(self.at(key, "is a share of memory, at most 1 (100%)"));
        }
        Ok(Some(share))
    }
    /// KV offload to CPU memory in GB: a number, with `GB` or `GiB` if
    /// written; `false` (or empty) is none; `true` is an offload of
    /// [`DEFAULT_OFFLOAD_GB`], the size a row that only says "on" gets.
    fn offload_gb(&self, key: &str) -> Result<f64, RowError> {
        let Some(v) = self.value(key) else { return Ok(0.0) };
        if let Some(on) = parse_switch(v) {
            return Ok(if on { DEFAULT_OFFLOAD_GB } else { 0.0 });
        }
        let lower = v.to_ascii_lowercase();
        let (number, scale) = if let Some(n) = lower.strip_suffix("gib") {
            (n, 1.073_741_824)
        } else if let Some(n) = lower.strip_suffix("gb").or_else(|| lower.strip_suffix('g')) {
            (n, 1.0)
        } else {
            (lower.as_str(), 1.0)
        };
        match number.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x * scale),
            _ => Err(self.at(key, format!("'{v}' is not a number of GB or true/false"))),
        }
    }
}

/// The workload in column `key` (empty: `run`'s default, `synthetic`); a
/// file it names is relative to the validation file's folder `base`. A
/// shared-prefix workload is an inference-perf run: its prompts are random
/// token ids decoded to text, which the server tokenizes again into more
/// tokens than were drawn, so its system prompt and question are counted at
/// `scale` (empty: [`INFERENCE_PERF_RETOKENIZED`]) server tokens a token.
fn row_workload(c: &Cells, key: &str, scale: Option<f64>, base: &Path) -> Result<WorkloadSpec, RowError> {
    let text = c.value(key).unwrap_or("synthetic");
    let mut workload = WorkloadSpec::parse(text).map_err(|e| c.at(key, e))?;
    match &mut workload {
        WorkloadSpec::SharedPrefix(spec) => {
            let f = scale.unwrap_or(INFERENCE_PERF_RETOKENIZED);
            let scaled = |n: u32| (f64::from(n) * f).round().clamp(0.0, u32::MAX as f64) as u32;
            (spec.system, spec.question) = (scaled(spec.system), scaled(spec.question));
        }
        WorkloadSpec::File(path) if path.is_relative() => *path = base.join(&*path),
        WorkloadSpec::Conversations(spec) if spec.path.is_relative() => spec.path = base.join(&spec.path),
        _ => {}
    }
    Ok(workload)
}

/// A multi-turn shared-prefix workload whose turns are sent alone: each the
/// user's system prompt and question, when it arrives, which is the
/// single-turn workload. That is what inference-perf's
/// `enable_multi_turn_chat` sent in the published vLLM runs (every round
/// the same input tokens), whatever its docs say of a conversation; a row
/// whose turns carried their history says `multi_turn_history` `carried`
/// (docs/SIMULATOR.md, "How a row is replayed", gives the sources). Whether
/// `workload` was multi-turn.
fn send_turns_alone(workload: &mut WorkloadSpec) -> bool {
    match workload {
        WorkloadSpec::SharedPrefix(spec) if spec.multi_turn => {
            spec.multi_turn = false;
            true
        }
        _ => false,
    }
}

/// The CPU memory a row's KV offload gets when the row says only that it is
/// on: 100 GB, a modest share of a serving host's memory (the runs this
/// check reads state no size; vLLM's `--kv-offloading-size` has no default).
pub const DEFAULT_OFFLOAD_GB: f64 = 100.0;

/// How many tokens the server counts per token id inference-perf drew for a
/// shared-prefix prompt. Its generator draws random ids, decodes them to
/// text (special tokens skipped) and sends `system + " " + question`; the
/// server's tokenizer merges and splits that text differently. Measured with
/// the tokenizers themselves (`scripts/py/retokenization.py`: Hugging Face
/// `tokenizers`, 5 groups each of five system and question sizes from
/// 1,000 + 200 to 16,000 + 256): Llama 2 1.040–1.045, Llama 3.1
/// 1.042–1.046, Qwen3 1.048–1.054; llm-d's published report of a Qwen3-32B
/// run reads 7,576 tokens for 7,200 drawn (1.052).
pub const INFERENCE_PERF_RETOKENIZED: f64 = 1.045;

/// A GPU written with its count, before (`8xH100`, `2 x NVIDIA L40S`) or
/// after (`H100x8`, `NVIDIA L40S x 2`): the name and the count. After a
/// name, the `x` must not follow a letter, so that "RTX 5090" stays a name.
fn split_gpu_count(text: &str) -> (&str, Option<u32>) {
    let is_x = |c: char| matches!(c, 'x' | 'X' | '×');
    let count = |d: &str| d.parse::<u32>().ok().filter(|n| (1..=1024).contains(n));
    let t = text.trim();
    // Leading "N x".
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits > 0 {
        let rest = t[digits..].trim_start();
        if let Some(name) = rest.strip_prefix(is_x) {
            if let (Some(n), name) = (count(&t[..digits]), name.trim()) {
                if !name.is_empty() {
                    return (name, Some(n));
                }
            }
        }
    }
    // Trailing "x N", the x not after a letter.
    let start = t.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if let Some(name) = t[..start].trim_end().strip_suffix(is_x) {
        let after_letter = name.chars().last().is_some_and(|b| b.is_alphabetic());
        if let (false, Some(n), name) = (after_letter, count(&t[start..]), name.trim()) {
            if !name.is_empty() {
                return (name, Some(n));
            }
        }
    }
    (t, None)
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
    let headers: Vec<String> =
        rows.first().map(|r| r.columns.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let cells = Cells { row, headers: &headers };
        match run_row(catalog, &cells, base) {
            Ok(r) => out.push(r),
            Err(e) => {
                let (reason, malformed) = match e {
                    RowError::Skip(reason) => (reason, false),
                    RowError::Bad(message) => (format!("{origin}: {message}"), true),
                };
                out.push(RowResult {
                    id: row.id().to_string(),
                    ttft_err_pct: None,
                    tpot_err_pct: None,
                    e2e_err_pct: None,
                    skipped: Some(reason),
                    malformed,
                    turns_alone: false,
                    defaults_assumed: false,
                    assumptions: Vec::new(),
                    figures: None,
                })
            }
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
    for (key, what) in [("gpu", "the GPU (H100, NVIDIA L40S, ...)"), ("model", "the model (a Hugging Face id, ...)")] {
        if c.value(key).is_none() {
            return Err(c.at(key, format!("empty: name {what}")));
        }
    }
    // The GPU may carry its count ("8xH100", "NVIDIA L40S x 2").
    let (gpu, count_in_name) = split_gpu_count(row.get("gpu"));
    let count = match (c.opt::<u32>("gpu_count", "a whole number of GPUs")?, count_in_name) {
        (Some(n), Some(m)) if n != m => {
            return Err(c.at("gpu", format!("says {m} GPUs and gpu_count says {n}")));
        }
        (n, m) => n.or(m).unwrap_or(1),
    };
    if count == 0 {
        return Err(c.at("gpu_count", "must be at least 1"));
    }
    let knobs = EngineKnobs {
        max_num_batched_tokens: c.opt("max_num_batched_tokens", "a whole number of tokens")?,
        gpu_memory_utilization: c.memory_share("gpu_memory_utilization")?,
        block_size: c.opt("block_size", "a whole number of tokens")?,
        prefix_caching: c.switch("prefix_caching")?,
        cpu_offload_gb: c.offload_gb("cpu_offload")?,
        pipeline_parallel: c.opt("pipeline_parallel", "a whole number of stages")?,
        kv_cache_bits: crate::perf::kv_cache_bits(row.get("kv_cache_dtype")).map_err(|e| c.at("kv_cache_dtype", e))?,
        async_scheduling: c.switch("async_scheduling")?,
        full_decode_graph: crate::perf::cudagraph_mode(row.get("cudagraph_mode"))
            .map_err(|e| c.at("cudagraph_mode", e))?,
    };
    for (key, v) in [
        ("max_num_batched_tokens", knobs.max_num_batched_tokens),
        ("block_size", knobs.block_size),
        ("pipeline_parallel", knobs.pipeline_parallel),
    ] {
        if v == Some(0) {
            return Err(c.at(key, "must be at least 1"));
        }
    }
    let model = row.get("model");
    let model = if model.to_ascii_lowercase().ends_with(".json") && Path::new(model).is_relative() {
        base.join(model).display().to_string()
    } else {
        model.to_string()
    };
    let spec = DeploymentSpec {
        gpu: gpu.to_string(),
        count,
        interconnect: c.value("interconnect").map(String::from),
        model,
        quant: c.value("quant").unwrap_or("").to_string(),
        // The check this validates is of vLLM runs: an empty engine is vLLM.
        engine: c.value("engine").unwrap_or("vllm").to_string(),
        max_num_seqs: c.opt("max_num_seqs", "a whole number of sequences")?,
        parallelism: None,
        knobs,
    };
    // An empty weight format is `auto`: the checkpoint's own (16-bit, or
    // what the model ships in); free text ("EXL2 2.5 bpw") is read too.
    let deployment = Deployment::resolve(catalog, &spec).map_err(|e| match e {
        // What is left invalid is the split of the GPUs into stages.
        SimError::Invalid(m) => c.at("gpu_count", m),
        SimError::Unknown { kind, .. } if kind == "quantization" => {
            RowError::Skip(format!("weight format '{}' is not recognised", spec.quant))
        }
        other => RowError::Skip(other.to_string()),
    })?;
    let assumptions = deployment.notes.clone();
    // vLLM changed its scheduler's default at 0.14.0 and its CUDA graphs'
    // at 0.11.0: a row that names neither the version nor both settings
    // gets today's.
    let defaults_assumed = (spec.knobs.async_scheduling.is_none() || spec.knobs.full_decode_graph.is_none())
        && deployment.engine.async_scheduling_since.is_some()
        && crate::catalog::version_in(&spec.engine).is_none();
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
    let workload_text = c.value("workload").unwrap_or("");
    let scale = c.positive("prompt_token_scale")?;
    let mut workload = row_workload(c, "workload", scale, base)?;
    let history_carried = c.history_carried("multi_turn_history")?;
    let turns_alone = !history_carried && send_turns_alone(&mut workload);
    if history_carried && !matches!(&workload, WorkloadSpec::SharedPrefix(s) if s.multi_turn) {
        return Err(c.at(
            "multi_turn_history",
            "says how a multi-turn shared-prefix workload's turns were sent; this row's workload is not one",
        ));
    }
    if let Some(n) = output_mean {
        match &mut workload {
            WorkloadSpec::Synthetic { output, .. } => *output = n,
            WorkloadSpec::SharedPrefix(spec) => spec.output = n,
            _ => {}
        }
    }
    if scale.is_some_and(|f| f != 1.0) && !matches!(workload, WorkloadSpec::SharedPrefix(_)) {
        return Err(
            c.at("prompt_token_scale", "scales a shared-prefix workload's prompts; this row's workload is not one")
        );
    }
    let arrivals = match c.value("arrivals").unwrap_or("") {
        "" => None,
        a => Some(match ArrivalSpec::parse(a).map_err(|e| c.at("arrivals", e))? {
            ArrivalSpec::Trace { path, format } if path.is_relative() => {
                ArrivalSpec::Trace { path: base.join(path), format }
            }
            other => other,
        }),
    };
    let concurrency = c.opt::<u32>("concurrency", "a whole number of clients")?;
    // The most requests an open-loop client kept in flight: one due when
    // all were out was sent when one ended, and timed from then (vLLM's
    // `bench serve --max-concurrency`; inference-perf's `num_workers` x
    // `worker_max_concurrency`, 100 per client CPU by default).
    let max_concurrency = c.opt::<u32>("max_concurrency", "a whole number of requests in flight")?;
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
    // Requests of an earlier run on the same server (of the row's own
    // workload, or of `warmup_workload`), replayed first and left out of
    // the figures; the measured ones start once they have ended
    // ([`EarlierRun`]). With workloads that cycle their prompts
    // (`synthetic:...,prompts=N`): a run whose prompts, or their start,
    // the earlier one left in the prefix cache.
    let warmup = c.opt::<u64>("warmup", "a whole number of requests")?.unwrap_or(0);
    let earlier_spec = match c.value("warmup_workload") {
        None => None,
        Some(_) if warmup == 0 => {
            return Err(c.at("warmup_workload", "is the workload of an earlier run: give its requests in `warmup`"))
        }
        Some(_) => {
            let mut earlier = row_workload(c, "warmup_workload", scale, base)?;
            if !history_carried {
                send_turns_alone(&mut earlier);
            }
            Some(earlier)
        }
    };
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
        (Some(_), None) => Schedule::Open { rate: 1.0, arrival: Arrival::Poisson, max_concurrency },
    };
    match (max_concurrency, &schedule) {
        (Some(0), _) => return Err(c.at("max_concurrency", "must be at least 1")),
        (Some(_), Schedule::Closed { .. }) => {
            return Err(c.at("max_concurrency", "caps an open-loop client's arrivals; a closed loop's is `concurrency`"))
        }
        _ => {}
    }
    // What a row whose every request was refused says of them.
    let context_note = format!(
        "their prompts and max_tokens over {}'s context of {} tokens, as vLLM refuses them with HTTP 400{}",
        deployment.model.name,
        deployment.model.max_context,
        match workload {
            WorkloadSpec::SharedPrefix(_) => format!(
                "; shared-prefix prompts are counted at {} server tokens a token drawn (prompt_token_scale)",
                scale.unwrap_or(INFERENCE_PERF_RETOKENIZED)
            ),
            _ => String::new(),
        }
    );
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
    plan.check_size().map_err(|e| c.at(if arrivals.is_some() { "arrivals" } else { "requests" }, e))?;
    if warmup > MAX_REPLAY_REQUESTS {
        return Err(c.at("warmup", format!("{warmup} requests; a replay simulates at most {MAX_REPLAY_REQUESTS}")));
    }
    let r = if warmup > 0 {
        if traffic.workload.session(0).is_some() {
            return Err(c.at("warmup", "replays an earlier run of requests; a session workload has no such run"));
        }
        let built;
        let earlier = match &earlier_spec {
            Some(spec) => {
                built = spec.build(seed).map_err(|e| c.at("warmup_workload", e))?;
                built.as_ref()
            }
            None => traffic.workload.as_ref(),
        };
        replay_after(deployment, &plan, EarlierRun { workload: earlier, requests: warmup }, traffic.workload.as_ref())
    } else {
        replay(deployment, &plan, traffic.workload.as_ref())
    };
    if r.overall.requests == 0 {
        let why = match r.overall.rejected {
            0 => String::new(),
            n => format!(": all {n} were refused, {context_note}"),
        };
        return Err(RowError::Skip(format!("the replay completed no request{why}")));
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
        malformed: false,
        turns_alone,
        defaults_assumed,
        assumptions,
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

/// Whether the row at this 0-based index of an under-load file is held out
/// of the fit (every fourth row: index 3 mod 4).
pub fn is_held_out(index: usize) -> bool {
    index % 4 == 3
}

impl LoadReport {
    /// Median absolute errors over the fitted rows (`is_held_out` false) and
    /// the held-out ones.
    pub fn split_medians(&self) -> (Medians, Medians) {
        (self.medians_where(|i, _| !is_held_out(i)), self.medians_where(|i, _| is_held_out(i)))
    }

    /// Median absolute errors over the rows `keep` takes (by 0-based index
    /// and result): one publisher's, one router's, one half of the fit.
    pub fn medians_where(&self, keep: impl Fn(usize, &RowResult) -> bool) -> Medians {
        report(self.rows.iter().enumerate().filter(|(i, r)| keep(*i, r)).map(|(_, r)| r.clone()).collect())
            .median_abs_err_pct
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

#[cfg(test)]
mod tests {
    use super::split_gpu_count;

    #[test]
    fn a_gpu_may_carry_its_count() {
        for (text, want) in [
            ("8xH100", ("H100", Some(8))),
            ("2 x NVIDIA L40S", ("NVIDIA L40S", Some(2))),
            ("H100x8", ("H100", Some(8))),
            ("NVIDIA L40S x 2", ("NVIDIA L40S", Some(2))),
            ("A100-80GB ×4", ("A100-80GB", Some(4))),
            ("RTX 5090", ("RTX 5090", None)),
            ("NVIDIA GeForce RTX 3090", ("NVIDIA GeForce RTX 3090", None)),
            ("MI300X", ("MI300X", None)),
            ("H100", ("H100", None)),
            ("0xH100", ("0xH100", None)),
        ] {
            assert_eq!(split_gpu_count(text), want, "{text}");
        }
    }
}
