//! The demo's closing comparison: one row per simulated setup.

use fleetbench_core::table::{Align, Table};
use fleetbench_load::sweep::fmt_level as fmt;

use crate::outln;

/// What the demo measured on one setup.
pub(super) struct SetupResult {
    pub(super) title: &'static str,
    pub(super) single: Option<f64>,
    pub(super) peak: f64,
    pub(super) peak_level: f64,
    pub(super) knee: Option<f64>,
    /// The knee is the highest level measured: the cliff lies beyond.
    pub(super) knee_open: bool,
    pub(super) why: String,
    pub(super) usd_per_m: Option<f64>,
    pub(super) joules_per_token: Option<f64>,
    pub(super) bottlenecks: String,
}

pub(super) fn print_comparison(results: &[SetupResult]) {
    let mut t = Table::new([
        "setup",
        "single-stream tok/s",
        "peak aggregate tok/s",
        "knee (agents)",
        "$ per M output tokens at the knee (rented)",
        "J per token (modelled)",
    ])
    .all_right()
    .align(0, Align::Left);
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for r in results {
        t.push([
            r.title.to_string(),
            or_dash(r.single.map(|s| format!("{s:.0}"))),
            format!("{:.0} at {}", r.peak, fmt(r.peak_level)),
            or_dash(r.knee.map(|k| format!("{}{}", if r.knee_open { "≥" } else { "" }, fmt(k)))),
            or_dash(r.usd_per_m.map(|u| format!("${u:.2}"))),
            or_dash(r.joules_per_token.map(|j| format!("{j:.2}"))),
        ]);
    }
    outln!("{}", t.markdown());
    for r in results {
        outln!("- {}: {}", r.title, r.bottlenecks);
    }
    outln!();
}
