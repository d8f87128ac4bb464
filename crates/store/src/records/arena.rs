//! Records the AIOps arena stores with its run: one [`Answer`] per backend
//! and episode, and one [`ArenaBackend`] leaderboard row per backend. The
//! arena writes them, the HTML report and the tests read them. Fields that
//! older databases (or other writers) may lack are `#[serde(default)]`.

use std::collections::BTreeMap;

use fleetbench_core::stats::Interval;
use fleetbench_econ::arena::ArenaCost;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Artifact;

/// The `kind` of an arena run's config (and of its summary).
pub const ARENA_RUN_KIND: &str = "aiops-arena";

/// Whether a run's config is an arena run's. Its figures are the
/// leaderboard: the HTTP request records it stores mix several backends.
pub fn is_arena_run(config: &Value) -> bool {
    config.get("kind").and_then(Value::as_str) == Some(ARENA_RUN_KIND)
}

/// One backend's answer to one episode, beside the truth and its score.
/// Stored under the name `BACKEND/EPISODE_ID` ([`Answer::artifact_name`]).
/// Only `backend` and `text` are required to read one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub backend: String,
    #[serde(default)]
    pub episode_id: String,
    /// Scenario id (`healthy`, `S6`...).
    #[serde(default)]
    pub scenario: Option<String>,
    /// The scenario's table key (`pcie.gpu_off_bus`...).
    #[serde(default)]
    pub label: Option<String>,
    /// `easy`, `medium` or `hard` (by the number of decoys).
    #[serde(default)]
    pub difficulty: Option<String>,
    /// The raw text the backend returned.
    pub text: String,
    /// Points out of 100.
    #[serde(default)]
    pub score: Option<f64>,
    /// Points per checklist item.
    #[serde(default)]
    pub items: BTreeMap<String, f64>,
    #[serde(default)]
    pub unparseable: bool,
    /// JSON had to be dug out of prose or a code fence.
    #[serde(default)]
    pub lenient: bool,
    #[serde(default)]
    pub action_class: Option<String>,
    /// The true diagnosis (the diagnosis JSON of the aiops crate).
    #[serde(default)]
    pub truth: Option<Value>,
    /// The diagnosis read from `text`, when it parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parsed: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    /// Why the request failed (then `text` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds; absent for in-process operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2el_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Investigate mode: tool calls made (the submission included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<u32>,
    /// Investigate mode: calls answered with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_errors: Option<u32>,
    /// Investigate mode: seconds from the alert to the submission (or the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_s: Option<f64>,
    /// Investigate mode: how the investigation ended (`{"kind": "submitted"}`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Value>,
    /// Investigate mode: every message and tool call in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<Value>,
}

impl Artifact for Answer {
    const KIND: &'static str = "answer";
}

impl Answer {
    /// The name it is stored under: `BACKEND/EPISODE_ID`.
    pub fn artifact_name(&self) -> String {
        format!("{}/{}", self.backend, self.episode_id)
    }
}

/// One backend's leaderboard row, stored under the backend's name. Only
/// `backend` and `score` are required to read one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArenaBackend {
    pub backend: String,
    #[serde(default)]
    pub model: Option<String>,
    /// Mean points out of 100.
    pub score: f64,
    #[serde(default)]
    pub ci95: Option<Interval>,
    #[serde(default)]
    pub episodes: Option<u64>,
    /// Failed requests.
    #[serde(default)]
    pub failed: Option<u64>,
    /// Mean score by scenario table key.
    #[serde(default)]
    pub scenarios: BTreeMap<String, f64>,
    /// The whole leaderboard row (the aiops crate's `Leaderboard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaderboard: Option<Value>,
    /// The backend's cost keys, at the top level, when it is priced.
    #[serde(flatten)]
    pub cost: Option<ArenaCost>,
}

impl Artifact for ArenaBackend {
    const KIND: &'static str = "arena_backend";
}

/// Investigate mode's floor: the best constant answer over the run's
/// episodes, the score every backend must beat. Stored under the name
/// [`ArenaFloor::NAME`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArenaFloor {
    /// Mean points out of 100.
    pub score: f64,
    #[serde(default)]
    pub ci95: Option<Interval>,
    /// The constant answer (a `submit_diagnosis` object).
    #[serde(default)]
    pub answer: Value,
    /// Pages a day at the fleet's incident rate (prices `$ per day`).
    #[serde(default)]
    pub pages_per_day: Option<f64>,
}

impl ArenaFloor {
    pub const NAME: &'static str = "floor";
}

impl Artifact for ArenaFloor {
    const KIND: &'static str = "arena_floor";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn minimal_and_older_documents_read() {
        let a: Answer = serde_json::from_value(json!({"backend": "b", "text": "t"})).expect("answer");
        assert_eq!((a.backend.as_str(), a.text.as_str(), a.score), ("b", "t", None));
        let b: ArenaBackend = serde_json::from_value(json!({"backend": "b", "score": 71.5})).expect("board");
        assert_eq!((b.episodes, b.cost.as_ref()), (None, None));
        assert!(serde_json::from_value::<Answer>(json!({"backend": "b"})).is_err(), "text is required");
    }

    #[test]
    fn cost_keys_sit_at_the_top_level() {
        let cost: ArenaCost = serde_json::from_value(json!({
            "price_entry": "box", "price_kind": "rented", "usd_total": 1.0, "usd_per_request": 0.1,
            "usd_per_million_output_tokens": null, "usd_multiplier_vs_cheapest": 1.0
        }))
        .expect("cost");
        let board = ArenaBackend {
            backend: "b".into(),
            model: None,
            score: 50.0,
            ci95: None,
            episodes: Some(10),
            failed: Some(0),
            scenarios: BTreeMap::new(),
            leaderboard: None,
            cost: Some(cost),
        };
        let v = serde_json::to_value(&board).expect("json");
        assert_eq!(v["price_kind"], "rented");
        assert!(v["usd_per_million_output_tokens"].is_null() && v["model"].is_null() && v["ci95"].is_null());
        assert!(v.get("leaderboard").is_none() && v.get("cost").is_none() && v.get("cost_error").is_none());
        assert_eq!(serde_json::from_value::<ArenaBackend>(v).expect("reads back"), board);
    }

    #[test]
    fn arena_runs_are_told_by_their_config() {
        assert!(is_arena_run(&json!({"kind": ARENA_RUN_KIND, "episodes": 3})));
        assert!(!is_arena_run(&json!({"concurrency": 4})));
    }
}
