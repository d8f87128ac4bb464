//! Investigate mode: an operator starts from an alert and pulls what it
//! needs through tools ([`tools`]) until it submits a diagnosis.
//!
//! Each episode is a [`world::World`] drawn from a seed (fleet, faults,
//! decoys, alerts); [`episode_tools::EpisodeTools`] serves its tools, its
//! PromQL on the embedded engine or on a real Prometheus backfilled with the
//! episode ([`promql_source`], [`promserver`]);
//! [`score`] checks a submission against the world's truth with the
//! runbook's action table ([`cases`]); [`baselines`] holds the built-in
//! investigators and [`bench`] runs them over a stream of episodes.

pub mod arena;
pub mod baselines;
pub mod bench;
pub mod cases;
pub mod episode_tools;
pub mod exam;
pub mod kernel;
pub mod live;
pub mod promql_source;
pub mod promserver;
pub mod score;
pub mod series;
pub mod tools;
pub mod world;

pub use episode_tools::EpisodeTools;
pub use promql_source::PromqlChoice;
pub use tools::{Budget, Ended, Investigation, ToolReply, ToolSpec, Toolset, TOOL_NAMES};
