//! What a run was: the metadata stored with every run and printed beside
//! every report.

use serde::{Deserialize, Deserializer, Serialize};

use crate::metrics::Slo;
use crate::request::ApiKind;

/// Life cycle of a stored run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Being measured now.
    Running,
    /// Finished; figures are final.
    Completed,
    /// Finished, but the error rate passed `--max-error-rate`.
    ErrorRateExceeded,
    /// Stopped by the user (Ctrl-C) after storing what it had.
    Interrupted,
    /// Could not run (server unreachable, bad input).
    Failed,
    /// The process died while running (found `running` with no live owner).
    Incomplete,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::ErrorRateExceeded => "error_rate_exceeded",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
            RunStatus::Incomplete => "incomplete",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Completed,
            RunStatus::ErrorRateExceeded,
            RunStatus::Interrupted,
            RunStatus::Failed,
            RunStatus::Incomplete,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Metadata of one run: who measured what, how, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Store-assigned id (0 before the run is stored).
    pub id: i64,
    pub tool_version: String,
    /// The full command line, secrets never included (keys come from the
    /// environment and URLs are stripped of credentials).
    pub command_line: String,
    pub host: String,
    /// Backend base URL, credentials removed.
    pub backend_url: String,
    pub model: String,
    pub api: String,
    pub workload: String,
    /// The schedule in words (`closed loop, concurrency 4`).
    pub schedule: String,
    /// RFC 3339 wall-clock labels.
    pub started_at: String,
    pub ended_at: Option<String>,
    pub status: RunStatus,
    /// The settings a reader needs to reproduce the run: a [`RunConfig`] for
    /// measured runs (`run`, sweep and demo levels), the arena's own config
    /// type for arena runs. Read it back with [`RunMeta::run_config`].
    pub config: serde_json::Value,
    /// Process that owns a `running` run, to tell `incomplete` apart.
    pub pid: Option<u32>,
    /// Group a run belongs to (a sweep or demo), if any.
    pub group: Option<String>,
}

impl RunMeta {
    /// The run's settings as a measured run's [`RunConfig`]. Keys that are
    /// missing (or belong to another kind of run) read as `None`; a config
    /// that is not a JSON object reads as the empty config.
    pub fn run_config(&self) -> RunConfig {
        serde_json::from_value(self.config.clone()).unwrap_or_default()
    }
}

/// The settings of a measured run as stored in its row: what was sent, how
/// often and against which objectives. Written by `run`, by every sweep and
/// demo level, and read by `runs show`, `compare`, the report and the
/// dashboard. Every key is optional so that configs written by older
/// versions read back; absent keys are not written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Measured requests asked for (warm-up not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// Closed loop: the number of agents. Versions before the typed config
    /// stored sweep levels as floats (`4.0`); both read back.
    #[serde(default, deserialize_with = "whole_number", skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The most requests allowed in flight (closed loop: the concurrency).
    #[serde(default, deserialize_with = "whole_number", skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Open loop: requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    /// Open loop: the gamma shape of the arrivals (1 = Poisson).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burstiness: Option<f64>,
    /// Open loop: the `--arrivals` schedule (stages or a trace) when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<String>,
    /// `--ramp` as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<String>,
    /// The sweep (or demo) group this run is a level of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
    /// The hardware in words, where the tool knows it (the simulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<String>,
    /// Measured against fleetbench's own simulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<bool>,
    /// The backend ran this many times faster than the hardware it models;
    /// stored figures are in modelled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_scale: Option<f64>,
    /// Connections opened (and kept alive) before the run's clock started,
    /// so that its first requests did not wait for TCP's handshake: how many
    /// of the `GET /models` requests that opened them were answered. Absent:
    /// none were (`--no-preconnect`, or an open loop without a bound on
    /// requests in flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preconnect: Option<u64>,
    /// Imported runs: the file they came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    /// Imported runs: the publishing tool (`local-llm-bench`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Imported runs: the run number within the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<u32>,
    /// Imported runs: the wall time the file gives for the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_wall_seconds: Option<f64>,
}

/// A whole number stored as an integer or as an integral float.
fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v: Option<f64> = Option::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(x) if x.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&x) => Ok(Some(x as u32)),
        Some(x) => Err(serde::de::Error::custom(format!("{x} is not a whole number"))),
    }
}

/// Removes `user:password@` from a URL and any query string, so that what is
/// stored and printed never carries credentials.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(host_end);
    let authority = match authority.rfind('@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    let path = match path.find('?') {
        Some(i) => &path[..i],
        None => path,
    };
    format!("{scheme}{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(redact_url("https://user:s3cret@api.example.com/v1?key=abc"), "https://api.example.com/v1");
        assert_eq!(redact_url("http://127.0.0.1:8000/v1"), "http://127.0.0.1:8000/v1");
    }

    #[test]
    fn configs_of_older_versions_read_back() {
        // Sweep levels were stored with float concurrency before the typed config.
        let old = serde_json::json!({"concurrency": 2.0, "max_concurrency": 2.0, "sweep": "g", "level_index": 1,
            "slo": {"ttft_ms": 500.0, "tpot_ms": null, "e2el_ms": null}, "temperature": null, "duration_s": null});
        let c: RunConfig = serde_json::from_value(old).expect("reads");
        assert_eq!((c.concurrency, c.max_concurrency, c.level_index), (Some(2), Some(2), Some(1)));
        assert_eq!(c.slo.and_then(|s| s.ttft_ms), Some(500.0));
        assert_eq!(c.temperature, None);
        let bad = serde_json::json!({"concurrency": 2.5});
        assert!(serde_json::from_value::<RunConfig>(bad).is_err());
        let arena = serde_json::json!({"kind": "aiops-arena", "episodes": 24});
        assert_eq!(
            serde_json::from_value::<RunConfig>(arena).expect("other kinds read as empty"),
            RunConfig::default()
        );
        let written = serde_json::to_value(RunConfig { concurrency: Some(4), ..Default::default() }).expect("json");
        assert_eq!(written, serde_json::json!({"concurrency": 4}));
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["running", "completed", "error_rate_exceeded", "interrupted", "failed", "incomplete"] {
            assert_eq!(RunStatus::parse(s).unwrap().as_str(), s);
        }
    }
}
