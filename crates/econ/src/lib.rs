//! Cost and energy for fleetbench (see docs/ECONOMICS.md).
//!
//! - [`price`]: price sheets (`api`, `rented`, `owned`) and what a measured
//!   usage costs: `usd_per_million_output_tokens`, `usd_per_request`,
//!   `usd_per_day`, the multiplier against the cheapest.
//! - [`arena`]: what each priced backend of the AIOps arena costs.
//! - [`planner`]: the batch-job planner (`fleetbench cost plan`).
//! - [`energy`]: meters behind one trait, the background sampler, timelines,
//!   idle baseline and J/token.
//! - [`accounting`]: energy past the meter (facility, delivered, fuel, heat,
//!   CO2) with supply presets (`fleetbench energy account`).
//! - [`instruments`]: pricing and metering one measured run.
//! - [`records`]: the cost and energy records stored beside a run.
//! - [`union`]: the cost and energy of a run measured by several processes.
//!
//! Nothing here prints; every function returns values or typed errors.

pub mod accounting;
pub mod arena;
pub mod energy;
pub mod instruments;
pub mod planner;
pub mod price;
pub mod records;
pub mod union;

pub use accounting::{account, find_supply, supply_presets, AccountError, AccountInputs, EnergyAccount, SupplyPreset};
pub use energy::{
    open_meter, EnergyMeter, EnergySampler, EnergyTimeline, MeterChoice, MeterError, MeterProbe, MeterSpec,
};
pub use planner::{plan_batch_job, BatchJob, Plan, PlanRow, ThroughputInput};
pub use price::{
    multipliers_vs_cheapest, CostFigures, CostSummary, PriceEntry, PriceError, PriceKind, PriceModel, PriceSheet,
    StreamRate, Throughput, Usage,
};

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    /// A directory under the system temp dir, removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            let p = std::env::temp_dir().join(format!("fleetbench-econ-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&p).expect("create temp dir");
            TempDir(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
