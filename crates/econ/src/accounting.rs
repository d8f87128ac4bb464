//! Energy past the meter: from IT energy to facility, delivered, fuel,
//! heat and CO2, with the supply presets (gas turbines, grid, diesel).

use serde::{Deserialize, Serialize};

/// The built-in supply presets.
pub const SUPPLY_PRESETS_TOML: &str = include_str!("../../../data/energy/supply-presets.toml");

/// BTU in one kWh (international table BTU). docs/ECONOMICS.md rounds it to 3412.
pub const BTU_PER_KWH: f64 = 3_412.141_63;
/// kg CO2 per MMBtu of natural gas (US EPA emission factors), the default
/// for `--supply custom`.
pub const NATURAL_GAS_CO2_KG_PER_MMBTU: f64 = 53.06;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("supply presets are not valid: {0}")]
    Presets(String),
    #[error("unknown supply '{name}'; use one of: {known}, or custom with --heat-rate")]
    UnknownSupply { name: String, known: String },
    #[error("{0}")]
    Invalid(String),
}

/// How CO2 is counted for a supply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Co2Factor {
    /// kg CO2 per MMBtu of fuel burned (a single fuel).
    KgPerMmbtuFuel(f64),
    /// kg CO2 per kWh generated (a mixed grid).
    KgPerKwhGenerated(f64),
}

/// One way of making and delivering electricity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupplyPreset {
    pub name: String,
    pub description: String,
    pub heat_rate_btu_per_kwh: f64,
    pub td_loss: f64,
    pub co2: Co2Factor,
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPresets {
    supply: Vec<RawPreset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreset {
    name: String,
    description: String,
    heat_rate_btu_per_kwh: f64,
    td_loss: f64,
    co2_kg_per_mmbtu: Option<f64>,
    co2_kg_per_kwh_generated: Option<f64>,
    source: String,
}

/// The presets shipped in `data/energy/supply-presets.toml`.
pub fn supply_presets() -> Result<Vec<SupplyPreset>, AccountError> {
    let raw: RawPresets = toml::from_str(SUPPLY_PRESETS_TOML).map_err(|e| AccountError::Presets(e.to_string()))?;
    raw.supply
        .into_iter()
        .map(|p| {
            let co2 = match (p.co2_kg_per_mmbtu, p.co2_kg_per_kwh_generated) {
                (Some(f), None) => Co2Factor::KgPerMmbtuFuel(f),
                (None, Some(g)) => Co2Factor::KgPerKwhGenerated(g),
                _ => {
                    return Err(AccountError::Presets(format!(
                        "supply '{}' must give exactly one of co2_kg_per_mmbtu, co2_kg_per_kwh_generated",
                        p.name
                    )))
                }
            };
            Ok(SupplyPreset {
                name: p.name,
                description: p.description,
                heat_rate_btu_per_kwh: p.heat_rate_btu_per_kwh,
                td_loss: p.td_loss,
                co2,
                source: p.source,
            })
        })
        .collect()
}

/// The preset called `name`.
pub fn find_supply(name: &str) -> Result<SupplyPreset, AccountError> {
    let all = supply_presets()?;
    let known = all.iter().map(|p| p.name.clone()).collect::<Vec<_>>().join(", ");
    all.into_iter().find(|p| p.name == name).ok_or(AccountError::UnknownSupply { name: name.to_string(), known })
}

/// Everything the accounting needs, as shown beside its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountInputs {
    pub it_kwh: f64,
    pub pue: f64,
    /// Preset name, or `custom`.
    pub supply: String,
    pub heat_rate_btu_per_kwh: f64,
    pub td_loss: f64,
    pub co2: Co2Factor,
    /// Output tokens the IT energy produced, for per-million figures.
    pub tokens: Option<u64>,
    pub source: String,
}

impl AccountInputs {
    /// Inputs from a preset, with optional overrides of its heat rate and
    /// T&D loss.
    pub fn from_preset(
        it_kwh: f64,
        pue: f64,
        preset: &SupplyPreset,
        heat_rate: Option<f64>,
        td_loss: Option<f64>,
        tokens: Option<u64>,
    ) -> AccountInputs {
        let overridden = heat_rate.is_some() || td_loss.is_some();
        AccountInputs {
            it_kwh,
            pue,
            supply: preset.name.clone(),
            heat_rate_btu_per_kwh: heat_rate.unwrap_or(preset.heat_rate_btu_per_kwh),
            td_loss: td_loss.unwrap_or(preset.td_loss),
            co2: preset.co2,
            tokens,
            source: if overridden {
                format!("{} (overridden on the command line)", preset.source)
            } else {
                preset.source.clone()
            },
        }
    }
}

/// Per million output tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerMillionTokens {
    pub it_kwh: f64,
    pub facility_kwh: f64,
    pub delivered_kwh: f64,
    pub fuel_kwh: f64,
    pub heat_kwh: f64,
    pub co2_kg: f64,
}

/// Where the heat comes from; the parts add up to `heat_kwh`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeatBreakdown {
    /// Fuel energy the generator did not turn into electricity.
    pub generator_kwh: f64,
    /// Lost in transmission and distribution.
    pub td_loss_kwh: f64,
    /// Cooling, power conversion and the rest of the facility overhead.
    pub facility_overhead_kwh: f64,
    /// The IT equipment itself (every joule a GPU uses ends as heat).
    pub it_kwh: f64,
}

/// The result of `energy account`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnergyAccount {
    pub it_kwh: f64,
    pub facility_kwh: f64,
    pub delivered_kwh: f64,
    pub fuel_kwh: f64,
    pub heat_kwh: f64,
    pub co2_kg: f64,
    pub heat_breakdown: HeatBreakdown,
    pub per_million_tokens: Option<PerMillionTokens>,
    pub inputs: AccountInputs,
}

/// E_fac = E_it × PUE; E_grid = E_fac / (1 − loss); E_fuel = E_grid ×
/// heat rate / 3412; all fuel energy ends as heat; CO2 from the fuel (or
/// from generation for a mixed grid).
pub fn account(inputs: AccountInputs) -> Result<EnergyAccount, AccountError> {
    let bad = |m: String| Err(AccountError::Invalid(m));
    if !(inputs.it_kwh.is_finite() && inputs.it_kwh >= 0.0) {
        return bad(format!("--kwh-it must be a finite number of kWh of at least 0, not {}", inputs.it_kwh));
    }
    if !(inputs.pue.is_finite() && inputs.pue >= 1.0) {
        return bad(format!("--pue must be at least 1.0 (facility energy / IT energy), not {}", inputs.pue));
    }
    if !(inputs.td_loss.is_finite() && (0.0..1.0).contains(&inputs.td_loss)) {
        return bad(format!(
            "--td-loss must be a fraction from 0 up to (not including) 1, e.g. 0.05, not {}",
            inputs.td_loss
        ));
    }
    if !(inputs.heat_rate_btu_per_kwh.is_finite() && inputs.heat_rate_btu_per_kwh >= BTU_PER_KWH * 0.999) {
        return bad(format!(
            "--heat-rate must be in BTU per kWh and at least 3412 (100 % efficiency), not {}; typical: 6,400-11,000",
            inputs.heat_rate_btu_per_kwh
        ));
    }
    let co2_ok = match inputs.co2 {
        Co2Factor::KgPerMmbtuFuel(f) | Co2Factor::KgPerKwhGenerated(f) => f.is_finite() && f >= 0.0,
    };
    if !co2_ok {
        return bad("the CO2 factor must be a finite number of at least 0".into());
    }
    let it = inputs.it_kwh;
    let facility = it * inputs.pue;
    let delivered = facility / (1.0 - inputs.td_loss);
    let fuel = delivered * inputs.heat_rate_btu_per_kwh / BTU_PER_KWH;
    let heat = fuel;
    let co2 = match inputs.co2 {
        Co2Factor::KgPerMmbtuFuel(f) => fuel * BTU_PER_KWH / 1e6 * f,
        Co2Factor::KgPerKwhGenerated(g) => delivered * g,
    };
    let per_million_tokens = match inputs.tokens {
        Some(0) => return bad("--tokens must be at least 1".into()),
        Some(t) => {
            let k = 1e6 / t as f64;
            Some(PerMillionTokens {
                it_kwh: it * k,
                facility_kwh: facility * k,
                delivered_kwh: delivered * k,
                fuel_kwh: fuel * k,
                heat_kwh: heat * k,
                co2_kg: co2 * k,
            })
        }
        None => None,
    };
    Ok(EnergyAccount {
        it_kwh: it,
        facility_kwh: facility,
        delivered_kwh: delivered,
        fuel_kwh: fuel,
        heat_kwh: heat,
        co2_kg: co2,
        heat_breakdown: HeatBreakdown {
            generator_kwh: fuel - delivered,
            td_loss_kwh: delivered - facility,
            facility_overhead_kwh: facility - it,
            it_kwh: it,
        },
        per_million_tokens,
        inputs,
    })
}

impl EnergyAccount {
    /// A Markdown block for reports: results per run and per million tokens,
    /// with the inputs and their source.
    pub fn to_markdown(&self) -> String {
        let i = &self.inputs;
        let mut out = String::from("### Energy past the meter\n\n");
        let pm = self.per_million_tokens;
        if pm.is_some() {
            out.push_str("| | total | per million tokens |\n|---|---:|---:|\n");
        } else {
            out.push_str("| | total |\n|---|---:|\n");
        }
        let rows: [(&str, f64, Option<f64>, &str); 6] = [
            ("IT energy", self.it_kwh, pm.map(|p| p.it_kwh), "kWh"),
            ("facility (x PUE)", self.facility_kwh, pm.map(|p| p.facility_kwh), "kWh"),
            ("delivered to the site", self.delivered_kwh, pm.map(|p| p.delivered_kwh), "kWh"),
            ("fuel burned", self.fuel_kwh, pm.map(|p| p.fuel_kwh), "kWh"),
            ("heat released", self.heat_kwh, pm.map(|p| p.heat_kwh), "kWh"),
            ("CO2", self.co2_kg, pm.map(|p| p.co2_kg), "kg"),
        ];
        for (label, total, per_m, unit) in rows {
            match per_m {
                Some(p) => out.push_str(&format!("| {label} | {} {unit} | {} {unit} |\n", sig(total), sig(p))),
                None => out.push_str(&format!("| {label} | {} {unit} |\n", sig(total))),
            }
        }
        let co2 = match i.co2 {
            Co2Factor::KgPerMmbtuFuel(f) => format!("{f} kg CO2/MMBtu of fuel"),
            Co2Factor::KgPerKwhGenerated(g) => format!("{g} kg CO2/kWh generated"),
        };
        out.push_str(&format!(
            "\nInputs: supply `{}`, PUE {}, T&D loss {:.1} %, heat rate {} BTU/kWh ({:.0} % efficient), {co2}{}.  \nSource: {}\n",
            i.supply,
            i.pue,
            i.td_loss * 100.0,
            i.heat_rate_btu_per_kwh,
            BTU_PER_KWH / i.heat_rate_btu_per_kwh * 100.0,
            i.tokens.map(|t| format!(", {t} output tokens")).unwrap_or_default(),
            i.source
        ));
        out
    }
}

/// Four significant figures, without scientific notation for everyday sizes.
fn sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn simple_cycle_gas_by_hand() {
        let p = find_supply("gas-simple-cycle").unwrap();
        let a = account(AccountInputs::from_preset(1.0, 1.3, &p, None, None, Some(2_000_000))).unwrap();
        // 1 kWh IT × 1.3 = 1.3 kWh; no T&D loss behind the meter;
        // fuel = 1.3 × 10,000 / 3412.14163 = 3.809924 kWh;
        // CO2 = 1.3 × 10,000 BTU = 0.013 MMBtu × 53.06 = 0.68978 kg.
        assert!(close(a.facility_kwh, 1.3));
        assert!(close(a.delivered_kwh, 1.3));
        assert!((a.fuel_kwh - 3.809924).abs() < 1e-6, "{}", a.fuel_kwh);
        assert!(close(a.heat_kwh, a.fuel_kwh));
        assert!(close(a.co2_kg, 0.68978), "{}", a.co2_kg);
        let pm = a.per_million_tokens.unwrap();
        assert!(close(pm.it_kwh, 0.5) && close(pm.co2_kg, 0.34489));
        let h = a.heat_breakdown;
        assert!(close(h.generator_kwh + h.td_loss_kwh + h.facility_overhead_kwh + h.it_kwh, a.heat_kwh));
        assert!(close(h.facility_overhead_kwh, 0.3));
    }

    #[test]
    fn grid_with_losses_and_overrides_by_hand() {
        let p = find_supply("grid-us").unwrap();
        let a = account(AccountInputs::from_preset(10.0, 1.5, &p, Some(9000.0), Some(0.1), None)).unwrap();
        // 10 × 1.5 = 15; / 0.9 = 16.6667; × 9000 / 3412.14163 = 43.9605;
        // CO2 from generation: 16.6667 × 0.37 = 6.16667 kg.
        assert!(close(a.delivered_kwh, 15.0 / 0.9));
        assert!((a.fuel_kwh - 43.96065).abs() < 1e-4, "{}", a.fuel_kwh);
        assert!(close(a.co2_kg, 15.0 / 0.9 * 0.37));
        assert!(close(a.heat_breakdown.td_loss_kwh, 15.0 / 0.9 - 15.0));
        assert_eq!(a.inputs.heat_rate_btu_per_kwh, 9000.0);
        assert!(a.inputs.source.contains("overridden"));
        assert!(a.per_million_tokens.is_none());
    }

    #[test]
    fn every_preset_has_a_source_and_sane_values() {
        let all = supply_presets().unwrap();
        for name in ["gas-simple-cycle", "gas-combined-cycle", "grid-us", "diesel"] {
            let p = all.iter().find(|p| p.name == name).unwrap();
            assert!(!p.source.is_empty());
            assert!(p.heat_rate_btu_per_kwh > BTU_PER_KWH && p.td_loss < 0.2);
        }
        let e = find_supply("coal").unwrap_err().to_string();
        assert!(e.contains("gas-simple-cycle") && e.contains("custom"), "{e}");
    }

    #[test]
    fn bad_inputs_name_the_flag() {
        let p = find_supply("diesel").unwrap();
        let e = account(AccountInputs::from_preset(1.0, 0.8, &p, None, None, None)).unwrap_err();
        assert!(e.to_string().contains("--pue"));
        let e = account(AccountInputs::from_preset(1.0, 1.2, &p, Some(2000.0), None, None)).unwrap_err();
        assert!(e.to_string().contains("--heat-rate"));
        let e = account(AccountInputs::from_preset(1.0, 1.2, &p, None, Some(1.0), None)).unwrap_err();
        assert!(e.to_string().contains("--td-loss"));
        let e = account(AccountInputs::from_preset(-1.0, 1.2, &p, None, None, None)).unwrap_err();
        assert!(e.to_string().contains("--kwh-it"));
    }

    #[test]
    fn json_carries_the_contract_keys() {
        let p = find_supply("gas-simple-cycle").unwrap();
        let a = account(AccountInputs::from_preset(2.0, 1.2, &p, None, None, None)).unwrap();
        let v = serde_json::to_value(&a).unwrap();
        for key in ["it_kwh", "facility_kwh", "delivered_kwh", "fuel_kwh", "heat_kwh", "co2_kg", "inputs"] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["it_kwh"], 2.0);
        assert_eq!(v["inputs"]["supply"], "gas-simple-cycle");
        assert_eq!(v["inputs"]["heat_rate_btu_per_kwh"], 10000.0);
    }

    #[test]
    fn markdown_shows_results_and_inputs() {
        let p = find_supply("gas-combined-cycle").unwrap();
        let a = account(AccountInputs::from_preset(1.0, 1.3, &p, None, None, Some(1_000_000))).unwrap();
        let md = a.to_markdown();
        assert!(md.contains("| facility (x PUE) | 1.300 kWh | 1.300 kWh |"), "{md}");
        assert!(md.contains("heat rate 6700 BTU/kWh (51 % efficient)"), "{md}");
        assert!(md.contains("53.06 kg CO2/MMBtu"), "{md}");
    }
}
