//! The investigate-mode leaderboard of each stored investigate run: per
//! backend the score with its 95 % interval, the single-fault and
//! beyond-runbook subsets, false positives, over-remediation, time to
//! diagnosis (median and p90), tool calls and tokens per episode, dollars
//! per incident and per day, then the floor; and the per-scenario scores.
//! The figures are the stored leaderboard rows' (`ArenaBackend::leaderboard`,
//! the aiops crate's investigate `Board`). Every name is escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use fleetbench_core::stats::Interval;
use serde_json::Value;

use super::data::ReportRun;
use super::Report;
use crate::svg::{esc, fmt_num};

/// Whether a run is an investigate-mode arena run.
pub(super) fn is_investigate(r: &ReportRun) -> bool {
    r.meta.config.get("mode").and_then(Value::as_str) == Some("investigate")
}

pub(super) const HEAD: [&str; 12] = [
    "backend",
    "score [95% CI]",
    "single-fault",
    "beyond runbook",
    "false positives",
    "over-remediation",
    "TTD p50 (s)",
    "TTD p90 (s)",
    "tool calls p50",
    "tokens p50",
    "$ per incident",
    "$ per day",
];

/// The tables of every investigate run in `report`.
pub(super) fn tables(s: &mut String, report: &Report) {
    for r in report.runs.iter().filter(|r| is_investigate(r)) {
        let _ = write!(s, "<h3>Investigate mode: run {}</h3>", r.meta.id);
        if let Some(ppd) = r.floor.as_ref().and_then(|f| f.pages_per_day) {
            let _ = write!(
                s,
                "<p class=\"note\">Dollars per day at the fleet's incident rate: {} pages a day.</p>",
                fmt_num(ppd)
            );
        }
        s.push_str("<div class=\"scroll\"><table class=\"investigate\"><thead><tr>");
        for h in HEAD {
            let _ = write!(s, "<th>{h}</th>");
        }
        s.push_str("</tr></thead><tbody>");
        for (backend, cells) in rows(r) {
            let _ = write!(s, "<tr><td>{}</td>", esc(&backend));
            for c in cells {
                let _ = write!(s, "<td class=\"num\">{}</td>", esc(&c));
            }
            s.push_str("</tr>");
        }
        if let Some(f) = &r.floor {
            let _ = write!(
                s,
                "<tr class=\"floor\"><td>floor</td><td class=\"num\">{}</td><td colspan=\"10\">the best constant answer: <code>{}</code></td></tr>",
                esc(&with_ci(f.score, f.ci95)),
                esc(&f.answer.to_string())
            );
        }
        s.push_str("</tbody></table></div>");
        scenarios(s, r);
    }
}

/// Each backend's row, best first: its name and the cells after it (in
/// [`HEAD`] order).
pub(super) fn rows(r: &ReportRun) -> Vec<(String, Vec<String>)> {
    let mut rows: Vec<_> = r.arena.iter().collect();
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    rows.into_iter()
        .map(|a| {
            let b = a.leaderboard.as_ref().unwrap_or(&Value::Null);
            let cells = vec![
                with_ci(a.score, a.ci95),
                num(b, "single_fault_score"),
                num(b, "beyond_runbook_score"),
                pct(b, "false_positive_rate"),
                pct(b, "over_remediation_rate"),
                num(b, "ttd_p50_s"),
                num(b, "ttd_p90_s"),
                num(b, "tool_calls_p50"),
                num(b, "tokens_p50"),
                num(b, "usd_per_incident"),
                num(b, "usd_per_day"),
            ];
            (a.backend.clone(), cells)
        })
        .collect()
}

/// `score [lo, hi]`.
pub(super) fn with_ci(x: f64, ci: Option<Interval>) -> String {
    let ci = ci.map(|c| format!(" [{}, {}]", fmt_num(c.lo), fmt_num(c.hi))).unwrap_or_default();
    format!("{}{ci}", fmt_num(x))
}

/// Scenario × backend: mean score (episodes).
fn scenarios(s: &mut String, r: &ReportRun) {
    let keys: BTreeSet<&String> = r.arena.iter().flat_map(|a| a.scenarios.keys()).collect();
    if keys.is_empty() {
        return;
    }
    s.push_str("<div class=\"scroll\"><table class=\"scenarios\"><thead><tr><th>scenario</th>");
    for a in &r.arena {
        let _ = write!(s, "<th>{}</th>", esc(&a.backend));
    }
    s.push_str("</tr></thead><tbody>");
    let counts: Vec<BTreeMap<String, u64>> = r.arena.iter().map(|a| scenario_counts(a.leaderboard.as_ref())).collect();
    for k in keys {
        let _ = write!(s, "<tr><td>{}</td>", esc(k));
        for (a, n) in r.arena.iter().zip(&counts) {
            let cell = match (a.scenarios.get(k), n.get(k)) {
                (Some(v), Some(n)) => format!("{} ({n})", fmt_num(*v)),
                (Some(v), None) => fmt_num(*v),
                _ => "-".into(),
            };
            let _ = write!(s, "<td class=\"num\">{}</td>", esc(&cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
}

/// Episodes per scenario from a stored row's `per_scenario`.
fn scenario_counts(board: Option<&Value>) -> BTreeMap<String, u64> {
    board
        .and_then(|b| b.get("per_scenario"))
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.get("n").and_then(Value::as_u64).map(|n| (k.clone(), n))).collect())
        .unwrap_or_default()
}

fn num(b: &Value, key: &str) -> String {
    b.get(key).and_then(Value::as_f64).map_or_else(|| "-".into(), fmt_num)
}

fn pct(b: &Value, key: &str) -> String {
    b.get(key).and_then(Value::as_f64).map_or_else(|| "-".into(), |x| format!("{}%", fmt_num(100.0 * x)))
}
