//! `fleetbench compare`: is run B different from run A? For each per-request
//! figure, a Mann-Whitney U test with its effect size; for throughputs, the
//! 95 % intervals.

use std::process::ExitCode;

use clap::Args;
use fleetbench_core::stats::{self, mann_whitney};
use fleetbench_core::RequestRecord;
use fleetbench_store::Store;
use serde_json::json;

use crate::cmd::runs::load;
use crate::context::Context;

#[derive(Args, Debug)]
#[command(after_help = "Example:
  fleetbench compare 12 15          # run 15 against run 12
  fleetbench compare 12 15 --json")]
pub struct CompareArgs {
    /// The baseline run.
    pub a: i64,
    /// The run compared with it.
    pub b: i64,
    /// Significance level for the verdicts.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    #[arg(long)]
    pub json: bool,
}

type Extract = fn(&RequestRecord) -> Option<f64>;

const FIGURES: [(&str, Extract, bool); 6] = [
    ("ttft_ms", |r| r.ttft().map(|x| x * 1000.0), false),
    ("tpot_ms", |r| r.tpot().map(|x| x * 1000.0), false),
    ("itl_ms (per-request mean)", |r| stats::mean(&r.itl).map(|x| x * 1000.0), false),
    ("e2el_ms", |r| r.e2el().map(|x| x * 1000.0), false),
    ("tok_s (per request)", |r| r.tok_s(), true),
    ("task_tok_s", |r| r.task_tok_s(), true),
];

pub async fn run(args: CompareArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = Store::open(&ctx.db_path)?;
    let (ma, a_metrics, a) = load(&store, args.a)?;
    let (mb, b_metrics, b) = load(&store, args.b)?;
    let pick = |rs: &[RequestRecord], f: Extract| -> Vec<f64> {
        rs.iter().filter(|r| r.ok() && !r.warmup).filter_map(f).filter(|x| x.is_finite()).collect()
    };
    let mut rows = Vec::new();
    for (name, f, higher_better) in FIGURES {
        let (xa, xb) = (pick(&a, f), pick(&b, f));
        let (Some(med_a), Some(med_b)) = (stats::percentile(&xa, 50.0), stats::percentile(&xb, 50.0)) else {
            continue;
        };
        let (p, effect) = mann_whitney(&xb, &xa).unwrap_or((1.0, 0.5));
        let change = if med_a != 0.0 { 100.0 * (med_b / med_a - 1.0) } else { 0.0 };
        let significant = p < args.alpha;
        let better = if (med_b > med_a) == higher_better { "better" } else { "worse" };
        let verdict = if significant { better } else { "no significant difference" };
        rows.push(json!({
            "figure": name, "median_a": med_a, "median_b": med_b, "change_pct": change,
            "p_value": p, "effect_size": effect, "significant": significant, "verdict": verdict,
            "n_a": xa.len(), "n_b": xb.len(),
        }));
    }
    let thr = |m: &fleetbench_core::RunMetrics| json!({"value": m.output_throughput, "ci95": m.ci("output_throughput").map(|i| [i.lo, i.hi])});
    let overlap = match (a_metrics.ci("output_throughput"), b_metrics.ci("output_throughput")) {
        (Some(x), Some(y)) => Some(x.lo <= y.hi && y.lo <= x.hi),
        _ => None,
    };
    if args.json {
        let doc = json!({
            "a": {"run_id": ma.id, "model": ma.model, "output_throughput": thr(&a_metrics)},
            "b": {"run_id": mb.id, "model": mb.model, "output_throughput": thr(&b_metrics)},
            "throughput_intervals_overlap": overlap,
            "figures": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("A = run {} ({} @ {}, {})", ma.id, ma.model, ma.backend_url, ma.schedule);
    println!("B = run {} ({} @ {}, {})\n", mb.id, mb.model, mb.backend_url, mb.schedule);
    println!(
        "{:<26} {:>10} {:>10} {:>8} {:>9} {:>7}  verdict (Mann-Whitney, α = {})",
        "figure (median)", "A", "B", "change", "p", "effect", args.alpha
    );
    for r in &rows {
        println!(
            "{:<26} {:>10.2} {:>10.2} {:>7.1}% {:>9.2e} {:>7.2}  {}",
            r["figure"].as_str().unwrap_or(""),
            r["median_a"].as_f64().unwrap_or(f64::NAN),
            r["median_b"].as_f64().unwrap_or(f64::NAN),
            r["change_pct"].as_f64().unwrap_or(f64::NAN),
            r["p_value"].as_f64().unwrap_or(f64::NAN),
            r["effect_size"].as_f64().unwrap_or(f64::NAN),
            r["verdict"].as_str().unwrap_or("")
        );
    }
    let show = |m: &fleetbench_core::RunMetrics| match m.ci("output_throughput") {
        Some(i) => format!("{:.1} [{:.1}, {:.1}]", m.output_throughput, i.lo, i.hi),
        None => format!("{:.1}", m.output_throughput),
    };
    println!(
        "\noutput tok/s: A {} vs B {}: {}",
        show(&a_metrics),
        show(&b_metrics),
        match overlap {
            Some(true) => "intervals overlap (no clear difference)",
            Some(false) => "intervals do not overlap (different)",
            None => "too few requests for intervals",
        }
    );
    println!("effect size = P(B > A) for a random pair of requests (0.5 = no difference)");
    Ok(ExitCode::SUCCESS)
}
