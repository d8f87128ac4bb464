//! When to send what. A [`Workload`] says what each request is; a
//! [`Schedule`] says when it goes (closed-loop agents or open-loop
//! arrivals); [`run`] drives a [`fleetbench_client::Client`] through the
//! plan and streams every [`fleetbench_core::RequestRecord`] to a sink the
//! moment it completes.

pub mod coding_swarm;
pub mod engine;
pub mod interrupt;
pub mod live;
pub mod measure;
pub mod schedule;
pub mod selftest;
pub mod sweep;
pub mod workload;

pub use engine::{run, EngineReport, RunPlan, StopCondition};
pub use schedule::{Arrival, ArrivalTimes, Schedule};
pub use workload::{FileWorkload, SyntheticWorkload, Workload, WorkloadError, WorkloadSpec};
