//! Fits figures of one engine on the runs under load of
//! `data/calibration/under-load.csv` whose 0-based index is not 3 mod 4, by
//! coordinate descent on the squared log error of the mean TTFT, TPOT and
//! end-to-end latency, then prints the figures and the median absolute
//! errors of the fitted and the held-out rows, before and after.
//!
//! The figures: the host-side `step_floor_us`, `frontend_ms` and
//! `frontend_token_us` of engines.toml, and the engine's efficiency on one
//! GPU family, `FAMILY.bw_eff` and `FAMILY.compute_eff` (its
//! `[engine.family.FAMILY]` override). By default the three host-side
//! figures and the engine's bandwidth efficiency on Hopper and on the A100
//! (`ampere-hbm`) are fitted.
//!
//! Run: `cargo run --release -p fleetbench-sim --example fit_load [FILE.csv]`
//! (`FIT_SWEEPS=0` only reports the shipped catalog's errors;
//! `FIT_ENGINE=sglang` fits another engine's figures, `vllm` by default;
//! `FIT_SET=frontend_ms=10,hopper.bw_eff=0.7` starts from the given figures;
//! `FIT_ONLY=frontend_ms,ampere-hbm.bw_eff` fits exactly those).

use std::path::Path;

use fleetbench_sim::catalog::{Catalog, FamilyEff};
use fleetbench_sim::underload::{self, LoadReport, Medians};

const DEFAULT_FIELDS: [&str; 5] =
    ["step_floor_us", "frontend_ms", "frontend_token_us", "hopper.bw_eff", "ampere-hbm.bw_eff"];

/// A family figure reads the engine's own where the family has no override.
fn get(c: &Catalog, engine: &str, field: &str) -> f64 {
    let Some(e) = c.engine(engine) else { return 0.0 };
    match field.split_once('.') {
        Some((fam, "bw_eff")) => e.family.get(fam).and_then(|f| f.bw_eff).unwrap_or(e.bw_eff),
        Some((fam, _)) => e.family.get(fam).and_then(|f| f.compute_eff).unwrap_or(e.compute_eff),
        None => match field {
            "step_floor_us" => e.step_floor_us,
            "frontend_ms" => e.frontend_ms,
            _ => e.frontend_token_us,
        },
    }
}

fn set(c: &mut Catalog, engine: &str, field: &str, v: f64) {
    let Some(e) = c.engines.iter_mut().find(|e| e.id == engine) else { return };
    match field.split_once('.') {
        Some((fam, what)) => {
            let o = e.family.entry(fam.to_string()).or_insert_with(FamilyEff::default);
            if what == "bw_eff" {
                o.bw_eff = Some(v);
            } else {
                o.compute_eff = Some(v);
            }
        }
        None => match field {
            "step_floor_us" => e.step_floor_us = v,
            "frontend_ms" => e.frontend_ms = v,
            _ => e.frontend_token_us = v,
        },
    }
}

fn known(field: &str) -> bool {
    match field.split_once('.') {
        Some((_, what)) => what == "bw_eff" || what == "compute_eff",
        None => matches!(field, "step_floor_us" | "frontend_ms" | "frontend_token_us"),
    }
}

/// Physically sensible ranges: a frontend latency of up to 100 ms, up to
/// 1 ms of API-server CPU a token, a step floor no longer than the fastest
/// time per token vLLM was measured at (2.39 ms, Qwen3-0.6B on an H100, row
/// 25): the floor is a lower bound on every step, so a larger one
/// contradicts that run (`FIT_FLOOR_MAX_US` lifts the bound: the A100 sweeps
/// alone pull it to about 9 ms; docs/SIMULATOR.md, section 7), and the
/// efficiency bounds of the single-number fit (`examples/fit.rs`).
fn bounds(field: &str) -> (f64, f64) {
    match field {
        "step_floor_us" => {
            (0.0, std::env::var("FIT_FLOOR_MAX_US").ok().and_then(|v| v.parse().ok()).unwrap_or(2_400.0))
        }
        "frontend_ms" => (0.0, 100.0),
        "frontend_token_us" => (0.0, 1_000.0),
        f if f.ends_with(".bw_eff") => (0.2, 0.95),
        _ => (0.05, 0.9),
    }
}

/// A starting point for a figure at zero (a multiplicative step cannot leave 0).
fn seed_value(field: &str) -> f64 {
    match field {
        "step_floor_us" => 2_000.0,
        "frontend_ms" => 5.0,
        "frontend_token_us" => 20.0,
        _ => 0.5,
    }
}

fn run(cat: &Catalog, text: &str, base: &Path) -> LoadReport {
    match underload::validate_text(cat, text, "under-load", base) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot validate: {e}");
            std::process::exit(1);
        }
    }
}

/// Sum of squared log errors over the fitted rows' measured means.
fn loss(r: &LoadReport) -> f64 {
    r.rows
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 3)
        .flat_map(|(_, row)| [row.ttft_err_pct, row.tpot_err_pct, row.e2e_err_pct])
        .flatten()
        .map(|e| (1.0 + e / 100.0).max(1e-6).ln().powi(2))
        .sum()
}

fn show(label: &str, r: &LoadReport) {
    let f = |m: Medians| {
        let p = |v: Option<f64>| v.map(|v| format!("{v:.1} %")).unwrap_or_else(|| "n/a".into());
        format!("TTFT {}, TPOT {}, E2E {}", p(m.ttft), p(m.tpot), p(m.e2e))
    };
    let (fit, held) = r.split_medians();
    println!("{label}: {} of {} covered, loss on the fitted rows {:.4}", r.covered, r.total, loss(r));
    println!("  all:      {}", f(r.median_abs_err_pct));
    println!("  fitted:   {}", f(fit));
    println!("  held out: {}", f(held));
}

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "data/calibration/under-load.csv".into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let base = Path::new(&path).parent().map(Path::to_path_buf).unwrap_or_default();
    let engine = std::env::var("FIT_ENGINE").unwrap_or_else(|_| "vllm".into());
    let sweeps: usize = std::env::var("FIT_SWEEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mut cat = match Catalog::embedded() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("catalog: {e}");
            std::process::exit(1);
        }
    };
    // FIT_SET=step_floor_us=2000,frontend_ms=10 starts from given figures.
    for (field, v) in std::env::var("FIT_SET").unwrap_or_default().split(',').filter_map(|kv| kv.split_once('=')) {
        match (known(field), v.parse::<f64>()) {
            (true, Ok(v)) => set(&mut cat, &engine, field, v),
            _ => {
                eprintln!("FIT_SET: cannot set {field} to {v}");
                std::process::exit(2);
            }
        }
    }
    let before = run(&cat, &text, &base);
    show("shipped catalog", &before);
    if sweeps == 0 {
        print!("{}", before.to_text());
        return;
    }
    // FIT_ONLY=frontend_ms,ampere-hbm.bw_eff fits exactly those figures.
    let only = std::env::var("FIT_ONLY").unwrap_or_default();
    let fields: Vec<String> = if only.is_empty() {
        DEFAULT_FIELDS.iter().map(|f| f.to_string()).collect()
    } else {
        only.split(',').map(str::to_string).collect()
    };
    if let Some(bad) = fields.iter().find(|f| !known(f)) {
        eprintln!(
            "unknown figure {bad}: step_floor_us, frontend_ms, frontend_token_us, FAMILY.bw_eff, FAMILY.compute_eff"
        );
        std::process::exit(2);
    }
    let mut best = loss(&before);
    let mut step = 0.5;
    for _ in 0..sweeps {
        let mut improved = false;
        for field in fields.iter().map(String::as_str) {
            let (lo, hi) = bounds(field);
            let v0 = get(&cat, &engine, field);
            let mut tries = vec![if v0 == 0.0 { seed_value(field) } else { v0 * (1.0 + step) }, v0 / (1.0 + step)];
            if v0 > 0.0 {
                tries.push(0.0);
            }
            for v in tries {
                set(&mut cat, &engine, field, v.clamp(lo, hi));
                let l = loss(&run(&cat, &text, &base));
                if l + 1e-9 < best {
                    best = l;
                    improved = true;
                    break;
                }
                set(&mut cat, &engine, field, v0);
            }
        }
        if !improved {
            step *= 0.5;
            if step < 0.01 {
                break;
            }
        }
    }
    for field in &fields {
        println!("{engine}.{field} = {:.3}", get(&cat, &engine, field));
    }
    let after = run(&cat, &text, &base);
    show("fitted", &after);
    print!("{}", after.to_text());
}
