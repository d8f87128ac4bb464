//! `report.md`: the report as Markdown fit for a blog post: the headline
//! table and its sentences, the charts as SVG files written beside it
//! (relative image links), one table per backend with every level, the
//! cross-run tables (arena, cost, energy, planner), and each run's summary
//! at the end.

use std::fmt::Write;

use fleetbench_core::stats::Interval;

use super::Report;
use crate::summary::md_escape;
use crate::svg::fmt_num;

fn with_ci(x: Option<f64>, ci: Option<Interval>) -> String {
    match (x, ci) {
        (Some(x), Some(c)) => format!("{} [{}, {}]", fmt_num(x), fmt_num(c.lo), fmt_num(c.hi)),
        (Some(x), None) => fmt_num(x),
        (None, _) => "-".into(),
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(fmt_num).unwrap_or_else(|| "-".into())
}

pub(super) fn render(report: &Report) -> String {
    let mut s = String::new();
    let ids: Vec<String> = report.runs.iter().map(|r| r.meta.id.to_string()).collect();
    let _ = writeln!(s, "# fleetbench report: runs {}\n", ids.join(", "));
    let curves = report.curves();
    let headline = super::headline::rows(report, &curves);
    if !headline.is_empty() {
        let _ = writeln!(s, "## Headline\n");
        let _ = writeln!(
            s,
            "| backend | single-stream tok/s | peak aggregate tok/s | knee | p50 TTFT at knee (ms) | p50 TPOT at knee (ms) | $ per M output tokens | J per output token | arena score |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (c, h) in curves.iter().zip(&headline) {
            let peak = match (h.peak_output_throughput, h.peak_at) {
                (Some(v), Some(at)) => format!("{} at {}", fmt_num(v), c.axis.fmt(at)),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                md_escape(&h.backend),
                opt(h.single_stream_tok_s),
                peak,
                md_escape(&c.knee_text().unwrap_or_else(|| "-".into())),
                opt(h.p50_ttft_ms_at_knee),
                opt(h.p50_tpot_ms_at_knee),
                h.usd_per_million_output_tokens.map(|u| format!("${}", fmt_num(u))).unwrap_or_else(|| "-".into()),
                opt(h.energy_per_output_token_j),
                opt(h.arena_score),
            );
        }
        s.push('\n');
        for h in &headline {
            let _ = writeln!(s, "- {}", md_escape(&h.sentence));
        }
        s.push('\n');
    }

    let charts = super::charts::all(report, &curves);
    let pictures = |s: &mut String, section: &str| {
        for c in charts.iter().filter(|c| c.section == section) {
            let _ = writeln!(s, "![{}]({})\n", md_escape(&c.title), c.file_name());
            for (name, _, why) in &c.why {
                let _ = writeln!(s, "- {}: {}", md_escape(name), md_escape(why));
            }
            if !c.why.is_empty() {
                s.push('\n');
            }
        }
    };
    if !curves.is_empty() {
        let _ = writeln!(s, "## Throughput against load\n");
        pictures(&mut s, "throughput");
        for c in &curves {
            let _ = writeln!(s, "### {}\n", md_escape(&c.name));
            let _ = writeln!(
                s,
                "| {} | output tok/s [95% CI] | per-request tok/s [95% CI] | p50 TTFT (ms) | p99 TTFT (ms) | p50 TPOT (ms) | failed | run |",
                c.axis.key()
            );
            let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|");
            for (i, p) in c.points.iter().enumerate() {
                let knee = if c.knee == Some(i) { " (knee)" } else { "" };
                let _ = writeln!(
                    s,
                    "| {}{knee} | {} | {} | {} | {} | {} | {} | {} |",
                    fmt_num(c.x(p)),
                    with_ci(Some(p.metrics.output_throughput), p.output_ci),
                    with_ci(p.metrics.mean_tok_s, p.metrics.ci("mean_tok_s")),
                    opt(p.metrics.ms("p50_ttft_ms")),
                    opt(p.metrics.ms("p99_ttft_ms")),
                    opt(p.metrics.ms("p50_tpot_ms")),
                    p.metrics.failed,
                    p.run_id
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Latency\n");
        pictures(&mut s, "latency");
    }

    let arena: Vec<_> = report.runs.iter().flat_map(|r| r.arena.iter().map(move |a| (r.meta.id, a))).collect();
    if !arena.is_empty() {
        let mut rows = arena.clone();
        rows.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
        let _ = writeln!(s, "## AIOps arena leaderboard\n");
        pictures(&mut s, "arena");
        let _ = writeln!(s, "| rank | backend | model | score [95% CI] | episodes | failed | run |");
        let _ = writeln!(s, "|---:|---|---|---:|---:|---:|---:|");
        for (i, (run, a)) in rows.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {run} |",
                i + 1,
                md_escape(&a.backend),
                md_escape(a.model.as_deref().unwrap_or("-")),
                with_ci(Some(a.score), a.ci95),
                a.episodes.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                a.failed.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            );
        }
        s.push('\n');
    }

    for r in report.runs.iter().filter(|r| super::investigate::is_investigate(r)) {
        let _ = writeln!(s, "### Investigate mode: run {}\n", r.meta.id);
        let head = super::investigate::HEAD;
        let _ = writeln!(s, "| {} |", head.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(head.len() - 1));
        for (backend, cells) in super::investigate::rows(r) {
            let cells: Vec<String> = cells.iter().map(|c| md_escape(c)).collect();
            let _ = writeln!(s, "| {} | {} |", md_escape(&backend), cells.join(" | "));
        }
        if let Some(f) = &r.floor {
            let _ = writeln!(
                s,
                "| floor | {} |{}",
                super::investigate::with_ci(f.score, f.ci95),
                " |".repeat(head.len() - 2)
            );
            let _ = writeln!(s, "\nfloor = the best constant answer: `{}`", md_escape(&f.answer.to_string()));
        }
        s.push('\n');
    }

    let cost: Vec<_> = report.runs.iter().flat_map(|r| r.cost.iter()).collect();
    if !cost.is_empty() {
        let cheapest = cost
            .iter()
            .filter_map(|c| c.figures.usd_per_million_output_tokens)
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let _ = writeln!(s, "## Cost\n");
        pictures(&mut s, "economics");
        let _ = writeln!(s, "| backend | USD per million output tokens | × cheapest | USD total | USD per request |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for c in cost {
            let usd_per_m = c.figures.usd_per_million_output_tokens.unwrap_or(f64::NAN);
            let times = usd_per_m / cheapest;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                md_escape(&c.backend),
                fmt_num(usd_per_m),
                if times.is_finite() { format!("{times:.1}×") } else { "-".into() },
                opt(c.figures.usd_total),
                opt(c.figures.usd_per_request)
            );
        }
        s.push('\n');
    }

    let energy: Vec<_> = report.runs.iter().flat_map(|r| r.energy.iter()).collect();
    if !energy.is_empty() {
        let _ = writeln!(s, "## Energy\n\n| backend | J per output token [95% CI] | idle power (W) | meter |");
        let _ = writeln!(s, "|---|---:|---:|---|");
        for e in &energy {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                md_escape(&e.backend),
                with_ci(e.energy_per_output_token_j, e.ci95),
                opt(e.idle_power_w),
                md_escape(e.meter.as_deref().unwrap_or("-"))
            );
        }
        s.push('\n');
        let past: Vec<_> = energy
            .iter()
            .filter_map(|e| e.past_the_meter.as_ref().and_then(|p| p.per_million_tokens.map(|m| (&e.backend, p, m))))
            .collect();
        if !past.is_empty() {
            let _ = writeln!(
                s,
                "### Energy past the meter, per million output tokens\n\n| backend | supply | PUE | IT kWh | facility kWh | delivered kWh | fuel kWh | heat kWh | CO2 kg |"
            );
            let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
            for (b, p, m) in past {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    md_escape(b),
                    md_escape(&p.supply),
                    fmt_num(p.pue),
                    fmt_num(m.it_kwh),
                    fmt_num(m.facility_kwh),
                    fmt_num(m.delivered_kwh),
                    fmt_num(m.fuel_kwh),
                    fmt_num(m.heat_kwh),
                    fmt_num(m.co2_kg)
                );
            }
            s.push('\n');
        }
    }

    if report.runs.iter().any(|r| !r.plans.is_empty()) {
        let _ = writeln!(s, "## Batch-job planner\n");
        pictures(&mut s, "planner");
    }
    for r in &report.runs {
        for p in &r.plans {
            let _ = writeln!(
                s,
                "## Batch-job plan (run {}, price sheet {})\n",
                r.meta.id,
                md_escape(p.sheet.as_deref().unwrap_or("-"))
            );
            let _ = writeln!(s, "| rank | backend | kind | total USD | wall hours | inputs |");
            let _ = writeln!(s, "|---:|---|---|---:|---:|---|");
            for (i, row) in p.rows.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    i + 1,
                    md_escape(&row.name),
                    md_escape(row.kind.as_deref().unwrap_or("-")),
                    fmt_num(row.total_usd),
                    opt(row.wall_hours),
                    md_escape(row.price_inputs.as_deref().unwrap_or("-"))
                );
            }
            for sk in &p.skipped {
                let _ = writeln!(s, "\nSkipped {}: {}", md_escape(&sk.name), md_escape(&sk.why));
            }
            s.push('\n');
        }
    }
    for r in &report.runs {
        if r.metrics.sent == 0 || super::data::is_arena_run(&r.meta.config) {
            // An arena run (or one that sent nothing): its tables above say it all.
            let _ = writeln!(s, "## Run {}: {}\n", r.meta.id, md_escape(&r.meta.workload));
            continue;
        }
        s.push_str(&crate::markdown_summary(&r.meta, &r.metrics));
        s.push('\n');
    }
    s
}
