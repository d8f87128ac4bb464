//! `fleetbench sim replay`: a workload played on a simulated deployment with
//! no HTTP. It takes exactly the workload, arrival and stop arguments of
//! `fleetbench run` (the same groups from `crate::args`) and the deployment
//! arguments of `sim predict`, calls `fleetbench_sim::replay::replay` and
//! prints per-stage figures or `--json`.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use fleetbench_report::export::JsonDoc;
use fleetbench_report::Format;
use fleetbench_sim::replay::{replay, ReplayPlan};
use fleetbench_sim::{Catalog, Deployment};

use crate::args::{DeploymentArgs, SamplingArgs, TrafficArgs};
use crate::context::Context;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  # shared system prompts in two Poisson stages on an H100 (prefix caching on, as in vLLM)
  fleetbench sim replay --gpu h100-sxm --model llama-3.1-8b --quant fp8 \\
      --workload shared-prefix:groups=4,users=16,system=2000,question=100,output=50 \\
      --arrivals poisson:5/s*60s,15/s*60s

  # a BurstGPT trace, as JSON
  fleetbench sim replay --arrivals trace:burstgpt:BurstGPT_1.csv --json

  # eight agents in a closed loop, the coding swarm, 400 requests
  fleetbench sim replay -c 8 -n 400 --workload coding-swarm")]
pub struct ReplayArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print the report as JSON: {"stages": [...], "overall": {...}, ...}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ReplayArgs, catalog: Option<&Path>, _ctx: &Context) -> anyhow::Result<ExitCode> {
    let catalog = match catalog {
        Some(d) => Catalog::with_overrides(d)?,
        None => Catalog::embedded()?,
    };
    let deployment = Deployment::resolve(&catalog, &args.deployment.spec()?)?;
    let t = args.traffic.resolve(&args.sampling, args.sampling.seed)?;
    if t.ramp.is_some_and(|r| r.kind == fleetbench_workload::RampKind::Concurrency) {
        anyhow::bail!(
            "sim replay runs rate ramps (--ramp rate:...) but not concurrency ramps yet: use --concurrency N"
        );
    }
    let plan = ReplayPlan {
        schedule: t.schedule,
        arrivals: t.traffic.arrivals,
        requests: t.requests,
        duration_s: t.duration.map(|d| d.as_secs_f64()),
        warmup: args.traffic.warmup,
        sampling: args.sampling.sampling(),
        seed: args.sampling.seed,
        prefix_caching: deployment.prefix_caching,
    };
    plan.check_size().map_err(anyhow::Error::msg)?;
    let report = replay(deployment, &plan, t.traffic.workload.as_ref());
    if args.json {
        crate::output::emit_doc(&JsonDoc("a replay", &report), Format::Json)?;
    } else {
        crate::output::emit(&report.to_text());
    }
    Ok(ExitCode::SUCCESS)
}
