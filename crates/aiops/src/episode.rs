//! Episodes: one 30-minute slot of the fleet timeline with a scenario
//! injected (or none), its effects on entities, its Xid events, and the
//! ground truth a perfect operator would answer.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::diagnosis::{Diagnosis, Location};
use crate::scenario::Scenario;
use crate::time::TIMELINE_EPOCH;
use crate::topology::{Fleet, GpuRef, PortRef, GPUS_PER_NODE, IB_PORTS_PER_NODE};

/// Length of one episode slot, seconds.
pub const SLOT_S: i64 = 1800;
/// Telemetry interval, seconds.
pub const STEP_S: i64 = 15;

/// What an effect acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Target {
    Gpu(GpuRef),
    Port(PortRef),
    /// The vLLM replica of a serving node.
    Replica(usize),
}

/// What an effect does to its target while active.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum EffectKind {
    /// Temperature rises toward `target_c` over `ramp_s` (throttling
    /// follows from the temperature; GPUs already warmer are unaffected).
    Heat { target_c: f64, ramp_s: f64 },
    /// Busy and warm, but under the throttle point (decoy).
    WarmBusy,
    /// Enforced power limit lowered to `limit_w`.
    PowerCap { limit_w: f64 },
    /// Hardware power brake, one minute on, one minute off.
    PowerBrake,
    /// Correctable ECC errors at a rate ramping to `peak_per_min`.
    SbeRamp { peak_per_min: f64 },
    /// A row is marked for remapping; remap pending = 1.
    RemapPending,
    /// `count` double-bit errors at the start.
    Dbe { count: f64 },
    /// Remap failed: uncorrectable remapped row, remap failure = 1.
    RemapFailure,
    /// The GPU fell off the bus: its series vanish.
    OffBus,
    /// PCIe replays at `per_min`.
    PcieReplay { per_min: f64 },
    /// PCIe link trained down.
    PcieDown { gen: u8, width: u8 },
    /// NVLink CRC/replay/recovery errors at `per_min` CRC flits.
    Nvlink { per_min: f64 },
    /// Utilization scaled by `factor` (idle peers, stragglers).
    UtilDrop { factor: f64 },
    /// GPU hung (GSP timeout): idle, power at floor.
    Hung,
    /// Monitoring-plane failure: the exporter stops answering (decoy).
    ExporterGap,
    /// Fabric congestion: transmit wait up `wait_mult` times, PFC pauses.
    IbCongestion { wait_mult: f64, pause_per_s: f64 },
    /// Bad cable/transceiver: symbol errors, recoveries, link downs.
    IbPhy { symbol_per_min: f64 },
    /// PFC pauses spreading to a healthy port (decoy).
    PauseSpread { pause_per_s: f64 },
    /// vLLM KV cache pinned near full, preemptions, queueing.
    KvPressure,
    /// Inter-token latency up on a replica (decoy).
    ItlUp,
}

/// One effect on one entity over `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Effect {
    pub target: Target,
    pub kind: EffectKind,
    pub from: i64,
    pub to: i64,
}

/// One Xid event (kernel log line and last-Xid gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct XidEvent {
    pub t: i64,
    pub gpu: GpuRef,
    pub code: u32,
    /// NVLink link number for Xid 74.
    pub link: Option<u8>,
}

/// One episode.
#[derive(Debug, Clone, Serialize)]
pub struct Episode {
    pub id: String,
    pub index: usize,
    pub scenario: Scenario,
    /// Window `[start, end)`, Unix seconds.
    pub start: i64,
    pub end: i64,
    pub effects: Vec<Effect>,
    pub xids: Vec<XidEvent>,
    pub truth: Diagnosis,
}

impl Episode {
    /// The `episodes.jsonl` line: `episode_id`, `scenario`, `label`, the window
    /// and `truth` in the diagnosis schema.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "episode_id": self.id,
            "scenario": self.scenario.id(),
            "label": self.scenario.table_key(),
            "difficulty": difficulty_of(&self.truth),
            "start": crate::time::format_rfc3339(self.start),
            "end": crate::time::format_rfc3339(self.end),
            "truth": self.truth.to_json(),
        })
    }

    /// Effects on `target` active at `t`.
    pub fn active_on(&self, target: Target, t: i64) -> impl Iterator<Item = &Effect> + '_ {
        self.effects.iter().filter(move |e| e.target == target && e.from <= t && t < e.to)
    }
}

/// Difficulty of an episode from its truth: `easy` without decoys,
/// `medium` with one, `hard` with two or more.
pub fn difficulty_of(truth: &Diagnosis) -> &'static str {
    match truth.decoys.len() {
        0 => "easy",
        1 => "medium",
        _ => "hard",
    }
}

/// The scenarios of a stream, drawn by weight.
pub fn draw_scenario(rng: &mut ChaCha8Rng) -> Scenario {
    draw_by_weight(rng, &Scenario::ALL, |s| s.weight()).unwrap_or(Scenario::Healthy)
}

/// One of `items`, drawn with probability proportional to `weight` (one
/// draw from `rng`); `None` when every weight is zero.
pub(crate) fn draw_by_weight<T: Copy>(rng: &mut ChaCha8Rng, items: &[T], weight: impl Fn(&T) -> u32) -> Option<T> {
    let total: u32 = items.iter().map(&weight).sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    for item in items {
        let w = weight(item);
        if x < w {
            return Some(*item);
        }
        x -= w;
    }
    None
}

/// A schedule of episodes, one per slot, from `seed`.
pub fn plan_schedule(fleet: &Fleet, episodes: usize, seed: u64) -> Vec<Episode> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xe915_0de5);
    (0..episodes)
        .map(|i| {
            let s = draw_scenario(&mut rng);
            plan_episode(fleet, i, s, rng.random())
        })
        .collect()
}

fn gpu_location(fleet: &Fleet, g: GpuRef) -> Location {
    let node = &fleet.nodes[g.node];
    Location {
        rack: Some(fleet.racks[node.rack].name.clone()),
        node: Some(node.name.clone()),
        gpu: Some(g.gpu as u32),
        link: None,
    }
}

fn node_location(fleet: &Fleet, n: usize) -> Location {
    Location { gpu: None, ..gpu_location(fleet, GpuRef { node: n, gpu: 0 }) }
}

fn rack_location(fleet: &Fleet, r: usize) -> Location {
    Location { rack: Some(fleet.racks[r].name.clone()), ..Location::default() }
}

struct Planner<'a> {
    fleet: &'a Fleet,
    rng: ChaCha8Rng,
    start: i64,
    end: i64,
    effects: Vec<Effect>,
    xids: Vec<XidEvent>,
    decoys: Vec<String>,
    serving: Vec<bool>,
}

impl Planner<'_> {
    fn gpu(&mut self) -> GpuRef {
        GpuRef { node: self.rng.random_range(0..self.fleet.nodes.len()), gpu: self.rng.random_range(0..GPUS_PER_NODE) }
    }
    fn other_gpu(&mut self, not_node: usize) -> GpuRef {
        loop {
            let g = self.gpu();
            if g.node != not_node {
                return g;
            }
        }
    }
    fn node_where(&mut self, pred: impl Fn(usize) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.fleet.nodes.len()).filter(|&n| pred(n)).collect();
        candidates.choose(&mut self.rng).copied()
    }
    fn add(&mut self, target: Target, kind: EffectKind, from: i64) {
        let to = self.end;
        self.effects.push(Effect { target, kind, from, to });
    }
    fn add_until(&mut self, target: Target, kind: EffectKind, from: i64, to: i64) {
        self.effects.push(Effect { target, kind, from, to });
    }
    fn node_gpus(n: usize) -> impl Iterator<Item = GpuRef> {
        (0..GPUS_PER_NODE).map(move |gpu| GpuRef { node: n, gpu })
    }
    fn xid(&mut self, t: i64, gpu: GpuRef, code: u32) {
        self.xids.push(XidEvent { t, gpu, code, link: None });
    }
    fn name(&self, g: GpuRef) -> String {
        format!("{} gpu{}", self.fleet.nodes[g.node].name, g.gpu)
    }

    /// One decoy from the pool of harmless-looking signals.
    fn decoy(&mut self, not_node: usize) {
        let start = self.start;
        let serving = self.serving.clone();
        match self.rng.random_range(0..7) {
            0 => {
                let n = self.other_gpu(not_node).node;
                for g in Self::node_gpus(n) {
                    self.add(Target::Gpu(g), EffectKind::WarmBusy, start);
                }
                self.decoys.push(format!("{} runs warm and busy without throttling", self.fleet.nodes[n].name));
            }
            1 => {
                let g = self.other_gpu(not_node);
                let from = start + self.rng.random_range(60..1200);
                self.add_until(Target::Gpu(g), EffectKind::PowerCap { limit_w: 640.0 }, from, from + 180);
                self.decoys.push(format!("{}: brief software power cap (0x4) is routine", self.name(g)));
            }
            2 => {
                let g = self.other_gpu(not_node);
                self.add(Target::Gpu(g), EffectKind::SbeRamp { peak_per_min: 0.4 }, start);
                self.decoys.push(format!("{}: a trickle of correctable ECC errors is normal", self.name(g)));
            }
            3 => {
                let g = self.other_gpu(not_node);
                let code = *[13u32, 31, 43, 45].choose(&mut self.rng).unwrap_or(&13);
                let t = start - self.rng.random_range(3600..86_400);
                self.xid(t, g, code);
                self.decoys.push(format!(
                    "{}: DCGM_FI_DEV_XID_ERRORS={code} is stale (no kernel log in the window)",
                    self.name(g)
                ));
            }
            4 => {
                let n = self.other_gpu(not_node).node;
                let from = start + self.rng.random_range(120..1200);
                let to = from + self.rng.random_range(240..480);
                for g in Self::node_gpus(n) {
                    self.add_until(Target::Gpu(g), EffectKind::ExporterGap, from, to);
                }
                self.decoys.push(format!(
                    "{}: exporter unreachable for a while (monitoring plane, not the GPUs)",
                    self.fleet.nodes[n].name
                ));
            }
            5 => match self.node_where(|n| n != not_node && serving[n]) {
                Some(n) => {
                    self.add(Target::Replica(n), EffectKind::ItlUp, start + 300);
                    self.decoys
                        .push(format!("{}: inter-token latency up a little, KV cache fine", self.fleet.nodes[n].name));
                }
                None => self.decoys.push("vLLM pre-allocates GPU memory: FB_USED near full is normal".into()),
            },
            _ => {
                let n = self.other_gpu(not_node).node;
                let p = PortRef { node: n, port: self.rng.random_range(0..IB_PORTS_PER_NODE) };
                self.add(Target::Port(p), EffectKind::PauseSpread { pause_per_s: 40.0 }, start + 200);
                self.decoys.push(format!("{} {}: some PFC pauses, no errors", self.fleet.nodes[n].name, p.device()));
            }
        }
    }
}

/// Plans episode `index` of scenario `scenario` in its slot of the timeline.
pub fn plan_episode(fleet: &Fleet, index: usize, scenario: Scenario, seed: u64) -> Episode {
    let serving: Vec<bool> = fleet.nodes.iter().map(|n| n.profile.is_serving()).collect();
    let start = TIMELINE_EPOCH + index as i64 * SLOT_S;
    let end = start + SLOT_S;
    let mut p = Planner {
        fleet,
        rng: ChaCha8Rng::seed_from_u64(seed),
        start,
        end,
        effects: Vec::new(),
        xids: Vec::new(),
        decoys: Vec::new(),
        serving: serving.clone(),
    };
    let onset = start + 600 + 5 * p.rng.random_range(0..=96);
    let mut location = Vec::new();
    let mut evidence = Vec::new();
    let mut target_node = usize::MAX;
    match scenario {
        Scenario::Healthy => {}
        Scenario::DecoyOnly => {
            let k = p.rng.random_range(1..=3);
            for _ in 0..k {
                p.decoy(usize::MAX);
            }
        }
        Scenario::S1CoolingLoop => {
            let r = p.rng.random_range(0..fleet.racks.len());
            let target = p.rng.random_range(90.0..95.0);
            let ramp = p.rng.random_range(420.0..600.0);
            for &n in &fleet.racks[r].nodes.clone() {
                for g in Planner::node_gpus(n) {
                    p.add(Target::Gpu(g), EffectKind::Heat { target_c: target, ramp_s: ramp }, onset);
                }
            }
            let lp = &fleet.loops[fleet.racks[r].cooling_loop];
            if let Some(&other) = lp.racks.iter().find(|&&o| o != r) {
                for &n in &fleet.racks[other].nodes.clone() {
                    for g in Planner::node_gpus(n) {
                        p.add(Target::Gpu(g), EffectKind::Heat { target_c: 74.0, ramp_s: ramp }, onset);
                    }
                }
                p.decoys.push(format!("{} shares the loop and warms a little", fleet.racks[other].name));
            }
            target_node = fleet.racks[r].nodes[0];
            p.decoy(target_node);
            location.push(rack_location(fleet, r));
            evidence.push(format!("DCGM_FI_DEV_GPU_TEMP rises on every GPU of {}", fleet.racks[r].name));
            evidence.push("DCGM_FI_DEV_CLOCKS_EVENT_REASONS thermal bits 0x20/0x40".into());
        }
        Scenario::S2ThermalStraggler => {
            let g = p.gpu();
            let target = p.rng.random_range(91.0..97.0);
            let ramp = p.rng.random_range(300.0..600.0);
            p.add(Target::Gpu(g), EffectKind::Heat { target_c: target, ramp_s: ramp }, onset);
            if fleet.nodes[g.node].profile == crate::topology::Profile::Training {
                for peer in Planner::node_gpus(g.node).filter(|&x| x != g) {
                    p.add(Target::Gpu(peer), EffectKind::UtilDrop { factor: 0.6 }, onset + (ramp / 2.0) as i64);
                }
                p.decoys.push("peers idle in all-reduce waiting for the straggler".into());
            }
            target_node = g.node;
            p.decoy(target_node);
            location.push(gpu_location(fleet, g));
            evidence.push(format!("DCGM_FI_DEV_GPU_TEMP climbs on {} only", p.name(g)));
        }
        Scenario::S3PowerCap => {
            let n = p.node_where(|n| !serving[n]).unwrap_or_else(|| p.rng.random_range(0..fleet.nodes.len()));
            for g in Planner::node_gpus(n) {
                p.add(Target::Gpu(g), EffectKind::PowerCap { limit_w: 450.0 }, onset);
            }
            target_node = n;
            p.decoy(n);
            location.push(node_location(fleet, n));
            evidence.push(
                "DCGM_FI_DEV_ENFORCED_POWER_LIMIT 700 -> 450 W, power pinned, DCGM_FI_DEV_CLOCKS_EVENT_REASONS 0x4"
                    .into(),
            );
        }
        Scenario::S3PowerBrake => {
            let r = p.rng.random_range(0..fleet.racks.len());
            for &n in &fleet.racks[r].nodes.clone() {
                for g in Planner::node_gpus(n) {
                    p.add(Target::Gpu(g), EffectKind::PowerBrake, onset);
                }
            }
            target_node = fleet.racks[r].nodes[0];
            p.decoy(target_node);
            location.push(rack_location(fleet, r));
            evidence.push("DCGM_FI_DEV_CLOCKS_EVENT_REASONS 0x80 (hardware power brake) across the rack".into());
        }
        Scenario::S4RowRemapPending => {
            let g = p.gpu();
            let peak_per_min = p.rng.random_range(20.0..60.0);
            p.add(Target::Gpu(g), EffectKind::SbeRamp { peak_per_min }, onset);
            let t_mark = onset + p.rng.random_range(10..40);
            p.add(Target::Gpu(g), EffectKind::RemapPending, t_mark);
            let code = if p.rng.random_range(0..4) == 0 { 94 } else { 63 };
            p.xid(t_mark, g, code);
            target_node = g.node;
            p.decoy(target_node);
            location.push(gpu_location(fleet, g));
            evidence.push(format!("DCGM_FI_DEV_ROW_REMAP_PENDING 0 -> 1 on {}; Xid {code}", p.name(g)));
        }
        Scenario::S5HbmUncorrectable => {
            let g = p.gpu();
            p.add(Target::Gpu(g), EffectKind::Dbe { count: 2.0 }, onset);
            let code = if p.rng.random_range(0..3) == 0 { 95 } else { 48 };
            p.xid(onset, g, code);
            let t_fail = onset + p.rng.random_range(120..300);
            p.add(Target::Gpu(g), EffectKind::RemapFailure, t_fail);
            p.xid(t_fail, g, 64);
            for peer in Planner::node_gpus(g.node).filter(|&x| x != g).take(2) {
                let t = onset + p.rng.random_range(20..60);
                p.xid(t, peer, 45);
            }
            p.decoys.push("Xid 45 on peers is sympathetic cleanup".into());
            target_node = g.node;
            location.push(gpu_location(fleet, g));
            evidence.push(format!("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL +2 and Xid {code} on {}", p.name(g)));
        }
        Scenario::S6GpuOffBus => {
            let g = p.gpu();
            p.add_until(Target::Gpu(g), EffectKind::PcieReplay { per_min: 30.0 }, onset - 360, onset);
            p.add(Target::Gpu(g), EffectKind::OffBus, onset);
            p.xid(onset, g, 79);
            let peers = p.rng.random_range(1..=3);
            for peer in Planner::node_gpus(g.node).filter(|&x| x != g).take(peers) {
                let t = onset + p.rng.random_range(5..30);
                let link = p.rng.random_range(0..18u8);
                p.xids.push(XidEvent { t, gpu: peer, code: 74, link: Some(link) });
                p.add_until(Target::Gpu(peer), EffectKind::Nvlink { per_min: 8.0 }, t, t + 60);
            }
            p.decoys.push("Xid 74 on peers: their NVLink to the lost GPU went down".into());
            target_node = g.node;
            p.decoy(target_node);
            location.push(gpu_location(fleet, g));
            evidence.push(format!("Xid 79 (fallen off the bus) on {}; its series go absent", p.name(g)));
        }
        Scenario::S7NvlinkDegraded => {
            let g = p.gpu();
            let link = p.rng.random_range(0..18u8);
            let per_min = p.rng.random_range(60.0..200.0);
            p.add(Target::Gpu(g), EffectKind::Nvlink { per_min }, onset);
            p.xids.push(XidEvent { t: onset + p.rng.random_range(0..30), gpu: g, code: 74, link: Some(link) });
            let remote = GpuRef { node: g.node, gpu: (g.gpu + 1 + p.rng.random_range(0..7)) % GPUS_PER_NODE };
            p.add(Target::Gpu(remote), EffectKind::Nvlink { per_min: 15.0 }, onset + 30);
            p.decoys.push(format!("{}: remote end of the link shows fewer errors", p.name(remote)));
            target_node = g.node;
            let mut loc = gpu_location(fleet, g);
            loc.link = Some(format!("nvlink{link}"));
            location.push(loc);
            evidence.push(format!(
                "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL climbing on {}; Xid 74 link {link}",
                p.name(g)
            ));
        }
        Scenario::S8PcieDegraded => {
            let g = p.gpu();
            let max = fleet.nodes[g.node].pcie_max_gen;
            let gen = max - p.rng.random_range(1..=2);
            let width = if p.rng.random_range(0..2) == 0 { 8 } else { 16 };
            let width = if gen == max { 8 } else { width };
            p.add(Target::Gpu(g), EffectKind::PcieDown { gen, width }, onset);
            p.add(Target::Gpu(g), EffectKind::PcieReplay { per_min: 6.0 }, onset);
            target_node = g.node;
            p.decoy(target_node);
            location.push(gpu_location(fleet, g));
            evidence.push(format!("DCGM_FI_DEV_PCIE_LINK_GEN {max} -> {gen}, width x{width} on {}", p.name(g)));
        }
        Scenario::S9aFabricCongestion => {
            let r = p.rng.random_range(0..fleet.racks.len());
            for &n in &fleet.racks[r].nodes.clone() {
                for port in 0..IB_PORTS_PER_NODE {
                    let wait_mult = p.rng.random_range(6.0..12.0);
                    p.add(
                        Target::Port(PortRef { node: n, port }),
                        EffectKind::IbCongestion { wait_mult, pause_per_s: 900.0 },
                        onset,
                    );
                }
                if !fleet.nodes[n].profile.is_serving() {
                    for g in Planner::node_gpus(n) {
                        p.add(Target::Gpu(g), EffectKind::UtilDrop { factor: 0.75 }, onset + 60);
                    }
                }
            }
            p.decoys.push("training stragglers caused by congestion, not by a GPU".into());
            target_node = fleet.racks[r].nodes[0];
            location.push(rack_location(fleet, r));
            evidence.push(format!(
                "node_infiniband_port_transmit_wait_total slope and rx_prio3_pause up on all ports of {}",
                fleet.racks[r].name
            ));
        }
        Scenario::S9bFabricPhy => {
            let n = p.rng.random_range(0..fleet.nodes.len());
            let port = PortRef { node: n, port: p.rng.random_range(0..IB_PORTS_PER_NODE) };
            let symbol_per_min = p.rng.random_range(40.0..150.0);
            p.add(Target::Port(port), EffectKind::IbPhy { symbol_per_min }, onset);
            let rack = fleet.nodes[n].rack;
            for &m in &fleet.racks[rack].nodes.clone() {
                if m != n {
                    p.add(
                        Target::Port(PortRef { node: m, port: 0 }),
                        EffectKind::PauseSpread { pause_per_s: 120.0 },
                        onset + 90,
                    );
                }
            }
            p.decoys.push("pause storm spreads to other ports of the rack".into());
            target_node = n;
            let mut loc = node_location(fleet, n);
            loc.link = Some(port.device());
            location.push(loc);
            evidence.push(format!(
                "node_infiniband_symbol_error_total and link_downed on {} {}",
                fleet.nodes[n].name,
                port.device()
            ));
        }
        Scenario::S10KvCachePressure => {
            let n = p.node_where(|n| serving[n]).unwrap_or(0);
            p.add(Target::Replica(n), EffectKind::KvPressure, onset);
            if let Some(m) = p.node_where(|m| m != n && serving[m]) {
                p.add(Target::Replica(m), EffectKind::ItlUp, start + 120);
                p.decoys.push(format!("{}: ITL up a little, KV cache fine", fleet.nodes[m].name));
            }
            p.decoys.push("FB_USED near full is vLLM pre-allocation".into());
            target_node = n;
            location.push(node_location(fleet, n));
            evidence.push("vllm:kv_cache_usage_perc pinned near 1.0, vllm:num_preemptions_total spiking".into());
        }
        Scenario::S11CudaFault => {
            let n = p.rng.random_range(0..fleet.nodes.len());
            let code = if p.rng.random_range(0..2) == 0 { 13 } else { 31 };
            let k = p.rng.random_range(2..=4);
            let mut gpus: Vec<usize> = (0..GPUS_PER_NODE).collect();
            gpus.sort_by_key(|_| p.rng.random::<u32>());
            for (i, &gi) in gpus.iter().take(k).enumerate() {
                let t = onset + if i == 0 { 0 } else { p.rng.random_range(5..90) };
                p.xid(t, GpuRef { node: n, gpu: gi }, code);
            }
            target_node = n;
            p.decoy(n);
            location.push(node_location(fleet, n));
            evidence.push(format!("Xid {code} on {k} different GPUs of {} for one job", fleet.nodes[n].name));
        }
        Scenario::S12GspTimeout => {
            let g = p.gpu();
            p.xid(onset, g, 119);
            if p.rng.random_range(0..2) == 0 {
                let t = onset + p.rng.random_range(30..200);
                p.xid(t, g, 120);
            }
            p.add(Target::Gpu(g), EffectKind::Hung, onset);
            let m = p.other_gpu(g.node).node;
            let from = start + p.rng.random_range(120..900);
            for peer in Planner::node_gpus(m) {
                p.add_until(Target::Gpu(peer), EffectKind::ExporterGap, from, from + 360);
            }
            p.decoys.push(format!("{}: exporter unreachable (monitoring plane)", fleet.nodes[m].name));
            target_node = g.node;
            location.push(gpu_location(fleet, g));
            evidence.push(format!("Xid 119 (GSP RPC timeout) on {}", p.name(g)));
        }
    }
    let _ = target_node;
    p.xids.sort_by_key(|x| (x.t, x.gpu));
    let truth = Diagnosis {
        detected: scenario.is_fault(),
        root_cause: scenario.label().to_string(),
        location,
        onset: scenario.is_fault().then_some(onset),
        action: scenario.action(),
        confidence: Some(1.0),
        evidence,
        decoys: p.decoys.clone(),
    };
    Episode { id: format!("ep{index:05}"), index, scenario, start, end, effects: p.effects, xids: p.xids, truth }
}
