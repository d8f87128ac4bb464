//! Telemetry from a Prometheus HTTP API (`/api/v1/query_range`): builds an
//! episode window from a real fleet's Prometheus, or from anything speaking
//! its API (Thanos, Mimir, VictoriaMetrics), or from one scraping our exporter.

use std::time::Duration;

use crate::episode::STEP_S;
use crate::exporter::TimeMap;
use crate::time::TIMELINE_EPOCH;
use crate::topology::Fleet;
use crate::window::{Entity, EpisodeWindow};
use crate::AiopsError;

/// The selector for every series the arena reads.
pub const ARENA_SELECTOR: &str = r#"{__name__=~"DCGM_FI_.+|node_infiniband_.+|node_ethtool_.+|vllm:.+"}"#;

pub use fleetbench_client::promapi::RangeSeries;
use fleetbench_client::promapi::{PromApi, PromApiError};

impl From<PromApiError> for AiopsError {
    fn from(e: PromApiError) -> AiopsError {
        AiopsError::Prometheus(e.to_string())
    }
}

/// A Prometheus server to read windows from.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    api: PromApi,
    /// Maps fleet time to wall time (identity for a real fleet).
    pub timemap: Option<TimeMap>,
}

impl PrometheusSource {
    /// `base` like `http://127.0.0.1:9090`.
    pub fn new(base: &str, timemap: Option<TimeMap>) -> Result<PrometheusSource, AiopsError> {
        Ok(PrometheusSource { api: PromApi::new(base, Duration::from_secs(60))?, timemap })
    }

    /// Runs one range query over wall-clock `[start, end]` with `step` seconds.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<RangeSeries>, AiopsError> {
        Ok(self.api.query_range(query, start, end, step).await?)
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
