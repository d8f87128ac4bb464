//! `index.html`: the page around the charts. Every chart is a figure with
//! its title, axis labels with units, and the setup of the runs it shows
//! beside it. All text from runs, models and servers goes through `esc`.

use std::fmt::Write;

use super::data::{hardware, ReportRun};
use super::{Curve, Report};
use crate::svg::{esc, fmt_num, BarChart, BarGroup, HeatMap, Histogram, LineChart, LineSeries, RankChart};

const CSS: &str = r#"
:root { --fg: #1d2733; --muted: #5b6773; --line: #d9dee4; --bg: #fbfcfd; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); margin: 0; padding: 24px 32px 64px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 36px 0 12px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.sub { color: var(--muted); margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td code { display: block; min-width: 280px; }
.scroll { overflow-x: auto; max-width: 100%; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
figure.panel { display: flex; flex-wrap: wrap; gap: 16px; margin: 0 0 24px; align-items: flex-start; }
figure.panel .plot { flex: 0 0 auto; }
figure.panel aside.setup { flex: 1 1 260px; min-width: 240px; max-width: 460px; font-size: 12px; color: var(--muted); }
aside.setup ul { margin: 4px 0; padding-left: 16px; }
svg.chart { background: #fff; border: 1px solid var(--line); max-width: 100%; height: auto; }
svg .bg { fill: #fff; }
svg .chart-title { font-size: 15px; font-weight: 600; fill: var(--fg); }
svg .axis { stroke: #444; stroke-width: 1; }
svg .grid { stroke: #eceff2; stroke-width: 1; }
svg .tickmark { stroke: #444; }
svg .tick, svg .legend, svg .cell-value { font-size: 11px; fill: #333; }
svg .axis-label { font-size: 12px; fill: #222; }
svg .mark-label { font-size: 12px; font-weight: 600; fill: #222; }
svg .empty-note { font-size: 14px; fill: var(--muted); }
.answer { white-space: pre-wrap; background: #fff; border: 1px solid var(--line); padding: 8px; font-size: 12px; max-height: 240px; overflow: auto; }
.note { color: var(--muted); font-size: 12px; }
"#;

fn setup_item(r: &ReportRun) -> String {
    let m = &r.meta;
    let hw = hardware(m).map(|h| format!(" · hardware {}", esc(&h))).unwrap_or_default();
    format!(
        "<li><b>run {}</b>: model <span class=\"model\">{}</span> · backend {} ({}){hw} · {} · fleetbench {} · <code>{}</code></li>",
        m.id,
        esc(&m.model),
        esc(&m.backend_url),
        esc(&m.api),
        esc(&m.schedule),
        esc(&m.tool_version),
        esc(&m.command_line)
    )
}

/// The runs with points on the request charts (not arena-only runs).
fn measured_runs(report: &Report) -> Vec<&ReportRun> {
    report.runs.iter().filter(|r| !r.points().is_empty()).collect()
}

/// A chart with its setup beside it.
fn figure(s: &mut String, svg: &str, runs: &[&ReportRun], note: &str) {
    let _ = write!(s, "<figure class=\"panel\"><div class=\"plot\">{svg}</div><aside class=\"setup\"><b>Setup</b><ul>");
    for r in runs {
        s.push_str(&setup_item(r));
    }
    s.push_str("</ul>");
    if !note.is_empty() {
        let _ = write!(s, "<p>{}</p>", esc(note));
    }
    s.push_str("</aside></figure>");
}

fn throughput_charts(s: &mut String, report: &Report, curves: &[Curve]) {
    let all = measured_runs(report);
    let mut agg = LineChart {
        id: "chart-aggregate-tps".into(),
        title: "Aggregate output throughput vs concurrency".into(),
        x_label: "concurrency (requests in flight)".into(),
        y_label: "output throughput (tok/s)".into(),
        y_from_zero: true,
        ..Default::default()
    };
    let mut per = LineChart {
        id: "chart-per-request-tps".into(),
        title: "Per-request decode speed vs concurrency".into(),
        x_label: "concurrency (requests in flight)".into(),
        y_label: "per-request output speed (tok/s)".into(),
        y_from_zero: true,
        ..Default::default()
    };
    for c in curves {
        let xs = |p: &super::Level| p.concurrency.unwrap_or(0.0);
        agg.series.push(LineSeries {
            name: c.name.clone(),
            points: c.points.iter().map(|p| (xs(p), p.metrics.output_throughput)).collect(),
            band: c.points.iter().filter_map(|p| p.output_ci.map(|ci| (xs(p), ci.lo, ci.hi))).collect(),
            mark: c.knee.map(|i| {
                let p = &c.points[i];
                (xs(p), p.metrics.output_throughput, format!("knee: C={}", fmt_num(xs(p))))
            }),
        });
        per.series.push(LineSeries {
            name: c.name.clone(),
            points: c.points.iter().filter_map(|p| p.metrics.mean_tok_s.map(|v| (xs(p), v))).collect(),
            band: c.points.iter().filter_map(|p| p.metrics.ci("mean_tok_s").map(|ci| (xs(p), ci.lo, ci.hi))).collect(),
            mark: None,
        });
    }
    s.push_str("<section id=\"throughput\"><h2>Throughput against concurrency</h2>");
    figure(
        s,
        &agg.render(),
        &all,
        "Shaded: 95 % bootstrap interval over requests. The knee is the level past which more concurrency buys little more throughput (Kneedle, farthest point above the chord).",
    );
    if per.series.iter().any(|se| !se.points.is_empty()) {
        figure(
            s,
            &per.render(),
            &all,
            "Per-request speed = output tokens / end-to-end latency, mean with its 95 % interval.",
        );
    }
    s.push_str("</section>");
}

fn percentile_chart(id: &str, title: &str, key: &str, unit_label: &str, levels: &[super::Level]) -> String {
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

fn errors_chart(levels: &[super::Level]) -> String {
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

pub(super) fn render(report: &Report) -> String {
    let mut s = String::new();
    let ids: Vec<String> = report.runs.iter().map(|r| r.meta.id.to_string()).collect();
    let title = format!("fleetbench report: runs {}", ids.join(", "));
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\" /><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" /><title>{t}</title><style>{CSS}</style></head><body><header><h1>{t}</h1>",
        t = esc(&title)
    );
    let tool = report.runs.first().map(|r| r.meta.tool_version.clone()).unwrap_or_default();
    let _ = write!(
        s,
        "<p class=\"sub\">Written by fleetbench {}. Figures follow docs/METRICS.md; intervals are 95 % bootstrap intervals.</p></header>",
        esc(&tool)
    );

    // Setup table.
    s.push_str("<section id=\"setup\"><h2>Runs</h2><div class=\"scroll\"><table><thead><tr><th>run</th><th>model</th><th>backend</th><th>api</th><th>hardware</th><th>workload</th><th>schedule</th><th>status</th><th>started</th><th>tool</th><th>command</th></tr></thead><tbody>");
    for r in &report.runs {
        let m = &r.meta;
        let _ = write!(
            s,
            "<tr><td class=\"num\">{}</td><td class=\"model\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>fleetbench {}</td><td><code>{}</code></td></tr>",
            m.id,
            esc(&m.model),
            esc(&m.backend_url),
            esc(&m.api),
            esc(&hardware(m).unwrap_or_else(|| "-".into())),
            esc(&m.workload),
            esc(&m.schedule),
            esc(m.status.as_str()),
            esc(&m.started_at),
            esc(&m.tool_version),
            esc(&m.command_line)
        );
    }
    s.push_str("</tbody></table></div>");
    // Runs that sent no requests (arena runs) have no row here and no
    // latency or error charts.
    let levels = report.levels();
    if !levels.is_empty() {
        s.push_str("<table><thead><tr><th>run / level</th><th>sent</th><th>completed</th><th>failed</th><th>output tok/s [95% CI]</th><th>per-request tok/s [95% CI]</th><th>mean TTFT ms [95% CI]</th><th>mean TPOT ms [95% CI]</th></tr></thead><tbody>");
        for l in &levels {
            let m = &l.metrics;
            let ci = |x: Option<f64>, c: Option<fleetbench_core::stats::Interval>| match (x, c) {
                (Some(x), Some(c)) => format!("{} [{}, {}]", fmt_num(x), fmt_num(c.lo), fmt_num(c.hi)),
                (Some(x), None) => fmt_num(x),
                _ => "-".into(),
            };
            let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&l.label),
            m.sent,
            m.completed,
            m.failed,
            ci(Some(m.output_throughput), l.output_ci),
            ci(m.mean_tok_s, m.ci("mean_tok_s")),
            ci(m.ms("mean_ttft_ms"), m.ci("mean_ttft_ms")),
            ci(m.ms("mean_tpot_ms"), m.ci("mean_tpot_ms")),
        );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");

    let all = measured_runs(report);
    let curves = report.curves();
    if !curves.is_empty() {
        throughput_charts(&mut s, report, &curves);
    }

    if !levels.is_empty() {
        s.push_str("<section id=\"latency\"><h2>Latency percentiles</h2>");
        figure(
            &mut s,
            &percentile_chart("chart-ttft", "Time to first token (TTFT) percentiles", "ttft", "TTFT (ms)", &levels),
            &all,
            "Bars: p50, p90, p99. Whiskers: 95 % intervals of the median and p99.",
        );
        figure(
            &mut s,
            &percentile_chart("chart-tpot", "Time per output token (TPOT) percentiles", "tpot", "TPOT (ms)", &levels),
            &all,
            "TPOT = (E2EL - TTFT) / (output tokens - 1).",
        );
        s.push_str("</section>");
    }

    let itl: Vec<(String, Vec<f64>)> = report
        .runs
        .iter()
        .filter(|r| !r.itl_ms.is_empty())
        .map(|r| (format!("run {}", r.meta.id), r.itl_ms.clone()))
        .collect();
    if !itl.is_empty() {
        s.push_str("<section id=\"itl\"><h2>Inter-token latency</h2>");
        let h = Histogram {
            id: "chart-itl".into(),
            title: "Inter-token latency (ITL) distribution".into(),
            x_label: "gap between tokens (ms)".into(),
            y_label: "share of gaps (%)".into(),
            series: itl,
            bins: 30,
        };
        figure(
            &mut s,
            &h.render(),
            &all,
            "Pooled over completed requests, 0 to the 99th percentile; longer gaps are counted in the last bin.",
        );
        s.push_str("</section>");
    }

    if !levels.is_empty() {
        s.push_str("<section id=\"errors\"><h2>Errors</h2>");
        figure(&mut s, &errors_chart(&levels), &all, "");
        let mut messages: Vec<(i64, String)> = Vec::new();
        for r in &report.runs {
            for e in r.metrics.errors.iter().filter(|e| !e.is_empty()) {
                if !messages.iter().any(|(id, m)| *id == r.meta.id && m == e) && messages.len() < 20 {
                    messages.push((r.meta.id, e.clone()));
                }
            }
        }
        if !messages.is_empty() {
            s.push_str("<table><thead><tr><th>run</th><th>error (first distinct messages)</th></tr></thead><tbody>");
            for (id, m) in &messages {
                let short: String = m.chars().take(400).collect();
                let _ =
                    write!(s, "<tr><td class=\"num\">{id}</td><td class=\"error-message\">{}</td></tr>", esc(&short));
            }
            s.push_str("</tbody></table>");
        }
        s.push_str("</section>");
    }

    let server_runs: Vec<&ReportRun> = report.runs.iter().filter(|r| !r.server.is_empty()).collect();
    if !server_runs.is_empty() {
        s.push_str("<section id=\"server\"><h2>Server-side state</h2>");
        let mk = |id: &str, title: &str, y: &str, f: &dyn Fn(&super::data::ServerSample) -> Option<f64>| LineChart {
            id: id.into(),
            title: title.into(),
            x_label: "time since run start (s)".into(),
            y_label: y.into(),
            y_from_zero: true,
            series: server_runs
                .iter()
                .map(|r| LineSeries {
                    name: format!("run {}", r.meta.id),
                    points: r.server.iter().filter_map(|p| f(p).map(|v| (p.t_s, v))).collect(),
                    ..Default::default()
                })
                .filter(|se| !se.points.is_empty())
                .collect(),
        };
        let kv = mk("chart-kv-cache", "KV-cache usage over time", "KV cache used (%)", &|p| p.kv_cache_usage_pct);
        if !kv.series.is_empty() {
            figure(&mut s, &kv.render(), &server_runs, "Scraped from the server's metrics endpoint.");
        }
        let q = mk("chart-queue", "Server queue over time", "requests (count)", &|p| p.queue_depth);
        if !q.series.is_empty() {
            figure(&mut s, &q.render(), &server_runs, "Requests waiting in the server's queue.");
        }
        s.push_str("</section>");
    }

    let cost_runs: Vec<&ReportRun> = report.runs.iter().filter(|r| !r.cost.is_empty()).collect();
    let energy_runs: Vec<&ReportRun> = report.runs.iter().filter(|r| !r.energy.is_empty()).collect();
    if !cost_runs.is_empty() || !energy_runs.is_empty() {
        s.push_str("<section id=\"economics\"><h2>Cost and energy</h2>");
        if !cost_runs.is_empty() {
            let items: Vec<_> = cost_runs.iter().flat_map(|r| r.cost.iter()).collect();
            let c = BarChart {
                id: "chart-cost".into(),
                title: "Cost per million output tokens".into(),
                x_label: "backend".into(),
                y_label: "USD per million output tokens".into(),
                categories: items.iter().map(|c| c.backend.clone()).collect(),
                groups: vec![BarGroup {
                    name: "USD / M output tokens".into(),
                    values: items.iter().map(|c| c.figures.usd_per_million_output_tokens).collect(),
                    whiskers: Vec::new(),
                }],
                empty_note: None,
            };
            figure(&mut s, &c.render(), &cost_runs, "From each backend's price model (see docs/ECONOMICS.md).");
        }
        if !energy_runs.is_empty() {
            let items: Vec<_> = energy_runs.iter().flat_map(|r| r.energy.iter()).collect();
            let c = BarChart {
                id: "chart-energy".into(),
                title: "Energy per output token".into(),
                x_label: "backend".into(),
                y_label: "energy per output token (J)".into(),
                categories: items.iter().map(|e| e.backend.clone()).collect(),
                groups: vec![BarGroup {
                    name: "J / output token".into(),
                    values: items.iter().map(|e| e.energy_per_output_token_j).collect(),
                    whiskers: items.iter().map(|e| e.ci95.map(|c| (c.lo, c.hi))).collect(),
                }],
                empty_note: None,
            };
            figure(
                &mut s,
                &c.render(),
                &energy_runs,
                "Steady-state window, idle power subtracted; whiskers are 95 % intervals.",
            );
            let past: Vec<_> = items
                .iter()
                .filter_map(|e| {
                    e.past_the_meter.as_ref().and_then(|p| p.per_million_tokens.map(|m| (&e.backend, p, m)))
                })
                .collect();
            if !past.is_empty() {
                s.push_str("<h3>Energy past the meter, per million output tokens</h3><div class=\"scroll\"><table class=\"past-the-meter\"><thead><tr><th>backend</th><th>supply</th><th>PUE</th><th>IT kWh</th><th>facility kWh</th><th>delivered kWh</th><th>fuel kWh</th><th>heat kWh</th><th>CO2 kg</th></tr></thead><tbody>");
                for (b, p, m) in past {
                    s.push_str(&format!("<tr><td>{}</td><td>{}</td>", esc(b), esc(&p.supply)));
                    for v in [p.pue, m.it_kwh, m.facility_kwh, m.delivered_kwh, m.fuel_kwh, m.heat_kwh, m.co2_kg] {
                        s.push_str(&format!("<td class=\"num\">{}</td>", esc(&fmt_num(v))));
                    }
                    s.push_str("</tr>");
                }
                s.push_str("</tbody></table></div><p class=\"note\">IT energy is what the meter saw; facility = IT × PUE; delivered adds transmission losses; fuel and heat follow the supply's heat rate (docs/ECONOMICS.md).</p>");
            }
        }
        s.push_str("</section>");
    }

    let arena_runs: Vec<&ReportRun> = report.runs.iter().filter(|r| !r.arena.is_empty()).collect();
    if !arena_runs.is_empty() {
        s.push_str("<section id=\"arena\"><h2>AIOps arena</h2>");
        let mut rows: Vec<_> = arena_runs.iter().flat_map(|r| r.arena.iter()).collect();
        rows.sort_by(|a, b| b.score.total_cmp(&a.score));
        let chart = RankChart {
            id: "chart-arena-leaderboard".into(),
            title: "Arena leaderboard: diagnosis score".into(),
            x_label: "mean diagnosis score (points, 0–100)".into(),
            rows: rows.iter().map(|a| (a.backend.clone(), a.score, a.ci95.map(|c| (c.lo, c.hi)))).collect(),
        };
        figure(&mut s, &chart.render(), &arena_runs, "Whiskers: 95 % bootstrap intervals over episodes.");
        s.push_str("<table class=\"leaderboard\"><thead><tr><th>rank</th><th>backend</th><th>model</th><th>score [95% CI]</th><th>episodes</th><th>failed</th></tr></thead><tbody>");
        for (i, a) in rows.iter().enumerate() {
            let ci = a.ci95.map(|c| format!(" [{}, {}]", fmt_num(c.lo), fmt_num(c.hi))).unwrap_or_default();
            let _ = write!(
                s,
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"model\">{}</td><td class=\"num\">{}{ci}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                i + 1,
                esc(&a.backend),
                esc(a.model.as_deref().unwrap_or("-")),
                fmt_num(a.score),
                a.episodes.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                a.failed.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            );
        }
        s.push_str("</tbody></table>");
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
                values: scenarios
                    .iter()
                    .map(|sc| rows.iter().map(|a| a.scenarios.get(sc).copied()).collect())
                    .collect(),
                rows: scenarios,
                scale: (0.0, 100.0),
            };
            figure(
                &mut s,
                &hm.render(),
                &arena_runs,
                "Cell: mean score (points, 0–100); red is low, green high; grey: no episodes.",
            );
        }
        let answers = sample_answers(arena_runs.iter().flat_map(|r| r.answers.iter()), 3, 12);
        if !answers.is_empty() {
            s.push_str("<h3>Sample answers</h3><p class=\"note\">The lowest-scored answers of each backend.</p>");
            for a in answers {
                let text: String = a.text.chars().take(4000).collect();
                let _ = write!(
                    s,
                    "<p><b>{}</b> on {}{}</p><pre class=\"answer\">{}</pre>",
                    esc(&a.backend),
                    esc(a.scenario.as_deref().unwrap_or("-")),
                    a.score.map(|x| format!(" (score {})", fmt_num(x))).unwrap_or_default(),
                    esc(&text)
                );
            }
        }
        s.push_str("</section>");
    }

    let plan_runs: Vec<&ReportRun> = report.runs.iter().filter(|r| !r.plans.is_empty()).collect();
    if !plan_runs.is_empty() {
        s.push_str("<section id=\"planner\"><h2>Batch-job planner</h2>");
        for r in &plan_runs {
            for p in &r.plans {
                let _ = write!(
                    s,
                    "<p>Run {} · price sheet {}</p><table class=\"plan\"><thead><tr><th>rank</th><th>backend</th><th>kind</th><th>total USD</th><th>wall hours</th><th>price inputs</th></tr></thead><tbody>",
                    r.meta.id,
                    esc(p.sheet.as_deref().unwrap_or("-"))
                );
                for (i, row) in p.rows.iter().enumerate() {
                    let _ = write!(
                        s,
                        "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                        i + 1,
                        esc(&row.name),
                        esc(row.kind.as_deref().unwrap_or("-")),
                        fmt_num(row.total_usd),
                        row.wall_hours.map(fmt_num).unwrap_or_else(|| "-".into()),
                        esc(row.price_inputs.as_deref().unwrap_or("-"))
                    );
                }
                s.push_str("</tbody></table>");
                for sk in &p.skipped {
                    let _ = write!(s, "<p class=\"note\">Skipped {}: {}</p>", esc(&sk.name), esc(&sk.why));
                }
            }
        }
        s.push_str("</section>");
    }

    let skipped: Vec<&String> = report.runs.iter().flat_map(|r| r.skipped_artifacts.iter()).collect();
    if !skipped.is_empty() {
        s.push_str("<section id=\"skipped\"><h2>Artifacts not shown</h2><ul>");
        for k in skipped {
            let _ = write!(s, "<li>{}</li>", esc(k));
        }
        s.push_str("</ul></section>");
    }
    s.push_str("</body></html>\n");
    s
}

/// At most `per_backend` answers of each backend, its lowest-scored first
/// (the instructive ones), taken in turn across backends up to `total`.
fn sample_answers<'a>(
    answers: impl Iterator<Item = &'a super::data::ArenaAnswer>,
    per_backend: usize,
    total: usize,
) -> Vec<&'a super::data::ArenaAnswer> {
    let mut by_backend: std::collections::BTreeMap<&str, Vec<&super::data::ArenaAnswer>> = Default::default();
    for a in answers {
        by_backend.entry(a.backend.as_str()).or_default().push(a);
    }
    for list in by_backend.values_mut() {
        list.sort_by(|a, b| a.score.unwrap_or(f64::INFINITY).total_cmp(&b.score.unwrap_or(f64::INFINITY)));
        list.truncate(per_backend);
    }
    let mut out = Vec::new();
    for round in 0..per_backend {
        for list in by_backend.values() {
            if let Some(a) = list.get(round) {
                if out.len() < total {
                    out.push(*a);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::data::ArenaAnswer;

    fn answer(backend: &str, score: f64) -> ArenaAnswer {
        ArenaAnswer {
            backend: backend.into(),
            text: format!("{backend} {score}"),
            score: Some(score),
            ..Default::default()
        }
    }

    #[test]
    fn samples_take_each_backends_lowest_scores_in_turn() {
        let all = [answer("a", 90.0), answer("a", 10.0), answer("a", 50.0), answer("b", 70.0), answer("b", 20.0)];
        let picked: Vec<String> = super::sample_answers(all.iter(), 2, 3).iter().map(|a| a.text.clone()).collect();
        assert_eq!(picked, ["a 10", "b 20", "a 50"]);
    }
}
