//! `fleetbench energy`: accounting past the meter (`energy account`), the
//! supply presets, and a meter probe (`energy meter`); the work is in fleetbench-econ.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use fleetbench_econ::accounting::{
    account, find_supply, AccountInputs, Co2Factor, NATURAL_GAS_CO2_KG_PER_MMBTU, SUPPLY_PRESETS_TOML,
};
use fleetbench_econ::energy::{open_meter, EnergySampler, MeterProbe, MeterSpec};

use crate::context::Context;

#[derive(clap::Args, Debug)]
pub struct EnergyArgs {
    #[command(subcommand)]
    pub command: EnergyCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum EnergyCommand {
    /// IT energy to facility, delivered, fuel, heat and CO2 (per million tokens with --tokens).
    #[command(after_help = "Examples:\n  \
fleetbench energy account --kwh-it 1.0 --pue 1.3 --supply gas-simple-cycle\n  \
fleetbench energy account --kwh-it 12.5 --pue 1.2 --supply grid-us --tokens 40000000 --json\n  \
fleetbench energy account --kwh-it 1 --pue 1.1 --supply custom --heat-rate 8000 --td-loss 0.03")]
    Account(AccountArgs),
    /// Print the built-in supply presets with their sources.
    Presets,
    /// Pick an energy meter (as `fleetbench run --meter` will), say which and
    /// why, and sample it for a few seconds.
    Meter(MeterArgs),
}

#[derive(clap::Args, Debug)]
pub struct AccountArgs {
    /// IT energy, kWh (what the GPU or server meter measured).
    #[arg(long, value_name = "KWH")]
    pub kwh_it: f64,
    /// Power usage effectiveness of the facility (facility energy / IT energy).
    #[arg(long, default_value_t = 1.3)]
    pub pue: f64,
    /// How the electricity is made: gas-simple-cycle, gas-combined-cycle,
    /// grid-us, diesel, or custom (needs --heat-rate).
    #[arg(long, value_name = "SUPPLY")]
    pub supply: String,
    /// Generator heat rate, BTU per kWh (overrides the preset).
    #[arg(long, value_name = "BTU_PER_KWH")]
    pub heat_rate: Option<f64>,
    /// Transmission and distribution loss as a fraction, e.g. 0.05 (overrides the preset).
    #[arg(long, value_name = "FRACTION")]
    pub td_loss: Option<f64>,
    /// CO2 per MMBtu of fuel for --supply custom (default: natural gas, 53.06).
    #[arg(long, value_name = "KG")]
    pub co2_kg_per_mmbtu: Option<f64>,
    /// Output tokens the IT energy produced: adds per-million-token figures.
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Print JSON.
    #[arg(long, conflicts_with = "md")]
    pub json: bool,
    /// Print the Markdown block used in reports.
    #[arg(long)]
    pub md: bool,
}

#[derive(clap::Args, Debug)]
pub struct MeterArgs {
    /// auto, nvml, nvidia-smi, rapl, prometheus=URL, or none.
    #[arg(long, default_value = "auto")]
    pub meter: String,
    /// Seconds to sample.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Sampling interval, e.g. 200ms.
    #[arg(long, default_value = "200ms")]
    pub interval: String,
    /// The nvidia-smi command to run.
    #[arg(long, default_value = "nvidia-smi")]
    pub nvidia_smi: PathBuf,
    /// Root of the powercap tree for RAPL.
    #[arg(long, default_value = "/sys/class/powercap")]
    pub rapl_root: PathBuf,
    /// Label matchers for the Prometheus DCGM queries, e.g. '{Hostname="gpu7"}'.
    #[arg(long, default_value = "")]
    pub prometheus_selector: String,
    /// Print JSON (the timeline and the mean power).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: EnergyArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        EnergyCommand::Account(a) => account_cmd(a),
        EnergyCommand::Presets => {
            crate::output::emit(SUPPLY_PRESETS_TOML);
            Ok(ExitCode::SUCCESS)
        }
        EnergyCommand::Meter(m) => meter_cmd(m).await,
    }
}

fn account_cmd(a: AccountArgs) -> anyhow::Result<ExitCode> {
    let inputs = if a.supply == "custom" {
        let Some(heat_rate) = a.heat_rate else {
            bail!("--supply custom needs --heat-rate (BTU/kWh; simple-cycle gas about 10,000, combined cycle about 6,700)");
        };
        let co2 = a.co2_kg_per_mmbtu.unwrap_or(NATURAL_GAS_CO2_KG_PER_MMBTU);
        AccountInputs {
            it_kwh: a.kwh_it,
            pue: a.pue,
            supply: "custom".into(),
            heat_rate_btu_per_kwh: heat_rate,
            td_loss: a.td_loss.unwrap_or(0.0),
            co2: Co2Factor::KgPerMmbtuFuel(co2),
            tokens: a.tokens,
            source: if a.co2_kg_per_mmbtu.is_some() {
                "given on the command line".into()
            } else {
                "given on the command line; CO2 factor of natural gas, 53.06 kg/MMBtu (US EPA)".into()
            },
        }
    } else {
        if a.co2_kg_per_mmbtu.is_some() {
            bail!("--co2-kg-per-mmbtu applies to --supply custom only; the presets carry their own factor (see `fleetbench energy presets`)");
        }
        let preset = find_supply(&a.supply)?;
        AccountInputs::from_preset(a.kwh_it, a.pue, &preset, a.heat_rate, a.td_loss, a.tokens)
    };
    let result = account(inputs)?;
    if a.json {
        crate::output::emit(&format!("{}\n", serde_json::to_string_pretty(&result)?));
    } else if a.md {
        crate::output::emit(&result.to_markdown());
    } else {
        let i = &result.inputs;
        let mut text = format!(
            "Inputs: supply {}, PUE {}, T&D loss {}, heat rate {} BTU/kWh\nSource: {}\n\n",
            i.supply, i.pue, i.td_loss, i.heat_rate_btu_per_kwh, i.source
        );
        let rows = [
            ("IT energy", result.it_kwh, result.per_million_tokens.map(|p| p.it_kwh), "kWh"),
            ("facility", result.facility_kwh, result.per_million_tokens.map(|p| p.facility_kwh), "kWh"),
            ("delivered", result.delivered_kwh, result.per_million_tokens.map(|p| p.delivered_kwh), "kWh"),
            ("fuel", result.fuel_kwh, result.per_million_tokens.map(|p| p.fuel_kwh), "kWh"),
            ("heat released", result.heat_kwh, result.per_million_tokens.map(|p| p.heat_kwh), "kWh"),
            ("CO2", result.co2_kg, result.per_million_tokens.map(|p| p.co2_kg), "kg"),
        ];
        for (label, total, per_m, unit) in rows {
            text.push_str(&match per_m {
                Some(p) => format!("  {label:<14} {total:>12.4} {unit:<3}   {p:>12.4} {unit} per million tokens\n"),
                None => format!("  {label:<14} {total:>12.4} {unit}\n"),
            });
        }
        crate::output::emit(&text);
    }
    Ok(ExitCode::SUCCESS)
}

async fn meter_cmd(m: MeterArgs) -> anyhow::Result<ExitCode> {
    let spec: MeterSpec = m.meter.parse()?;
    let interval = fleetbench_core::parse_duration(&m.interval)?;
    if !(m.seconds.is_finite() && m.seconds > 0.0 && m.seconds <= 3600.0) {
        bail!("--seconds must be above 0 and at most 3600, not {}", m.seconds);
    }
    let probe = MeterProbe {
        nvidia_smi: m.nvidia_smi,
        rapl_root: m.rapl_root,
        prometheus_selector: m.prometheus_selector,
        ..MeterProbe::default()
    };
    let choice = open_meter(&spec, &probe).await?;
    eprintln!("{}", choice.reason);
    let Some(meter) = choice.meter else {
        return Ok(ExitCode::from(3));
    };
    let origin = Instant::now();
    let sampler = EnergySampler::start(meter, interval, origin);
    tokio::time::sleep(Duration::from_secs_f64(m.seconds)).await;
    let (timeline, _meter) = sampler.stop().await?;
    let mean = timeline.span().and_then(|(a, b)| timeline.mean_power_w(a, b));
    if m.json {
        let out = serde_json::json!({
            "meter": timeline.meter,
            "reason": choice.reason,
            "mean_power_w": mean,
            "timeline": timeline,
        });
        crate::output::emit(&format!("{}\n", serde_json::to_string_pretty(&out)?));
    } else {
        let mut text = format!(
            "meter: {} ({:?})\nsamples: {} ({} failed reads)\n",
            timeline.description,
            timeline.provenance,
            timeline.samples.len(),
            timeline.failed_reads
        );
        text.push_str(&match mean {
            Some(w) => format!("mean power: {w:.1} W\n"),
            None => "mean power: not enough samples\n".to_string(),
        });
        if let Some(e) = &timeline.last_error {
            text.push_str(&format!("last error: {e}\n"));
        }
        crate::output::emit(&text);
    }
    Ok(ExitCode::SUCCESS)
}
