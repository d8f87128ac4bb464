//! When to send what. A [`Workload`] says what each request is; a
//! [`Schedule`] says when it goes (closed-loop agents or open-loop
//! arrivals); [`run`] drives a [`fleetbench_client::Client`] through the
//! plan and streams every [`fleetbench_core::RequestRecord`] to a sink the
//! moment it completes. The workloads and arrival processes themselves live
//! in `fleetbench-workload` (no HTTP there, so the simulator replays the same
//! ones); they are re-exported here under their old paths.

pub mod engine;
pub mod exposition;
pub mod interrupt;
pub mod live;
pub mod measure;
pub mod repeated;
pub mod selftest;
mod session;
pub mod shard;
pub mod sweep;

pub use fleetbench_workload::{coding_swarm, schedule, workload};

pub use engine::{run, EngineReport, RunPlan, StopCondition};
pub use fleetbench_workload::{
    Arrival, ArrivalSpec, ArrivalTimes, FileWorkload, Schedule, SyntheticWorkload, Workload, WorkloadError,
    WorkloadSpec,
};
