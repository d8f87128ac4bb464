//! Price sheets: one price model per backend (`api`, `rented`, `owned`),
//! loaded from TOML and validated, and what a measured usage costs under it.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The dated preset sheet shipped with fleetbench (editable examples).
pub const PRESET_SHEET_TOML: &str = include_str!("../../../data/prices/presets-2026-11.toml");
/// Where the preset sheet lives in the source tree, for messages.
pub const PRESET_SHEET_ORIGIN: &str = "data/prices/presets-2026-11.toml (built in)";
/// The sheet whose inputs reproduce the published contextual-retrieval table.
pub const CONTEXTUAL_RETRIEVAL_EXAMPLE_TOML: &str =
    include_str!("../../../data/prices/contextual-retrieval-example.toml");

const HOURS_PER_YEAR: f64 = 8760.0;

/// Everything that can be wrong with a price sheet or a cost question.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("cannot read price sheet {path} (check the path, or use the built-in presets)")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("price sheet {origin} is not valid TOML: {message}")]
    Toml { origin: String, message: String },
    #[error("price sheet {origin}, backend '{backend}': {message}")]
    Invalid { origin: String, backend: String, message: String },
    #[error(
        "price sheet {origin} has no [[backend]] entries; add at least one (see data/prices/presets-2026-11.toml)"
    )]
    Empty { origin: String },
    #[error("no price entry named '{name}'; known entries: {known}")]
    NotFound { name: String, known: String },
    #[error("backend '{backend}': {message}")]
    Cost { backend: String, message: String },
}

/// The three kinds of price model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceKind {
    Api,
    Rented,
    Owned,
}

impl PriceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceKind::Api => "api",
            PriceKind::Rented => "rented",
            PriceKind::Owned => "owned",
        }
    }
}

/// How fast a self-hosted offer works through a job, as given in a sheet,
/// measured by a run, or predicted by the simulator. It is the throughput of
/// the whole offer (all of its GPUs together).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Throughput {
    DocsPerHour(f64),
    OutputTokensPerS(f64),
}

impl Throughput {
    /// Hours to process `docs` documents of `output_tokens_per_doc` each.
    pub fn hours_for(self, docs: f64, output_tokens_per_doc: f64) -> f64 {
        match self {
            Throughput::DocsPerHour(d) => docs / d,
            Throughput::OutputTokensPerS(t) => docs * output_tokens_per_doc / t / 3600.0,
        }
    }

    /// Output tokens per second, given the output tokens of one document.
    pub fn output_tokens_per_s(self, output_tokens_per_doc: f64) -> f64 {
        match self {
            Throughput::DocsPerHour(d) => d * output_tokens_per_doc / 3600.0,
            Throughput::OutputTokensPerS(t) => t,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Throughput::DocsPerHour(d) => format!("{} docs/h", round_rate(d)),
            Throughput::OutputTokensPerS(t) => format!("{} output tok/s", round_rate(t)),
        }
    }
}

/// `5392`, `42.5`, `0.125`: enough digits to read, no more.
fn round_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Pay per token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiPrice {
    pub usd_per_m_input: f64,
    /// Price of cached input tokens; the input price when the sheet gives none.
    pub usd_per_m_cached_input: Option<f64>,
    pub usd_per_m_output: f64,
    pub requests_per_minute: Option<f64>,
    /// Input plus output tokens per minute.
    pub tokens_per_minute: Option<f64>,
    /// Fraction taken off every token price through the provider's batch API
    /// (0.5 = half price); 0 when the sheet gives none.
    pub batch_discount: f64,
}

/// Pay per GPU-hour for the wall time the work needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RentedPrice {
    pub usd_per_gpu_hour: f64,
    pub gpus: u32,
    pub throughput: Option<Throughput>,
}

/// Buy the machine, amortise it, pay the electricity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnedPrice {
    pub purchase_usd: f64,
    pub years: f64,
    /// Fraction of the hours in those years the machine does paid work.
    pub utilisation: f64,
    /// Power of the whole machine while working, in watts.
    pub power_w: f64,
    pub pue: f64,
    pub usd_per_kwh: f64,
    pub throughput: Option<Throughput>,
}

impl OwnedPrice {
    /// Capital cost of one working hour: the price spread over the working
    /// hours of its life.
    pub fn capital_usd_per_hour(&self) -> f64 {
        self.purchase_usd / (self.years * HOURS_PER_YEAR * self.utilisation)
    }

    /// Electricity of one working hour at `power_w` (measured where known).
    pub fn electricity_usd_per_hour(&self, power_w: f64) -> f64 {
        power_w / 1000.0 * self.pue * self.usd_per_kwh
    }
}

/// A validated price model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PriceModel {
    Api(ApiPrice),
    Rented(RentedPrice),
    Owned(OwnedPrice),
}

/// One `[[backend]]` of a sheet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceEntry {
    pub name: String,
    pub model: PriceModel,
    /// Where the numbers come from (free text, shown in reports).
    pub source: Option<String>,
}

/// Measured (or simulated) usage of one backend over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub requests: u64,
    /// All input tokens, cached ones included.
    pub input_tokens: u64,
    /// The part of `input_tokens` served from the provider's cache.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    /// Wall time the backend was busy with this work, in seconds.
    pub wall_s: f64,
    /// Measured mean power of an owned machine, replacing the sheet's `power_w`.
    pub mean_power_w: Option<f64>,
    /// Price API calls through the provider's batch API.
    pub batch_api: bool,
}

impl Usage {
    /// The usage of a measured run (or sweep level): completed requests,
    /// server-reported tokens, and its measured duration. Cached input is
    /// not reported by the run, so it is priced as uncached input.
    pub fn from_run_metrics(m: &fleetbench_core::RunMetrics, batch_api: bool) -> Usage {
        Usage {
            requests: m.completed,
            input_tokens: m.total_input_tokens,
            cached_input_tokens: 0,
            output_tokens: m.total_output_tokens,
            wall_s: m.duration,
            mean_power_w: None,
            batch_api,
        }
    }
}

/// A steady stream of requests, for `usd_per_day`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StreamRate {
    pub requests_per_day: f64,
    pub input_tokens_per_request: f64,
    pub cached_input_tokens_per_request: f64,
    pub output_tokens_per_request: f64,
}

/// The derived figures every run reports per backend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostSummary {
    pub usd_total: f64,
    pub usd_per_request: f64,
    pub usd_per_million_output_tokens: f64,
}

impl PriceEntry {
    pub fn kind(&self) -> PriceKind {
        match self.model {
            PriceModel::Api(_) => PriceKind::Api,
            PriceModel::Rented(_) => PriceKind::Rented,
            PriceModel::Owned(_) => PriceKind::Owned,
        }
    }

    /// The throughput the sheet gives a self-hosted entry.
    pub fn sheet_throughput(&self) -> Option<Throughput> {
        match &self.model {
            PriceModel::Api(_) => None,
            PriceModel::Rented(r) => r.throughput,
            PriceModel::Owned(o) => o.throughput,
        }
    }

    /// Cost of one working hour of a self-hosted entry (`None` for an API).
    /// `power_w` replaces an owned machine's sheet power when measured.
    pub fn usd_per_hour(&self, power_w: Option<f64>) -> Option<f64> {
        match &self.model {
            PriceModel::Api(_) => None,
            PriceModel::Rented(r) => Some(r.usd_per_gpu_hour * f64::from(r.gpus)),
            PriceModel::Owned(o) => {
                Some(o.capital_usd_per_hour() + o.electricity_usd_per_hour(power_w.unwrap_or(o.power_w)))
            }
        }
    }

    /// Token cost of one API request. `None` for self-hosted entries.
    pub fn api_usd_for_tokens(&self, input: f64, cached_input: f64, output: f64, batch_api: bool) -> Option<f64> {
        let PriceModel::Api(a) = &self.model else {
            return None;
        };
        let cached = cached_input.min(input);
        let uncached = input - cached;
        let cached_price = a.usd_per_m_cached_input.unwrap_or(a.usd_per_m_input);
        let list = (uncached * a.usd_per_m_input + cached * cached_price + output * a.usd_per_m_output) / 1e6;
        Some(if batch_api { list * (1.0 - a.batch_discount) } else { list })
    }

    /// What `usage` costs under this entry: tokens for an API, wall time for
    /// a self-hosted machine.
    pub fn usd_for_usage(&self, usage: &Usage) -> Result<f64, PriceError> {
        match &self.model {
            PriceModel::Api(_) => Ok(self
                .api_usd_for_tokens(
                    usage.input_tokens as f64,
                    usage.cached_input_tokens as f64,
                    usage.output_tokens as f64,
                    usage.batch_api,
                )
                .unwrap_or(0.0)),
            _ => {
                if !(usage.wall_s.is_finite() && usage.wall_s >= 0.0) {
                    return Err(self.cost_error(format!(
                        "wall time {} s is not a finite, non-negative number of seconds",
                        usage.wall_s
                    )));
                }
                let per_hour = self.usd_per_hour(usage.mean_power_w).unwrap_or(0.0);
                Ok(per_hour * usage.wall_s / 3600.0)
            }
        }
    }

    /// `usd_per_million_output_tokens`, `usd_per_request` and the total for
    /// a measured usage.
    pub fn cost_summary(&self, usage: &Usage) -> Result<CostSummary, PriceError> {
        let total = self.usd_for_usage(usage)?;
        Ok(CostSummary {
            usd_total: total,
            usd_per_request: if usage.requests > 0 { total / usage.requests as f64 } else { f64::NAN },
            usd_per_million_output_tokens: if usage.output_tokens > 0 {
                total / usage.output_tokens as f64 * 1e6
            } else {
                f64::NAN
            },
        })
    }

    pub fn usd_per_million_output_tokens(&self, usage: &Usage) -> Result<f64, PriceError> {
        Ok(self.cost_summary(usage)?.usd_per_million_output_tokens)
    }

    pub fn usd_per_request(&self, usage: &Usage) -> Result<f64, PriceError> {
        Ok(self.cost_summary(usage)?.usd_per_request)
    }

    /// Cost of a day of `stream`. An API bills the tokens; a self-hosted offer
    /// is billed for 24 hours of as many machines as the stream needs at
    /// `throughput` (at least one while the stream is not empty). An owned
    /// machine pays its capital per calendar day (price / years / 365) plus
    /// 24 hours of electricity at `power_w` (the sheet's unless measured).
    pub fn usd_per_day(
        &self,
        stream: &StreamRate,
        throughput: Option<Throughput>,
        power_w: Option<f64>,
        batch_api: bool,
    ) -> Result<f64, PriceError> {
        if !(stream.requests_per_day.is_finite() && stream.requests_per_day >= 0.0) {
            return Err(
                self.cost_error("the stream rate must be a finite, non-negative number of requests per day".into())
            );
        }
        if let PriceModel::Api(_) = self.model {
            let per_request = self
                .api_usd_for_tokens(
                    stream.input_tokens_per_request,
                    stream.cached_input_tokens_per_request,
                    stream.output_tokens_per_request,
                    batch_api,
                )
                .unwrap_or(0.0);
            return Ok(per_request * stream.requests_per_day);
        }
        if stream.requests_per_day == 0.0 {
            return Ok(0.0);
        }
        let tp = throughput.or(self.sheet_throughput()).ok_or_else(|| {
            self.cost_error("needs a throughput for usd_per_day: give docs_per_hour or output_tokens_per_s in the sheet, or pass a measured one".into())
        })?;
        let demand_hours_per_day = tp.hours_for(stream.requests_per_day, stream.output_tokens_per_request);
        let machines = (demand_hours_per_day / 24.0).ceil().max(1.0);
        match &self.model {
            PriceModel::Rented(r) => Ok(machines * 24.0 * r.usd_per_gpu_hour * f64::from(r.gpus)),
            PriceModel::Owned(o) => {
                let capital = o.purchase_usd / (o.years * 365.0);
                let power = power_w.unwrap_or(o.power_w);
                Ok(machines * (capital + 24.0 * o.electricity_usd_per_hour(power)))
            }
            PriceModel::Api(_) => Ok(0.0),
        }
    }

    fn cost_error(&self, message: String) -> PriceError {
        PriceError::Cost { backend: self.name.clone(), message }
    }
}

/// The dollar keys of a usage under a price entry, as stored and written:
/// `usd_total`, `usd_per_request` and `usd_per_million_output_tokens`, each
/// `None` (null) where undefined (no requests, no output tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CostFigures {
    pub usd_total: Option<f64>,
    pub usd_per_request: Option<f64>,
    pub usd_per_million_output_tokens: Option<f64>,
}

impl CostFigures {
    /// The figures of `usage` under `price`: the one cost formula for the
    /// dollar keys of a run, a sweep level and an arena backend alike.
    pub fn priced(price: &PriceEntry, usage: &Usage) -> Result<CostFigures, PriceError> {
        Ok(CostFigures::from(price.cost_summary(usage)?))
    }
}

impl From<CostSummary> for CostFigures {
    fn from(c: CostSummary) -> CostFigures {
        let finite = |v: f64| v.is_finite().then_some(v);
        CostFigures {
            usd_total: finite(c.usd_total),
            usd_per_request: finite(c.usd_per_request),
            usd_per_million_output_tokens: finite(c.usd_per_million_output_tokens),
        }
    }
}

/// Each value divided by the smallest positive one (`NaN` where a value is
/// not a finite number).
pub fn multipliers_vs_cheapest(values: &[f64]) -> Vec<f64> {
    let cheapest = values.iter().copied().filter(|v| v.is_finite() && *v > 0.0).fold(f64::INFINITY, f64::min);
    values.iter().map(|v| if !v.is_finite() || !cheapest.is_finite() { f64::NAN } else { v / cheapest }).collect()
}

/// A validated price sheet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceSheet {
    /// Where it came from (a path, or a built-in name).
    pub origin: String,
    pub title: Option<String>,
    /// The date the prices were read (free text, `2026-11`).
    pub as_of: Option<String>,
    pub note: Option<String>,
    pub backends: Vec<PriceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSheet {
    title: Option<String>,
    as_of: Option<String>,
    note: Option<String>,
    #[serde(default)]
    backend: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    kind: String,
    source: Option<String>,
    usd_per_m_input: Option<f64>,
    usd_per_m_cached_input: Option<f64>,
    usd_per_m_output: Option<f64>,
    requests_per_minute: Option<f64>,
    tokens_per_minute: Option<f64>,
    batch_discount: Option<f64>,
    usd_per_gpu_hour: Option<f64>,
    gpus: Option<i64>,
    docs_per_hour: Option<f64>,
    output_tokens_per_s: Option<f64>,
    purchase_usd: Option<f64>,
    years: Option<f64>,
    utilisation: Option<f64>,
    power_w: Option<f64>,
    pue: Option<f64>,
    usd_per_kwh: Option<f64>,
}

impl PriceSheet {
    /// The built-in dated preset sheet.
    pub fn presets() -> Result<PriceSheet, PriceError> {
        PriceSheet::from_toml_str(PRESET_SHEET_TOML, PRESET_SHEET_ORIGIN)
    }

    /// Reads and validates a sheet from a file.
    pub fn load(path: &Path) -> Result<PriceSheet, PriceError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PriceError::Io { path: path.display().to_string(), source })?;
        PriceSheet::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates a sheet; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<PriceSheet, PriceError> {
        let raw: RawSheet = toml::from_str(text)
            .map_err(|e| PriceError::Toml { origin: origin.to_string(), message: e.to_string() })?;
        if raw.backend.is_empty() {
            return Err(PriceError::Empty { origin: origin.into() });
        }
        let mut seen = BTreeSet::new();
        let mut backends = Vec::with_capacity(raw.backend.len());
        for entry in raw.backend {
            let name = entry.name.trim().to_string();
            let invalid =
                |message: String| PriceError::Invalid { origin: origin.to_string(), backend: name.clone(), message };
            if name.is_empty() {
                return Err(invalid("`name` is empty; give every backend a unique name".into()));
            }
            if !seen.insert(name.clone()) {
                return Err(invalid("the name is used twice; names must be unique in a sheet".into()));
            }
            let model = validate_entry(&entry).map_err(invalid)?;
            backends.push(PriceEntry { name: name.clone(), model, source: entry.source.clone() });
        }
        Ok(PriceSheet { origin: origin.to_string(), title: raw.title, as_of: raw.as_of, note: raw.note, backends })
    }

    /// The entry called `name`.
    pub fn find(&self, name: &str) -> Result<&PriceEntry, PriceError> {
        self.backends.iter().find(|b| b.name == name).ok_or_else(|| PriceError::NotFound {
            name: name.to_string(),
            known: self.backends.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
}

fn validate_entry(e: &RawEntry) -> Result<PriceModel, String> {
    let present: Vec<(&str, bool)> = vec![
        ("usd_per_m_input", e.usd_per_m_input.is_some()),
        ("usd_per_m_cached_input", e.usd_per_m_cached_input.is_some()),
        ("usd_per_m_output", e.usd_per_m_output.is_some()),
        ("requests_per_minute", e.requests_per_minute.is_some()),
        ("tokens_per_minute", e.tokens_per_minute.is_some()),
        ("batch_discount", e.batch_discount.is_some()),
        ("usd_per_gpu_hour", e.usd_per_gpu_hour.is_some()),
        ("gpus", e.gpus.is_some()),
        ("docs_per_hour", e.docs_per_hour.is_some()),
        ("output_tokens_per_s", e.output_tokens_per_s.is_some()),
        ("purchase_usd", e.purchase_usd.is_some()),
        ("years", e.years.is_some()),
        ("utilisation", e.utilisation.is_some()),
        ("power_w", e.power_w.is_some()),
        ("pue", e.pue.is_some()),
        ("usd_per_kwh", e.usd_per_kwh.is_some()),
    ];
    let allowed: &[&str] = match e.kind.as_str() {
        "api" => &[
            "usd_per_m_input",
            "usd_per_m_cached_input",
            "usd_per_m_output",
            "requests_per_minute",
            "tokens_per_minute",
            "batch_discount",
        ],
        "rented" => &["usd_per_gpu_hour", "gpus", "docs_per_hour", "output_tokens_per_s"],
        "owned" => &[
            "purchase_usd",
            "years",
            "utilisation",
            "power_w",
            "pue",
            "usd_per_kwh",
            "docs_per_hour",
            "output_tokens_per_s",
        ],
        other => return Err(format!("`kind = \"{other}\"` is not a price kind; use \"api\", \"rented\" or \"owned\"")),
    };
    let stray: Vec<&str> =
        present.iter().filter(|(k, there)| *there && !allowed.contains(k)).map(|(k, _)| *k).collect();
    if !stray.is_empty() {
        return Err(format!(
            "{} do(es) not apply to kind \"{}\"; keys for this kind: {}",
            stray.join(", "),
            e.kind,
            allowed.join(", ")
        ));
    }
    let throughput = match (e.docs_per_hour, e.output_tokens_per_s) {
        (Some(_), Some(_)) => {
            return Err("give one throughput, `docs_per_hour` or `output_tokens_per_s`, not both".into())
        }
        (Some(d), None) => Some(Throughput::DocsPerHour(positive("docs_per_hour", d)?)),
        (None, Some(t)) => Some(Throughput::OutputTokensPerS(positive("output_tokens_per_s", t)?)),
        (None, None) => None,
    };
    match e.kind.as_str() {
        "api" => {
            let discount = match e.batch_discount {
                Some(d) if (0.0..1.0).contains(&d) => d,
                Some(d) => {
                    return Err(format!(
                    "`batch_discount = {d}` must be a fraction from 0 up to (not including) 1, e.g. 0.5 for half price"
                ))
                }
                None => 0.0,
            };
            Ok(PriceModel::Api(ApiPrice {
                usd_per_m_input: non_negative("usd_per_m_input", required("usd_per_m_input", e.usd_per_m_input)?)?,
                usd_per_m_cached_input: e
                    .usd_per_m_cached_input
                    .map(|v| non_negative("usd_per_m_cached_input", v))
                    .transpose()?,
                usd_per_m_output: non_negative("usd_per_m_output", required("usd_per_m_output", e.usd_per_m_output)?)?,
                requests_per_minute: e.requests_per_minute.map(|v| positive("requests_per_minute", v)).transpose()?,
                tokens_per_minute: e.tokens_per_minute.map(|v| positive("tokens_per_minute", v)).transpose()?,
                batch_discount: discount,
            }))
        }
        "rented" => {
            let gpus = match e.gpus {
                None => 1,
                Some(g) if g >= 1 && g <= i64::from(u32::MAX) => g as u32,
                Some(g) => return Err(format!("`gpus = {g}` must be a whole number of at least 1")),
            };
            Ok(PriceModel::Rented(RentedPrice {
                usd_per_gpu_hour: non_negative("usd_per_gpu_hour", required("usd_per_gpu_hour", e.usd_per_gpu_hour)?)?,
                gpus,
                throughput,
            }))
        }
        _ => {
            let utilisation = required("utilisation", e.utilisation)?;
            if !(utilisation > 0.0 && utilisation <= 1.0) {
                return Err(format!("`utilisation = {utilisation}` must be a fraction above 0 and at most 1 (0.6 = busy 60 % of the time)"));
            }
            let pue = required("pue", e.pue)?;
            if !(pue.is_finite() && pue >= 1.0) {
                return Err(format!("`pue = {pue}` must be at least 1.0 (facility energy / IT energy)"));
            }
            Ok(PriceModel::Owned(OwnedPrice {
                purchase_usd: non_negative("purchase_usd", required("purchase_usd", e.purchase_usd)?)?,
                years: positive("years", required("years", e.years)?)?,
                utilisation,
                power_w: non_negative("power_w", required("power_w", e.power_w)?)?,
                pue,
                usd_per_kwh: non_negative("usd_per_kwh", required("usd_per_kwh", e.usd_per_kwh)?)?,
                throughput,
            }))
        }
    }
}

fn required(key: &str, v: Option<f64>) -> Result<f64, String> {
    v.ok_or_else(|| format!("`{key}` is missing; it is required for this kind"))
}

fn non_negative(key: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("`{key} = {v}` must be a finite number of at least 0"))
    }
}

fn positive(key: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("`{key} = {v}` must be a finite number above 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(text: &str) -> Result<PriceSheet, PriceError> {
        PriceSheet::from_toml_str(text, "test.toml")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    const THREE_KINDS: &str = r#"
        [[backend]]
        name = "api-x"
        kind = "api"
        usd_per_m_input = 3.0
        usd_per_m_cached_input = 0.3
        usd_per_m_output = 15.0
        batch_discount = 0.5

        [[backend]]
        name = "rent-x"
        kind = "rented"
        usd_per_gpu_hour = 2.5
        gpus = 8
        output_tokens_per_s = 10000

        [[backend]]
        name = "own-x"
        kind = "owned"
        purchase_usd = 300000
        years = 4
        utilisation = 0.5
        power_w = 10000
        pue = 1.25
        usd_per_kwh = 0.08
        docs_per_hour = 36000
    "#;

    #[test]
    fn api_cost_is_tokens_times_prices() {
        let s = sheet(THREE_KINDS).unwrap();
        let api = s.find("api-x").unwrap();
        // 1000 requests: 2,000,000 input of which 500,000 cached, 300,000 output.
        let usage = Usage {
            requests: 1000,
            input_tokens: 2_000_000,
            cached_input_tokens: 500_000,
            output_tokens: 300_000,
            wall_s: 60.0,
            ..Usage::default()
        };
        // 1.5 M × $3 + 0.5 M × $0.30 + 0.3 M × $15 = 4.5 + 0.15 + 4.5 = $9.15
        let c = api.cost_summary(&usage).unwrap();
        assert!(close(c.usd_total, 9.15), "{c:?}");
        assert!(close(c.usd_per_request, 0.00915));
        assert!(close(c.usd_per_million_output_tokens, 30.5));
        let batch = api.usd_for_usage(&Usage { batch_api: true, ..usage }).unwrap();
        assert!(close(batch, 4.575));
    }

    #[test]
    fn rented_cost_is_wall_time_times_gpu_hours() {
        let s = sheet(THREE_KINDS).unwrap();
        let r = s.find("rent-x").unwrap();
        // 8 GPUs × $2.50 = $20/h; 90 minutes = $30; 1,000,000 output tokens.
        let usage = Usage { requests: 500, output_tokens: 1_000_000, wall_s: 5400.0, ..Usage::default() };
        let c = r.cost_summary(&usage).unwrap();
        assert!(close(c.usd_total, 30.0));
        assert!(close(c.usd_per_million_output_tokens, 30.0));
        assert!(close(c.usd_per_request, 0.06));
        // A stream of 2,000 requests/day of 500 output tokens: 1e6 tok/day
        // needs 27.8 s/day at 10,000 tok/s: one machine all day = $480.
        let stream = StreamRate {
            requests_per_day: 2000.0,
            input_tokens_per_request: 1000.0,
            cached_input_tokens_per_request: 0.0,
            output_tokens_per_request: 500.0,
        };
        assert!(close(r.usd_per_day(&stream, None, None, false).unwrap(), 480.0));
        // 2e9 tokens/day needs 55.6 h of the machine: three machines.
        let heavy = StreamRate { requests_per_day: 4_000_000.0, ..stream };
        assert!(close(r.usd_per_day(&heavy, None, None, false).unwrap(), 1440.0));
    }

    #[test]
    fn owned_cost_is_amortised_capital_plus_electricity() {
        let s = sheet(THREE_KINDS).unwrap();
        let o = s.find("own-x").unwrap();
        // capital: 300,000 / (4 × 8760 × 0.5) = 17.1233 $/h
        // power: 10 kW × 1.25 × $0.08 = $1.00/h
        let per_hour = o.usd_per_hour(None).unwrap();
        assert!(close(per_hour, 300000.0 / 17520.0 + 1.0), "{per_hour}");
        let usage = Usage { requests: 10, output_tokens: 20, wall_s: 7200.0, ..Usage::default() };
        assert!(close(o.usd_for_usage(&usage).unwrap(), 2.0 * per_hour));
        // Measured power of 6 kW replaces the sheet's 10 kW: $0.60/h.
        let measured = Usage { mean_power_w: Some(6000.0), ..usage };
        assert!(close(o.usd_for_usage(&measured).unwrap(), 2.0 * (300000.0 / 17520.0 + 0.6)));
        // A day: 300,000 / (4 × 365) = 205.479 capital + 24 h × $1 electricity.
        let stream = StreamRate {
            requests_per_day: 100.0,
            input_tokens_per_request: 10.0,
            cached_input_tokens_per_request: 0.0,
            output_tokens_per_request: 10.0,
        };
        assert!(close(o.usd_per_day(&stream, None, None, false).unwrap(), 300000.0 / 1460.0 + 24.0));
    }

    #[test]
    fn api_usd_per_day_is_requests_times_request_cost() {
        let s = sheet(THREE_KINDS).unwrap();
        let api = s.find("api-x").unwrap();
        let stream = StreamRate {
            requests_per_day: 10_000.0,
            input_tokens_per_request: 2000.0,
            cached_input_tokens_per_request: 1000.0,
            output_tokens_per_request: 100.0,
        };
        // per request: 1000 × 3 + 1000 × 0.3 + 100 × 15 = 4800 µ$ = $0.0048
        assert!(close(api.usd_per_day(&stream, None, None, false).unwrap(), 48.0));
    }

    #[test]
    fn usage_from_run_metrics_prices_a_measured_run() {
        let m = fleetbench_core::RunMetrics {
            completed: 100,
            total_input_tokens: 1_000_000,
            total_output_tokens: 200_000,
            duration: 1800.0,
            ..Default::default()
        };
        let u = Usage::from_run_metrics(&m, false);
        let s = sheet(THREE_KINDS).unwrap();
        // API: 1 M × $3 + 0.2 M × $15 = $6; rented: half an hour of $20/h = $10.
        assert!(close(s.find("api-x").unwrap().usd_for_usage(&u).unwrap(), 6.0));
        let r = s.find("rent-x").unwrap().cost_summary(&u).unwrap();
        assert!(close(r.usd_total, 10.0) && close(r.usd_per_million_output_tokens, 50.0));
    }

    #[test]
    fn multipliers_are_against_the_cheapest() {
        let m = multipliers_vs_cheapest(&[140.0, 70.0, 20419.0]);
        assert!(close(m[0], 2.0) && close(m[1], 1.0));
        assert!((m[2] - 291.7).abs() < 0.01);
    }

    #[test]
    fn invalid_sheets_say_what_is_wrong() {
        let cases = [
            ("[[backend]]\nname = \"a\"\nkind = \"leased\"\n", "not a price kind"),
            ("[[backend]]\nname = \"a\"\nkind = \"api\"\nusd_per_m_output = 1\n", "`usd_per_m_input` is missing"),
            (
                "[[backend]]\nname = \"a\"\nkind = \"api\"\nusd_per_m_input = 1\nusd_per_m_output = 1\ngpus = 2\n",
                "gpus do(es) not apply",
            ),
            ("[[backend]]\nname = \"a\"\nkind = \"rented\"\nusd_per_gpu_hour = -1\n", "at least 0"),
            ("[[backend]]\nname = \"a\"\nkind = \"rented\"\nusd_per_gpu_hour = 1\ngpus = 0\n", "at least 1"),
            (
                "[[backend]]\nname = \"a\"\nkind = \"rented\"\nusd_per_gpu_hour = 1\ndocs_per_hour = 1\noutput_tokens_per_s = 1\n",
                "not both",
            ),
            (
                "[[backend]]\nname = \"a\"\nkind = \"owned\"\npurchase_usd = 1\nyears = 1\nutilisation = 1.5\npower_w = 1\npue = 1.2\nusd_per_kwh = 0.1\n",
                "utilisation",
            ),
            (
                "[[backend]]\nname = \"a\"\nkind = \"owned\"\npurchase_usd = 1\nyears = 1\nutilisation = 0.5\npower_w = 1\npue = 0.9\nusd_per_kwh = 0.1\n",
                "at least 1.0",
            ),
            ("[[backend]]\nname = \"a\"\nkind = \"api\"\nusd_per_m_input = 1\nusd_per_m_output = 1\nbatch_discount = 1.5\n", "fraction"),
            ("[[backend]]\nname = \"a\"\nkind = \"api\"\nusd_per_m_input = 1\nusd_per_m_output = 1\nprice = 3\n", "unknown field"),
            ("title = \"x\"\n", "no [[backend]]"),
            ("[[backend]]\nname = \"a\"\nkind = \"rented\"\nusd_per_gpu_hour = 1\n[[backend]]\nname = \"a\"\nkind = \"rented\"\nusd_per_gpu_hour = 1\n", "used twice"),
        ];
        for (text, needle) in cases {
            let e = sheet(text).unwrap_err().to_string();
            assert!(e.contains(needle), "expected '{needle}' in: {e}");
            assert!(e.contains("test.toml"), "{e}");
        }
    }

    #[test]
    fn find_lists_known_names_when_missing() {
        let s = sheet(THREE_KINDS).unwrap();
        let e = s.find("nope").unwrap_err().to_string();
        assert!(e.contains("api-x, rent-x, own-x"), "{e}");
    }

    #[test]
    fn built_in_sheets_are_valid_and_dated() {
        let p = PriceSheet::presets().unwrap();
        assert_eq!(p.as_of.as_deref(), Some("2026-11"));
        assert!(p.note.as_deref().unwrap_or("").contains("editable"));
        assert!(p.backends.iter().all(|b| b.source.is_some()), "every preset cites a source");
        for kind in [PriceKind::Api, PriceKind::Rented, PriceKind::Owned] {
            assert!(p.backends.iter().any(|b| b.kind() == kind), "presets include {kind:?}");
        }
        PriceSheet::from_toml_str(CONTEXTUAL_RETRIEVAL_EXAMPLE_TOML, "example").unwrap();
        // Entries serialise with their kind, for reports that store them.
        let v = serde_json::to_value(p.find("openai-gpt-4.1").unwrap()).unwrap();
        assert_eq!(v["model"]["kind"], "api");
        assert_eq!(v["model"]["usd_per_m_output"], 8.0);
    }
}
