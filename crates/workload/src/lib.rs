//! fleetbench-workload: the one workload and arrival language of real and
//! simulated runs. A [`Workload`] says what request `i` is (a pure function
//! of the seed and `i`); a [`Schedule`] and an [`ArrivalSpec`] say when
//! requests go. Nothing here speaks HTTP: `fleetbench-load` sends these
//! requests to a backend, `fleetbench-sim` replays them on a simulated
//! deployment.
//!
//! - [`workload`]: the `--workload` grammar and the `synthetic` and `file` workloads;
//! - [`shared_prefix`]: inference-perf's `shared_prefix` generator, single or multi-turn;
//! - [`coding_swarm`]: the built-in coding tasks;
//! - [`session`]: session workloads (agent sessions) whose turns carry the history;
//! - [`conversations`]: conversation sets from ShareGPT JSON or JSONL files, replayed as sessions;
//! - [`schedule`]: closed and open loops, one-rate arrival processes;
//! - [`models`]: model mixes (`--model a,b,c:5,3,2`), each request or session drawn to one model;
//! - [`ramp`]: the `--ramp` grammar: a rate or concurrency that rises during one run;
//! - [`arrivals`]: the `--arrivals` grammar: staged processes and traces;
//! - [`trace`]: trace files (fleetbench JSONL, Mooncake, BurstGPT, Azure) and the workload they imply.

pub mod arrivals;
pub mod coding_swarm;
pub mod conversations;
pub mod models;
pub mod ramp;
pub mod schedule;
pub mod session;
pub mod shard;
pub mod shared_prefix;
pub mod text;
pub mod trace;
pub mod workload;

pub use arrivals::{ArrivalPlan, ArrivalSpec, Stage};
pub use ramp::{RampKind, RampSpec, RampWindow};
pub use schedule::{Arrival, ArrivalTimes, Schedule};
pub use session::{AgentSessionSpec, AgentSessions, SessionPlan, TurnPlan};
pub use shard::Shard;
pub use shared_prefix::{SharedPrefix, SharedPrefixSpec};
pub use trace::{Trace, TraceEntry, TraceFormat, TraceWorkload};
pub use workload::{FileWorkload, SyntheticWorkload, Workload, WorkloadError, WorkloadSpec};

/// A workload and, for open loops, its arrival instants, resolved from the
/// command line's `--workload` and `--arrivals`: a trace brings its own
/// requests, so it replaces the workload.
pub struct Traffic {
    pub workload: Box<dyn Workload>,
    pub arrivals: Option<ArrivalPlan>,
}

impl Traffic {
    /// Builds both. `workload_given` says whether `--workload` was given
    /// explicitly (a trace refuses an explicit workload rather than ignore it).
    pub fn resolve(
        workload: &WorkloadSpec,
        workload_given: bool,
        arrivals: Option<&ArrivalSpec>,
        seed: u64,
    ) -> Result<Traffic, WorkloadError> {
        match arrivals {
            Some(ArrivalSpec::Trace { path, format }) => {
                if workload_given {
                    return Err(WorkloadError::Arrivals {
                        spec: format!("trace:{}", path.display()),
                        why: "a trace sets each request's size itself: drop --workload".into(),
                    });
                }
                let trace = std::sync::Arc::new(Trace::load(path, *format)?);
                Ok(Traffic {
                    workload: Box::new(TraceWorkload::new(trace.clone(), seed)),
                    arrivals: Some(ArrivalPlan::Trace(trace)),
                })
            }
            Some(a) => Ok(Traffic { workload: workload.build(seed)?, arrivals: Some(a.plan(seed)?) }),
            None => Ok(Traffic { workload: workload.build(seed)?, arrivals: None }),
        }
    }
}
