//! The built-in investigators, all in process and all through the episode's
//! tools: `rules` (the runbook of docs/RUNBOOK.md, one page at a time),
//! `oracle` (reads the truth; proves the score can be maxed),
//! `always-healthy` and `random`. The best constant answer (`floor`) is
//! computed in [`super::bench`].

use std::time::Instant;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::cases::labels;
use super::episode_tools::EpisodeTools;
use super::score::truth_submission;
use super::tools::{Budget, Ended, Investigation, ToolReply};
use crate::scenario::Action;
use crate::time::{format_rfc3339, parse_rfc3339};

/// The names of the built-in investigators.
pub const BUILTIN: [&str; 4] = ["rules", "oracle", "always-healthy", "random"];

/// Runs the built-in investigator `name` on one episode; `None` for an
/// unknown name.
pub fn investigate_builtin(name: &str, tools: &EpisodeTools, budget: &Budget, seed: u64) -> Option<Investigation> {
    let mut s = Session::new(tools, budget);
    let answer = match name {
        "rules" => rules(&mut s),
        "oracle" => Some(truth_submission(tools.world())),
        "always-healthy" => Some(json!({"detected": false, "root_cause": "none", "action": "NONE"})),
        "random" => random(&mut s, seed),
        _ => return None,
    };
    Some(s.finish(answer))
}

/// One investigation in progress: every call goes through the tools and
/// into the transcript, within the budget.
pub struct Session<'a> {
    tools: &'a EpisodeTools,
    budget: &'a Budget,
    started: Instant,
    inv: Investigation,
}

impl<'a> Session<'a> {
    pub fn new(tools: &'a EpisodeTools, budget: &'a Budget) -> Session<'a> {
        let briefing = json!({"role": "briefing", "content": super::tools::Toolset::briefing(tools)});
        let inv = Investigation { transcript: vec![briefing], ..Investigation::empty(Ended::NoSubmission) };
        Session { tools, budget, started: Instant::now(), inv }
    }

    /// One tool call; `None` when it failed or the budget is spent.
    pub fn call(&mut self, name: &str, args: Value) -> Option<String> {
        if self.inv.tool_calls >= self.budget.tool_calls {
            self.inv.ended = Ended::OverToolCalls;
            return None;
        }
        self.inv.tool_calls += 1;
        let reply = self.tools.call_now(name, &args);
        let (text, ok) = match &reply {
            ToolReply::Output(t) => (t.clone(), true),
            ToolReply::Error(e) => (e.clone(), false),
            ToolReply::Submitted(_) => (String::from("submitted"), true),
        };
        self.inv.transcript.push(json!({"role": "tool_call", "name": name, "arguments": args}));
        self.inv.transcript.push(json!({"role": "tool_result", "name": name, "ok": ok, "content": text}));
        if !ok {
            self.inv.tool_errors += 1;
            return None;
        }
        Some(text)
    }

    /// Submits `answer` (when within budget) and closes the investigation.
    pub fn finish(mut self, answer: Option<Value>) -> Investigation {
        if let Some(a) = answer {
            if self.inv.ended == Ended::NoSubmission {
                match self.tools.call_now("submit_diagnosis", &a) {
                    ToolReply::Submitted(v) => {
                        self.inv.tool_calls += 1;
                        self.inv
                            .transcript
                            .push(json!({"role": "tool_call", "name": "submit_diagnosis", "arguments": v}));
                        self.inv.submitted = Some(v);
                        self.inv.ended = Ended::Submitted;
                    }
                    ToolReply::Error(e) | ToolReply::Output(e) => {
                        self.inv.tool_errors += 1;
                        self.inv.transcript.push(
                            json!({"role": "tool_result", "name": "submit_diagnosis", "ok": false, "content": e}),
                        );
                    }
                }
            }
        }
        self.inv.wall_s = self.started.elapsed().as_secs_f64();
        self.inv
    }

    fn now(&self) -> i64 {
        self.tools.world().now
    }

    /// An instant query answered as Prometheus JSON: `(labels, value)` pairs.
    fn vector(&mut self, query: &str) -> Vec<(Value, f64)> {
        let out = self.call("promql_query", json!({"query": query, "format": "json"})).unwrap_or_default();
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        v["result"]
            .as_array()
            .map(|a| a.iter().map(|s| (s["metric"].clone(), num(&s["value"][1]))).collect())
            .unwrap_or_default()
    }

    /// A range query: per series, `(t, value)` points.
    fn matrix(&mut self, query: &str, minutes: i64) -> Vec<(Value, Vec<(i64, f64)>)> {
        let args =
            json!({"query": query, "start": format!("now-{minutes}m"), "end": "now", "step": 60, "format": "json"});
        let out = self.call("promql_range", args).unwrap_or_default();
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        v["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let pts = s["values"]
                            .as_array()
                            .map(|p| p.iter().map(|x| (x[0].as_f64().unwrap_or(0.0) as i64, num(&x[1]))).collect())
                            .unwrap_or_default();
                        (s["metric"].clone(), pts)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn num(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_f64()).unwrap_or(f64::NAN)
}

/// The first instant a series leaves its first ten samples' median by more
/// than `delta` (a change point), if any.
fn change_point(points: &[(i64, f64)], delta: f64) -> Option<i64> {
    if points.len() < 12 {
        return None;
    }
    let mut base: Vec<f64> = points[..10].iter().map(|p| p.1).collect();
    base.sort_by(f64::total_cmp);
    let m = base[5];
    points[10..].iter().find(|p| (p.1 - m).abs() > delta).map(|p| p.0)
}

/// One diagnosis as the runbook writes it.
fn answer(
    detected: bool,
    label: &str,
    loc: Value,
    onset: Option<i64>,
    action: Action,
    evidence: &[(String, &str)],
) -> Value {
    json!({
        "detected": detected,
        "root_cause": label,
        "location": loc,
        "onset": onset.map(format_rfc3339),
        "action": action.as_str(),
        "evidence": evidence.iter().map(|(e, s)| json!({"entity": e, "signal": s})).collect::<Vec<_>>(),
    })
}

fn not_an_incident(action: Action) -> Value {
    answer(false, "none", Value::Null, None, action, &[])
}

/// An Xid line of the kernel log: `(time, PCI bus id, code, NVLink link)`.
fn parse_xid(line: &str) -> Option<(i64, String, u32, Option<u32>)> {
    let t = parse_rfc3339(line.split_whitespace().next()?)?;
    let rest = &line[line.find("Xid (PCI:")? + 9..];
    let (pci, rest) = rest.split_once("): ")?;
    let code: u32 = rest.split(',').next()?.trim().parse().ok()?;
    let link = rest.split_once("on link ").and_then(|(_, l)| l.split('(').next()).and_then(|l| l.parse().ok());
    Some((t, pci.to_string(), code, link))
}

/// The runbook, followed for the page (the first alert) only.
fn rules(s: &mut Session<'_>) -> Option<Value> {
    let alerts = s.tools.alerts();
    let page = alerts.first()?;
    let l = &page["labels"];
    let get = |k: &str| l[k].as_str().map(str::to_string);
    let name = get("alertname").unwrap_or_default();
    let host = get("Hostname").or_else(|| get("hostname"));
    let gpu: Option<u32> = get("gpu").or_else(|| get("gpu_id")).and_then(|g| g.parse().ok());
    let now = s.now();
    let started = page["startsAt"].as_str().and_then(parse_rfc3339).unwrap_or(now);
    let node_loc = |n: &str, g: Option<u32>| json!({"rack": n.split_once("-n").map(|x| x.0), "node": n, "gpu": g});
    Some(match name.as_str() {
        "GpuXidCritical" => {
            let node = host?;
            if now - started > 1800 {
                return Some(not_an_incident(Action::None));
            }
            let log = s.call("kernel_log", json!({"node": node, "since": "now-6h", "grep": "Xid"})).unwrap_or_default();
            let topo: Value = s
                .call("topology", json!({"entity": node}))
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            let gpu_of = |pci: &str| {
                topo["gpus"]
                    .as_array()
                    .and_then(|g| g.iter().find(|x| x["pci"].as_str().is_some_and(|p| p.starts_with(pci))))
                    .and_then(|x| x["gpu"].as_u64())
                    .map(|g| g as u32)
            };
            let xids: Vec<(i64, String, u32, Option<u32>)> = log.lines().filter_map(parse_xid).collect();
            let recent: Vec<_> = xids.iter().filter(|x| x.0 >= now - 1800).collect();
            let first = |codes: &[u32]| recent.iter().find(|x| codes.contains(&x.2)).copied();
            let ev = |sig: &'static str| vec![(node.clone(), sig)];
            if let Some(x) = first(&[79]) {
                answer(
                    true,
                    "pcie.gpu_off_bus",
                    node_loc(&node, gpu_of(&x.1)),
                    Some(x.0),
                    Action::RebootNode,
                    &ev("Xid 79"),
                )
            } else if let Some(x) = first(&[48, 95, 64]) {
                answer(
                    true,
                    "memory.hbm_uncorrectable",
                    node_loc(&node, gpu_of(&x.1)),
                    Some(x.0),
                    Action::DrainNode,
                    &ev("Xid 48"),
                )
            } else if let Some(x) = first(&[63, 94]) {
                answer(
                    true,
                    "memory.hbm_row_remap_pending",
                    node_loc(&node, gpu_of(&x.1)),
                    Some(x.0),
                    Action::ResetGpuAtNextDrain,
                    &ev("Xid 63"),
                )
            } else if let Some(x) = first(&[119, 120]) {
                answer(
                    true,
                    "driver.gsp_timeout",
                    node_loc(&node, gpu_of(&x.1)),
                    Some(x.0),
                    Action::ResetGpu,
                    &ev("Xid 119"),
                )
            } else if let Some(x) = first(&[74]) {
                let mut loc = node_loc(&node, gpu_of(&x.1));
                loc["link"] = x.3.map(|k| json!(format!("nvlink{k}"))).unwrap_or(Value::Null);
                answer(true, "nvlink.link_degraded", loc, Some(x.0), Action::DrainNode, &ev("Xid 74"))
            } else if let Some(x) = first(&[13, 31]) {
                let gpus: std::collections::BTreeSet<&str> =
                    recent.iter().filter(|y| y.2 == 13 || y.2 == 31).map(|y| y.1.as_str()).collect();
                let repeats: Vec<_> = xids.iter().filter(|y| y.2 == 13 && y.1 == x.1).collect();
                if gpus.len() == 1 && repeats.len() >= 3 {
                    let loc = node_loc(&node, gpu_of(&x.1));
                    answer(true, "gpu.sm_hw", loc, Some(repeats[0].0), Action::DrainNode, &ev("Xid 13"))
                } else {
                    answer(true, "app.cuda_fault", node_loc(&node, None), Some(x.0), Action::RestartApp, &ev("Xid 13"))
                }
            } else {
                not_an_incident(Action::None)
            }
        }
        "GpuEccUncorrectable" => {
            let node = host?;
            let q = format!("gpu_ecc_uncorrect_total{{hostname=\"{node}\",gpu_id=\"{}\"}}", gpu.unwrap_or(0));
            let onset = s.matrix(&q, 60).first().and_then(|(_, p)| change_point(p, 0.5));
            answer(
                true,
                "memory.hbm_uncorrectable",
                node_loc(&node, gpu),
                onset,
                Action::DrainNode,
                &[(node, "gpu_ecc_uncorrect_total")],
            )
        }
        "GpuTemperatureHigh" => {
            let node = host?;
            let rack = node.split_once("-n").map(|x| x.0.to_string()).unwrap_or_default();
            let amd = l["hostname"].is_string();
            let (metric, hl, gl) = if amd {
                ("gpu_junction_temperature", "hostname", "gpu_id")
            } else {
                ("DCGM_FI_DEV_GPU_TEMP", "Hostname", "gpu")
            };
            let hot = s.vector(&format!("{metric}{{{hl}=~\"{rack}-.*\"}} > 85")).len();
            let rose = s
                .vector(&format!("{metric}{{{hl}=~\"{rack}-.*\"}} - {metric}{{{hl}=~\"{rack}-.*\"}} offset 30m > 10"))
                .len();
            let all = s.vector(&format!("{metric}{{{hl}=~\"{rack}-.*\"}}")).len().max(1);
            let series = s.matrix(&format!("{metric}{{{hl}=\"{node}\",{gl}=\"{}\"}}", gpu.unwrap_or(0)), 60);
            let onset = series.first().and_then(|(_, p)| change_point(p, 3.0));
            if 2 * hot >= all && 2 * rose >= all {
                answer(
                    true,
                    "thermal.cooling_loop_degraded",
                    json!({"rack": rack}),
                    onset,
                    Action::EscalateFacilities,
                    &[(rack.clone(), metric)],
                )
            } else {
                answer(
                    true,
                    "straggler.thermal_single_gpu",
                    node_loc(&node, gpu),
                    onset,
                    Action::DrainNode,
                    &[(node, metric)],
                )
            }
        }
        "GpuPowerBrake" => {
            let rack = get("rack")?;
            let series = s.matrix(&format!("max(DCGM_FI_DEV_CLOCKS_EVENT_REASONS{{Hostname=~\"{rack}-.*\"}})"), 60);
            let onset = series.first().and_then(|(_, p)| p.iter().find(|x| x.1 >= 128.0).map(|x| x.0));
            answer(
                true,
                "power.psu_brake",
                json!({"rack": rack}),
                onset,
                Action::EscalateFacilities,
                &[(rack, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS")],
            )
        }
        "PcieReplaysHigh" => {
            let node = host?;
            let q = format!("DCGM_FI_DEV_PCIE_LINK_GEN{{Hostname=\"{node}\",gpu=\"{}\"}}", gpu.unwrap_or(0));
            let series = s.matrix(&q, 60);
            let onset = series.first().and_then(|(_, p)| change_point(p, 0.5));
            match onset {
                Some(o) => answer(
                    true,
                    "pcie.link_degraded",
                    node_loc(&node, gpu),
                    Some(o),
                    Action::Reseat,
                    &[(node, "DCGM_FI_DEV_PCIE_LINK_GEN")],
                ),
                None => not_an_incident(Action::Monitor),
            }
        }
        "IbSymbolErrors" => {
            let node = host?;
            let dev = get("device").unwrap_or_default();
            let q = format!("node_infiniband_symbol_error_total{{Hostname=\"{node}\",device=\"{dev}\"}}");
            let onset =
                s.matrix(&q, 60).first().and_then(|(_, p)| p.windows(2).find(|w| w[1].1 > w[0].1).map(|w| w[0].0));
            let loc = json!({"rack": node.split_once("-n").map(|x| x.0), "node": node, "link": dev});
            answer(
                true,
                "fabric.link_phy",
                loc,
                onset,
                Action::ReplaceCable,
                &[(node, "node_infiniband_symbol_error_total")],
            )
        }
        "IbCongestion" => {
            let rack = get("rack")?;
            let q = format!("sum(rate(node_infiniband_port_transmit_wait_total{{Hostname=~\"{rack}-.*\"}}[2m]))");
            let onset = s.matrix(&q, 60).first().and_then(|(_, p)| {
                let base = p.first()?.1;
                p.iter().find(|x| x.1 > 2.0 * base).map(|x| x.0 - 60)
            });
            answer(
                true,
                "fabric.congestion_pfc",
                json!({"rack": rack}),
                onset,
                Action::RescheduleTraffic,
                &[(rack, "node_infiniband_port_transmit_wait_total")],
            )
        }
        "VllmKvCacheFull" => {
            let node = host?;
            let q = format!("vllm:kv_cache_usage_perc{{Hostname=\"{node}\"}}");
            let onset = s.matrix(&q, 60).first().and_then(|(_, p)| change_point(p, 0.1)).map(|t| t - 60);
            answer(
                true,
                "serving.kv_cache_pressure",
                node_loc(&node, None),
                onset,
                Action::ScaleOut,
                &[(node, "vllm:kv_cache_usage_perc")],
            )
        }
        "DcgmExporterDown" => {
            let node = host?;
            let up = s.vector(&format!("up{{Hostname=\"{node}\"}}"));
            if up.first().is_some_and(|(_, v)| *v >= 1.0) {
                not_an_incident(Action::None)
            } else {
                let onset = s
                    .matrix(&format!("up{{Hostname=\"{node}\"}}"), 60)
                    .first()
                    .and_then(|(_, p)| p.iter().find(|x| x.1 < 1.0).map(|x| x.0));
                answer(true, "monitoring.exporter_down", node_loc(&node, None), onset, Action::Monitor, &[(node, "up")])
            }
        }
        "JobCrashed" => {
            let node = host?;
            let xid =
                s.vector(&format!("max(DCGM_FI_DEV_XID_ERRORS{{Hostname=\"{node}\"}})")).first().map_or(0.0, |x| x.1)
                    as u32;
            match xid {
                48 | 95 | 64 => answer(
                    true,
                    "memory.hbm_uncorrectable",
                    node_loc(&node, None),
                    Some(started),
                    Action::DrainNode,
                    &[(node, "Xid 48")],
                ),
                79 => answer(
                    true,
                    "pcie.gpu_off_bus",
                    node_loc(&node, None),
                    Some(started),
                    Action::RebootNode,
                    &[(node, "Xid 79")],
                ),
                _ => answer(
                    true,
                    "app.cuda_fault",
                    node_loc(&node, None),
                    Some(started),
                    Action::RestartApp,
                    &[(node, "DCGM_FI_DEV_XID_ERRORS")],
                ),
            }
        }
        "JobStalled" | "JobStepTimeHigh" => {
            let job = get("job")?;
            let topo: Value = s
                .call("topology", json!({"entity": job}))
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            let nodes: Vec<String> = topo["nodes"]
                .as_array()
                .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            let re = nodes.join("|");
            let hot = s.vector(&format!("DCGM_FI_DEV_GPU_TEMP{{Hostname=~\"{re}\"}} > 87"));
            let braked = s.vector(&format!("DCGM_FI_DEV_CLOCKS_EVENT_REASONS{{Hostname=~\"{re}\"}} >= 128"));
            match (hot.first(), braked.first()) {
                (Some((m, _)), _) => {
                    let node = m["Hostname"].as_str().unwrap_or_default().to_string();
                    answer(
                        true,
                        "straggler.thermal_single_gpu",
                        node_loc(&node, m["gpu"].as_str().and_then(|g| g.parse().ok())),
                        Some(started),
                        Action::DrainNode,
                        &[(node, "DCGM_FI_DEV_GPU_TEMP")],
                    )
                }
                (None, Some((m, _))) => {
                    let rack = m["Hostname"]
                        .as_str()
                        .and_then(|h| h.split_once("-n"))
                        .map(|x| x.0.to_string())
                        .unwrap_or_default();
                    answer(
                        true,
                        "power.psu_brake",
                        json!({"rack": rack}),
                        Some(started),
                        Action::EscalateFacilities,
                        &[(rack, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS")],
                    )
                }
                (None, None) => not_an_incident(Action::Monitor),
            }
        }
        // GpuClocksThrottled (a software power cap is routine) and anything else.
        _ => not_an_incident(Action::None),
    })
}

/// A random label, action and place, seeded per episode.
fn random(s: &mut Session<'_>, seed: u64) -> Option<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7a4d ^ (s.tools.world().index as u64).wrapping_mul(0x2545_f491));
    let fleet: Value = s.call("topology", json!({"entity": "fleet"})).and_then(|t| serde_json::from_str(&t).ok())?;
    let racks: Vec<String> = fleet["cooling_loops"]
        .as_array()?
        .iter()
        .flat_map(|l| l["racks"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    let rack = racks.choose(&mut rng)?.clone();
    let node = format!("{rack}-n{:02}", rng.random_range(0..2));
    let labels = labels();
    let label = *labels.choose(&mut rng)?;
    let actions: Vec<Action> = Action::every().collect();
    let action = *actions.choose(&mut rng)?;
    let onset = s.now() - 60 * rng.random_range(0..60);
    let loc = json!({"rack": rack, "node": node, "gpu": rng.random_range(0..8)});
    Some(answer(label != "none", label, loc, Some(onset), action, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xid_lines_parse() {
        let l = "2026-05-12T10:00:00Z r00-n01 kernel: NVRM: Xid (PCI:0000:18:00): 74, pid=1, name=python3, NVLink: fatal error detected on link 5(0x0)";
        assert_eq!(parse_xid(l), Some((1_778_580_000, "0000:18:00".into(), 74, Some(5))));
        assert_eq!(parse_xid("garbage"), None);
        let pts: Vec<(i64, f64)> = (0..20).map(|i| (i, if i >= 14 { 90.0 } else { 60.0 })).collect();
        assert_eq!(change_point(&pts, 3.0), Some(14));
    }
}
