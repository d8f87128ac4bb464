//! `fleetbench aiops ... --mode investigate`: episodes that start from an
//! alert and are investigated through tools. The library does the work
//! (`fleetbench_aiops::investigate::bench`); this module wires and prints.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _};
use fleetbench_aiops::backends::{parse_backends_arg, BackendSpec};
use fleetbench_aiops::investigate::arena::{run_investigate, InvestigateConfig};
use fleetbench_aiops::investigate::baselines::BUILTIN;
use fleetbench_aiops::investigate::bench;
use fleetbench_aiops::investigate::world::World;
use fleetbench_aiops::investigate::{Budget, EpisodeTools, Toolset};
use fleetbench_load::interrupt::Interrupt;
use fleetbench_report::export::JsonDoc;
use fleetbench_report::{render, Format};
use indicatif::{MultiProgress, ProgressDrawTarget};

use super::bars::Bars;
use super::run::RunArgs;
use crate::context::Context;
use crate::outln;
use crate::output::{emit, write_file, EXIT_INTERRUPTED};

/// True for `investigate`, false for `triage`.
pub(super) fn mode(m: &str) -> anyhow::Result<bool> {
    match m {
        "investigate" => Ok(true),
        "triage" => Ok(false),
        other => bail!("unknown --mode '{other}' (triage or investigate)"),
    }
}

/// Prints what an operator is given for one episode: the briefing, then the
/// tools' JSON Schemas.
pub(super) fn briefing(seed: u64, episode: usize) -> anyhow::Result<ExitCode> {
    let tools = EpisodeTools::new(World::generate(seed, episode));
    outln!("{}\n\ntools:\n{}", tools.briefing(), serde_json::to_string_pretty(&tools.specs())?);
    Ok(ExitCode::SUCCESS)
}

pub(super) fn generate(episodes: usize, seed: u64, out: &Path) -> anyhow::Result<ExitCode> {
    outln!("{}", bench::generate(out, episodes, seed)?);
    Ok(ExitCode::SUCCESS)
}

/// `aiops run --mode investigate`: built-in and HTTP backends investigate
/// every episode through its tools; the run is stored.
pub(super) async fn run(a: &RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let cfg = InvestigateConfig {
        backends: backends(&a.backends)?,
        episodes: a.episodes,
        seed: a.seed,
        budget: Budget {
            tool_calls: a.budget.budget_tool_calls,
            tokens: a.budget.budget_tokens,
            deadline: a.budget.deadline,
        },
        timeout: Duration::from_secs(a.timeout),
        prices: a.prices.clone(),
        metrics: None,
        promql: a.promql.resolve().context("--promql")?,
    };
    // The endpoint and the dashboard first: an address in use fails the
    // command before anything is stored.
    let exporter = a.metrics.start().await?;
    let dash = a.dashboard.start(ctx).await?;
    let cfg = InvestigateConfig { metrics: exporter.as_ref().map(|(m, _)| m.clone()), ..cfg };
    if let Some((_, server)) = &exporter {
        eprintln!("live figures at http://{}/metrics", server.addr());
    }
    let multi =
        if ctx.quiet { MultiProgress::with_draw_target(ProgressDrawTarget::hidden()) } else { MultiProgress::new() };
    let bars = Bars { multi, quiet: ctx.quiet, bars: Mutex::default() };
    let interrupt = Interrupt::watch(|| eprintln!("\ninterrupted: no new episode starts; those in flight finish"));
    let meta = crate::provenance::run_meta("", "", "");
    let live = dash.as_ref().map(|d| d.bus());
    let outcome = run_investigate(&cfg, &ctx.db, meta, live, &bars, interrupt.receiver()).await;
    drop(interrupt);
    crate::live::close(dash).await;
    let o = outcome.context("investigate mode")?;
    emit(&o.run.render());
    outln!("stored as run {} in {}; see it with `fleetbench report {}`", o.run_id, ctx.db, o.run_id);
    if let Some(p) = &a.json_out {
        let mut doc = o.run.json_doc();
        doc["run_id"] = o.run_id.into();
        write_file(p, &render(&JsonDoc("an investigate-mode arena run", &doc), Format::Json)?)?;
    }
    if let Some(p) = &a.answers_out {
        write_file(p, o.run.outcomes_jsonl().as_bytes())?;
    }
    Ok(if o.interrupted { ExitCode::from(EXIT_INTERRUPTED) } else { ExitCode::SUCCESS })
}

/// `--backends` in investigate mode: a backends.toml file, or a comma list
/// of the built-in investigators.
fn backends(arg: &str) -> anyhow::Result<Vec<BackendSpec>> {
    if arg.ends_with(".toml") || Path::new(arg).is_file() {
        return Ok(parse_backends_arg(arg)?);
    }
    let names: Vec<&str> = arg.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if names.is_empty() {
        bail!("no backends given");
    }
    let mut seen = std::collections::BTreeSet::new();
    names
        .into_iter()
        .map(|n| {
            if !BUILTIN.contains(&n) {
                bail!(
                    "'{n}' is not a built-in investigator ({}); HTTP backends go in a backends.toml",
                    BUILTIN.join(", ")
                );
            }
            if !seen.insert(n) {
                bail!("backend '{n}' is named twice");
            }
            Ok(BackendSpec::builtin(n))
        })
        .collect()
}

/// Scores investigate-mode answers; `None` when the episodes are triage.
pub(super) fn score(episodes: &str, answers: &str, json: bool) -> anyhow::Result<Option<ExitCode>> {
    let Some((board, outcomes)) = bench::score_answers(episodes, answers)? else { return Ok(None) };
    if json {
        outln!("{}", serde_json::to_string_pretty(&serde_json::json!({"board": board, "episodes": outcomes}))?);
    } else {
        outln!(
            "answers: mean score {:.1} [{:.1}, {:.1}] over {} episodes; single-fault {:.1}, beyond-runbook {:.1}",
            board.mean_score,
            board.ci95[0],
            board.ci95[1],
            board.n,
            board.single_fault_score,
            board.beyond_runbook_score
        );
    }
    Ok(Some(ExitCode::SUCCESS))
}
