//! The shared vocabulary of fleetbench.
//!
//! Every other crate speaks in these types: what to send ([`RequestSpec`]),
//! what happened ([`RequestRecord`]), what a run was ([`RunMeta`]), and the
//! statistics that turn records into the figures docs/METRICS.md defines
//! ([`metrics::RunMetrics`]). Nothing here does I/O.

pub mod clock;
pub mod compare;
pub mod metrics;
pub mod outcome;
pub mod record;
pub mod repeats;
pub mod request;
pub mod run;
pub mod sessions;
pub mod stats;
pub mod streaming;
pub mod table;
pub mod units;

pub use clock::RunClock;
pub use metrics::{RunMetrics, Slo};
pub use outcome::{ErrorKind, RequestError, RequestRecord, ServerTimings, TokenSource, ToolCall};
pub use record::Artifact;
pub use request::{ApiKind, ChatMessage, Prompt, RequestContext, RequestSpec, SamplingParams};
pub use run::{RunConfig, RunMeta, RunStatus};
pub use units::{parse_duration, parse_switch, ParseDurationError};
