//! `fleetbench import`: results published by other tools, stored as runs so
//! they can be listed, compared and reported next to fleetbench's own.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use fleetbench_core::units::rfc3339;
use fleetbench_core::{RunConfig, RunMetrics, RunStatus, Slo};
use fleetbench_load::measure::{FigureKeys, RunSummary};
use fleetbench_report::local_llm_bench;
use fleetbench_store::Store;

use crate::context::Context;
use crate::{outln, provenance};

#[derive(Args, Debug)]
#[command(after_help = "Example:
  fleetbench import local-llm-bench results/part2.csv --model qwen3-coder-30b-a3b-awq")]
pub struct ImportArgs {
    #[command(subcommand)]
    pub command: ImportCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// A CSV in the Local LLM Bench columns (as `sweep --preset local-llm-bench --csv-out` writes).
    LocalLlmBench {
        file: PathBuf,
        /// Model name to store with the runs.
        #[arg(long, default_value = "imported")]
        model: String,
    },
}

pub async fn run(args: ImportArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let ImportCommand::LocalLlmBench { file, model } = args.command;
    let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    let rows = local_llm_bench::read(f).with_context(|| format!("reading {}", file.display()))?;
    anyhow::ensure!(!rows.is_empty(), "{} holds no rows", file.display());
    let store = Store::connect(&ctx.db)?;
    let group = format!("import-{}-{}", rfc3339(std::time::SystemTime::now()), std::process::id());
    let mut keys: Vec<(u32, u32)> = rows.iter().map(|r| (r.concurrency, r.run)).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut ids = Vec::new();
    for (concurrency, run) in keys {
        let part: Vec<&local_llm_bench::BenchRow> =
            rows.iter().filter(|r| r.concurrency == concurrency && r.run == run).collect();
        let wall = part[0].run_wall_seconds;
        let records = local_llm_bench::records_from_rows(&part);
        let now = rfc3339(std::time::SystemTime::now());
        let config = RunConfig {
            concurrency: Some(concurrency),
            run: Some(run),
            run_wall_seconds: Some(wall),
            imported_from: Some(file.display().to_string()),
            source: Some("local-llm-bench".into()),
            ..RunConfig::default()
        };
        let mut meta = provenance::run_meta(&format!("local-llm-bench:{}", file.display()), &model, "chat");
        meta.host = "imported".into();
        meta.workload = "local-llm-bench".into();
        meta.schedule = format!("concurrency {concurrency} (imported, run {run})");
        meta.config = serde_json::to_value(&config)?;
        meta.group = Some(group.clone());
        let id = store.create_run(&meta)?;
        let mut store_w = Store::connect(&ctx.db)?;
        store_w.insert_records(id, &records)?;
        let metrics = RunMetrics::compute(&records, &Slo::default(), None);
        let summary = serde_json::to_value(RunSummary::new(&metrics, FigureKeys::default()))?;
        store.finish_run(id, RunStatus::Completed, &now, Some(&summary))?;
        ids.push(id);
    }
    outln!(
        "imported {} rows from {} as {} runs ({}) in {}",
        rows.len(),
        file.display(),
        ids.len(),
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
        ctx.db
    );
    Ok(ExitCode::SUCCESS)
}
