//! Fits figures of one engine on the runs under load of
//! `data/calibration/under-load.csv` whose 0-based index is not 3 mod 4, by
//! coordinate descent on the squared log error of the mean TTFT, TPOT and
//! end-to-end latency, then prints the figures and the median absolute
//! errors of the fitted and the held-out rows, before and after.
//!
//! The figures: the host-side `step_floor_us`, `seq_cpu_us`, `frontend_ms`,
//! `frontend_token_us` and `frontend_prompt_token_us` of engines.toml, the
//! engine's `layer_overhead_us` and `decode_layer_overhead_us` (a decode-only
//! step run as one CUDA graph), its efficiency on one GPU family,
//! `FAMILY.bw_eff` and `FAMILY.compute_eff` (its `[engine.family.FAMILY]`
//! override), and models.toml's `expert_routing_zipf` (how unevenly MoE
//! routers pick experts, one figure for every engine). By default the three
//! host-side figures and the engine's bandwidth efficiency on Hopper and on
//! the A100 (`ampere-hbm`) are fitted.
//! Each row weighs one over the number of fitted rows its publisher gave
//! (`FIT_WEIGHTS=rows` weighs every row one; `FIT_LOSS=abs` sums absolute
//! log errors instead of squared ones).
//!
//! Run: `cargo run --release -p fleetbench-sim --example fit_load [FILE.csv ...]`
//! (several files: the loss is summed over them, each is reported on its own;
//! `FIT_SWEEPS=0` only reports the shipped catalog's errors;
//! `FIT_ENGINE=sglang` fits another engine's figures, `vllm` by default;
//! `FIT_SET=frontend_ms=10,hopper.bw_eff=0.7` starts from the given figures;
//! `FIT_ONLY=frontend_ms,ampere-hbm.bw_eff` fits exactly those; the
//! eleventh session's fit: `FIT_ONLY=hopper.bw_eff,ampere-hbm.bw_eff,layer_overhead_us`).

use std::path::{Path, PathBuf};

use fleetbench_sim::catalog::{Catalog, FamilyEff};
use fleetbench_sim::underload::{self, LoadReport, Medians};

/// Read when no file is named. `fleet-shared-prefix.csv` stays out: it is a
/// check the fit does not see (docs/SIMULATOR.md, section 7).
const DEFAULT_FILES: [&str; 1] = ["data/calibration/under-load.csv"];

const DEFAULT_FIELDS: [&str; 5] =
    ["step_floor_us", "frontend_ms", "frontend_token_us", "hopper.bw_eff", "ampere-hbm.bw_eff"];

/// One figure the fit can move, parsed once from its name.
#[derive(Debug, Clone)]
enum Figure {
    StepFloor,
    /// Engine-core CPU per running sequence per step.
    SeqCpu,
    Frontend,
    FrontendToken,
    FrontendPromptToken,
    /// The engine's fixed cost per transformer layer per step.
    LayerOverhead,
    /// The same for a decode-only step run as one CUDA graph.
    DecodeLayerOverhead,
    /// How unevenly MoE routers pick experts (the catalog's, every engine's).
    ExpertRoutingZipf,
    /// The engine's `bw_eff` (or `compute_eff`) on one GPU family.
    Family {
        family: String,
        bandwidth: bool,
    },
}

impl Figure {
    fn parse(name: &str) -> Option<Figure> {
        Some(match name.split_once('.') {
            Some((family, "bw_eff")) => Figure::Family { family: family.to_string(), bandwidth: true },
            Some((family, "compute_eff")) => Figure::Family { family: family.to_string(), bandwidth: false },
            Some(_) => return None,
            None => match name {
                "step_floor_us" => Figure::StepFloor,
                "seq_cpu_us" => Figure::SeqCpu,
                "frontend_ms" => Figure::Frontend,
                "frontend_token_us" => Figure::FrontendToken,
                "frontend_prompt_token_us" => Figure::FrontendPromptToken,
                "layer_overhead_us" => Figure::LayerOverhead,
                "decode_layer_overhead_us" => Figure::DecodeLayerOverhead,
                "expert_routing_zipf" => Figure::ExpertRoutingZipf,
                _ => return None,
            },
        })
    }

    fn name(&self) -> String {
        match self {
            Figure::StepFloor => "step_floor_us".into(),
            Figure::SeqCpu => "seq_cpu_us".into(),
            Figure::Frontend => "frontend_ms".into(),
            Figure::FrontendToken => "frontend_token_us".into(),
            Figure::FrontendPromptToken => "frontend_prompt_token_us".into(),
            Figure::LayerOverhead => "layer_overhead_us".into(),
            Figure::DecodeLayerOverhead => "decode_layer_overhead_us".into(),
            Figure::ExpertRoutingZipf => "expert_routing_zipf".into(),
            Figure::Family { family, bandwidth: true } => format!("{family}.bw_eff"),
            Figure::Family { family, bandwidth: false } => format!("{family}.compute_eff"),
        }
    }

    /// A family figure reads the engine's own where the family has no override.
    fn get(&self, c: &Catalog, engine: &str) -> f64 {
        let Some(e) = c.engine(engine) else { return 0.0 };
        match self {
            Figure::StepFloor => e.step_floor_us,
            Figure::SeqCpu => e.seq_cpu_us,
            Figure::Frontend => e.frontend_ms,
            Figure::FrontendToken => e.frontend_token_us,
            Figure::FrontendPromptToken => e.frontend_prompt_token_us,
            Figure::LayerOverhead => e.layer_overhead_us,
            Figure::DecodeLayerOverhead => e.decode_layer_overhead_us.unwrap_or(e.layer_overhead_us),
            Figure::ExpertRoutingZipf => c.expert_routing_zipf,
            Figure::Family { family, bandwidth: true } => {
                e.family.get(family).and_then(|f| f.bw_eff).unwrap_or(e.bw_eff)
            }
            Figure::Family { family, bandwidth: false } => {
                e.family.get(family).and_then(|f| f.compute_eff).unwrap_or(e.compute_eff)
            }
        }
    }

    fn set(&self, c: &mut Catalog, engine: &str, v: f64) {
        let Some(e) = c.engines.iter_mut().find(|e| e.id == engine) else { return };
        match self {
            Figure::StepFloor => e.step_floor_us = v,
            Figure::SeqCpu => e.seq_cpu_us = v,
            Figure::Frontend => e.frontend_ms = v,
            Figure::FrontendToken => e.frontend_token_us = v,
            Figure::FrontendPromptToken => e.frontend_prompt_token_us = v,
            Figure::LayerOverhead => e.layer_overhead_us = v,
            Figure::DecodeLayerOverhead => e.decode_layer_overhead_us = Some(v),
            Figure::ExpertRoutingZipf => c.expert_routing_zipf = v,
            Figure::Family { family, bandwidth } => {
                let o = e.family.entry(family.clone()).or_insert_with(FamilyEff::default);
                if *bandwidth {
                    o.bw_eff = Some(v);
                } else {
                    o.compute_eff = Some(v);
                }
            }
        }
    }

    /// Physically sensible ranges: a frontend latency of up to 100 ms, up
    /// to 1 ms of API-server CPU a token, a step floor no longer than the
    /// fastest time per token vLLM was measured at (2.39 ms, Qwen3-0.6B on
    /// an H100, row 25): the floor is a lower bound on every step, so a
    /// larger one contradicts that run (`FIT_FLOOR_MAX_US` lifts the bound:
    /// the A100 sweeps alone pull it to about 9 ms; docs/SIMULATOR.md,
    /// section 7), up to 200 µs of fixed cost a layer, and the efficiency
    /// bounds of the single-number fit (`examples/fit.rs`) but for bandwidth
    /// on an HBM family, which stops at 0.9: about what a plain copy kernel
    /// reaches on HBM2e and HBM3, so no decode kernel reads faster.
    fn bounds(&self) -> (f64, f64) {
        match self {
            Figure::StepFloor => {
                (0.0, std::env::var("FIT_FLOOR_MAX_US").ok().and_then(|v| v.parse().ok()).unwrap_or(2_400.0))
            }
            Figure::SeqCpu => (0.0, 500.0),
            Figure::Frontend => (0.0, 100.0),
            Figure::FrontendToken => (0.0, 1_000.0),
            Figure::FrontendPromptToken => (0.0, 100.0),
            Figure::LayerOverhead | Figure::DecodeLayerOverhead => (0.0, 200.0),
            Figure::ExpertRoutingZipf => (0.0, 3.0),
            Figure::Family { bandwidth: true, .. } => (0.2, 0.9),
            Figure::Family { bandwidth: false, .. } => (0.05, 0.9),
        }
    }

    /// A starting point for a figure at zero (a multiplicative step cannot leave 0).
    fn seed(&self) -> f64 {
        match self {
            Figure::StepFloor => 2_000.0,
            Figure::SeqCpu => 20.0,
            Figure::Frontend => 5.0,
            Figure::FrontendToken => 20.0,
            Figure::FrontendPromptToken => 2.0,
            Figure::LayerOverhead | Figure::DecodeLayerOverhead => 20.0,
            Figure::ExpertRoutingZipf => 0.5,
            Figure::Family { .. } => 0.5,
        }
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

/// Sum of squared log errors (absolute ones with `FIT_LOSS=abs`) over the
/// fitted rows' measured means, each row weighted by one over the number
/// of fitted rows its publisher gave (`weights`): rows of one publisher
/// share a host, a vLLM version and a method, so their errors move
/// together, and a sweep of 19 rows from one machine must not outvote six
/// other groups' runs.
fn loss(r: &LoadReport, weights: &[f64]) -> f64 {
    r.rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !underload::is_held_out(*i))
        .map(|(i, row)| {
            let w = weights.get(i).copied().unwrap_or(1.0);
            [row.ttft_err_pct, row.tpot_err_pct, row.e2e_err_pct]
                .into_iter()
                .flatten()
                .map(|e| {
                    let log_err = (1.0 + e / 100.0).max(1e-6).ln();
                    w * if absolute_loss() { log_err.abs() } else { log_err * log_err }
                })
                .sum::<f64>()
        })
        .sum()
}

/// `FIT_LOSS=abs`: absolute log errors, which a median follows more
/// closely than squared ones, and which the bursts outweigh less.
fn absolute_loss() -> bool {
    std::env::var("FIT_LOSS").is_ok_and(|v| v == "abs")
}

/// Who published a row, from its `source`: a GitHub repository
/// (`github.com/OWNER/REPO`, whichever issue or file), else the web host.
fn publisher(source: &str) -> String {
    let url = source.split_whitespace().next().unwrap_or("");
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let mut parts = rest.split('/');
    let host = parts.next().unwrap_or("").to_ascii_lowercase();
    if host == "github.com" {
        let owner = parts.next().unwrap_or("");
        let repo = parts.next().unwrap_or("");
        format!("{host}/{owner}/{repo}").to_ascii_lowercase()
    } else {
        host
    }
}

/// Each row's weight in the loss: one over the number of fitted rows of
/// its publisher (`publisher`), so every publisher's rows weigh one in all.
/// `FIT_WEIGHTS=rows` weighs every row one instead.
fn publisher_weights(text: &str, origin: &str) -> Vec<f64> {
    let rows = match underload::parse_rows(text, origin) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("cannot read {origin}: {e}");
            std::process::exit(1);
        }
    };
    if std::env::var("FIT_WEIGHTS").is_ok_and(|v| v == "rows") {
        return vec![1.0; rows.len()];
    }
    let of = |row: &underload::LoadRow| publisher(row.get("source"));
    let mut counts = std::collections::HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if !underload::is_held_out(i) {
            *counts.entry(of(row)).or_insert(0usize) += 1;
        }
    }
    rows.iter().map(|row| 1.0 / counts.get(&of(row)).copied().unwrap_or(1).max(1) as f64).collect()
}

fn show(label: &str, r: &LoadReport, weights: &[f64]) {
    let f = |m: Medians| {
        let p = |v: Option<f64>| v.map(|v| format!("{v:.1} %")).unwrap_or_else(|| "n/a".into());
        format!("TTFT {}, TPOT {}, E2E {}", p(m.ttft), p(m.tpot), p(m.e2e))
    };
    let (fit, held) = r.split_medians();
    println!("{label}: {} of {} covered, loss on the fitted rows {:.4}", r.covered, r.total, loss(r, weights));
    println!("  all:      {}", f(r.median_abs_err_pct));
    println!("  fitted:   {}", f(fit));
    println!("  held out: {}", f(held));
}

/// The files the fit reads, each with its text, its folder (for paths
/// inside it) and its rows' weights in the loss.
struct Files(Vec<(String, String, PathBuf, Vec<f64>)>);

impl Files {
    fn read(paths: Vec<String>) -> Files {
        Files(
            paths
                .into_iter()
                .map(|path| match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let base = Path::new(&path).parent().map(Path::to_path_buf).unwrap_or_default();
                        let weights = publisher_weights(&text, &path);
                        (path, text, base, weights)
                    }
                    Err(e) => {
                        eprintln!("cannot read {path}: {e}");
                        std::process::exit(1);
                    }
                })
                .collect(),
        )
    }

    fn run(&self, cat: &Catalog) -> Vec<LoadReport> {
        self.0.iter().map(|(_, text, base, _)| run(cat, text, base)).collect()
    }

    /// The fitted rows' loss over every file.
    fn loss(&self, cat: &Catalog) -> f64 {
        self.total_loss(&self.run(cat))
    }

    /// The fitted rows' loss over every file's report, each weighed with
    /// its file's row weights.
    fn total_loss(&self, reports: &[LoadReport]) -> f64 {
        reports.iter().zip(&self.0).map(|(r, (.., w))| loss(r, w)).sum()
    }

    /// Reports every file (with its rows when `rows`); returns the loss,
    /// so the figures need not be validated again to start the fit.
    fn show(&self, label: &str, cat: &Catalog, rows: bool) -> f64 {
        let reports = self.run(cat);
        for ((path, .., weights), r) in self.0.iter().zip(&reports) {
            show(&format!("{label}, {path}"), r, weights);
            if rows {
                print!("{}", r.to_text());
            }
        }
        self.total_loss(&reports)
    }
}

fn main() {
    let mut paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        paths = DEFAULT_FILES.iter().map(|p| p.to_string()).collect();
    }
    let files = Files::read(paths);
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
        match (Figure::parse(field), v.parse::<f64>()) {
            (Some(f), Ok(v)) => f.set(&mut cat, &engine, v),
            _ => {
                eprintln!("FIT_SET: cannot set {field} to {v}");
                std::process::exit(2);
            }
        }
    }
    if sweeps == 0 {
        files.show("shipped catalog", &cat, true);
        return;
    }
    let mut best = files.show("shipped catalog", &cat, false);
    // FIT_ONLY=frontend_ms,ampere-hbm.bw_eff fits exactly those figures.
    let only = std::env::var("FIT_ONLY").unwrap_or_default();
    let names: Vec<&str> = if only.is_empty() { DEFAULT_FIELDS.to_vec() } else { only.split(',').collect() };
    let mut fields = Vec::new();
    for name in names {
        let Some(f) = Figure::parse(name) else {
            eprintln!(
                "unknown figure {name}: step_floor_us, frontend_ms, frontend_token_us, frontend_prompt_token_us, layer_overhead_us, decode_layer_overhead_us, expert_routing_zipf, FAMILY.bw_eff, FAMILY.compute_eff"
            );
            std::process::exit(2);
        };
        fields.push(f);
    }
    let mut step = 0.5;
    for _ in 0..sweeps {
        let mut improved = false;
        for field in &fields {
            let (lo, hi) = field.bounds();
            let v0 = field.get(&cat, &engine);
            let mut tries = vec![if v0 == 0.0 { field.seed() } else { v0 * (1.0 + step) }, v0 / (1.0 + step)];
            if v0 > 0.0 {
                tries.push(0.0);
            }
            for v in tries {
                field.set(&mut cat, &engine, v.clamp(lo, hi));
                let l = files.loss(&cat);
                if l + 1e-9 < best {
                    best = l;
                    improved = true;
                    break;
                }
                field.set(&mut cat, &engine, v0);
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
        // The routing skew is the catalog's (models.toml), not the engine's.
        let owner = if matches!(field, Figure::ExpertRoutingZipf) { "models.toml" } else { engine.as_str() };
        println!("{owner}.{} = {:.3}", field.name(), field.get(&cat, &engine));
    }
    files.show("fitted", &cat, true);
}
