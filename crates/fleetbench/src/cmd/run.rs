//! `fleetbench run`: one measured run against one backend. Parses the
//! options into a client config and a load plan, streams records into the
//! results database as they complete, and prints the summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use fleetbench_client::{ApiKey, Client, ClientConfig, Timeouts};
use fleetbench_core::run::redact_url;
use fleetbench_core::{parse_duration, ApiKind, RunMetrics, RunStatus, SamplingParams, Slo};
use fleetbench_load::{Arrival, RunPlan, Schedule, StopCondition, WorkloadSpec};
use fleetbench_store::Store;

use crate::context::Context;
use crate::measure::{self, MeasureOutcome};

/// Exit status when the error rate passed `--max-error-rate`.
pub const EXIT_ERROR_RATE: u8 = 3;
/// Exit status when the user interrupted the run.
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ApiArg {
    /// OpenAI /v1/chat/completions
    Chat,
    /// OpenAI /v1/completions
    Completions,
    /// Anthropic /v1/messages
    Anthropic,
}

impl From<ApiArg> for ApiKind {
    fn from(a: ApiArg) -> ApiKind {
        match a {
            ApiArg::Chat => ApiKind::Chat,
            ApiArg::Completions => ApiKind::Completions,
            ApiArg::Anthropic => ApiKind::Anthropic,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ArrivalArg {
    Poisson,
    Constant,
    Gamma,
}

impl ArrivalArg {
    /// The engine's arrival process; `burstiness` is the gamma shape.
    pub fn arrival(self, burstiness: f64) -> Arrival {
        match self {
            ArrivalArg::Poisson => Arrival::Poisson,
            ArrivalArg::Constant => Arrival::Constant,
            ArrivalArg::Gamma => Arrival::Gamma { burstiness },
        }
    }
}

/// Where and how to talk to a backend (shared by run, sweep and others).
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Base URL of the backend, with the API version path.
    #[arg(long, value_name = "URL", help_heading = "Backend")]
    pub url: String,
    /// Model name sent in every request.
    #[arg(long, help_heading = "Backend")]
    pub model: String,
    /// Wire protocol.
    #[arg(long, value_enum, default_value = "chat", help_heading = "Backend")]
    pub api: ApiArg,
    /// Environment variable holding the API key (default OPENAI_API_KEY, or
    /// ANTHROPIC_API_KEY with --api anthropic). The key is never logged or stored.
    #[arg(long, value_name = "VAR", help_heading = "Backend")]
    pub api_key_env: Option<String>,
    /// Read the API key from this file (first line) instead of the environment.
    #[arg(long, value_name = "PATH", help_heading = "Backend", conflicts_with = "api_key_env")]
    pub api_key_file: Option<PathBuf>,
    /// Ask for whole responses instead of streams (TTFT then equals E2EL).
    #[arg(long, help_heading = "Backend")]
    pub no_stream: bool,
    /// Give up connecting after this long (e.g. 2s, 500ms).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Timeouts")]
    pub timeout_connect: Option<Duration>,
    /// Fail a request whose first token takes longer than this.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Timeouts")]
    pub timeout_first_token: Option<Duration>,
    /// Fail a request when two tokens are further apart than this.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Timeouts")]
    pub timeout_idle: Option<Duration>,
    /// Fail a request that takes longer than this in all.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Timeouts")]
    pub timeout_total: Option<Duration>,
    /// On HTTP 429, wait as Retry-After says and retry, up to N times (default 5 when given without N).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "5", help_heading = "Timeouts")]
    pub retry_429: Option<u32>,
}

impl BackendArgs {
    /// The client configuration, with the API key read from the environment
    /// or the named file.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let api: ApiKind = self.api.into();
        let mut cfg = ClientConfig::new(self.url.clone(), api, self.model.clone());
        cfg.api_key = match (&self.api_key_file, &self.api_key_env) {
            (Some(path), _) => {
                Some(ApiKey::from_file(path).with_context(|| format!("reading the API key file {}", path.display()))?)
            }
            (None, Some(var)) => {
                let key = ApiKey::from_env(var);
                if key.is_none() {
                    bail!("--api-key-env {var}: that environment variable is not set or empty");
                }
                key
            }
            (None, None) => ApiKey::from_env(match api {
                ApiKind::Anthropic => "ANTHROPIC_API_KEY",
                _ => "OPENAI_API_KEY",
            }),
        };
        cfg.stream = !self.no_stream;
        cfg.timeouts = Timeouts {
            connect: self.timeout_connect,
            first_token: self.timeout_first_token,
            idle: self.timeout_idle,
            total: self.timeout_total,
        };
        cfg.retry_429 = self.retry_429.unwrap_or(0);
        Ok(cfg)
    }
}

/// Sampling options shared by run and sweep.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// max_tokens for every request (default: the workload's output size).
    #[arg(long, help_heading = "Requests")]
    pub max_tokens: Option<u32>,
    #[arg(long, help_heading = "Requests")]
    pub temperature: Option<f32>,
    /// Ask the server to ignore end-of-sequence (vLLM, SGLang) so outputs are exactly max_tokens.
    #[arg(long, help_heading = "Requests")]
    pub ignore_eos: bool,
    /// Seed for prompts, arrivals and the server's sampler.
    #[arg(long, default_value_t = 0, help_heading = "Requests")]
    pub seed: u64,
    /// What to send: synthetic:in=I,out=O[,spread=S] or file:PATH.jsonl
    #[arg(long, default_value = "synthetic:in=512,out=256", help_heading = "Requests")]
    pub workload: String,
}

impl SamplingArgs {
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            ignore_eos: self.ignore_eos,
            seed: (self.seed != 0).then_some(self.seed),
        }
    }
}

/// SLO options (goodput).
#[derive(Args, Debug, Clone, Default)]
pub struct SloArgs {
    /// Goodput SLO on time to first token, ms.
    #[arg(long, value_name = "MS", help_heading = "Goodput")]
    pub slo_ttft: Option<f64>,
    /// Goodput SLO on time per output token, ms.
    #[arg(long, value_name = "MS", help_heading = "Goodput")]
    pub slo_tpot: Option<f64>,
    /// Goodput SLO on end-to-end latency, ms.
    #[arg(long, value_name = "MS", help_heading = "Goodput")]
    pub slo_e2el: Option<f64>,
}

impl SloArgs {
    pub fn slo(&self) -> Slo {
        Slo { ttft_ms: self.slo_ttft, tpot_ms: self.slo_tpot, e2el_ms: self.slo_e2el }
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  # 4 agents, 200 measured requests after 4 warm-up ones, results to JSON
  fleetbench run --url http://127.0.0.1:8000/v1 --model qwen3-coder \\
      --concurrency 4 --requests 200 --warmup 4 \\
      --workload synthetic:in=512,out=256 --json-out run.json

  # open loop: Poisson arrivals at 2 req/s for a minute, with SLOs
  fleetbench run --url http://127.0.0.1:8000/v1 --model m --rate 2 --duration 60s \\
      --slo-ttft 500 --slo-tpot 50

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
    /// Closed loop: this many agents, each sending its next request when the previous one ends.
    #[arg(long, short = 'c', help_heading = "Schedule", conflicts_with = "rate")]
    pub concurrency: Option<u32>,
    /// Open loop: requests per second, sent on schedule whatever the server does.
    #[arg(long, help_heading = "Schedule")]
    pub rate: Option<f64>,
    /// Inter-arrival distribution for --rate.
    #[arg(long, value_enum, default_value = "poisson", help_heading = "Schedule")]
    pub arrival: ArrivalArg,
    /// Gamma shape for --arrival gamma (below 1 is burstier than Poisson).
    #[arg(long, default_value_t = 1.0, help_heading = "Schedule")]
    pub burstiness: f64,
    /// Open loop: at most this many in flight (waiting shows as client queue time).
    #[arg(long, help_heading = "Schedule")]
    pub max_concurrency: Option<u32>,
    /// Measured requests (warm-up not counted). Default 100 unless --duration is given.
    #[arg(long, short = 'n', help_heading = "Schedule")]
    pub requests: Option<u64>,
    /// Stop issuing requests after this long (e.g. 60s, 5m); in-flight ones finish.
    #[arg(long, value_parser = parse_duration, help_heading = "Schedule")]
    pub duration: Option<Duration>,
    /// Warm-up requests sent first and excluded from every figure.
    #[arg(long, default_value_t = 0, help_heading = "Schedule")]
    pub warmup: u64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub slo: SloArgs,
    /// Exit with status 3 when more than this fraction of requests failed (e.g. 0.05).
    #[arg(long, value_name = "FRACTION", help_heading = "Output")]
    pub max_error_rate: Option<f64>,
    /// Write the results as JSON (vLLM's key names, per-request arrays included).
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub json_out: Option<PathBuf>,
    /// Write one CSV row per request.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub csv_out: Option<PathBuf>,
    /// Write the summary as a Markdown table.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub md_out: Option<PathBuf>,
    /// Keep every generated text in the results database.
    #[arg(long, help_heading = "Output")]
    pub keep_text: bool,
    #[command(flatten)]
    pub instruments: crate::instruments::InstrumentArgs,
    #[command(flatten)]
    pub dashboard: crate::live::DashboardArgs,
}

impl RunArgs {
    fn schedule(&self) -> anyhow::Result<Schedule> {
        match (self.concurrency, self.rate) {
            (Some(0), _) => bail!("--concurrency must be at least 1"),
            (Some(c), None) => Ok(Schedule::Closed { concurrency: c }),
            (None, Some(r)) => {
                if !(r.is_finite() && r > 0.0) {
                    bail!("--rate must be a positive number of requests per second");
                }
                if !(self.burstiness.is_finite() && self.burstiness > 0.0) {
                    bail!("--burstiness must be positive");
                }
                let arrival = self.arrival.arrival(self.burstiness);
                Ok(Schedule::Open { rate: r, arrival, max_concurrency: self.max_concurrency })
            }
            (None, None) => Ok(Schedule::Closed { concurrency: 1 }),
            (Some(_), Some(_)) => bail!("give either --concurrency (closed loop) or --rate (open loop), not both"),
        }
    }
}

pub async fn run(args: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if let Some(f) = args.max_error_rate {
        if !(0.0..=1.0).contains(&f) {
            bail!("--max-error-rate is a fraction between 0 and 1 (0.05 = 5 %)");
        }
    }
    let schedule = args.schedule()?;
    let spec = WorkloadSpec::parse(&args.sampling.workload)?;
    let workload: Arc<dyn fleetbench_load::Workload> = Arc::from(spec.build(args.sampling.seed)?);
    let mut cfg = args.backend.client_config()?;
    cfg.keep_output_text = args.keep_text;
    let client = Client::new(cfg)?;
    client.probe(args.backend.timeout_connect.unwrap_or(Duration::from_secs(10))).await?;

    let requests = match (args.requests, args.duration) {
        (None, None) => Some(100),
        (r, _) => r,
    };
    let plan = RunPlan {
        schedule,
        stop: StopCondition { requests, duration: args.duration },
        warmup: args.warmup,
        sampling: args.sampling.sampling(),
        seed: args.sampling.seed,
    };
    let mut config = serde_json::json!({
        "api": client.config().api.as_str(),
        "stream": client.config().stream,
        "requests": requests,
        "duration_s": args.duration.map(|d| d.as_secs_f64()),
        "warmup": args.warmup,
        "seed": args.sampling.seed,
        "max_tokens": args.sampling.max_tokens,
        "temperature": args.sampling.temperature,
        "ignore_eos": args.sampling.ignore_eos,
        "slo": args.slo.slo(),
    });
    match schedule {
        Schedule::Closed { concurrency } => {
            config["concurrency"] = concurrency.into();
            config["max_concurrency"] = concurrency.into();
        }
        Schedule::Open { rate, max_concurrency, .. } => {
            config["request_rate"] = rate.into();
            config["burstiness"] = args.burstiness.into();
            config["max_concurrency"] = serde_json::json!(max_concurrency);
        }
    }
    let meta = measure::new_meta(&client, workload.describe(), schedule.describe(), config, None);
    let store = Store::open(&ctx.db_path)?;
    let instruments = Arc::new(args.instruments.prepare(ctx.quiet).await?);
    let dashboard = args.dashboard.start(ctx).await?;
    let live = dashboard.as_ref().map(|d| {
        d.bus().start(fleetbench_dash::LiveRunInfo {
            kind: "run".into(),
            title: format!("{} · {}", schedule.describe(), meta.workload),
            backend: meta.backend_url.clone(),
            model: meta.model.clone(),
            run_id: None,
            total: requests,
        })
    });
    let outcome = measure::measure(
        &store,
        &ctx.db_path,
        meta,
        &plan,
        &client,
        workload,
        &measure::MeasureOptions {
            slo: args.slo.slo(),
            max_error_rate: args.max_error_rate,
            quiet: ctx.quiet,
            time_scale: 1.0,
            instruments: Some(instruments),
            live,
        },
    )
    .await;
    if let Some(d) = dashboard {
        d.close().await;
    }
    let outcome = outcome?;
    report(&args, &outcome)?;
    Ok(exit_code(&outcome))
}

fn report(args: &RunArgs, o: &MeasureOutcome) -> anyhow::Result<()> {
    println!("{}", fleetbench_report::terminal_summary(&o.meta, &o.metrics));
    print_figures(&o.figures);
    if let Some(p) = &args.json_out {
        let mut v = fleetbench_report::run_json(&o.meta, &o.metrics);
        if let Some(obj) = v.as_object_mut() {
            obj.extend(o.figure_keys.clone());
        }
        write_file(p, serde_json::to_string_pretty(&v)?.as_bytes())?;
    }
    if let Some(p) = &args.csv_out {
        let mut buf = Vec::new();
        fleetbench_report::write_requests_csv(&mut buf, &o.records)?;
        write_file(p, &buf)?;
    }
    if let Some(p) = &args.md_out {
        write_file(p, fleetbench_report::markdown_summary(&o.meta, &o.metrics).as_bytes())?;
    }
    println!("stored as run {} in {}", o.meta.id, o.db_path.display());
    Ok(())
}

/// The cost and energy lines under the summary table.
pub fn print_figures(f: &crate::instruments::RunFigures) {
    use fleetbench_report::svg::fmt_num;
    if let Some(c) = &f.cost {
        let get = |k: &str| c.get(k).and_then(|v| v.as_f64());
        println!(
            "cost ({}): ${} per million output tokens, ${} per request, ${} in all",
            c.get("backend").and_then(|v| v.as_str()).unwrap_or("?"),
            get("usd_per_million_output_tokens").map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
            get("usd_per_request").map(|v| format!("{v:.6}")).unwrap_or_else(|| "-".into()),
            get("usd_total").map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
        );
    }
    if let Some(e) = &f.energy {
        let window = |w: &Option<fleetbench_econ::energy::timeline::WindowEnergy>| {
            w.as_ref().map(|w| format!("{} J/token ({} J)", fmt_num(w.net_j_per_token), fmt_num(w.net_joules)))
        };
        println!(
            "energy ({}): steady state {}, whole run {}{}",
            e.description,
            window(&e.steady_state).unwrap_or_else(|| "-".into()),
            window(&e.whole_run).unwrap_or_else(|| "-".into()),
            e.idle_power_w.map(|w| format!(", idle {w:.1} W subtracted")).unwrap_or_default()
        );
    }
}

pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn exit_code(o: &MeasureOutcome) -> ExitCode {
    match o.meta.status {
        RunStatus::Interrupted => ExitCode::from(EXIT_INTERRUPTED),
        RunStatus::ErrorRateExceeded => {
            eprintln!(
                "error: {} of {} requests failed ({:.1} %), above --max-error-rate",
                o.metrics.failed,
                o.metrics.sent,
                100.0 * o.metrics.failed as f64 / o.metrics.sent.max(1) as f64
            );
            ExitCode::from(EXIT_ERROR_RATE)
        }
        _ => ExitCode::SUCCESS,
    }
}

pub fn error_rate_exceeded(m: &RunMetrics, max: Option<f64>) -> bool {
    max.is_some_and(|f| m.sent > 0 && m.failed as f64 / m.sent as f64 > f)
}

/// The command line as typed, with credentials removed from anything that
/// looks like a URL.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            let a = if a.contains("://") { redact_url(&a) } else { a };
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
