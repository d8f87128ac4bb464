//! An investigate-mode arena run (`fleetbench aiops run --mode
//! investigate`): every backend investigates every episode through the
//! episode's tools (the built-ins in process, HTTP backends through
//! [`crate::agent::investigate`] at their `concurrency`), each outcome is
//! scored and stored as it comes (an `answer` artifact with the score items,
//! tool calls, tokens, wall time, how it ended and the whole transcript),
//! and the run ends with one leaderboard row per backend. Nothing here
//! prints; progress goes to an [`ArenaObserver`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fleetbench_client::{ApiKey, Client, ClientConfig};
use fleetbench_core::stats::Interval;
use fleetbench_core::units::rfc3339;
use fleetbench_core::{ApiKind, RunMeta, RunStatus};
use fleetbench_econ::arena::price_sheet;
use fleetbench_econ::PriceModel;
use fleetbench_load::exposition::LiveMetrics;
use fleetbench_load::live::{LiveBus, LiveRunInfo, LiveState};
use fleetbench_store::records::arena::{Answer, ArenaBackend, ArenaFloor, ARENA_RUN_KIND};
use fleetbench_store::{AnswerWriter, Db, Store};
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::baselines::{investigate_builtin, BUILTIN};
use super::bench::{best_constant, board, pages_per_day, score_investigation, EpisodeOutcome, InvestigateRun};
use super::live::InvestigateTally;
use super::promserver::PromBins;
use super::score::parse_submission;
use super::tools::{Budget, Ended, Investigation};
use super::world::World;
use super::EpisodeTools;
use crate::agent::{investigate, AgentConfig};
use crate::arena::{arena_meta, ArenaConfig, ArenaError, ArenaObserver, BackendProgress};
use crate::backends::BackendSpec;
use crate::leaderboard::Price;
use crate::AiopsError;

/// Output tokens asked for in one turn unless the backend's entry says otherwise.
pub const DEFAULT_MAX_TOKENS_PER_TURN: u32 = 1024;

/// Everything an investigate-mode run is asked to do.
#[derive(Debug, Clone)]
pub struct InvestigateConfig {
    /// The backends, in leaderboard order: built-in investigators
    /// (`rules`, `oracle`, `always-healthy`, `random`) or HTTP (`chat`,
    /// `anthropic`).
    pub backends: Vec<BackendSpec>,
    pub episodes: usize,
    pub seed: u64,
    /// What one investigation may spend.
    pub budget: Budget,
    /// Per-request timeout of HTTP backends.
    pub timeout: Duration,
    /// Price sheet for backends that name an entry (default: the presets).
    pub prices: Option<PathBuf>,
    /// Live figures of the HTTP backends' requests (in flight, completed,
    /// errors, tokens, latencies) for `--metrics-listen`.
    pub metrics: Option<Arc<LiveMetrics>>,
    /// A real Prometheus per episode for the PromQL tools (`--promql`);
    /// `None`: the embedded engine.
    pub promql: Option<PromBins>,
}

/// What an investigate-mode run produced.
#[derive(Debug, Clone)]
pub struct InvestigateOutcome {
    /// The run row holding every outcome and the leaderboard.
    pub run_id: i64,
    pub status: RunStatus,
    /// The stop signal ended it: only finished investigations are kept.
    pub interrupted: bool,
    pub run: InvestigateRun,
}

/// One HTTP backend, ready to investigate.
struct Http<'a> {
    spec: &'a BackendSpec,
    agent: AgentConfig,
}

/// Checks the backends and builds the HTTP ones' agent configs (a missing
/// API key or an API without tool calls fails before any work).
fn prepare(cfg: &InvestigateConfig) -> Result<(Vec<&BackendSpec>, Vec<Http<'_>>), ArenaError> {
    let invalid = |name: &str, why: String| ArenaError::Client { backend: name.to_string(), message: why };
    let (mut builtins, mut http) = (Vec::new(), Vec::new());
    for spec in &cfg.backends {
        match (&spec.builtin, &spec.url) {
            (Some(b), _) if BUILTIN.contains(&b.as_str()) => builtins.push(spec),
            (Some(b), _) => {
                return Err(invalid(
                    &spec.name,
                    format!("'{b}' is not a built-in investigator ({})", BUILTIN.join(", ")),
                ))
            }
            (None, Some(url)) => {
                let api = spec.api.unwrap_or(ApiKind::Chat);
                if api == ApiKind::Completions {
                    return Err(invalid(
                        &spec.name,
                        "investigate mode needs api = \"chat\" or \"anthropic\" (completions have no tool calls)"
                            .into(),
                    ));
                }
                let mut client = ClientConfig::new(url.clone(), api, spec.model.clone().unwrap_or_default());
                client.max_body_bytes = 4 << 20;
                client.timeouts.total = Some(cfg.timeout.max(Duration::from_secs(1)));
                if let Some(var) = &spec.api_key_env {
                    client.api_key = Some(
                        ApiKey::from_env(var)
                            .ok_or_else(|| ArenaError::ApiKey { backend: spec.name.clone(), var: var.clone() })?,
                    );
                }
                // The URL is checked here, not once per episode.
                Client::new(client.clone()).map_err(|e| invalid(&spec.name, e.to_string()))?;
                let mut agent = AgentConfig::new(client);
                agent.max_tokens_per_turn = spec.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS_PER_TURN);
                agent.temperature = Some(spec.temperature.unwrap_or(0.0));
                agent.metrics = cfg.metrics.clone();
                http.push(Http { spec, agent });
            }
            (None, None) => return Err(invalid(&spec.name, "needs 'url' (HTTP) or 'builtin'".into())),
        }
    }
    Ok((builtins, http))
}

/// Each priced backend's price per million tokens: inline, or an API entry
/// of the price sheet (rented and owned entries price time, not tokens).
fn prices(cfg: &InvestigateConfig) -> Result<BTreeMap<String, Price>, ArenaError> {
    let named: Vec<(&str, &str)> =
        cfg.backends.iter().filter_map(|s| s.price.as_deref().map(|p| (s.name.as_str(), p))).collect();
    let sheet = price_sheet(&named, cfg.prices.as_deref())?;
    let mut out = BTreeMap::new();
    for spec in &cfg.backends {
        let price = match (&spec.price, &sheet) {
            (Some(entry), Some(sheet)) => match sheet.find(entry).map(|e| &e.model) {
                Ok(PriceModel::Api(a)) => {
                    Some(Price { input_per_mtok: a.usd_per_m_input, output_per_mtok: a.usd_per_m_output })
                }
                _ => {
                    return Err(ArenaError::Client {
                        backend: spec.name.clone(),
                        message: format!(
                            "price '{entry}' is not an API price per token; investigate mode prices tokens \
(use an api entry, or price_input_per_mtok / price_output_per_mtok)"
                        ),
                    })
                }
            },
            _ => spec.price(),
        };
        if let Some(p) = price {
            out.insert(spec.name.clone(), p);
        }
    }
    Ok(out)
}

/// Runs every backend over every episode and stores the run in `db`.
/// `meta` is the run row's template; with `live`, the run shows on that
/// dashboard bus; `stop` turning true ends it early, keeping what was scored.
pub async fn run_investigate(
    cfg: &InvestigateConfig,
    db: &Db,
    meta: RunMeta,
    live: Option<&LiveBus>,
    observer: &dyn ArenaObserver,
    stop: watch::Receiver<bool>,
) -> Result<InvestigateOutcome, ArenaError> {
    if cfg.episodes == 0 {
        return Err(ArenaError::NoEpisodes);
    }
    let (builtins, http) = prepare(cfg)?;
    let priced = prices(cfg)?;
    let worlds: Vec<World> = (0..cfg.episodes).map(|i| World::generate(cfg.seed, i)).collect();
    let (mean_gpus, ppd) = pages_per_day(&worlds);
    let floor = best_constant(&worlds);

    let store = Store::connect(db)?;
    let run_id = store.create_run(&investigate_meta(cfg, mean_gpus, meta))?;
    if let Some(m) = &cfg.metrics {
        m.start_run(&run_id.to_string(), "0/1");
    }
    let answers = match AnswerWriter::start(db, run_id) {
        Ok(a) => a,
        Err(e) => {
            finish_failed(&store, run_id);
            return Err(e.into());
        }
    };
    let tally = live.map(|bus| {
        let info = LiveRunInfo {
            kind: "aiops".into(),
            title: format!(
                "run {run_id}: AIOps arena, investigate mode, {} episodes on fleets of {mean_gpus:.0} GPUs on average (seed {})",
                worlds.len(),
                cfg.seed
            ),
            backend: cfg.backends.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            model: live_models(cfg),
            run_id: Some(run_id),
            total: Some((worlds.len() * cfg.backends.len()) as u64),
        };
        InvestigateTally::new(bus.start(info), priced.clone(), ppd, &floor)
    });
    let mut outcomes: BTreeMap<String, Vec<EpisodeOutcome>> = BTreeMap::new();
    for (i, w) in worlds.iter().enumerate() {
        if *stop.borrow() {
            break;
        }
        let tools = match EpisodeTools::open(w.clone(), cfg.promql.as_ref()) {
            Ok(t) => t,
            Err(e) => {
                finish_failed(&store, run_id);
                return Err(AiopsError::Invalid(format!("episode {}: PromQL on Prometheus: {e}", w.id)).into());
            }
        };
        for spec in &builtins {
            let name = spec.builtin.as_deref().unwrap_or_default();
            if let Some(inv) = investigate_builtin(name, &tools, &cfg.budget, cfg.seed.wrapping_add(i as u64)) {
                let o = score_investigation(w, &inv);
                answers.write(outcome_answer(&spec.name, w, &o));
                if let Some(t) = &tally {
                    t.record(&spec.name, &o);
                }
                outcomes.entry(spec.name.clone()).or_default().push(o);
            }
        }
    }
    let runs = http.iter().map(|h| {
        investigate_backend(
            h,
            &worlds,
            (cfg.budget, cfg.promql.as_ref()),
            &answers,
            tally.as_ref(),
            observer,
            stop.clone(),
        )
    });
    for (name, outs) in futures_util::future::join_all(runs).await {
        outcomes.insert(name, outs);
    }
    let interrupted = *stop.borrow();
    let stored = tokio::task::spawn_blocking(move || answers.finish()).await.unwrap_or(Ok(0));

    let boards: Vec<_> = cfg
        .backends
        .iter()
        .map(|s| board(&s.name, outcomes.get(&s.name).map_or(&[][..], |v| v), priced.get(&s.name).copied(), ppd))
        .collect();
    if let Some(t) = &tally {
        t.finish(&boards, if interrupted { LiveState::Interrupted } else { LiveState::Finished });
    }
    let mut store_error = stored.err();
    let floor_row = ArenaFloor {
        score: floor.mean_score,
        ci95: Some(Interval { lo: floor.ci95[0], hi: floor.ci95[1] }),
        answer: floor.answer.clone(),
        pages_per_day: Some(ppd),
    };
    if store_error.is_none() {
        store_error = store.put(run_id, ArenaFloor::NAME, &floor_row).err();
    }
    for (spec, b) in cfg.backends.iter().zip(&boards) {
        if store_error.is_some() {
            break;
        }
        let row = ArenaBackend {
            backend: spec.name.clone(),
            model: spec.model.clone(),
            score: b.mean_score,
            ci95: Some(Interval { lo: b.ci95[0], hi: b.ci95[1] }),
            episodes: Some(b.n as u64),
            failed: Some(
                outcomes
                    .get(&spec.name)
                    .map_or(0, |v| v.iter().filter(|o| matches!(o.ended, Ended::Failed(_))).count() as u64),
            ),
            scenarios: b.per_scenario.iter().map(|(k, v)| (k.clone(), v.mean_score)).collect(),
            leaderboard: serde_json::to_value(b).ok(),
            cost: None,
        };
        if let Err(e) = store.put(run_id, &spec.name, &row) {
            store_error = Some(e);
        }
    }
    let status = match (&store_error, interrupted) {
        (Some(_), _) => RunStatus::Failed,
        (None, true) => RunStatus::Interrupted,
        (None, false) => RunStatus::Completed,
    };
    let answered: usize = outcomes.values().map(Vec::len).sum();
    let summary = json!({
        "kind": ARENA_RUN_KIND,
        "mode": "investigate",
        "episodes": worlds.len(),
        "answers": answered,
        "backends": boards.iter().map(|b| json!({"name": b.name, "mean_score": b.mean_score, "ci95": b.ci95})).collect::<Vec<_>>(),
    });
    let finished = store.finish_run(run_id, status, &rfc3339(SystemTime::now()), Some(&summary));
    if let Some(source) = store_error {
        return Err(ArenaError::Storing { db: db.to_string(), run_id, source: Box::new(source) });
    }
    finished.map_err(|source| ArenaError::Finishing { db: db.to_string(), run_id, source: Box::new(source) })?;
    let run = InvestigateRun {
        episodes: worlds.len(),
        seed: cfg.seed,
        mean_gpus,
        pages_per_day: ppd,
        boards,
        floor,
        outcomes,
    };
    Ok(InvestigateOutcome { run_id, status, interrupted, run })
}

/// One HTTP backend over every episode, at most its `concurrency` in
/// flight; each outcome is stored as soon as it is scored. After the stop
/// signal no new episode starts; those in flight finish.
async fn investigate_backend(
    h: &Http<'_>,
    worlds: &[World],
    (budget, promql): (Budget, Option<&PromBins>),
    answers: &AnswerWriter,
    live: Option<&InvestigateTally>,
    observer: &dyn ArenaObserver,
    stop: watch::Receiver<bool>,
) -> (String, Vec<EpisodeOutcome>) {
    let name = h.spec.name.as_str();
    let n = worlds.len();
    observer.progress(name, &BackendProgress { answered: 0, episodes: n, mean_score: 0.0, unparseable_rate: 0.0 });
    let mut jobs = futures_util::stream::iter(worlds.iter().enumerate())
        .take_while(|_| std::future::ready(!*stop.borrow()))
        .map(|(i, w)| async move {
            let inv = match EpisodeTools::open(w.clone(), promql) {
                Ok(tools) => match investigate(&h.agent, &tools, budget).await {
                    Ok(inv) => inv,
                    Err(e) => failed(e.to_string()),
                },
                Err(e) => failed(format!("PromQL on Prometheus: {e}")),
            };
            (i, score_investigation(w, &inv))
        })
        .buffer_unordered(h.spec.concurrency.max(1))
        .boxed();
    let mut done: Vec<(usize, EpisodeOutcome)> = Vec::with_capacity(n);
    // Unparseable: submitted, but not a valid submission.
    let (mut sum, mut unparseable) = (0.0, 0usize);
    while let Some((i, o)) = jobs.next().await {
        answers.write(outcome_answer(name, &worlds[i], &o));
        if let Some(t) = live {
            t.record(name, &o);
        }
        sum += o.score.total;
        unparseable += usize::from(o.ended == Ended::Submitted && o.score.unanswered);
        done.push((i, o));
        let k = done.len() as f64;
        let p = BackendProgress {
            answered: done.len(),
            episodes: n,
            mean_score: sum / k,
            unparseable_rate: unparseable as f64 / k,
        };
        observer.progress(name, &p);
    }
    observer.backend_finished(name);
    done.sort_by_key(|(i, _)| *i);
    (name.to_string(), done.into_iter().map(|(_, o)| o).collect())
}

/// The models the live run names: the HTTP backends', else the built-ins.
fn live_models(cfg: &InvestigateConfig) -> String {
    let models: Vec<&str> = cfg.backends.iter().filter_map(|s| s.model.as_deref()).collect();
    if models.is_empty() {
        "built-in investigators".into()
    } else {
        models.join(", ")
    }
}

/// An investigation that could not start.
fn failed(why: String) -> Investigation {
    Investigation::empty(Ended::Failed(why))
}

/// The `answer` artifact of one scored investigation: the submission (as
/// `text` and `parsed`) beside the truth, the score items, tool calls,
/// tokens, wall time, how it ended and the whole transcript.
pub fn outcome_answer(backend: &str, world: &World, o: &EpisodeOutcome) -> Answer {
    let parse_error = o.submitted.as_ref().and_then(|v| parse_submission(v).err());
    Answer {
        backend: backend.to_string(),
        episode_id: o.episode_id.clone(),
        scenario: Some(world.case.id().to_string()),
        label: Some(o.scenario.clone()),
        difficulty: None,
        text: o.submitted.as_ref().map(Value::to_string).unwrap_or_default(),
        score: Some(o.score.total),
        items: o.score.items.named().iter().map(|(k, got, _)| (k.to_string(), *got)).collect(),
        unparseable: parse_error.is_some(),
        lenient: false,
        action_class: None,
        truth: Some(world.truth_json()),
        parsed: o.submitted.clone(),
        parse_error,
        error: match &o.ended {
            Ended::Failed(why) => Some(why.clone()),
            _ => None,
        },
        ttft_s: None,
        e2el_s: None,
        input_tokens: Some(o.input_tokens),
        output_tokens: Some(o.output_tokens),
        tool_calls: Some(o.tool_calls),
        tool_errors: Some(o.tool_errors),
        wall_s: Some(o.wall_s),
        ended: serde_json::to_value(&o.ended).ok(),
        transcript: o.transcript.clone(),
    }
}

/// The run row: the arena's, with the mode and the budget in its config.
fn investigate_meta(cfg: &InvestigateConfig, mean_gpus: f64, template: RunMeta) -> RunMeta {
    let arena = ArenaConfig {
        backends: cfg.backends.clone(),
        episodes: cfg.episodes,
        seed: cfg.seed,
        gpus: mean_gpus.round() as usize,
        rate_per_s: None,
        telemetry: None,
        timeout: cfg.timeout,
        prices: cfg.prices.clone(),
        answers_out: None,
    };
    let mut meta = arena_meta(&arena, mean_gpus.round() as usize, template);
    if let Some(c) = meta.config.as_object_mut() {
        c.insert("mode".into(), json!("investigate"));
        c.insert(
            "budget".into(),
            json!({
                "tool_calls": cfg.budget.tool_calls,
                "tokens": cfg.budget.tokens,
                "deadline_s": cfg.budget.deadline.as_secs_f64(),
            }),
        );
    }
    meta.workload = format!(
        "aiops-investigate: {} episodes, fleets of {mean_gpus:.0} GPUs on average, seed {}",
        cfg.episodes, cfg.seed
    );
    meta
}

/// Marks a run failed; the error that caused it is what the caller reports.
fn finish_failed(store: &Store, run_id: i64) {
    let _ = store.finish_run(run_id, RunStatus::Failed, &rfc3339(SystemTime::now()), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backends: Vec<BackendSpec>) -> InvestigateConfig {
        InvestigateConfig {
            backends,
            episodes: 1,
            seed: 1,
            budget: super::super::bench::DEFAULT_BUDGET,
            timeout: Duration::from_secs(5),
            prices: None,
            metrics: None,
            promql: None,
        }
    }

    fn http(api: Option<ApiKind>) -> BackendSpec {
        let mut s = BackendSpec::builtin("m");
        (s.builtin, s.url, s.model, s.api) = (None, Some("http://127.0.0.1:9/v1".into()), Some("m".into()), api);
        s
    }

    #[test]
    fn backends_without_tool_calls_are_refused_before_any_work() {
        let e = prepare(&config(vec![http(Some(ApiKind::Completions))])).err().expect("refused");
        assert!(e.to_string().contains("no tool calls"), "{e}");
        let e = prepare(&config(vec![BackendSpec::builtin("gpt-oracle")])).err().expect("refused");
        assert!(e.to_string().contains("not a built-in investigator"), "{e}");
        let mut keyed = http(Some(ApiKind::Anthropic));
        keyed.api_key_env = Some("FLEETBENCH_TEST_UNSET_KEY_VAR".into());
        assert!(matches!(prepare(&config(vec![keyed])), Err(ArenaError::ApiKey { .. })));
        let cfg = config(vec![BackendSpec::builtin("oracle"), http(None)]);
        let (builtins, http) = prepare(&cfg).expect("valid");
        assert_eq!((builtins.len(), http.len()), (1, 1));
        assert_eq!(http[0].agent.max_tokens_per_turn, DEFAULT_MAX_TOKENS_PER_TURN);
    }

    #[test]
    fn prices_are_per_token() {
        let mut inline = http(None);
        inline.price_output_per_mtok = Some(2.0);
        let p = prices(&config(vec![inline])).expect("priced");
        assert_eq!(p["m"], Price { input_per_mtok: 0.0, output_per_mtok: 2.0 });
        let dir = std::env::temp_dir().join(format!("fb-inv-prices-{}.toml", std::process::id()));
        std::fs::write(&dir, "[[backend]]\nname = \"box\"\nkind = \"rented\"\nusd_per_gpu_hour = 3.6\ngpus = 1\n")
            .expect("sheet");
        let mut rented = http(None);
        rented.price = Some("box".into());
        let mut cfg = config(vec![rented]);
        cfg.prices = Some(dir.clone());
        let e = prices(&cfg).expect_err("a rented price is refused");
        assert!(e.to_string().contains("not an API price per token"), "{e}");
        let _ = std::fs::remove_file(&dir);
    }
}
