//! `fleetbench aiops ... --mode investigate`: episodes that start from an
//! alert and are investigated through tools. The library does the work
//! (`fleetbench_aiops::investigate::bench`); this module wires and prints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use fleetbench_aiops::investigate::bench::{self, DEFAULT_BUDGET};
use fleetbench_aiops::investigate::world::World;
use fleetbench_aiops::investigate::{EpisodeTools, Toolset};
use fleetbench_report::export::JsonDoc;
use fleetbench_report::{render, Format};

use crate::outln;
use crate::output::{emit, write_file};

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

pub(super) fn run(
    backends: &str,
    episodes: usize,
    seed: u64,
    json_out: Option<&Path>,
    answers_out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = backends.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let run = bench::run_builtins(&names, episodes, seed, &DEFAULT_BUDGET).context("investigate mode")?;
    emit(&run.render());
    if let Some(p) = json_out {
        write_file(p, &render(&JsonDoc("an investigate-mode arena run", &run.json_doc()), Format::Json)?)?;
    }
    if let Some(p) = answers_out {
        write_file(p, run.outcomes_jsonl().as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
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
