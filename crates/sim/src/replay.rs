//! `fleetbench sim replay`: a workload of the one workload language
//! (`fleetbench-workload`) played on a simulated deployment by the
//! discrete-event engine, with no HTTP and no wall clock. Each request is
//! sized from what the workload built (its expected prompt tokens, else its
//! text at four characters a token; its `max_tokens`, else 256 output
//! tokens) and keyed for prefix caching by its shared-prefix group and
//! conversation. The figures follow docs/METRICS.md: TTFT and E2EL from the
//! send (after any client-side wait for `max_concurrency`), TPOT over tokens
//! after the first, ITL between tokens; per arrival stage and overall.
//! Session workloads (`agent-session`) run session by session
//! (`sessions.rs`): each turn keyed by its session, so the history the last
//! turn left in the prefix cache is prefilled only once. A request of a
//! conversation (a multi-turn `shared-prefix` user, a trace's
//! `conversation_id`) is sent only once the conversation's previous request has
//! ended, as `fleetbench run` and inference-perf's multi-turn users send
//! them; its wait counts as client queue time, not TTFT.

use fleetbench_core::stats::{mean, percentile_select};
use fleetbench_core::table::{Align, Table};
use fleetbench_core::{RequestSpec, SamplingParams};
use fleetbench_workload::arrivals::Instant;
use fleetbench_workload::text::{hash_str, mix};
use fleetbench_workload::{ArrivalPlan, Schedule, Workload};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};

use crate::engine::{EngineEvent, EngineRequest, PrefixKey, ServingEngine};
use crate::perf::{Deployment, LINEAR_ATTENTION_CAVEAT};
use crate::sessions::{ReplaySessions, SessionSource};
use crate::underload::{Medians, PublishedError, VLLM_PUBLISHED_ERROR};

/// Measured requests when nothing else ends the replay (as `fleetbench run`).
pub const DEFAULT_REQUESTS: u64 = 100;

/// The most requests one replay simulates. It keeps every request's
/// latencies for the percentiles, about 200 bytes a request: ten million
/// take some 2 GB and a quarter of a minute.
pub const MAX_REPLAY_REQUESTS: u64 = 10_000_000;

/// Output tokens of a request that sets no `max_tokens`.
pub const DEFAULT_OUTPUT_TOKENS: u32 = 256;

/// What to replay and when to stop.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    pub schedule: Schedule,
    /// Open loop: stages or a trace replacing the schedule's single rate.
    pub arrivals: Option<ArrivalPlan>,
    /// Measured requests (warm-up not counted); `None`: until the arrivals
    /// or the duration end.
    pub requests: Option<u64>,
    /// Stop issuing after this many simulated seconds.
    pub duration_s: Option<f64>,
    /// The first `warmup` requests are simulated but left out of the
    /// figures (as `fleetbench run --warmup`; [`replay_after`] replays an
    /// earlier run instead).
    pub warmup: u64,
    pub sampling: SamplingParams,
    pub seed: u64,
    /// Automatic prefix caching, on by default as in vLLM.
    pub prefix_caching: bool,
}

impl ReplayPlan {
    /// About how many requests the plan sends, warm-up included: its
    /// budget, else what its arrivals send before they end or before its
    /// duration; `None` where nothing says (the default budget applies).
    pub fn planned_requests(&self) -> Option<f64> {
        let budget = self.requests.map(|n| n.saturating_add(self.warmup) as f64);
        let arrivals = match (&self.arrivals, self.schedule) {
            (Some(a), _) => a.planned_requests(self.duration_s),
            (None, Schedule::Open { rate, .. }) => self.duration_s.map(|d| rate * d),
            (None, Schedule::Closed { .. }) => None,
        };
        [budget, arrivals].into_iter().flatten().reduce(f64::min)
    }

    /// Refuses a plan of more than [`MAX_REPLAY_REQUESTS`], saying what to
    /// change, before any is simulated.
    pub fn check_size(&self) -> Result<(), String> {
        match self.planned_requests() {
            Some(n) if n > MAX_REPLAY_REQUESTS as f64 => Err(format!(
                "the replay would send about {n:.0} requests; it simulates at most {MAX_REPLAY_REQUESTS} (it keeps \
                 every request's latencies for the percentiles): send fewer (--requests), shorten the stages or \
                 lower their rates"
            )),
            _ => Ok(()),
        }
    }
}

/// mean, p50, p90, p99 in milliseconds (numpy's linear percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Dist {
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

impl Dist {
    /// Selection, not a sort: a replay keeps one value a request, a
    /// million for a million requests.
    fn of_seconds(v: &mut [f64]) -> Dist {
        let ms = |x: Option<f64>| x.map(|x| x * 1e3);
        Dist {
            mean: ms(mean(v)),
            p50: ms(percentile_select(v, 50.0)),
            p90: ms(percentile_select(v, 90.0)),
            p99: ms(percentile_select(v, 99.0)),
        }
    }

    /// The same figures from run-length coded samples (value, how many).
    fn of_runs(runs: &mut [(f64, u64)]) -> Dist {
        let n: u64 = runs.iter().map(|(_, c)| c).sum();
        if n == 0 {
            return Dist::default();
        }
        runs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        // The `k`th value (from 0) of the samples in order.
        let at = |k: u64| {
            let mut seen = 0;
            for (v, c) in runs.iter() {
                seen += c;
                if k < seen {
                    return *v;
                }
            }
            runs.last().map_or(0.0, |(v, _)| *v)
        };
        let percentile = |p: f64| {
            let rank = p / 100.0 * (n - 1) as f64;
            let k = rank.floor() as u64;
            let (lo, frac) = (at(k), rank - k as f64);
            if frac == 0.0 {
                lo
            } else {
                lo + (at(k + 1) - lo) * frac
            }
        };
        let sum: f64 = runs.iter().map(|(v, c)| v * *c as f64).sum();
        Dist {
            mean: Some(sum / n as f64 * 1e3),
            p50: Some(percentile(50.0) * 1e3),
            p90: Some(percentile(90.0) * 1e3),
            p99: Some(percentile(99.0) * 1e3),
        }
    }
}

/// The figures of one arrival stage, or of the whole replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayFigures {
    pub name: String,
    /// When the stage opened, seconds from the start of the replay.
    pub start_s: f64,
    /// When its last request ended, or its own end if that is later: the
    /// span its throughput is counted over.
    pub end_s: f64,
    /// Measured requests that arrived in the window and completed.
    pub requests: u64,
    /// Measured requests the server refused at once: prompt and
    /// `max_tokens` together over the model's context length (vLLM answers
    /// HTTP 400). They are in no latency figure.
    pub rejected: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub ttft_ms: Dist,
    pub tpot_ms: Dist,
    pub itl_ms: Dist,
    pub e2el_ms: Dist,
    /// Client-side wait for a `max_concurrency` slot.
    pub client_queue_ms: Dist,
    pub request_throughput: f64,
    pub output_throughput: f64,
    /// Time-weighted over the engine's steps in the window.
    pub mean_waiting: f64,
    pub max_waiting: u64,
    pub mean_running: f64,
    pub mean_kv_usage: f64,
    pub peak_kv_usage: f64,
    /// Share of prompt tokens served from the prefix cache.
    pub prefix_hit_rate: f64,
}

/// What `sim replay` prints (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub deployment: String,
    pub workload: String,
    pub arrivals: String,
    pub prefix_caching: bool,
    pub requests_simulated: u64,
    pub simulated_s: f64,
    pub steps: u64,
    pub preemptions: u64,
    pub stages: Vec<ReplayFigures>,
    pub overall: ReplayFigures,
    /// Session workloads: completed sessions and their completion time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<ReplaySessions>,
    /// How near replays of this engine came to its published runs under
    /// load; absent for an engine with none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_error: Option<PublishedError>,
    /// What the published runs say of this kind of model beyond that.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caveat: Option<&'static str>,
}

/// One request in flight or done.
#[derive(Debug, Clone, Copy)]
struct Track {
    stage: u32,
    sched: f64,
    /// When it may be sent: its schedule, or the end of its conversation's
    /// previous request if that came later.
    ready: f64,
    /// The conversation it waited its turn in.
    conversation: Option<u64>,
    send: f64,
    first: f64,
    last: f64,
    tokens: u32,
    input: u32,
    warmup: bool,
    /// Session workloads: the sender whose turn it is.
    slot: Option<usize>,
}

/// The latency samples of one window, seconds. Inter-token gaps are
/// run-length coded: a step's tokens reach every running sequence at once,
/// so consecutive gaps are mostly equal, and a replay keeps about one run a
/// step instead of one gap a token (a million requests of 50 tokens: tens
/// of MB, not 400).
#[derive(Debug, Clone, Default)]
struct Samples {
    ttft: Vec<f64>,
    tpot: Vec<f64>,
    itl: Vec<(f64, u64)>,
    e2el: Vec<f64>,
    queue: Vec<f64>,
}

impl Samples {
    fn gap(&mut self, gap: f64) {
        match self.itl.last_mut() {
            Some((v, n)) if *v == gap => *n += 1,
            _ => self.itl.push((gap, 1)),
        }
    }

    /// Every window's samples together (the overall figures).
    fn merged<'a>(all: impl Iterator<Item = &'a Samples>) -> Samples {
        let mut m = Samples::default();
        for s in all {
            m.ttft.extend_from_slice(&s.ttft);
            m.tpot.extend_from_slice(&s.tpot);
            m.itl.extend_from_slice(&s.itl);
            m.e2el.extend_from_slice(&s.e2el);
            m.queue.extend_from_slice(&s.queue);
        }
        m
    }
}

/// Accumulators of one window.
#[derive(Debug, Clone, Default)]
struct Acc {
    rejected: u64,
    /// Kept per stage only; the overall figures merge them.
    samples: Samples,
    requests: u64,
    input: u64,
    output: u64,
    hit: u64,
    /// Tokens looked up in the prefix cache at admission (hit rate = hit / queried).
    queried: u64,
    last_end: f64,
    dt: f64,
    waiting_dt: f64,
    running_dt: f64,
    kv_dt: f64,
    max_waiting: u64,
    peak_kv: f64,
}

/// The prompt and output tokens and prefix key of a request, and the
/// conversation whose turns it waits for. `repeat` names a request whose
/// prompt is byte for byte an earlier one's (a cycling workload's index
/// modulo its distinct requests): vLLM's cache is keyed by content, so the
/// whole prompt is found again, and shared by running copies of it.
pub fn sizes(spec: &RequestSpec, repeat: Option<u64>) -> (u32, u32, PrefixKey, Option<u64>) {
    let prompt = spec.expected_input_tokens.unwrap_or_else(|| (spec.prompt.char_len() as u32).div_ceil(4)).max(1);
    let output = spec.sampling.max_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS).max(1);
    let c = &spec.context;
    let group = c.prefix_group.as_deref().map(|g| (hash_str(g), c.prefix_tokens.unwrap_or(0).min(prompt)));
    let turns = c.conversation.as_deref().map(|k| hash_str(k) ^ 0xC0);
    let history = match (turns, repeat) {
        (Some(k), _) => Some((k, c.context_tokens.unwrap_or(0).min(prompt))),
        (None, Some(r)) => Some((mix(REPEAT_KEY, r), prompt)),
        (None, None) => None,
    };
    // A repeated prompt holds no answer; a history of stand-in (or
    // re-tokenized) answers does not hold the tokens the server generated.
    let drop_answer = (turns.is_none() && history.is_some()) || c.stand_in_answers;
    (prompt, output, PrefixKey { group, conversation: history, drop_answer }, turns)
}

/// Seeds the cache keys of repeated prompts apart from conversation keys.
const REPEAT_KEY: u64 = 0x5EED_0F4E_9E47;

/// The run a server served just before the replayed one, as benchmarks run
/// one after another against one server: `requests` requests of
/// `workload`, sent as the replayed run sends its own (the same closed loop,
/// or the same arrivals), simulated and left out of the figures. The
/// replayed run starts once they have all ended, from its own workload's
/// first request, so it finds what the run before left in the prefix cache.
/// Where both workloads cycle their prompts (`synthetic:...,prompts=N`),
/// request `i` of the one and request `i` of the other share the start of
/// their prompt, as far as the shorter reaches: vLLM's random dataset with
/// one seed makes prompt `i` at a shorter input length the start of prompt
/// `i` at a longer one, and a benchmark run again sends the same prompts.
#[derive(Clone, Copy)]
pub struct EarlierRun<'a> {
    pub workload: &'a dyn Workload,
    pub requests: u64,
}

/// Replays the plan. Deterministic: the same plan, workload and seed give
/// the same report.
pub fn replay(deployment: Deployment, plan: &ReplayPlan, workload: &dyn Workload) -> ReplayReport {
    replay_with(deployment, plan, None, workload)
}

/// Replays the plan on a server that has just served `earlier`
/// ([`EarlierRun`]); `plan.warmup` is not used.
pub fn replay_after(
    deployment: Deployment,
    plan: &ReplayPlan,
    earlier: EarlierRun<'_>,
    workload: &dyn Workload,
) -> ReplayReport {
    replay_with(deployment, plan, Some(earlier), workload)
}

fn replay_with(
    deployment: Deployment,
    plan: &ReplayPlan,
    earlier: Option<EarlierRun<'_>>,
    workload: &dyn Workload,
) -> ReplayReport {
    // Requests left out of the figures: an earlier run's, or the run's own
    // first ones; only an earlier run is waited for before the measured
    // requests start.
    let warmup = earlier.map_or(plan.warmup, |e| e.requests);
    let drain = earlier.is_some_and(|e| e.requests > 0);
    // The KV pool as the engine sizes it: bits per element (16 unless an
    // FP8 cache is set) and whole blocks of tokens.
    let kv_bits = deployment.kv_bytes_per_token * 8.0 / deployment.model.kv_elems_per_token().max(1.0);
    // The scheduler and the CUDA graphs are named where they cost something.
    let scheduling: String = deployment.costly_settings().iter().map(|s| format!(" · {s}")).collect();
    let published_error = (deployment.engine.id == VLLM_PUBLISHED_ERROR.engine).then_some(VLLM_PUBLISHED_ERROR);
    let caveat = (deployment.model.linear_layers > 0).then_some(LINEAR_ATTENTION_CAVEAT);
    let describe = format!(
        "{} x {} · {} {} · {}{scheduling} · KV cache {:.0}-bit, {:.0} tokens",
        deployment.count,
        deployment.gpu.name,
        deployment.model.name,
        deployment.quant.id,
        deployment.engine.name,
        kv_bits,
        deployment.kv_capacity_tokens
    );
    // The API server in front of the engine core: a fixed latency per
    // request, and one thread streaming every output token (a new request
    // waits for the tokens queued ahead of it).
    let frontend_s = deployment.engine.frontend_ms.max(0.0) * 1e-3;
    let token_cpu_s = deployment.engine.frontend_token_us.max(0.0) * 1e-6;
    let mut frontend_free = 0.0f64;
    // The server's backlog as the latest step's tokens found it, and when
    // that step ended: a request sent during the step is not behind them.
    let (mut free_before_step, mut last_step_end) = (0.0f64, 0.0f64);
    let mut eng = ServingEngine::new(deployment);
    eng.set_prefix_caching(plan.prefix_caching);
    let (arrivals, mut windows, max_in_flight, closed) = match plan.schedule {
        Schedule::Closed { concurrency } => {
            (None, vec![(format!("closed loop, concurrency {concurrency}"), 0.0, None)], concurrency.max(1), true)
        }
        Schedule::Open { rate, arrival, max_concurrency } => {
            let p = match &plan.arrivals {
                Some(p) => p.clone(),
                None => ArrivalPlan::single(rate, arrival, plan.seed),
            };
            let w = p.stages();
            (Some(p), w, max_concurrency.unwrap_or(u32::MAX).max(1), false)
        }
    };
    let endless = arrivals.as_ref().is_none_or(|a| !a.is_finite()) && plan.duration_s.is_none();
    let budget = match plan.requests {
        Some(n) => Some(n + warmup),
        None if endless => Some(DEFAULT_REQUESTS + warmup),
        None => None,
    };
    let arrivals_text = arrivals.as_ref().map(|a| a.describe()).unwrap_or_else(|| windows[0].0.clone());
    let mut instants: Box<dyn Iterator<Item = Instant>> = match &arrivals {
        Some(a) => a.instants(),
        None => Box::new(std::iter::empty()),
    };
    // Stages of `--arrivals` start no earlier than when the requests of the
    // stage before have ended ([`ArrivalPlan::drains`]): `shift` is how far
    // that has pushed the stages' own times, `stage` the stage under way.
    let drains = arrivals.as_ref().is_some_and(ArrivalPlan::drains);
    let (mut stage, mut shift) = (0u32, 0.0f64);
    // Whether the measured requests have waited for the warm-up's end.
    let mut drained = false;
    let mut tracks: Vec<Track> = Vec::new();
    let mut accs: Vec<Acc> = vec![Acc::default(); windows.len()];
    let mut all = Acc::default();
    // Requests issued but not yet sent (waiting for a max_concurrency slot).
    let mut queue: VecDeque<(EngineRequest, PrefixKey)> = VecDeque::new();
    // When the client last had no free slot (a request queued behind it is
    // sent when a slot frees, not when it was scheduled).
    let mut slots_full_since = f64::NEG_INFINITY;
    let mut in_flight = 0u32;
    let mut next_index = 0u64;
    let mut turns = Turns::default();
    let mut refused: Vec<u64> = Vec::new();
    let issuing = |index: u64, t: f64| budget.is_none_or(|b| index < b) && plan.duration_s.is_none_or(|d| t < d);
    // Queues `spec`, scheduled at `t`; its engine id is its track's index.
    let track = |tracks: &mut Vec<Track>,
                 spec: &RequestSpec,
                 repeat: Option<u64>,
                 t: f64,
                 stage: u32,
                 warmup: bool,
                 slot: Option<usize>| {
        let (prompt, output, key, turns) = sizes(spec, repeat);
        let id = tracks.len() as u64;
        tracks.push(Track {
            stage,
            sched: t,
            ready: t,
            conversation: turns,
            send: f64::NAN,
            first: f64::NAN,
            last: f64::NAN,
            tokens: 0,
            input: prompt,
            warmup,
            slot,
        });
        (EngineRequest { id, prompt_tokens: prompt, output_tokens: output }, key)
    };
    // Builds request `index`, scheduled at `t`: of the earlier run, or of
    // this one counted from its own first request. A cycling workload
    // repeats request `i % distinct` byte for byte.
    let distinct = |w: &dyn Workload| w.distinct_requests().filter(|&d| d > 0);
    let (this_run, earlier_run) = (distinct(workload), earlier.and_then(|e| distinct(e.workload)));
    let issue = |tracks: &mut Vec<Track>, index: u64, t: f64, stage: u32| {
        let (w, cycle, i) = match earlier {
            Some(e) if index < warmup => (e.workload, earlier_run, index),
            Some(_) => (workload, this_run, index - warmup),
            None => (workload, this_run, index),
        };
        track(tracks, &w.shape(i, &plan.sampling), cycle.map(|d| i % d), t, stage, index < warmup, None)
    };
    // A closed loop after an earlier run: no measured request is sent until
    // the earlier run's have all ended.
    let held = |next_index: u64, drained: bool| drain && !drained && next_index == warmup;
    let requests = plan.requests.or(endless.then_some(DEFAULT_REQUESTS));
    let mut sessions = SessionSource::new(workload, &plan.sampling, warmup, requests, plan.duration_s);
    let mut peek: Option<Instant> = None;
    if let (Some(src), true) = (sessions.as_mut(), closed) {
        for slot in 0..max_in_flight as usize {
            src.start(Some(slot), 0.0, 0);
        }
    } else if closed {
        while next_index < max_in_flight as u64 && issuing(next_index, 0.0) && !held(next_index, drained) {
            let item = issue(&mut tracks, next_index, 0.0, 0);
            turns.admit(&mut tracks, item, &mut queue);
            next_index += 1;
        }
    } else {
        peek = instants.next();
    }
    loop {
        // Open loop: every arrival due now (or the next one when idle).
        while let Some(nominal) = peek {
            let warmed_up = held(next_index, drained);
            if (drains && nominal.stage != stage) || warmed_up {
                let sessions_on = sessions.as_ref().is_some_and(SessionSource::active);
                if in_flight > 0 || !queue.is_empty() || turns.holding() || sessions_on {
                    break;
                }
                // A new stage opens now and its first request comes its
                // first gap later, as a stage's timer starts (inference-perf);
                // after the warm-up, the next request goes at once.
                let opens = if drains && nominal.stage != stage {
                    windows[nominal.stage as usize].1 - shift
                } else {
                    nominal.t
                };
                let pushed = (eng.now() - opens).max(shift);
                for w in windows.iter_mut().skip(nominal.stage as usize) {
                    w.1 += pushed - shift;
                    w.2 = w.2.map(|end| end + pushed - shift);
                }
                (stage, shift) = (nominal.stage, pushed);
                drained |= warmed_up;
            }
            let a = Instant { t: nominal.t + shift, ..nominal };
            let session_due_first = sessions.as_ref().and_then(|s| s.next_due()).is_some_and(|d| d < a.t);
            // Wait while the engine has something to do before this arrival.
            if a.t > eng.now()
                && (!queue.is_empty() || session_due_first || eng.idle_until().is_none_or(|ready| a.t > ready))
            {
                break;
            }
            if let Some(src) = sessions.as_mut() {
                // Each arrival starts a session; its first turn is due at once.
                if !src.start(None, a.t, a.stage) {
                    peek = None;
                    break;
                }
                eng.advance_to(a.t);
                peek = instants.next();
                continue;
            }
            if !issuing(next_index, a.t) {
                peek = None;
                break;
            }
            eng.advance_to(a.t);
            let item = issue(&mut tracks, next_index, a.t, a.stage);
            turns.admit(&mut tracks, item, &mut queue);
            next_index += 1;
            peek = instants.next();
        }
        // Sessions: every turn due now (or the next one when idle).
        while let Some(src) = sessions.as_mut() {
            let Some(due) = src.next_due() else { break };
            if due > eng.now() && (!queue.is_empty() || eng.idle_until().is_none_or(|ready| due > ready)) {
                break;
            }
            let Some((t, turn)) = src.pop_due() else { break };
            eng.advance_to(t);
            queue.push_back(track(&mut tracks, &turn.spec, None, t, turn.stage, turn.warmup, Some(turn.slot)));
        }
        let (hit0, query0) = (eng.counters().prefix_hit_tokens, eng.counters().prefix_query_tokens);
        while in_flight < max_in_flight {
            let Some((req, key)) = queue.pop_front() else { break };
            // vLLM refuses a request whose prompt and max_tokens exceed the
            // model's context.
            if !eng.deployment().model.fits_context(req.prompt_tokens, req.output_tokens) {
                refused.push(req.id);
                continue;
            }
            // Sent when scheduled, unless it waited for a client slot.
            let tr = &mut tracks[req.id as usize];
            let waited = slots_full_since.is_finite() && tr.ready >= slots_full_since;
            tr.send = if waited { eng.now() } else { tr.ready };
            let backlog = if tr.send < last_step_end { free_before_step } else { frontend_free };
            let ready = tr.send.max(backlog) + eng.deployment().engine.frontend_latency_s(req.prompt_tokens);
            eng.submit_at(req, key, ready);
            in_flight += 1;
        }
        // Refused requests end at once: the conversation's next turn, the
        // closed-loop agent's next request or the session's next turn go.
        for id in refused.drain(..) {
            let tr = &mut tracks[id as usize];
            tr.send = eng.now().max(tr.ready);
            // The refusal comes back after the API server's own latency.
            let end = tr.send + frontend_s.max(1e-3);
            if !tr.warmup {
                accs[tr.stage as usize].rejected += 1;
                all.rejected += 1;
            }
            let (conversation, slot) = (tr.conversation, tr.slot);
            turns.ended(conversation, end, &mut tracks, &mut queue);
            if let (Some(src), Some(slot)) = (sessions.as_mut(), slot) {
                if src.finished(slot, end, 0) && closed {
                    src.start(Some(slot), end, 0);
                }
            } else if closed && issuing(next_index, end) && !held(next_index, drained) {
                let item = issue(&mut tracks, next_index, end, 0);
                turns.admit(&mut tracks, item, &mut queue);
                next_index += 1;
            }
        }
        if in_flight < max_in_flight {
            slots_full_since = f64::NEG_INFINITY;
        } else if let (Some((r, _)), false) = (queue.front(), slots_full_since.is_finite()) {
            slots_full_since = tracks[r.id as usize].ready;
        }
        let (waiting, running, kv) = (eng.num_waiting() as f64, eng.num_running() as f64, eng.kv_usage());
        // While a stage drains, its steps are its own.
        let w = if drains { stage as usize } else { window_of(&windows, eng.now()) };
        let mut finished: Vec<u64> = Vec::new();
        let stepped = eng.step(&mut |ev| match ev {
            EngineEvent::Token { id, index, t } => {
                if token_cpu_s > 0.0 {
                    if t > last_step_end {
                        (free_before_step, last_step_end) = (frontend_free, t);
                    }
                    frontend_free = frontend_free.max(t) + token_cpu_s;
                }
                let tr = &mut tracks[id as usize];
                if index == 0 {
                    tr.first = t;
                } else if !tr.warmup {
                    accs[tr.stage as usize].samples.gap(t - tr.last);
                }
                tr.last = t;
                tr.tokens = index + 1;
            }
            EngineEvent::Finished { id, .. } => finished.push(id),
            EngineEvent::Preempted { .. } => {}
        });
        let c = eng.counters();
        let kv_after = eng.kv_usage();
        let dt = stepped.map(|s| s.end - s.start).unwrap_or(0.0);
        for acc in [&mut accs[w], &mut all] {
            acc.hit += c.prefix_hit_tokens - hit0;
            acc.queried += c.prefix_query_tokens - query0;
            acc.dt += dt;
            acc.waiting_dt += waiting * dt;
            acc.running_dt += running * dt;
            acc.kv_dt += kv * dt;
            acc.max_waiting = acc.max_waiting.max(waiting as u64);
            acc.peak_kv = acc.peak_kv.max(kv).max(kv_after);
        }
        for id in finished {
            in_flight -= 1;
            let tr = tracks[id as usize];
            turns.ended(tr.conversation, eng.now(), &mut tracks, &mut queue);
            if !tr.warmup {
                let s = &mut accs[tr.stage as usize].samples;
                s.ttft.push(tr.first - tr.send);
                s.e2el.push(tr.last - tr.send);
                s.queue.push(tr.send - tr.sched);
                if tr.tokens > 1 {
                    s.tpot.push((tr.last - tr.first) / (tr.tokens - 1) as f64);
                }
                for acc in [&mut accs[tr.stage as usize], &mut all] {
                    acc.requests += 1;
                    acc.input += tr.input as u64;
                    acc.output += tr.tokens as u64;
                    acc.last_end = acc.last_end.max(tr.last);
                }
            }
            if let (Some(src), Some(slot)) = (sessions.as_mut(), tr.slot) {
                // A session's next turn waits out its think time; a closed-loop
                // sender whose session ended starts the next one.
                if src.finished(slot, eng.now(), tr.tokens) && closed {
                    src.start(Some(slot), eng.now(), 0);
                }
                continue;
            }
            // Closed loop: the agent sends its next request at once.
            if closed && issuing(next_index, eng.now()) && !held(next_index, drained) {
                let item = issue(&mut tracks, next_index, eng.now(), 0);
                turns.admit(&mut tracks, item, &mut queue);
                next_index += 1;
            }
        }
        // A closed loop whose earlier run has ended: every agent starts.
        if closed && held(next_index, drained) && in_flight == 0 && queue.is_empty() && !turns.holding() {
            drained = true;
            let now = eng.now();
            let mut started = 0;
            while started < max_in_flight && issuing(next_index, now) {
                let item = issue(&mut tracks, next_index, now, 0);
                turns.admit(&mut tracks, item, &mut queue);
                (next_index, started) = (next_index + 1, started + 1);
            }
        }
        let turns_due = sessions.as_ref().is_some_and(|s| s.next_due().is_some()) || turns.holding();
        if stepped.is_none() && peek.is_none() && queue.is_empty() && !turns_due {
            break;
        }
    }
    let c = eng.counters();
    let end = eng.now();
    let stages = windows
        .iter()
        .zip(accs.iter_mut())
        // A stage lasts until its last request ended (an overloaded stage
        // drains past its own end), and at least its own length.
        .map(|((name, start, stop), acc)| {
            let end = stop.unwrap_or(*start).max(acc.last_end);
            figures(name.clone(), *start, end, acc)
        })
        .collect();
    all.samples = Samples::merged(accs.iter().map(|a| &a.samples));
    let overall = figures("overall".into(), 0.0, all.last_end, &mut all);
    let first_send = tracks.iter().filter(|t| !t.warmup).map(|t| t.send).fold(f64::INFINITY, f64::min);
    let session_figures = sessions.as_ref().map(|s| s.figures(all.last_end - first_send.min(all.last_end)));
    ReplayReport {
        deployment: describe,
        workload: workload.describe(),
        arrivals: arrivals_text,
        prefix_caching: plan.prefix_caching,
        requests_simulated: sessions.as_ref().map_or(next_index, |s| s.taken()),
        simulated_s: end,
        steps: c.steps,
        preemptions: c.preemptions,
        stages,
        overall,
        sessions: session_figures,
        published_error,
        caveat,
    }
}

/// The conversations with a request in flight, and the requests of each
/// waiting for it to end (in order).
#[derive(Default)]
struct Turns {
    busy: HashMap<u64, VecDeque<(EngineRequest, PrefixKey)>>,
    held: usize,
}

impl Turns {
    /// Queues a request to be sent, or holds it behind its conversation's
    /// request in flight.
    fn admit(
        &mut self,
        tracks: &mut [Track],
        item: (EngineRequest, PrefixKey),
        queue: &mut VecDeque<(EngineRequest, PrefixKey)>,
    ) {
        let Some(conversation) = tracks[item.0.id as usize].conversation else { return queue.push_back(item) };
        match self.busy.entry(conversation) {
            std::collections::hash_map::Entry::Occupied(mut held) => {
                held.get_mut().push_back(item);
                self.held += 1;
            }
            std::collections::hash_map::Entry::Vacant(free) => {
                free.insert(VecDeque::new());
                queue.push_back(item);
            }
        }
    }

    /// A request of `conversation` ended at `at`: the next one held behind
    /// it, if any, may be sent from then on, and is queued.
    fn ended(
        &mut self,
        conversation: Option<u64>,
        at: f64,
        tracks: &mut [Track],
        queue: &mut VecDeque<(EngineRequest, PrefixKey)>,
    ) {
        let Some(conversation) = conversation else { return };
        let Some(held) = self.busy.get_mut(&conversation) else { return };
        match held.pop_front() {
            Some(next) => {
                self.held -= 1;
                tracks[next.0.id as usize].ready = at;
                queue.push_back(next);
            }
            None => {
                self.busy.remove(&conversation);
            }
        }
    }

    /// Requests are held (their turn comes when a request in flight ends).
    fn holding(&self) -> bool {
        self.held > 0
    }
}

/// The window (stage) an instant falls in; the last one takes the rest.
fn window_of(windows: &[(String, f64, Option<f64>)], t: f64) -> usize {
    windows.iter().position(|(_, _, end)| end.is_none_or(|e| t < e)).unwrap_or(windows.len().saturating_sub(1))
}

fn figures(name: String, start_s: f64, end_s: f64, a: &mut Acc) -> ReplayFigures {
    let span = end_s - start_s;
    let per_s = |n: u64| if span > 0.0 { n as f64 / span } else { 0.0 };
    let over_dt = |x: f64| if a.dt > 0.0 { x / a.dt } else { 0.0 };
    ReplayFigures {
        name,
        start_s,
        end_s,
        requests: a.requests,
        rejected: a.rejected,
        input_tokens: a.input,
        output_tokens: a.output,
        ttft_ms: Dist::of_seconds(&mut a.samples.ttft),
        tpot_ms: Dist::of_seconds(&mut a.samples.tpot),
        itl_ms: Dist::of_runs(&mut a.samples.itl),
        e2el_ms: Dist::of_seconds(&mut a.samples.e2el),
        client_queue_ms: Dist::of_seconds(&mut a.samples.queue),
        request_throughput: per_s(a.requests),
        output_throughput: per_s(a.output),
        mean_waiting: over_dt(a.waiting_dt),
        max_waiting: a.max_waiting,
        mean_running: over_dt(a.running_dt),
        mean_kv_usage: over_dt(a.kv_dt),
        peak_kv_usage: a.peak_kv,
        prefix_hit_rate: if a.queried > 0 { a.hit as f64 / a.queried as f64 } else { 0.0 },
    }
}

impl ReplayReport {
    /// The figures as aligned text: one row per stage, then the overall row.
    pub fn to_text(&self) -> String {
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        let mut t = Table::new([
            "stage",
            "requests",
            "req/s",
            "out tok/s",
            "TTFT mean",
            "p50",
            "p90",
            "p99",
            "TPOT mean",
            "p50",
            "p90",
            "p99",
            "ITL mean",
            "p50",
            "p90",
            "p99",
            "E2EL mean",
            "p50",
            "p90",
            "p99",
            "waiting mean",
            "max",
            "running",
            "KV mean %",
            "peak %",
            "prefix hit %",
        ])
        .all_right()
        .align(0, Align::Left);
        for f in self.stages.iter().chain(std::iter::once(&self.overall)) {
            let mut row = vec![
                f.name.clone(),
                f.requests.to_string(),
                format!("{:.2}", f.request_throughput),
                format!("{:.0}", f.output_throughput),
            ];
            for d in [f.ttft_ms, f.tpot_ms, f.itl_ms, f.e2el_ms] {
                row.extend([ms(d.mean), ms(d.p50), ms(d.p90), ms(d.p99)]);
            }
            row.extend([
                format!("{:.1}", f.mean_waiting),
                f.max_waiting.to_string(),
                format!("{:.1}", f.mean_running),
                format!("{:.1}", 100.0 * f.mean_kv_usage),
                format!("{:.1}", 100.0 * f.peak_kv_usage),
                format!("{:.1}", 100.0 * f.prefix_hit_rate),
            ]);
            t.push(row);
        }
        let sessions = self
            .sessions
            .as_ref()
            .map(|s| {
                let secs = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
                format!(
                    "sessions: {} completed ({} turns), completion mean {} s, p50 {}, p90 {}, p99 {}; {:.0} sessions/hour\n",
                    s.completed,
                    s.turns,
                    secs(s.mean_completion_s),
                    secs(s.p50_completion_s),
                    secs(s.p90_completion_s),
                    secs(s.p99_completion_s),
                    s.sessions_per_hour
                )
            })
            .unwrap_or_default();
        let rejected = match self.overall.rejected {
            0 => String::new(),
            n => format!(
                "{n} requests refused: prompt and max_tokens over the model's context length (an HTTP 400 from vLLM); they are in no latency figure\n"
            ),
        };
        let near = match &self.published_error {
            Some(e) => {
                let pct = |m: Medians| {
                    let p = |v: Option<f64>| v.map(|v| format!("±{v:.0} %")).unwrap_or_else(|| "-".into());
                    format!("TTFT {}, TPOT {}, E2E {}", p(m.ttft), p(m.tpot), p(m.e2e))
                };
                format!(
                    "how near: replayed, {} published runs of this engine under load came within {} of their measured means in half the runs and within {} in nine of ten (docs/SIMULATOR.md, section 7)\n",
                    e.runs,
                    pct(e.median_abs_err_pct),
                    pct(e.p90_abs_err_pct)
                )
            }
            None => "how near: no published run of this engine under load has been replayed (docs/SIMULATOR.md, section 7)\n".into(),
        };
        let near = match self.caveat {
            Some(c) => format!("{near}caveat: {c}\n"),
            None => near,
        };
        format!(
            "{}\n{}\n{}\n{sessions}{rejected}arrivals {}; {} requests simulated in {:.1} s of model time, {} steps, {} preemptions, prefix caching {}\n\
             (latencies in ms; waiting and running in requests)\n{near}",
            self.deployment,
            self.workload,
            t.text().trim_end(),
            self.arrivals,
            self.requests_simulated,
            self.simulated_s,
            self.steps,
            self.preemptions,
            if self.prefix_caching { "on" } else { "off" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::perf::{DeploymentSpec, EngineKnobs};
    use fleetbench_workload::{Arrival, ArrivalSpec, Traffic, WorkloadSpec};

    fn h100() -> Deployment {
        h100_with(EngineKnobs::default())
    }

    /// Llama 3.1 8B in FP8 on an H100 under vLLM, with these engine settings.
    fn h100_with(knobs: EngineKnobs) -> Deployment {
        let c = Catalog::embedded().unwrap();
        let spec = DeploymentSpec {
            gpu: "h100-sxm".into(),
            model: "llama-3.1-8b".into(),
            quant: "fp8".into(),
            engine: "vllm".into(),
            knobs,
            ..DeploymentSpec::default()
        };
        Deployment::resolve(&c, &spec).unwrap()
    }

    /// The H100 with 15 % of its memory for vLLM: a KV cache small enough to
    /// evict and preempt under a few tens of requests a second.
    fn small_cache() -> Deployment {
        h100_with(EngineKnobs { gpu_memory_utilization: Some(0.15), ..EngineKnobs::default() })
    }

    fn run(
        workload: &str,
        arrivals: Option<&str>,
        schedule: Schedule,
        requests: Option<u64>,
        cache: bool,
    ) -> ReplayReport {
        run_on(h100(), workload, arrivals, schedule, requests, cache)
    }

    fn run_on(
        d: Deployment,
        workload: &str,
        arrivals: Option<&str>,
        schedule: Schedule,
        requests: Option<u64>,
        cache: bool,
    ) -> ReplayReport {
        let spec = WorkloadSpec::parse(workload).unwrap();
        let a = arrivals.map(|a| ArrivalSpec::parse(a).unwrap());
        let t = Traffic::resolve(&spec, true, a.as_ref(), 3).unwrap();
        let plan = ReplayPlan {
            schedule,
            arrivals: t.arrivals,
            requests,
            duration_s: None,
            warmup: 0,
            sampling: SamplingParams::default(),
            seed: 3,
            prefix_caching: cache,
        };
        replay(d, &plan, t.workload.as_ref())
    }

    const SP: &str = "shared-prefix:groups=4,users=16,system=2000,question=100,output=50";

    /// Run-length coded gaps give the figures the gaps themselves give:
    /// the same percentiles (numpy's linear ones) and the same mean.
    #[test]
    fn gaps_in_runs_read_as_the_gaps_themselves() {
        let runs = [(0.012, 3u64), (0.007, 1), (0.012, 2), (0.031, 1), (0.007, 4), (0.009, 1)];
        let mut flat: Vec<f64> = runs.iter().flat_map(|(v, n)| std::iter::repeat_n(*v, *n as usize)).collect();
        let (a, b) = (Dist::of_runs(&mut runs.to_vec()), Dist::of_seconds(&mut flat));
        for (x, y) in [(a.mean, b.mean), (a.p50, b.p50), (a.p90, b.p90), (a.p99, b.p99)] {
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
        assert_eq!(Dist::of_runs(&mut []), Dist::default());
        // A step's tokens share one gap: a run a step, not a gap a token.
        let mut s = Samples::default();
        for gap in [0.01, 0.01, 0.01, 0.02, 0.02, 0.01] {
            s.gap(gap);
        }
        assert_eq!(s.itl, vec![(0.01, 3), (0.02, 2), (0.01, 1)]);
    }

    /// A plan of more requests than a replay holds is refused before any is
    /// simulated, with what to change; a duration or a budget that stops it
    /// sooner is not.
    #[test]
    fn a_replay_of_too_many_requests_is_refused_before_it_starts() {
        let plan = |arrivals: Option<&str>, schedule: Schedule, requests: Option<u64>, duration_s: Option<f64>| {
            let spec = WorkloadSpec::parse("synthetic:in=100,out=10").unwrap();
            let a = arrivals.map(|a| ArrivalSpec::parse(a).unwrap());
            let t = Traffic::resolve(&spec, true, a.as_ref(), 3).unwrap();
            ReplayPlan {
                schedule,
                arrivals: t.arrivals,
                requests,
                duration_s,
                warmup: 0,
                sampling: SamplingParams::default(),
                seed: 3,
                prefix_caching: true,
            }
        };
        let open = Schedule::Open { rate: 1.0, arrival: Arrival::Poisson, max_concurrency: None };
        let huge = plan(Some("constant:1000/s*1000000s"), open, None, None);
        assert_eq!(huge.planned_requests(), Some(1e9));
        let why = huge.check_size().unwrap_err();
        assert!(why.contains("about 1000000000 requests") && why.contains("at most 10000000"), "{why}");
        assert!(plan(Some("constant:1000/s*1000000s"), open, None, Some(10.0)).check_size().is_ok());
        assert!(plan(Some("constant:1000/s*1000000s"), open, Some(5000), None).check_size().is_ok());
        assert!(plan(Some("poisson:8/s*60s,20/s"), open, None, Some(120.0)).check_size().is_ok());
        assert_eq!(plan(Some("poisson:8/s*60s,20/s"), open, None, Some(120.0)).planned_requests(), Some(1680.0));
        let closed = Schedule::Closed { concurrency: 4 };
        assert!(plan(None, closed, Some(20_000_000), None).check_size().is_err());
        assert_eq!(plan(None, closed, None, None).planned_requests(), None);
    }

    /// A vLLM replay says how near vLLM's published runs under load came,
    /// in its text and its JSON; an engine with no such runs says it has none.
    #[test]
    fn a_replay_states_how_near_its_engine_s_published_runs_came() {
        let closed = Schedule::Closed { concurrency: 2 };
        let vllm = run("synthetic:in=100,out=10", None, closed, Some(4), true);
        assert_eq!(vllm.published_error, Some(VLLM_PUBLISHED_ERROR));
        let text = vllm.to_text();
        assert!(text.contains("how near: replayed, 133 published runs") && text.contains("TTFT ±18 %"), "{text}");
        let json = serde_json::to_value(&vllm).unwrap();
        assert_eq!(json["published_error"]["median_abs_err_pct"]["tpot"], 5.5);
        let replay_on = |gpu: &str, model: &str, engine: &str| {
            let spec = DeploymentSpec {
                gpu: gpu.into(),
                model: model.into(),
                engine: engine.into(),
                ..DeploymentSpec::default()
            };
            let d = Deployment::resolve(&Catalog::embedded().unwrap(), &spec).unwrap();
            run_on(d, "synthetic:in=100,out=10", None, closed, Some(4), true)
        };
        let sglang = replay_on("h100-sxm", "llama-3.1-8b", "sglang");
        assert_eq!(sglang.published_error, None);
        assert!(sglang.to_text().contains("no published run of this engine under load"));
        assert!(serde_json::to_value(&sglang).unwrap().get("published_error").is_none());
        assert!(vllm.caveat.is_none() && !text.contains("caveat"));
        // A model with linear-attention layers carries what its runs said.
        let hybrid = replay_on("h200", "qwen3.5-35b-a3b", "vllm");
        assert_eq!(hybrid.caveat, Some(LINEAR_ATTENTION_CAVEAT));
        assert!(hybrid.to_text().contains("caveat: models with linear-attention layers read faster"));
        assert!(serde_json::to_value(&hybrid).unwrap()["caveat"].as_str().is_some_and(|c| c.contains("-74 %")));
    }

    #[test]
    fn the_frontend_latency_adds_to_every_first_token() {
        let plan = |t: &Traffic| ReplayPlan {
            schedule: Schedule::Closed { concurrency: 1 },
            arrivals: t.arrivals.clone(),
            requests: Some(4),
            duration_s: None,
            warmup: 0,
            sampling: SamplingParams::default(),
            seed: 3,
            prefix_caching: true,
        };
        let spec = WorkloadSpec::parse("synthetic:in=300,out=20").unwrap();
        let t = Traffic::resolve(&spec, true, None, 3).unwrap();
        let mut bare = h100();
        bare.engine.frontend_ms = 0.0;
        bare.engine.frontend_prompt_token_us = 0.0;
        let mut front = bare.clone();
        front.engine.frontend_ms = 20.0;
        // Tokenising the 300-token prompt at 100 µs a token adds 30 ms more.
        let mut tokenising = front.clone();
        tokenising.engine.frontend_prompt_token_us = 100.0;
        let ttft = |d: Deployment| {
            let r = replay(d, &plan(&t), t.workload.as_ref());
            (r.overall.ttft_ms.mean.unwrap(), r.overall.tpot_ms.mean.unwrap())
        };
        let ((ta, pa), (tb, pb), (tc, pc)) = (ttft(bare), ttft(front), ttft(tokenising));
        assert!((tb - ta - 20.0).abs() < 1e-6, "{ta} ms vs {tb} ms");
        assert!((tc - tb - 30.0).abs() < 1e-6, "{tb} ms vs {tc} ms");
        // The decode is the engine's alone.
        assert!((pa - pb).abs() < 1e-9 && (pb - pc).abs() < 1e-9);
    }

    #[test]
    fn a_busy_api_server_delays_new_requests() {
        let open = Schedule::Open { rate: 20.0, arrival: Arrival::Poisson, max_concurrency: None };
        let spec = WorkloadSpec::parse("synthetic:in=200,out=200").unwrap();
        let t = Traffic::resolve(&spec, true, None, 3).unwrap();
        let plan = ReplayPlan {
            schedule: open,
            arrivals: t.arrivals.clone(),
            requests: Some(200),
            duration_s: None,
            warmup: 0,
            sampling: SamplingParams::default(),
            seed: 3,
            prefix_caching: true,
        };
        let mut idle = h100();
        idle.engine.frontend_token_us = 0.0;
        let mut busy = h100();
        busy.engine.frontend_token_us = 200.0;
        let a = replay(idle, &plan, t.workload.as_ref()).overall.ttft_ms.mean.unwrap();
        let b = replay(busy, &plan, t.workload.as_ref()).overall.ttft_ms.mean.unwrap();
        assert!(b > a, "{a} ms idle, {b} ms busy");
    }

    #[test]
    fn prefix_caching_saves_prefill_of_shared_prompts() {
        let open = Schedule::Open { rate: 20.0, arrival: Arrival::Poisson, max_concurrency: None };
        let on = run(SP, None, open, Some(400), true);
        let off = run(SP, None, open, Some(400), false);
        assert_eq!(on.overall.requests, 400);
        assert_eq!(off.overall.prefix_hit_rate, 0.0);
        // 2000 of about 2100 prompt tokens are shared; only the first request of each group misses.
        assert!(on.overall.prefix_hit_rate > 0.85, "{}", on.overall.prefix_hit_rate);
        let (a, b) = (on.overall.ttft_ms.mean.unwrap(), off.overall.ttft_ms.mean.unwrap());
        assert!(a < b, "TTFT with caching {a} ms, without {b} ms");
        assert!(on.overall.mean_kv_usage > 0.0 && on.overall.peak_kv_usage <= 1.0);
    }

    /// A single-turn shared-prefix workload cycles its G·U prompts: from the
    /// second round on, each prompt is the same bytes as one served before,
    /// and vLLM's content-keyed cache finds all of it, not just the system
    /// prompt. One group of two users, one at a time: the first request
    /// misses, the second finds the 992 system tokens (whole blocks), the
    /// other six find 1,488 of their 1,500 tokens.
    #[test]
    fn a_repeated_prompt_is_found_whole_in_the_cache() {
        let closed = Schedule::Closed { concurrency: 1 };
        let r = run("shared-prefix:groups=1,users=2,system=1000,question=500,output=20", None, closed, Some(8), true);
        let want = (992.0 + 6.0 * 1488.0) / (8.0 * 1500.0);
        assert!((r.overall.prefix_hit_rate - want).abs() < 1e-9, "{} vs {want}", r.overall.prefix_hit_rate);
    }

    /// The hit rate is hits over the tokens looked up at each admission, as
    /// vLLM counts its prefix-cache queries: a preempted sequence admitted
    /// again looks its tokens up again, so the rate stays at most one in
    /// every stage even when the cache overflows and stages overlap.
    #[test]
    fn the_prefix_hit_rate_stays_a_rate_under_preemption() {
        let open = Schedule::Open { rate: 20.0, arrival: Arrival::Poisson, max_concurrency: None };
        let sp = "shared-prefix:groups=8,users=64,system=2000,question=500,output=1000";
        let r = run_on(small_cache(), sp, Some("poisson:20/s*5s,40/s*5s"), open, None, true);
        assert!(r.preemptions > 0, "the cache must overflow for this test to mean anything");
        for f in r.stages.iter().chain(std::iter::once(&r.overall)) {
            assert!(f.prefix_hit_rate > 0.0 && f.prefix_hit_rate <= 1.0, "{}", f.prefix_hit_rate);
        }
    }

    /// A replay is a pure function of its plan and seed, evictions
    /// included: cache entries last used in the same step (a group's prompt
    /// and a conversation inside it) leave in a fixed order, not in a hash
    /// map's, so two runs print the same figures.
    #[test]
    fn a_replay_under_cache_pressure_is_the_same_every_time() {
        let open = Schedule::Open { rate: 10.0, arrival: Arrival::Constant, max_concurrency: None };
        let sp = "shared-prefix:groups=16,users=4,system=1500,question=200,output=100,multi-turn";
        let once = || {
            let r = run_on(small_cache(), sp, Some("constant:10/s*20s,30/s*10s"), open, None, true);
            serde_json::to_string(&r).unwrap()
        };
        let first = once();
        assert!(first.contains("\"preemptions\""));
        for _ in 0..4 {
            assert_eq!(once(), first);
        }
    }

    #[test]
    fn multi_turn_reuses_the_conversation_history() {
        let closed = Schedule::Closed { concurrency: 8 };
        let single =
            run("shared-prefix:groups=2,users=4,system=200,question=100,output=100", None, closed, Some(64), true);
        let multi = run(
            "shared-prefix:groups=2,users=4,system=200,question=100,output=100,multi-turn",
            None,
            closed,
            Some(64),
            true,
        );
        assert_eq!(multi.overall.requests, 64);
        assert!(multi.overall.input_tokens > 3 * single.overall.input_tokens);
        assert!(multi.overall.prefix_hit_rate > 0.5, "{}", multi.overall.prefix_hit_rate);
    }

    /// A multi-turn `shared-prefix` user's history carries stand-ins of its
    /// answers (as inference-perf's joined prompts carry re-tokenized ones),
    /// so each turn finds the previous prompt in the cache, not the answer:
    /// one user, three turns of 1,600 + 160 + 160 tokens in 16-token blocks
    /// hit 0, then 1,760, then 2,080 tokens (keeping the answer would hit
    /// 1,904 and 2,224). An agent session's turns carry the model's own
    /// answers and keep them.
    #[test]
    fn a_turn_finds_the_previous_prompt_and_not_a_stand_in_answer() {
        let closed = Schedule::Closed { concurrency: 1 };
        let r = run(
            "shared-prefix:groups=1,users=1,system=1600,question=160,output=160,multi-turn",
            None,
            closed,
            Some(3),
            true,
        );
        assert_eq!(r.overall.input_tokens, 1760 + 2080 + 2400);
        let want = (1760.0 + 2080.0) / (1760.0 + 2080.0 + 2400.0);
        assert!((r.overall.prefix_hit_rate - want).abs() < 1e-9, "{} vs {want}", r.overall.prefix_hit_rate);
        let spec = WorkloadSpec::parse("shared-prefix:groups=1,users=1,multi-turn").unwrap();
        let t = Traffic::resolve(&spec, true, None, 3).unwrap();
        let turn = t.workload.request(1, &SamplingParams::default());
        assert!(turn.context.stand_in_answers && sizes(&turn, None).2.drop_answer);
    }

    /// Two multi-turn users at 50 requests/s, each request about 2 s long:
    /// a user's next turn waits for its last answer, so at most two run at
    /// once and the rest of each wait is client queue time. The same users
    /// asking single questions overlap.
    #[test]
    fn a_conversation_sends_its_next_turn_after_the_last_ends() {
        let open = Schedule::Open { rate: 50.0, arrival: Arrival::Constant, max_concurrency: None };
        let sp = "shared-prefix:groups=1,users=2,system=200,question=50,output=300";
        let multi = run(&format!("{sp},multi-turn"), None, open, Some(12), true);
        assert_eq!(multi.overall.requests, 12);
        assert!(multi.overall.mean_running <= 2.0 + 1e-9, "{} running", multi.overall.mean_running);
        let queued = multi.overall.client_queue_ms.mean.unwrap();
        assert!(queued > 1000.0, "turns waited {queued} ms on average");
        // A turn goes when the last ended, so the replay lasts six turns of each user.
        let e2e = multi.overall.e2el_ms.mean.unwrap();
        assert!(multi.simulated_s * 1e3 > 5.5 * e2e, "{} s for turns of {e2e} ms", multi.simulated_s);
        let single = run(sp, None, open, Some(12), true);
        assert!(single.overall.mean_running > 4.0, "{} running", single.overall.mean_running);
        assert!(single.overall.client_queue_ms.mean.unwrap() < 1e-9);
    }

    /// A prompt that with its max_tokens exceeds the model's context (131,072
    /// tokens for Llama 3.1 8B) is refused, as vLLM refuses it: counted, in no
    /// latency figure, and the user's next turn goes on.
    #[test]
    fn prompts_over_the_context_length_are_refused() {
        let closed = Schedule::Closed { concurrency: 1 };
        let huge = run("synthetic:in=140000,out=10", None, closed, Some(5), true);
        assert_eq!((huge.overall.requests, huge.overall.rejected), (0, 5));
        assert_eq!(huge.overall.ttft_ms.mean, None);
        // Turn k: 60,000 + 2,000 k + 1,000 prompt tokens and 1,000 more asked;
        // turns 0 to 34 fit, turns 35 to 39 do not.
        let sp = "shared-prefix:groups=1,users=1,system=60000,question=1000,output=1000,multi-turn";
        let grown = run(sp, None, closed, Some(40), true);
        assert_eq!((grown.overall.requests, grown.overall.rejected), (35, 5));
        assert!(grown.to_text().contains("5 requests refused"), "{}", grown.to_text());
    }

    /// Stages of `--arrivals` drain: the second starts once the first's
    /// backlog has ended, so an overloaded first stage leaves the second its
    /// own figures; a ramp's steps (no drain) carry the backlog over.
    #[test]
    fn a_stage_starts_when_the_stage_before_has_drained() {
        let spec = WorkloadSpec::parse("synthetic:in=4000,out=400").unwrap();
        let replay_with = |drain: bool| {
            let mut a = ArrivalSpec::parse("constant:60/s*10s,1/s*10s").unwrap();
            if let ArrivalSpec::Stages { drain: d, .. } = &mut a {
                *d = drain;
            }
            let t = Traffic::resolve(&spec, true, Some(&a), 3).unwrap();
            let plan = ReplayPlan {
                schedule: Schedule::Open { rate: 1.0, arrival: Arrival::Constant, max_concurrency: None },
                arrivals: t.arrivals,
                requests: None,
                duration_s: None,
                warmup: 0,
                sampling: SamplingParams::default(),
                seed: 3,
                prefix_caching: true,
            };
            replay(h100(), &plan, t.workload.as_ref())
        };
        let drained = replay_with(true);
        let carried = replay_with(false);
        let [first, second] = [&drained.stages[0], &drained.stages[1]];
        assert_eq!((first.requests, second.requests), (600, 10));
        // The first stage is overloaded; the second starts after its last request.
        assert!(first.ttft_ms.mean.unwrap() > 1000.0, "{:?}", first.ttft_ms);
        // The first lasts until its last request ended, well past its own
        // 10 s, and its throughput is what the server got through in that
        // time, not the 60 per second it was sent.
        assert!(first.end_s > 20.0 && first.end_s <= second.start_s + 1e-9, "{} then {}", first.end_s, second.start_s);
        let got_through = 600.0 / (first.end_s - first.start_s);
        assert!((first.request_throughput - got_through).abs() < 1e-9 && got_through < 30.0, "{got_through}/s");
        // The second's window moved with it: it opens well after its own
        // time (10 s), when the first stage's backlog ended, and lasts at
        // least its 10 s.
        assert!(second.start_s > 20.0, "second stage from {} s", second.start_s);
        assert!(second.end_s - second.start_s >= 10.0 - 1e-9, "{} to {}", second.start_s, second.end_s);
        assert!(second.ttft_ms.mean.unwrap() < 1000.0, "{:?}", second.ttft_ms);
        let behind = carried.stages[1].ttft_ms.mean.unwrap();
        assert!(
            behind > 2.0 * second.ttft_ms.mean.unwrap(),
            "carried over {behind} ms vs drained {:?}",
            second.ttft_ms
        );
    }

    #[test]
    fn stages_are_reported_apart_and_replays_are_deterministic() {
        let open = Schedule::Open { rate: 1.0, arrival: Arrival::Poisson, max_concurrency: None };
        let r = run("synthetic:in=300,out=40", Some("poisson:5/s*60s,15/s*60s"), open, None, true);
        assert_eq!(r.stages.len(), 2);
        let n: Vec<u64> = r.stages.iter().map(|s| s.requests).collect();
        assert!((n[0] as f64 - 300.0).abs() < 4.0 * 300f64.sqrt(), "{n:?}");
        assert!((n[1] as f64 - 900.0).abs() < 4.0 * 900f64.sqrt(), "{n:?}");
        assert_eq!(r.overall.requests, n[0] + n[1]);
        assert!(r.stages[1].request_throughput > 2.0 * r.stages[0].request_throughput);
        for f in &r.stages {
            assert!(f.ttft_ms.p50.unwrap() <= f.ttft_ms.p99.unwrap());
            assert!(f.itl_ms.mean.is_some() && f.tpot_ms.p90.is_some() && f.e2el_ms.mean.is_some());
        }
        let again = run("synthetic:in=300,out=40", Some("poisson:5/s*60s,15/s*60s"), open, None, true);
        assert_eq!(r, again);
        assert!(r.to_text().contains("poisson:15/s"));
    }

    const AGENTS: &str = "agent-session:turns=4..8,system=2000,tool-output=500..1500,output=100..200,think=0..2s";

    #[test]
    fn agent_sessions_run_whole_and_the_prefix_cache_serves_their_history() {
        let closed = Schedule::Closed { concurrency: 4 };
        let on = run(AGENTS, None, closed, Some(60), true);
        let off = run(AGENTS, None, closed, Some(60), false);
        let s = on.sessions.as_ref().unwrap();
        // Sessions are taken whole: every request belongs to a completed session.
        assert_eq!(s.turns, on.overall.requests);
        assert!(on.overall.requests <= 60 && on.overall.requests > 60 - 8, "{}", on.overall.requests);
        assert!(s.completed >= 7, "{}", s.completed);
        // Most of each later turn is history the last turn left in the cache.
        assert!(on.overall.prefix_hit_rate > 0.6, "{}", on.overall.prefix_hit_rate);
        assert_eq!(off.overall.prefix_hit_rate, 0.0);
        let (a, b) = (on.overall.ttft_ms.mean.unwrap(), off.overall.ttft_ms.mean.unwrap());
        assert!(a < b, "TTFT with caching {a} ms, without {b} ms");
        let (ta, tb) = (s.mean_completion_s.unwrap(), off.sessions.as_ref().unwrap().mean_completion_s.unwrap());
        assert!(ta < tb, "session completion with caching {ta} s, without {tb} s");
        // A session's think times alone make it last longer than its turns' latencies.
        assert!(ta > 0.0 && s.sessions_per_hour > 0.0);
        assert_eq!(on, run(AGENTS, None, closed, Some(60), true));

        // Open loop: one session per arrival.
        let open = Schedule::Open { rate: 0.5, arrival: Arrival::Constant, max_concurrency: None };
        let r = run(AGENTS, None, open, Some(40), true);
        let s = r.sessions.as_ref().unwrap();
        assert_eq!(s.turns, r.overall.requests);
        assert!(s.completed >= 4);
        assert!(r.to_text().contains("sessions"));
    }

    #[test]
    fn max_concurrency_queues_on_the_client() {
        let open = Schedule::Open { rate: 200.0, arrival: Arrival::Constant, max_concurrency: Some(2) };
        let r = run("synthetic:in=200,out=64", None, open, Some(50), true);
        assert_eq!(r.overall.requests, 50);
        assert!(r.overall.client_queue_ms.p90.unwrap() > 0.0);
        assert!(r.overall.mean_running <= 2.0 + 1e-9);
    }
}
