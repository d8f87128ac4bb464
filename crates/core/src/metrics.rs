//! The run figures of docs/METRICS.md, computed from request records: counts,
//! throughputs, latency distributions with vLLM's key names, goodput under
//! SLOs, concurrency reached, the steady-state window and 95 % intervals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::outcome::RequestRecord;
use crate::stats::{self, Interval};
use crate::streaming::{FigureStream, Limits, Spans};

/// Service-level objectives for goodput, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl Slo {
    pub fn is_empty(&self) -> bool {
        self.ttft_ms.is_none() && self.tpot_ms.is_none() && self.e2el_ms.is_none()
    }

    /// Whether a completed request met every objective given. TPOT counts as
    /// 0 when the request produced one token.
    pub fn met_by(&self, r: &RequestRecord) -> bool {
        let ms = |x: Option<f64>| x.map(|s| s * 1000.0);
        let ok = |limit: Option<f64>, value: Option<f64>| match limit {
            None => true,
            Some(l) => value.is_some_and(|v| v <= l),
        };
        r.ok()
            && ok(self.ttft_ms, ms(r.ttft()))
            && ok(self.tpot_ms, Some(ms(r.tpot()).unwrap_or(0.0)))
            && ok(self.e2el_ms, ms(r.e2el()))
    }
}

/// The window from the moment the target concurrency is first reached until
/// the first agent runs out of work.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SteadyState {
    pub start: f64,
    pub end: f64,
    pub duration: f64,
    pub output_tokens: f64,
    pub output_throughput: f64,
    pub request_throughput: f64,
}

/// Every figure of one run (or one sweep level). Serialises with vLLM's
/// result keys where vLLM has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunMetrics {
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    /// Failed requests by error label (`timeout_idle`, `http_503`, ...).
    pub errors_by_kind: BTreeMap<String, u64>,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    pub total_reasoning_tokens: u64,
    /// Completed responses that made at least one tool call.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tool_call_responses: u64,
    /// Of those, the percentage whose every tool call's arguments parse as a
    /// JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_args_json_pct: Option<f64>,
    /// Seconds from the first measured send to the last measured end.
    pub duration: f64,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub request_goodput: Option<f64>,
    pub slo_attainment_pct: Option<f64>,
    /// `{mean,median,std,p50,p90,p95,p99[,p999]}_{ttft,tpot,itl,e2el,client_queue}_ms`,
    /// and `…_answer_ttft_ms` and `…_tool_ttft_ms` when responses reasoned
    /// or called tools.
    /// Read back leniently: beside other flattened figures (cost, energy,
    /// a sweep level's own keys) only numeric `*_ms` keys belong here.
    #[serde(flatten, deserialize_with = "latency_keys")]
    pub latency_ms: BTreeMap<String, f64>,
    /// Per-request decode speed (output tokens / E2EL), mean and median.
    pub mean_tok_s: Option<f64>,
    pub median_tok_s: Option<f64>,
    /// Local LLM Bench per-task speed (output tokens / whole request time).
    pub mean_task_tok_s: Option<f64>,
    pub max_concurrent_requests: u64,
    /// Requests by the source of their token counts.
    pub token_source: BTreeMap<String, u64>,
    /// True when the server's counts and the events seen differ by > 2 %.
    pub token_count_mismatch: bool,
    pub steady_state: Option<SteadyState>,
    /// 95 % bootstrap intervals of the headline figures, by key.
    pub ci95: BTreeMap<String, Interval>,
    // Per-request arrays, in vLLM's units (seconds) and order of issue.
    pub ttfts: Vec<f64>,
    pub itls: Vec<Vec<f64>>,
    pub latencies: Vec<f64>,
    pub input_lens: Vec<u64>,
    pub output_lens: Vec<u64>,
    pub errors: Vec<String>,
    /// Session workloads: the session figures, and per request (in the
    /// order of the arrays above) its session and turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<crate::sessions::SessionFigures>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_sessions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_turns: Vec<u32>,
    /// `--ramp`: the figures of each window of the ramp.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowFigures>,
    /// A model mix (`--model a,b,c`): the figures of each model's requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelFigures>,
}

/// The figures of one model of a model mix (docs/METRICS.md, "Model mixes").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFigures {
    pub sent: u64,
    pub completed: u64,
    pub failed: u64,
    pub total_output_tokens: u64,
    /// Its output tokens over the run's duration.
    pub output_throughput: f64,
    pub median_ttft_ms: Option<f64>,
    pub p99_ttft_ms: Option<f64>,
    pub median_tpot_ms: Option<f64>,
    pub mean_tok_s: Option<f64>,
}

impl ModelFigures {
    /// Per model named in the measured records' context; empty when none names one.
    fn by_model(measured: &[&RequestRecord], duration: f64) -> BTreeMap<String, ModelFigures> {
        let mut groups: BTreeMap<&str, Vec<&RequestRecord>> = BTreeMap::new();
        for r in measured {
            if let Some(m) = r.context.model.as_deref() {
                groups.entry(m).or_default().push(r);
            }
        }
        groups
            .into_iter()
            .map(|(model, rs)| {
                let ok: Vec<&&RequestRecord> = rs.iter().filter(|r| r.ok()).collect();
                let ttft: Vec<f64> = ok.iter().filter_map(|r| r.ttft()).map(|s| s * 1e3).collect();
                let tpot: Vec<f64> = ok.iter().filter_map(|r| r.tpot()).map(|s| s * 1e3).collect();
                let tok_s: Vec<f64> = ok.iter().filter_map(|r| r.tok_s()).collect();
                let tokens: u64 = ok.iter().map(|r| r.output_tokens).sum();
                let f = ModelFigures {
                    sent: rs.len() as u64,
                    completed: ok.len() as u64,
                    failed: (rs.len() - ok.len()) as u64,
                    total_output_tokens: tokens,
                    output_throughput: if duration > 0.0 { tokens as f64 / duration } else { 0.0 },
                    median_ttft_ms: stats::percentile(&ttft, 50.0),
                    p99_ttft_ms: stats::percentile(&ttft, 99.0),
                    median_tpot_ms: stats::percentile(&tpot, 50.0),
                    mean_tok_s: stats::mean(&tok_s),
                };
                (model.to_string(), f)
            })
            .collect()
    }
}

/// The figures of one window of a ramp (docs/METRICS.md, "Ramps").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowFigures {
    /// Seconds from the ramp's start.
    pub start_s: f64,
    pub end_s: f64,
    /// The load in the window: arrivals per second or agents.
    pub level: f64,
    /// Measured requests due in the window (by `t_sched`), and those of them that failed.
    pub requests: u64,
    pub failed: u64,
    /// Requests that completed in the window, per second.
    pub request_throughput: f64,
    /// Output tokens whose events fell in the window, per second.
    pub output_throughput: f64,
    pub median_ttft_ms: Option<f64>,
    pub p99_ttft_ms: Option<f64>,
    pub median_tpot_ms: Option<f64>,
    /// Most measured requests in flight at once within the window.
    pub max_concurrent_requests: u64,
}

/// The `*_ms` figures among the keys a flattened [`RunMetrics`] is offered.
fn latency_keys<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let all: BTreeMap<String, serde_json::Value> = Deserialize::deserialize(d)?;
    Ok(all.into_iter().filter(|(k, _)| k.ends_with("_ms")).filter_map(|(k, v)| v.as_f64().map(|x| (k, x))).collect())
}

impl RunMetrics {
    /// Failed requests as a fraction of those sent (0 when none were sent).
    pub fn error_rate(&self) -> f64 {
        if self.sent > 0 {
            self.failed as f64 / self.sent as f64
        } else {
            0.0
        }
    }

    /// A latency figure by its vLLM key (`p99_ttft_ms`).
    pub fn ms(&self, key: &str) -> Option<f64> {
        self.latency_ms.get(key).copied()
    }

    /// The interval of a headline figure by key.
    pub fn ci(&self, key: &str) -> Option<Interval> {
        self.ci95.get(key).copied()
    }

    /// Computes every figure from the records of a run, exactly. Warm-up
    /// records are ignored. `target_concurrency` (closed loop) defines the
    /// steady state. The same pass as a measured run's
    /// ([`FigureStream`](crate::streaming::FigureStream)) without bounds,
    /// plus the per-request arrays.
    pub fn compute(records: &[RequestRecord], slo: &Slo, target_concurrency: Option<u32>) -> RunMetrics {
        let mut stream = FigureStream::new(Spans::of(records), slo, target_concurrency, Limits::UNBOUNDED);
        for r in records {
            stream.add(r);
        }
        let measured: Vec<&RequestRecord> = records.iter().filter(|r| !r.warmup).collect();
        let mut m = stream.finish(max_in_flight(measured.iter().map(|r| (r.t_send, r.t_end))));
        for r in &measured {
            m.ttfts.push(r.ttft().filter(|_| r.ok()).unwrap_or(0.0));
            m.itls.push(if r.ok() { r.itl.clone() } else { Vec::new() });
            m.latencies.push(r.e2el().filter(|_| r.ok()).unwrap_or(0.0));
            m.input_lens.push(r.input_tokens.unwrap_or(0));
            m.output_lens.push(if r.ok() { r.output_tokens } else { 0 });
            m.errors.push(r.error.as_ref().map(|e| format!("{}: {}", e.label(), e.message)).unwrap_or_default());
        }
        m.sessions = crate::sessions::SessionFigures::compute(&measured, m.duration);
        m.models = ModelFigures::by_model(&measured, m.duration);
        if m.sessions.is_some() {
            for r in &measured {
                m.request_sessions.push(r.context.conversation.clone().unwrap_or_default());
                m.request_turns.push(r.context.turn.unwrap_or(0));
            }
        }
        m
    }
}

impl WindowFigures {
    /// The figures of each window `(start_s, end_s, level)`, seconds from
    /// `origin` on the run clock. Warm-up records are ignored.
    pub fn compute(records: &[RequestRecord], origin: f64, windows: &[(f64, f64, f64)]) -> Vec<WindowFigures> {
        let measured: Vec<&RequestRecord> = records.iter().filter(|r| !r.warmup).collect();
        let done: Vec<&RequestRecord> = measured.iter().copied().filter(|r| r.ok()).collect();
        windows
            .iter()
            .map(|&(start_s, end_s, level)| {
                let (a, b) = (origin + start_s, origin + end_s);
                let width = (b - a).max(1e-9);
                let due: Vec<&&RequestRecord> = measured.iter().filter(|r| r.t_sched >= a && r.t_sched < b).collect();
                let ok: Vec<&&&RequestRecord> = due.iter().filter(|r| r.ok()).collect();
                let ttft: Vec<f64> = ok.iter().filter_map(|r| r.ttft()).map(|s| s * 1e3).collect();
                let tpot: Vec<f64> = ok.iter().filter_map(|r| r.tpot()).map(|s| s * 1e3).collect();
                let tokens = token_weights(&done).filter(|(t, _)| *t >= a && *t < b).fold(0.0, |sum, (_, w)| sum + w);
                let ended = done.iter().filter(|r| r.t_end >= a && r.t_end < b).count() as f64;
                let clipped =
                    measured.iter().filter(|r| r.t_send < b && r.t_end > a).map(|r| (r.t_send.max(a), r.t_end.min(b)));
                WindowFigures {
                    start_s,
                    end_s,
                    level,
                    requests: due.len() as u64,
                    failed: (due.len() - ok.len()) as u64,
                    request_throughput: ended / width,
                    output_throughput: tokens / width,
                    median_ttft_ms: stats::percentile(&ttft, 50.0),
                    p99_ttft_ms: stats::percentile(&ttft, 99.0),
                    median_tpot_ms: stats::percentile(&tpot, 50.0),
                    max_concurrent_requests: max_in_flight(clipped),
                }
            })
            .collect()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Each token instant of the completed records with its weight (output
/// tokens per instant: a server that sends several tokens per event
/// counts them all).
fn token_weights<'a>(done: &'a [&'a RequestRecord]) -> impl Iterator<Item = (f64, f64)> + 'a {
    done.iter().flat_map(|r| {
        let instants = r.token_instants();
        let w = if instants.is_empty() { 0.0 } else { r.output_tokens as f64 / instants.len() as f64 };
        instants.into_iter().map(move |t| (t, w))
    })
}

/// The largest number of intervals open at once. An interval that ends at
/// the instant another starts does not overlap it.
pub fn max_in_flight(intervals: impl Iterator<Item = (f64, f64)>) -> u64 {
    let mut edges: Vec<(f64, i64)> = Vec::new();
    for (s, e) in intervals {
        edges.push((s, 1));
        edges.push((e.max(s), -1));
    }
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut max) = (0i64, 0i64);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ErrorKind, RequestError, TokenSource};

    fn rec(index: u64, agent: u32, t_send: f64, ttft: f64, itl: f64, tokens: u64) -> RequestRecord {
        let first = t_send + ttft;
        let last = first + itl * (tokens - 1) as f64;
        RequestRecord {
            index,
            agent: Some(agent),
            t_sched: t_send,
            t_send,
            t_first_byte: Some(t_send + ttft / 2.0),
            t_first_token: Some(first),
            t_last_token: Some(last),
            t_end: last,
            itl: vec![itl; tokens as usize - 1],
            token_events: tokens,
            event_tokens: tokens,
            input_tokens: Some(100),
            output_tokens: tokens,
            token_source: TokenSource::Server,
            ..Default::default()
        }
    }

    #[test]
    fn tool_and_answer_figures_appear_only_when_responses_used_them() {
        let plain: Vec<RequestRecord> = (0..4)
            .map(|i| RequestRecord { t_first_answer_token: Some(i as f64 + 0.1), ..rec(i, 0, i as f64, 0.1, 0.01, 5) })
            .collect();
        let m = RunMetrics::compute(&plain, &Slo::default(), None);
        assert!(m.ms("mean_answer_ttft_ms").is_none() && m.ms("mean_tool_ttft_ms").is_none());
        assert_eq!((m.tool_call_responses, m.tool_args_json_pct), (0, None));

        let call = |args: &str| crate::ToolCall { id: "c".into(), name: "f".into(), arguments: args.into() };
        let mut recs = plain;
        // Request 0 reasons for 0.4 s before answering; 1 and 2 call tools
        // 0.2 s in, one with arguments that are not JSON.
        recs[0].t_first_answer_token = Some(0.5);
        for (i, args) in [(1, r#"{"q":1}"#), (2, "{broken")] {
            recs[i].t_first_answer_token = None;
            recs[i].t_first_tool_token = Some(i as f64 + 0.2);
            recs[i].tool_calls = vec![call(args)];
        }
        let m = RunMetrics::compute(&recs, &Slo::default(), None);
        assert_eq!(m.tool_call_responses, 2);
        assert_eq!(m.tool_args_json_pct, Some(50.0));
        assert!((m.ms("mean_tool_ttft_ms").unwrap() - 200.0).abs() < 1e-9);
        // Answer tokens: 0.5 s (request 0) and 0.1 s (request 3).
        assert!((m.ms("mean_answer_ttft_ms").unwrap() - 300.0).abs() < 1e-9);
        assert!((m.ms("mean_ttft_ms").unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn figures_follow_their_definitions() {
        // Two agents, two back-to-back requests each: TTFT 100 ms, ITL 10 ms,
        // 11 tokens, so E2EL = 200 ms and TPOT = 10 ms.
        let mut rs = Vec::new();
        for a in 0..2 {
            rs.push(rec(2 * a as u64, a, 0.0, 0.1, 0.01, 11));
            rs.push(rec(2 * a as u64 + 1, a, 0.2, 0.1, 0.01, 11));
        }
        let m = RunMetrics::compute(&rs, &Slo::default(), Some(2));
        assert_eq!((m.sent, m.completed, m.failed), (4, 4, 0));
        assert!((m.duration - 0.4).abs() < 1e-9);
        assert!((m.output_throughput - 44.0 / 0.4).abs() < 1e-6);
        assert!((m.request_throughput - 10.0).abs() < 1e-6);
        assert!((m.ms("mean_ttft_ms").unwrap() - 100.0).abs() < 1e-6);
        assert!((m.ms("p99_tpot_ms").unwrap() - 10.0).abs() < 1e-6);
        assert!((m.ms("median_itl_ms").unwrap() - 10.0).abs() < 1e-6);
        assert!((m.ms("mean_e2el_ms").unwrap() - 200.0).abs() < 1e-6);
        assert_eq!(m.max_concurrent_requests, 2);
        assert_eq!(m.ttfts.len(), 4);
        assert_eq!(m.itls[0].len(), 10);
        let ss = m.steady_state.unwrap();
        assert!((ss.duration - 0.4).abs() < 1e-9);
        assert!(!m.token_count_mismatch);
        let json = serde_json::to_value(&m).unwrap();
        for key in [
            "completed",
            "failed",
            "total_input_tokens",
            "total_output_tokens",
            "duration",
            "request_throughput",
            "output_throughput",
            "total_token_throughput",
            "mean_ttft_ms",
            "median_tpot_ms",
            "p90_itl_ms",
            "p95_e2el_ms",
            "std_ttft_ms",
            "max_concurrent_requests",
            "ttfts",
            "itls",
            "latencies",
            "input_lens",
            "output_lens",
            "errors",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        let back: RunMetrics = serde_json::from_value(json).unwrap();
        assert_eq!(back.ms("mean_ttft_ms"), m.ms("mean_ttft_ms"));
    }

    #[test]
    fn warmup_and_failures_are_accounted() {
        let mut rs = vec![rec(0, 0, 0.0, 0.1, 0.01, 5), rec(1, 0, 1.0, 0.1, 0.01, 5)];
        rs[0].warmup = true;
        let mut failed = rec(2, 0, 1.5, 0.1, 0.01, 5);
        failed.error = Some(RequestError::new(ErrorKind::HttpStatus, "boom").with_status(503));
        rs.push(failed);
        let m = RunMetrics::compute(&rs, &Slo::default(), None);
        assert_eq!((m.sent, m.completed, m.failed), (2, 1, 1));
        assert_eq!(m.errors_by_kind.get("http_503"), Some(&1));
        assert_eq!(m.total_output_tokens, 5);
        assert!(m.errors[1].starts_with("http_503"));
    }

    #[test]
    fn goodput_counts_requests_meeting_every_slo() {
        let rs = vec![rec(0, 0, 0.0, 0.05, 0.01, 5), rec(1, 0, 0.1, 0.5, 0.01, 5)];
        let slo = Slo { ttft_ms: Some(100.0), ..Default::default() };
        let m = RunMetrics::compute(&rs, &slo, None);
        assert_eq!(m.slo_attainment_pct, Some(50.0));
        assert!(m.request_goodput.unwrap() > 0.0);
    }

    #[test]
    fn token_source_disagreement_is_flagged() {
        let mut r = rec(0, 0, 0.0, 0.05, 0.01, 100);
        r.event_tokens = 50;
        let m = RunMetrics::compute(&[r], &Slo::default(), None);
        assert!(m.token_count_mismatch);
    }

    #[test]
    fn in_flight_counts_touching_intervals_once() {
        assert_eq!(max_in_flight([(0.0, 1.0), (1.0, 2.0)].into_iter()), 1);
        assert_eq!(max_in_flight([(0.0, 1.0), (0.5, 2.0), (0.6, 0.7)].into_iter()), 3);
    }

    #[test]
    fn no_records_no_panic() {
        let m = RunMetrics::compute(&[], &Slo::default(), Some(4));
        assert_eq!(m.sent, 0);
        assert!(m.ci95.is_empty());
    }
}
