//! The run as one JSON object: every key of [`RunMetrics`] (vLLM's names
//! where vLLM has one) plus the run's metadata.

use fleetbench_core::{RunMeta, RunMetrics};
use serde_json::{json, Value};

/// The `--json-out` document of a run.
pub fn run_json(meta: &RunMeta, metrics: &RunMetrics) -> Value {
    let mut v = serde_json::to_value(metrics).unwrap_or_else(|_| json!({}));
    if let Value::Object(o) = &mut v {
        o.insert("run_id".into(), json!(meta.id));
        o.insert("date".into(), json!(meta.started_at));
        o.insert("backend".into(), json!(meta.api));
        o.insert("base_url".into(), json!(meta.backend_url));
        o.insert("model_id".into(), json!(meta.model));
        o.insert("workload".into(), json!(meta.workload));
        o.insert("schedule".into(), json!(meta.schedule));
        o.insert("status".into(), json!(meta.status.as_str()));
        o.insert("tool".into(), json!(format!("fleetbench {}", meta.tool_version)));
        o.insert("command".into(), json!(meta.command_line));
        o.insert("host".into(), json!(meta.host));
        o.insert("num_prompts".into(), json!(metrics.sent));
        // vLLM's keys: max_concurrency always (null when unbounded), the
        // arrival rate and its burstiness for open loops.
        let c = meta.run_config();
        o.insert("max_concurrency".into(), json!(c.max_concurrency));
        if let Some(r) = c.request_rate {
            o.insert("request_rate".into(), json!(r));
        }
        if let Some(b) = c.burstiness {
            o.insert("burstiness".into(), json!(b));
        }
        // 1 for a backend in real time; above 1 the backend (a simulator)
        // ran that much faster than modelled and every figure was rescaled.
        o.insert("time_scale".into(), json!(c.time_scale.unwrap_or(1.0)));
        o.insert("config".into(), meta.config.clone());
    }
    v
}
