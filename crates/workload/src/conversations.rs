//! Conversation sets from files: `conversations:FILE[,replay=dataset|model]`.
//! Each conversation becomes a session ([`crate::session`]): its user turns
//! are sent in order, each with the whole history; the answers carried into
//! the history are the dataset's own (`replay=dataset`, the default) or the
//! model's (`replay=model`). Nothing is downloaded: FILE is yours.
//!
//! Formats, told apart by the first non-blank character: a JSON array of
//! ShareGPT records (`{"id": ..., "conversations": [{"from": "human", "value":
//! "..."}, {"from": "gpt", ...}]}`), or JSONL with one such record per line.
//! A record may give `messages` (`{"role": "user", "content": "..."}`)
//! instead of `conversations`. Roles: `system` (opening messages), `human`
//! or `user`, `gpt`, `assistant` or `chatgpt`. A malformed file is rejected
//! with the line the bad record starts on and what was wrong.

use std::path::PathBuf;

use fleetbench_core::{ChatMessage, RequestSpec, SamplingParams};
use serde::Deserialize;
use serde_json::Value;

use crate::session::{SessionPlan, TurnPlan};
use crate::workload::{Workload, WorkloadError};

/// Output tokens of a turn whose dataset answer is missing, unless the run sets `--max-tokens`.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 256;

/// Whose answers go into the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// The dataset's assistant turns.
    Dataset,
    /// The model's own answers.
    Model,
}

/// A parsed `conversations:...` value.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationsSpec {
    pub path: PathBuf,
    pub replay: Replay,
}

impl ConversationsSpec {
    /// Parses the part after `conversations:`.
    pub fn parse(rest: &str) -> Result<ConversationsSpec, String> {
        let mut parts = rest.split(',');
        let path = parts.next().map(str::trim).filter(|p| !p.is_empty()).ok_or("give the file: conversations:FILE")?;
        let mut replay = Replay::Dataset;
        for part in parts.map(str::trim).filter(|p| !p.is_empty()) {
            replay = match part {
                "replay=dataset" => Replay::Dataset,
                "replay=model" => Replay::Model,
                other => return Err(format!("'{other}': the only option is replay=dataset or replay=model")),
            };
        }
        Ok(ConversationsSpec { path: PathBuf::from(path), replay })
    }

    pub fn describe(&self) -> String {
        let r = match self.replay {
            Replay::Dataset => "dataset",
            Replay::Model => "model",
        };
        format!("conversations:{},replay={r}", self.path.display())
    }
}

/// One conversation as read: its opening messages and (user, answer) turns.
#[derive(Debug, Clone, PartialEq)]
struct Conversation {
    id: String,
    opening: Vec<ChatMessage>,
    turns: Vec<(String, Option<String>)>,
}

#[derive(Deserialize)]
struct Record {
    id: Option<Value>,
    conversations: Option<Vec<Turn>>,
    messages: Option<Vec<Turn>>,
}

#[derive(Deserialize)]
struct Turn {
    #[serde(alias = "role")]
    from: String,
    #[serde(alias = "content")]
    value: String,
}

/// Tokens of a text, at four characters a token.
fn tokens(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4).max(1)
}

/// The conversation set, loaded.
#[derive(Debug, Clone)]
pub struct Conversations {
    spec: ConversationsSpec,
    items: Vec<Conversation>,
}

impl Conversations {
    pub fn load(spec: &ConversationsSpec) -> Result<Conversations, WorkloadError> {
        let path = &spec.path;
        let text =
            std::fs::read_to_string(path).map_err(|source| WorkloadError::Read { path: path.clone(), source })?;
        let bad = |line: usize, why: String| WorkloadError::Line { path: path.clone(), line, why };
        let mut items = Vec::new();
        if text.trim_start().starts_with('[') {
            let all: Vec<Value> = serde_json::from_str(&text)
                .map_err(|e| bad(e.line(), format!("not a JSON array of conversations: {e}")))?;
            let lines = element_lines(&text);
            for (i, v) in all.into_iter().enumerate() {
                let line = lines.get(i).copied().unwrap_or(1);
                items.push(conversation(v, i).map_err(|why| bad(line, why))?);
            }
        } else {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value =
                    serde_json::from_str(line).map_err(|e| bad(i + 1, format!("not a JSON conversation: {e}")))?;
                items.push(conversation(v, items.len()).map_err(|why| bad(i + 1, why))?);
            }
        }
        if items.is_empty() {
            return Err(WorkloadError::Empty(path.clone()));
        }
        Ok(Conversations { spec: spec.clone(), items })
    }

    /// How many conversations the file holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Session `index`: conversation `index mod n`, in file order.
    pub fn plan(&self, index: u64) -> SessionPlan {
        let n = self.items.len() as u64;
        let c = &self.items[(index % n) as usize];
        let id = if index < n { format!("conv-{}", c.id) } else { format!("conv-{}#{}", c.id, index / n) };
        let turns = c
            .turns
            .iter()
            .map(|(user, answer)| TurnPlan {
                text: user.clone(),
                tokens: tokens(user),
                output: answer.as_deref().map(tokens).unwrap_or(DEFAULT_OUTPUT_TOKENS),
                think: std::time::Duration::ZERO,
                answer: match self.spec.replay {
                    Replay::Dataset => Some(answer.clone().unwrap_or_default()),
                    Replay::Model => None,
                },
            })
            .collect();
        SessionPlan {
            id,
            label: None,
            opening_tokens: c.opening.iter().map(|m| tokens(&m.content)).sum(),
            opening: c.opening.clone(),
            prefix_group: None,
            turns,
        }
    }
}

/// A record to a conversation; the error says what was wrong with it.
fn conversation(v: Value, index: usize) -> Result<Conversation, String> {
    let r: Record = serde_json::from_value(v).map_err(|e| format!("not a conversation record: {e}"))?;
    let id = match r.id {
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => index.to_string(),
    };
    let messages = match (r.conversations, r.messages) {
        (Some(c), None) | (None, Some(c)) => c,
        _ => return Err("give exactly one of \"conversations\" (ShareGPT) or \"messages\"".into()),
    };
    let mut c = Conversation { id, opening: Vec::new(), turns: Vec::new() };
    for (k, m) in messages.into_iter().enumerate() {
        match m.from.as_str() {
            "system" if c.turns.is_empty() => c.opening.push(ChatMessage { role: "system".into(), content: m.value }),
            "system" => return Err(format!("message {k}: a system message after the first user turn")),
            "human" | "user" => c.turns.push((m.value, None)),
            "gpt" | "assistant" | "chatgpt" | "bard" | "bing" => match c.turns.last_mut() {
                Some((_, answer @ None)) => *answer = Some(m.value),
                Some(_) => return Err(format!("message {k}: two answers in a row")),
                None => return Err(format!("message {k}: an answer before any user turn")),
            },
            other => return Err(format!("message {k}: unknown role '{other}' (system, human/user, gpt/assistant)")),
        }
    }
    if c.turns.is_empty() {
        return Err("no user turn".into());
    }
    Ok(c)
}

/// The line each element of a top-level JSON array starts on.
fn element_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut line, mut depth) = (1, 0i32);
    let (mut in_string, mut escaped, mut in_bare) = (false, false, false);
    for ch in text.chars() {
        if ch == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        let starts = depth == 1 && !in_bare && !ch.is_whitespace() && !matches!(ch, ',' | ']' | '}');
        if starts {
            lines.push(line);
        }
        in_bare = depth == 1 && !ch.is_whitespace() && !matches!(ch, ',' | ']' | '}' | '[' | '{' | '"');
        match ch {
            '"' => in_string = true,
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    lines
}

impl Workload for Conversations {
    /// Turn 0 of session `index` (a session workload's sender builds the
    /// rest through [`Workload::session`]).
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        self.plan(index).request(0, &[], 0, sampling)
    }

    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn distinct_requests(&self) -> Option<u64> {
        Some(self.items.len() as u64)
    }

    fn session(&self, index: u64) -> Option<SessionPlan> {
        Some(self.plan(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    fn load(name: &str, replay: Replay) -> Conversations {
        Conversations::load(&ConversationsSpec { path: fixture(name), replay }).unwrap()
    }

    #[test]
    fn grammar() {
        let s = ConversationsSpec::parse("a.json,replay=model").unwrap();
        assert_eq!((s.path, s.replay), (PathBuf::from("a.json"), Replay::Model));
        assert_eq!(ConversationsSpec::parse("a.jsonl").unwrap().replay, Replay::Dataset);
        assert!(ConversationsSpec::parse("").unwrap_err().contains("FILE"));
        assert!(ConversationsSpec::parse("a.json,replay=both").unwrap_err().contains("replay=model"));
    }

    #[test]
    fn sharegpt_json_and_jsonl_read_alike() {
        let a = load("sharegpt-small.json", Replay::Dataset);
        let b = load("sharegpt-small.jsonl", Replay::Dataset);
        assert_eq!(a.len(), 4);
        assert_eq!(a.items, b.items);
        let p = a.plan(0);
        assert_eq!(p.id, "conv-deploy-1");
        assert_eq!(p.opening.len(), 1);
        assert_eq!(p.turns.len(), 3);
        assert!(p.turns.iter().all(|t| t.answer.is_some()));
        assert_eq!(p.turns[0].output, tokens(p.turns[0].answer.as_deref().unwrap()));
        // The last user turn has no answer in the dataset: an empty one, and the default output.
        let last = &a.plan(3).turns;
        assert_eq!(last.last().unwrap().answer.as_deref(), Some(""));
        assert_eq!(last.last().unwrap().output, DEFAULT_OUTPUT_TOKENS);
        // Sessions cycle through the set with distinct ids.
        assert_eq!(a.plan(4).id, "conv-deploy-1#1");
        assert!(load("sharegpt-small.json", Replay::Model).plan(0).turns.iter().all(|t| t.answer.is_none()));
    }

    #[test]
    fn malformed_files_name_the_line() {
        let dir = std::env::temp_dir().join(format!("fb-conv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("a.jsonl", "{\"conversations\":[{\"from\":\"human\",\"value\":\"hi\"}]}\n\n{oops\n", ":3:", "not a JSON"),
            (
                "b.jsonl",
                "{\"conversations\":[{\"from\":\"human\",\"value\":\"hi\"}]}\n{\"conversations\":[{\"from\":\"gpt\",\"value\":\"x\"}]}\n",
                ":2:",
                "answer before any user turn",
            ),
            ("c.jsonl", "{\"conversations\":[{\"from\":\"robot\",\"value\":\"x\"}]}\n", ":1:", "unknown role 'robot'"),
            ("d.json", "[\n  {\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}]},\n  {\"conversations\": []}\n]\n", ":3:", "no user turn"),
            ("e.json", "[\n  {\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}]},\n  {\"conversations\": [\n", ":4:", "JSON array"),
            ("f.jsonl", "{\"id\":1}\n", ":1:", "exactly one of"),
        ];
        for (name, body, line, says) in cases {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            let e =
                Conversations::load(&ConversationsSpec { path: p, replay: Replay::Dataset }).unwrap_err().to_string();
            assert!(e.contains(line) && e.contains(says), "{name}: {e}");
        }
        std::fs::write(dir.join("g.jsonl"), "\n").unwrap();
        let empty = ConversationsSpec { path: dir.join("g.jsonl"), replay: Replay::Model };
        assert!(matches!(Conversations::load(&empty), Err(WorkloadError::Empty(_))));
        std::fs::remove_dir_all(&dir).ok();
    }
}
