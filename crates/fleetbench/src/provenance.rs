//! Where a run came from: the tool's version, the command line as typed
//! (credentials removed), the host, and the new run row that carries them.

use std::time::SystemTime;

use fleetbench_client::Client;
use fleetbench_core::run::redact_url;
use fleetbench_core::units::rfc3339;
use fleetbench_core::{RunMeta, RunStatus};

/// The command line as typed, with credentials removed from anything that
/// looks like a URL and shell-quoted where needed.
pub fn command_line() -> String {
    redact_tokens(std::env::args())
        .map(|a| {
            let a = if a.contains("://") { redact_url(&a) } else { a };
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The value of every `--...token` option (`--token T`, `--dashboard-token=T`)
/// replaced by `***`: tokens never reach a run row.
fn redact_tokens(args: impl Iterator<Item = String>) -> impl Iterator<Item = String> {
    let mut hide_next = false;
    args.map(move |a| {
        if std::mem::take(&mut hide_next) {
            return "***".to_string();
        }
        match a.split_once('=') {
            Some((flag, _)) if flag.starts_with("--") && flag.ends_with("token") => format!("{flag}=***"),
            None if a.starts_with("--") && a.ends_with("token") => {
                hide_next = true;
                a
            }
            _ => a,
        }
    })
}

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A new run's row, started now by this process, sent to `backend_url`
/// (credentials removed here) for `model` over `api`: the tool, the command
/// line and the host filled in, status running. The caller fills in the
/// workload, schedule and config.
pub fn run_meta(backend_url: &str, model: &str, api: &str) -> RunMeta {
    RunMeta {
        id: 0,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: command_line(),
        host: hostname(),
        backend_url: redact_url(backend_url),
        model: model.to_string(),
        api: api.to_string(),
        workload: String::new(),
        schedule: String::new(),
        started_at: rfc3339(SystemTime::now()),
        ended_at: None,
        status: RunStatus::Running,
        config: serde_json::Value::Null,
        pid: Some(std::process::id()),
        group: None,
    }
}

/// A new run's row for requests sent through `client`.
pub fn client_meta(client: &Client) -> RunMeta {
    let c = client.config();
    run_meta(&c.base_url, &c.model, c.api.as_str())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_never_reach_the_command_line() {
        let args = ["fleetbench", "aiops", "mcp", "--token", "s3cret", "--dashboard-token=abc", "--name", "x"];
        let shown: Vec<String> = super::redact_tokens(args.iter().map(|a| a.to_string())).collect();
        assert_eq!(shown, ["fleetbench", "aiops", "mcp", "--token", "***", "--dashboard-token=***", "--name", "x"]);
    }
}
