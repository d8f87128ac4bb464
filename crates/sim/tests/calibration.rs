//! The shipped calibration set is reproduced within the error the README states.

use fleetbench_sim::calibration::{self, is_held_out, EMBEDDED_CALIBRATION};
use fleetbench_sim::underload::{LoadReport, RowResult, VLLM_PUBLISHED_ERROR};
use fleetbench_sim::Catalog;

#[test]
fn calibration_rows_are_reproduced_within_the_stated_error() {
    let rows = calibration::parse_rows(EMBEDDED_CALIBRATION, "calibration.csv").unwrap();
    assert_eq!(rows.len(), 118);
    let report = calibration::validate(&Catalog::embedded().unwrap(), &rows);
    let placed = report.rows.iter().filter(|r| r.error_pct.is_some()).count();
    assert!(placed >= 90, "only {placed} rows placed");
    // The figures crates/sim/README.md states ("How the engine figures were
    // fitted"), within half a percentage point.
    let near = |got: f64, stated: f64, what: &str| {
        assert!((got - stated).abs() <= 0.5, "{what}: {got:.2} %, README states {stated} %");
    };
    near(report.median_abs_error_pct.unwrap(), 7.2, "median abs error, all rows");
    let (fit_median, fit_worst) = report.errors_where(|r| !is_held_out(r));
    let (held_median, held_worst) = report.errors_where(is_held_out);
    near(fit_median.unwrap(), 6.7, "median abs error, fitted rows");
    near(held_median.unwrap(), 8.1, "median abs error, held-out rows");
    assert!((fit_worst.unwrap() - 140.8).abs() <= 2.0, "fitted worst {fit_worst:?}");
    assert!((held_worst.unwrap() - 272.0).abs() <= 5.0, "held-out worst {held_worst:?}");
    // The median goal holds on both sets.
    assert!(fit_median.unwrap() < 15.0 && held_median.unwrap() < 15.0);
    assert_eq!(placed, 115);
    let within_35 = report.rows.iter().filter_map(|r| r.error_pct).filter(|e| e.abs() < 35.0).count();
    assert_eq!(within_35, 105, "{within_35} of {placed} within 35 %");
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

/// `sim validate` on a file of runs under load in `data/calibration/`.
fn validate_calibration_file(name: &str) -> LoadReport {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/calibration");
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    fleetbench_sim::underload::validate_text(&Catalog::embedded().unwrap(), &text, name, &dir).unwrap()
}

/// A median within a point of the one SIMULATOR.md states.
fn near(got: Option<f64>, stated: f64, what: &str) {
    let got = got.unwrap();
    assert!((got - stated).abs() <= 1.0, "{what}: {got:.2} %, SIMULATOR.md states {stated} %");
}

/// The absolute errors of one metric that `q` of the rows stay within
/// (nearest rank), over the rows that measured it.
fn quantile_abs_err(r: &LoadReport, q: f64, metric: impl Fn(&RowResult) -> Option<f64>) -> Option<f64> {
    let mut errs: Vec<f64> = r.rows.iter().filter_map(&metric).map(f64::abs).collect();
    errs.sort_by(f64::total_cmp);
    let rank = (q * errs.len() as f64).ceil() as usize;
    errs.get(rank.max(1) - 1).copied()
}

/// The runs under load are reproduced within the medians docs/SIMULATOR.md
/// states (section 7, "Errors"), both halves of the fit, every row covered;
/// and the errors `sim replay` prints beside a vLLM deployment's figures
/// (`VLLM_PUBLISHED_ERROR`: the middle one and nine runs in ten) are this
/// file's.
#[test]
fn runs_under_load_are_reproduced_within_the_stated_error() {
    let r = validate_calibration_file("under-load.csv");
    let stated = VLLM_PUBLISHED_ERROR;
    assert_eq!((r.covered, r.total), (stated.runs, stated.runs));
    let all = r.median_abs_err_pct;
    near(all.ttft, stated.median_abs_err_pct.ttft.unwrap(), "TTFT, all rows");
    near(all.tpot, stated.median_abs_err_pct.tpot.unwrap(), "TPOT, all rows");
    near(all.e2e, stated.median_abs_err_pct.e2e.unwrap(), "E2E, all rows");
    near(quantile_abs_err(&r, 0.9, |row| row.ttft_err_pct), stated.p90_abs_err_pct.ttft.unwrap(), "TTFT, nine in ten");
    near(quantile_abs_err(&r, 0.9, |row| row.tpot_err_pct), stated.p90_abs_err_pct.tpot.unwrap(), "TPOT, nine in ten");
    near(quantile_abs_err(&r, 0.9, |row| row.e2e_err_pct), stated.p90_abs_err_pct.e2e.unwrap(), "E2E, nine in ten");
    let (fitted, held) = r.split_medians();
    near(fitted.ttft, 15.6, "TTFT, fitted rows");
    near(fitted.tpot, 5.2, "TPOT, fitted rows");
    near(held.ttft, 20.2, "TTFT, held-out rows");
    near(held.tpot, 5.7, "TPOT, held-out rows");
    near(held.e2e, 5.8, "E2E, held-out rows");
}

/// The llm-d fleet runs of inference-perf's shared-prefix workload, each
/// mapped to one replica (`data/calibration/fleet-shared-prefix.csv`): a
/// check no figure was fitted on (the per-prompt-token frontend cost was
/// set by hand after its first rows had been run; SIMULATOR.md, section 7),
/// its prompts counted as the server tokenized inference-perf's random-token
/// text. Every row is covered and the medians, of the whole file and of each
/// router's rows, stay within a point of what SIMULATOR.md states.
#[test]
fn fleet_shared_prefix_runs_are_reproduced_within_the_stated_error() {
    let r = validate_calibration_file("fleet-shared-prefix.csv");
    assert_eq!((r.covered, r.total), (57, 57));
    let all = r.median_abs_err_pct;
    near(all.ttft, 19.7, "TTFT");
    near(all.tpot, 7.0, "TPOT");
    near(all.e2e, 12.6, "E2E");
    let ttft_errors = |prefix: &str, rows: usize| -> Vec<f64> {
        let errs: Vec<f64> =
            r.rows.iter().filter(|row| row.id.starts_with(prefix)).filter_map(|row| row.ttft_err_pct).collect();
        assert_eq!(errs.len(), rows, "{prefix}");
        errs
    };
    // The median of one router's rows, as `sim validate` takes it.
    let router_median = |prefix: &str, rows: usize| {
        ttft_errors(prefix, rows);
        r.medians_where(|_, row| row.id.starts_with(prefix)).ttft
    };
    // Routers that send a server a share of every group: Llama 3.1 70B on
    // four pods of four H100 behind a random picker, and Qwen3-32B on eight
    // pods of two behind a round-robin Kubernetes Service, at every stage
    // of their ladders.
    near(router_median("llmd37-random-", 9), 8.9, "TTFT, random picker");
    near(router_median("llmd-ob-k8s-", 16), 21.8, "TTFT, Kubernetes Service");
    near(router_median("llmd-ob-router-", 16), 12.5, "TTFT, llm-d's router");
    // The precise prefix scorer's first tokens carry the gateway's and the
    // scorer's time, which the replay has no figure for: every one reads
    // fast.
    let precise = ttft_errors("llmd37-precise-", 9);
    assert!(precise.iter().all(|e| *e < -20.0), "{precise:?}");
}

/// GPUStack's rate ladders of Qwen3.5-9B and Qwen3.5-35B-A3B, models with
/// linear-attention layers (`data/calibration/hybrid-ladders.csv`): no
/// figure is fitted on them, every one reads fast, and the caveat
/// `sim replay` prints beside such a model states their range.
#[test]
fn the_linear_attention_ladders_read_as_the_caveat_says() {
    let r = validate_calibration_file("hybrid-ladders.csv");
    assert_eq!((r.covered, r.total), (9, 9));
    near(r.median_abs_err_pct.ttft, 33.3, "TTFT");
    near(r.median_abs_err_pct.e2e, 37.6, "E2E");
    let e2e: Vec<f64> = r.rows.iter().filter_map(|row| row.e2e_err_pct).collect();
    assert_eq!(e2e.len(), 9);
    assert!(e2e.iter().all(|e| *e < 0.0), "{e2e:?}");
    let (fastest, nearest) = (e2e.iter().copied().fold(0.0, f64::min), e2e.iter().copied().fold(f64::MIN, f64::max));
    let caveat = fleetbench_sim::perf::LINEAR_ATTENTION_CAVEAT;
    assert!(caveat.contains(&format!("{:.0} % to {:.0} %", nearest, fastest)), "{nearest:.1} {fastest:.1}: {caveat}");
}
