//! The operator prompt: one compact, information-dense text per episode
//! (topology, per-entity window summary with metric names, kernel log, the
//! closed label and action lists, the schema), identical for every backend.

use std::fmt::Write;

use crate::diagnosis::json_schema;
use crate::scenario::{Action, LABELS};
use crate::telemetry::{gi, MetricKind};
use crate::time::format_rfc3339;
use crate::window::{gaps, metric_kind, stats, Entity, EpisodeWindow, SeriesStats};

/// Error counters listed whenever they increase in the window.
const ERROR_COUNTERS: [&str; 14] = [
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_THERMAL_VIOLATION",
    "DCGM_FI_DEV_POWER_VIOLATION",
    "node_infiniband_port_errors_received_total",
    "node_infiniband_link_downed_total",
    "node_infiniband_link_error_recovery_total",
    "node_infiniband_symbol_error_total",
];

fn hms(t: i64) -> String {
    format_rfc3339(t)[11..19].to_string()
}

fn num(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.3e}", v)
    } else if v == v.trunc() {
        format!("{}", v as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn gauge_line(metric: &str, s: &SeriesStats) -> String {
    let mut line = format!("{metric} {}->{} (min {} max {})", num(s.first), num(s.last), num(s.min), num(s.max));
    if let Some(t) = s.change_at {
        let _ = write!(line, " changed@{}", hms(t));
    }
    line
}

fn counter_line(metric: &str, s: &SeriesStats) -> String {
    let mut line =
        format!("{metric} +{} ({}/min early, {}/min late)", num(s.delta), num(s.rate_early), num(s.rate_late));
    if let Some(t) = s.change_at {
        let _ = write!(line, " rising@{}", hms(t));
    }
    line
}

/// The notable observations of one entity, one short string each.
pub fn notable(w: &EpisodeWindow, entity: &Entity) -> Vec<String> {
    let mut out = Vec::new();
    let Some(by_metric) = w.series.get(entity) else {
        return out;
    };
    let st = |m: &str| by_metric.get(m).and_then(|p| stats(p, metric_kind(m)));
    for (metric, points) in by_metric {
        let kind = metric_kind(metric);
        let Some(s) = stats(points, kind) else {
            continue;
        };
        let m = metric.as_str();
        let show = match m {
            _ if ERROR_COUNTERS.contains(&m) => s.delta >= 1.0,
            "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" => s.max > 0.0,
            "DCGM_FI_DEV_XID_ERRORS" | "DCGM_FI_DEV_ROW_REMAP_PENDING" | "DCGM_FI_DEV_ROW_REMAP_FAILURE" => s.max > 0.0,
            "DCGM_FI_DEV_ENFORCED_POWER_LIMIT" => s.min < 700.0,
            "DCGM_FI_DEV_PCIE_LINK_WIDTH" => s.min < 16.0,
            "DCGM_FI_DEV_PCIE_LINK_GEN" => w.pcie_max_gen.get(entity.node()).is_some_and(|&g| s.min < g as f64),
            "DCGM_FI_DEV_GPU_TEMP" => s.max >= 80.0 || (s.change_at.is_some() && s.max - s.first >= 6.0),
            "DCGM_FI_DEV_SM_CLOCK" => s.min < 1900.0 && s.max > 400.0,
            "DCGM_FI_DEV_GPU_UTIL" => s.change_at.is_some() && (s.max - s.min) >= 25.0,
            "DCGM_FI_DEV_POWER_USAGE" => s.min < 200.0 && s.max > 300.0,
            "node_infiniband_port_transmit_wait_total" | "node_ethtool_rx_prio3_pause" => {
                s.rate_late > 2.5 * s.rate_early.max(1.0) || (m == "node_ethtool_rx_prio3_pause" && s.delta > 0.0)
            }
            "vllm:kv_cache_usage_perc" => s.max >= 0.93,
            "vllm:num_preemptions_total" => s.delta >= 1.0,
            "vllm:num_requests_waiting" => s.max >= 10.0,
            _ => false,
        };
        if show {
            out.push(match kind {
                MetricKind::Counter => counter_line(m, &s),
                MetricKind::Gauge if m == "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" => {
                    let mut vals: Vec<u32> = points.iter().map(|p| p.1 as u32).filter(|&v| v != 0).collect();
                    vals.sort_unstable();
                    vals.dedup();
                    let first = points.iter().find(|p| p.1 != 0.0).map(|p| p.0).unwrap_or(s.t_first);
                    let on = points.iter().filter(|p| p.1 != 0.0).count();
                    let vals: Vec<String> = vals.iter().map(|v| format!("0x{v:x}")).collect();
                    format!("{m} {} in {on}/{} samples from {}", vals.join("|"), s.samples, hms(first))
                }
                MetricKind::Gauge => gauge_line(m, &s),
            });
        }
    }
    // Mean latency from vLLM histogram sums and counts, early vs late.
    if let (Some(sum), Some(count)) =
        (st("vllm:time_to_first_token_seconds_sum"), st("vllm:time_to_first_token_seconds_count"))
    {
        let (early, late) = (sum.rate_early / count.rate_early.max(1e-9), sum.rate_late / count.rate_late.max(1e-9));
        if late > 2.0 * early {
            out.push(format!("vllm:time_to_first_token_seconds mean {early:.2}s early -> {late:.2}s late"));
        }
    }
    if let (Some(sum), Some(count)) =
        (st("vllm:inter_token_latency_seconds_sum"), st("vllm:inter_token_latency_seconds_count"))
    {
        let (early, late) = (sum.rate_early / count.rate_early.max(1e-9), sum.rate_late / count.rate_late.max(1e-9));
        if late > 1.3 * early || early > 0.033 {
            out.push(format!(
                "vllm:inter_token_latency_seconds mean {:.1}ms early -> {:.1}ms late",
                early * 1e3,
                late * 1e3
            ));
        }
    }
    if let Entity::Gpu { .. } = entity {
        if let Some(p) = by_metric.get("DCGM_FI_DEV_GPU_TEMP") {
            for (a, b) in gaps(p, w.start, w.end, w.step_s) {
                out.push(format!("series ABSENT {}..{}", hms(a), hms(b)));
            }
        }
    }
    out
}

/// Per-node context: ranges of temperature, power, utilization over its GPUs.
fn node_line(w: &EpisodeWindow, node: &str) -> Option<String> {
    let mut temp = (f64::INFINITY, f64::NEG_INFINITY);
    let mut power = temp;
    let mut util = temp;
    let mut fb = (0.0, 0usize);
    let mut present = 0;
    for gpu in 0..8u32 {
        let e = Entity::Gpu { node: node.to_string(), gpu };
        let Some(m) = w.series.get(&e) else { continue };
        present += 1;
        for (key, acc) in [
            ("DCGM_FI_DEV_GPU_TEMP", &mut temp),
            ("DCGM_FI_DEV_POWER_USAGE", &mut power),
            ("DCGM_FI_DEV_GPU_UTIL", &mut util),
        ] {
            if let Some(s) = m.get(key).and_then(|p| stats(p, MetricKind::Gauge)) {
                acc.0 = acc.0.min(s.min);
                acc.1 = acc.1.max(s.max);
            }
        }
        if let (Some(u), Some(f)) =
            (m.get("DCGM_FI_DEV_FB_USED").and_then(|p| p.last()), m.get("DCGM_FI_DEV_FB_FREE").and_then(|p| p.last()))
        {
            fb.0 += u.1 / (u.1 + f.1).max(1.0);
            fb.1 += 1;
        }
    }
    let _ = gi::TEMP;
    (present > 0).then(|| {
        format!(
            "{node} [{}] rack={} gpus_reporting={present}/8 temp {:.0}-{:.0}C power {:.0}-{:.0}W util {:.0}-{:.0}% fb_used {:.0}%",
            w.profiles.get(node).map(String::as_str).unwrap_or("?"),
            w.racks.get(node).map(String::as_str).unwrap_or("?"),
            temp.0,
            temp.1,
            power.0,
            power.1,
            util.0,
            util.1,
            100.0 * fb.0 / fb.1.max(1) as f64
        )
    })
}

/// Renders the operator prompt for a window.
pub fn render(w: &EpisodeWindow) -> String {
    let mut p = String::with_capacity(8 * 1024);
    p.push_str("You are the on-call operator of a GPU fleet. Diagnose the telemetry window below.\n");
    let _ = writeln!(
        p,
        "Window: {} to {} (samples every {} s; times below are UTC HH:MM:SS on {}).",
        format_rfc3339(w.start),
        format_rfc3339(w.end),
        w.step_s,
        &format_rfc3339(w.start)[..10]
    );
    p.push_str("\n## Topology\n");
    p.push_str(&w.topology);
    p.push_str("\n## Nodes (window ranges over the node's GPUs)\n");
    for node in w.racks.keys() {
        if let Some(line) = node_line(w, node) {
            p.push_str(&line);
            p.push('\n');
        } else {
            let _ = writeln!(p, "{node} NO GPU SERIES IN WINDOW");
        }
    }
    p.push_str("\n## Notable series (entities not listed looked normal)\n");
    let mut any = false;
    for entity in w.series.keys() {
        let notes = notable(w, entity);
        if notes.is_empty() {
            continue;
        }
        any = true;
        let name = match entity {
            Entity::Gpu { node, gpu } => format!("{node} gpu{gpu}"),
            Entity::Port { node, device } => format!("{node} {device}"),
            Entity::Replica { node } => format!("{node} vllm"),
        };
        let _ = writeln!(p, "{name}: {}", notes.join("; "));
    }
    // GPUs that vanished completely.
    for node in w.racks.keys() {
        for gpu in 0..8u32 {
            if !w.series.contains_key(&Entity::Gpu { node: node.clone(), gpu }) {
                any = true;
                let _ = writeln!(p, "{node} gpu{gpu}: no series at all in the window");
            }
        }
    }
    if !any {
        p.push_str("(none)\n");
    }
    p.push_str("\n## Kernel log (NVRM lines in the window)\n");
    if w.kernel_log.is_empty() {
        p.push_str("(empty)\n");
    }
    for line in &w.kernel_log {
        p.push_str(line);
        p.push('\n');
    }
    p.push_str("\n## Answer\n");
    p.push_str("Clock event reason bits: 0x4 software power cap, 0x8 hardware slowdown, 0x20 software thermal, 0x40 hardware thermal, 0x80 hardware power brake. DCGM_FI_DEV_XID_ERRORS holds the LAST Xid seen, not a count.\n");
    let _ = writeln!(p, "root_cause must be one of: {}", LABELS.join(", "));
    let actions: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
    let _ = writeln!(p, "action must be one of: {}", actions.join(", "));
    p.push_str("location: {\"rack\",\"node\",\"gpu\" (0-7),\"link\" (e.g. nvlink5 or mlx5_1)}, as specific as the fault (a rack-wide fault names only the rack); null when nothing is wrong. onset: RFC 3339 UTC time the fault began, or null.\n");
    p.push_str("If nothing is wrong answer detected=false, root_cause=\"none\", action=\"NONE\".\n");
    let _ =
        writeln!(p, "Reply with ONE JSON object valid against this JSON Schema, nothing else:\n{}", prompt_schema());
    p
}

/// The published schema with the two long enums replaced by pointers to
/// the lists printed just above (same constraints, fewer tokens).
pub fn prompt_schema() -> serde_json::Value {
    let mut schema = json_schema();
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.insert(
            "root_cause".into(),
            serde_json::json!({"type": "string", "description": "one label from the root_cause list above"}),
        );
        props.insert(
            "action".into(),
            serde_json::json!({"type": "string", "description": "one action from the action list above"}),
        );
    }
    schema.as_object_mut().map(|o| o.remove("$id"));
    schema
}

/// Rough token count of a prompt (about 4 characters per token), for sizing.
pub fn approx_tokens(prompt: &str) -> usize {
    prompt.len().div_ceil(4)
}

/// Episode `index` of the schedule of a `gpus`-GPU fleet seeded `seed`,
/// with its operator prompt (from the generated window).
pub fn episode_prompt(gpus: usize, seed: u64, index: usize) -> Result<(crate::Episode, String), crate::TopologyError> {
    let fleet = crate::Fleet::build(gpus, seed)?;
    let mut eps = crate::plan_schedule(&fleet, index + 1, seed);
    let ep = eps.swap_remove(index);
    let p = render(&crate::generated_window(&fleet, &ep));
    Ok((ep, p))
}
