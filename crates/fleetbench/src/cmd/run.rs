//! `fleetbench run`: one measured run against one backend. Parses the
//! options into a client config and a load plan, hands them to
//! `fleetbench_load::measure` (which stores every record as it completes),
//! and prints the summary.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;
use fleetbench_client::Client;
use fleetbench_core::{RunConfig, RunStatus};
use fleetbench_econ::instruments::Instruments;
use fleetbench_load::interrupt::Interrupt;
use fleetbench_load::live::LiveRunInfo;
use fleetbench_load::measure::{measure, MeasureOptions, MeasureOutcome};
use fleetbench_load::{RunPlan, Schedule, StopCondition};
use fleetbench_report::export::RunExport;
use fleetbench_store::Store;

use crate::args::{BackendArgs, DashboardArgs, InstrumentArgs, OutputArgs, SamplingArgs, SloArgs, TrafficArgs};
use crate::context::Context;
use crate::output::{notes, Bar, EXIT_ERROR_RATE, EXIT_INTERRUPTED};
use crate::{live, outln, provenance};

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
    /// Keep every generated text in the results database.
    #[arg(long, help_heading = "Output")]
    pub keep_text: bool,
    #[command(flatten)]
    pub instruments: InstrumentArgs,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
}

impl RunArgs {
    fn config(&self, schedule: Schedule, requests: Option<u64>, arrivals: Option<String>) -> RunConfig {
        let mut c = RunConfig {
            api: Some(self.backend.api),
            stream: Some(!self.backend.no_stream),
            requests,
            duration_s: self.traffic.duration.map(|d| d.as_secs_f64()),
            warmup: Some(self.traffic.warmup),
            seed: Some(self.sampling.seed),
            max_tokens: self.sampling.max_tokens,
            temperature: self.sampling.temperature,
            ignore_eos: Some(self.sampling.ignore_eos),
            slo: Some(self.slo.slo()),
            ..RunConfig::default()
        };
        match schedule {
            Schedule::Closed { concurrency } => {
                c.concurrency = Some(concurrency);
                c.max_concurrency = Some(concurrency);
            }
            Schedule::Open { rate, max_concurrency, .. } => {
                c.request_rate = Some(rate);
                c.burstiness = Some(self.traffic.burstiness);
                c.max_concurrency = max_concurrency;
                c.arrivals = arrivals;
            }
        }
        c
    }
}

pub async fn run(args: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if let Some(f) = args.max_error_rate {
        if !(0.0..=1.0).contains(&f) {
            bail!("--max-error-rate is a fraction between 0 and 1 (0.05 = 5 %)");
        }
    }
    let t = args.traffic.resolve(&args.sampling)?;
    let (schedule, requests) = (t.schedule, t.requests);
    let workload: Arc<dyn fleetbench_load::Workload> = Arc::from(t.traffic.workload);
    let mut cfg = args.backend.client_config()?;
    cfg.keep_output_text = args.keep_text;
    let client = Client::new(cfg)?;
    client.probe(args.backend.probe_timeout()).await?;
    // A simulator that runs faster than the hardware it models says so;
    // its figures are then multiplied back into modelled time.
    let time_scale = client.time_scale().unwrap_or(1.0);

    let arrivals = t.traffic.arrivals;
    let plan = RunPlan {
        schedule,
        stop: StopCondition { requests, duration: args.traffic.duration },
        warmup: args.traffic.warmup,
        sampling: args.sampling.sampling(),
        seed: args.sampling.seed,
        arrivals: arrivals.clone(),
    };
    let mut meta = provenance::client_meta(&client);
    meta.workload = workload.describe();
    meta.schedule = match &arrivals {
        Some(a) => format!("open loop, arrivals {}", a.describe()),
        None => schedule.describe(),
    };
    let config = RunConfig {
        time_scale: (time_scale != 1.0).then_some(time_scale),
        ..args.config(schedule, requests, t.arrivals)
    };
    meta.config = serde_json::to_value(config)?;
    let store = Store::open(&ctx.db_path)?;
    let (instruments, prepared) = Instruments::prepare(&args.instruments.spec()).await?;
    notes("energy", &prepared);
    let dashboard = args.dashboard.start(ctx).await?;
    let live = dashboard.as_ref().map(|d| {
        d.bus().start(LiveRunInfo {
            kind: "run".into(),
            title: format!("{} · {}", meta.schedule, meta.workload),
            backend: meta.backend_url.clone(),
            model: meta.model.clone(),
            run_id: None,
            total: requests,
        })
    });
    let interrupt = Interrupt::watch(|| eprintln!("\ninterrupted: stopping; requests finished so far are kept"));
    let opts = MeasureOptions {
        slo: args.slo.slo(),
        max_error_rate: args.max_error_rate,
        time_scale,
        instruments: Some(Arc::new(instruments)),
        live,
        progress: Some(Bar::new(ctx.quiet)),
        stop: Some(interrupt.receiver()),
        // The per-request arrays and rows need every record; without them
        // memory stays flat however long the run.
        keep_records: args.output.json_out.is_some() || args.output.csv_out.is_some(),
    };
    let outcome = measure(&store, meta, &plan, &client, workload, &opts).await;
    live::close(dashboard).await;
    let o = outcome?;
    notes("warning", &o.figures.warnings);
    outln!("{}", fleetbench_report::terminal_summary(&o.meta, &o.metrics));
    print_figures(&o);
    args.output.write(&RunExport {
        meta: &o.meta,
        metrics: &o.metrics,
        records: o.records.as_deref().unwrap_or_default(),
        figures: &o.figure_keys,
    })?;
    outln!("stored as run {} in {}", o.meta.id, ctx.db_path.display());
    Ok(exit_code(&o))
}

/// The cost and energy lines under the summary table.
fn print_figures(o: &MeasureOutcome) {
    use fleetbench_report::svg::fmt_num;
    if let Some(c) = &o.figures.cost {
        let usd = |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into());
        outln!(
            "cost ({}): ${} per million output tokens, ${} per request, ${} in all",
            c.backend,
            usd(c.figures.usd_per_million_output_tokens, 4),
            usd(c.figures.usd_per_request, 6),
            usd(c.figures.usd_total, 4),
        );
    }
    if let Some(e) = &o.figures.energy {
        let window = |w: &Option<fleetbench_econ::energy::timeline::WindowEnergy>| {
            w.as_ref().map(|w| format!("{} J/token ({} J)", fmt_num(w.net_j_per_token), fmt_num(w.net_joules)))
        };
        outln!(
            "energy ({}): steady state {}, whole run {}{}",
            e.description.as_deref().unwrap_or("-"),
            window(&e.steady_state).unwrap_or_else(|| "-".into()),
            window(&e.whole_run).unwrap_or_else(|| "-".into()),
            e.idle_power_w.map(|w| format!(", idle {w:.1} W subtracted")).unwrap_or_default()
        );
    }
}

fn exit_code(o: &MeasureOutcome) -> ExitCode {
    match o.meta.status {
        RunStatus::Interrupted => ExitCode::from(EXIT_INTERRUPTED),
        RunStatus::ErrorRateExceeded => {
            eprintln!(
                "error: {} of {} requests failed ({:.1} %), above --max-error-rate",
                o.metrics.failed,
                o.metrics.sent,
                100.0 * o.metrics.error_rate()
            );
            ExitCode::from(EXIT_ERROR_RATE)
        }
        _ => ExitCode::SUCCESS,
    }
}
