//! What cost and energy store beside a run: one type per artifact kind,
//! written by whatever priced or metered the run (a measured run, the demo's
//! modelled knee, an arena backend) and read by `--json-out`, `runs export`,
//! the report and the dashboard.

use fleetbench_core::stats::Interval;
use fleetbench_core::Artifact;
use serde::{Deserialize, Serialize};

use crate::accounting::{AccountInputs, PerMillionTokens};
use crate::energy::timeline::WindowEnergy;
use crate::energy::EnergyTimeline;
use crate::price::CostFigures;

/// The price of a run (or of one backend of an arena run): the dollar keys
/// of docs/METRICS.md and what they were computed from. Stored under the
/// price entry's name (or the setup's title).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostRecord {
    /// What was priced: the price entry's name, a setup or an arena backend.
    pub backend: String,
    /// `api`, `rented` or `owned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The price entry's inputs in words, shown beside the figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_inputs: Option<String>,
    /// Where the price came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `usd_total`, `usd_per_request`, `usd_per_million_output_tokens`.
    #[serde(flatten)]
    pub figures: CostFigures,
    /// Arena backends: the price entry named by the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_entry: Option<String>,
    /// Arena backends: `api`, `rented` or `owned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_kind: Option<String>,
    /// Arena backends: dollars a day for the episode stream at `--rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_day: Option<f64>,
    /// Arena backends: dollars per diagnosis against the cheapest backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_multiplier_vs_cheapest: Option<f64>,
    /// Why a figure could not be computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_error: Option<String>,
}

impl Artifact for CostRecord {
    const KIND: &'static str = "cost";
}

/// Energy carried past the facility meter for one million output tokens
/// (docs/ECONOMICS.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastTheMeter {
    pub supply: String,
    pub pue: f64,
    pub per_million_tokens: Option<PerMillionTokens>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<AccountInputs>,
}

/// The energy of a run: what the meter saw (or the model said), per output
/// token, with the idle baseline and the energy past the meter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergyRecord {
    pub backend: String,
    /// `nvml`, `nvidia-smi`, `rapl`, `prometheus` or `modelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `measured` or `modelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_power_w: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_run: Option<WindowEnergy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_state: Option<WindowEnergy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_reads: Option<u64>,
    /// Net of idle, over the steady-state window (else the whole run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_output_token_j: Option<f64>,
    /// Interval of `energy_per_output_token_j`, where one was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<Interval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub past_the_meter: Option<PastTheMeter>,
}

impl Artifact for EnergyRecord {
    const KIND: &'static str = "energy";
}

/// Every meter reading of a metered run, for later integration over other
/// windows.
impl Artifact for EnergyTimeline {
    const KIND: &'static str = "energy_timeline";
}

/// One shard's own cost and energy in a run measured by several processes
/// (`--shard I/N`), stored under the shard's name (`2/4`) in place of the
/// run's [`CostRecord`] and [`EnergyRecord`]: those are the union's,
/// computed from every shard's part (`Instruments::union_figures`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardFiguresRecord {
    /// The host the shard ran on: two shards on one host read one local meter.
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<EnergyRecord>,
    /// Every reading of the shard's meter, on the run's common clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<EnergyTimeline>,
}

impl Artifact for ShardFiguresRecord {
    const KIND: &'static str = "shard_figures";
}

impl CostRecord {
    /// A machine rented at `usd_per_hour` producing `output_tok_s` output
    /// tokens a second, fully used: `usd_per_million_output_tokens` only.
    /// `None` without a positive throughput.
    pub fn rented_at(backend: &str, usd_per_hour: f64, output_tok_s: f64, rate_source: &str) -> Option<CostRecord> {
        (output_tok_s > 0.0).then(|| CostRecord {
            backend: backend.to_string(),
            kind: Some("rented".into()),
            price_inputs: Some(format!("${usd_per_hour:.2}/h ({rate_source}) at {output_tok_s:.0} output tok/s")),
            figures: CostFigures {
                usd_per_million_output_tokens: Some(usd_per_hour / (output_tok_s * 3600.0) * 1e6),
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

impl EnergyRecord {
    /// Energy per output token from a modelled power draw (the simulator's
    /// power model) at `output_tok_s`, carried past the meter at `pue` on
    /// `supply`. `None` without a positive throughput.
    pub fn modelled(
        backend: &str,
        power_w: f64,
        output_tok_s: f64,
        pue: f64,
        supply: &str,
    ) -> Result<Option<EnergyRecord>, crate::AccountError> {
        if output_tok_s <= 0.0 {
            return Ok(None);
        }
        let j = power_w / output_tok_s;
        Ok(Some(EnergyRecord {
            backend: backend.to_string(),
            energy_per_output_token_j: Some(j),
            meter: Some("modelled".into()),
            description: Some(format!("modelled power {power_w:.0} W (the simulator's power model), not measured")),
            past_the_meter: Some(crate::instruments::past_the_meter(j, pue, supply)?),
            ..Default::default()
        }))
    }
}
