//! What a sweep stores and writes: one [`SweepLevelRecord`] and one
//! [`ServerMetricsRecord`] per level's run, and the whole [`SweepDoc`] (the
//! `--json-out` of `fleetbench sweep`, described by docs/schemas/sweep.json)
//! with the sweep's first run.

use fleetbench_client::prom::{ServerLevelStats, ServerState};
use fleetbench_core::{Artifact, RunMetrics};
use serde::{Deserialize, Serialize};

use crate::measure::FigureKeys;

/// A level's figures as the report and the dashboard read them
/// (`sweep_level`). The x position is the concurrency; an open-loop level
/// sits at the most requests it had in flight, its rate beside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepLevelRecord {
    pub concurrency: f64,
    #[serde(default)]
    pub rate: Option<f64>,
    /// `c=4`, `rate=2.50`.
    #[serde(default)]
    pub label: Option<String>,
    /// Without the per-request arrays.
    pub metrics: RunMetrics,
    /// The server's own figures (timeline left out: see [`ServerMetricsRecord`]).
    #[serde(default)]
    pub server: Option<ServerLevelStats>,
}

impl Artifact for SweepLevelRecord {
    const KIND: &'static str = "sweep_level";
}

/// One reading of the server's `/metrics` during a level, seconds from the
/// level's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerSample {
    pub t_s: f64,
    #[serde(default)]
    pub kv_cache_usage_pct: Option<f64>,
    #[serde(default)]
    pub queue_depth: Option<f64>,
    #[serde(default)]
    pub running: Option<f64>,
}

impl From<&ServerState> for ServerSample {
    fn from(p: &ServerState) -> ServerSample {
        ServerSample {
            t_s: p.t,
            kv_cache_usage_pct: p.kv_cache_usage.map(|k| k * 100.0),
            queue_depth: p.waiting,
            running: p.running,
        }
    }
}

/// The server's timeline during a level (`server_metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerMetricsRecord {
    pub samples: Vec<ServerSample>,
}

impl Artifact for ServerMetricsRecord {
    const KIND: &'static str = "server_metrics";
}

/// One level of a sweep, repeats pooled, as `--json-out` writes it: the
/// first repeat's figures, the level, and what the repeats say together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelSummary {
    /// Closed-loop sweeps: the number of agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<f64>,
    /// Open-loop sweeps: requests per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(flatten)]
    pub metrics: RunMetrics,
    #[serde(flatten)]
    pub figures: FigureKeys,
    /// The stored runs of this level, one per repeat.
    pub run_ids: Vec<i64>,
    /// `1 − per-request tok/s here / per-request tok/s at the first level`.
    pub contention: Option<f64>,
    pub server: Option<ServerLevelStats>,
    pub server_timeline: Option<Vec<ServerState>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeats: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_throughput_mean_of_repeats: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_throughput_ci95_across_repeats: Option<Option<[f64; 2]>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_tok_s_ci95_across_repeats: Option<Option<[f64; 2]>>,
}

impl LevelSummary {
    /// The level, whichever kind it is.
    pub fn level(&self) -> f64 {
        self.concurrency.or(self.rate).unwrap_or(0.0)
    }
}

/// The knee as `--json-out` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KneeDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    pub band: [f64; 2],
    pub saturation_output_throughput: f64,
    #[serde(rename = "break")]
    pub break_level: Option<f64>,
    /// Why the curve bends, in one line.
    pub reason: String,
    /// Why the search stopped (empty for fixed levels).
    pub stop_reason: String,
}

/// What was swept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepInfo {
    pub group: String,
    pub repeats: u32,
    /// Base URL, credentials removed.
    pub backend: String,
    pub model: String,
    pub workload: String,
    pub run_ids: Vec<i64>,
}

/// A whole sweep: `--json-out`, and the `sweep` record stored with the
/// sweep's first run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepDoc {
    pub levels: Vec<LevelSummary>,
    pub knee: Option<KneeDoc>,
    pub sweep: SweepInfo,
    /// Session workloads: completion time across the levels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<super::SessionCurve>,
    /// 1 for a backend in real time; above 1 the backend (a simulator) ran
    /// that many times faster than the hardware it models, and every
    /// figure is in modelled time.
    pub time_scale: f64,
}

/// The stored form of a [`SweepDoc`]: the knee and what was swept (the
/// levels are their own runs' [`SweepLevelRecord`]s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub knee: Option<KneeDoc>,
    pub sweep: SweepInfo,
}

impl Artifact for SweepRecord {
    const KIND: &'static str = "sweep";
}
