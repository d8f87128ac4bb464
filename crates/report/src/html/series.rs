//! The curves of a report: every measured point (a run, or a sweep level's
//! run) joins ONE series per backend. A series is keyed by the sweep that
//! measured it (its `SweepRecord`'s run ids), the backend URL, the model,
//! the hardware, the workload and the axis (concurrency or request rate), so
//! that two sweeps never merge and the demo's setups, which share one group
//! name, stay apart. Plain runs against the same backend, model, hardware and
//! workload form one curve whose knee is found by [`knee`].

use super::data::{hardware, knee, KneeDoc, Level, ReportRun, SweepRecord};
use crate::svg::fmt_num;

/// What a curve's x axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Axis {
    /// Requests in flight (closed loop).
    Concurrency,
    /// Requests per second asked for (open loop).
    Rate,
}

impl Axis {
    pub fn key(self) -> &'static str {
        match self {
            Axis::Concurrency => "concurrency",
            Axis::Rate => "rate",
        }
    }
    /// `C=4` or `4 req/s`.
    pub fn fmt(self, x: f64) -> String {
        match self {
            Axis::Concurrency => format!("C={}", fmt_num(x)),
            Axis::Rate => format!("{} req/s", fmt_num(x)),
        }
    }
}

/// One curve: a backend's points against concurrency (or rate), in x order.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// The name shown in legends and tables (hardware, else model @ URL).
    pub name: String,
    pub backend: String,
    pub model: String,
    pub hardware: Option<String>,
    pub workload: String,
    pub api: String,
    pub tool_version: String,
    pub axis: Axis,
    /// One point per level, repeats pooled, in x order.
    pub points: Vec<Level>,
    /// Index into `points` of the knee, if the curve has one.
    pub knee: Option<usize>,
    /// The sweep's own knee (band, saturation, why), when a sweep measured it.
    pub sweep_knee: Option<KneeDoc>,
    /// The sweep's group, when a sweep measured it.
    pub group: Option<String>,
    /// The stored runs behind the points.
    pub run_ids: Vec<i64>,
}

impl Curve {
    /// The x position of a point on this curve.
    pub fn x(&self, p: &Level) -> f64 {
        match self.axis {
            Axis::Concurrency => p.concurrency.unwrap_or(0.0),
            Axis::Rate => p.rate.or(p.concurrency).unwrap_or(0.0),
        }
    }

    /// The knee's point.
    pub fn knee_point(&self) -> Option<&Level> {
        self.knee.and_then(|i| self.points.get(i))
    }

    /// The throughput the curve levels off at: the sweep's saturation figure,
    /// else the highest throughput measured when the curve has a knee.
    pub fn saturation(&self) -> Option<f64> {
        if let Some(k) = &self.sweep_knee {
            return Some(k.saturation_output_throughput);
        }
        self.knee?;
        self.points.iter().map(|p| p.metrics.output_throughput).reduce(f64::max)
    }

    /// The point with the highest aggregate throughput.
    pub fn peak(&self) -> Option<&Level> {
        self.points.iter().reduce(|a, b| if b.metrics.output_throughput > a.metrics.output_throughput { b } else { a })
    }

    /// Why the curve bends, in one line: the sweep's explanation, else what
    /// the knee finder saw.
    pub fn explanation(&self) -> String {
        if let Some(k) = &self.sweep_knee {
            return k.reason.clone();
        }
        match self.knee_point() {
            Some(p) => format!(
                "past {} more load adds little throughput (the point farthest above the chord from the first to the last level)",
                self.axis.fmt(self.x(p))
            ),
            None if self.points.len() < 3 => "too few levels to find a knee".into(),
            None => "no knee: throughput grows about in proportion up to the highest level measured".into(),
        }
    }

    /// The sweep's knee is its highest level: the cliff lies beyond what
    /// was measured.
    pub fn knee_open(&self) -> bool {
        self.sweep_knee.is_some() && self.knee.is_some_and(|k| k + 1 == self.points.len())
    }

    /// The knee in words: `C=8 (band 4–16)`, `C≥16`.
    pub fn knee_text(&self) -> Option<String> {
        let p = self.knee_point()?;
        let mut s = self.axis.fmt(self.x(p));
        if self.knee_open() {
            s = s.replacen('=', "≥", 1);
            if self.axis == Axis::Rate {
                s = format!("≥{s}");
            }
            return Some(s);
        }
        if let Some(k) = &self.sweep_knee {
            if k.band[0] < k.band[1] {
                s.push_str(&format!(" (band {}–{})", fmt_num(k.band[0]), fmt_num(k.band[1])));
            }
        }
        Some(s)
    }
}

#[derive(PartialEq)]
struct Key {
    sweep: Option<i64>,
    backend: String,
    model: String,
    hardware: Option<String>,
    workload: String,
    axis: Axis,
}

/// The curves of `runs`, in the order their first point appears.
pub fn curves(runs: &[ReportRun]) -> Vec<Curve> {
    let sweeps: Vec<(i64, &SweepRecord)> =
        runs.iter().flat_map(|r| r.sweeps.iter().map(move |s| (r.meta.id, s))).collect();
    let mut keyed: Vec<(Key, Curve)> = Vec::new();
    for r in runs {
        let points = r.points();
        if points.is_empty() {
            continue;
        }
        let sweep = sweeps.iter().find(|(holder, s)| *holder == r.meta.id || s.sweep.run_ids.contains(&r.meta.id));
        let cfg = r.meta.run_config();
        let axis =
            if points.iter().any(|p| p.rate.is_some()) || (cfg.request_rate.is_some() && cfg.concurrency.is_none()) {
                Axis::Rate
            } else {
                Axis::Concurrency
            };
        let key = Key {
            sweep: sweep.map(|(holder, s)| s.sweep.run_ids.first().copied().unwrap_or(*holder)),
            backend: r.meta.backend_url.clone(),
            model: r.meta.model.clone(),
            hardware: hardware(&r.meta),
            workload: r.meta.workload.clone(),
            axis,
        };
        let i = match keyed.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                keyed.push((
                    key,
                    Curve {
                        name: String::new(),
                        backend: r.meta.backend_url.clone(),
                        model: r.meta.model.clone(),
                        hardware: hardware(&r.meta),
                        workload: r.meta.workload.clone(),
                        api: r.meta.api.clone(),
                        tool_version: r.meta.tool_version.clone(),
                        axis,
                        points: Vec::new(),
                        knee: None,
                        sweep_knee: sweep.and_then(|(_, s)| s.knee.clone()),
                        group: sweep.map(|(_, s)| s.sweep.group.clone()),
                        run_ids: Vec::new(),
                    },
                ));
                keyed.len() - 1
            }
        };
        let curve = &mut keyed[i].1;
        curve.run_ids.push(r.meta.id);
        curve.points.extend(points.into_iter().filter(|p| p.concurrency.is_some() || p.rate.is_some()));
    }
    let mut out: Vec<Curve> = keyed.into_iter().map(|(_, c)| c).filter(|c| !c.points.is_empty()).collect();
    for c in &mut out {
        finish(c);
    }
    name_curves(&mut out);
    out
}

/// Sorts a curve's points, pools repeats of a level into one point, and
/// finds its knee.
fn finish(c: &mut Curve) {
    let axis = c.axis;
    let x = |p: &Level| match axis {
        Axis::Concurrency => p.concurrency.unwrap_or(0.0),
        Axis::Rate => p.rate.or(p.concurrency).unwrap_or(0.0),
    };
    c.points.sort_by(|a, b| x(a).total_cmp(&x(b)).then(a.run_id.cmp(&b.run_id)));
    let mut pooled: Vec<(Level, usize)> = Vec::new();
    for p in std::mem::take(&mut c.points) {
        match pooled.last_mut() {
            Some((q, n)) if x(q) == x(&p) => {
                // Repeats of one level: the mean of their throughputs.
                let k = *n as f64;
                q.metrics.output_throughput =
                    (q.metrics.output_throughput * k + p.metrics.output_throughput) / (k + 1.0);
                if let (Some(a), Some(b)) = (q.metrics.mean_tok_s, p.metrics.mean_tok_s) {
                    q.metrics.mean_tok_s = Some((a * k + b) / (k + 1.0));
                }
                *n += 1;
            }
            _ => pooled.push((p, 1)),
        }
    }
    for (p, n) in &mut pooled {
        if *n > 1 {
            p.label = format!("{} (mean of {n} repeats)", p.label);
        }
    }
    c.points = pooled.into_iter().map(|(p, _)| p).collect();
    let sweep_x = c.sweep_knee.as_ref().and_then(|k| match axis {
        Axis::Concurrency => k.concurrency,
        Axis::Rate => k.rate,
    });
    c.knee = match sweep_x {
        Some(kx) => c.points.iter().position(|p| (x(p) - kx).abs() < 1e-9),
        None => {
            let xy: Vec<(f64, f64)> = c.points.iter().map(|p| (x(p), p.metrics.output_throughput)).collect();
            knee(&xy)
        }
    };
}

/// Short, distinct names: the hardware where known, else model @ URL;
/// where two curves would share a name, the URL and then the first run id
/// tell them apart.
fn name_curves(curves: &mut [Curve]) {
    for c in curves.iter_mut() {
        c.name = match &c.hardware {
            Some(h) => h.clone(),
            None => format!("{} @ {}", c.model, c.backend),
        };
    }
    let dups = |cs: &[Curve]| -> Vec<bool> {
        (0..cs.len()).map(|i| cs.iter().enumerate().any(|(j, o)| j != i && o.name == cs[i].name)).collect()
    };
    let d = dups(curves);
    for (c, dup) in curves.iter_mut().zip(d) {
        if dup && c.hardware.is_some() {
            c.name = format!("{} @ {}", c.name, c.backend);
        }
    }
    let d = dups(curves);
    for (c, dup) in curves.iter_mut().zip(d) {
        if dup {
            c.name = format!("{} (run {})", c.name, c.run_ids.first().copied().unwrap_or(0));
        }
    }
}
