//! An episode's telemetry, computed on demand: the series a query names are
//! generated over the whole history (one sample a scrape interval) into the
//! embedded PromQL engine's storage. NVIDIA nodes speak dcgm-exporter's
//! names, MI300X nodes AMD device-metrics-exporter's; ports node_exporter's
//! InfiniBand names; serving nodes vLLM's.

use fleetbench_promql::{Labels, Storage};

use super::world::{Fx, Target, Vendor, World, GPUS_PER_NODE, PORTS_PER_NODE, STEP_S};
use crate::telemetry::noise;

/// Per-GPU quantities, in order; each has a dcgm name and maybe an AMD one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G {
    Temp,
    MemTemp,
    Power,
    Util,
    SmClock,
    Reasons,
    ThermalViol,
    PowerViol,
    PowerLimit,
    Xid,
    Sbe,
    Dbe,
    RemapPending,
    RemapFailure,
    PcieReplay,
    PcieGen,
    PcieWidth,
    NvlCrc,
    EccMode,
}

const GPU_METRICS: [(G, &str, Option<&str>); 19] = [
    (G::Temp, "DCGM_FI_DEV_GPU_TEMP", Some("gpu_junction_temperature")),
    (G::MemTemp, "DCGM_FI_DEV_MEMORY_TEMP", Some("gpu_memory_temperature")),
    (G::Power, "DCGM_FI_DEV_POWER_USAGE", Some("gpu_package_power")),
    (G::Util, "DCGM_FI_DEV_GPU_UTIL", Some("gpu_gfx_activity")),
    (G::SmClock, "DCGM_FI_DEV_SM_CLOCK", Some("gpu_clock")),
    (G::Reasons, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", None),
    (G::ThermalViol, "DCGM_FI_DEV_THERMAL_VIOLATION", Some("gpu_violation_socket_thermal_residency_accumulated")),
    (G::PowerViol, "DCGM_FI_DEV_POWER_VIOLATION", Some("gpu_violation_ppt_residency_accumulated")),
    (G::PowerLimit, "DCGM_FI_DEV_ENFORCED_POWER_LIMIT", None),
    (G::Xid, "DCGM_FI_DEV_XID_ERRORS", None),
    (G::Sbe, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", Some("gpu_ecc_correct_total")),
    (G::Dbe, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", Some("gpu_ecc_uncorrect_total")),
    (G::RemapPending, "DCGM_FI_DEV_ROW_REMAP_PENDING", None),
    (G::RemapFailure, "DCGM_FI_DEV_ROW_REMAP_FAILURE", None),
    (G::PcieReplay, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", Some("pcie_replay_count")),
    (G::PcieGen, "DCGM_FI_DEV_PCIE_LINK_GEN", Some("pcie_speed")),
    (G::PcieWidth, "DCGM_FI_DEV_PCIE_LINK_WIDTH", None),
    (G::NvlCrc, "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", None),
    (G::EccMode, "DCGM_FI_DEV_ECC_CURRENT", None),
];

const PORT_METRICS: [&str; 4] = [
    "node_infiniband_port_transmit_wait_total",
    "node_infiniband_symbol_error_total",
    "node_infiniband_link_downed_total",
    "node_infiniband_port_errors_received_total",
];

const REPLICA_METRICS: [&str; 3] =
    ["vllm:kv_cache_usage_perc", "vllm:num_preemptions_total", "vllm:num_requests_waiting"];

/// Every metric name an episode can hold (the `up` series included).
pub fn metric_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = GPU_METRICS.iter().map(|m| m.1).collect();
    v.extend(GPU_METRICS.iter().filter_map(|m| m.2));
    v.extend(PORT_METRICS);
    v.extend(REPLICA_METRICS);
    v.push("up");
    v
}

/// The steps of the history, Unix seconds.
fn steps(w: &World) -> impl Iterator<Item = i64> {
    let (from, to) = (w.history_start, w.now);
    (0..).map(move |k| from + k * STEP_S).take_while(move |&t| t <= to)
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// How many series [`storage_for`] would build (checked before building).
pub fn count_for(w: &World, names: &[&str], keep: &dyn Fn(&str) -> bool) -> usize {
    let mut total = 0;
    for (n, node) in w.topo.nodes.iter().enumerate().filter(|(_, node)| keep(&node.name)) {
        let amd = w.topo.kind(n).vendor == Vendor::Amd;
        let gpu = GPU_METRICS
            .iter()
            .filter(|m| if amd { m.2 } else { Some(m.1) }.is_some_and(|x| names.contains(&x)))
            .count();
        let port = PORT_METRICS.iter().filter(|m| names.contains(m)).count();
        let serving = matches!(node.work, super::world::Work::Serving { .. });
        let replica = if serving { REPLICA_METRICS.iter().filter(|m| names.contains(m)).count() } else { 0 };
        total += gpu * GPUS_PER_NODE + port * PORTS_PER_NODE + replica + usize::from(names.contains(&"up"));
    }
    total
}

/// Builds a storage holding the `names` metrics of the nodes `keep` accepts.
pub fn storage_for(w: &World, names: &[&str], keep: &dyn Fn(&str) -> bool) -> Storage {
    let mut s = Storage::new();
    for n in 0..w.topo.nodes.len() {
        let node = &w.topo.nodes[n];
        if !keep(&node.name) {
            continue;
        }
        let kind = w.topo.kind(n);
        let amd = kind.vendor == Vendor::Amd;
        let wanted: Vec<(usize, &str)> = GPU_METRICS
            .iter()
            .enumerate()
            .filter_map(|(i, m)| if amd { m.2 } else { Some(m.1) }.map(|name| (i, name)))
            .filter(|(_, name)| names.contains(name))
            .collect();
        if !wanted.is_empty() {
            for g in 0..GPUS_PER_NODE {
                let labels: Labels = if amd {
                    l(&[
                        ("hostname", &node.name),
                        ("gpu_id", &g.to_string()),
                        ("card_model", kind.model),
                        ("job", "amd-device-metrics-exporter"),
                    ])
                } else {
                    l(&[
                        ("Hostname", &node.name),
                        ("gpu", &g.to_string()),
                        ("device", &format!("nvidia{g}")),
                        ("modelName", kind.model),
                        ("pci_bus_id", &format!("0000{}", w.topo.pci(n, g))),
                        ("job", "dcgm-exporter"),
                    ])
                };
                gpu_series(w, n, g, &wanted, &labels, &mut s);
            }
        }
        if names.contains(&"up") {
            let job = if amd { "amd-device-metrics-exporter" } else { "dcgm-exporter" };
            let labels = l(&[("__name__", "up"), ("Hostname", &node.name), ("job", job)]);
            for t in steps(w) {
                let down = w.active(Target::Exporter(n), t).next().is_some();
                s.push(labels.clone(), t * 1000, if down { 0.0 } else { 1.0 });
            }
        }
        for p in 0..PORTS_PER_NODE {
            for (m, name) in PORT_METRICS.iter().enumerate() {
                if names.contains(name) {
                    let dev = format!("mlx5_{p}");
                    let labels = l(&[("__name__", name), ("Hostname", &node.name), ("device", &dev), ("port", "1")]);
                    port_series(w, n, p, m, labels, &mut s);
                }
            }
        }
        if let super::world::Work::Serving { model } = node.work {
            for (m, name) in REPLICA_METRICS.iter().enumerate() {
                if names.contains(name) {
                    let labels = l(&[("__name__", name), ("Hostname", &node.name), ("model_name", model)]);
                    replica_series(w, n, m, labels, &mut s);
                }
            }
        }
    }
    s
}

fn ramp(t: i64, from: i64, ramp_s: f64) -> f64 {
    (((t - from) as f64) / ramp_s.max(1.0)).clamp(0.0, 1.0)
}

fn crossed(t: i64, at: i64) -> bool {
    at > t - STEP_S && at <= t
}

fn gpu_series(w: &World, n: usize, g: usize, wanted: &[(usize, &str)], labels: &Labels, s: &mut Storage) {
    let node = &w.topo.nodes[n];
    let kind = w.topo.kind(n);
    let amd = kind.vendor == Vendor::Amd;
    let fid = (w.index as u64) << 20 | (n * GPUS_PER_NODE + g) as u64;
    let training = matches!(node.work, super::world::Work::Training { .. });
    let dt = STEP_S as f64;
    let mut acc = [0.0f64; GPU_METRICS.len()];
    acc[G::Sbe as usize] = (fid % 5) as f64;
    acc[G::PcieReplay as usize] = (fid % 3) as f64;
    let mut frozen: Option<f64> = None;
    let labelled: Vec<Labels> = wanted
        .iter()
        .map(|(_, name)| {
            let mut l = labels.clone();
            l.push(("__name__".into(), name.to_string()));
            l
        })
        .collect();
    for t in steps(w) {
        let k = (t - w.history_start) / STEP_S;
        let nz = |ch: u64| noise(w.seed, fid, ch, k);
        let mut util = if training {
            93.0 + 2.0 * nz(1) - if k % 9 == 0 { 15.0 } else { 0.0 }
        } else {
            68.0 + 10.0 * ((t as f64) / 5400.0 + n as f64).sin() + 6.0 * nz(1)
        };
        let (mut heat, mut heat_f, mut warm, mut cap, mut brake, mut hung, mut present) =
            (0.0f64, 0.0f64, false, None::<f64>, false, false, true);
        let (mut sbe, mut replay, mut nvl, mut link, mut pending, mut failure, mut ecc_off) =
            (0.0, 0.0, 0.0, None::<(u8, u8)>, false, false, false);
        for e in w.active(Target::Gpu(n, g), t) {
            match e.fx {
                Fx::Heat { target_c, ramp_s } if target_c > heat => {
                    heat = target_c;
                    heat_f = ramp(t, e.from, ramp_s);
                }
                Fx::WarmBusy => warm = true,
                Fx::PowerCap { limit_w } => cap = Some(limit_w),
                Fx::Brake => brake = ((t - e.from) / 120) % 2 == 0,
                Fx::SbeRate { per_min } => sbe += per_min,
                Fx::RemapPending => pending = true,
                Fx::Dbe { count } if crossed(t, e.from) => acc[G::Dbe as usize] += count,
                Fx::RemapFailure => failure = true,
                Fx::OffBus => present = false,
                Fx::PcieReplay { per_min } => replay += per_min,
                Fx::PcieDown { gen, width } => link = Some((gen, width)),
                Fx::Nvlink { per_min } => nvl += per_min,
                Fx::Util { factor } => util *= factor,
                Fx::Hung => hung = true,
                Fx::XidFrozen { code } => frozen = Some(f64::from(code)),
                Fx::EccOff => ecc_off = true,
                _ => {}
            }
        }
        if w.active(Target::Exporter(n), t).next().is_some() {
            present = false;
        }
        if warm {
            util = util.max(97.0);
        }
        if hung {
            util = 0.0;
        }
        let util = util.clamp(0.0, 100.0);
        let tdp = kind.tdp_w;
        let limit = cap.unwrap_or(tdp);
        let demand = 0.11 * tdp + 0.88 * tdp * util / 100.0 + 0.015 * tdp * nz(2);
        let mut reasons = 0u32;
        let mut clock = if util < 3.0 { 345.0 } else { 1980.0 };
        let mut power = demand.min(limit - 2.0);
        if demand > limit {
            reasons |= 0x4;
            power = limit - 1.0 + 0.8 * nz(3);
            clock = (1980.0 - (demand - limit) * 1.2 * 700.0 / tdp).max(1100.0);
        }
        if brake {
            reasons |= 0x80 | 0x8;
            power = 0.2 * tdp;
            clock = 750.0;
        }
        let mut temp = 30.0 + 45.0 * power / tdp + node.temp_offset[g] + 0.6 * nz(4);
        if warm {
            temp = (temp + 8.0).min(83.0 + 0.5 * nz(5));
        }
        if heat > temp {
            temp += (heat - temp) * heat_f;
        }
        if temp > 87.0 {
            reasons |= 0x20;
            clock = clock.min((1980.0 - (temp - 87.0) * 70.0).max(900.0));
        }
        if temp > 91.0 {
            reasons |= 0x40;
        }
        if reasons & 0x60 != 0 {
            acc[G::ThermalViol as usize] += dt * 1e6;
        }
        if reasons & 0x84 != 0 {
            acc[G::PowerViol as usize] += dt * 1e6;
        }
        if !ecc_off {
            acc[G::Sbe as usize] += sbe * dt / 60.0 * (1.0 + 0.4 * nz(6));
        }
        acc[G::PcieReplay as usize] += replay * dt / 60.0 * (1.0 + 0.4 * nz(7));
        acc[G::NvlCrc as usize] += nvl * dt / 60.0 * (1.0 + 0.4 * nz(8));
        let (gen, width) = link.unwrap_or((node.pcie_max_gen, 16));
        let xid = frozen.unwrap_or_else(|| {
            w.xids
                .iter()
                .rfind(|x| x.node == n && x.gpu == g && x.t <= t && x.code < 1000)
                .map_or(0.0, |x| f64::from(x.code))
        });
        if !present {
            continue;
        }
        for ((i, _), labels) in wanted.iter().zip(&labelled) {
            let v = match GPU_METRICS[*i].0 {
                G::Temp => (temp + if amd { 8.0 } else { 0.0 }).round(),
                G::MemTemp => (temp + 6.0 + 0.8 * nz(9)).round(),
                G::Power => (power * 10.0).round() / 10.0,
                G::Util => util.round(),
                G::SmClock => clock.round(),
                G::Reasons => f64::from(reasons),
                G::PowerLimit => limit,
                G::Xid => xid,
                G::RemapPending => f64::from(u8::from(pending)),
                G::RemapFailure => f64::from(u8::from(failure)),
                G::PcieGen => {
                    if amd {
                        f64::from(1u32 << gen.min(6)) // GT/s: gen5 = 32
                    } else {
                        f64::from(gen)
                    }
                }
                G::PcieWidth => f64::from(width),
                G::EccMode => f64::from(u8::from(!ecc_off)),
                c => acc[c as usize].floor(),
            };
            s.push(labels.clone(), t * 1000, v);
        }
    }
}

fn port_series(w: &World, n: usize, p: usize, m: usize, labels: Labels, s: &mut Storage) {
    let fid = (w.index as u64) << 20 | 0x8_0000 | (n * PORTS_PER_NODE + p) as u64;
    let training = matches!(w.topo.nodes[n].work, super::world::Work::Training { .. });
    let dt = STEP_S as f64;
    let mut acc = 0.0f64;
    for t in steps(w) {
        let k = (t - w.history_start) / STEP_S;
        let nz = |ch: u64| noise(w.seed, fid, ch, k);
        let mut rate = match m {
            0 => (if training { 3.0e5 } else { 2.0e4 }) * (1.0 + 0.3 * nz(1)),
            _ => 0.0,
        };
        for e in w.active(Target::Port(n, p), t) {
            match (e.fx, m) {
                (Fx::IbCongestion { mult }, 0) => rate *= 1.0 + (mult - 1.0) * ramp(t, e.from, 120.0),
                (Fx::Pause { per_s }, 0) => rate *= 1.0 + per_s / 200.0,
                (Fx::IbPhy { per_min }, 1) => rate += per_min / 60.0 * (1.0 + 0.5 * nz(2)),
                (Fx::IbPhy { per_min }, 3) => rate += per_min / 960.0,
                (Fx::IbPhy { .. }, 2) if crossed(t, e.from + 60) || crossed(t, e.from + 900) => acc += 1.0,
                _ => {}
            }
        }
        acc += rate * dt;
        s.push(labels.clone(), t * 1000, acc.floor());
    }
}

fn replica_series(w: &World, n: usize, m: usize, labels: Labels, s: &mut Storage) {
    let fid = (w.index as u64) << 20 | 0x9_0000 | n as u64;
    let dt = STEP_S as f64;
    let mut preempt = 0.0f64;
    for t in steps(w) {
        let k = (t - w.history_start) / STEP_S;
        let nz = |ch: u64| noise(w.seed, fid, ch, k);
        let mut kv = (0.5 + 0.15 * ((t as f64) / 5400.0 + n as f64).sin() + 0.05 * nz(1)).clamp(0.05, 0.9);
        let mut waiting = (1.0 + 1.5 * nz(2)).max(0.0);
        let mut rate = 0.0;
        for e in w.active(Target::Replica(n), t) {
            if e.fx == Fx::KvPressure {
                let f = ramp(t, e.from, 240.0);
                kv += (0.995 - kv) * f;
                rate += 2.5 * f;
                waiting += 60.0 * f * (1.0 + 0.2 * nz(3));
            }
        }
        preempt += rate * dt;
        let v = match m {
            0 => (kv * 1000.0).round() / 1000.0,
            1 => preempt.floor(),
            _ => waiting.round(),
        };
        s.push(labels.clone(), t * 1000, v);
    }
}
