//! Energy meters behind one trait ([`EnergyMeter`]), the background sampler
//! that turns one into a timeline, and `--meter` parsing with `auto` selection.

mod modelled;
mod nvidia_smi;
mod nvml;
mod prometheus;
mod rapl;
mod sampler;
pub mod timeline;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use modelled::{ModelledMeter, PowerModel};
pub use nvidia_smi::NvidiaSmiMeter;
pub use nvml::NvmlMeter;
pub use prometheus::PrometheusMeter;
pub use rapl::RaplMeter;
pub use sampler::{measure_idle, EnergySampler, IdleBaseline};
pub use timeline::{
    energy_report, CounterUnwrap, CounterWrap, EnergyEstimate, EnergyReport, EnergySample, EnergyTimeline,
    IntegrationMethod, TokenWindow, WindowEnergy,
};

/// Which meter a timeline came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeterKind {
    Nvml,
    NvidiaSmi,
    Prometheus,
    Rapl,
    Modelled,
}

impl MeterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MeterKind::Nvml => "nvml",
            MeterKind::NvidiaSmi => "nvidia-smi",
            MeterKind::Prometheus => "prometheus",
            MeterKind::Rapl => "rapl",
            MeterKind::Modelled => "modelled",
        }
    }
}

/// Whether a figure was measured by hardware or computed by a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    Measured,
    Modelled,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Measured => "measured",
            Provenance::Modelled => "modelled",
        }
    }
}

/// One reading of a meter: power, a cumulative energy counter, or both.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeterReading {
    pub power_w: Option<f64>,
    /// Joules since the meter's first reading, wraps unfolded.
    pub energy_j: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The meter cannot work on this machine (library, command, files or
    /// server absent); `auto` moves on to the next.
    #[error("{meter} meter unavailable: {why}")]
    Unavailable { meter: &'static str, why: String },
    /// The meter worked before but this read failed (a gap in the timeline).
    #[error("{meter} meter read failed: {why}")]
    Read { meter: &'static str, why: String },
    #[error("invalid --meter '{input}': {why} (use auto, nvml, nvidia-smi, rapl, prometheus=URL or none)")]
    Spec { input: String, why: String },
    #[error("the energy sampler task ended abnormally: {0}")]
    Sampler(String),
}

/// What a meter's `read` returns.
pub type MeterFuture<'a> = Pin<Box<dyn Future<Output = Result<MeterReading, MeterError>> + Send + 'a>>;

/// A source of power and energy readings. Implementations sum over every
/// device they watch (all GPUs, all CPU packages).
pub trait EnergyMeter: Send {
    fn kind(&self) -> MeterKind;
    /// The meter in words for reports (`NVML, 2 GPUs (NVIDIA H100)`).
    fn description(&self) -> String;
    fn provenance(&self) -> Provenance {
        Provenance::Measured
    }
    /// One reading now.
    fn read(&mut self) -> MeterFuture<'_>;
}

/// The value of `--meter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterSpec {
    Auto,
    Nvml,
    NvidiaSmi,
    Rapl,
    Prometheus { url: String },
    None,
}

impl FromStr for MeterSpec {
    type Err = MeterError;

    fn from_str(s: &str) -> Result<MeterSpec, MeterError> {
        let err = |why: &str| MeterError::Spec { input: s.to_string(), why: why.to_string() };
        match s.trim() {
            "auto" => Ok(MeterSpec::Auto),
            "nvml" => Ok(MeterSpec::Nvml),
            "nvidia-smi" => Ok(MeterSpec::NvidiaSmi),
            "rapl" => Ok(MeterSpec::Rapl),
            "none" => Ok(MeterSpec::None),
            "prometheus" => Err(err("prometheus needs the server, e.g. prometheus=http://127.0.0.1:9090")),
            other => match other.strip_prefix("prometheus=") {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Ok(MeterSpec::Prometheus { url: url.to_string() })
                }
                Some(_) => Err(err("the Prometheus URL must start with http:// or https://")),
                None => Err(err("unknown meter")),
            },
        }
    }
}

/// Where the meters look; defaults are the real system, tests point them
/// at stand-ins.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterProbe {
    /// The `nvidia-smi` command (a name looked up on PATH, or a path).
    pub nvidia_smi: PathBuf,
    /// The powercap tree (`/sys/class/powercap`).
    pub rapl_root: PathBuf,
    /// Label matchers added to the DCGM queries, e.g. `{Hostname="gpu7"}`.
    pub prometheus_selector: String,
    /// How long one read may take.
    pub read_timeout: Duration,
}

impl Default for MeterProbe {
    fn default() -> Self {
        MeterProbe {
            nvidia_smi: PathBuf::from("nvidia-smi"),
            rapl_root: PathBuf::from(rapl::DEFAULT_POWERCAP_ROOT),
            prometheus_selector: String::new(),
            read_timeout: Duration::from_secs(5),
        }
    }
}

/// The meter chosen for a run, and why.
pub struct MeterChoice {
    /// `None` for `--meter none` or when `auto` found nothing.
    pub meter: Option<Box<dyn EnergyMeter>>,
    /// One sentence for the terminal and the report.
    pub reason: String,
    /// What was tried and why it was passed over (for `auto`).
    pub passed_over: Vec<String>,
}

impl std::fmt::Debug for MeterChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeterChoice")
            .field("meter", &self.meter.as_ref().map(|m| m.description()))
            .field("reason", &self.reason)
            .field("passed_over", &self.passed_over)
            .finish()
    }
}

/// Opens the meter `spec` names. An explicit meter that cannot work is an
/// error; `auto` tries NVML, then `nvidia-smi`, then RAPL, takes the first
/// that gives a reading, and says which and why.
pub async fn open_meter(spec: &MeterSpec, probe: &MeterProbe) -> Result<MeterChoice, MeterError> {
    let chosen = |meter: Box<dyn EnergyMeter>, reason: String| MeterChoice {
        meter: Some(meter),
        reason,
        passed_over: Vec::new(),
    };
    match spec {
        MeterSpec::None => {
            Ok(MeterChoice { meter: None, reason: "no energy meter (--meter none)".into(), passed_over: Vec::new() })
        }
        MeterSpec::Nvml => {
            let m = checked(Box::new(NvmlMeter::open()?)).await?;
            let r = format!("{} (asked for with --meter nvml)", m.description());
            Ok(chosen(m, r))
        }
        MeterSpec::NvidiaSmi => {
            let m = checked(Box::new(NvidiaSmiMeter::new(probe.nvidia_smi.clone(), probe.read_timeout))).await?;
            let r = format!("{} (asked for with --meter nvidia-smi)", m.description());
            Ok(chosen(m, r))
        }
        MeterSpec::Rapl => {
            let m = checked(Box::new(RaplMeter::open(&probe.rapl_root)?)).await?;
            let r = format!("{} (asked for with --meter rapl)", m.description());
            Ok(chosen(m, r))
        }
        MeterSpec::Prometheus { url } => {
            let meter = PrometheusMeter::new(url, &probe.prometheus_selector, probe.read_timeout)?;
            let m = checked(Box::new(meter)).await?;
            let r = format!("{} (asked for with --meter prometheus=...)", m.description());
            Ok(chosen(m, r))
        }
        MeterSpec::Auto => {
            let mut passed_over = Vec::new();
            match NvmlMeter::open() {
                Ok(m) => match checked(Box::new(m)).await {
                    Ok(m) => {
                        let reason = format!(
                            "auto picked {}: the NVIDIA driver library loaded and reported GPUs",
                            m.description()
                        );
                        return Ok(MeterChoice { meter: Some(m), reason, passed_over });
                    }
                    Err(e) => passed_over.push(e.to_string()),
                },
                Err(e) => passed_over.push(e.to_string()),
            }
            let smi = NvidiaSmiMeter::new(probe.nvidia_smi.clone(), probe.read_timeout);
            match checked(Box::new(smi)).await {
                Ok(m) => {
                    let reason =
                        format!("auto picked {}: NVML was unavailable but nvidia-smi answered", m.description());
                    return Ok(MeterChoice { meter: Some(m), reason, passed_over });
                }
                Err(e) => passed_over.push(e.to_string()),
            }
            match RaplMeter::open(&probe.rapl_root) {
                Ok(m) => match checked(Box::new(m)).await {
                    Ok(m) => {
                        let reason = format!(
                            "auto picked {}: no NVIDIA GPU meter answered; CPU package energy only",
                            m.description()
                        );
                        return Ok(MeterChoice { meter: Some(m), reason, passed_over });
                    }
                    Err(e) => passed_over.push(e.to_string()),
                },
                Err(e) => passed_over.push(e.to_string()),
            }
            Ok(MeterChoice {
                meter: None,
                reason: format!(
                    "auto found no energy meter ({}); energy will not be reported. For GPUs on another host use --meter prometheus=URL",
                    passed_over.join("; ")
                ),
                passed_over,
            })
        }
    }
}

/// A meter is only offered when a first read succeeds.
async fn checked(mut meter: Box<dyn EnergyMeter>) -> Result<Box<dyn EnergyMeter>, MeterError> {
    match meter.read().await {
        Ok(_) => Ok(meter),
        Err(MeterError::Read { meter: name, why }) => Err(MeterError::Unavailable { meter: name, why }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_specs_parse() {
        assert_eq!("auto".parse::<MeterSpec>().unwrap(), MeterSpec::Auto);
        assert_eq!("nvidia-smi".parse::<MeterSpec>().unwrap(), MeterSpec::NvidiaSmi);
        assert_eq!(
            "prometheus=http://127.0.0.1:9090".parse::<MeterSpec>().unwrap(),
            MeterSpec::Prometheus { url: "http://127.0.0.1:9090".into() }
        );
        for bad in ["prometheus", "prometheus=localhost:9090", "ipmi"] {
            let e = bad.parse::<MeterSpec>().unwrap_err().to_string();
            assert!(e.contains("prometheus=URL"), "{e}");
        }
    }

    #[tokio::test]
    async fn auto_says_why_it_found_nothing() {
        let dir = crate::test_support::TempDir::new("auto-none");
        let probe = MeterProbe {
            nvidia_smi: dir.path().join("no-such-nvidia-smi"),
            rapl_root: dir.path().join("powercap"),
            ..MeterProbe::default()
        };
        let choice = open_meter(&MeterSpec::Auto, &probe).await.unwrap();
        if choice.meter.as_ref().map(|m| m.kind()) == Some(MeterKind::Nvml) {
            // A machine with the NVIDIA driver: NVML answers first (the probe
            // cannot leave the real one out), and says why.
            assert!(choice.reason.contains("the NVIDIA driver library loaded"), "{}", choice.reason);
            return;
        }
        assert!(choice.meter.is_none());
        assert_eq!(choice.passed_over.len(), 3, "{choice:?}");
        assert!(
            choice.reason.contains("nvml") && choice.reason.contains("nvidia-smi") && choice.reason.contains("rapl"),
            "{}",
            choice.reason
        );
        // Asking for one explicitly is an error that says what is missing.
        let e = open_meter(&MeterSpec::Nvml, &probe).await.unwrap_err().to_string();
        assert!(e.contains("nvml meter unavailable"), "{e}");
    }
}
