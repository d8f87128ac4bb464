//! The arena run (`fleetbench aiops run`, and the demo's arena): build each
//! episode's window and prompt, ask the in-process operators as it goes,
//! then send every prompt to every HTTP backend through the load engine
//! (the one request path of measured runs: timing, retries, error taxonomy,
//! open-loop pacing), score each answer as it arrives, and store the run:
//! its row, every answer, the HTTP request records, the leaderboard and the
//! costs. Nothing here prints; progress goes to an [`ArenaObserver`].

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fleetbench_client::{ApiKey, Client, ClientConfig};
use fleetbench_core::run::redact_url;
use fleetbench_core::units::rfc3339;
use fleetbench_core::{ApiKind, ChatMessage, Prompt, RequestSpec, RunClock, RunMeta, RunStatus, SamplingParams};
use fleetbench_econ::arena::{arena_costs, inline_api_entry, price_sheet, ArenaCost, ArenaPriceError, ArenaUsage};
use fleetbench_econ::records::CostRecord;
use fleetbench_econ::PriceSheet;
use fleetbench_load::live::{LiveBus, LiveRunInfo, LiveState};
use fleetbench_load::measure::InFlight;
use fleetbench_load::{Arrival, RunPlan, Schedule, StopCondition, Workload};
use fleetbench_store::records::arena::ARENA_RUN_KIND;
use fleetbench_store::{AnswerWriter, Db, RecordWriter, Store, StoreError};
use tokio::sync::{mpsc, watch};

use crate::backends::BackendSpec;
use crate::leaderboard::{leaderboard, EpisodeResult, Leaderboard, LiveTally};
use crate::prometheus::{fetch_timemap, PrometheusSource};
use crate::{
    builtin, generated_window, plan_schedule, prompt, AiopsError, Diagnosis, Episode, Fleet, OperatorInput, Scenario,
};

/// Answer length asked of HTTP backends unless their entry says otherwise.
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// Sampling seed sent with every HTTP request.
const SAMPLING_SEED: u64 = 7;

/// Windows from a Prometheus API instead of the generator.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The Prometheus base URL (`http://host:9090`).
    pub prometheus: String,
    /// An exporter whose `/timemap` maps fleet time to wall time.
    pub timemap_from: Option<String>,
}

/// Everything an arena run is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct ArenaConfig {
    /// The backends, in leaderboard order.
    pub backends: Vec<BackendSpec>,
    pub episodes: usize,
    pub seed: u64,
    /// Fleet size of each episode.
    pub gpus: usize,
    /// Episodes a second: HTTP requests arrive at this rate (open loop,
    /// at most each backend's concurrency in flight), and costs per day
    /// are for a stream at it. `None`: closed loop at each backend's
    /// concurrency.
    pub rate_per_s: Option<f64>,
    pub telemetry: Option<Telemetry>,
    /// Per-request timeout of HTTP backends.
    pub timeout: Duration,
    /// Price sheet for backends that name an entry (default: the presets).
    pub prices: Option<PathBuf>,
    /// Write every answer beside its truth and score (JSONL) here.
    pub answers_out: Option<PathBuf>,
}

impl Telemetry {
    /// From `--telemetry prometheus=URL` and `--timemap-from`.
    pub fn parse(arg: &str, timemap_from: Option<String>) -> Result<Telemetry, ArenaError> {
        let url = arg.strip_prefix("prometheus=").ok_or_else(|| ArenaError::TelemetryArg(arg.to_string()))?;
        Ok(Telemetry { prometheus: url.to_string(), timemap_from })
    }
}

/// An episode rate such as `2/s`, `30/min`, `100/h` or `5000/day` (a bare
/// number is per second), in episodes a second.
pub fn parse_rate(s: &str) -> Result<f64, ArenaError> {
    let bad = |why: &str| ArenaError::Rate(why.to_string());
    let (num, unit) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = num.trim().parse().map_err(|_| bad(&format!("--rate '{s}': expected e.g. 2/s, 30/min, 100/h")))?;
    let per = match unit.trim() {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" | "hour" => 3600.0,
        "d" | "day" => 86_400.0,
        other => return Err(bad(&format!("--rate unit '{other}': use s, min, h or day"))),
    };
    if !(n > 0.0 && n.is_finite()) {
        return Err(bad("--rate must be positive"));
    }
    Ok(n / per)
}

/// Errors of an arena run.
#[derive(Debug, thiserror::Error)]
pub enum ArenaError {
    #[error("--episodes must be at least 1")]
    NoEpisodes,
    #[error("--telemetry '{0}': expected prometheus=http://host:9090")]
    TelemetryArg(String),
    #[error("{0}")]
    Rate(String),
    #[error(transparent)]
    Prices(#[from] ArenaPriceError),
    #[error("backend '{backend}': environment variable {var} is not set")]
    ApiKey { backend: String, var: String },
    #[error("backend '{backend}': {message}")]
    Client { backend: String, message: String },
    #[error(transparent)]
    Aiops(#[from] AiopsError),
    #[error("reading the time map from {url}/timemap")]
    TimeMap {
        url: String,
        #[source]
        source: AiopsError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the arena stopped; run {run_id} keeps the answers scored before")]
    Stopped {
        run_id: i64,
        #[source]
        source: Box<ArenaError>,
    },
    #[error("storing the arena's answers in {db} (run {run_id})")]
    Storing {
        db: String,
        run_id: i64,
        #[source]
        source: Box<StoreError>,
    },
    #[error("marking run {run_id} finished in {db}")]
    Finishing {
        db: String,
        run_id: i64,
        #[source]
        source: Box<StoreError>,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the prompts came to, once every episode's window is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prepared {
    pub episodes: usize,
    pub fleet_gpus: usize,
    pub seed: u64,
    pub mean_prompt_chars: f64,
}

/// Where an HTTP backend stands: answers scored so far, their mean score
/// and the fraction that did not parse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackendProgress {
    pub answered: usize,
    pub episodes: usize,
    pub mean_score: f64,
    pub unparseable_rate: f64,
}

/// Progress of an arena run, for a terminal or nobody (`()`).
pub trait ArenaObserver: Send + Sync {
    /// Every prompt is built (the in-process operators have answered).
    fn prepared(&self, _p: &Prepared) {}
    /// An HTTP backend starts (nothing answered yet) or scored one more
    /// answer.
    fn progress(&self, _backend: &str, _p: &BackendProgress) {}
    /// An HTTP backend has answered (or was stopped).
    fn backend_finished(&self, _backend: &str) {}
}

impl ArenaObserver for () {}

/// What an arena run produced.
#[derive(Debug, Clone)]
pub struct ArenaOutcome {
    /// The run row holding every answer and the leaderboard.
    pub run_id: i64,
    pub status: RunStatus,
    /// Ctrl-C (the stop signal) ended it: only answered episodes are kept.
    pub interrupted: bool,
    /// One row per backend, in the config's order.
    pub boards: Vec<Leaderboard>,
    /// Priced backends' costs, by backend name.
    pub costs: BTreeMap<String, ArenaCost>,
    /// Answers stored, all backends together.
    pub answered: usize,
    pub mean_prompt_chars: f64,
    /// GPUs of the fleet each episode ran on.
    pub gpus: usize,
}

/// Runs the arena and stores it in the database at `db`. `meta` is the
/// run row's template (tool version, command line, host, start time, pid,
/// group); its backend, model, API, workload, schedule and config are
/// filled here. With `live`, the run shows on that dashboard bus. `stop`
/// turning true ends it early, keeping what was scored.
pub async fn run_arena(
    cfg: &ArenaConfig,
    db: &Db,
    meta: RunMeta,
    live: Option<&LiveBus>,
    observer: &dyn ArenaObserver,
    stop: watch::Receiver<bool>,
) -> Result<ArenaOutcome, ArenaError> {
    if cfg.episodes == 0 {
        return Err(ArenaError::NoEpisodes);
    }
    let named: Vec<(&str, &str)> =
        cfg.backends.iter().filter_map(|s| s.price.as_deref().map(|p| (s.name.as_str(), p))).collect();
    let sheet = price_sheet(&named, cfg.prices.as_deref())?;
    // Clients first, so that a missing API key fails before any work.
    let clients = cfg
        .backends
        .iter()
        .filter(|s| s.url.is_some())
        .map(|s| http_client(s, cfg.timeout).map(|c| (s, c)))
        .collect::<Result<Vec<_>, _>>()?;
    let fleet = Fleet::build(cfg.gpus, cfg.seed).map_err(AiopsError::from)?;
    let episodes = plan_schedule(&fleet, cfg.episodes, cfg.seed);
    let prom = match &cfg.telemetry {
        None => None,
        Some(t) => {
            let timemap = match &t.timemap_from {
                Some(u) => {
                    Some(fetch_timemap(u).await.map_err(|source| ArenaError::TimeMap { url: u.clone(), source })?)
                }
                None => None,
            };
            Some(PrometheusSource::new(&t.prometheus, timemap)?)
        }
    };

    let store = Store::connect(db)?;
    let started = Instant::now();
    let run_id = store.create_run(&arena_meta(cfg, fleet.gpu_count(), meta))?;
    let writers = AnswerWriter::start(db, run_id).and_then(|a| {
        let records = if clients.is_empty() { None } else { Some(RecordWriter::start(db, run_id)?) };
        Ok((a, records))
    });
    let (answers, records) = match writers {
        Ok(w) => w,
        Err(e) => {
            finish_failed(&store, run_id);
            return Err(e.into());
        }
    };
    let tally = live.map(|bus| {
        let models: Vec<&str> = cfg.backends.iter().filter_map(|s| s.model.as_deref()).collect();
        LiveTally::new(bus.start(LiveRunInfo {
            kind: "aiops".into(),
            title: format!(
                "run {run_id}: AIOps arena, {} episodes on a {}-GPU fleet (seed {})",
                episodes.len(),
                fleet.gpu_count(),
                cfg.seed
            ),
            backend: cfg.backends.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            model: if models.is_empty() { "built-in operators".into() } else { models.join(", ") },
            run_id: Some(run_id),
            total: Some((episodes.len() * cfg.backends.len()) as u64),
        }))
    });
    let sink = Sink { answers: &answers, records: records.as_ref(), live: tally.as_ref(), observer };
    let env = Env { cfg, fleet: &fleet, prom: prom.as_ref(), sink: &sink, stop, in_flight: InFlight::default() };
    let outcome = answer_all(&env, &episodes, clients).await;
    let interrupted = *env.stop.borrow();
    let stored = finish_writers(answers, records).await;
    let (results, mean_prompt_chars) = match outcome {
        Ok(o) => o,
        Err(e) => {
            finish_failed(&store, run_id);
            if let Some(t) = &tally {
                t.fail();
            }
            return Err(ArenaError::Stopped { run_id, source: Box::new(e) });
        }
    };

    let boards: Vec<Leaderboard> = cfg
        .backends
        .iter()
        .map(|s| {
            leaderboard(&s.name, results.get(&s.name).map(Vec::as_slice).unwrap_or(&[]), s.price(), cfg.rate_per_s)
        })
        .collect();
    let wall_s = started.elapsed().as_secs_f64();
    let costs = arena_costs(&usage(&cfg.backends, &results, sheet.as_ref()), cfg.rate_per_s, wall_s);
    if let Some(t) = &tally {
        t.publish_final(&boards, if interrupted { LiveState::Interrupted } else { LiveState::Finished });
    }

    // The leaderboard beside the answers, then the run's end.
    let mut store_error = stored.err();
    for (spec, board) in cfg.backends.iter().zip(&boards) {
        if store_error.is_some() {
            break;
        }
        let put = store_board(&store, run_id, spec, board, costs.get(&spec.name));
        if let Err(e) = put {
            store_error = Some(e);
        }
    }
    let status = match (&store_error, interrupted) {
        (Some(_), _) => RunStatus::Failed,
        (None, true) => RunStatus::Interrupted,
        (None, false) => RunStatus::Completed,
    };
    let answered: usize = results.values().map(Vec::len).sum();
    let summary = serde_json::json!({
        "kind": ARENA_RUN_KIND,
        "episodes": episodes.len(),
        "answers": answered,
        "failed": boards.iter().map(|b| b.failed_requests).sum::<usize>(),
        "duration": started.elapsed().as_secs_f64(),
        "backends": boards.iter().map(|b| serde_json::json!({"name": b.name, "mean_score": b.mean_score, "ci95": b.ci95})).collect::<Vec<_>>(),
    });
    let finished = store.finish_run(run_id, status, &rfc3339(SystemTime::now()), Some(&summary));
    let gpus = fleet.gpu_count();
    let outcome = ArenaOutcome { run_id, status, interrupted, boards, costs, answered, mean_prompt_chars, gpus };
    if let Some(path) = &cfg.answers_out {
        write_answers(path, &results)?;
    }
    if let Some(source) = store_error {
        return Err(ArenaError::Storing { db: db.to_string(), run_id, source: Box::new(source) });
    }
    finished.map_err(|source| ArenaError::Finishing { db: db.to_string(), run_id, source: Box::new(source) })?;
    Ok(outcome)
}

/// The cost lines under the leaderboard (empty when no backend is
/// priced), backends in the order of `boards`.
pub fn render_costs(boards: &[Leaderboard], costs: &BTreeMap<String, ArenaCost>, rate_per_s: Option<f64>) -> String {
    use std::fmt::Write as _;
    if costs.is_empty() {
        return String::new();
    }
    let per_day = rate_per_s.map(|r| format!(" (per day at {:.0} episodes a day)", r * 86_400.0)).unwrap_or_default();
    let mut s = format!("\ncost{per_day}:\n");
    for b in boards {
        let Some(c) = costs.get(&b.name) else { continue };
        let money = |x: Option<f64>, digits: usize| x.map(|x| format!("${x:.digits$}")).unwrap_or_else(|| "-".into());
        let f = c.figures.unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:<18} {} per diagnosis, {} per million output tokens{}{}{}",
            b.name,
            money(f.usd_per_request, 5),
            money(f.usd_per_million_output_tokens, 2),
            c.usd_per_day.map(|d| format!(", ${d:.2} per day")).unwrap_or_default(),
            c.usd_multiplier_vs_cheapest.map(|m| format!(", {m:.1}x the cheapest")).unwrap_or_default(),
            c.cost_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default(),
        );
    }
    s
}

/// Stores one backend's leaderboard row (with its cost keys) and, when it
/// is priced, its `cost` artifact.
fn store_board(
    store: &Store,
    run_id: i64,
    spec: &BackendSpec,
    board: &Leaderboard,
    cost: Option<&ArenaCost>,
) -> Result<(), StoreError> {
    store.put(run_id, &spec.name, &board.arena_artifact(spec.model.as_deref(), cost.cloned()))?;
    match cost {
        Some(c) => store.put(run_id, &spec.name, &CostRecord::arena(&spec.name, c)),
        None => Ok(()),
    }
}

impl ArenaOutcome {
    /// The `--json-out` document (docs/schemas/arena-run.json): the run, and
    /// each backend's leaderboard row with the keys of its `cost` record.
    pub fn json_doc(&self, cfg: &ArenaConfig) -> serde_json::Value {
        let o = self;
        serde_json::json!({
        "run_id": o.run_id,
        "status": o.status.as_str(),
        "episodes": cfg.episodes,
        "seed": cfg.seed,
        "gpus": o.gpus,
        "mean_prompt_chars": o.mean_prompt_chars,
        "backends": o.boards.iter().map(|b| {
            let mut v = serde_json::to_value(b).unwrap_or_default();
            let cost = o.costs.get(&b.name).map(|c| CostRecord::arena(&b.name, c));
            let cost = cost.and_then(|c| serde_json::to_value(c).ok());
            if let (Some(obj), Some(serde_json::Value::Object(c))) = (v.as_object_mut(), cost) {
                obj.extend(c);
            }
            v
        }).collect::<Vec<_>>(),
        })
    }
}

/// The `--answers-out` JSONL: every answer beside its truth and score.
fn write_answers(path: &Path, results: &BTreeMap<String, Vec<EpisodeResult>>) -> Result<(), ArenaError> {
    let err = |source| ArenaError::Write { path: path.to_path_buf(), source };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    for (name, rows) in results {
        for r in rows {
            let mut v = r.to_json();
            v["backend"] = serde_json::Value::String(name.clone());
            writeln!(f, "{v}").map_err(err)?;
        }
    }
    f.flush().map_err(err)
}

/// Each priced backend's price entry and usage: a named sheet entry, else
/// its inline API prices.
fn usage(
    specs: &[BackendSpec],
    results: &BTreeMap<String, Vec<EpisodeResult>>,
    sheet: Option<&PriceSheet>,
) -> Vec<ArenaUsage> {
    let mut out = Vec::new();
    for spec in specs {
        let price = match (&spec.price, sheet, spec.price()) {
            (Some(name), Some(sheet), _) => sheet.find(name).ok().cloned(),
            (None, _, Some(p)) => Some(inline_api_entry(&spec.name, p.input_per_mtok, p.output_per_mtok)),
            _ => None,
        };
        let Some(price) = price else { continue };
        let rows = results.get(&spec.name).map(Vec::as_slice).unwrap_or(&[]);
        let answered: Vec<&EpisodeResult> = rows.iter().filter(|r| r.error.is_none()).collect();
        out.push(ArenaUsage {
            backend: spec.name.clone(),
            price,
            answered: answered.len() as u64,
            input_tokens: answered.iter().filter_map(|r| r.input_tokens).sum(),
            output_tokens: answered.iter().filter_map(|r| r.output_tokens).sum(),
        });
    }
    out
}

/// Stops both writers once everything sent is stored.
async fn finish_writers(answers: AnswerWriter, records: Option<RecordWriter>) -> Result<(), StoreError> {
    let joined = tokio::task::spawn_blocking(move || {
        let a = answers.finish();
        let r = records.map(RecordWriter::finish).transpose();
        a.and(r).map(|_| ())
    })
    .await;
    joined.unwrap_or(Ok(()))
}

/// Marks a run failed; the error that caused it is what the caller reports.
fn finish_failed(store: &Store, run_id: i64) {
    let _ = store.finish_run(run_id, RunStatus::Failed, &rfc3339(SystemTime::now()), None);
}

/// Where each scored answer goes: the database, the live dashboard when
/// one is served, and the observer.
struct Sink<'a> {
    answers: &'a AnswerWriter,
    /// The HTTP backends' request records.
    records: Option<&'a RecordWriter>,
    live: Option<&'a LiveTally>,
    observer: &'a dyn ArenaObserver,
}

impl Sink<'_> {
    fn record(&self, backend: &str, r: &EpisodeResult) {
        // A failed writer reports its error when finished.
        let _ = self.answers.write(r.answer_artifact(backend));
        if let Some(l) = self.live {
            l.record(backend, r);
        }
    }
}

/// What every part of one run shares.
struct Env<'a> {
    cfg: &'a ArenaConfig,
    fleet: &'a Fleet,
    prom: Option<&'a PrometheusSource>,
    sink: &'a Sink<'a>,
    stop: watch::Receiver<bool>,
    /// The HTTP requests in flight, all backends together (the live charts).
    in_flight: InFlight,
}

/// How often the dashboard's in-flight figure is refreshed between answers.
const LIVE_TICK: Duration = Duration::from_millis(250);

/// One episode's prompt, ready to send.
struct PreparedEpisode {
    id: String,
    scenario: Scenario,
    truth: Diagnosis,
    prompt: String,
}

/// Answers of every backend, by backend name, and the mean prompt length.
type Answers = (BTreeMap<String, Vec<EpisodeResult>>, f64);

/// Builds each episode's window and prompt, asks the in-process operators
/// as it goes, then every HTTP backend at once. Each scored answer goes to
/// the sink as soon as it is scored.
async fn answer_all(
    env: &Env<'_>,
    episodes: &[Episode],
    clients: Vec<(&BackendSpec, Client)>,
) -> Result<Answers, ArenaError> {
    let mut prepared = Vec::with_capacity(episodes.len());
    let mut results: BTreeMap<String, Vec<EpisodeResult>> = BTreeMap::new();
    let mut operators: Vec<(String, Box<dyn crate::Operator>)> = env
        .cfg
        .backends
        .iter()
        .filter_map(|s| s.builtin.as_deref().and_then(|b| builtin(b, env.cfg.seed)).map(|op| (s.name.clone(), op)))
        .collect();
    let mut prompt_chars = 0.0;
    for ep in episodes {
        if *env.stop.borrow() {
            break;
        }
        let window = match env.prom {
            None => generated_window(env.fleet, ep),
            Some(p) => {
                let log = ep
                    .xids
                    .iter()
                    .filter(|x| x.t >= ep.start && x.t < ep.end)
                    .map(|x| crate::telemetry::kernel_log_line(env.fleet, x))
                    .collect();
                p.fetch_window(env.fleet, &ep.id, ep.start, ep.end, log).await?
            }
        };
        let text = prompt::render(&window);
        prompt_chars += text.len() as f64;
        for (name, op) in operators.iter_mut() {
            let answer = op.diagnose(&OperatorInput { window: &window, prompt: &text });
            let r = EpisodeResult::scored(&ep.id, ep.scenario, &ep.truth, answer);
            env.sink.record(name, &r);
            results.entry(name.clone()).or_default().push(r);
        }
        prepared.push(PreparedEpisode {
            id: ep.id.clone(),
            scenario: ep.scenario,
            truth: ep.truth.clone(),
            prompt: text,
        });
    }
    let mean_chars = prompt_chars / prepared.len().max(1) as f64;
    env.sink.observer.prepared(&Prepared {
        episodes: prepared.len(),
        fleet_gpus: env.fleet.gpu_count(),
        seed: env.cfg.seed,
        mean_prompt_chars: mean_chars,
    });

    // HTTP backends, all at once, each under its own concurrency limit, on
    // one clock.
    let prepared = Arc::new(prepared);
    let clock = RunClock::start();
    let runs = clients.into_iter().enumerate().map(|(k, (spec, client))| {
        let base = (k * prepared.len()) as u64;
        ask_backend(env, spec, client, prepared.clone(), base, clock)
    });
    for (name, rows) in futures_util::future::join_all(runs).await {
        results.insert(name, rows);
    }
    Ok((results, mean_chars))
}

/// The prepared prompts as a workload: request `i` is episode `i` (its id
/// the episode's, its label the scenario's id).
struct EpisodePrompts {
    episodes: Arc<Vec<PreparedEpisode>>,
}

impl Workload for EpisodePrompts {
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        // The plan asks for exactly one request per episode, in order.
        let p = &self.episodes[index as usize];
        RequestSpec {
            id: p.id.clone(),
            prompt: Prompt::Messages(vec![ChatMessage { role: "user".into(), content: p.prompt.clone() }]),
            sampling: sampling.clone(),
            expected_input_tokens: None,
            label: Some(p.scenario.id().to_string()),
            context: Default::default(),
        }
    }

    fn describe(&self) -> String {
        format!("aiops-arena: {} episode prompts", self.episodes.len())
    }

    fn distinct_requests(&self) -> Option<u64> {
        Some(self.episodes.len() as u64)
    }
}

/// Sends every prepared episode to one HTTP backend through the load
/// engine (closed loop at its concurrency, or arrivals at the arena's
/// rate with at most its concurrency in flight) and scores each answer as
/// its record arrives.
///
/// Several backends share one run, and the requests table is keyed by
/// (run, index): backend `k` (its position among the HTTP backends)
/// stores episode `i`'s record at index `base + i`, `base = k × episodes`.
/// After the stop signal only the episodes answered so far are returned.
async fn ask_backend(
    env: &Env<'_>,
    spec: &BackendSpec,
    client: Client,
    episodes: Arc<Vec<PreparedEpisode>>,
    base: u64,
    clock: RunClock,
) -> (String, Vec<EpisodeResult>) {
    let n = episodes.len();
    let concurrency = u32::try_from(spec.concurrency.max(1)).unwrap_or(u32::MAX);
    let plan = RunPlan {
        schedule: match env.cfg.rate_per_s {
            None => Schedule::Closed { concurrency },
            Some(rate) => Schedule::Open { rate, arrival: Arrival::Constant, max_concurrency: Some(concurrency) },
        },
        stop: StopCondition { requests: Some(n as u64), duration: None },
        warmup: 0,
        sampling: SamplingParams {
            max_tokens: Some(spec.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
            temperature: Some(spec.temperature.unwrap_or(0.0)),
            ignore_eos: false,
            seed: Some(SAMPLING_SEED),
        },
        seed: env.cfg.seed,
        arrivals: None,
        shard: None,
        ramp: None,
    };
    if n == 0 {
        return (spec.name.clone(), Vec::new());
    }
    let mut rows: Vec<Option<EpisodeResult>> = vec![None; n];
    let (tx, mut rx) = mpsc::unbounded_channel();
    let prompts: Arc<dyn Workload> = Arc::new(EpisodePrompts { episodes: episodes.clone() });
    let workload = env.in_flight.counting(prompts);
    let engine = fleetbench_load::run(&plan, &client, workload, clock, tx, env.stop.clone());
    let (mut sum, mut answered, mut unparseable) = (0.0, 0usize, 0usize);
    let start = BackendProgress { answered, episodes: n, mean_score: 0.0, unparseable_rate: 0.0 };
    env.sink.observer.progress(&spec.name, &start);
    let collect = async {
        let mut tick = tokio::time::interval(LIVE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut rec = tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
                _ = tick.tick(), if env.sink.live.is_some() => {
                    if let Some(l) = env.sink.live {
                        l.in_flight(clock.now(), env.in_flight.now(rx.len()));
                    }
                    continue;
                }
            };
            env.in_flight.received();
            let i = rec.index as usize;
            let Some(p) = episodes.get(i) else { continue };
            let mut r = EpisodeResult::scored(&p.id, p.scenario, &p.truth, rec.output_text.clone().unwrap_or_default());
            r.ttft_s = rec.ttft();
            r.e2el_s = rec.e2el();
            r.input_tokens = rec.input_tokens;
            r.output_tokens = Some(rec.output_tokens);
            r.error = rec.error.as_ref().map(|e| e.label());
            env.sink.record(&spec.name, &r);
            if let Some(l) = env.sink.live {
                l.timing(&rec);
            }
            (sum, answered) = (sum + r.score.total, answered + 1);
            unparseable += usize::from(r.score.unparseable);
            let progress = BackendProgress {
                answered,
                episodes: n,
                mean_score: sum / answered as f64,
                unparseable_rate: unparseable as f64 / answered as f64,
            };
            env.sink.observer.progress(&spec.name, &progress);
            rows[i] = Some(r);
            rec.index += base;
            if let Some(w) = env.sink.records {
                // A failed writer reports its error when finished.
                let _ = w.write(rec);
            }
        }
    };
    let (report, ()) = tokio::join!(engine, collect);
    env.sink.observer.backend_finished(&spec.name);
    let rows = if report.interrupted {
        rows.into_iter().flatten().collect()
    } else {
        rows.into_iter()
            .zip(episodes.iter())
            .map(|(r, p)| {
                r.unwrap_or_else(|| {
                    let mut r = EpisodeResult::scored(&p.id, p.scenario, &p.truth, String::new());
                    r.error = Some("request task failed".into());
                    env.sink.record(&spec.name, &r);
                    r
                })
            })
            .collect()
    };
    (spec.name.clone(), rows)
}

fn api_kind(spec: &BackendSpec) -> ApiKind {
    spec.api.unwrap_or(ApiKind::Chat)
}

fn http_client(spec: &BackendSpec, timeout: Duration) -> Result<Client, ArenaError> {
    let url = spec.url.clone().unwrap_or_default();
    let mut cfg = ClientConfig::new(url, api_kind(spec), spec.model.clone().unwrap_or_default());
    // The answer text is what gets scored.
    cfg.keep_output_text = true;
    cfg.max_body_bytes = 4 << 20;
    cfg.timeouts.total = Some(timeout.max(Duration::from_secs(1)));
    if let Some(var) = &spec.api_key_env {
        cfg.api_key = Some(
            ApiKey::from_env(var).ok_or_else(|| ArenaError::ApiKey { backend: spec.name.clone(), var: var.clone() })?,
        );
    }
    Client::new(cfg).map_err(|e| ArenaError::Client { backend: spec.name.clone(), message: e.to_string() })
}

/// The run row of one arena run, from the caller's template: the backends
/// (URLs without credentials, never keys), the episode stream and the fleet.
pub fn arena_meta(cfg: &ArenaConfig, gpus: usize, template: RunMeta) -> RunMeta {
    let specs = &cfg.backends;
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
        "kind": ARENA_RUN_KIND,
        "episodes": cfg.episodes,
        "seed": cfg.seed,
        "fleet_gpus": gpus,
        "rate_per_s": cfg.rate_per_s,
        "telemetry": cfg.telemetry.as_ref().map(|t| redact_url(&t.prometheus)),
        "timeout_s": cfg.timeout.as_secs(),
        "backends": backends,
    });
    let mut apis: Vec<&str> = http.iter().map(|s| api_kind(s).as_str()).collect();
    apis.sort_unstable();
    apis.dedup();
    let mut urls: Vec<String> = http.iter().filter_map(|s| s.url.as_deref().map(redact_url)).collect();
    urls.dedup();
    let pacing = match cfg.rate_per_s {
        Some(r) => format!("episodes paced at {r:.3}/s"),
        None => "episodes sent as fast as answered".into(),
    };
    let schedule = if http.is_empty() {
        "built-in operators in process, one episode after another".to_string()
    } else {
        let limits: Vec<String> = http.iter().map(|s| format!("{} concurrency {}", s.name, s.concurrency)).collect();
        format!("{pacing}; {}", limits.join(", "))
    };
    RunMeta {
        backend_url: if urls.is_empty() { "in-process".into() } else { urls.join(", ") },
        model: specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(","),
        api: if apis.is_empty() { "builtin".into() } else { apis.join(",") },
        workload: format!("aiops-arena: {} episodes, {gpus} GPUs, seed {}", cfg.episodes, cfg.seed),
        schedule,
        config,
        ..template
    }
}

/// An object with its null fields left out.
fn without_nulls(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_rows_name_backends_without_secrets() {
        let mut http = BackendSpec::builtin("x");
        http.builtin = None;
        http.url = Some("https://user:s3cret@api.example.com/v1?key=abc".into());
        http.model = Some("m".into());
        http.api_key_env = Some("SECRET_KEY_VAR".into());
        http.concurrency = 3;
        let cfg = ArenaConfig {
            backends: vec![BackendSpec::builtin("rules"), http],
            episodes: 5,
            seed: 9,
            gpus: 16,
            rate_per_s: Some(2.0),
            telemetry: None,
            timeout: Duration::from_secs(30),
            prices: None,
            answers_out: None,
        };
        let template = RunMeta {
            id: 0,
            tool_version: "v".into(),
            command_line: "fleetbench aiops run".into(),
            host: "h".into(),
            backend_url: String::new(),
            model: String::new(),
            api: String::new(),
            workload: String::new(),
            schedule: String::new(),
            started_at: "2026-01-01T00:00:00Z".into(),
            ended_at: None,
            status: RunStatus::Running,
            config: serde_json::Value::Null,
            pid: Some(1),
            group: None,
        };
        let meta = arena_meta(&cfg, 16, template);
        let text = serde_json::to_string(&meta.config).expect("json");
        assert!(!text.contains("s3cret") && !text.contains("key=abc") && !text.contains("SECRET_KEY_VAR"), "{text}");
        assert_eq!(meta.backend_url, "https://api.example.com/v1");
        assert_eq!(meta.model, "rules,x");
        assert_eq!(meta.api, "chat");
        assert_eq!(meta.workload, "aiops-arena: 5 episodes, 16 GPUs, seed 9");
        assert!(meta.schedule.contains("x concurrency 3"), "{}", meta.schedule);
        assert_eq!(meta.config["backends"][0], serde_json::json!({"name": "rules", "builtin": "rules"}));
        assert!(meta.config.get("gpus").is_none() && meta.config.get("concurrency").is_none());
        assert_eq!((meta.command_line.as_str(), meta.pid), ("fleetbench aiops run", Some(1)), "the template's fields");
    }
}
