//! What `fleetbench run` prints after the summary table: the cost and
//! energy lines, and the exit status a run's outcome maps to.

use std::process::ExitCode;

use fleetbench_core::RunStatus;
use fleetbench_load::measure::MeasureOutcome;

use crate::outln;
use crate::output::{EXIT_ERROR_RATE, EXIT_INTERRUPTED};

/// The cost and energy lines under the summary table.
pub(super) fn print_figures(o: &MeasureOutcome) {
    use fleetbench_report::svg::fmt_num;
    if let Some(c) = &o.figures.cost {
        let usd = |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into());
        outln!(
            "cost ({}): ${} per million output tokens, ${} per request, ${} in all",
            c.backend,
            usd(c.figures.usd_per_million_output_tokens, 4),
            usd(c.figures.usd_per_request, 6),
            usd(c.figures.usd_total, 4),
        );
    }
    if let Some(e) = &o.figures.energy {
        let window = |w: &Option<fleetbench_econ::energy::timeline::WindowEnergy>| {
            w.as_ref().map(|w| format!("{} J/token ({} J)", fmt_num(w.net_j_per_token), fmt_num(w.net_joules)))
        };
        outln!(
            "energy ({}): steady state {}, whole run {}{}",
            e.description.as_deref().unwrap_or("-"),
            window(&e.steady_state).unwrap_or_else(|| "-".into()),
            window(&e.whole_run).unwrap_or_else(|| "-".into()),
            e.idle_power_w.map(|w| format!(", idle {w:.1} W subtracted")).unwrap_or_default()
        );
    }
}

pub(super) fn exit_code(o: &MeasureOutcome) -> ExitCode {
    match o.meta.status {
        RunStatus::Interrupted => ExitCode::from(EXIT_INTERRUPTED),
        RunStatus::ErrorRateExceeded => {
            eprintln!(
                "error: {} of {} requests failed ({:.1} %), above --max-error-rate",
                o.metrics.failed,
                o.metrics.sent,
                100.0 * o.metrics.error_rate()
            );
            ExitCode::from(EXIT_ERROR_RATE)
        }
        _ => ExitCode::SUCCESS,
    }
}
