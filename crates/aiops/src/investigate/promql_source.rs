//! Where an episode's PromQL runs: the embedded engine
//! (`fleetbench-promql`, over series built on demand) or a real Prometheus
//! serving the episode ([`super::promserver`]) through the one Prometheus
//! API client (`fleetbench_client::promapi`). Prometheus's answers are turned
//! into the embedded engine's [`QueryResult`] (labels and series sorted the
//! same way), so the tools format both identically.

use std::str::FromStr;
use std::time::Duration;

use fleetbench_client::promapi::{PromApi, PromApiError};
use fleetbench_promql::{Expr, MatchOp, QueryResult, RangeSeries, Sample, Selector, ValueType};

use super::promserver::{PromBins, PromServer, PromServerError, QUERY_TIMEOUT};
use super::world::{World, STEP_S};

/// `--promql`: which engine answers the PromQL tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromqlChoice {
    /// The embedded engine, always.
    Embedded,
    /// A real Prometheus; an error when the binaries are missing.
    Prometheus,
    /// Prometheus when `prometheus` and `promtool` are found, else embedded.
    Auto,
}

impl FromStr for PromqlChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(PromqlChoice::Embedded),
            "prometheus" => Ok(PromqlChoice::Prometheus),
            "auto" => Ok(PromqlChoice::Auto),
            other => Err(format!("unknown --promql '{other}' (embedded, prometheus or auto)")),
        }
    }
}

impl PromqlChoice {
    /// The binaries to serve episodes with, or `None` for the embedded engine.
    pub fn resolve(self) -> Result<Option<PromBins>, PromServerError> {
        match self {
            PromqlChoice::Embedded => Ok(None),
            PromqlChoice::Prometheus => PromBins::find().map(Some),
            PromqlChoice::Auto => Ok(PromBins::find().ok()),
        }
    }
}

/// A real Prometheus over one episode, and the runtime its HTTP client
/// runs on (its own, so the tools can be called with or without one).
#[derive(Debug)]
pub struct Remote {
    api: PromApi,
    /// The episode's first sample and its last instant, Unix seconds.
    history_start: i64,
    now: i64,
    rt: Option<tokio::runtime::Runtime>,
    server: PromServer,
}

impl Drop for Remote {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn remote_err(e: PromApiError) -> String {
    match e {
        PromApiError::Failed { error, .. } => format!("PromQL evaluation error: {error}"),
        other => format!("the Prometheus behind this episode failed: {other}"),
    }
}

fn ms(t: f64) -> i64 {
    (t * 1000.0).round() as i64
}

/// Prometheus's number strings (`NaN`, `+Inf`, `-Inf`, decimals).
fn value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    }
}

fn labels(m: std::collections::BTreeMap<String, String>) -> fleetbench_promql::Labels {
    m.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// A selector as PromQL text, without range or offset.
fn selector_text(s: &Selector) -> String {
    let m: Vec<String> = s
        .matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                MatchOp::Eq => "=",
                MatchOp::Ne => "!=",
                MatchOp::Re => "=~",
                MatchOp::NotRe => "!~",
            };
            let v = m.value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            format!("{}{op}\"{v}\"", m.name)
        })
        .collect();
    format!("{{{}}}", m.join(","))
}

impl Remote {
    /// Backfills `world` and starts Prometheus over it.
    pub fn start(world: &World, bins: &PromBins) -> Result<Remote, PromServerError> {
        let server = PromServer::start(world, bins)?;
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(|source| {
                PromServerError::Io { what: "starting the Prometheus client's runtime".into(), source }
            })?;
        let api = PromApi::new(server.url(), QUERY_TIMEOUT + Duration::from_secs(5))
            .map_err(|e| PromServerError::Client(e.to_string()))?;
        Ok(Remote { api, history_start: world.history_start, now: world.now, rt: Some(rt), server })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Runs a request on the client's runtime and waits for it.
    fn wait<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, PromApiError>> + Send + 'static,
    ) -> Result<T, String> {
        let rt = self.rt.as_ref().ok_or("the Prometheus client is stopped")?;
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv_timeout(QUERY_TIMEOUT + Duration::from_secs(10))
            .map_err(|_| "the Prometheus behind this episode did not answer in time".to_string())?
            .map_err(remote_err)
    }

    /// An instant query at `t` (Unix seconds) of the parsed `expr`.
    pub fn instant(&self, expr: &Expr, query: &str, t: i64) -> Result<QueryResult, String> {
        let api = self.api.clone();
        let q = query.to_string();
        match expr.value_type() {
            ValueType::Vector => {
                let mut v: Vec<Sample> = self
                    .wait(async move { api.query(&q, Some(t as f64)).await })?
                    .into_iter()
                    .map(|s| Sample { value: value(&s.value.1), labels: labels(s.metric) })
                    .collect();
                v.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok(QueryResult::Vector(t * 1000, v))
            }
            ValueType::Scalar => {
                // The API client reads vectors and matrices: a one-step range
                // query carries the scalar.
                let m = self.wait(async move { api.query_range(&q, t as f64, t as f64, STEP_S as f64).await })?;
                let v = m.first().and_then(|s| s.values.first()).map_or(f64::NAN, |p| value(&p.1));
                Ok(QueryResult::Scalar(t * 1000, v))
            }
            ValueType::Matrix => match expr {
                Expr::Range(sel, range_ms) => self.raw(sel, *range_ms, t),
                _ => Err("PromQL evaluation error: a range vector here is not supported".into()),
            },
        }
    }

    /// The raw samples of `sel[range]` at `t`: the samples sit on the
    /// episode's scrape grid, so a range query over the grid keeping only the
    /// samples stamped exactly at each step returns them with their times.
    fn raw(&self, sel: &Selector, range_ms: i64, t: i64) -> Result<QueryResult, String> {
        let (first, step) = (self.history_start, STEP_S);
        let hi = t * 1000 - sel.offset_ms;
        let lo = hi - range_ms;
        let start_ms = (first * 1000).max(lo + (first * 1000 - lo).rem_euclid(step * 1000));
        let end_ms = hi.min(self.now * 1000);
        if end_ms < start_ms {
            return Ok(QueryResult::Matrix(Vec::new()));
        }
        let end_ms = end_ms - (end_ms - start_ms) % (step * 1000);
        let s = selector_text(sel);
        let q = format!("{s} and timestamp({s}) == time()");
        let api = self.api.clone();
        let m = self.wait(async move {
            api.query_range(&q, start_ms as f64 / 1000.0, end_ms as f64 / 1000.0, step as f64).await
        })?;
        Ok(QueryResult::Matrix(matrix(m)))
    }

    /// A range query from `start` to `end` every `step` (Unix seconds).
    pub fn range(&self, query: &str, start: i64, end: i64, step: i64) -> Result<QueryResult, String> {
        let api = self.api.clone();
        let q = query.to_string();
        let m = self.wait(async move { api.query_range(&q, start as f64, end as f64, step as f64).await })?;
        Ok(QueryResult::Matrix(matrix(m)))
    }
}

fn matrix(m: Vec<fleetbench_client::promapi::RangeSeries>) -> Vec<RangeSeries> {
    let mut out: Vec<RangeSeries> = m
        .into_iter()
        .map(|s| RangeSeries {
            values: s.values.iter().map(|(t, v)| (ms(*t), value(v))).collect(),
            labels: labels(s.metric),
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_embedded_needs_nothing() {
        assert_eq!("auto".parse::<PromqlChoice>(), Ok(PromqlChoice::Auto));
        assert_eq!("prometheus".parse::<PromqlChoice>(), Ok(PromqlChoice::Prometheus));
        assert!("thanos".parse::<PromqlChoice>().unwrap_err().contains("embedded, prometheus or auto"));
        assert_eq!(PromqlChoice::Embedded.resolve().ok(), Some(None));
    }

    #[test]
    fn selectors_are_written_back_escaped() {
        let e = fleetbench_promql::parse(r#"up{Hostname=~"r0\\d.*", job!="a\"b"}[5m] offset 1m"#).expect("valid");
        let Expr::Range(sel, _) = e else { panic!("a range selector") };
        assert_eq!(selector_text(&sel), r#"{__name__="up",Hostname=~"r0\\d.*",job!="a\"b"}"#);
        assert_eq!((value("+Inf"), value("-Inf"), value("2.5")), (f64::INFINITY, f64::NEG_INFINITY, 2.5));
        assert!(value("NaN").is_nan());
    }
}
