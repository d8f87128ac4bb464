//! The pictures of a report, each with its caption, drawn once and used by
//! both `index.html` (inline) and `report.md` (as SVG files beside it).

use super::data::{CostPlan, ServerSample};
use super::series::{Axis, Curve};
use super::{Level, Report};
use crate::svg::{
    color, fmt_num, BarChart, BarGroup, EnergyFlow, HeatMap, Histogram, LineChart, LineSeries, LogBars, RankChart,
    Scatter,
};

/// One picture: its SVG, the file it is written to beside `report.md`, and
/// what the page says under it.
#[derive(Debug, Clone)]
pub struct Chart {
    pub id: String,
    /// The page section it belongs to.
    pub section: &'static str,
    pub title: String,
    pub svg: String,
    pub caption: String,
    /// Per series: (name, colour, why the curve bends).
    pub why: Vec<(String, &'static str, String)>,
}

impl Chart {
    pub fn file_name(&self) -> String {
        format!("{}.svg", self.id.trim_start_matches("chart-"))
    }
}

fn chart(id: &str, section: &'static str, title: &str, svg: String, caption: &str) -> Chart {
    Chart { id: id.into(), section, title: title.into(), svg, caption: caption.into(), why: Vec::new() }
}

/// Every picture the report has data for, in page order.
pub fn all(report: &Report, curves: &[Curve]) -> Vec<Chart> {
    let mut out = Vec::new();
    for axis in [Axis::Concurrency, Axis::Rate] {
        let cs: Vec<&Curve> = curves.iter().filter(|c| c.axis == axis).collect();
        if !cs.is_empty() {
            out.extend(throughput(axis, &cs));
        }
    }
    let levels: Vec<Level> = curves.iter().flat_map(|c| c.points.iter().cloned()).collect();
    if !levels.is_empty() {
        out.push(chart(
            "chart-ttft",
            "latency",
            "TTFT percentiles",
            percentiles("chart-ttft", "Time to first token (TTFT) percentiles", "ttft", "TTFT (ms)", &levels),
            "Bars: p50, p90, p99. Whiskers: 95 % intervals of the median and p99.",
        ));
        out.push(chart(
            "chart-tpot",
            "latency",
            "TPOT percentiles",
            percentiles("chart-tpot", "Time per output token (TPOT) percentiles", "tpot", "TPOT (ms)", &levels),
            "TPOT = (E2EL - TTFT) / (output tokens - 1).",
        ));
    }
    let itl: Vec<(String, Vec<f64>)> = curves
        .iter()
        .map(|c| {
            let gaps = report.runs.iter().filter(|r| c.run_ids.contains(&r.meta.id)).flat_map(|r| r.itl_ms.iter());
            (c.name.clone(), gaps.copied().collect::<Vec<f64>>())
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if !itl.is_empty() {
        let h = Histogram {
            id: "chart-itl".into(),
            title: "Inter-token latency (ITL) distribution".into(),
            x_label: "gap between tokens (ms)".into(),
            y_label: "share of gaps (%)".into(),
            series: itl,
            bins: 30,
        };
        out.push(chart(
            "chart-itl",
            "itl",
            "ITL distribution",
            h.render(),
            "Pooled over the completed requests of every level, 0 to the 99th percentile; longer gaps are counted in the last bin.",
        ));
    }
    if !levels.is_empty() {
        out.push(chart("chart-errors", "errors", "Errors", errors(&levels), ""));
    }
    out.extend(server(report, curves));
    out.extend(economics(report));
    out.extend(plans(report));
    out.extend(arena(report));
    out
}

fn throughput(axis: Axis, curves: &[&Curve]) -> Vec<Chart> {
    let (suffix, x_label, what) = match axis {
        Axis::Concurrency => ("", "concurrency (requests in flight)", "concurrency"),
        Axis::Rate => ("-rate", "request rate (requests/s)", "request rate"),
    };
    let mut agg = LineChart {
        id: format!("chart-aggregate-tps{suffix}"),
        title: format!("Aggregate output throughput vs {what}"),
        x_label: x_label.into(),
        y_label: "output throughput (tok/s)".into(),
        y_from_zero: true,
        x_log2: axis == Axis::Concurrency,
        ..Default::default()
    };
    let mut per = LineChart {
        id: format!("chart-per-request-tps{suffix}"),
        title: format!("Per-request decode speed vs {what}"),
        x_label: x_label.into(),
        y_label: "per-request output speed (tok/s)".into(),
        y_from_zero: true,
        x_log2: axis == Axis::Concurrency,
        ..Default::default()
    };
    let mut why = Vec::new();
    for (i, c) in curves.iter().enumerate() {
        let x = |p: &Level| c.x(p);
        agg.series.push(LineSeries {
            name: c.name.clone(),
            points: c.points.iter().map(|p| (x(p), p.metrics.output_throughput)).collect(),
            band: c.points.iter().filter_map(|p| p.output_ci.map(|ci| (x(p), ci.lo, ci.hi))).collect(),
            mark: c.knee_point().map(|p| {
                let open = c.knee_open();
                let label = match axis {
                    Axis::Concurrency => format!("knee: C{}{}", if open { "≥" } else { "=" }, fmt_num(x(p))),
                    Axis::Rate => format!("knee: {} req/s", fmt_num(x(p))),
                };
                (x(p), p.metrics.output_throughput, label)
            }),
            hline: c.saturation().map(|v| {
                // An open knee has not levelled off yet: say what the line is.
                let what = if c.knee_open() { "highest measured" } else { "saturation" };
                (v, format!("{what} {} tok/s", fmt_num(v)))
            }),
        });
        per.series.push(LineSeries {
            name: c.name.clone(),
            points: c.points.iter().filter_map(|p| p.metrics.mean_tok_s.map(|v| (x(p), v))).collect(),
            band: c.points.iter().filter_map(|p| p.metrics.ci("mean_tok_s").map(|ci| (x(p), ci.lo, ci.hi))).collect(),
            ..Default::default()
        });
        why.push((c.name.clone(), color(i), c.explanation()));
    }
    let mut a = chart(
        &agg.id,
        "throughput",
        &agg.title,
        agg.render(),
        "Shaded: 95 % bootstrap interval over requests. Ringed: the knee, past which more load buys little more throughput. Dashed: the throughput the curve saturates at (the highest measured where the knee is the last level).",
    );
    a.why = why;
    let mut out = vec![a];
    if per.series.iter().any(|s| !s.points.is_empty()) {
        out.push(chart(
            &per.id,
            "throughput",
            &per.title,
            per.render(),
            "Per-request speed = output tokens / end-to-end latency, mean with its 95 % interval.",
        ));
    }
    out
}

fn percentiles(id: &str, title: &str, key: &str, unit_label: &str, levels: &[Level]) -> String {
    let mut groups = Vec::new();
    for p in ["p50", "p90", "p99"] {
        let ci_key = match p {
            "p50" => Some(format!("median_{key}_ms")),
            "p99" => Some(format!("p99_{key}_ms")),
            _ => None,
        };
        groups.push(BarGroup {
            name: p.to_string(),
            values: levels.iter().map(|l| l.metrics.ms(&format!("{p}_{key}_ms"))).collect(),
            whiskers: levels
                .iter()
                .map(|l| ci_key.as_ref().and_then(|k| l.metrics.ci(k)).map(|c| (c.lo, c.hi)))
                .collect(),
        });
    }
    BarChart {
        id: id.into(),
        title: title.into(),
        x_label: "run / sweep level".into(),
        y_label: unit_label.into(),
        categories: levels.iter().map(|l| l.label.clone()).collect(),
        groups,
        empty_note: Some("no completed requests".into()),
    }
    .render()
}

fn errors(levels: &[Level]) -> String {
    let mut kinds: Vec<String> = levels.iter().flat_map(|l| l.metrics.errors_by_kind.keys().cloned()).collect();
    kinds.sort();
    kinds.dedup();
    let groups = if kinds.is_empty() {
        vec![BarGroup {
            name: "failed".into(),
            values: levels.iter().map(|l| Some(l.metrics.failed as f64)).collect(),
            whiskers: Vec::new(),
        }]
    } else {
        kinds
            .iter()
            .map(|k| BarGroup {
                name: k.clone(),
                values: levels
                    .iter()
                    .map(|l| Some(l.metrics.errors_by_kind.get(k).copied().unwrap_or(0) as f64))
                    .collect(),
                whiskers: Vec::new(),
            })
            .collect()
    };
    BarChart {
        id: "chart-errors".into(),
        title: "Failed requests by error kind".into(),
        x_label: "run / sweep level".into(),
        y_label: "failed requests (count)".into(),
        categories: levels.iter().map(|l| l.label.clone()).collect(),
        groups,
        empty_note: Some("no failed requests".into()),
    }
    .render()
}

fn server(report: &Report, curves: &[Curve]) -> Vec<Chart> {
    let runs: Vec<_> = report.runs.iter().filter(|r| !r.server.is_empty()).collect();
    // `run 3 · C=16`: which level of which curve the timeline belongs to.
    let name = |id: i64| {
        let mut levels =
            curves.iter().flat_map(|c| c.points.iter().filter(|p| p.run_id == id).map(|p| c.axis.fmt(c.x(p))));
        let level = levels.next().filter(|_| levels.next().is_none());
        match level {
            Some(l) => format!("run {id} · {l}"),
            None => format!("run {id}"),
        }
    };
    let mk = |id: &str, title: &str, y: &str, f: &dyn Fn(&ServerSample) -> Option<f64>| LineChart {
        id: id.into(),
        title: title.into(),
        x_label: "time since run start (s)".into(),
        y_label: y.into(),
        y_from_zero: true,
        series: runs
            .iter()
            .map(|r| LineSeries {
                name: name(r.meta.id),
                points: r.server.iter().filter_map(|p| f(p).map(|v| (p.t_s, v))).collect(),
                ..Default::default()
            })
            .filter(|se| !se.points.is_empty())
            .collect(),
        ..Default::default()
    };
    let mut out = Vec::new();
    let kv = mk("chart-kv-cache", "KV-cache usage over time", "KV cache used (%)", &|p| p.kv_cache_usage_pct);
    if !kv.series.is_empty() {
        out.push(chart(&kv.id, "server", &kv.title, kv.render(), "Scraped from the server's metrics endpoint."));
    }
    let q = mk("chart-queue", "Server queue over time", "requests (count)", &|p| p.queue_depth);
    if !q.series.is_empty() {
        out.push(chart(&q.id, "server", &q.title, q.render(), "Requests waiting in the server's queue."));
    }
    out
}

fn economics(report: &Report) -> Vec<Chart> {
    let mut out = Vec::new();
    let cost: Vec<_> = report.runs.iter().flat_map(|r| r.cost.iter()).collect();
    if !cost.is_empty() {
        let c = BarChart {
            id: "chart-cost".into(),
            title: "Cost per million output tokens".into(),
            x_label: "backend".into(),
            y_label: "USD per million output tokens".into(),
            categories: cost.iter().map(|c| c.backend.clone()).collect(),
            groups: vec![BarGroup {
                name: "USD / M output tokens".into(),
                values: cost.iter().map(|c| c.figures.usd_per_million_output_tokens).collect(),
                whiskers: Vec::new(),
            }],
            empty_note: None,
        };
        out.push(chart(
            &c.id,
            "economics",
            &c.title,
            c.render(),
            "From each backend's price model (see docs/ECONOMICS.md).",
        ));
    }
    let energy: Vec<_> = report.runs.iter().flat_map(|r| r.energy.iter()).collect();
    if !energy.is_empty() {
        let c = BarChart {
            id: "chart-energy".into(),
            title: "Energy per output token".into(),
            x_label: "backend".into(),
            y_label: "energy per output token (J)".into(),
            categories: energy.iter().map(|e| e.backend.clone()).collect(),
            groups: vec![BarGroup {
                name: "J / output token".into(),
                values: energy.iter().map(|e| e.energy_per_output_token_j).collect(),
                whiskers: energy.iter().map(|e| e.ci95.map(|c| (c.lo, c.hi))).collect(),
            }],
            empty_note: None,
        };
        out.push(chart(
            &c.id,
            "economics",
            &c.title,
            c.render(),
            "Steady-state window, idle power subtracted; whiskers are 95 % intervals.",
        ));
    }
    for (i, e) in energy.iter().enumerate() {
        let Some((p, m)) = e.past_the_meter.as_ref().and_then(|p| p.per_million_tokens.map(|m| (p, m))) else {
            continue;
        };
        let f = EnergyFlow {
            id: format!("chart-energy-flow-{}", i + 1),
            title: format!("Past the meter: {}", shorten(&e.backend, 52)),
            it_kwh: m.it_kwh,
            facility_kwh: m.facility_kwh,
            delivered_kwh: m.delivered_kwh,
            fuel_kwh: m.fuel_kwh,
            heat_kwh: m.heat_kwh,
            co2_kg: m.co2_kg,
            pue: p.pue,
        };
        out.push(chart(
            &f.id,
            "economics",
            &f.title,
            f.render(),
            &format!(
                "Per million output tokens of {}, supply {}: the IT energy the meter saw, times PUE for the facility, plus transmission losses to what the grid delivered, plus the generator's losses to the fuel burnt; all of it ends as heat.",
                e.backend, p.supply
            ),
        ));
    }
    out
}

fn plans(report: &Report) -> Vec<Chart> {
    let plans: Vec<&CostPlan> = report.runs.iter().flat_map(|r| r.plans.iter()).collect();
    let mut out = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let n = i + 1;
        let cheapest = p.rows.iter().map(|r| r.total_usd).filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        let usd = LogBars {
            id: format!("chart-plan-cost-{n}"),
            title: "Batch job: total cost per backend".into(),
            x_label: "total cost (USD, log scale)".into(),
            rows: p
                .rows
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        r.total_usd,
                        format!("${} · {}", fmt_num(r.total_usd), times(r.total_usd / cheapest)),
                    )
                })
                .collect(),
        };
        out.push(chart(
            &usd.id,
            "planner",
            &usd.title,
            usd.render(),
            "Log scale. Each bar is labelled with its cost and its multiple of the cheapest backend.",
        ));
        let fastest = p.rows.iter().filter_map(|r| r.wall_hours).filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
        let rows: Vec<_> = p
            .rows
            .iter()
            .filter_map(|r| {
                r.wall_hours.map(|h| {
                    (
                        r.name.clone(),
                        h,
                        format!("{} h · {}", fmt_num(h), times(h / fastest).replace("cheapest", "fastest")),
                    )
                })
            })
            .collect();
        if !rows.is_empty() {
            let t = LogBars {
                id: format!("chart-plan-time-{n}"),
                title: "Batch job: wall time per backend".into(),
                x_label: "wall time (hours, log scale)".into(),
                rows,
            };
            out.push(chart(
                &t.id,
                "planner",
                &t.title,
                t.render(),
                "Backends without a known wall time (APIs without a rate limit in the sheet) are left out.",
            ));
        }
    }
    out
}

fn times(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if (x - 1.0).abs() < 1e-9 {
        "cheapest".into()
    } else if x < 10.0 {
        format!("{x:.1}×")
    } else {
        format!("{x:.0}×")
    }
}

fn arena(report: &Report) -> Vec<Chart> {
    let mut rows: Vec<_> = report.runs.iter().flat_map(|r| r.arena.iter()).collect();
    if rows.is_empty() {
        return Vec::new();
    }
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    let rank = RankChart {
        id: "chart-arena-leaderboard".into(),
        title: "Arena leaderboard: diagnosis score".into(),
        x_label: "mean diagnosis score (points, 0–100)".into(),
        rows: rows.iter().map(|a| (a.backend.clone(), a.score, a.ci95.map(|c| (c.lo, c.hi)))).collect(),
    };
    out.push(chart(&rank.id, "arena", &rank.title, rank.render(), "Whiskers: 95 % bootstrap intervals over episodes."));
    let mut scenarios: Vec<String> = rows.iter().flat_map(|a| a.scenarios.keys().cloned()).collect();
    scenarios.sort();
    scenarios.dedup();
    if !scenarios.is_empty() {
        let hm = HeatMap {
            id: "chart-arena-heatmap".into(),
            title: "Diagnosis score by scenario and backend".into(),
            x_label: "backend".into(),
            y_label: "scenario".into(),
            cols: rows.iter().map(|a| a.backend.clone()).collect(),
            col_notes: rows
                .iter()
                .map(|a| match a.ci95 {
                    Some(c) => format!("{:.0} [{:.0}, {:.0}]", a.score, c.lo, c.hi),
                    None => format!("{:.0}", a.score),
                })
                .collect(),
            values: scenarios.iter().map(|sc| rows.iter().map(|a| a.scenarios.get(sc).copied()).collect()).collect(),
            cell_ci: scenario_intervals(report, &rows, &scenarios),
            rows: scenarios,
            scale: (0.0, 100.0),
        };
        out.push(chart(
            &hm.id,
            "arena",
            &hm.title,
            hm.render(),
            "Cell: mean score (points, 0–100) of the scenario's episodes, with the 95 % bootstrap interval over its stored answers where there are two or more; dark is low, yellow high; grey: no episodes. Under each backend: its overall score with the 95 % interval.",
        ));
    }
    let priced: Vec<_> = rows
        .iter()
        .filter_map(|a| {
            let usd = a.cost.as_ref().and_then(|c| c.figures.as_ref()).and_then(|f| f.usd_per_request);
            usd.map(|u| (a.backend.clone(), u, a.score, a.ci95.map(|c| (c.lo, c.hi))))
        })
        .collect();
    if !priced.is_empty() {
        let sc = Scatter {
            id: "chart-arena-cost".into(),
            title: "Arena: score against dollars per incident".into(),
            x_label: "USD per diagnosis".into(),
            y_label: "mean diagnosis score (points)".into(),
            points: priced,
        };
        out.push(chart(
            &sc.id,
            "arena",
            &sc.title,
            sc.render(),
            "Up and to the left is better. Whiskers: 95 % intervals of the score.",
        ));
    }
    out
}

/// At most `n` characters, an ellipsis marking a cut.
fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Per heat-map cell, the 95 % bootstrap interval of the mean score over the
/// stored answers of that backend and scenario (the answer's table key);
/// empty when the report holds no answers.
fn scenario_intervals(
    report: &Report,
    backends: &[&super::data::ArenaBackend],
    scenarios: &[String],
) -> Vec<Vec<Option<(f64, f64)>>> {
    use fleetbench_core::stats::{bootstrap_ci, resamples_for, BOOTSTRAP_SEED};
    let answers: Vec<_> = report.runs.iter().flat_map(|r| r.answers.iter()).collect();
    if answers.is_empty() {
        return Vec::new();
    }
    scenarios
        .iter()
        .map(|sc| {
            backends
                .iter()
                .map(|b| {
                    let scores: Vec<f64> = answers
                        .iter()
                        .filter(|a| a.backend == b.backend && a.label.as_deref() == Some(sc.as_str()))
                        .filter_map(|a| a.score)
                        .collect();
                    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
                    bootstrap_ci(&scores, mean, resamples_for(scores.len()), BOOTSTRAP_SEED).map(|c| (c.lo, c.hi))
                })
                .collect()
        })
        .collect()
}
