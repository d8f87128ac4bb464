//! Pricing and metering one measured run (`--price`, `--meter` on `run` and
//! `sweep`): the price entry that turns a run's usage into dollars, and the
//! energy meter sampled in the background while requests flow. The figures
//! come back as [`CostRecord`] and [`EnergyRecord`] (the measuring loop
//! stores them with the run) under docs/METRICS.md's key names:
//! `usd_per_million_output_tokens`, `usd_per_request`,
//! `energy_per_output_token_j`. Nothing here prints: what a person should
//! read comes back as notes and warnings.

use std::path::PathBuf;
use std::time::Duration;

use fleetbench_core::{RunClock, RunMetrics};
use tokio::sync::Mutex;

use crate::accounting::{account, find_supply, AccountError, AccountInputs};
use crate::energy::timeline::{energy_report, EnergyReport, TokenWindow};
use crate::energy::MeterSpec;
use crate::energy::{measure_idle, open_meter, EnergyMeter, EnergySampler, EnergyTimeline, MeterError, MeterProbe};
use crate::price::{CostFigures, PriceEntry, PriceError, PriceSheet, Usage};
use crate::records::{CostRecord, EnergyRecord, PastTheMeter};

/// The facility PUE and electricity supply assumed past the meter unless
/// the user says otherwise (the demo uses them too).
pub const DEFAULT_PUE: f64 = 1.3;
pub const DEFAULT_SUPPLY: &str = "grid-us";

#[derive(Debug, thiserror::Error)]
pub enum InstrumentError {
    #[error(transparent)]
    Price(#[from] PriceError),
    #[error(transparent)]
    Meter(#[from] MeterError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("the meter interval must be at least 10ms")]
    IntervalTooShort,
    #[error("measuring the idle baseline: {0}")]
    Idle(#[source] MeterError),
}

/// What to price and meter a run with, as the user asked.
#[derive(Debug, Clone)]
pub struct InstrumentSpec {
    /// Price entry name, looked up in `prices` (default: the built-in sheet).
    pub price: Option<String>,
    pub prices: Option<PathBuf>,
    /// `auto`, `nvml`, `nvidia-smi`, `rapl`, `prometheus=URL` or `none`.
    pub meter: String,
    pub meter_interval: Duration,
    /// Idle baseline sampled before the run (zero to skip).
    pub idle: Duration,
    /// Label matchers for a Prometheus meter.
    pub meter_selector: String,
    pub pue: f64,
    pub supply: String,
}

impl Default for InstrumentSpec {
    fn default() -> Self {
        InstrumentSpec {
            price: None,
            prices: None,
            meter: "none".into(),
            meter_interval: Duration::from_millis(500),
            idle: Duration::ZERO,
            meter_selector: String::new(),
            pue: DEFAULT_PUE,
            supply: DEFAULT_SUPPLY.into(),
        }
    }
}

/// What a run is priced and metered with; ready before the first request.
#[derive(Default)]
pub struct Instruments {
    price: Option<PriceEntry>,
    meter: Mutex<Option<Box<dyn EnergyMeter>>>,
    idle_power_w: Option<f64>,
    interval: Duration,
    pue: f64,
    supply: String,
}

impl std::fmt::Debug for Instruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instruments")
            .field("price", &self.price.as_ref().map(|p| &p.name))
            .field("idle_power_w", &self.idle_power_w)
            .finish_non_exhaustive()
    }
}

impl Instruments {
    /// Loads the price entry, opens the meter and measures the idle
    /// baseline. The notes say which meter was chosen and why, and the idle
    /// power: the caller shows them before the run starts.
    pub async fn prepare(spec: &InstrumentSpec) -> Result<(Instruments, Vec<String>), InstrumentError> {
        let price = match &spec.price {
            None => None,
            Some(name) => {
                let sheet = match &spec.prices {
                    Some(p) => PriceSheet::load(p)?,
                    None => PriceSheet::presets()?,
                };
                Some(sheet.find(name)?.clone())
            }
        };
        // Checked now, used after the run.
        past_the_meter(1.0, spec.pue, &spec.supply)?;
        let meter_spec: MeterSpec = spec.meter.parse()?;
        if spec.meter_interval < Duration::from_millis(10) {
            return Err(InstrumentError::IntervalTooShort);
        }
        let probe = MeterProbe { prometheus_selector: spec.meter_selector.clone(), ..MeterProbe::default() };
        let choice = open_meter(&meter_spec, &probe).await?;
        let mut notes = Vec::new();
        let mut idle_power_w = None;
        let meter = match choice.meter {
            None => {
                if meter_spec != MeterSpec::None {
                    notes.push(choice.reason);
                    notes.extend(choice.passed_over.iter().map(|p| format!("passed over: {p}")));
                }
                None
            }
            Some(meter) if spec.idle.is_zero() => {
                notes.push(choice.reason);
                Some(meter)
            }
            Some(meter) => {
                notes.push(choice.reason);
                let (idle, meter) =
                    measure_idle(meter, spec.idle, spec.meter_interval).await.map_err(InstrumentError::Idle)?;
                idle_power_w = idle.mean_power_w;
                if let Some(w) = idle_power_w {
                    notes.push(format!("idle {w:.1} W (subtracted from J/token, reported apart)"));
                }
                Some(meter)
            }
        };
        let instruments = Instruments {
            price,
            meter: Mutex::new(meter),
            idle_power_w,
            interval: spec.meter_interval,
            pue: spec.pue,
            supply: spec.supply.clone(),
        };
        Ok((instruments, notes))
    }

    /// Starts sampling (on the run's clock) when a meter is in use.
    /// `time_scale` other than 1 means the backend's clock is not the wall
    /// clock (the simulator): a real meter then measures nothing meaningful,
    /// so it is left out, and the returned metering says so in its warnings.
    pub async fn begin(&self, clock: &RunClock, time_scale: f64) -> Metering<'_> {
        let mut slot = self.meter.lock().await;
        let mut warnings = Vec::new();
        let sampler = match slot.take() {
            Some(m) if time_scale == 1.0 => Some(EnergySampler::start(m, self.interval, clock.epoch())),
            Some(m) => {
                warnings.push("the energy meter is not used on a time-scaled (simulated) backend".to_string());
                *slot = Some(m);
                None
            }
            None => None,
        };
        Metering { inst: self, sampler, warnings }
    }
}

/// A run in progress: the energy sampler, if a meter is in use.
pub struct Metering<'a> {
    inst: &'a Instruments,
    sampler: Option<EnergySampler>,
    warnings: Vec<String>,
}

/// The cost and energy of one run, ready to store.
#[derive(Debug, Clone, Default)]
pub struct RunFigures {
    pub cost: Option<CostRecord>,
    pub energy: Option<EnergyRecord>,
    /// Every meter reading, stored beside the energy record.
    pub timeline: Option<EnergyTimeline>,
    /// What went wrong without losing the run (a meter that failed, a price
    /// that does not apply).
    pub warnings: Vec<String>,
}

impl Metering<'_> {
    /// Stops sampling, computes the figures and puts the meter back for the
    /// next run (sweep levels share it). `backend` names the energy record.
    /// `measured` is the first send and last end of the measured requests.
    pub async fn finish(self, backend: &str, metrics: &RunMetrics, measured: (f64, f64)) -> RunFigures {
        let mut figures = RunFigures { warnings: self.warnings, ..RunFigures::default() };
        if let Some(sampler) = self.sampler {
            match sampler.stop().await {
                Ok((timeline, meter)) => {
                    *self.inst.meter.lock().await = Some(meter);
                    let whole = whole_window(metrics, measured);
                    let steady = metrics.steady_state.as_ref().map(TokenWindow::from_steady_state);
                    let report = energy_report(&timeline, self.inst.idle_power_w, whole, steady);
                    let (samples, failed) = (timeline.samples.len() as u64, timeline.failed_reads);
                    figures.energy =
                        Some(self.inst.energy_record(backend, report, samples, failed, &mut figures.warnings));
                    figures.timeline = Some(timeline);
                }
                Err(e) => figures.warnings.push(format!("the energy meter failed during the run: {e}")),
            }
        }
        figures.cost = self.inst.price(metrics, figures.energy.as_ref(), &mut figures.warnings);
        figures
    }
}

impl Instruments {
    /// The price of a run's usage under the price entry, if any; the mean
    /// power of the metered whole run replaces an owned machine's sheet power.
    pub(crate) fn price(
        &self,
        metrics: &RunMetrics,
        energy: Option<&EnergyRecord>,
        warnings: &mut Vec<String>,
    ) -> Option<CostRecord> {
        let price = self.price.as_ref()?;
        let mut usage = Usage::from_run_metrics(metrics, false);
        usage.mean_power_w =
            energy.and_then(|r| r.whole_run.as_ref()).map(|w| w.joules / (w.end_s - w.start_s).max(1e-9));
        match CostFigures::priced(price, &usage) {
            Ok(c) => Some(CostRecord {
                backend: price.name.clone(),
                kind: Some(price.kind().as_str().to_string()),
                price_inputs: Some(price_inputs(price)),
                source: price.source.clone(),
                figures: c,
                ..Default::default()
            }),
            Err(e) => {
                warnings.push(format!("cannot price this run with '{}': {e}", price.name));
                None
            }
        }
    }

    /// The energy record of a report, with the energy past the meter.
    pub(crate) fn energy_record(
        &self,
        backend: &str,
        report: EnergyReport,
        samples: u64,
        failed_reads: u64,
        warnings: &mut Vec<String>,
    ) -> EnergyRecord {
        let past = match report.energy_per_output_token_j {
            Some(j) => match past_the_meter(j, self.pue, &self.supply) {
                Ok(p) => Some(p),
                Err(e) => {
                    warnings.push(format!("energy past the meter: {e}"));
                    None
                }
            },
            None => None,
        };
        EnergyRecord {
            backend: backend.to_string(),
            meter: Some(report.meter.as_str().to_string()),
            description: Some(report.description),
            provenance: Some(report.provenance.as_str().to_string()),
            idle_power_w: report.idle_power_w,
            whole_run: report.whole_run,
            steady_state: report.steady_state,
            samples: Some(samples),
            failed_reads: Some(failed_reads),
            energy_per_output_token_j: report.energy_per_output_token_j,
            ci95: None,
            past_the_meter: past,
        }
    }
}

/// docs/ECONOMICS.md's accounting for one million output tokens at
/// `j_per_token` (IT energy as metered): facility, delivered, fuel, heat and
/// CO2.
pub fn past_the_meter(j_per_token: f64, pue: f64, supply: &str) -> Result<PastTheMeter, AccountError> {
    let preset = find_supply(supply)?;
    let it_kwh = j_per_token * 1e6 / 3.6e6;
    let a = account(AccountInputs::from_preset(it_kwh, pue, &preset, None, None, Some(1_000_000)))?;
    Ok(PastTheMeter { supply: preset.name, pue, per_million_tokens: a.per_million_tokens, inputs: Some(a.inputs) })
}

/// The whole measured run: first measured send to last end.
pub(crate) fn whole_window(metrics: &RunMetrics, (start, end): (f64, f64)) -> TokenWindow {
    let (start_s, end_s) = if start.is_finite() && end > start { (start, end) } else { (0.0, 0.0) };
    TokenWindow { start_s, end_s, output_tokens: metrics.total_output_tokens }
}

/// The price entry's inputs in words, shown beside the figures.
fn price_inputs(p: &PriceEntry) -> String {
    serde_json::to_value(&p.model)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.values().next().cloned()))
        .and_then(|v| v.as_object().cloned())
        .map(|o| o.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}
