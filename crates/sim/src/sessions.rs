//! Session workloads (`agent-session`) in `sim replay`: who runs which
//! session, and the turns waiting out their think time. Each sender runs one
//! session at a time; turn k+1 is due its think time after turn k's last
//! token; the simulated model answers with exactly the turn's `max_tokens`,
//! which join the history. Sessions are taken whole, as `fleetbench run`
//! takes them (`crates/load/src/session.rs`): warm-up sessions while fewer
//! than `warmup` requests were taken, then sessions whose turns all fit in
//! the request budget.

use fleetbench_core::stats::{mean, percentile};
use fleetbench_core::{RequestSpec, SamplingParams};
use fleetbench_workload::{SessionPlan, Workload};
use serde::Serialize;

/// A session being run by one sender.
struct Running {
    plan: SessionPlan,
    next_turn: u32,
    history_tokens: u32,
    started: f64,
    warmup: bool,
    stage: u32,
}

/// A turn due at `t` from sender `slot`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Due {
    t: f64,
    slot: usize,
}

/// What the senders of a replay share.
pub(crate) struct SessionSource<'a> {
    workload: &'a dyn Workload,
    sampling: &'a SamplingParams,
    warmup: u64,
    requests: Option<u64>,
    duration_s: Option<f64>,
    next_session: u64,
    next_index: u64,
    measured_from: Option<u64>,
    exhausted: bool,
    slots: Vec<Option<Running>>,
    due: Vec<Due>,
    completion_s: Vec<f64>,
    turns: u64,
}

/// A turn to send: its request, its sender, whether it is warm-up, its stage.
pub(crate) struct Turn {
    pub spec: RequestSpec,
    pub slot: usize,
    pub warmup: bool,
    pub stage: u32,
}

impl<'a> SessionSource<'a> {
    /// `None` unless the workload is a session workload.
    pub(crate) fn new(
        workload: &'a dyn Workload,
        sampling: &'a SamplingParams,
        warmup: u64,
        requests: Option<u64>,
        duration_s: Option<f64>,
    ) -> Option<SessionSource<'a>> {
        workload.session(0)?;
        Some(SessionSource {
            workload,
            sampling,
            warmup,
            requests,
            duration_s,
            next_session: 0,
            next_index: 0,
            measured_from: None,
            exhausted: false,
            slots: Vec::new(),
            due: Vec::new(),
            completion_s: Vec::new(),
            turns: 0,
        })
    }

    /// Requests taken so far (whole sessions).
    pub(crate) fn taken(&self) -> u64 {
        self.next_index
    }

    /// Sender `slot` (a new one when `None`) starts the next session at `t`
    /// if the budget and the duration allow; false when it does not.
    pub(crate) fn start(&mut self, slot: Option<usize>, t: f64, stage: u32) -> bool {
        if self.exhausted || self.duration_s.is_some_and(|d| t >= d) {
            return false;
        }
        let Some(plan) = self.workload.session(self.next_session) else { return false };
        let n = plan.turns.len() as u64;
        let warmup = self.next_index < self.warmup;
        if !warmup {
            let from = *self.measured_from.get_or_insert(self.next_index);
            if self.requests.is_some_and(|r| self.next_index + n > from + r) {
                self.exhausted = true;
                return false;
            }
        }
        self.next_session += 1;
        self.next_index += n;
        let slot = slot.unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if slot >= self.slots.len() {
            self.slots.resize_with(slot + 1, || None);
        }
        self.slots[slot] = Some(Running { plan, next_turn: 0, history_tokens: 0, started: t, warmup, stage });
        self.due.push(Due { t, slot });
        true
    }

    /// A session is under way (a turn in flight or waiting out its think time).
    pub(crate) fn active(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// When the earliest waiting turn is due.
    pub(crate) fn next_due(&self) -> Option<f64> {
        self.due.iter().map(|d| d.t).min_by(f64::total_cmp)
    }

    /// The earliest waiting turn, built, with the instant it was due; `None`
    /// when none waits or the duration has passed (its session is cut).
    pub(crate) fn pop_due(&mut self) -> Option<(f64, Turn)> {
        let i = (0..self.due.len()).min_by(|&a, &b| self.due[a].t.total_cmp(&self.due[b].t))?;
        if self.duration_s.is_some_and(|d| self.due[i].t >= d) {
            // The earliest is past the duration, so every one is: their sessions are cut.
            self.due.clear();
            self.slots.iter_mut().for_each(|s| *s = None);
            return None;
        }
        let Due { t, slot } = self.due.swap_remove(i);
        let r = self.slots[slot].as_mut()?;
        let spec = self.workload.turn(&r.plan, r.next_turn, &[], r.history_tokens, self.sampling);
        Some((t, Turn { spec, slot, warmup: r.warmup, stage: r.stage }))
    }

    /// Sender `slot`'s turn ended at `t` after `output` tokens: its next turn
    /// is due after the think time, or its session is complete. Returns true
    /// when the session ended (a closed-loop sender then starts another).
    pub(crate) fn finished(&mut self, slot: usize, t: f64, output: u32) -> bool {
        let Some(r) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return true };
        let turn = &r.plan.turns[r.next_turn as usize];
        r.history_tokens = r.history_tokens.saturating_add(turn.tokens).saturating_add(output);
        r.next_turn += 1;
        if let Some(next) = r.plan.turns.get(r.next_turn as usize) {
            self.due.push(Due { t: t + next.think.as_secs_f64(), slot });
            return false;
        }
        if !r.warmup {
            self.completion_s.push(t - r.started);
            self.turns += r.plan.turns.len() as u64;
        }
        self.slots[slot] = None;
        true
    }

    /// The session figures of the replay, over `span` seconds.
    pub(crate) fn figures(&self, span: f64) -> ReplaySessions {
        let v = &self.completion_s;
        ReplaySessions {
            completed: v.len() as u64,
            turns: self.turns,
            mean_completion_s: mean(v),
            p50_completion_s: percentile(v, 50.0),
            p90_completion_s: percentile(v, 90.0),
            p99_completion_s: percentile(v, 99.0),
            sessions_per_hour: if span > 0.0 { v.len() as f64 * 3600.0 / span } else { 0.0 },
        }
    }
}

/// Sessions of a replayed session workload (docs/METRICS.md, "Sessions").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplaySessions {
    /// Measured sessions whose every turn finished.
    pub completed: u64,
    pub turns: u64,
    pub mean_completion_s: Option<f64>,
    pub p50_completion_s: Option<f64>,
    pub p90_completion_s: Option<f64>,
    pub p99_completion_s: Option<f64>,
    pub sessions_per_hour: f64,
}
