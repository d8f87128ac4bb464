//! What the load crate's tests share.

use fleetbench_core::{RunMeta, RunStatus};

/// A new run row's template against `url`, as a command fills it before
/// measuring.
pub fn meta(url: &str) -> RunMeta {
    RunMeta {
        id: 0,
        tool_version: "0.1.0".into(),
        command_line: "fleetbench run".into(),
        host: "h".into(),
        backend_url: url.into(),
        model: "m".into(),
        api: "chat".into(),
        workload: "w".into(),
        schedule: "s".into(),
        started_at: "2026-12-01T00:00:00Z".into(),
        ended_at: None,
        status: RunStatus::Running,
        config: serde_json::json!({}),
        pid: None,
        group: None,
    }
}
