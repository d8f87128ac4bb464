//! `fleetbench runs`: list, show and export stored runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use fleetbench_core::table::Table;
use fleetbench_core::units::format_seconds;
use fleetbench_load::measure::reload;
use fleetbench_load::sweep::records::SweepRecord;
use fleetbench_report::export::RunExport;
use fleetbench_report::html::data::ArenaBackend;
use fleetbench_report::{render, Format};
use fleetbench_store::{Db, Store};

use crate::context::Context;
use crate::outln;
use crate::output::{emit, write_file};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fleetbench runs list
  fleetbench runs show 12
  fleetbench runs show 12 --json        # the same keys as run --json-out
  fleetbench runs export 12 --json --out run12.json
  fleetbench runs export 12 --csv > run12.csv
  fleetbench runs show bench-42 --json      # a sharded run by its --run-id: the union, with \"shards\"
  fleetbench runs copy --from ~/.local/share/fleetbench/results.db --to postgres://bench@db:5432/results")]
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
    Show {
        /// A run id, or the --run-id a (sharded) run was started with.
        id: String,
        /// Print the figures as JSON, with the keys of `run --json-out`.
        #[arg(long)]
        json: bool,
    },
    /// A run as JSON (vLLM keys) or CSV (one row per request).
    Export {
        /// A run id, or the --run-id a (sharded) run was started with.
        id: String,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Copy runs (records, artifacts, shards) from one store to another; each gets a new id there.
    Copy {
        /// The store to read: a SQLite file or a postgres:// URL.
        #[arg(long, value_name = "PATH|URL")]
        from: String,
        /// The store to write (created if needed).
        #[arg(long, value_name = "PATH|URL")]
        to: String,
        /// Only these run ids (default: every run).
        ids: Vec<i64>,
    },
}

pub async fn run(args: RunsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        RunsCommand::List { limit } => list(&open(ctx)?, limit),
        RunsCommand::Show { id, json } => {
            let store = open(ctx)?;
            let id = store.resolve_run(&id)?;
            if json {
                export(&store, id, Format::Json, None)
            } else {
                show(&store, id)
            }
        }
        RunsCommand::Export { id, json, csv, out } => {
            let format = match (json, csv) {
                (true, _) => Format::Json,
                (_, true) => Format::Csv,
                _ => bail!("say which format: --json or --csv"),
            };
            let store = open(ctx)?;
            let id = store.resolve_run(&id)?;
            export(&store, id, format, out)
        }
        RunsCommand::Copy { from, to, ids } => copy(&from, &to, &ids),
    }
}

fn open(ctx: &Context) -> anyhow::Result<Store> {
    if !ctx.db.exists() {
        bail!("no results database at {} yet: run `fleetbench demo` or `fleetbench run` first, or pass --db", ctx.db);
    }
    Ok(Store::connect(&ctx.db)?)
}

fn export(store: &Store, id: i64, format: Format, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let s = reload(store, id)?;
    let mut bytes = render(
        &RunExport { meta: &s.meta, metrics: &s.metrics, records: &s.records, figures: &s.figures, repeats: None },
        format,
    )?;
    let shards = store.run(id)?.shards;
    if format == Format::Json && !shards.is_empty() {
        bytes = with_shards(&bytes, &shards)?;
    }
    match out {
        Some(p) => write_file(&p, &bytes)?,
        None => emit(&String::from_utf8_lossy(&bytes)),
    }
    Ok(ExitCode::SUCCESS)
}

fn show(store: &Store, id: i64) -> anyhow::Result<ExitCode> {
    let s = reload(store, id)?;
    let boards = store.get_all::<ArenaBackend>(id)?;
    if !boards.is_empty() {
        // An arena run: its figures are the leaderboard, not requests.
        outln!("run {} · {} · status {}", s.meta.id, s.meta.workload, s.meta.status.as_str());
        for (name, b) in &boards {
            let ci = |x: Option<f64>| x.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
            outln!(
                "  {name:<20} score {:>5.1} [{}, {}] over {} episodes",
                b.score,
                ci(b.ci95.map(|c| c.lo)),
                ci(b.ci95.map(|c| c.hi)),
                b.episodes.unwrap_or(0)
            );
        }
    } else {
        outln!("{}", fleetbench_report::terminal_summary(&s.meta, &s.metrics));
    }
    if let Some(sweep) = store.get_first::<SweepRecord>(id)? {
        if let Some(k) = &sweep.knee {
            outln!("sweep {}: {}", sweep.sweep.group, k.reason);
        }
    }
    outln!("command: {}", s.meta.command_line);
    for sh in store.run(id)?.shards {
        outln!("shard {} · {}", sh.describe(), sh.status.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

/// A run's JSON with `shards` (how many) and `shard_status` (each shard's
/// host, process and status) beside the figures of the union.
fn with_shards(json: &[u8], shards: &[fleetbench_store::ShardInfo]) -> anyhow::Result<Vec<u8>> {
    let mut doc: serde_json::Value = serde_json::from_slice(json)?;
    if let Some(o) = doc.as_object_mut() {
        o.insert("shards".into(), shards.len().into());
        let status = shards
            .iter()
            .map(|s| serde_json::json!({"shard": s.shard, "host": s.host, "pid": s.pid, "status": s.status.as_str()}))
            .collect();
        o.insert("shard_status".into(), serde_json::Value::Array(status));
    }
    let mut out = serde_json::to_vec_pretty(&doc)?;
    out.push(b'\n');
    Ok(out)
}

fn copy(from: &str, to: &str, ids: &[i64]) -> anyhow::Result<ExitCode> {
    let (from, to) = (Db::parse(from, None)?, Db::parse(to, None)?);
    if !from.exists() {
        bail!("no results database at {from}");
    }
    let source = Store::connect(&from)?;
    let mut target = Store::connect(&to)?;
    let report = source.copy_runs(&mut target, ids)?;
    for (old, new) in &report.runs {
        outln!("run {old} → {new}");
    }
    outln!(
        "copied {} runs ({} requests, {} artifacts) from {from} to {to}",
        report.runs.len(),
        report.records,
        report.artifacts
    );
    Ok(ExitCode::SUCCESS)
}

fn list(store: &Store, limit: usize) -> anyhow::Result<ExitCode> {
    let runs = store.list_runs(limit)?;
    if runs.is_empty() {
        outln!("no runs stored yet");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new([
        "id",
        "started (UTC)",
        "status",
        "model",
        "backend",
        "schedule",
        "requests",
        "failed",
        "out tok/s",
        "duration",
    ]);
    for r in &runs {
        let get = |k: &str| r.summary.as_ref().and_then(|s| s.get(k)).and_then(|v| v.as_f64());
        t.push([
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
    emit(&t.text());
    Ok(ExitCode::SUCCESS)
}
