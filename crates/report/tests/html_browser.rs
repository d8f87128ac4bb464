//! The report in a real headless Chromium: opened from file://, every chart
//! visible with a non-zero size, no request leaves the file, and hostile
//! model text is shown as text without running. Needs Chromium and Node:
//! ignored by a plain `cargo test`, run by `scripts/test.sh`
//! (`--include-ignored`), which installs them through
//! `scripts/ensure-chromium.sh` (root, or a preinstalled chromium). Screenshot:
//! artifacts/screenshots/report.png.

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

#[test]
#[ignore = "needs Chromium and Node: scripts/test.sh installs them (scripts/ensure-chromium.sh)"]
fn report_opens_from_file_url_with_visible_charts() {
    let chromium = ensure_chromium();
    let dir = html_fixture::temp_dir("browser");
    let fx = html_fixture::build(&dir);
    let store = fleetbench_store::Store::open(&fx.db).unwrap();
    let files = fleetbench_report::write_report(&store, &fx.all(), &dir.join("report")).unwrap();
    let shots = root().join("artifacts/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("file://{}", files.index_html.canonicalize().unwrap().display());
    let out = Command::new("node")
        .current_dir(root().join("tests/browser"))
        .env("CHROMIUM_PATH", &chromium)
        .arg("report.mjs")
        .arg(&url)
        .arg(&shot)
        .output()
        .expect("node must be installed for the browser tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "browser check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let charts = v["charts"].as_array().unwrap();
    assert!(charts.len() >= 12, "{v}");
    for c in charts {
        assert!(c["w"].as_f64().unwrap() > 0.0 && c["h"].as_f64().unwrap() > 0.0, "{c}");
    }
    assert!(charts.iter().any(|c| c["id"] == "chart-aggregate-tps"));
    assert_eq!(v["pwned"], serde_json::Value::Null);
    assert_eq!(v["hostileShownAsText"], true);
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "screenshot looks empty");
}
