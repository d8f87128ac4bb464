//! Trace files: when each request arrived and how big it was.
//!
//! - `jsonl` (fleetbench's own): one object per line with `timestamp`
//!   (seconds), `input_tokens`, `output_tokens`, optional `conversation_id`,
//!   `prefix_group` and `prefix_tokens`;
//! - `mooncake`: Mooncake's JSONL (`timestamp` in milliseconds,
//!   `input_length`, `output_length`, `hash_ids` of 512-token blocks; the
//!   first block's hash becomes the prefix group);
//! - `burstgpt`: BurstGPT's CSV (`Timestamp` in seconds, `Request tokens`,
//!   `Response tokens`, other columns ignored);
//! - `azure`: the Azure LLM inference trace CSV (`TIMESTAMP` as
//!   `YYYY-MM-DD HH:MM:SS.fffffff`, `ContextTokens`, `GeneratedTokens`).
//!
//! Timestamps become seconds from the first request and must not go
//! backwards. A malformed line is rejected with its number and what was
//! wrong. [`TraceWorkload`] turns each entry into a prompt of its size.

use std::path::Path;
use std::sync::Arc;

use fleetbench_core::{ChatMessage, Prompt, RequestContext, RequestSpec, SamplingParams};
use serde::Deserialize;

use crate::text::{hash_str, mix, words};
use crate::workload::{Workload, WorkloadError};

/// Mooncake's KV block size in tokens.
const MOONCAKE_BLOCK_TOKENS: u32 = 512;

/// Which format a trace file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// Guess from the extension and the first line.
    Auto,
    Jsonl,
    Mooncake,
    BurstGpt,
    Azure,
}

impl TraceFormat {
    pub fn parse(s: &str) -> Option<TraceFormat> {
        Some(match s {
            "auto" => TraceFormat::Auto,
            "jsonl" => TraceFormat::Jsonl,
            "mooncake" => TraceFormat::Mooncake,
            "burstgpt" => TraceFormat::BurstGpt,
            "azure" => TraceFormat::Azure,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Auto => "auto",
            TraceFormat::Jsonl => "jsonl",
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::BurstGpt => "burstgpt",
            TraceFormat::Azure => "azure",
        }
    }

    fn sniff(path: &Path, first: &str) -> TraceFormat {
        let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if csv || !first.trim_start().starts_with('{') {
            if first.contains("ContextTokens") {
                return TraceFormat::Azure;
            }
            return TraceFormat::BurstGpt;
        }
        if first.contains("\"input_length\"") {
            TraceFormat::Mooncake
        } else {
            TraceFormat::Jsonl
        }
    }
}

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEntry {
    /// Seconds from the trace's first request.
    pub timestamp: f64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub conversation_id: Option<String>,
    pub prefix_group: Option<String>,
    pub prefix_tokens: Option<u32>,
    /// 0-based turn within the conversation (counted in file order).
    pub turn: Option<u32>,
    /// The previous turn's input and output, when the conversation goes on.
    pub context_tokens: Option<u32>,
}

/// A whole trace, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub source: String,
    pub format: TraceFormat,
    pub entries: Vec<TraceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeLine {
    timestamp: f64,
    input_tokens: u32,
    output_tokens: u32,
    #[serde(default)]
    conversation_id: Option<serde_json::Value>,
    #[serde(default)]
    prefix_group: Option<serde_json::Value>,
    #[serde(default)]
    prefix_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct MooncakeLine {
    timestamp: f64,
    input_length: u32,
    output_length: u32,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

fn id_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

impl Trace {
    pub fn load(path: &Path, format: TraceFormat) -> Result<Trace, WorkloadError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| WorkloadError::Read { path: path.to_path_buf(), source })?;
        Trace::parse(path, &text, format)
    }

    /// Parses a trace's text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str, format: TraceFormat) -> Result<Trace, WorkloadError> {
        let first = text.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).unwrap_or("");
        let format = match format {
            TraceFormat::Auto => TraceFormat::sniff(path, first),
            f => f,
        };
        let line_err = |line: usize, why: String| WorkloadError::Line { path: path.to_path_buf(), line, why };
        let mut rows: Vec<(usize, TraceEntry)> = Vec::new();
        match format {
            TraceFormat::Jsonl | TraceFormat::Mooncake | TraceFormat::Auto => {
                for (i, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let entry = if format == TraceFormat::Mooncake {
                        let m: MooncakeLine = serde_json::from_str(line)
                            .map_err(|e| line_err(i + 1, format!("not a Mooncake trace record: {e}")))?;
                        TraceEntry {
                            timestamp: m.timestamp / 1000.0,
                            input_tokens: m.input_length,
                            output_tokens: m.output_length,
                            conversation_id: None,
                            prefix_group: m.hash_ids.first().map(|h| format!("block{h}")),
                            prefix_tokens: m.hash_ids.first().map(|_| MOONCAKE_BLOCK_TOKENS.min(m.input_length)),
                            turn: None,
                            context_tokens: None,
                        }
                    } else {
                        let n: NativeLine = serde_json::from_str(line)
                            .map_err(|e| line_err(i + 1, format!("not a trace record: {e}")))?;
                        TraceEntry {
                            timestamp: n.timestamp,
                            input_tokens: n.input_tokens,
                            output_tokens: n.output_tokens,
                            conversation_id: n.conversation_id.map(id_text),
                            prefix_group: n.prefix_group.map(id_text),
                            prefix_tokens: n.prefix_tokens,
                            turn: None,
                            context_tokens: None,
                        }
                    };
                    rows.push((i + 1, entry));
                }
            }
            TraceFormat::BurstGpt | TraceFormat::Azure => {
                let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
                let Some((_, header)) = lines.next() else {
                    return Err(WorkloadError::Empty(path.to_path_buf()));
                };
                let cols: Vec<&str> = header.split(',').map(str::trim).collect();
                let names: [&str; 3] = if format == TraceFormat::Azure {
                    ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
                } else {
                    ["Timestamp", "Request tokens", "Response tokens"]
                };
                let mut at = [0usize; 3];
                for (k, name) in names.iter().enumerate() {
                    at[k] = cols.iter().position(|c| c == name).ok_or_else(|| {
                        line_err(1, format!("{} header lacks the column '{name}' (has: {header})", format.as_str()))
                    })?;
                }
                for (i, line) in lines {
                    let cells: Vec<&str> = line.split(',').map(str::trim).collect();
                    let cell = |k: usize| {
                        cells.get(at[k]).copied().ok_or_else(|| {
                            line_err(i + 1, format!("{} columns, the header has {}", cells.len(), cols.len()))
                        })
                    };
                    let count = |k: usize| -> Result<u32, WorkloadError> {
                        let c = cell(k)?;
                        c.parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite() && *v >= 0.0 && *v <= u32::MAX as f64)
                            .map(|v| v as u32)
                            .ok_or_else(|| line_err(i + 1, format!("{} is not a token count: '{c}'", names[k])))
                    };
                    let ts = cell(0)?;
                    let timestamp = if format == TraceFormat::Azure {
                        parse_datetime(ts).ok_or_else(|| {
                            line_err(i + 1, format!("TIMESTAMP '{ts}' is not YYYY-MM-DD HH:MM:SS[.fraction]"))
                        })?
                    } else {
                        ts.parse::<f64>()
                            .ok()
                            .filter(|v| v.is_finite())
                            .ok_or_else(|| line_err(i + 1, format!("Timestamp '{ts}' is not a number of seconds")))?
                    };
                    let entry = TraceEntry {
                        timestamp,
                        input_tokens: count(1)?,
                        output_tokens: count(2)?,
                        conversation_id: None,
                        prefix_group: None,
                        prefix_tokens: None,
                        turn: None,
                        context_tokens: None,
                    };
                    rows.push((i + 1, entry));
                }
            }
        }
        if rows.is_empty() {
            return Err(WorkloadError::Empty(path.to_path_buf()));
        }
        let t0 = rows[0].1.timestamp;
        let mut last = t0;
        let mut conversations: std::collections::HashMap<String, (u32, u32)> = std::collections::HashMap::new();
        let mut entries = Vec::with_capacity(rows.len());
        for (line, mut e) in rows {
            if !e.timestamp.is_finite() || e.timestamp < last {
                return Err(line_err(line, format!("timestamp {} goes back in time (previous {last})", e.timestamp)));
            }
            if e.input_tokens == 0 {
                return Err(line_err(line, "input tokens must be at least 1".into()));
            }
            last = e.timestamp;
            e.timestamp -= t0;
            if let Some(c) = &e.conversation_id {
                let prev = conversations.get(c).copied();
                e.turn = Some(prev.map(|p| p.0 + 1).unwrap_or(0));
                e.context_tokens = prev.map(|p| p.1.min(e.input_tokens));
                conversations.insert(c.clone(), (e.turn.unwrap_or(0), e.input_tokens.saturating_add(e.output_tokens)));
            }
            if let Some(p) = e.prefix_tokens {
                e.prefix_tokens = Some(p.min(e.input_tokens));
            }
            entries.push(e);
        }
        Ok(Trace { source: path.display().to_string(), format, entries })
    }
}

/// `YYYY-MM-DD HH:MM:SS[.fraction]` (or with `T`) as seconds since 1970 (UTC).
fn parse_datetime(s: &str) -> Option<f64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (hh, mm) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let ss: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || !(0.0..61.0).contains(&ss) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

/// Requests of a trace's sizes: a system prompt shared by the entry's prefix
/// group, then text up to the entry's input size: new text, or in a
/// conversation one growing text, so each turn's prompt opens the next; `max_tokens` is the entry's output
/// size unless the run sets one.
#[derive(Debug, Clone)]
pub struct TraceWorkload {
    trace: Arc<Trace>,
    seed: u64,
}

impl TraceWorkload {
    pub fn new(trace: Arc<Trace>, seed: u64) -> TraceWorkload {
        TraceWorkload { trace, seed }
    }
}

impl Workload for TraceWorkload {
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        let n = self.trace.entries.len().max(1) as u64;
        let e = &self.trace.entries[(index % n) as usize];
        let prefix = e.prefix_tokens.unwrap_or(0);
        let mut messages = Vec::new();
        if let (Some(g), true) = (&e.prefix_group, prefix > 0) {
            messages.push(ChatMessage {
                role: "system".into(),
                content: format!("System prompt {g}. {}", words(mix(self.seed, hash_str(g)), prefix.saturating_sub(4))),
            });
        }
        let rest = e.input_tokens.saturating_sub(prefix).max(1);
        let text = match &e.conversation_id {
            // One text per conversation, seeded by its name: each turn's
            // prompt is the start of the next (the history only grows).
            Some(c) => format!(
                "Conversation {c}. {}",
                words(mix(self.seed, hash_str(c) ^ 0x5151), rest.saturating_sub(3).max(1))
            ),
            None => format!("Request {index}: {}", words(mix(self.seed, index), rest.saturating_sub(3).max(1))),
        };
        messages.push(ChatMessage { role: "user".into(), content: text });
        let mut sampling = sampling.clone();
        sampling.max_tokens.get_or_insert(e.output_tokens.max(1));
        RequestSpec {
            id: format!("trace-{index}"),
            prompt: Prompt::Messages(messages),
            sampling,
            expected_input_tokens: Some(e.input_tokens),
            label: e.prefix_group.clone(),
            context: RequestContext {
                prefix_group: e.prefix_group.clone(),
                prefix_tokens: e.prefix_tokens,
                conversation: e.conversation_id.clone(),
                turn: e.turn,
                context_tokens: e.context_tokens.or(e.prefix_tokens),
                session_turns: None,
                model: None,
                // A conversation's text carries seeded stand-ins of its answers.
                stand_in_answers: e.conversation_id.is_some(),
            },
        }
    }

    fn describe(&self) -> String {
        format!("trace:{}:{} ({} requests)", self.trace.format.as_str(), self.trace.source, self.trace.entries.len())
    }

    fn distinct_requests(&self) -> Option<u64> {
        Some(self.trace.entries.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_to_epoch_seconds() {
        assert_eq!(parse_datetime("1970-01-01 00:00:00"), Some(0.0));
        let a = parse_datetime("2023-11-16 18:15:46.6805900").unwrap();
        let b = parse_datetime("2023-11-16 18:15:47.1805900").unwrap();
        assert!((b - a - 0.5).abs() < 1e-6);
        assert_eq!(
            parse_datetime("2024-03-01 00:00:00").unwrap() - parse_datetime("2024-02-28 00:00:00").unwrap(),
            2.0 * 86_400.0
        );
        assert_eq!(parse_datetime("2023-13-01 00:00:00"), None);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn conversations_count_turns_and_carry_context() {
        let text = "{\"timestamp\":0,\"input_tokens\":100,\"output_tokens\":20,\"conversation_id\":\"a\"}\n\
                    {\"timestamp\":1.5,\"input_tokens\":50,\"output_tokens\":5}\n\
                    {\"timestamp\":2,\"input_tokens\":160,\"output_tokens\":10,\"conversation_id\":\"a\"}\n";
        let t = Trace::parse(Path::new("t.jsonl"), text, TraceFormat::Auto).unwrap();
        assert_eq!(t.format, TraceFormat::Jsonl);
        assert_eq!(t.entries[2].turn, Some(1));
        assert_eq!(t.entries[2].context_tokens, Some(120));
        let w = TraceWorkload::new(Arc::new(t), 3);
        let sp = SamplingParams::default();
        let r0 = w.request(0, &sp).prompt.as_messages();
        let r2 = w.request(2, &sp).prompt.as_messages();
        assert_eq!(w.request(2, &sp).sampling.max_tokens, Some(10));
        // Turn 0 of conversation a opens turn 1, byte for byte.
        assert!(r2[0].content.starts_with(&r0[0].content), "{} / {}", r0[0].content, r2[0].content);
        assert_ne!(r0, r2);
    }

    #[test]
    fn malformed_traces_name_the_line() {
        for (text, line) in [
            ("{\"timestamp\":0,\"input_tokens\":1,\"output_tokens\":1}\n{\"timestamp\":1}\n", ":2:"),
            ("{\"timestamp\":5,\"input_tokens\":1,\"output_tokens\":1}\n\n{\"timestamp\":1,\"input_tokens\":1,\"output_tokens\":1}\n", ":3:"),
            ("{\"timestamp\":0,\"input_tokens\":0,\"output_tokens\":1}\n", ":1:"),
        ] {
            let e = Trace::parse(Path::new("t.jsonl"), text, TraceFormat::Auto).unwrap_err().to_string();
            assert!(e.contains(line), "{e}");
        }
        let e = Trace::parse(
            Path::new("b.csv"),
            "Timestamp,Model,Request tokens,Response tokens\n1,x,5,6\n2,x,five,6\n",
            TraceFormat::BurstGpt,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("b.csv:3:") && e.contains("Request tokens"), "{e}");
        let e =
            Trace::parse(Path::new("a.csv"), "TIMESTAMP,ContextTokens,GeneratedTokens\nnoon,1,2\n", TraceFormat::Azure)
                .unwrap_err()
                .to_string();
        assert!(e.contains("a.csv:2:") && e.contains("TIMESTAMP"), "{e}");
        let e = Trace::parse(Path::new("a.csv"), "When,ContextTokens\n", TraceFormat::Azure).unwrap_err().to_string();
        assert!(e.contains(":1:") && e.contains("TIMESTAMP"), "{e}");
    }
}
