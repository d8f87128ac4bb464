//! `fleetbench demo`: the whole tool on a laptop with no GPU and no network.
//! The simulator serves a few contrasting setups in process; the real load
//! engine sweeps each one; the figures, the knee and why the curve bends are
//! printed side by side with cost and modelled energy; everything is stored
//! and written as an HTML report.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use fleetbench_client::prom::metrics_url_for;
use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RunConfig, SamplingParams};
use fleetbench_econ::instruments::{DEFAULT_PUE, DEFAULT_SUPPLY};
use fleetbench_econ::records::{CostRecord, EnergyRecord};
use fleetbench_load::sweep::driver::{run_sweep, LevelKind, Levels, MeasuredLevel, SweepConfig, SweepObservers};
use fleetbench_load::WorkloadSpec;
use fleetbench_sim::listing::{demo_setups, Setup};
use fleetbench_sim::server::{start_server, SimServerConfig};
use fleetbench_sim::{Catalog, Deployment};
use fleetbench_store::Store;

use crate::context::Context;
use crate::{outln, provenance};

mod comparison;
use comparison::{print_comparison, SetupResult};

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
async fn arena(args: &DemoArgs, ctx: &Context, catalog: &Catalog) -> anyhow::Result<i64> {
    use fleetbench_aiops::arena::{run_arena, ArenaConfig};
    use fleetbench_aiops::backends::BackendSpec;
    outln!(
        "AIOps arena: {ARENA_EPISODES} GPU-fleet incidents on a {ARENA_GPUS}-GPU fleet, scored against ground truth \
         (the simulated server's answers come from the rules runbook, so it matches `rules` through the whole HTTP path)\n"
    );
    let spec = &demo_setups()[0].spec;
    let mut cfg = SimServerConfig::new(Deployment::resolve(catalog, spec)?);
    cfg.time_scale = args.time_scale;
    cfg.served_model_name = spec.model.clone();
    cfg.responder = Some(fleetbench_aiops::rules_responder(ARENA_GPUS, ARENA_EPISODES, ARENA_SEED)?);
    let server = start_server(cfg, "127.0.0.1:0".parse()?).await?;
    let mut http = BackendSpec::builtin("sim-rtx3090-moe");
    http.builtin = None;
    http.url = Some(server.base_url());
    http.model = Some(spec.model.clone());
    http.concurrency = 8;
    http.max_tokens = Some(600);
    let arena = ArenaConfig {
        backends: ["rules", "always-healthy", "random"].into_iter().map(BackendSpec::builtin).chain([http]).collect(),
        episodes: ARENA_EPISODES,
        seed: ARENA_SEED,
        gpus: ARENA_GPUS,
        rate_per_s: None,
        telemetry: None,
        timeout: Duration::from_secs(120),
        prices: None,
        answers_out: None,
    };
    let (_never, stop) = tokio::sync::watch::channel(false);
    let outcome = run_arena(&arena, &ctx.db, provenance::run_meta("", "", ""), None, &(), stop).await;
    server.shutdown().await;
    let o = outcome?;
    outln!("{}", fleetbench_aiops::leaderboard::render_table(&o.boards));
    outln!("{}", fleetbench_aiops::leaderboard::render_scenario_table(&o.boards));
    outln!("stored as run {} in {}\n", o.run_id, ctx.db);
    Ok(o.run_id)
}

const INPUT_TOKENS: u32 = 300;
const OUTPUT_TOKENS: u32 = 128;

pub async fn run(args: DemoArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.time_scale > 0.0, "--time-scale must be positive");
    let started = Instant::now();
    let catalog = Catalog::embedded()?;
    let store = Store::connect(&ctx.db)?;
    let group =
        format!("demo-{}-{}", fleetbench_core::units::rfc3339(std::time::SystemTime::now()), std::process::id());
    let levels: &[u32] = if args.quick { &[1, 4, 16] } else { &[1, 2, 4, 8, 16, 32] };
    outln!(
        "fleetbench demo: the built-in simulator serves {} setups in this process; the real load engine sweeps \
         concurrency {} with {INPUT_TOKENS}-token prompts and {OUTPUT_TOKENS}-token answers.\n\
         The simulator runs {}× faster than the hardware it models; every figure below is in modelled time.\n",
        demo_setups().len(),
        levels.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
        args.time_scale
    );
    let mut results = Vec::new();
    let mut run_ids = Vec::new();
    for (i, setup) in demo_setups().into_iter().enumerate() {
        outln!("[{}/{}] {}", i + 1, demo_setups().len(), setup.title);
        let deployment = Deployment::resolve(&catalog, &setup.spec)
            .with_context(|| format!("the simulator cannot place {}", setup.title))?;
        let r = sweep_setup(&args, &store, &group, &setup, deployment, levels, &mut run_ids).await?;
        outln!("      why: {}\n", r.why);
        results.push(r);
    }
    print_comparison(&results);
    if !args.no_arena {
        match arena(&args, ctx, &catalog).await {
            Ok(id) => run_ids.push(id),
            Err(e) => eprintln!("warning: the AIOps arena part of the demo failed: {e:#}"),
        }
    }
    let out = args.out.clone().unwrap_or_else(|| {
        ctx.db
            .sqlite_path()
            .and_then(|p| p.parent())
            .map(|p| p.join("demo-report"))
            .unwrap_or_else(|| PathBuf::from("demo-report"))
    });
    match fleetbench_report::write_report(&store, &run_ids, &out) {
        Ok(files) => outln!("report: {}", files.index_html.display()),
        Err(e) => eprintln!("warning: the HTML report could not be written: {e}"),
    }
    outln!(
        "stored {} runs in {} (group {group}); took {:.0} s. Try `fleetbench runs list`.",
        run_ids.len(),
        ctx.db,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

async fn sweep_setup(
    args: &DemoArgs,
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
    client.probe(Duration::from_secs(5)).await?; // learns the time scale, which shortens agents' think times
    let traffic = setup.traffic(levels, INPUT_TOKENS, OUTPUT_TOKENS); // an agent-session sweep has its own levels
    let (levels, last) = (&traffic.levels, *traffic.levels.last().unwrap_or(&1) as f64);
    let sweep = SweepConfig {
        group: group.to_string(),
        levels: Levels::Fixed(levels.iter().map(|&c| c as f64).collect()),
        kind: LevelKind::Concurrency,
        workload: WorkloadSpec::parse(&traffic.workload)?,
        workload_name: traffic.workload.clone(),
        seed: 7,
        sampling: SamplingParams { max_tokens: traffic.max_tokens, ignore_eos: true, ..Default::default() },
        slo: Default::default(),
        per_level_requests: None,
        per_level: None,
        requests_per_agent: traffic.requests_per_agent,
        min_requests: 0,
        warmup_per_level: None,
        max_level: last,
        budget: Duration::MAX,
        repeat: 1,
        metrics_url: Some(metrics_url_for(&server.base_url())),
        metrics_interval: Duration::from_millis(50),
        time_scale: args.time_scale,
        config: RunConfig { hardware: Some(setup.title.to_string()), simulated: Some(true), ..Default::default() },
        shard: None,
    };
    let mut print_level = |m: &MeasuredLevel| {
        outln!(
            "      c={:<3} {:>7.1} tok/s per request  {:>8.1} tok/s aggregate  TTFT p50 {:>7.0} ms  {}",
            m.level,
            m.metrics.mean_tok_s.unwrap_or(0.0),
            m.metrics.output_throughput,
            m.metrics.ms("median_ttft_ms").unwrap_or(f64::NAN),
            if m.metrics.failed > 0 { format!("{} failed", m.metrics.failed) } else { String::new() }
        )
    };
    let observers = SweepObservers { on_measured: Some(&mut print_level), ..Default::default() };
    let outcome = run_sweep(&sweep, store, &client, &provenance::client_meta(&client), observers).await;
    server.shutdown().await;
    let o = outcome?;
    run_ids.extend(o.measured.iter().map(|m| m.run_id));
    let story = prediction.bottleneck_story();
    let (why, bottlenecks) = match &o.doc.sessions {
        Some(s) => (o.reason.clone(), s.describe("agents")),
        None => (format!("{}; the model says: {story}", o.reason), story),
    };
    let (peak_level, peak) =
        o.outcomes
            .iter()
            .map(|l| (l.level, l.output_throughput))
            .fold((0.0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let knee_level = o.knee.as_ref().map(|k| k.level);
    let at_knee = knee_level.and_then(|k| o.outcomes.iter().find(|l| l.level == k)).map(|l| l.output_throughput);
    let power =
        knee_level.and_then(|k| prediction.levels.iter().find(|l| l.concurrency as f64 == k)).map(|l| l.power_w);
    let cost = match (usd_per_hour, at_knee) {
        (Some(u), Some(t)) => CostRecord::rented_at(setup.title, u, t, "the catalog's typical cloud rate, at the knee"),
        _ => None,
    };
    let energy = match (power, at_knee) {
        (Some(p), Some(t)) => EnergyRecord::modelled(setup.title, p, t, DEFAULT_PUE, DEFAULT_SUPPLY)?,
        _ => None,
    };
    // Cost and modelled energy at the knee, stored with the knee's run so
    // that the report draws one bar per setup.
    if let Some(id) = knee_level.and_then(|k| o.measured.iter().find(|m| m.level == k)).map(|m| m.run_id) {
        if let Some(c) = &cost {
            store.put(id, setup.title, c)?;
        }
        if let Some(e) = &energy {
            store.put(id, setup.title, e)?;
        }
    }
    Ok(SetupResult {
        title: setup.title,
        single: o.outcomes.first().and_then(|l| l.mean_tok_s),
        peak,
        peak_level,
        knee: knee_level,
        knee_open: knee_level.is_some_and(|k| k >= last),
        why,
        usd_per_m: cost.and_then(|c| c.figures.usd_per_million_output_tokens),
        joules_per_token: energy.and_then(|e| e.energy_per_output_token_j),
        bottlenecks,
    })
}
