//! One investigate-mode episode's world: a fleet drawn for the episode
//! (16 to 2,048 GPUs of H100, H200, B200 and MI300X nodes, racks, cooling
//! loops spanning racks, leaf switches, jobs), the faults and decoys planted
//! in it over four hours of history, the Xid events, and the alerts that
//! page the operator. Telemetry and kernel logs are computed from this on
//! demand ([`super::series`], [`super::kernel`]).

use std::collections::BTreeMap;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::cases::{Case, Level};
use crate::time::{format_rfc3339, TIMELINE_EPOCH};

/// History before the alert that the tools can see, seconds.
pub const HISTORY_S: i64 = 4 * 3600;
/// The operator starts this long after the alert fired, seconds.
pub const NOW_AFTER_ALERT_S: i64 = 120;
/// Scrape interval of every series, seconds.
pub const STEP_S: i64 = 60;
pub const GPUS_PER_NODE: usize = 8;
pub const PORTS_PER_NODE: usize = 2;

/// Who made a GPU (decides the exporter and its metric names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Nvidia,
    Amd,
}

/// One GPU model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuKind {
    pub model: &'static str,
    pub vendor: Vendor,
    pub tdp_w: f64,
    /// PCI bus numbers of the eight GPUs of a board.
    pub pci_bus: [&'static str; GPUS_PER_NODE],
}

/// The GPU models of investigate-mode fleets.
pub const KINDS: [GpuKind; 4] = [
    GpuKind {
        model: "NVIDIA H100 80GB HBM3",
        vendor: Vendor::Nvidia,
        tdp_w: 700.0,
        pci_bus: ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"],
    },
    GpuKind {
        model: "NVIDIA H200",
        vendor: Vendor::Nvidia,
        tdp_w: 700.0,
        pci_bus: ["19", "3b", "4c", "5d", "9b", "bb", "cb", "db"],
    },
    GpuKind {
        model: "NVIDIA B200",
        vendor: Vendor::Nvidia,
        tdp_w: 1000.0,
        pci_bus: ["17", "3d", "60", "70", "9b", "bb", "dc", "ea"],
    },
    GpuKind {
        model: "MI300X",
        vendor: Vendor::Amd,
        tdp_w: 750.0,
        pci_bus: ["05", "15", "65", "75", "85", "95", "e5", "f5"],
    },
];

/// What a node runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// A rank group of a training job (`job` indexes [`Topo::jobs`]).
    Training { job: usize },
    /// A vLLM replica serving `model`.
    Serving { model: &'static str },
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub rack: usize,
    pub kind: usize,
    pub work: Work,
    /// Highest PCIe generation of the board.
    pub pcie_max_gen: u8,
    pub temp_offset: [f64; GPUS_PER_NODE],
}

#[derive(Debug, Clone)]
pub struct Rack {
    pub name: String,
    pub cooling_loop: usize,
    pub nodes: Vec<usize>,
    pub leaf: String,
}

#[derive(Debug, Clone)]
pub struct Loop {
    pub name: String,
    pub racks: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub nodes: Vec<usize>,
}

/// The fleet of one episode.
#[derive(Debug, Clone)]
pub struct Topo {
    pub loops: Vec<Loop>,
    pub racks: Vec<Rack>,
    pub nodes: Vec<Node>,
    pub jobs: Vec<Job>,
}

impl Topo {
    pub fn kind(&self, node: usize) -> &'static GpuKind {
        &KINDS[self.nodes[node].kind]
    }
    pub fn gpu_count(&self) -> usize {
        self.nodes.len() * GPUS_PER_NODE
    }
    pub fn node_by_name(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name.eq_ignore_ascii_case(name.trim()))
    }
    pub fn rack_by_name(&self, name: &str) -> Option<usize> {
        self.racks.iter().position(|r| r.name.eq_ignore_ascii_case(name.trim()))
    }
    pub fn loop_by_name(&self, name: &str) -> Option<usize> {
        self.loops.iter().position(|l| l.name.eq_ignore_ascii_case(name.trim()))
    }
    pub fn job_of(&self, node: usize) -> Option<usize> {
        match self.nodes[node].work {
            Work::Training { job } => Some(job),
            Work::Serving { .. } => None,
        }
    }
    /// `0000:18:00.0`, the PCI address of a GPU as the kernel prints it.
    pub fn pci(&self, node: usize, gpu: usize) -> String {
        format!("0000:{}:00.0", self.kind(node).pci_bus[gpu])
    }

    /// Draws a fleet of 16 to 2,048 GPUs (log-uniform) from `rng`.
    fn draw(rng: &mut ChaCha8Rng) -> Topo {
        let gpus = (16f64 * 128f64.powf(rng.random::<f64>())).round() as usize;
        let n_nodes = gpus.div_ceil(GPUS_PER_NODE).max(2);
        let per_rack = if n_nodes <= 4 { 2 } else { 4 };
        let n_racks = n_nodes.div_ceil(per_rack);
        let primary = rng.random_range(0..KINDS.len());
        let secondary = if rng.random_bool(0.4) { rng.random_range(0..KINDS.len()) } else { primary };
        let mut loops: Vec<Loop> = Vec::new();
        let mut racks = Vec::with_capacity(n_racks);
        let mut r = 0;
        while r < n_racks {
            let span = rng.random_range(2..=3).min(n_racks - r);
            let l = loops.len();
            loops.push(Loop { name: format!("loop-{l}"), racks: (r..r + span).collect() });
            for rr in r..r + span {
                racks.push(Rack {
                    name: format!("r{rr:02}"),
                    cooling_loop: l,
                    nodes: Vec::new(),
                    leaf: format!("leaf-{rr:02}"),
                });
            }
            r += span;
        }
        let mut nodes = Vec::with_capacity(n_nodes);
        let mut jobs: Vec<Job> = Vec::new();
        for (ri, rack) in racks.iter_mut().enumerate() {
            let kind = if rng.random_bool(0.3) { secondary } else { primary };
            let training = rng.random_bool(0.6);
            let job = training.then(|| {
                jobs.push(Job { id: format!("train-{:04}", rng.random_range(1000..10_000)), nodes: Vec::new() });
                jobs.len() - 1
            });
            for k in 0..per_rack {
                let n = nodes.len();
                if n >= n_nodes {
                    break;
                }
                let work = match job {
                    Some(j) => {
                        jobs[j].nodes.push(n);
                        Work::Training { job: j }
                    }
                    None => Work::Serving {
                        model: ["meta-llama/Llama-3.1-70B-Instruct", "Qwen/Qwen3-235B-A22B", "deepseek-ai/DeepSeek-V3"]
                            .choose(rng)
                            .copied()
                            .unwrap_or("meta-llama/Llama-3.1-70B-Instruct"),
                    },
                };
                let mut temp_offset = [0.0; GPUS_PER_NODE];
                for t in &mut temp_offset {
                    *t = f64::from(rng.random_range(-30..=30)) / 10.0;
                }
                nodes.push(Node {
                    name: format!("{}-n{k:02}", rack.name),
                    rack: ri,
                    kind,
                    work,
                    pcie_max_gen: if KINDS[kind].model.contains("B200") { 6 } else { 5 },
                    temp_offset,
                });
                rack.nodes.push(n);
            }
        }
        racks.retain(|r| !r.nodes.is_empty());
        for l in &mut loops {
            l.racks.retain(|&r| r < racks.len());
        }
        loops.retain(|l| !l.racks.is_empty());
        Topo { loops, racks, nodes, jobs }
    }
}

/// Where a fault is, by index into [`Topo`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    pub cooling_loop: Option<usize>,
    pub rack: Option<usize>,
    pub node: Option<usize>,
    pub gpu: Option<usize>,
    /// `nvlinkN` or `mlx5_N`.
    pub link: Option<String>,
}

/// One injected fault (an episode has none, one or two).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub case: Case,
    pub label: &'static str,
    pub level: Level,
    pub place: Place,
    pub onset: i64,
    pub tolerance_s: i64,
}

/// What an effect acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Gpu(usize, usize),
    Port(usize, usize),
    Replica(usize),
    /// A node's GPU exporter.
    Exporter(usize),
}

/// What an effect does while active.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fx {
    Heat { target_c: f64, ramp_s: f64 },
    WarmBusy,
    PowerCap { limit_w: f64 },
    Brake,
    SbeRate { per_min: f64 },
    RemapPending,
    Dbe { count: f64 },
    RemapFailure,
    OffBus,
    PcieReplay { per_min: f64 },
    PcieDown { gen: u8, width: u8 },
    Nvlink { per_min: f64 },
    Util { factor: f64 },
    Hung,
    XidFrozen { code: u32 },
    EccOff,
    Down,
    IbPhy { per_min: f64 },
    IbCongestion { mult: f64 },
    Pause { per_s: f64 },
    KvPressure,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    pub target: Target,
    pub fx: Fx,
    pub from: i64,
    pub to: i64,
}

/// One Xid (or amdgpu RAS) event: a kernel-log line and the last-Xid gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xid {
    pub t: i64,
    pub node: usize,
    pub gpu: usize,
    pub code: u32,
    pub link: Option<u8>,
}

/// One alert as Alertmanager sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub name: &'static str,
    pub severity: &'static str,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub starts_at: i64,
}

impl Alert {
    /// The alert in Alertmanager's webhook shape.
    pub fn to_json(&self) -> Value {
        let mut labels = serde_json::Map::new();
        labels.insert("alertname".into(), json!(self.name));
        labels.insert("severity".into(), json!(self.severity));
        for (k, v) in &self.labels {
            labels.insert(k.clone(), json!(v));
        }
        let fingerprint = self.labels.iter().fold(0xcbf2_9ce4_8422_2325u64 ^ self.name.len() as u64, |h, (k, v)| {
            k.bytes().chain(v.bytes()).fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
        });
        json!({
            "status": "firing",
            "labels": labels,
            "annotations": {
                "summary": self.summary,
                "runbook_url": format!("docs/RUNBOOK.md#{}", self.name.to_ascii_lowercase()),
            },
            "startsAt": format_rfc3339(self.starts_at),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": format!("http://prometheus:9090/graph?g0.expr=ALERTS%7Balertname%3D%22{}%22%7D", self.name),
            "fingerprint": format!("{fingerprint:016x}"),
        })
    }
}

/// One episode's world.
#[derive(Debug, Clone)]
pub struct World {
    pub seed: u64,
    pub index: usize,
    pub id: String,
    pub case: Case,
    pub topo: Topo,
    pub history_start: i64,
    pub alert_at: i64,
    /// The latest instant the tools answer for.
    pub now: i64,
    pub faults: Vec<Fault>,
    pub effects: Vec<Effect>,
    pub xids: Vec<Xid>,
    /// The page first, then whatever else is firing.
    pub alerts: Vec<Alert>,
    /// What is planted to mislead, in words (truth only).
    pub decoys: Vec<String>,
}

impl World {
    pub fn active(&self, target: Target, t: i64) -> impl Iterator<Item = &Effect> + '_ {
        self.effects.iter().filter(move |e| e.target == target && e.from <= t && t < e.to)
    }

    /// The truth record of `episodes.jsonl`.
    pub fn truth_json(&self) -> Value {
        json!({
            "detected": !self.faults.is_empty(),
            "faults": self.faults.iter().map(|f| json!({
                "case": f.case.id(),
                "root_cause": f.label,
                "location": self.place_json(&f.place),
                "onset": format_rfc3339(f.onset),
                "onset_tolerance_s": f.tolerance_s,
                "preferred_action": super::cases::action_row(f.label).map(|r| r.preferred.as_str()),
            })).collect::<Vec<_>>(),
            "decoys": self.decoys,
        })
    }

    /// A place as the submission schema writes a location.
    pub fn place_json(&self, p: &Place) -> Value {
        json!({
            "loop": p.cooling_loop.map(|l| self.topo.loops[l].name.clone()),
            "rack": p.rack.map(|r| self.topo.racks[r].name.clone()),
            "node": p.node.map(|n| self.topo.nodes[n].name.clone()),
            "gpu": p.gpu,
            "link": p.link,
        })
    }

    /// The window the operator is told about.
    pub fn window_json(&self) -> Value {
        json!({
            "history_start": format_rfc3339(self.history_start),
            "alert_at": format_rfc3339(self.alert_at),
            "now": format_rfc3339(self.now),
            "scrape_interval_s": STEP_S,
        })
    }

    /// Draws episode `index` of the stream with `seed`.
    pub fn generate(seed: u64, index: usize) -> World {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ 0x1a7e_57e9 ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let case = draw_case(&mut rng);
        World::with_case(seed, index, case, &mut rng)
    }

    /// Plans a world of a given case.
    pub fn with_case(seed: u64, index: usize, case: Case, rng: &mut ChaCha8Rng) -> World {
        let topo = Topo::draw(rng);
        let alert_at = TIMELINE_EPOCH + index as i64 * 86_400 + 6 * 3600 + 60 * rng.random_range(0..720);
        let mut w = World {
            seed,
            index,
            id: format!("inv{index:05}"),
            case,
            topo,
            history_start: alert_at - HISTORY_S,
            alert_at,
            now: alert_at + NOW_AFTER_ALERT_S,
            faults: Vec::new(),
            effects: Vec::new(),
            xids: Vec::new(),
            alerts: Vec::new(),
            decoys: Vec::new(),
        };
        let mut p = Planter { w: &mut w, rng, later: Vec::new() };
        p.plant(case);
        let later = std::mem::take(&mut p.later);
        w.alerts.extend(later);
        w.xids.sort_by_key(|x| (x.t, x.node, x.gpu));
        w
    }
}

/// A case drawn by weight.
pub fn draw_case(rng: &mut ChaCha8Rng) -> Case {
    crate::episode::draw_by_weight(rng, &Case::ALL, |c| c.weight()).unwrap_or(Case::Healthy)
}

struct Planter<'a> {
    w: &'a mut World,
    rng: &'a mut ChaCha8Rng,
    /// Sympathetic alerts, joined after the page.
    later: Vec<Alert>,
}

impl Planter<'_> {
    fn end(&self) -> i64 {
        self.w.now + STEP_S
    }
    fn add(&mut self, target: Target, fx: Fx, from: i64) {
        let to = self.end();
        self.w.effects.push(Effect { target, fx, from, to });
    }
    fn add_span(&mut self, target: Target, fx: Fx, from: i64, to: i64) {
        self.w.effects.push(Effect { target, fx, from, to });
    }
    fn xid(&mut self, t: i64, node: usize, gpu: usize, code: u32) {
        self.w.xids.push(Xid { t, node, gpu, code, link: None });
    }
    fn node_name(&self, n: usize) -> String {
        self.w.topo.nodes[n].name.clone()
    }

    /// A node matching `pred`; when none does, the first rack is converted
    /// so that one does (`convert` makes a node match).
    fn node(&mut self, pred: impl Fn(&Topo, usize) -> bool, convert: impl Fn(&mut Topo, usize)) -> usize {
        let c: Vec<usize> = (0..self.w.topo.nodes.len()).filter(|&n| pred(&self.w.topo, n)).collect();
        if let Some(&n) = c.choose(self.rng) {
            return n;
        }
        let r = self.rng.random_range(0..self.w.topo.racks.len());
        for n in self.w.topo.racks[r].nodes.clone() {
            convert(&mut self.w.topo, n);
        }
        self.w.topo.racks[r].nodes[0]
    }
    fn nvidia(&mut self) -> usize {
        self.node(|t, n| t.kind(n).vendor == Vendor::Nvidia, |t, n| t.nodes[n].kind = 0)
    }
    fn amd(&mut self) -> usize {
        self.node(|t, n| t.kind(n).vendor == Vendor::Amd, |t, n| t.nodes[n].kind = 3)
    }
    fn training_rack(&mut self) -> usize {
        let n = self.node(
            |t, n| t.job_of(n).is_some(),
            |t, n| {
                if t.jobs.is_empty() {
                    t.jobs.push(Job { id: "train-4242".into(), nodes: Vec::new() });
                }
                let j = t.jobs.len() - 1;
                t.nodes[n].work = Work::Training { job: j };
                if !t.jobs[j].nodes.contains(&n) {
                    t.jobs[j].nodes.push(n);
                }
            },
        );
        self.w.topo.nodes[n].rack
    }
    fn serving(&mut self) -> usize {
        self.node(
            |t, n| matches!(t.nodes[n].work, Work::Serving { .. }),
            |t, n| {
                for j in &mut t.jobs {
                    j.nodes.retain(|&m| m != n);
                }
                t.nodes[n].work = Work::Serving { model: "meta-llama/Llama-3.1-70B-Instruct" };
            },
        )
    }
    fn gpu(&mut self) -> usize {
        self.rng.random_range(0..GPUS_PER_NODE)
    }
    fn onset(&mut self) -> i64 {
        self.w.alert_at - 60 * self.rng.random_range(3..9)
    }
    fn fault(&mut self, case: Case, place: Place, onset: i64) {
        let mut place = place;
        if let Some(n) = place.node {
            place.rack = Some(self.w.topo.nodes[n].rack);
        }
        if let Some(r) = place.rack {
            place.cooling_loop = Some(self.w.topo.racks[r].cooling_loop);
        }
        match case.level() {
            Level::Loop => {
                place.rack = None;
                place.node = None;
                place.gpu = None;
            }
            Level::Rack => {
                place.node = None;
                place.gpu = None;
            }
            Level::Node | Level::NodePort => place.gpu = None,
            _ => {}
        }
        self.w.faults.push(Fault {
            case,
            label: case.label(),
            level: case.level(),
            place,
            onset,
            tolerance_s: case.onset_tolerance_s(),
        });
    }
    fn alert(
        &mut self,
        name: &'static str,
        severity: &'static str,
        labels: &[(&str, String)],
        summary: String,
        at: i64,
    ) {
        self.w.alerts.push(Alert {
            name,
            severity,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            summary,
            starts_at: at,
        });
    }
    fn gpu_labels(&self, n: usize, g: usize) -> Vec<(&'static str, String)> {
        match self.w.topo.kind(n).vendor {
            Vendor::Nvidia => vec![("Hostname", self.node_name(n)), ("gpu", g.to_string())],
            Vendor::Amd => vec![("hostname", self.node_name(n)), ("gpu_id", g.to_string())],
        }
    }
    fn xid_alert(&mut self, n: usize, g: usize, code: u32, at: i64) {
        let mut l = self.gpu_labels(n, g);
        l.push(("xid", code.to_string()));
        let s = format!("Xid {code} reported on {} GPU {g}", self.node_name(n));
        self.alert("GpuXidCritical", "critical", &l, s, at);
    }
    /// An Xid alert on a peer that only echoes the fault; it joins after the page.
    fn sympathetic(&mut self, n: usize, g: usize, code: u32, at: i64) {
        if at > self.w.alert_at {
            return;
        }
        let mut labels = self.gpu_labels(n, g);
        labels.push(("xid", code.to_string()));
        self.later.push(Alert {
            name: "GpuXidCritical",
            severity: "critical",
            labels: labels.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            summary: format!("Xid {code} reported on {} GPU {g}", self.node_name(n)),
            starts_at: at,
        });
    }

    fn page_at(&self, onset: i64) -> i64 {
        (onset + 120).min(self.w.alert_at)
    }
    fn node_gpus(n: usize) -> impl Iterator<Item = Target> {
        (0..GPUS_PER_NODE).map(move |g| Target::Gpu(n, g))
    }
    fn rack_targets(&self, r: usize) -> Vec<Target> {
        self.w.topo.racks[r].nodes.iter().flat_map(|&n| Self::node_gpus(n)).collect()
    }

    fn plant(&mut self, case: Case) {
        match case {
            Case::Healthy => self.noise_alert(true),
            Case::DecoyOnly => {
                self.noise_alert(true);
                for _ in 0..self.rng.random_range(1..=3) {
                    self.decoy();
                }
            }
            Case::TwoFaults => {
                let first = *[Case::HbmRemap, Case::OffBus, Case::HbmUce, Case::IbPhy, Case::Gsp, Case::KvPressure]
                    .choose(self.rng)
                    .unwrap_or(&Case::HbmRemap);
                self.single(first);
                self.silent_second();
                self.noise_alert(false);
            }
            c => {
                self.single(c);
                if self.rng.random_bool(0.5) {
                    self.decoy();
                }
                if self.rng.random_bool(0.4) {
                    self.noise_alert(false);
                }
            }
        }
    }

    /// A second fault that fires no alert of its own.
    fn silent_second(&mut self) {
        let taken: Vec<usize> = self.w.faults.iter().filter_map(|f| f.place.node).collect();
        let n = self.node(|t, n| t.kind(n).vendor == Vendor::Nvidia && !taken.contains(&n), |t, n| t.nodes[n].kind = 0);
        let onset = self.w.alert_at - 60 * self.rng.random_range(10..60);
        if self.rng.random_bool(0.5) {
            let g = self.gpu();
            let gen = self.w.topo.nodes[n].pcie_max_gen - 1;
            self.add(Target::Gpu(n, g), Fx::PcieDown { gen, width: 16 }, onset);
            self.add(Target::Gpu(n, g), Fx::PcieReplay { per_min: 0.5 }, onset);
            self.fault(Case::PcieGen, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
        } else {
            let port = self.rng.random_range(0..PORTS_PER_NODE);
            self.add(Target::Port(n, port), Fx::IbPhy { per_min: 4.0 }, onset);
            let link = Some(format!("mlx5_{port}"));
            self.fault(Case::IbPhy, Place { node: Some(n), link, ..Place::default() }, onset);
        }
    }

    fn single(&mut self, case: Case) {
        let onset = self.onset();
        let page = self.page_at(onset);
        match case {
            Case::HbmRemap => {
                let (n, g) = (self.nvidia(), self.gpu());
                let v = self.rng.random_range(20.0..60.0);
                self.add(Target::Gpu(n, g), Fx::SbeRate { per_min: v }, onset - 30);
                self.add(Target::Gpu(n, g), Fx::RemapPending, onset);
                let code = if self.rng.random_bool(0.25) { 94 } else { 63 };
                self.xid(onset, n, g, code);
                self.xid_alert(n, g, code, page);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
            }
            Case::HbmUce => {
                let (n, g) = (self.nvidia(), self.gpu());
                self.uncorrectable(n, g, onset);
                let code =
                    self.w.xids.iter().rfind(|x| x.node == n && x.gpu == g && x.t == onset).map_or(48, |x| x.code);
                self.xid_alert(n, g, code, page);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
            }
            Case::AmdHbmUce => {
                let (n, g) = (self.amd(), self.gpu());
                let v = f64::from(self.rng.random_range(1..4));
                self.add(Target::Gpu(n, g), Fx::Dbe { count: v }, onset);
                self.xid(onset, n, g, 1000);
                let (l, s) =
                    (self.gpu_labels(n, g), format!("uncorrectable ECC errors on {} GPU {g}", self.node_name(n)));
                self.alert("GpuEccUncorrectable", "critical", &l, s, page);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
            }
            Case::OffBus => {
                let (n, g) = (self.nvidia(), self.gpu());
                self.off_bus(n, g, onset);
                self.xid_alert(n, g, 79, page);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
            }
            Case::Nvlink => {
                let (n, g) = (self.nvidia(), self.gpu());
                let link = self.rng.random_range(0..18u8);
                let v = self.rng.random_range(60.0..200.0);
                self.add(Target::Gpu(n, g), Fx::Nvlink { per_min: v }, onset);
                self.w.xids.push(Xid { t: onset, node: n, gpu: g, code: 74, link: Some(link) });
                let peer = (g + 1 + self.rng.random_range(0..7)) % GPUS_PER_NODE;
                self.add(Target::Gpu(n, peer), Fx::Nvlink { per_min: 12.0 }, onset + 30);
                self.w
                    .decoys
                    .push(format!("{} GPU {peer}: the remote end of the link logs fewer errors", self.node_name(n)));
                self.xid_alert(n, g, 74, page);
                let place =
                    Place { node: Some(n), gpu: Some(g), link: Some(format!("nvlink{link}")), ..Place::default() };
                self.fault(case, place, onset);
            }
            Case::PcieGen => {
                let (n, g) = (self.nvidia(), self.gpu());
                let max = self.w.topo.nodes[n].pcie_max_gen;
                let gen = max - self.rng.random_range(1..=2);
                let width = if self.rng.random_bool(0.5) { 8 } else { 16 };
                self.add(Target::Gpu(n, g), Fx::PcieDown { gen, width }, onset);
                self.add(Target::Gpu(n, g), Fx::PcieReplay { per_min: 6.0 }, onset);
                let (l, s) = (self.gpu_labels(n, g), format!("PCIe replays climbing on {} GPU {g}", self.node_name(n)));
                self.alert("PcieReplaysHigh", "warning", &l, s, page);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
            }
            Case::Gsp => {
                let (n, g) = (self.nvidia(), self.gpu());
                self.xid(onset, n, g, 119);
                if self.rng.random_bool(0.5) {
                    self.xid(onset + 60, n, g, 120);
                }
                self.add(Target::Gpu(n, g), Fx::Hung, onset);
                self.xid_alert(n, g, 119, page);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
            }
            Case::SmHw => {
                let (n, g) = (self.nvidia(), self.gpu());
                let first = self.w.alert_at - 60 * self.rng.random_range(150..220);
                let mut t = first;
                while t < self.w.alert_at - 60 {
                    self.xid(t, n, g, 13);
                    t += 60 * self.rng.random_range(25..60);
                }
                self.xid(self.w.alert_at - 60, n, g, 13);
                self.xid_alert(n, g, 13, self.w.alert_at);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, first);
            }
            Case::ThermalGpu | Case::AmdThermalGpu => {
                let n = if case == Case::AmdThermalGpu { self.amd() } else { self.nvidia() };
                let g = self.gpu();
                let target_c = self.rng.random_range(93.0..98.0);
                let ramp_s = self.rng.random_range(240.0..420.0);
                self.add(Target::Gpu(n, g), Fx::Heat { target_c, ramp_s }, onset);
                let (l, s) = (self.gpu_labels(n, g), format!("GPU temperature high on {} GPU {g}", self.node_name(n)));
                self.alert("GpuTemperatureHigh", "warning", &l, s, page);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
            }
            Case::PsuBrake | Case::BrakeRecurring => {
                let r = if case == Case::BrakeRecurring {
                    self.training_rack()
                } else {
                    let n = self.nvidia();
                    self.w.topo.nodes[n].rack
                };
                for n in self.w.topo.racks[r].nodes.clone() {
                    self.w.topo.nodes[n].kind = self.w.topo.nodes[n].kind.min(2);
                }
                let targets = self.rack_targets(r);
                let rack = self.w.topo.racks[r].name.clone();
                if case == Case::PsuBrake {
                    for &t in &targets {
                        self.add(t, Fx::Brake, onset);
                    }
                    self.alert(
                        "GpuPowerBrake",
                        "critical",
                        &[("rack", rack.clone())],
                        format!("hardware power brake on GPUs of {rack}"),
                        page,
                    );
                    self.fault(case, Place { rack: Some(r), ..Place::default() }, onset);
                } else {
                    let first = self.w.alert_at - 60 * self.rng.random_range(150..200);
                    let mut t = first;
                    while t < self.w.alert_at - 900 {
                        let len = 60 * self.rng.random_range(3..5);
                        for &tg in &targets {
                            self.add_span(tg, Fx::Brake, t, t + len);
                        }
                        t += 60 * self.rng.random_range(30..50);
                    }
                    let job = self.w.topo.job_of(self.w.topo.racks[r].nodes[0]).map(|j| self.w.topo.jobs[j].id.clone());
                    let job = job.unwrap_or_default();
                    let s = format!("training step time of {job} up 35 % over its 6 h median");
                    self.alert("JobStepTimeHigh", "warning", &[("job", job.clone())], s, self.w.alert_at);
                    self.fault(case, Place { rack: Some(r), ..Place::default() }, first);
                }
            }
            Case::IbPhy => {
                let n = self.rng.random_range(0..self.w.topo.nodes.len());
                let port = self.rng.random_range(0..PORTS_PER_NODE);
                let v = self.rng.random_range(40.0..150.0);
                self.add(Target::Port(n, port), Fx::IbPhy { per_min: v }, onset);
                let r = self.w.topo.nodes[n].rack;
                for m in self.w.topo.racks[r].nodes.clone() {
                    if m != n {
                        self.add(Target::Port(m, 0), Fx::Pause { per_s: 120.0 }, onset + 90);
                    }
                }
                let l = [("Hostname", self.node_name(n)), ("device", format!("mlx5_{port}"))];
                let s = format!("InfiniBand symbol errors on {} mlx5_{port}", self.node_name(n));
                self.alert("IbSymbolErrors", "warning", &l, s, page);
                self.fault(
                    case,
                    Place { node: Some(n), link: Some(format!("mlx5_{port}")), ..Place::default() },
                    onset,
                );
            }
            Case::IbCongestion => {
                let r = self.training_rack();
                for n in self.w.topo.racks[r].nodes.clone() {
                    for port in 0..PORTS_PER_NODE {
                        let v = self.rng.random_range(6.0..12.0);
                        self.add(Target::Port(n, port), Fx::IbCongestion { mult: v }, onset);
                    }
                    for t in Self::node_gpus(n) {
                        self.add(t, Fx::Util { factor: 0.75 }, onset + 60);
                    }
                }
                let rack = self.w.topo.racks[r].name.clone();
                self.alert(
                    "IbCongestion",
                    "warning",
                    &[("rack", rack.clone())],
                    format!("InfiniBand transmit wait up on {rack}"),
                    page,
                );
                self.fault(case, Place { rack: Some(r), ..Place::default() }, onset);
            }
            Case::KvPressure => {
                let n = self.serving();
                self.add(Target::Replica(n), Fx::KvPressure, onset);
                let model = match self.w.topo.nodes[n].work {
                    Work::Serving { model } => model,
                    Work::Training { .. } => "",
                };
                let l = [("Hostname", self.node_name(n)), ("model_name", model.to_string())];
                self.alert(
                    "VllmKvCacheFull",
                    "warning",
                    &l,
                    format!("vLLM KV cache full on {}", self.node_name(n)),
                    page,
                );
                self.fault(case, Place { node: Some(n), ..Place::default() }, onset);
            }
            Case::CudaFault | Case::EccDisabled => {
                let n = self.nvidia();
                let code = if self.rng.random_bool(0.5) { 13 } else { 31 };
                let mut gpus: Vec<usize> = (0..GPUS_PER_NODE).collect();
                gpus.sort_by_key(|_| self.rng.random::<u32>());
                let k = self.rng.random_range(2..=4);
                let t0 = if case == Case::EccDisabled { self.w.alert_at - 240 } else { onset };
                for (i, &g) in gpus.iter().take(k).enumerate() {
                    let t = t0 + if i == 0 { 0 } else { self.rng.random_range(5..90) };
                    self.xid(t, n, g, code);
                }
                self.xid_alert(n, gpus[0], code, self.page_at(t0));
                let mut fault_onset = t0;
                if case == Case::EccDisabled {
                    fault_onset = self.w.alert_at - 60 * self.rng.random_range(120..200);
                    for t in Self::node_gpus(n) {
                        self.add(t, Fx::EccOff, fault_onset);
                    }
                    self.xid(fault_onset, n, 0, 2000);
                }
                self.fault(case, Place { node: Some(n), ..Place::default() }, fault_onset);
            }
            Case::ThermalDrift | Case::LoopSpan => {
                let l = self.rng.random_range(0..self.w.topo.loops.len());
                let drift = case == Case::ThermalDrift;
                let (onset, ramp) = if drift {
                    (self.w.alert_at - 60 * self.rng.random_range(150..200), self.rng.random_range(9000.0..11_000.0))
                } else {
                    (onset, self.rng.random_range(300.0..480.0))
                };
                let mut hottest = None;
                for r in self.w.topo.loops[l].racks.clone() {
                    for n in self.w.topo.racks[r].nodes.clone() {
                        for g in 0..GPUS_PER_NODE {
                            let base = if drift { 86.0 } else { 92.0 };
                            let target_c = base + self.w.topo.nodes[n].temp_offset[g];
                            self.add(Target::Gpu(n, g), Fx::Heat { target_c, ramp_s: ramp }, onset);
                            if hottest.is_none_or(|(_, _, c)| target_c > c) {
                                hottest = Some((n, g, target_c));
                            }
                        }
                    }
                }
                let (n, g, _) = hottest.unwrap_or((self.w.topo.racks[self.w.topo.loops[l].racks[0]].nodes[0], 0, 0.0));
                let (lb, s) = (self.gpu_labels(n, g), format!("GPU temperature high on {} GPU {g}", self.node_name(n)));
                let at = if drift { self.w.alert_at } else { self.page_at(onset) };
                self.alert("GpuTemperatureHigh", "warning", &lb, s, at);
                self.fault(case, Place { cooling_loop: Some(l), ..Place::default() }, onset);
            }
            Case::StaleXid => {
                let (n, g) = (self.nvidia(), self.gpu());
                let old = self.w.history_start + 60 * self.rng.random_range(5..60);
                self.xid(old, n, g, 43);
                self.add(Target::Gpu(n, g), Fx::XidFrozen { code: 43 }, old + 60);
                self.uncorrectable(n, g, onset);
                let job =
                    self.w.topo.job_of(n).map(|j| self.w.topo.jobs[j].id.clone()).unwrap_or_else(|| "serving".into());
                let l = [("Hostname", self.node_name(n)), ("job", job.clone())];
                let s = format!("{job}: a process on {} exited with a CUDA error", self.node_name(n));
                self.alert("JobCrashed", "critical", &l, s, page);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
            }
            Case::ExporterOffBus => {
                let (n, g) = (self.nvidia(), self.gpu());
                self.off_bus(n, g, onset);
                self.add(Target::Exporter(n), Fx::Down, onset + 15);
                let s = format!("dcgm-exporter on {} is not answering", self.node_name(n));
                self.alert("DcgmExporterDown", "warning", &[("Hostname", self.node_name(n))], s, page);
                self.fault(case, Place { node: Some(n), gpu: Some(g), ..Place::default() }, onset);
            }
            Case::NcclHang => {
                let r = self.training_rack();
                let n0 = self.w.topo.racks[r].nodes[0];
                let job = self.w.topo.job_of(n0).unwrap_or(0);
                for n in self.w.topo.jobs[job].nodes.clone() {
                    for t in Self::node_gpus(n) {
                        self.add(t, Fx::Util { factor: 0.0 }, onset);
                    }
                }
                let id = self.w.topo.jobs[job].id.clone();
                self.alert(
                    "JobStalled",
                    "critical",
                    &[("job", id.clone())],
                    format!("{id}: no training step completed for 5 min"),
                    page,
                );
                self.fault(case, Place { rack: Some(self.w.topo.nodes[n0].rack), ..Place::default() }, onset);
            }
            Case::PowerCapMisset => {
                let n = self.nvidia();
                let onset = self.w.alert_at - 60 * self.rng.random_range(90..200);
                let limit_w = (self.w.topo.kind(n).tdp_w * 0.57).round();
                for t in Self::node_gpus(n) {
                    self.add(t, Fx::PowerCap { limit_w }, onset);
                }
                let s = format!("GPU clocks held down by the power limit on {}", self.node_name(n));
                self.alert(
                    "GpuClocksThrottled",
                    "warning",
                    &[("Hostname", self.node_name(n)), ("reason", "sw_power_cap".into())],
                    s,
                    self.w.alert_at,
                );
                self.fault(case, Place { node: Some(n), ..Place::default() }, onset);
            }
            Case::Healthy | Case::DecoyOnly | Case::TwoFaults => {}
        }
    }

    fn uncorrectable(&mut self, n: usize, g: usize, onset: i64) {
        self.add(Target::Gpu(n, g), Fx::Dbe { count: 2.0 }, onset);
        let code = if self.rng.random_bool(0.33) { 95 } else { 48 };
        self.xid(onset, n, g, code);
        let t_fail = onset + self.rng.random_range(60..150);
        self.add(Target::Gpu(n, g), Fx::RemapFailure, t_fail);
        self.xid(t_fail, n, g, 64);
        for peer in (0..GPUS_PER_NODE).filter(|&x| x != g).take(2) {
            let t = onset + self.rng.random_range(20..60);
            self.xid(t, n, peer, 45);
            self.sympathetic(n, peer, 45, t + 60);
        }
        self.w.decoys.push("Xid 45 on peer GPUs is cleanup after the uncorrectable error".into());
    }

    fn off_bus(&mut self, n: usize, g: usize, onset: i64) {
        self.add_span(Target::Gpu(n, g), Fx::PcieReplay { per_min: 30.0 }, onset - 360, onset);
        self.add(Target::Gpu(n, g), Fx::OffBus, onset);
        self.xid(onset, n, g, 79);
        for peer in (0..GPUS_PER_NODE).filter(|&x| x != g).take(self.rng.random_range(1..=2)) {
            let t = onset + self.rng.random_range(5..30);
            let link = self.rng.random_range(0..18u8);
            self.w.xids.push(Xid { t, node: n, gpu: peer, code: 74, link: Some(link) });
            self.sympathetic(n, peer, 74, t + 60);
        }
        self.w.decoys.push("Xid 74 on peers: their NVLink to the lost GPU went down".into());
    }

    /// One harmless-looking thing somewhere in the fleet.
    fn decoy(&mut self) {
        let n = self.rng.random_range(0..self.w.topo.nodes.len());
        let g = self.gpu();
        let name = self.node_name(n);
        let at = self.w.alert_at - 60 * self.rng.random_range(5..120);
        match self.rng.random_range(0..5) {
            0 => {
                for t in Self::node_gpus(n) {
                    self.add(t, Fx::WarmBusy, self.w.history_start);
                }
                self.w.decoys.push(format!("{name} runs warm and busy without throttling"));
            }
            1 => {
                self.add(Target::Gpu(n, g), Fx::SbeRate { per_min: 0.3 }, self.w.history_start);
                self.w.decoys.push(format!("{name} GPU {g}: a trickle of correctable ECC errors"));
            }
            2 => {
                self.add(Target::Port(n, 1), Fx::Pause { per_s: 40.0 }, at);
                self.w.decoys.push(format!("{name} mlx5_1: some PFC pauses, no errors"));
            }
            3 => {
                self.xid(at, n, g, 13);
                self.w.decoys.push(format!("{name} GPU {g}: one Xid 13 from a user job"));
            }
            _ => {
                self.add_span(
                    Target::Gpu(n, g),
                    Fx::PowerCap { limit_w: (0.6 * self.w.topo.kind(n).tdp_w).round() },
                    at,
                    at + 180,
                );
                self.w.decoys.push(format!("{name} GPU {g}: a brief software power cap"));
            }
        }
    }

    /// An alert that is noise: flapping, stale or routine. `page` makes it
    /// the page of a healthy or decoy-only episode.
    fn noise_alert(&mut self, page: bool) {
        let n = self.rng.random_range(0..self.w.topo.nodes.len());
        let g = self.gpu();
        let name = self.node_name(n);
        let amd = self.w.topo.kind(n).vendor == Vendor::Amd;
        let at = if page { self.w.alert_at } else { self.w.alert_at - 60 * self.rng.random_range(2..30) };
        match self.rng.random_range(0..4) {
            3 => {
                // A warm GPU touched the threshold for a few minutes and
                // cooled again: the alert flaps.
                let from = at - 60 * self.rng.random_range(8..20);
                self.add_span(Target::Gpu(n, g), Fx::Heat { target_c: 90.0, ramp_s: 60.0 }, from, from + 240);
                let (l, s) = (self.gpu_labels(n, g), format!("GPU temperature high on {name} GPU {g}"));
                self.alert("GpuTemperatureHigh", "warning", &l, s, from + 120);
                self.w.decoys.push(format!("{name} GPU {g}: the temperature alert flapped; the GPU is back to normal"));
            }
            0 if !amd => {
                let old = self.w.history_start + 60 * self.rng.random_range(5..90);
                let code = *[43u32, 45].choose(self.rng).unwrap_or(&43);
                self.xid(old, n, g, code);
                self.xid_alert(n, g, code, old + 60);
                self.w.decoys.push(format!("{name} GPU {g}: stale Xid {code} alert from hours ago"));
            }
            1 => {
                let from = at - 60 * self.rng.random_range(4..8);
                // Half the time the exporter crashed and stays down: the
                // monitoring plane, not the GPUs (its segfault is in the log).
                let crashed = self.rng.random_bool(0.5);
                let to = if crashed { self.end() } else { at - 60 };
                self.add_span(Target::Exporter(n), Fx::Down, from, to);
                if crashed {
                    self.xid(from, n, 0, 3000);
                }
                let s = format!("GPU exporter on {name} is not answering");
                self.alert("DcgmExporterDown", "warning", &[("Hostname", name.clone())], s, from + 60);
                let what = if crashed { "crashed (segfault); the GPUs are fine" } else { "flapped and came back" };
                self.w.decoys.push(format!("{name}: the GPU exporter {what}"));
            }
            _ => {
                let from = at - 240;
                self.add_span(
                    Target::Gpu(n, g),
                    Fx::PowerCap { limit_w: (0.6 * self.w.topo.kind(n).tdp_w).round() },
                    from,
                    at + 60,
                );
                let s = format!("GPU clocks held down by the power limit on {name}");
                self.alert(
                    "GpuClocksThrottled",
                    "warning",
                    &[("Hostname", name.clone()), ("reason", "sw_power_cap".into())],
                    s,
                    at,
                );
                self.w.decoys.push(format!("{name} GPU {g}: a routine software power cap"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleets_vary_and_every_fault_is_paged() {
        let mut sizes = std::collections::BTreeSet::new();
        let mut kinds = std::collections::BTreeSet::new();
        for i in 0..200 {
            let w = World::generate(7, i);
            sizes.insert(w.topo.gpu_count());
            kinds.extend(w.topo.nodes.iter().map(|n| n.kind));
            assert!(w.topo.gpu_count() >= 16 && w.topo.gpu_count() <= 2048, "{}", w.topo.gpu_count());
            assert!(!w.alerts.is_empty(), "{:?} has no alert", w.case);
            assert_eq!(w.case.is_fault(), !w.faults.is_empty());
            assert!(w.topo.loops.iter().any(|l| l.racks.len() >= 2) || w.topo.racks.len() < 2);
            for f in &w.faults {
                assert!(f.onset >= w.history_start && f.onset <= w.alert_at, "{:?}", w.case);
            }
            if w.case == Case::HbmUce {
                let echoes = w.alerts[1..].iter().filter(|a| a.labels.get("xid").is_some_and(|x| x == "45")).count();
                assert!(echoes >= 2, "sympathetic Xid 45 alerts follow the page");
                assert_ne!(w.alerts[0].labels.get("xid").map(String::as_str), Some("45"));
            }
        }
        assert!(sizes.len() > 50, "fleet sizes vary: {}", sizes.len());
        assert_eq!(kinds.len(), KINDS.len());
        let a = World::generate(7, 3);
        let b = World::generate(7, 3);
        assert_eq!(a.effects, b.effects);
        assert_eq!(a.topo.gpu_count(), b.topo.gpu_count());
    }
}
