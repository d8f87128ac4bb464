//! `fleetbench aiops`: the AIOps arena. Generate fleet telemetry, serve it
//! live, run backends as operators over episodes, score answers, print the
//! diagnosis schema. The library does the work; this module wires and prints.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use fleetbench_aiops::backends::{parse_backends_toml, parse_builtin_list, Api, BackendSpec};
use fleetbench_aiops::exporter::{router, LiveFleet};
use fleetbench_aiops::leaderboard::{render_scenario_table, render_table, score_report};
use fleetbench_aiops::output::{generate, read_episodes, TelemetryFormat};
use fleetbench_aiops::prometheus::PrometheusSource;
use fleetbench_aiops::{
    builtin, generated_window, json_schema, leaderboard, plan_schedule, prompt, EpisodeResult, Fleet, OperatorInput,
};
use fleetbench_core::{ApiKind, ChatMessage, Prompt, RequestSpec, RunClock, SamplingParams};

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
        AiopsCommand::Run(a) => cmd_run(a, ctx).await,
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

pub(crate) async fn cmd_run(a: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
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

    // Windows, prompts and the in-process operators' answers.
    let mut prepared = Vec::with_capacity(episodes.len());
    let mut results: BTreeMap<String, Vec<EpisodeResult>> = BTreeMap::new();
    let mut operators: Vec<(String, Box<dyn fleetbench_aiops::Operator>)> = specs
        .iter()
        .filter_map(|s| s.builtin.as_deref().and_then(|b| builtin(b, a.seed)).map(|op| (s.name.clone(), op)))
        .collect();
    let mut prompt_chars = Vec::new();
    for ep in &episodes {
        let window = match &prom {
            None => generated_window(&fleet, ep),
            Some(p) => {
                let log = ep
                    .xids
                    .iter()
                    .filter(|x| x.t >= ep.start && x.t < ep.end)
                    .map(|x| fleetbench_aiops::telemetry::kernel_log_line(&fleet, x))
                    .collect();
                p.fetch_window(&fleet, &ep.id, ep.start, ep.end, log).await?
            }
        };
        let text = prompt::render(&window);
        prompt_chars.push(text.len() as f64);
        for (name, op) in operators.iter_mut() {
            let answer = op.diagnose(&OperatorInput { window: &window, prompt: &text });
            results.entry(name.clone()).or_default().push(EpisodeResult::scored(
                &ep.id,
                ep.scenario,
                &ep.truth,
                answer,
            ));
        }
        prepared.push(Prepared { id: ep.id.clone(), scenario: ep.scenario, truth: ep.truth.clone(), prompt: text });
    }
    let mean_chars = prompt_chars.iter().sum::<f64>() / prompt_chars.len().max(1) as f64;
    if !ctx.quiet {
        eprintln!(
            "{} episodes on a {}-GPU fleet (seed {}); prompt mean {:.0} chars (~{:.0} tokens)",
            episodes.len(),
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
    for spec in specs.iter().filter(|s| s.url.is_some()) {
        let client = http_client(spec, a.timeout)?;
        let prepared = prepared.clone();
        let spec = spec.clone();
        let bar = bars.add(indicatif::ProgressBar::new(prepared.len() as u64));
        bar.set_style(style.clone());
        bar.set_prefix(spec.name.clone());
        handles.push(tokio::spawn(async move { run_http_backend(client, spec, prepared, rate, bar).await }));
    }
    for h in handles {
        let (name, rows) = h.await.map_err(|e| anyhow!("backend task failed: {e}"))?;
        results.insert(name, rows);
    }

    let boards: Vec<_> = specs
        .iter()
        .map(|s| leaderboard(&s.name, results.get(&s.name).map(Vec::as_slice).unwrap_or(&[]), s.price(), rate))
        .collect();
    print!("{}", render_table(&boards));
    println!();
    print!("{}", render_scenario_table(&boards));
    for b in &boards {
        if let (Some(c), Some(d)) = (b.cost_per_diagnosis, b.cost_per_day) {
            println!("{}: ${c:.5} per diagnosis, ${d:.2} per day at the stream rate", b.name);
        }
    }
    if let Some(path) = &a.json_out {
        let doc = serde_json::json!({
            "episodes": episodes.len(),
            "seed": a.seed,
            "gpus": fleet.gpu_count(),
            "mean_prompt_chars": mean_chars,
            "backends": boards,
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
    Ok(ExitCode::SUCCESS)
}

fn http_client(spec: &BackendSpec, timeout_s: u64) -> anyhow::Result<fleetbench_client::Client> {
    let url = spec.url.clone().unwrap_or_default();
    let api = match spec.api.unwrap_or(Api::Chat) {
        Api::Chat => ApiKind::Chat,
        Api::Completions => ApiKind::Completions,
        Api::Anthropic => ApiKind::Anthropic,
    };
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

async fn run_http_backend(
    client: fleetbench_client::Client,
    spec: BackendSpec,
    prepared: Arc<Vec<Prepared>>,
    rate: Option<f64>,
    bar: indicatif::ProgressBar,
) -> (String, Vec<EpisodeResult>) {
    let clock = RunClock::start();
    let sem = Arc::new(tokio::sync::Semaphore::new(spec.concurrency.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let feeder = {
        let prepared = prepared.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            for (i, p) in prepared.iter().enumerate() {
                let planned = rate.map(|r| i as f64 / r);
                if let Some(t) = planned {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(clock.instant_at(t))).await;
                }
                let Ok(permit) = sem.clone().acquire_owned().await else { break };
                let req = RequestSpec {
                    id: p.id.clone(),
                    prompt: Prompt::Messages(vec![ChatMessage { role: "user".into(), content: p.prompt.clone() }]),
                    sampling: SamplingParams {
                        max_tokens: Some(spec.max_tokens.unwrap_or(512)),
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
        let Some((i, rec)) = rx.recv().await else { break };
        let p = &prepared[i];
        let mut r = EpisodeResult::scored(&p.id, p.scenario, &p.truth, rec.output_text.clone().unwrap_or_default());
        r.ttft_s = rec.ttft();
        r.e2el_s = rec.e2el();
        r.input_tokens = rec.input_tokens;
        r.output_tokens = Some(rec.output_tokens);
        r.error = rec.error.as_ref().map(|e| e.label());
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
    let _ = feeder.await;
    bar.finish();
    let rows = rows
        .into_iter()
        .zip(prepared.iter())
        .map(|(r, p)| {
            r.unwrap_or_else(|| {
                let mut r = EpisodeResult::scored(&p.id, p.scenario, &p.truth, String::new());
                r.error = Some("request task failed".into());
                r
            })
        })
        .collect();
    (spec.name.clone(), rows)
}
