//! fleetbench-sim: what an LLM deployment would do, without the GPU.
//!
//! - [`catalog`]: GPUs, models, quantizations, engines, interconnects (TOML).
//! - [`hfconfig`]: a model from its Hugging Face config.json.
//! - [`perf`]: the per-step cost model and steady-state predictions.
//! - [`calibration`]: measured rows, placement in the catalog, validation.
//! - [`engine`]: the discrete-event continuous-batching engine.
//! - [`replay`]: a workload of the workload language replayed on the engine, no HTTP.
//! - [`server`]: the OpenAI-compatible simulated server on top of it
//!   (`prompt_index`: its prefix-cache keys, found by a prompt's content).
//! - [`underload`]: validation against real runs under load, replayed.

pub mod calibration;
pub mod catalog;
pub mod engine;
pub mod fixed;
pub mod hfconfig;
pub mod listing;
pub mod perf;
mod prompt_index;
pub mod replay;
pub mod server;
mod sessions;
pub mod underload;

pub use catalog::Catalog;
pub use perf::{
    predict, Bottleneck, Deployment, DeploymentSpec, EngineKnobs, Level, Parallelism, Prediction, StepCost, StepLoad,
    Workload,
};

/// Everything that can go wrong in the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("catalog {file}: {message}")]
    Catalog { file: String, message: String },
    #[error("unknown {kind} '{name}' ({hint})")]
    Unknown { kind: String, name: String, hint: String },
    #[error("does not fit: {0}")]
    DoesNotFit(String),
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error("calibration file {path}: {message}")]
    Calibration { path: String, message: String },
    #[error("server: {0}")]
    Server(String),
}
