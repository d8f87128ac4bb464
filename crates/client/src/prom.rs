//! Server-side metrics: a parser for the Prometheus text exposition format
//! (metric names with colons included, as vLLM, SGLang and llama.cpp use),
//! the gauges that explain a throughput curve, and a sampler that polls a
//! backend's `/metrics` while a level runs.

use std::time::Duration;

use fleetbench_core::RunClock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ParseError {
    pub line: usize,
    pub why: &'static str,
}

/// Parses the text exposition format. Comment and blank lines are skipped;
/// a malformed line is an error naming it.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |why| ParseError { line: i + 1, why };
        let name_end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
        if name_end == 0 || line.as_bytes()[0].is_ascii_digit() {
            return Err(err("expected a metric name"));
        }
        let name = &line[..name_end];
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                rest = rest.trim_start();
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest.find('=').ok_or(err("expected label=\"value\""))?;
                let key = rest[..eq].trim().to_string();
                rest = rest[eq + 1..].trim_start();
                rest = rest.strip_prefix('"').ok_or(err("label value must be quoted"))?;
                let mut value = String::new();
                let mut chars = rest.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => return Err(err("unterminated escape")),
                        },
                        Some((j, '"')) => break j,
                        Some((_, c)) => value.push(c),
                        None => return Err(err("unterminated label value")),
                    }
                };
                labels.push((key, value));
                rest = rest[end + 1..].trim_start();
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                }
            }
        }
        let mut fields = rest.split_whitespace();
        let v = fields.next().ok_or(err("missing value"))?;
        let value = match v {
            "+Inf" | "Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => v.parse().map_err(|_| err("value is not a number"))?,
        };
        out.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(out)
}

/// The server state that explains a throughput curve, at one instant.
/// Counts are the sum over label sets (engines, data-parallel ranks) of the
/// first metric name found; fractions (KV-cache use, hit rates) are the
/// highest of them, since a sum of fractions over several engines is no
/// fraction at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerState {
    pub t: f64,
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    /// Fraction 0–1.
    pub kv_cache_usage: Option<f64>,
    pub preemptions_total: Option<f64>,
    pub prefix_hits_total: Option<f64>,
    pub prefix_queries_total: Option<f64>,
    /// Engines that export a rate directly (SGLang).
    pub prefix_hit_rate: Option<f64>,
}

const RUNNING: &[&str] = &["vllm:num_requests_running", "sglang:num_running_reqs", "llamacpp:requests_processing"];
const WAITING: &[&str] = &["vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred"];
const KV: &[&str] =
    &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage", "llamacpp:kv_cache_usage_ratio"];
const PREEMPT: &[&str] = &["vllm:num_preemptions_total", "vllm:num_preemptions"];
const PREFIX_HITS: &[&str] = &["vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits"];
const PREFIX_QUERIES: &[&str] = &["vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries"];
const PREFIX_RATE: &[&str] = &["sglang:cache_hit_rate"];

/// Combines the finite values of the first of `names` present.
fn combine(samples: &[Sample], names: &[&str], f: fn(f64, f64) -> f64) -> Option<f64> {
    names.iter().find_map(|n| samples.iter().filter(|s| s.name == *n && s.value.is_finite()).map(|s| s.value).reduce(f))
}

fn sum_of(samples: &[Sample], names: &[&str]) -> Option<f64> {
    combine(samples, names, |a, b| a + b)
}

fn max_of(samples: &[Sample], names: &[&str]) -> Option<f64> {
    combine(samples, names, f64::max)
}

impl ServerState {
    pub fn from_samples(samples: &[Sample], t: f64) -> ServerState {
        ServerState {
            t,
            running: sum_of(samples, RUNNING),
            waiting: sum_of(samples, WAITING),
            kv_cache_usage: max_of(samples, KV),
            preemptions_total: sum_of(samples, PREEMPT),
            prefix_hits_total: sum_of(samples, PREFIX_HITS),
            prefix_queries_total: sum_of(samples, PREFIX_QUERIES),
            prefix_hit_rate: max_of(samples, PREFIX_RATE),
        }
    }

    fn is_empty(&self) -> bool {
        self.running.is_none() && self.waiting.is_none() && self.kv_cache_usage.is_none()
    }
}

/// What the server said during one level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerLevelStats {
    pub samples: usize,
    pub mean_running: Option<f64>,
    pub max_running: Option<f64>,
    pub mean_waiting: Option<f64>,
    pub max_waiting: Option<f64>,
    pub mean_kv_cache_usage: Option<f64>,
    pub max_kv_cache_usage: Option<f64>,
    /// Preemptions during the level (counter delta).
    pub preemptions: Option<f64>,
    pub prefix_cache_hit_rate: Option<f64>,
    /// The raw timeline, for charts.
    pub timeline: Vec<ServerState>,
}

impl ServerLevelStats {
    pub fn from_timeline(timeline: Vec<ServerState>) -> ServerLevelStats {
        let series = |f: fn(&ServerState) -> Option<f64>| -> Vec<f64> { timeline.iter().filter_map(f).collect() };
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let max = |v: &[f64]| v.iter().copied().fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let delta = |f: fn(&ServerState) -> Option<f64>| {
            let v = series(f);
            match (v.first(), v.last()) {
                (Some(a), Some(b)) if v.len() > 1 => Some((b - a).max(0.0)),
                _ => None,
            }
        };
        let running = series(|s| s.running);
        let waiting = series(|s| s.waiting);
        let kv = series(|s| s.kv_cache_usage);
        let hits = delta(|s| s.prefix_hits_total);
        let queries = delta(|s| s.prefix_queries_total);
        let rate = match (hits, queries) {
            (Some(h), Some(q)) if q > 0.0 => Some(h / q),
            _ => mean(&series(|s| s.prefix_hit_rate)),
        };
        ServerLevelStats {
            samples: timeline.len(),
            mean_running: mean(&running),
            max_running: max(&running),
            mean_waiting: mean(&waiting),
            max_waiting: max(&waiting),
            mean_kv_cache_usage: mean(&kv),
            max_kv_cache_usage: max(&kv),
            preemptions: delta(|s| s.preemptions_total),
            prefix_cache_hit_rate: rate,
            timeline,
        }
    }
}

/// Polls a `/metrics` URL in the background until stopped. A server with no
/// metrics endpoint simply yields no samples.
pub struct MetricsSampler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<ServerState>>,
}

impl MetricsSampler {
    pub fn start(url: String, interval: Duration, clock: RunClock) -> MetricsSampler {
        MetricsSampler::start_observed(url, interval, clock, |_| {})
    }

    /// As [`MetricsSampler::start`], and hands every reading to `on_sample`
    /// as it comes (the live dashboard draws them).
    pub fn start_observed(
        url: String,
        interval: Duration,
        clock: RunClock,
        on_sample: impl Fn(&ServerState) + Send + 'static,
    ) -> MetricsSampler {
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let http = match reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build() {
                Ok(h) => h,
                Err(_) => return Vec::new(),
            };
            let mut out = Vec::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut misses = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop_rx.changed() => break,
                }
                let got = async { http.get(&url).send().await.ok()?.error_for_status().ok()?.text().await.ok() }.await;
                match got.and_then(|t| parse(&t).ok()) {
                    Some(samples) => {
                        let state = ServerState::from_samples(&samples, clock.now());
                        if !state.is_empty() {
                            on_sample(&state);
                            out.push(state);
                        }
                    }
                    None => {
                        misses += 1;
                        if misses >= 3 && out.is_empty() {
                            break; // no metrics endpoint here
                        }
                    }
                }
            }
            out
        });
        MetricsSampler { stop, task }
    }

    /// Stops polling (after one last sample) and summarises.
    pub async fn finish(self) -> ServerLevelStats {
        let _ = self.stop.send(true);
        ServerLevelStats::from_timeline(self.task.await.unwrap_or_default())
    }
}

/// The conventional metrics URL of an OpenAI-style base URL:
/// `http://h:8000/v1` → `http://h:8000/metrics`.
pub fn metrics_url_for(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/metrics")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 12.0
vllm:num_requests_running{engine="1",model_name="qwen"} 4.0
vllm:num_requests_waiting{engine="0",model_name="qwen"} 3.0
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.97
vllm:num_preemptions_total{engine="0",model_name="qwen"} 5.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="qwen"} 100
weird_label{a="x\"y\\z",b="line\nbreak",} 1e3 1700000000000
"#;

    #[test]
    fn parses_colon_names_labels_and_escapes() {
        let s = parse(VLLM).unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].name, "vllm:num_requests_running");
        assert_eq!(s[0].labels[1], ("model_name".into(), "qwen".into()));
        assert_eq!(s[5].labels[0].1, "+Inf");
        assert_eq!(s[6].labels[0].1, "x\"y\\z");
        assert_eq!(s[6].labels[1].1, "line\nbreak");
        assert_eq!(s[6].value, 1000.0);
        let st = ServerState::from_samples(&s, 1.0);
        assert_eq!(st.running, Some(16.0));
        assert_eq!(st.waiting, Some(3.0));
        assert_eq!(st.kv_cache_usage, Some(0.97));
        assert_eq!(st.preemptions_total, Some(5.0));
    }

    #[test]
    fn fractions_of_several_engines_are_not_added() {
        let s =
            parse("vllm:kv_cache_usage_perc{engine=\"0\"} 0.9\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.95\n").unwrap();
        assert_eq!(ServerState::from_samples(&s, 0.0).kv_cache_usage, Some(0.95));
    }

    #[test]
    fn llama_cpp_and_sglang_names_are_known() {
        let s =
            parse("llamacpp:requests_processing 4\nllamacpp:requests_deferred 2\nsglang:cache_hit_rate 0.5\n").unwrap();
        let st = ServerState::from_samples(&s, 0.0);
        assert_eq!((st.running, st.waiting, st.prefix_hit_rate), (Some(4.0), Some(2.0), Some(0.5)));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for bad in ["{a=\"b\"} 1", "m{a=b} 1", "m{a=\"b} 1", "m", "m abc", "9m 1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn level_stats_use_deltas_for_counters() {
        let t = vec![
            ServerState {
                running: Some(2.0),
                waiting: Some(0.0),
                kv_cache_usage: Some(0.5),
                preemptions_total: Some(10.0),
                prefix_hits_total: Some(0.0),
                prefix_queries_total: Some(100.0),
                ..Default::default()
            },
            ServerState {
                running: Some(4.0),
                waiting: Some(6.0),
                kv_cache_usage: Some(0.9),
                preemptions_total: Some(13.0),
                prefix_hits_total: Some(30.0),
                prefix_queries_total: Some(200.0),
                ..Default::default()
            },
        ];
        let s = ServerLevelStats::from_timeline(t);
        assert_eq!(s.mean_running, Some(3.0));
        assert_eq!(s.max_waiting, Some(6.0));
        assert_eq!(s.preemptions, Some(3.0));
        assert_eq!(s.prefix_cache_hit_rate, Some(0.3));
        assert_eq!(metrics_url_for("http://h:8000/v1/"), "http://h:8000/metrics");
    }
}
