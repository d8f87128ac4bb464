//! Workloads: what each request says. `synthetic:in=I,out=O[,spread=S]`
//! builds distinct prompts of about I tokens; `file:PATH.jsonl` replays one
//! request per line; `shared-prefix:...` is inference-perf's shared-prefix
//! generator; `coding-swarm` the built-in coding tasks. Request `i` is a pure
//! function of the seed and `i`, so concurrency never changes what is sent.

use std::path::{Path, PathBuf};

use fleetbench_core::{ChatMessage, Prompt, RequestContext, RequestSpec, SamplingParams};

use crate::text::WORDS;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// Produces the request with a given issue index.
pub trait Workload: Send + Sync {
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec;
    /// Request `index` as [`Workload::request`] builds it, except perhaps
    /// its prompt's text: the sizes, sampling and context a simulated
    /// replay reads. Workloads whose text costs more to build than the
    /// simulation of the request (random words, a conversation's whole
    /// history at every turn) leave it empty; the default builds it all.
    fn shape(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        self.request(index, sampling)
    }
    /// A one-line description for run metadata.
    fn describe(&self) -> String;
    /// How many distinct requests it holds (`None`: unbounded).
    fn distinct_requests(&self) -> Option<u64> {
        None
    }
    /// Session workloads: the plan of session `index`, whose turns the
    /// sender builds with [`Workload::turn`] as answers come back. `None`
    /// (the default): requests are independent and built by `request`.
    fn session(&self, _index: u64) -> Option<crate::session::SessionPlan> {
        None
    }
    /// Turn `turn` of a session, given the history so far and its tokens.
    fn turn(
        &self,
        session: &crate::session::SessionPlan,
        turn: u32,
        history: &[ChatMessage],
        history_tokens: u32,
        sampling: &SamplingParams,
    ) -> RequestSpec {
        session.request(turn, history, history_tokens, sampling)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error(
        "unknown workload '{0}': use synthetic:in=512,out=256[,spread=0.2], \
         shared-prefix:groups=G,users=U,system=S,question=Q,output=O[,multi-turn], coding-swarm, \
         agent-session:turns=8..24,system=2000,tool-output=500..4000,output=150..600,think=0..2s, \
         conversations:FILE[,replay=dataset|model] or file:PATH.jsonl"
    )]
    Unknown(String),
    #[error("bad agent-session workload '{spec}': {why}")]
    AgentSession { spec: String, why: String },
    #[error("bad conversations workload '{spec}': {why}")]
    Conversations { spec: String, why: String },
    #[error("bad shared-prefix workload '{spec}': {why}")]
    SharedPrefix { spec: String, why: String },
    #[error("bad --arrivals '{spec}': {why}")]
    Arrivals { spec: String, why: String },
    #[error("bad synthetic workload '{spec}': {why}")]
    Synthetic { spec: String, why: String },
    #[error("cannot read workload file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {why}")]
    Line { path: PathBuf, line: usize, why: String },
    #[error("workload file {0} holds no requests")]
    Empty(PathBuf),
}

/// A parsed `--workload` value.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkloadSpec {
    Synthetic {
        input: u32,
        output: u32,
        spread: f64,
        /// `prompts=N`: N distinct prompts, request `i` sending the
        /// `i mod N`-th byte for byte (a benchmark that cycles its dataset);
        /// `None`: every request its own.
        prompts: Option<u64>,
    },
    File(PathBuf),
    /// The built-in coding tasks (`coding-swarm`).
    CodingSwarm,
    /// inference-perf's shared-prefix generator.
    SharedPrefix(crate::shared_prefix::SharedPrefixSpec),
    /// Coding-agent sessions (`agent-session:...`).
    AgentSession(crate::session::AgentSessionSpec),
    /// A conversation set from a file (`conversations:FILE[,replay=...]`).
    Conversations(crate::conversations::ConversationsSpec),
}

impl WorkloadSpec {
    /// A workload as `--workload` writes it. The kind before the first `:`
    /// is read in any case, `_` or `-` between its words (`shared_prefix`,
    /// as inference-perf names its data type); what follows is the kind's.
    pub fn parse(s: &str) -> Result<WorkloadSpec, WorkloadError> {
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (s, None),
        };
        let kind = kind.trim().to_ascii_lowercase().replace('_', "-");
        // The kind's arguments: optional, or required after the `:`.
        let args = |want: &str| (kind == want).then(|| rest.unwrap_or(""));
        let needs = |want: &str| rest.filter(|_| kind == want);
        if let Some(rest) = args("synthetic") {
            let bad = |why: &str| WorkloadError::Synthetic { spec: s.to_string(), why: why.to_string() };
            let (mut input, mut output, mut spread, mut prompts) = (512u32, 256u32, 0.0f64, None);
            for part in rest.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').ok_or_else(|| bad("expected key=value pairs"))?;
                match k.trim() {
                    "in" => input = v.trim().parse().map_err(|_| bad("in= takes a whole number of tokens"))?,
                    "out" => output = v.trim().parse().map_err(|_| bad("out= takes a whole number of tokens"))?,
                    "spread" => {
                        spread = v.trim().parse().map_err(|_| bad("spread= takes a fraction like 0.2"))?;
                        if !(0.0..1.0).contains(&spread) {
                            return Err(bad("spread must be in [0, 1)"));
                        }
                    }
                    "prompts" => {
                        let n: u64 = v.trim().parse().map_err(|_| bad("prompts= takes a whole number of prompts"))?;
                        if n == 0 {
                            return Err(bad("prompts must be at least 1"));
                        }
                        prompts = Some(n);
                    }
                    other => return Err(bad(&format!("unknown key '{other}' (in, out, spread, prompts)"))),
                }
            }
            if input == 0 || output == 0 {
                return Err(bad("in and out must be at least 1"));
            }
            return Ok(WorkloadSpec::Synthetic { input, output, spread, prompts });
        }
        if let Some(rest) = args("shared-prefix") {
            return crate::shared_prefix::SharedPrefixSpec::parse(rest)
                .map(WorkloadSpec::SharedPrefix)
                .map_err(|why| WorkloadError::SharedPrefix { spec: s.to_string(), why });
        }
        if let Some(rest) = args("agent-session") {
            return crate::session::AgentSessionSpec::parse(rest)
                .map(WorkloadSpec::AgentSession)
                .map_err(|why| WorkloadError::AgentSession { spec: s.to_string(), why });
        }
        if let Some(rest) = needs("conversations") {
            return crate::conversations::ConversationsSpec::parse(rest)
                .map(WorkloadSpec::Conversations)
                .map_err(|why| WorkloadError::Conversations { spec: s.to_string(), why });
        }
        if kind == "coding-swarm" && rest.is_none() {
            return Ok(WorkloadSpec::CodingSwarm);
        }
        if let Some(p) = needs("file") {
            return Ok(WorkloadSpec::File(PathBuf::from(p)));
        }
        Err(WorkloadError::Unknown(s.to_string()))
    }

    pub fn build(&self, seed: u64) -> Result<Box<dyn Workload>, WorkloadError> {
        Ok(match self {
            WorkloadSpec::Synthetic { input, output, spread, prompts } => {
                Box::new(SyntheticWorkload::new(*input, *output, *spread, seed).cycling(*prompts))
            }
            WorkloadSpec::File(p) => Box::new(FileWorkload::load(p)?),
            WorkloadSpec::CodingSwarm => Box::new(crate::coding_swarm::CodingSwarm::builtin(seed)?),
            WorkloadSpec::SharedPrefix(spec) => Box::new(crate::shared_prefix::SharedPrefix::new(*spec, seed)),
            WorkloadSpec::AgentSession(spec) => Box::new(crate::session::AgentSessions::new(spec.clone(), seed)?),
            WorkloadSpec::Conversations(spec) => Box::new(crate::conversations::Conversations::load(spec)?),
        })
    }
}

/// Tokens the instruction around the words costs (approximately).
const SYNTHETIC_OVERHEAD_TOKENS: u32 = 24;

/// Prompts of about `input` tokens, each starting with a distinct nonce and
/// word order so prefix caches cannot serve one request from another;
/// `max_tokens` of about `output`.
#[derive(Debug, Clone)]
pub struct SyntheticWorkload {
    input: u32,
    output: u32,
    spread: f64,
    seed: u64,
    prompts: Option<u64>,
}

impl SyntheticWorkload {
    pub fn new(input: u32, output: u32, spread: f64, seed: u64) -> SyntheticWorkload {
        SyntheticWorkload { input, output, spread, seed, prompts: None }
    }

    /// `Some(n)`: n distinct prompts, request `i` sending the `i mod n`-th.
    pub fn cycling(self, prompts: Option<u64>) -> SyntheticWorkload {
        SyntheticWorkload { prompts: prompts.filter(|&n| n > 0), ..self }
    }

    fn draw(rng: &mut ChaCha8Rng, mean: u32, spread: f64) -> u32 {
        if spread <= 0.0 {
            return mean;
        }
        let f = rng.random_range(1.0 - spread..=1.0 + spread);
        ((mean as f64 * f).round() as u32).max(1)
    }
}

impl SyntheticWorkload {
    /// Request `index`, with its words when `with_text`: the sizes are
    /// drawn before the words, so they are the same either way.
    fn build(&self, index: u64, sampling: &SamplingParams, with_text: bool) -> RequestSpec {
        let drawn = self.prompts.map_or(index, |n| index % n);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ drawn.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let input = Self::draw(&mut rng, self.input, self.spread);
        let output = Self::draw(&mut rng, self.output, self.spread);
        let mut text = String::new();
        if with_text {
            let words = input.saturating_sub(SYNTHETIC_OVERHEAD_TOKENS).max(1);
            let nonce: u64 = rng.random();
            text = format!("Request {nonce:016x}. Repeat the following words back, then keep writing freely:");
            text.reserve(words as usize * 6);
            for _ in 0..words {
                text.push(' ');
                text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
            }
        }
        let mut sampling = sampling.clone();
        if sampling.max_tokens.is_none() {
            sampling.max_tokens = Some(output);
        }
        RequestSpec {
            id: format!("syn-{index}"),
            prompt: Prompt::Messages(vec![ChatMessage { role: "user".into(), content: text }]),
            sampling,
            expected_input_tokens: Some(input),
            label: None,
            context: RequestContext::default(),
        }
    }
}

impl Workload for SyntheticWorkload {
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        self.build(index, sampling, true)
    }

    fn shape(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        self.build(index, sampling, false)
    }

    fn describe(&self) -> String {
        let mut d = format!("synthetic:in={},out={}", self.input, self.output);
        if self.spread > 0.0 {
            d.push_str(&format!(",spread={}", self.spread));
        }
        if let Some(n) = self.prompts {
            d.push_str(&format!(",prompts={n}"));
        }
        d
    }

    fn distinct_requests(&self) -> Option<u64> {
        self.prompts
    }
}

/// One request per JSONL line: `{"messages": [...]}` or `{"prompt": "..."}`,
/// optional `max_tokens` and `id`. Requests cycle when the run needs more.
#[derive(Debug, Clone)]
pub struct FileWorkload {
    path: PathBuf,
    items: Vec<FileItem>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileItem {
    messages: Option<Vec<ChatMessage>>,
    prompt: Option<String>,
    max_tokens: Option<u32>,
    id: Option<serde_json::Value>,
    label: Option<String>,
}

impl FileWorkload {
    pub fn load(path: &Path) -> Result<FileWorkload, WorkloadError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| WorkloadError::Read { path: path.to_path_buf(), source })?;
        let mut items = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| WorkloadError::Line { path: path.to_path_buf(), line: i + 1, why };
            let item: FileItem = serde_json::from_str(line).map_err(|e| bad(format!("not a request object: {e}")))?;
            match (&item.messages, &item.prompt) {
                (Some(m), None) if !m.is_empty() => {}
                (None, Some(_)) => {}
                _ => return Err(bad("give exactly one of \"messages\" (non-empty) or \"prompt\"".into())),
            }
            items.push(item);
        }
        if items.is_empty() {
            return Err(WorkloadError::Empty(path.to_path_buf()));
        }
        Ok(FileWorkload { path: path.to_path_buf(), items })
    }
}

impl Workload for FileWorkload {
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        let n = self.items.len() as u64;
        let item = &self.items[(index % n) as usize];
        let prompt = match (&item.messages, &item.prompt) {
            (Some(m), _) => Prompt::Messages(m.clone()),
            (None, Some(p)) => Prompt::Text(p.clone()),
            (None, None) => Prompt::Text(String::new()),
        };
        let mut sampling = sampling.clone();
        if item.max_tokens.is_some() {
            sampling.max_tokens = item.max_tokens;
        }
        let base = match &item.id {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => format!("line-{}", index % n),
        };
        let id = if index < n { base } else { format!("{base}#{}", index / n) };
        RequestSpec {
            id,
            prompt,
            sampling,
            expected_input_tokens: None,
            label: item.label.clone(),
            context: RequestContext::default(),
        }
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn distinct_requests(&self) -> Option<u64> {
        Some(self.items.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_spec_parses_and_validates() {
        assert_eq!(
            WorkloadSpec::parse("synthetic:in=512,out=256").unwrap(),
            WorkloadSpec::Synthetic { input: 512, output: 256, spread: 0.0, prompts: None }
        );
        assert!(matches!(
            WorkloadSpec::parse("synthetic:in=10,out=5,spread=0.2").unwrap(),
            WorkloadSpec::Synthetic { spread, .. } if (spread - 0.2).abs() < 1e-12
        ));
        assert!(matches!(
            WorkloadSpec::parse("synthetic:in=10,out=5,prompts=200").unwrap(),
            WorkloadSpec::Synthetic { prompts: Some(200), .. }
        ));
        for bad in [
            "synthetic:in=x",
            "synthetic:in=0,out=1",
            "synthetic:foo=1",
            "synthetic:spread=2",
            "synthetic:prompts=0",
            "nope",
        ] {
            assert!(WorkloadSpec::parse(bad).is_err(), "{bad}");
        }
    }

    /// A workload's kind reads in any case, `_` or `-` between its words, as
    /// inference-perf names its `shared_prefix` data type; what follows the
    /// kind (a file's path) is kept as written.
    #[test]
    fn a_kind_reads_in_any_case_with_underscores() {
        let sp = "groups=2,users=3,system=50,question=10,output=5";
        let want = WorkloadSpec::parse(&format!("shared-prefix:{sp}")).unwrap();
        for kind in ["shared_prefix", "Shared-Prefix", " SHARED_PREFIX "] {
            assert_eq!(WorkloadSpec::parse(&format!("{kind}:{sp}")).unwrap(), want, "{kind}");
        }
        assert_eq!(WorkloadSpec::parse("Synthetic").unwrap(), WorkloadSpec::parse("synthetic").unwrap());
        assert_eq!(WorkloadSpec::parse("coding_swarm").unwrap(), WorkloadSpec::CodingSwarm);
        assert_eq!(WorkloadSpec::parse("FILE:Data/A_B.jsonl").unwrap(), WorkloadSpec::File("Data/A_B.jsonl".into()));
        for bad in ["coding-swarm:x", "file", "conversations", "shared-prefixes:groups=1"] {
            assert!(WorkloadSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn synthetic_prompts_are_distinct_sized_and_deterministic() {
        let w = SyntheticWorkload::new(512, 64, 0.0, 42);
        let s = SamplingParams::default();
        let a = w.request(0, &s);
        let b = w.request(1, &s);
        assert_ne!(a.prompt, b.prompt);
        assert_eq!(a.prompt, w.request(0, &s).prompt);
        assert_eq!(a.sampling.max_tokens, Some(64));
        let words = a.prompt.as_text().split_whitespace().count();
        // About one word per token: within 15 % of the target.
        assert!((words as f64 - 512.0).abs() < 0.15 * 512.0, "{words}");
        // The first 40 characters already differ, so no shared prefix.
        assert_ne!(a.prompt.as_text()[..40], b.prompt.as_text()[..40]);
    }

    #[test]
    fn a_cycling_synthetic_workload_repeats_its_prompts_byte_for_byte() {
        let spec = WorkloadSpec::parse("synthetic:in=64,out=8,prompts=3").unwrap();
        let w = spec.build(7).unwrap();
        let s = SamplingParams::default();
        assert_eq!(w.distinct_requests(), Some(3));
        assert_eq!(w.describe(), "synthetic:in=64,out=8,prompts=3");
        assert_eq!(w.request(4, &s).prompt, w.request(1, &s).prompt);
        assert_ne!(w.request(2, &s).prompt, w.request(1, &s).prompt);
        // Each request keeps its own id.
        assert_ne!(w.request(4, &s).id, w.request(1, &s).id);
        assert_eq!(SyntheticWorkload::new(64, 8, 0.0, 7).distinct_requests(), None);
    }

    /// What a replay reads of a request: all of it but the prompt's text.
    fn without_text(mut r: RequestSpec) -> RequestSpec {
        r.prompt = Prompt::Text(String::new());
        r
    }

    #[test]
    fn a_requests_shape_is_the_request_without_its_text() {
        let s = SamplingParams::default();
        for spec in [
            "synthetic:in=300,out=40,spread=0.2",
            "synthetic:in=64,out=8,prompts=3",
            "shared-prefix:groups=2,users=3,system=50,question=10,output=7",
            "shared-prefix:groups=2,users=3,system=50,question=10,output=7,multi-turn",
        ] {
            let w = WorkloadSpec::parse(spec).unwrap().build(5).unwrap();
            for i in [0, 1, 4, 13] {
                let (full, shape) = (w.request(i, &s), w.shape(i, &s));
                assert!(full.prompt.char_len() > 0, "{spec}");
                assert_eq!(shape.prompt.char_len(), 0, "{spec}: the shape carries no text");
                assert_eq!(without_text(shape), without_text(full), "{spec}, request {i}");
            }
        }
    }

    #[test]
    fn file_workload_reads_messages_and_prompts() {
        let dir = std::env::temp_dir().join(format!("fb-wl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("w.jsonl");
        std::fs::write(
            &p,
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":7,\"id\":\"a\"}\n\n{\"prompt\":\"raw\"}\n",
        )
        .unwrap();
        let w = FileWorkload::load(&p).unwrap();
        assert_eq!(w.distinct_requests(), Some(2));
        let r0 = w.request(0, &SamplingParams::default());
        assert_eq!(r0.id, "a");
        assert_eq!(r0.sampling.max_tokens, Some(7));
        let r1 = w.request(1, &SamplingParams::default());
        assert_eq!(r1.prompt, Prompt::Text("raw".into()));
        assert_eq!(w.request(2, &SamplingParams::default()).id, "a#1");

        std::fs::write(&p, "{\"prompt\":\"ok\"}\n{broken\n").unwrap();
        let e = FileWorkload::load(&p).unwrap_err().to_string();
        assert!(e.contains(":2:"), "{e}");
        std::fs::write(&p, "{\"prompt\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}\n").unwrap();
        assert!(FileWorkload::load(&p).is_err());
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(FileWorkload::load(&p), Err(WorkloadError::Empty(_))));
        std::fs::remove_dir_all(&dir).ok();
    }
}
