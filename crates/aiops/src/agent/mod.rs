//! The investigation loop: an HTTP model investigates one episode through
//! tool calls. The system prompt and the toolset's briefing open the
//! conversation, the toolset's specs are offered as tools, each call the
//! model makes runs through [`Toolset::call`] and its result is fed back,
//! until the model calls `submit_diagnosis` or a budget runs out.
//!
//! Every request goes through the one client (`fleetbench_client::Client`),
//! so timeouts, retries on 429, the error taxonomy and secret redaction are
//! those of a run. The model's output and its tool arguments are untrusted:
//! a call to an unknown tool or with arguments that are not a JSON object
//! is answered with an error the model can read, and counted.

pub(crate) mod transcript;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use fleetbench_client::tools::{Tools, ToolsError};
use fleetbench_client::{Client, ClientConfig, ClientError};
use fleetbench_core::{ApiKind, Prompt, RequestSpec, RunClock, SamplingParams};
use fleetbench_load::exposition::LiveMetrics;
use serde_json::{json, Value};
use tokio::time::{timeout_at, Instant};

use crate::investigate::{Budget, Ended, Investigation, ToolReply, Toolset};
use transcript::Transcript;
use wire::ToolResult;

pub use transcript::{MAX_ENTRY_CHARS, MAX_TRANSCRIPT_BYTES};

/// What the operator is told before the briefing.
pub const SYSTEM_PROMPT: &str = "You are the on-call operator of a GPU fleet. An alert has fired. \
Investigate it with the tools (metrics through PromQL, kernel logs, the topology, the runbook), then call \
submit_diagnosis exactly once with your diagnosis. Look before you conclude: alerts can be noise, and the \
loudest signal is not always the cause. Every tool call counts against a budget.";

/// The reminder sent once when the model answers without calling a tool.
pub const REMINDER: &str =
    "No tool was called. Continue the investigation with the tools, or call submit_diagnosis to finish.";

/// How many answers without a tool call are tolerated before the
/// investigation ends unanswered.
pub const REMINDERS: u32 = 1;

/// How to reach the model that investigates.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The backend: URL, API (`chat` or `anthropic`), model, key, timeouts,
    /// retries. Its `tools`, `stream` and `keep_output_text` are set by the loop.
    pub client: ClientConfig,
    /// Most output tokens asked for in one turn (less when the token budget
    /// has less left).
    pub max_tokens_per_turn: u32,
    pub temperature: Option<f32>,
    /// Live figures every turn's request is counted in (`--metrics-listen`).
    pub metrics: Option<Arc<LiveMetrics>>,
}

impl AgentConfig {
    pub fn new(client: ClientConfig) -> AgentConfig {
        AgentConfig { client, max_tokens_per_turn: 1024, temperature: Some(0.0), metrics: None }
    }
}

/// Why an investigation could not start (a failure during one ends it as
/// [`Ended::Failed`] instead).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("investigations need --api chat or anthropic (the completions API has no tool calls)")]
    Api,
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the toolset's specs are not valid tools: {0}")]
    Tools(#[from] ToolsError),
}

/// Runs one investigation of `tools`' episode by the model behind `cfg`,
/// within `budget`.
pub async fn investigate(cfg: &AgentConfig, tools: &dyn Toolset, budget: Budget) -> Result<Investigation, AgentError> {
    let api = cfg.client.api;
    if api == ApiKind::Completions {
        return Err(AgentError::Api);
    }
    let specs = tools.specs();
    let names: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
    let mut client_cfg = cfg.client.clone();
    client_cfg.tools = Some(Arc::new(Tools::from_openai(wire::tools_array(&specs))?));
    client_cfg.keep_output_text = true;
    client_cfg.stream = true;
    let client = Client::new(client_cfg)?;

    let started = Instant::now();
    let deadline = started + budget.deadline;
    let clock = RunClock::start();
    let briefing = tools.briefing();
    let mut messages = wire::opening(SYSTEM_PROMPT, &briefing);
    let mut run = Run { transcript: Transcript::default(), tool_calls: 0, tool_errors: 0, input: 0, output: 0 };
    for m in &messages {
        run.transcript.push(m.clone());
    }
    let mut reminders = 0;
    let mut turn = 0u64;
    let ended = loop {
        // Checked here as well as by the timeouts below: a timer fires on
        // the next millisecond tick, and a local turn can be quicker.
        if Instant::now() >= deadline {
            break Ended::OverDeadline;
        }
        let used = run.input + run.output;
        if used >= budget.tokens {
            break Ended::OverTokens;
        }
        let spec = RequestSpec {
            id: format!("turn-{turn}"),
            prompt: Prompt::Native(messages.clone()),
            sampling: SamplingParams {
                max_tokens: Some(cfg.max_tokens_per_turn.min(u32::try_from(budget.tokens - used).unwrap_or(u32::MAX))),
                temperature: cfg.temperature,
                ..Default::default()
            },
            expected_input_tokens: None,
            label: None,
            context: Default::default(),
        };
        turn += 1;
        let metrics = cfg.metrics.as_deref();
        if let Some(m) = metrics {
            m.sent();
        }
        let Ok(rec) = timeout_at(deadline, client.send(&spec, &clock, clock.now())).await else {
            if let Some(m) = metrics {
                m.abandoned();
            }
            break Ended::OverDeadline;
        };
        if let Some(m) = metrics {
            m.observe(&rec);
        }
        if let Some(e) = &rec.error {
            break Ended::Failed(format!("{}: {}", e.label(), e.message));
        }
        run.input += rec.input_tokens.unwrap_or(0);
        run.output += rec.output_tokens;
        let text = rec.output_text.clone().unwrap_or_default();
        let calls: Vec<_> = rec
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.clone();
                if c.id.is_empty() {
                    c.id = format!("call_{turn}_{i}");
                }
                let args = c.arguments_object();
                (c, args)
            })
            .collect();
        run.transcript.push(json!({
            "role": "assistant",
            "content": text,
            "tool_calls": calls.iter().map(|(c, _)| json!({"id": c.id, "name": c.name, "arguments": c.arguments})).collect::<Vec<_>>(),
            "input_tokens": rec.input_tokens,
            "output_tokens": rec.output_tokens,
            "t_s": started.elapsed().as_secs_f64(),
        }));
        if run.input + run.output > budget.tokens {
            break Ended::OverTokens;
        }
        if calls.is_empty() {
            if reminders >= REMINDERS {
                break Ended::NoSubmission;
            }
            reminders += 1;
            messages.push(wire::assistant(api, &text, &[]));
            messages.push(wire::user(REMINDER));
            run.transcript.push(wire::user(REMINDER));
            continue;
        }
        let shown: Vec<_> = calls.iter().map(|(c, a)| (c, a.clone().unwrap_or_default())).collect();
        messages.push(wire::assistant(api, &text, &shown));
        match run.calls(tools, &names, &calls, budget, deadline).await {
            Step::Continue(results) => messages.extend(wire::results(api, results)),
            Step::End(ended, submitted) => {
                return Ok(run.finish(ended, submitted, started.elapsed()));
            }
        }
    };
    Ok(run.finish(ended, None, started.elapsed()))
}

/// What one turn's calls led to.
enum Step {
    Continue(Vec<ToolResult>),
    End(Ended, Option<Value>),
}

/// The tallies of one investigation so far.
struct Run {
    transcript: Transcript,
    tool_calls: u32,
    tool_errors: u32,
    input: u64,
    output: u64,
}

impl Run {
    /// Runs one turn's calls in order; a submission ends the turn (later
    /// calls of the same turn are not run).
    async fn calls(
        &mut self,
        tools: &dyn Toolset,
        names: &[&str],
        calls: &[(fleetbench_core::ToolCall, Option<serde_json::Map<String, Value>>)],
        budget: Budget,
        deadline: Instant,
    ) -> Step {
        let mut results = Vec::with_capacity(calls.len());
        for (c, args) in calls {
            if self.tool_calls >= budget.tool_calls {
                return Step::End(Ended::OverToolCalls, None);
            }
            if Instant::now() >= deadline {
                return Step::End(Ended::OverDeadline, None);
            }
            self.tool_calls += 1;
            let reply = match args {
                _ if !names.contains(&c.name.as_str()) => ToolReply::Error(format!(
                    "unknown tool '{}'; the tools are: {}",
                    transcript::cut(&c.name, 64),
                    names.join(", ")
                )),
                None => ToolReply::Error(format!(
                    "the arguments of {} are not a JSON object: {}",
                    c.name,
                    transcript::cut(&c.arguments, 200)
                )),
                Some(a) => {
                    let a = Value::Object(a.clone());
                    match timeout_at(deadline, tools.call(&c.name, &a)).await {
                        Ok(r) => r,
                        Err(_) => return Step::End(Ended::OverDeadline, None),
                    }
                }
            };
            let (text, is_error) = match reply {
                ToolReply::Submitted(v) => {
                    self.transcript
                        .push(json!({"role": "tool", "tool_call_id": c.id, "name": c.name, "content": "submitted"}));
                    return Step::End(Ended::Submitted, Some(v));
                }
                ToolReply::Output(t) => (t, false),
                ToolReply::Error(t) => {
                    self.tool_errors += 1;
                    (format!("error: {t}"), true)
                }
            };
            self.transcript.push(json!({
                "role": "tool", "tool_call_id": c.id, "name": c.name, "content": text, "error": is_error,
            }));
            results.push(ToolResult { id: c.id.clone(), text, is_error });
        }
        Step::Continue(results)
    }

    fn finish(self, ended: Ended, submitted: Option<Value>, wall: Duration) -> Investigation {
        Investigation {
            submitted,
            transcript: self.transcript.into_entries(),
            tool_calls: self.tool_calls,
            tool_errors: self.tool_errors,
            input_tokens: self.input,
            output_tokens: self.output,
            wall_s: wall.as_secs_f64(),
            ended,
        }
    }
}
