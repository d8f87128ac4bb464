//! The one interface between an episode's tools and whoever calls them: an
//! HTTP model through tool calls, the MCP server, or a built-in investigator.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::Value;

/// Every tool an operator may call, in the order they are offered.
pub const TOOL_NAMES: [&str; 6] =
    ["promql_query", "promql_range", "kernel_log", "topology", "runbook", "submit_diagnosis"];

/// One tool as offered to an operator: its name, what it does, and the JSON
/// Schema of its arguments (the shape OpenAI `tools`, Anthropic `tools` and
/// MCP `tools/list` all take).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: String,
    pub parameters: Value,
}

/// What one tool call returns.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolReply {
    /// The tool's output, already bounded in size, shown to the operator.
    Output(String),
    /// A malformed or refused call: the text is shown to the operator so it
    /// can correct itself, and the call is counted as an error.
    Error(String),
    /// `submit_diagnosis` was called: the episode ends with this answer (the
    /// arguments as submitted; the scorer parses and validates them).
    Submitted(Value),
}

/// The future a tool call returns.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = ToolReply> + Send + 'a>>;

/// The tools of one episode.
pub trait Toolset: Send + Sync {
    /// The tools offered, in [`TOOL_NAMES`] order.
    fn specs(&self) -> Vec<ToolSpec>;
    /// The episode's opening message: the alert (Alertmanager's shape), the
    /// window, and what a diagnosis must contain.
    fn briefing(&self) -> String;
    /// Run one call. Arguments are untrusted: every tool parses and bounds
    /// them and answers [`ToolReply::Error`] rather than failing.
    fn call<'a>(&'a self, name: &'a str, arguments: &'a Value) -> ToolFuture<'a>;
}

/// What one investigation may spend; past any of these it ends unanswered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub tool_calls: u32,
    pub tokens: u64,
    pub deadline: std::time::Duration,
}

/// Why an investigation ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Ended {
    /// `submit_diagnosis` was called.
    Submitted,
    OverToolCalls,
    OverTokens,
    OverDeadline,
    /// The operator stopped without submitting.
    NoSubmission,
    /// The backend failed (transport error, refused request); the text says how.
    Failed(String),
}

/// One episode's investigation, whoever ran it (a model over HTTP, an MCP
/// client, a built-in investigator).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Investigation {
    /// The `submit_diagnosis` arguments, when submitted within budget.
    pub submitted: Option<Value>,
    /// Every message and tool call in order, as JSON objects.
    pub transcript: Vec<Value>,
    pub tool_calls: u32,
    /// Calls answered with [`ToolReply::Error`] (malformed or refused).
    pub tool_errors: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// From the alert to the submission (or the end), seconds.
    pub wall_s: f64,
    pub ended: Ended,
}

impl Investigation {
    /// An investigation with nothing in it yet, ended as `ended` says.
    pub fn empty(ended: Ended) -> Investigation {
        Investigation {
            submitted: None,
            transcript: Vec::new(),
            tool_calls: 0,
            tool_errors: 0,
            input_tokens: 0,
            output_tokens: 0,
            wall_s: 0.0,
            ended,
        }
    }
}
