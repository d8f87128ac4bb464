//! The modelled meter: power from a function the simulator supplies,
//! labelled modelled in every report, never measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{EnergyMeter, MeterFuture, MeterKind, MeterReading, Provenance};

/// Watts as a function of the time since the meter was created. The
/// simulator's closure may ignore the argument and read its own load state.
pub type PowerModel = Arc<dyn Fn(Duration) -> f64 + Send + Sync>;

pub struct ModelledMeter {
    label: String,
    model: PowerModel,
    start: Instant,
}

impl ModelledMeter {
    /// `label` names the model (`sim: 1x H100, llama-3-8b, vllm`).
    pub fn new(label: impl Into<String>, model: PowerModel) -> ModelledMeter {
        ModelledMeter { label: label.into(), model, start: Instant::now() }
    }
}

impl EnergyMeter for ModelledMeter {
    fn kind(&self) -> MeterKind {
        MeterKind::Modelled
    }

    fn description(&self) -> String {
        format!("modelled power ({}), not measured", self.label)
    }

    fn provenance(&self) -> Provenance {
        Provenance::Modelled
    }

    fn read(&mut self) -> MeterFuture<'_> {
        let w = (self.model)(self.start.elapsed());
        Box::pin(async move {
            Ok(MeterReading { power_w: Some(if w.is_finite() { w.max(0.0) } else { 0.0 }), energy_j: None })
        })
    }
}
