//! The live simulated fleet behind an HTTP `/metrics` endpoint
//! (dcgm-exporter / node_exporter / vLLM naming), time-accelerated, with the
//! schedule's faults firing on time; `/episodes` lists the schedule with its
//! truth and `/timemap` how wall time maps to fleet time.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use crate::episode::{plan_schedule, Episode, SLOT_S, STEP_S};
use crate::telemetry::{kernel_log_line, write_exposition, Frame, Labels};
use crate::time::TIMELINE_EPOCH;
use crate::topology::Fleet;
use crate::AiopsError;

/// How wall-clock time maps to fleet time:
/// `fleet = fleet_start + speed * (wall - wall_start)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct TimeMap {
    pub fleet_start: i64,
    /// Unix seconds (fractional).
    pub wall_start: f64,
    pub speed: f64,
}

impl TimeMap {
    pub fn fleet_at(&self, wall: f64) -> f64 {
        self.fleet_start as f64 + self.speed * (wall - self.wall_start)
    }
    pub fn wall_at(&self, fleet: f64) -> f64 {
        self.wall_start + (fleet - self.fleet_start as f64) / self.speed
    }
}

/// The live fleet: topology, schedule and the current frame.
#[derive(Debug)]
pub struct LiveFleet {
    pub fleet: Fleet,
    pub episodes: Vec<Episode>,
    pub timemap: TimeMap,
    labels: Labels,
    frame: Mutex<Frame>,
}

/// Most steps one scrape catches up; beyond that the frame restarts.
const MAX_CATCH_UP: i64 = 5760;

pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl LiveFleet {
    /// A fleet of `gpus` GPUs from `seed`, with `hours` of scheduled
    /// episodes, starting now at `speed` times real time.
    pub fn new(gpus: usize, seed: u64, hours: f64, speed: f64) -> Result<LiveFleet, AiopsError> {
        if !(speed > 0.0 && speed <= 10_000.0) {
            return Err(AiopsError::Invalid("--speed must be above 0 and at most 10000".into()));
        }
        let fleet = Fleet::build(gpus, seed)?;
        let slots = ((hours * 3600.0) / SLOT_S as f64).ceil().max(1.0) as usize;
        let episodes = plan_schedule(&fleet, slots, seed);
        let labels = Labels::new(&fleet);
        let frame = Frame::before(&fleet, TIMELINE_EPOCH);
        let timemap = TimeMap { fleet_start: TIMELINE_EPOCH, wall_start: unix_now(), speed: speed.max(1e-3) };
        Ok(LiveFleet { fleet, episodes, timemap, labels, frame: Mutex::new(frame) })
    }

    /// Brings the frame up to fleet time `t` and renders it.
    pub fn render_at(&self, t: i64) -> String {
        let mut frame = match self.frame.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if t - frame.t > MAX_CATCH_UP * STEP_S || t < frame.t {
            *frame = Frame::before(&self.fleet, t - STEP_S);
        }
        while frame.t + STEP_S <= t {
            frame.advance(&self.fleet, &self.episodes);
        }
        let mut out = String::with_capacity(frame.series() * 120);
        write_exposition(&mut out, &self.fleet, &self.labels, &frame, None);
        out
    }

    /// Renders the frame for the current wall-clock time.
    pub fn render_now(&self) -> String {
        let t = self.timemap.fleet_at(unix_now()).floor() as i64;
        self.render_at(t)
    }

    /// Kernel-log lines of every Xid in `[from, to)` fleet time.
    pub fn kernel_log(&self, from: i64, to: i64) -> Vec<String> {
        self.episodes
            .iter()
            .flat_map(|e| e.xids.iter().filter(move |x| x.t >= e.start && x.t < e.end))
            .filter(|x| x.t >= from && x.t < to)
            .map(|x| kernel_log_line(&self.fleet, x))
            .collect()
    }
}

async fn metrics(State(live): State<Arc<LiveFleet>>) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || live.render_now()).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

async fn episodes(State(live): State<Arc<LiveFleet>>) -> impl IntoResponse {
    let lines: Vec<String> = live.episodes.iter().map(|e| e.to_json().to_string()).collect();
    ([(header::CONTENT_TYPE, "application/x-ndjson")], lines.join("\n") + "\n")
}

async fn timemap(State(live): State<Arc<LiveFleet>>) -> impl IntoResponse {
    axum::Json(live.timemap)
}

/// The exporter's routes: `/metrics`, `/episodes`, `/timemap`.
pub fn router(live: Arc<LiveFleet>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/episodes", get(episodes))
        .route("/timemap", get(timemap))
        .with_state(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn line_value(body: &str, metric: &str, node: &str, gpu: u32) -> Option<f64> {
        let needle = format!("{metric}{{gpu=\"{gpu}\",");
        let host = format!("Hostname=\"{node}\"");
        body.lines()
            .find(|l| l.starts_with(&needle) && l.contains(&host))
            .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
    }

    #[test]
    fn faults_fire_on_schedule() {
        let live = LiveFleet::new(64, 21, 24.0, 60.0).expect("fleet");
        let (mut s4, mut s6) = (0, 0);
        for ep in &live.episodes {
            let (Some(onset), Some(loc)) = (ep.truth.onset, ep.truth.location.first()) else { continue };
            let (Some(node), Some(gpu)) = (loc.node.as_deref(), loc.gpu) else { continue };
            match ep.scenario {
                Scenario::S4RowRemapPending => {
                    let before = live.render_at(onset - 120);
                    let after = live.render_at(onset + 120);
                    assert_eq!(line_value(&before, "DCGM_FI_DEV_ROW_REMAP_PENDING", node, gpu), Some(0.0));
                    assert_eq!(line_value(&after, "DCGM_FI_DEV_ROW_REMAP_PENDING", node, gpu), Some(1.0));
                    s4 += 1;
                }
                Scenario::S6GpuOffBus => {
                    let before = live.render_at(onset - 120);
                    let after = live.render_at(onset + 120);
                    assert!(line_value(&before, "DCGM_FI_DEV_GPU_TEMP", node, gpu).is_some());
                    assert!(
                        line_value(&after, "DCGM_FI_DEV_GPU_TEMP", node, gpu).is_none(),
                        "a GPU off the bus has no series"
                    );
                    s6 += 1;
                }
                _ => {}
            }
        }
        assert!(s4 + s6 > 0, "the 24-hour schedule should hold an S4 or S6 episode");
        assert!(!live.kernel_log(live.episodes[0].start, live.episodes[live.episodes.len() - 1].end).is_empty());
    }
}
