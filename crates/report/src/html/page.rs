//! `index.html`: a page that reads top-down. First the headline (one row
//! per backend with the figures an operator decides on, and a sentence
//! each), then the pictures, then the details: the setup once per backend,
//! the per-level table, and the runs with their command lines, collapsed.
//! All text from runs, models and servers goes through `esc`.

use std::fmt::Write;

use super::charts::{self, Chart};
use super::data::hardware;
use super::headline::Headline;
use super::series::Curve;
use super::Report;
use crate::svg::{color, esc, fmt_num};

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
figure.panel { display: inline-block; vertical-align: top; margin: 0 12px 24px 0; width: 580px; max-width: 100%; }
figure.panel figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; }
ul.why { margin: 6px 0 0; padding-left: 0; list-style: none; font-size: 13px; color: var(--fg); }
ul.why li { margin: 2px 0; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; border-radius: 2px; }
table.headline td, table.headline th { font-size: 14px; }
table.headline td.why { max-width: 420px; font-size: 12px; color: var(--muted); }
ul.sentences { padding-left: 18px; max-width: 1100px; }
details { margin: 8px 0 16px; }
details > summary { cursor: pointer; font-weight: 600; }
ul.setup { font-size: 13px; padding-left: 18px; }
svg .bar-label { font-size: 11px; fill: #222; }
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

fn opt(x: Option<f64>) -> String {
    x.map(fmt_num).unwrap_or_else(|| "-".into())
}

fn figure(s: &mut String, c: &Chart) {
    let _ = write!(s, "<figure class=\"panel\"><div class=\"plot\">{}</div><figcaption>", c.svg);
    if !c.why.is_empty() {
        s.push_str("<ul class=\"why\">");
        for (name, col, why) in &c.why {
            let _ = write!(
                s,
                "<li><span class=\"swatch\" style=\"background:{col}\"></span><b>{}</b>: {}</li>",
                esc(name),
                esc(why)
            );
        }
        s.push_str("</ul>");
    }
    if !c.caption.is_empty() {
        let _ = write!(s, "<p>{}</p>", esc(&c.caption));
    }
    s.push_str("</figcaption></figure>");
}

fn headline(s: &mut String, curves: &[Curve], rows: &[Headline]) {
    s.push_str("<section id=\"headline\"><h2>Headline</h2><div class=\"scroll\"><table class=\"headline\"><thead><tr><th>backend</th><th>single-stream tok/s</th><th>peak aggregate tok/s</th><th>knee</th><th>p50 TTFT at knee (ms)</th><th>p50 TPOT at knee (ms)</th><th>$ per M output tokens</th><th>J per output token</th><th>arena score</th><th>why the curve bends</th></tr></thead><tbody>");
    for (i, (c, h)) in curves.iter().zip(rows).enumerate() {
        let peak = match (h.peak_output_throughput, h.peak_at) {
            (Some(v), Some(at)) => format!("{} at {}", fmt_num(v), c.axis.fmt(at)),
            _ => "-".into(),
        };
        let _ = write!(
            s,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"why\">{}</td></tr>",
            color(i),
            esc(&h.backend),
            opt(h.single_stream_tok_s),
            esc(&peak),
            esc(&c.knee_text().unwrap_or_else(|| "-".into())),
            opt(h.p50_ttft_ms_at_knee),
            opt(h.p50_tpot_ms_at_knee),
            h.usd_per_million_output_tokens.map(|u| format!("${}", fmt_num(u))).unwrap_or_else(|| "-".into()),
            opt(h.energy_per_output_token_j),
            opt(h.arena_score),
            esc(&h.why),
        );
    }
    s.push_str("</tbody></table></div><ul class=\"sentences\">");
    for h in rows {
        let _ = write!(s, "<li>{}</li>", esc(&h.sentence));
    }
    s.push_str("</ul></section>");
}

const SECTIONS: [(&str, &str); 8] = [
    ("throughput", "Throughput against load"),
    ("latency", "Latency percentiles"),
    ("itl", "Inter-token latency"),
    ("errors", "Errors"),
    ("server", "Server-side state"),
    ("economics", "Cost and energy"),
    ("planner", "Batch-job planner"),
    ("arena", "AIOps arena"),
];

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
        "<p class=\"sub\">Written by fleetbench {}. Figures follow docs/METRICS.md; intervals are 95 % bootstrap intervals. The setup and every run are described under Details, at the end.</p></header>",
        esc(&tool)
    );
    let curves = report.curves();
    let rows = super::headline::rows(report, &curves);
    if !curves.is_empty() {
        headline(&mut s, &curves, &rows);
    }
    let all = charts::all(report, &curves);
    for (key, name) in SECTIONS {
        let cs: Vec<&Chart> = all.iter().filter(|c| c.section == key).collect();
        if cs.is_empty() {
            continue;
        }
        let _ = write!(s, "<section id=\"{key}\"><h2>{name}</h2>");
        for c in &cs {
            figure(&mut s, c);
        }
        match key {
            "errors" => error_messages(&mut s, report),
            "economics" => past_the_meter_table(&mut s, report),
            "planner" => plan_tables(&mut s, report),
            "arena" => arena_tables(&mut s, report),
            _ => {}
        }
        s.push_str("</section>");
    }
    details(&mut s, report, &curves);
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

fn error_messages(s: &mut String, report: &Report) {
    let mut messages: Vec<(i64, String)> = Vec::new();
    for r in &report.runs {
        for e in r.metrics.errors.iter().filter(|e| !e.is_empty()) {
            if !messages.iter().any(|(id, m)| *id == r.meta.id && m == e) && messages.len() < 20 {
                messages.push((r.meta.id, e.clone()));
            }
        }
    }
    if messages.is_empty() {
        return;
    }
    s.push_str("<table><thead><tr><th>run</th><th>error (first distinct messages)</th></tr></thead><tbody>");
    for (id, m) in &messages {
        let short: String = m.chars().take(400).collect();
        let _ = write!(s, "<tr><td class=\"num\">{id}</td><td class=\"error-message\">{}</td></tr>", esc(&short));
    }
    s.push_str("</tbody></table>");
}

fn past_the_meter_table(s: &mut String, report: &Report) {
    let past: Vec<_> = report
        .runs
        .iter()
        .flat_map(|r| r.energy.iter())
        .filter_map(|e| e.past_the_meter.as_ref().and_then(|p| p.per_million_tokens.map(|m| (&e.backend, p, m))))
        .collect();
    if past.is_empty() {
        return;
    }
    s.push_str("<h3>Energy past the meter, per million output tokens</h3><div class=\"scroll\"><table class=\"past-the-meter\"><thead><tr><th>backend</th><th>supply</th><th>PUE</th><th>IT kWh</th><th>facility kWh</th><th>delivered kWh</th><th>fuel kWh</th><th>heat kWh</th><th>CO2 kg</th></tr></thead><tbody>");
    for (b, p, m) in past {
        let _ = write!(s, "<tr><td>{}</td><td>{}</td>", esc(b), esc(&p.supply));
        for v in [p.pue, m.it_kwh, m.facility_kwh, m.delivered_kwh, m.fuel_kwh, m.heat_kwh, m.co2_kg] {
            let _ = write!(s, "<td class=\"num\">{}</td>", esc(&fmt_num(v)));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
}

fn plan_tables(s: &mut String, report: &Report) {
    for r in report.runs.iter().filter(|r| !r.plans.is_empty()) {
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
                    opt(row.wall_hours),
                    esc(row.price_inputs.as_deref().unwrap_or("-"))
                );
            }
            s.push_str("</tbody></table>");
            for sk in &p.skipped {
                let _ = write!(s, "<p class=\"note\">Skipped {}: {}</p>", esc(&sk.name), esc(&sk.why));
            }
        }
    }
}

fn arena_tables(s: &mut String, report: &Report) {
    let mut rows: Vec<_> = report.runs.iter().flat_map(|r| r.arena.iter()).collect();
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
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
    super::investigate::tables(s, report);
    let answers = sample_answers(report.runs.iter().flat_map(|r| r.answers.iter()), 3, 12);
    if !answers.is_empty() {
        s.push_str("<details class=\"answers\"><summary>Sample answers: the lowest-scored of each backend</summary>");
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
        s.push_str("</details>");
    }
}

/// The setup once per backend, the per-level table, and the runs with their
/// command lines, collapsed.
fn details(s: &mut String, report: &Report, curves: &[Curve]) {
    s.push_str("<section id=\"details\"><h2>Details</h2>");
    let _ = write!(
        s,
        "<details id=\"setup\" open=\"\"><summary>Setup: {} backend(s)</summary><ul class=\"setup\">",
        curves.len()
    );
    for c in curves {
        let levels: Vec<String> = c.points.iter().map(|p| fmt_num(c.x(p))).collect();
        let runs: Vec<String> = c.run_ids.iter().map(|i| i.to_string()).collect();
        let _ = write!(
            s,
            "<li><b>{}</b>: model <span class=\"model\">{}</span> · backend {} ({}) · hardware {} · workload {} · {} {} · runs {} · fleetbench {}</li>",
            esc(&c.name),
            esc(&c.model),
            esc(&c.backend),
            esc(&c.api),
            esc(c.hardware.as_deref().unwrap_or("not recorded")),
            esc(&c.workload),
            esc(c.axis.key()),
            esc(&levels.join(", ")),
            esc(&runs.join(", ")),
            esc(&c.tool_version),
        );
    }
    for r in report.runs.iter().filter(|r| r.points().is_empty()) {
        let _ = write!(
            s,
            "<li><b>run {}</b>: {} · {} · fleetbench {}</li>",
            r.meta.id,
            esc(&r.meta.workload),
            esc(&r.meta.backend_url),
            esc(&r.meta.tool_version)
        );
    }
    s.push_str("</ul></details>");
    if !curves.is_empty() {
        s.push_str("<h3>Every level</h3><div class=\"scroll\"><table class=\"levels\"><thead><tr><th>backend</th><th>run / level</th><th>sent</th><th>completed</th><th>failed</th><th>output tok/s [95% CI]</th><th>per-request tok/s [95% CI]</th><th>mean TTFT ms [95% CI]</th><th>mean TPOT ms [95% CI]</th></tr></thead><tbody>");
        for c in curves {
            for (i, l) in c.points.iter().enumerate() {
                let m = &l.metrics;
                let ci = |x: Option<f64>, c: Option<fleetbench_core::stats::Interval>| match (x, c) {
                    (Some(x), Some(c)) => format!("{} [{}, {}]", fmt_num(x), fmt_num(c.lo), fmt_num(c.hi)),
                    (Some(x), None) => fmt_num(x),
                    _ => "-".into(),
                };
                let knee = if c.knee == Some(i) { " (knee)" } else { "" };
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}{knee}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    esc(&c.name),
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
        }
        s.push_str("</tbody></table></div>");
    }
    s.push_str("<details id=\"runs\"><summary>Runs and their command lines</summary><div class=\"scroll\"><table><thead><tr><th>run</th><th>model</th><th>backend</th><th>api</th><th>hardware</th><th>workload</th><th>schedule</th><th>status</th><th>started</th><th>tool</th><th>command</th></tr></thead><tbody>");
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
    s.push_str("</tbody></table></div></details></section>");
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
