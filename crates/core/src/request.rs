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
}

impl Prompt {
    /// The prompt as one text (messages joined by blank lines), for raw
    /// completion APIs.
    pub fn as_text(&self) -> String {
        match self {
            Prompt::Text(t) => t.clone(),
            Prompt::Messages(ms) => ms.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n\n"),
        }
    }

    /// The prompt as chat messages (raw text becomes one user message).
    pub fn as_messages(&self) -> Vec<ChatMessage> {
        match self {
            Prompt::Messages(ms) => ms.clone(),
            Prompt::Text(t) => vec![ChatMessage { role: "user".into(), content: t.clone() }],
        }
    }

    /// Characters in the prompt, a cheap size hint.
    pub fn char_len(&self) -> usize {
        match self {
            Prompt::Text(t) => t.len(),
            Prompt::Messages(ms) => ms.iter().map(|m| m.content.len()).sum(),
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
}
