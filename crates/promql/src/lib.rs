//! An embedded PromQL engine for the AIOps arena.
//!
//! The arena's operators ask questions of an episode's fleet telemetry with
//! [`promql_query`] and [`promql_range`]. When a real Prometheus is installed
//! the arena asks it instead; this engine answers the same subset of the
//! language with the same semantics (Prometheus 2.x: 5-minute lookback,
//! range selectors closed at both ends, `rate()` extrapolation), and its
//! answers have the shape of the `data` object of Prometheus's HTTP API so
//! the two can be compared value by value.
//!
//! Supported: instant and range vector selectors with `=`, `!=`, `=~`, `!~`
//! matchers and `offset`; `rate`, `increase`, `delta`, `deriv`, `changes`,
//! `resets`, `absent`, `avg/min/max/sum/count/last/stddev/stdvar_over_time`,
//! `quantile_over_time`, `irate`, `idelta`, `abs`, `ceil`, `floor`, `sqrt`,
//! `exp`, `ln`, `log2`, `log10`, `time`, `scalar`, `vector`; `sum`, `avg`,
//! `min`, `max`, `count`, `group`, `stddev`, `stdvar`, `quantile`, `topk`,
//! `bottomk` with `by`/`without`; comparison
//! (`== != < <= > >=`, with or without `bool`) and arithmetic (`+ - * / % ^`)
//! between scalars, vectors and scalars, and vectors (`on`, `ignoring`,
//! `group_left`, `group_right`); `and`, `or`, `unless`; number literals,
//! unary minus and parentheses.
//!
//! Not supported (a parse error says so): subqueries, the `@` modifier,
//! string results and the functions and aggregations not listed above.
//!
//! Queries come from untrusted models: every query is bounded in size,
//! nesting, regular-expression size, range, number of series, points and
//! samples read ([`Limits`]); nothing panics on input.

mod eval;
mod parser;
mod storage;

pub use eval::{format_value, QueryResult, RangeSeries, Sample};
pub use parser::{parse, Expr, MatchOp, Matcher, Selector};
pub use storage::{Labels, Series, Storage, TimestampUnit};

/// What went wrong with a query or with the telemetry it runs on.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PromqlError {
    /// The query text is not valid (for this engine's subset) PromQL;
    /// `pos` is the byte offset in the query where the problem was found.
    #[error("parse error at position {pos}: {msg}")]
    Parse { pos: usize, msg: String },
    /// The query is valid but cannot be evaluated (types, matching, ...).
    #[error("evaluation error: {0}")]
    Eval(String),
    /// The query asks for more than [`Limits`] allows.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The telemetry text could not be read; `line` counts from 1.
    #[error("telemetry line {line}: {msg}")]
    Input { line: usize, msg: String },
}

/// Bounds every query is held to.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Longest query text in bytes.
    pub max_query_bytes: usize,
    /// Deepest nesting of sub-expressions.
    pub max_depth: usize,
    /// Longest regular expression in a label matcher, in bytes.
    pub max_regex_bytes: usize,
    /// Largest compiled regular expression, in bytes.
    pub max_regex_compiled_bytes: usize,
    /// Longest range selector and largest offset, in milliseconds.
    pub max_range_ms: i64,
    /// Most evaluation steps of a range query.
    pub max_points: usize,
    /// Most series a selector, an intermediate or the result may hold.
    pub max_series: usize,
    /// Most samples a query may read, all steps together.
    pub max_samples: u64,
    /// Most points a range query may return, all series together.
    pub max_result_points: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_query_bytes: 4096,
            max_depth: 64,
            max_regex_bytes: 1024,
            max_regex_compiled_bytes: 1 << 20,
            max_range_ms: 7 * 24 * 3600 * 1000,
            max_points: 11_000,
            max_series: 10_000,
            max_samples: 50_000_000,
            max_result_points: 2_000_000,
        }
    }
}

/// Lookback of instant selectors (Prometheus's default `--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Instant query at `time_ms` (milliseconds since the Unix epoch), with the
/// default [`Limits`].
pub fn promql_query(storage: &Storage, query: &str, time_ms: i64) -> Result<QueryResult, PromqlError> {
    eval::instant(storage, query, time_ms, &Limits::default())
}

/// Range query from `start_ms` to `end_ms` (inclusive) every `step_ms`, with
/// the default [`Limits`].
pub fn promql_range(
    storage: &Storage,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Result<QueryResult, PromqlError> {
    eval::range(storage, query, start_ms, end_ms, step_ms, &Limits::default())
}

/// Instant query with explicit limits.
pub fn query_with_limits(
    storage: &Storage,
    query: &str,
    time_ms: i64,
    limits: &Limits,
) -> Result<QueryResult, PromqlError> {
    eval::instant(storage, query, time_ms, limits)
}

/// Range query with explicit limits.
pub fn range_with_limits(
    storage: &Storage,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    limits: &Limits,
) -> Result<QueryResult, PromqlError> {
    eval::range(storage, query, start_ms, end_ms, step_ms, limits)
}
