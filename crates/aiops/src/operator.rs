//! Operators that answer in process: `rules` (the on-call runbook),
//! `always-healthy` and `random`. Each returns raw answer text, so built-in
//! answers go through the same parser and scorer as a model's.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::diagnosis::{Diagnosis, Location};
use crate::scenario::{Action, LABELS, LABEL_NONE};
use crate::telemetry::MetricKind;
use crate::window::{gaps, stats, Entity, EpisodeWindow, LoggedXid, SeriesStats};

/// What every operator receives.
#[derive(Debug, Clone, Copy)]
pub struct OperatorInput<'a> {
    pub window: &'a EpisodeWindow,
    /// The rendered prompt (identical for every backend).
    pub prompt: &'a str,
}

/// An in-process operator. HTTP backends live in the binary.
pub trait Operator: Send {
    fn name(&self) -> &str;
    /// Returns the raw answer text.
    fn diagnose(&mut self, input: &OperatorInput<'_>) -> String;
}

/// The names of the built-in operators.
pub const BUILTIN: [&str; 3] = ["rules", "always-healthy", "random"];

/// A built-in operator by name; `seed` makes `random` reproducible.
pub fn builtin(name: &str, seed: u64) -> Option<Box<dyn Operator>> {
    match name {
        "rules" => Some(Box::new(RulesOperator)),
        "always-healthy" => Some(Box::new(AlwaysHealthy)),
        "random" => Some(Box::new(RandomOperator { seed })),
        _ => None,
    }
}

/// Answers "nothing is wrong" every time.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysHealthy;

impl Operator for AlwaysHealthy {
    fn name(&self) -> &str {
        "always-healthy"
    }
    fn diagnose(&mut self, _input: &OperatorInput<'_>) -> String {
        healthy().to_json().to_string()
    }
}

fn healthy() -> Diagnosis {
    Diagnosis {
        detected: false,
        root_cause: LABEL_NONE.to_string(),
        location: Vec::new(),
        onset: None,
        action: Action::None,
        confidence: Some(0.5),
        evidence: Vec::new(),
        decoys: Vec::new(),
    }
}

/// Picks a label, an action and a location at random (seeded per episode).
#[derive(Debug, Clone, Copy)]
pub struct RandomOperator {
    pub seed: u64,
}

impl Operator for RandomOperator {
    fn name(&self) -> &str {
        "random"
    }
    fn diagnose(&mut self, input: &OperatorInput<'_>) -> String {
        let w = input.window;
        let h = w
            .episode_id
            .bytes()
            .fold(self.seed ^ 0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let mut rng = ChaCha8Rng::seed_from_u64(h);
        let label = LABELS[rng.random_range(0..LABELS.len())];
        let nodes: Vec<&String> = w.racks.keys().collect();
        let node = nodes.get(rng.random_range(0..nodes.len().max(1))).map(|s| s.to_string());
        let detected = label != LABEL_NONE;
        Diagnosis {
            detected,
            root_cause: label.to_string(),
            location: if detected {
                vec![Location {
                    rack: node.as_ref().and_then(|n| w.racks.get(n).cloned()),
                    node,
                    gpu: Some(rng.random_range(0..8)),
                    link: None,
                }]
            } else {
                Vec::new()
            },
            onset: detected.then(|| rng.random_range(w.start..w.end)),
            action: Action::ALL[rng.random_range(0..Action::ALL.len())],
            confidence: Some(0.1),
            evidence: Vec::new(),
            decoys: Vec::new(),
        }
        .to_json()
        .to_string()
    }
}

/// The deterministic runbook: Xid table first, then ECC/remap fields,
/// NVLink and PCIe error thresholds, thermal margin, power bits, fabric
/// counters and KV-cache gates, and two naive alerts an on-call runbook
/// really has (any non-zero last-Xid gauge; a node that stops reporting).
#[derive(Debug, Clone, Copy, Default)]
pub struct RulesOperator;

impl Operator for RulesOperator {
    fn name(&self) -> &str {
        "rules"
    }
    fn diagnose(&mut self, input: &OperatorInput<'_>) -> String {
        rules_diagnosis(input.window).to_json().to_string()
    }
}

struct Finding {
    label: &'static str,
    loc: Location,
    onset: Option<i64>,
    action: Action,
    evidence: String,
}

fn gpu_loc(w: &EpisodeWindow, node: &str, gpu: u32) -> Location {
    Location { rack: w.racks.get(node).cloned(), node: Some(node.to_string()), gpu: Some(gpu), link: None }
}
fn node_loc(w: &EpisodeWindow, node: &str) -> Location {
    Location { rack: w.racks.get(node).cloned(), node: Some(node.to_string()), gpu: None, link: None }
}
fn rack_loc(rack: &str) -> Location {
    Location { rack: Some(rack.to_string()), ..Location::default() }
}

fn st(w: &EpisodeWindow, e: &Entity, m: &str, kind: MetricKind) -> Option<SeriesStats> {
    w.get(e, m).and_then(|p| stats(p, kind))
}

fn first_xid<'a>(w: &'a EpisodeWindow, codes: &[u32]) -> Option<&'a LoggedXid> {
    w.xids.iter().find(|x| codes.contains(&x.code))
}

/// Earliest `change_at` of `metric` on `e`.
fn change(w: &EpisodeWindow, e: &Entity, m: &str, kind: MetricKind) -> Option<i64> {
    st(w, e, m, kind).and_then(|s| s.change_at)
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The rules operator's diagnosis of a window.
pub fn rules_diagnosis(w: &EpisodeWindow) -> Diagnosis {
    match rules_finding(w) {
        None => healthy(),
        Some(f) => Diagnosis {
            detected: true,
            root_cause: f.label.to_string(),
            location: vec![f.loc],
            onset: f.onset,
            action: f.action,
            confidence: Some(0.9),
            evidence: vec![f.evidence],
            decoys: Vec::new(),
        },
    }
}

fn rules_finding(w: &EpisodeWindow) -> Option<Finding> {
    use MetricKind::{Counter, Gauge};
    let gpu_e = |node: &str, gpu: u32| Entity::Gpu { node: node.to_string(), gpu };
    // 1. The Xid table, from the kernel log.
    if let Some(x) = first_xid(w, &[79]) {
        return Some(Finding {
            label: "pcie.gpu_off_bus",
            loc: gpu_loc(w, &x.node, x.gpu),
            onset: Some(x.t),
            action: Action::RebootNode,
            evidence: format!("Xid 79 (fallen off the bus) on {} gpu{}", x.node, x.gpu),
        });
    }
    if let Some(x) = first_xid(w, &[48, 95, 64]) {
        return Some(Finding {
            label: "memory.hbm_uncorrectable",
            loc: gpu_loc(w, &x.node, x.gpu),
            onset: Some(x.t),
            action: Action::DrainNode,
            evidence: format!("Xid {} on {} gpu{}; DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", x.code, x.node, x.gpu),
        });
    }
    if let Some(x) = first_xid(w, &[119, 120]) {
        return Some(Finding {
            label: "driver.gsp_timeout",
            loc: gpu_loc(w, &x.node, x.gpu),
            onset: Some(x.t),
            action: Action::ResetGpu,
            evidence: format!("Xid {} (GSP timeout) on {} gpu{}", x.code, x.node, x.gpu),
        });
    }
    if let Some(x) = first_xid(w, &[63, 94]) {
        let e = gpu_e(&x.node, x.gpu);
        return Some(Finding {
            label: "memory.hbm_row_remap_pending",
            loc: gpu_loc(w, &x.node, x.gpu),
            onset: min_opt(Some(x.t), change(w, &e, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", Counter)),
            action: Action::ResetGpuAtNextDrain,
            evidence: format!("Xid {}; DCGM_FI_DEV_ROW_REMAP_PENDING=1 on {} gpu{}", x.code, x.node, x.gpu),
        });
    }
    let app: Vec<&LoggedXid> = w.xids.iter().filter(|x| x.code == 13 || x.code == 31).collect();
    if let Some(x) = app.first() {
        let distinct: std::collections::BTreeSet<(&str, u32)> = app.iter().map(|x| (x.node.as_str(), x.gpu)).collect();
        return Some(if distinct.len() >= 2 {
            Finding {
                label: "app.cuda_fault",
                loc: node_loc(w, &x.node),
                onset: Some(x.t),
                action: Action::RestartApp,
                evidence: format!("Xid {} on {} different GPUs of {}", x.code, distinct.len(), x.node),
            }
        } else {
            Finding {
                label: "gpu.sm_hw",
                loc: gpu_loc(w, &x.node, x.gpu),
                onset: Some(x.t),
                action: Action::DrainNode,
                evidence: format!("Xid {} repeating on {} gpu{}", x.code, x.node, x.gpu),
            }
        });
    }
    if let Some(x) = first_xid(w, &[74]) {
        // The GPU with the most NVLink CRC errors among those logging Xid 74.
        let worst = w
            .xids
            .iter()
            .filter(|y| y.code == 74)
            .max_by(|a, b| {
                let d = |y: &LoggedXid| {
                    st(w, &gpu_e(&y.node, y.gpu), "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", Counter)
                        .map(|s| s.delta)
                        .unwrap_or(0.0)
                };
                d(a).total_cmp(&d(b))
            })
            .unwrap_or(x);
        let mut loc = gpu_loc(w, &worst.node, worst.gpu);
        loc.link = worst.link.map(|l| format!("nvlink{l}"));
        return Some(Finding {
            label: "nvlink.link_degraded",
            loc,
            onset: Some(x.t),
            action: Action::DrainNode,
            evidence: format!(
                "Xid 74 and DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL on {} gpu{}",
                worst.node, worst.gpu
            ),
        });
    }
    // 2. Per-GPU fields.
    let mut thermal: Vec<(String, u32, i64, f64)> = Vec::new();
    let mut brake: Vec<(String, i64)> = Vec::new();
    let mut cap_nodes: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    let mut nvlink_worst: Option<(String, u32, f64, Option<i64>)> = None;
    for (e, _) in w.series.iter() {
        let Entity::Gpu { node, gpu } = e else {
            continue;
        };
        let (node, gpu) = (node.as_str(), *gpu);
        if st(w, e, "DCGM_FI_DEV_ROW_REMAP_PENDING", Gauge).is_some_and(|s| s.max >= 1.0) {
            return Some(Finding {
                label: "memory.hbm_row_remap_pending",
                loc: gpu_loc(w, node, gpu),
                onset: change(w, e, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", Counter),
                action: Action::ResetGpuAtNextDrain,
                evidence: format!("DCGM_FI_DEV_ROW_REMAP_PENDING=1 on {node} gpu{gpu}"),
            });
        }
        if st(w, e, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", Counter).is_some_and(|s| s.delta >= 1.0) {
            return Some(Finding {
                label: "memory.hbm_uncorrectable",
                loc: gpu_loc(w, node, gpu),
                onset: change(w, e, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", Counter),
                action: Action::DrainNode,
                evidence: format!("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL increased on {node} gpu{gpu}"),
            });
        }
        if let Some(s) = st(w, e, "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", Counter) {
            if s.delta >= 100.0 && nvlink_worst.as_ref().is_none_or(|n| s.delta > n.2) {
                nvlink_worst = Some((node.to_string(), gpu, s.delta, s.change_at));
            }
        }
        let gen = st(w, e, "DCGM_FI_DEV_PCIE_LINK_GEN", Gauge);
        let width = st(w, e, "DCGM_FI_DEV_PCIE_LINK_WIDTH", Gauge);
        let max_gen = w.pcie_max_gen.get(node).copied().unwrap_or(5) as f64;
        if gen.is_some_and(|g| g.min < max_gen) || width.is_some_and(|x| x.min < 16.0) {
            return Some(Finding {
                label: "pcie.link_degraded",
                loc: gpu_loc(w, node, gpu),
                onset: min_opt(gen.and_then(|g| g.change_at), width.and_then(|x| x.change_at)),
                action: Action::Reseat,
                evidence: format!("DCGM_FI_DEV_PCIE_LINK_GEN/WIDTH below the node's maximum on {node} gpu{gpu}"),
            });
        }
        if let Some(points) = w.get(e, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS") {
            let first_with = |mask: u32| points.iter().find(|p| (p.1 as u32) & mask != 0).map(|p| p.0);
            let temp = st(w, e, "DCGM_FI_DEV_GPU_TEMP", Gauge);
            let rise = temp.map(|s| s.max - s.first).unwrap_or(0.0);
            if let Some(t) = first_with(0x20 | 0x40) {
                let onset = temp.and_then(|s| s.change_at).unwrap_or(t).min(t);
                thermal.push((node.to_string(), gpu, onset, rise));
            } else if rise >= 15.0 {
                if let Some(onset) = temp.and_then(|s| s.change_at) {
                    thermal.push((node.to_string(), gpu, onset, rise));
                }
            }
            if let Some(t) = first_with(0x80) {
                brake.push((node.to_string(), t));
            }
            let capped = points.iter().filter(|p| (p.1 as u32) & 0x4 != 0).count();
            let limit_low = st(w, e, "DCGM_FI_DEV_ENFORCED_POWER_LIMIT", Gauge).is_some_and(|s| s.min < 700.0);
            if limit_low && capped * 3 >= points.len() {
                let t = first_with(0x4).unwrap_or(w.start);
                let entry = cap_nodes.entry(node.to_string()).or_insert((0, t));
                entry.0 += 1;
                entry.1 = entry.1.min(t);
            }
        }
    }
    if let Some((node, gpu, _, change_at)) = nvlink_worst {
        return Some(Finding {
            label: "nvlink.link_degraded",
            loc: gpu_loc(w, &node, gpu),
            onset: change_at,
            action: Action::DrainNode,
            evidence: format!("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL climbing on {node} gpu{gpu}"),
        });
    }
    if !brake.is_empty() {
        let nodes: std::collections::BTreeSet<&str> = brake.iter().map(|b| b.0.as_str()).collect();
        let onset = brake.iter().map(|b| b.1).min();
        let first = brake[0].0.clone();
        let loc = if nodes.len() > 1 {
            rack_loc(w.racks.get(&first).map(String::as_str).unwrap_or("?"))
        } else {
            node_loc(w, &first)
        };
        return Some(Finding {
            label: "power.psu_brake",
            loc,
            onset,
            action: Action::EscalateFacilities,
            evidence: "DCGM_FI_DEV_CLOCKS_EVENT_REASONS 0x80 hardware power brake".into(),
        });
    }
    if !thermal.is_empty() {
        let mut by_rack: BTreeMap<String, usize> = BTreeMap::new();
        for t in &thermal {
            *by_rack.entry(w.racks.get(&t.0).cloned().unwrap_or_default()).or_default() += 1;
        }
        let (rack, count) = by_rack.iter().max_by_key(|(_, c)| **c).map(|(r, c)| (r.clone(), *c)).unwrap_or_default();
        let onset = thermal.iter().map(|t| t.2).min();
        if count >= 6 {
            return Some(Finding {
                label: "thermal.cooling_loop_degraded",
                loc: rack_loc(&rack),
                onset: thermal.iter().filter(|t| w.racks.get(&t.0) == Some(&rack)).map(|t| t.2).min().or(onset),
                action: Action::EscalateFacilities,
                evidence: format!("DCGM_FI_DEV_GPU_TEMP rising with thermal DCGM_FI_DEV_CLOCKS_EVENT_REASONS on {count} GPUs of {rack}"),
            });
        }
        let hottest = thermal.iter().max_by(|a, b| a.3.total_cmp(&b.3)).cloned().unwrap_or_default();
        return Some(Finding {
            label: "straggler.thermal_single_gpu",
            loc: gpu_loc(w, &hottest.0, hottest.1),
            onset: Some(hottest.2),
            action: Action::DrainNode,
            evidence: format!(
                "DCGM_FI_DEV_GPU_TEMP climbing and thermal clock events on {} gpu{}",
                hottest.0, hottest.1
            ),
        });
    }
    if let Some((node, (_, t))) = cap_nodes.iter().filter(|(_, v)| v.0 >= 6).min_by_key(|(_, v)| v.1) {
        return Some(Finding {
            label: "power.cap_enforced",
            loc: node_loc(w, node),
            onset: Some(*t),
            action: Action::None,
            evidence: format!(
                "DCGM_FI_DEV_ENFORCED_POWER_LIMIT lowered and DCGM_FI_DEV_CLOCKS_EVENT_REASONS 0x4 on {node}"
            ),
        });
    }
    // 3. Fabric.
    let mut phy: Option<(String, String, f64, Option<i64>)> = None;
    let mut congested: Vec<(String, Option<i64>)> = Vec::new();
    for e in w.series.keys() {
        let Entity::Port { node, device } = e else {
            continue;
        };
        let sym = st(w, e, "node_infiniband_symbol_error_total", Counter);
        let down = st(w, e, "node_infiniband_link_downed_total", Counter);
        let bad = sym.map(|s| s.delta).unwrap_or(0.0) + 100.0 * down.map(|s| s.delta).unwrap_or(0.0);
        if bad >= 5.0 && phy.as_ref().is_none_or(|p| bad > p.2) {
            phy = Some((
                node.clone(),
                device.clone(),
                bad,
                min_opt(sym.and_then(|s| s.change_at), down.and_then(|s| s.change_at)),
            ));
        }
        if let Some(s) = st(w, e, "node_infiniband_port_transmit_wait_total", Counter) {
            if s.rate_late > 3.0 * s.rate_early.max(1.0) {
                congested.push((node.clone(), s.change_at));
            }
        }
    }
    if let Some((node, device, _, onset)) = phy {
        let mut loc = node_loc(w, &node);
        loc.link = Some(device.clone());
        return Some(Finding {
            label: "fabric.link_phy",
            loc,
            onset,
            action: Action::ReplaceCable,
            evidence: format!("node_infiniband_symbol_error_total / link_downed on {node} {device}"),
        });
    }
    if congested.len() >= 2 {
        let mut by_rack: BTreeMap<String, usize> = BTreeMap::new();
        for c in &congested {
            *by_rack.entry(w.racks.get(&c.0).cloned().unwrap_or_default()).or_default() += 1;
        }
        let rack = by_rack.iter().max_by_key(|(_, c)| **c).map(|(r, _)| r.clone()).unwrap_or_default();
        return Some(Finding {
            label: "fabric.congestion_pfc",
            loc: rack_loc(&rack),
            onset: congested.iter().filter_map(|c| c.1).min(),
            action: Action::RescheduleTraffic,
            evidence: format!(
                "node_infiniband_port_transmit_wait_total slope up on {} ports, error counters flat",
                congested.len()
            ),
        });
    }
    // 4. Serving.
    for e in w.series.keys() {
        let Entity::Replica { node } = e else {
            continue;
        };
        let kv = st(w, e, "vllm:kv_cache_usage_perc", Gauge);
        let pre = st(w, e, "vllm:num_preemptions_total", Counter);
        if kv.is_some_and(|s| s.max >= 0.97) && pre.is_some_and(|s| s.delta >= 10.0) {
            return Some(Finding {
                label: "serving.kv_cache_pressure",
                loc: node_loc(w, node),
                onset: min_opt(kv.and_then(|s| s.change_at), pre.and_then(|s| s.change_at)),
                action: Action::ScaleOut,
                evidence: format!("vllm:kv_cache_usage_perc near 1.0 and vllm:num_preemptions_total rising on {node}"),
            });
        }
    }
    // 5. Naive alerts: a node that stopped reporting, a non-zero last-Xid gauge.
    for node in w.racks.keys() {
        let e = gpu_e(node, 0);
        if let Some(p) = w.get(&e, "DCGM_FI_DEV_GPU_TEMP") {
            let all_gone = (0..8).all(|g| {
                w.get(&gpu_e(node, g), "DCGM_FI_DEV_GPU_TEMP")
                    .is_some_and(|q| !gaps(q, w.start, w.end, w.step_s).is_empty())
            });
            if all_gone {
                let onset = gaps(p, w.start, w.end, w.step_s).first().map(|g| g.0);
                return Some(Finding {
                    label: "monitoring.exporter_down",
                    loc: node_loc(w, node),
                    onset,
                    action: Action::RebootNode,
                    evidence: format!("all DCGM series of {node} went absent"),
                });
            }
        }
    }
    for (e, _) in w.series.iter() {
        let Entity::Gpu { node, gpu } = e else {
            continue;
        };
        if let Some(s) = st(w, e, "DCGM_FI_DEV_XID_ERRORS", Gauge) {
            let code = s.last as u32;
            if matches!(code, 13 | 31 | 43) {
                return Some(Finding {
                    label: "app.cuda_fault",
                    loc: node_loc(w, node),
                    onset: Some(s.t_first),
                    action: Action::RestartApp,
                    evidence: format!("DCGM_FI_DEV_XID_ERRORS={code} on {node} gpu{gpu}"),
                });
            }
        }
    }
    None
}

/// Answers prompts in place of a model (`None`: no answer for that prompt).
pub type Responder = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A model stand-in that answers every prompt of the first `episodes`
/// episodes of a `gpus`-GPU fleet (seed `seed`) with the rules runbook's
/// diagnosis, and nothing else: plugged into a simulated server, it runs the
/// whole HTTP path (prompt, stream, lenient parse, score) with no model.
pub fn rules_responder(gpus: usize, episodes: usize, seed: u64) -> Result<Responder, crate::TopologyError> {
    let fleet = crate::Fleet::build(gpus, seed)?;
    let mut answers = std::collections::HashMap::new();
    let mut rules = RulesOperator;
    for ep in crate::plan_schedule(&fleet, episodes, seed) {
        let window = crate::generated_window(&fleet, &ep);
        let text = crate::prompt::render(&window);
        let answer = rules.diagnose(&OperatorInput { window: &window, prompt: &text });
        answers.insert(text, answer);
    }
    Ok(std::sync::Arc::new(move |p: &str| answers.get(p).cloned()))
}
