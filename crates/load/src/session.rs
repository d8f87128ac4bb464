//! Sending a session workload (agent sessions, conversation sets): each
//! sender runs one session at a time, turn after turn. Turn k goes with the
//! whole history (earlier turns and the answers to them: the model's own
//! unless the plan brings the dataset's), then the sender waits for the
//! answer, thinks for the turn's think time and sends turn k+1. A failed
//! turn ends its session (it is then not completed).
//!
//! Think times are the plan's in the backend's time: against a simulator
//! that announced a time scale they are divided by it.
//!
//! Closed loop: `concurrency` agents, each starting its next session when the
//! last one ends. Open loop: session `i` starts at arrival `i`. Sessions are
//! taken whole: with a request budget, a session whose turns do not all fit
//! is not started, so a run never cuts one short for the budget (only the
//! duration or Ctrl-C can). Warm-up: sessions started while fewer than
//! `warmup` requests were taken are warm-up, every turn of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fleetbench_client::Client;
use fleetbench_core::{ChatMessage, RequestRecord, RunClock, SamplingParams};
use fleetbench_workload::arrivals::Instant;
use fleetbench_workload::{SessionPlan, Workload};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

/// Hands out whole sessions and the request indexes of their turns.
#[derive(Default)]
struct Taker {
    next_session: u64,
    next_index: u64,
    /// Index of the first measured request (after the warm-up sessions).
    measured_from: Option<u64>,
    /// A session did not fit the budget: nothing more is started.
    exhausted: bool,
}

/// What a sender takes: a session and the index of its first turn.
struct Taken {
    plan: SessionPlan,
    base: u64,
    warmup: bool,
}

/// What every sender shares.
#[derive(Clone)]
pub(crate) struct Senders {
    client: Client,
    /// The caller's client kept answers' texts on records; else they are dropped after use.
    keep_text: bool,
    workload: Arc<dyn Workload>,
    clock: RunClock,
    sink: mpsc::UnboundedSender<RequestRecord>,
    finished: Arc<AtomicU64>,
    sampling: SamplingParams,
    deadline: Option<f64>,
    warmup: u64,
    /// A backend that runs this many times faster than the hardware it
    /// models (`sim serve --time-scale`) gets think times shortened as much,
    /// so that they are the plan's in modelled time.
    time_scale: f64,
    taker: Arc<Mutex<Taker>>,
}

impl Senders {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: &Client,
        workload: &Arc<dyn Workload>,
        clock: RunClock,
        sink: &mpsc::UnboundedSender<RequestRecord>,
        finished: &Arc<AtomicU64>,
        sampling: &SamplingParams,
        deadline: Option<f64>,
        warmup: u64,
    ) -> Senders {
        Senders {
            client: client.keeping_output_text(),
            keep_text: client.config().keep_output_text,
            workload: workload.clone(),
            clock,
            sink: sink.clone(),
            finished: finished.clone(),
            sampling: sampling.clone(),
            deadline,
            warmup,
            time_scale: client.time_scale().filter(|s| *s > 0.0).unwrap_or(1.0),
            taker: Arc::default(),
        }
    }

    /// The next session, unless the budget of `requests` measured requests
    /// cannot hold all of its turns. Warm-up sessions are outside the budget.
    fn take(&self, requests: Option<u64>, warmup_phase: bool) -> Option<Taken> {
        let mut guard = self.taker.lock().ok()?;
        let t = &mut *guard;
        if t.exhausted || (warmup_phase && t.next_index >= self.warmup) {
            return None;
        }
        let plan = self.workload.session(t.next_session)?;
        let n = plan.turns.len() as u64;
        let from = if warmup_phase {
            0
        } else {
            let next = t.next_index;
            *t.measured_from.get_or_insert(next)
        };
        if !warmup_phase && requests.is_some_and(|r| t.next_index + n > from + r) {
            t.exhausted = true;
            return None;
        }
        let base = t.next_index;
        t.next_session += 1;
        t.next_index += n;
        Some(Taken { plan, base, warmup: warmup_phase })
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| self.clock.now() >= d)
    }

    /// Runs one session from `t_ready`; returns when its last turn ended.
    async fn run_session(&self, s: Taken, agent: Option<u32>, t_ready: f64) -> Result<f64, Closed> {
        let mut history: Vec<ChatMessage> = Vec::with_capacity(2 * s.plan.turns.len());
        let mut history_tokens = 0u32;
        let mut t_sched = t_ready;
        for (k, turn) in s.plan.turns.iter().enumerate() {
            if k > 0 && !turn.think.is_zero() {
                t_sched += turn.think.as_secs_f64() / self.time_scale;
                tokio::time::sleep_until(self.clock.instant_at(t_sched).into()).await;
            }
            if self.past_deadline() {
                break;
            }
            let spec = self.workload.turn(&s.plan, k as u32, &history, history_tokens, &self.sampling);
            let mut rec = self.client.send(&spec, &self.clock, t_sched).await;
            rec.index = s.base + k as u64;
            rec.agent = agent;
            rec.context = spec.context;
            rec.warmup = s.warmup;
            let ok = rec.ok();
            let answer = match &turn.answer {
                Some(a) => a.clone(),
                None => rec.output_text.clone().unwrap_or_default(),
            };
            let answer_tokens = if turn.answer.is_some() || rec.output_tokens == 0 {
                answer.split_whitespace().count() as u32
            } else {
                rec.output_tokens.min(u32::MAX as u64) as u32
            };
            history.push(ChatMessage { role: "user".into(), content: turn.text.clone() });
            history.push(ChatMessage { role: "assistant".into(), content: answer });
            history_tokens = history_tokens.saturating_add(turn.tokens).saturating_add(answer_tokens);
            if !self.keep_text {
                rec.output_text = None;
            }
            t_sched = rec.t_end;
            self.finished.fetch_add(1, Ordering::SeqCst);
            if self.sink.send(rec).is_err() {
                return Err(Closed);
            }
            if !ok {
                break;
            }
        }
        Ok(t_sched)
    }
}

/// The records' receiver is gone: stop sending.
struct Closed;

/// Closed loop: warm-up sessions first (all of them end before the first
/// measured one starts), then sessions until the budget or the deadline.
/// `starts`: when each agent joins the measured phase (a concurrency ramp).
pub(crate) async fn closed_loop(senders: Senders, concurrency: u32, requests: Option<u64>, starts: &[f64]) {
    if senders.warmup > 0 {
        agents(&senders, concurrency, None, true, &[]).await;
    }
    agents(&senders, concurrency, requests, false, starts).await;
}

async fn agents(senders: &Senders, concurrency: u32, requests: Option<u64>, warmup_phase: bool, starts: &[f64]) {
    let mut agents = JoinSet::new();
    let t0 = senders.clock.now();
    for agent in 0..concurrency {
        let s = senders.clone();
        let start = starts.get(agent as usize).copied().unwrap_or(0.0);
        agents.spawn(async move {
            let mut t_ready = t0 + start;
            if start > 0.0 {
                tokio::time::sleep_until(s.clock.instant_at(t_ready).into()).await;
            }
            while !s.past_deadline() {
                let Some(taken) = s.take(requests, warmup_phase) else { break };
                match s.run_session(taken, Some(agent), t_ready).await {
                    Ok(t) => t_ready = t,
                    Err(Closed) => break,
                }
            }
        });
    }
    while agents.join_next().await.is_some() {}
}

/// Open loop: session `i` starts at arrival `i`; at most `max_concurrency`
/// sessions run at once when set (a later one waits, and its wait shows as
/// client queue time of its first turn).
pub(crate) async fn open_loop(
    senders: Senders,
    arrivals: Box<dyn Iterator<Item = Instant> + Send>,
    mut stages: crate::engine::StageClock,
    max_concurrency: Option<u32>,
    requests: Option<u64>,
) {
    let gate = max_concurrency.map(|m| Arc::new(Semaphore::new(m.max(1) as usize)));
    let mut tasks = JoinSet::new();
    let t0 = senders.clock.now();
    for arrival in arrivals {
        if stages.opens_stage(&arrival) {
            // Every session of the stage before ends first.
            while tasks.join_next().await.is_some() {}
            stages.begin(&arrival, t0, senders.clock.now());
        }
        let t_sched = stages.at(t0, &arrival);
        if senders.deadline.is_some_and(|d| t_sched >= d) {
            break;
        }
        crate::engine::pace_until(senders.clock.instant_at(t_sched)).await;
        while tasks.try_join_next().is_some() {}
        let warmup_phase = senders.taker.lock().map(|t| t.next_index < senders.warmup).unwrap_or(false);
        let Some(taken) = senders.take(requests, warmup_phase) else { break };
        let permit = match &gate {
            Some(g) => match g.clone().acquire_owned().await {
                Ok(p) => Some(p),
                Err(_) => break,
            },
            None => None,
        };
        let s = senders.clone();
        tasks.spawn(async move {
            let _ = s.run_session(taken, None, t_sched).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}
