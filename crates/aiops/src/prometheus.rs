//! Telemetry from a Prometheus HTTP API (`/api/v1/query_range`): builds an
//! episode window from a real fleet's Prometheus, or from anything speaking
//! its API (Thanos, Mimir, VictoriaMetrics), or from one scraping our exporter.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::episode::STEP_S;
use crate::exporter::TimeMap;
use crate::time::TIMELINE_EPOCH;
use crate::topology::Fleet;
use crate::window::{Entity, EpisodeWindow};
use crate::AiopsError;

/// The selector for every series the arena reads.
pub const ARENA_SELECTOR: &str = r#"{__name__=~"DCGM_FI_.+|node_infiniband_.+|node_ethtool_.+|vllm:.+"}"#;

#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RangeSeries>,
}

/// One series of a range-query result.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RangeSeries {
    pub metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]` pairs.
    pub values: Vec<(f64, String)>,
}

impl RangeSeries {
    pub fn name(&self) -> &str {
        self.metric.get("__name__").map(String::as_str).unwrap_or("")
    }
    /// Points with values parsed (`NaN`, `+Inf` accepted; garbage dropped).
    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.values.iter().filter_map(|(t, v)| v.parse::<f64>().ok().map(|v| (*t, v)))
    }
}

/// Parses a `query_range` response body (a matrix).
pub fn parse_query_range(body: &str) -> Result<Vec<RangeSeries>, AiopsError> {
    let resp: ApiResponse = serde_json::from_str(body)
        .map_err(|e| AiopsError::Prometheus(format!("response is not the Prometheus API JSON: {e}")))?;
    if resp.status != "success" {
        return Err(AiopsError::Prometheus(format!(
            "{}: {}",
            resp.error_type.unwrap_or_else(|| "error".into()),
            resp.error.unwrap_or_else(|| "no message".into())
        )));
    }
    let data = resp.data.ok_or_else(|| AiopsError::Prometheus("success without data".into()))?;
    if data.result_type != "matrix" {
        return Err(AiopsError::Prometheus(format!("expected a matrix result, got '{}'", data.result_type)));
    }
    Ok(data.result)
}

/// A Prometheus server to read windows from.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    base: String,
    http: reqwest::Client,
    /// Maps fleet time to wall time (identity for a real fleet).
    pub timemap: Option<TimeMap>,
}

impl PrometheusSource {
    /// `base` like `http://127.0.0.1:9090`.
    pub fn new(base: &str, timemap: Option<TimeMap>) -> Result<PrometheusSource, AiopsError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AiopsError::Prometheus(format!(
                "'{base}' is not an http(s) URL (expected e.g. http://127.0.0.1:9090)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| AiopsError::Prometheus(format!("could not build the HTTP client: {e}")))?;
        Ok(PrometheusSource { base, http, timemap })
    }

    /// Runs one range query over wall-clock `[start, end]` with `step` seconds.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<RangeSeries>, AiopsError> {
        let url = format!("{}/api/v1/query_range", self.base);
        let resp = self
            .http
            .get(&url)
            .query(&[
                ("query", query.to_string()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", format!("{step:.3}")),
            ])
            .send()
            .await
            .map_err(|e| AiopsError::Prometheus(format!("{url}: {e}")))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| AiopsError::Prometheus(format!("{url}: {e}")))?;
        if !status.is_success() && !body.trim_start().starts_with('{') {
            return Err(AiopsError::Prometheus(format!("{url}: HTTP {status}")));
        }
        parse_query_range(&body)
    }

    /// Builds the window `[start, end)` (fleet time) of `fleet` from the
    /// server, with `kernel_log` lines from the log source.
    pub async fn fetch_window(
        &self,
        fleet: &Fleet,
        episode_id: &str,
        start: i64,
        end: i64,
        kernel_log: Vec<String>,
    ) -> Result<EpisodeWindow, AiopsError> {
        let map = self.timemap.unwrap_or(TimeMap {
            fleet_start: TIMELINE_EPOCH,
            wall_start: TIMELINE_EPOCH as f64,
            speed: 1.0,
        });
        let wall_step = STEP_S as f64 / map.speed;
        let series = self
            .query_range(ARENA_SELECTOR, map.wall_at(start as f64), map.wall_at((end - STEP_S) as f64), wall_step)
            .await?;
        let mut w = EpisodeWindow::empty(fleet, episode_id, start, end);
        fill_window(&mut w, &series, &map);
        w.set_kernel_log(kernel_log);
        Ok(w)
    }
}

/// Reads an exporter's `/timemap` (how its fleet time maps to wall time).
pub async fn fetch_timemap(exporter_base: &str) -> Result<TimeMap, AiopsError> {
    let url = format!("{}/timemap", exporter_base.trim_end_matches('/'));
    let err = |e: reqwest::Error| AiopsError::Prometheus(format!("{url}: {e}"));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(err)?;
    let body = http.get(&url).send().await.map_err(err)?.error_for_status().map_err(err)?.text().await.map_err(err)?;
    serde_json::from_str(&body).map_err(|e| AiopsError::Prometheus(format!("{url}: not a time map: {e}")))
}

/// Adds range-query series to a window, mapping wall time to fleet time on
/// the step grid. Series without the exporter's labels are skipped.
pub fn fill_window(w: &mut EpisodeWindow, series: &[RangeSeries], map: &TimeMap) -> usize {
    let mut added = 0;
    for s in series {
        let name = s.name();
        let Some(entity) = Entity::from_labels(name, &s.metric) else {
            continue;
        };
        for (t, v) in s.points() {
            let fleet_t = map.fleet_at(t);
            let k = ((fleet_t - TIMELINE_EPOCH as f64) / STEP_S as f64).round() as i64;
            let t_grid = TIMELINE_EPOCH + k * STEP_S;
            if t_grid < w.start || t_grid >= w.end || !v.is_finite() {
                continue;
            }
            w.push(entity.clone(), name, t_grid, v);
            added += 1;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_matrix_and_rejects_errors() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"vllm:kv_cache_usage_perc","Hostname":"r00-n01","instance":"x"},"values":[[1778544000,"0.5"],[1778544015,"NaN"],[1778544030,"junk"]]}]}}"#;
        let r = parse_query_range(body).unwrap();
        assert_eq!(r[0].name(), "vllm:kv_cache_usage_perc");
        assert_eq!(r[0].points().count(), 2);
        let err = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(matches!(parse_query_range(err), Err(AiopsError::Prometheus(m)) if m.contains("bad_data")));
        assert!(parse_query_range("<html>").is_err());
        assert!(parse_query_range(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#).is_err());
    }
}
