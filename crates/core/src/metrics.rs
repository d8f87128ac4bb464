//! The run figures of docs/METRICS.md, computed from request records: counts,
//! throughputs, latency distributions with vLLM's key names, goodput under
//! SLOs, concurrency reached, the steady-state window and 95 % intervals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::outcome::RequestRecord;
use crate::stats::Interval;
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
    /// Seconds from the first measured send to the last measured end.
    pub duration: f64,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub request_goodput: Option<f64>,
    pub slo_attainment_pct: Option<f64>,
    /// `{mean,median,std,p50,p90,p95,p99[,p999]}_{ttft,tpot,itl,e2el,client_queue}_ms`.
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
        let measured = || records.iter().filter(|r| !r.warmup);
        let mut m = stream.finish(max_in_flight(measured().map(|r| (r.t_send, r.t_end))));
        for r in measured() {
            m.ttfts.push(r.ttft().filter(|_| r.ok()).unwrap_or(0.0));
            m.itls.push(if r.ok() { r.itl.clone() } else { Vec::new() });
            m.latencies.push(r.e2el().filter(|_| r.ok()).unwrap_or(0.0));
            m.input_lens.push(r.input_tokens.unwrap_or(0));
            m.output_lens.push(if r.ok() { r.output_tokens } else { 0 });
            m.errors.push(r.error.as_ref().map(|e| format!("{}: {}", e.label(), e.message)).unwrap_or_default());
        }
        m
    }
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
