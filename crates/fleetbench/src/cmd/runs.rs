//! `fleetbench runs`: list, show and export stored runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use fleetbench_core::units::format_seconds;
use fleetbench_core::{RunMetrics, Slo};
use fleetbench_store::Store;

use crate::cmd::run::write_file;
use crate::context::Context;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fleetbench runs list
  fleetbench runs show 12
  fleetbench runs export 12 --json --out run12.json
  fleetbench runs export 12 --csv > run12.csv")]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Stored runs, newest first.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 30)]
        limit: usize,
    },
    /// The summary of one run, recomputed from its stored requests.
    Show { id: i64 },
    /// A run as JSON (vLLM keys) or CSV (one row per request).
    Export {
        id: i64,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(args: RunsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if !ctx.db_path.exists() {
        bail!(
            "no results database at {} yet: run `fleetbench demo` or `fleetbench run` first, or pass --db",
            ctx.db_path.display()
        );
    }
    let store = Store::open(&ctx.db_path)?;
    match args.command {
        RunsCommand::List { limit } => list(&store, limit),
        RunsCommand::Show { id } => {
            let (meta, metrics, _) = load(&store, id)?;
            let boards = store.artifacts(id, "arena_backend")?;
            if !boards.is_empty() {
                // An arena run: its figures are the leaderboard, not requests.
                println!("run {} · {} · status {}", meta.id, meta.workload, meta.status.as_str());
                for (name, b) in &boards {
                    let ci = |k: &str| b["ci95"][k].as_f64().map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
                    println!(
                        "  {name:<20} score {:>5.1} [{}, {}] over {} episodes",
                        b["score"].as_f64().unwrap_or(f64::NAN),
                        ci("lo"),
                        ci("hi"),
                        b["episodes"].as_u64().unwrap_or(0)
                    );
                }
            } else {
                println!("{}", fleetbench_report::terminal_summary(&meta, &metrics));
            }
            println!("command: {}", meta.command_line);
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Export { id, json, csv, out } => {
            if !json && !csv {
                bail!("say which format: --json or --csv");
            }
            let (meta, metrics, records) = load(&store, id)?;
            let bytes = if json {
                let mut v = fleetbench_report::run_json(&meta, &metrics);
                if let Some(o) = v.as_object_mut() {
                    o.extend(crate::instruments::stored_keys(&store, id)?);
                }
                let mut s = serde_json::to_string_pretty(&v)?;
                s.push('\n');
                s.into_bytes()
            } else {
                let mut buf = Vec::new();
                fleetbench_report::write_requests_csv(&mut buf, &records)?;
                buf
            };
            match out {
                Some(p) => write_file(&p, &bytes)?,
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&bytes)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A stored run with its figures recomputed from its requests (so an
/// incomplete run shows what it had).
pub fn load(
    store: &Store,
    id: i64,
) -> anyhow::Result<(fleetbench_core::RunMeta, RunMetrics, Vec<fleetbench_core::RequestRecord>)> {
    let run = store.run(id)?;
    let records = store.records(id)?;
    let slo: Slo = run.meta.config.get("slo").and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default();
    let target = run.meta.config.get("concurrency").and_then(|v| v.as_u64()).map(|c| c as u32);
    let metrics = RunMetrics::compute(&records, &slo, target);
    Ok((run.meta, metrics, records))
}

fn list(store: &Store, limit: usize) -> anyhow::Result<ExitCode> {
    let runs = store.list_runs(limit)?;
    if runs.is_empty() {
        println!("no runs stored yet");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "id".to_string(),
        "started (UTC)".into(),
        "status".into(),
        "model".into(),
        "backend".into(),
        "schedule".into(),
        "requests".into(),
        "failed".into(),
        "out tok/s".into(),
        "duration".into(),
    ]];
    for r in &runs {
        let s = r.summary.as_ref();
        let get = |k: &str| s.and_then(|s| s.get(k)).and_then(|v| v.as_f64());
        rows.push([
            r.meta.id.to_string(),
            r.meta.started_at.replace('T', " ").trim_end_matches('Z').to_string(),
            r.meta.status.as_str().to_string(),
            r.meta.model.clone(),
            r.meta.backend_url.clone(),
            r.meta.schedule.clone(),
            r.request_count.to_string(),
            get("failed").map(|f| format!("{f:.0}")).unwrap_or_else(|| "-".into()),
            get("output_throughput").map(|f| format!("{f:.1}")).unwrap_or_else(|| "-".into()),
            get("duration").map(format_seconds).unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut widths = [0usize; 10];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &rows {
        let line: Vec<String> =
            r.iter().zip(widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
