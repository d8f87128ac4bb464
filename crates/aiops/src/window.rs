//! An episode's telemetry window, whatever its source (the generator or a
//! Prometheus server): the series of every entity, the kernel-log lines, and
//! the per-series summaries that prompts and the rules operator read.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::episode::{Episode, STEP_S};
use crate::telemetry::{self, FleetStepper, MetricKind, GPU_METRICS, PORT_METRICS, REPLICA_METRICS};
use crate::topology::{Fleet, PCI_BUS};

/// A thing that reports series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Entity {
    Gpu { node: String, gpu: u32 },
    Port { node: String, device: String },
    Replica { node: String },
}

impl Entity {
    pub fn node(&self) -> &str {
        match self {
            Entity::Gpu { node, .. } | Entity::Port { node, .. } | Entity::Replica { node } => node,
        }
    }

    /// Builds the entity from Prometheus labels (`Hostname` plus `gpu`,
    /// `device` or `model_name`), as the exporter writes them.
    pub fn from_labels(metric: &str, labels: &BTreeMap<String, String>) -> Option<Entity> {
        let node = labels.get("Hostname")?.clone();
        if metric.starts_with("DCGM_") {
            Some(Entity::Gpu { node, gpu: labels.get("gpu")?.parse().ok()? })
        } else if metric.starts_with("node_") {
            Some(Entity::Port { node, device: labels.get("device")?.clone() })
        } else if metric.starts_with("vllm:") {
            Some(Entity::Replica { node })
        } else {
            None
        }
    }
}

/// One Xid event as read back from a kernel-log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggedXid {
    pub t: i64,
    pub node: String,
    pub gpu: u32,
    pub code: u32,
    pub link: Option<u32>,
}

/// Parses a `dmesg`-style NVRM Xid line (`<rfc3339> <host> kernel: NVRM: Xid
/// (PCI:0000:xx:00): <code>, ...`); `None` for other lines.
pub fn parse_xid_line(line: &str) -> Option<LoggedXid> {
    let mut words = line.split_whitespace();
    let t = crate::time::parse_rfc3339(words.next()?)?;
    let node = words.next()?.to_string();
    let at = line.find("NVRM: Xid (PCI:0000:")? + "NVRM: Xid (PCI:0000:".len();
    let rest = line.get(at..)?;
    let bus = rest.get(..2)?;
    let gpu = PCI_BUS.iter().position(|b| *b == bus)? as u32;
    let after = rest.get(rest.find("):")? + 2..)?.trim_start();
    let code: u32 = after.split(',').next()?.trim().parse().ok()?;
    let link = line.find("on link ").and_then(|i| {
        let digits: String = line[i + 8..].chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    });
    Some(LoggedXid { t, node, gpu, code, link })
}

/// Everything an operator sees about one episode.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeWindow {
    pub episode_id: String,
    pub start: i64,
    pub end: i64,
    pub step_s: i64,
    pub topology: String,
    /// node name → rack name.
    pub racks: BTreeMap<String, String>,
    /// node name → highest PCIe generation by design.
    pub pcie_max_gen: BTreeMap<String, u8>,
    /// node name → workload profile.
    pub profiles: BTreeMap<String, String>,
    pub kernel_log: Vec<String>,
    pub xids: Vec<LoggedXid>,
    /// entity → metric → (t, value), ascending in t.
    pub series: BTreeMap<Entity, BTreeMap<String, Vec<(i64, f64)>>>,
}

impl EpisodeWindow {
    /// An empty window over `[start, end)` for `fleet`.
    pub fn empty(fleet: &Fleet, episode_id: &str, start: i64, end: i64) -> EpisodeWindow {
        EpisodeWindow {
            episode_id: episode_id.to_string(),
            start,
            end,
            step_s: STEP_S,
            topology: fleet.describe(),
            racks: fleet.nodes.iter().map(|n| (n.name.clone(), fleet.racks[n.rack].name.clone())).collect(),
            pcie_max_gen: fleet.nodes.iter().map(|n| (n.name.clone(), n.pcie_max_gen)).collect(),
            profiles: fleet.nodes.iter().map(|n| (n.name.clone(), n.profile.as_str().to_string())).collect(),
            kernel_log: Vec::new(),
            xids: Vec::new(),
            series: BTreeMap::new(),
        }
    }

    /// Adds one sample.
    pub fn push(&mut self, entity: Entity, metric: &str, t: i64, value: f64) {
        let by_metric = self.series.entry(entity).or_default();
        match by_metric.get_mut(metric) {
            Some(v) => v.push((t, value)),
            None => {
                by_metric.insert(metric.to_string(), vec![(t, value)]);
            }
        }
    }

    /// Sets the kernel log (and the Xids read from it).
    pub fn set_kernel_log(&mut self, lines: Vec<String>) {
        self.xids = lines.iter().filter_map(|l| parse_xid_line(l)).collect();
        self.kernel_log = lines;
    }

    pub fn get(&self, entity: &Entity, metric: &str) -> Option<&[(i64, f64)]> {
        self.series.get(entity)?.get(metric).map(|v| v.as_slice())
    }

    /// Number of steps in the window.
    pub fn steps(&self) -> usize {
        ((self.end - self.start) / self.step_s.max(1)) as usize
    }
}

/// Builds an episode's window from the generator (only the episode's own
/// effects apply).
pub fn generated_window(fleet: &Fleet, ep: &Episode) -> EpisodeWindow {
    let mut w = EpisodeWindow::empty(fleet, &ep.id, ep.start, ep.end);
    let eps = std::slice::from_ref(ep);
    let mut stepper = FleetStepper::new(fleet, eps, ep.start);
    let gpu_entities: Vec<Entity> =
        fleet.gpus().map(|g| Entity::Gpu { node: fleet.nodes[g.node].name.clone(), gpu: g.gpu as u32 }).collect();
    let port_entities: Vec<Entity> =
        fleet.ports().map(|p| Entity::Port { node: fleet.nodes[p.node].name.clone(), device: p.device() }).collect();
    while stepper.frame().t + STEP_S < ep.end {
        let frame = stepper.step();
        let t = frame.t;
        for (i, e) in gpu_entities.iter().enumerate() {
            if frame.gpu_present[i] {
                let by_metric = w.series.entry(e.clone()).or_default();
                for (m, def) in GPU_METRICS.iter().enumerate() {
                    by_metric
                        .entry(def.name.to_string())
                        .or_default()
                        .push((t, telemetry::written_value(frame.gpus[i][m], def.kind)));
                }
            }
        }
        for (i, e) in port_entities.iter().enumerate() {
            let by_metric = w.series.entry(e.clone()).or_default();
            for (m, def) in PORT_METRICS.iter().enumerate() {
                by_metric
                    .entry(def.name.to_string())
                    .or_default()
                    .push((t, telemetry::written_value(frame.ports[i][m], def.kind)));
            }
        }
        for (n, row) in frame.replicas.iter().enumerate() {
            if let Some(row) = row {
                let by_metric = w.series.entry(Entity::Replica { node: fleet.nodes[n].name.clone() }).or_default();
                for (m, def) in REPLICA_METRICS.iter().enumerate() {
                    by_metric
                        .entry(def.name.to_string())
                        .or_default()
                        .push((t, telemetry::written_value(row[m], def.kind)));
                }
            }
        }
    }
    let lines = ep
        .xids
        .iter()
        .filter(|x| x.t >= ep.start && x.t < ep.end)
        .map(|x| telemetry::kernel_log_line(fleet, x))
        .collect();
    w.set_kernel_log(lines);
    w
}

/// Metric kind by name (unknown names count as gauges).
pub fn metric_kind(name: &str) -> MetricKind {
    GPU_METRICS
        .iter()
        .chain(PORT_METRICS.iter())
        .chain(REPLICA_METRICS.iter())
        .find(|d| d.name == name)
        .map(|d| d.kind)
        .unwrap_or(MetricKind::Gauge)
}

/// A summary of one series over the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesStats {
    pub samples: usize,
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Counter increase over the window (`last - first`, resets ignored).
    pub delta: f64,
    /// Counter rate per minute in the first and last quarter of the window.
    pub rate_early: f64,
    pub rate_late: f64,
    /// First sample that departs from the opening baseline.
    pub change_at: Option<i64>,
    /// First and last sample times.
    pub t_first: i64,
    pub t_last: i64,
}

const BASELINE_POINTS: usize = 8;

/// Summarises a series; `None` when it is empty.
pub fn stats(points: &[(i64, f64)], kind: MetricKind) -> Option<SeriesStats> {
    let (&(t_first, first), &(t_last, last)) = (points.first()?, points.last()?);
    let n = points.len();
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for &(_, v) in points {
        min = min.min(v);
        max = max.max(v);
        sum += v;
    }
    let rate = |seg: &[(i64, f64)]| -> f64 {
        match (seg.first(), seg.last()) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1).max(0.0) / ((b.0 - a.0) as f64 / 60.0),
            _ => 0.0,
        }
    };
    let q = (n / 4).max(2).min(n);
    let change_at = match kind {
        MetricKind::Counter => {
            let incs: Vec<(i64, f64)> = points.windows(2).map(|w| (w[1].0, (w[1].1 - w[0].1).max(0.0))).collect();
            let base: Vec<f64> = incs.iter().take(BASELINE_POINTS).map(|x| x.1).collect();
            let bm = base.iter().sum::<f64>() / base.len().max(1) as f64;
            let bmax = base.iter().copied().fold(0.0, f64::max);
            incs.iter().skip(BASELINE_POINTS).find(|x| x.1 > (bmax * 1.6).max(bm * 2.0) && x.1 >= 1.0).map(|x| x.0)
        }
        MetricKind::Gauge => {
            let base: Vec<f64> = points.iter().take(BASELINE_POINTS).map(|x| x.1).collect();
            let bm = base.iter().sum::<f64>() / base.len().max(1) as f64;
            let sd = (base.iter().map(|x| (x - bm) * (x - bm)).sum::<f64>() / base.len().max(1) as f64).sqrt();
            let tol = (4.0 * sd).max(0.08 * bm.abs()).max(1e-9);
            points
                .windows(2)
                .skip(BASELINE_POINTS)
                .find(|w| (w[0].1 - bm).abs() > tol && (w[1].1 - bm).abs() > tol)
                .map(|w| w[0].0)
        }
    };
    Some(SeriesStats {
        samples: n,
        first,
        last,
        min,
        max,
        mean: sum / n as f64,
        delta: (last - first).max(0.0),
        rate_early: rate(&points[..q]),
        rate_late: rate(&points[n - q..]),
        change_at,
        t_first,
        t_last,
    })
}

/// Gaps: maximal runs of missing steps as (from, to) for a series expected
/// every `step_s` in `[start, end)`.
pub fn gaps(points: &[(i64, f64)], start: i64, end: i64, step_s: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut expect = start;
    for &(t, _) in points {
        if t > expect + step_s / 2 {
            out.push((expect, t - step_s));
        }
        expect = t + step_s;
    }
    if expect + step_s / 2 < end {
        out.push((expect, end - step_s));
    }
    out.retain(|(a, b)| b >= a);
    out
}
