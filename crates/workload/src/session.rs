//! Session workloads: the unit of work is a session of turns, not a request.
//! Turn k sends the whole history (the opening messages, every earlier turn
//! and the answer to it) plus its own new message, waits for the answer,
//! then the sender thinks before turn k+1. A [`SessionPlan`] is a pure
//! function of the seed and the session's index; the answers carried into
//! the history are the model's own (the sender supplies them) unless the
//! plan brings its own (a conversation set replayed with its dataset's
//! answers).
//!
//! `agent-session:turns=8..24,system=2000,tool-output=500..4000,
//! output=150..600,think=0..2s` is a coding agent: a system prompt of
//! `system` tokens shared by every session of its task type, a first turn
//! that states a coding-swarm task, then turns that each carry a synthetic
//! tool output (a file, a test log) of `tool-output` tokens. Every range is
//! drawn per turn (per session for `turns`), uniformly, from the seed.

use std::time::Duration;

use fleetbench_core::{parse_duration, ChatMessage, Prompt, RequestContext, RequestSpec, SamplingParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::coding_swarm::CodingSwarm;
use crate::text::{mix, words};
use crate::workload::{Workload, WorkloadError};

/// One turn of a session as planned.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnPlan {
    /// The turn's new message (role `user`).
    pub text: String,
    /// Its tokens, approximately.
    pub tokens: u32,
    /// Output tokens asked for (`max_tokens` unless the run sets it).
    pub output: u32,
    /// How long the sender thinks after the previous answer before sending
    /// this turn (zero for the first).
    pub think: Duration,
    /// The answer carried into the history after this turn; `None`: the
    /// model's own answer.
    pub answer: Option<String>,
}

/// One session: its opening messages and its turns.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionPlan {
    /// Identifier stored with every turn (the record's `conversation`).
    pub id: String,
    pub label: Option<String>,
    /// Messages every turn opens with (the system prompt).
    pub opening: Vec<ChatMessage>,
    /// Their tokens, approximately.
    pub opening_tokens: u32,
    /// Shared-prefix group of the opening, when sessions share it.
    pub prefix_group: Option<String>,
    pub turns: Vec<TurnPlan>,
}

impl SessionPlan {
    /// The request of turn `turn`, given the history so far (every earlier
    /// turn's message and its answer, in order) and its tokens.
    pub fn request(
        &self,
        turn: u32,
        history: &[ChatMessage],
        history_tokens: u32,
        sampling: &SamplingParams,
    ) -> RequestSpec {
        let plan = &self.turns[(turn as usize).min(self.turns.len().saturating_sub(1))];
        let mut messages = Vec::with_capacity(self.opening.len() + history.len() + 1);
        messages.extend(self.opening.iter().cloned());
        messages.extend(history.iter().cloned());
        messages.push(ChatMessage { role: "user".into(), content: plan.text.clone() });
        let context_tokens = self.opening_tokens + history_tokens;
        let mut sampling = sampling.clone();
        sampling.max_tokens.get_or_insert(plan.output);
        RequestSpec {
            id: format!("{}-t{turn}", self.id),
            prompt: Prompt::Messages(messages),
            sampling,
            expected_input_tokens: Some(context_tokens + plan.tokens),
            label: self.label.clone(),
            context: RequestContext {
                prefix_group: self.prefix_group.clone(),
                prefix_tokens: self.prefix_group.as_ref().map(|_| self.opening_tokens),
                conversation: Some(self.id.clone()),
                turn: Some(turn),
                context_tokens: Some(context_tokens),
                session_turns: Some(self.turns.len() as u32),
                model: None,
                stand_in_answers: false,
            },
        }
    }
}

/// An inclusive range of whole numbers, `A..B` or `A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub lo: u32,
    pub hi: u32,
}

impl Span {
    fn parse(key: &str, v: &str) -> Result<Span, String> {
        let num = |s: &str| {
            s.trim().parse::<u32>().map_err(|_| format!("{key}= takes a whole number or a range like 8..24, not '{v}'"))
        };
        let span = match v.split_once("..") {
            Some((a, b)) => Span { lo: num(a)?, hi: num(b)? },
            None => {
                let n = num(v)?;
                Span { lo: n, hi: n }
            }
        };
        if span.lo > span.hi {
            return Err(format!("{key}={v}: the range's low end is above its high end"));
        }
        Ok(span)
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> u32 {
        rng.random_range(self.lo..=self.hi)
    }

    fn describe(&self) -> String {
        if self.lo == self.hi {
            self.lo.to_string()
        } else {
            format!("{}..{}", self.lo, self.hi)
        }
    }
}

/// The parameters of `agent-session:...`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSessionSpec {
    pub turns: Span,
    /// System prompt tokens.
    pub system: u32,
    /// Tool output tokens of each turn after the first.
    pub tool_output: Span,
    /// Output tokens asked for per turn.
    pub output: Span,
    /// Think time before each turn after the first, seconds.
    pub think: (f64, f64),
}

impl Default for AgentSessionSpec {
    fn default() -> Self {
        AgentSessionSpec {
            turns: Span { lo: 8, hi: 24 },
            system: 2000,
            tool_output: Span { lo: 500, hi: 4000 },
            output: Span { lo: 150, hi: 600 },
            think: (0.0, 2.0),
        }
    }
}

/// A duration range `0..2s`: a bare number on the left takes the unit of
/// the right (`0..2s` is zero to two seconds).
fn parse_think(v: &str) -> Result<(f64, f64), String> {
    let bad = |why: String| format!("think={v}: {why} (a duration or a range like 0..2s)");
    let (a, b) = v.split_once("..").unwrap_or((v, v));
    let hi = parse_duration(b).map_err(|e| bad(e.to_string()))?.as_secs_f64();
    let unit: String = b.trim().chars().skip_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let a = a.trim();
    let lo = match parse_duration(a) {
        Ok(d) => d.as_secs_f64(),
        Err(_) if a.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            parse_duration(&format!("{a}{unit}")).map_err(|e| bad(e.to_string()))?.as_secs_f64()
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    if lo > hi {
        return Err(bad("the range's low end is above its high end".into()));
    }
    Ok((lo, hi))
}

impl AgentSessionSpec {
    /// Parses the part after `agent-session:`; the error says what was wrong.
    pub fn parse(rest: &str) -> Result<AgentSessionSpec, String> {
        let mut spec = AgentSessionSpec::default();
        for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}': expected key=value (turns, system, tool-output, output, think)"))?;
            let (k, v) = (k.trim(), v.trim());
            match k {
                "turns" => spec.turns = Span::parse(k, v)?,
                "system" => spec.system = Span::parse(k, v).map(|s| s.lo).and_then(|n| single(k, v, n))?,
                "tool-output" => spec.tool_output = Span::parse(k, v)?,
                "output" => spec.output = Span::parse(k, v)?,
                "think" => spec.think = parse_think(v)?,
                other => return Err(format!("unknown key '{other}' (turns, system, tool-output, output, think)")),
            }
        }
        if spec.turns.lo == 0 {
            return Err("turns= must be at least 1".into());
        }
        if spec.output.lo == 0 {
            return Err("output= must be at least 1".into());
        }
        Ok(spec)
    }

    pub fn describe(&self) -> String {
        let secs = |s: f64| format!("{}s", (s * 1000.0).round() / 1000.0);
        let think = if self.think.0 == self.think.1 {
            secs(self.think.0)
        } else {
            format!("{}..{}", secs(self.think.0), secs(self.think.1))
        };
        format!(
            "agent-session:turns={},system={},tool-output={},output={},think={think}",
            self.turns.describe(),
            self.system,
            self.tool_output.describe(),
            self.output.describe()
        )
    }
}

/// `system=` is one number, not a range.
fn single(k: &str, v: &str, n: u32) -> Result<u32, String> {
    if v.contains("..") {
        return Err(format!("{k}= takes one whole number, not a range"));
    }
    Ok(n)
}

/// Tools whose outputs the agent's turns carry, in turn.
const TOOLS: [&str; 4] = ["read_file", "run_tests", "grep", "build"];

/// Stream tags that keep the seeded texts apart.
const TAG_SYSTEM: u64 = 5 << 60;
const TAG_SESSION: u64 = 6 << 60;
const TAG_TOOL: u64 = 7 << 60;

/// The agent-session workload, seeded; its content is the coding-swarm task set.
#[derive(Clone)]
pub struct AgentSessions {
    spec: AgentSessionSpec,
    seed: u64,
    tasks: CodingSwarm,
}

impl AgentSessions {
    pub fn new(spec: AgentSessionSpec, seed: u64) -> Result<AgentSessions, WorkloadError> {
        Ok(AgentSessions { spec, seed, tasks: CodingSwarm::builtin(seed)? })
    }

    pub fn spec(&self) -> &AgentSessionSpec {
        &self.spec
    }

    /// The system prompt of a task type: its coding-swarm instruction, then
    /// project context up to `system` tokens; the same for every session of
    /// the type, as an agent's system prompt is.
    fn system_prompt(&self, kind: &str, instruction: &str) -> String {
        let head = format!("{instruction} You work in the repository described below, one tool call at a time.");
        let filler = self.spec.system.saturating_sub(head.split_whitespace().count() as u32 + 2).max(1);
        format!("{head}\nProject context: {}", words(mix(self.seed, TAG_SYSTEM ^ crate::text::hash_str(kind)), filler))
    }
}

impl Workload for AgentSessions {
    /// Turn 0 of session `index` (a session workload's requests are built
    /// by its sender through [`Workload::session`]).
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        let plan = self.plan(index);
        plan.request(0, &[], 0, sampling)
    }

    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn session(&self, index: u64) -> Option<SessionPlan> {
        Some(self.plan(index))
    }
}

impl AgentSessions {
    /// Session `index`: a pure function of the seed and the index.
    pub fn plan(&self, index: u64) -> SessionPlan {
        let s = &self.spec;
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed, TAG_SESSION ^ index));
        let (kind, instruction, task, label) = self.tasks.task(index);
        let system = self.system_prompt(kind, instruction);
        let n = s.turns.draw(&mut rng);
        let nonce: u32 = rng.random();
        let mut turns = Vec::with_capacity(n as usize);
        for k in 0..n {
            let output = s.output.draw(&mut rng);
            let think = if k == 0 || s.think.1 <= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(rng.random_range(s.think.0..=s.think.1))
            };
            let (text, tokens) = if k == 0 {
                let text = format!("Session {nonce:08x}. {task}");
                let tokens = text.split_whitespace().count() as u32;
                (text, tokens)
            } else {
                let tool = TOOLS[(k as usize - 1) % TOOLS.len()];
                let n = s.tool_output.draw(&mut rng).max(1);
                let body = words(mix(self.seed, TAG_TOOL ^ (index << 8) ^ k as u64), n);
                (format!("Output of {tool} (step {k}):\n{body}\nContinue with the task."), n + 8)
            };
            turns.push(TurnPlan { text, tokens, output, think, answer: None });
        }
        SessionPlan {
            id: format!("as-{index}"),
            label: Some(label),
            opening: vec![ChatMessage { role: "system".into(), content: system }],
            opening_tokens: s.system,
            prefix_group: Some(format!("agent-{kind}")),
            turns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_parses_ranges_and_rejects_nonsense() {
        let s = AgentSessionSpec::parse("turns=8..24,system=2000,tool-output=500..4000,output=150..600,think=0..2s")
            .unwrap();
        assert_eq!(s, AgentSessionSpec::default());
        let s = AgentSessionSpec::parse("turns=3,think=500ms..1s").unwrap();
        assert_eq!((s.turns, s.think), (Span { lo: 3, hi: 3 }, (0.5, 1.0)));
        assert_eq!(AgentSessionSpec::parse("think=0").unwrap().think, (0.0, 0.0));
        for (bad, says) in [
            ("turns=0", "at least 1"),
            ("turns=9..3", "low end"),
            ("turns=x", "whole number"),
            ("system=1..2", "one whole number"),
            ("think=2s..1s", "low end"),
            ("think=soon", "think="),
            ("colour=3", "unknown key"),
            ("turns", "key=value"),
        ] {
            let e = AgentSessionSpec::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let spec = AgentSessionSpec::parse("turns=2..5,system=300,tool-output=10..20,output=5,think=0..1.5s").unwrap();
        assert_eq!(AgentSessionSpec::parse(&spec.describe()["agent-session:".len()..]).unwrap(), spec);
    }

    #[test]
    fn sessions_are_seeded_and_drawn_within_their_ranges() {
        let spec =
            AgentSessionSpec::parse("turns=3..6,system=200,tool-output=40..80,output=10..20,think=0..2s").unwrap();
        let w = AgentSessions::new(spec.clone(), 7).unwrap();
        let a = w.plan(3);
        assert_eq!(a, w.plan(3));
        assert_eq!(a, AgentSessions::new(spec.clone(), 7).unwrap().plan(3));
        assert_ne!(a, AgentSessions::new(spec, 8).unwrap().plan(3));
        let mut lengths = std::collections::BTreeSet::new();
        for i in 0..40 {
            let p = w.plan(i);
            lengths.insert(p.turns.len());
            assert!((3..=6).contains(&p.turns.len()));
            assert_eq!(p.turns[0].think, Duration::ZERO);
            for t in &p.turns[1..] {
                assert!((48..=88).contains(&t.tokens), "{}", t.tokens);
                assert!(t.think <= Duration::from_secs(2));
                assert!(t.text.split_whitespace().count() as u32 >= t.tokens - 8);
            }
            assert!(p.turns.iter().all(|t| (10..=20).contains(&t.output)));
        }
        assert!(lengths.len() >= 3, "turn counts vary: {lengths:?}");
    }

    #[test]
    fn turns_carry_the_history_and_sessions_of_a_type_share_the_system_prompt() {
        let spec = AgentSessionSpec::parse("turns=3,system=300,tool-output=50,output=10,think=0").unwrap();
        let w = AgentSessions::new(spec, 1).unwrap();
        let p = w.plan(0);
        let sp = SamplingParams::default();
        let t0 = p.request(0, &[], 0, &sp);
        assert_eq!(t0.prompt.as_messages().len(), 2);
        assert_eq!(t0.sampling.max_tokens, Some(10));
        let history = vec![
            ChatMessage { role: "user".into(), content: p.turns[0].text.clone() },
            ChatMessage { role: "assistant".into(), content: "the answer".into() },
        ];
        let t1 = p.request(1, &history, 40, &sp);
        let m = t1.prompt.as_messages();
        assert_eq!(m.len(), 4);
        assert_eq!(m[..2], t0.prompt.as_messages()[..]);
        assert_eq!(m[2], history[1]);
        assert!(m[3].content.starts_with("Output of read_file"));
        let c = &t1.context;
        assert_eq!((c.turn, c.context_tokens, c.session_turns), (Some(1), Some(340), Some(3)));
        assert_eq!(c.conversation.as_deref(), Some("as-0"));
        assert_eq!(t1.expected_input_tokens, Some(340 + 58));
        // The system prompt is about `system` tokens and shared within a task type (every fourth session).
        let sys = |i: u64| w.plan(i).opening[0].content.clone();
        let n = sys(0).split_whitespace().count();
        assert!((n as i64 - 300).abs() <= 3, "{n}");
        assert_eq!(sys(0), sys(4));
        assert_ne!(sys(0), sys(1));
        // Each session's first turn is its own.
        assert_ne!(w.plan(0).turns[0].text, w.plan(4).turns[0].text);
    }
}
