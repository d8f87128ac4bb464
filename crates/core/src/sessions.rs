//! The figures of a session workload (docs/METRICS.md, "Sessions"): how many
//! sessions completed, how long each took from the moment its sender was
//! ready to start it to its last token, sessions per hour, and per turn the
//! time to first token against the context the turn carried.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::outcome::RequestRecord;
use crate::stats;

/// TTFT and TPOT of the turns whose context falls in one band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextBand {
    /// Context tokens (history before the turn's new text), `from` inclusive, `to` exclusive.
    pub context_from: u32,
    pub context_to: u32,
    pub requests: u64,
    pub median_ttft_ms: Option<f64>,
    pub median_tpot_ms: Option<f64>,
}

/// What `--json-out` carries under `sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SessionFigures {
    /// Sessions with at least one measured turn.
    pub started: u64,
    /// Sessions whose every planned turn was sent and answered.
    pub completed: u64,
    /// Turns of the completed sessions.
    pub turns: u64,
    /// Completion time of the completed sessions, seconds.
    pub mean_completion_s: Option<f64>,
    pub p50_completion_s: Option<f64>,
    pub p90_completion_s: Option<f64>,
    pub p99_completion_s: Option<f64>,
    /// Completed sessions per hour of the run's duration.
    pub sessions_per_hour: f64,
    /// Prompt and output tokens of a completed session, mean.
    pub mean_session_input_tokens: Option<f64>,
    pub mean_session_output_tokens: Option<f64>,
    /// Median TTFT of first turns and of every later turn.
    pub median_ttft_first_turn_ms: Option<f64>,
    pub median_ttft_later_turns_ms: Option<f64>,
    /// Turns by context length (bands doubling from 1,024 tokens).
    pub by_context: Vec<ContextBand>,
    /// Share of prompt tokens the server says it served from its prefix
    /// cache (llama.cpp's `cache_n` over `cache_n + prompt_n`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cached_prompt_share: Option<f64>,
}

/// The band a context length falls in: [0, 1024), then doubling.
fn band(tokens: u32) -> (u32, u32) {
    if tokens < 1024 {
        return (0, 1024);
    }
    let lo = 1u32 << (31 - tokens.leading_zeros());
    (lo, lo.saturating_mul(2))
}

impl SessionFigures {
    /// `None` unless some measured record belongs to a session workload.
    /// `duration` is the run's (seconds from the first send to the last end).
    pub fn compute(measured: &[&RequestRecord], duration: f64) -> Option<SessionFigures> {
        let turns: Vec<&RequestRecord> =
            measured.iter().copied().filter(|r| r.context.session_turns.is_some()).collect();
        if turns.is_empty() {
            return None;
        }
        let mut by_session: BTreeMap<&str, Vec<&RequestRecord>> = BTreeMap::new();
        for r in &turns {
            by_session.entry(r.context.conversation.as_deref().unwrap_or(&r.request_id)).or_default().push(r);
        }
        let mut f = SessionFigures { started: by_session.len() as u64, ..Default::default() };
        let (mut times, mut input, mut output) = (Vec::new(), Vec::new(), Vec::new());
        for rs in by_session.values() {
            let planned = rs[0].context.session_turns.unwrap_or(0) as usize;
            if rs.len() != planned || !rs.iter().all(|r| r.ok()) {
                continue;
            }
            f.completed += 1;
            f.turns += rs.len() as u64;
            let start = rs.iter().map(|r| r.t_sched).fold(f64::INFINITY, f64::min);
            let end = rs.iter().map(|r| r.t_end).fold(f64::NEG_INFINITY, f64::max);
            times.push(end - start);
            input.push(rs.iter().map(|r| r.input_tokens.unwrap_or(0)).sum::<u64>() as f64);
            output.push(rs.iter().map(|r| r.output_tokens).sum::<u64>() as f64);
        }
        f.mean_completion_s = stats::mean(&times);
        f.p50_completion_s = stats::percentile(&times, 50.0);
        f.p90_completion_s = stats::percentile(&times, 90.0);
        f.p99_completion_s = stats::percentile(&times, 99.0);
        if duration > 0.0 {
            f.sessions_per_hour = f.completed as f64 * 3600.0 / duration;
        }
        f.mean_session_input_tokens = stats::mean(&input);
        f.mean_session_output_tokens = stats::mean(&output);

        let ms = |r: &RequestRecord| r.ttft().map(|s| s * 1000.0);
        let ok: Vec<&RequestRecord> = turns.iter().copied().filter(|r| r.ok()).collect();
        let first: Vec<f64> = ok.iter().filter(|r| r.context.turn == Some(0)).filter_map(|r| ms(r)).collect();
        let later: Vec<f64> = ok.iter().filter(|r| r.context.turn.unwrap_or(0) > 0).filter_map(|r| ms(r)).collect();
        f.median_ttft_first_turn_ms = stats::percentile(&first, 50.0);
        f.median_ttft_later_turns_ms = stats::percentile(&later, 50.0);

        let mut bands: BTreeMap<(u32, u32), (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for r in &ok {
            let b = bands.entry(band(r.context.context_tokens.unwrap_or(0))).or_default();
            b.0.extend(ms(r));
            b.1.extend(r.tpot().map(|s| s * 1000.0));
        }
        f.by_context = bands
            .into_iter()
            .map(|((from, to), (ttft, tpot))| ContextBand {
                context_from: from,
                context_to: to,
                requests: ttft.len() as u64,
                median_ttft_ms: stats::percentile(&ttft, 50.0),
                median_tpot_ms: stats::percentile(&tpot, 50.0),
            })
            .collect();

        let (mut cached, mut processed) = (0u64, 0u64);
        for t in ok.iter().filter_map(|r| r.server_timings) {
            if let (Some(c), Some(p)) = (t.cache_n, t.prompt_n) {
                cached += c;
                processed += p;
            }
        }
        if cached + processed > 0 {
            f.server_cached_prompt_share = Some(cached as f64 / (cached + processed) as f64);
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{RequestError, ServerTimings};
    use crate::request::RequestContext;
    use crate::ErrorKind;

    fn turn(session: &str, k: u32, of: u32, sched: f64, end: f64, context: u32) -> RequestRecord {
        RequestRecord {
            request_id: format!("{session}-t{k}"),
            t_sched: sched,
            t_send: sched,
            t_first_token: Some(sched + 0.1 * (k + 1) as f64),
            t_last_token: Some(end),
            t_end: end,
            output_tokens: 10,
            input_tokens: Some(100),
            server_timings: Some(ServerTimings { prompt_n: Some(10), cache_n: Some(30), ..Default::default() }),
            context: RequestContext {
                conversation: Some(session.into()),
                turn: Some(k),
                context_tokens: Some(context),
                session_turns: Some(of),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn completed_sessions_their_times_and_the_turns_by_context() {
        let mut recs = [
            turn("a", 0, 2, 0.0, 1.0, 500),
            turn("a", 1, 2, 1.5, 3.0, 1500),
            turn("b", 0, 2, 0.0, 2.0, 500),
            turn("b", 1, 2, 2.0, 5.0, 3000),
            // c: one of three turns, so not completed; d: its last turn failed.
            turn("c", 0, 3, 0.0, 1.0, 500),
            turn("d", 0, 2, 0.0, 1.0, 500),
            turn("d", 1, 2, 1.0, 2.0, 1100),
        ];
        recs[6].error = Some(RequestError { kind: ErrorKind::HttpStatus, status: Some(500), message: "x".into() });
        let refs: Vec<&RequestRecord> = recs.iter().collect();
        let f = SessionFigures::compute(&refs, 3600.0).unwrap();
        assert_eq!((f.started, f.completed, f.turns), (4, 2, 4));
        assert_eq!(f.mean_completion_s, Some(4.0));
        assert_eq!(f.p50_completion_s, Some(4.0));
        assert!((f.p90_completion_s.unwrap() - 4.8).abs() < 1e-9);
        assert_eq!(f.sessions_per_hour, 2.0);
        assert_eq!((f.mean_session_input_tokens, f.mean_session_output_tokens), (Some(200.0), Some(20.0)));
        assert!((f.median_ttft_first_turn_ms.unwrap() - 100.0).abs() < 1e-9);
        assert!((f.median_ttft_later_turns_ms.unwrap() - 200.0).abs() < 1e-9);
        let bands: Vec<(u32, u32, u64)> =
            f.by_context.iter().map(|b| (b.context_from, b.context_to, b.requests)).collect();
        assert_eq!(bands, [(0, 1024, 4), (1024, 2048, 1), (2048, 4096, 1)]);
        assert_eq!(f.server_cached_prompt_share, Some(0.75));
        // Records of other workloads have no session figures.
        let plain = RequestRecord::default();
        assert_eq!(SessionFigures::compute(&[&plain], 1.0), None);
    }
}
