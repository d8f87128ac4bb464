//! `fleetbench demo`: the whole tool on a laptop with no GPU and no network.
//! The simulator serves a few contrasting setups in process; the real load
//! engine sweeps each one; the figures, the knee and why the curve bends are
//! printed side by side with cost and modelled energy; everything is stored
//! and written as an HTML report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use fleetbench_client::prom::{metrics_url_for, MetricsSampler};
use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RunClock, SamplingParams};
use fleetbench_load::sweep::{explain, CliffConfig, CliffFinder, LevelOutcome};
use fleetbench_load::{RunPlan, Schedule, StopCondition, SyntheticWorkload, Workload};
use fleetbench_sim::server::{start_server, SimServerConfig};
use fleetbench_sim::{Catalog, Deployment, DeploymentSpec};
use fleetbench_store::Store;
use serde_json::json;

use crate::cmd::sweep::{fmt, store_level_artifacts};
use crate::context::Context;
use crate::measure::{self, MeasureOptions};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  fleetbench demo                      # three setups, about half a minute on 2 cores
  fleetbench demo --quick              # fewer levels, for a first look
  fleetbench demo --out /tmp/fb-demo   # where the HTML report goes")]
pub struct DemoArgs {
    /// Levels 1, 4 and 16 only.
    #[arg(long)]
    pub quick: bool,
    /// How many times faster than the modelled hardware the simulator runs.
    #[arg(long, default_value_t = 10.0)]
    pub time_scale: f64,
    /// Directory for the HTML report (default: next to the results database).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Leave out the AIOps arena.
    #[arg(long)]
    pub no_arena: bool,
}

/// Episodes of the demo's arena, on a 64-GPU fleet.
const ARENA_EPISODES: usize = 24;
const ARENA_GPUS: usize = 64;
const ARENA_SEED: u64 = 7;

/// The arena, offline: the rules runbook, the floors, and a simulated GPU
/// server whose "model" answers each prompt with the runbook's diagnosis, so
/// the whole HTTP path (prompt, stream, lenient parse, score, leaderboard)
/// runs with no network. Returns the id of the run holding its answers and
/// leaderboard.
async fn arena(args: &DemoArgs, ctx: &Context, catalog: &Catalog) -> anyhow::Result<Option<i64>> {
    use fleetbench_aiops::{generated_window, plan_schedule, prompt, Fleet, Operator, OperatorInput, RulesOperator};
    println!(
        "AIOps arena: {ARENA_EPISODES} GPU-fleet incidents on a {ARENA_GPUS}-GPU fleet, scored against ground truth \
         (the simulated server's answers come from the rules runbook, so it matches `rules` through the whole HTTP path)\n"
    );
    let fleet = Fleet::build(ARENA_GPUS, ARENA_SEED)?;
    let mut answers = std::collections::HashMap::new();
    let mut rules = RulesOperator;
    for ep in plan_schedule(&fleet, ARENA_EPISODES, ARENA_SEED) {
        let window = generated_window(&fleet, &ep);
        let text = prompt::render(&window);
        let answer = rules.diagnose(&OperatorInput { window: &window, prompt: &text });
        answers.insert(text, answer);
    }
    let answers = Arc::new(answers);
    let spec = &setups()[0].spec;
    let mut cfg = SimServerConfig::new(Deployment::resolve(catalog, spec)?);
    cfg.time_scale = args.time_scale;
    cfg.served_model_name = spec.model.clone();
    cfg.responder = Some(Arc::new(move |p: &str| answers.get(p).cloned()));
    let server = start_server(cfg, "127.0.0.1:0".parse()?).await?;
    let dir = std::env::temp_dir().join(format!("fleetbench-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let backends = dir.join("backends.toml");
    std::fs::write(
        &backends,
        format!(
            "[[backend]]\nname = \"rules\"\nbuiltin = \"rules\"\n\n\
             [[backend]]\nname = \"always-healthy\"\nbuiltin = \"always-healthy\"\n\n\
             [[backend]]\nname = \"random\"\nbuiltin = \"random\"\n\n\
             [[backend]]\nname = \"sim-rtx3090-moe\"\nurl = \"{}\"\nmodel = \"{}\"\nconcurrency = 8\nmax_tokens = 600\n",
            server.base_url(),
            spec.model
        ),
    )?;
    let run = crate::cmd::aiops::RunArgs {
        backends: backends.display().to_string(),
        episodes: ARENA_EPISODES,
        seed: ARENA_SEED,
        gpus: ARENA_GPUS,
        rate: None,
        json_out: None,
        answers_out: None,
        telemetry: None,
        timemap_from: None,
        timeout: 120,
        prices: None,
        dashboard: Default::default(),
    };
    let quiet = Context { quiet: true, ..ctx.clone() };
    let outcome = crate::cmd::aiops::cmd_run(run, &quiet).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let arena = outcome?;
    println!();
    Ok(Some(arena.run_id))
}

/// One simulated setup of the demo.
struct Setup {
    title: &'static str,
    spec: DeploymentSpec,
}

fn setups() -> Vec<Setup> {
    let spec = |gpu: &str, model: &str, quant: &str| DeploymentSpec {
        gpu: gpu.into(),
        model: model.into(),
        quant: quant.into(),
        engine: "vllm".into(),
        ..Default::default()
    };
    vec![
        Setup {
            title: "RTX 3090 · Qwen3-Coder-30B-A3B (MoE) AWQ 4-bit · vLLM",
            spec: spec("rtx3090", "qwen3-coder-30b-a3b", "awq4"),
        },
        Setup {
            title: "RTX 3090 · Qwen2.5-Coder-32B (dense) AWQ 4-bit · vLLM",
            spec: spec("rtx3090", "qwen2.5-coder-32b", "awq4"),
        },
        Setup { title: "H100 SXM · Llama 3.1 8B FP8 · vLLM", spec: spec("h100-sxm", "llama-3.1-8b", "fp8") },
    ]
}

const INPUT_TOKENS: u32 = 300;
const OUTPUT_TOKENS: u32 = 128;

struct SetupResult {
    title: &'static str,
    single: Option<f64>,
    peak: f64,
    peak_level: f64,
    knee: Option<f64>,
    /// The knee is the highest level measured: the cliff lies beyond.
    knee_open: bool,
    why: String,
    usd_per_m: Option<f64>,
    joules_per_token: Option<f64>,
    bottlenecks: String,
}

pub async fn run(args: DemoArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.time_scale > 0.0, "--time-scale must be positive");
    let started = Instant::now();
    let catalog = Catalog::embedded()?;
    let store = Store::open(&ctx.db_path)?;
    let group =
        format!("demo-{}-{}", fleetbench_core::units::rfc3339(std::time::SystemTime::now()), std::process::id());
    let levels: &[u32] = if args.quick { &[1, 4, 16] } else { &[1, 2, 4, 8, 16, 32] };
    println!(
        "fleetbench demo: the built-in simulator serves {} setups in this process; the real load engine sweeps \
         concurrency {} with {INPUT_TOKENS}-token prompts and {OUTPUT_TOKENS}-token answers.\n\
         The simulator runs {}× faster than the hardware it models; every figure below is in modelled time.\n",
        setups().len(),
        levels.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
        args.time_scale
    );
    let mut results = Vec::new();
    let mut run_ids = Vec::new();
    for (i, setup) in setups().into_iter().enumerate() {
        println!("[{}/{}] {}", i + 1, setups().len(), setup.title);
        let deployment = Deployment::resolve(&catalog, &setup.spec)
            .with_context(|| format!("the simulator cannot place {}", setup.title))?;
        let r = sweep_setup(&args, ctx, &store, &group, &setup, deployment, levels, &mut run_ids).await?;
        println!("      why: {}\n", r.why);
        results.push(r);
    }
    print_comparison(&results);
    if !args.no_arena {
        match arena(&args, ctx, &catalog).await {
            Ok(id) => run_ids.extend(id),
            Err(e) => eprintln!("warning: the AIOps arena part of the demo failed: {e:#}"),
        }
    }
    let out = args.out.clone().unwrap_or_else(|| {
        ctx.db_path.parent().map(|p| p.join("demo-report")).unwrap_or_else(|| PathBuf::from("demo-report"))
    });
    match fleetbench_report::write_report(&store, &run_ids, &out) {
        Ok(files) => println!("report: {}", files.index_html.display()),
        Err(e) => eprintln!("warning: the HTML report could not be written: {e}"),
    }
    println!(
        "stored {} runs in {} (group {group}); took {:.0} s. Try `fleetbench runs list`.",
        run_ids.len(),
        ctx.db_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn sweep_setup(
    args: &DemoArgs,
    ctx: &Context,
    store: &Store,
    group: &str,
    setup: &Setup,
    deployment: Deployment,
    levels: &[u32],
    run_ids: &mut Vec<i64>,
) -> anyhow::Result<SetupResult> {
    let prediction = fleetbench_sim::predict(
        &deployment,
        fleetbench_sim::Workload { input_tokens: INPUT_TOKENS, output_tokens: OUTPUT_TOKENS },
        levels,
    );
    let usd_per_hour = deployment.gpu.usd_per_hour.map(|u| u * deployment.count as f64);
    let mut cfg = SimServerConfig::new(deployment);
    cfg.time_scale = args.time_scale;
    cfg.served_model_name = setup.spec.model.clone();
    let server = start_server(cfg, "127.0.0.1:0".parse()?).await?;
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, setup.spec.model.clone()))?;
    let mut finder = CliffFinder::new(CliffConfig::default());
    let mut outcomes = Vec::new();
    let mut level_runs = Vec::new();
    for (index, &c) in levels.iter().enumerate() {
        let workload: Arc<dyn Workload> =
            Arc::new(SyntheticWorkload::new(INPUT_TOKENS, OUTPUT_TOKENS, 0.0, 7 + index as u64));
        let plan = RunPlan {
            schedule: Schedule::Closed { concurrency: c },
            stop: StopCondition { requests: Some(2 * c as u64), duration: None },
            warmup: c as u64,
            sampling: SamplingParams { max_tokens: Some(OUTPUT_TOKENS), ignore_eos: true, ..Default::default() },
            seed: 7,
        };
        let config = json!({
            "concurrency": c,
            "max_concurrency": c,
            "sweep": group,
            "level_index": index,
            "hardware": setup.title,
            "simulated": true,
            "time_scale": args.time_scale,
        });
        let meta = measure::new_meta(
            &client,
            workload.describe(),
            Schedule::Closed { concurrency: c }.describe(),
            config,
            Some(group.to_string()),
        );
        let sampler =
            MetricsSampler::start(metrics_url_for(&server.base_url()), Duration::from_millis(50), RunClock::start());
        let opts = MeasureOptions { quiet: true, time_scale: args.time_scale, ..Default::default() };
        let o = measure::measure(store, &ctx.db_path, meta, &plan, &client, workload, &opts).await?;
        let stats = sampler.finish().await;
        let server_stats = (stats.samples > 0).then_some(stats);
        store_level_artifacts(store, group, false, c as f64, o.meta.id, &o.metrics, server_stats.as_ref())?;
        run_ids.push(o.meta.id);
        level_runs.push((c as f64, o.meta.id));
        let m = &o.metrics;
        println!(
            "      c={c:<3} {:>7.1} tok/s per request  {:>8.1} tok/s aggregate  TTFT p50 {:>7.0} ms  {}",
            m.mean_tok_s.unwrap_or(0.0),
            m.output_throughput,
            m.ms("median_ttft_ms").unwrap_or(f64::NAN),
            if m.failed > 0 { format!("{} failed", m.failed) } else { String::new() }
        );
        let outcome = LevelOutcome {
            level: c as f64,
            output_throughput: m.output_throughput,
            mean_tok_s: m.mean_tok_s,
            slo_attainment_pct: None,
            error_rate: if m.sent > 0 { m.failed as f64 / m.sent as f64 } else { 0.0 },
            server: server_stats,
        };
        finder.record(outcome.clone());
        outcomes.push(outcome);
    }
    server.shutdown().await;
    let knee = finder.knee();
    let mut why = knee
        .as_ref()
        .map(|k| explain(&outcomes, k, "agents", *levels.last().unwrap_or(&1) as f64))
        .unwrap_or_else(|| "no level completed".into());
    let bottlenecks = bottleneck_story(&prediction.levels);
    why.push_str(&format!("; the model says: {bottlenecks}"));
    let (peak_level, peak) =
        outcomes.iter().map(|o| (o.level, o.output_throughput)).fold((0.0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let knee_level = knee.as_ref().map(|k| k.level);
    let at_knee = knee_level.and_then(|k| outcomes.iter().find(|o| o.level == k)).map(|o| o.output_throughput);
    let power =
        knee_level.and_then(|k| prediction.levels.iter().find(|l| l.concurrency as f64 == k)).map(|l| l.power_w);
    let usd_per_m = match (usd_per_hour, at_knee) {
        (Some(u), Some(t)) if t > 0.0 => Some(u / (t * 3600.0) * 1e6),
        _ => None,
    };
    let joules_per_token = match (power, at_knee) {
        (Some(p), Some(t)) if t > 0.0 => Some(p / t),
        _ => None,
    };
    // Cost and modelled energy at the knee, stored with the knee's run so
    // that the report draws one bar per setup.
    if let Some(&(_, id)) = knee_level.and_then(|k| level_runs.iter().find(|(l, _)| *l == k)) {
        if let Some(u) = usd_per_m {
            let artifact = json!({
                "backend": setup.title,
                "kind": "rented",
                "usd_per_million_output_tokens": u,
                "price_inputs": format!("${:.2}/h (catalog's typical cloud rate) at the knee's {:.0} output tok/s", usd_per_hour.unwrap_or(0.0), at_knee.unwrap_or(0.0)),
            });
            store.put_artifact(id, "cost", setup.title, &artifact)?;
        }
        if let (Some(j), Some(p)) = (joules_per_token, power) {
            let artifact = json!({
                "backend": setup.title,
                "energy_per_output_token_j": j,
                "meter": "modelled",
                "description": format!("modelled power {p:.0} W at the knee (the simulator's power model), not measured"),
                "past_the_meter": crate::instruments::past_the_meter(
                    j,
                    crate::instruments::DEFAULT_PUE,
                    crate::instruments::DEFAULT_SUPPLY,
                )?,
            });
            store.put_artifact(id, "energy", setup.title, &artifact)?;
        }
    }
    Ok(SetupResult {
        title: setup.title,
        single: outcomes.first().and_then(|o| o.mean_tok_s),
        peak,
        peak_level,
        knee: knee_level,
        knee_open: knee_level.is_some_and(|k| k >= *levels.last().unwrap_or(&1) as f64),
        why,
        usd_per_m,
        joules_per_token,
        bottlenecks,
    })
}

/// "bandwidth at 1–4, compute from 8": the simulator's named bottleneck per
/// level, runs of equal ones merged.
fn bottleneck_story(levels: &[fleetbench_sim::Level]) -> String {
    let mut parts: Vec<(String, u32, u32)> = Vec::new();
    for l in levels {
        let b = l.bottleneck.as_str().to_string();
        match parts.last_mut() {
            Some((name, _, hi)) if *name == b => *hi = l.concurrency,
            _ => parts.push((b, l.concurrency, l.concurrency)),
        }
    }
    parts
        .into_iter()
        .map(|(b, lo, hi)| if lo == hi { format!("{b}-bound at {lo}") } else { format!("{b}-bound at {lo}–{hi}") })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_comparison(results: &[SetupResult]) {
    println!("| setup | single-stream tok/s | peak aggregate tok/s | knee (agents) | $ per M output tokens at the knee (rented) | J per token (modelled) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {} | {:.0} at {} | {} | {} | {} |",
            r.title,
            r.single.map(|s| format!("{s:.0}")).unwrap_or_else(|| "-".into()),
            r.peak,
            fmt(r.peak_level),
            r.knee.map(|k| format!("{}{}", if r.knee_open { "≥" } else { "" }, fmt(k))).unwrap_or_else(|| "-".into()),
            r.usd_per_m.map(|u| format!("${u:.2}")).unwrap_or_else(|| "-".into()),
            r.joules_per_token.map(|j| format!("{j:.2}")).unwrap_or_else(|| "-".into()),
        );
    }
    println!();
    for r in results {
        println!("- {}: {}", r.title, r.bottlenecks);
    }
    println!();
}
