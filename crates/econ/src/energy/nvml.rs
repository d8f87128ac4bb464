//! The NVML meter: `libnvidia-ml.so` loaded at run time (nvml-wrapper uses
//! libloading), so fleetbench runs where the driver is absent.

use nvml_wrapper::Nvml;

use super::timeline::{CounterUnwrap, CounterWrap};
use super::{EnergyMeter, MeterError, MeterFuture, MeterKind, MeterReading};

/// Every GPU NVML sees. Uses the total-energy counter (millijoules since
/// the driver loaded, Volta and later) where all GPUs have it, and reports
/// power as well.
pub struct NvmlMeter {
    nvml: Nvml,
    count: u32,
    name: String,
    counters: Option<Vec<CounterUnwrap>>,
}

impl NvmlMeter {
    /// Loads the library and counts the GPUs.
    pub fn open() -> Result<NvmlMeter, MeterError> {
        let unavailable = |why: String| MeterError::Unavailable { meter: "nvml", why };
        let nvml = Nvml::init().map_err(|e| {
            unavailable(format!(
                "cannot load the NVIDIA management library (libnvidia-ml.so): {e}; is the NVIDIA driver installed?"
            ))
        })?;
        let count = nvml.device_count().map_err(|e| unavailable(format!("cannot count GPUs: {e}")))?;
        if count == 0 {
            return Err(unavailable("the library loaded but reports no GPUs".into()));
        }
        let name = nvml.device_by_index(0).and_then(|d| d.name()).unwrap_or_else(|_| "unknown GPU".into());
        let has_counter =
            (0..count).all(|i| nvml.device_by_index(i).and_then(|d| d.total_energy_consumption()).is_ok());
        let counters =
            has_counter.then(|| (0..count).map(|_| CounterUnwrap::new(CounterWrap::Modulo(1 << 64))).collect());
        Ok(NvmlMeter { nvml, count, name, counters })
    }

    fn read_now(&mut self) -> Result<MeterReading, MeterError> {
        let failed = |why: String| MeterError::Read { meter: "nvml", why };
        let mut power_mw: u64 = 0;
        let mut energy_mj: u64 = 0;
        for i in 0..self.count {
            let dev = self.nvml.device_by_index(i).map_err(|e| failed(format!("GPU {i}: {e}")))?;
            power_mw += u64::from(dev.power_usage().map_err(|e| failed(format!("GPU {i} power: {e}")))?);
            if let Some(counters) = self.counters.as_mut() {
                let raw = dev.total_energy_consumption().map_err(|e| failed(format!("GPU {i} energy counter: {e}")))?;
                energy_mj += counters[i as usize].push(raw);
            }
        }
        Ok(MeterReading {
            power_w: Some(power_mw as f64 / 1000.0),
            energy_j: self.counters.as_ref().map(|_| energy_mj as f64 / 1000.0),
        })
    }
}

impl EnergyMeter for NvmlMeter {
    fn kind(&self) -> MeterKind {
        MeterKind::Nvml
    }

    fn description(&self) -> String {
        format!(
            "NVML, {} GPU{} ({}), {}",
            self.count,
            if self.count == 1 { "" } else { "s" },
            self.name,
            if self.counters.is_some() { "energy counter" } else { "power samples" }
        )
    }

    fn read(&mut self) -> MeterFuture<'_> {
        // NVML calls return in microseconds to a few milliseconds.
        let r = self.read_now();
        Box::pin(async move { r })
    }
}
