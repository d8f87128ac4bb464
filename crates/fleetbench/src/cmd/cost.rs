//! `fleetbench cost`: the batch-job planner (`cost plan`) and the built-in
//! price presets (`cost presets`); the arithmetic lives in fleetbench-econ.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use fleetbench_econ::price::PRESET_SHEET_TOML;
use fleetbench_econ::{plan_batch_job, BatchJob, PriceKind, PriceSheet, Throughput, ThroughputInput};

use crate::context::Context;

#[derive(clap::Args, Debug)]
pub struct CostArgs {
    #[command(subcommand)]
    pub command: CostCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CostCommand {
    /// Price a batch job on every backend of a price sheet: total cost, wall
    /// clock, multiplier against the cheapest, ranked.
    #[command(after_help = "Examples:\n  \
fleetbench cost plan --docs 1000000 --input-tokens 3500 --output-tokens 60 --backends data/prices/contextual-retrieval-example.toml\n  \
fleetbench cost plan --docs 50000 --input-tokens 2000 --output-tokens 300 --backends prices.toml --throughput-from my-h100=42 --md\n  \
fleetbench cost plan --docs 1000000 --input-tokens 3500 --output-tokens 60 --backends data/prices/contextual-retrieval-example.toml --store")]
    Plan(PlanArgs),
    /// Print the built-in, dated preset price sheet (copy it, edit it, pass it with --backends).
    Presets,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// Documents in the job.
    #[arg(long, value_name = "N")]
    pub docs: u64,
    /// Mean input tokens per document (prompt, cached part included).
    #[arg(long, value_name = "TOKENS")]
    pub input_tokens: f64,
    /// Of the input tokens, how many per document an API serves from its cache.
    #[arg(long, value_name = "TOKENS", default_value_t = 0.0)]
    pub cached_input_tokens: f64,
    /// Mean output tokens per document.
    #[arg(long, value_name = "TOKENS")]
    pub output_tokens: f64,
    /// Price sheet (TOML, `[[backend]]` tables). Default: the built-in presets.
    #[arg(long, value_name = "FILE")]
    pub backends: Option<PathBuf>,
    /// Price APIs through their batch API (applies each entry's batch_discount).
    #[arg(long)]
    pub batch_api: bool,
    /// Take a self-hosted backend's throughput from a stored run's
    /// output_throughput: `BACKEND=RUN_ID`, or `RUN_ID` for every rented and
    /// owned backend. Repeatable.
    #[arg(long, value_name = "[BACKEND=]RUN_ID")]
    pub throughput_from: Vec<String>,
    /// Predict a self-hosted backend's throughput with the simulator:
    /// `BACKEND:gpu=h100,model=NAME[,count=N,quant=Q,engine=E,concurrency=C]`. Repeatable.
    #[arg(long, value_name = "BACKEND:KEY=VALUE,...")]
    pub simulate: Vec<String>,
    /// Print the JSON contract instead of the table.
    #[arg(long, conflicts_with = "md")]
    pub json: bool,
    /// Print a Markdown section instead of the table.
    #[arg(long)]
    pub md: bool,
    /// Also store the plan in the results database, so that `fleetbench
    /// report ID` draws it (cost and wall clock per backend, log scale).
    #[arg(long)]
    pub store: bool,
}

pub async fn run(args: CostArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        CostCommand::Presets => {
            crate::output::emit(PRESET_SHEET_TOML);
            Ok(ExitCode::SUCCESS)
        }
        CostCommand::Plan(a) => plan(a, ctx),
    }
}

fn plan(a: PlanArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let sheet = match &a.backends {
        Some(path) => PriceSheet::load(path)?,
        None => PriceSheet::presets()?,
    };
    let mut throughputs: BTreeMap<String, ThroughputInput> = BTreeMap::new();
    for spec in &a.throughput_from {
        for (name, tp) in throughput_from_run(spec, &sheet, ctx)? {
            throughputs.insert(name, tp);
        }
    }
    for spec in &a.simulate {
        let (name, tp) = throughput_from_sim(spec, &sheet, a.input_tokens, a.output_tokens)?;
        throughputs.insert(name, tp);
    }
    let job = BatchJob {
        docs: a.docs,
        input_tokens_per_doc: a.input_tokens,
        cached_input_tokens_per_doc: a.cached_input_tokens,
        output_tokens_per_doc: a.output_tokens,
        batch_api: a.batch_api,
    };
    let plan = plan_batch_job(&job, &sheet.backends, &sheet.origin, &throughputs)?;
    if a.json {
        crate::output::emit_doc(&plan, fleetbench_report::Format::Json)?;
    } else if a.md {
        crate::output::emit_doc(&plan, fleetbench_report::Format::Markdown)?;
    } else {
        let mut text = plan.to_text();
        if let Some(note) = &sheet.note {
            let date = sheet.as_of.as_ref().map(|d| format!(" ({d})")).unwrap_or_default();
            text.push_str(&format!("\nNote from the sheet{date}: {note}\n"));
        }
        crate::output::emit(&text);
    }
    if a.store {
        let store = fleetbench_store::Store::connect(&ctx.db)?;
        let meta = crate::provenance::run_meta(&sheet.origin, "batch-job plan", "-");
        let id = fleetbench_report::html::data::CostPlan::store(&plan, &store, meta)?;
        eprintln!("stored as run {id} in {}; `fleetbench report {id}` draws it", ctx.db);
    }
    Ok(ExitCode::SUCCESS)
}

/// Names of the rented and owned entries of a sheet.
fn self_hosted(sheet: &PriceSheet) -> Vec<String> {
    sheet.backends.iter().filter(|b| b.kind() != PriceKind::Api).map(|b| b.name.clone()).collect()
}

fn check_self_hosted(sheet: &PriceSheet, name: &str, flag: &str) -> anyhow::Result<()> {
    let entry = sheet.find(name)?;
    if entry.kind() == PriceKind::Api {
        bail!("{flag}: backend '{name}' is an API, priced per token; a throughput applies only to rented or owned backends");
    }
    Ok(())
}

/// `--throughput-from [BACKEND=]RUN_ID`: the run's `output_throughput`
/// (output tokens per second) from the results database.
fn throughput_from_run(
    spec: &str,
    sheet: &PriceSheet,
    ctx: &Context,
) -> anyhow::Result<Vec<(String, ThroughputInput)>> {
    let (names, id_text) = match spec.split_once('=') {
        Some((name, id)) => {
            check_self_hosted(sheet, name.trim(), "--throughput-from")?;
            (vec![name.trim().to_string()], id.trim())
        }
        None => (self_hosted(sheet), spec.trim()),
    };
    let id: i64 = id_text.parse().map_err(|_| {
        anyhow::anyhow!("--throughput-from '{spec}': '{id_text}' is not a run id (see `fleetbench runs list`)")
    })?;
    if names.is_empty() {
        bail!("--throughput-from {spec}: the price sheet has no rented or owned backend to apply it to");
    }
    let store = fleetbench_store::Store::connect(&ctx.db)
        .with_context(|| format!("--throughput-from {spec}: opening the results database"))?;
    let run = store.run(id)?;
    let tps = run
        .summary
        .as_ref()
        .and_then(|s| s.get("output_throughput"))
        .and_then(|v| v.as_f64())
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "run {id} has no positive output_throughput (status {}); pick a completed run with `fleetbench runs list`",
                run.meta.status.as_str()
            )
        })?;
    let source = format!("run {id}: {} on {}", run.meta.model, run.meta.backend_url);
    Ok(names
        .into_iter()
        .map(|n| (n, ThroughputInput { throughput: Throughput::OutputTokensPerS(tps), source: source.clone() }))
        .collect())
}

/// `--simulate BACKEND:gpu=...,model=...`: the simulator's aggregate output
/// tokens per second for this job's token counts.
fn throughput_from_sim(
    spec: &str,
    sheet: &PriceSheet,
    input_tokens: f64,
    output_tokens: f64,
) -> anyhow::Result<(String, ThroughputInput)> {
    let usage = "use BACKEND:gpu=NAME,model=NAME[,count=N,quant=Q,engine=E,concurrency=C], e.g. rented-b200:gpu=b200,model=llama-3.1-8b";
    let (name, rest) = spec
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("--simulate '{spec}': no backend name before ':'; {usage}"))?;
    let name = name.trim();
    check_self_hosted(sheet, name, "--simulate")?;
    let mut d = fleetbench_sim::DeploymentSpec::default();
    let (mut gpu, mut model, mut concurrency) = (None, None, 256u32);
    for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--simulate '{spec}': '{pair}' is not KEY=VALUE; {usage}"))?;
        let v = v.trim();
        let number = |what: &str| -> anyhow::Result<u32> {
            v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                anyhow::anyhow!("--simulate '{spec}': {what} must be a whole number of at least 1, not '{v}'")
            })
        };
        match k.trim() {
            "gpu" => gpu = Some(v.to_string()),
            "model" => model = Some(v.to_string()),
            "count" => d.count = number("count")?,
            "quant" => d.quant = v.to_string(),
            "engine" => d.engine = v.to_string(),
            "concurrency" => concurrency = number("concurrency")?,
            other => bail!("--simulate '{spec}': unknown key '{other}'; {usage}"),
        }
    }
    d.gpu = gpu.ok_or_else(|| {
        anyhow::anyhow!("--simulate '{spec}': gpu= is required; {usage} (see `fleetbench sim` for the catalog)")
    })?;
    d.model = model.ok_or_else(|| anyhow::anyhow!("--simulate '{spec}': model= is required; {usage}"))?;
    let catalog = fleetbench_sim::Catalog::embedded()?;
    let deployment = fleetbench_sim::Deployment::resolve(&catalog, &d)?;
    let workload = fleetbench_sim::Workload {
        input_tokens: input_tokens.round().clamp(1.0, u32::MAX as f64) as u32,
        output_tokens: output_tokens.round().clamp(1.0, u32::MAX as f64) as u32,
    };
    let level = fleetbench_sim::perf::predict_level(&deployment, workload, concurrency);
    if !(level.aggregate_tok_s.is_finite() && level.aggregate_tok_s > 0.0) {
        bail!("--simulate '{spec}': the simulator predicts no throughput for this deployment");
    }
    Ok((
        name.to_string(),
        ThroughputInput {
            throughput: Throughput::OutputTokensPerS(level.aggregate_tok_s),
            source: format!(
                "simulated: {}x {} {} {} {} at concurrency {concurrency}, modelled",
                d.count, d.gpu, d.model, d.quant, d.engine
            ),
        },
    ))
}
