//! `fleetbench aiops`: the AIOps arena. Generate fleet telemetry, serve it
//! live, run backends as operators over episodes, score answers, print the
//! diagnosis schema. The library does the work; this module wires and prints.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use fleetbench_aiops::backends::{parse_backends_toml, parse_builtin_list, Api, BackendSpec};
use fleetbench_aiops::exporter::{router, LiveFleet};
use fleetbench_aiops::leaderboard::{render_scenario_table, render_table, score_report};
use fleetbench_aiops::output::{generate, read_episodes, TelemetryFormat};
use fleetbench_aiops::prometheus::PrometheusSource;
use fleetbench_aiops::{
    builtin, generated_window, json_schema, leaderboard, plan_schedule, prompt, EpisodeResult, Fleet, OperatorInput,
};
use fleetbench_core::run::redact_url;
use fleetbench_core::units::rfc3339;
use fleetbench_core::{ApiKind, ChatMessage, Prompt, RequestSpec, RunClock, RunMeta, RunStatus, SamplingParams};
use fleetbench_dash::{LeaderboardRow, LiveRun, LiveRunInfo, LiveState, ScenarioRow};
use fleetbench_econ::{multipliers_vs_cheapest, PriceEntry, PriceModel, PriceSheet, StreamRate, Throughput, Usage};
use fleetbench_store::Store;

use crate::context::Context;

#[derive(clap::Args, Debug)]
#[command(about = "The AIOps arena: GPU-fleet incidents diagnosed by LLM backends, scored against ground truth")]
pub struct AiopsArgs {
    #[command(subcommand)]
    command: AiopsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AiopsCommand {
    /// Write a seeded fleet's telemetry, kernel log and episodes (with truth) to a directory.
    Generate(GenerateArgs),
    /// Score answers produced elsewhere against episodes.jsonl.
    Score(ScoreArgs),
    /// Print the JSON Schema of a diagnosis.
    Schema,
    /// Serve the live simulated fleet at /metrics for Prometheus to scrape.
    Exporter(ExporterArgs),
    /// Send every episode to every backend and print the leaderboard.
    Run(RunArgs),
    /// Print the operator prompt of one episode.
    Prompt(PromptArgs),
}

#[derive(clap::Args, Debug)]
struct GenerateArgs {
    #[arg(long, default_value_t = 512)]
    gpus: usize,
    #[arg(long, default_value_t = 6.0)]
    hours: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// prometheus (text with timestamps), openmetrics, or jsonl.
    #[arg(long, default_value = "prometheus")]
    format: String,
}

#[derive(clap::Args, Debug)]
struct ScoreArgs {
    #[arg(long)]
    episodes: PathBuf,
    /// JSONL: {"episode_id": ..., "answer": "<raw text>"} per line.
    #[arg(long)]
    answers: PathBuf,
    /// Print the full JSON report instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ExporterArgs {
    #[arg(long, default_value_t = 64)]
    gpus: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: String,
    /// Fleet seconds per wall-clock second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Hours of scheduled episodes.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// A backends.toml file, or a comma list of built-ins (rules,always-healthy,random).
    #[arg(long, default_value = "rules,always-healthy,random")]
    pub(crate) backends: String,
    #[arg(long, default_value_t = 300)]
    pub(crate) episodes: usize,
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Fleet size of each episode.
    #[arg(long, default_value_t = 64)]
    pub(crate) gpus: usize,
    /// Episode stream rate for pacing HTTP requests and cost per day, e.g. 2/s or 30/min.
    #[arg(long)]
    pub(crate) rate: Option<String>,
    /// Write the leaderboard JSON here.
    #[arg(long)]
    pub(crate) json_out: Option<PathBuf>,
    /// Write every answer beside its truth and score (JSONL) here.
    #[arg(long)]
    pub(crate) answers_out: Option<PathBuf>,
    /// Build windows from a Prometheus API instead of the generator: prometheus=http://host:9090
    #[arg(long)]
    pub(crate) telemetry: Option<String>,
    /// With --telemetry: read the fleet/wall time map from this exporter (http://host:9400).
    #[arg(long)]
    pub(crate) timemap_from: Option<String>,
    /// Per-request timeout for HTTP backends, seconds.
    #[arg(long, default_value_t = 300)]
    pub(crate) timeout: u64,
    /// Price sheet for backends that name an entry with `price = "NAME"`
    /// (default: the built-in, dated examples; `fleetbench cost presets`).
    #[arg(long, value_name = "PATH")]
    pub(crate) prices: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) dashboard: crate::live::DashboardArgs,
}

#[derive(clap::Args, Debug)]
struct PromptArgs {
    #[arg(long, default_value_t = 64)]
    gpus: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Episode index in the run's schedule.
    #[arg(long, default_value_t = 0)]
    episode: usize,
}

pub async fn run(args: AiopsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    match args.command {
        AiopsCommand::Generate(a) => cmd_generate(a),
        AiopsCommand::Score(a) => cmd_score(a),
        AiopsCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&json_schema())?);
            Ok(ExitCode::SUCCESS)
        }
        AiopsCommand::Exporter(a) => cmd_exporter(a).await,
        AiopsCommand::Run(a) => cmd_run(a, ctx).await.map(|r| r.exit),
        AiopsCommand::Prompt(a) => {
            let fleet = Fleet::build(a.gpus, a.seed)?;
            let eps = plan_schedule(&fleet, a.episode + 1, a.seed);
            let ep = &eps[a.episode];
            let p = prompt::render(&generated_window(&fleet, ep));
            println!("{p}");
            eprintln!(
                "episode {} scenario {} prompt {} chars (~{} tokens)",
                ep.id,
                ep.scenario.id(),
                p.len(),
                prompt::approx_tokens(&p)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cmd_generate(a: GenerateArgs) -> anyhow::Result<ExitCode> {
    let format = TelemetryFormat::parse(&a.format)
        .ok_or_else(|| anyhow!("unknown --format '{}' (prometheus, openmetrics or jsonl)", a.format))?;
    if !(a.hours > 0.0 && a.hours <= 24.0 * 31.0) {
        bail!("--hours must be above 0 and at most 744");
    }
    let t = std::time::Instant::now();
    let s = generate(a.gpus, a.hours, a.seed, format, &a.out)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} GPUs, {} steps, {} episodes, {} samples in {:.1} s ({:.0} samples/s)",
        s.gpus,
        s.steps,
        s.episodes,
        s.samples,
        secs,
        s.samples as f64 / secs.max(1e-9)
    );
    for f in &s.files {
        println!("  {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_score(a: ScoreArgs) -> anyhow::Result<ExitCode> {
    let eps_text = std::fs::read_to_string(&a.episodes).with_context(|| format!("reading {}", a.episodes.display()))?;
    let episodes = read_episodes(&eps_text)?;
    let by_id: BTreeMap<&str, usize> = episodes.iter().enumerate().map(|(i, e)| (e.0.as_str(), i)).collect();
    let ans_text = std::fs::read_to_string(&a.answers).with_context(|| format!("reading {}", a.answers.display()))?;
    let mut answers: BTreeMap<String, String> = BTreeMap::new();
    for (i, line) in ans_text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{} line {}: not JSON", a.answers.display(), i + 1))?;
        let id = v
            .get("episode_id")
            .and_then(|x| x.as_str())
            .ok_or_else(|| anyhow!("{} line {}: missing string 'episode_id'", a.answers.display(), i + 1))?;
        if !by_id.contains_key(id) {
            bail!("{} line {}: episode '{id}' is not in {}", a.answers.display(), i + 1, a.episodes.display());
        }
        // A non-string answer is kept as its JSON text: the parser judges it.
        let answer = match v.get("answer") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        answers.insert(id.to_string(), answer);
    }
    let results: Vec<EpisodeResult> = episodes
        .iter()
        .map(|(id, sc, truth)| EpisodeResult::scored(id, *sc, truth, answers.get(id).cloned().unwrap_or_default()))
        .collect();
    let report = score_report(&results);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let lb = leaderboard("answers", &results, None, None);
        print!("{}", render_table(std::slice::from_ref(&lb)));
        println!();
        print!("{}", render_scenario_table(std::slice::from_ref(&lb)));
        let missing = episodes.len() - answers.len();
        if missing > 0 {
            println!("{missing} episodes had no answer (scored as unparseable)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn cmd_exporter(a: ExporterArgs) -> anyhow::Result<ExitCode> {
    if !(a.speed > 0.0 && a.speed <= 10_000.0) {
        bail!("--speed must be above 0 and at most 10000");
    }
    let live = Arc::new(LiveFleet::new(a.gpus, a.seed, a.hours, a.speed)?);
    let listener = tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("binding {}", a.listen))?;
    let addr = listener.local_addr()?;
    eprintln!(
        "serving {} GPUs (seed {}) at http://{addr}/metrics, {}x real time; /episodes has the schedule with truth, /timemap the time map",
        live.fleet.gpu_count(),
        a.seed,
        a.speed
    );
    axum::serve(listener, router(live))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

fn parse_rate(s: &str) -> anyhow::Result<f64> {
    let (num, unit) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = num.trim().parse().map_err(|_| anyhow!("--rate '{s}': expected e.g. 2/s, 30/min, 100/h"))?;
    let per = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" | "hour" => 3600.0,
        "d" | "day" => 86_400.0,
        other => bail!("--rate unit '{other}': use s, min, h or day"),
    };
    if !(n > 0.0 && n.is_finite()) {
        bail!("--rate must be positive");
    }
    Ok(n / per)
}

struct Prepared {
    id: String,
    scenario: fleetbench_aiops::Scenario,
    truth: fleetbench_aiops::Diagnosis,
    prompt: String,
}

/// What `aiops run` hands back to its callers (the demo puts the stored run
/// in its report).
pub(crate) struct ArenaRun {
    pub(crate) exit: ExitCode,
    /// The run row holding every answer and the leaderboard.
    pub(crate) run_id: i64,
}

/// Artifact kinds `aiops run` stores (the HTML report reads both).
const KIND_ANSWER: &str = "answer";
const KIND_ARENA_BACKEND: &str = "arena_backend";
/// Characters of the latest answer shown on the live dashboard.
const LIVE_ANSWER_CHARS: usize = 2000;
/// Least time between two recomputations of the live intervals.
const LIVE_CI_EVERY: Duration = Duration::from_millis(250);

pub(crate) async fn cmd_run(a: RunArgs, ctx: &Context) -> anyhow::Result<ArenaRun> {
    let specs: Vec<BackendSpec> = if a.backends.ends_with(".toml") || std::path::Path::new(&a.backends).is_file() {
        let text = std::fs::read_to_string(&a.backends).with_context(|| format!("reading {}", a.backends))?;
        parse_backends_toml(&text)?
    } else {
        parse_builtin_list(&a.backends)?
    };
    if a.episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    let rate = a.rate.as_deref().map(parse_rate).transpose()?;
    let sheet = price_sheet(&a, &specs)?;
    // Clients first, so that a missing API key fails before any work.
    let clients = specs
        .iter()
        .filter(|s| s.url.is_some())
        .map(|s| http_client(s, a.timeout).map(|c| (s.clone(), c)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fleet = Fleet::build(a.gpus, a.seed)?;
    let episodes = plan_schedule(&fleet, a.episodes, a.seed);
    let prom = match a.telemetry.as_deref() {
        None => None,
        Some(t) => {
            let url = t
                .strip_prefix("prometheus=")
                .ok_or_else(|| anyhow!("--telemetry '{t}': expected prometheus=http://host:9090"))?;
            let timemap = match &a.timemap_from {
                Some(u) => Some(
                    fleetbench_aiops::prometheus::fetch_timemap(u)
                        .await
                        .with_context(|| format!("reading the time map from {u}/timemap"))?,
                ),
                None => None,
            };
            Some(PrometheusSource::new(url, timemap)?)
        }
    };

    // The dashboard first: a port in use fails the command before anything
    // is stored.
    let dash = a.dashboard.start(ctx).await?;
    let store = Store::open(&ctx.db_path)?;
    let started = std::time::Instant::now();
    let run_id = store.create_run(&arena_meta(&a, &specs, rate, fleet.gpu_count()))?;
    let writer = match AnswerWriter::start(&ctx.db_path, run_id) {
        Ok(w) => w,
        Err(e) => {
            finish_failed(&store, run_id);
            return Err(e);
        }
    };
    let live = dash.as_ref().map(|d| {
        let models: Vec<&str> = specs.iter().filter_map(|s| s.model.as_deref()).collect();
        Arc::new(LiveTally::new(d.bus().start(LiveRunInfo {
            kind: "aiops".into(),
            title: format!(
                "run {run_id}: AIOps arena, {} episodes on a {}-GPU fleet (seed {})",
                episodes.len(),
                fleet.gpu_count(),
                a.seed
            ),
            backend: specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            model: if models.is_empty() { "built-in operators".into() } else { models.join(", ") },
            run_id: Some(run_id),
            total: Some((episodes.len() * specs.len()) as u64),
        })))
    });
    let sink = Sink { writer: writer.sender(), live: live.clone() };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping; answers scored so far are kept");
            let _ = stop_tx.send(true);
        }
    });

    let outcome = answer_all(&a, ctx, &specs, clients, &fleet, &episodes, prom.as_ref(), rate, sink, stop_rx).await;
    ctrl_c.abort();
    let stored = writer.finish().await;
    let (results, mean_chars, interrupted) = match outcome {
        Ok(o) => o,
        Err(e) => {
            finish_failed(&store, run_id);
            if let Some(l) = &live {
                l.run.finish(LiveState::Failed);
            }
            if let Some(d) = dash {
                d.close().await;
            }
            return Err(e.context(format!("the arena stopped; run {run_id} keeps the answers scored before")));
        }
    };

    let boards: Vec<_> = specs
        .iter()
        .map(|s| leaderboard(&s.name, results.get(&s.name).map(Vec::as_slice).unwrap_or(&[]), s.price(), rate))
        .collect();
    print!("{}", render_table(&boards));
    println!();
    print!("{}", render_scenario_table(&boards));
    let costs = arena_costs(&specs, &results, sheet.as_ref(), rate, started.elapsed().as_secs_f64());
    print_costs(&specs, &costs, rate);
    if let Some(l) = &live {
        l.publish_final(&boards, if interrupted { LiveState::Interrupted } else { LiveState::Finished });
    }

    // The leaderboard beside the answers, then the run's end.
    let mut store_error = stored.err();
    for (spec, board) in specs.iter().zip(&boards) {
        if store_error.is_some() {
            break;
        }
        let mut artifact = board.arena_artifact(spec.model.as_deref());
        let cost = costs.get(&spec.name);
        if let (Some(obj), Some(c)) = (artifact.as_object_mut(), cost) {
            obj.extend(c.as_object().cloned().unwrap_or_default());
        }
        let put = store.put_artifact(run_id, KIND_ARENA_BACKEND, &spec.name, &artifact).and_then(|()| match cost {
            Some(c) => store.put_artifact(run_id, "cost", &spec.name, c),
            None => Ok(()),
        });
        if let Err(e) = put {
            store_error = Some(e.into());
        }
    }
    let status = match (&store_error, interrupted) {
        (Some(_), _) => RunStatus::Failed,
        (None, true) => RunStatus::Interrupted,
        (None, false) => RunStatus::Completed,
    };
    let answered: usize = results.values().map(Vec::len).sum();
    let summary = serde_json::json!({
        "kind": "aiops-arena",
        "episodes": episodes.len(),
        "answers": answered,
        "failed": boards.iter().map(|b| b.failed_requests).sum::<usize>(),
        "duration": started.elapsed().as_secs_f64(),
        "backends": boards.iter().map(|b| serde_json::json!({"name": b.name, "mean_score": b.mean_score, "ci95": b.ci95})).collect::<Vec<_>>(),
    });
    let finished = store.finish_run(run_id, status, &rfc3339(SystemTime::now()), Some(&summary));
    if let Some(d) = dash {
        d.close().await;
    }

    if let Some(path) = &a.json_out {
        let doc = serde_json::json!({
            "run_id": run_id,
            "status": status.as_str(),
            "episodes": episodes.len(),
            "seed": a.seed,
            "gpus": fleet.gpu_count(),
            "mean_prompt_chars": mean_chars,
            "backends": boards.iter().map(|b| {
                let mut v = serde_json::to_value(b).unwrap_or_default();
                if let (Some(obj), Some(c)) = (v.as_object_mut(), costs.get(&b.name)) {
                    obj.extend(c.as_object().cloned().unwrap_or_default());
                }
                v
            }).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &a.answers_out {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        for (name, rows) in &results {
            for r in rows {
                let mut v = r.to_json();
                v["backend"] = serde_json::Value::String(name.clone());
                writeln!(f, "{v}")?;
            }
        }
        f.flush()?;
    }
    if let Some(e) = store_error {
        return Err(e.context(format!("storing the arena's answers in {} (run {run_id})", ctx.db_path.display())));
    }
    finished.with_context(|| format!("marking run {run_id} finished in {}", ctx.db_path.display()))?;
    println!(
        "stored as run {run_id} in {} ({answered} answers); see it with `fleetbench report {run_id}`",
        ctx.db_path.display()
    );
    let exit = if interrupted { ExitCode::from(crate::cmd::run::EXIT_INTERRUPTED) } else { ExitCode::SUCCESS };
    Ok(ArenaRun { exit, run_id })
}

/// Answers of every backend, by backend name; the mean prompt length; and
/// whether the run was interrupted (then only answered episodes are kept).
type Answers = (BTreeMap<String, Vec<EpisodeResult>>, f64, bool);

/// Builds each episode's window and prompt, asks the in-process operators
/// as it goes, then every HTTP backend at once. Each scored answer goes to
/// `sink` as soon as it is scored.
#[allow(clippy::too_many_arguments)]
async fn answer_all(
    a: &RunArgs,
    ctx: &Context,
    specs: &[BackendSpec],
    clients: Vec<(BackendSpec, fleetbench_client::Client)>,
    fleet: &Fleet,
    episodes: &[fleetbench_aiops::Episode],
    prom: Option<&PrometheusSource>,
    rate: Option<f64>,
    sink: Sink,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Answers> {
    let mut prepared = Vec::with_capacity(episodes.len());
    let mut results: BTreeMap<String, Vec<EpisodeResult>> = BTreeMap::new();
    let mut operators: Vec<(String, Box<dyn fleetbench_aiops::Operator>)> = specs
        .iter()
        .filter_map(|s| s.builtin.as_deref().and_then(|b| builtin(b, a.seed)).map(|op| (s.name.clone(), op)))
        .collect();
    let mut prompt_chars = Vec::new();
    for ep in episodes {
        if *stop.borrow() {
            break;
        }
        let window = match prom {
            None => generated_window(fleet, ep),
            Some(p) => {
                let log = ep
                    .xids
                    .iter()
                    .filter(|x| x.t >= ep.start && x.t < ep.end)
                    .map(|x| fleetbench_aiops::telemetry::kernel_log_line(fleet, x))
                    .collect();
                p.fetch_window(fleet, &ep.id, ep.start, ep.end, log).await?
            }
        };
        let text = prompt::render(&window);
        prompt_chars.push(text.len() as f64);
        for (name, op) in operators.iter_mut() {
            let answer = op.diagnose(&OperatorInput { window: &window, prompt: &text });
            let r = EpisodeResult::scored(&ep.id, ep.scenario, &ep.truth, answer);
            sink.record(name, &r);
            results.entry(name.clone()).or_default().push(r);
        }
        prepared.push(Prepared { id: ep.id.clone(), scenario: ep.scenario, truth: ep.truth.clone(), prompt: text });
    }
    let mean_chars = prompt_chars.iter().sum::<f64>() / prompt_chars.len().max(1) as f64;
    if !ctx.quiet {
        eprintln!(
            "{} episodes on a {}-GPU fleet (seed {}); prompt mean {:.0} chars (~{:.0} tokens)",
            prepared.len(),
            fleet.gpu_count(),
            a.seed,
            mean_chars,
            mean_chars / 4.0
        );
    }

    // HTTP backends, all at once, each under its own concurrency limit.
    let prepared = Arc::new(prepared);
    let mut handles = Vec::new();
    let bars = if ctx.quiet {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    } else {
        indicatif::MultiProgress::new()
    };
    let style = indicatif::ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    for (spec, client) in clients {
        let prepared = prepared.clone();
        let bar = bars.add(indicatif::ProgressBar::new(prepared.len() as u64));
        bar.set_style(style.clone());
        bar.set_prefix(spec.name.clone());
        let (sink, stop) = (sink.clone(), stop.clone());
        handles
            .push(tokio::spawn(async move { run_http_backend(client, spec, prepared, rate, bar, sink, stop).await }));
    }
    drop(sink);
    for h in handles {
        let (name, rows) = h.await.map_err(|e| anyhow!("backend task failed: {e}"))?;
        results.insert(name, rows);
    }
    let interrupted = *stop.borrow();
    Ok((results, mean_chars, interrupted))
}

/// The run row of one `aiops run`: the backends (URLs without credentials,
/// never keys), the episode stream and the fleet.
fn arena_meta(a: &RunArgs, specs: &[BackendSpec], rate: Option<f64>, gpus: usize) -> RunMeta {
    let http: Vec<&BackendSpec> = specs.iter().filter(|s| s.url.is_some()).collect();
    let backends: Vec<serde_json::Value> = specs
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "builtin": s.builtin,
                "url": s.url.as_deref().map(redact_url),
                "model": s.model,
                "api": s.url.as_ref().map(|_| api_kind(s).as_str()),
                "concurrency": s.url.as_ref().map(|_| s.concurrency),
                "max_tokens": s.url.as_ref().map(|_| s.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
                "temperature": s.url.as_ref().map(|_| s.temperature.unwrap_or(0.0)),
                "price_input_per_mtok": s.price_input_per_mtok,
                "price_output_per_mtok": s.price_output_per_mtok,
                "price": s.price,
            })
        })
        .map(without_nulls)
        .collect();
    // Not `gpus` or `concurrency` at the top: the report reads those keys as
    // the hardware measured and the point's concurrency.
    let config = serde_json::json!({
        "kind": "aiops-arena",
        "episodes": a.episodes,
        "seed": a.seed,
        "fleet_gpus": gpus,
        "rate_per_s": rate,
        "telemetry": a.telemetry.as_deref().map(|t| t.strip_prefix("prometheus=").map(redact_url).unwrap_or_else(|| redact_url(t))),
        "timeout_s": a.timeout,
        "backends": backends,
    });
    let mut apis: Vec<&str> = http.iter().map(|s| api_kind(s).as_str()).collect();
    apis.sort_unstable();
    apis.dedup();
    let mut urls: Vec<String> = http.iter().filter_map(|s| s.url.as_deref().map(redact_url)).collect();
    urls.dedup();
    let pacing = match rate {
        Some(r) => format!("episodes paced at {r:.3}/s"),
        None => "episodes sent as fast as answered".into(),
    };
    let schedule = if http.is_empty() {
        "built-in operators in process, one episode after another".to_string()
    } else {
        let limits: Vec<String> = http.iter().map(|s| format!("{} concurrency {}", s.name, s.concurrency)).collect();
        format!("{pacing}; {}", limits.join(", "))
    };
    let backend = crate::measure::RunBackend {
        url: if urls.is_empty() { "in-process".into() } else { urls.join(", ") },
        model: specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(","),
        api: if apis.is_empty() { "builtin".into() } else { apis.join(",") },
    };
    let workload = format!("aiops-arena: {} episodes, {gpus} GPUs, seed {}", a.episodes, a.seed);
    crate::measure::run_meta(backend, workload, schedule, config, None)
}

/// An object with its null fields left out.
fn without_nulls(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    v
}

/// Marks a run failed; the error that caused it is what the caller reports.
fn finish_failed(store: &Store, run_id: i64) {
    if let Err(e) = store.finish_run(run_id, RunStatus::Failed, &rfc3339(SystemTime::now()), None) {
        eprintln!("warning: could not mark run {run_id} failed: {e}");
    }
}

enum WriterMsg {
    Answer(String, Box<EpisodeResult>),
    Close,
}

/// Stores each scored answer as an `answer` artifact on a thread of its
/// own, so neither the operators nor the HTTP collectors wait on SQLite.
struct AnswerWriter {
    tx: std::sync::mpsc::Sender<WriterMsg>,
    handle: std::thread::JoinHandle<anyhow::Result<usize>>,
}

impl AnswerWriter {
    fn start(db: &std::path::Path, run_id: i64) -> anyhow::Result<AnswerWriter> {
        let store = Store::open(db)?;
        let (tx, rx) = std::sync::mpsc::channel::<WriterMsg>();
        let handle = std::thread::Builder::new()
            .name("fleetbench-answers".into())
            .spawn(move || {
                let mut written = 0usize;
                let mut failure: Option<anyhow::Error> = None;
                // Ends on Close, or when every sender is gone.
                while let Ok(WriterMsg::Answer(backend, r)) = rx.recv() {
                    if failure.is_some() {
                        continue;
                    }
                    let name = format!("{backend}/{}", r.episode_id);
                    match store.put_artifact(run_id, KIND_ANSWER, &name, &r.answer_artifact(&backend)) {
                        Ok(()) => written += 1,
                        Err(e) => failure = Some(anyhow::Error::new(e).context(format!("storing answer {name}"))),
                    }
                }
                failure.map_or(Ok(written), Err)
            })
            .context("starting the answer writer thread")?;
        Ok(AnswerWriter { tx, handle })
    }

    fn sender(&self) -> std::sync::mpsc::Sender<WriterMsg> {
        self.tx.clone()
    }

    /// Waits until every answer sent so far is stored; returns how many.
    async fn finish(self) -> anyhow::Result<usize> {
        let _ = self.tx.send(WriterMsg::Close);
        let handle = self.handle;
        tokio::task::spawn_blocking(move || handle.join())
            .await
            .map_err(|e| anyhow!("answer writer: {e}"))?
            .map_err(|_| anyhow!("the answer writer thread panicked"))?
    }
}

/// Where each scored answer goes: the database, and the live dashboard
/// when one is served.
#[derive(Clone)]
struct Sink {
    writer: std::sync::mpsc::Sender<WriterMsg>,
    live: Option<Arc<LiveTally>>,
}

impl Sink {
    fn record(&self, backend: &str, r: &EpisodeResult) {
        // A failed writer reports its error when finished.
        let _ = self.writer.send(WriterMsg::Answer(backend.to_string(), Box::new(r.clone())));
        if let Some(l) = &self.live {
            l.record(backend, r);
        }
    }
}

/// Running figures of one backend for the dashboard.
#[derive(Default)]
struct BackendTally {
    scores: Vec<f64>,
    sum: f64,
    failed: u64,
    ci: Option<fleetbench_core::stats::Interval>,
    /// Scenario table key -> (sum, n).
    scenarios: BTreeMap<&'static str, (f64, u64)>,
}

#[derive(Default)]
struct TallyState {
    /// In the order backends first answered.
    backends: Vec<(String, BackendTally)>,
    last_ci: Option<std::time::Instant>,
}

/// The arena's live run: counts and means follow every answer; the
/// bootstrap intervals are recomputed at most every [`LIVE_CI_EVERY`], and
/// only while a browser watches.
struct LiveTally {
    run: LiveRun,
    started: std::time::Instant,
    state: std::sync::Mutex<TallyState>,
}

impl LiveTally {
    fn new(run: LiveRun) -> LiveTally {
        LiveTally { run, started: std::time::Instant::now(), state: std::sync::Mutex::new(TallyState::default()) }
    }

    fn record(&self, backend: &str, r: &EpisodeResult) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let i = match st.backends.iter().position(|(n, _)| n == backend) {
            Some(i) => i,
            None => {
                st.backends.push((backend.to_string(), BackendTally::default()));
                st.backends.len() - 1
            }
        };
        {
            let b = &mut st.backends[i].1;
            b.scores.push(r.score.total);
            b.sum += r.score.total;
            b.failed += u64::from(r.error.is_some());
            let e = b.scenarios.entry(r.scenario.table_key()).or_default();
            e.0 += r.score.total;
            e.1 += 1;
        }
        if self.run.watched() && st.last_ci.is_none_or(|t| t.elapsed() >= LIVE_CI_EVERY) {
            st.last_ci = Some(std::time::Instant::now());
            for (_, b) in st.backends.iter_mut() {
                b.ci = fleetbench_core::stats::mean_ci(&b.scores);
            }
        }
        let rows = live_rows(&st.backends);
        let scenarios = live_scenarios(&st.backends);
        drop(st);
        let text: String = r.answer.chars().take(LIVE_ANSWER_CHARS).collect();
        let elapsed = self.started.elapsed().as_secs_f64();
        self.run.update(|s| {
            match &r.error {
                Some(e) => {
                    s.failed += 1;
                    *s.errors.entry(e.clone()).or_default() += 1;
                    s.last_error = Some(format!("{backend}: {e}"));
                }
                None => s.done += 1,
            }
            s.last_answer = Some(text);
            s.elapsed_s = elapsed;
            s.leaderboard = rows;
            s.scenarios = scenarios;
        });
    }

    /// The end: the leaderboard with its final intervals, and the state.
    fn publish_final(&self, boards: &[fleetbench_aiops::Leaderboard], state: LiveState) {
        let mut rows: Vec<LeaderboardRow> = boards
            .iter()
            .filter(|b| b.episodes > 0)
            .map(|b| LeaderboardRow {
                backend: b.name.clone(),
                score: b.mean_score,
                ci_lo: b.ci95.map(|c| c.lo),
                ci_hi: b.ci95.map(|c| c.hi),
                answered: (b.episodes - b.failed_requests) as u64,
                failed: b.failed_requests as u64,
            })
            .collect();
        rows.sort_by(|x, y| y.score.total_cmp(&x.score));
        let scenarios = fleetbench_aiops::Scenario::ALL
            .iter()
            .map(|sc| ScenarioRow {
                scenario: sc.table_key().to_string(),
                scores: boards
                    .iter()
                    .filter_map(|b| b.per_scenario.get(sc.table_key()).map(|r| (b.name.clone(), r.mean_score)))
                    .collect(),
            })
            .filter(|r| !r.scores.is_empty())
            .collect();
        let elapsed = self.started.elapsed().as_secs_f64();
        self.run.update(|s| {
            s.leaderboard = rows;
            s.scenarios = scenarios;
            s.elapsed_s = elapsed;
        });
        self.run.finish(state);
    }
}

fn live_rows(backends: &[(String, BackendTally)]) -> Vec<LeaderboardRow> {
    let mut rows: Vec<LeaderboardRow> = backends
        .iter()
        .map(|(name, b)| LeaderboardRow {
            backend: name.clone(),
            score: b.sum / b.scores.len().max(1) as f64,
            ci_lo: b.ci.map(|c| c.lo),
            ci_hi: b.ci.map(|c| c.hi),
            answered: b.scores.len() as u64 - b.failed,
            failed: b.failed,
        })
        .collect();
    rows.sort_by(|x, y| y.score.total_cmp(&x.score));
    rows
}

fn live_scenarios(backends: &[(String, BackendTally)]) -> Vec<ScenarioRow> {
    fleetbench_aiops::Scenario::ALL
        .iter()
        .map(|sc| ScenarioRow {
            scenario: sc.table_key().to_string(),
            scores: backends
                .iter()
                .filter_map(|(name, b)| {
                    b.scenarios.get(sc.table_key()).map(|(sum, n)| (name.clone(), sum / (*n).max(1) as f64))
                })
                .collect(),
        })
        .filter(|r| !r.scores.is_empty())
        .collect()
}

/// Answer length asked of HTTP backends unless their entry says otherwise.
const DEFAULT_MAX_TOKENS: u32 = 512;

fn api_kind(spec: &BackendSpec) -> ApiKind {
    match spec.api.unwrap_or(Api::Chat) {
        Api::Chat => ApiKind::Chat,
        Api::Completions => ApiKind::Completions,
        Api::Anthropic => ApiKind::Anthropic,
    }
}

fn http_client(spec: &BackendSpec, timeout_s: u64) -> anyhow::Result<fleetbench_client::Client> {
    let url = spec.url.clone().unwrap_or_default();
    let api = api_kind(spec);
    let mut cfg = fleetbench_client::ClientConfig::new(url, api, spec.model.clone().unwrap_or_default());
    cfg.keep_output_text = true;
    cfg.max_body_bytes = 4 << 20;
    cfg.timeouts.total = Some(Duration::from_secs(timeout_s.max(1)));
    if let Some(var) = &spec.api_key_env {
        cfg.api_key = Some(
            fleetbench_client::ApiKey::from_env(var)
                .ok_or_else(|| anyhow!("backend '{}': environment variable {var} is not set", spec.name))?,
        );
    }
    fleetbench_client::Client::new(cfg).map_err(|e| anyhow!("backend '{}': {e}", spec.name))
}

/// Sends every prepared episode to one HTTP backend (paced by `rate`, at
/// most its concurrency in flight) and scores each answer as it arrives.
/// After `stop` only the episodes answered so far are returned.
async fn run_http_backend(
    client: fleetbench_client::Client,
    spec: BackendSpec,
    prepared: Arc<Vec<Prepared>>,
    rate: Option<f64>,
    bar: indicatif::ProgressBar,
    sink: Sink,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (String, Vec<EpisodeResult>) {
    let clock = RunClock::start();
    let sem = Arc::new(tokio::sync::Semaphore::new(spec.concurrency.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let feeder = {
        let prepared = prepared.clone();
        let spec = spec.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            for (i, p) in prepared.iter().enumerate() {
                let planned = rate.map(|r| i as f64 / r);
                if let Some(t) = planned {
                    let due = tokio::time::sleep_until(tokio::time::Instant::from_std(clock.instant_at(t)));
                    tokio::select! {
                        _ = due => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
                let permit = tokio::select! {
                    p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = stop.wait_for(|s| *s) => break,
                };
                if *stop.borrow() {
                    break;
                }
                let req = RequestSpec {
                    id: p.id.clone(),
                    prompt: Prompt::Messages(vec![ChatMessage { role: "user".into(), content: p.prompt.clone() }]),
                    sampling: SamplingParams {
                        max_tokens: Some(spec.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
                        temperature: Some(spec.temperature.unwrap_or(0.0)),
                        ignore_eos: false,
                        seed: Some(7),
                    },
                    expected_input_tokens: None,
                    label: Some(p.scenario.id().to_string()),
                };
                let t_sched = planned.unwrap_or_else(|| clock.now());
                let (client, tx) = (client.clone(), tx.clone());
                tokio::spawn(async move {
                    let rec = client.send(&req, &clock, t_sched).await;
                    drop(permit);
                    let _ = tx.send((i, rec));
                });
            }
        })
    };
    let mut rows: Vec<Option<EpisodeResult>> = vec![None; prepared.len()];
    let (mut sum, mut n, mut unparseable) = (0.0, 0usize, 0usize);
    while n < prepared.len() {
        let received = tokio::select! {
            r = rx.recv() => r,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some((i, rec)) = received else { break };
        let p = &prepared[i];
        let mut r = EpisodeResult::scored(&p.id, p.scenario, &p.truth, rec.output_text.clone().unwrap_or_default());
        r.ttft_s = rec.ttft();
        r.e2el_s = rec.e2el();
        r.input_tokens = rec.input_tokens;
        r.output_tokens = Some(rec.output_tokens);
        r.error = rec.error.as_ref().map(|e| e.label());
        sink.record(&spec.name, &r);
        sum += r.score.total;
        n += 1;
        unparseable += usize::from(r.score.unparseable);
        bar.inc(1);
        bar.set_message(format!(
            "mean score {:.1}, unparseable {:.0}%",
            sum / n as f64,
            100.0 * unparseable as f64 / n as f64
        ));
        rows[i] = Some(r);
    }
    let interrupted = *stop.borrow();
    if interrupted {
        // Requests still in flight are abandoned with the process.
        feeder.abort();
    }
    let _ = feeder.await;
    bar.finish();
    let rows = if interrupted {
        rows.into_iter().flatten().collect()
    } else {
        rows.into_iter()
            .zip(prepared.iter())
            .map(|(r, p)| {
                r.unwrap_or_else(|| {
                    let mut r = EpisodeResult::scored(&p.id, p.scenario, &p.truth, String::new());
                    r.error = Some("request task failed".into());
                    sink.record(&spec.name, &r);
                    r
                })
            })
            .collect()
    };
    (spec.name.clone(), rows)
}

/// The price sheet, loaded only when a backend names an entry in it; every
/// named entry must exist (checked before any work).
fn price_sheet(a: &RunArgs, specs: &[BackendSpec]) -> anyhow::Result<Option<PriceSheet>> {
    if specs.iter().all(|s| s.price.is_none()) {
        if a.prices.is_some() {
            bail!("--prices given, but no backend names a price entry (add price = \"NAME\" to its [[backend]])");
        }
        return Ok(None);
    }
    let sheet = match &a.prices {
        Some(p) => PriceSheet::load(p)?,
        None => PriceSheet::presets()?,
    };
    for s in specs {
        if let Some(name) = &s.price {
            sheet.find(name).with_context(|| format!("backend '{}'", s.name))?;
        }
    }
    Ok(Some(sheet))
}

/// What each priced backend costs: `usd_per_million_output_tokens` and
/// `usd_per_request` (per diagnosis) from the arena's own usage,
/// `usd_per_day` for a stream at `--rate`, and `usd_multiplier_vs_cheapest`
/// per diagnosis. A backend's inline `price_*_per_mtok` is an API price; a
/// named entry may be rented or owned, billed for the arena's wall time.
fn arena_costs(
    specs: &[BackendSpec],
    results: &BTreeMap<String, Vec<EpisodeResult>>,
    sheet: Option<&PriceSheet>,
    rate: Option<f64>,
    wall_s: f64,
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let entry = match (&spec.price, sheet, spec.price()) {
            (Some(name), Some(sheet), _) => sheet.find(name).ok().cloned(),
            (None, _, Some(p)) => Some(PriceEntry {
                name: spec.name.clone(),
                model: PriceModel::Api(fleetbench_econ::price::ApiPrice {
                    usd_per_m_input: p.input_per_mtok,
                    usd_per_m_cached_input: None,
                    usd_per_m_output: p.output_per_mtok,
                    requests_per_minute: None,
                    tokens_per_minute: None,
                    batch_discount: 0.0,
                }),
                source: Some("backends file".into()),
            }),
            _ => None,
        };
        let Some(entry) = entry else { continue };
        let rows = results.get(&spec.name).map(Vec::as_slice).unwrap_or(&[]);
        let answered: Vec<&EpisodeResult> = rows.iter().filter(|r| r.error.is_none()).collect();
        let input: u64 = answered.iter().filter_map(|r| r.input_tokens).sum();
        let output: u64 = answered.iter().filter_map(|r| r.output_tokens).sum();
        let usage = Usage {
            requests: answered.len() as u64,
            input_tokens: input,
            cached_input_tokens: 0,
            output_tokens: output,
            wall_s,
            mean_power_w: None,
            batch_api: false,
        };
        let mut v = match fleetbench_econ::cost_figures(&entry, &usage) {
            Ok(usd) => serde_json::Value::Object(usd),
            Err(e) => serde_json::json!({ "cost_error": e.to_string() }),
        };
        v["backend"] = serde_json::json!(spec.name);
        v["price_entry"] = serde_json::json!(entry.name);
        v["price_kind"] = serde_json::json!(entry.kind().as_str());
        if let (Some(r), false) = (rate, answered.is_empty()) {
            let n = answered.len() as f64;
            let stream = StreamRate {
                requests_per_day: r * 86_400.0,
                input_tokens_per_request: input as f64 / n,
                cached_input_tokens_per_request: 0.0,
                output_tokens_per_request: output as f64 / n,
            };
            let measured = (wall_s > 0.0 && output > 0).then(|| Throughput::OutputTokensPerS(output as f64 / wall_s));
            match entry.usd_per_day(&stream, measured, None, false) {
                Ok(d) => v["usd_per_day"] = serde_json::json!(d),
                Err(e) => v["cost_error"] = serde_json::json!(e.to_string()),
            }
        }
        out.insert(spec.name.clone(), v);
    }
    let per_request: Vec<f64> = out.values().map(|v| v["usd_per_request"].as_f64().unwrap_or(f64::NAN)).collect();
    for (v, m) in out.values_mut().zip(multipliers_vs_cheapest(&per_request)) {
        v["usd_multiplier_vs_cheapest"] = serde_json::json!(m.is_finite().then_some(m));
    }
    out
}

fn print_costs(specs: &[BackendSpec], costs: &BTreeMap<String, serde_json::Value>, rate: Option<f64>) {
    if costs.is_empty() {
        return;
    }
    println!();
    println!("cost{}:", rate.map(|r| format!(" (per day at {:.0} episodes a day)", r * 86_400.0)).unwrap_or_default());
    for spec in specs {
        let Some(c) = costs.get(&spec.name) else { continue };
        let money =
            |k: &str, digits: usize| c[k].as_f64().map(|x| format!("${x:.digits$}")).unwrap_or_else(|| "-".into());
        println!(
            "  {:<18} {} per diagnosis, {} per million output tokens{}{}{}",
            spec.name,
            money("usd_per_request", 5),
            money("usd_per_million_output_tokens", 2),
            c["usd_per_day"].as_f64().map(|d| format!(", ${d:.2} per day")).unwrap_or_default(),
            c["usd_multiplier_vs_cheapest"].as_f64().map(|m| format!(", {m:.1}x the cheapest")).unwrap_or_default(),
            c["cost_error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbench_aiops::Scenario;

    fn result(id: &str, scenario: Scenario, answer: String, error: Option<&str>) -> EpisodeResult {
        let truth = fleetbench_aiops::diagnosis::validate(&serde_json::json!({
            "detected": false, "root_cause": "none", "location": null, "onset": null, "action": "NONE", "evidence": []
        }))
        .expect("truth");
        let mut r = EpisodeResult::scored(id, scenario, &truth, answer);
        r.error = error.map(str::to_string);
        r
    }

    #[test]
    fn the_live_tally_counts_ranks_and_finishes() {
        let bus = fleetbench_dash::LiveBus::new();
        let tally =
            LiveTally::new(bus.start(LiveRunInfo { kind: "aiops".into(), total: Some(4), ..Default::default() }));
        let good = r#"{"detected": false, "root_cause": "none", "location": null, "onset": null, "action": "NONE", "evidence": []}"#;
        tally.record("a", &result("e0", Scenario::Healthy, good.into(), None));
        tally.record("b", &result("e0", Scenario::Healthy, String::new(), Some("timeout_total")));
        tally.record("a", &result("e1", Scenario::DecoyOnly, "x".repeat(LIVE_ANSWER_CHARS + 50), None));
        let s = &bus.snapshots()[0];
        assert_eq!((s.done, s.failed), (2, 1));
        assert_eq!(s.errors.get("timeout_total"), Some(&1));
        assert_eq!(s.last_answer.as_ref().map(|a| a.chars().count()), Some(LIVE_ANSWER_CHARS));
        let names: Vec<&str> = s.leaderboard.iter().map(|r| r.backend.as_str()).collect();
        assert_eq!(names, ["a", "b"], "best first");
        assert_eq!((s.leaderboard[0].answered, s.leaderboard[0].failed), (2, 0));
        assert_eq!((s.leaderboard[1].answered, s.leaderboard[1].failed), (0, 1));
        assert_eq!(s.leaderboard[0].score, 50.0, "100 and an unparseable 0");
        let healthy = s.scenarios.iter().find(|r| r.scenario == "healthy").expect("healthy row");
        assert_eq!(healthy.scores.get("a"), Some(&100.0));
        assert_eq!(healthy.scores.get("b"), Some(&0.0));
        assert_eq!(s.leaderboard[0].ci_lo, None, "no interval is computed while nobody watches");

        let boards = vec![
            leaderboard("a", &[result("e0", Scenario::Healthy, good.into(), None)], None, None),
            leaderboard("b", &[], None, None),
        ];
        tally.publish_final(&boards, LiveState::Finished);
        let s = &bus.snapshots()[0];
        assert_eq!(s.state, LiveState::Finished);
        assert_eq!(s.leaderboard.len(), 1, "a backend without answers is not ranked");
        assert_eq!(s.leaderboard[0].ci_lo, boards[0].ci95.map(|c| c.lo));
    }

    #[test]
    fn run_rows_name_backends_without_secrets() {
        let mut http = BackendSpec::builtin("x");
        http.builtin = None;
        http.url = Some("https://user:s3cret@api.example.com/v1?key=abc".into());
        http.model = Some("m".into());
        http.api_key_env = Some("SECRET_KEY_VAR".into());
        http.concurrency = 3;
        let args = RunArgs {
            backends: String::new(),
            episodes: 5,
            seed: 9,
            gpus: 16,
            rate: Some("2/s".into()),
            json_out: None,
            answers_out: None,
            telemetry: None,
            timemap_from: None,
            timeout: 30,
            prices: None,
            dashboard: Default::default(),
        };
        let meta = arena_meta(&args, &[BackendSpec::builtin("rules"), http], Some(2.0), 16);
        let text = serde_json::to_string(&meta.config).expect("json");
        assert!(!text.contains("s3cret") && !text.contains("key=abc") && !text.contains("SECRET_KEY_VAR"), "{text}");
        assert_eq!(meta.backend_url, "https://api.example.com/v1");
        assert_eq!(meta.model, "rules,x");
        assert_eq!(meta.api, "chat");
        assert_eq!(meta.workload, "aiops-arena: 5 episodes, 16 GPUs, seed 9");
        assert!(meta.schedule.contains("x concurrency 3"), "{}", meta.schedule);
        assert_eq!(meta.config["backends"][0], serde_json::json!({"name": "rules", "builtin": "rules"}));
        assert!(meta.config.get("gpus").is_none() && meta.config.get("concurrency").is_none());
    }
}
