//! `fleetbench run`: one measured run against one backend. Parses the
//! options into a client config and a [`RunRequest`], hands them to
//! `fleetbench_load::repeated::measure_repeated` (which stores every record
//! as it completes, once per `--repeat`), and prints each run's summary.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use fleetbench_client::Client;
use fleetbench_core::{RunConfig, RunMeta, RunStatus};
use fleetbench_load::measure::MeasureOutcome;
use fleetbench_load::repeated::{measure_repeated, RepeatedRun, RunRequest};
use fleetbench_load::shard::ShardJoin;
use fleetbench_load::{RunPlan, Schedule, StopCondition};
use fleetbench_report::export::RunExport;
use fleetbench_store::Store;
use fleetbench_workload::models::ModelMix;

use crate::args::{
    BackendArgs, DashboardArgs, InstrumentArgs, MetricsArgs, OutputArgs, ResolvedTraffic, SamplingArgs, ShardArgs,
    SloArgs, TrafficArgs,
};
use crate::context::Context;
use crate::live::Watch;
use crate::output::notes;
use crate::{outln, provenance};

mod print;
use print::{exit_code, print_figures};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  # 4 agents, 200 measured requests after 4 warm-up ones, results to JSON
  fleetbench run --url http://127.0.0.1:8000/v1 --model qwen3-coder \\
      --concurrency 4 --requests 200 --warmup 4 \\
      --workload synthetic:in=512,out=256 --json-out run.json

  # open loop: Poisson arrivals at 2 req/s for a minute, with SLOs
  fleetbench run --url http://127.0.0.1:8000/v1 --model m --rate 2 --duration 60s \\
      --slo-ttft 500 --slo-tpot 50

  # shared system prompts, arrivals in two stages (the same strings work in `sim replay`)
  fleetbench run --url http://127.0.0.1:8000/v1 --model m \\
      --workload shared-prefix:groups=4,users=16,system=2000,question=100,output=50 \\
      --arrivals poisson:5/s*60s,15/s*60s

  # an API model, key from a file, replaying your own prompts
  fleetbench run --url https://api.anthropic.com/v1 --api anthropic --model claude-x \\
      --api-key-file ~/.anthropic-key --workload file:prompts.jsonl --concurrency 2

  # shard 2 of 4 of one run (on four hosts, or under Slurm/Kubernetes): 64 agents in all
  fleetbench run --url http://10.0.0.5:8000/v1 --model m -c 64 -n 4000 \\
      --shard 2/4 --run-id bench-42 --db postgres://bench@db.example:5432/results

  # tools offered with every request: time to the first tool-call token, valid arguments
  fleetbench run --url http://127.0.0.1:8000/v1 --model m --tools tools.json -n 50

  # priced and metered (NVML, else nvidia-smi, else RAPL), watched live in a browser
  fleetbench run --url http://127.0.0.1:8000/v1 --model m -c 8 -n 400 \\
      --price rented-1x-h100-sxm --meter auto --dashboard

Exit status: 0 run completed, 2 could not run (bad arguments, server unreachable),
3 error rate above --max-error-rate, 130 interrupted (results so far are kept).")]
pub struct RunArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub slo: SloArgs,
    /// Exit with status 3 when more than this fraction of requests failed (e.g. 0.05).
    #[arg(long, value_name = "FRACTION", help_heading = "Output")]
    pub max_error_rate: Option<f64>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Open no connections before the clock starts: the first requests then
    /// connect while measured, and their time to first token includes TCP's
    /// handshake (by default the connections the run keeps busy are opened
    /// first, as a client with a warm pool has them; the run's config says
    /// how many as `preconnect`).
    #[arg(long, help_heading = "Schedule")]
    pub no_preconnect: bool,
    /// Keep every generated text in the results database.
    #[arg(long, help_heading = "Output")]
    pub keep_text: bool,
    /// Measure the run N times (run r seeded with --seed + 1000·r, so prefix caches
    /// cannot serve one from another) and report the spread between them.
    #[arg(long, value_name = "N", default_value_t = 1, help_heading = "Schedule")]
    pub repeat: u32,
    /// Offer these tools with every request: a JSON file holding an
    /// OpenAI-style tools array (converted for --api anthropic). The summary
    /// then reports the time to the first tool-call token and the share of
    /// responses whose tool-call arguments parse as JSON.
    #[arg(long, value_name = "FILE", help_heading = "Requests")]
    pub tools: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub instruments: InstrumentArgs,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
    #[command(flatten)]
    pub sharding: ShardArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

impl RunArgs {
    /// The run as the driver takes it: `t` is the traffic resolved with
    /// `--seed`, `meta` the run row's provenance and backend.
    fn request(&self, t: &ResolvedTraffic, models: ModelMix, shard: Option<ShardJoin>, meta: RunMeta) -> RunRequest {
        let mut config = RunConfig {
            api: Some(self.backend.api),
            stream: Some(!self.backend.no_stream),
            requests: t.requests,
            duration_s: t.duration.map(|d| d.as_secs_f64()),
            ramp: t.ramp.map(|r| r.describe()),
            warmup: Some(self.traffic.warmup),
            seed: Some(self.sampling.seed),
            max_tokens: self.sampling.max_tokens,
            temperature: self.sampling.temperature,
            ignore_eos: Some(self.sampling.ignore_eos),
            slo: Some(self.slo.slo()),
            ..RunConfig::default()
        };
        match t.schedule {
            Schedule::Closed { concurrency } => {
                config.concurrency = Some(concurrency);
                config.max_concurrency = Some(concurrency);
            }
            Schedule::Open { rate, max_concurrency, .. } => {
                config.request_rate = Some(rate);
                config.burstiness = Some(self.traffic.burstiness);
                config.max_concurrency = max_concurrency;
                config.arrivals = t.arrivals.clone();
            }
        }
        RunRequest {
            plan: RunPlan {
                schedule: t.schedule,
                stop: StopCondition { requests: t.requests, duration: t.duration },
                warmup: self.traffic.warmup,
                sampling: self.sampling.sampling(),
                seed: self.sampling.seed,
                arrivals: None,
                ramp: t.ramp,
                shard: None,
            },
            workload: t.workload.clone(),
            workload_given: t.workload_given,
            arrivals: t.arrival_spec.clone(),
            models,
            repeat: self.repeat,
            shard,
            meta,
            config,
            slo: self.slo.slo(),
            max_error_rate: self.max_error_rate,
            // The per-request arrays and rows need every record; without
            // them memory stays flat however long the run.
            keep_records: self.output.json_out.is_some() || self.output.csv_out.is_some(),
            preconnect: !self.no_preconnect,
        }
    }
}

pub async fn run(args: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if let Some(f) = args.max_error_rate {
        if !(0.0..=1.0).contains(&f) {
            bail!("--max-error-rate is a fraction between 0 and 1 (0.05 = 5 %)");
        }
    }
    if args.repeat == 0 {
        bail!("--repeat is at least 1");
    }
    if args.repeat > 1 && args.sharding.run_id.is_some() {
        bail!("--repeat and --shard do not go together: repeat a sharded run by running it again with a new --run-id");
    }
    // Bad arguments fail before the probe.
    let t = args.traffic.resolve(&args.sampling, args.sampling.seed)?;
    let models = args.backend.model_mix()?;
    let shard = args.sharding.join(&t.schedule)?;
    let mut cfg = args.backend.client_config()?;
    cfg.keep_output_text = args.keep_text;
    if let Some(path) = &args.tools {
        if cfg.api == fleetbench_core::ApiKind::Completions {
            bail!("--tools needs --api chat or anthropic: the completions API takes no tools");
        }
        cfg.tools = Some(Arc::new(fleetbench_client::tools::Tools::from_file(path)?));
    }
    let client = Client::new(cfg)?;
    client.probe(args.backend.probe_timeout()).await?;
    let request = args.request(&t, models, shard, provenance::client_meta(&client));
    let store = Store::connect(&ctx.db)?;
    let mut watch = Watch::start(&args.instruments, &args.dashboard, &args.metrics, ctx).await?;
    let mut print_run = |o: &MeasureOutcome| {
        notes("warning", &o.figures.warnings);
        outln!("{}", fleetbench_report::terminal_summary(&o.meta, &o.metrics));
        print_figures(o);
        outln!("stored as run {} in {}", o.meta.id, ctx.db);
    };
    // The first repeat sends the traffic drawn above (a trace is read once).
    let first = Some(t.traffic);
    let measured = measure_repeated(&request, first, &store, &client, watch.observers(ctx.quiet, &mut print_run)).await;
    watch.close_dashboard().await;
    let RepeatedRun { runs, repeats } = measured?;
    if let Some(r) = &repeats {
        outln!("{}", fleetbench_report::repeats_table(r));
    }
    let Some(o) = runs.last() else { bail!("no run was measured") };
    args.output.write(&RunExport {
        meta: &o.meta,
        metrics: &o.metrics,
        records: o.records.as_deref().unwrap_or_default(),
        figures: &o.figure_keys,
        repeats: repeats.as_ref(),
    })?;
    Ok(runs.iter().find(|o| o.meta.status != RunStatus::Completed).map(exit_code).unwrap_or(ExitCode::SUCCESS))
}
