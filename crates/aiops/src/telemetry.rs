//! The telemetry generator: steps the fleet through time (15 s by default),
//! shaping healthy baselines by workload profile and applying the active
//! episode's effects. State is one row of values per entity, so memory does
//! not grow with the length of the timeline.

use serde::Serialize;

use crate::episode::{EffectKind, Episode, Target, XidEvent, STEP_S};
use crate::time::TIMELINE_EPOCH;
use crate::topology::{Fleet, GpuRef, PortRef, Profile, GPU_MODEL, PCI_BUS, POWER_LIMIT_W};

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Gauge,
    Counter,
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
}

const fn g(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef { name, kind: MetricKind::Gauge, help }
}
const fn c(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef { name, kind: MetricKind::Counter, help }
}

/// dcgm-exporter metrics, one series per GPU.
pub const GPU_METRICS: [MetricDef; 30] = [
    g("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
    g("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C)."),
    g("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
    c("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ)."),
    g("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz)."),
    g("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz)."),
    g("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
    g("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
    g("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
    g("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "Current clock event reasons (bitmask)."),
    c("DCGM_FI_DEV_THERMAL_VIOLATION", "Throttling duration due to thermal constraints (in us)."),
    c("DCGM_FI_DEV_POWER_VIOLATION", "Throttling duration due to power constraints (in us)."),
    g("DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "Current power limit enforced (in W)."),
    g("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered."),
    c("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors."),
    c("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors."),
    c("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for correctable errors."),
    c("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for uncorrectable errors."),
    g("DCGM_FI_DEV_ROW_REMAP_PENDING", "Whether a row remap is pending (reset the GPU)."),
    g("DCGM_FI_DEV_ROW_REMAP_FAILURE", "Whether remapping of rows has failed."),
    c("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries."),
    g("DCGM_FI_DEV_PCIE_LINK_GEN", "PCIe link generation."),
    g("DCGM_FI_DEV_PCIE_LINK_WIDTH", "PCIe link width."),
    c("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "Total number of NVLink flow-control CRC errors."),
    c("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "Total number of NVLink retries."),
    c("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "Total number of NVLink recovery errors."),
    g("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "Total NVLink bandwidth (in MB/s)."),
    g("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active."),
    g("DCGM_FI_PROF_DRAM_ACTIVE", "Ratio of cycles the device memory interface is active."),
    g("DCGM_FI_PROF_PCIE_RX_BYTES", "PCIe received bytes per second."),
];

/// Indices into [`GPU_METRICS`].
pub mod gi {
    pub const TEMP: usize = 0;
    pub const MEM_TEMP: usize = 1;
    pub const POWER: usize = 2;
    pub const ENERGY: usize = 3;
    pub const SM_CLOCK: usize = 4;
    pub const MEM_CLOCK: usize = 5;
    pub const UTIL: usize = 6;
    pub const FB_USED: usize = 7;
    pub const FB_FREE: usize = 8;
    pub const REASONS: usize = 9;
    pub const THERMAL_VIOL: usize = 10;
    pub const POWER_VIOL: usize = 11;
    pub const POWER_LIMIT: usize = 12;
    pub const XID: usize = 13;
    pub const SBE: usize = 14;
    pub const DBE: usize = 15;
    pub const CORR_REMAP: usize = 16;
    pub const UNCORR_REMAP: usize = 17;
    pub const REMAP_PENDING: usize = 18;
    pub const REMAP_FAILURE: usize = 19;
    pub const PCIE_REPLAY: usize = 20;
    pub const PCIE_GEN: usize = 21;
    pub const PCIE_WIDTH: usize = 22;
    pub const NVL_CRC: usize = 23;
    pub const NVL_REPLAY: usize = 24;
    pub const NVL_RECOVERY: usize = 25;
    pub const NVL_BW: usize = 26;
    pub const GR_ACTIVE: usize = 27;
    pub const DRAM_ACTIVE: usize = 28;
    pub const PCIE_RX: usize = 29;
}

/// node_exporter InfiniBand / ethtool metrics, one series per port.
pub const PORT_METRICS: [MetricDef; 8] = [
    c(
        "node_infiniband_port_transmit_wait_total",
        "Number of ticks during which the port had data to transmit but none was sent.",
    ),
    c("node_infiniband_port_errors_received_total", "Number of packets containing an error received."),
    c("node_infiniband_link_downed_total", "Number of times the link failed to recover and went down."),
    c("node_infiniband_link_error_recovery_total", "Number of times the link successfully recovered from an error."),
    c("node_infiniband_symbol_error_total", "Number of minor link errors detected on one or more physical lanes."),
    c("node_ethtool_rx_prio3_pause", "PFC pause frames received on priority 3."),
    c("node_ethtool_rx_prio3_pause_duration", "Time paused by PFC on priority 3 (in us)."),
    c("node_infiniband_port_data_transmitted_bytes_total", "Number of data octets transmitted on the port."),
];

/// Indices into [`PORT_METRICS`].
pub mod pi {
    pub const TX_WAIT: usize = 0;
    pub const RCV_ERR: usize = 1;
    pub const LINK_DOWNED: usize = 2;
    pub const LINK_RECOVERY: usize = 3;
    pub const SYMBOL: usize = 4;
    pub const PAUSE: usize = 5;
    pub const PAUSE_DURATION: usize = 6;
    pub const TX_BYTES: usize = 7;
}

/// vLLM metrics, one series per serving replica (node).
pub const REPLICA_METRICS: [MetricDef; 8] = [
    g("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."),
    c("vllm:num_preemptions_total", "Cumulative number of preemptions from the engine."),
    g("vllm:num_requests_running", "Number of requests in model execution batches."),
    g("vllm:num_requests_waiting", "Number of requests waiting to be processed."),
    c("vllm:time_to_first_token_seconds_sum", "Histogram sum of time to first token in seconds."),
    c("vllm:time_to_first_token_seconds_count", "Histogram count of time to first token."),
    c("vllm:inter_token_latency_seconds_sum", "Histogram sum of inter-token latency in seconds."),
    c("vllm:inter_token_latency_seconds_count", "Histogram count of inter-token latency."),
];

/// Indices into [`REPLICA_METRICS`].
pub mod ri {
    pub const KV: usize = 0;
    pub const PREEMPT: usize = 1;
    pub const RUNNING: usize = 2;
    pub const WAITING: usize = 3;
    pub const TTFT_SUM: usize = 4;
    pub const TTFT_COUNT: usize = 5;
    pub const ITL_SUM: usize = 6;
    pub const ITL_COUNT: usize = 7;
}

/// The model a serving profile runs (label of the vLLM series).
pub fn served_model(profile: Profile) -> &'static str {
    match profile {
        Profile::DenseServing => "meta-llama/Llama-3.1-70B-Instruct",
        Profile::MoeServing => "Qwen/Qwen3-235B-A22B",
        Profile::Training => "",
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Deterministic noise in about [-1, 1] (triangular) for a (seed, entity,
/// channel, step) tuple: the same inputs give the same value in any order.
pub fn noise(seed: u64, entity: u64, channel: u64, step: i64) -> f64 {
    let h =
        splitmix(seed ^ splitmix(entity.wrapping_mul(0x1000_0000_01b3) ^ splitmix(channel ^ splitmix(step as u64))));
    let a = (h >> 11) as f64 / (1u64 << 53) as f64;
    let b = (splitmix(h) >> 11) as f64 / (1u64 << 53) as f64;
    a + b - 1.0
}

/// Last values of every series of the fleet at the current step.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Unix seconds of this step.
    pub t: i64,
    pub gpus: Vec<[f64; GPU_METRICS.len()]>,
    /// False while a GPU's series are absent (off the bus, exporter down).
    pub gpu_present: Vec<bool>,
    pub ports: Vec<[f64; PORT_METRICS.len()]>,
    /// `None` for training nodes (no vLLM).
    pub replicas: Vec<Option<[f64; REPLICA_METRICS.len()]>>,
}

/// Steps a fleet through time over a schedule of episodes.
#[derive(Debug)]
pub struct FleetStepper<'a> {
    fleet: &'a Fleet,
    episodes: &'a [Episode],
    frame: Frame,
}

const FB_TOTAL_MIB: f64 = 81_559.0;

impl Frame {
    /// The frame just before `t0` (rounded down to the step grid); counters
    /// start from their healthy baseline accumulated since the timeline
    /// epoch. The first [`Frame::advance`] lands on `t0`.
    pub fn before(fleet: &Fleet, t0: i64) -> Frame {
        let t0 = t0 - (t0 - TIMELINE_EPOCH).rem_euclid(STEP_S);
        let elapsed = (t0 - TIMELINE_EPOCH).max(0) as f64;
        let gpus = fleet
            .gpus()
            .map(|g| {
                let mut row = [0.0; GPU_METRICS.len()];
                let fid = g.flat() as u64;
                row[gi::ENERGY] = elapsed * 450.0 * 1000.0;
                row[gi::SBE] = (splitmix(fleet.seed ^ fid) % 4) as f64;
                row[gi::PCIE_REPLAY] = elapsed * pcie_base_rate(fleet.seed, fid);
                row
            })
            .collect();
        let ports = fleet
            .ports()
            .map(|p| {
                let mut row = [0.0; PORT_METRICS.len()];
                let (wait, bytes) = port_base_rates(fleet, p);
                row[pi::TX_WAIT] = elapsed * wait;
                row[pi::TX_BYTES] = elapsed * bytes;
                row
            })
            .collect();
        let replicas = fleet
            .nodes
            .iter()
            .map(|n| {
                n.profile.is_serving().then(|| {
                    let mut row = [0.0; REPLICA_METRICS.len()];
                    row[ri::TTFT_COUNT] = elapsed * REQ_RATE;
                    row[ri::TTFT_SUM] = elapsed * REQ_RATE * 0.3;
                    row[ri::ITL_COUNT] = elapsed * REQ_RATE * 200.0;
                    row[ri::ITL_SUM] = elapsed * REQ_RATE * 200.0 * 0.025;
                    row
                })
            })
            .collect();
        Frame { t: t0 - STEP_S, gpus, gpu_present: vec![true; fleet.gpu_count()], ports, replicas }
    }

    /// Advances one step over the schedule `episodes` (sorted by start).
    pub fn advance(&mut self, fleet: &Fleet, episodes: &[Episode]) {
        let t = self.t + STEP_S;
        self.t = t;
        let k = (t - TIMELINE_EPOCH).div_euclid(STEP_S);
        let ep = episode_at(episodes, t);
        for g in fleet.gpus() {
            let i = g.flat();
            self.gpu_present[i] = gpu_step(fleet, ep, g, t, k, &mut self.gpus[i]);
        }
        for p in fleet.ports() {
            port_step(fleet, ep, p, t, k, &mut self.ports[p.flat()]);
        }
        for n in 0..fleet.nodes.len() {
            if let Some(row) = self.replicas[n].as_mut() {
                replica_step(fleet, ep, n, t, k, row);
            }
        }
    }

    /// Number of series (samples per step).
    pub fn series(&self) -> usize {
        self.gpu_present.iter().filter(|p| **p).count() * GPU_METRICS.len()
            + self.ports.len() * PORT_METRICS.len()
            + self.replicas.iter().flatten().count() * REPLICA_METRICS.len()
    }
}

impl<'a> FleetStepper<'a> {
    /// A stepper whose first step is at `t0`.
    pub fn new(fleet: &'a Fleet, episodes: &'a [Episode], t0: i64) -> FleetStepper<'a> {
        FleetStepper { fleet, episodes, frame: Frame::before(fleet, t0) }
    }

    pub fn fleet(&self) -> &Fleet {
        self.fleet
    }

    /// The frame of the last step.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// Advances one step and returns the new frame.
    pub fn step(&mut self) -> &Frame {
        self.frame.advance(self.fleet, self.episodes);
        &self.frame
    }
}

/// The episode whose window holds `t` (episodes sorted by start).
pub fn episode_at(episodes: &[Episode], t: i64) -> Option<&Episode> {
    let i = episodes.partition_point(|e| e.start <= t);
    (i > 0).then(|| &episodes[i - 1]).filter(|e| t < e.end)
}

const REQ_RATE: f64 = 6.0;

fn pcie_base_rate(seed: u64, fid: u64) -> f64 {
    if splitmix(seed ^ fid ^ 0x9c1e).is_multiple_of(11) {
        0.002
    } else {
        0.0
    }
}

fn port_base_rates(fleet: &Fleet, p: PortRef) -> (f64, f64) {
    match fleet.nodes[p.node].profile {
        Profile::Training => (3.0e5, 1.1e10),
        Profile::MoeServing => (6.0e4, 2.0e9),
        Profile::DenseServing => (1.5e4, 4.0e8),
    }
}

fn ramp(t: i64, from: i64, ramp_s: f64) -> f64 {
    (((t - from) as f64) / ramp_s.max(1.0)).clamp(0.0, 1.0)
}

fn crossed(t: i64, at: i64) -> bool {
    at > t - STEP_S && at <= t
}

/// Last Xid on `g` at or before `t` within the episode.
pub fn last_xid(ep: Option<&Episode>, g: GpuRef, t: i64) -> Option<&XidEvent> {
    ep?.xids.iter().rfind(|x| x.gpu == g && x.t <= t)
}

fn gpu_step(
    fleet: &Fleet,
    ep: Option<&Episode>,
    g: GpuRef,
    t: i64,
    k: i64,
    row: &mut [f64; GPU_METRICS.len()],
) -> bool {
    let node = &fleet.nodes[g.node];
    let seed = fleet.seed;
    let fid = g.flat() as u64;
    let n = |ch: u64| noise(seed, fid, ch, k);
    let dt = STEP_S as f64;
    let (u0, amp) = match node.profile {
        Profile::DenseServing => (76.0, 12.0),
        Profile::MoeServing => (64.0, 18.0),
        Profile::Training => (93.0, 3.0),
    };
    let slow = (((t - TIMELINE_EPOCH) as f64) / 5400.0 + (g.node % 17) as f64).sin();
    let mut util = u0 + amp * 0.5 * slow + amp * 0.5 * n(1);
    if node.profile == Profile::Training && (k + g.node as i64) % 8 == 0 {
        util -= 18.0;
    }
    let mut present = true;
    let (mut heat_target, mut heat_f, mut warm, mut cap, mut brake, mut hung) =
        (0.0f64, 0.0f64, false, None::<f64>, false, false);
    let (mut sbe_rate, mut pending, mut failure) = (0.0, false, false);
    let (mut replay_rate, mut link, mut nvl_rate) = (pcie_base_rate(seed, fid) * 60.0, None::<(u8, u8)>, 0.0);
    if let Some(ep) = ep {
        for e in ep.active_on(Target::Gpu(g), t) {
            match e.kind {
                EffectKind::Heat { target_c, ramp_s } => {
                    let f = ramp(t, e.from, ramp_s);
                    if f > 0.0 && target_c > heat_target {
                        heat_target = target_c;
                        heat_f = f;
                    }
                }
                EffectKind::WarmBusy => warm = true,
                EffectKind::PowerCap { limit_w } => cap = Some(limit_w),
                EffectKind::PowerBrake => brake = ((t - e.from) / 60) % 2 == 0,
                EffectKind::SbeRamp { peak_per_min } => sbe_rate += peak_per_min * ramp(t, e.from, 300.0),
                EffectKind::RemapPending => {
                    pending = true;
                    if crossed(t, e.from) {
                        row[gi::CORR_REMAP] += 1.0;
                    }
                }
                EffectKind::Dbe { count } if crossed(t, e.from) => row[gi::DBE] += count,
                EffectKind::RemapFailure => {
                    failure = true;
                    if crossed(t, e.from) {
                        row[gi::UNCORR_REMAP] += 1.0;
                    }
                }
                EffectKind::OffBus | EffectKind::ExporterGap => present = false,
                EffectKind::PcieReplay { per_min } => replay_rate += per_min,
                EffectKind::PcieDown { gen, width } => link = Some((gen, width)),
                EffectKind::Nvlink { per_min } => nvl_rate += per_min,
                EffectKind::UtilDrop { factor } => util *= factor,
                EffectKind::Hung => hung = true,
                _ => {}
            }
        }
    }
    if warm {
        util = util.max(97.0 + n(9));
    }
    if link.is_some() {
        util *= 0.85;
    }
    if hung {
        util = 0.0;
    }
    util = util.clamp(0.0, 100.0);
    let limit = cap.unwrap_or(POWER_LIMIT_W);
    let demand = 80.0 + 6.2 * util + 12.0 * n(2);
    let mut reasons = 0u32;
    let mut sm_clock = if util < 3.0 { 345.0 } else { 1980.0 };
    let mut power = demand.min(limit - 2.0 + 0.8 * n(3));
    if demand > limit {
        reasons |= 0x4;
        power = limit - 1.0 + 0.8 * n(3);
        sm_clock = (1980.0 - (demand - limit) * 1.6).max(1200.0);
    }
    if brake {
        reasons |= 0x80 | 0x8;
        power = 130.0 + 10.0 * n(3);
        sm_clock = 750.0;
    }
    let mut temp = 30.0 + 0.052 * power + node.temp_offset[g.gpu] + 0.6 * n(4);
    if heat_target > temp {
        temp += (heat_target - temp) * heat_f;
    }
    if warm {
        temp = (temp + 9.0).min(83.0 + 0.5 * n(5));
    }
    if temp > 87.0 {
        reasons |= 0x20;
        sm_clock = sm_clock.min((1980.0 - (temp - 87.0) * 70.0).max(900.0));
    }
    if temp > 91.0 {
        reasons |= 0x40;
    }
    let (gen, width) = link.unwrap_or((node.pcie_max_gen, 16));
    row[gi::TEMP] = temp.round();
    row[gi::MEM_TEMP] = (temp + 7.0 + 0.8 * n(6)).round();
    row[gi::POWER] = (power * 1000.0).round() / 1000.0;
    row[gi::ENERGY] += power * dt * 1000.0;
    row[gi::SM_CLOCK] = sm_clock.round();
    row[gi::MEM_CLOCK] = 2619.0;
    row[gi::UTIL] = util.round();
    let used = if node.profile.is_serving() {
        0.93 * FB_TOTAL_MIB + 40.0 * n(7)
    } else {
        (0.55 + 0.3 * util / 100.0) * FB_TOTAL_MIB
    };
    row[gi::FB_USED] = used.round();
    row[gi::FB_FREE] = (FB_TOTAL_MIB - used).round();
    row[gi::REASONS] = reasons as f64;
    if reasons & (0x20 | 0x40) != 0 {
        row[gi::THERMAL_VIOL] += dt * 1e6;
    }
    if reasons & (0x4 | 0x80) != 0 {
        row[gi::POWER_VIOL] += dt * 1e6;
    }
    row[gi::POWER_LIMIT] = limit;
    row[gi::XID] = last_xid(ep, g, t).map(|x| x.code as f64).unwrap_or(0.0);
    row[gi::SBE] += sbe_rate * dt / 60.0 * (1.0 + 0.5 * n(8));
    row[gi::REMAP_PENDING] = if pending { 1.0 } else { 0.0 };
    row[gi::REMAP_FAILURE] = if failure { 1.0 } else { 0.0 };
    row[gi::PCIE_REPLAY] += replay_rate * dt / 60.0 * (1.0 + 0.5 * n(10));
    row[gi::PCIE_GEN] = gen as f64;
    row[gi::PCIE_WIDTH] = width as f64;
    if nvl_rate > 0.0 {
        row[gi::NVL_CRC] += nvl_rate * dt / 60.0 * (1.0 + 0.5 * n(11));
        row[gi::NVL_REPLAY] += nvl_rate / 3.0 * dt / 60.0;
        row[gi::NVL_RECOVERY] += nvl_rate / 30.0 * dt / 60.0;
    }
    let nvl_scale = match node.profile {
        Profile::Training => 180_000.0,
        Profile::MoeServing => 110_000.0,
        Profile::DenseServing => 35_000.0,
    };
    row[gi::NVL_BW] = (nvl_scale * util / 100.0 * if nvl_rate > 40.0 { 0.7 } else { 1.0 }).round();
    row[gi::GR_ACTIVE] = ((util / 100.0 * 0.97) * 1000.0).round() / 1000.0;
    row[gi::DRAM_ACTIVE] =
        (((if node.profile.is_serving() { 0.3 } else { 0.15 }) + 0.4 * util / 100.0) * 1000.0).round() / 1000.0;
    let gen_factor = f64::from(1u32 << (gen.saturating_sub(1)).min(6)) / 16.0 * width as f64 / 16.0;
    row[gi::PCIE_RX] = (3.0e9 * (0.2 + util / 100.0) * gen_factor).round();
    present
}

fn port_step(fleet: &Fleet, ep: Option<&Episode>, p: PortRef, t: i64, k: i64, row: &mut [f64; PORT_METRICS.len()]) {
    let fid = 1_000_000 + p.flat() as u64;
    let n = |ch: u64| noise(fleet.seed, fid, ch, k);
    let dt = STEP_S as f64;
    let (mut wait, mut bytes) = port_base_rates(fleet, p);
    wait *= 1.0 + 0.3 * n(1);
    bytes *= 1.0 + 0.1 * n(2);
    let (mut pause, mut symbol) = (0.0, 0.0);
    if let Some(ep) = ep {
        for e in ep.active_on(Target::Port(p), t) {
            match e.kind {
                EffectKind::IbCongestion { wait_mult, pause_per_s } => {
                    let f = ramp(t, e.from, 120.0);
                    wait *= 1.0 + (wait_mult - 1.0) * f;
                    wait = wait.max(2.0e5 * wait_mult * f);
                    pause += pause_per_s * f;
                    bytes *= 1.0 - 0.3 * f;
                }
                EffectKind::IbPhy { symbol_per_min } => {
                    symbol += symbol_per_min * (1.0 + 0.5 * n(3));
                    row[pi::RCV_ERR] += symbol_per_min / 16.0 * dt / 60.0;
                    if (t - e.from) % 300 < STEP_S {
                        row[pi::LINK_RECOVERY] += 1.0;
                    }
                    if crossed(t, e.from + 60) || crossed(t, e.from + 660) {
                        row[pi::LINK_DOWNED] += 1.0;
                    }
                    pause += 30.0;
                }
                EffectKind::PauseSpread { pause_per_s } => pause += pause_per_s * (1.0 + 0.3 * n(4)),
                _ => {}
            }
        }
    }
    row[pi::TX_WAIT] += wait * dt;
    row[pi::TX_BYTES] += bytes * dt;
    row[pi::SYMBOL] += symbol * dt / 60.0;
    row[pi::PAUSE] += pause * dt;
    row[pi::PAUSE_DURATION] += pause * dt * 3.0;
}

fn replica_step(
    fleet: &Fleet,
    ep: Option<&Episode>,
    node: usize,
    t: i64,
    k: i64,
    row: &mut [f64; REPLICA_METRICS.len()],
) {
    let fid = 2_000_000 + node as u64;
    let n = |ch: u64| noise(fleet.seed, fid, ch, k);
    let dt = STEP_S as f64;
    let slow = (((t - TIMELINE_EPOCH) as f64) / 5400.0 + (node % 17) as f64).sin();
    let mut kv = (0.45 + 0.15 * slow + 0.05 * n(1)).clamp(0.05, 0.9);
    let mut running = (45.0 + 20.0 * slow + 6.0 * n(2)).max(1.0);
    let mut waiting = (1.0 + 1.5 * n(3)).max(0.0);
    let mut ttft = 0.18 + 0.12 * kv + 0.03 * n(4);
    let mut itl = 0.024 + 0.003 * n(5);
    let mut preempt = 0.0;
    if let Some(ep) = ep {
        for e in ep.active_on(Target::Replica(node), t) {
            match e.kind {
                EffectKind::KvPressure => {
                    let f = ramp(t, e.from, 240.0);
                    kv += (0.99 - kv) * f;
                    kv = (kv + 0.006 * n(6) * f).min(1.0);
                    preempt += 2.5 * f * (1.0 + 0.4 * n(7));
                    waiting += 60.0 * f * (1.0 + 0.2 * n(8));
                    running = running * (1.0 - f) + 128.0 * f;
                    ttft += 5.5 * f;
                    itl += 0.012 * f;
                }
                EffectKind::ItlUp => itl += 0.015,
                _ => {}
            }
        }
    }
    row[ri::KV] = (kv * 10_000.0).round() / 10_000.0;
    row[ri::PREEMPT] += preempt * dt;
    row[ri::RUNNING] = running.round();
    row[ri::WAITING] = waiting.round();
    let reqs = REQ_RATE * dt * (1.0 + 0.1 * n(9));
    row[ri::TTFT_COUNT] += reqs;
    row[ri::TTFT_SUM] += reqs * ttft;
    row[ri::ITL_COUNT] += reqs * 200.0;
    row[ri::ITL_SUM] += reqs * 200.0 * itl;
}

/// The kernel-log line of an Xid event, as `dmesg` prints it.
pub fn kernel_log_line(fleet: &Fleet, x: &XidEvent) -> String {
    let node = &fleet.nodes[x.gpu.node];
    let msg = match x.code {
        31 => format!("Ch 00000008, intr 00000000. {}", xid_text(31, None)),
        119 => format!("Timeout after 6s of waiting for RPC response from GPU{} GSP! Expected function 76 (GSP_RM_CONTROL) (0x20800a4c 0x4).", x.gpu.gpu),
        code => xid_text(code, x.link),
    };
    format!(
        "{} {} kernel: NVRM: Xid (PCI:0000:{}:00): {}, pid={}, name=python3, {}",
        crate::time::format_rfc3339(x.t),
        node.name,
        PCI_BUS[x.gpu.gpu],
        x.code,
        1000 + (x.t.rem_euclid(30_000)),
        msg
    )
}

/// Prometheus label sets, built once per fleet.
#[derive(Debug, Clone)]
pub struct Labels {
    pub gpu: Vec<String>,
    pub port: Vec<String>,
    pub replica: Vec<String>,
}

impl Labels {
    pub fn new(fleet: &Fleet) -> Labels {
        let gpu = fleet
            .gpus()
            .map(|g| {
                let node = &fleet.nodes[g.node];
                format!(
                    "gpu=\"{}\",UUID=\"{}\",device=\"nvidia{}\",modelName=\"{}\",Hostname=\"{}\"",
                    g.gpu, node.uuids[g.gpu], g.gpu, GPU_MODEL, node.name
                )
            })
            .collect();
        let port = fleet
            .ports()
            .map(|p| format!("Hostname=\"{}\",device=\"{}\",port=\"1\"", fleet.nodes[p.node].name, p.device()))
            .collect();
        let replica = fleet
            .nodes
            .iter()
            .map(|n| format!("Hostname=\"{}\",model_name=\"{}\"", n.name, served_model(n.profile)))
            .collect();
        Labels { gpu, port, replica }
    }
}

fn fmt_value(v: f64, kind: MetricKind) -> String {
    let v = if kind == MetricKind::Counter { v.floor() } else { v };
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Appends every present series of `frame` in Prometheus text exposition
/// format (family by family, `# HELP` and `# TYPE` first). `timestamp_ms`
/// adds an explicit timestamp to each sample.
pub fn write_exposition(out: &mut String, fleet: &Fleet, labels: &Labels, frame: &Frame, timestamp_ms: Option<i64>) {
    use std::fmt::Write;
    let ts = timestamp_ms.map(|t| format!(" {t}")).unwrap_or_default();
    for (m, def) in GPU_METRICS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", def.name, def.help, def.name, kind_str(def.kind));
        for g in fleet.gpus() {
            let i = g.flat();
            if frame.gpu_present[i] {
                let _ =
                    writeln!(out, "{}{{{}}} {}{}", def.name, labels.gpu[i], fmt_value(frame.gpus[i][m], def.kind), ts);
            }
        }
    }
    for (m, def) in PORT_METRICS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", def.name, def.help, def.name, kind_str(def.kind));
        for (i, row) in frame.ports.iter().enumerate() {
            let _ = writeln!(out, "{}{{{}}} {}{}", def.name, labels.port[i], fmt_value(row[m], def.kind), ts);
        }
    }
    for (m, def) in REPLICA_METRICS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", def.name, def.help, def.name, kind_str(def.kind));
        for (i, row) in frame.replicas.iter().enumerate() {
            if let Some(row) = row {
                let _ = writeln!(out, "{}{{{}}} {}{}", def.name, labels.replica[i], fmt_value(row[m], def.kind), ts);
            }
        }
    }
}

fn kind_str(k: MetricKind) -> &'static str {
    match k {
        MetricKind::Gauge => "gauge",
        MetricKind::Counter => "counter",
    }
}

/// Calls `f(metric, kind, labels, value)` for every present series of the
/// frame, in a fixed order (GPUs, ports, replicas).
pub fn for_each_sample(fleet: &Fleet, labels: &Labels, frame: &Frame, mut f: impl FnMut(&MetricDef, &str, f64)) {
    for g in fleet.gpus() {
        let i = g.flat();
        if frame.gpu_present[i] {
            for (m, def) in GPU_METRICS.iter().enumerate() {
                f(def, &labels.gpu[i], frame.gpus[i][m]);
            }
        }
    }
    for (i, row) in frame.ports.iter().enumerate() {
        for (m, def) in PORT_METRICS.iter().enumerate() {
            f(def, &labels.port[i], row[m]);
        }
    }
    for (i, row) in frame.replicas.iter().enumerate() {
        if let Some(row) = row {
            for (m, def) in REPLICA_METRICS.iter().enumerate() {
                f(def, &labels.replica[i], row[m]);
            }
        }
    }
}

/// A counter value as written (whole numbers).
pub fn written_value(v: f64, kind: MetricKind) -> f64 {
    if kind == MetricKind::Counter {
        v.floor()
    } else {
        v
    }
}

/// `Hostname="r03-n07",gpu="3"` → the JSON object text `{"Hostname":"r03-n07","gpu":"3"}`.
pub fn labels_to_json(labels: &str) -> String {
    let mut s = String::with_capacity(labels.len() + 2);
    s.push('{');
    for (i, part) in labels.split("\",").enumerate() {
        if i > 0 {
            s.push(',');
        }
        if let Some((k, v)) = part.split_once("=\"") {
            s.push('"');
            s.push_str(k);
            s.push_str("\":\"");
            s.push_str(v.trim_end_matches('"'));
            s.push('"');
        }
    }
    s.push('}');
    s
}

/// The driver's text after `Xid (PCI:…): CODE, pid=…, name=…, ` for the Xid
/// codes the arena injects (`link` names the NVLink of an Xid 74).
pub(crate) fn xid_text(code: u32, link: Option<u8>) -> String {
    match code {
        13 => "Graphics SM Warp Exception on (GPC 1, TPC 2, SM 0): Out Of Range Address".to_string(),
        31 => "MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f2a_3b000000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ".to_string(),
        43 => "Ch 00000010, errorString CTX SWITCH TIMEOUT, Info 0x3c046".to_string(),
        45 => "Ch 00000010, Preemptive cleanup, due to previous errors".to_string(),
        48 => "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.".to_string(),
        63 => "Row Remapper: New row (0x00000000000b5c2e0) was marked for remapping, reset gpu to activate.".to_string(),
        64 => "Row Remapper: Failed to remap row, row remapping failure.".to_string(),
        74 => format!("NVLink: fatal error detected on link {}(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)", link.unwrap_or(0)),
        79 => "GPU has fallen off the bus.".to_string(),
        94 => "Contained: SM (0x1). RST: No, D-RST: No".to_string(),
        95 => "Uncontained: FBHUB. RST: Yes, D-RST: No".to_string(),
        119 => "Timeout after 6s of waiting for RPC response from GSP! Expected function 76 (GSP_RM_CONTROL) (0x20800a4c 0x4).".to_string(),
        120 => "GSP task exception: (UCODE_ERR 0x2)".to_string(),
        _ => "unknown error".to_string(),
    }
}
