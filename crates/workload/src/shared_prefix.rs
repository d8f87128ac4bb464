//! `shared-prefix:groups=G,users=U,system=S,question=Q,output=O[,multi-turn]`,
//! as inference-perf's `shared_prefix` data generator defines it: G system
//! prompts of S tokens; U users per group, each with a question of Q tokens;
//! every request asks for O output tokens. The G×U prompts are put in an
//! order drawn once from the seed and then cycle in it (request `i` is the
//! `i mod G·U`-th of that order), as inference-perf shuffles its prompts
//! (single turn) or its user sessions (multi-turn) once and then cycles them:
//! a group's users come round at seeded, uneven distances, which is what a
//! prefix cache smaller than all the groups sees in a real run (a strict
//! cycle through more groups than the cache holds would never hit).
//!
//! With `multi-turn`, the k-th time a user comes round is turn k of that
//! user's conversation: the prompt carries the system prompt, every earlier
//! question and an answer of O tokens for each, then a new question. The
//! earlier answers are stand-ins of O tokens generated from the seed (not the
//! model's real answers), so request `i` stays a pure function of the seed
//! and `i` and a conversation's history is byte-identical from turn to turn.

use fleetbench_core::{parse_switch, ChatMessage, Prompt, RequestContext, RequestSpec, SamplingParams};

use crate::text::{mix, words};
use crate::workload::Workload;

/// Most users (groups × users) one workload may have: the generator keeps
/// their seeded order in memory.
const MAX_USERS: u64 = 10_000_000;

/// The parameters of the shared-prefix generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPrefixSpec {
    pub groups: u32,
    pub users: u32,
    /// System prompt tokens.
    pub system: u32,
    /// Question tokens.
    pub question: u32,
    /// Output tokens (`max_tokens` unless the run sets it).
    pub output: u32,
    pub multi_turn: bool,
}

impl Default for SharedPrefixSpec {
    /// inference-perf's defaults are per config; these are a small, sane set.
    fn default() -> Self {
        SharedPrefixSpec { groups: 4, users: 8, system: 1024, question: 128, output: 128, multi_turn: false }
    }
}

impl SharedPrefixSpec {
    /// Parses the part after `shared-prefix:`; the error says what was wrong.
    pub fn parse(rest: &str) -> Result<SharedPrefixSpec, String> {
        let mut spec = SharedPrefixSpec::default();
        // inference-perf's own names are taken too (its `shared_prefix` data
        // config: num_groups, num_prompts_per_group, system_prompt_len,
        // question_len, output_len, enable_multi_turn_chat; and the later
        // aliases num_unique_system_prompts and num_users_per_system_prompt),
        // in any case, with `-` or `_` between words.
        for part in rest.split([',', ';']).map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (part, None),
            };
            let key = k.to_ascii_lowercase().replace('-', "_");
            if matches!(key.as_str(), "multi_turn" | "multiturn" | "enable_multi_turn_chat") {
                spec.multi_turn = match v {
                    None => true,
                    Some(v) => parse_switch(v).ok_or_else(|| format!("{k}= is true or false, not '{v}'"))?,
                };
                continue;
            }
            let v = v.ok_or_else(|| {
                format!("'{part}': expected key=value (groups, users, system, question, output) or multi-turn")
            })?;
            let n: u32 = v.parse().map_err(|_| format!("{k}= takes a whole number, not '{v}'"))?;
            if n == 0 {
                return Err(format!("{k}= must be at least 1"));
            }
            match key.as_str() {
                "groups" | "num_groups" | "num_unique_system_prompts" => spec.groups = n,
                "users" | "num_prompts_per_group" | "num_users_per_system_prompt" => spec.users = n,
                "system" | "system_prompt_len" => spec.system = n,
                "question" | "question_len" => spec.question = n,
                "output" | "output_len" => spec.output = n,
                _ => return Err(format!("unknown key '{k}' (groups, users, system, question, output, multi-turn)")),
            }
        }
        if spec.groups as u64 * spec.users as u64 > MAX_USERS {
            return Err(format!(
                "groups x users is {}: at most {MAX_USERS} users in all",
                spec.groups as u64 * spec.users as u64
            ));
        }
        Ok(spec)
    }

    pub fn describe(&self) -> String {
        format!(
            "shared-prefix:groups={},users={},system={},question={},output={}{}",
            self.groups,
            self.users,
            self.system,
            self.question,
            self.output,
            if self.multi_turn { ",multi-turn" } else { "" }
        )
    }
}

/// The generator, seeded.
#[derive(Debug, Clone)]
pub struct SharedPrefix {
    spec: SharedPrefixSpec,
    seed: u64,
    /// The G system prompts, built once.
    systems: Vec<String>,
    /// Slot k of the cycle is user `order[k]` (numbered group-major: user u
    /// of group g is `g·U + u`), a seeded permutation.
    order: Vec<u32>,
}

/// Stream tags that keep the seeded texts apart.
const TAG_SYSTEM: u64 = 1 << 60;
const TAG_QUESTION: u64 = 2 << 60;
const TAG_ANSWER: u64 = 3 << 60;
const TAG_ORDER: u64 = 4 << 60;

impl SharedPrefix {
    pub fn new(spec: SharedPrefixSpec, seed: u64) -> SharedPrefix {
        let systems = (0..spec.groups)
            .map(|g| {
                // The header makes groups distinct from their first bytes.
                let head = format!("System prompt {g}.");
                let body = words(mix(seed, TAG_SYSTEM | g as u64), spec.system.saturating_sub(4).max(1));
                format!("{head} {body}")
            })
            .collect();
        // Fisher-Yates, each draw from the seed and the position.
        let all = (spec.groups as u64 * spec.users as u64).clamp(1, MAX_USERS) as u32;
        let mut order: Vec<u32> = (0..all).collect();
        for k in (1..order.len()).rev() {
            let j = (mix(seed, TAG_ORDER | k as u64) % (k as u64 + 1)) as usize;
            order.swap(k, j);
        }
        SharedPrefix { spec, seed, systems, order }
    }

    pub fn spec(&self) -> &SharedPrefixSpec {
        &self.spec
    }

    /// (group, user within the group, turn) of request `index`.
    pub fn place(&self, index: u64) -> (u32, u32, u32) {
        let all = self.order.len() as u64;
        let user = self.order[(index % all) as usize];
        let users = self.spec.users.max(1);
        (user / users, user % users, (index / all).min(u32::MAX as u64) as u32)
    }

    /// The system prompt of group `g`, byte-identical for every request of it.
    pub fn system_prompt(&self, g: u32) -> &str {
        &self.systems[g as usize % self.systems.len()]
    }

    fn user_key(&self, g: u32, u: u32) -> u64 {
        ((g as u64) << 32) | u as u64
    }

    fn question(&self, g: u32, u: u32, turn: u32) -> String {
        let key = self.user_key(g, u) ^ ((turn as u64) << 20);
        format!("Question {turn} from user {u}: {}", words(mix(self.seed, TAG_QUESTION ^ key), self.spec.question))
    }

    fn answer(&self, g: u32, u: u32, turn: u32) -> String {
        let key = self.user_key(g, u) ^ ((turn as u64) << 20);
        words(mix(self.seed, TAG_ANSWER ^ key), self.spec.output)
    }

    /// Request `index`; its messages only when `with_text` (a multi-turn
    /// prompt carries the whole history, built anew at every turn).
    fn build(&self, index: u64, sampling: &SamplingParams, with_text: bool) -> RequestSpec {
        let (g, u, turn) = self.place(index);
        let s = &self.spec;
        // Single turn: every round repeats the user's one question, as
        // inference-perf cycles its fixed prompts.
        let (history, asked) = if s.multi_turn { (turn, turn) } else { (0, 0) };
        let mut messages = Vec::new();
        if with_text {
            messages.push(ChatMessage { role: "system".into(), content: self.system_prompt(g).to_string() });
            for t in 0..history {
                messages.push(ChatMessage { role: "user".into(), content: self.question(g, u, t) });
                messages.push(ChatMessage { role: "assistant".into(), content: self.answer(g, u, t) });
            }
            messages.push(ChatMessage { role: "user".into(), content: self.question(g, u, asked) });
        }
        let context_tokens = s.system + history * (s.question + s.output);
        let mut sampling = sampling.clone();
        sampling.max_tokens.get_or_insert(s.output);
        RequestSpec {
            id: format!("sp-{g}-{u}-{turn}"),
            prompt: Prompt::Messages(messages),
            sampling,
            expected_input_tokens: Some(context_tokens + s.question),
            label: Some(format!("group {g}")),
            context: RequestContext {
                prefix_group: Some(format!("g{g}")),
                prefix_tokens: Some(s.system),
                conversation: s.multi_turn.then(|| format!("g{g}u{u}")),
                turn: s.multi_turn.then_some(turn),
                context_tokens: Some(context_tokens),
                session_turns: None,
                model: None,
                stand_in_answers: s.multi_turn,
            },
        }
    }
}

impl Workload for SharedPrefix {
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        self.build(index, sampling, true)
    }

    fn shape(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        self.build(index, sampling, false)
    }

    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn distinct_requests(&self) -> Option<u64> {
        (!self.spec.multi_turn).then(|| self.spec.groups as u64 * self.spec.users as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkloadSpec;

    fn gen(spec: &str) -> SharedPrefix {
        match WorkloadSpec::parse(spec).unwrap() {
            WorkloadSpec::SharedPrefix(s) => SharedPrefix::new(s, 11),
            other => panic!("{other:?}"),
        }
    }

    fn system_of(r: &RequestSpec) -> String {
        match &r.prompt {
            Prompt::Messages(m) => m[0].content.clone(),
            other => other.as_text(),
        }
    }

    #[test]
    fn grammar_parses_and_rejects() {
        let s = gen("shared-prefix:groups=3,users=2,system=100,question=20,output=10");
        assert_eq!(
            *s.spec(),
            SharedPrefixSpec { groups: 3, users: 2, system: 100, question: 20, output: 10, multi_turn: false }
        );
        assert!(gen("shared-prefix:groups=1,multi-turn").spec().multi_turn);
        // inference-perf's own names, and a switch written out.
        let named = gen(
            "shared-prefix:num_groups=3;num_prompts_per_group=2;system_prompt_len=100;question_len=20;output_len=10;enable_multi_turn_chat=true",
        );
        assert_eq!(*named.spec(), SharedPrefixSpec { multi_turn: true, ..*s.spec() });
        // Its later aliases, in another case and with hyphens.
        let aliased = gen(
            "shared-prefix:num_unique_system_prompts=3,num-users-per-system-prompt=2,System_Prompt_Len=100,question_len=20,output_len=10,Multi-Turn",
        );
        assert_eq!(*aliased.spec(), SharedPrefixSpec { multi_turn: true, ..*s.spec() });
        assert!(!gen("shared-prefix:groups=1,multi-turn=false").spec().multi_turn);
        assert!(gen("shared-prefix:groups=1,MultiTurn").spec().multi_turn);
        for bad in [
            "shared-prefix:multi-turn=perhaps",
            "shared-prefix:groups=0",
            "shared-prefix:groups=x",
            "shared-prefix:colour=3",
            "shared-prefix:g",
            "shared-prefix:groups=100000,users=1000",
        ] {
            let e = WorkloadSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("shared-prefix"), "{bad}: {e}");
        }
    }

    #[test]
    fn prompts_share_their_group_prefix_byte_for_byte() {
        let w = gen("shared-prefix:groups=3,users=4,system=200,question=30,output=16");
        let sp = SamplingParams::default();
        let reqs: Vec<RequestSpec> = (0..24).map(|i| w.request(i, &sp)).collect();
        for a in &reqs {
            for b in &reqs {
                let same = a.context.prefix_group == b.context.prefix_group;
                assert_eq!(system_of(a) == system_of(b), same, "{} vs {}", a.id, b.id);
            }
        }
        // Distinct groups differ from the first bytes on; the prefix has the asked size.
        let other = reqs.iter().find(|r| r.context.prefix_group != reqs[0].context.prefix_group).unwrap();
        assert_ne!(system_of(&reqs[0])[..16], system_of(other)[..16]);
        let n = system_of(&reqs[0]).split_whitespace().count();
        assert!((n as i64 - 200).abs() <= 2, "{n}");
        assert_eq!(reqs[0].sampling.max_tokens, Some(16));
        assert_eq!(reqs[0].context.prefix_tokens, Some(200));
        // Twelve users, then the cycle repeats.
        assert_eq!(w.distinct_requests(), Some(12));
        assert_eq!(reqs[0].prompt, reqs[12].prompt);
    }

    #[test]
    fn users_come_round_in_a_seeded_shuffled_cycle() {
        let spec = SharedPrefixSpec { groups: 5, users: 4, ..SharedPrefixSpec::default() };
        let (a, b) = (SharedPrefix::new(spec, 1), SharedPrefix::new(spec, 2));
        let cycle = |w: &SharedPrefix| (0..20).map(|i| w.place(i)).collect::<Vec<_>>();
        // Every user once per cycle of G·U requests, then the same order again.
        let mut seen: Vec<(u32, u32)> = cycle(&a).iter().map(|&(g, u, t)| (assert_eq!(t, 0), (g, u)).1).collect();
        seen.sort_unstable();
        let all: Vec<(u32, u32)> = (0..5).flat_map(|g| (0..4).map(move |u| (g, u))).collect();
        assert_eq!(seen, all);
        assert_eq!(a.place(23), (a.place(3).0, a.place(3).1, 1));
        // The order comes from the seed: the same seed repeats it, another
        // seed draws another, and neither is the plain group-by-group walk.
        assert_eq!(cycle(&a), cycle(&SharedPrefix::new(spec, 1)));
        assert_ne!(cycle(&a), cycle(&b));
        let walk: Vec<(u32, u32, u32)> = (0..20).map(|i| (i % 5, i / 5, 0)).collect();
        assert_ne!(cycle(&a), walk);
    }

    #[test]
    fn multi_turn_carries_each_users_history() {
        let w = gen("shared-prefix:groups=2,users=2,system=50,question=10,output=5,multi-turn");
        let sp = SamplingParams::default();
        let t0 = w.request(1, &sp);
        let t1 = w.request(5, &sp);
        let t2 = w.request(9, &sp);
        assert_eq!(t0.context.conversation, t1.context.conversation);
        assert_eq!((t0.context.turn, t1.context.turn, t2.context.turn), (Some(0), Some(1), Some(2)));
        assert_eq!(t2.context.context_tokens, Some(50 + 2 * 15));
        let (m1, m2) = (t1.prompt.as_messages(), t2.prompt.as_messages());
        assert_eq!(m2.len(), 6);
        // The history of turn 1 is the start of turn 2, byte for byte.
        assert_eq!(m1[..3], m2[..3]);
        assert_eq!(m1[1], t0.prompt.as_messages()[1]);
        assert_ne!(w.request(0, &sp).context.conversation, t0.context.conversation);
    }
}
