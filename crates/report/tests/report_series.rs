//! The report's curves: the levels of one sweep form ONE series per backend
//! with its knee; the demo's setups (one group, three sweeps) form three;
//! the headline comes first; report.json keeps to docs/schemas/report.json;
//! report.md embeds its charts as SVG files written beside it.

mod html_fixture;

use std::path::Path;

use fleetbench_report::html::Report;
use fleetbench_report::write_report;
use fleetbench_store::Store;
use html_fixture::{store_sweep, SweepSpec, DEMO_SETUPS};
use serde_json::Value;

const REASON: &str = "past 8 agents requests queue on the server: it serves no more at once";

fn six_level_sweep(dir: &Path) -> (Store, Vec<i64>) {
    let db = dir.join("sweep.db");
    let mut store = Store::open(&db).unwrap();
    let ids = store_sweep(
        &mut store,
        &SweepSpec {
            group: "sweep-a",
            url: "http://127.0.0.1:8001/v1",
            model: "llama-3.1-8b",
            hardware: "1x H100 80GB (simulated)",
            levels: &[1, 2, 4, 8, 16, 32],
            knee: Some(8),
            reason: REASON,
            rate: false,
        },
    );
    (store, ids)
}

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas/report.json");
    let schema: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("{} is not a valid JSON Schema: {e}", path.display());
    }
    jsonschema::draft202012::new(&schema).unwrap()
}

fn assert_valid(doc: &Value) {
    let v = validator();
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{e} (at {})", e.instance_path())).collect();
    assert!(errors.is_empty(), "report.json no longer matches docs/schemas/report.json:\n{}", errors.join("\n"));
    let mut extra = doc.clone();
    extra["a_key_nobody_documented"] = Value::Bool(true);
    assert!(!v.is_valid(&extra), "the schema accepts an undocumented top-level key");
    let mut missing = doc.clone();
    missing.as_object_mut().unwrap().remove("throughput_vs_concurrency");
    assert!(!v.is_valid(&missing), "the schema accepts a report without its curves");
}

#[test]
fn a_six_level_sweep_is_one_series_with_six_points_and_its_knee() {
    let dir = html_fixture::temp_dir("six");
    let (store, ids) = six_level_sweep(&dir);
    assert_eq!(ids.len(), 6, "one run per level, as the sweep driver stores them");
    let report = Report::load(&store, &ids).unwrap();
    let v = report.json();
    let curves = v["throughput_vs_concurrency"].as_array().unwrap();
    assert_eq!(curves.len(), 1, "{:#}", v["throughput_vs_concurrency"]);
    let c = &curves[0];
    let xs: Vec<f64> = c["points"].as_array().unwrap().iter().map(|p| p["concurrency"].as_f64().unwrap()).collect();
    assert_eq!(xs, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
    assert_eq!(c["knee_concurrency"], 8.0, "the sweep's own knee, not a recomputed one");
    assert_eq!(c["knee_band"], serde_json::json!([4.0, 16.0]));
    assert_eq!(c["explanation"], REASON);
    assert_eq!(c["run_ids"].as_array().unwrap().len(), 6);
    assert!(c["saturation_output_throughput"].as_f64().unwrap() > 0.0);
    assert_eq!(c["series"], "1x H100 80GB (simulated)");
    assert_valid(&v);

    // The page: one line with six vertices, the knee marked at 8, the why
    // under the chart, and the headline before the first chart.
    let html = report.html();
    let start = html.find("id=\"chart-aggregate-tps\"").unwrap();
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    assert_eq!(svg.matches("<polyline class=\"line\"").count(), 1);
    assert!(svg.contains("data-points=\"6\""), "one vertex per level");
    assert!(svg.contains("<g class=\"knee\" data-series=\"1x H100 80GB (simulated)\" data-x=\"8\""));
    assert!(svg.contains("class=\"saturation\""), "the saturation throughput is drawn");
    assert!(html[start..].contains(REASON), "the sweep's explanation sits under the chart");
    let head = html.find("id=\"headline\"").expect("a headline section");
    assert!(head < html.find("<svg").unwrap(), "the headline comes before the first chart");
    assert!(html[head..start].contains("C=8 (band 4–16)"), "the headline names the knee and its band");
    assert!(html.find("<details id=\"runs\"").unwrap() > start, "the runs table with command lines comes last");
}

#[test]
fn the_demos_setups_are_three_series_each_with_all_its_levels() {
    let dir = html_fixture::temp_dir("demo");
    let (db, sweeps) = html_fixture::build_demo(&dir);
    let store = Store::open(&db).unwrap();
    let ids: Vec<i64> = sweeps.iter().flatten().copied().collect();
    assert_eq!(ids.len(), 9);
    let files = write_report(&store, &ids, &dir.join("out")).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
    assert_valid(&v);
    let curves = v["throughput_vs_concurrency"].as_array().unwrap();
    let names: Vec<&str> = curves.iter().map(|c| c["series"].as_str().unwrap()).collect();
    assert_eq!(names, DEMO_SETUPS, "one series per setup although all share one group");
    for (c, ids) in curves.iter().zip(&sweeps) {
        let run_ids: Vec<i64> = c["run_ids"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        assert_eq!(&run_ids, ids);
        let xs: Vec<f64> = c["points"].as_array().unwrap().iter().map(|p| p["concurrency"].as_f64().unwrap()).collect();
        assert_eq!(xs, [1.0, 4.0, 16.0]);
        assert_eq!(c["knee_concurrency"], 16.0);
    }
    let headline = v["headline"].as_array().unwrap();
    assert_eq!(headline.len(), 3);
    for h in headline {
        assert!(h["usd_per_million_output_tokens"].as_f64().is_some(), "the knee's price reaches the headline: {h}");
        assert!(h["energy_per_output_token_j"].as_f64().is_some(), "{h}");
        assert!(h["single_stream_tok_s"].as_f64().unwrap() > 0.0);
        assert!(h["sentence"].as_str().unwrap().contains("the knee is at C≥16"), "{h}");
    }
    let html = std::fs::read_to_string(&files.index_html).unwrap();
    // The setup once per backend, not per run.
    let setup = &html[html.find("<details id=\"setup\"").unwrap()..];
    let setup = &setup[..setup.find("</details>").unwrap()];
    assert_eq!(setup.matches("<li>").count(), 3, "{setup}");
    assert!(!html.contains("<aside"), "no setup list beside every chart");
    let agg = &html[html.find("id=\"chart-aggregate-tps\"").unwrap()..];
    let agg = &agg[..agg.find("</svg>").unwrap()];
    assert_eq!(agg.matches("data-points=\"3\"").count(), 3);
    assert_eq!(agg.matches("<g class=\"knee\"").count(), 3);
}

#[test]
fn sweeps_of_different_backends_never_merge() {
    let dir = html_fixture::temp_dir("two");
    let mut store = Store::open(&dir.join("two.db")).unwrap();
    let mut ids = Vec::new();
    for url in ["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"] {
        ids.extend(store_sweep(
            &mut store,
            &SweepSpec {
                group: "same-group",
                url,
                model: "m",
                hardware: "same hardware",
                levels: &[1, 2, 4],
                knee: None,
                reason: "",
                rate: false,
            },
        ));
    }
    let report = Report::load(&store, &ids).unwrap();
    let curves = report.curves();
    assert_eq!(curves.len(), 2);
    assert_ne!(curves[0].name, curves[1].name, "two curves are told apart by name");
    assert!(curves.iter().all(|c| c.points.len() == 3));
}

#[test]
fn markdown_embeds_its_charts_as_svg_files_beside_it() {
    let dir = html_fixture::temp_dir("md");
    let (db, sweeps) = html_fixture::build_demo(&dir);
    let store = Store::open(&db).unwrap();
    let ids: Vec<i64> = sweeps.iter().flatten().copied().collect();
    let files = write_report(&store, &ids, &dir.join("out")).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    let head = md.find("## Headline").expect("a headline table");
    let first_image = md.find("![").expect("charts are embedded");
    assert!(head < first_image);
    for setup in DEMO_SETUPS {
        assert!(md.contains(&format!("### {setup}")), "a per-level table for {setup}");
    }
    let links: Vec<&str> =
        md.match_indices("](").map(|(i, _)| &md[i + 2..i + 2 + md[i + 2..].find(')').unwrap()]).collect();
    assert!(links.contains(&"aggregate-tps.svg"), "{links:?}");
    for l in links {
        assert!(!l.contains('/'), "relative links beside report.md: {l}");
        let svg = std::fs::read_to_string(files.dir.join(l)).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{l} stands alone");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}

#[test]
fn a_rate_sweep_is_drawn_against_the_rate() {
    let dir = html_fixture::temp_dir("rate");
    let mut store = Store::open(&dir.join("rate.db")).unwrap();
    let ids = store_sweep(
        &mut store,
        &SweepSpec {
            group: "rates",
            url: "http://127.0.0.1:8003/v1",
            model: "m",
            hardware: "1x L4",
            levels: &[1, 2, 4, 8],
            knee: Some(4),
            reason: "past 4 req/s the queue grows",
            rate: true,
        },
    );
    let report = Report::load(&store, &ids).unwrap();
    let v = report.json();
    assert_valid(&v);
    let c = &v["throughput_vs_concurrency"][0];
    assert_eq!(v["throughput_vs_concurrency"].as_array().unwrap().len(), 1);
    assert_eq!(c["x"], "rate");
    assert_eq!(c["knee_rate"], 4.0);
    assert_eq!(c["knee_concurrency"], Value::Null);
    assert_eq!(c["points"].as_array().unwrap().len(), 4);
    let html = report.html();
    assert!(html.contains("id=\"chart-aggregate-tps-rate\"") && html.contains("request rate (requests/s)"));
    assert!(html.contains("knee: 4 req/s"));
    assert!(!html.contains("id=\"chart-aggregate-tps\""), "no concurrency chart without concurrency curves");
}
