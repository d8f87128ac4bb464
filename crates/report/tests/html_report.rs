//! The multi-run report: Markdown and JSON pinned by snapshot files, the
//! HTML well formed, complete (every chart with its labels), self-contained
//! and escaping everything that came from a model or server.
//!
//! Refresh the snapshots after an intended change with
//! `FLEETBENCH_UPDATE_SNAPSHOTS=1 cargo test -p fleetbench-report --test html_report`.

mod html_fixture;

use std::path::Path;

use fleetbench_report::html::Report;
use fleetbench_report::{write_report, HtmlReportError};
use fleetbench_store::Store;

fn check_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("FLEETBENCH_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("snapshot {} unreadable ({e}); run with FLEETBENCH_UPDATE_SNAPSHOTS=1", path.display())
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from its snapshot at line {}:\n expected: {:?}\n actual:   {:?}",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

/// Elements that never have a closing tag in HTML.
const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];

/// A small well-formedness check: every tag closes in order, attributes are
/// quoted, and `<` never appears in text. Returns the tag names seen.
fn check_well_formed(html: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut rest = html.strip_prefix("<!DOCTYPE html>").expect("doctype first").trim_start();
    while let Some(i) = rest.find('<') {
        let text = &rest[..i];
        assert!(!text.contains('>'), "stray '>' in text near {:?}", &text[..text.len().min(80)]);
        rest = &rest[i..];
        let end = rest.find('>').expect("unterminated tag");
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        assert!(tag.matches('"').count() & 1 == 0, "unbalanced quotes in <{tag}>");
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(open, name, "</{name}> closes <{open}>");
            continue;
        }
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        assert!(!name.is_empty(), "bad tag <{tag}>");
        seen.push(name.clone());
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if name == "style" {
            let close = rest.find("</style>").expect("style closes");
            assert!(!rest[..close].contains('<'));
            rest = &rest[close + "</style>".len()..];
            continue;
        }
        stack.push(name);
    }
    assert!(rest.trim().is_empty(), "text after the last tag");
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    seen
}

/// Every attribute value of `attr` in the document.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let pat = format!(" {attr}=\"");
    html.match_indices(&pat)
        .map(|(i, _)| {
            let v = &html[i + pat.len()..];
            &v[..v.find('"').unwrap_or(v.len())]
        })
        .collect()
}

#[test]
fn markdown_and_json_match_their_snapshots() {
    let dir = html_fixture::temp_dir("snap");
    let fx = html_fixture::build(&dir);
    let store = Store::open(&fx.db).unwrap();
    let files = write_report(&store, &fx.all(), &dir.join("out")).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    let json = std::fs::read_to_string(&files.json).unwrap();
    // Sanity before the byte comparison, so a bad snapshot cannot pin nonsense.
    assert!(md.contains("## Throughput against load") && md.contains("## Headline"));
    assert!(md.contains("![Aggregate output throughput vs concurrency](aggregate-tps.svg)"));
    assert!(md.contains("(knee)"));
    assert!(md.contains("## AIOps arena leaderboard"));
    assert!(!md.contains("<script>"), "raw markup in Markdown");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 5);
    assert_eq!(v["runs"][0]["max_concurrency"], serde_json::Value::Null);
    assert_eq!(v["runs"][0]["config"]["concurrency"], 1);
    let curves = v["throughput_vs_concurrency"].as_array().unwrap();
    assert_eq!(curves.len(), 3, "plain runs form one curve, the sweep another, the arena run a third");
    assert_eq!(curves[0]["points"].as_array().unwrap().len(), 3);
    assert!(curves[1]["knee_concurrency"].as_f64().is_some(), "the sweep saturates, so it has a knee");
    assert!(v["skipped_artifacts"][0].as_str().unwrap().starts_with("energy/broken"));
    check_snapshot("report.md", &md);
    check_snapshot("report.json", &json);
}

#[test]
fn html_is_well_formed_complete_and_self_contained() {
    let dir = html_fixture::temp_dir("html");
    let fx = html_fixture::build(&dir);
    let store = Store::open(&fx.db).unwrap();
    let html = Report::load(&store, &fx.all()).unwrap().html();

    let tags = check_well_formed(&html);
    assert!(tags.iter().filter(|t| *t == "svg").count() >= 12);

    for (id, labels) in [
        (
            "chart-aggregate-tps",
            &[
                "Aggregate output throughput vs concurrency",
                "concurrency (requests in flight)",
                "output throughput (tok/s)",
                "knee: C=",
            ][..],
        ),
        ("chart-per-request-tps", &["Per-request decode speed vs concurrency", "per-request output speed (tok/s)"][..]),
        ("chart-ttft", &["Time to first token (TTFT) percentiles", "TTFT (ms)", "run / sweep level"][..]),
        ("chart-tpot", &["Time per output token (TPOT) percentiles", "TPOT (ms)"][..]),
        ("chart-itl", &["Inter-token latency (ITL) distribution", "gap between tokens (ms)", "share of gaps (%)"][..]),
        ("chart-errors", &["Failed requests by error kind", "failed requests (count)", "http_503"][..]),
        ("chart-kv-cache", &["KV-cache usage over time", "KV cache used (%)", "time since run start (s)"][..]),
        ("chart-queue", &["Server queue over time", "requests (count)"][..]),
        ("chart-cost", &["Cost per million output tokens", "USD per million output tokens"][..]),
        ("chart-energy", &["Energy per output token", "energy per output token (J)"][..]),
        (
            "chart-arena-leaderboard",
            &["Arena leaderboard: diagnosis score", "mean diagnosis score (points, 0–100)"][..],
        ),
        (
            "chart-arena-heatmap",
            &["Diagnosis score by scenario and backend", "xid79_fallen_off_bus", "72 [64, 78]", "[60, 66]"][..],
        ),
        ("chart-arena-cost", &["Arena: score against dollars per incident", "USD per diagnosis"][..]),
        ("chart-plan-cost-1", &["Batch job: total cost per backend", "$812.5 · cheapest", "$1530 · 1.9×"][..]),
        ("chart-plan-time-1", &["Batch job: wall time per backend", "31.20 h · fastest"][..]),
        (
            "chart-energy-flow-1",
            &["Past the meter: ", "overhead, PUE 1.30", "transmission", "generation", "heat released: 0.350 kWh"][..],
        ),
    ] {
        let start =
            html.find(&format!("<svg class=\"chart\" id=\"{id}\"")).unwrap_or_else(|| panic!("chart {id} missing"));
        let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
        for l in labels {
            assert!(svg.contains(l), "chart {id} lacks label {l:?}");
        }
        // The chart fits its box: the legend sits inside the SVG's height.
        let h: f64 = svg[svg.find(" height=\"").unwrap() + 9..].split('"').next().unwrap().parse().unwrap();
        for (i, _) in svg.match_indices("<text class=\"legend\"") {
            let y: f64 = svg[i..][svg[i..].find(" y=\"").unwrap() + 4..].split('"').next().unwrap().parse().unwrap();
            assert!(y < h, "chart {id}: legend at y={y} below its height {h}");
        }
    }
    // The setup is described once, per backend, in the details at the end.
    assert!(!html.contains("<aside"), "no setup list beside every chart");
    let setup = &html[html.find("<details id=\"setup\"").unwrap()..];
    let setup = &setup[..setup.find("</details>").unwrap()];
    assert!(setup.contains("fleetbench 0.1.0") && setup.contains("hardware 1x H100 80GB"));
    assert!(html.find("id=\"headline\"").unwrap() < html.find("<svg").unwrap(), "the headline comes first");
    assert!(html.contains("id=\"planner\"") && html.contains("$2.50/GPU-h"));
    assert!(html.contains("no throughput &lt;b&gt;known&lt;/b&gt;"));

    // Self-contained: nothing is fetched.
    for attr in ["src", "href", "xlink:href", "action"] {
        assert!(attribute_values(&html, attr).is_empty(), "{attr}= found");
    }
    for needle in ["<script", "<link", "<iframe", "<img", "@import", "url("] {
        assert!(!html.contains(needle), "{needle} found");
    }
    // Model and server text is escaped.
    assert!(html.contains("qwen&lt;script&gt;window.__pwned=1&lt;/script&gt;"));
    assert!(html.contains("upstream said &lt;script&gt;"));
    assert!(html.contains("Root cause: &lt;script&gt;window.__pwned=3"));
}

#[test]
fn sections_without_data_are_left_out() {
    let dir = html_fixture::temp_dir("plain");
    let fx = html_fixture::build(&dir);
    let store = Store::open(&fx.db).unwrap();
    let report = Report::load(&store, &fx.plain[..1]).unwrap();
    let html = report.html();
    check_well_formed(&html);
    for absent in ["id=\"server\"", "id=\"economics\"", "id=\"arena\"", "id=\"planner\"", "chart-kv-cache", "(knee"] {
        assert!(!html.contains(absent), "{absent} shown without data");
    }
    for present in ["chart-ttft", "chart-itl", "chart-errors", "no failed requests", "chart-aggregate-tps"] {
        assert!(html.contains(present), "{present} missing");
    }
    let md = report.markdown();
    assert!(!md.contains("## AIOps arena") && !md.contains("## Cost"));
}

#[test]
fn no_run_ids_and_unknown_runs_are_errors() {
    let dir = html_fixture::temp_dir("errs");
    let fx = html_fixture::build(&dir);
    let store = Store::open(&fx.db).unwrap();
    assert!(matches!(write_report(&store, &[], &dir.join("o")), Err(HtmlReportError::NoRuns)));
    let e = write_report(&store, &[9999], &dir.join("o")).unwrap_err();
    assert!(e.to_string().contains("9999"), "{e}");
}

#[test]
fn a_run_still_running_is_reported_from_its_records() {
    let dir = html_fixture::temp_dir("live");
    let db = dir.join("r.db");
    let mut store = Store::open(&db).unwrap();
    let mut meta = html_fixture::meta("m", "http://127.0.0.1:9/v1", 2, "fleetbench run");
    meta.status = fleetbench_core::RunStatus::Running;
    meta.pid = Some(std::process::id());
    let id = store.create_run(&meta).unwrap();
    store.insert_records(id, &html_fixture::records(2, 10, 0)).unwrap();
    let report = Report::load(&store, &[id]).unwrap();
    assert_eq!(report.runs[0].metrics.completed, 10);
    assert!(report.html().contains(">running<"));
}

#[test]
fn stored_summaries_without_arrays_get_them_from_the_records() {
    // `fleetbench run` stores its summary without the per-request arrays.
    let dir = html_fixture::temp_dir("stripped");
    let db = dir.join("r.db");
    let mut store = Store::open(&db).unwrap();
    let meta = html_fixture::meta("m", "http://127.0.0.1:9/v1", 4, "fleetbench run");
    let id = store.create_run(&meta).unwrap();
    let recs = html_fixture::records(4, 24, 6);
    store.insert_records(id, &recs).unwrap();
    let mut m = fleetbench_core::RunMetrics::compute(&recs, &fleetbench_core::Slo::default(), Some(4));
    m.output_lens.clear();
    m.errors.clear();
    m.ttfts.clear();
    m.ci95.remove("output_throughput");
    store
        .finish_run(
            id,
            fleetbench_core::RunStatus::Completed,
            "2026-11-25T10:01:00Z",
            Some(&serde_json::to_value(&m).unwrap()),
        )
        .unwrap();
    let report = Report::load(&store, &[id]).unwrap();
    assert_eq!(report.runs[0].metrics.output_lens.len(), 24);
    assert!(report.levels()[0].output_ci.is_some(), "the throughput interval comes back by bootstrap");
    assert!(report.html().contains("upstream said &lt;script&gt;"), "error messages come from the records");
}
