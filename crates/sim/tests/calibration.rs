//! The shipped calibration set is reproduced within the error the README states.

use fleetbench_sim::calibration::{self, is_held_out, EMBEDDED_CALIBRATION};
use fleetbench_sim::Catalog;

#[test]
fn calibration_rows_are_reproduced_within_the_stated_error() {
    let rows = calibration::parse_rows(EMBEDDED_CALIBRATION, "calibration.csv").unwrap();
    assert_eq!(rows.len(), 96);
    let report = calibration::validate(&Catalog::embedded().unwrap(), &rows);
    let placed = report.rows.iter().filter(|r| r.error_pct.is_some()).count();
    assert!(placed >= 90, "only {placed} rows placed");
    let median = report.median_abs_error_pct.unwrap();
    assert!(median < 15.0, "median abs error {median}");
    let (fit_median, _) = report.errors_where(|r| !is_held_out(r));
    let (held_median, _) = report.errors_where(is_held_out);
    assert!(fit_median.unwrap() < 12.0, "fitted rows median {fit_median:?}");
    assert!(held_median.unwrap() < 20.0, "held-out rows median {held_median:?}");
    let within_35 = report.rows.iter().filter_map(|r| r.error_pct).filter(|e| e.abs() < 35.0).count();
    assert!(within_35 as f64 >= 0.85 * placed as f64, "{within_35} of {placed} within 35 %");
    // Unplaceable rows carry a reason and no error.
    for r in report.rows.iter().filter(|r| r.predicted.is_none()) {
        assert!(r.reason.is_some() && r.error_pct.is_none());
    }
}

#[test]
fn validate_json_has_the_contract_keys() {
    let rows = calibration::parse_rows(EMBEDDED_CALIBRATION, "calibration.csv").unwrap();
    let report = calibration::validate(&Catalog::embedded().unwrap(), &rows);
    let v = serde_json::to_value(&report).unwrap();
    for k in ["rows", "median_abs_error_pct", "worst_abs_error_pct", "skipped"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    let row = &v["rows"][0];
    for k in ["source_url", "gpu", "metric", "value", "predicted", "error_pct"] {
        assert!(row.get(k).is_some(), "row misses {k}");
    }
    let skipped = v["rows"].as_array().unwrap().iter().find(|r| r["predicted"].is_null()).unwrap();
    assert!(skipped["error_pct"].is_null() && skipped["reason"].is_string());
}

#[test]
fn a_file_without_the_columns_is_refused_with_advice() {
    let err = calibration::parse_rows("a,b\n1,2\n", "x.csv").unwrap_err().to_string();
    assert!(err.contains("missing column") && err.contains("published_calibration.csv"), "{err}");
}
