//! The run summary for people: a terminal table and the same content as a
//! Markdown table. Every headline figure is printed with its 95 % interval.

use std::fmt::Write;

use fleetbench_core::stats::Interval;
use fleetbench_core::table::{Align, Table};
use fleetbench_core::units::format_seconds;
use fleetbench_core::{RunMeta, RunMetrics};

struct Row {
    name: &'static str,
    key: &'static str,
}

const LATENCY_ROWS: &[Row] = &[
    Row { name: "TTFT", key: "ttft" },
    Row { name: "first answer token", key: "answer_ttft" },
    Row { name: "first tool-call token", key: "tool_ttft" },
    Row { name: "TPOT", key: "tpot" },
    Row { name: "ITL", key: "itl" },
    Row { name: "E2E latency", key: "e2el" },
    Row { name: "client queue", key: "client_queue" },
];

fn num(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn with_ci(x: Option<f64>, ci: Option<Interval>) -> String {
    match (x, ci) {
        (Some(x), Some(ci)) => format!("{} [{}, {}]", num(x), num(ci.lo), num(ci.hi)),
        (Some(x), None) => num(x),
        (None, _) => "-".into(),
    }
}

fn errors_line(m: &RunMetrics) -> String {
    if m.errors_by_kind.is_empty() {
        return "none".into();
    }
    m.errors_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}

fn latency_table(m: &RunMetrics) -> Vec<[String; 6]> {
    let mut rows = Vec::new();
    for r in LATENCY_ROWS {
        let get = |s: &str| m.ms(&format!("{s}_{}_ms", r.key));
        let ci = |s: &str| m.ci(&format!("{s}_{}_ms", r.key));
        if get("mean").is_none() {
            continue;
        }
        rows.push([
            format!("{} (ms)", r.name),
            with_ci(get("mean"), ci("mean")),
            with_ci(get("median"), ci("median")),
            get("p90").map(num).unwrap_or_else(|| "-".into()),
            with_ci(get("p99"), ci("p99")),
            get("std").map(num).unwrap_or_else(|| "-".into()),
        ]);
    }
    rows
}

const HEAD: [&str; 6] = ["metric", "mean [95% CI]", "median [95% CI]", "p90", "p99 [95% CI]", "std"];

/// How many responses called tools and how many of those sent arguments
/// that parse; `None` when no response called one.
fn tool_calls_line(m: &RunMetrics) -> Option<String> {
    let pct = m.tool_args_json_pct?;
    Some(format!(
        "{} of {} completed responses called tools; arguments parse as JSON in {pct:.1} %",
        m.tool_call_responses, m.completed
    ))
}

fn token_sources(m: &RunMetrics) -> String {
    let s = m.token_source.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ");
    if m.token_count_mismatch {
        format!("{s}; WARNING: server counts and stream events differ by more than 2 %")
    } else {
        s
    }
}

/// The line that says figures were measured against a time-scaled backend
/// (a simulator running `scale` times faster than the hardware it models)
/// and rescaled to modelled time; `None` for a backend in real time.
pub fn time_scale_note(scale: Option<f64>) -> Option<String> {
    let scale = scale.filter(|s| s.is_finite() && *s > 0.0 && *s != 1.0)?;
    let x = if scale.fract() == 0.0 { format!("{scale:.0}") } else { format!("{scale}") };
    Some(format!(
        "figures in modelled time: the server runs {x}× faster than the hardware it models, and every instant was multiplied by {x}"
    ))
}

/// The summary printed at the end of `fleetbench run`.
pub fn terminal_summary(meta: &RunMeta, m: &RunMetrics) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "run {} · {} · {} @ {}", meta.id, meta.model, meta.api, meta.backend_url);
    let _ = writeln!(s, "{} · {} · status {}", meta.schedule, meta.workload, meta.status.as_str());
    if let Some(note) = time_scale_note(meta.run_config().time_scale) {
        let _ = writeln!(s, "{note}");
    }
    let _ = writeln!(
        s,
        "requests   {} sent, {} completed, {} failed (errors: {})",
        m.sent,
        m.completed,
        m.failed,
        errors_line(m)
    );
    let _ = writeln!(
        s,
        "duration   {} · max concurrency {} · tokens in {} / out {} (source: {})",
        format_seconds(m.duration),
        m.max_concurrent_requests,
        m.total_input_tokens,
        m.total_output_tokens,
        token_sources(m)
    );
    if m.total_reasoning_tokens > 0 {
        let _ = writeln!(s, "reasoning  {} tokens, counted apart from the answer", m.total_reasoning_tokens);
    }
    if let Some(line) = tool_calls_line(m) {
        let _ = writeln!(s, "tool calls {line}");
    }
    let rows = latency_table(m);
    if !rows.is_empty() {
        let mut t = Table::new(HEAD).indent(2).all_right().align(0, Align::Left);
        for r in rows {
            t.push(r);
        }
        s.push('\n');
        s.push_str(&t.text());
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "throughput {} req/s · output {} tok/s · total {} tok/s",
        with_ci(Some(m.request_throughput), m.ci("request_throughput")),
        with_ci(Some(m.output_throughput), m.ci("output_throughput")),
        num(m.total_token_throughput)
    );
    let _ = writeln!(
        s,
        "per request decode {} tok/s (median {}) · per task {} tok/s",
        with_ci(m.mean_tok_s, m.ci("mean_tok_s")),
        m.median_tok_s.map(num).unwrap_or_else(|| "-".into()),
        m.mean_task_tok_s.map(num).unwrap_or_else(|| "-".into()),
    );
    if let (Some(g), Some(a)) = (m.request_goodput, m.slo_attainment_pct) {
        let _ = writeln!(s, "goodput    {} req/s meeting every SLO ({:.1} % of requests)", num(g), a);
    }
    if let Some(ss) = &m.steady_state {
        let _ = writeln!(
            s,
            "steady     {} window: {} tok/s output, {} req/s",
            format_seconds(ss.duration),
            num(ss.output_throughput),
            num(ss.request_throughput)
        );
    }
    if let Some(f) = &m.sessions {
        s.push_str(&sessions_lines(f));
    }
    if !m.windows.is_empty() {
        s.push_str(&windows_table(&m.windows));
    }
    for (model, f) in &m.models {
        let opt = |v: Option<f64>| v.map(num).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "model {model}: {} sent, {} failed · output {} tok/s · TTFT p50 {} ms, p99 {} · TPOT p50 {} ms",
            f.sent,
            f.failed,
            num(f.output_throughput),
            opt(f.median_ttft_ms),
            opt(f.p99_ttft_ms),
            opt(f.median_tpot_ms)
        );
    }
    s
}

/// `run --repeat N`: each headline figure's runs, mean, spread and the 95 %
/// interval of the mean across runs.
pub fn repeats_table(r: &fleetbench_core::repeats::RepeatFigures) -> String {
    let mut t = Table::new(["figure", "runs", "mean [95% CI across runs]", "min", "max", "spread %", "std"])
        .indent(2)
        .all_right()
        .align(0, Align::Left);
    for (key, f) in &r.figures {
        let ci = f.ci95.map(|[lo, hi]| format!(" [{}, {}]", num(lo), num(hi))).unwrap_or_default();
        t.push([
            key.clone(),
            f.values.iter().map(|v| num(*v)).collect::<Vec<_>>().join(" "),
            format!("{}{ci}", num(f.mean)),
            num(f.min),
            num(f.max),
            format!("{:.1}", f.spread_pct),
            num(f.std),
        ]);
    }
    let ids: Vec<String> = r.run_ids.iter().map(i64::to_string).collect();
    format!("{} runs ({}): how far they lie apart\n{}", r.runs, ids.join(", "), t.text())
}

/// A ramp's windows, one row each: the curve the ramp drew.
fn windows_table(windows: &[fleetbench_core::metrics::WindowFigures]) -> String {
    let opt = |v: Option<f64>| v.map(num).unwrap_or_else(|| "-".into());
    let mut t = Table::new([
        "window (s)",
        "load",
        "requests",
        "failed",
        "req/s",
        "out tok/s",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "TPOT p50 ms",
        "max in flight",
    ])
    .indent(2)
    .all_right()
    .align(0, Align::Left);
    for w in windows {
        t.push([
            format!("{}–{}", num(w.start_s), num(w.end_s)),
            num(w.level),
            w.requests.to_string(),
            w.failed.to_string(),
            num(w.request_throughput),
            num(w.output_throughput),
            opt(w.median_ttft_ms),
            opt(w.p99_ttft_ms),
            opt(w.median_tpot_ms),
            w.max_concurrent_requests.to_string(),
        ]);
    }
    format!("\nramp windows\n{}\n", t.text())
}

/// The session figures of a session workload, three lines.
fn sessions_lines(f: &fleetbench_core::sessions::SessionFigures) -> String {
    let opt = |v: Option<f64>| v.map(num).unwrap_or_else(|| "-".into());
    let mut s = format!(
        "sessions   {} completed of {} started ({} turns) · {} sessions/hour · completion mean {} s, p50 {}, p90 {}, p99 {}\n",
        f.completed,
        f.started,
        f.turns,
        num(f.sessions_per_hour),
        opt(f.mean_completion_s),
        opt(f.p50_completion_s),
        opt(f.p90_completion_s),
        opt(f.p99_completion_s),
    );
    s.push_str(&format!(
        "turns      median TTFT first turn {} ms, later turns {} ms{}\n",
        opt(f.median_ttft_first_turn_ms),
        opt(f.median_ttft_later_turns_ms),
        f.server_cached_prompt_share
            .map(|c| format!(" · server served {:.0} % of prompt tokens from its prefix cache", 100.0 * c))
            .unwrap_or_default()
    ));
    let bands: Vec<String> = f
        .by_context
        .iter()
        .map(|b| format!("{}-{}: {} ms ({})", b.context_from, b.context_to, opt(b.median_ttft_ms), b.requests))
        .collect();
    if !bands.is_empty() {
        s.push_str(&format!("TTFT by context tokens (median, turns) {}\n", bands.join(" · ")));
    }
    s
}

/// The same summary as Markdown.
pub fn markdown_summary(meta: &RunMeta, m: &RunMetrics) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## fleetbench run {}: {}\n", meta.id, md_escape(&meta.model));
    let _ = writeln!(s, "| setting | value |\n|---|---|");
    for (k, v) in [
        ("backend", format!("{} ({})", meta.backend_url, meta.api)),
        ("schedule", meta.schedule.clone()),
        ("workload", meta.workload.clone()),
        ("started", meta.started_at.clone()),
        ("status", meta.status.as_str().to_string()),
        ("tool", format!("fleetbench {}", meta.tool_version)),
        ("command", format!("`{}`", meta.command_line.replace('`', "'"))),
    ] {
        let _ = writeln!(s, "| {k} | {} |", md_escape(&v));
    }
    if let Some(note) = time_scale_note(meta.run_config().time_scale) {
        let _ = writeln!(s, "| time | {} |", md_escape(&note));
    }
    let _ = writeln!(s, "\n| requests | completed | failed | errors | duration | max concurrency |");
    let _ = writeln!(s, "|---:|---:|---:|---|---:|---:|");
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} |",
        m.sent,
        m.completed,
        m.failed,
        errors_line(m),
        format_seconds(m.duration),
        m.max_concurrent_requests
    );
    let _ = writeln!(s, "\n| {} |", HEAD.join(" | "));
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for r in latency_table(m) {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    let _ = writeln!(s, "\n| throughput | value [95% CI] |\n|---|---:|");
    let _ = writeln!(s, "| requests/s | {} |", with_ci(Some(m.request_throughput), m.ci("request_throughput")));
    let _ = writeln!(s, "| output tok/s | {} |", with_ci(Some(m.output_throughput), m.ci("output_throughput")));
    let _ = writeln!(s, "| total tok/s | {} |", num(m.total_token_throughput));
    let _ = writeln!(s, "| per-request decode tok/s | {} |", with_ci(m.mean_tok_s, m.ci("mean_tok_s")));
    if let Some(t) = m.mean_task_tok_s {
        let _ = writeln!(s, "| per-task tok/s | {} |", num(t));
    }
    if let (Some(g), Some(a)) = (m.request_goodput, m.slo_attainment_pct) {
        let _ = writeln!(s, "| goodput req/s (SLO attainment) | {} ({a:.1} %) |", num(g));
    }
    if let Some(line) = tool_calls_line(m) {
        let _ = writeln!(s, "\nTool calls: {line}.");
    }
    s
}

/// Escapes characters that would break a Markdown table cell.
pub fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(config: serde_json::Value) -> RunMeta {
        RunMeta {
            id: 1,
            tool_version: "0.1.0".into(),
            command_line: "fleetbench run".into(),
            host: "h".into(),
            backend_url: "http://127.0.0.1:8000/v1".into(),
            model: "m".into(),
            api: "chat".into(),
            workload: "w".into(),
            schedule: "closed loop, concurrency 1".into(),
            started_at: "2026-12-01T00:00:00Z".into(),
            ended_at: None,
            status: fleetbench_core::RunStatus::Completed,
            config,
            pid: None,
            group: None,
        }
    }

    #[test]
    fn a_time_scaled_run_says_its_figures_are_modelled() {
        assert_eq!(time_scale_note(None), None);
        assert_eq!(time_scale_note(Some(1.0)), None);
        assert_eq!(time_scale_note(Some(0.0)), None);
        let note = time_scale_note(Some(20.0)).unwrap();
        assert!(note.starts_with("figures in modelled time: the server runs 20× faster"), "{note}");
        assert!(time_scale_note(Some(2.5)).unwrap().contains("2.5×"));
        let meta = meta(serde_json::json!({"time_scale": 20.0}));
        let m = RunMetrics::compute(&[], &Default::default(), None);
        assert!(terminal_summary(&meta, &m).contains(&note));
        assert!(markdown_summary(&meta, &m).contains(&note));
        let json = crate::run_json(&meta, &m);
        assert_eq!(json["time_scale"], 20.0);
        let real = super::tests::meta(serde_json::json!({}));
        assert_eq!(crate::run_json(&real, &m)["time_scale"], 1.0);
        assert!(!markdown_summary(&real, &m).contains("modelled time"));
    }
}
