//! Cost and energy around a measured run (`--price`, `--meter` on `run` and
//! `sweep`): the price entry that turns a run's usage into dollars, and the
//! energy meter sampled in the background while requests flow. The figures
//! are stored with the run as `cost` and `energy` artifacts (the shapes the
//! report reads) and merged into `--json-out` under METRICS.md's names:
//! `usd_per_million_output_tokens`, `usd_per_request`,
//! `energy_per_output_token_j`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use fleetbench_core::{parse_duration, RequestRecord, RunClock, RunMetrics};
use fleetbench_econ::energy::measure_idle;
use fleetbench_econ::energy::timeline::{energy_report, EnergyReport, TokenWindow};
use fleetbench_econ::{
    cost_figures, open_meter, EnergyMeter, EnergySampler, MeterProbe, MeterSpec, PriceEntry, PriceSheet, Usage,
};
use fleetbench_store::Store;
use serde_json::{json, Map, Value};

/// The facility PUE and electricity supply assumed past the meter unless
/// `--pue` / `--supply` say otherwise (the demo uses them too).
pub const DEFAULT_PUE: f64 = 1.3;
pub const DEFAULT_SUPPLY: &str = "grid-us";

/// `--price`, `--prices`, `--meter` and friends.
#[derive(clap::Args, Debug, Clone)]
pub struct InstrumentArgs {
    /// Price the run with this entry of the price sheet: adds
    /// usd_per_million_output_tokens and usd_per_request (`fleetbench cost
    /// presets` lists the built-in entries).
    #[arg(long, value_name = "NAME", help_heading = "Cost and energy")]
    pub price: Option<String>,
    /// Price sheet (TOML with [[backend]] tables). Default: the built-in, dated examples.
    #[arg(long, value_name = "PATH", requires = "price", help_heading = "Cost and energy")]
    pub prices: Option<PathBuf>,
    /// Energy meter sampled during the run: auto (NVML, then nvidia-smi,
    /// then RAPL; says which), nvml, nvidia-smi, rapl, prometheus=URL (DCGM
    /// power of remote GPUs), or none.
    #[arg(long, value_name = "METER", default_value = "none", help_heading = "Cost and energy")]
    pub meter: String,
    /// Time between two meter readings.
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = parse_duration, help_heading = "Cost and energy")]
    pub meter_interval: Duration,
    /// Idle baseline sampled before the run and subtracted from J/token (0s to skip).
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration, help_heading = "Cost and energy")]
    pub idle: Duration,
    /// Label matchers for --meter prometheus=URL, e.g. '{Hostname="gpu7"}'.
    #[arg(long, value_name = "SELECTOR", default_value = "", help_heading = "Cost and energy")]
    pub meter_selector: String,
    /// Facility PUE for the energy past the meter.
    #[arg(long, default_value_t = DEFAULT_PUE, help_heading = "Cost and energy")]
    pub pue: f64,
    /// How the electricity is made, for the energy past the meter:
    /// gas-simple-cycle, gas-combined-cycle, grid-us or diesel (`fleetbench energy presets`).
    #[arg(long, default_value = DEFAULT_SUPPLY, help_heading = "Cost and energy")]
    pub supply: String,
}

/// What a run is priced and metered with; ready before the first request.
#[derive(Default)]
pub struct Instruments {
    price: Option<PriceEntry>,
    meter: tokio::sync::Mutex<Option<Box<dyn EnergyMeter>>>,
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

impl InstrumentArgs {
    /// Loads the price entry, opens the meter and measures the idle
    /// baseline. Says on stderr which meter was chosen and why.
    pub async fn prepare(&self, quiet: bool) -> anyhow::Result<Instruments> {
        let price = match &self.price {
            None => None,
            Some(name) => {
                let sheet = match &self.prices {
                    Some(p) => PriceSheet::load(p)?,
                    None => PriceSheet::presets()?,
                };
                Some(sheet.find(name)?.clone())
            }
        };
        // Checked now, used after the run.
        past_the_meter(1.0, self.pue, &self.supply)?;
        let spec: MeterSpec = self.meter.parse()?;
        if self.meter_interval < Duration::from_millis(10) {
            bail!("--meter-interval must be at least 10ms");
        }
        let probe = MeterProbe { prometheus_selector: self.meter_selector.clone(), ..MeterProbe::default() };
        let choice = open_meter(&spec, &probe).await?;
        let mut idle_power_w = None;
        let meter = match choice.meter {
            None => {
                if spec != MeterSpec::None {
                    eprintln!("energy: {}", choice.reason);
                    for p in &choice.passed_over {
                        eprintln!("        passed over: {p}");
                    }
                }
                None
            }
            Some(meter) => {
                eprintln!("energy: {}", choice.reason);
                if self.idle.is_zero() {
                    Some(meter)
                } else {
                    if !quiet {
                        eprintln!("energy: measuring idle power for {} before the run", humantime(self.idle));
                    }
                    let (idle, meter) = measure_idle(meter, self.idle, self.meter_interval)
                        .await
                        .context("measuring the idle baseline")?;
                    idle_power_w = idle.mean_power_w;
                    if let Some(w) = idle_power_w {
                        eprintln!("energy: idle {w:.1} W (subtracted from J/token, reported apart)");
                    }
                    Some(meter)
                }
            }
        };
        Ok(Instruments {
            price,
            meter: tokio::sync::Mutex::new(meter),
            idle_power_w,
            interval: self.meter_interval,
            pue: self.pue,
            supply: self.supply.clone(),
        })
    }
}

fn humantime(d: Duration) -> String {
    fleetbench_core::units::format_seconds(d.as_secs_f64())
}

/// A run in progress: the energy sampler, if a meter is in use.
pub struct Metering<'a> {
    inst: &'a Instruments,
    sampler: Option<EnergySampler>,
}

impl Instruments {
    /// Starts sampling (on the run's clock) when a meter is in use.
    /// `time_scale` other than 1 means the backend's clock is not the
    /// wall clock (the simulator): a real meter then measures nothing
    /// meaningful, so it is left out with a warning.
    pub async fn begin(&self, clock: &RunClock, time_scale: f64) -> Metering<'_> {
        let mut slot = self.meter.lock().await;
        let sampler = match slot.take() {
            Some(m) if time_scale == 1.0 => Some(EnergySampler::start(m, self.interval, clock.epoch())),
            Some(m) => {
                eprintln!("warning: the energy meter is not used on a time-scaled (simulated) backend");
                *slot = Some(m);
                None
            }
            None => None,
        };
        Metering { inst: self, sampler }
    }
}

/// The cost and energy figures of one run.
#[derive(Debug, Clone, Default)]
pub struct RunFigures {
    pub cost: Option<Value>,
    pub energy: Option<EnergyReport>,
}

impl Metering<'_> {
    /// Stops sampling, computes the figures, stores them with the run and
    /// puts the meter back for the next run (sweep levels share it).
    pub async fn finish(
        self,
        store: &Store,
        run_id: i64,
        backend: &str,
        metrics: &RunMetrics,
        records: &[RequestRecord],
    ) -> anyhow::Result<RunFigures> {
        let mut figures = RunFigures::default();
        if let Some(sampler) = self.sampler {
            match sampler.stop().await {
                Ok((timeline, meter)) => {
                    *self.inst.meter.lock().await = Some(meter);
                    let whole = whole_window(metrics, records);
                    let steady = metrics.steady_state.as_ref().map(TokenWindow::from_steady_state);
                    let report = energy_report(&timeline, self.inst.idle_power_w, whole, steady);
                    let mut artifact = json!({
                        "backend": backend,
                        "meter": report.meter.as_str(),
                        "description": report.description,
                        "provenance": report.provenance,
                        "idle_power_w": report.idle_power_w,
                        "whole_run": report.whole_run,
                        "steady_state": report.steady_state,
                        "samples": timeline.samples.len(),
                        "failed_reads": timeline.failed_reads,
                    });
                    if let Some(j) = report.energy_per_output_token_j {
                        artifact["energy_per_output_token_j"] = json!(j);
                        artifact["past_the_meter"] = past_the_meter(j, self.inst.pue, &self.inst.supply)?;
                    }
                    store.put_artifact(run_id, "energy", backend, &artifact)?;
                    store.put_artifact(run_id, "energy_timeline", backend, &serde_json::to_value(&timeline)?)?;
                    figures.energy = Some(report);
                }
                Err(e) => eprintln!("warning: the energy meter failed during the run: {e}"),
            }
        }
        if let Some(price) = &self.inst.price {
            let mut usage = Usage::from_run_metrics(metrics, false);
            usage.mean_power_w = figures
                .energy
                .as_ref()
                .and_then(|r| r.whole_run.as_ref())
                .map(|w| w.joules / (w.end_s - w.start_s).max(1e-9));
            match cost_figures(price, &usage) {
                Ok(usd) => {
                    let mut v = json!({
                        "backend": price.name,
                        "kind": price.kind().as_str(),
                        "price_inputs": price_inputs(price),
                        "source": price.source,
                    });
                    if let Some(o) = v.as_object_mut() {
                        o.extend(usd);
                    }
                    store.put_artifact(run_id, "cost", &price.name, &v)?;
                    figures.cost = Some(v);
                }
                Err(e) => eprintln!("warning: cannot price this run with '{}': {e}", price.name),
            }
        }
        Ok(figures)
    }
}

/// ECONOMICS.md's accounting for one million output tokens at `j_per_token`
/// (IT energy as metered): facility, delivered, fuel, heat and CO2, in the
/// report's `past_the_meter` shape.
pub fn past_the_meter(j_per_token: f64, pue: f64, supply: &str) -> anyhow::Result<Value> {
    use fleetbench_econ::{account, find_supply, AccountInputs};
    let preset = find_supply(supply)?;
    let it_kwh = j_per_token * 1e6 / 3.6e6;
    let a = account(AccountInputs::from_preset(it_kwh, pue, &preset, None, None, Some(1_000_000)))?;
    Ok(json!({
        "supply": preset.name,
        "pue": pue,
        "per_million_tokens": a.per_million_tokens,
        "inputs": a.inputs,
    }))
}

/// The whole measured run: first measured send to last end.
fn whole_window(metrics: &RunMetrics, records: &[RequestRecord]) -> TokenWindow {
    let measured = records.iter().filter(|r| !r.warmup);
    let start = measured.clone().map(|r| r.t_send).fold(f64::INFINITY, f64::min);
    let end = measured.map(|r| r.t_end).fold(f64::NEG_INFINITY, f64::max);
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

/// The cost and energy keys of a stored run, for `--json-out` and
/// `runs export` alike.
pub fn stored_keys(store: &Store, run_id: i64) -> anyhow::Result<Map<String, Value>> {
    let mut keys = Map::new();
    if let Some((_, cost)) = store.artifacts(run_id, "cost")?.into_iter().next() {
        for k in ["usd_per_million_output_tokens", "usd_per_request", "usd_total"] {
            if let Some(v) = cost.get(k).filter(|v| !v.is_null()) {
                keys.insert(k.into(), v.clone());
            }
        }
        keys.insert("price".into(), cost);
    }
    if let Some((_, energy)) = store.artifacts(run_id, "energy")?.into_iter().next() {
        if let Some(v) = energy.get("energy_per_output_token_j").filter(|v| !v.is_null()) {
            keys.insert("energy_per_output_token_j".into(), v.clone());
        }
        keys.insert("energy".into(), energy);
    }
    Ok(keys)
}
