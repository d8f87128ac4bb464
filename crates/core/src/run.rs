//! What a run was: the metadata stored with every run and printed beside
//! every report.

use serde::{Deserialize, Serialize};

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
    /// Free-form settings (JSON) a reader needs to reproduce the run.
    pub config: serde_json::Value,
    /// Process that owns a `running` run, to tell `incomplete` apart.
    pub pid: Option<u32>,
    /// Group a run belongs to (a sweep or demo), if any.
    pub group: Option<String>,
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
    fn statuses_round_trip() {
        for s in ["running", "completed", "error_rate_exceeded", "interrupted", "failed", "incomplete"] {
            assert_eq!(RunStatus::parse(s).unwrap().as_str(), s);
        }
    }
}
