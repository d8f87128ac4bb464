//! The Prometheus meter: GPUs on other hosts, through the DCGM exporter's
//! `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (mJ) and `DCGM_FI_DEV_POWER_USAGE` (W).

use std::collections::BTreeMap;
use std::time::Duration;

use fleetbench_client::promapi::{PromApi, VectorSample};

use super::timeline::{CounterUnwrap, CounterWrap};
use super::{EnergyMeter, MeterError, MeterFuture, MeterKind, MeterReading};

pub const DCGM_ENERGY_METRIC: &str = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION";
pub const DCGM_POWER_METRIC: &str = "DCGM_FI_DEV_POWER_USAGE";

pub struct PrometheusMeter {
    api: PromApi,
    selector: String,
    /// One counter per series (its labels), restarts treated as resets.
    counters: BTreeMap<String, CounterUnwrap>,
    series: usize,
}

impl PrometheusMeter {
    /// `base` is the server (`http://127.0.0.1:9090`); `selector` adds label
    /// matchers to both queries (`{Hostname="gpu7"}`, or empty for all).
    pub fn new(base: &str, selector: &str, timeout: Duration) -> Result<PrometheusMeter, MeterError> {
        let selector = selector.trim();
        let braced = selector.starts_with('{') && selector.ends_with('}');
        if !selector.is_empty() && !braced {
            return Err(MeterError::Spec {
                input: selector.into(),
                why: "a Prometheus selector is label matchers in braces, e.g. {Hostname=\"gpu7\"}".into(),
            });
        }
        let api = PromApi::new(base, timeout)
            .map_err(|e| MeterError::Unavailable { meter: "prometheus", why: e.to_string() })?;
        Ok(PrometheusMeter { api, selector: selector.to_string(), counters: BTreeMap::new(), series: 0 })
    }

    async fn query(&self, metric: &str) -> Result<Vec<VectorSample>, MeterError> {
        let q = format!("{metric}{}", self.selector);
        self.api.query(&q, None).await.map_err(|e| read_err(e.to_string()))
    }

    async fn read_now(&mut self) -> Result<MeterReading, MeterError> {
        let energy = self.query(DCGM_ENERGY_METRIC).await?;
        let power = self.query(DCGM_POWER_METRIC).await?;
        if energy.is_empty() && power.is_empty() {
            return Err(read_err(format!(
                "no {DCGM_ENERGY_METRIC} or {DCGM_POWER_METRIC} series{} at {}; is the DCGM exporter being scraped?",
                if self.selector.is_empty() { String::new() } else { format!(" match {}", self.selector) },
                self.api.base()
            )));
        }
        let mut power_w = 0.0;
        for s in &power {
            power_w += parse_value(&s.value.1)?;
        }
        let mut energy_mj: u64 = 0;
        for s in &energy {
            let v = parse_value(&s.value.1)?;
            let key = series_key(&s.metric);
            let counter = self.counters.entry(key).or_insert_with(|| CounterUnwrap::new(CounterWrap::ResetOnDecrease));
            energy_mj += counter.push(v.round() as u64);
        }
        self.series = energy.len().max(power.len());
        Ok(MeterReading {
            power_w: (!power.is_empty()).then_some(power_w),
            energy_j: (!energy.is_empty()).then_some(energy_mj as f64 / 1000.0),
        })
    }
}

fn parse_value(v: &str) -> Result<f64, MeterError> {
    let x: f64 = v.parse().map_err(|_| read_err(format!("sample value '{v}' is not a number")))?;
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(read_err(format!("sample value {x} is not a finite, non-negative number")))
    }
}

fn series_key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn read_err(why: String) -> MeterError {
    MeterError::Read { meter: "prometheus", why }
}

impl EnergyMeter for PrometheusMeter {
    fn kind(&self) -> MeterKind {
        MeterKind::Prometheus
    }

    fn description(&self) -> String {
        format!("Prometheus DCGM ({}{}), {} GPU series", self.api.base(), self.selector, self.series)
    }

    fn read(&mut self) -> MeterFuture<'_> {
        Box::pin(self.read_now())
    }
}
