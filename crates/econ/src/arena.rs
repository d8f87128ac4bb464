//! What the AIOps arena's backends cost: the price sheet a run needs, the
//! price entry of each backend (a named sheet entry, or the inline API
//! prices of its `[[backend]]`), and the cost keys of each priced backend
//! from the arena's own usage, through the same formula as a measured run
//! ([`CostFigures::priced`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::price::{
    multipliers_vs_cheapest, ApiPrice, CostFigures, PriceEntry, PriceError, PriceKind, PriceModel, PriceSheet,
    StreamRate, Throughput, Usage,
};

/// Why the arena's prices cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArenaPriceError {
    #[error("--prices given, but no backend names a price entry (add price = \"NAME\" to its [[backend]])")]
    UnusedSheet,
    #[error(transparent)]
    Sheet(#[from] PriceError),
    #[error("backend '{backend}'")]
    Entry {
        backend: String,
        #[source]
        source: PriceError,
    },
}

/// The price sheet of an arena run, loaded only when a backend names an
/// entry in it (`named`: backend name, entry name); every named entry must
/// exist (checked before any work). `prices` is the sheet's path, else the
/// built-in presets.
pub fn price_sheet(named: &[(&str, &str)], prices: Option<&Path>) -> Result<Option<PriceSheet>, ArenaPriceError> {
    if named.is_empty() {
        if prices.is_some() {
            return Err(ArenaPriceError::UnusedSheet);
        }
        return Ok(None);
    }
    let sheet = match prices {
        Some(p) => PriceSheet::load(p)?,
        None => PriceSheet::presets()?,
    };
    for (backend, entry) in named {
        sheet.find(entry).map_err(|source| ArenaPriceError::Entry { backend: backend.to_string(), source })?;
    }
    Ok(Some(sheet))
}

/// An API price given inline in a backend's entry, dollars per million
/// input and output tokens.
pub fn inline_api_entry(backend: &str, input_per_mtok: f64, output_per_mtok: f64) -> PriceEntry {
    PriceEntry {
        name: backend.to_string(),
        model: PriceModel::Api(ApiPrice {
            usd_per_m_input: input_per_mtok,
            usd_per_m_cached_input: None,
            usd_per_m_output: output_per_mtok,
            requests_per_minute: None,
            tokens_per_minute: None,
            batch_discount: 0.0,
        }),
        source: Some("backends file".into()),
    }
}

/// One priced backend's usage over the arena: answered episodes (failed
/// requests are not billed) and their tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ArenaUsage {
    pub backend: String,
    pub price: PriceEntry,
    pub answered: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The cost keys of one priced arena backend, stored beside its leaderboard
/// row and written to `--json-out`: `price_entry`, `price_kind`, the dollar
/// keys of [`CostFigures`] (absent when the entry cannot price the usage;
/// `cost_error` says why), `usd_per_day` for a stream at `--rate`, and
/// `usd_multiplier_vs_cheapest` per diagnosis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArenaCost {
    pub price_entry: String,
    pub price_kind: PriceKind,
    #[serde(flatten)]
    pub figures: Option<CostFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_day: Option<f64>,
    #[serde(default)]
    pub usd_multiplier_vs_cheapest: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_error: Option<String>,
}

/// What each priced backend costs, by backend name: `usd_per_request` (per
/// diagnosis) and `usd_per_million_output_tokens` from the arena's own
/// usage, `usd_per_day` for a stream at `rate_per_s` episodes a second, and
/// the multiplier per diagnosis against the cheapest. A self-hosted entry
/// (rented, owned) is billed for the arena's wall time `wall_s`.
pub fn arena_costs(usage: &[ArenaUsage], rate_per_s: Option<f64>, wall_s: f64) -> BTreeMap<String, ArenaCost> {
    let mut out = BTreeMap::new();
    for u in usage {
        let billed = Usage {
            requests: u.answered,
            input_tokens: u.input_tokens,
            cached_input_tokens: 0,
            output_tokens: u.output_tokens,
            wall_s,
            mean_power_w: None,
            batch_api: false,
        };
        let (figures, mut cost_error) = match CostFigures::priced(&u.price, &billed) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut usd_per_day = None;
        if let (Some(r), true) = (rate_per_s, u.answered > 0) {
            let n = u.answered as f64;
            let stream = StreamRate {
                requests_per_day: r * 86_400.0,
                input_tokens_per_request: u.input_tokens as f64 / n,
                cached_input_tokens_per_request: 0.0,
                output_tokens_per_request: u.output_tokens as f64 / n,
            };
            let measured = (wall_s > 0.0 && u.output_tokens > 0)
                .then(|| Throughput::OutputTokensPerS(u.output_tokens as f64 / wall_s));
            match u.price.usd_per_day(&stream, measured, None, false) {
                Ok(d) => usd_per_day = Some(d),
                Err(e) => cost_error = Some(e.to_string()),
            }
        }
        let cost = ArenaCost {
            price_entry: u.price.name.clone(),
            price_kind: u.price.kind(),
            figures,
            usd_per_day,
            usd_multiplier_vs_cheapest: None,
            cost_error,
        };
        out.insert(u.backend.clone(), cost);
    }
    let per_request: Vec<f64> =
        out.values().map(|c| c.figures.and_then(|f| f.usd_per_request).unwrap_or(f64::NAN)).collect();
    for (c, m) in out.values_mut().zip(multipliers_vs_cheapest(&per_request)) {
        c.usd_multiplier_vs_cheapest = m.is_finite().then_some(m);
    }
    out
}

impl crate::records::CostRecord {
    /// The `cost` record of an arena backend priced as `cost` says.
    pub fn arena(backend: &str, cost: &ArenaCost) -> crate::records::CostRecord {
        crate::records::CostRecord {
            backend: backend.to_string(),
            figures: cost.figures.unwrap_or_default(),
            price_entry: Some(cost.price_entry.clone()),
            price_kind: Some(cost.price_kind.as_str().to_string()),
            usd_per_day: cost.usd_per_day,
            usd_multiplier_vs_cheapest: cost.usd_multiplier_vs_cheapest,
            cost_error: cost.cost_error.clone(),
            ..Default::default()
        }
    }
}

/// Dollars per diagnosis at inline API prices for a mean usage per
/// diagnosis, and per day for a stream at `rate_per_s`: the leaderboard's
/// `cost_per_diagnosis` and `cost_per_day`, priced like [`arena_costs`].
pub fn per_diagnosis(
    price: &PriceEntry,
    mean_input_tokens: f64,
    mean_output_tokens: f64,
    rate_per_s: Option<f64>,
) -> (Option<f64>, Option<f64>) {
    let per = price.api_usd_for_tokens(mean_input_tokens, 0.0, mean_output_tokens, false);
    let day = rate_per_s.and_then(|r| {
        let stream = StreamRate {
            requests_per_day: r * 86_400.0,
            input_tokens_per_request: mean_input_tokens,
            cached_input_tokens_per_request: 0.0,
            output_tokens_per_request: mean_output_tokens,
        };
        price.usd_per_day(&stream, None, None, false).ok()
    });
    (per, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(backend: &str, price: PriceEntry, answered: u64, input: u64, output: u64) -> ArenaUsage {
        ArenaUsage { backend: backend.into(), price, answered, input_tokens: input, output_tokens: output }
    }

    fn rented(name: &str) -> PriceEntry {
        let sheet = PriceSheet::from_toml_str(
            &format!("[[backend]]\nname = \"{name}\"\nkind = \"rented\"\nusd_per_gpu_hour = 3.6\ngpus = 1\n"),
            "test",
        )
        .expect("sheet");
        sheet.find(name).expect("entry").clone()
    }

    #[test]
    fn costs_per_diagnosis_per_day_and_against_the_cheapest() {
        let api = inline_api_entry("api", 1.0, 2.0);
        let costs = arena_costs(
            &[usage("api", api, 10, 9000, 400), usage("box", rented("box"), 10, 9000, 400)],
            Some(1.0),
            3600.0,
        );
        let a = &costs["api"];
        let per = (900.0 + 80.0) / 1e6;
        assert_eq!((a.price_entry.as_str(), a.price_kind), ("api", PriceKind::Api));
        let f = a.figures.expect("figures");
        assert!((f.usd_per_request.expect("per request") - per).abs() < 1e-15);
        assert!((a.usd_per_day.expect("per day") - per * 86_400.0).abs() < 1e-9);
        // An hour on a $3.60/h machine for 10 diagnoses.
        let b = &costs["box"];
        assert!((b.figures.and_then(|f| f.usd_per_request).expect("per request") - 0.36).abs() < 1e-12);
        assert_eq!(b.usd_multiplier_vs_cheapest, Some(0.36 / per));
        assert_eq!(a.usd_multiplier_vs_cheapest, Some(1.0));
        let v = serde_json::to_value(a).expect("json");
        for k in ["usd_total", "usd_per_request", "usd_per_million_output_tokens", "usd_per_day", "price_kind"] {
            assert!(v.get(k).is_some(), "{k}: {v}");
        }
        assert!(v.get("cost_error").is_none());
        assert_eq!(serde_json::from_value::<ArenaCost>(v).expect("reads back"), *a);
    }

    #[test]
    fn nothing_answered_has_null_figures_and_no_multiplier() {
        let costs = arena_costs(&[usage("api", inline_api_entry("api", 1.0, 2.0), 0, 0, 0)], Some(1.0), 1.0);
        let v = serde_json::to_value(&costs["api"]).expect("json");
        assert!(v["usd_per_request"].is_null() && v["usd_multiplier_vs_cheapest"].is_null(), "{v}");
        assert!(v.get("usd_per_day").is_none(), "no stream without answers: {v}");
    }

    #[test]
    fn a_sheet_is_loaded_only_when_an_entry_is_named() {
        assert!(price_sheet(&[], None).expect("no sheet").is_none());
        let unused = price_sheet(&[], Some(Path::new("prices.toml"))).expect_err("unused");
        assert!(matches!(unused, ArenaPriceError::UnusedSheet));
        let missing = price_sheet(&[("b", "no-such-entry")], None).expect_err("missing");
        assert!(matches!(&missing, ArenaPriceError::Entry { backend, .. } if backend == "b"), "{missing}");
    }
}
