//! What to send: one request's prompt and sampling parameters, independent of
//! the wire protocol the client will speak.

use serde::{Deserialize, Serialize};

/// The wire protocol a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ApiKind {
    /// OpenAI `/v1/chat/completions`.
    Chat,
    /// OpenAI `/v1/completions` (raw prompt).
    Completions,
    /// Anthropic `/v1/messages`.
    Anthropic,
}

impl ApiKind {
    /// Every kind, by its name on the command line and in files.
    pub const ALL: [ApiKind; 3] = [ApiKind::Chat, ApiKind::Completions, ApiKind::Anthropic];

    /// The kind named `s` (`chat`, `completions`, `anthropic`).
    pub fn parse(s: &str) -> Option<ApiKind> {
        ApiKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::Chat => "chat",
            ApiKind::Completions => "completions",
            ApiKind::Anthropic => "anthropic",
        }
    }
}

impl std::fmt::Display for ApiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The prompt of a request: chat messages or raw text. A client converts one
/// into the other when the API needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    Messages(Vec<ChatMessage>),
    Text(String),
    /// Messages already in the wire shape of the API they go to (OpenAI
    /// `messages` with `tool_calls` and `tool` results, or Anthropic
    /// messages with content blocks), sent as they are; a leading
    /// `{"role": "system", "content": TEXT}` moves to Anthropic's `system`.
    /// Built by callers that hold a conversation with tools.
    Native(Vec<serde_json::Value>),
}

impl Prompt {
    /// The prompt as one text (messages joined by blank lines), for raw
    /// completion APIs.
    pub fn as_text(&self) -> String {
        match self {
            Prompt::Text(t) => t.clone(),
            Prompt::Messages(ms) => ms.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n\n"),
            Prompt::Native(_) => self.as_messages().into_iter().map(|m| m.content).collect::<Vec<_>>().join("\n\n"),
        }
    }

    /// The prompt as chat messages (raw text becomes one user message).
    pub fn as_messages(&self) -> Vec<ChatMessage> {
        match self {
            Prompt::Messages(ms) => ms.clone(),
            Prompt::Text(t) => vec![ChatMessage { role: "user".into(), content: t.clone() }],
            Prompt::Native(ms) => ms
                .iter()
                .map(|m| ChatMessage {
                    role: m.get("role").and_then(serde_json::Value::as_str).unwrap_or("user").to_string(),
                    content: match m.get("content") {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    },
                })
                .collect(),
        }
    }

    /// Characters in the prompt, a cheap size hint.
    pub fn char_len(&self) -> usize {
        match self {
            Prompt::Text(t) => t.len(),
            Prompt::Messages(ms) => ms.iter().map(|m| m.content.len()).sum(),
            Prompt::Native(ms) => ms.iter().map(|m| m.to_string().len()).sum(),
        }
    }
}

/// Sampling parameters shared by every request of a run unless the workload
/// overrides them per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SamplingParams {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub ignore_eos: bool,
    pub seed: Option<u64>,
}

/// One request to send: a workload produces these, the client sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSpec {
    /// Caller-chosen identifier (from a JSONL file's `id`, or generated).
    pub id: String,
    pub prompt: Prompt,
    pub sampling: SamplingParams,
    /// Expected prompt size in tokens when the workload knows it.
    pub expected_input_tokens: Option<u32>,
    /// A label for grouping (task type, scenario); free text.
    pub label: Option<String>,
    /// Where the request sits among shared prefixes and conversations
    /// (empty for workloads without either).
    #[serde(default, skip_serializing_if = "RequestContext::is_empty")]
    pub context: RequestContext,
}

/// What a workload says about a request beyond its text: the shared prefix
/// it opens with, the conversation and turn it belongs to, and how many of
/// its prompt tokens came before this turn's new text. Stored with the
/// request's record so that a run can be cut by group or turn afterwards, and
/// read by the simulator to account for prefix caching.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestContext {
    /// Identifier of the shared prefix (system prompt) the request opens with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_group: Option<String>,
    /// Tokens of that shared prefix (approximate, as the workload built it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_tokens: Option<u32>,
    /// Identifier of the conversation (user) the request belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    /// 0-based turn within the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// Prompt tokens before this turn's new text: the shared prefix plus the
    /// conversation's history (equal to `prefix_tokens` on a first turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u32>,
    /// Session workloads (agent sessions, conversation sets): the turns the
    /// request's session was planned to have, so that a session whose every
    /// turn is recorded counts as completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_turns: Option<u32>,
    /// A model mix (`--model a,b,c`): the served model or adapter the
    /// request goes to, instead of the client's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The history's earlier answers are text the server did not generate
    /// as these tokens (seeded stand-ins; inference-perf's multi-turn users
    /// send the real answer joined to the prompt with a space, which
    /// tokenizes differently from its first token on): a server's prefix
    /// cache finds the earlier prompts, not the answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stand_in_answers: bool,
}

impl RequestContext {
    pub fn is_empty(&self) -> bool {
        *self == RequestContext::default()
    }
}
