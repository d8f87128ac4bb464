//! The AIOps arena: LLM backends as GPU-fleet operators.
//!
//! A seed becomes a fleet ([`topology`]), a schedule of episodes with
//! injected faults and decoys ([`episode`], [`scenario`]) and telemetry with
//! the real exporters' metric names ([`telemetry`]). Each episode's window
//! ([`window`], from the generator or from Prometheus via [`prometheus`])
//! becomes one prompt ([`prompt`]); answers are parsed leniently and
//! validated strictly ([`diagnosis`]), scored by a deterministic checklist
//! ([`score`]) and gathered into a leaderboard ([`leaderboard`]). In-process
//! operators (the `rules` runbook and two floors) live in [`operator`]; the
//! live `/metrics` endpoint in [`exporter`]; files in [`output`]; the whole
//! arena run (every backend over every episode, stored) in [`arena`].

pub mod agent;
pub mod arena;
pub mod backends;
pub mod diagnosis;
pub mod episode;
pub mod exporter;
pub mod investigate;
pub mod leaderboard;
pub mod mcp;
pub mod operator;
pub mod output;
pub mod prometheus;
pub mod prompt;
pub mod scenario;
pub mod score;
pub mod telemetry;
pub mod time;
pub mod topology;
pub mod window;

pub use arena::{
    parse_rate, render_costs, run_arena, ArenaConfig, ArenaError, ArenaObserver, ArenaOutcome, BackendProgress,
    Prepared, Telemetry,
};
pub use diagnosis::{json_schema, parse_answer, Diagnosis, Location, ParseError};
pub use episode::{plan_episode, plan_schedule, Episode};
pub use leaderboard::{leaderboard, EpisodeResult, Leaderboard, Price};
pub use operator::{builtin, rules_responder, Operator, OperatorInput, RulesOperator};
pub use scenario::{Action, ActionClass, Scenario};
pub use score::{score_answer, score_diagnosis, DiagnosisScore};
pub use topology::{Fleet, TopologyError};
pub use window::{generated_window, EpisodeWindow};

/// Errors of the arena library.
#[derive(Debug, thiserror::Error)]
pub enum AiopsError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("episodes file line {line}: {why}")]
    EpisodeLine { line: usize, why: String },
    #[error("answers file line {line}: {why}")]
    AnswerLine { line: usize, why: String },
    #[error("{0}")]
    Invalid(String),
    #[error("Prometheus query failed: {0}")]
    Prometheus(String),
}
