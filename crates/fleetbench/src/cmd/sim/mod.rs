//! `fleetbench sim`: the inference simulator's command line (predict, list,
//! validate, serve). The work happens in `fleetbench-sim`; this only wires.

mod replay;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use fleetbench_report::export::JsonDoc;
use fleetbench_report::Format;
use fleetbench_sim::listing::Part;
use fleetbench_sim::server::{start_server, SimServerConfig};
use fleetbench_sim::underload;
use fleetbench_sim::{Catalog, Deployment, Workload};

use crate::args::DeploymentArgs;

use crate::context::Context;

/// Prints a command's output (see `crate::output::emit`).
fn emit(out: &str) -> anyhow::Result<ExitCode> {
    crate::output::emit(out);
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  fleetbench sim replay --gpu h100-sxm --model llama-3.1-8b --quant fp8 --workload shared-prefix:groups=4,users=16,system=2000,question=100,output=50 --arrivals poisson:5/s*60s,15/s*60s\n  fleetbench sim predict --gpu rtx3090 --model qwen3-coder-30b-a3b --quant awq4 --engine vllm --concurrency 1,2,4,8\n  fleetbench sim list gpus\n  fleetbench sim validate data/calibration/calibration.csv\n  fleetbench sim serve --port 8000 --model qwen3-coder-30b-a3b --time-scale 10"
)]
pub struct SimArgs {
    /// Directory whose gpus.toml, models.toml, quants.toml, engines.toml or
    /// interconnects.toml replace the built-in catalogs.
    #[arg(long, global = true, value_name = "DIR")]
    pub catalog: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SimCommand,
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Predict speed per concurrency level from the performance model.
    Predict(PredictArgs),
    /// List a catalog.
    List(ListArgs),
    /// Compare the model with measured rows: single-number rows
    /// (data/calibration/calibration.csv's columns) or runs under load
    /// (data/calibration/under-load.csv's columns), replayed.
    Validate(ValidateArgs),
    /// Serve the OpenAI API from a simulated deployment.
    Serve(ServeArgs),
    /// Replay a workload on a simulated deployment without HTTP: per-stage
    /// TTFT, TPOT, ITL, E2EL, throughput, queue and KV-cache figures.
    Replay(replay::ReplayArgs),
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// Concurrency levels, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub concurrency: Vec<u32>,
    /// Prompt tokens per request.
    #[arg(long, default_value_t = 300)]
    pub input: u32,
    /// Output tokens per request.
    #[arg(long, default_value_t = 2500)]
    pub output: u32,
    /// Print JSON: {"levels": [...]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ListWhat {
    Gpus,
    Models,
    Quants,
    Engines,
    Interconnects,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(value_enum)]
    pub what: ListWhat,
    /// Print the catalog entries as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// CSV with the columns of data/calibration/calibration.csv or of
    /// data/calibration/under-load.csv (told apart by the header).
    pub file: PathBuf,
    /// Print JSON: {"rows", "median_abs_error_pct", "worst_abs_error_pct", "skipped"} for single-number
    /// rows; {"rows": [{"id", "ttft_err_pct", "tpot_err_pct", "e2e_err_pct", "skipped"}],
    /// "median_abs_err_pct": {"ttft", "tpot", "e2e"}, "covered", "total"} for rows under load.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// TCP port (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Run this many times faster than the modelled hardware. /metrics keeps
    /// model time; clients see wall time (model time / scale).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Seed for output lengths (requests without max_tokens) and filler text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Model name reported by /v1/models (default: the catalog id).
    #[arg(long)]
    pub served_model_name: Option<String>,
}

fn load_catalog(dir: &Option<PathBuf>) -> anyhow::Result<Catalog> {
    Ok(match dir {
        Some(d) => Catalog::with_overrides(d)?,
        None => Catalog::embedded()?,
    })
}

pub async fn run(args: SimArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let catalog = || load_catalog(&args.catalog);
    match args.command {
        SimCommand::Predict(a) => predict(&catalog()?, a),
        SimCommand::List(a) => list(&catalog()?, a),
        SimCommand::Validate(a) => validate(&catalog()?, a),
        SimCommand::Serve(a) => serve(&catalog()?, a).await,
        SimCommand::Replay(a) => replay::run(a, args.catalog.as_deref(), ctx),
    }
}

fn predict(catalog: &Catalog, a: PredictArgs) -> anyhow::Result<ExitCode> {
    if a.concurrency.is_empty() || a.concurrency.contains(&0) {
        anyhow::bail!("--concurrency takes positive integers, e.g. --concurrency 1,2,4,8");
    }
    if a.input == 0 || a.output == 0 {
        anyhow::bail!("--input and --output take at least 1 token each");
    }
    let d = Deployment::resolve(catalog, &a.deployment.spec()?)?;
    if !d.model.fits_context(a.input, a.output) {
        anyhow::bail!(
            "--input {} and --output {} exceed {}'s context of {} tokens: the server would refuse every request",
            a.input,
            a.output,
            d.model.name,
            d.model.max_context
        );
    }
    let p = fleetbench_sim::predict(&d, Workload { input_tokens: a.input, output_tokens: a.output }, &a.concurrency);
    if a.json {
        crate::output::emit_doc(
            &fleetbench_report::export::JsonDoc("a prediction", &p),
            fleetbench_report::Format::Json,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    emit(&fleetbench_sim::listing::prediction_text(&d, &p, a.input, a.output))
}

fn list(catalog: &Catalog, a: ListArgs) -> anyhow::Result<ExitCode> {
    let part = match a.what {
        ListWhat::Gpus => Part::Gpus,
        ListWhat::Models => Part::Models,
        ListWhat::Quants => Part::Quants,
        ListWhat::Engines => Part::Engines,
        ListWhat::Interconnects => Part::Interconnects,
    };
    if a.json {
        return emit(&format!("{}\n", serde_json::to_string_pretty(&catalog.part_json(part)?)?));
    }
    emit(&catalog.table(part).text())
}

fn validate(catalog: &Catalog, a: ValidateArgs) -> anyhow::Result<ExitCode> {
    let report = underload::validate_path(catalog, &a.file)?;
    if let underload::Validation::UnderLoad(r) = &report {
        let malformed = r.rows.iter().filter(|r| r.malformed).count();
        if malformed > 0 {
            eprintln!(
                "warning: {malformed} of {} rows have a malformed cell and were skipped (each says where and why)",
                r.total
            );
        }
        let alone = r.rows.iter().filter(|r| r.turns_alone).count();
        if alone > 0 {
            eprintln!(
                "note: {alone} of {} rows are multi-turn shared-prefix runs, replayed with each turn sent alone \
                 (system prompt and question) as inference-perf sent them in the published runs; a row whose turns \
                 carried their history says multi_turn_history=carried (docs/SIMULATOR.md, \"How a row is replayed\")",
                r.total
            );
        }
        // What placing the deployments assumed (a GPU named without its
        // variant), each once with how many rows it applies to.
        let mut assumptions: Vec<(&str, usize)> = Vec::new();
        for note in r.rows.iter().flat_map(|r| &r.assumptions) {
            match assumptions.iter_mut().find(|(n, _)| *n == note.as_str()) {
                Some((_, k)) => *k += 1,
                None => assumptions.push((note, 1)),
            }
        }
        for (note, k) in assumptions {
            eprintln!("note: {k} of {} rows: {note}", r.total);
        }
        let assumed = r.rows.iter().filter(|r| r.defaults_assumed).count();
        if assumed > 0 {
            eprintln!(
                "note: {assumed} of {} rows name vLLM without its version and leave async_scheduling or \
                 cudagraph_mode empty: replayed with vLLM's defaults where they say nothing (async scheduling \
                 since 0.14.0, decode steps as one CUDA graph since 0.11.0); a run of an earlier vLLM says \
                 async_scheduling=false, cudagraph_mode=piecewise (0.8 to 0.10) or names the version \
                 (vllm 0.10.1, vllm/vllm-openai:v0.10.1)",
                r.total
            );
        }
    }
    if a.json {
        crate::output::emit_doc(&JsonDoc("a validation", &report), Format::Json)?;
        return Ok(ExitCode::SUCCESS);
    }
    emit(&report.to_text())
}

async fn serve(catalog: &Catalog, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let d = Deployment::resolve(catalog, &a.deployment.spec()?)?;
    let mut cfg = SimServerConfig::new(d);
    cfg.time_scale = a.time_scale;
    cfg.seed = a.seed;
    if let Some(name) = a.served_model_name {
        cfg.served_model_name = name;
    }
    let summary = format!(
        "{} x {} serving {} ({}, {})",
        cfg.deployment.count,
        cfg.deployment.gpu.name,
        cfg.served_model_name,
        cfg.deployment.quant.id,
        cfg.deployment.engine.name
    );
    let handle = start_server(cfg, SocketAddr::new(a.host, a.port)).await?;
    eprintln!("{summary}");
    eprintln!(
        "OpenAI API at {} (time scale {}; /metrics in model seconds, clients see model time / {}); Ctrl-C stops",
        handle.base_url(),
        a.time_scale,
        a.time_scale
    );
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
