//! `fleetbench compare`: is run B different from run A? The verdicts come
//! from `fleetbench_core::compare`; this module reads the runs and prints.

use std::process::ExitCode;

use clap::Args;
use fleetbench_core::compare::{compare, Throughput};
use fleetbench_load::measure::reload;
use fleetbench_store::Store;
use serde_json::json;

use crate::context::Context;
use crate::outln;

#[derive(Args, Debug)]
#[command(after_help = "Example:
  fleetbench compare 12 15          # run 15 against run 12
  fleetbench compare 12 15 --json
  fleetbench compare bench-a bench-b  # sharded runs, by their --run-id")]
pub struct CompareArgs {
    /// The baseline run: a stored id or a `--run-id`.
    pub a: String,
    /// The run compared with it: a stored id or a `--run-id`.
    pub b: String,
    /// Significance level for the verdicts.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: CompareArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&ctx.db)?;
    let a = reload(&store, store.resolve_run(&args.a)?)?;
    let b = reload(&store, store.resolve_run(&args.b)?)?;
    let c = compare(&a.records, &a.metrics, &b.records, &b.metrics, args.alpha);
    if args.json {
        let doc = json!({
            "a": {"run_id": a.meta.id, "model": a.meta.model, "output_throughput": c.throughput_a},
            "b": {"run_id": b.meta.id, "model": b.meta.model, "output_throughput": c.throughput_b},
            "throughput_intervals_overlap": c.throughput_intervals_overlap,
            "figures": c.figures,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("A = run {} ({} @ {}, {})", a.meta.id, a.meta.model, a.meta.backend_url, a.meta.schedule);
    outln!("B = run {} ({} @ {}, {})\n", b.meta.id, b.meta.model, b.meta.backend_url, b.meta.schedule);
    outln!(
        "{:<26} {:>10} {:>10} {:>8} {:>9} {:>7}  verdict (Mann-Whitney, α = {})",
        "figure (median)",
        "A",
        "B",
        "change",
        "p",
        "effect",
        args.alpha
    );
    for r in &c.figures {
        outln!(
            "{:<26} {:>10.2} {:>10.2} {:>7.1}% {:>9.2e} {:>7.2}  {}",
            r.figure,
            r.median_a,
            r.median_b,
            r.change_pct,
            r.p_value,
            r.effect_size,
            r.verdict
        );
    }
    let show = |t: &Throughput| match t.ci95 {
        Some([lo, hi]) => format!("{:.1} [{lo:.1}, {hi:.1}]", t.value),
        None => format!("{:.1}", t.value),
    };
    outln!(
        "\noutput tok/s: A {} vs B {}: {}",
        show(&c.throughput_a),
        show(&c.throughput_b),
        match c.throughput_intervals_overlap {
            Some(true) => "intervals overlap (no clear difference)",
            Some(false) => "intervals do not overlap (different)",
            None => "too few requests for intervals",
        }
    );
    outln!("effect size = P(B > A) for a random pair of requests (0.5 = no difference)");
    Ok(ExitCode::SUCCESS)
}
