//! The report in a real headless Chromium: opened from file://, every chart
//! visible with a non-zero size, no request leaves the file, and hostile
//! model text is shown as text without running. Needs Chromium and Node:
//! ignored by a plain `cargo test`, run by `scripts/test.sh`
//! (`--include-ignored`), which installs them through
//! `scripts/ensure-chromium.sh` (root, or a preinstalled chromium). The
//! geometry is checked in the browser: one line per backend with one vertex
//! per level, the knee marked at its level, no text outside its chart's box,
//! the headline table above the first chart. Screenshots:
//! artifacts/screenshots/report.png and report-demo.png.

mod html_fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Installs what the browser checks need; returns the Chromium path.
fn ensure_chromium() -> String {
    let out = Command::new("bash").arg(root().join("scripts/ensure-chromium.sh")).output().unwrap();
    assert!(
        out.status.success(),
        "this test needs headless Chromium, chromedriver and Node's playwright-core, and \
         scripts/ensure-chromium.sh could not provide them (it installs them with apt-get, as root, and npm; \
         scripts/test.sh runs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("/usr/bin/chromium").trim().to_string()
}

/// Opens `index` in Chromium through tests/browser/report.mjs, saves a
/// screenshot as artifacts/screenshots/`shot`, and returns what it measured.
fn open_in_browser(index: &Path, shot: &str, hostile: bool) -> serde_json::Value {
    let chromium = ensure_chromium();
    let shots = root().join("artifacts/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(shot);
    let _ = std::fs::remove_file(&shot);
    let url = format!("file://{}", index.canonicalize().unwrap().display());
    let out = Command::new("node")
        .current_dir(root().join("tests/browser"))
        .env("CHROMIUM_PATH", &chromium)
        .env("EXPECT_HOSTILE", if hostile { "1" } else { "0" })
        .arg("report.mjs")
        .arg(&url)
        .arg(&shot)
        .output()
        .expect("node must be installed for the browser tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "screenshot looks empty");
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// No chart has a label, legend entry or title outside its box, and the
/// headline table sits above the first chart.
fn assert_fits_and_reads_top_down(v: &serde_json::Value) {
    for s in v["shapes"].as_array().unwrap() {
        assert_eq!(s["outside"].as_array().unwrap().len(), 0, "text outside chart {}: {}", s["id"], s["outside"]);
    }
    assert_eq!(v["order"]["before"], true, "{}", v["order"]);
    assert!(v["order"]["headlineTop"].as_f64().unwrap() < v["order"]["firstChartTop"].as_f64().unwrap());
}

fn chart<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["shapes"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no chart {id}"))
}

#[test]
#[ignore = "needs Chromium and Node: scripts/test.sh installs them (scripts/ensure-chromium.sh)"]
fn report_opens_from_file_url_with_visible_charts() {
    let dir = html_fixture::temp_dir("browser");
    let fx = html_fixture::build(&dir);
    let store = fleetbench_store::Store::open(&fx.db).unwrap();
    let files = fleetbench_report::write_report(&store, &fx.all(), &dir.join("report")).unwrap();
    let v = open_in_browser(&files.index_html, "report.png", true);
    let charts = v["charts"].as_array().unwrap();
    assert!(charts.len() >= 12, "{v}");
    for c in charts {
        assert!(c["w"].as_f64().unwrap() > 0.0 && c["h"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert!(charts.iter().any(|c| c["id"] == "chart-aggregate-tps"));
    assert_eq!(v["pwned"], serde_json::Value::Null);
    assert_eq!(v["hostileShownAsText"], true);
    assert_fits_and_reads_top_down(&v);
    // The sweep stored on one run (six levels) is one line with its knee.
    let agg = chart(&v, "chart-aggregate-tps");
    let vertices: Vec<u64> = agg["lines"].as_array().unwrap().iter().map(|l| l["vertices"].as_u64().unwrap()).collect();
    assert_eq!(vertices, [3, 6, 1], "{agg}");
}

#[test]
#[ignore = "needs Chromium and Node: scripts/test.sh installs them (scripts/ensure-chromium.sh)"]
fn the_demos_report_draws_one_line_per_setup_with_its_knee() {
    let dir = html_fixture::temp_dir("browser-demo");
    let (db, sweeps) = html_fixture::build_demo(&dir);
    let store = fleetbench_store::Store::open(&db).unwrap();
    let ids: Vec<i64> = sweeps.iter().flatten().copied().collect();
    let files = fleetbench_report::write_report(&store, &ids, &dir.join("report")).unwrap();
    let v = open_in_browser(&files.index_html, "report-demo.png", false);
    assert_fits_and_reads_top_down(&v);
    for id in ["chart-aggregate-tps", "chart-per-request-tps"] {
        let lines = chart(&v, id)["lines"].as_array().unwrap().clone();
        let names: Vec<&str> = lines.iter().map(|l| l["series"].as_str().unwrap()).collect();
        assert_eq!(names, html_fixture::DEMO_SETUPS, "{id}: one polyline per backend");
        assert!(lines.iter().all(|l| l["vertices"] == 3), "{id}: one vertex per level: {lines:?}");
    }
    let knees = chart(&v, "chart-aggregate-tps")["knees"].as_array().unwrap().clone();
    assert_eq!(knees.len(), 3, "{knees:?}");
    assert!(knees.iter().all(|k| k["x"] == 16.0), "the knee marker sits at the knee level: {knees:?}");
}
